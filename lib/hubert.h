// HuBERT (chinese-hubert-large, Hugging Face layout) as the AniTalker demo
// runs it: waveform normalisation, conv feature encoder, projection,
// positional conv, stable-layer-norm transformer; all hidden states
// (spec/audio-features.md 1).  Configured from config.json; widths are
// checked against the tensors.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "batcher.h"
#include "device.h"
#include "hubert_config.h"

namespace anitalker {
class StateDict;
}

namespace anitalker::hubert {

// Streaming with a cached left context: what a window keeps of the frames
// it sends, for the next windows to attend to instead of encoding their
// audio again.  Per layer the keys and values of the last frames kept, and
// the positional convolution's input rows of the last of them.
struct Cache {
  std::vector<at::Tensor> k, v;  // per layer [C, H]
  at::Tensor pos;                // [P, H], P <= pos_kernel / 2
  int64_t frames() const { return k.empty() ? 0 : k.front().size(0); }
  void clear() { k.clear(), v.clear(), pos = at::Tensor(); }
};

class Model {
 public:
  // The weights are float32 (dtype: another floating type for the whole
  // network).
  // precision Bf16 (a CPU with AVX512_BF16, check_precision): the
  // transformer's linear layers (q/k/v, output, feed-forward: nearly all the
  // work) in bfloat16 with float32 sums; the rest float32.
  Model(const Config& config, const StateDict& sd, c10::Device device, at::ScalarType dtype = at::kFloat,
        Precision precision = Precision::Fp32);
  // dir holds config.json and pytorch_model.bin (or model.safetensors).
  // One process-wide copy per (folder, device, precision).
  static std::shared_ptr<const Model> load(const std::string& dir, c10::Device device,
                                           Precision precision = Precision::Fp32);
  Precision precision() const { return precision_; }

  const Config& config() const { return cfg_; }
  int num_states() const { return cfg_.layers + 1; }
  int hidden() const { return cfg_.hidden; }
  c10::Device device() const { return device_; }
  // This model's number in the process (new_model_id, device.h).
  uint64_t model_id() const { return id_; }
  // The warm-ups this model has run (WarmUps, device.h).
  const WarmUps& warm_ups() const { return warm_ups_; }

  // Zero mean, unit population variance, eps 1e-7 inside the sqrt (spec 1.1).
  static at::Tensor normalize(const at::Tensor& wave);

  // Intermediates, for tests: conv encoder output [T, C], projection [T, H],
  // positional conv after GELU [T, H].
  struct Taps {
    at::Tensor conv, projected, pos_conv;
  };
  // wave: [N] float32 at 16 kHz, not normalised -> [layers+1, T, H] float32
  // on the CPU.  Throws a Usage error when N gives no frame.
  // before_layer, if set, is called before each transformer layer; it may
  // throw to stop the pass (a flush while a long utterance is encoded).
  at::Tensor hidden_states(const at::Tensor& wave, Taps* taps = nullptr,
                           const std::function<void()>& before_layer = nullptr) const;

  // The hidden states of the frames of `normalized` (audio already
  // normalised, whose frames are all new), every row attending also to the
  // cached frames before them and the positional convolution reading the
  // cached rows on the left, as if those frames' audio came first.  The
  // first `keep` frames then join the cache (the rest are look-ahead, to be
  // encoded again), which holds the last `context` frames.
  // -> [layers+1, T, H] float32 on the CPU.
  at::Tensor hidden_states_cached(const at::Tensor& normalized, int64_t keep, int64_t context, Cache* cache) const;

  // The same for the windows of several streams in one pass: their rows go
  // through each linear layer as one product (the weights read once), the
  // attention and the positional convolution per stream, each with its own
  // cache.  Result i is what hidden_states_cached gives for call i alone
  // (the same code; bit for bit where the products treat rows independently:
  // rows_independent(), lib/kernels.h).
  struct CachedCall {
    at::Tensor normalized;
    int64_t keep = 0, context = 0;
    Cache* cache = nullptr;
  };
  std::vector<at::Tensor> hidden_states_cached(const std::vector<CachedCall>& calls) const;
  // Whether a call's rows come out of such a pass with the bits they have
  // alone: measured once on this machine with the network's own first
  // layer (its products, layer norms and GELU) on random rows alone and
  // among others.  AVX-512 kernels: yes; AVX2 ones: no.
  bool rows_independent() const;

 private:
  struct Weights;
  // The conv encoder over normalised audio: [C, T] channel-major.
  at::Tensor conv_features(const at::Tensor& normalized) const;
  // The same over one piece of audio at once.
  at::Tensor conv_layers(const at::Tensor& normalized) const;
  // The positional convolution (spec 1.4: pad K/2 both sides, the last
  // output dropped when K is even) over time-major rows x [rows, H], after
  // its GELU, for the rows from `first` on: [rows - first, H].
  at::Tensor positional(const at::Tensor& x, int64_t first) const;
  Config cfg_;
  std::shared_ptr<const Weights> w_;
  c10::Device device_;
  uint64_t id_ = new_model_id();
  WarmUps warm_ups_;
  at::ScalarType dtype_;
  Precision precision_ = Precision::Fp32;
  mutable std::once_flag rows_once_;
  mutable bool rows_independent_ = false;
};

// One window's HuBERT pass of a stream (features::Stream), through a
// WindowBatcher: `cached` as Model::hidden_states_cached (call), else
// Model::hidden_states(wave).
struct WindowJob {
  at::Tensor wave;  // not normalised (plain passes)
  bool cached = false;
  Model::CachedCall call;
};

// The windows of several streams on one model (hubertenc's max-batch): the
// cached windows of a batch in one pass on a GPU, and on the CPU where the
// model's rows are independent there (Model::rows_independent; each as
// alone otherwise),
// the others one at a time; all in the leader's thread, so that streams
// take turns on the cores instead of running their OpenMP teams at once.
class WindowBatcher : public Batcher<WindowJob, at::Tensor> {
 public:
  using Batcher::Batcher;
};
std::shared_ptr<WindowBatcher> shared_windows(std::shared_ptr<const Model> model, size_t max_batch,
                                              std::chrono::microseconds max_delay);

// The demo's video alignment (spec 1.7): edge-pad one frame at the end,
// [L, T, H] -> [L, T + 1, H].  The motion model then takes the first
// 2 * floor((T + 1) / 2) frames.
at::Tensor pad_for_video(const at::Tensor& states);

}  // namespace anitalker::hubert
