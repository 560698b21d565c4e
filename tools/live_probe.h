// What the live benches (bench latency, bench streams) watch at the bin's
// src pad: each frame's PTS and its delay, arrival (running time of the
// pipeline clock) minus PTS.
#pragma once

#include <gst/gst.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <string>
#include <vector>

#include "cli.h"
#include "launch.h"

namespace live_probe {

struct Frames {
  std::mutex lock;
  GstElement* pipe = nullptr;
  std::vector<GstClockTime> pts;
  std::vector<double> delay;  // seconds: arrival running time - PTS
};

inline GstPadProbeReturn frame_probe(GstPad*, GstPadProbeInfo* info, gpointer data) {
  Frames* f = static_cast<Frames*>(data);
  GstBuffer* b = GST_PAD_PROBE_INFO_BUFFER(info);
  GstClock* clock = gst_element_get_clock(f->pipe);
  if (clock == nullptr || !GST_BUFFER_PTS_IS_VALID(b)) {
    if (clock) gst_object_unref(clock);
    return GST_PAD_PROBE_OK;
  }
  const GstClockTime now = gst_clock_get_time(clock) - gst_element_get_base_time(f->pipe);
  gst_object_unref(clock);
  std::lock_guard<std::mutex> g(f->lock);
  f->pts.push_back(GST_BUFFER_PTS(b));
  f->delay.push_back(((double)now - (double)GST_BUFFER_PTS(b)) / GST_SECOND);
  return GST_PAD_PROBE_OK;
}

inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, (size_t)std::ceil(p * v.size()) - (p > 0 ? 1 : 0));
  return v[i];
}

// The video frames `samples` of 16 kHz audio give: HuBERT frames
// floor((N - 400) / 320) + 1 plus the demo's padding frame, halved, rounded
// down; MFCC a quarter of its floor((N - 400) / 160) + 1 frames.
inline long long expected_frames(const std::string& variant, long long samples) {
  return variant.rfind("hubert", 0) == 0 ? ((samples - 400) / 320 + 2) / 2 : ((samples - 400) / 160 + 1) / 4;
}

// What a live run of the bin uses.
struct Chain {
  std::string models, portrait, variant, device, stage1;  // stage1: an override, or empty
  int steps = 10;
};

// "low", "balanced" or "quality" (the bin's latency presets); a UsageError otherwise.
inline void check_preset(const std::string& preset) {
  if (preset != "low" && preset != "balanced" && preset != "quality")
    throw cli::UsageError("--preset: low, balanced or quality, not '" + preset + "'");
}

// `buffers` x 20 ms of live pink noise (timestamped by the pipeline clock)
// ! the anitalker bin in streaming mode at `preset`, with `seed` ! a
// synchronised fakesink; the bin's src pad probed into *frames.
inline GstElement* live_pipeline(long long buffers, const std::string& preset, const Chain& c, guint64 seed,
                                 Frames* frames) {
  check_preset(preset);
  GstElement* pipe = cli::launch(
      "audiotestsrc is-live=true wave=pink-noise volume=0.3 samplesperbuffer=320 num-buffers=" +
      std::to_string(buffers) +
      " ! audio/x-raw,rate=16000,channels=1,format=F32LE ! anitalker name=talk mode=streaming latency=" + preset +
      " ! fakesink sync=true");
  GstElement* talk = gst_bin_get_by_name(GST_BIN(pipe), "talk");
  gst_util_set_object_arg(G_OBJECT(talk), "variant", c.variant.c_str());
  g_object_set(talk, "models-dir", c.models.c_str(), "portrait", c.portrait.c_str(), "steps", (guint)c.steps, "seed",
               seed, "device", c.device.c_str(), nullptr);
  if (!c.stage1.empty()) g_object_set(talk, "stage1", c.stage1.c_str(), nullptr);
  frames->pipe = pipe;
  GstPad* out = gst_element_get_static_pad(talk, "src");
  gst_pad_add_probe(out, GST_PAD_PROBE_TYPE_BUFFER, frame_probe, frames, nullptr);
  gst_object_unref(out);
  gst_object_unref(talk);
  return pipe;
}

}  // namespace live_probe
