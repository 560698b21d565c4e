#include "image_out.h"

#include <opencv2/imgcodecs.hpp>
#include <vector>

#include "cli.h"
#include "error.h"
#include "npy.h"

namespace cli {

std::string image_extension(const std::string& path, const std::string& option) {
  const size_t dot = path.rfind('.');
  const size_t slash = path.rfind('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash))
    throw UsageError(option + " " + path + ": no file extension to choose the image format by");
  const std::string ext = path.substr(dot);
  if (!cv::haveImageWriter(path)) throw UsageError(option + " " + path + ": OpenCV cannot write " + ext + " files");
  return ext;
}

std::string encode_image(const std::string& path, const std::string& ext, const cv::Mat& bgr) {
  std::vector<uchar> bytes;
  if (!cv::imencode(ext, bgr, bytes))
    throw anitalker::Error(anitalker::Error::Kind::Runtime, path + ": OpenCV could not encode the image");
  return std::string(bytes.begin(), bytes.end());
}

void write_image(const std::string& path, const std::string& ext, const cv::Mat& bgr) {
  anitalker::write_file_atomic(path, encode_image(path, ext, bgr));
}

}  // namespace cli
