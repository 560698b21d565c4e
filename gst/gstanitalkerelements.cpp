#include "gstanitalkerelements.h"

#include "gstanitalkerbin.h"
#include "gstanitalkermotion.h"
#include "gstanitalkerpaste.h"
#include "gstanitalkerrender.h"
#include "gstgfpgansr.h"
#include "gsthubertenc.h"

GST_DEBUG_CATEGORY(gst_anitalker_debug);

gboolean gst_anitalker_register_elements(GstPlugin* plugin) {
  GST_DEBUG_CATEGORY_INIT(gst_anitalker_debug, "anitalker", 0, "anitalker-gst plugin");
  gboolean ok = TRUE;
  ok &= GST_ELEMENT_REGISTER(hubertenc, plugin);
  ok &= GST_ELEMENT_REGISTER(anitalkermotion, plugin);
  ok &= GST_ELEMENT_REGISTER(anitalkerrender, plugin);
  ok &= GST_ELEMENT_REGISTER(gfpgansr, plugin);
  ok &= GST_ELEMENT_REGISTER(anitalkerpaste, plugin);
  ok &= GST_ELEMENT_REGISTER(anitalker, plugin);
  return ok;
}
