// Driving the stage-2 motion generator (lib/motion.h) as the reference demo
// does (spec/motion.md section 5), offline over a whole utterance or in
// windows over an endless stream.  Shared by the anitalkermotion element, the
// `anitalker motion` command and `anitalker bench motion`.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "batcher.h"
#include "motion.h"

namespace anitalker::motion {

// The demo's control signals (spec 5).
struct Controls {
  bool control = false;  // control_flag: use these instead of the predictors
  // Constant pose in the model's units (1 = 90 degrees), as the demo's
  // --pose_yaw/--pose_pitch/--pose_roll: not divided by 90; clamped to [-1, 1].
  float yaw = 0.25f, pitch = 0.0f, roll = 0.0f;
  // When defined: (N, 3) yaw, pitch, roll in degrees per frame (the demo's
  // --pose_driven_path); divided by 90, truncated or padded with its last
  // row, clamped.  Replaces the constant pose.
  at::Tensor pose_file;
  float location = 0.5f, scale = 0.5f;  // not clamped
};

// Reads a pose file (the demo's --pose_driven_path): .npy [N, 3] yaw, pitch,
// roll in degrees, N >= 1, any float or integer dtype, every value finite.
// Throws an anitalker::Error naming the file and what is wrong (shape, NaN or
// inf with its row).  Returns a float32 CPU tensor.
at::Tensor read_pose_file(const std::string& path);

// The pose (1,n,3), location and scale (1,n,1) of frames [first, first+n) of
// an utterance, as the demo builds them.  Throws a Usage error for a pose
// file that is not (N,3) with N >= 1.
void control_tensors(const Controls& c, int64_t first, int64_t n, at::Tensor* pose, at::Tensor* location,
                     at::Tensor* scale);

// Motion frames (25 fps) the demo makes of `feature_frames` input frames:
// floor(N/2) for HuBERT (50 Hz), floor(N/4) for MFCC (100 Hz).
int64_t motion_frames(const Model& m, int64_t feature_frames);

// The model's audio input for motion frames [0, T) from feature frames laid
// out as hubertenc emits them: HuBERT [N, L, H] (frame-major) ->
// [1, L, 2T, H]; MFCC [N, 39] (or [N, 1, 39]) -> [1, 4T, 39].  Also accepts
// the demo's own [L, N, H] when `layer_major`.  Throws a Usage error naming
// the expected shape.
at::Tensor audio_input(const Model& m, const at::Tensor& features, bool layer_major = false);

// One run of the generator: the motion latents and what the predictors said.
struct Generated {
  at::Tensor motion;    // (1,T,M)
  at::Tensor pose;      // (1,T,3): predicted, or the given pose with control on
  at::Tensor location;  // (1,T,1): likewise; zeros for variants without it
  at::Tensor scale;     // (1,T,1)
};

// The demo's render(): audio (from audio_input), start (1,S), direction
// (1,M), noise (1,T,M) (e.g. Model::seed_noise), `steps` DDIM steps.
Generated generate(const Model& m, const at::Tensor& start, const at::Tensor& direction, const at::Tensor& audio,
                   const Controls& c, const at::Tensor& noise, int steps);

// One run of the generator as a request (a stream's window, or a whole
// utterance): the condition's inputs and the sampler's.
struct WindowJob {
  at::Tensor start, direction, audio;  // Model::condition's inputs
  Controls controls;
  int64_t first = 0;  // the first motion frame's index in its utterance (for a pose file)
  at::Tensor noise;   // (1,T,M)
  at::Tensor known;   // (1,C,M) held frames, or undefined
  int steps = 50;
  StepCallback on_step;  // progress, after each DDIM step (in the thread that runs it), if set
};

// Runs jobs: each job's condition, then its DDIM sampling; with `batch`,
// the samplings of jobs that share T, C and steps as one batch
// (Model::sample_batch), the others one at a time.  Result i is what job i
// gives alone (bit for bit where Model::batch_exact()).
std::vector<Generated> run_windows(const Model& m, const std::vector<const WindowJob*>& jobs, bool batch);

// The runs of several streams on one model (anitalkermotion's max-batch):
// in the leader's thread, so that streams take turns on the cores instead of
// running their OpenMP teams at once, and the windows of the same shape as
// one batch: on the CPU where the model's runs are batch-exact on this
// machine (Model::batch_exact; one after another otherwise), on a GPU
// always (each within float rounding of its run alone).
class WindowBatcher : public Batcher<WindowJob, Generated> {
 public:
  using Batcher::Batcher;
};
std::shared_ptr<WindowBatcher> shared_windows(std::shared_ptr<const Model> model, size_t max_batch,
                                              std::chrono::microseconds max_delay);

// Windowed generation for live streams (DESIGN.md "Offline and streaming").
// Each window generates motion frames [a, e + window + lookahead) where e is
// the count of frames already emitted and a = max(0, e - context): the
// speech branch sees only those frames' features, and the frames [a, e),
// already emitted, are held to their known values at every DDIM step (the
// known latents noised to the step's level with the window's noise, i.e. the
// deterministic DDIM path of a known x0).  Frames [e, e + window) are
// emitted; the look-ahead frames are generated again by the next window.
// Noise is drawn per frame, in order, from one generator seeded with `seed`,
// so a frame keeps its noise across the windows that see it.  Memory is
// bounded by (context + window + lookahead) frames of features.
struct StreamConfig {
  int window = 50;     // motion frames emitted per window (25 = 1 s)
  int context = 10;    // already emitted frames re-generated as left context
  int lookahead = 0;   // frames generated past the window and dropped
  int steps = 50;
  uint64_t seed = 0;
};

// The noise a Stream with this seed gives frames [0, frames): (1,frames,M).
// Offline runs with it are comparable with the stream frame for frame.
at::Tensor stream_noise(uint64_t seed, int64_t frames, int motion_dim);

class Stream {
 public:
  Stream(std::shared_ptr<const Model> model, const StreamConfig& cfg);

  const StreamConfig& config() const { return cfg_; }
  const Model& model() const { return *model_; }
  // New window, context and look-ahead, from the next window on (the
  // latency presets change while playing).  Steps and seed stay.  A context
  // longer than what the stream still holds is cut to it.  Throws
  // Error(Usage) as the constructor.
  void set_window(int window, int context, int lookahead);
  // DDIM steps from the next window on (StepController's choice; a count the
  // stride rule cannot meet throws Error(Usage) as the constructor).  The
  // windows that follow keep their held frames and noise: a step count is
  // only how finely the same denoising path is walked.
  void set_steps(int steps);

  // The portrait's codes, start (1,S) and direction (1,M); apply from the
  // next window.  Required before the first window.
  void set_codes(const at::Tensor& start, const at::Tensor& direction);
  bool has_codes() const { return start_.defined(); }
  // Apply from the next window; frame indices count from the stream's start.
  void set_controls(const Controls& c) { controls_ = c; }
  // Runs the windows (and whole()) through `executor` (shared with other
  // streams of the model: shared_windows), or alone (null).
  void set_executor(std::shared_ptr<WindowBatcher> executor) { executor_ = std::move(executor); }

  // Appends feature frames, float32: HuBERT [n, L, H] at 50 Hz, MFCC [n, 39]
  // at 100 Hz.  Copied.
  void push(const float* data, int64_t n);

  // Whether next() has a window to generate: a full one, or with `final`
  // (the stream ends) whatever frames remain.
  bool ready(bool final) const;
  // Generates the next window (call only when ready(final)); returns the new
  // frames [k, ...] with k >= 1.
  Generated next(bool final);
  // Offline (spec 5): every frame the features pushed so far make, in one
  // run over the whole utterance with the demo's noise (Model::seed_noise of
  // the seed, not the stream's): the reference demo's output.  Only before
  // any window; throws Error(Usage) after one, without codes, or when the
  // features make no motion frame (motion_frames() < 1).  on_step: after
  // each DDIM step (progress; through a shared executor, in the thread that
  // leads the call).
  Generated whole(const StepCallback& on_step = nullptr);

  int64_t emitted() const { return emitted_; }
  int64_t received() const { return received_; }  // feature frames
  // Feature frames held now (bounded, for tests and the bench).
  int64_t held_features() const;
  // Forgets the stream (codes and controls stay).
  void reset();

 private:
  int64_t per_frame() const;  // feature frames per motion frame: 2 or 4
  at::Tensor noise_for(int64_t a, int64_t b);
  Generated run(const WindowJob& job) const;  // alone or through the executor

  std::shared_ptr<const Model> model_;
  StreamConfig cfg_;
  at::Tensor start_, direction_;
  Controls controls_;
  at::Generator gen_;
  int64_t frame_floats_ = 0;
  // Features of frames [feat_first_, feat_first_ + n) (feature frame indices).
  std::deque<float> feats_;
  int64_t feat_first_ = 0, received_ = 0;
  // Emitted latents of motion frames [known_first_, emitted_), (n, M).
  at::Tensor known_;
  int64_t known_first_ = 0, emitted_ = 0;
  // Noise of motion frames [noise_first_, noise_first_ + rows), (rows, M).
  at::Tensor noise_;
  int64_t noise_first_ = 0;
  std::shared_ptr<WindowBatcher> executor_;
};

// The feature frames that the first frame of the next window (motion frame
// `next`) waits past the arrival of its own feature frame, for its window
// and look-ahead: per_frame * (window + lookahead) - 1 (per_frame: 2 for
// HuBERT, 4 for MFCC).  When upstream sends the features in whole hops of
// `hop` frames counted from feature frame `origin` (hubertenc streaming
// HuBERT), the frame's own hop already waited for the frames of its hop, so
// only how much later the hop that completes a window arrives counts: the
// worst over the coming windows (their phases against the hops repeat
// within `hop` windows), never more than without hops.  Windows of whole
// hops in phase with them wait for nothing.
int64_t window_wait(int64_t per_frame, int window, int lookahead, int64_t next, int64_t hop = 0, int64_t origin = 0);

// How many DDIM steps a live stream's next window gets, so that a stream
// whose windows take longer than real time gives up detail rather than time
// (anitalkermotion's `min-steps`).  Without it a generator slower than its
// audio falls behind by the difference at every window, for as long as it
// runs.  The controller walks a ladder of step counts from `steps` down to
// `min_steps`, each about 0.7 of the one above (counts the stride rule takes:
// every one up to 32, the nearest below above that):
// - down one rung when a window starts more than half a hop after it could
//   have (`late_s`, against its features' timestamps and upstream's
//   latency), no earlier than the window before it did (a backlog that
//   already shrinks is left to drain), and the window's own compute was a
//   quarter or more of the time from the window before to this one (else
//   fewer steps would not help: the time goes elsewhere, e.g. to a GPU
//   renderer slower than real time in the same thread);
// - up one rung after `kSettle` windows in a row that started in time, when
//   the last window's compute scaled to the rung above stays within half a
//   hop (HuBERT and the renderer share the cores).
// Pure arithmetic on what the caller measured: no clock of its own.
class StepController {
 public:
  static constexpr int kSettle = 4;
  // min_steps 0 (or not below steps): fixed at `steps`.  Throws Error(Usage)
  // for a `steps` the stride rule cannot meet.
  StepController(int steps, int min_steps);
  // The step counts it may choose, from `steps` down.
  const std::vector<int>& ladder() const { return ladder_; }
  int steps() const { return ladder_[rung_]; }
  // The steps for the next window, given how late it starts (seconds; <= 0
  // in time), its hop (seconds of audio it emits), the last window's
  // compute time at steps() and the time from the start of the window
  // before it to the start of this one (seconds; 0 when unknown).
  int next(double late_s, double hop_s, double last_compute_s, double last_cycle_s = 0);
  // Before the first window: the highest rung at which a window, measured
  // at `steps` in `window_s` seconds (the warm-up's last; scaled by the step
  // count), takes no longer than its hop.  A window that takes longer than
  // its audio can never keep up, so the stream starts lower instead of
  // falling behind first.  window_s 0 (unknown): unchanged.
  int start_from(double window_s, double hop_s);

 private:
  std::vector<int> ladder_;
  size_t rung_ = 0;
  int in_time_ = 0;
  double last_late_s_ = 0;
  bool have_last_ = false;
};

// Runs a throw-away stream with `cfg` (its own noise) on zero features and
// codes, frame by frame, until its held context is full and two windows
// more: the network has then met the shapes the first windows of a live
// stream give it, so that their compute (and the first frame) does not pay
// for first-call set-up.  Once for each model (a model loaded again is
// warmed again) and setting (WarmUps, lib/device.h).  Returns the
// windows run (0 when done before); `last_window_s`, if given, the seconds
// the last of them took (a full window of `cfg`; 0 when none ran).  A
// context of more than kGrowthWindows windows is filled by one window
// instead (the work stays a few windows' whatever the setting).
constexpr int64_t kGrowthWindows = 16;
int warm_up(std::shared_ptr<const Model> model, const StreamConfig& cfg, double* last_window_s = nullptr);

}  // namespace anitalker::motion
