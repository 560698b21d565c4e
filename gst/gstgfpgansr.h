// gfpgansr: GFPGAN v1.4 face restoration of video frames, with face
// detection, alignment and paste-back into the upscaled frame.  The element
// is a thin adapter over anitalker::face (lib/face_restore.h); see the
// SECTION block in gstgfpgansr.cpp.
#pragma once

#include <gst/base/gstbasetransform.h>
#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_GFPGAN_SR (gst_gfpgan_sr_get_type())
G_DECLARE_FINAL_TYPE(GstGfpganSr, gst_gfpgan_sr, GST, GFPGAN_SR, GstBaseTransform)

// The `noise` property's values (anitalker::gfpgan::Noise).
typedef enum {
  GST_GFPGAN_SR_NOISE_STORED = 0,
  GST_GFPGAN_SR_NOISE_RANDOM = 1,
  GST_GFPGAN_SR_NOISE_NONE = 2,
} GstGfpganSrNoise;

#define GST_TYPE_GFPGAN_SR_NOISE (gst_gfpgan_sr_noise_get_type())
GType gst_gfpgan_sr_noise_get_type(void);

GST_ELEMENT_REGISTER_DECLARE(gfpgansr);

G_END_DECLS
