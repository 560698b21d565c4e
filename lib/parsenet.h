// ParseNet (facexlib's face parser, parsing_parsenet.pth) for the paste
// mask of face restoration (spec/face-sr.md 4).  Depths and widths come from
// the checkpoint's keys and shapes, so the released file and the narrow
// fixture run through the same code.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <memory>
#include <string>
#include <vector>

#include "device.h"

namespace anitalker {
class StateDict;
}

namespace anitalker::parsenet {

class Model {
 public:
  // Reads a plain state dict (num_batches_tracked optional).  Throws
  // anitalker::Error naming the file, key and expected shape.  The weights
  // are float32 (dtype: another floating type for the whole network).
  Model(const StateDict& sd, c10::Device device, at::ScalarType dtype = at::kFloat);

  // One process-wide copy per (file, device).
  static std::shared_ptr<const Model> load(const std::string& path, c10::Device device);

  int num_classes() const { return num_classes_; }
  int down_steps() const { return down_steps_; }  // 4 for 512 -> 32
  c10::Device device() const { return device_; }
  // This model's number in the process (new_model_id, device.h).
  uint64_t model_id() const { return id_; }
  // The warm-ups this model has run (WarmUps, device.h).
  const WarmUps& warm_ups() const { return warm_ups_; }
  // Whether it runs the device-independent path (a GPU's, or the CPU's with
  // ANITALKER_GENERIC=1 when it was made: device.h generic_path).
  bool generic() const { return generic_; }
  // Keys inference does not use (out_img_conv, num_batches_tracked).
  const std::vector<std::string>& unused_keys() const { return unused_; }

  // x: (B,3,H,W) RGB in [-1,1], H and W multiples of 2^down_steps -> the
  // parsing logits (B,classes,H,W) (the first output; the image head is
  // not computed), channels-last on the CPU in float32.
  at::Tensor forward(const at::Tensor& x) const;

  // argmax over the classes, ties to the lowest index: (B,H,W) uint8 on the CPU.
  at::Tensor labels(const at::Tensor& x) const;
  // The same as int64 on the model's device (no copy).
  at::Tensor label_map(const at::Tensor& x) const;

 private:
  struct Weights;
  std::shared_ptr<const Weights> w_;
  c10::Device device_;
  uint64_t id_ = new_model_id();
  WarmUps warm_ups_;
  at::ScalarType dtype_;
  int num_classes_ = 0, down_steps_ = 0;
  bool generic_ = false;
  std::vector<std::string> unused_;
};

// One grey 512x512 face (the size the face restorer parses) through the
// network, thrown away, so that the first real face does not pay its one-off
// set-up (oneDNN's primitives, weights packed or transformed per
// convolution: about 1.5 s at full size on 2 cores).  Once for each model
// (WarmUps, lib/device.h); returns whether it ran.
bool warm_up(const Model& model);

}  // namespace anitalker::parsenet
