// facexlib's FaceRestoreHelper as GFPGANer.enhance drives it (spec/face-sr.md
// 1).  OpenCV does every warp, resize, blur and erosion with the reference's
// arguments, so the same OpenCV gives the same bytes; the arithmetic around
// them keeps numpy's types (float64 for the parse branch, float32 for the
// square mask) and its rounding (half to even for the network output,
// truncation for the final cast).
#include "face_restore.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <opencv2/calib3d.hpp>
#include <opencv2/imgproc.hpp>

#include "device.h"
#include "error.h"
#include "parsenet.h"
#include "retinaface.h"

namespace anitalker::face {

namespace {

// facexlib's 5-point template for a 512 face (crop_ratio 1, no shift).
constexpr double kTemplate512[5][2] = {
    {192.98138, 239.94708}, {318.90277, 240.19360}, {256.63416, 314.01935},
    {201.26117, 371.41043}, {313.08905, 371.15118},
};

// Label -> mask value (0 or 255); CelebAMask-HQ order as PSFRGAN uses it.
constexpr uint8_t kMaskColormap[19] = {0,   255, 255, 255, 255, 255, 255, 255, 255, 255,
                                       255, 255, 255, 255, 0,   255, 0,   0,   0};

void check_bgr8(const cv::Mat& m, const char* what) {
  if (m.empty() || m.type() != CV_8UC3)
    throw Error(Error::Kind::Usage, std::string(what) + ": expected a BGR uint8 image (CV_8UC3)");
}

// BGR uint8 -> (1,3,H,W) RGB; `unit(u)` maps a byte to [0,1] as float32.
template <class Unit>
at::Tensor to_input(const cv::Mat& bgr, Unit unit) {
  check_bgr8(bgr, "face input");
  const int h = bgr.rows, w = bgr.cols;
  at::Tensor t = at::empty({1, 3, h, w}, at::kFloat);
  float* p = t.data_ptr<float>();
  const size_t plane = static_cast<size_t>(h) * w;
  for (int y = 0; y < h; ++y) {
    const uint8_t* row = bgr.ptr<uint8_t>(y);
    for (int x = 0; x < w; ++x) {
      const size_t i = static_cast<size_t>(y) * w + x;
      for (int c = 0; c < 3; ++c) {
        // normalize(mean 0.5, std 0.5): (v - 0.5) / 0.5 in float32.
        const float v = unit(row[3 * x + 2 - c]);
        p[c * plane + i] = (v - 0.5f) / 0.5f;
      }
    }
  }
  return t;
}

}  // namespace

cv::Mat align_matrix(const Landmarks& lm, int face_size) {
  // The reference passes float32 landmarks and a float64 template.
  cv::Mat from(5, 2, CV_32F), to(5, 2, CV_64F);
  const double s = face_size / 512.0;
  for (int i = 0; i < 5; ++i) {
    from.at<float>(i, 0) = lm[i].x;
    from.at<float>(i, 1) = lm[i].y;
    to.at<double>(i, 0) = kTemplate512[i][0] * s;
    to.at<double>(i, 1) = kTemplate512[i][1] * s;
  }
  cv::Mat m = cv::estimateAffinePartial2D(from, to, cv::noArray(), cv::LMEDS);
  if (m.empty()) throw Error(Error::Kind::Runtime, "face alignment: no similarity transform fits the five landmarks");
  return m;
}

cv::Mat warp_face(const cv::Mat& bgr, const cv::Mat& affine, int face_size) {
  check_bgr8(bgr, "warp_face");
  cv::Mat crop;
  cv::warpAffine(bgr, crop, affine, cv::Size(face_size, face_size), cv::INTER_LINEAR, cv::BORDER_CONSTANT,
                 cv::Scalar(135, 133, 132));
  return crop;
}

cv::Mat paste_matrix(const cv::Mat& affine, double upscale) {
  cv::Mat inv;
  cv::invertAffineTransform(affine, inv);
  inv *= upscale;
  if (upscale > 1) inv.col(2) += 0.5 * upscale;
  return inv;
}

at::Tensor gfpgan_input(const cv::Mat& bgr) {
  return to_input(bgr, [](uint8_t u) { return static_cast<float>(u / 255.0); });
}

at::Tensor parsenet_input(const cv::Mat& bgr) {
  return to_input(bgr, [](uint8_t u) { return static_cast<float>(u) / 255.0f; });
}

cv::Mat restored_to_bgr(const at::Tensor& raw) {
  if (raw.dim() != 4 || raw.size(0) != 1 || raw.size(1) != 3)
    throw Error(Error::Kind::Usage, "restored_to_bgr: expected a [1, 3, H, W] tensor, got " + c10::str(raw.sizes()));
  const at::Tensor t = raw.detach().to(at::kCPU, at::kFloat).contiguous();
  const int h = static_cast<int>(t.size(2)), w = static_cast<int>(t.size(3));
  const float* p = t.data_ptr<float>();
  const size_t plane = static_cast<size_t>(h) * w;
  cv::Mat out(h, w, CV_8UC3);
  for (int y = 0; y < h; ++y) {
    uint8_t* row = out.ptr<uint8_t>(y);
    for (int x = 0; x < w; ++x) {
      const size_t i = static_cast<size_t>(y) * w + x;
      for (int c = 0; c < 3; ++c) {
        float v = std::min(std::max(p[c * plane + i], -1.0f), 1.0f);
        v = (v + 1.0f) / 2.0f;
        row[3 * x + 2 - c] = static_cast<uint8_t>(std::nearbyint(v * 255.0f));  // half to even
      }
    }
  }
  return out;
}

cv::Mat upscale_background(const cv::Mat& bgr, double upscale) {
  cv::Mat out;
  cv::resize(bgr, out, cv::Size(static_cast<int>(bgr.cols * upscale), static_cast<int>(bgr.rows * upscale)), 0, 0,
             cv::INTER_LANCZOS4);
  return out;
}

cv::Mat parse_mask(const cv::Mat& labels) {
  if (labels.empty() || labels.type() != CV_8UC1)
    throw Error(Error::Kind::Usage, "parse_mask: expected a uint8 label map");
  cv::Mat mask(labels.size(), CV_64F);
  for (int y = 0; y < labels.rows; ++y) {
    const uint8_t* l = labels.ptr<uint8_t>(y);
    double* m = mask.ptr<double>(y);
    for (int x = 0; x < labels.cols; ++x) m[x] = l[x] < 19 ? kMaskColormap[l[x]] : 0;
  }
  cv::Mat once;
  cv::GaussianBlur(mask, once, cv::Size(101, 101), 11);
  cv::GaussianBlur(once, mask, cv::Size(101, 101), 11);
  const int t = 10;  // remove the black borders
  mask.rowRange(0, std::min(t, mask.rows)).setTo(0);
  mask.rowRange(std::max(0, mask.rows - t), mask.rows).setTo(0);
  mask.colRange(0, std::min(t, mask.cols)).setTo(0);
  mask.colRange(std::max(0, mask.cols - t), mask.cols).setTo(0);
  return mask / 255.0;
}

at::Tensor parse_mask(const at::Tensor& labels) {
  if (labels.dim() != 2 || at::isFloatingType(labels.scalar_type()))
    throw Error(Error::Kind::Usage, "parse_mask: expected an (H, W) integer label map, got " + c10::str(labels.sizes()));
  const int64_t H = labels.size(0), W = labels.size(1);
  constexpr int64_t kTaps = 101, kHalf = kTaps / 2;
  if (H <= kHalf || W <= kHalf) throw Error(Error::Kind::Usage, "parse_mask: the label map is smaller than the blur");
  // The label table and the filter, made once per device (device_constant).
  const at::Tensor& table = device_constant("face::parse_mask labels", labels.device(), [] {
    at::Tensor t = at::zeros({20}, at::kDouble);
    for (int i = 0; i < 19; ++i) t[i] = static_cast<double>(kMaskColormap[i]);  // 19: any other label, 0
    return t;
  });
  const at::Tensor idx = labels.to(at::kLong).clamp(0, 19);
  at::Tensor m = table.index_select(0, idx.flatten()).view({1, 1, H, W});
  // cv::getGaussianKernel(101, 11, CV_64F): exp(-x^2 / (2 sigma^2)) over
  // x = i - 50, normalised in float64.
  const at::Tensor& kt = device_constant("face::parse_mask gaussian", labels.device(), [] {
    std::vector<double> k(kTaps);
    double sum = 0;
    for (int64_t i = 0; i < kTaps; ++i) sum += k[i] = std::exp(-0.5 * std::pow((i - kHalf) / 11.0, 2));
    at::Tensor t = at::empty({kTaps}, at::kDouble);
    for (int64_t i = 0; i < kTaps; ++i) t[i] = k[i] / sum;
    return t;
  });
  // Each 1-D pass as a product with a banded matrix, B (n + 100, n) with
  // B[j + i][j] = k[i]: the padded rows times B(W) correlate along the rows,
  // B(H)^T times that along the columns.  The same sums as a convolution,
  // in a GEMM's order; LibTorch has no fast float64 convolution on the CPU
  // (its im2col copies 250 MB a pass: 1-2 s a mask), and on a GPU this is
  // two small DGEMMs.
  auto band = [&](int64_t n) -> const at::Tensor& {
    return device_constant("face::parse_mask band " + std::to_string(n), labels.device(), [&kt, n] {
      at::Tensor b = at::zeros({n + 2 * kHalf, n}, at::kDouble);
      const at::Tensor k = kt.cpu();
      const double* kp = k.data_ptr<double>();
      double* bp = b.data_ptr<double>();
      for (int64_t j = 0; j < n; ++j)
        for (int64_t i = 0; i < kTaps; ++i) bp[(j + i) * n + j] = kp[i];
      return b;
    });
  };
  const at::Tensor& bw = band(W);
  const at::Tensor& bh = band(H);
  // Two blurs, each separable over the picture mirrored at its edges
  // (BORDER_REFLECT_101, GaussianBlur's default).
  for (int pass = 0; pass < 2; ++pass) {
    const at::Tensor padded = at::reflection_pad2d(m, {kHalf, kHalf, kHalf, kHalf}).view({H + 2 * kHalf, W + 2 * kHalf});
    m = at::matmul(bh.t(), at::matmul(padded, bw)).view({1, 1, H, W});
  }
  m = m.view({H, W});
  const int64_t t = 10;  // the black borders, as parse_mask(cv::Mat)
  m.slice(0, 0, std::min(t, H)).zero_();
  m.slice(0, std::max<int64_t>(0, H - t), H).zero_();
  m.slice(1, 0, std::min(t, W)).zero_();
  m.slice(1, std::max<int64_t>(0, W - t), W).zero_();
  return m.div_(255.0);
}

cv::Mat warp_mask(const cv::Mat& face_mask, const cv::Mat& inverse, cv::Size out_size) {
  // flags=3 (INTER_AREA) in the reference, which warpAffine runs as bilinear.
  cv::Mat soft;
  cv::warpAffine(face_mask, soft, inverse, out_size, cv::INTER_LINEAR, cv::BORDER_CONSTANT, cv::Scalar(0));
  return soft;
}

void paste_face(cv::Mat& canvas, const cv::Mat& restored, const cv::Mat& inverse, const cv::Mat& face_mask,
                double upscale) {
  check_bgr8(restored, "paste_face");
  if (canvas.type() != CV_64FC3) throw Error(Error::Kind::Usage, "paste_face: the canvas must be CV_64FC3");
  const cv::Size out = canvas.size();
  cv::Mat inv_restored;
  cv::warpAffine(restored, inv_restored, inverse, out);

  if (!face_mask.empty()) {
    // Parse branch (AniTalker's): float64 throughout.
    if (face_mask.type() != CV_64FC1) throw Error(Error::Kind::Usage, "paste_face: the face mask must be CV_64F");
    cv::Mat m = face_mask;
    if (m.size() != restored.size()) cv::resize(face_mask, m, restored.size());
    const cv::Mat soft = warp_mask(m, inverse, out);
    for (int y = 0; y < out.height; ++y) {
      const double* s = soft.ptr<double>(y);
      const uint8_t* f = inv_restored.ptr<uint8_t>(y);
      double* o = canvas.ptr<double>(y);
      for (int x = 0; x < out.width; ++x)
        for (int c = 0; c < 3; ++c) o[3 * x + c] = s[x] * f[3 * x + c] + (1 - s[x]) * o[3 * x + c];
    }
    return;
  }

  // Square soft mask: the warped face square, eroded, eroded again by a
  // margin that grows with the face, blurred; numpy computes it in float32.
  cv::Mat inv_mask, ero;
  cv::warpAffine(cv::Mat::ones(restored.size(), CV_32F), inv_mask, inverse, out);
  const int k = static_cast<int>(2 * upscale);
  cv::erode(inv_mask, ero, cv::Mat::ones(k, k, CV_8U));
  const int w_edge = static_cast<int>(std::sqrt(cv::sum(ero)[0])) / 20;
  cv::Mat center, soft;
  cv::erode(ero, center, cv::Mat::ones(2 * w_edge, 2 * w_edge, CV_8U));
  cv::GaussianBlur(center, soft, cv::Size(2 * w_edge + 1, 2 * w_edge + 1), 0);
  for (int y = 0; y < out.height; ++y) {
    const float* s = soft.ptr<float>(y);
    const float* e = ero.ptr<float>(y);
    const uint8_t* f = inv_restored.ptr<uint8_t>(y);
    double* o = canvas.ptr<double>(y);
    for (int x = 0; x < out.width; ++x)
      for (int c = 0; c < 3; ++c) {
        const float pasted = e[x] * static_cast<float>(f[3 * x + c]);
        const float a = s[x] * pasted;
        const float b = (1.0f - s[x]) * static_cast<float>(o[3 * x + c]);
        o[3 * x + c] = a + b;
      }
  }
}

cv::Mat canvas_to_bgr(const cv::Mat& canvas) {
  cv::Mat out(canvas.size(), CV_8UC3);
  for (int y = 0; y < canvas.rows; ++y) {
    const double* o = canvas.ptr<double>(y);
    uint8_t* r = out.ptr<uint8_t>(y);
    for (int x = 0; x < canvas.cols * 3; ++x)
      r[x] = static_cast<uint8_t>(std::min(std::max(static_cast<int>(o[x]), 0), 255));
  }
  return out;
}

namespace {
// GFPGANer.enhance's restore step around a raw forward: the face as bytes,
// or, when the forward fails (GFPGANer catches its RuntimeError), the crop.
template <class Forward>
cv::Mat restore_with(Forward&& forward, const cv::Mat& crop, at::Tensor* raw) {
  try {
    const at::Tensor out = forward();
    if (raw) *raw = out;
    return restored_to_bgr(out);
  } catch (const c10::Error&) {
    return crop.clone();
  }
}
}  // namespace

cv::Mat restore_face(const gfpgan::Model& model, const cv::Mat& crop, gfpgan::Noise noise, at::Tensor* raw) {
  return restore_with([&] { return model.forward(gfpgan_input(crop), noise); }, crop, raw);
}

std::shared_ptr<FaceBatcher> shared_faces(std::shared_ptr<const gfpgan::Model> model, size_t max_batch,
                                          std::chrono::microseconds max_delay) {
  const gfpgan::Model* key = model.get();
  return shared_batcher<FaceBatcher>(key, max_batch, max_delay, [&] {
    const bool gpu = model->generic();
    auto run = [model, gpu](const std::vector<const FaceJob*>& jobs) {
      std::vector<at::Tensor> out(jobs.size());
      std::vector<size_t> together;
      for (size_t i = 0; i < jobs.size(); ++i) {
        if (gpu && jobs[i]->noise != gfpgan::Noise::Random)
          together.push_back(i);
        else
          out[i] = model->forward(jobs[i]->input, jobs[i]->noise);
      }
      // One batch per noise mode (stored or none), in the order they came.
      for (gfpgan::Noise mode : {gfpgan::Noise::Stored, gfpgan::Noise::None}) {
        std::vector<at::Tensor> inputs;
        std::vector<size_t> where;
        for (size_t i : together)
          if (jobs[i]->noise == mode) {
            inputs.push_back(jobs[i]->input);
            where.push_back(i);
          }
        if (inputs.empty()) continue;
        if (inputs.size() == 1) {
          out[where[0]] = model->forward(inputs[0], mode);
          continue;
        }
        const at::Tensor y = model->forward(at::cat(inputs, 0), mode);
        for (size_t j = 0; j < where.size(); ++j) out[where[j]] = y.narrow(0, (int64_t)j, 1);
      }
      return out;
    };
    return std::make_shared<FaceBatcher>(run, max_batch, max_delay);
  });
}

namespace {
// A shared executor's run over requests that are network inputs: with
// `batch` (a GPU) the requests of one shape run as one call, in the order
// they came; else one at a time.  `forward` runs a (B, ...) input, `part(y,
// k)` is the k-th input's share of its output.
template <class Out, class Forward, class Part>
std::vector<Out> by_shape(const std::vector<const at::Tensor*>& jobs, bool batch, Forward&& forward, Part&& part) {
  std::vector<Out> out(jobs.size());
  std::vector<bool> done(jobs.size(), false);
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (done[i]) continue;
    std::vector<at::Tensor> inputs;
    std::vector<size_t> where;
    for (size_t j = i; j < jobs.size() && (batch || j == i); ++j)
      if (!done[j] && jobs[j]->sizes() == jobs[i]->sizes()) {
        inputs.push_back(*jobs[j]);
        where.push_back(j);
        done[j] = true;
      }
    const auto y = forward(inputs.size() == 1 ? inputs[0] : at::cat(inputs, 0));
    for (size_t k = 0; k < where.size(); ++k) out[where[k]] = part(y, static_cast<int64_t>(k));
  }
  return out;
}
}  // namespace

std::shared_ptr<ParseBatcher> shared_parses(std::shared_ptr<const parsenet::Model> parser, size_t max_batch,
                                            std::chrono::microseconds max_delay) {
  const parsenet::Model* key = parser.get();
  return shared_batcher<ParseBatcher>(key, max_batch, max_delay, [&] {
    auto run = [parser, gpu = parser->generic()](const std::vector<const at::Tensor*>& jobs) {
      return by_shape<at::Tensor>(
          jobs, gpu, [&](const at::Tensor& x) { return parser->label_map(x); },
          [](const at::Tensor& y, int64_t k) { return y.narrow(0, k, 1); });
    };
    return std::make_shared<ParseBatcher>(run, max_batch, max_delay);
  });
}

std::shared_ptr<DetectBatcher> shared_detections(std::shared_ptr<const retinaface::Model> detector, size_t max_batch,
                                                 std::chrono::microseconds max_delay) {
  const retinaface::Model* key = detector.get();
  return shared_batcher<DetectBatcher>(key, max_batch, max_delay, [&] {
    auto run = [detector, gpu = detector->generic()](const std::vector<const at::Tensor*>& jobs) {
      return by_shape<retinaface::Heads>(
          jobs, gpu, [&](const at::Tensor& x) { return detector->forward(x); },
          [](const retinaface::Heads& h, int64_t k) {
            return retinaface::Heads{h.loc.narrow(0, k, 1), h.conf.narrow(0, k, 1), h.landms.narrow(0, k, 1)};
          });
    };
    return std::make_shared<DetectBatcher>(run, max_batch, max_delay);
  });
}

at::Tensor FaceRestorer::label_map(const at::Tensor& input) const {
  return parse_executor_ ? parse_executor_->submit(input) : parser_->label_map(input);
}

at::Tensor FaceRestorer::restore_raw(const at::Tensor& input) const {
  if (!executor_) return model_->forward(input, options_.noise);
  return executor_->submit(FaceJob{input, options_.noise});
}

namespace {
// parse_labels through `labels_of` (ParseNet's (1,S,S) label map of an input).
template <class LabelMap>
cv::Mat parse_labels_with(LabelMap&& labels_of, const cv::Mat& restored) {
  cv::Mat face = restored;
  if (face.size() != cv::Size(512, 512)) cv::resize(restored, face, cv::Size(512, 512), 0, 0, cv::INTER_LINEAR);
  const at::Tensor l = labels_of(parsenet_input(face))[0].to(at::kCPU, at::kByte).contiguous();
  return cv::Mat(face.size(), CV_8UC1, l.data_ptr<uint8_t>()).clone();
}
}  // namespace

cv::Mat parse_labels(const parsenet::Model& parser, const cv::Mat& restored) {
  return parse_labels_with([&](const at::Tensor& x) { return parser.label_map(x); }, restored);
}

size_t result_working_memory(int64_t width, int64_t height) {
  // In double, saturated: sizes from a header (up to 2^32 a side, times
  // --upscale) overflow 64 bits.
  const double bytes = static_cast<double>(width) * static_cast<double>(height) * 32 + static_cast<double>(size_t{1} << 30);
  return bytes < 1.8e19 ? static_cast<size_t>(bytes) : SIZE_MAX;
}

FaceRestorer::FaceRestorer(std::shared_ptr<const gfpgan::Model> model,
                           std::shared_ptr<const retinaface::Model> detector,
                           std::shared_ptr<const parsenet::Model> parser, Options options)
    : model_(std::move(model)), detector_(std::move(detector)), parser_(std::move(parser)), options_(options) {
  if (!model_) throw Error(Error::Kind::Usage, "face restoration: no GFPGAN model");
  if (!(options_.upscale >= 1)) throw Error(Error::Kind::Usage, "face restoration: upscale must be >= 1");
  on_device_ = parser_ && parser_->generic() && model_->size() == 512;
}

std::vector<Face> select_faces(const at::Tensor& detections, cv::Size image, const Options& options) {
  if (detections.dim() != 2 || detections.size(1) != 15)
    throw Error(Error::Kind::Usage,
                "select_faces: expected (K, 15) detection rows, got " + c10::str(detections.sizes()));
  const at::Tensor rows = detections.to(at::kCPU, at::kFloat).contiguous();
  const float* r = rows.data_ptr<float>();
  std::vector<Face> out;
  std::vector<double> center_dist;
  const double cx = image.width / 2.0, cy = image.height / 2.0;
  for (int64_t i = 0; i < rows.size(0); ++i, r += 15) {
    // Side faces and tiny faces: eye distance from landmarks 0 and 1.
    if (std::hypot(r[5] - r[7], r[6] - r[8]) < options.eye_dist_threshold) continue;
    Face f;
    f.box = cv::Rect2f(r[0], r[1], r[2] - r[0], r[3] - r[1]);
    f.score = r[4];
    for (int k = 0; k < 5; ++k) f.landmarks[k] = cv::Point2f(r[5 + 2 * k], r[6 + 2 * k]);
    out.push_back(f);
    // facexlib's get_center_face: distance of the box centre to the image centre.
    center_dist.push_back(std::hypot((r[0] + r[2]) / 2.0 - cx, (r[1] + r[3]) / 2.0 - cy));
  }
  if (options.only_center_face && out.size() > 1) {
    // The first of the nearest, as list.index(min(...)).
    const size_t best = std::min_element(center_dist.begin(), center_dist.end()) - center_dist.begin();
    out = {out[best]};
  }
  return out;
}

std::vector<Face> FaceRestorer::faces(const cv::Mat& bgr) const {
  if (!detector_)
    throw Error(Error::Kind::Usage, "face restoration: no detector: give the landmarks or use aligned mode");
  at::Tensor rows;
  if (detect_executor_) {
    check_bgr8(bgr, "face detection");
    const retinaface::Heads h = detect_executor_->submit(
        detector_->generic() ? retinaface::to_input(bgr, detector_->device()) : retinaface::to_input(bgr));
    rows = retinaface::decode(h, retinaface::priors(bgr.rows, bgr.cols), bgr.rows, bgr.cols, options_.conf_threshold,
                              options_.nms_threshold);
  } else {
    rows = detector_->detect(bgr, options_.conf_threshold, options_.nms_threshold);
  }
  std::vector<Face> found = select_faces(rows, bgr.size(), options_);
  if (options_.max_faces > 0 && found.size() > static_cast<size_t>(options_.max_faces)) {
    // The largest ones, in the detector's order otherwise.
    std::vector<size_t> order(found.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return found[a].box.area() > found[b].box.area(); });
    order.resize(static_cast<size_t>(options_.max_faces));
    std::sort(order.begin(), order.end());
    std::vector<Face> kept;
    for (size_t i : order) kept.push_back(found[i]);
    found = std::move(kept);
  }
  return found;
}

cv::Mat FaceRestorer::enhance(const cv::Mat& bgr) const {
  std::vector<Landmarks> lms;
  for (const Face& f : faces(bgr)) lms.push_back(f.landmarks);
  return enhance(bgr, lms);
}

cv::Mat FaceRestorer::enhance(const cv::Mat& bgr, const std::vector<Landmarks>& faces, at::Tensor* first_raw) const {
  return paste(bgr, faces, first_raw, nullptr, false);
}

cv::Mat FaceRestorer::paste(const cv::Mat& bgr, const std::vector<Landmarks>& faces, at::Tensor* first_raw,
                            Masks* masks, bool reuse) const {
  check_bgr8(bgr, "face restoration");
  if (on_device_) return paste_on_device(bgr, faces, first_raw, masks, reuse);
  if (masks && !reuse) *masks = Masks{};
  const int size = model_->size();
  cv::Mat canvas;
  upscale_background(bgr, options_.upscale).convertTo(canvas, CV_64FC3);
  // The reference restores every face, then pastes them in order.  One face
  // at a time gives the same result: every crop is taken from the input
  // frame, and only GFPGAN draws random numbers, in the same order.
  for (size_t i = 0; i < faces.size(); ++i) {
    const cv::Mat affine = align_matrix(faces[i], size);
    const cv::Mat crop = warp_face(bgr, affine, size);
    const cv::Mat restored =
        restore_with([&] { return restore_raw(gfpgan_input(crop)); }, crop, i == 0 ? first_raw : nullptr);
    cv::Mat mask;
    if (parser_ && reuse && masks && i < masks->cpu.size()) {
      mask = masks->cpu[i];
    } else if (parser_) {
      mask = parse_mask(parse_labels_with([&](const at::Tensor& x) { return label_map(x); }, restored));
      if (masks && !reuse) masks->cpu.push_back(mask);
    }
    paste_face(canvas, restored, paste_matrix(affine, options_.upscale), mask, options_.upscale);
  }
  return canvas_to_bgr(canvas);
}

namespace {
// A BGR uint8 frame to an (H, W, 3) tensor on `device` (one copy), and back.
at::Tensor frame_to(const cv::Mat& bgr, c10::Device device) { return image_tensor(bgr).to(device).contiguous(); }
cv::Mat frame_from(const at::Tensor& bytes) {
  const at::Tensor t = bytes.to(at::kCPU).contiguous();
  return cv::Mat(static_cast<int>(t.size(0)), static_cast<int>(t.size(1)), CV_8UC3, t.data_ptr<uint8_t>()).clone();
}
}  // namespace

cv::Mat FaceRestorer::paste_on_device(const cv::Mat& bgr, const std::vector<Landmarks>& faces, at::Tensor* first_raw,
                                      Masks* masks, bool reuse) const {
  if (masks && !reuse) *masks = Masks{};
  const c10::Device device = parser_->device();
  const int size = model_->size();
  const cv::Size out(static_cast<int>(bgr.cols * options_.upscale), static_cast<int>(bgr.rows * options_.upscale));
  const at::Tensor frame = frame_to(bgr, device);  // one copy in
  at::Tensor canvas = resize_lanczos4(frame, out).to(at::kDouble);
  for (size_t i = 0; i < faces.size(); ++i) {
    const cv::Mat affine = align_matrix(faces[i], size);
    const at::Tensor crop = warp_affine(frame, affine, cv::Size(size, size), cv::Scalar(135, 133, 132));
    at::Tensor restored;
    try {
      const at::Tensor raw = restore_raw(gfpgan_input(crop));
      if (i == 0 && first_raw) *first_raw = raw;
      restored = restored_bytes(raw).to(device);
    } catch (const c10::Error&) {
      restored = crop;  // GFPGANer keeps the crop when the forward fails
    }
    at::Tensor mask;
    if (reuse && masks && i < masks->device.size()) {
      mask = masks->device[i];
    } else {
      mask = parse_mask(label_map(parsenet_input(restored))[0]);
      if (masks && !reuse) masks->device.push_back(mask);
    }
    const cv::Mat inverse = paste_matrix(affine, options_.upscale);
    const at::Tensor soft = warp_affine(mask, inverse, out).unsqueeze(2);
    const at::Tensor face = warp_affine(restored, inverse, out).to(at::kDouble);
    // s * face + (1 - s) * canvas in float64, as paste_face.
    canvas = soft * face + (1 - soft) * canvas;
  }
  // One copy out, truncated as astype(uint8).
  return frame_from(canvas.to(at::kInt).clamp_(0, 255).to(at::kByte));
}

cv::Mat FaceRestorer::frame(const cv::Mat& bgr, FrameMode mode, size_t* faces, Track* track, int detect_every,
                            int parse_every) const {
  const cv::Size out_size(static_cast<int>(std::lround(bgr.cols * options_.upscale)),
                          static_cast<int>(std::lround(bgr.rows * options_.upscale)));
  size_t n = 0;
  cv::Mat result;
  if (mode == FrameMode::Degraded) {
    // On the device where the paste runs there (the same bytes).
    const cv::Size up(static_cast<int>(bgr.cols * options_.upscale), static_cast<int>(bgr.rows * options_.upscale));
    result = on_device_ ? frame_from(resize_lanczos4(frame_to(bgr, parser_->device()), up))
                        : upscale_background(bgr, options_.upscale);
  } else if (mode == FrameMode::Aligned) {
    const cv::Mat restored = restore_aligned(bgr);
    n = 1;
    if (restored.size() == out_size)
      result = restored;
    else
      cv::resize(restored, result, out_size, 0, 0, out_size.width > restored.cols ? cv::INTER_LANCZOS4 : cv::INTER_AREA);
  } else {
    std::vector<Landmarks> lms;
    if (track && detect_every > 1 && track->age >= 0 && track->age + 1 < detect_every && track->size == bgr.size()) {
      lms = track->faces;
      track->age++;
    } else {
      for (const Face& f : this->faces(bgr)) lms.push_back(f.landmarks);
      if (track) {
        if (track->size != bgr.size()) track->masks = Masks{};
        track->faces = lms;
        track->age = 0;
        track->size = bgr.size();
      }
    }
    n = lms.size();
    Masks* masks = track && parser_ && parse_every > 1 ? &track->masks : nullptr;
    const bool reuse =
        masks && masks->age >= 0 && masks->age + 1 < parse_every && masks->count() == lms.size() && !lms.empty();
    result = paste(bgr, lms, nullptr, masks, reuse);
    if (masks)
      masks->age = reuse ? masks->age + 1 : 0;
    else if (track)
      track->masks = Masks{};  // parse_every back at 1: none kept to reuse later
  }
  if (result.size() != out_size || result.type() != CV_8UC3)
    throw Error(Error::Kind::Runtime, "face restoration returned " + std::to_string(result.cols) + "x" +
                                          std::to_string(result.rows) + " for a " + std::to_string(out_size.width) +
                                          "x" + std::to_string(out_size.height) + " frame");
  if (faces) *faces = n;
  return result;
}

cv::Mat FaceRestorer::restore_aligned(const cv::Mat& bgr, at::Tensor* raw) const {
  check_bgr8(bgr, "face restoration");
  const int size = model_->size();
  cv::Mat face = bgr;
  if (face.size() != cv::Size(size, size)) cv::resize(bgr, face, cv::Size(size, size), 0, 0, cv::INTER_LINEAR);
  return restore_with([&] { return restore_raw(gfpgan_input(face)); }, face, raw);
}

}  // namespace anitalker::face
