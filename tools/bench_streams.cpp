// anitalker bench streams: how many live avatars one process (one machine,
// one GPU) carries.  For each N, N pipelines run at once, each a live audio
// source (20 ms buffers at the real clock) ! the `anitalker` bin in
// streaming mode at a latency preset, with its own seed ! a synchronised
// sink; the report per N: frames delivered against expected, the aggregate
// frame rate, frames that left the bin later than their pipeline's
// configured latency, the chain's delay (the frame made - PTS) p50 / p95
// over all frames, and the peak resident
// memory.  Each pipeline has its own bus and ends on its own EOS; one's
// error is reported without stopping the others.
#include <gst/gst.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cli.h"
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
                   "configured latency, the chain's delay (frame made - PTS) p50 / p95 and the peak resident memory.");
    o.integers("streams", &ns, 1, 256, "LIST", "the counts of pipelines run together");
    o.integer("seconds", &seconds, 2, 3600, "N", "seconds of live audio per stream");
    o.choice("preset", &preset, {"low", "balanced", "quality"}, "the bin's latency preset");
    live_probe::chain_options(o, &chain);
    o.integer("max-batch", &chain.max_batch, 1, 1024, "N",
              "the bins' max-batch: above 1 the N pipelines share one executor per network (HuBERT, the motion "
              "generator, the renderer), up to N requests a call");
    o.integer("max-batch-delay", &chain.max_batch_delay, 0, 1000000, "US",
              "with --max-batch: microseconds the first request of a call waits for the others");
    if (!o.parse(argc, argv)) return 0;
    const std::string &models = chain.models, &variant = chain.variant, &device = chain.device;
    const int steps = chain.steps;
    gst_init(nullptr, nullptr);
    const long long buffers = seconds * 50;
    const long long expected_each = live_probe::expected_frames(variant, buffers * 320);
    std::printf("streams: %s, %s, %d steps, preset %s, %lld s of live audio per stream, device %s, %s\n",
                models.c_str(), variant.c_str(), steps, preset.c_str(), seconds, device.c_str(),
                chain.max_batch > 1 ? ("one shared executor per network, max-batch " + std::to_string(chain.max_batch) + ", " +
                                       std::to_string(chain.max_batch_delay) + " us")
                                          .c_str()
                                    : "networks per pipeline");
    std::printf("%8s %15s %11s %7s %9s %9s %10s %s\n", "streams", "frames", "fps total", "late", "p50", "p95",
                "peak RSS", "errors");
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
        streams.push_back(std::move(st));
      }
      const auto t0 = std::chrono::steady_clock::now();
      for (auto& s : streams) gst_element_set_state(s->pipe, GST_STATE_PLAYING);
      // Each pipeline ends on its own EOS or error; none waits for another.
      size_t left = streams.size();
      while (left > 0) {
        for (auto& s : streams) {
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
      std::printf("%8d %15s %11.1f %7lld %8.3fs %8.3fs %8.0f MB %lld\n", n, fr, frames / wall, late,
                  live_probe::percentile(delays, 0.5), live_probe::percentile(delays, 0.95), cli::memory().peak / 1e6,
                  errors);
    }
    return 0;
  });
}
