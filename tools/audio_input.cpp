#include "audio_input.h"

#include <gst/app/gstappsink.h>
#include <gst/gst.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <memory>

#include "device.h"
#include "error.h"
#include "launch.h"
#include "tensor_data.h"
#include "wav.h"

namespace {

// The most float32 samples the audio may decode to: the memory free now
// (MemAvailable), halved for a growing vector's copy; no bound when it
// cannot be told.  A header may promise any length (a WAV's "to the end"
// data chunk over a sparse 64 GB file took std::bad_alloc, or the system's
// OOM killer below that).
size_t max_samples(bool growing) {
  const size_t free = anitalker::device_memory_free(c10::Device(c10::kCPU));
  if (free == 0) return SIZE_MAX;
  return free / sizeof(float) / (growing ? 2 : 1);
}

std::vector<float> decode_with_gstreamer(const std::string& path) {
  gst_init(nullptr, nullptr);
  GError* err = nullptr;
  gchar* loc = g_strescape(path.c_str(), nullptr);
  const std::string desc = std::string("filesrc location=\"") + loc +
                           "\" ! decodebin name=dec ! audioconvert ! audioresample ! "
                           "audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved ! appsink name=sink sync=false";
  g_free(loc);
  cli::DecodedStreams streams;  // declared before the pipeline: outlives its streaming
  std::unique_ptr<GstElement, void (*)(GstElement*)> pipe(gst_parse_launch(desc.c_str(), &err), [](GstElement* e) {
    if (e) {
      gst_element_set_state(e, GST_STATE_NULL);
      gst_object_unref(e);
    }
  });
  if (!pipe || err) {
    const std::string msg = err ? err->message : "unknown error";
    if (err) g_error_free(err);
    throw anitalker::Error(anitalker::Error::Kind::Runtime, path + ": cannot build the decoding pipeline: " + msg);
  }
  streams.watch(pipe.get(), "dec");
  GstElement* sink = gst_bin_get_by_name(GST_BIN(pipe.get()), "sink");
  gst_element_set_state(pipe.get(), GST_STATE_PLAYING);
  std::vector<float> out;
  const size_t most = max_samples(true);
  GstBus* bus = gst_element_get_bus(pipe.get());
  std::string error, too_long;
  // Pull until EOS; an error on the bus (no decoder, a broken file) ends it
  // too: the appsink alone would wait for ever.
  while (!gst_app_sink_is_eos(GST_APP_SINK(sink))) {
    if (GstMessage* msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR)) {
      GError* e = nullptr;
      gst_message_parse_error(msg, &e, nullptr);
      error = e ? e->message : "unknown error";
      if (e) g_error_free(e);
      gst_message_unref(msg);
      break;
    }
    GstSample* smp = gst_app_sink_try_pull_sample(GST_APP_SINK(sink), 50 * GST_MSECOND);
    if (!smp) continue;
    GstBuffer* b = gst_sample_get_buffer(smp);
    GstMapInfo m;
    if (gst_buffer_map(b, &m, GST_MAP_READ)) {
      const size_t n = m.size / sizeof(float);
      const size_t at = out.size();
      if (at + n > most) {
        gst_buffer_unmap(b, &m);
        gst_sample_unref(smp);
        char len[160];
        std::snprintf(len, sizeof len, "the audio decodes to more than %zu samples (%.1f hours at 16 kHz, %.1f GB as float32)",
                      most, static_cast<double>(most) / 16000 / 3600, static_cast<double>(most) * 4 / 1e9);
        too_long = path + ": " + len + ", more than the memory free for it; cut the audio into parts";
        break;
      }
      out.resize(at + n);
      std::memcpy(out.data() + at, m.data, n * sizeof(float));
      gst_buffer_unmap(b, &m);
    }
    gst_sample_unref(smp);
  }
  gst_object_unref(bus);
  gst_object_unref(sink);
  if (!too_long.empty()) throw anitalker::Error(anitalker::Error::Kind::Runtime, too_long);
  if (!error.empty()) {
    gst_element_set_state(pipe.get(), GST_STATE_NULL);
    const std::string none = streams.no_audio(path);
    throw anitalker::format_error(none.empty() ? path + ": cannot decode the audio: " + error : none);
  }
  return out;
}

std::vector<float> read_any(const std::string& path, std::string* note) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw anitalker::Error(anitalker::Error::Kind::NotFound, path + ": no such file");
  // A pipe (`--audio /dev/stdin`, a FIFO another program writes): read as
  // it comes, through GStreamer; the WAV reader maps files.  Until
  // 2026-12-07 a FIFO named *.wav was refused as "not a regular file".
  if (S_ISFIFO(st.st_mode)) {
    if (note) *note = "read from a pipe with GStreamer (decodebin ! audioconvert ! audioresample)";
    return decode_with_gstreamer(path);
  }
  try {
    anitalker::Audio a = anitalker::read_wav(path, max_samples(false));
    if (a.sample_rate == 16000) {
      if (note && a.channels != 1) *note = "mixed " + std::to_string(a.channels) + " channels down to mono (their mean)";
      return std::move(a.samples);
    }
  } catch (const anitalker::Error& e) {
    if (e.kind() != anitalker::Error::Kind::Format) throw;
  }
  if (note) *note = "converted to 16 kHz mono with GStreamer (decodebin ! audioconvert ! audioresample); features then depend on the resampler";
  return decode_with_gstreamer(path);
}

}  // namespace

std::vector<float> read_audio_16k_mono(const std::string& path, std::string* note) {
  std::vector<float> wave = read_any(path, note);
  // As hubertenc refuses such a buffer: one NaN would make every feature NaN.
  const int64_t bad = anitalker::first_non_finite(wave.data(), wave.size());
  if (bad >= 0) {
    char at[64];
    std::snprintf(at, sizeof at, "%.3f", bad / 16000.0);
    throw anitalker::format_error(path + ": sample " + std::to_string(bad) + " (at " + at +
                                  " s, 16 kHz mono) holds NaN or inf; the audio must be finite");
  }
  return wave;
}
