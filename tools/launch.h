// gst_parse_launch for the command-line tool: the pipeline, or an
// anitalker::Error (Runtime) that says what it was for and GStreamer's
// reason.  Header-only; GStreamer commands only.
#pragma once

#include <gst/gst.h>

#include <mutex>
#include <string>
#include <vector>

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

// The streams a decodebin in a pipeline decoded (the media types of the
// pads it exposed), so that a file with no audio in it (a video without a
// sound track) is said as such rather than as GStreamer's "Internal data
// stream error ... not-linked".  The object must outlive the pipeline's
// streaming (set it to NULL first).
class DecodedStreams {
 public:
  // Watches the decodebin named `name` in `pipe`; nothing when none.
  void watch(GstElement* pipe, const char* name) {
    if (GstElement* dec = gst_bin_get_by_name(GST_BIN(pipe), name)) {
      g_signal_connect(dec, "pad-added", G_CALLBACK(&DecodedStreams::on_pad), this);
      gst_object_unref(dec);
    }
  }
  // For an error while reading `file`: "FILE: no audio stream in it (it
  // holds video/x-raw)" when the decodebin exposed streams and none was
  // audio; "" otherwise (the error is then the reason).
  std::string no_audio(const std::string& file) const {
    std::lock_guard<std::mutex> lock(m_);
    if (kinds_.empty()) return "";
    std::string held;
    for (const std::string& k : kinds_) {
      if (k.rfind("audio/", 0) == 0) return "";
      held += (held.empty() ? "" : ", ") + k;
    }
    return file + ": no audio stream in it (it holds " + held + "); give a file with the speech in it";
  }

 private:
  static void on_pad(GstElement*, GstPad* pad, gpointer data) {
    auto* self = static_cast<DecodedStreams*>(data);
    GstCaps* caps = gst_pad_get_current_caps(pad);
    if (!caps) caps = gst_pad_query_caps(pad, nullptr);
    const std::string kind =
        caps && gst_caps_get_size(caps) > 0 ? gst_structure_get_name(gst_caps_get_structure(caps, 0)) : "?";
    if (caps) gst_caps_unref(caps);
    std::lock_guard<std::mutex> lock(self->m_);
    self->kinds_.push_back(kind);
  }
  mutable std::mutex m_;
  std::vector<std::string> kinds_;
};

}  // namespace cli
