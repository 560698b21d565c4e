// Helpers shared by the anitalker elements: exceptions from libanitalker to
// element errors (STYLE.md "Errors").  C++ only, torch-free, so that every
// element can include it cheaply.
#pragma once

#include <c10/core/Device.h>
#include <gst/gst.h>

#include <string>

// Posts a GST_MESSAGE_ERROR for the exception being handled; call it only
// inside a catch block (it rethrows the current exception to read it).
// `message` is one short sentence for the user that names the file, if any;
// e.what() becomes the debug text.  Domain and code follow the kind of
// anitalker::Error:
//   NotFound             -> RESOURCE NOT_FOUND
//   Unreadable, Format   -> RESOURCE READ when `about_file`, else STREAM FORMAT
//   Runtime              -> STREAM FAILED
//   Usage                -> RESOURCE SETTINGS when `about_file`, else LIBRARY SETTINGS
// and any other exception (c10::Error, std::bad_alloc, ...) -> STREAM FAILED.
void gst_anitalker_post_current_exception(GstElement* element, const std::string& message, bool about_file,
                                          const char* src_file, const char* function, int line) noexcept;

#define GST_ANITALKER_POST_CURRENT_EXCEPTION(element, message, about_file)                              \
  gst_anitalker_post_current_exception(GST_ELEMENT_CAST(element), (message), (about_file), __FILE__, \
                                       GST_FUNCTION, __LINE__)

// A GMutex held for a scope, released on exceptions too.
class GstAnitalkerLocked {
 public:
  explicit GstAnitalkerLocked(GMutex* m) : m_(m) { g_mutex_lock(m_); }
  ~GstAnitalkerLocked() { g_mutex_unlock(m_); }
  GstAnitalkerLocked(const GstAnitalkerLocked&) = delete;
  GstAnitalkerLocked& operator=(const GstAnitalkerLocked&) = delete;

 private:
  GMutex* m_;
};

// Answers a CAPS query with `caps` (taken) intersected with its filter.
void gst_anitalker_set_caps_result(GstQuery* query, GstCaps* caps);

// For a SEGMENT event: returns the start of a TIME segment; any other
// format (filesrc, appsrc) is replaced in *event by a TIME segment from 0
// (same seqnum), since the elements timestamp their output in time, and 0
// is returned.
GstClockTime gst_anitalker_time_segment(GstElement* element, GstEvent** event);

// Completes a LATENCY query: upstream's min/max (max NONE stays NONE) plus
// the element's own latency `ours`.
void gst_anitalker_set_latency(GstElement* element, GstQuery* query, gboolean live, GstClockTime min, GstClockTime max,
                               GstClockTime ours);

// The compute time of a streaming window (or a rendered frame), part of the
// latency an element really adds: the longest seen since the start, plus a
// quarter for the jitter of a shared machine (a window's audio waits for the
// window, then for its computation).  add() returns true when the budget
// grew by 10 ms or more past what was last reported, so the element should
// post a LATENCY message.  Thread-safe.
class GstAnitalkerBudget {
 public:
  GstAnitalkerBudget() { g_mutex_init(&m_); }
  ~GstAnitalkerBudget() { g_mutex_clear(&m_); }
  bool add(GstClockTime t) {
    GstAnitalkerLocked l(&m_);
    if (t > max_) max_ = t;
    return budget() >= reported_ + 10 * GST_MSECOND;
  }
  // The budget to report now (and remember it as reported).
  GstClockTime report() {
    GstAnitalkerLocked l(&m_);
    reported_ = budget();
    return reported_;
  }
  void reset() {
    GstAnitalkerLocked l(&m_);
    max_ = reported_ = 0;
  }

 private:
  GstClockTime budget() const { return max_ + max_ / 4; }
  GMutex m_;
  GstClockTime max_ = 0, reported_ = 0;
};

// printf into a std::string, for the messages above.
std::string gst_anitalker_printf(const char* format, ...) G_GNUC_PRINTF(1, 2);

// The index of the first NaN or inf among n floats, or -1: the elements
// refuse such input with an error naming the frame (docs/reliability.md).
gssize gst_anitalker_first_non_finite(const float* data, gsize n);

// Parses a `device` property value ("cpu", "cuda", "cuda:N") into *device;
// on failure posts the element error ("Cannot use the device ...", with why:
// e.g. a build without CUDA) and returns false.
bool gst_anitalker_parse_device(GstElement* element, const std::string& name, c10::Device* device);

// A float property whose values GLib does not validate: NaN, inf and values
// out of [min, max] reach the element's set_property, which refuses them with
// gst_anitalker_check_float (a GParamSpecFloat's own check only warns, and
// lets the run go on with the old value).  G_IS_PARAM_SPEC_FLOAT holds, so
// gst-inspect-1.0 shows the range and default as usual.
GParamSpec* gst_anitalker_param_spec_float(const char* name, const char* nick, const char* blurb, float min,
                                           float max, float def, GParamFlags flags);

// For a float property of the spec above: true when `v` is finite and in its
// range.  Otherwise posts LIBRARY SETTINGS naming the property, the value
// and the range, stores the text in *pending (g_free'd and replaced) so that
// the next start can fail with it, and returns false; the caller keeps the
// value in force.  Takes the object lock to store: call it unlocked.
bool gst_anitalker_check_float(GstElement* element, GParamSpec* pspec, float v, gchar** pending);

// Refuses a setting: posts LIBRARY SETTINGS naming `property`, with `text`
// (what was expected) as the debug text, and stores `text` in *pending for
// the next start.  Call it unlocked.
void gst_anitalker_refuse_setting(GstElement* element, const char* property, const std::string& text,
                                  gchar** pending);
