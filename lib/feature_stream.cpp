#include "feature_stream.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <string>

#include "device.h"
#include "error.h"
#include "hubert.h"
#include "hubert_config.h"
#include "mfcc.h"

namespace anitalker::features {

namespace {

constexpr int64_t kSampleRate = 16000;
// MFCC: a region recomputed from this many frames before the next frame to
// emit reproduces it exactly (pre-emphasis reads the sample before a frame,
// the deltas the two frames on either side).
constexpr int64_t kMfccMargin = 3;

Error usage(const std::string& what) { return Error(Error::Kind::Usage, "features stream: " + what); }

void check(int window_ms, int context_ms, int lookahead_ms) {
  if (window_ms < 20) throw usage("the window must be at least 20 ms, not " + std::to_string(window_ms));
  if (context_ms < 0) throw usage("the context cannot be negative");
  if (lookahead_ms < 0 || lookahead_ms > window_ms)
    throw usage("the look-ahead can be 0 to the window (" + std::to_string(window_ms) + " ms), not " +
                std::to_string(lookahead_ms));
}

}  // namespace

Stream::Stream(std::shared_ptr<const hubert::Model> model, const StreamConfig& cfg)
    : model_(std::move(model)), cfg_(cfg), cache_(std::make_shared<hubert::Cache>()) {
  check(cfg.window_ms, cfg.context_ms, cfg.lookahead_ms);
}

void Stream::set_cache_context(bool on) {
  if (on != cfg_.cache_context) cache_->clear();  // what the other way encoded is not what this one keeps
  cfg_.cache_context = on;
}

void Stream::set_window(int window_ms, int context_ms, int lookahead_ms) {
  check(window_ms, context_ms, lookahead_ms);
  cfg_.window_ms = window_ms;
  cfg_.context_ms = context_ms;
  cfg_.lookahead_ms = lookahead_ms;
}

int64_t hop_frames(const hubert::Model* model, const StreamConfig& cfg) {
  if (model == nullptr) return 1;
  int64_t hop = 1;
  for (int s : model->config().conv_stride) hop *= s;
  return std::max<int64_t>(1, (int64_t)cfg.window_ms * kSampleRate / 1000 / hop);
}

int64_t wait_samples(const hubert::Model* model, const StreamConfig& cfg) {
  if (model == nullptr) return 2 * (int64_t)kMfccFrameStep + (int64_t)kMfccFrameLength;
  const hubert::Config& c = model->config();
  int64_t hop = 1;
  for (int s : c.conv_stride) hop *= s;
  return hop_frames(model, cfg) * hop + (hubert::receptive_field(c) - hop) +
         (int64_t)cfg.lookahead_ms * kSampleRate / 1000;
}

int64_t Stream::frame_floats() const {
  return is_mfcc() ? (int64_t)kMfccChannels : (int64_t)model_->num_states() * model_->hidden();
}

void Stream::push(const float* samples, int64_t n) {
  audio_.insert(audio_.end(), samples, samples + n);
  received_ += n;
}

void Stream::reset() {
  audio_.clear();
  audio_start_ = received_ = emitted_ = 0;
  last_frame_.clear();
  too_short_ = false;
  cache_->clear();
}

void Stream::trim(int64_t keep_from) {
  if (keep_from <= audio_start_) return;
  const int64_t drop = std::min<int64_t>(keep_from - audio_start_, (int64_t)audio_.size());
  audio_.erase(audio_.begin(), audio_.begin() + drop);
  audio_start_ += drop;
}

Frames Stream::next(bool final) { return is_mfcc() ? next_mfcc(final) : next_hubert(final); }

Frames Stream::next_mfcc(bool final) {
  const int64_t L = (int64_t)kMfccFrameLength, S = (int64_t)kMfccFrameStep;
  const int64_t avail = received_;
  const int64_t complete = avail >= L ? (avail - L) / S + 1 : 0;  // frames without zero padding
  Frames out;
  if ((!final && complete < emitted_ + 3) || avail == 0) return out;  // frame `emitted` not final yet
  const int64_t first_frame = emitted_ > kMfccMargin ? emitted_ - kMfccMargin : 0;
  const int64_t s = first_frame * S;
  const std::vector<float> region(audio_.begin() + (s - audio_start_), audio_.end());
  const Mfcc m = mfcc(region.data(), region.size());
  const int64_t end = final ? first_frame + (int64_t)m.frames : complete - 2;
  if (end > emitted_) {
    const std::vector<double> all = m.stacked39();
    const size_t C = kMfccChannels;
    out.count = end - emitted_;
    out.data.resize((size_t)out.count * C);
    const double* from = all.data() + (size_t)(emitted_ - first_frame) * C;
    for (size_t i = 0; i < out.data.size(); i++) out.data[i] = (float)from[i];
    emitted_ = end;
  }
  trim((emitted_ > kMfccMargin ? emitted_ - kMfccMargin : 0) * S);
  return out;
}

Frames Stream::next_hubert(bool final) {
  const hubert::Config& cfg = model_->config();
  int64_t hop = 1;
  for (int s : cfg.conv_stride) hop *= s;
  const int64_t avail = received_;
  const int64_t window_frames = hop_frames();
  const int64_t lookahead = (int64_t)cfg_.lookahead_ms * kSampleRate / 1000;
  const int64_t context_frames = (int64_t)cfg_.context_ms * kSampleRate / 1000 / hop;
  // Frames past the ones sent whose audio (receptive field) and look-ahead
  // are in; whole hops of them go out.
  const int64_t extra = hubert::receptive_field(cfg) - hop;
  const int64_t complete = avail >= extra + lookahead ? (avail - extra - lookahead) / hop - emitted_ : 0;
  Frames out;
  if (!final && complete < window_frames) return out;

  // The held audio starts at audio_start_: a context grown by set_window
  // cannot reach further back.
  int64_t first_frame = emitted_ > context_frames ? emitted_ - context_frames : 0;
  first_frame = std::max<int64_t>(first_frame, (audio_start_ + hop - 1) / hop);
  const int64_t s = first_frame * hop;
  const int64_t n = avail > s ? avail - s : 0;
  // Region frames [0, frames): all at the end, else up to the last whole hop.
  const int64_t frames = final ? hubert::frame_count(cfg, n)
                               : emitted_ - first_frame + complete / window_frames * window_frames;
  const int64_t per = frame_floats();
  if (first_frame + frames > emitted_) {
    at::Tensor states;  // [new frames, L, D], contiguous, CPU
    {
      c10::InferenceMode guard;
      std::vector<float> region(audio_.begin() + (s - audio_start_), audio_.end());
      at::Tensor wave = at::from_blob(region.data(), {n}, at::kFloat);
      if (cfg_.cache_context && !(final && emitted_ == 0)) {
        // Normalised over the region as without the cache; then the frames
        // from `from` on are encoded, attending to the cached ones before
        // them: the new frames, or with nothing cached (the stream's start,
        // the cache just switched on) the whole region, which fills it.
        // Offline (everything at the end) stays the reference's path.
        const int64_t from = cache_->frames() > 0 ? emitted_ : first_frame;
        const int64_t skip = (from - first_frame) * hop;
        const at::Tensor fresh = hubert::Model::normalize(wave).narrow(0, skip, n - skip);
        const int64_t keep = frames - (from - first_frame);  // up to the last frame sent; the rest is look-ahead
        hubert::WindowJob job;
        job.cached = true;
        job.call = {fresh, keep, context_frames, cache_.get()};
        states = (executor_ ? executor_->submit(job) : model_->hidden_states_cached(fresh, keep, context_frames, cache_.get()))
                     .slice(1, emitted_ - from, keep)
                     .transpose(0, 1)
                     .contiguous();
      } else {
        hubert::WindowJob job;
        job.wave = wave;
        states = (executor_ ? executor_->submit(job) : model_->hidden_states(wave, nullptr, interrupt_))
                     .slice(1, emitted_ - first_frame, frames)
                     .transpose(0, 1)
                     .contiguous();
      }
    }
    out.count = states.size(0);
    const float* data = states.data_ptr<float>();
    out.data.assign(data, data + out.count * per);
    last_frame_.assign(data + (out.count - 1) * per, data + out.count * per);
    emitted_ += out.count;
  }
  trim((emitted_ > context_frames ? emitted_ - context_frames : 0) * hop);
  if (final) {
    if (emitted_ == 0) {
      too_short_ = avail > 0;
    } else {
      // The demo's padding frame (spec 1.7): the last frame again, in the next slot.
      out.data.insert(out.data.end(), last_frame_.begin(), last_frame_.end());
      out.count++;
      emitted_++;
    }
  }
  return out;
}

int warm_up(std::shared_ptr<const hubert::Model> model, const StreamConfig& cfg) {
  if (!model) return 0;
  if (!model->warm_ups().first("window " + std::to_string(cfg.window_ms) + "/" + std::to_string(cfg.context_ms) +
                                "/" + std::to_string(cfg.lookahead_ms) + (cfg.cache_context ? " cached" : "")))
    return 0;
  Stream s(std::move(model), cfg);
  // The region reaches its full size once `context` of audio has been sent;
  // two more windows show the steady shape.  A context of more than
  // kGrowthWindows windows (window 20 ms, context 8000: 400 passes, each
  // longer than the last, 15.6 s with the tiny model inside a state change
  // that nothing interrupts, found 2026-12-07) is filled by the second
  // window at once instead: a few windows' work whatever the setting.
  const int64_t growth = ((int64_t)cfg.context_ms + cfg.window_ms - 1) / cfg.window_ms;
  const bool jump = growth > kGrowthWindows;
  const int64_t total = (jump ? (int64_t)2 * cfg.context_ms + 4 * cfg.window_ms + 2 * cfg.lookahead_ms
                              : (int64_t)cfg.context_ms + 3 * cfg.window_ms + cfg.lookahead_ms) *
                        kSampleRate / 1000;
  const std::vector<float> piece(320, 0.0f);
  int windows = 0;
  for (int64_t n = 0; n < total && !(jump && windows == 4); n += 320) {
    s.push(piece.data(), 320);
    if (s.next(false).count > 0) {
      windows++;
      if (jump && windows == 1)
        s.set_window(std::max({cfg.context_ms - cfg.window_ms, cfg.lookahead_ms, 20}), cfg.context_ms,
                     cfg.lookahead_ms);
      if (jump && windows == 2) s.set_window(cfg.window_ms, cfg.context_ms, cfg.lookahead_ms);
    }
  }
  return windows;
}

}  // namespace anitalker::features
