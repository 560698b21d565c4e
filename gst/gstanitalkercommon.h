// Helpers shared by the anitalker elements: exceptions from libanitalker to
// element errors (STYLE.md "Errors").  C++ only, torch-free, so that every
// element can include it cheaply.
#pragma once

#include <c10/core/Device.h>
#include <gst/gst.h>

#include <deque>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "device.h"

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
                                          const char* src_file, const char* function, int line,
                                          GstMessageType type = GST_MESSAGE_ERROR) noexcept;

#define GST_ANITALKER_POST_CURRENT_EXCEPTION(element, message, about_file)                              \
  gst_anitalker_post_current_exception(GST_ELEMENT_CAST(element), (message), (about_file), __FILE__, \
                                       GST_FUNCTION, __LINE__)

// Runs the statements `...`; when they throw, posts the exception as
// GST_ANITALKER_POST_CURRENT_EXCEPTION does (`message` is made only then) and
// is false.  E.g.
//   if (!GST_ANITALKER_TRY(self, "Could not read \"" + path + "\".", true, table = read(path))) return FALSE;
#define GST_ANITALKER_TRY(element, message, about_file, ...)                                               \
  gst_anitalker_try(GST_ELEMENT_CAST(element), [&]() { __VA_ARGS__; }, [&]() -> std::string { return (message); }, \
                    (about_file), __FILE__, GST_FUNCTION, __LINE__)

template <typename Fn, typename Message>
bool gst_anitalker_try(GstElement* element, Fn&& fn, Message&& message, bool about_file, const char* src_file,
                       const char* function, int line) {
  try {
    fn();
    return true;
  } catch (...) {
    gst_anitalker_post_current_exception(element, message(), about_file, src_file, function, line);
    return false;
  }
}

// Posts a GST_MESSAGE_PROGRESS (the long offline work: a whole utterance's
// features, its motion) with `code` (e.g. "motion"), `text`, and `percent`
// (0 to 100) in the structure's "percent" field.  Thread-safe.
void gst_anitalker_post_progress(GstElement* element, GstProgressType type, const char* code, int percent,
                                 const std::string& text);

// A GMutex that lives and dies with its C++ owner (the elements' state
// structs), since GObject structs run no constructors.
class GstAnitalkerMutex {
 public:
  GstAnitalkerMutex() { g_mutex_init(&m_); }
  ~GstAnitalkerMutex() { g_mutex_clear(&m_); }
  GstAnitalkerMutex(const GstAnitalkerMutex&) = delete;
  GstAnitalkerMutex& operator=(const GstAnitalkerMutex&) = delete;
  GMutex* get() { return &m_; }

 private:
  GMutex m_;
};

// A GMutex held for a scope, released on exceptions too.
class GstAnitalkerLocked {
 public:
  explicit GstAnitalkerLocked(GMutex* m) : m_(m) { g_mutex_lock(m_); }
  explicit GstAnitalkerLocked(GstAnitalkerMutex* m) : GstAnitalkerLocked(m->get()) {}
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
// latency an element really adds: the longest seen (a window's audio waits
// for the window, then for its computation).  No margin on top: each
// element of a chain reports its own longest, their sum bounds any one
// window's, and the jitter margin is the sink's processing-deadline (20 ms
// by default), which the pipeline adds.
//
// "Seen" is since the start, or with a recovery time R (the elements'
// `latency-recovery`) over the last R: one stall (the host swapping, another
// process's burst) raised the latency of a live stream for the rest of its
// life, which for a broadcast that runs for days is for good.  With R the
// budget falls back once the stall is R old, and is reported lower only
// when it fell well under the reported (to under 80% of it and by 50 ms or
// more), so that the ordinary spread of the windows does not move the
// pipeline's latency back and forth: each lowering makes the sinks skip that
// much of the delay once.
//
// add() returns true when the budget grew by 10 ms or more past what was
// last reported, or fell as above, so the element should post a LATENCY
// message.  Thread-safe.
class GstAnitalkerBudget {
 public:
  // t: a compute time, ended at now_us (g_get_monotonic_time()); recovery_us
  // 0: the longest since the start.
  bool add(GstClockTime t, gint64 now_us, gint64 recovery_us) {
    GstAnitalkerLocked l(&m_);
    recovery_us_ = recovery_us;
    if (t > max_) max_ = t;
    // The longest of the last recovery_us: a queue of (end, time) whose
    // times decrease from the front, the front the longest.
    while (!recent_.empty() && recent_.back().second <= t) recent_.pop_back();
    recent_.emplace_back(now_us, t);
    while (recent_.front().first < now_us - recovery_us) recent_.pop_front();
    const GstClockTime b = budget();
    if (b >= reported_ + 10 * GST_MSECOND) return true;
    return reported_ >= b + 50 * GST_MSECOND && b < reported_ / 10 * 8;
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
    recent_.clear();
  }

 private:
  GstClockTime budget() const { return recovery_us_ > 0 && !recent_.empty() ? recent_.front().second : max_; }
  GstAnitalkerMutex m_;
  GstClockTime max_ = 0, reported_ = 0;
  gint64 recovery_us_ = 0;
  std::deque<std::pair<gint64, GstClockTime>> recent_;
};

// A QoS event from downstream: the running time at or before which frames
// are too late for it, as GstBaseTransform counts it (a late frame, diff >
// 0, moves the limit twice as far, so that enough is skipped to catch up);
// NONE without a timestamp.  *proportion gets the event's.
GstClockTime gst_anitalker_qos_earliest(GstEvent* event, gdouble* proportion);

// `latency-recovery` (the recovery time above, in seconds): its default and
// its most.
#define GST_ANITALKER_LATENCY_RECOVERY_DEFAULT_S 60
#define GST_ANITALKER_LATENCY_RECOVERY_MAX_S 86400

// Adds the compute time since `since_us` (g_get_monotonic_time()) to
// `budget`, with `recovery_s` seconds of recovery; posts a LATENCY message
// from `element` when the budget to report moved (GstAnitalkerBudget::add).
void gst_anitalker_add_compute(GstElement* element, GstAnitalkerBudget* budget, gint64 since_us, guint recovery_s);

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
// out of [min, max] reach set_property, which refuses them (see
// gst_anitalker_set_property: a GParamSpecFloat's own check only warns, and
// lets the run go on with the old value).  G_IS_PARAM_SPEC_FLOAT holds, so
// gst-inspect-1.0 shows the range and default as usual.
GParamSpec* gst_anitalker_param_spec_float(const char* name, const char* nick, const char* blurb, float min,
                                           float max, float def, GParamFlags flags);
// The same for whole numbers: a value out of [min, max] (e.g. steps=0,
// max-batch=0) is refused by the element instead of dropped by GLib with a
// warning while the run goes on.
GParamSpec* gst_anitalker_param_spec_uint(const char* name, const char* nick, const char* blurb, guint min, guint max,
                                          guint def, GParamFlags flags);
GParamSpec* gst_anitalker_param_spec_int(const char* name, const char* nick, const char* blurb, gint min, gint max,
                                         gint def, GParamFlags flags);
GParamSpec* gst_anitalker_param_spec_uint64(const char* name, const char* nick, const char* blurb, guint64 min,
                                            guint64 max, guint64 def, GParamFlags flags);
// Whether `value` is within the range of the numeric `pspec` (finite, for a
// float); if not, refuses it (gst_anitalker_refuse_setting: LIBRARY
// SETTINGS naming the property and its range, the next start fails until a
// valid value replaces it) and returns false.
bool gst_anitalker_check_range(GstElement* element, GParamSpec* pspec, const GValue* value);
// Whether `pspec` may change in the element's state now: one that changes
// only in NULL or READY (GST_PARAM_MUTABLE_READY without _PLAYING) set while
// PAUSED or PLAYING is refused with a WARNING naming it, and the value in
// force stays (as x264enc does; the element read it at its start and would
// not have used the new one until the next).  Returns false when refused.
bool gst_anitalker_check_mutable(GstElement* element, GParamSpec* pspec);

// --- Properties kept in the instance struct (one table, no set/get switch).
//
// gst_anitalker_install_property() installs `pspec` as property `id` of
// `klass`, its value kept in the instance at byte `offset`, in a field of the
// property's type: gchar* (string), gint (int, enum), guint, guint64, gfloat,
// gboolean.  gst_anitalker_set_property / get_property (a class's GObject
// set_property / get_property, or called from its own for the properties it
// watches) read and write them under the object lock;
// gst_anitalker_init_properties sets every such field to its default (in the
// instance init) and gst_anitalker_finalize_properties frees the strings.
// A number out of its range (gst_anitalker_param_spec_*) is refused: the
// value in force stays, LIBRARY SETTINGS names the property and the range,
// and the next start fails with the text (gst_anitalker_settings_error)
// until a valid value of that property replaces it.
void gst_anitalker_install_property(GObjectClass* klass, guint id, GParamSpec* pspec, gsize offset);
// Whether `pspec` was made with GST_ANITALKER_PARAM_LATENCY (and installed
// by gst_anitalker_install_property()).
gboolean gst_anitalker_param_sets_latency(GParamSpec* pspec);
void gst_anitalker_set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec);
void gst_anitalker_get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec);
// The string of a file property (`checkpoint`, `portrait`, `models-dir`,
// `model`, `detector`, `parser`, `pose-file`, `stage1`, `stage2`, `hubert`),
// newly allocated: a file:// URI (as a web page or a URI-minded
// application gives one) becomes its local path, %-escapes decoded; any
// other value, or a URI that is not a local file's, as it is.  Other
// properties' strings as they are.
gchar* gst_anitalker_dup_path_property(GParamSpec* pspec, const GValue* value);
// `klass`: the instance's own class, from an instance init of a base class
// (whose G_OBJECT_GET_CLASS is still its own); null: the object's class.
void gst_anitalker_init_properties(GObject* object, gpointer klass = nullptr);
void gst_anitalker_finalize_properties(GObject* object);

// Flags of a property that may be set in READY at the latest, or while PLAYING.
#define GST_ANITALKER_PARAM_READY \
  ((GParamFlags)(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY))
#define GST_ANITALKER_PARAM_PLAYING \
  ((GParamFlags)(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING))
// A property whose value is part of the latency the element reports (a
// window, a batch): GstAnitalkerElement's setter posts a LATENCY message
// when it is set in PAUSED or PLAYING.  Given to the param spec's maker;
// gst_anitalker_install_property() moves it off the spec's flags (where
// gst-inspect would print it as a bare number) to the spec's data, which
// gst_anitalker_param_sets_latency() reads.
#define GST_ANITALKER_PARAM_LATENCY ((GParamFlags)GST_PARAM_USER_SHIFT)
#define GST_ANITALKER_PARAM_PLAYING_LATENCY ((GParamFlags)(GST_ANITALKER_PARAM_PLAYING | GST_ANITALKER_PARAM_LATENCY))

// max-batch (READY, 1-1024, default 1, `blurb`) and max-batch-delay
// (READY, microseconds the first `item` of a call waits for others,
// default 2000), each on its guint field at its offset.
void gst_anitalker_install_sharing_properties(GObjectClass* klass, guint batch_id, gsize batch_offset, guint delay_id,
                                              gsize delay_offset, const char* blurb, const char* item);

// The `device` (string, default "cpu"), `num-threads` (gint, 0-64,
// default 0) and `precision` (GstAnitalkerPrecision in a gint, default
// fp32) properties of an element that runs `what` ("the renderer").
void gst_anitalker_install_device_properties(GObjectClass* klass, guint device_id, gsize device_offset,
                                             guint threads_id, gsize threads_offset, guint precision_id,
                                             gsize precision_offset, const char* what);

// The `precision` property's values, as anitalker::Precision (lib/device.h).
typedef enum {
  GST_ANITALKER_PRECISION_FP32 = 0,
  GST_ANITALKER_PRECISION_BF16 = 1,
  GST_ANITALKER_PRECISION_FP16 = 2,
} GstAnitalkerPrecision;
#define GST_TYPE_ANITALKER_PRECISION (gst_anitalker_precision_get_type())
GType gst_anitalker_precision_get_type(void);

// The precision property's value (`precision`, read under the object lock
// by the caller) checked for `device` and the network's `supported` ones
// (lib check_precision); on failure posts LIBRARY SETTINGS naming the
// property, the device and what it supports, and returns false.
bool gst_anitalker_check_precision(GstElement* element, gint precision, c10::Device device,
                                   std::initializer_list<anitalker::Precision> supported, const char* what,
                                   anitalker::Precision* out);

// A string property's value now (empty for none), read under the object lock.
std::string gst_anitalker_get_string(GstElement* element, gchar* const* field);
// A number or boolean property's value now, read under the object lock:
// gst_anitalker_get(self, &self->batch_size).
template <typename T>
T gst_anitalker_get(gpointer object, const T* field) {
  GST_OBJECT_LOCK(object);
  const T value = *field;
  GST_OBJECT_UNLOCK(object);
  return value;
}

// Refuses a setting: posts LIBRARY SETTINGS naming `property`, with `text`
// (what was expected; it starts with "property=value") as the debug text,
// and keeps `text` for the next start; while the element runs (PAUSED or
// PLAYING) a WARNING instead, and nothing kept: the value in force stays
// and the stream goes on.  Call it unlocked.
void gst_anitalker_refuse_setting(GstElement* element, const char* property, const std::string& text);
// A valid value of `property` was set: a refusal of it pending is forgotten
// (gst_anitalker_set_property does this; for elements with their own fields).
void gst_anitalker_accept_setting(GstElement* element, const char* property);

// The text of a setting refused since (empty when none); a start fails with
// it (gst_anitalker_check_settings posts LIBRARY SETTINGS and returns false).
std::string gst_anitalker_settings_error(GstElement* element);
bool gst_anitalker_check_settings(GstElement* element);

// --- The portrait codes between the elements (gstanitalkercaps.h): the
// renderer answers the codes query and announces a new portrait upstream;
// the motion element asks and listens.

// Fills a codes query: start (style_dim floats), direction (motion_dim).
void gst_anitalker_codes_answer(GstQuery* query, const float* start, int style_dim, const float* direction,
                                int motion_dim, guint serial);
// Asks the peer of `pad` (downstream).  0 with the codes and their serial;
// with *why, -1 when nobody answered, -2 when the sizes are not start_dim
// and motion_dim, -3 when the renderer could not use its portrait (it posted
// its own error).
int gst_anitalker_codes_ask(GstPad* pad, int start_dim, int motion_dim, std::vector<float>* start,
                            std::vector<float>* direction, guint* serial, std::string* why);
// The "portrait changed" upstream event, and its serial when `event` is one.
GstEvent* gst_anitalker_portrait_changed_new(guint serial);
bool gst_anitalker_portrait_changed_parse(GstEvent* event, guint* serial);

// The motion element's side: the codes it holds and the portrait the
// renderer last announced.  Thread-safe (the announcement comes in an
// upstream event, from any thread).
class GstAnitalkerCodes {
 public:
  // Forgets the codes and the announcement (a new start).
  void reset();
  // The "portrait changed" event: true when `event` was one (then taken).
  bool take_event(GstEvent* event);
  // The codes current downstream: asks the peer of `srcpad` when there are
  // none yet or a new portrait was announced.  1: new codes in *start and
  // *direction; 0: those given before still hold; -1 / -2 with *why as
  // gst_anitalker_codes_ask.
  int update(GstPad* srcpad, int start_dim, int motion_dim, std::vector<float>* start, std::vector<float>* direction,
             std::string* why);

 private:
  GstAnitalkerMutex lock_;
  guint announced_ = 0;  // 0: none
  guint held_ = 0;       // the serial of the codes last given
  bool have_ = false;
};

// Whether `query` is a GST_QUERY_CUSTOM named `name` (gstanitalkercaps.h).
bool gst_anitalker_query_is(GstQuery* query, const char* name);

// --- The hop of the features (gstanitalkercaps.h): hubertenc answers, the
// motion element asks the peer of its sink pad; false when unanswered.
void gst_anitalker_hop_answer(GstQuery* query, gint hop, guint64 origin);
bool gst_anitalker_hop_ask(GstPad* pad, gint64* hop, gint64* origin);
