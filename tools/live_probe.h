// What the live benches (bench latency, bench streams) watch in the bin:
// each frame's PTS and its delay (running time of the pipeline clock minus
// PTS) twice: when the chain made it (it enters the bin's out-queue) and
// when it leaves the bin for the sink (the out-queue lets it go as soon as
// the synchronised sink has shown the frame before).  A frame is late when
// it leaves after PTS + the configured latency; the report is honest when
// the chain's own delays come close to that latency.
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

struct Times {
  std::vector<GstClockTime> pts;
  std::vector<double> delay;  // seconds: running time - PTS
};

struct Frames {
  std::mutex lock;
  GstElement* pipe = nullptr;
  Times made;  // the chain made it (into the bin's out-queue)
  Times out;   // it left the bin, to the sink
};

inline void record(Frames* f, Times* t, GstPadProbeInfo* info) {
  GstBuffer* b = GST_PAD_PROBE_INFO_BUFFER(info);
  GstClock* clock = gst_element_get_clock(f->pipe);
  if (clock == nullptr || !GST_BUFFER_PTS_IS_VALID(b)) {
    if (clock) gst_object_unref(clock);
    return;
  }
  const GstClockTime now = gst_clock_get_time(clock) - gst_element_get_base_time(f->pipe);
  gst_object_unref(clock);
  std::lock_guard<std::mutex> g(f->lock);
  t->pts.push_back(GST_BUFFER_PTS(b));
  t->delay.push_back(((double)now - (double)GST_BUFFER_PTS(b)) / GST_SECOND);
}

inline GstPadProbeReturn made_probe(GstPad*, GstPadProbeInfo* info, gpointer data) {
  Frames* f = static_cast<Frames*>(data);
  record(f, &f->made, info);
  return GST_PAD_PROBE_OK;
}

inline GstPadProbeReturn out_probe(GstPad*, GstPadProbeInfo* info, gpointer data) {
  Frames* f = static_cast<Frames*>(data);
  record(f, &f->out, info);
  return GST_PAD_PROBE_OK;
}

// The PTS of the last frame the chain made while the live source ran (it
// stopped `stopped_s` seconds of running time in): the frames after it are
// pushed at the source's EOS and say nothing of the live delay.
inline GstClockTime live_end(const Frames& f, double stopped_s) {
  GstClockTime end = 0;
  for (size_t i = 0; i < f.made.pts.size(); i++)
    if ((double)f.made.pts[i] / GST_SECOND + f.made.delay[i] < stopped_s) end = std::max(end, f.made.pts[i]);
  return end;
}

// The min latency a LATENCY query on an element or a pad answers, in
// seconds; -1 when unanswered.
inline double query_latency(GstObject* target) {
  GstQuery* q = gst_query_new_latency();
  const bool ok = GST_IS_PAD(target) ? gst_pad_query(GST_PAD(target), q) : gst_element_query(GST_ELEMENT(target), q);
  double s = -1;
  if (ok) {
    GstClockTime min = 0;
    gst_query_parse_latency(q, nullptr, &min, nullptr);
    s = (double)min / GST_SECOND;
  }
  gst_query_unref(q);
  return s;
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
  std::string models = "tests/data/chain", portrait = "tests/data/renderer/monalisa.jpg",
              variant = "hubert_audio_only", device = "cpu", precision = "fp32",
              stage1;  // stage1: an override, or empty
  int steps = 10;
  // anitalkermotion's min-steps (the bin's default: 10).
  int min_steps = 10;
  // The renderer's num-threads (0: as the others').
  int render_threads = 0;
  // The renderer's max-batch and max-batch-delay (us): above 1, the
  // pipelines of the process share one renderer.
  int max_batch = 1, max_batch_delay = 2000;
  // The bin's face-sr (GFPGANv1.4.pth, detection_Resnet50_Final.pth and
  // parsing_parsenet.pth in `models`).
  bool face_sr = false;
  // --windows: hubertenc window, context, look-ahead (ms), anitalkermotion
  // window, context, look-ahead (frames) over the preset's; empty: the preset's.
  std::vector<int> windows;
};

// The options of the live benches that choose the chain (defaults: the tiny
// chain models of tests/data/chain, run from the source folder).
inline void chain_options(cli::Options& o, Chain* c, bool device = true) {
  o.text("models-dir", &c->models, "DIR", "the model files under their released names");
  o.text("portrait", &c->portrait, "IMG", "the face");
  o.choice("variant", &c->variant,
           {"hubert_audio_only", "hubert_pose_only", "hubert_full_control", "mfcc_pose_only", "mfcc_full_control"},
           "the stage-2 variant");
  o.integer("steps", &c->steps, 2, 1000, "N", "DDIM steps; N must be ceil(1000 / k) for an integer k");
  o.integer("min-steps", &c->min_steps, 0, 1000, "N",
            "the fewest DDIM steps the motion generator may drop to while it is slower than real time (the bin's "
            "min-steps; 0: always --steps)");
  if (device) {
    o.device(&c->device);
    o.precision(&c->precision,
                "the bin's precision: fp32, bf16 for HuBERT, the motion generator and the renderer (a CPU with "
                "AVX512_BF16), or fp16 for the renderer (CUDA; HuBERT and the motion generator stay fp32)");
  }
}

// "low", "balanced" or "quality" (the bin's latency presets); a UsageError otherwise.
inline void check_preset(const std::string& preset) {
  if (preset != "low" && preset != "balanced" && preset != "quality")
    throw cli::UsageError("--preset: low, balanced or quality, not '" + preset + "'");
}

// `buffers` x 20 ms of live pink noise (timestamped by the pipeline clock)
// ! the anitalker bin in streaming mode at `preset`, with `seed` ! a
// synchronised fakesink; the bin's out-queue and src pad probed into *frames.
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
  g_object_set(talk, "models-dir", c.models.c_str(), "portrait", c.portrait.c_str(), "steps", (guint)c.steps,
               "min-steps", (guint)c.min_steps, "seed",
               seed, "device", c.device.c_str(), nullptr);
  if (!c.stage1.empty()) g_object_set(talk, "stage1", c.stage1.c_str(), nullptr);
  if (c.face_sr) g_object_set(talk, "face-sr", TRUE, nullptr);
  if (c.render_threads > 0) {
    GstElement* render = gst_bin_get_by_name(GST_BIN(talk), "render");
    g_object_set(render, "num-threads", c.render_threads, nullptr);
    gst_object_unref(render);
  }
  gst_util_set_object_arg(G_OBJECT(talk), "precision", c.precision.c_str());
  if (c.windows.size() == 6) {
    GstElement* features = gst_bin_get_by_name(GST_BIN(talk), "features");
    GstElement* motion = gst_bin_get_by_name(GST_BIN(talk), "motion");
    g_object_set(features, "lookahead", 0u, "window", (guint)c.windows[0], "context", (guint)c.windows[1],
                 "lookahead", (guint)c.windows[2], nullptr);
    g_object_set(motion, "lookahead", 0u, "window", (guint)c.windows[3], "context", (guint)c.windows[4],
                 "lookahead", (guint)c.windows[5], nullptr);
    gst_object_unref(features);
    gst_object_unref(motion);
  }
  g_object_set(talk, "max-batch", (guint)c.max_batch, "max-batch-delay", (guint)c.max_batch_delay, nullptr);
  frames->pipe = pipe;
  GstPad* out = gst_element_get_static_pad(talk, "src");
  gst_pad_add_probe(out, GST_PAD_PROBE_TYPE_BUFFER, out_probe, frames, nullptr);
  gst_object_unref(out);
  GstElement* queue = gst_bin_get_by_name(GST_BIN(talk), "out-queue");
  if (queue == nullptr) throw cli::UsageError("the anitalker bin has no out-queue: is the plugin older than this tool?");
  GstPad* made = gst_element_get_static_pad(queue, "sink");
  gst_pad_add_probe(made, GST_PAD_PROBE_TYPE_BUFFER, made_probe, frames, nullptr);
  gst_object_unref(made);
  gst_object_unref(queue);
  gst_object_unref(talk);
  return pipe;
}

}  // namespace live_probe
