// Writing an image from the CLI (anitalker sr, anitalker crop): the format
// from the file's extension, checked before any work, and the file written
// through lib/output_file.h (no half-written image).
#pragma once

#include <opencv2/core.hpp>
#include <string>

namespace cli {

// The extension OpenCV encodes `path` by (".png", ...); throws UsageError
// naming `option` when there is none or OpenCV cannot write it.
std::string image_extension(const std::string& path, const std::string& option = "--out");

// The 8-bit BGR image encoded in memory by `ext` (`path` names it in errors).
std::string encode_image(const std::string& path, const std::string& ext, const cv::Mat& bgr);
// encode_image() written to `path`.
void write_image(const std::string& path, const std::string& ext, const cv::Mat& bgr);

}  // namespace cli
