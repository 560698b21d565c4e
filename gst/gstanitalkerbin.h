// anitalker: one bin for the whole chain, audio in, video out:
// audioconvert ! audioresample ! hubertenc ! anitalkermotion !
// anitalkerrender [! gfpgansr] [! anitalkerpaste], configured from a models folder with the
// released file names.  Plumbing only; see the SECTION block in
// gstanitalkerbin.cpp.
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

// The bin's `latency` presets (streaming window settings of the children).
typedef enum {
  GST_ANITALKER_LATENCY_QUALITY,
  GST_ANITALKER_LATENCY_BALANCED,
  GST_ANITALKER_LATENCY_LOW,
} GstAnitalkerLatency;

GType gst_anitalker_latency_get_type(void);
#define GST_TYPE_ANITALKER_LATENCY (gst_anitalker_latency_get_type())

#define GST_TYPE_ANITALKER_BIN (gst_anitalker_bin_get_type())
G_DECLARE_FINAL_TYPE(GstAnitalkerBin, gst_anitalker_bin, GST, ANITALKER_BIN, GstBin)

GST_ELEMENT_REGISTER_DECLARE(anitalker);

G_END_DECLS
