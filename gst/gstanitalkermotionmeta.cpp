// GstAnitalkerMotionMeta (gstanitalkermotionmeta.h).
#include "gstanitalkermotionmeta.h"

#include <cstring>

GType gst_anitalker_motion_meta_api_get_type(void) {
  static GType type = 0;
  static const gchar* tags[] = {nullptr};  // not tied to the content's layout or colour
  if (g_once_init_enter(&type)) {
    // An application that compiles this file in and loads the plugin has
    // two copies of this code: the first to run registers, the other finds it.
    GType t = g_type_from_name("GstAnitalkerMotionMetaAPI");
    if (t == 0) t = gst_meta_api_type_register("GstAnitalkerMotionMetaAPI", tags);
    g_once_init_leave(&type, t);
  }
  return type;
}

static gboolean motion_meta_init(GstMeta* meta, gpointer params, GstBuffer* buffer) {
  (void)params;
  (void)buffer;
  GstAnitalkerMotionMeta* m = (GstAnitalkerMotionMeta*)meta;
  m->n_frames = 0;
  m->pose = m->location = m->scale = nullptr;
  m->predicted = m->has_pose = m->has_location = FALSE;
  return TRUE;
}

static void motion_meta_free(GstMeta* meta, GstBuffer* buffer) {
  (void)buffer;
  GstAnitalkerMotionMeta* m = (GstAnitalkerMotionMeta*)meta;
  g_free(m->pose);
  g_free(m->location);
  g_free(m->scale);
  m->pose = m->location = m->scale = nullptr;
}

static gboolean motion_meta_transform(GstBuffer* dest, GstMeta* meta, GstBuffer* buffer, GQuark type,
                                      gpointer data) {
  (void)buffer;
  (void)data;
  GstAnitalkerMotionMeta* m = (GstAnitalkerMotionMeta*)meta;
  // Copies (whole buffer copies); a region of a buffer would cut frames, so
  // only whole copies keep the meta.
  if (GST_META_TRANSFORM_IS_COPY(type)) {
    GstMetaTransformCopy* copy = (GstMetaTransformCopy*)data;
    if (copy->region) return FALSE;
    return gst_buffer_add_anitalker_motion_meta(dest, m->n_frames, m->pose, m->location, m->scale, m->predicted,
                                                m->has_pose, m->has_location) != nullptr;
  }
  return FALSE;
}

const GstMetaInfo* gst_anitalker_motion_meta_get_info(void) {
  static const GstMetaInfo* info = nullptr;
  if (g_once_init_enter(&info)) {
    const GstMetaInfo* i = gst_meta_get_info("GstAnitalkerMotionMeta");
    if (i == nullptr)
      i = gst_meta_register(GST_ANITALKER_MOTION_META_API_TYPE, "GstAnitalkerMotionMeta",
                                             sizeof(GstAnitalkerMotionMeta), motion_meta_init, motion_meta_free,
                                             motion_meta_transform);
    g_once_init_leave(&info, i);
  }
  return info;
}

GstAnitalkerMotionMeta* gst_buffer_add_anitalker_motion_meta(GstBuffer* buffer, guint n_frames, const gfloat* pose,
                                                             const gfloat* location, const gfloat* scale,
                                                             gboolean predicted, gboolean has_pose,
                                                             gboolean has_location) {
  g_return_val_if_fail(GST_IS_BUFFER(buffer), nullptr);
  GstAnitalkerMotionMeta* m =
      (GstAnitalkerMotionMeta*)gst_buffer_add_meta(buffer, GST_ANITALKER_MOTION_META_INFO, nullptr);
  if (m == nullptr) return nullptr;
  m->n_frames = n_frames;
  m->pose = g_new0(gfloat, 3 * (gsize)n_frames);
  m->location = g_new0(gfloat, n_frames);
  m->scale = g_new0(gfloat, n_frames);
  if (pose) memcpy(m->pose, pose, 3 * (gsize)n_frames * sizeof(gfloat));
  if (location) memcpy(m->location, location, (gsize)n_frames * sizeof(gfloat));
  if (scale) memcpy(m->scale, scale, (gsize)n_frames * sizeof(gfloat));
  m->predicted = predicted;
  m->has_pose = has_pose;
  m->has_location = has_location;
  return m;
}

GstMessage* gst_anitalker_motion_meta_message_new(GstObject* src, GstBuffer* buffer) {
  const GstAnitalkerMotionMeta* m = gst_buffer_get_anitalker_motion_meta(buffer);
  if (m == nullptr) return nullptr;
  GstStructure* s = gst_structure_new("anitalker-motion", "timestamp", G_TYPE_UINT64, GST_BUFFER_PTS(buffer),
                                      "duration", G_TYPE_UINT64, GST_BUFFER_DURATION(buffer), "frames", G_TYPE_UINT,
                                      m->n_frames, nullptr);
  // One array per field: values i * stride + offset of `data`.
  auto array = [&](const char* name, const gfloat* data, guint stride, guint offset) {
    GValue arr = G_VALUE_INIT;
    gst_value_array_init(&arr, m->n_frames);
    for (guint i = 0; i < m->n_frames; i++) {
      GValue x = G_VALUE_INIT;
      g_value_init(&x, G_TYPE_DOUBLE);
      g_value_set_double(&x, data[i * stride + offset]);
      gst_value_array_append_and_take_value(&arr, &x);
    }
    gst_structure_take_value(s, name, &arr);
  };
  array("yaw", m->pose, 3, 0);
  array("pitch", m->pose, 3, 1);
  array("roll", m->pose, 3, 2);
  array("location", m->location, 1, 0);
  array("scale", m->scale, 1, 0);
  return gst_message_new_element(src, s);
}
