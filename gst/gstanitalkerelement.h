// GstAnitalkerElement: the one shape of the anitalker elements that run a
// network on a stream (hubertenc, anitalkermotion, anitalkerrender) and of
// anitalkerpaste.  The base owns what they all do the same way, so that each
// element file holds only its own logic (docs/design.md "One element shape"):
//
// - one sink and one src pad, made from the class's "sink" and "src" pad
//   templates, with every pad function wrapped in a try/catch that posts the
//   exception as an element error (gstanitalkercommon.h);
// - the common properties, installed by the subclass with
//   gst_anitalker_element_class_install_common(): device, num-threads and
//   precision, and for the streaming elements mode, offline-limit, window,
//   context and lookahead (look-ahead above the window refused at set time;
//   a new window posts a LATENCY message);
// - READY->PAUSED / PAUSED->READY: a property refused earlier fails the start
//   with its text, then the class's start() loads the model; stop() after;
// - mode=auto: the upstream LATENCY query decides streaming or offline, once
//   a stream; offline-limit switches a long non-live input to windows;
// - other serialized events (tags, custom ones) kept in their place: held
//   until the output of the input before them has been pushed;
// - events: CAPS to set_caps(), FLUSH_STOP and SEGMENT (in TIME; other
//   formats are replaced by a TIME segment from 0) to flush(), EOS to
//   drain(), GAP and a DISCONT buffer to drain() when streaming; after a
//   drain the next output buffer is DISCONT and timestamps re-anchor; a
//   buffer before set_caps() succeeded is refused (NOT_NEGOTIATED);
//   sink caps that are not a subset of get_caps() (or the template) are
//   refused before set_caps() with an error naming both and the model;
// - queries: CAPS from get_caps() (or the template), ACCEPT_CAPS against the
//   template (so that wrong caps reach set_caps(), which names what it
//   takes), LATENCY as upstream's plus latency() plus the compute budget;
// - output frames timestamped from their index, never accumulated.
//
// C++ only (the element files are C++); torch-free.
#pragma once

#include <gst/gst.h>

#include <chrono>
#include <functional>

#include "gstanitalkercommon.h"

G_BEGIN_DECLS

// The `mode` property of the streaming elements (and of the anitalker bin).
typedef enum {
  GST_ANITALKER_MODE_OFFLINE = 0,
  GST_ANITALKER_MODE_STREAMING = 1,
  GST_ANITALKER_MODE_AUTO = 2,
} GstAnitalkerMode;

#define GST_TYPE_ANITALKER_MODE (gst_anitalker_mode_get_type())
GType gst_anitalker_mode_get_type(void);

#define GST_TYPE_ANITALKER_ELEMENT (gst_anitalker_element_get_type())
#define GST_ANITALKER_ELEMENT(obj) (G_TYPE_CHECK_INSTANCE_CAST((obj), GST_TYPE_ANITALKER_ELEMENT, GstAnitalkerElement))
#define GST_ANITALKER_ELEMENT_GET_CLASS(obj) \
  (G_TYPE_INSTANCE_GET_CLASS((obj), GST_TYPE_ANITALKER_ELEMENT, GstAnitalkerElementClass))
#define GST_ANITALKER_ELEMENT_CLASS(klass) \
  (G_TYPE_CHECK_CLASS_CAST((klass), GST_TYPE_ANITALKER_ELEMENT, GstAnitalkerElementClass))

typedef struct _GstAnitalkerElement GstAnitalkerElement;
typedef struct _GstAnitalkerElementClass GstAnitalkerElementClass;
typedef struct _GstAnitalkerElementPrivate GstAnitalkerElementPrivate;

struct _GstAnitalkerElement {
  GstElement parent;

  GstPad* sinkpad;
  GstPad* srcpad;

  // The common properties (those the class installed), under the object lock.
  gchar* device;
  gint num_threads;
  gint precision;  // GstAnitalkerPrecision
  gint mode;  // GstAnitalkerMode
  guint offline_limit_s;
  guint window, context, lookahead;  // in the class's window unit
  guint max_batch, max_batch_delay;  // sharing the network (max_batch_delay in microseconds)
  guint latency_recovery_s;          // GstAnitalkerBudget's recovery time; 0 = never lower

  // The stream, in the streaming thread (and the serialized events).
  GstSegment segment;  // the last one, in TIME
  GstClockTime t0;     // PTS of output frame 0; NONE until the first buffer
  guint64 emitted;     // output frames pushed since the stream (re)started
  gboolean discont;    // flag the next output buffer DISCONT

  GstAnitalkerElementPrivate* priv;
};

// The common properties a class installs.
typedef enum {
  GST_ANITALKER_COMMON_DEVICE = 1 << 0,     // device, num-threads, precision
  GST_ANITALKER_COMMON_STREAMING = 1 << 1,  // mode, offline-limit, window, context, lookahead
  GST_ANITALKER_COMMON_SHARING = 1 << 2,    // max-batch, max-batch-delay
  GST_ANITALKER_COMMON_BUDGET = 1 << 3,     // latency-recovery (the class calls gst_anitalker_element_add_compute)
} GstAnitalkerCommonFlags;

// The window properties of a streaming element: what they count and their
// ranges and defaults (window >= window_min; context and look-ahead >= 0).
typedef struct {
  const char* unit;  // "ms" or "frames", for the messages
  guint window_min, window_max, window_default;
  guint context_max, context_default;
  guint lookahead_default;
  const char* window_doc, *context_doc, *lookahead_doc;  // blurbs
} GstAnitalkerWindowSpec;

struct _GstAnitalkerElementClass {
  GstElementClass parent_class;

  // --- Filled in by the subclass's class_init.
  const char* failure;          // the error message when handle_buffer throws ("Rendering failed.")
  const char* input;            // what the sink takes, for messages ("Audio"; NULL: "Data")
  gboolean drain_on_segment;    // a SEGMENT drains what is pending instead of dropping it
  gboolean drain_on_stream_start;  // STREAM_START and SEGMENT_DONE drain too
  // The input is read forward in time only (audio, features): a seek with a
  // negative rate is refused, and a segment with one is an error.
  gboolean forward_only;
  // The subclass follows its input's timestamps itself (hubertenc's holes
  // and overlaps): in streaming the base does not end the stream at a
  // DISCONT buffer or a GAP event; the subclass calls
  // gst_anitalker_element_restart() where it must.
  gboolean own_timeline;

  // Set by gst_anitalker_element_class_install_common().
  guint common;                           // GstAnitalkerCommonFlags installed
  const GstAnitalkerWindowSpec* windows;  // with GST_ANITALKER_COMMON_STREAMING

  // READY->PAUSED, after the settings check: load the model and take the
  // settings; post the error and return FALSE on failure.
  gboolean (*start)(GstAnitalkerElement* self);
  // READY->PAUSED after start, unless mode=offline (optional): run the
  // networks once on silence at the shapes the first windows will have, so
  // that a live stream's first windows (their compute budget, the first
  // frame's delay) do not pay for first-call set-up.  Post the error and
  // return FALSE on failure.
  gboolean (*warm_up)(GstAnitalkerElement* self);
  // PAUSED->READY (and after a failed start): drop the model and the stream.
  void (*stop)(GstAnitalkerElement* self);
  // The sink caps event, once the caps are known to fit get_caps(): push
  // the src caps, or post the error and return FALSE.
  gboolean (*set_caps)(GstAnitalkerElement* self, GstCaps* caps);
  // The caps a pad has now (for the CAPS query and, for the sink pad, the
  // check of the caps event); NULL for the template's.
  GstCaps* (*get_caps)(GstAnitalkerElement* self, GstPadDirection direction);
  // A buffer (the base unrefs it after).
  GstFlowReturn (*handle_buffer)(GstAnitalkerElement* self, GstBuffer* buffer);
  // The end of the stream so far (EOS; in streaming, GAP and DISCONT unless
  // own_timeline): push everything pending.  The base then re-anchors the
  // timestamps.
  GstFlowReturn (*drain)(GstAnitalkerElement* self);
  // FLUSH_STOP, SEGMENT (unless drain_on_segment): drop what is pending.
  void (*flush)(GstAnitalkerElement* self);
  // The latency the element adds besides its compute budget, when streaming
  // (the window it waits for).  NULL: the element answers no LATENCY query.
  GstClockTime (*latency)(GstAnitalkerElement* self, gboolean streaming);
  // Optional: where the input taken since the stream (re)started ends on the
  // output's timeline (t0 + what was received; GST_CLOCK_TIME_NONE when
  // nothing was); NULL: the last input buffer's PTS + duration.  A
  // serialized event (tag, custom event, an offline GAP) that arrives after
  // input whose output is still to come is held until the output reaches
  // that place, or the stream ends; a flush drops it (sticky ones stay).
  GstClockTime (*input_end)(GstAnitalkerElement* self);
  // Optional hooks, called before the base's handling; TRUE when they took
  // the event or answered the query (*result then holds the answer).
  gboolean (*sink_event)(GstAnitalkerElement* self, GstEvent* event, gboolean* result);
  gboolean (*sink_query)(GstAnitalkerElement* self, GstQuery* query, gboolean* result);
  gboolean (*src_event)(GstAnitalkerElement* self, GstEvent* event, gboolean* result);
  gboolean (*src_query)(GstAnitalkerElement* self, GstQuery* query, gboolean* result);
};

GType gst_anitalker_element_get_type(void);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GstAnitalkerElement, gst_object_unref)

G_END_DECLS

// Installs the common properties on a subclass (after its own, in
// class_init).  `what` names what runs on the device, for the blurbs
// ("HuBERT", "the renderer"); `windows` is needed with STREAMING.
void gst_anitalker_element_class_install_common(GstAnitalkerElementClass* klass, guint flags, const char* what,
                                                const GstAnitalkerWindowSpec* windows = nullptr);

// max-batch and max-batch-delay as now set; true when above 1 (share).
bool gst_anitalker_element_sharing(GstAnitalkerElement* self, guint* max_batch, std::chrono::microseconds* delay);
// The process's executor that `make(max_batch, delay)` gives (lib/batcher.h)
// when max-batch is above 1; else none (run alone).
template <typename Make>
auto gst_anitalker_element_share(GstAnitalkerElement* self, Make&& make)
    -> decltype(make(1u, std::chrono::microseconds(0))) {
  guint max_batch;
  std::chrono::microseconds delay;
  if (!gst_anitalker_element_sharing(self, &max_batch, &delay)) return {};
  return make(max_batch, delay);
}

// The element's C++ state: made in the subclass's init, deleted with the
// element (as GObject structs never run C++ constructors: BUILD-NOTES).
// `state` is a heap object the base deletes with `destroy` on finalize.
void gst_anitalker_element_set_state(GstAnitalkerElement* self, void* state, void (*destroy)(void*));
template <typename T>
T* gst_anitalker_element_make_state(GstAnitalkerElement* self) {
  T* state = new T();
  gst_anitalker_element_set_state(self, state, [](void* p) { delete static_cast<T*>(p); });
  return state;
}

// The `device` property parsed; posts the error and returns false when it
// cannot be used.
bool gst_anitalker_element_device(GstAnitalkerElement* self, c10::Device* device);

// The `precision` property checked for `device` and what the network
// `what` supports; posts the error and returns false when it cannot run.
bool gst_anitalker_element_precision(GstAnitalkerElement* self, c10::Device device,
                                     std::initializer_list<anitalker::Precision> supported, const char* what,
                                     anitalker::Precision* precision);

// start()'s loading of a network from the file (or folder) that the
// property `property` names: "No <property> set." when `file` is empty
// (asking for `kind`, or `missing_hint` when given), the `device` and
// `precision` properties checked for `what`'s `supported` precisions, then
// `load(device, precision)`, whose exception is posted as "Could not load
// <kind> \"<file>\"."  False when anything failed (the error posted).
bool gst_anitalker_element_load(GstAnitalkerElement* self, const std::string& file, const char* property,
                                const char* kind, std::initializer_list<anitalker::Precision> supported,
                                const char* what, const std::function<void(c10::Device, anitalker::Precision)>& load,
                                const char* missing_hint = nullptr);

// What the element loaded, for messages (the negotiation error of sink
// caps that do not fit): gst_anitalker_element_load() sets `<kind> "<file>"`;
// start() may say more after it.  Forgotten at stop.
void gst_anitalker_element_set_model_name(GstAnitalkerElement* self, const std::string& name);

// Whether upstream is live (its answer to a LATENCY query; FALSE when none
// answers).
gboolean gst_anitalker_element_upstream_live(GstAnitalkerElement* self);
// The same LATENCY query, with upstream's minimum latency in *min (0 when
// the query fails).
gboolean gst_anitalker_element_upstream_latency(GstAnitalkerElement* self, GstClockTime* min);

// Whether long work in the streaming thread should stop now: a flush
// started (FLUSH_START, until FLUSH_STOP) or the element is going to READY.
// The work throws GstAnitalkerCancelled, which the element answers with
// GST_FLOW_FLUSHING and no error.
gboolean gst_anitalker_element_cancelled(GstAnitalkerElement* self);
struct GstAnitalkerCancelled {};

// Whether this stream runs in windows: mode=streaming, or mode=auto with a
// live upstream (asked once a stream); TRUE for a class without a mode.
gboolean gst_anitalker_element_streaming(GstAnitalkerElement* self);

// After `seconds` of input gathered offline: 0 while within offline-limit;
// past it, mode=offline posts an error and returns -1, mode=auto goes on in
// windows from now on and returns 1.
int gst_anitalker_element_check_offline_limit(GstAnitalkerElement* self, double seconds);

// The window settings in force now (they may change while playing).
void gst_anitalker_element_windows(GstAnitalkerElement* self, int* window, int* context, int* lookahead);

// A streaming window's (or a render call's) compute time, which started at
// `since_us` (g_get_monotonic_time()): part of the latency the element adds;
// posts a LATENCY message when the budget grew.
void gst_anitalker_element_add_compute(GstAnitalkerElement* self, gint64 since_us);

// Anchors the output timestamps at the first input buffer (or the segment's
// start when it has no PTS), if not anchored yet.
void gst_anitalker_element_anchor(GstAnitalkerElement* self, GstBuffer* input);

// Ends the stream so far as a DISCONT would without own_timeline: drain()
// (everything pending pushed), then the timestamps re-anchor at the next
// buffer and its output is flagged DISCONT.
GstFlowReturn gst_anitalker_element_restart(GstAnitalkerElement* self);

// How the values of an input buffer are stored.
typedef enum {
  GST_ANITALKER_VALUES_F32 = 0,  // float32, native order (the project's own caps)
  GST_ANITALKER_VALUES_F32LE,    // float32, little-endian (audio F32LE)
  GST_ANITALKER_VALUES_S16LE,    // int16, little-endian, scaled by 1/32768 (audio S16LE)
} GstAnitalkerValues;

// Appends the frames of `buffer` (`frame_floats` values each, stored as
// `values` says) to *out as float32 and returns how many there were.  A
// size that is not whole frames, or a NaN or inf, posts STREAM FORMAT naming
// `what` ("feature", "motion", "audio") and the frame (a "sample" when
// frames are single values; counted from `first`, the frames taken before;
// with `rate` above 0 also its time), leaves *out as it was and returns -1.
gssize gst_anitalker_element_take_frames(GstAnitalkerElement* self, GstBuffer* buffer, gsize frame_floats,
                                         const char* what, guint64 first, std::vector<float>* out,
                                         GstAnitalkerValues values = GST_ANITALKER_VALUES_F32, gint rate = 0);

// Pushes `count` frames of `frame_floats` float32 values (time-major) in
// buffers of at most `per_buffer` frames, frame indices self->emitted on, at
// `rate` frames a second: PTS t0 + index / rate, OFFSET the index, DISCONT
// on the first after a (re)start.  `decorate(buffer, first, n)` may add metas
// (first counts from the start of this call).
GstFlowReturn gst_anitalker_element_push_frames(
    GstAnitalkerElement* self, const float* data, guint64 count, gsize frame_floats, gint rate, guint per_buffer,
    const std::function<void(GstBuffer*, guint64, guint64)>& decorate = nullptr);

// Pushes one buffer (logging a refused push).
GstFlowReturn gst_anitalker_element_push(GstAnitalkerElement* self, GstBuffer* buffer);

// Sends `caps` (taken; null: FALSE) downstream as the src caps.
gboolean gst_anitalker_element_push_caps(GstAnitalkerElement* self, GstCaps* caps);
