// What the live benches (bench latency, bench streams) watch at the bin's
// src pad: each frame's PTS and its delay, arrival (running time of the
// pipeline clock) minus PTS.
#pragma once

#include <gst/gst.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <vector>

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

}  // namespace live_probe
