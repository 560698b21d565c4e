// The reference demo's driving of stage 2 (spec/motion.md 5), and windowed
// streaming (motion_driver.h).
#include "motion_driver.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "device.h"
#include "error.h"
#include "npy.h"
#include "pose_file.h"

namespace anitalker::motion {

namespace {

Error usage(const std::string& s) { return Error(Error::Kind::Usage, "motion: " + s); }

std::string shape_str(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

}  // namespace

at::Tensor read_pose_file(const std::string& path) {
  const std::vector<float> v = pose_values(read_npy(path), path);
  return at::from_blob(const_cast<float*>(v.data()), {static_cast<int64_t>(v.size() / 3), 3}, at::kFloat).clone();
}

void control_tensors(const Controls& c, int64_t first, int64_t n, at::Tensor* pose, at::Tensor* location,
                     at::Tensor* scale) {
  at::NoGradGuard no_grad;
  if (c.pose_file.defined()) {
    const at::Tensor& p = c.pose_file;
    if (p.dim() != 2 || p.size(1) != 3 || p.size(0) < 1)
      throw usage("a pose file must hold [N, 3] (yaw, pitch, roll in degrees), not " + shape_str(p));
    // Rows first .. first+n-1, the last row repeated past the end (spec 5).
    at::Tensor idx = at::clamp_max(at::arange(first, first + n, at::kLong), p.size(0) - 1);
    *pose = (p.to(at::kFloat).index_select(0, idx) / 90.0).clamp(-1.0, 1.0).unsqueeze(0);
  } else {
    at::Tensor row = at::tensor({c.yaw, c.pitch, c.roll}, at::kFloat).clamp(-1.0, 1.0);
    *pose = row.view({1, 1, 3}).expand({1, n, 3}).contiguous();
  }
  *location = at::full({1, n, 1}, c.location, at::kFloat);
  *scale = at::full({1, n, 1}, c.scale, at::kFloat);
}

int64_t motion_frames(const Model& m, int64_t feature_frames) {
  return feature_frames / (m.hubert() ? 2 : 4);
}

at::Tensor audio_input(const Model& m, const at::Tensor& features, bool layer_major) {
  at::Tensor f = features;
  if (m.hubert()) {
    const int64_t L = m.hubert_layers(), H = m.audio_dim();
    const std::string want = layer_major ? "[" + std::to_string(L) + ", N, " + std::to_string(H) + "]"
                                         : "[N, " + std::to_string(L) + ", " + std::to_string(H) + "]";
    if (f.dim() != 3 || f.size(2) != H || f.size(layer_major ? 0 : 1) != L)
      throw usage("expected HuBERT features of shape " + want + ", not " + shape_str(f));
    const int64_t T = motion_frames(m, f.size(layer_major ? 1 : 0));
    if (T < 1) throw usage("HuBERT features of " + shape_str(f) + " are too short for one motion frame (2 are needed)");
    if (!layer_major) f = f.transpose(0, 1);
    return f.narrow(1, 0, 2 * T).unsqueeze(0).to(at::kFloat).contiguous();
  }
  const int64_t D = m.audio_dim();
  if (f.dim() == 3 && f.size(1) == 1) f = f.squeeze(1);
  if (f.dim() != 2 || f.size(1) != D)
    throw usage("expected MFCC features of shape [N, " + std::to_string(D) + "], not " + shape_str(f));
  const int64_t T = motion_frames(m, f.size(0));
  if (T < 1) throw usage("MFCC features of " + shape_str(f) + " are too short for one motion frame (4 are needed)");
  return f.narrow(0, 0, 4 * T).unsqueeze(0).to(at::kFloat).contiguous();
}

std::vector<Generated> run_windows(const Model& m, const std::vector<const WindowJob*>& jobs, bool batch) {
  std::vector<Condition> conds(jobs.size());
  std::vector<Generated> out(jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) {
    const WindowJob& j = *jobs[i];
    const int64_t T = j.audio.size(m.hubert() ? 2 : 1) / (m.hubert() ? 2 : 4);
    at::Tensor pose, location, scale;
    control_tensors(j.controls, j.first, T, &pose, &location, &scale);
    conds[i] = m.condition(j.start, j.direction, j.audio, j.controls.control, pose, location, scale);
    if (j.noise.dim() != 3 || j.noise.size(0) != 1 || j.noise.size(1) != T || j.noise.size(2) != m.motion_dim())
      throw usage("expected noise of shape [1, " + std::to_string(T) + ", " + std::to_string(m.motion_dim()) +
                  "], not " + shape_str(j.noise));
    Generated& g = out[i];
    if (m.has_pose()) {
      g.pose = conds[i].pose;
      g.location = conds[i].location;
      g.scale = conds[i].scale;
    } else {  // audio only: no predictors
      g.pose = at::zeros({1, T, 3}, conds[i].speech.options());
      g.location = at::zeros({1, T, 1}, conds[i].speech.options());
      g.scale = at::zeros({1, T, 1}, conds[i].speech.options());
    }
  }
  // The samplings: one batch for each shape (T, C, steps) when batching.
  const auto C = [&](size_t k) { return jobs[k]->known.defined() ? jobs[k]->known.size(1) : 0; };
  std::vector<bool> done(jobs.size(), false);
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (done[i]) continue;
    std::vector<size_t> group{i};
    for (size_t k = i + 1; batch && k < jobs.size(); ++k)
      if (!done[k] && jobs[k]->steps == jobs[i]->steps && C(k) == C(i) &&
          conds[k].adjusted.size(1) == conds[i].adjusted.size(1))
        group.push_back(k);
    std::vector<Model::SampleCall> calls;
    for (size_t k : group) calls.push_back({&conds[k], jobs[k]->noise, jobs[k]->known, jobs[k]->on_step});
    std::vector<at::Tensor> x = m.sample_batch(calls, jobs[i]->steps);
    for (size_t n = 0; n < group.size(); ++n) {
      out[group[n]].motion = std::move(x[n]);
      done[group[n]] = true;
    }
  }
  return out;
}

std::shared_ptr<WindowBatcher> shared_windows(std::shared_ptr<const Model> model, size_t max_batch,
                                              std::chrono::microseconds max_delay) {
  const Model* key = model.get();
  // On a GPU the batch is the point (and its products may round a row by
  // the batch's size: within float rounding of each run alone); on the CPU
  // only where each run keeps its bits, measured now (the element's start),
  // not in a live stream's first call.
  const bool gpu = !model->device().is_cpu();
  if (max_batch > 1 && !gpu) model->batch_exact();
  return shared_batcher<WindowBatcher>(key, max_batch, max_delay, [&] {
    auto run = [model, gpu](const std::vector<const WindowJob*>& jobs) {
      c10::InferenceMode guard;
      return run_windows(*model, jobs, jobs.size() > 1 && (gpu || model->batch_exact()));
    };
    return std::make_shared<WindowBatcher>(run, max_batch, max_delay);
  });
}

namespace {

WindowJob job_of(const at::Tensor& start, const at::Tensor& direction, const at::Tensor& audio, const Controls& c,
                 const at::Tensor& noise, int steps, int64_t first = 0, const at::Tensor& known = at::Tensor()) {
  WindowJob job;
  job.start = start;
  job.direction = direction;
  job.audio = audio;
  job.controls = c;
  job.first = first;
  job.noise = noise;
  job.known = known;
  job.steps = steps;
  return job;
}

}  // namespace

Generated generate(const Model& m, const at::Tensor& start, const at::Tensor& direction, const at::Tensor& audio,
                   const Controls& c, const at::Tensor& noise, int steps) {
  const WindowJob job = job_of(start, direction, audio, c, noise, steps);
  return run_windows(m, {&job}, false).front();
}

/* --- Stream --------------------------------------------------------------- */

at::Tensor stream_noise(uint64_t seed, int64_t frames, int motion_dim) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  std::vector<at::Tensor> rows;
  for (int64_t f = 0; f < frames; ++f) rows.push_back(at::randn({1, motion_dim}, gen, at::kFloat));
  return at::cat(rows, 0).unsqueeze(0);
}

Stream::Stream(std::shared_ptr<const Model> model, const StreamConfig& cfg)
    : model_(std::move(model)), cfg_(cfg), gen_(at::detail::createCPUGenerator(cfg.seed)) {
  if (cfg_.window < 1) throw usage("the streaming window must be at least one frame");
  if (cfg_.context < 0 || cfg_.lookahead < 0) throw usage("context and look-ahead cannot be negative");
  ddim_timesteps(cfg_.steps);  // throws for a step count the stride rule cannot meet
  frame_floats_ = model_->hubert() ? (int64_t)model_->hubert_layers() * model_->audio_dim() : model_->audio_dim();
  reset();
}

void Stream::set_window(int window, int context, int lookahead) {
  if (window < 1) throw usage("the streaming window must be at least one frame");
  if (context < 0 || lookahead < 0) throw usage("context and look-ahead cannot be negative");
  cfg_.window = window;
  cfg_.context = context;
  cfg_.lookahead = lookahead;
}

void Stream::set_steps(int steps) {
  ddim_timesteps(steps);
  cfg_.steps = steps;
}

StepController::StepController(int steps, int min_steps) {
  ddim_timesteps(steps);
  ladder_.push_back(steps);
  if (min_steps <= 0 || min_steps >= steps) return;
  ddim_timesteps(min_steps);
  for (int n = steps; n > min_steps;) {
    int next = std::min(n - 1, n * 7 / 10);
    // Above 32 not every count has an integer stride: the nearest below.
    while (next > min_steps && !ddim_steps_work(next)) --next;
    n = std::max(next, min_steps);
    ladder_.push_back(n);
  }
}

int StepController::start_from(double window_s, double hop_s) {
  while (window_s > 0 && rung_ + 1 < ladder_.size() && window_s * ladder_[rung_] / ladder_[0] > hop_s) ++rung_;
  return ladder_[rung_];
}

int StepController::next(double late_s, double hop_s, double last_compute_s, double last_cycle_s) {
  const bool late = late_s > hop_s / 2;
  if (late_s <= 0)
    ++in_time_;
  else
    in_time_ = 0;
  const bool growing = !have_last_ || late_s >= last_late_s_;
  last_late_s_ = late_s;
  have_last_ = true;
  const bool ours = last_cycle_s <= 0 || last_compute_s >= last_cycle_s / 4;
  if (late && growing && ours && rung_ + 1 < ladder_.size()) {
    ++rung_;
    in_time_ = 0;
  } else if (in_time_ >= kSettle && rung_ > 0 &&
             last_compute_s * ladder_[rung_ - 1] / ladder_[rung_] <= hop_s / 2) {
    --rung_;
    in_time_ = 0;
  }
  return ladder_[rung_];
}

void Stream::set_codes(const at::Tensor& start, const at::Tensor& direction) {
  if (start.numel() != model_->start_dim())
    throw usage("expected a start code of " + std::to_string(model_->start_dim()) + " values, not " +
                std::to_string(start.numel()));
  if (direction.numel() != model_->motion_dim())
    throw usage("expected a direction code of " + std::to_string(model_->motion_dim()) + " values, not " +
                std::to_string(direction.numel()));
  start_ = start.reshape({1, -1}).to(at::kFloat).clone();
  direction_ = direction.reshape({1, -1}).to(at::kFloat).clone();
}

void Stream::reset() {
  gen_ = at::detail::createCPUGenerator(cfg_.seed);
  feats_.clear();
  feat_first_ = received_ = 0;
  known_ = at::empty({0, model_->motion_dim()}, at::kFloat);
  known_first_ = emitted_ = 0;
  noise_ = at::empty({0, model_->motion_dim()}, at::kFloat);
  noise_first_ = 0;
}

int64_t Stream::per_frame() const { return model_->hubert() ? 2 : 4; }

int64_t Stream::held_features() const { return (int64_t)feats_.size() / frame_floats_; }

void Stream::push(const float* data, int64_t n) {
  feats_.insert(feats_.end(), data, data + n * frame_floats_);
  received_ += n;
}

bool Stream::ready(bool final) const {
  const int64_t total = received_ / per_frame();  // motion frames the features make
  if (final) return total > emitted_;
  return total >= emitted_ + cfg_.window + cfg_.lookahead;
}

at::Tensor Stream::noise_for(int64_t a, int64_t b) {
  const int64_t have = noise_first_ + noise_.size(0);
  if (b > have) {
    // Frame by frame, as stream_noise() draws them.
    std::vector<at::Tensor> rows;
    for (int64_t f = have; f < b; ++f) rows.push_back(at::randn({1, model_->motion_dim()}, gen_, at::kFloat));
    rows.insert(rows.begin(), noise_);
    noise_ = at::cat(rows, 0);
  }
  return noise_.narrow(0, a - noise_first_, b - a).unsqueeze(0);
}

Generated Stream::run(const WindowJob& job) const {
  return executor_ ? executor_->submit(job) : run_windows(*model_, {&job}, false).front();
}

Generated Stream::next(bool final) {
  at::NoGradGuard no_grad;
  if (!start_.defined()) throw usage("no portrait codes for the stream");
  if (!ready(final)) throw usage("no window is ready");
  const Model& m = *model_;
  const int64_t total = received_ / per_frame();
  const int64_t e = emitted_;
  // Held latents and features start at known_first_ (a context grown by
  // set_window cannot reach further back).
  const int64_t a = std::max<int64_t>(known_first_, e - cfg_.context);
  const int64_t b = final ? total : e + cfg_.window + cfg_.lookahead;
  const int64_t emit_end = final ? total : e + cfg_.window;

  // Features of motion frames [a, b): feature frames [pf a, pf b).
  const int64_t pf = per_frame();
  const int64_t f0 = pf * a - feat_first_, fn = pf * (b - a);
  at::Tensor feats = at::empty({fn * frame_floats_}, at::kFloat);
  std::copy(feats_.begin() + f0 * frame_floats_, feats_.begin() + (f0 + fn) * frame_floats_, feats.data_ptr<float>());
  at::Tensor audio = m.hubert() ? audio_input(m, feats.view({fn, m.hubert_layers(), m.audio_dim()}))
                                : audio_input(m, feats.view({fn, m.audio_dim()}));

  Generated g = run(job_of(start_, direction_, audio, controls_, noise_for(a, b), cfg_.steps, a,
                           known_.narrow(0, a - known_first_, e - a).unsqueeze(0)));

  Generated out;
  const int64_t k = emit_end - e;
  out.motion = g.motion.narrow(1, e - a, k).to(at::kCPU).contiguous();
  out.pose = g.pose.narrow(1, e - a, k).to(at::kCPU).contiguous();
  out.location = g.location.narrow(1, e - a, k).to(at::kCPU).contiguous();
  out.scale = g.scale.narrow(1, e - a, k).to(at::kCPU).contiguous();
  emitted_ = emit_end;

  // Keep what the next window needs: the last `context` latents, their noise
  // on, and the features from the next window's first frame on.
  const int64_t na = std::max<int64_t>(known_first_, emitted_ - cfg_.context);
  known_ = at::cat({known_, out.motion.squeeze(0)}, 0);
  known_ = known_.narrow(0, na - known_first_, emitted_ - na).clone();
  known_first_ = na;
  if (na > noise_first_) {
    const int64_t drop = std::min<int64_t>(na - noise_first_, noise_.size(0));
    noise_ = noise_.narrow(0, drop, noise_.size(0) - drop).clone();
    noise_first_ += drop;
  }
  const int64_t fdrop = std::min<int64_t>(pf * na - feat_first_, held_features());
  if (fdrop > 0) {
    feats_.erase(feats_.begin(), feats_.begin() + fdrop * frame_floats_);
    feat_first_ += fdrop;
  }
  return out;
}

Generated Stream::whole(const StepCallback& on_step) {
  at::NoGradGuard no_grad;
  if (!start_.defined()) throw usage("no portrait codes for the stream");
  if (emitted_ > 0 || feat_first_ > 0) throw usage("the whole utterance cannot follow windows of the same stream");
  const Model& m = *model_;
  const int64_t N = received_, T = motion_frames(m, N);
  if (T < 1)
    throw usage(std::to_string(N) + " feature frames are too short for one motion frame (" +
                std::to_string(per_frame()) + " are needed)");
  at::Tensor feats = at::empty({N * frame_floats_}, at::kFloat);
  std::copy(feats_.begin(), feats_.end(), feats.data_ptr<float>());
  feats_.clear();
  feats_.shrink_to_fit();
  feat_first_ = N;
  const at::Tensor audio = m.hubert() ? audio_input(m, feats.view({N, m.hubert_layers(), m.audio_dim()}))
                                      : audio_input(m, feats.view({N, m.audio_dim()}));
  WindowJob job = job_of(start_, direction_, audio, controls_, m.seed_noise(cfg_.seed, T), cfg_.steps);
  job.on_step = on_step;
  Generated g = run(job);
  emitted_ = T;
  return g;
}

int64_t window_wait(int64_t per_frame, int window, int lookahead, int64_t next, int64_t hop, int64_t origin) {
  const int64_t plain = per_frame * (window + lookahead) - 1;
  if (hop <= 0) return plain;
  int64_t worst = 0;
  for (int64_t k = 0; k <= hop; k++) {
    const int64_t first = per_frame * (next + k * window);
    const int64_t last = per_frame * (next + (k + 1) * window + lookahead) - 1;
    const int64_t arrives = last < origin ? last + 1 : origin + ((last - origin) / hop + 1) * hop;  // its hop's end
    worst = std::max(worst, arrives - first - hop);
  }
  return std::min(plain, worst);
}

int warm_up(std::shared_ptr<const Model> model, const StreamConfig& cfg, double* last_window_s) {
  if (last_window_s) *last_window_s = 0;
  c10::InferenceMode guard;
  const Model& m = *model;
  if (!m.warm_ups().first("window " + std::to_string(cfg.window) + "/" + std::to_string(cfg.context) + "/" +
                           std::to_string(cfg.lookahead) + " steps " + std::to_string(cfg.steps)))
    return 0;
  const int64_t per = m.hubert() ? 2 : 4;
  const int64_t floats = per * (m.hubert() ? (int64_t)m.hubert_layers() * m.audio_dim() : m.audio_dim());
  Stream s(std::move(model), cfg);
  s.set_codes(at::zeros({1, m.start_dim()}, at::kFloat), at::zeros({1, m.motion_dim()}, at::kFloat));
  const std::vector<float> frame((size_t)floats, 0.0f);
  int windows = 0;
  // A context of many windows (window 1, context 300) is not filled one
  // window at a time, each longer than the last: that took minutes with
  // the tiny models (context**2 / window frames' work) inside a state
  // change that nothing can interrupt (found 2026-12-07).  Past
  // kGrowthWindows, the second window fills it at once (a shape no live
  // window has, once), then two windows of the steady shape.
  const int64_t growth = ((int64_t)cfg.context + cfg.window - 1) / cfg.window;
  const bool jump = growth > kGrowthWindows;
  const int64_t frames = jump ? 2 * (int64_t)cfg.context + 4 * (int64_t)cfg.window + 2 * (int64_t)cfg.lookahead
                              : (int64_t)cfg.context + 3 * (int64_t)cfg.window + cfg.lookahead;
  for (int64_t f = 0; f < frames && !(jump && windows == 4); ++f) {
    s.push(frame.data(), per);
    while (s.ready(false) && !(jump && windows == 4)) {
      const auto t0 = std::chrono::steady_clock::now();
      s.next(false);
      if (last_window_s) *last_window_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      windows++;
      if (jump && windows == 1)
        s.set_window(std::max({cfg.context - cfg.window, cfg.lookahead, 1}), cfg.context, cfg.lookahead);
      if (jump && windows == 2) s.set_window(cfg.window, cfg.context, cfg.lookahead);
    }
  }
  return windows;
}

}  // namespace anitalker::motion
