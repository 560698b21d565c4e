// Exceptions from libanitalker to element errors: the one mapping every
// element uses (STYLE.md "Errors").
#include "gstanitalkercommon.h"

#include <cmath>

#include <cstdarg>
#include <exception>

#include "device.h"
#include "error.h"

void gst_anitalker_post_current_exception(GstElement* element, const std::string& message, bool about_file,
                                          const char* src_file, const char* function, int line) noexcept {
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
  gst_element_message_full(element, GST_MESSAGE_ERROR, domain, code, g_strdup(message.c_str()),
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
  for (gsize i = 0; i < n; i++)
    if (!std::isfinite(data[i])) return (gssize)i;
  return -1;
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

gboolean unchecked_float_validate(GParamSpec*, GValue*) { return FALSE; }  // the element checks

void checked_float_class_init(gpointer klass, gpointer) {
  G_PARAM_SPEC_CLASS(klass)->value_validate = unchecked_float_validate;
}

GType checked_float_get_type() {
  static gsize type = 0;
  if (g_once_init_enter(&type)) {
    GTypeInfo info = {};
    info.class_size = sizeof(GParamSpecClass);
    info.class_init = checked_float_class_init;
    info.instance_size = sizeof(GParamSpecFloat);
    const GType t = g_type_register_static(G_TYPE_PARAM_FLOAT, "GstAnitalkerParamFloat", &info, (GTypeFlags)0);
    g_once_init_leave(&type, t);
  }
  return (GType)type;
}

}  // namespace

GParamSpec* gst_anitalker_param_spec_float(const char* name, const char* nick, const char* blurb, float min,
                                           float max, float def, GParamFlags flags) {
  GParamSpecFloat* p =
      static_cast<GParamSpecFloat*>(g_param_spec_internal(checked_float_get_type(), name, nick, blurb, flags));
  p->minimum = min;
  p->maximum = max;
  p->default_value = def;
  return G_PARAM_SPEC(p);
}

void gst_anitalker_refuse_setting(GstElement* element, const char* property, const std::string& text,
                                  gchar** pending) {
  GST_OBJECT_LOCK(element);
  g_free(*pending);
  *pending = g_strdup(text.c_str());
  GST_OBJECT_UNLOCK(element);
  GST_ELEMENT_ERROR(element, LIBRARY, SETTINGS, ("Invalid value for property \"%s\".", property), ("%s", text.c_str()));
}

bool gst_anitalker_check_float(GstElement* element, GParamSpec* pspec, float v, gchar** pending) {
  const GParamSpecFloat* f = G_PARAM_SPEC_FLOAT(pspec);
  if (std::isfinite(v) && v >= f->minimum && v <= f->maximum) return true;
  const std::string text = gst_anitalker_printf("%s=%g refused: expected a number from %g to %g; the value in force "
                                                "stays",
                                                pspec->name, (double)v, (double)f->minimum, (double)f->maximum);
  GST_OBJECT_LOCK(element);
  g_free(*pending);
  *pending = g_strdup(text.c_str());
  GST_OBJECT_UNLOCK(element);
  GST_ELEMENT_ERROR(element, LIBRARY, SETTINGS, ("Invalid value for property \"%s\".", pspec->name),
                    ("%s", text.c_str()));
  return false;
}
