// Audio features of a stream that arrives piece by piece: the windowing of
// hubertenc, in lib/ beside motion::Stream, so that the element, `anitalker
// features --stream` and the benches compute the same thing.
//
// MFCC is exact: a frame goes out once its deltas' frames (two after it) are
// complete, computed over a region that starts 3 frames earlier, which
// reproduces the whole-clip values bit for bit.
//
// HuBERT is windowed (spec audio-features.md 1.10) in hops of whole 20 ms
// frames: `window` ms rounded down to frames (at least one).  Once the
// audio of the next hop's frames is in (the last frame's 25 ms receptive
// field reaches 5 ms past the hop) and `lookahead` ms more, the model runs
// on the new audio with up to `context` ms of already-sent audio before it;
// the hop's frames go out, and only whole hops (after a long input buffer,
// several), so that the frames always go out in hops counted from frame 0:
// a consumer with windows of a multiple of the hop never waits for part of
// a hop.  The frames past the hops go out with the next.  At the end
// everything left goes out, then the demo's padding frame (a copy of the
// last).  With nothing streamed before the end (offline), the region is the
// whole utterance and the result is the reference's.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

namespace anitalker::hubert {
class Model;
struct Cache;
class WindowBatcher;
}

namespace anitalker::features {

struct StreamConfig {
  int window_ms = 2000;   // HuBERT: the hop, rounded down to whole 20 ms frames
  int context_ms = 1000;  // HuBERT: already-sent audio encoded again before it
  int lookahead_ms = 0;   // HuBERT: audio after the window encoded with it
  // HuBERT: the context's keys and values kept from the windows that sent
  // it (hubert::Cache) instead of its audio encoded again: each window
  // encodes only its new frames and look-ahead.
  bool cache_context = false;
};

// Frames in time-major order: count x frame_floats values.
struct Frames {
  std::vector<float> data;
  int64_t count = 0;
};

// The same for a model (null: MFCC) and settings, without a stream.
int64_t hop_frames(const hubert::Model* model, const StreamConfig& cfg);
int64_t wait_samples(const hubert::Model* model, const StreamConfig& cfg);

class Stream {
 public:
  // model null: MFCC (39 values a frame, 100 a second); else HuBERT's hidden
  // states (states x hidden values a frame, 50 a second).  Throws
  // Error(Usage) for a window under 20 ms, a negative context or a
  // look-ahead longer than the window.
  Stream(std::shared_ptr<const hubert::Model> model, const StreamConfig& cfg = {});

  // From the next window on (the latency presets change while playing).
  void set_window(int window_ms, int context_ms, int lookahead_ms);
  void set_cache_context(bool on);
  // HuBERT: run the windows' passes through `executor` (shared with other
  // streams of the model: hubert::shared_windows), which may put cached
  // windows of several streams in one pass; null: here, alone.
  void set_executor(std::shared_ptr<hubert::WindowBatcher> executor) { executor_ = std::move(executor); }
  // Called before each HuBERT layer of a pass that runs in this thread (not
  // through an executor); it may throw to stop the pass, which next() then
  // throws on (a flush while a long utterance is encoded offline).
  void set_interrupt(std::function<void()> check) { interrupt_ = std::move(check); }
  const StreamConfig& config() const { return cfg_; }

  bool is_mfcc() const { return model_ == nullptr; }
  int64_t frame_floats() const;
  int rate() const { return is_mfcc() ? 100 : 50; }

  // Appends samples (16 kHz mono, float32).  Copied.
  void push(const float* samples, int64_t n);

  // The frames that are due: none, or a window's; with `final` (the stream
  // ends) all the rest, and for HuBERT the padding frame.  Call reset()
  // before reusing the stream after `final`.
  Frames next(bool final);

  // HuBERT: frames a hop (window rounded down to frames, at least one), and
  // the samples the first frame of a hop waits for: the hop's, its last
  // frame's receptive field past it, and the look-ahead (the latency the
  // windowing adds).  MFCC: 1 frame, and the samples frame t waits for
  // (frame t+2 complete).
  int64_t hop_frames() const { return features::hop_frames(model_.get(), cfg_); }
  int64_t wait_samples() const { return features::wait_samples(model_.get(), cfg_); }

  int64_t received() const { return received_; }  // samples
  int64_t emitted() const { return emitted_; }    // frames (padding included)
  int64_t held_samples() const { return (int64_t)audio_.size(); }
  // After a final next(): the audio was too short for one HuBERT frame.
  bool too_short() const { return too_short_; }
  void reset();

 private:
  Frames next_mfcc(bool final);
  Frames next_hubert(bool final);
  void trim(int64_t keep_from);

  std::shared_ptr<const hubert::Model> model_;
  StreamConfig cfg_;
  std::deque<float> audio_;  // samples [audio_start_, received_)
  int64_t audio_start_ = 0, received_ = 0, emitted_ = 0;
  std::vector<float> last_frame_;
  bool too_short_ = false;
  std::shared_ptr<hubert::Cache> cache_;  // cache_context: the frames sent
  std::shared_ptr<hubert::WindowBatcher> executor_;
  std::function<void()> interrupt_;
};

// Runs a throw-away HuBERT stream with `cfg` on silence, in 20 ms pieces,
// until its region has grown to the full context: the network then has met
// every shape the first windows of a live stream give it (each new shape
// costs a first-call set-up, 2-3x the window's compute on the CPU), so that
// a live stream's first second does not pay for it.  Once for each model
// (a model loaded again is warmed again) and setting (WarmUps,
// lib/device.h).
// Returns the windows run: 0 when done before, and for MFCC (model null).
// A context of more than kGrowthWindows windows is filled by one window
// instead (the work stays a few windows' whatever the setting).
constexpr int64_t kGrowthWindows = 16;
int warm_up(std::shared_ptr<const hubert::Model> model, const StreamConfig& cfg);

}  // namespace anitalker::features
