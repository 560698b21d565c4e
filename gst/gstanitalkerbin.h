// anitalker: one bin for the whole chain, audio in, video out:
// audioconvert ! audioresample ! hubertenc ! anitalkermotion !
// anitalkerrender [! gfpgansr], configured from a models folder with the
// released file names.  Plumbing only; see the SECTION block in
// gstanitalkerbin.cpp.
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_ANITALKER_BIN (gst_anitalker_bin_get_type())
G_DECLARE_FINAL_TYPE(GstAnitalkerBin, gst_anitalker_bin, GST, ANITALKER_BIN, GstBin)

GST_ELEMENT_REGISTER_DECLARE(anitalker);

G_END_DECLS
