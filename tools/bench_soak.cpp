// anitalker bench soak: a long stream through the whole chain (the
// `anitalker` bin in streaming mode) as fast as the machine goes, watching
// what a broadcast would: resident memory over time, how long a video frame
// takes to come out after its audio went in, and whether the frame count is
// exactly what the audio's length gives.  With --check it exits 1 when
// memory grows by more than --max-growth percent after the first tenth of
// the run, or when a frame is missing or extra.
#include <gst/gst.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "cli.h"
#include "live_probe.h"
#include "error.h"
#include "launch.h"

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Watch {
  std::mutex lock;
  std::deque<std::pair<GstClockTime, double>> audio_in;  // stream time of a buffer's end, wall time it entered
  guint64 frames = 0;
  double max_latency = 0, sum_latency = 0;
  std::vector<std::pair<double, long long>> rss;  // stream seconds, bytes
  double next_sample = 0;
  double sample_every = 5;
};

GstPadProbeReturn audio_probe(GstPad*, GstPadProbeInfo* info, gpointer data) {
  Watch* w = static_cast<Watch*>(data);
  GstBuffer* b = GST_PAD_PROBE_INFO_BUFFER(info);
  if (GST_BUFFER_PTS_IS_VALID(b)) {
    std::lock_guard<std::mutex> g(w->lock);
    const GstClockTime end = GST_BUFFER_PTS(b) + (GST_BUFFER_DURATION_IS_VALID(b) ? GST_BUFFER_DURATION(b) : 0);
    w->audio_in.emplace_back(end, now_s());
  }
  return GST_PAD_PROBE_OK;
}

// A video frame's latency: from when the audio that ends after its own end
// entered the bin (all the audio it depends on) to now.
GstPadProbeReturn video_probe(GstPad*, GstPadProbeInfo* info, gpointer data) {
  Watch* w = static_cast<Watch*>(data);
  GstBuffer* b = GST_PAD_PROBE_INFO_BUFFER(info);
  const double t = now_s();
  std::lock_guard<std::mutex> g(w->lock);
  w->frames++;
  if (GST_BUFFER_PTS_IS_VALID(b)) {
    const GstClockTime end = GST_BUFFER_PTS(b) + GST_BUFFER_DURATION(b);
    while (w->audio_in.size() > 1 && w->audio_in[1].first <= end) w->audio_in.pop_front();
    if (!w->audio_in.empty()) {
      const double lat = t - w->audio_in.front().second;
      w->max_latency = std::max(w->max_latency, lat);
      w->sum_latency += lat;
    }
    const double s = (double)GST_BUFFER_PTS(b) / GST_SECOND;
    if (s >= w->next_sample) {
      w->rss.emplace_back(s, cli::memory().rss);
      w->next_sample = s + w->sample_every;
    }
  }
  return GST_PAD_PROBE_OK;
}

}  // namespace

int bench_soak(int argc, char** argv) {
  return cli::run("bench soak", [&] {
    live_probe::Chain chain;
    long long seconds = 60;
    double max_growth = 5;
    bool check = false;
    cli::Options o("bench soak",
                   "Streams SECONDS of test audio through the anitalker bin (streaming mode) as fast as it goes; "
                   "reports resident memory over stream time, frame latency and the frame count.");
    o.integer("seconds", &seconds, 2, 24 * 3600, "N", "seconds of audio");
    live_probe::chain_options(o, &chain, false);
    o.flag("check", &check,
           "exit 1 when memory grows by more than --max-growth after the first tenth, or a frame is missing or extra");
    o.number("max-growth", &max_growth, 0, HUGE_VAL, "PERCENT", "with --check: the resident growth allowed");
    if (!o.parse(argc, argv)) return 0;
    const std::string &models = chain.models, &portrait = chain.portrait, &variant = chain.variant;
    const int steps = chain.steps;
    gst_init(nullptr, nullptr);
    // 100 ms buffers of 16 kHz audio; HuBERT windows of 1 s, motion windows of 1 s.
    const long long buffers = seconds * 10;
    const std::string desc =
        "audiotestsrc name=src wave=pink-noise volume=0.3 samplesperbuffer=1600 num-buffers=" + std::to_string(buffers) +
        " ! audio/x-raw,rate=16000,channels=1,format=F32LE ! anitalker name=talk mode=streaming steps=" +
        std::to_string(steps) + " features::window=1000 features::context=1000 motion::window=25 motion::context=25"
        " ! fakesink name=sink sync=false";
    GstElement* pipe = cli::launch(desc);
    GstElement* talk = gst_bin_get_by_name(GST_BIN(pipe), "talk");
    gst_util_set_object_arg(G_OBJECT(talk), "variant", variant.c_str());
    g_object_set(talk, "models-dir", models.c_str(), "portrait", portrait.c_str(), nullptr);
    Watch w;
    w.sample_every = std::max(1.0, seconds / 20.0);
    GstPad* in = gst_element_get_static_pad(talk, "sink");
    GstPad* out = gst_element_get_static_pad(talk, "src");
    gst_pad_add_probe(in, GST_PAD_PROBE_TYPE_BUFFER, audio_probe, &w, nullptr);
    gst_pad_add_probe(out, GST_PAD_PROBE_TYPE_BUFFER, video_probe, &w, nullptr);
    gst_object_unref(in);
    gst_object_unref(out);
    gst_object_unref(talk);

    const double t0 = now_s();
    gst_element_set_state(pipe, GST_STATE_PLAYING);
    GstBus* bus = gst_element_get_bus(pipe);
    GstMessage* msg = gst_bus_timed_pop_filtered(bus, GST_CLOCK_TIME_NONE,
                                                 (GstMessageType)(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
    std::string error;
    if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
      GError* e = nullptr;
      gst_message_parse_error(msg, &e, nullptr);
      error = e ? e->message : "?";
      if (e) g_error_free(e);
    }
    gst_message_unref(msg);
    gst_object_unref(bus);
    const double wall = now_s() - t0;
    gst_element_set_state(pipe, GST_STATE_NULL);
    gst_object_unref(pipe);
    if (!error.empty()) throw anitalker::Error(anitalker::Error::Kind::Runtime, error);

    // HuBERT frames of N samples: floor((N - 400) / 320) + 1, plus the demo's
    // padding frame; video frames: half of that, rounded down.
    const long long samples = buffers * 1600;
    const long long hubert = (samples - 400) / 320 + 1 + 1;
    const long long expected = variant.rfind("hubert", 0) == 0 ? hubert / 2 : ((samples - 400) / 160 + 1) / 4;
    std::printf("soak: %lld s of audio in %.1f s (%.2fx real time), %llu video frames (expected %lld)\n", seconds, wall,
                seconds / wall, (unsigned long long)w.frames, expected);
    std::printf("latency (audio in -> its frame out): mean %.2f s, max %.2f s\n",
                w.frames ? w.sum_latency / w.frames : 0.0, w.max_latency);
    std::printf("resident memory by stream time:\n");
    for (const auto& r : w.rss) std::printf("  %8.1f s  %8.1f MB\n", r.first, r.second / 1e6);
    bool ok = (long long)w.frames == expected;
    double growth = 0;
    if (w.rss.size() >= 3) {
      const double base = (double)w.rss[std::min<size_t>(2, w.rss.size() - 1)].second;  // after the first tenth
      const double last = (double)w.rss.back().second;
      growth = 100.0 * (last - base) / base;
      std::printf("memory growth after the first tenth: %+.2f %%\n", growth);
      if (growth > max_growth) ok = false;
    }
    if (check && !ok) {
      std::fprintf(stderr, "anitalker bench soak: FAILED (frames %llu vs %lld, growth %.2f %% > %.1f %%?)\n",
                   (unsigned long long)w.frames, expected, growth, max_growth);
      return 1;
    }
    return 0;
  });
}
