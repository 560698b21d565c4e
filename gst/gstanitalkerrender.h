// anitalkerrender: motion latents in, video frames out (stage 1 of AniTalker,
// the LIA renderer).  The element is a thin adapter over anitalker::lia
// (lib/lia.h); see the SECTION block in gstanitalkerrender.cpp.
#pragma once

#include "gstanitalkerelement.h"

G_BEGIN_DECLS

#define GST_TYPE_ANITALKER_RENDER (gst_anitalker_render_get_type())
G_DECLARE_FINAL_TYPE(GstAnitalkerRender, gst_anitalker_render, GST, ANITALKER_RENDER, GstAnitalkerElement)

GST_ELEMENT_REGISTER_DECLARE(anitalkerrender);

G_END_DECLS
