// The registration entry point of the plugin's elements.
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

// Registers every element this build has; FALSE if one failed.
gboolean gst_anitalker_register_elements(GstPlugin* plugin);

G_END_DECLS
