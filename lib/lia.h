// Stage 1 of AniTalker: the LIA motion encoder and the flow-warping renderer
// (spec/renderer.md).  Widths, levels and the image size come from the
// checkpoint's shapes, so the released stage1.ckpt and the narrow fixtures
// run through the same code.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "batcher.h"
#include "crop.h"
#include "device.h"
#include "rgb_image.h"

namespace anitalker {
class StateDict;
}

namespace anitalker::lia {

// What the encoder makes of one portrait; computed once, used for every frame.
struct Portrait {
  at::Tensor image;               // (1,3,S,S) float32 in [-1,1], the network input
  at::Tensor start;               // (1,style) "wa" / h_source: the start code
  at::Tensor direction;           // (1,motion) "alpha" / h_motion: the direction code
  std::vector<at::Tensor> feats;  // L maps, coarse (8x8) to fine (SxS)
};

class Model {
 public:
  // Reads the weights of a stage-1 checkpoint (keys prefixed "lia."; spec 2).
  // Throws anitalker::Error naming the file and key for a missing or
  // wrong-shaped tensor.  The weights are float32 (dtype: another floating
  // type for the whole network).
  // precision Bf16 (CPU with AVX512_BF16, check_precision) or Fp16 (CUDA):
  // the decoder's modulated convolutions (its 3x3 and upsampling
  // convolutions, nearly all of its work) run in bfloat16 / float16 with
  // float32 in and out (float32 accumulation on the CPU; cuDNN's choice on
  // a GPU); the style, demodulation, flows, warps, blurs and RGB stay
  // float32.
  // A GPU runs the device-independent path (no packed weights, no style
  // folded into them, transposed convolutions, NCHW); the CPU runs it too
  // with ANITALKER_GENERIC=1 in the environment (tests: the GPU path's
  // arithmetic checked on the CPU).
  // nhwc: the device-independent path (a GPU's) with its
  // activations and convolution weights channels-last (NHWC), which cuDNN's
  // tensor-core kernels take without reordering; the warps' portrait maps
  // and the 3-channel flow and colour maps stay NCHW.  By default off, on
  // with ANITALKER_CHANNELS_LAST=1 in the environment; nothing changes on
  // the CPU's own path (which is channels-last in float32 anyway).
  Model(const StateDict& sd, c10::Device device, at::ScalarType dtype = at::kFloat,
        Precision precision = Precision::Fp32, std::optional<bool> nhwc = std::nullopt);

  // One process-wide copy per (file, device, precision): a second load of
  // the same file returns the same model while the first is alive.  Throws
  // Error(Usage) for a precision the device cannot run (check_precision).
  static std::shared_ptr<const Model> load(const std::string& path, c10::Device device,
                                           Precision precision = Precision::Fp32);
  Precision precision() const { return precision_; }

  int size() const { return size_; }          // input and output image size S
  int style_dim() const { return style_dim_; }
  int motion_dim() const { return motion_dim_; }
  int levels() const { return levels_; }
  // About the bytes of tensor memory one render call over `frames` frames
  // takes on this model's device beyond the weights and the portrait: the
  // activations of one image at a time (the CPU's way) or of the whole
  // batch at once (one_batch, a GPU's), and the frames it gives back.  From
  // the layer shapes.
  size_t call_bytes(int64_t frames, bool one_batch) const;
  c10::Device device() const { return device_; }
  // This model's number in the process (new_model_id, device.h).
  uint64_t model_id() const { return id_; }
  // The warm-ups this model has run (WarmUps, device.h).
  const WarmUps& warm_ups() const { return warm_ups_; }
  // Keys of the checkpoint that inference does not use (training-only).
  const std::vector<std::string>& unused_keys() const { return unused_; }

  // Q of the reduced QR of (dec.direction.weight + 1e-8): (style, motion).
  const at::Tensor& direction_basis() const { return q_; }

  // image: (1,3,S,S) in [-1,1] (see image.h) -> codes and feature maps.
  Portrait encode(const at::Tensor& image) const;

  // motion: (B, motion) -> raw frames (B,3,S,S), unclamped.
  at::Tensor render(const Portrait& p, const at::Tensor& motion) const;

  // Frames of several portraits in one call (the frames of several streams):
  // row i of motion (B, motion) rendered from *portraits[i].  one_batch (a
  // GPU's way): every row in one batch, each frame within float rounding of
  // render() alone; otherwise (the CPU's way, where the decoder runs one
  // image at a time anyway) each run of rows of one portrait goes through
  // render() as it would alone, bit for bit.
  at::Tensor render(const std::vector<const Portrait*>& portraits, const at::Tensor& motion, bool one_batch) const;

  // latent = start + motion @ Q^T: (B, style).
  at::Tensor latent(const Portrait& p, const at::Tensor& motion) const;

  // CUDA graphs for the decoder on a GPU (lib/cuda_graph.h; issue 20): the
  // whole-batch decoding of render() (both forms, on a GPU) recorded once
  // for each batch size (and for one portrait or one per row), at its
  // first call, then replayed: its inputs (motion codes, start codes and
  // the portraits' feature maps) copied into the graph's own tensors, a
  // portrait's maps only when its row held another portrait's.  The same
  // kernels as without, so the same frames.  At most 32 graphs a model;
  // batch sizes past them run as before.  If a recording fails, the model
  // renders without graphs from then on and graphs_status() says why.
  // Off: as before (the default; ANITALKER_CUDA_GRAPHS=1 in the
  // environment makes On the default on a CUDA device).  On: a CUDA device
  // in a build with graphs (cuda_graphs_built()), else Error(Usage).
  // Emulated: any device, nothing recorded, each replay runs the decoding
  // again into the graph's output (tests, on the CPU, of the inputs'
  // copies).  The model is shared by a process's pipelines, and so is this
  // setting; thread-safe (one replay at a time a model).
  enum class Graphs { Off, On, Emulated };
  void set_graphs(Graphs mode) const;
  Graphs graphs() const;
  // "off", "emulated, N recorded", "on, N recorded (batch sizes 1, 4)", or
  // the failure: "failed: <why>; rendering without graphs".
  std::string graphs_status() const;

 private:
  struct Weights;
  struct GraphCache;
  // The decoder over a batch (a GPU's way, every level for the whole
  // batch): motion (B, motion), starts (1 or B, style), feats L maps (1 or
  // B, C, r, r), coarse to fine; one row of starts or a map serves every row.
  at::Tensor decode(const at::Tensor& motion, const at::Tensor& starts, const std::vector<at::Tensor>& feats) const;
  // decode() through the graph for (B, one portrait or one per row);
  // undefined where graphs are off, failed or full (the caller then renders
  // as before).
  at::Tensor render_graphed(const std::vector<const Portrait*>& ps, const at::Tensor& motion) const;
  // styles: every modulation's style for each row, (B, sum of their Cin);
  // feats: the portrait's maps, coarse to fine, one row for every row of x
  // or one per row.
  void levels(const std::vector<at::Tensor>& feats, const at::Tensor& styles, int j0, int j1, at::Tensor& x,
              at::Tensor& flow, at::Tensor& rgb) const;
  // Whether the decoder runs channels-last: on the CPU in float32, where
  // oneDNN's convolutions take that layout without reorders (levels()).
  bool channels_last() const;
  std::shared_ptr<const Weights> w_;
  at::Tensor q_;
  c10::Device device_;
  uint64_t id_ = new_model_id();
  WarmUps warm_ups_;
  at::ScalarType dtype_;
  Precision precision_ = Precision::Fp32;
  bool generic_ = false;  // the device-independent path (see the constructor)
  bool nhwc_ = false;     // that path channels-last (the constructor's nhwc)
  std::shared_ptr<GraphCache> graphs_;
  int size_ = 0, style_dim_ = 0, motion_dim_ = 0, levels_ = 0;
  std::vector<std::string> unused_;
};

// The decoder's warp on the CPU, where it runs channels-last: f (1 or B, C,
// H, W) float32 (any layout; channels-last is read as it is), grid (B, Ho,
// Wo, 2), mask (B, 1, Ho, Wo) -> grid_sampler(f, grid, bilinear, zeros,
// align_corners=false) * mask, (B, C, Ho, Wo) channels-last.  With x
// (float32, that shape, channels-last contiguous) also x = x * (1 - mask) +
// warp in place, in the same pass (the decoder's blend, spec 3.9).
at::Tensor warp_channels_last(const at::Tensor& f, const at::Tensor& grid, const at::Tensor& mask,
                              const at::Tensor& x = at::Tensor());

// Raw frames (B,3,S,S) -> uint8 (B,S,S,3) RGB on the CPU, contiguous:
// clamp(-1,1), (x+1)/2, *255, truncation (spec 6).
at::Tensor to_uint8(const at::Tensor& raw);

// Refuses (Error(Usage)) a setting under which one render call could take
// more memory than `model`'s device has free: `frames` frames a call, as a
// GPU runs them (one batch) or the CPU (one image at a time), estimated by
// Model::call_bytes (twice with graphs on: Model::set_graphs), against
// `free_bytes` (by default device_memory_free(); nothing is refused when
// that is unknown).  The message starts with
// `setting` (e.g. "max-batch=64 x batch-size=16") and says the estimate,
// what is free and the most frames a call can have.
void check_call_memory(const Model& model, int64_t frames, const std::string& setting,
                       std::optional<size_t> free_bytes = std::nullopt);

// A grey picture encoded and `batch` frames of zero motion rendered, thrown
// away: the shapes a stream's first frames will have, met before it starts
// (first-call set-up costs 2-4x a frame).  Once for each model (a model
// loaded again is warmed again: its packed weights are its own) and batch
// (WarmUps, lib/device.h); returns whether it ran.
bool warm_up(const Model& model, int64_t batch);

// The renderer shared by the pipelines of a process (issue: many live
// avatars per GPU): a Batcher per (model, max_batch, max_delay) that runs the
// frames of several streams in one call, each stream's frames from its own
// portrait.  A request is one buffer of frames; its result the uint8 frames
// (n,S,S,3) on the CPU, as to_uint8(render()) gives them.  On a GPU a batch
// runs as one (render(portraits, motion, true)); on the CPU each request as
// it would alone, so the frames are those of a pipeline on its own, bit for
// bit.
struct RenderRequest {
  std::shared_ptr<const Portrait> portrait;
  at::Tensor motion;  // (n, motion_dim)
};
using RenderBatcher = Batcher<RenderRequest, at::Tensor>;
std::shared_ptr<RenderBatcher> shared_renderer(const std::shared_ptr<const Model>& model, size_t max_batch,
                                               std::chrono::microseconds max_delay);

// What a Renderer encodes next: the picture's file and how to cut it
// (lib/crop.h; `detector`: RetinaFace's weights, for crop auto without a box).
struct PortraitSource {
  std::string path;
  crop::Spec spec;
  std::string detector;
};

// One stream's renderer (anitalkerrender): the model, the portrait it draws
// with, replaced while playing, and its frames, rendered alone or through
// the process's shared renderer.  Thread-safe: a codes query may encode from
// another thread than the stream's.
class Renderer {
 public:
  struct Current {
    std::shared_ptr<const Portrait> portrait;  // null until the first encode (and after reset)
    std::shared_ptr<const RgbImage> picture;   // the picture it was cut from
    crop::Choice choice;                       // and where
    unsigned serial = 0;                       // counts encodes over the Renderer's life, never reset
    bool fresh = false;                        // encoded by this update()
  };

  // A model (READY->PAUSED; `shared`: the process's renderer to go
  // through, or null) or none (PAUSED->READY): the portrait is forgotten.
  void reset(std::shared_ptr<const Model> model, std::shared_ptr<RenderBatcher> shared = nullptr);
  std::shared_ptr<const Model> model() const;
  Current current() const;
  // One update at a time: `want(have)` (have: a portrait is current) names
  // the picture to encode now, or nothing to keep the current one; it is
  // prepared (image.h prepare_portrait), encoded and made current, unless
  // the Renderer was reset meanwhile (then no portrait is returned).
  // Without a model, nothing is asked.  Throws what `want`, the picture and
  // the encoder throw.
  Current update(const std::function<std::optional<PortraitSource>(bool have)>& want);
  // Motion frames (n, motion_dim), float32 time-major -> (n,S,S,3) uint8 RGB
  // on the CPU, contiguous, with the current portrait.  Throws Error(Usage)
  // without a model or a portrait.
  at::Tensor render(const float* motion, int64_t n) const;

  // A live stream's change of face: `source` is prepared and encoded on a
  // thread of the Renderer's own while the current portrait stays in use
  // (a full-size encode is about 0.2 s on the CPU, more with crop auto or a
  // large photo: a stall of the stream's frames if it ran in their thread).
  // One runs at a time; a source given while one runs waits, and replaces
  // any that waited before it.  reset() waits for the one running and drops
  // the rest.
  void encode_later(PortraitSource source);
  // Whether an encode_later() is running or waiting.
  bool encoding() const;
  // The last encode_later() that finished since the last call: its portrait
  // made current (`now.fresh`), unless the Renderer was reset meanwhile;
  // or, when it failed, `error` (what it threw) and the current portrait
  // unchanged.  Nothing when none finished.
  struct Adopted {
    Current now;
    PortraitSource source;  // what was encoded
    std::exception_ptr error;
  };
  std::optional<Adopted> adopt_finished();

  Renderer() = default;
  Renderer(const Renderer&) = delete;
  Renderer& operator=(const Renderer&) = delete;
  ~Renderer();

 private:
  // A portrait encoded with `model`, not yet current.
  struct Encoded {
    std::shared_ptr<const Model> model;
    std::shared_ptr<const Portrait> portrait;
    std::shared_ptr<const RgbImage> picture;
    crop::Choice choice;
  };
  // What encode_later()'s thread finished: the encode, or what it threw.
  struct Finished {
    PortraitSource source;
    Encoded encoded;
    std::exception_ptr error;
  };
  Encoded encode(const std::shared_ptr<const Model>& model, const PortraitSource& source) const;
  Current make_current(Encoded encoded);  // unless the model changed: Current()
  void stop_encoder();
  void encoder_loop();

  mutable std::mutex lock_;  // the members below, held briefly
  std::mutex update_;        // held across an update's encode
  std::shared_ptr<const Model> model_;
  std::shared_ptr<RenderBatcher> shared_;
  Current current_;

  // encode_later(), under async_ (held briefly; never while taking lock_).
  mutable std::mutex async_;
  std::thread encoder_;
  bool running_ = false, stopping_ = false;
  std::optional<PortraitSource> waiting_;
  std::optional<Finished> finished_;  // not yet adopted
};

}  // namespace anitalker::lia
