// anitalker generate: the reference demo's job in one command: a portrait
// and a speech file in, an MP4 (H.264 + AAC, audio in sync) out.  It builds
// a GStreamer pipeline around the `anitalker` bin, shows progress and a
// summary of the time each stage took, and never leaves a half-written file.
#include <gst/gst.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "cli.h"
#include "error.h"
#include "models.h"
#include "mp4_times.h"
#include "output_file.h"

static const char* kUsage =
    "usage: anitalker generate --portrait IMG --audio FILE --out OUT.mp4|DIR [--models-dir DIR] [--variant V]\n"
    "                          [--steps N] [--seed K] [--control] [--pose Y P R | --pose-file P.npy]\n"
    "                          [--location L] [--scale S] [--face-sr] [--device D] [--mode M] [--quiet]\n"
    "\n"
    "  --portrait IMG    the face to animate (a centred head, as the reference advises)\n"
    "  --audio FILE      speech, any format GStreamer decodes\n"
    "  --out PATH        the MP4 to write; a folder gets <portrait>-<audio>.mp4 (_SR with --face-sr),\n"
    "                    as the reference demo names it\n"
    "  --models-dir DIR  the released files under their published names (default: models)\n"
    "  --variant V       hubert_audio_only (default), hubert_pose_only, hubert_full_control,\n"
    "                    mfcc_pose_only, mfcc_full_control\n"
    "  --steps N         DDIM steps (default 50)        --seed K   noise seed, as the demo's --seed (default 0)\n"
    "  --control         drive with --pose/--pose-file/--location/--scale instead of the predictions\n"
    "  --pose Y P R      constant yaw, pitch, roll in the model's units (1 = 90 degrees; default 0.25 0 0)\n"
    "  --pose-file P.npy [N, 3] yaw, pitch, roll in degrees per frame\n"
    "  --location L --scale S   face location and scale (default 0.5 each; full-control variants)\n"
    "  --face-sr         restore the face with GFPGAN v1.4 (output twice the size)\n"
    "  --device D        cpu (default), cuda or cuda:N\n"
    "  --mode M          offline (default: exact, as the reference), streaming or auto\n"
    "  --quiet           no progress (on a terminal a status line, otherwise a line every 10 s)\n";

namespace {

struct Options {
  std::string portrait, audio, out, models_dir = "models", variant = "hubert_audio_only", pose_file, device = "cpu",
                                    mode = "offline";
  int steps = 50;
  long long seed = 0;
  bool control = false, face_sr = false, quiet = false, have_pose = false;
  double yaw = 0.25, pitch = 0, roll = 0, location = 0.5, scale = 0.5;
};

std::string stem(const std::string& path) {
  std::string base = path.substr(path.find_last_of('/') + 1);
  const size_t dot = base.find_last_of('.');
  return dot == std::string::npos || dot == 0 ? base : base.substr(0, dot);
}

bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_file(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Makes sure the plugin is found: installed, on GST_PLUGIN_PATH, or in the
// build tree next to this program (build/tools/anitalker -> build/gst).
void find_plugin() {
  if (GstElementFactory* f = gst_element_factory_find("anitalker")) {
    gst_object_unref(f);
    return;
  }
  char exe[4096];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = 0;
    std::string dir(exe);
    dir = dir.substr(0, dir.find_last_of('/'));
    gst_registry_scan_path(gst_registry_get(), (dir + "/../gst").c_str());
  }
  GstElementFactory* f = gst_element_factory_find("anitalker");
  if (f == nullptr)
    throw anitalker::Error(anitalker::Error::Kind::NotFound,
                           "the GStreamer plugin \"anitalker\" is not installed and not next to this program; set "
                           "GST_PLUGIN_PATH_1_0 to the folder of libgstanitalker.so");
  gst_object_unref(f);
}

std::string quoted(const std::string& s) {
  gchar* e = g_strescape(s.c_str(), nullptr);
  std::string out = std::string("\"") + e + "\"";
  g_free(e);
  return out;
}

// Counts buffers and frames through a pad, and when the last one passed.
struct Counter {
  guint64 frames = 0;
  double first = -1, last = -1;
};

double now_s() {
  using clock = std::chrono::steady_clock;
  static const clock::time_point t0 = clock::now();
  return std::chrono::duration<double>(clock::now() - t0).count();
}

GstPadProbeReturn count_probe(GstPad*, GstPadProbeInfo* info, gpointer data) {
  Counter* c = static_cast<Counter*>(data);
  if (GST_PAD_PROBE_INFO_TYPE(info) & GST_PAD_PROBE_TYPE_BUFFER) {
    GstBuffer* b = GST_PAD_PROBE_INFO_BUFFER(info);
    const guint64 n = GST_BUFFER_OFFSET_END_IS_VALID(b) && GST_BUFFER_OFFSET_IS_VALID(b)
                          ? GST_BUFFER_OFFSET_END(b) - GST_BUFFER_OFFSET(b)
                          : 1;
    c->frames += n;
    const double t = now_s();
    if (c->first < 0) c->first = t;
    c->last = t;
  }
  return GST_PAD_PROBE_OK;
}

void add_counter(GstElement* bin, const char* child, Counter* c) {
  GstElement* e = gst_bin_get_by_name(GST_BIN(bin), child);
  if (!e) return;
  GstPad* pad = gst_element_get_static_pad(e, "src");
  gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, count_probe, c, nullptr);
  gst_object_unref(pad);
  gst_object_unref(e);
}

// The reason part of an element error's debug text, on one line: GStreamer
// writes "file(line): function (): /pipeline/path:\nreason".
std::string error_cause(const gchar* debug) {
  if (debug == nullptr || *debug == 0) return "";
  std::string d = debug;
  const size_t nl = d.find('\n');
  if (nl != std::string::npos) d = d.substr(nl + 1);
  else if (d.find("/GstPipeline:") != std::string::npos) return "";  // only a location
  for (char& c : d)
    if (c == '\n' || c == '\r') c = ' ';
  while (!d.empty() && d.back() == ' ') d.pop_back();
  return d.empty() ? "" : "(" + d + ")";
}

int generate(const Options& o) {
  gst_init(nullptr, nullptr);
  find_plugin();
  for (const char* f : {"x264enc", "avenc_aac", "mp4mux", "h264parse"}) {
    GstElementFactory* fac = gst_element_factory_find(f);
    if (!fac)
      throw anitalker::Error(anitalker::Error::Kind::NotFound,
                             std::string("the GStreamer element ") + f +
                                 " is missing (Debian: gstreamer1.0-plugins-ugly, gstreamer1.0-libav, "
                                 "gstreamer1.0-plugins-bad, gstreamer1.0-plugins-good)");
    gst_object_unref(fac);
  }

  // The output name, as the demo names it for a folder.
  std::string out = o.out;
  if (is_dir(out))
    out = (out.back() == '/' ? out : out + "/") + stem(o.portrait) + "-" + stem(o.audio) + (o.face_sr ? "_SR" : "") +
          ".mp4";
  anitalker::check_not_an_input(out, {o.audio, o.portrait, o.pose_file});
  // A unique temporary file beside the target, renamed over it at success
  // (lib/output_file.h): no half-written MP4, no run sharing another's file,
  // and SIGINT/SIGTERM remove it.
  anitalker::OutputFile output(out);
  const std::string part = output.temp_path();

  // The queue after the bin gives the encoder a thread of its own: run in
  // the renderer's streaming thread, x264enc's output depended on timing
  // (2 of 100 frames differed between runs with the same seed).
  const std::string desc =
      "filesrc location=" + quoted(o.audio) + " ! decodebin ! tee name=t "
      "t. ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=0 ! anitalker name=talk ! queue ! videoconvert ! "
      "video/x-raw,format=I420 ! x264enc ! h264parse ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=0 ! "
      "mux.video_0 "
      "t. ! queue ! audioconvert ! audioresample ! avenc_aac ! "
      "queue max-size-buffers=0 max-size-bytes=0 max-size-time=0 ! mux.audio_0 "
      "mp4mux name=mux ! filesink name=sink location=" + quoted(part);
  GError* err = nullptr;
  GstElement* pipe = gst_parse_launch(desc.c_str(), &err);
  if (!pipe || err) {
    const std::string m = err ? err->message : "unknown error";
    if (err) g_error_free(err);
    if (pipe) gst_object_unref(pipe);
    throw anitalker::Error(anitalker::Error::Kind::Runtime, "cannot build the pipeline: " + m);
  }
  GstElement* talk = gst_bin_get_by_name(GST_BIN(pipe), "talk");
  gst_util_set_object_arg(G_OBJECT(talk), "variant", o.variant.c_str());
  gst_util_set_object_arg(G_OBJECT(talk), "mode", o.mode.c_str());
  g_object_set(talk, "models-dir", o.models_dir.c_str(), "portrait", o.portrait.c_str(), "steps", (guint)o.steps,
               "seed", (guint64)o.seed, "control", (gboolean)o.control, "pose-yaw", (gfloat)o.yaw, "pose-pitch",
               (gfloat)o.pitch, "pose-roll", (gfloat)o.roll, "face-location", (gfloat)o.location, "face-scale",
               (gfloat)o.scale, "face-sr", (gboolean)o.face_sr, "device", o.device.c_str(), nullptr);
  if (!o.pose_file.empty()) g_object_set(talk, "pose-file", o.pose_file.c_str(), nullptr);

  Counter features, motion, video, sr;
  add_counter(talk, "features", &features);
  add_counter(talk, "motion", &motion);
  add_counter(talk, "render", &video);
  if (o.face_sr) add_counter(talk, "sr", &sr);

  const double t_start = now_s();
  std::string error;
  gint64 duration = -1;
  const bool tty = !o.quiet && isatty(STDERR_FILENO);
  double last_line = now_s();
  GstBus* bus = gst_element_get_bus(pipe);
  if (gst_element_set_state(pipe, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE && error.empty())
    error = "the pipeline did not start";
  bool done = false;
  while (!done) {
    GstMessage* msg = gst_bus_timed_pop_filtered(bus, 500 * GST_MSECOND,
                                                 (GstMessageType)(GST_MESSAGE_ERROR | GST_MESSAGE_EOS));
    if (msg) {
      if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
        GError* e = nullptr;
        gchar* dbg = nullptr;
        gst_message_parse_error(msg, &e, &dbg);
        error = std::string(e ? e->message : "unknown error");
        // Errors about the audio (its reading and decoding, and the features
        // of its samples) name the file.
        gchar* path = gst_object_get_path_string(GST_MESSAGE_SRC(msg));
        const std::string where = path ? path : "";
        g_free(path);
        if (where.find("GstFileSrc") != std::string::npos || where.find("GstDecodeBin") != std::string::npos ||
            where.find("GstHubertEnc") != std::string::npos)
          error = o.audio + ": " + error;
        const std::string cause = error_cause(dbg);
        if (!cause.empty()) error += " " + cause;
        if (dbg && std::getenv("ANITALKER_DEBUG")) error += std::string("\n  debug: ") + dbg;
        if (e) g_error_free(e);
        g_free(dbg);
      }
      gst_message_unref(msg);
      done = true;
    }
    if (duration < 0) gst_element_query_duration(pipe, GST_FORMAT_TIME, &duration);
    if (!tty && !o.quiet && now_s() - last_line >= 10) {
      // Not a terminal (a log, CI, a pipe): a line every 10 s.
      last_line = now_s();
      const guint64 total = duration > 0 ? (guint64)(duration * 25 / GST_SECOND) : 0;
      std::fprintf(stderr, "anitalker generate: %.0f s: features %" G_GUINT64_FORMAT ", motion %" G_GUINT64_FORMAT
                           ", video %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " frames\n",
                   last_line - t_start, features.frames, motion.frames, video.frames, total);
    }
    if (tty) {
      const double el = now_s() - t_start;
      const guint64 total = duration > 0 ? (guint64)(duration * 25 / GST_SECOND) : 0;
      const double fps = video.frames > 0 && video.last > video.first ? (video.frames - 1) / (video.last - video.first) : 0;
      char eta[32] = "?";
      if (fps > 0 && total > video.frames) std::snprintf(eta, sizeof eta, "%.0f s", (total - video.frames) / fps);
      std::fprintf(stderr, "\r%6.1f s  features %" G_GUINT64_FORMAT "  motion %" G_GUINT64_FORMAT
                           "  video %" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT "  %.2f fps  ETA %s   ",
                   el, features.frames, motion.frames, video.frames, total, fps, eta);
    }
    if (!error.empty() && !msg) done = true;
  }
  if (tty) std::fputc('\n', stderr);
  gst_element_set_state(pipe, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(talk);
  gst_object_unref(pipe);

  if (!error.empty() || video.frames == 0) {
    output.discard();
    if (error.empty())
      error = o.audio + ": no video frames came out (" +
              (features.frames == 0 ? std::string("GStreamer's decoders gave no samples; convert it to PCM, e.g. "
                                                  "ffmpeg -i IN -c:a pcm_s16le OUT.wav")
                                    : "the audio is shorter than one video frame") + ")";
    throw anitalker::Error(anitalker::Error::Kind::Runtime, error);
  }
  cli::clear_mp4_times(part);  // the muxer's wall-clock times: same inputs, same bytes
  output.commit();
  // Each stage's share: from the previous stage's last output to its own
  // (offline, the stages run one after the other).
  const double t_end = now_s();
  std::fprintf(stderr, "anitalker generate: %" G_GUINT64_FORMAT " frames (%.2f s of video) to %s in %.1f s\n",
               video.frames, video.frames / 25.0, out.c_str(), t_end - t_start);
  double prev = t_start;
  auto stage = [&](const char* name, const Counter& c) {
    if (c.last < 0) return;
    std::fprintf(stderr, "  %-10s %8" G_GUINT64_FORMAT " frames  done at %7.2f s  (+%.2f s)\n", name, c.frames,
                 c.last - t_start, c.last - prev);
    prev = c.last;
  };
  stage("features", features);
  stage("motion", motion);
  stage("render", video);
  if (o.face_sr) stage("face-sr", sr);
  std::fprintf(stderr, "  %-10s %25s %7.2f s\n", "encode+mux", "done at", t_end - t_start);
  return 0;
}

}  // namespace

int cmd_generate(int argc, char** argv) {
  return cli::run("generate", [&] {
    cli::Args a(argc, argv);
    Options o;
    while (!a.done()) {
      const std::string s = a.next();
      if (s == "--help" || s == "-h") {
        std::fputs(kUsage, stdout);
        return 0;
      } else if (s == "--portrait") o.portrait = a.value(s);
      else if (s == "--audio") o.audio = a.value(s);
      else if (s == "--out") o.out = a.value(s);
      else if (s == "--models-dir") o.models_dir = a.value(s);
      else if (s == "--variant") o.variant = a.value(s);
      else if (s == "--steps") o.steps = static_cast<int>(a.integer(s, 1, 1000));
      else if (s == "--seed") o.seed = a.integer(s, 0, (1LL << 62));
      else if (s == "--control") o.control = true;
      else if (s == "--pose") {
        o.yaw = a.number(s);
        o.pitch = a.number(s);
        o.roll = a.number(s);
        o.have_pose = true;
      } else if (s == "--pose-file") o.pose_file = a.value(s);
      else if (s == "--location") o.location = a.number(s);
      else if (s == "--scale") o.scale = a.number(s);
      else if (s == "--face-sr") o.face_sr = true;
      else if (s == "--device") o.device = a.value(s);
      else if (s == "--mode") o.mode = a.value(s);
      else if (s == "--quiet") o.quiet = true;
      else throw cli::UsageError("unknown option " + s);
    }
    if (o.portrait.empty()) throw cli::UsageError("missing --portrait");
    if (o.audio.empty()) throw cli::UsageError("missing --audio");
    if (o.out.empty()) throw cli::UsageError("missing --out");
    if (o.have_pose && !o.pose_file.empty()) throw cli::UsageError("give --pose or --pose-file, not both");
    if (o.mode != "offline" && o.mode != "streaming" && o.mode != "auto")
      throw cli::UsageError("--mode: offline, streaming or auto, not '" + o.mode + "'");
    // The element ranges (gst-inspect-1.0 anitalkermotion), checked here so
    // that nothing runs with a value GLib would drop with a warning.
    auto check_range = [](const char* opt, double v, double lo, double hi) {
      if (!std::isfinite(v) || v < lo || v > hi) {
        char m[200];
        std::snprintf(m, sizeof m, "%s: expected a number from %g to %g, got %g", opt, lo, hi, v);
        throw cli::UsageError(m);
      }
    };
    check_range("--pose (yaw)", o.yaw, -1, 1);
    check_range("--pose (pitch)", o.pitch, -1, 1);
    check_range("--pose (roll)", o.roll, -1, 1);
    check_range("--location", o.location, -10, 10);
    check_range("--scale", o.scale, -10, 10);
    if (!anitalker::models::is_variant(o.variant)) anitalker::models::stage2_name(o.variant);  // throws, naming all
    for (const std::string* f : {&o.portrait, &o.audio}) {
      if (is_dir(*f))
        throw anitalker::Error(anitalker::Error::Kind::Usage, *f + ": is a folder, expected a file");
      if (!is_file(*f)) throw anitalker::Error(anitalker::Error::Kind::NotFound, *f + ": no such file");
    }
    if (!o.pose_file.empty() && !is_file(o.pose_file))
      throw anitalker::Error(anitalker::Error::Kind::NotFound, o.pose_file + ": no such file");
    const auto missing = anitalker::models::missing(anitalker::models::resolve(o.models_dir, o.variant, o.face_sr));
    if (!missing.empty())
      throw anitalker::Error(anitalker::Error::Kind::NotFound, anitalker::models::describe_missing(missing));
    return generate(o);
  });
}
