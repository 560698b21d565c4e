// anitalker bench latency: the live chain against the real clock, per
// latency preset of the `anitalker` bin.  A live audio source (pink noise,
// 20 ms buffers, timestamped by the pipeline clock as a microphone is) feeds
// the bin in streaming mode; a synchronised sink takes the video.  Each
// frame's delay (running time - PTS) is taken when the chain made it (it
// enters the bin's out-queue): the first frame's delay is the time from the
// first audio sample in to the first video frame out; the others give the
// steady-state delay, which the latency the source and the elements
// reported (asked at the bin's src pad) must bound and come close to.  A
// frame is late when it leaves the bin for the sink after PTS + the latency
// the pipeline configured (that report + the sink's processing deadline): a
// synchronised sink would drop or stall on it.
#include <gst/gst.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "bench_models.h"
#include "bench_util.h"
#include "live_probe.h"
#include "cli.h"
#include "device.h"
#include "error.h"
#include "feature_stream.h"
#include "hubert.h"
#include "models.h"
#include "motion.h"
#include "motion_driver.h"
#include "wav.h"

namespace {

using live_probe::Frames;
using live_probe::percentile;

struct Result {
  std::string preset;
  long long frames = 0, expected = 0, late = 0;
  bool monotonic = true;
  double reported = 0;    // the source's and the elements' (the latency at the bin's src pad), s
  double configured = 0;  // the pipeline's: reported + the sink's processing deadline, s
  double first = 0, p50 = 0, p95 = 0, max = 0;
  double trend = 0;      // steady delay's slope, ms per minute of stream (drift)
  double av_offset = 0;  // worst video-behind-audio at synchronised sinks: max(0, out delay - configured), s
  bool retried = false;  // failed --check and was run again (--retries)
  double start = 0;      // NULL -> PLAYING: the elements' loads and warm-ups, s
  // anitalkermotion's steps (min-steps): changes, the fewest and the last.
  int step_changes = 0, fewest_steps = 0, last_steps = 0;
};

Result run_preset(const std::string& preset, long long seconds, const live_probe::Chain& chain) {
  // 20 ms buffers of 16 kHz audio from a live source.
  const long long buffers = seconds * 50;
  Frames f;
  GstElement* pipe = live_probe::live_pipeline(buffers, preset, chain, 0, &f);

  const gint64 t_start = g_get_monotonic_time();
  gst_element_set_state(pipe, GST_STATE_PLAYING);
  // The latency the pipeline configures (the sinks wait for PTS + this):
  // the source's and the elements' reports, and the sink's processing
  // deadline.  The elements add their windows' compute time as it is
  // measured (a LATENCY message each time it grows), and the sinks follow:
  // asked again at the end.
  double configured = -1;
  const bool playing = gst_element_get_state(pipe, nullptr, nullptr, 30 * GST_SECOND) == GST_STATE_CHANGE_SUCCESS;
  // How long a live avatar takes to start: every model loaded (or taken
  // from the process's cache) and warmed up.
  const double start = (g_get_monotonic_time() - t_start) / 1e6;
  if (playing) configured = live_probe::query_latency(GST_OBJECT(pipe));
  GstBus* bus = gst_element_get_bus(pipe);
  Result r;
  r.fewest_steps = r.last_steps = chain.steps;
  GstMessage* msg;
  // The motion generator's step changes, until the end or an error.
  while (GST_MESSAGE_TYPE(msg = gst_bus_timed_pop_filtered(
                              bus, GST_CLOCK_TIME_NONE,
                              (GstMessageType)(GST_MESSAGE_EOS | GST_MESSAGE_ERROR | GST_MESSAGE_ELEMENT))) ==
         GST_MESSAGE_ELEMENT) {
    const GstStructure* s = gst_message_get_structure(msg);
    int steps = 0;
    if (gst_structure_has_name(s, "anitalker-motion-steps") && gst_structure_get_int(s, "steps", &steps)) {
      r.step_changes++;
      r.last_steps = steps;
      r.fewest_steps = std::min(r.fewest_steps, steps);
    }
    gst_message_unref(msg);
  }
  std::string error;
  if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
    GError* e = nullptr;
    gchar* dbg = nullptr;
    gst_message_parse_error(msg, &e, &dbg);
    error = std::string(e ? e->message : "?") + (dbg ? std::string(" (") + dbg + ")" : "");
    if (e) g_error_free(e);
    g_free(dbg);
  }
  gst_message_unref(msg);
  gst_object_unref(bus);
  r.preset = preset;
  r.start = start;
  r.configured = std::max(configured, live_probe::query_latency(GST_OBJECT(pipe)));
  // What the source and the elements reported: the latency at the bin's src pad.
  {
    GstElement* talk = gst_bin_get_by_name(GST_BIN(pipe), "talk");
    GstPad* src = gst_element_get_static_pad(talk, "src");
    r.reported = live_probe::query_latency(GST_OBJECT(src));
    gst_object_unref(src);
    gst_object_unref(talk);
  }
  gst_element_set_state(pipe, GST_STATE_NULL);
  gst_object_unref(pipe);
  if (!error.empty()) throw anitalker::Error(anitalker::Error::Kind::Runtime, preset + ": " + error);

  r.expected = live_probe::expected_frames(chain.variant, buffers * 320);
  const live_probe::Times& out = f.out;    // leaving the bin for the sink
  const live_probe::Times& made = f.made;  // made by the chain
  r.frames = (long long)out.pts.size();
  for (size_t i = 1; i < out.pts.size(); i++)
    if (out.pts[i] <= out.pts[i - 1]) r.monotonic = false;
  if (!made.delay.empty() && !out.delay.empty()) {
    r.first = made.delay.front();
    // The frames made after the source stopped are pushed at its EOS: they
    // say nothing of the live delay.  Steady state: after the first frame,
    // up to the last frame made while the source ran.
    const GstClockTime end = live_probe::live_end(f, (double)buffers * 0.02);
    std::vector<double> steady;
    for (size_t i = 1; i < made.delay.size(); i++)
      if (made.pts[i] <= end) steady.push_back(made.delay[i]);
    r.p50 = percentile(steady, 0.5);
    r.p95 = percentile(steady, 0.95);
    r.max = steady.empty() ? r.first : *std::max_element(steady.begin(), steady.end());
    r.max = std::max(r.max, r.first);
    // Late: it left for the sink after PTS + the configured latency.  The
    // audio, teed beside the video to a synchronised sink, plays at PTS +
    // latency; a late frame plays behind it by the difference.
    for (size_t i = 0; i < out.delay.size(); i++) {
      if (out.pts[i] > end) continue;
      if (out.delay[i] > r.configured) r.late++;
      r.av_offset = std::max(r.av_offset, out.delay[i] - r.configured);
    }
    // Drift: the least-squares slope of the chain's worst delay per 2 s of
    // stream (a whole window at every preset: within a window the delay
    // falls frame by frame) against stream time, after the first frame; 3
    // blocks at least.
    std::vector<double> block_max;
    for (size_t i = 1; i < made.delay.size(); i++) {  // the first frame is not steady state
      if (made.pts[i] > end) continue;
      const size_t k = (size_t)(made.pts[i] / (2 * GST_SECOND));
      if (block_max.size() <= k) block_max.resize(k + 1, -1e9);
      block_max[k] = std::max(block_max[k], made.delay[i]);
    }
    double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (size_t k = 0; k < block_max.size(); k++) {
      if (block_max[k] < -1e8) continue;
      const double x = (double)(k + 1) * 2.0 / 60.0, y = block_max[k] * 1000.0;
      n++;
      sx += x;
      sy += y;
      sxx += x * x;
      sxy += x * y;
    }
    if (n > 2 && n * sxx - sx * sx > 0) r.trend = (n * sxy - sx * sy) / (n * sxx - sx * sx);
  }
  return r;
}

// The presets' windows, as the bin sets them (gst/gstanitalkerbin.cpp).
struct PresetWindows {
  const char* name;
  int fw, fc, fl;  // hubertenc window, context, look-ahead (ms)
  int mw, mc, ml;  // anitalkermotion window, context, look-ahead (frames)
};
const PresetWindows kPresetWindows[] = {
    {"quality", 2000, 1000, 0, 50, 10, 0},
    {"balanced", 520, 1000, 100, 13, 10, 0},
    {"low", 120, 1000, 40, 3, 10, 0},
};

// What each preset costs in closeness to offline (no clock involved): the
// speech clip looped to `seconds`, HuBERT from models-dir streamed in 20 ms
// pieces through features::Stream (the element's own windowing) against one
// offline run, per hidden state; then the motion of models-dir's stage 2
// streamed through motion::Stream on the offline features, against offline
// with the stream's noise, and the seam jumps (mean |x[t] - x[t-1]| at the
// window edges over the mean elsewhere).
int quality_cost(const std::string& models, const std::string& audio_path, long long seconds, int steps,
                 const std::string& variant, const std::vector<int>& custom) {
  std::vector<PresetWindows> presets(std::begin(kPresetWindows), std::end(kPresetWindows));
  if (custom.size() == 6)
    presets.push_back({"windows", custom[0], custom[1], custom[2], custom[3], custom[4], custom[5]});
  c10::InferenceMode guard;
  // Bounded by the memory free, as `anitalker features` reads audio; an
  // empty clip is refused (looping it to --seconds never ended: found
  // 2026-12-07).
  const size_t free = anitalker::device_memory_free(c10::Device(c10::kCPU));
  const anitalker::Audio wav = anitalker::read_wav(audio_path, free > 0 ? free / sizeof(float) / 2 : SIZE_MAX);
  if (wav.sample_rate != 16000) throw cli::UsageError(audio_path + ": expected 16 kHz audio");
  if (wav.samples.empty()) throw anitalker::format_error(audio_path + ": no audio samples");
  std::vector<float> x;
  while ((long long)x.size() < seconds * 16000) x.insert(x.end(), wav.samples.begin(), wav.samples.end());
  x.resize((size_t)seconds * 16000);
  auto hub = anitalker::hubert::Model::load(models + "/chinese-hubert-large", c10::Device(c10::kCPU));
  double compute_s = 0;  // the last features() run's
  auto features = [&](const anitalker::features::StreamConfig& cfg) {
    const double t0 = bench::now_s();
    anitalker::features::Stream s(hub, cfg);
    std::vector<float> out;
    for (size_t i = 0; i < x.size(); i += 320) {
      s.push(x.data() + i, (int64_t)std::min<size_t>(320, x.size() - i));
      const auto f = s.next(false);
      out.insert(out.end(), f.data.begin(), f.data.end());
    }
    const auto f = s.next(true);
    out.insert(out.end(), f.data.begin(), f.data.end());
    const int64_t L = hub->num_states(), D = hub->hidden();
    compute_s = bench::now_s() - t0;
    return at::from_blob(out.data(), {(int64_t)out.size() / (L * D), L, D}, at::kFloat).clone();
  };
  anitalker::features::StreamConfig whole;
  whole.window_ms = (int)seconds * 1000 + 1000;
  const at::Tensor offline = features(whole);  // [T, L, D]
  std::printf("quality cost: %s, %lld s of %s looped, motion %s at %d steps\n", models.c_str(), seconds,
              audio_path.c_str(), variant.c_str(), steps);
  std::printf("HuBERT features, streamed vs offline (abs difference; |offline| mean %.3f):\n",
              offline.abs().mean().item<double>());
  std::printf("  %-15s %9s %9s %9s %9s %9s %11s\n", "preset", "mean", "max", "mean L0", "mean L12", "mean L24",
              "s per s");
  for (const PresetWindows& p : presets)
    for (bool cached : {false, true}) {
      const at::Tensor d = (features({p.fw, p.fc, p.fl, cached}) - offline).abs();
      const int64_t L = d.size(1);
      std::printf("  %-15s %9.4f %9.3f %9.4f %9.4f %9.4f %11.3f\n",
                  (std::string(p.name) + (cached ? " cached" : "")).c_str(), d.mean().item<double>(),
                  d.max().item<double>(), d.select(1, 0).mean().item<double>(),
                  d.select(1, std::min<int64_t>(12, L - 1)).mean().item<double>(),
                  d.select(1, L - 1).mean().item<double>(), compute_s / (double)seconds);
    }

  namespace motion = anitalker::motion;
  if (!anitalker::models::uses_hubert(variant)) throw cli::UsageError("--quality-cost: a hubert_* variant");
  auto m = motion::Model::load(models + "/" + anitalker::models::stage2_name(variant), c10::Device(c10::kCPU));
  const at::Tensor start = at::randn({1, m->start_dim()}, at::kFloat) * 0.1;
  const at::Tensor direction = at::randn({1, m->motion_dim()}, at::kFloat) * 0.1;
  const int64_t T = motion::motion_frames(*m, offline.size(0));
  const at::Tensor noise = motion::stream_noise(0, T, m->motion_dim());
  const at::Tensor off =
      motion::generate(*m, start, direction, motion::audio_input(*m, offline), motion::Controls(), noise, steps)
          .motion.squeeze(0);
  std::printf("motion, streamed vs offline (the same noise; |offline| mean %.3f):\n", off.abs().mean().item<double>());
  std::printf("  %-9s %9s %9s %11s\n", "preset", "mean", "max", "seam ratio");
  const int64_t per = offline.size(1) * offline.size(2);
  for (const PresetWindows& p : presets) {
    motion::StreamConfig cfg;
    cfg.window = p.mw;
    cfg.context = p.mc;
    cfg.lookahead = p.ml;
    cfg.steps = steps;
    motion::Stream s(m, cfg);
    s.set_codes(start, direction);
    std::vector<at::Tensor> out;
    std::vector<int64_t> seams;
    const float* f = offline.data_ptr<float>();
    for (int64_t i = 0; i < offline.size(0); i += 10) {
      s.push(f + i * per, std::min<int64_t>(10, offline.size(0) - i));
      while (s.ready(false)) {
        if (s.emitted() > 0) seams.push_back(s.emitted());
        out.push_back(s.next(false).motion.squeeze(0));
      }
    }
    while (s.ready(true)) {
      if (s.emitted() > 0) seams.push_back(s.emitted());
      out.push_back(s.next(true).motion.squeeze(0));
    }
    const at::Tensor got = at::cat(out, 0);
    const at::Tensor d = (got - off).abs();
    const at::Tensor step = (got.narrow(0, 1, T - 1) - got.narrow(0, 0, T - 1)).norm(2, 1);
    at::Tensor is_seam = at::zeros({T - 1}, at::kBool);
    for (int64_t e : seams)
      if (e - 1 < T - 1) is_seam[e - 1] = true;
    const double ratio = step.masked_select(is_seam).mean().item<double>() /
                         step.masked_select(is_seam.logical_not()).mean().item<double>();
    std::printf("  %-9s %9.4f %9.3f %11.3f\n", p.name, d.mean().item<double>(), d.max().item<double>(), ratio);
  }
  return 0;
}

// What --check demands of one run.
bool passes(const Result& r) {
  return r.frames == r.expected && r.monotonic && r.late == 0 && r.reported > 0 && r.max >= 0.8 * r.reported &&
         r.max <= r.reported;
}

}  // namespace

int bench_latency(int argc, char** argv) {
  return cli::run("bench latency", [&] {
    live_probe::Chain chain;
    std::string presets = "low,balanced,quality", audio = "tests/data/audio/speech_2s_16k.wav";
    long long seconds = 10, retries = 0;
    bool check = false, stand_in = false, cost = false;
    cli::Options o("bench latency",
                   "Runs the anitalker bin live (a live audio source, the pipeline clock, a synchronised sink) for "
                   "SECONDS per latency preset and reports: the latency the source and the elements report (at the "
                   "bin's src pad) and the one the pipeline configures (+ the sink's processing deadline), the first "
                   "frame's delay (first audio in -> first video frame made), the steady-state delay of the other "
                   "frames (made - PTS: p50, p95, max), frames that reach the sink later than the configured latency, "
                   "the frame count, the worst A/V offset at synchronised sinks (video behind the teed audio) and the "
                   "drift (least-squares slope of the worst delay per 2 s, ms per minute of stream), and how long the "
                   "pipeline took from NULL to PLAYING (start: the models loaded, or taken from the process, and warmed "
                   "up).");
    o.text("preset", &presets, "LIST", "latency presets, of low, balanced, quality");
    o.integer("seconds", &seconds, 2, 3600, "N", "seconds of live audio per preset");
    live_probe::chain_options(o, &chain);
    o.flag("check", &check,
           "exit 1 on a wrong frame count, timestamps that do not increase, a late frame, or a measured maximum "
           "delay above the reported latency or more than 20% below it");
    o.integer("retries", &retries, 0, 5, "N",
              "with --check: run a preset that fails again, up to N times; it fails only when every run fails (the "
              "real clock on a shared machine: another process's burst makes one run late, while a chain that "
              "reports too little latency fails every run)");
    o.flag("stand-in-renderer", &stand_in,
           "replace stage1.ckpt by a 32x32 renderer of 8 channels with the released style and motion sizes (random "
           "weights, on one thread): hubertenc and anitalkermotion at full size on a CPU, without most of the "
           "renderer's cost (which is the GPU's on a real deployment)");
    o.flag("quality-cost", &cost,
           "no clock; what each preset costs in closeness to offline: HuBERT features (mean and max abs, per hidden "
           "state) and motion (mean and max abs, seam jumps), streamed through the elements' own windowing (lib) "
           "against one offline run, on --audio looped to SECONDS");
    o.text("audio", &audio, "WAV", "with --quality-cost: the speech");
    std::string windows;
    o.text("windows", &windows, "FW,FC,FL,MW,MC,ML",
           "try other windows: hubertenc's window, context and look-ahead (ms) and anitalkermotion's (frames), set "
           "on the children over each preset's; with --quality-cost, one more row");
    if (!o.parse(argc, argv)) return 0;
    if (!windows.empty()) {
      for (const std::string& v : cli::split(windows)) {
        char* end = nullptr;
        const long n = std::strtol(v.c_str(), &end, 10);
        if (v.empty() || *end != 0 || n < 0 || n > 100000)
          throw cli::UsageError("--windows: '" + v + "' is not a number from 0 to 100000");
        chain.windows.push_back((int)n);
      }
      if (chain.windows.size() != 6) throw cli::UsageError("--windows: six numbers, FW,FC,FL,MW,MC,ML");
    }
    const std::string &models = chain.models, &variant = chain.variant, &device = chain.device;
    const int steps = chain.steps;
    for (const std::string& p : cli::split(presets)) live_probe::check_preset(p);
    if (cost) return quality_cost(models, audio, seconds, steps, variant, chain.windows);
    gst_init(nullptr, nullptr);
    std::string stage1;
    if (stand_in) {
      stage1 = bench::temp_path("stand-in-stage1") + ".ckpt";
      bench::Stage1Shape shape;
      shape.size = 32;
      shape.channels = [](int64_t) -> int64_t { return 8; };
      bench::write_stage1(stage1, shape);
      // On one thread: its small operations then wake no other thread.
      chain.render_threads = 1;
    }
    chain.stage1 = stage1;
    std::vector<Result> results;
    std::stringstream list(presets);
    try {
      for (std::string p; std::getline(list, p, ',');) {
        results.push_back(run_preset(p, seconds, chain));
        for (long long k = 1; k <= retries && check && !passes(results.back()); k++) {
          results.back().retried = true;
          std::fprintf(stderr, "bench latency: %s failed its check; running it again (%lld of %lld)\n", p.c_str(), k,
                       retries);
          results.push_back(run_preset(p, seconds, chain));
          results.back().preset += " #" + std::to_string(k + 1);
        }
      }
    } catch (...) {
      if (!stage1.empty()) std::remove(stage1.c_str());
      throw;
    }
    if (!stage1.empty()) std::remove(stage1.c_str());

    std::printf("latency: %s%s, %s, %d steps, %lld s of live audio per preset, device %s, %s; %s\n", models.c_str(),
                stand_in ? " (stand-in 32x32 renderer)" : "", variant.c_str(), steps, seconds, device.c_str(),
                chain.precision.c_str(), anitalker::torch_info().c_str());
    std::printf("%-9s %9s %9s %9s %9s %9s %9s %9s %6s %9s %9s %9s %8s %10s\n", "preset", "reported", "config", "first",
                "p50", "p95", "max", "max/rep", "late", "frames", "A/V max", "ms/min", "start", "steps");
    bool ok = true;
    for (const Result& r : results) {
      if (!r.retried && !passes(r)) ok = false;
      // steps: the configured count, or the fewest and the last with the
      // number of changes (anitalkermotion's min-steps at work).
      const std::string steps = r.step_changes == 0 ? std::to_string(chain.steps)
                                                    : std::to_string(r.fewest_steps) + "-" +
                                                          std::to_string(r.last_steps) + " x" +
                                                          std::to_string(r.step_changes);
      std::printf("%-9s %8.3fs %8.3fs %8.3fs %8.3fs %8.3fs %8.3fs %9.2f %6lld %4lld/%-4lld %8.3fs %9.2f %7.2fs %10s%s%s\n",
                  r.preset.c_str(), r.reported, r.configured, r.first, r.p50, r.p95, r.max,
                  r.reported > 0 ? r.max / r.reported : 0.0, r.late, r.frames, r.expected, r.av_offset, r.trend, r.start,
                  steps.c_str(), r.monotonic ? "" : " (timestamps not increasing)",
                  r.retried ? " (failed; run again)" : "");
    }
    if (check && !ok) {
      std::fprintf(stderr,
                   "anitalker bench latency: FAILED (a frame count, timestamps, a late frame, or a maximum delay more "
                   "than 20%% below the reported latency or above it)\n");
      return 1;
    }
    return 0;
  });
}
