// Stage 2 of AniTalker: the motion generator (DiffusionPredictor denoiser,
// espnet Conformer, LSTM variance adapter) and its DDIM sampler
// (spec/motion.md).  Widths come from the checkpoint's shapes, so the
// released stage-2 checkpoints and the narrow fixtures run the same code.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "device.h"

namespace anitalker {
class StateDict;
}

namespace anitalker::motion {

enum class Variant { HubertAudioOnly, HubertPoseOnly, HubertFullControl, MfccPoseOnly, MfccFullControl };

// "hubert_audio_only", ... (the original's infer_type names).
std::string variant_name(Variant v);

// What does not depend on x_t or t: computed once per sample run (spec 3.1, 3.3, 3.4).
struct Condition {
  at::Tensor speech;    // (1,T,S) audio branch output, before the variance adapter
  at::Tensor adjusted;  // (1,T,S) after the variance adapter
  at::Tensor pose;      // (1,T,3) predicted (or given, with the control flag)
  at::Tensor location;  // (1,T,1) likewise (zeros where the variant has none)
  at::Tensor scale;     // (1,T,1) likewise
  at::Tensor c_dir;     // (1,P)
  at::Tensor c_start;   // (1,P)
  // Per decoder block: linear_pos of the relative positional table (1,2T-1,D).
  std::vector<at::Tensor> decoder_positions;
};

// Intermediate results of one denoiser call, for tests.
struct Taps {
  at::Tensor concat;   // (1,T,D) decoder input
  at::Tensor decoder;  // (1,T,D) decoder output
};

// Called after each DDIM step with the steps done and their count (progress
// of a long run); from the thread that runs the sampling.
using StepCallback = std::function<void(int done, int total)>;

struct Trajectory {
  std::vector<at::Tensor> x;        // x after each step
  std::vector<at::Tensor> pred_x0;  // clipped x0 prediction at each step
  bool record = true;               // false: on_step alone, nothing kept
  StepCallback on_step;             // if set, after each step
};

class Model {
 public:
  // Reads the "ema_model.*" weights of a stage-2 checkpoint (spec 1, 2).
  // Throws anitalker::Error naming the file and key for a missing or
  // wrong-shaped tensor.
  // The weights are float32 (dtype: another floating type for the whole
  // network).
  // precision Bf16 (a CPU with AVX512_BF16, check_precision): the
  // denoiser's conformer blocks (their linear layers and pointwise
  // convolutions: the work of every DDIM step) in bfloat16 with float32
  // sums; the rest float32.
  Model(const StateDict& sd, c10::Device device, at::ScalarType dtype = at::kFloat,
        Precision precision = Precision::Fp32);

  // One process-wide copy per (file, device, precision).
  static std::shared_ptr<const Model> load(const std::string& path, c10::Device device,
                                           Precision precision = Precision::Fp32);
  // Same, and throws a Usage error if the file is not of the expected variant.
  static std::shared_ptr<const Model> load(const std::string& path, c10::Device device, Variant expected,
                                           Precision precision = Precision::Fp32);
  Precision precision() const { return precision_; }

  Variant variant() const { return variant_; }
  bool hubert() const { return variant_ == Variant::HubertAudioOnly || variant_ == Variant::HubertPoseOnly || variant_ == Variant::HubertFullControl; }
  bool has_pose() const { return variant_ != Variant::HubertAudioOnly; }
  bool has_location() const { return variant_ == Variant::HubertFullControl || variant_ == Variant::MfccFullControl; }
  int motion_dim() const { return motion_dim_; }
  int start_dim() const { return start_dim_; }
  int speech_dim() const { return speech_dim_; }
  int decoder_dim() const { return decoder_dim_; }
  int audio_dim() const { return audio_dim_; }  // hubert feature dim H or mfcc dim
  int hubert_layers() const { return hubert_layers_; }
  c10::Device device() const { return device_; }
  // This model's number in the process (new_model_id, device.h).
  uint64_t model_id() const { return id_; }
  // The warm-ups this model has run (WarmUps, device.h).
  const WarmUps& warm_ups() const { return warm_ups_; }
  // Uniform draws of the original's weight initialisation (spec 7 step 2)
  // and the element count of its x_T buffer (step 3).
  int64_t init_draws() const { return init_draws_; }
  int64_t xT_numel() const { return xT_numel_; }

  // start (1,start_dim), direction (1,M); audio (1,L,2T,H) for hubert
  // variants or (1,4T,39) for mfcc; pose (1,T,3), location/scale (1,T,1)
  // used only with control_flag on (may be undefined otherwise).
  Condition condition(const at::Tensor& start, const at::Tensor& direction, const at::Tensor& audio, bool control_flag,
                      const at::Tensor& pose = {}, const at::Tensor& location = {}, const at::Tensor& scale = {}) const;

  // eps = f(x_t, t) (spec 3.4); t is the raw original-scale timestep.
  at::Tensor denoise(const Condition& c, const at::Tensor& x_t, double t, Taps* taps = nullptr) const;

  // DDIM with eta 0 over `steps` respaced steps from noise (1,T,M) (spec 4).
  at::Tensor sample(const Condition& c, const at::Tensor& noise, int steps, Trajectory* traj = nullptr) const;
  // The same with the first C frames held to `known` (1,C,M) at every step:
  // after each step (and before the first) they are replaced by
  // sqrt(abar) known + sqrt(1 - abar) noise at the level reached, the
  // deterministic DDIM path of x0 = known, and the result holds `known`
  // exactly.  For windowed streaming (motion_driver.h).
  at::Tensor sample(const Condition& c, const at::Tensor& noise, int steps, const at::Tensor& known,
                    Trajectory* traj = nullptr) const;

  // The runs of several streams' windows as one batch (anitalkermotion's
  // max-batch): their conditions, noise and known frames stacked along the
  // batch, one denoiser pass a step for all.  Every call must have the same
  // T and known-frame count C (a Usage error otherwise).  Result i, (1,T,M),
  // is what sample(call i) gives alone: the same code, and bit for bit
  // where batch_exact().
  struct SampleCall {
    const Condition* c = nullptr;
    at::Tensor noise;  // (1,T,M)
    at::Tensor known;  // (1,C,M), or undefined
    StepCallback on_step = nullptr;  // progress of this call's run, if set
  };
  std::vector<at::Tensor> sample_batch(const std::vector<SampleCall>& calls, int steps) const;
  // Whether a run gives the same bits in such a batch as alone on this
  // machine: measured once with the model's own denoiser on random inputs
  // (1, 7 and 41 frames: the attention's loops and its BLAS products), alone
  // and between two others.  The released sizes on AVX-512 kernels: yes (fp32
  // and bf16); the tiny test fixtures: no.
  bool batch_exact() const;

  // The demo's noisyT for --seed (spec 7): bit-exact with the reference.
  at::Tensor seed_noise(uint64_t seed, int64_t frames) const;

 private:
  struct Weights;
  std::shared_ptr<const Weights> w_;
  c10::Device device_;
  uint64_t id_ = new_model_id();
  WarmUps warm_ups_;
  at::ScalarType dtype_;
  Precision precision_ = Precision::Fp32;
  Variant variant_ = Variant::HubertAudioOnly;
  int motion_dim_ = 0, start_dim_ = 0, speech_dim_ = 0, decoder_dim_ = 0, audio_dim_ = 0, hubert_layers_ = 0;
  int64_t init_draws_ = 0, xT_numel_ = 0;
  mutable std::once_flag batch_once_;
  mutable bool batch_exact_ = false;
};

// The used timesteps of space_timesteps(1000, "ddim<steps>"), ascending;
// throws a Usage error when no integer stride yields exactly `steps`.
std::vector<int64_t> ddim_timesteps(int steps);
// Whether an integer stride yields exactly `steps` (ddim_timesteps does not
// throw for it): 2 to 32, then 33, 34, 35, 36, 38, ..., 500, 1000.
bool ddim_steps_work(int steps);

}  // namespace anitalker::motion
