// GstAnitalkerMotionMeta: the pose, face location and face scale that
// anitalkermotion attaches to each motion buffer, one set per frame.  Plain
// C, so that applications can read it (gst_buffer_get_anitalker_motion_meta):
// compile gstanitalkermotionmeta.cpp in, or look the API type up by its name
// "GstAnitalkerMotionMetaAPI" once the plugin is loaded.
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

/**
 * GstAnitalkerMotionMeta:
 * @meta: the parent #GstMeta
 * @n_frames: frames in the buffer (as many as motion frames it carries)
 * @pose: 3 * @n_frames floats: yaw, pitch, roll of each frame, in the model's
 *   units (1 = 90 degrees), frame after frame
 * @location: @n_frames floats: the face location of each frame
 * @scale: @n_frames floats: the face scale of each frame
 * @predicted: TRUE when the values are the model's predictions (`control`
 *   off); FALSE when they are the controls the element was given
 * @has_pose: FALSE for hubert_audio_only, which has no pose predictor (the
 *   arrays then hold zeros)
 * @has_location: FALSE for variants without location/scale predictors
 *   (zeros)
 *
 * What the motion generator predicted (or was given) for the frames of a
 * buffer: the talking head's pose, where the face sits and how large it is.
 */
typedef struct {
  GstMeta meta;
  guint n_frames;
  gfloat* pose;
  gfloat* location;
  gfloat* scale;
  gboolean predicted;
  gboolean has_pose;
  gboolean has_location;
} GstAnitalkerMotionMeta;

GType gst_anitalker_motion_meta_api_get_type(void);
#define GST_ANITALKER_MOTION_META_API_TYPE (gst_anitalker_motion_meta_api_get_type())

const GstMetaInfo* gst_anitalker_motion_meta_get_info(void);
#define GST_ANITALKER_MOTION_META_INFO (gst_anitalker_motion_meta_get_info())

#define gst_buffer_get_anitalker_motion_meta(b) \
  ((GstAnitalkerMotionMeta*)gst_buffer_get_meta((b), GST_ANITALKER_MOTION_META_API_TYPE))

// Adds a meta for `n_frames` frames, copying the arrays (3 * n_frames pose
// values, n_frames location and scale values; NULL gives zeros).
GstAnitalkerMotionMeta* gst_buffer_add_anitalker_motion_meta(GstBuffer* buffer, guint n_frames, const gfloat* pose,
                                                             const gfloat* location, const gfloat* scale,
                                                             gboolean predicted, gboolean has_pose,
                                                             gboolean has_location);

// The "anitalker-motion" element message of a buffer that carries the meta
// (anitalkermotion's post-messages): fields "timestamp", "duration" and
// "frames", and arrays of doubles "yaw", "pitch", "roll", "location" and
// "scale".  NULL when the buffer has no meta.
GstMessage* gst_anitalker_motion_meta_message_new(GstObject* src, GstBuffer* buffer);

G_END_DECLS
