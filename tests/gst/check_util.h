// Helpers shared by the GstHarness tests (gst-check): fixture paths, .npy
// fixtures as tensors, bus messages and downstream events.
#pragma once

#include <ATen/ATen.h>
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>

#include <cstring>
#include <map>
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

}  // namespace checkutil
