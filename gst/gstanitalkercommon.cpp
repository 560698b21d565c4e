// Exceptions from libanitalker to element errors: the one mapping every
// element uses (STYLE.md "Errors").
#include "gstanitalkercommon.h"

#include "gstanitalkercaps.h"

#include <algorithm>
#include <cmath>

#include <cstdarg>
#include <cstring>
#include <exception>

#include "device.h"
#include "error.h"
#include "tensor_data.h"

// The plugin's shared category (gstanitalkerelements.cpp): "anitalker".
GST_DEBUG_CATEGORY_EXTERN(gst_anitalker_debug);
#define GST_CAT_DEFAULT gst_anitalker_debug

void gst_anitalker_post_current_exception(GstElement* element, const std::string& message, bool about_file,
                                          const char* src_file, const char* function, int line,
                                          GstMessageType type) noexcept {
  GQuark domain = GST_STREAM_ERROR;
  gint code = GST_STREAM_ERROR_FAILED;
  std::string debug;
  try {
    throw;
  } catch (const anitalker::Error& e) {
    debug = e.what();
    switch (e.kind()) {
      case anitalker::Error::Kind::NotFound:
        domain = GST_RESOURCE_ERROR;
        code = GST_RESOURCE_ERROR_NOT_FOUND;
        break;
      case anitalker::Error::Kind::Unreadable:
      case anitalker::Error::Kind::Format:
        if (about_file) {
          domain = GST_RESOURCE_ERROR;
          code = GST_RESOURCE_ERROR_READ;
        } else {
          domain = GST_STREAM_ERROR;
          code = GST_STREAM_ERROR_FORMAT;
        }
        break;
      case anitalker::Error::Kind::Runtime:
        break;
      case anitalker::Error::Kind::Usage:
        if (about_file) {
          domain = GST_RESOURCE_ERROR;
          code = GST_RESOURCE_ERROR_SETTINGS;
        } else {
          domain = GST_LIBRARY_ERROR;
          code = GST_LIBRARY_ERROR_SETTINGS;
        }
        break;
    }
  } catch (const std::exception& e) {
    debug = e.what();
  } catch (...) {
    debug = "unknown exception";
  }
  // gst_element_message_full takes ownership of both strings.
  gst_element_message_full(element, type, domain, code, g_strdup(message.c_str()),
                           g_strdup(debug.c_str()), src_file, function, line);
}

std::string gst_anitalker_printf(const char* format, ...) {
  va_list args;
  va_start(args, format);
  gchar* s = g_strdup_vprintf(format, args);
  va_end(args);
  std::string out(s);
  g_free(s);
  return out;
}

void gst_anitalker_set_caps_result(GstQuery* query, GstCaps* caps) {
  GstCaps* filter;
  gst_query_parse_caps(query, &filter);
  if (filter) {
    GstCaps* both = gst_caps_intersect_full(filter, caps, GST_CAPS_INTERSECT_FIRST);
    gst_caps_unref(caps);
    caps = both;
  }
  gst_query_set_caps_result(query, caps);
  gst_caps_unref(caps);
}

GstClockTime gst_anitalker_time_segment(GstElement* element, GstEvent** event) {
  const GstSegment* segment;
  gst_event_parse_segment(*event, &segment);
  if (segment->format == GST_FORMAT_TIME) return segment->start;
  GST_DEBUG_OBJECT(element, "replacing a %s segment by a TIME segment", gst_format_get_name(segment->format));
  GstSegment time;
  gst_segment_init(&time, GST_FORMAT_TIME);
  GstEvent* replaced = gst_event_new_segment(&time);
  gst_event_set_seqnum(replaced, gst_event_get_seqnum(*event));
  gst_event_unref(*event);
  *event = replaced;
  return 0;
}

void gst_anitalker_set_latency(GstElement* element, GstQuery* query, gboolean live, GstClockTime min, GstClockTime max,
                               GstClockTime ours) {
  min += ours;
  if (GST_CLOCK_TIME_IS_VALID(max)) max += ours;
  GST_DEBUG_OBJECT(element, "latency: ours %" GST_TIME_FORMAT ", total min %" GST_TIME_FORMAT " max %" GST_TIME_FORMAT,
                   GST_TIME_ARGS(ours), GST_TIME_ARGS(min), GST_TIME_ARGS(max));
  gst_query_set_latency(query, live, min, max);
}

gssize gst_anitalker_first_non_finite(const float* data, gsize n) {
  return (gssize)anitalker::first_non_finite(data, n);
}

bool gst_anitalker_parse_device(GstElement* element, const std::string& name, c10::Device* device) {
  try {
    *device = anitalker::parse_device(name);
    return true;
  } catch (...) {
    GST_ANITALKER_POST_CURRENT_EXCEPTION(element, gst_anitalker_printf("Cannot use the device \"%s\".", name.c_str()),
                                         false);
    return false;
  }
}

namespace {

gboolean unchecked_validate(GParamSpec*, GValue*) { return FALSE; }  // the element checks

void unchecked_class_init(gpointer klass, gpointer) { G_PARAM_SPEC_CLASS(klass)->value_validate = unchecked_validate; }

// A subtype of `parent` (a numeric GParamSpec type) without GLib's check.
GType unchecked_type(GType parent, const char* name, guint instance_size) {
  GTypeInfo info = {};
  info.class_size = sizeof(GParamSpecClass);
  info.class_init = unchecked_class_init;
  info.instance_size = instance_size;
  return g_type_register_static(parent, name, &info, (GTypeFlags)0);
}

#define GST_ANITALKER_UNCHECKED_TYPE(fn, parent, name, spec)                  \
  GType fn() {                                                                \
    static gsize type = 0;                                                    \
    if (g_once_init_enter(&type)) {                                           \
      const GType t = unchecked_type(parent, name, sizeof(spec));             \
      g_once_init_leave(&type, t);                                            \
    }                                                                         \
    return (GType)type;                                                       \
  }
GST_ANITALKER_UNCHECKED_TYPE(checked_float_get_type, G_TYPE_PARAM_FLOAT, "GstAnitalkerParamFloat", GParamSpecFloat)
GST_ANITALKER_UNCHECKED_TYPE(checked_uint_get_type, G_TYPE_PARAM_UINT, "GstAnitalkerParamUInt", GParamSpecUInt)
GST_ANITALKER_UNCHECKED_TYPE(checked_int_get_type, G_TYPE_PARAM_INT, "GstAnitalkerParamInt", GParamSpecInt)
GST_ANITALKER_UNCHECKED_TYPE(checked_uint64_get_type, G_TYPE_PARAM_UINT64, "GstAnitalkerParamUInt64",
                             GParamSpecUInt64)
#undef GST_ANITALKER_UNCHECKED_TYPE

// A numeric spec of `type` with its range and default.
template <typename Spec, typename T>
GParamSpec* numeric_spec(GType type, const char* name, const char* nick, const char* blurb, T min, T max, T def,
                         GParamFlags flags) {
  g_return_val_if_fail(min <= def && def <= max, nullptr);
  Spec* p = reinterpret_cast<Spec*>(g_param_spec_internal(type, name, nick, blurb, flags));
  p->minimum = min;
  p->maximum = max;
  p->default_value = def;
  return G_PARAM_SPEC(p);
}

}  // namespace

GParamSpec* gst_anitalker_param_spec_float(const char* name, const char* nick, const char* blurb, float min,
                                           float max, float def, GParamFlags flags) {
  return numeric_spec<GParamSpecFloat>(checked_float_get_type(), name, nick, blurb, min, max, def, flags);
}

GParamSpec* gst_anitalker_param_spec_uint(const char* name, const char* nick, const char* blurb, guint min, guint max,
                                          guint def, GParamFlags flags) {
  return numeric_spec<GParamSpecUInt>(checked_uint_get_type(), name, nick, blurb, min, max, def, flags);
}

GParamSpec* gst_anitalker_param_spec_int(const char* name, const char* nick, const char* blurb, gint min, gint max,
                                         gint def, GParamFlags flags) {
  return numeric_spec<GParamSpecInt>(checked_int_get_type(), name, nick, blurb, min, max, def, flags);
}

GParamSpec* gst_anitalker_param_spec_uint64(const char* name, const char* nick, const char* blurb, guint64 min,
                                            guint64 max, guint64 def, GParamFlags flags) {
  return numeric_spec<GParamSpecUInt64>(checked_uint64_get_type(), name, nick, blurb, min, max, def, flags);
}

namespace {

// The refusal of a whole number `v` outside [lo, hi] ("" when inside).
template <typename T>
std::string whole_out_of_range(const char* name, T v, T lo, T hi) {
  if (v >= lo && v <= hi) return "";
  return std::string(name) + "=" + std::to_string(v) + " refused: expected a number from " + std::to_string(lo) +
         " to " + std::to_string(hi) + "; the value in force stays";
}

}  // namespace

GstClockTime gst_anitalker_qos_earliest(GstEvent* event, gdouble* proportion) {
  GstQOSType type;
  GstClockTimeDiff diff;
  GstClockTime timestamp;
  gst_event_parse_qos(event, &type, proportion, &diff, &timestamp);
  if (!GST_CLOCK_TIME_IS_VALID(timestamp)) return GST_CLOCK_TIME_NONE;
  if (diff > 0) return timestamp + 2 * diff;
  return (GstClockTimeDiff)timestamp + diff > 0 ? timestamp + diff : 0;
}

bool gst_anitalker_check_mutable(GstElement* element, GParamSpec* pspec) {
  if ((pspec->flags & GST_PARAM_MUTABLE_PLAYING) || !(pspec->flags & GST_PARAM_MUTABLE_READY)) return true;
  GST_OBJECT_LOCK(element);
  const GstState state = GST_STATE(element);
  GST_OBJECT_UNLOCK(element);
  if (state < GST_STATE_PAUSED) return true;
  GST_ELEMENT_WARNING(element, LIBRARY, SETTINGS,
                      ("Property \"%s\" can change only in the NULL or READY state; the value in force stays.",
                       pspec->name),
                      ("%s was set while %s: set the pipeline to READY or NULL, then set it", pspec->name,
                       gst_element_state_get_name(state)));
  return false;
}

bool gst_anitalker_check_range(GstElement* element, GParamSpec* pspec, const GValue* value) {
  std::string text;
  if (G_IS_PARAM_SPEC_FLOAT(pspec)) {
    const GParamSpecFloat* f = G_PARAM_SPEC_FLOAT(pspec);
    const float v = g_value_get_float(value);
    if (!(std::isfinite(v) && v >= f->minimum && v <= f->maximum))
      text = gst_anitalker_printf("%s=%g refused: expected a number from %g to %g; the value in force stays",
                                  pspec->name, (double)v, (double)f->minimum, (double)f->maximum);
  } else if (G_IS_PARAM_SPEC_UINT(pspec)) {
    const GParamSpecUInt* u = G_PARAM_SPEC_UINT(pspec);
    text = whole_out_of_range(pspec->name, g_value_get_uint(value), u->minimum, u->maximum);
  } else if (G_IS_PARAM_SPEC_INT(pspec)) {
    const GParamSpecInt* i = G_PARAM_SPEC_INT(pspec);
    text = whole_out_of_range(pspec->name, g_value_get_int(value), i->minimum, i->maximum);
  } else if (G_IS_PARAM_SPEC_UINT64(pspec)) {
    const GParamSpecUInt64* u = G_PARAM_SPEC_UINT64(pspec);
    text = whole_out_of_range(pspec->name, g_value_get_uint64(value), u->minimum, u->maximum);
  }
  if (text.empty()) return true;
  gst_anitalker_refuse_setting(element, pspec->name, text);
  return false;
}

namespace {

GQuark offset_quark() {
  static GQuark q = g_quark_from_static_string("gst-anitalker-offset");
  return q;
}

GQuark settings_error_quark() {
  static GQuark q = g_quark_from_static_string("gst-anitalker-settings-error");
  return q;
}

// The field of `pspec` in `object`, or null for a property without one.
void* field_of(GObject* object, GParamSpec* pspec) {
  const gsize stored = GPOINTER_TO_SIZE(g_param_spec_get_qdata(pspec, offset_quark()));
  return stored == 0 ? nullptr : G_STRUCT_MEMBER_P(object, stored - 1);
}

void set_settings_error(GstElement* element, const std::string& text) {
  GST_OBJECT_LOCK(element);
  if (text.empty())
    g_object_set_qdata(G_OBJECT(element), settings_error_quark(), nullptr);
  else
    g_object_set_qdata_full(G_OBJECT(element), settings_error_quark(), g_strdup(text.c_str()), g_free);
  GST_OBJECT_UNLOCK(element);
}

}  // namespace

static GQuark latency_quark() {
  static GQuark q = g_quark_from_static_string("anitalker-param-latency");
  return q;
}

gboolean gst_anitalker_param_sets_latency(GParamSpec* pspec) {
  return g_param_spec_get_qdata(pspec, latency_quark()) != nullptr;
}

void gst_anitalker_install_property(GObjectClass* klass, guint id, GParamSpec* pspec, gsize offset) {
  g_param_spec_set_qdata(pspec, offset_quark(), GSIZE_TO_POINTER(offset + 1));
  if (pspec->flags & GST_ANITALKER_PARAM_LATENCY) {
    pspec->flags = (GParamFlags)(pspec->flags & ~GST_ANITALKER_PARAM_LATENCY);
    g_param_spec_set_qdata(pspec, latency_quark(), GINT_TO_POINTER(1));
  }
  // GObject gives each class its own set_property / get_property (they are
  // not inherited): the generic ones, unless the class set its own.
  if (klass->set_property == nullptr) klass->set_property = gst_anitalker_set_property;
  if (klass->get_property == nullptr) klass->get_property = gst_anitalker_get_property;
  g_object_class_install_property(klass, id, pspec);
}

gchar* gst_anitalker_dup_path_property(GParamSpec* pspec, const GValue* value) {
  static const char* const kPaths[] = {"checkpoint", "portrait", "models-dir", "model", "detector", "parser",
                                       "pose-file", "stage1",   "stage2",     "hubert"};
  const gchar* v = g_value_get_string(value);
  bool path = false;
  for (const char* name : kPaths) path = path || std::strcmp(pspec->name, name) == 0;
  if (path && v && g_ascii_strncasecmp(v, "file:", 5) == 0) {
    // Only a file on this machine: file://otherhost/x.jpg was taken as the
    // local /x.jpg (found 2026-12-07); kept as given, its error names it.
    gchar* host = nullptr;
    gchar* local = g_filename_from_uri(v, &host, nullptr);
    const bool here = host == nullptr || *host == 0 || g_ascii_strcasecmp(host, "localhost") == 0;
    g_free(host);
    if (local && here) return local;
    g_free(local);
  }
  return g_strdup(v);
}

void gst_anitalker_set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  void* field = field_of(object, pspec);
  if (field == nullptr) {
    G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
    return;
  }
  if (!gst_anitalker_check_mutable(GST_ELEMENT_CAST(object), pspec)) return;
  if (!gst_anitalker_check_range(GST_ELEMENT_CAST(object), pspec, value)) return;
  GST_OBJECT_LOCK(object);
  const GType type = G_PARAM_SPEC_VALUE_TYPE(pspec);
  if (type == G_TYPE_STRING) {
    gchar** s = static_cast<gchar**>(field);
    g_free(*s);
    *s = gst_anitalker_dup_path_property(pspec, value);
  } else if (type == G_TYPE_INT) {
    *static_cast<gint*>(field) = g_value_get_int(value);
  } else if (type == G_TYPE_UINT) {
    *static_cast<guint*>(field) = g_value_get_uint(value);
  } else if (type == G_TYPE_UINT64) {
    *static_cast<guint64*>(field) = g_value_get_uint64(value);
  } else if (type == G_TYPE_FLOAT) {
    *static_cast<gfloat*>(field) = g_value_get_float(value);
  } else if (type == G_TYPE_BOOLEAN) {
    *static_cast<gboolean*>(field) = g_value_get_boolean(value);
  } else if (G_TYPE_IS_ENUM(type)) {
    *static_cast<gint*>(field) = g_value_get_enum(value);
  } else {
    g_warning("%s: property %s of type %s has no field type", G_OBJECT_TYPE_NAME(object), pspec->name,
              g_type_name(type));
  }
  GST_OBJECT_UNLOCK(object);
  gst_anitalker_accept_setting(GST_ELEMENT_CAST(object), pspec->name);
}

void gst_anitalker_accept_setting(GstElement* element, const char* property) {
  GST_OBJECT_LOCK(element);
  const gchar* pending = static_cast<const gchar*>(g_object_get_qdata(G_OBJECT(element), settings_error_quark()));
  const bool replaced = pending && g_str_has_prefix(pending, property) && pending[strlen(property)] == '=';
  if (replaced) g_object_set_qdata(G_OBJECT(element), settings_error_quark(), nullptr);
  GST_OBJECT_UNLOCK(element);
}

void gst_anitalker_get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  void* field = field_of(object, pspec);
  if (field == nullptr) {
    G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
    return;
  }
  GST_OBJECT_LOCK(object);
  const GType type = G_PARAM_SPEC_VALUE_TYPE(pspec);
  if (type == G_TYPE_STRING)
    g_value_set_string(value, *static_cast<gchar**>(field));
  else if (type == G_TYPE_INT)
    g_value_set_int(value, *static_cast<gint*>(field));
  else if (type == G_TYPE_UINT)
    g_value_set_uint(value, *static_cast<guint*>(field));
  else if (type == G_TYPE_UINT64)
    g_value_set_uint64(value, *static_cast<guint64*>(field));
  else if (type == G_TYPE_FLOAT)
    g_value_set_float(value, *static_cast<gfloat*>(field));
  else if (type == G_TYPE_BOOLEAN)
    g_value_set_boolean(value, *static_cast<gboolean*>(field));
  else if (G_TYPE_IS_ENUM(type))
    g_value_set_enum(value, *static_cast<gint*>(field));
  GST_OBJECT_UNLOCK(object);
}

void gst_anitalker_init_properties(GObject* object, gpointer klass) {
  guint n = 0;
  GParamSpec** specs = g_object_class_list_properties(klass ? G_OBJECT_CLASS(klass) : G_OBJECT_GET_CLASS(object), &n);
  for (guint i = 0; i < n; i++) {
    void* field = field_of(object, specs[i]);
    if (field == nullptr) continue;
    const GValue* def = g_param_spec_get_default_value(specs[i]);
    const GType type = G_PARAM_SPEC_VALUE_TYPE(specs[i]);
    if (type == G_TYPE_STRING)
      *static_cast<gchar**>(field) = g_value_dup_string(def);
    else if (type == G_TYPE_INT)
      *static_cast<gint*>(field) = g_value_get_int(def);
    else if (type == G_TYPE_UINT)
      *static_cast<guint*>(field) = g_value_get_uint(def);
    else if (type == G_TYPE_UINT64)
      *static_cast<guint64*>(field) = g_value_get_uint64(def);
    else if (type == G_TYPE_FLOAT)
      *static_cast<gfloat*>(field) = g_value_get_float(def);
    else if (type == G_TYPE_BOOLEAN)
      *static_cast<gboolean*>(field) = g_value_get_boolean(def);
    else if (G_TYPE_IS_ENUM(type))
      *static_cast<gint*>(field) = g_value_get_enum(def);
  }
  g_free(specs);
}

void gst_anitalker_finalize_properties(GObject* object) {
  guint n = 0;
  GParamSpec** specs = g_object_class_list_properties(G_OBJECT_GET_CLASS(object), &n);
  for (guint i = 0; i < n; i++) {
    void* field = field_of(object, specs[i]);
    if (field != nullptr && G_PARAM_SPEC_VALUE_TYPE(specs[i]) == G_TYPE_STRING)
      g_clear_pointer(static_cast<gchar**>(field), g_free);
  }
  g_free(specs);
}

GType gst_anitalker_precision_get_type(void) {
  static GType type = 0;
  static const GEnumValue values[] = {
      {GST_ANITALKER_PRECISION_FP32, "float32 throughout (the reference's parity)", "fp32"},
      {GST_ANITALKER_PRECISION_BF16, "bfloat16 for the heavy layers, on a CPU with AVX512_BF16", "bf16"},
      {GST_ANITALKER_PRECISION_FP16, "float16 for the heavy layers, on a CUDA device", "fp16"},
      {0, nullptr, nullptr},
  };
  if (g_once_init_enter(&type)) {
    GType t = g_enum_register_static("GstAnitalkerPrecision", values);
    g_once_init_leave(&type, t);
  }
  return type;
}

bool gst_anitalker_check_precision(GstElement* element, gint precision, c10::Device device,
                                   std::initializer_list<anitalker::Precision> supported, const char* what,
                                   anitalker::Precision* out) {
  const auto p = static_cast<anitalker::Precision>(precision);
  try {
    anitalker::check_precision(p, device, "precision", supported, what);
  } catch (...) {
    GST_ANITALKER_POST_CURRENT_EXCEPTION(
        element, gst_anitalker_printf("%s cannot run at precision=%s.", what, anitalker::precision_name(p)), false);
    return false;
  }
  *out = p;
  return true;
}

void gst_anitalker_install_sharing_properties(GObjectClass* klass, guint batch_id, gsize batch_offset, guint delay_id,
                                              gsize delay_offset, const char* blurb, const char* item) {
  gst_anitalker_install_property(klass, batch_id,
                                 gst_anitalker_param_spec_uint("max-batch", "Max batch", g_intern_string(blurb), 1, 1024, 1,
                                                   GST_ANITALKER_PARAM_READY),
                                 batch_offset);
  gchar* delay_blurb = g_strdup_printf(
      "With max-batch above 1: microseconds the first %s of a call waits for others (default: 2000)", item);
  gst_anitalker_install_property(klass, delay_id,
                                 gst_anitalker_param_spec_uint("max-batch-delay", "Max batch delay", g_intern_string(delay_blurb), 0,
                                                   1000000, 2000, GST_ANITALKER_PARAM_READY),
                                 delay_offset);
  g_free(delay_blurb);
}

void gst_anitalker_install_device_properties(GObjectClass* klass, guint device_id, gsize device_offset,
                                             guint threads_id, gsize threads_offset, guint precision_id,
                                             gsize precision_offset, const char* what) {
  gchar* blurb = g_strdup_printf("Device to run %s on: cpu, cuda or cuda:N (CUDA needs a build against a CUDA "
                                 "LibTorch) (default: cpu)",
                                 what);
  gst_anitalker_install_property(
      klass, device_id,
      g_param_spec_string("device", "Device", g_intern_string(blurb), "cpu", GST_ANITALKER_PARAM_READY),
      device_offset);
  g_free(blurb);
  blurb = g_strdup_printf("LibTorch threads used by %s, set in the streaming thread; 0 = OMP_NUM_THREADS if set "
                          "(1 to 256), else one per CPU core (default: 0)",
                          what);
  gst_anitalker_install_property(
      klass, threads_id,
      gst_anitalker_param_spec_int("num-threads", "Threads", g_intern_string(blurb), 0, 64, 0, GST_ANITALKER_PARAM_PLAYING),
      threads_offset);
  g_free(blurb);
  blurb = g_strdup_printf("Arithmetic of the heavy layers of %s: fp32; bf16 on a CPU with AVX512_BF16 where the "
                          "network has a bf16 path (the renderer, HuBERT, the motion generator and GFPGAN: not exact); fp16 on CUDA "
                          "where it has one "
                          "(the renderer and GFPGAN); anything else is refused at start, naming the device and what it supports "
                          "(default: fp32)",
                          what);
  gst_anitalker_install_property(klass, precision_id,
                                 g_param_spec_enum("precision", "Precision", g_intern_string(blurb),
                                                   GST_TYPE_ANITALKER_PRECISION, GST_ANITALKER_PRECISION_FP32,
                                                   GST_ANITALKER_PARAM_READY),
                                 precision_offset);
  g_free(blurb);
  gst_type_mark_as_plugin_api(GST_TYPE_ANITALKER_PRECISION, (GstPluginAPIFlags)0);
}

std::string gst_anitalker_get_string(GstElement* element, gchar* const* field) {
  GST_OBJECT_LOCK(element);
  std::string s = *field ? *field : "";
  GST_OBJECT_UNLOCK(element);
  return s;
}

void gst_anitalker_refuse_setting(GstElement* element, const char* property, const std::string& text) {
  // Running (a live stream): the value in force stays and the stream goes
  // on, so a warning; stopped: an error, kept for the next start (a
  // gst-launch-1.0 pipeline sets its properties before anyone listens).
  GST_OBJECT_LOCK(element);
  const GstState state = GST_STATE(element);
  GST_OBJECT_UNLOCK(element);
  if (state >= GST_STATE_PAUSED) {
    GST_ELEMENT_WARNING(element, LIBRARY, SETTINGS,
                        ("Invalid value for property \"%s\"; the value in force stays.", property),
                        ("%s", text.c_str()));
    return;
  }
  set_settings_error(element, text);
  GST_ELEMENT_ERROR(element, LIBRARY, SETTINGS, ("Invalid value for property \"%s\".", property), ("%s", text.c_str()));
}

std::string gst_anitalker_settings_error(GstElement* element) {
  GST_OBJECT_LOCK(element);
  const gchar* pending = static_cast<const gchar*>(g_object_get_qdata(G_OBJECT(element), settings_error_quark()));
  std::string text = pending ? pending : "";
  GST_OBJECT_UNLOCK(element);
  return text;
}

bool gst_anitalker_check_settings(GstElement* element) {
  const std::string text = gst_anitalker_settings_error(element);
  if (text.empty()) return true;
  GST_ELEMENT_ERROR(element, LIBRARY, SETTINGS, ("A property was set to an invalid value."), ("%s", text.c_str()));
  return false;
}

void gst_anitalker_codes_answer(GstQuery* query, const float* start, int style_dim, const float* direction,
                                int motion_dim, guint serial) {
  GstBuffer* start_buf = gst_buffer_new_memdup(start, (gsize)style_dim * sizeof(float));
  GstBuffer* direction_buf = gst_buffer_new_memdup(direction, (gsize)motion_dim * sizeof(float));
  gst_structure_set(gst_query_writable_structure(query), GST_ANITALKER_FIELD_START, GST_TYPE_BUFFER, start_buf,
                    GST_ANITALKER_FIELD_DIRECTION, GST_TYPE_BUFFER, direction_buf, GST_ANITALKER_FIELD_STYLE_DIM,
                    G_TYPE_INT, style_dim, GST_ANITALKER_FIELD_MOTION_DIM, G_TYPE_INT, motion_dim,
                    GST_ANITALKER_FIELD_PORTRAIT_SERIAL, G_TYPE_UINT, serial, nullptr);
  gst_buffer_unref(start_buf);
  gst_buffer_unref(direction_buf);
}

int gst_anitalker_codes_ask(GstPad* pad, int start_dim, int motion_dim, std::vector<float>* start,
                            std::vector<float>* direction, guint* serial, std::string* why) {
  GstQuery* q = gst_query_new_custom(GST_QUERY_CUSTOM, gst_structure_new_empty(GST_ANITALKER_QUERY_PORTRAIT_CODES));
  const gboolean answered = gst_pad_peer_query(pad, q);
  const GstStructure* s = gst_query_get_structure(q);
  const GValue* vs = answered ? gst_structure_get_value(s, GST_ANITALKER_FIELD_START) : nullptr;
  const GValue* vd = answered ? gst_structure_get_value(s, GST_ANITALKER_FIELD_DIRECTION) : nullptr;
  int ok = -1;
  const gchar* reason = s ? gst_structure_get_string(s, GST_ANITALKER_FIELD_REASON) : nullptr;
  if (reason != nullptr) {
    ok = -3;
    *why = reason;
  } else if (vs == nullptr || vd == nullptr || !GST_VALUE_HOLDS_BUFFER(vs) || !GST_VALUE_HOLDS_BUFFER(vd)) {
    *why = gst_anitalker_printf("the \"%s\" query was not answered: anitalkermotion needs an anitalkerrender (with "
                                "its checkpoint and portrait set) downstream",
                                GST_ANITALKER_QUERY_PORTRAIT_CODES);
  } else {
    GstBuffer* bs = gst_value_get_buffer(vs);
    GstBuffer* bd = gst_value_get_buffer(vd);
    const gsize ns = gst_buffer_get_size(bs), nd = gst_buffer_get_size(bd);
    if (ns != (gsize)start_dim * sizeof(float) || nd != (gsize)motion_dim * sizeof(float)) {
      ok = -2;
      *why = gst_anitalker_printf("got a start code of %" G_GSIZE_FORMAT " and a direction code of %" G_GSIZE_FORMAT
                                  " floats; the checkpoint takes %d and %d",
                                  ns / sizeof(float), nd / sizeof(float), start_dim, motion_dim);
    } else {
      start->resize((size_t)start_dim);
      direction->resize((size_t)motion_dim);
      gst_buffer_extract(bs, 0, start->data(), ns);
      gst_buffer_extract(bd, 0, direction->data(), nd);
      *serial = 0;
      gst_structure_get_uint(s, GST_ANITALKER_FIELD_PORTRAIT_SERIAL, serial);
      ok = 0;
    }
  }
  gst_query_unref(q);
  return ok;
}

GstEvent* gst_anitalker_portrait_changed_new(guint serial) {
  return gst_event_new_custom(GST_EVENT_CUSTOM_UPSTREAM,
                              gst_structure_new(GST_ANITALKER_EVENT_PORTRAIT_CHANGED, GST_ANITALKER_FIELD_PORTRAIT_SERIAL,
                                                G_TYPE_UINT, serial, nullptr));
}

void GstAnitalkerCodes::reset() {
  GstAnitalkerLocked hold(&lock_);
  announced_ = held_ = 0;
  have_ = false;
}

bool GstAnitalkerCodes::take_event(GstEvent* event) {
  guint serial;
  if (!gst_anitalker_portrait_changed_parse(event, &serial)) return false;
  gst_event_unref(event);
  GstAnitalkerLocked hold(&lock_);
  announced_ = serial;
  return true;
}

int GstAnitalkerCodes::update(GstPad* srcpad, int start_dim, int motion_dim, std::vector<float>* start,
                              std::vector<float>* direction, std::string* why) {
  {
    GstAnitalkerLocked hold(&lock_);
    if (have_ && announced_ == held_) return 0;
  }
  guint serial = 0;
  const int asked = gst_anitalker_codes_ask(srcpad, start_dim, motion_dim, start, direction, &serial, why);
  if (asked != 0) return asked;
  GstAnitalkerLocked hold(&lock_);
  have_ = true;
  held_ = serial;
  // An announcement that raced the query is not lost: it stays.
  if (announced_ == 0) announced_ = serial;
  return 1;
}

bool gst_anitalker_query_is(GstQuery* query, const char* name) {
  const GstStructure* s = gst_query_get_structure(query);
  return GST_QUERY_TYPE(query) == GST_QUERY_CUSTOM && s != nullptr && gst_structure_has_name(s, name);
}

void gst_anitalker_hop_answer(GstQuery* query, gint hop, guint64 origin) {
  gst_structure_set(gst_query_writable_structure(query), GST_ANITALKER_FIELD_HOP, G_TYPE_INT, hop,
                    GST_ANITALKER_FIELD_ORIGIN, G_TYPE_UINT64, origin, nullptr);
}

bool gst_anitalker_hop_ask(GstPad* pad, gint64* hop, gint64* origin) {
  GstQuery* q = gst_query_new_custom(GST_QUERY_CUSTOM, gst_structure_new_empty(GST_ANITALKER_QUERY_FEATURES_HOP));
  gint h = 0;
  guint64 o = 0;
  const bool ok = gst_pad_peer_query(pad, q) &&
                  gst_structure_get_int(gst_query_get_structure(q), GST_ANITALKER_FIELD_HOP, &h) &&
                  gst_structure_get_uint64(gst_query_get_structure(q), GST_ANITALKER_FIELD_ORIGIN, &o) && h > 0;
  gst_query_unref(q);
  *hop = ok ? h : 0;
  *origin = ok ? (gint64)o : 0;
  return ok;
}

bool gst_anitalker_portrait_changed_parse(GstEvent* event, guint* serial) {
  const GstStructure* s = gst_event_get_structure(event);
  if (GST_EVENT_TYPE(event) != GST_EVENT_CUSTOM_UPSTREAM || s == nullptr ||
      !gst_structure_has_name(s, GST_ANITALKER_EVENT_PORTRAIT_CHANGED))
    return false;
  *serial = 0;
  gst_structure_get_uint(s, GST_ANITALKER_FIELD_PORTRAIT_SERIAL, serial);
  return true;
}

void gst_anitalker_post_progress(GstElement* element, GstProgressType type, const char* code, int percent,
                                 const std::string& text) {
  GstMessage* m = gst_message_new_progress(GST_OBJECT_CAST(element), type, code, text.c_str());
  gst_structure_set(gst_message_writable_structure(m), "percent", G_TYPE_INT, std::clamp(percent, 0, 100), nullptr);
  gst_element_post_message(element, m);
}

void gst_anitalker_add_compute(GstElement* element, GstAnitalkerBudget* budget, gint64 since_us, guint recovery_s) {
  const gint64 now = g_get_monotonic_time();
  if (budget->add((GstClockTime)(now - since_us) * GST_USECOND, now, (gint64)recovery_s * G_USEC_PER_SEC))
    gst_element_post_message(element, gst_message_new_latency(GST_OBJECT_CAST(element)));
}
