// GFPGAN v1.4 ("clean" architecture, GFPGANv1Clean) for face restoration
// (spec/face-sr.md 2).  Widths, the number of levels and the style size come
// from the checkpoint's shapes, so the released GFPGANv1.4.pth and the narrow
// fixture run through the same code.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "device.h"

namespace anitalker {
class StateDict;
}

namespace anitalker::gfpgan {

// The per-layer noise of the StyleGAN2 decoder (spec 2.6).  The reference's
// enhance() draws fresh N(0,1) noise on every call (Random); the checkpoint's
// buffers noise0..14 give repeatable output (Stored, the default); None adds
// no noise at all.
enum class Noise { Stored, Random, None };

// "stored" / "random" / "none"; throws a Usage error for anything else.
Noise parse_noise(const std::string& name);
const char* noise_name(Noise n);

class Model {
 public:
  // Reads {'params_ema': state dict} (the released layout), {'params': ...}
  // or a plain state dict.  Throws anitalker::Error naming the file, key and
  // expected shape for a missing or wrong-shaped tensor.  style_mlp.* and the
  // U-Net's toRGB.* are in the file but not used by inference: ignored.
  // The weights are float32 (dtype: another floating type for the whole
  // network).  precision Bf16 (a CPU with AVX512_BF16, check_precision):
  // every convolution (the U-Net's, the SFT conditions', the modulated ones)
  // runs in bfloat16 with float32 accumulation, on weights rounded once at
  // load (the modulated ones after modulation, per call); biases,
  // activations, resizes, the style code and the output stay float32.
  // precision Fp16 (CUDA): the same convolutions in float16.  A GPU (or
  // ANITALKER_GENERIC=1, device.h generic_path) runs NCHW with nothing
  // packed, or with nhwc (default: ANITALKER_CHANNELS_LAST=1 in the
  // environment) channels-last: activations and convolution weights NHWC,
  // as cuDNN's tensor-core kernels take them.
  Model(const StateDict& sd, c10::Device device, at::ScalarType dtype = at::kFloat,
        Precision precision = Precision::Fp32, std::optional<bool> nhwc = std::nullopt);

  // One process-wide copy per (file, device, precision).
  static std::shared_ptr<const Model> load(const std::string& path, c10::Device device,
                                           Precision precision = Precision::Fp32);
  Precision precision() const { return precision_; }

  int size() const { return size_; }            // input and output size (512)
  int style_dim() const { return style_dim_; }  // num_style_feat (512)
  int num_latents() const { return num_latents_; }
  c10::Device device() const { return device_; }
  // This model's number in the process (new_model_id, device.h).
  uint64_t model_id() const { return id_; }
  // The warm-ups this model has run (WarmUps, device.h).
  const WarmUps& warm_ups() const { return warm_ups_; }
  // Whether it runs the device-independent path (a GPU's, or the CPU's with
  // ANITALKER_GENERIC=1 when it was made): a batch of faces is then one
  // pass; on the CPU's own path each face runs alone anyway.
  bool generic() const { return generic_; }
  // Whether the device-independent path runs channels-last (the constructor's nhwc).
  bool channels_last() const { return nhwc_; }
  // Keys of the checkpoint that inference does not use.
  const std::vector<std::string>& unused_keys() const { return unused_; }

  // x: (B,3,S,S) RGB in [-1,1] -> the restored image (B,3,S,S) RGB, nominally
  // in [-1,1] but not clamped (spec 2.5).  Random noise comes from LibTorch's
  // default generator, drawn in the reference's order.
  at::Tensor forward(const at::Tensor& x, Noise noise = Noise::Stored) const;

 private:
  struct Weights;
  std::shared_ptr<const Weights> w_;
  c10::Device device_;
  uint64_t id_ = new_model_id();
  WarmUps warm_ups_;
  at::ScalarType dtype_;
  Precision precision_ = Precision::Fp32;
  bool generic_ = false;
  bool nhwc_ = false;
  int size_ = 0, style_dim_ = 0, num_latents_ = 0;
  std::vector<std::string> unused_;
};

// One grey face through the network, thrown away (stored noise: no random
// draws), so that the first real face does not pay the network's one-off
// set-up: on the CPU oneDNN's primitives and the weights packed, or
// transformed for Winograd, per convolution (about 2 s of a first face's
// 3 s at full size on 2 cores); on a GPU its kernels' selection.  Once for
// each model (WarmUps, lib/device.h); returns whether it ran.
bool warm_up(const Model& model);

}  // namespace anitalker::gfpgan
