// anitalkerpaste: the rendered square pasted back into the original picture
// (issue "any photo in, full frame out").  A thin adapter over lib/crop.h's
// canvas and paste; see the SECTION block in gstanitalkerpaste.cpp.
#pragma once

#include "gstanitalkerelement.h"

G_BEGIN_DECLS

#define GST_TYPE_ANITALKER_PASTE (gst_anitalker_paste_get_type())
G_DECLARE_FINAL_TYPE(GstAnitalkerPaste, gst_anitalker_paste, GST, ANITALKER_PASTE, GstAnitalkerElement)

GST_ELEMENT_REGISTER_DECLARE(anitalkerpaste);

G_END_DECLS
