// anitalker bench streams: how many live avatars one process (one machine,
// one GPU) carries.  For each N, N pipelines run at once, each a live audio
// source (20 ms buffers at the real clock) ! the `anitalker` bin in
// streaming mode at a latency preset, with its own seed ! a synchronised
// sink; the report per N: frames delivered against expected, the aggregate
// frame rate, frames that left the bin later than their pipeline's
// configured latency, the chain's delay (the frame made - PTS) p50 / p95
// over all frames, the peak resident memory and, on an NVIDIA GPU, the
// GPU's memory in use (peak) and how busy it was (mean and peak of NVML's
// samples, every 0.5 s).  Each pipeline has its own bus and ends on its own
// EOS; one's error is reported without stopping the others.
#include <gst/gst.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cli.h"
#include "device.h"
#include "error.h"
#include "live_probe.h"

namespace {

struct Stream {
  GstElement* pipe = nullptr;
  live_probe::Frames frames;
  std::string error;
  double reported = 0;
  bool done = false;
};

}  // namespace

int bench_streams(int argc, char** argv) {
  return cli::run("bench streams", [&] {
    live_probe::Chain chain;
    std::string preset = "low";
    std::vector<int> ns = {1, 2, 4};
    long long seconds = 10;
    cli::Options o("bench streams",
                   "Runs N live pipelines at once in this process (a live audio source, the anitalker bin in "
                   "streaming mode at the latency preset, each with its own seed, a synchronised sink) for SECONDS "
                   "and reports per N: frames delivered / expected, the aggregate frame rate, frames later than the "
                   "configured latency, the chain's delay (frame made - PTS) p50 / p95, the peak resident memory "
                   "and, on an NVIDIA GPU (NVML), the GPU memory in use (peak, every process's) and its utilisation "
                   "(mean and peak of samples every 0.5 s).");
    o.integers("streams", &ns, 1, 256, "LIST", "the counts of pipelines run together");
    o.integer("seconds", &seconds, 2, 3600, "N", "seconds of live audio per stream");
    o.choice("preset", &preset, {"low", "balanced", "quality"}, "the bin's latency preset");
    live_probe::chain_options(o, &chain);
    o.integer("max-batch", &chain.max_batch, 1, 1024, "N",
              "the bins' max-batch: above 1 the N pipelines share one executor per network (HuBERT, the motion "
              "generator, the renderer and with --face-sr GFPGAN, ParseNet and RetinaFace), up to N requests a call");
    o.integer("max-batch-delay", &chain.max_batch_delay, 0, 1000000, "US",
              "with --max-batch: microseconds the first request of a call waits for the others");
    o.flag("face-sr", &chain.face_sr,
           "the bins restore the face with gfpgansr (the models folder holds GFPGANv1.4.pth, "
           "detection_Resnet50_Final.pth and parsing_parsenet.pth: `anitalker fixtures random DIR --face-sr`); "
           "one face a frame (max-faces 1: random weights detect hundreds)");
    int detect_every = 1, parse_every = 1;
    std::string sr_precision = "fp32";
    o.text("sr-precision", &sr_precision, "P", "with --face-sr: gfpgansr's precision (fp32, bf16 on a CPU with "
                                               "AVX512_BF16, fp16 on CUDA)");
    o.integer("detect-every", &detect_every, 1, 1000, "N", "with --face-sr: gfpgansr's detect-every");
    o.integer("parse-every", &parse_every, 1, 1000, "N", "with --face-sr: gfpgansr's parse-every");
    if (!o.parse(argc, argv)) return 0;
    const std::string &models = chain.models, &variant = chain.variant, &device = chain.device;
    const c10::Device dev = anitalker::parse_device(device);
    const int gpu_index = dev.is_cuda() ? (dev.has_index() ? dev.index() : 0) : -1;
    const int steps = chain.steps;
    gst_init(nullptr, nullptr);
    const long long buffers = seconds * 50;
    const long long expected_each = live_probe::expected_frames(variant, buffers * 320);
    std::printf("streams: %s, %s, %d steps, preset %s, %lld s of live audio per stream, device %s%s, %s\n",
                models.c_str(), variant.c_str(), steps, preset.c_str(), seconds, device.c_str(),
                chain.face_sr ? (", face-sr (detect-every " + std::to_string(detect_every) + ", parse-every " +
                                 std::to_string(parse_every) + ", " + sr_precision + ")")
                                    .c_str()
                              : "",
                chain.max_batch > 1 ? ("one shared executor per network, max-batch " + std::to_string(chain.max_batch) + ", " +
                                       std::to_string(chain.max_batch_delay) + " us")
                                          .c_str()
                                    : "networks per pipeline");
    std::printf("%8s %15s %11s %7s %9s %9s %10s %11s %13s %s\n", "streams", "frames", "fps total", "late", "p50",
                "p95", "peak RSS", "GPU memory", "GPU util", "errors");
    long long failed = 0;
    for (int n : ns) {
      std::vector<std::unique_ptr<Stream>> streams;
      for (int i = 0; i < n; ++i) {
        auto st = std::make_unique<Stream>();
        try {
          st->pipe = live_probe::live_pipeline(buffers, preset, chain, (guint64)i, &st->frames);
        } catch (...) {
          for (auto& s : streams) gst_object_unref(s->pipe);
          throw;
        }
        if (chain.face_sr) {
          // The bin makes gfpgansr at READY.
          gst_element_set_state(st->pipe, GST_STATE_READY);
          GstElement* sr = gst_bin_get_by_name(GST_BIN(st->pipe), "sr");
          if (sr) {
            g_object_set(sr, "max-faces", 1u, "detect-every", (guint)detect_every, "parse-every", (guint)parse_every,
                         nullptr);
            gst_util_set_object_arg(G_OBJECT(sr), "precision", sr_precision.c_str());
            gst_object_unref(sr);
          }
        }
        streams.push_back(std::move(st));
      }
      const auto t0 = std::chrono::steady_clock::now();
      for (auto& s : streams) gst_element_set_state(s->pipe, GST_STATE_PLAYING);
      // The GPU's use, sampled every 0.5 s while the streams run.
      double gpu_peak_mb = 0, util_sum = 0;
      int util_peak = 0, samples = 0;
      auto next_sample = t0;
      auto sample_gpu = [&] {
        if (gpu_index < 0 || std::chrono::steady_clock::now() < next_sample) return;
        next_sample += std::chrono::milliseconds(500);
        const anitalker::GpuUse u = anitalker::gpu_use(gpu_index);
        if (!u.known) return;
        gpu_peak_mb = std::max(gpu_peak_mb, u.used_mb);
        util_sum += u.util_percent;
        util_peak = std::max(util_peak, u.util_percent);
        ++samples;
      };
      // Each pipeline ends on its own EOS or error; none waits for another.
      size_t left = streams.size();
      while (left > 0) {
        for (auto& s : streams) {
          sample_gpu();
          if (s->done) continue;
          GstBus* bus = gst_element_get_bus(s->pipe);
          GstMessage* m = gst_bus_timed_pop_filtered(bus, 20 * GST_MSECOND,
                                                     (GstMessageType)(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
          gst_object_unref(bus);
          if (!m) continue;
          if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR) {
            GError* e = nullptr;
            gst_message_parse_error(m, &e, nullptr);
            s->error = e ? e->message : "?";
            if (e) g_error_free(e);
          }
          gst_message_unref(m);
          s->reported = live_probe::query_latency(GST_OBJECT(s->pipe));
          gst_element_set_state(s->pipe, GST_STATE_NULL);
          s->done = true;
          --left;
        }
      }
      const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      long long frames = 0, late = 0, errors = 0;
      std::vector<double> delays;
      for (auto& s : streams) {
        const live_probe::Times& out = s->frames.out;
        frames += (long long)out.pts.size();
        if (!s->error.empty()) {
          ++errors;
          std::fprintf(stderr, "anitalker bench streams: a stream failed: %s\n", s->error.c_str());
        }
        // The frames pushed at the source's EOS are left out, as in bench latency.
        const GstClockTime end = live_probe::live_end(s->frames, (double)buffers * 0.02);
        // Late: it left for the sink after PTS + latency.  The delay: when the chain made it.
        for (size_t i = 0; i < out.pts.size(); ++i)
          if (out.pts[i] <= end && out.delay[i] > s->reported) ++late;
        const live_probe::Times& made = s->frames.made;
        for (size_t i = 0; i < made.pts.size(); ++i)
          if (made.pts[i] <= end) delays.push_back(made.delay[i]);
        gst_object_unref(s->pipe);
      }
      char fr[48];
      std::snprintf(fr, sizeof fr, "%lld/%lld", frames, expected_each * n);
      char mem[32] = "-", util[32] = "-";
      if (samples > 0) {
        std::snprintf(mem, sizeof mem, "%.0f MB", gpu_peak_mb);
        std::snprintf(util, sizeof util, "%.0f%% (%d%%)", util_sum / samples, util_peak);
      }
      std::printf("%8d %15s %11.1f %7lld %8.3fs %8.3fs %8.0f MB %11s %13s %lld\n", n, fr, frames / wall, late,
                  live_probe::percentile(delays, 0.5), live_probe::percentile(delays, 0.95), cli::memory().peak / 1e6,
                  mem, util, errors);
      failed += errors;
    }
    // Every count ran; a failed stream still fails the run (exit 1).
    if (failed > 0) throw anitalker::Error(anitalker::Error::Kind::Runtime, std::to_string(failed) + " stream(s) failed (above)");
    return 0;
  });
}
