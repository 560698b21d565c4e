// GstAnitalkerElement: the shape the anitalker elements share (see the
// header).  Plumbing only; no maths.
#include "gstanitalkerelement.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <string>
#include <utility>

#include "device.h"
#include "offline_limit.h"

GST_DEBUG_CATEGORY_STATIC(gst_anitalker_element_debug);
#define GST_CAT_DEFAULT gst_anitalker_element_debug

#define DEFAULT_DEVICE "cpu"

// Ids of the common properties, past any a subclass uses.
enum {
  PROP_DEVICE = 0x1000,
  PROP_NUM_THREADS,
  PROP_PRECISION,
  PROP_MODE,
  PROP_OFFLINE_LIMIT,
  PROP_WINDOW,
  PROP_CONTEXT,
  PROP_LOOKAHEAD,
  PROP_MAX_BATCH,
  PROP_MAX_BATCH_DELAY,
  PROP_LATENCY_RECOVERY,
};

GType gst_anitalker_mode_get_type(void) {
  static GType type = 0;
  static const GEnumValue values[] = {
      {GST_ANITALKER_MODE_OFFLINE, "Gather the whole utterance until EOS (exact)", "offline"},
      {GST_ANITALKER_MODE_STREAMING, "Work in windows as input arrives (bounded latency)", "streaming"},
      {GST_ANITALKER_MODE_AUTO, "Streaming for live upstream, else offline", "auto"},
      {0, nullptr, nullptr},
  };
  if (g_once_init_enter(&type)) {
    GType t = g_enum_register_static("GstAnitalkerMode", values);
    g_once_init_leave(&type, t);
  }
  return type;
}

struct _GstAnitalkerElementPrivate {
  ~_GstAnitalkerElementPrivate() {
    for (auto& e : held) gst_event_unref(e.second);
    if (state_destroy) state_destroy(state);
  }
  // Under `lock`: read from the streaming thread, queries and the state
  // change.  Lock order: the subclass's locks, this one, the object lock.
  GstAnitalkerMutex lock;
  int resolved = -1;  // -1: auto not decided yet; else 0 offline, 1 streaming
  bool have_caps = false;  // set_caps() succeeded (streaming thread)
  std::string model;       // what start() loaded, for messages (`the stage-1 checkpoint "x.ckpt"`)
  GstAnitalkerBudget budget;
  void* state = nullptr;
  void (*state_destroy)(void*) = nullptr;

  // Serialized events that came after input whose output has not been
  // pushed yet, with their place on the output's timeline (where that input
  // ends): each is pushed before the first output buffer at or after its
  // place, or at the end of the stream (streaming thread).
  std::deque<std::pair<GstClockTime, GstEvent*>> held;
  GstClockTime in_end = GST_CLOCK_TIME_NONE;   // the input since the stream (re)started ends here
  GstClockTime out_end = GST_CLOCK_TIME_NONE;  // the output pushed since then ends here
  // From FLUSH_START to FLUSH_STOP, and from PAUSED->READY on: long work in
  // the streaming thread (an utterance's offline motion or HuBERT pass)
  // stops at its next step (gst_anitalker_element_cancelled).
  std::atomic<bool> cancel{false};
};

static GstElementClass* parent_class = nullptr;
static void gst_anitalker_element_class_init(GstAnitalkerElementClass* klass);
static void gst_anitalker_element_init(GstAnitalkerElement* self, gpointer g_class);

// Registered by hand rather than with G_DEFINE_ABSTRACT_TYPE: the instance
// init needs the instance's own class (its pad templates and properties),
// which GObject passes as the second argument only.
GType gst_anitalker_element_get_type(void) {
  static gsize type = 0;
  if (g_once_init_enter(&type)) {
    GTypeInfo info = {};
    info.class_size = sizeof(GstAnitalkerElementClass);
    info.class_init = [](gpointer k, gpointer) {
      parent_class = GST_ELEMENT_CLASS(g_type_class_peek_parent(k));
      gst_anitalker_element_class_init(static_cast<GstAnitalkerElementClass*>(k));
    };
    info.instance_size = sizeof(GstAnitalkerElement);
    info.instance_init = [](GTypeInstance* i, gpointer k) {
      gst_anitalker_element_init(reinterpret_cast<GstAnitalkerElement*>(i), k);
    };
    const GType t =
        g_type_register_static(GST_TYPE_ELEMENT, "GstAnitalkerElement", &info, G_TYPE_FLAG_ABSTRACT);
    g_once_init_leave(&type, t);
  }
  return (GType)type;
}

static GstAnitalkerElementClass* klass_of(GstAnitalkerElement* self) { return GST_ANITALKER_ELEMENT_GET_CLASS(self); }

// Whether the class installed these common properties.
static bool has_common(GstAnitalkerElement* self, guint flags) { return (klass_of(self)->common & flags) == flags; }

// OpenMP threads are per thread (BUILD-NOTES): set in the streaming thread,
// before the class's work, from num-threads as now set.
static void apply_threads(GstAnitalkerElement* self) {
  if (!has_common(self, GST_ANITALKER_COMMON_DEVICE)) return;
  GST_OBJECT_LOCK(self);
  const int threads = self->num_threads;
  GST_OBJECT_UNLOCK(self);
  anitalker::set_num_threads(threads);
}

static void gst_anitalker_element_set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  GstAnitalkerElement* self = GST_ANITALKER_ELEMENT(object);
  if (id == PROP_WINDOW || id == PROP_LOOKAHEAD) {
    // A look-ahead longer than the window while running: refused (the value
    // in force stays).  Stopped, the other of the two may follow (which is
    // set first is not the user's to choose: gst-launch-1.0 sets a bin's
    // child::property settings in reverse order, found 2026-12-07), so the
    // pair is checked at start (check_window()).
    const guint v = g_value_get_uint(value);
    GST_OBJECT_LOCK(self);
    const guint window = id == PROP_WINDOW ? v : self->window;
    const guint lookahead = id == PROP_LOOKAHEAD ? v : self->lookahead;
    const bool running = GST_STATE(self) >= GST_STATE_PAUSED;
    GST_OBJECT_UNLOCK(self);
    if (lookahead > window && running) {
      const char* unit = klass_of(self)->windows ? klass_of(self)->windows->unit : "";
      gst_anitalker_refuse_setting(GST_ELEMENT_CAST(self), pspec->name,
                                   gst_anitalker_printf("%s=%u refused: the look-ahead can be 0 to the window (%u "
                                                        "%s), not %u %s",
                                                        pspec->name, v, window, unit, lookahead, unit));
      return;
    }
  }
  gst_anitalker_set_property(object, id, value, pspec);
  // A new window, look-ahead (or batch size) changes the latency: let the
  // pipeline ask again.
  if (gst_anitalker_param_sets_latency(pspec) && GST_STATE(self) >= GST_STATE_PAUSED)
    gst_element_post_message(GST_ELEMENT_CAST(self), gst_message_new_latency(GST_OBJECT_CAST(self)));
}

void gst_anitalker_element_class_install_common(GstAnitalkerElementClass* klass, guint flags, const char* what,
                                                const GstAnitalkerWindowSpec* w) {
  GObjectClass* k = G_OBJECT_CLASS(klass);
  klass->common = flags;
  klass->windows = w;
  // GObject does not inherit set_property / get_property (each class gets
  // its own): the element's setter, unless the class has one of its own
  // (which then chains up to ours).
  if (k->set_property == nullptr || k->set_property == gst_anitalker_set_property)
    k->set_property = gst_anitalker_element_set_property;
  k->get_property = gst_anitalker_get_property;
  if (flags & GST_ANITALKER_COMMON_DEVICE)
    gst_anitalker_install_device_properties(k, PROP_DEVICE, G_STRUCT_OFFSET(GstAnitalkerElement, device),
                                            PROP_NUM_THREADS, G_STRUCT_OFFSET(GstAnitalkerElement, num_threads),
                                            PROP_PRECISION, G_STRUCT_OFFSET(GstAnitalkerElement, precision), what);
  if (flags & GST_ANITALKER_COMMON_STREAMING) {
    g_return_if_fail(w != nullptr);
    gst_anitalker_install_property(
        k, PROP_MODE,
        g_param_spec_enum("mode", "Mode",
                          "offline (exact, waits for EOS), streaming (windows), or auto (streaming when upstream "
                          "is live, else offline)",
                          GST_TYPE_ANITALKER_MODE, GST_ANITALKER_MODE_AUTO, GST_ANITALKER_PARAM_READY),
        G_STRUCT_OFFSET(GstAnitalkerElement, mode));
    gst_anitalker_install_property(
        k, PROP_OFFLINE_LIMIT,
        gst_anitalker_param_spec_uint("offline-limit", "Offline limit",
                          "Seconds of audio worked on in one piece: auto goes on in windows past it, offline refuses "
                          "longer audio; 0 = no limit; may change while playing (default: 120)",
                          0, anitalker::kOfflineLimitMaxS, anitalker::kOfflineLimitDefaultS, GST_ANITALKER_PARAM_PLAYING),
        G_STRUCT_OFFSET(GstAnitalkerElement, offline_limit_s));
    // The window settings may change while playing (the bin's latency
    // presets): they apply from the next window.
    gst_anitalker_install_property(k, PROP_WINDOW,
                                   gst_anitalker_param_spec_uint("window", "Window", w->window_doc, w->window_min, w->window_max,
                                                     w->window_default, GST_ANITALKER_PARAM_PLAYING_LATENCY),
                                   G_STRUCT_OFFSET(GstAnitalkerElement, window));
    gst_anitalker_install_property(k, PROP_CONTEXT,
                                   gst_anitalker_param_spec_uint("context", "Context", w->context_doc, 0, w->context_max,
                                                     w->context_default, GST_ANITALKER_PARAM_PLAYING),
                                   G_STRUCT_OFFSET(GstAnitalkerElement, context));
    gst_anitalker_install_property(k, PROP_LOOKAHEAD,
                                   gst_anitalker_param_spec_uint("lookahead", "Look-ahead", w->lookahead_doc, 0, w->window_max,
                                                     w->lookahead_default, GST_ANITALKER_PARAM_PLAYING_LATENCY),
                                   G_STRUCT_OFFSET(GstAnitalkerElement, lookahead));
    gst_type_mark_as_plugin_api(GST_TYPE_ANITALKER_MODE, (GstPluginAPIFlags)0);
  }
  if (flags & GST_ANITALKER_COMMON_BUDGET)
    gst_anitalker_install_property(
        k, PROP_LATENCY_RECOVERY,
        gst_anitalker_param_spec_uint(
            "latency-recovery", "Latency recovery",
            "Seconds after which a compute stall stops counting in the latency this element reports: the latency "
            "rises at once when a window (or frame) takes longer, and falls back when the longest of the last this "
            "many seconds is well under it (under 80% and by 50 ms or more; the sinks then skip that much delay "
            "once); 0 = the longest since the start, never lowered (default: 60)",
            0, GST_ANITALKER_LATENCY_RECOVERY_MAX_S, GST_ANITALKER_LATENCY_RECOVERY_DEFAULT_S,
            GST_ANITALKER_PARAM_PLAYING),
        G_STRUCT_OFFSET(GstAnitalkerElement, latency_recovery_s));
  if (flags & GST_ANITALKER_COMMON_SHARING) {
    gchar* blurb = g_strdup_printf(
        "Above 1: %s shared with the other pipelines of this process that set the same file, device, precision, "
        "max-batch and max-batch-delay: their requests (buffers, windows) run through one executor, up to this many a call; on "
        "the CPU in one thread (no cores oversubscribed), batched only where each result keeps the bits it has "
        "alone (default: 1, no sharing)",
        what);
    gst_anitalker_install_sharing_properties(k, PROP_MAX_BATCH, G_STRUCT_OFFSET(GstAnitalkerElement, max_batch),
                                             PROP_MAX_BATCH_DELAY, G_STRUCT_OFFSET(GstAnitalkerElement, max_batch_delay),
                                             blurb, "request");
    g_free(blurb);
  }
}

bool gst_anitalker_element_sharing(GstAnitalkerElement* self, guint* max_batch, std::chrono::microseconds* delay) {
  GST_OBJECT_LOCK(self);
  *max_batch = self->max_batch;
  *delay = std::chrono::microseconds(self->max_batch_delay);
  GST_OBJECT_UNLOCK(self);
  const bool share = has_common(self, GST_ANITALKER_COMMON_SHARING) && *max_batch > 1;
  if (share)
    GST_INFO_OBJECT(self, "sharing the network with the process's other pipelines: up to %u requests a call, %lld us "
                    "of waiting", *max_batch, (long long)delay->count());
  return share;
}

void gst_anitalker_element_set_state(GstAnitalkerElement* self, void* state, void (*destroy)(void*)) {
  self->priv->state = state;
  self->priv->state_destroy = destroy;
}

/* --- Settings and the stream ------------------------------------------------- */

bool gst_anitalker_element_device(GstAnitalkerElement* self, c10::Device* device) {
  const std::string name = gst_anitalker_get_string(GST_ELEMENT_CAST(self), &self->device);
  return gst_anitalker_parse_device(GST_ELEMENT_CAST(self), name.empty() ? DEFAULT_DEVICE : name, device);
}

bool gst_anitalker_element_load(GstAnitalkerElement* self, const std::string& file, const char* property,
                                const char* kind, std::initializer_list<anitalker::Precision> supported,
                                const char* what, const std::function<void(c10::Device, anitalker::Precision)>& load,
                                const char* missing_hint) {
  if (file.empty()) {
    GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND, ("No %s set.", property),
                      ("set the \"%s\" property to %s", property, missing_hint ? missing_hint : kind));
    return false;
  }
  c10::Device device(c10::kCPU);
  anitalker::Precision precision;
  if (!gst_anitalker_element_device(self, &device) ||
      !gst_anitalker_element_precision(self, device, supported, what, &precision) ||
      !GST_ANITALKER_TRY(self, gst_anitalker_printf("Could not load %s \"%s\".", kind, file.c_str()), true,
                         load(device, precision)))
    return false;
  gst_anitalker_element_set_model_name(self, gst_anitalker_printf("%s \"%s\"", kind, file.c_str()));
  return true;
}

void gst_anitalker_element_set_model_name(GstAnitalkerElement* self, const std::string& name) {
  GstAnitalkerLocked lock(&self->priv->lock);
  self->priv->model = name;
}

bool gst_anitalker_element_precision(GstAnitalkerElement* self, c10::Device device,
                                     std::initializer_list<anitalker::Precision> supported, const char* what,
                                     anitalker::Precision* precision) {
  GST_OBJECT_LOCK(self);
  const gint value = self->precision;
  GST_OBJECT_UNLOCK(self);
  return gst_anitalker_check_precision(GST_ELEMENT_CAST(self), value, device, supported, what, precision);
}

gboolean gst_anitalker_element_upstream_latency(GstAnitalkerElement* self, GstClockTime* min) {
  gboolean live = FALSE;
  *min = 0;
  GstQuery* q = gst_query_new_latency();
  if (gst_pad_peer_query(self->sinkpad, q)) gst_query_parse_latency(q, &live, min, nullptr);
  gst_query_unref(q);
  return live;
}

gboolean gst_anitalker_element_upstream_live(GstAnitalkerElement* self) {
  GstClockTime min;
  return gst_anitalker_element_upstream_latency(self, &min);
}

gboolean gst_anitalker_element_streaming(GstAnitalkerElement* self) {
  GstAnitalkerElementPrivate* priv = self->priv;
  {
    GstAnitalkerLocked lock(&priv->lock);
    if (priv->resolved >= 0) return priv->resolved == 1;
  }
  const gboolean live = gst_anitalker_element_upstream_live(self);
  GST_INFO_OBJECT(self, "mode auto: upstream is %slive, working %s", live ? "" : "not ",
                  live ? "in windows (streaming)" : "offline");
  GstAnitalkerLocked lock(&priv->lock);
  priv->resolved = live ? 1 : 0;
  return live;
}

int gst_anitalker_element_check_offline_limit(GstAnitalkerElement* self, double seconds) {
  GST_OBJECT_LOCK(self);
  const guint limit_s = self->offline_limit_s;
  const gint mode = self->mode;
  GST_OBJECT_UNLOCK(self);
  if (!anitalker::past_offline_limit(seconds, limit_s)) return 0;
  if (mode == GST_ANITALKER_MODE_OFFLINE) {
    GST_ELEMENT_ERROR(self, STREAM, TOO_LAZY, ("More than %u s of audio in offline mode.", limit_s),
                      ("offline work costs memory with the square of the length; use mode=auto or "
                       "mode=streaming (windows), or raise offline-limit"));
    return -1;
  }
  // Auto on a long non-live input: on in windows, from the first frame not
  // yet pushed (offline pushes nothing before EOS).
  GST_INFO_OBJECT(self, "mode auto: more than %u s of audio, going on in windows", limit_s);
  GstAnitalkerLocked lock(&self->priv->lock);
  self->priv->resolved = 1;
  return 1;
}

void gst_anitalker_element_windows(GstAnitalkerElement* self, int* window, int* context, int* lookahead) {
  GST_OBJECT_LOCK(self);
  *window = (int)self->window;
  *context = (int)self->context;
  *lookahead = (int)self->lookahead;
  GST_OBJECT_UNLOCK(self);
}

void gst_anitalker_element_add_compute(GstAnitalkerElement* self, gint64 since_us) {
  const GstClockTime t = (GstClockTime)(g_get_monotonic_time() - since_us) * GST_USECOND;
  GST_LOG_OBJECT(self, "compute %" GST_TIME_FORMAT, GST_TIME_ARGS(t));
  gst_anitalker_add_compute(GST_ELEMENT_CAST(self), &self->priv->budget, since_us,
                            gst_anitalker_get(self, &self->latency_recovery_s));
}

gssize gst_anitalker_element_take_frames(GstAnitalkerElement* self, GstBuffer* buffer, gsize frame_floats,
                                         const char* what, guint64 first, std::vector<float>* out,
                                         GstAnitalkerValues values, gint rate) {
  const bool s16 = values == GST_ANITALKER_VALUES_S16LE;
  const gsize value_bytes = s16 ? 2 : 4, frame_bytes = frame_floats * value_bytes;
  const gsize size = gst_buffer_get_size(buffer);
  const char* type = s16 ? "int16" : "float32";
  const char* article = strchr("aeiou", what[0]) ? "An" : "A";
  if (frame_floats == 0 || size % frame_bytes != 0) {
    const std::string unit = frame_floats == 1 ? gst_anitalker_printf("%s samples", type)
                                               : gst_anitalker_printf("frames of %" G_GSIZE_FORMAT " %s values (%" G_GSIZE_FORMAT " bytes each)",
                                                                      frame_floats, type, frame_bytes);
    GST_ELEMENT_ERROR(self, STREAM, FORMAT,
                      ("%s %s buffer of %" G_GSIZE_FORMAT " bytes is not a whole number of %s.", article, what, size,
                       unit.c_str()),
                      (nullptr));
    return -1;
  }
  const gsize count = size / frame_bytes, n = count * frame_floats, old = out->size();
  if (count == 0) return 0;
  out->resize(old + n);
  float* dst = out->data() + old;
  if (s16) {
    std::vector<gint16> raw(n);
    gst_buffer_extract(buffer, 0, raw.data(), size);
    for (gsize i = 0; i < n; i++) dst[i] = (float)GINT16_FROM_LE(raw[i]) / 32768.0f;  // as librosa scales
    return (gssize)count;
  }
  gst_buffer_extract(buffer, 0, dst, size);
#if G_BYTE_ORDER == G_BIG_ENDIAN
  if (values == GST_ANITALKER_VALUES_F32LE)
    for (gsize i = 0; i < n; i++) {
      guint32 u;
      memcpy(&u, dst + i, 4);
      u = GUINT32_SWAP_LE_BE(u);
      memcpy(dst + i, &u, 4);
    }
#endif
  const gssize bad = gst_anitalker_first_non_finite(dst, n);
  if (bad >= 0) {
    out->resize(old);
    const guint64 at = first + (guint64)bad / frame_floats;
    const std::string when = rate > 0 ? gst_anitalker_printf(" (at %.3f s)", (double)at / rate) : std::string();
    GST_ELEMENT_ERROR(self, STREAM, FORMAT,
                      ("%c%s %s %" G_GUINT64_FORMAT "%s holds NaN or inf.", g_ascii_toupper(what[0]), what + 1,
                       frame_floats == 1 ? "sample" : "frame", at, when.c_str()),
                      ("value %" G_GSIZE_FORMAT " of the frame; the values must be finite", (gsize)bad % frame_floats));
    return -1;
  }
  return (gssize)count;
}

void gst_anitalker_element_anchor(GstAnitalkerElement* self, GstBuffer* input) {
  if (GST_CLOCK_TIME_IS_VALID(self->t0)) return;
  self->t0 = input && GST_BUFFER_PTS_IS_VALID(input) ? GST_BUFFER_PTS(input) : self->segment.start;
}

gboolean gst_anitalker_element_push_caps(GstAnitalkerElement* self, GstCaps* caps) {
  if (caps == nullptr) return FALSE;
  GST_DEBUG_OBJECT(self, "output caps %" GST_PTR_FORMAT, caps);
  const gboolean pushed = gst_pad_push_event(self->srcpad, gst_event_new_caps(caps));
  gst_caps_unref(caps);
  return pushed;
}

/* --- Serialized events in their place ----------------------------------------- */

// Pushes the held events placed at or before `upto` (every one with NONE).
static void release_events(GstAnitalkerElement* self, GstClockTime upto) {
  auto& held = self->priv->held;
  while (!held.empty() && (!GST_CLOCK_TIME_IS_VALID(upto) || held.front().first <= upto)) {
    GstEvent* event = held.front().second;
    held.pop_front();
    GST_LOG_OBJECT(self, "the output reached it: %" GST_PTR_FORMAT, event);
    gst_pad_push_event(self->srcpad, event);
  }
}

// A serialized event after input whose output is still to come waits for
// that output (as GstAudioEncoder and GstVideoDecoder keep events with their
// frames): a marker a voice agent puts after a sentence comes out after the
// sentence's frames, not the whole latency before them.  FALSE: nothing is
// held back, the event goes on now.
static gboolean hold_event(GstAnitalkerElement* self, GstEvent* event) {
  GstAnitalkerElementPrivate* p = self->priv;
  GstClockTime at = p->in_end;
  if (p->held.empty()) {
    if (!GST_CLOCK_TIME_IS_VALID(at)) return FALSE;  // no input (with timestamps) since the stream started
    if (GST_CLOCK_TIME_IS_VALID(p->out_end) && at <= p->out_end) return FALSE;  // all of it out already
  } else if (!GST_CLOCK_TIME_IS_VALID(at) || at < p->held.back().first) {
    at = p->held.back().first;  // in order with those held before it
  }
  GST_LOG_OBJECT(self, "held until the output reaches %" GST_TIME_FORMAT ": %" GST_PTR_FORMAT, GST_TIME_ARGS(at),
                 event);
  p->held.emplace_back(at, event);
  return TRUE;
}

// Where the input taken so far ends on the output's timeline.
static void note_input(GstAnitalkerElement* self, GstBuffer* buffer) {
  GstAnitalkerElementClass* klass = klass_of(self);
  if (klass->input_end) {
    self->priv->in_end = klass->input_end(self);
  } else if (buffer && GST_BUFFER_PTS_IS_VALID(buffer)) {
    // Without a duration: after this buffer's first frame, at least.
    self->priv->in_end = GST_BUFFER_PTS(buffer) + (GST_BUFFER_DURATION_IS_VALID(buffer) ? GST_BUFFER_DURATION(buffer) : 1);
  }
}

// FLUSH: what is held goes with the data, but for the sticky events (tags,
// stream collections), which still hold and go on before the next output;
// at stop all of it goes.
static void drop_held_events(GstAnitalkerElement* self, bool keep_sticky) {
  std::deque<std::pair<GstClockTime, GstEvent*>> kept;
  for (auto& e : self->priv->held) {
    if (keep_sticky && GST_EVENT_IS_STICKY(e.second))
      kept.emplace_back(0, e.second);
    else
      gst_event_unref(e.second);
  }
  self->priv->held.swap(kept);
}

GstFlowReturn gst_anitalker_element_push(GstAnitalkerElement* self, GstBuffer* buffer) {
  const GstClockTime pts = GST_BUFFER_PTS(buffer);
  const GstClockTime duration = GST_BUFFER_DURATION(buffer);
  if (GST_CLOCK_TIME_IS_VALID(pts)) release_events(self, pts);
  const GstFlowReturn ret = gst_pad_push(self->srcpad, buffer);
  if (GST_CLOCK_TIME_IS_VALID(pts))
    self->priv->out_end = pts + (GST_CLOCK_TIME_IS_VALID(duration) ? duration : 0);
  if (ret != GST_FLOW_OK) GST_DEBUG_OBJECT(self, "push: %s", gst_flow_get_name(ret));
  return ret;
}

GstFlowReturn gst_anitalker_element_push_frames(GstAnitalkerElement* self, const float* data, guint64 count,
                                                gsize frame_floats, gint rate, guint per_buffer,
                                                const std::function<void(GstBuffer*, guint64, guint64)>& decorate) {
  gst_anitalker_element_anchor(self, nullptr);
  for (guint64 done = 0; done < count;) {
    const guint64 first = self->emitted;
    guint64 n = std::min<guint64>(per_buffer, count - done);
    // A held event inside the buffer's span ends the buffer before its place.
    const GstClockTime start = self->t0 + gst_util_uint64_scale(first, GST_SECOND, rate);
    release_events(self, start);
    if (!self->priv->held.empty() && self->priv->held.front().first > start) {
      const guint64 before = gst_util_uint64_scale_ceil(self->priv->held.front().first - self->t0, rate, GST_SECOND);
      if (before > first) n = std::min<guint64>(n, before - first);
    }
    GstBuffer* buffer = gst_buffer_new_memdup(data + done * frame_floats, (gsize)(n * frame_floats * sizeof(float)));
    // Computed from the frame index, never accumulated.
    GST_BUFFER_PTS(buffer) = start;
    GST_BUFFER_DURATION(buffer) = self->t0 + gst_util_uint64_scale(first + n, GST_SECOND, rate) - start;
    GST_BUFFER_OFFSET(buffer) = first;
    GST_BUFFER_OFFSET_END(buffer) = first + n;
    if (self->discont) {
      GST_BUFFER_FLAG_SET(buffer, GST_BUFFER_FLAG_DISCONT);
      self->discont = FALSE;
    }
    if (decorate) decorate(buffer, done, n);
    self->emitted += n;
    done += n;
    const GstFlowReturn ret = gst_anitalker_element_push(self, buffer);
    if (ret != GST_FLOW_OK) return ret;
  }
  return GST_FLOW_OK;
}

// The stream starts anew: timestamps re-anchor, the next buffer is DISCONT.
static void restart(GstAnitalkerElement* self) {
  self->t0 = GST_CLOCK_TIME_NONE;
  self->emitted = 0;
  self->discont = TRUE;
  self->priv->in_end = GST_CLOCK_TIME_NONE;
  self->priv->out_end = GST_CLOCK_TIME_NONE;
}

static GstFlowReturn drain(GstAnitalkerElement* self) {
  GstFlowReturn ret = GST_FLOW_OK;
  if (klass_of(self)->drain) {
    apply_threads(self);
    ret = klass_of(self)->drain(self);
  }
  release_events(self, GST_CLOCK_TIME_NONE);  // the stream so far is out (or failed): they follow it
  restart(self);
  return ret;
}

GstFlowReturn gst_anitalker_element_restart(GstAnitalkerElement* self) { return drain(self); }

static void flush(GstAnitalkerElement* self) {
  if (klass_of(self)->flush) klass_of(self)->flush(self);
  drop_held_events(self, true);
  restart(self);
}

/* --- State changes ------------------------------------------------------------ */

// The window and look-ahead as a pair (set_property takes them one at a
// time while stopped): a look-ahead longer than the window fails the start.
static bool check_window(GstAnitalkerElement* self) {
  if (!has_common(self, GST_ANITALKER_COMMON_STREAMING)) return true;
  GST_OBJECT_LOCK(self);
  const guint window = self->window, lookahead = self->lookahead;
  GST_OBJECT_UNLOCK(self);
  if (lookahead <= window) return true;
  const char* unit = klass_of(self)->windows ? klass_of(self)->windows->unit : "";
  GST_ELEMENT_ERROR(self, LIBRARY, SETTINGS,
                    ("Invalid values for properties \"lookahead\" and \"window\": the look-ahead (%u %s) is longer "
                     "than the window (%u %s).",
                     lookahead, unit, window, unit),
                    ("the look-ahead can be 0 to the window"));
  return false;
}

static gboolean start(GstAnitalkerElement* self) {
  if (!gst_anitalker_check_settings(GST_ELEMENT_CAST(self)) || !check_window(self)) return FALSE;
  // Freed tensor memory kept for reuse (lib/device.h; ANITALKER_CPU_CACHE_MB
  // caps it, 0 turns it off): the networks run up to 4x faster.  Once per
  // process, and only in processes that run a network.
  if (has_common(self, GST_ANITALKER_COMMON_DEVICE)) anitalker::cache_cpu_memory();
  GST_OBJECT_LOCK(self);
  const gint mode = has_common(self, GST_ANITALKER_COMMON_STREAMING) ? self->mode : GST_ANITALKER_MODE_STREAMING;
  GST_OBJECT_UNLOCK(self);
  {
    GstAnitalkerLocked lock(&self->priv->lock);
    self->priv->resolved = mode == GST_ANITALKER_MODE_AUTO ? -1 : (mode == GST_ANITALKER_MODE_STREAMING ? 1 : 0);
    self->priv->budget.reset();
  }
  gst_segment_init(&self->segment, GST_FORMAT_TIME);
  restart(self);
  GstAnitalkerElementClass* klass = klass_of(self);
  if (klass->start && !klass->start(self)) return FALSE;
  if (klass->warm_up && mode != GST_ANITALKER_MODE_OFFLINE) {
    const gint64 t0 = g_get_monotonic_time();
    if (!klass->warm_up(self)) return FALSE;
    GST_INFO_OBJECT(self, "warmed up in %.3f s", (g_get_monotonic_time() - t0) / 1e6);
  }
  return TRUE;
}

static void stop(GstAnitalkerElement* self) {
  if (klass_of(self)->stop) klass_of(self)->stop(self);
  self->priv->have_caps = false;
  gst_anitalker_element_set_model_name(self, std::string());
  drop_held_events(self, false);
  restart(self);
}

static GstStateChangeReturn gst_anitalker_element_change_state(GstElement* element, GstStateChange transition) {
  GstAnitalkerElement* self = GST_ANITALKER_ELEMENT(element);
  // Before the pads are deactivated, which waits for the streaming thread.
  if (transition == GST_STATE_CHANGE_PAUSED_TO_READY) self->priv->cancel = true;
  if (transition == GST_STATE_CHANGE_READY_TO_PAUSED) {
    self->priv->cancel = false;
    gboolean ok;
    try {
      ok = start(self);
    } catch (...) {
      GST_ANITALKER_POST_CURRENT_EXCEPTION(self, "Starting failed.", false);
      ok = FALSE;
    }
    if (!ok) {
      stop(self);
      return GST_STATE_CHANGE_FAILURE;
    }
  }
  const GstStateChangeReturn ret = GST_ELEMENT_CLASS(parent_class)->change_state(element, transition);
  if (ret == GST_STATE_CHANGE_FAILURE) {
    if (transition == GST_STATE_CHANGE_READY_TO_PAUSED) stop(self);
    return ret;
  }
  if (transition == GST_STATE_CHANGE_PAUSED_TO_READY) stop(self);
  return ret;
}

/* --- Pads -------------------------------------------------------------------- */

static GstFlowReturn gst_anitalker_element_chain(GstPad*, GstObject* parent, GstBuffer* buffer) {
  GstAnitalkerElement* self = GST_ANITALKER_ELEMENT(parent);
  GstAnitalkerElementClass* klass = klass_of(self);
  GstFlowReturn ret = GST_FLOW_OK;
  try {
    // A DISCONT buffer in streaming ends the stream so far: what came before
    // the gap is a stream of its own.
    if (GST_BUFFER_IS_DISCONT(buffer) && !klass->own_timeline && gst_anitalker_element_streaming(self))
      ret = drain(self);
    if (ret == GST_FLOW_OK && !self->priv->have_caps) {
      GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("%s arrived before the caps.", klass->input ? klass->input : "Data"),
                        (nullptr));
      ret = GST_FLOW_NOT_NEGOTIATED;
    } else if (ret == GST_FLOW_OK) {
      apply_threads(self);
      ret = klass->handle_buffer(self, buffer);
      note_input(self, buffer);
    }
  } catch (...) {
    // lib/ calls are caught where they are made; this is for the rest (std::bad_alloc).
    GST_ANITALKER_POST_CURRENT_EXCEPTION(self, klass->failure ? klass->failure : "Processing failed.", false);
    ret = GST_FLOW_ERROR;
  }
  gst_buffer_unref(buffer);
  return ret;
}

// The sink caps event's caps against what the element takes now
// (get_caps(), else the template): caps that are not a subset (another
// rate, kind, dims, or a field missing) post the negotiation error naming
// both and the model.
static gboolean sink_caps_fit(GstAnitalkerElement* self, GstCaps* caps) {
  GstAnitalkerElementClass* klass = klass_of(self);
  GstCaps* want = klass->get_caps ? klass->get_caps(self, GST_PAD_SINK) : nullptr;
  if (want == nullptr) want = gst_pad_get_pad_template_caps(self->sinkpad);
  const gboolean fits = gst_caps_is_subset(caps, want);
  if (!fits) {
    std::string model;
    {
      GstAnitalkerLocked lock(&self->priv->lock);
      model = self->priv->model.empty() ? std::string("this element") : self->priv->model;
    }
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION,
                      ("The caps %" GST_PTR_FORMAT " do not fit %s, which takes %" GST_PTR_FORMAT ".", caps,
                       model.c_str(), want),
                      (nullptr));
  }
  gst_caps_unref(want);
  return fits;
}

gboolean gst_anitalker_element_cancelled(GstAnitalkerElement* self) { return self->priv->cancel.load(); }

static gboolean sink_event(GstAnitalkerElement* self, GstPad* pad, GstEvent* event) {
  GstAnitalkerElementClass* klass = klass_of(self);
  gboolean result = FALSE;
  // Not serialized: comes while the streaming thread may be in long work,
  // which then stops at its next step, so that the flush (a seek) does not
  // wait for it.
  if (GST_EVENT_TYPE(event) == GST_EVENT_FLUSH_START) self->priv->cancel = true;
  if (GST_EVENT_TYPE(event) == GST_EVENT_FLUSH_STOP) self->priv->cancel = false;
  if (klass->sink_event && klass->sink_event(self, event, &result)) {
    if (klass->input_end) note_input(self, nullptr);  // it may have taken input (hubertenc's GAP)
    return result;
  }
  switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_CAPS: {
      GstCaps* caps;
      gst_event_parse_caps(event, &caps);
      const gboolean ok = sink_caps_fit(self, caps) && (klass->set_caps ? klass->set_caps(self, caps) : TRUE);
      self->priv->have_caps = ok;
      gst_event_unref(event);  // the src pad gets the element's own caps
      return ok;
    }
    case GST_EVENT_FLUSH_STOP:
      flush(self);
      break;
    case GST_EVENT_SEGMENT: {
      if (klass->forward_only) {
        const GstSegment* seg;
        gst_event_parse_segment(event, &seg);
        if (seg->rate < 0) {
          gchar rate[G_ASCII_DTOSTR_BUF_SIZE];
          g_ascii_formatd(rate, sizeof rate, "%g", seg->rate);
          // Reverse playback (a demuxer and decoder that do it, seeked with
          // a negative rate past this element): the chunks come last first
          // and would be taken as one forward stream.
          GST_ELEMENT_ERROR(self, STREAM, FAILED,
                            ("%s takes its input forward in time only; the segment has rate %s (reverse playback).",
                             GST_ELEMENT_NAME(self), rate),
                            ("%" GST_SEGMENT_FORMAT, seg));
          gst_event_unref(event);
          return FALSE;
        }
      }
      // A new segment starts a new stream.
      if (klass->drain_on_segment)
        drain(self);
      else
        flush(self);
      // Input from a source without time (filesrc, appsrc) counts from 0.
      gst_anitalker_time_segment(GST_ELEMENT_CAST(self), &event);
      gst_event_copy_segment(event, &self->segment);
      break;
    }
    case GST_EVENT_GAP:
      // Streaming: what came before the gap is a stream of its own.  Offline
      // the utterance goes on (its frames cannot skip the gap), and the gap
      // follows the frames of what came before it.
      if (!klass->own_timeline && gst_anitalker_element_streaming(self))
        drain(self);
      else if (hold_event(self, event))
        return TRUE;
      break;
    case GST_EVENT_STREAM_START:
    case GST_EVENT_SEGMENT_DONE:
      if (klass->drain_on_stream_start) drain(self);
      break;
    case GST_EVENT_EOS: {
      // A failed drain has posted its error; EOS still goes on.  Offline,
      // the whole utterance is pushed here, and a fatal flow return from
      // downstream (not-negotiated, not-linked) reaches no source that would
      // post it: post it, as a source's streaming task does, rather than end
      // with EOS and no frames.
      const GstFlowReturn ret = drain(self);
      if (ret == GST_FLOW_NOT_LINKED || ret == GST_FLOW_NOT_NEGOTIATED) GST_ELEMENT_FLOW_ERROR(self, ret);
      break;
    }
    default:
      // Tags, custom events, an offline GAP: after the output of the input before them.
      if (GST_EVENT_IS_SERIALIZED(event) && hold_event(self, event)) return TRUE;
      break;
  }
  return gst_pad_event_default(pad, GST_OBJECT_CAST(self), event);
}

static gboolean gst_anitalker_element_sink_event(GstPad* pad, GstObject* parent, GstEvent* event) {
  GstAnitalkerElement* self = GST_ANITALKER_ELEMENT(parent);
  try {
    return sink_event(self, pad, event);
  } catch (...) {
    GST_ANITALKER_POST_CURRENT_EXCEPTION(self, "Handling an event failed.", false);
    return FALSE;
  }
}

static gboolean gst_anitalker_element_src_event(GstPad* pad, GstObject* parent, GstEvent* event) {
  GstAnitalkerElement* self = GST_ANITALKER_ELEMENT(parent);
  GstAnitalkerElementClass* klass = klass_of(self);
  gboolean result = FALSE;
  if (klass->forward_only && GST_EVENT_TYPE(event) == GST_EVENT_SEEK) {
    gdouble rate;
    gst_event_parse_seek(event, &rate, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
    if (rate < 0) {
      GST_WARNING_OBJECT(self, "refusing a seek with rate %g: the input is read forward in time only", rate);
      gst_event_unref(event);
      return FALSE;
    }
  }
  try {
    if (klass->src_event && klass->src_event(self, event, &result)) return result;
  } catch (...) {
    GST_ANITALKER_POST_CURRENT_EXCEPTION(self, "Handling an event failed.", false);
    return FALSE;
  }
  return gst_pad_event_default(pad, parent, event);
}

// The LATENCY answer: upstream's, plus what the element adds when it works
// in windows: the window it waits for and the compute budget.
static gboolean answer_latency(GstAnitalkerElement* self, GstQuery* query) {
  if (!gst_pad_peer_query(self->sinkpad, query)) return FALSE;
  gboolean live;
  GstClockTime min, max;
  gst_query_parse_latency(query, &live, &min, &max);
  bool streaming;
  {
    GstAnitalkerLocked lock(&self->priv->lock);
    streaming = self->priv->resolved >= 0 ? self->priv->resolved == 1 : live;
  }
  GstClockTime ours = 0;
  if (streaming)
    ours = klass_of(self)->latency(self, TRUE) + self->priv->budget.report();
  else if (live)
    GST_WARNING_OBJECT(self, "offline mode on a live source: nothing comes out before EOS");
  gst_anitalker_set_latency(GST_ELEMENT_CAST(self), query, live, min, max, ours);
  return TRUE;
}

static gboolean query(GstAnitalkerElement* self, GstPad* pad, GstQuery* query) {
  GstAnitalkerElementClass* klass = klass_of(self);
  const bool sink = pad == self->sinkpad;
  gboolean result = FALSE;
  auto hook = sink ? klass->sink_query : klass->src_query;
  if (hook && hook(self, query, &result)) return result;
  switch (GST_QUERY_TYPE(query)) {
    case GST_QUERY_CAPS: {
      GstCaps* caps = klass->get_caps ? klass->get_caps(self, GST_PAD_DIRECTION(pad)) : nullptr;
      gst_anitalker_set_caps_result(query, caps ? caps : gst_pad_get_pad_template_caps(pad));
      return TRUE;
    }
    case GST_QUERY_ACCEPT_CAPS:
      if (sink) {
        // Against the template: caps of the wrong size reach the CAPS event,
        // whose check posts an error naming what the model takes, not a bare
        // not-negotiated.
        GstCaps* caps;
        gst_query_parse_accept_caps(query, &caps);
        GstCaps* templ = gst_pad_get_pad_template_caps(pad);
        gst_query_set_accept_caps_result(query, gst_caps_is_subset(caps, templ));
        gst_caps_unref(templ);
        return TRUE;
      }
      break;
    case GST_QUERY_LATENCY:
      if (!sink && klass->latency) return answer_latency(self, query);
      break;
    default:
      break;
  }
  return gst_pad_query_default(pad, GST_OBJECT_CAST(self), query);
}

static gboolean gst_anitalker_element_query(GstPad* pad, GstObject* parent, GstQuery* q) {
  GstAnitalkerElement* self = GST_ANITALKER_ELEMENT(parent);
  try {
    return query(self, pad, q);
  } catch (...) {
    GST_ANITALKER_POST_CURRENT_EXCEPTION(self, "Answering a query failed.", false);
    return FALSE;
  }
}

/* --- Type -------------------------------------------------------------------- */

static void gst_anitalker_element_finalize(GObject* object) {
  GstAnitalkerElement* self = GST_ANITALKER_ELEMENT(object);
  delete self->priv;
  self->priv = nullptr;
  gst_anitalker_finalize_properties(object);
  G_OBJECT_CLASS(parent_class)->finalize(object);
}

static void gst_anitalker_element_class_init(GstAnitalkerElementClass* klass) {
  GST_DEBUG_CATEGORY_INIT(gst_anitalker_element_debug, "anitalkerelement", 0, "anitalker element base");
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  gobject_class->set_property = gst_anitalker_element_set_property;
  gobject_class->get_property = gst_anitalker_get_property;
  gobject_class->finalize = gst_anitalker_element_finalize;
  GST_ELEMENT_CLASS(klass)->change_state = GST_DEBUG_FUNCPTR(gst_anitalker_element_change_state);
  gst_type_mark_as_plugin_api(GST_TYPE_ANITALKER_ELEMENT, (GstPluginAPIFlags)0);
}

static void gst_anitalker_element_init(GstAnitalkerElement* self, gpointer g_class) {
  GstElementClass* klass = GST_ELEMENT_CLASS(g_class);
  self->priv = new GstAnitalkerElementPrivate();
  self->sinkpad = gst_pad_new_from_template(gst_element_class_get_pad_template(klass, "sink"), "sink");
  gst_pad_set_chain_function(self->sinkpad, GST_DEBUG_FUNCPTR(gst_anitalker_element_chain));
  gst_pad_set_event_function(self->sinkpad, GST_DEBUG_FUNCPTR(gst_anitalker_element_sink_event));
  gst_pad_set_query_function(self->sinkpad, GST_DEBUG_FUNCPTR(gst_anitalker_element_query));
  gst_element_add_pad(GST_ELEMENT_CAST(self), self->sinkpad);
  self->srcpad = gst_pad_new_from_template(gst_element_class_get_pad_template(klass, "src"), "src");
  gst_pad_set_event_function(self->srcpad, GST_DEBUG_FUNCPTR(gst_anitalker_element_src_event));
  gst_pad_set_query_function(self->srcpad, GST_DEBUG_FUNCPTR(gst_anitalker_element_query));
  gst_element_add_pad(GST_ELEMENT_CAST(self), self->srcpad);
  gst_segment_init(&self->segment, GST_FORMAT_TIME);
  restart(self);
  gst_anitalker_init_properties(G_OBJECT(self), g_class);
}
