// RetinaFace with a ResNet-50 backbone (facexlib's retinaface_resnet50,
// detection_Resnet50_Final.pth): face boxes and five landmarks for face
// restoration (spec/face-sr.md 3).  The network, its priors, the decoding and
// NMS; widths are read from the checkpoint's shapes.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <memory>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

namespace anitalker {
class StateDict;
}

namespace anitalker::retinaface {

// The three heads over all anchors (N = sum over strides 8, 16, 32 of
// 2 * ceil(H/s) * ceil(W/s)), batch first.
struct Heads {
  at::Tensor loc;     // (B, N, 4) box regressions
  at::Tensor conf;    // (B, N, 2) class probabilities (softmax applied), column 1 = face
  at::Tensor landms;  // (B, N, 10) landmark regressions
};

// The anchors (N, 4) float32 (cx, cy, w, h), normalised to the image (spec 3.3).
at::Tensor priors(int height, int width);

// Decoding, threshold (strict >), sort by score and NMS of one image's heads
// (batch element 0) -> (K, 15) float32 rows [x1, y1, x2, y2, score,
// lx0, ly0, ..., lx4, ly4] in pixels, by descending score (spec 3.4).
at::Tensor decode(const Heads& heads, const at::Tensor& priors, int height, int width, float conf_threshold,
                  double nms_threshold);

// A BGR uint8 image -> (1, 3, H, W) float32 minus (104, 117, 123) (spec 3.1).
at::Tensor to_input(const cv::Mat& bgr);
// The same made on `device` from the bytes (one copy of the image, not of
// its float32 planes; a GPU's way); the same values.
at::Tensor to_input(const cv::Mat& bgr, c10::Device device);

class Model {
 public:
  // Reads a plain state dict, with or without the "module." prefix and
  // num_batches_tracked.  Throws anitalker::Error naming the file, key and
  // expected shape.  The weights are float32 (dtype: another floating type
  // for the whole network, as the test `weights` runs it in float64).
  Model(const StateDict& sd, c10::Device device, at::ScalarType dtype = at::kFloat);

  // One process-wide copy per (file, device).
  static std::shared_ptr<const Model> load(const std::string& path, c10::Device device);

  c10::Device device() const { return device_; }
  // Whether it runs as on a GPU (a GPU, or the CPU with ANITALKER_GENERIC=1
  // when it was made: device.h generic_path): RetinaFace has one path, so
  // this only decides whether shared_detections batches.
  bool generic() const { return generic_; }
  const std::vector<std::string>& unused_keys() const { return unused_; }

  // x: (B, 3, H, W) from to_input -> the heads (on the CPU).
  Heads forward(const at::Tensor& x) const;

  // The whole detector on a BGR uint8 image at its own size: (K, 15) rows.
  at::Tensor detect(const cv::Mat& bgr, float conf_threshold = 0.97f, double nms_threshold = 0.4) const;

 private:
  struct Weights;
  std::shared_ptr<const Weights> w_;
  c10::Device device_;
  at::ScalarType dtype_;
  bool generic_ = false;
  std::vector<std::string> unused_;
};

}  // namespace anitalker::retinaface
