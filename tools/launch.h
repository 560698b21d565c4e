// gst_parse_launch for the command-line tool: the pipeline, or an
// anitalker::Error (Runtime) that says what it was for and GStreamer's
// reason.  Header-only; GStreamer commands only.
#pragma once

#include <gst/gst.h>

#include <string>

#include "error.h"

namespace cli {

// `what` completes "cannot build the pipeline...", e.g. " that reads a.mp4".
inline GstElement* launch(const std::string& desc, const std::string& what = "") {
  GError* err = nullptr;
  GstElement* pipe = gst_parse_launch(desc.c_str(), &err);
  if (pipe && !err) return pipe;
  const std::string m = err ? err->message : "unknown error";
  if (err) g_error_free(err);
  if (pipe) gst_object_unref(pipe);
  throw anitalker::Error(anitalker::Error::Kind::Runtime, "cannot build the pipeline" + what + ": " + m);
}

}  // namespace cli
