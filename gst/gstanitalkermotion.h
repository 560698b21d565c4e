// anitalkermotion: AniTalker audio features in, motion latents out (the
// stage-2 diffusion motion generator).  A thin adapter over
// anitalker::motion (lib/motion.h, lib/motion_driver.h); see the SECTION
// block in gstanitalkermotion.cpp.
#pragma once

#include "gstanitalkerelement.h"

G_BEGIN_DECLS

#define GST_TYPE_ANITALKER_MOTION (gst_anitalker_motion_get_type())
G_DECLARE_FINAL_TYPE(GstAnitalkerMotion, gst_anitalker_motion, GST, ANITALKER_MOTION, GstAnitalkerElement)

// The `type` property's values: the five released variants, or whatever the
// checkpoint holds.
typedef enum {
  GST_ANITALKER_MOTION_TYPE_AUTO = 0,
  GST_ANITALKER_MOTION_TYPE_HUBERT_AUDIO_ONLY = 1,
  GST_ANITALKER_MOTION_TYPE_HUBERT_POSE_ONLY = 2,
  GST_ANITALKER_MOTION_TYPE_HUBERT_FULL_CONTROL = 3,
  GST_ANITALKER_MOTION_TYPE_MFCC_POSE_ONLY = 4,
  GST_ANITALKER_MOTION_TYPE_MFCC_FULL_CONTROL = 5,
} GstAnitalkerMotionType;

#define GST_TYPE_ANITALKER_MOTION_TYPE (gst_anitalker_motion_type_get_type())
GType gst_anitalker_motion_type_get_type(void);
// The same values without auto: the bin's `variant` (it needs a named
// variant to find its files).
GType gst_anitalker_variant_get_type(void);

GST_ELEMENT_REGISTER_DECLARE(anitalkermotion);

G_END_DECLS
