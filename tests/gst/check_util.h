// Helpers shared by the GstHarness tests (gst-check): fixture paths, .npy
// fixtures as tensors, bus messages and downstream events.
#pragma once

#include <ATen/ATen.h>
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>

#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "npy.h"
#include "state_dict.h"

namespace checkutil {

// A file under ANITALKER_TEST_DATA (tests/data; each main checks it is set).
inline std::string data_path(const std::string& rel) {
  const char* root = g_getenv("ANITALKER_TEST_DATA");
  gchar* p = g_build_filename(root ? root : ".", rel.c_str(), nullptr);
  std::string out(p);
  g_free(p);
  return out;
}

// A .npy fixture as a contiguous float32 tensor, read once per run.
inline const at::Tensor& npy(const std::string& rel) {
  static std::map<std::string, at::Tensor> cache;
  auto it = cache.find(rel);
  if (it == cache.end()) {
    anitalker::TensorData data = anitalker::read_npy(data_path(rel));
    it = cache.emplace(rel, anitalker::to_tensor(data).to(at::kFloat).contiguous().clone()).first;
  }
  return it->second;
}

// Pops the first error or warning message from the bus; fails if there is none.
inline GError* pop_message(GstBus* bus, GstMessageType type, gchar** debug) {
  GstMessage* msg = gst_bus_pop_filtered(bus, type);
  fail_unless(msg != nullptr, "no %s message on the bus", gst_message_type_get_name(type));
  GError* err = nullptr;
  if (type == GST_MESSAGE_ERROR)
    gst_message_parse_error(msg, &err, debug);
  else
    gst_message_parse_warning(msg, &err, debug);
  gst_message_unref(msg);
  return err;
}

// Takes `element` (not yet on a bus) to PAUSED, which must fail, and
// returns the ERROR message it posted (its debug text in *debug); the
// element is back in NULL and off the bus after.
inline GError* start_error(GstElement* element, gchar** debug) {
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(element, bus);
  fail_unless_equals_int(gst_element_set_state(element, GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);
  GError* err = pop_message(bus, GST_MESSAGE_ERROR, debug);
  gst_element_set_state(element, GST_STATE_NULL);
  gst_element_set_bus(element, nullptr);
  gst_object_unref(bus);
  return err;
}

// start_error() for a setting refused at start: LIBRARY SETTINGS, with
// `says` in the debug text (and `message_says` in the message, if given).
inline void expect_settings_refused(GstElement* element, const char* says, const char* message_says = nullptr) {
  gchar* debug = nullptr;
  GError* err = start_error(element, &debug);
  fail_unless(g_error_matches(err, GST_LIBRARY_ERROR, GST_LIBRARY_ERROR_SETTINGS), "%s", err->message);
  if (message_says) fail_unless(strstr(err->message, message_says) != nullptr, "%s", err->message);
  fail_unless(debug && strstr(debug, says) != nullptr, "%s: %s", err->message, debug ? debug : "(none)");
  g_error_free(err);
  g_free(debug);
}

// Waits for EOS on the pipeline's bus; fails on an error message or when
// none comes within `timeout`.
inline void wait_eos(GstElement* pipe, GstClockTime timeout) {
  GstBus* bus = gst_element_get_bus(pipe);
  GstMessage* msg = gst_bus_timed_pop_filtered(bus, timeout, (GstMessageType)(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  fail_unless(msg != nullptr, "no EOS in time");
  if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
    GError* e = nullptr;
    gst_message_parse_error(msg, &e, nullptr);
    fail("error: %s", e ? e->message : "?");
  }
  gst_message_unref(msg);
  gst_object_unref(bus);
}

// Pops every downstream event; returns how many were EOS.
inline int count_eos(GstHarness* h) {
  int eos = 0;
  GstEvent* ev;
  while ((ev = gst_harness_try_pull_event(h)) != nullptr) {
    if (GST_EVENT_TYPE(ev) == GST_EVENT_EOS) eos++;
    gst_event_unref(ev);
  }
  return eos;
}

// Waits (up to the harness's 60 s a pull) for EOS at the harness's sink:
// for elements with their own threads (the anitalker bin's queues), whose
// output comes after the push returns.  False when none came.
inline bool wait_eos(GstHarness* h) {
  GstEvent* ev;
  while ((ev = gst_harness_pull_event(h)) != nullptr) {
    const bool eos = GST_EVENT_TYPE(ev) == GST_EVENT_EOS;
    gst_event_unref(ev);
    if (eos) return true;
  }
  return false;
}

// The PROGRESS messages on the bus, in order, each with its structure's
// "percent" (-1 when absent).
struct Progress {
  GstProgressType type;
  std::string code, text;
  int percent = -1;
};
inline std::vector<Progress> pop_progress(GstBus* bus) {
  std::vector<Progress> out;
  GstMessage* msg;
  while ((msg = gst_bus_pop_filtered(bus, GST_MESSAGE_PROGRESS)) != nullptr) {
    Progress p;
    gchar *code = nullptr, *text = nullptr;
    gst_message_parse_progress(msg, &p.type, &code, &text);
    p.code = code ? code : "";
    p.text = text ? text : "";
    gst_structure_get_int(gst_message_get_structure(msg), "percent", &p.percent);
    g_free(code);
    g_free(text);
    gst_message_unref(msg);
    out.push_back(p);
  }
  return out;
}

// What reaches a harness's sink pad, in order: buffers (PTS, duration) and
// downstream events (a custom event by its structure's name, a tag event
// as "tag", a gap as "gap"; the others are not recorded).
struct FlowItem {
  std::string event;  // empty for a buffer
  GstClockTime pts = GST_CLOCK_TIME_NONE, duration = GST_CLOCK_TIME_NONE;
};
class FlowRecorder {
 public:
  explicit FlowRecorder(GstHarness* h) : pad_(GST_PAD(gst_object_ref(h->sinkpad))) {
    probe_ = gst_pad_add_probe(pad_, GstPadProbeType(GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM),
                               record, this, nullptr);
  }
  ~FlowRecorder() {
    gst_pad_remove_probe(pad_, probe_);
    gst_object_unref(pad_);
  }
  std::vector<FlowItem> items() {
    std::lock_guard<std::mutex> lock(m_);
    return items_;
  }

 private:
  static GstPadProbeReturn record(GstPad*, GstPadProbeInfo* info, gpointer data) {
    auto* self = static_cast<FlowRecorder*>(data);
    FlowItem item;
    if (GstBuffer* b = GST_PAD_PROBE_INFO_BUFFER(info); (info->type & GST_PAD_PROBE_TYPE_BUFFER) && b) {
      item.pts = GST_BUFFER_PTS(b);
      item.duration = GST_BUFFER_DURATION(b);
    } else if (GstEvent* e = GST_PAD_PROBE_INFO_EVENT(info)) {
      const GstStructure* s = gst_event_get_structure(e);
      if (GST_EVENT_TYPE(e) == GST_EVENT_CUSTOM_DOWNSTREAM && s)
        item.event = gst_structure_get_name(s);
      else if (GST_EVENT_TYPE(e) == GST_EVENT_TAG)
        item.event = "tag";
      else if (GST_EVENT_TYPE(e) == GST_EVENT_GAP)
        item.event = "gap";
      else
        return GST_PAD_PROBE_OK;
    }
    std::lock_guard<std::mutex> lock(self->m_);
    self->items_.push_back(item);
    return GST_PAD_PROBE_OK;
  }
  GstPad* pad_;
  gulong probe_;
  std::mutex m_;
  std::vector<FlowItem> items_;
};

// A custom downstream event named `name` (a marker, as a voice agent puts
// after a sentence).
inline GstEvent* marker_event(const char* name) {
  return gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM, gst_structure_new_empty(name));
}

// The event `name` came out once, after every output frame (of `frame` ns)
// that starts before `place` and before every frame that starts at or after
// it, with frames on both sides.
inline void check_in_place(const std::vector<FlowItem>& items, const char* name, GstClockTime place,
                           GstClockTime frame) {
  int at = -1, before = 0, after = 0;
  for (size_t i = 0; i < items.size(); i++) {
    const FlowItem& it = items[i];
    if (it.event == name) {
      fail_unless(at < 0, "the event %s came out twice", name);
      at = (int)i;
      continue;
    }
    if (!it.event.empty()) continue;
    fail_unless(GST_CLOCK_TIME_IS_VALID(it.pts) && GST_CLOCK_TIME_IS_VALID(it.duration));
    const GstClockTime last = it.pts + it.duration - frame;  // the buffer's last frame
    if (at < 0) {
      fail_unless(last < place, "a frame at %" GST_TIME_FORMAT " came before the event %s placed at %" GST_TIME_FORMAT,
                  GST_TIME_ARGS(last), name, GST_TIME_ARGS(place));
      before++;
    } else {
      fail_unless(it.pts >= place, "a frame at %" GST_TIME_FORMAT " came after the event %s placed at %" GST_TIME_FORMAT,
                  GST_TIME_ARGS(it.pts), name, GST_TIME_ARGS(place));
      after++;
    }
  }
  fail_unless(at >= 0, "the event %s did not come out", name);
  fail_unless(before > 0 && after > 0, "%d buffers before the event %s, %d after", before, name, after);
}

// Reverse playback on an element that reads its input forward only
// (hubertenc, anitalkermotion), playing in the harness `h`: a seek with a
// negative rate is refused (and one with a positive rate is not), and a
// segment with a negative rate is refused with a STREAM FAILED error that
// names the rate.
inline void check_reverse_refused(GstHarness* h) {
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  const GstSeekFlags flags = (GstSeekFlags)(GST_SEEK_FLAG_FLUSH | GST_SEEK_FLAG_ACCURATE);
  const guint before = gst_harness_upstream_events_received(h);
  fail_if(gst_harness_push_upstream_event(
              h, gst_event_new_seek(-1.0, GST_FORMAT_TIME, flags, GST_SEEK_TYPE_SET, 0, GST_SEEK_TYPE_SET, GST_SECOND)),
          "a seek with rate -1 was taken");
  fail_unless(gst_harness_upstream_events_received(h) == before, "the reverse seek went upstream");
  gst_harness_push_upstream_event(
      h, gst_event_new_seek(2.0, GST_FORMAT_TIME, flags, GST_SEEK_TYPE_SET, 0, GST_SEEK_TYPE_NONE, -1));
  fail_unless(gst_harness_upstream_events_received(h) == before + 1, "a seek with rate 2 did not go upstream");
  fail_unless(gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR) == nullptr);
  GstSegment seg;
  gst_segment_init(&seg, GST_FORMAT_TIME);
  seg.rate = -1.0;
  seg.stop = GST_SECOND;
  // (gst_pad_push_event answers TRUE for a sticky event it stored, even
  // where the peer refused it: the error says what happened.)
  gst_harness_push_event(h, gst_event_new_segment(&seg));
  gchar* debug = nullptr;
  GError* err = pop_message(bus, GST_MESSAGE_ERROR, &debug);
  fail_unless(g_error_matches(err, GST_STREAM_ERROR, GST_STREAM_ERROR_FAILED), "%s", err->message);
  fail_unless(std::strstr(err->message, "forward in time only") && std::strstr(err->message, "rate -1"), "%s",
              err->message);
  g_error_free(err);
  g_free(debug);
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(bus);
}

}  // namespace checkutil
