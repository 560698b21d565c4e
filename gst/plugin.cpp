// The "anitalker" plugin: registers the elements of anitalker-gst.  Each
// element is a thin adapter over libanitalker (lib/), which holds the maths.
#include <gst/gst.h>

#include "gstanitalkerelements.h"

static gboolean plugin_init(GstPlugin* plugin) {
  gboolean ok = TRUE;
  // The CPU tensor cache (lib/device.h) is installed by the elements when
  // they start, not here: a process that only scans the registry or
  // inspects the plugin gets none.
  // Elements register here as they land (hubertenc, anitalkermotion,
  // anitalkerrender, gfpgansr, the anitalker bin).
  ok &= gst_anitalker_register_elements(plugin);
  return ok;
}

#ifndef PACKAGE
#define PACKAGE "anitalker-gst"
#endif

GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, anitalker,
                  "Audio-driven talking-face video, a C++ port of the inference of AniTalker "
                  "(https://github.com/X-LANCE/AniTalker): HuBERT/MFCC features, diffusion motion, LIA renderer, GFPGAN",
                  plugin_init, ANITALKER_VERSION, "MIT/X11", "anitalker-gst", ANITALKER_ORIGIN)
