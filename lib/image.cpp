// Portrait decoding and Pillow's bicubic resize (spec/renderer.md 5).
#include "image.h"

#include <ATen/ATen.h>
#include <sys/stat.h>

#include <cctype>
#include <cmath>
#include <fstream>
#ifndef ANITALKER_NO_IMGCODECS
#include <opencv2/imgcodecs.hpp>
#endif
#include <opencv2/imgproc.hpp>

#include "error.h"
#include "image_header.h"
#include "retinaface.h"

namespace anitalker {

#ifdef ANITALKER_NO_IMGCODECS
namespace {
// A build without OpenCV's imgcodecs (tests/device/run.sh on a machine that
// has only OpenCV's core): binary PPM (P6, 8 bits), which OpenCV reads too.
cv::Mat read_ppm(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::string magic;
  int w = 0, h = 0, maxval = 0;
  auto skip = [&] {  // blanks and # comments between the header's fields
    for (int c = f.peek(); f && (std::isspace(c) || c == '#'); c = f.peek()) {
      if (c == '#') {
        std::string rest;
        std::getline(f, rest);
      } else {
        f.get();
      }
    }
  };
  f >> magic;
  skip();
  f >> w;
  skip();
  f >> h;
  skip();
  f >> maxval;
  f.get();  // the one blank before the pixels
  if (!f || magic != "P6" || w <= 0 || h <= 0 || maxval != 255)
    throw format_error(path + ": this build reads binary PPM (P6, 8 bits) portraits only (it has no OpenCV imgcodecs)");
  if (static_cast<int64_t>(w) * h > max_image_pixels())
    throw format_error(path + ": the image is " + std::to_string(w) + "x" + std::to_string(h) + ", more than " +
                       std::to_string(max_image_pixels()) + " pixels (ANITALKER_MAX_PIXELS)");
  cv::Mat rgb(h, w, CV_8UC3), bgr;
  f.read(reinterpret_cast<char*>(rgb.data), static_cast<std::streamsize>(rgb.total() * 3));
  if (f.gcount() != static_cast<std::streamsize>(rgb.total() * 3)) throw format_error(path + ": the PPM file is truncated");
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  return bgr;
}
}  // namespace
#endif

RgbImage read_rgb_image(const std::string& path, Orientation orientation, int* tag) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw Error(Error::Kind::NotFound, path + ": no such file");
  if (!S_ISREG(st.st_mode)) throw Error(Error::Kind::Unreadable, path + ": not a regular file");
  // Size limit, truncation, GIF: before any pixel is decoded.
  const ImageHeader header = check_image_header(path);
  if (tag) *tag = header.orientation;
  // IMREAD_COLOR expands grey and palette and drops alpha, like PIL's
  // convert('RGB'); PIL does not apply EXIF orientation, cv2.imread does.
  cv::Mat bgr;
#ifdef ANITALKER_NO_IMGCODECS
  (void)orientation;  // PPM has none
  bgr = read_ppm(path);
#else
  try {
    bgr = cv::imread(path, orientation == Orientation::Shown ? cv::IMREAD_COLOR
                                                              : cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
  } catch (const cv::Exception& e) {
    throw format_error(path + ": cannot decode the image: " + e.what());
  }
#endif
  if (bgr.empty()) {
    // What the file is, where the header tells, and what to do about it.
    if (header.format == "heif")
      throw format_error(path + ": a HEIF (HEIC) photo, as iPhones save them, which OpenCV cannot decode; convert it "
                                "to JPEG or PNG first (heif-convert PHOTO.heic PHOTO.jpg, from libheif-examples)");
    if (header.format == "avif")
      throw format_error(path + ": an AVIF image, which this build's OpenCV cannot decode; convert it to PNG or JPEG "
                                "first (avifdec IMAGE.avif IMAGE.png, from libavif-bin)");
    if (header.video())
      throw format_error(path + ": " +
                         (header.format == "isobmff"    ? "an MP4 or QuickTime"
                          : header.format == "matroska" ? "a Matroska or WebM"
                          : header.format == "mpegts"   ? "an MPEG transport stream"
                          : header.format == "mpegps"   ? "an MPEG program stream"
                          : header.format == "flv"      ? "a Flash video (FLV)"
                                                        : "an AVI") +
                         " file (a video?), not a still image: give a frame of it as a JPEG or PNG (anitalker "
                         "generate --portrait takes the video itself)");
    throw format_error(path + ": not an image OpenCV can decode (expected JPEG, PNG, BMP, WebP, TIFF, ...)");
  }
  if (bgr.depth() != CV_8U) bgr.convertTo(bgr, CV_8U, 1.0 / 256);
  RgbImage out;
  out.width = bgr.cols;
  out.height = bgr.rows;
  out.data.resize(static_cast<size_t>(out.width) * out.height * 3);
  cv::Mat rgb(out.height, out.width, CV_8UC3, out.data.data());
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
#ifndef ANITALKER_NO_IMGCODECS
  // A file with alpha (a cut-out on a transparent background): how much of
  // it was transparent, for a note; its alpha is dropped all the same, as
  // PIL's convert('RGB') drops it.  Decoded a second time, with alpha:
  // only files whose header says they have it.
  if (header.alpha) {
    try {
      const cv::Mat all = cv::imread(path, cv::IMREAD_UNCHANGED);
      if (!all.empty() && (all.channels() == 4 || all.channels() == 2)) {
        cv::Mat alpha;
        cv::extractChannel(all, alpha, all.channels() - 1);
        const double opaque = all.depth() == CV_16U ? 65535.0 : 255.0;
        out.transparent = static_cast<double>(cv::countNonZero(alpha < opaque)) / static_cast<double>(alpha.total());
      }
    } catch (const cv::Exception&) {
      // The colours decoded: the note is all that is lost.
    }
  }
#endif
  return out;
}

namespace {

// Pillow's bicubic filter (a = -0.5), written as Pillow writes it.
double bicubic(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

constexpr int kPrecisionBits = 32 - 8 - 2;

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for one axis.
struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;  // (xmin, count) per output sample
  std::vector<int32_t> k;   // ksize per output sample, fixed point
};

Coeffs coeffs(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = 2.0 * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(static_cast<size_t>(out_size) * 2);
  c.k.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> w(static_cast<size_t>(c.ksize));
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      w[x] = bicubic((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double v = ww != 0.0 ? w[x] / ww : w[x];
      c.k[static_cast<size_t>(xx) * c.ksize + x] = static_cast<int32_t>(v * (1 << kPrecisionBits) + (v < 0 ? -0.5 : 0.5));
    }
    c.bounds[2 * xx] = xmin;
    c.bounds[2 * xx + 1] = xmax;
  }
  return c;
}

inline uint8_t clip8(int64_t v) {
  v >>= kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

RgbImage horizontal(const RgbImage& in, int out_w) {
  const Coeffs c = coeffs(in.width, out_w);
  RgbImage out;
  out.width = out_w;
  out.height = in.height;
  out.data.resize(static_cast<size_t>(out_w) * in.height * 3);
  for (int y = 0; y < in.height; ++y) {
    const uint8_t* row = in.data.data() + static_cast<size_t>(y) * in.width * 3;
    uint8_t* o = out.data.data() + static_cast<size_t>(y) * out_w * 3;
    for (int xx = 0; xx < out_w; ++xx) {
      const int xmin = c.bounds[2 * xx], n = c.bounds[2 * xx + 1];
      const int32_t* k = c.k.data() + static_cast<size_t>(xx) * c.ksize;
      for (int ch = 0; ch < 3; ++ch) {
        int64_t ss = 1 << (kPrecisionBits - 1);
        for (int x = 0; x < n; ++x) ss += static_cast<int64_t>(row[(x + xmin) * 3 + ch]) * k[x];
        o[xx * 3 + ch] = clip8(ss);
      }
    }
  }
  return out;
}

RgbImage vertical(const RgbImage& in, int out_h) {
  const Coeffs c = coeffs(in.height, out_h);
  RgbImage out;
  out.width = in.width;
  out.height = out_h;
  out.data.resize(static_cast<size_t>(in.width) * out_h * 3);
  const size_t stride = static_cast<size_t>(in.width) * 3;
  for (int yy = 0; yy < out_h; ++yy) {
    const int ymin = c.bounds[2 * yy], n = c.bounds[2 * yy + 1];
    const int32_t* k = c.k.data() + static_cast<size_t>(yy) * c.ksize;
    uint8_t* o = out.data.data() + static_cast<size_t>(yy) * stride;
    for (size_t xc = 0; xc < stride; ++xc) {
      int64_t ss = 1 << (kPrecisionBits - 1);
      for (int y = 0; y < n; ++y) ss += static_cast<int64_t>(in.data[(y + ymin) * stride + xc]) * k[y];
      o[xc] = clip8(ss);
    }
  }
  return out;
}

}  // namespace

RgbImage pil_resize_bicubic(const RgbImage& in, int width, int height) {
  if (in.width <= 0 || in.height <= 0 || width <= 0 || height <= 0)
    throw Error(Error::Kind::Usage, "resize: empty image or size");
  // Horizontal pass first, into 8 bits; a pass whose size does not change is skipped.
  RgbImage h = in.width == width ? in : horizontal(in, width);
  return in.height == height ? h : vertical(h, height);
}

at::Tensor rgb_to_tensor(const RgbImage& img) {
  at::Tensor hwc = at::from_blob(const_cast<uint8_t*>(img.data.data()), {img.height, img.width, 3}, at::kByte);
  // u/255 in double, then float32 (spec 5.3), minus 0.5, times 2.
  at::Tensor x = hwc.to(at::kDouble).div(255.0).to(at::kFloat);
  return x.sub(0.5).mul(2).permute({2, 0, 1}).unsqueeze(0).contiguous();
}

at::Tensor load_portrait(const std::string& path, int size) {
  const RgbImage img = read_rgb_image(path);
  return rgb_to_tensor(pil_resize_bicubic(img, size, size));
}

std::vector<crop::Box> detect_faces(const std::string& detector, const RgbImage& picture, c10::Device device) {
  auto model = retinaface::Model::load(detector, device);
  cv::Mat rgb(picture.height, picture.width, CV_8UC3, const_cast<uint8_t*>(picture.data.data())), bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  // A photo larger than kDetectMaxSide is searched on a copy scaled down to
  // it (area-averaged), the boxes scaled back: RetinaFace's work and memory
  // grow with the pixels (a 12 Mpx phone photo: about 4.6 GB and tens of
  // seconds on 2 cores; 100 Mpx would not fit), and a face worth animating
  // stays tens of pixels wide at this size.
  double sx = 1.0, sy = 1.0;
  const int longer = std::max(picture.width, picture.height);
  if (longer > kDetectMaxSide) {
    const double f = static_cast<double>(kDetectMaxSide) / longer;
    const int w = std::max(1, static_cast<int>(std::lround(picture.width * f)));
    const int h = std::max(1, static_cast<int>(std::lround(picture.height * f)));
    cv::Mat small;
    cv::resize(bgr, small, cv::Size(w, h), 0, 0, cv::INTER_AREA);
    bgr = small;
    sx = static_cast<double>(picture.width) / w;
    sy = static_cast<double>(picture.height) / h;
  }
  at::Tensor rows = model->detect(bgr).to(at::kFloat).contiguous();  // (N, 15)
  if (sx != 1.0 || sy != 1.0) {
    const at::Tensor scale = at::tensor({static_cast<float>(sx), static_cast<float>(sy), static_cast<float>(sx),
                                         static_cast<float>(sy)});
    rows.slice(1, 0, 4).mul_(scale);
  }
  std::vector<crop::Box> boxes;
  for (int64_t i = 0; i < rows.size(0); ++i) {
    const float* r = rows[i].data_ptr<float>();
    // The regression can put a box wholly past the picture's edge (a
    // picture smaller than the anchors, or a narrow one); such a box is
    // not a face in it.  Partly outside stays: the crop pads.
    if (!(r[2] > 0 && r[3] > 0 && r[0] < picture.width && r[1] < picture.height && std::isfinite(r[0]) &&
          std::isfinite(r[1]) && std::isfinite(r[2]) && std::isfinite(r[3])))
      continue;
    boxes.push_back({r[0], r[1], r[2], r[3]});
  }
  return boxes;
}

PreparedPortrait prepare_portrait(const std::string& path, int size, const crop::Spec& spec,
                                  const std::string& detector, c10::Device device) {
  PreparedPortrait p;
  // A photo to crop is taken as shown (a phone's photo upright, as the
  // authors' crop script reads it); the portrait used whole as stored, as
  // the reference demo reads it.
  int tag = 0;
  p.picture =
      read_rgb_image(path, spec.mode == crop::Spec::Mode::None ? Orientation::Stored : Orientation::Shown, &tag);
  std::vector<crop::Box> faces;
  if (spec.mode == crop::Spec::Mode::Auto && !spec.have_box) {
    if (detector.empty())
      throw Error(Error::Kind::Usage, path + ": crop=auto needs the face detector (detection_Resnet50_Final.pth: the "
                                             "detector property, or models-dir); or give face-box=X1,Y1,X2,Y2");
    faces = detect_faces(detector, p.picture, device);
  }
  p.choice = crop::choose(spec, p.picture.width, p.picture.height, faces, path);
  if (!p.choice.cropped && tag > 1) p.choice.stored_turned = tag;
  p.choice.transparent = p.picture.transparent;
  const RgbImage square = p.choice.cropped ? crop::cut(p.picture, p.choice.square, spec.pad) : p.picture;
  p.tensor = rgb_to_tensor(pil_resize_bicubic(square, size, size));
  return p;
}

}  // namespace anitalker
