// anitalker generate: the reference demo's job in one command: a portrait
// and a speech file in, an MP4 (H.264 + AAC, audio in sync) out.  It builds
// a GStreamer pipeline around the `anitalker` bin, shows progress and a
// summary of the time each stage took, and never leaves a half-written file.
#include <gst/app/gstappsink.h>
#include <gst/gst.h>
#include <unistd.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cerrno>
#include <cmath>
#include <chrono>
#include <cstdint>
#include <climits>
#include <cstdlib>
#include <cstdio>
#include <cctype>
#include <cstring>
#include <memory>
#include <string>
#include <sys/stat.h>
#include <vector>

#include <c10/core/InferenceMode.h>

#include "cli.h"
#include "crop.h"
#include "device.h"
#include "image.h"
#include "image_header.h"
#include "launch.h"
#include "error.h"
#include "models.h"
#include "mp4_times.h"
#include "output_file.h"


namespace {

struct Options {
  std::string portrait, audio, out, models_dir = "models", variant = "hubert_audio_only", pose_file, device = "cpu", precision = "fp32",
                                    mode = "offline";
  int steps = 50;
  long long seed = 0;
  bool control = false, face_sr = false, quiet = false, have_pose = false;
  double yaw = 0.25, pitch = 0, roll = 0, location = 0.5, scale = 0.5;
  // Any photo: the crop and the paste-back (lib/crop.h, anitalkerpaste).
  std::string crop = "none", face_box;
  double crop_ratio = 0.6;
  int face_index = -1, max_size = 1920, feather = 16;
  int detect_every = 1, parse_every = 1;  // gfpgansr's, with --face-sr
  bool paste_back = false, colour_match = false;
  double portrait_time = -1;  // >= 0: the portrait is a video
  // The output.
  int width = 0, height = 0, crf = -1, bitrate = 0;
  std::string codec;
};

// What --out names.
enum class OutKind { Mp4, Webm, Frames };

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

std::string gst_quoted(const std::string& s) {
  gchar* e = g_strescape(s.c_str(), nullptr);
  std::string out = std::string("\"") + e + "\"";
  g_free(e);
  return out;
}

// Counts buffers and frames through a pad, and when the last one passed.
struct Counter {
  guint64 frames = 0;
  double first = -1, last = -1;
  bool per_buffer = false;  // one frame a buffer (an encoder's output, whose offsets are not frames)
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
    const guint64 n = !c->per_buffer && GST_BUFFER_OFFSET_END_IS_VALID(b) && GST_BUFFER_OFFSET_IS_VALID(b)
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

// The motion's count in the progress: its frames, or while the whole
// utterance's steps run (no frame yet) how far they are ("0 (steps 40%)").
std::string motion_status(guint64 frames, int percent) {
  std::string s = std::to_string(frames);
  if (frames == 0 && percent >= 0) s += " (steps " + std::to_string(percent) + "%)";
  return s;
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

// The file name's extension in lower case (".mp4"), or "" when it has none.
std::string extension(const std::string& path) {
  const size_t slash = path.find_last_of('/'), dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash) || dot == slash + 1) return "";
  std::string ext = path.substr(dot);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

// A PNG-sequence pattern: one printf conversion %d, %Nd or %0Nd, no other
// '%', ending in .png.
// One %d or %0Nd (N from 1 to 99), in the file's name: not in a folder's
// (f%d/x.png failed writing "f1/..."), not %5d (space-padded names), found
// 2026-12-07.
bool is_frames_pattern(const std::string& out) {
  if (extension(out) != ".png") return false;
  const size_t pc = out.find('%');
  if (pc == std::string::npos || out.find('%', pc + 1) != std::string::npos) return false;
  const size_t slash = out.find_last_of('/');
  if (slash != std::string::npos && pc < slash) return false;
  size_t i = pc + 1;
  while (i < out.size() && std::isdigit(static_cast<unsigned char>(out[i]))) ++i;
  const size_t digits = i - pc - 1;
  return i < out.size() && out[i] == 'd' && (digits == 0 || (out[pc + 1] == '0' && digits >= 2 && digits <= 3));
}

std::string dir_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

// The last part of a path (the whole path without a '/').
std::string name_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool is_video_file(const std::string& path) {
  std::string ext = path.substr(path.find_last_of('.') == std::string::npos ? path.size() : path.find_last_of('.'));
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* v : {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".ogv", ".flv"})
    if (ext == v) return true;
  // Else by its header: an MP4, QuickTime, Matroska, AVI, MPEG-TS or -PS or
  // FLV file under another name (.3gp, none); HEIF and AVIF photos share MP4's container
  // and are stills.
  try {
    return anitalker::read_image_header(path).video();
  } catch (const anitalker::Error&) {
    return false;  // missing or unreadable: said where the portrait is read
  }
}

void need_elements(const std::vector<const char*>& names) {
  for (const char* f : names) {
    GstElementFactory* fac = gst_element_factory_find(f);
    if (!fac)
      throw anitalker::Error(anitalker::Error::Kind::NotFound,
                             std::string("the GStreamer element ") + f +
                                 " is missing (Debian: gstreamer1.0-plugins-ugly, gstreamer1.0-libav, "
                                 "gstreamer1.0-plugins-bad, gstreamer1.0-plugins-good)");
    gst_object_unref(fac);
  }
}

// The frame of a video at `t` seconds, as a lossless PNG in `png` (a
// temporary file of this run): the portrait when --portrait is a clip.
// A pipeline that decodes `clip` into square-pixel RGB frames at an appsink
// named "frame", turned as the clip's orientation says (a phone's portrait
// video is stored sideways with a rotation in its header: videoflip reads
// it from the image-orientation tag), as players show it and as the
// authors' crop script's cv2.VideoCapture reads it.
GstElement* video_frames(const std::string& clip, const std::string& sink_props) {
  gchar* uri = gst_filename_to_uri(clip.c_str(), nullptr);
  const std::string desc = std::string("uridecodebin uri=") + gst_quoted(uri ? uri : clip) +
                           " ! videoconvert ! videoflip video-direction=auto ! videoconvert ! videoscale ! "
                           "video/x-raw,format=RGB,pixel-aspect-ratio=1/1 ! appsink name=frame sync=false " +
                           sink_props;
  g_free(uri);
  return cli::launch(desc, " that reads " + clip);
}

// The RGB frame of a sample from video_frames() (rows padded to 4 bytes),
// packed; false when the sample is not such a frame.
bool sample_rgb(GstSample* sample, anitalker::RgbImage* im) {
  GstStructure* st = gst_caps_get_structure(gst_sample_get_caps(sample), 0);
  int w = 0, h = 0;
  gst_structure_get_int(st, "width", &w);
  gst_structure_get_int(st, "height", &h);
  const size_t stride = GST_ROUND_UP_4(w * 3);
  GstMapInfo map;
  GstBuffer* buf = gst_sample_get_buffer(sample);
  if (w <= 0 || h <= 0 || !gst_buffer_map(buf, &map, GST_MAP_READ)) return false;
  const bool ok = map.size >= stride * h;
  if (ok) {
    im->width = w;
    im->height = h;
    im->data.resize((size_t)w * h * 3);
    for (int y = 0; y < h; ++y) std::memcpy(im->at(0, y), map.data + y * stride, (size_t)w * 3);
  }
  gst_buffer_unmap(buf, &map);
  return ok;
}

void portrait_from_video(const std::string& clip, double t, anitalker::OutputFile& png) {
  GstElement* pipe = video_frames(clip, "");
  GstElement* sink = gst_bin_get_by_name(GST_BIN(pipe), "frame");
  std::string error;
  GstSample* sample = nullptr;
  auto wait = [&]() {
    if (gst_element_get_state(pipe, nullptr, nullptr, 30 * GST_SECOND) != GST_STATE_CHANGE_SUCCESS) {
      GstBus* bus = gst_element_get_bus(pipe);
      GstMessage* m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
      error = clip + ": not a video GStreamer can decode";
      if (m) {
        GError* e = nullptr;
        gst_message_parse_error(m, &e, nullptr);
        if (e) error += std::string(" (") + e->message + ")";
        if (e) g_error_free(e);
        gst_message_unref(m);
      }
      gst_object_unref(bus);
      return false;
    }
    return true;
  };
  gst_element_set_state(pipe, GST_STATE_PAUSED);
  if (wait()) {
    gint64 duration = -1;
    gst_element_query_duration(pipe, GST_FORMAT_TIME, &duration);
    if (duration > 0 && t * GST_SECOND >= duration) {
      char m[200];
      std::snprintf(m, sizeof m, ": --portrait-time %g s is past the end of the video (%.3f s)", t,
                    duration / (double)GST_SECOND);
      error = clip + m;
    } else if (t > 0 && !gst_element_seek_simple(pipe, GST_FORMAT_TIME,
                                                 (GstSeekFlags)(GST_SEEK_FLAG_FLUSH | GST_SEEK_FLAG_ACCURATE),
                                                 (gint64)(t * GST_SECOND))) {
      char m[240];
      std::snprintf(m, sizeof m,
                    ": cannot seek to --portrait-time %g s: it has no timeline to seek in (a picture, or a video "
                    "that cannot seek); --portrait-time is for a video portrait",
                    t);
      error = clip + m;
    } else if (wait()) {
      sample = gst_app_sink_pull_preroll(GST_APP_SINK(sink));
      if (!sample) error = clip + ": no video frame";
    }
  }
  if (sample) {
    anitalker::RgbImage im;
    if (sample_rgb(sample, &im)) {
      cv::Mat rgb(im.height, im.width, CV_8UC3, im.data.data()), bgr;
      cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
      std::vector<uchar> bytes;
      cv::imencode(".png", bgr, bytes);
      png.write(std::string(bytes.begin(), bytes.end()));
    } else {
      error = clip + ": an unreadable video frame";
    }
    gst_sample_unref(sample);
  }
  gst_element_set_state(pipe, GST_STATE_NULL);
  gst_object_unref(sink);
  gst_object_unref(pipe);
  if (!error.empty()) throw anitalker::Error(anitalker::Error::Kind::Format, error);
}

// A video portrait with --crop auto: the authors' rule for a video, the
// medians of the face boxes detected every 25th frame (lib/crop.h median;
// the largest face of each frame; at most 200 detections).  The search
// ends after 50 sampled frames without any face (1250 frames, 50 s at 25
// fps), or after 1000 sampled frames: until 2026-12-07 a long video without
// a face was decoded to its end, a detection every 25th frame (an hour's
// video: 3600 detections) before "no face found".  Returns "X1,Y1,X2,Y2"
// for the renderer's face-box.
constexpr long long kFacelessSamples = 50;
constexpr long long kMaxSamples = 1000;
std::string video_face_box(const std::string& clip, const std::string& detector, const std::string& device) {
  GstElement* pipe = video_frames(clip, "max-buffers=2");
  GstElement* sink = gst_bin_get_by_name(GST_BIN(pipe), "frame");
  gst_element_set_state(pipe, GST_STATE_PLAYING);
  std::vector<anitalker::crop::Box> boxes;
  long long index = 0, sampled = 0;
  bool gave_up = false;
  while (boxes.size() < 200 && sampled < kMaxSamples) {
    if (boxes.empty() && sampled >= kFacelessSamples) {
      gave_up = true;
      break;
    }
    GstSample* sample = gst_app_sink_pull_sample(GST_APP_SINK(sink));
    if (!sample) break;  // EOS or error
    anitalker::RgbImage im;
    if (index++ % 25 == 0 && sample_rgb(sample, &im)) {
      std::vector<anitalker::crop::Box> faces;
      {
        c10::InferenceMode guard;
        faces = anitalker::detect_faces(detector, im, anitalker::parse_device(device));
      }
      if (!faces.empty()) boxes.push_back(faces[anitalker::crop::largest(faces)]);
      ++sampled;
    }
    gst_sample_unref(sample);
  }
  gst_element_set_state(pipe, GST_STATE_NULL);
  gst_object_unref(sink);
  gst_object_unref(pipe);
  if (boxes.empty())
    throw anitalker::Error(anitalker::Error::Kind::Format,
                           clip + ": no face found in " + (gave_up ? "the first " : "") + std::to_string(sampled) +
                               " frames (every 25th" + (gave_up ? ", where the search stops" : "") +
                               "; RetinaFace, threshold 0.97); give the face's box with --face-box "
                               "X1,Y1,X2,Y2, the square with --crop X,Y,SIDE, or use the picture as it is (--crop none)");
  const anitalker::crop::Box m = anitalker::crop::median(boxes);
  char text[160];
  std::snprintf(text, sizeof text, "%.2f,%.2f,%.2f,%.2f", m.x1, m.y1, m.x2, m.y2);
  std::fprintf(stderr, "anitalker generate: note: the face box of %s: the median of %zu detections (every 25th of %lld frames): %s\n",
               clip.c_str(), boxes.size(), index, text);
  return text;
}

// The PNG frames of a run: written into a hidden folder beside the target
// files (lib/output_file.h OutputFolder: removed on failure and by SIGINT /
// SIGTERM), moved to their names at the end.  No half-written sequence.
class FramesOutput {
 public:
  // inputs: the run's input files, which no frame may replace.
  FramesOutput(const std::string& pattern, const std::vector<std::string>& inputs)
      : pattern_(pattern), dir_(dir_of(pattern)), base_(name_of(pattern)), inputs_(inputs) {
    if (!is_dir(dir_)) throw anitalker::Error(anitalker::Error::Kind::NotFound, dir_ + ": no such folder (--out)");
    // An input named as one of the frames (fr/00001.png for fr/%05d.png):
    // refused before the run, as an --out file that is an input is.
    for (const std::string& in : inputs) {
      if (in.empty()) continue;
      const std::string name = name_of(in);
      if (frame_number(name) > 0) anitalker::check_not_an_input(dir_ + "/" + name, {in}, "--out " + pattern + ":");
    }
    temp_ = std::make_unique<anitalker::OutputFolder>(dir_, "anitalker-frames");
  }
  std::string temp_pattern() const { return temp_->path() + "/" + base_; }
  // Moves the frames, numbered from 1, to their names; returns how many.
  guint64 commit() {
    std::vector<std::pair<std::string, std::string>> moves;
    for (int i = 1;; ++i) {
      const std::string from = temp_->path() + "/" + name(i), to = dir_ + "/" + name(i);
      if (!is_file(from)) break;
      // Only plain files are replaced (as OutputFile does): nothing moves
      // when a name is taken by a folder, a link, a device or a pipe.
      struct stat st;
      if (::lstat(to.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
        throw anitalker::Error(anitalker::Error::Kind::Usage,
                               to + ": exists and is not a plain file (a folder, a link, a device or a pipe); no "
                                    "frame was written");
      // A frame's name that is an input by another name (a hard link).
      anitalker::check_not_an_input(to, inputs_, "--out " + pattern_ + ": frame");
      moves.emplace_back(from, to);
    }
    guint64 n = 0;
    for (const auto& [from, to] : moves) {
      if (std::rename(from.c_str(), to.c_str()) != 0)
        throw anitalker::Error(anitalker::Error::Kind::Unreadable, to + ": cannot write (" + std::strerror(errno) + ")");
      ++n;
    }
    temp_->discard();
    // The frames after the last of this run that an older, longer run left
    // (plain files numbered on from n + 1, up to the first number missing)
    // are removed: else the folder would hold this video followed by the
    // end of the other one.
    for (guint64 i = n + 1; i <= (guint64)INT_MAX; ++i) {
      const std::string old = dir_ + "/" + name((int)i);
      struct stat st;
      if (::lstat(old.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || std::remove(old.c_str()) != 0) break;
      ++stale_;
    }
    return n;
  }
  // The frames of an older run removed by commit().
  guint64 stale() const { return stale_; }
  void discard() { temp_->discard(); }

 private:
  // Frame i's file name.
  std::string name(int i) const {
    gchar* made = g_strdup_printf(base_.c_str(), i);
    std::string out = made;
    g_free(made);
    return out;
  }
  // i > 0 when `name` is frame i's name under the pattern, else 0.
  int frame_number(const std::string& file) const {
    const size_t pct = base_.find('%');
    if (pct == std::string::npos || file.compare(0, pct, base_, 0, pct) != 0) return 0;
    size_t end = pct;
    while (end < file.size() && file[end] >= '0' && file[end] <= '9' && end - pct < 9) ++end;
    if (end == pct) return 0;
    const int i = std::atoi(file.substr(pct, end - pct).c_str());
    return i > 0 && file == name(i) ? i : 0;
  }

  std::string pattern_, dir_, base_;  // --out, its folder, its file name (with the %d)
  std::vector<std::string> inputs_;
  guint64 stale_ = 0;
  std::unique_ptr<anitalker::OutputFolder> temp_;
};

// Every `from` in `text` replaced by `to` (nothing for an empty `from`).
void replace_all(std::string& text, const std::string& from, const std::string& to) {
  for (size_t at = 0; !from.empty() && (at = text.find(from, at)) != std::string::npos; at += to.size())
    text.replace(at, from.size(), to);
}

// The largest frame H.264 and VP9 encode (their highest levels, 6.2: H.264
// 139264 macroblocks of 16x16, e.g. 8192x4352; VP9 35651584 pixels, 16384 a
// side).  Past it x264enc still starts, and its look-ahead holds dozens of
// such frames: 16384x16384 took 23 GB here before the system killed the
// process (2026-12-07).
void check_video_size(int w, int h, const std::string& codec, const std::string& what, const std::string& advice) {
  const int64_t pixels = (int64_t)w * h, blocks = (int64_t)((w + 15) / 16) * ((h + 15) / 16);
  const bool h264 = codec != "vp9";
  if (h264 ? blocks <= 139264 : pixels <= 35651584) return;
  char mp[32];
  std::snprintf(mp, sizeof mp, "%.1f", pixels / 1e6);
  throw cli::UsageError(what + ": a video frame of " + std::to_string(w) + "x" + std::to_string(h) + " (" + mp +
                        " Mpx) is larger than " +
                        (h264 ? "H.264 encodes (139264 macroblocks, 35.7 Mpx: level 6.2, e.g. 8192x4352)"
                              : "VP9 encodes (35.7 Mpx: level 6.2, e.g. 8192x4352)") +
                        "; " + advice + ", or write PNG frames");
}

int generate(const Options& o) {
  gst_init(nullptr, nullptr);
  find_plugin();

  // The output: its kind, and the name the demo gives it in a folder.
  std::string out = o.out;
  if (is_dir(out))
    out = (out.back() == '/' ? out : out + "/") + stem(o.portrait) + "-" + stem(o.audio) + (o.face_sr ? "_SR" : "") +
          ".mp4";
  const std::string ext = extension(out);
  const OutKind kind = is_frames_pattern(out) ? OutKind::Frames : ext == ".webm" ? OutKind::Webm : OutKind::Mp4;
  const std::string codec = !o.codec.empty() ? o.codec : kind == OutKind::Webm ? "vp9" : "h264";
  if (kind == OutKind::Webm && codec != "vp9") throw cli::UsageError("--codec: WebM holds vp9, not " + codec);
  if (kind == OutKind::Frames && (!o.codec.empty() || o.crf >= 0 || o.bitrate > 0))
    throw cli::UsageError("--codec, --crf and --bitrate are for video files, not a PNG sequence");
  if (kind != OutKind::Frames && o.width > 0 && (o.width < 16 || o.height < 16))
    throw cli::UsageError("--size " + std::to_string(o.width) + "x" + std::to_string(o.height) +
                          ": a video file is at least 16x16 (H.264's and VP9's muxers); PNG frames may be smaller");
  if (kind == OutKind::Frames) need_elements({"pngenc", "multifilesink"});
  else if (kind == OutKind::Webm) need_elements({"vp9enc", "opusenc", "webmmux"});
  else if (codec == "vp9") need_elements({"vp9enc", "vp9parse", "avenc_aac", "mp4mux"});
  else need_elements({"x264enc", "avenc_aac", "mp4mux", "h264parse"});
  if (codec == "vp9" && o.crf > 63) throw cli::UsageError("--crf: VP9's cq-level is 0 to 63");
  if (codec == "h264" && o.crf > 50) throw cli::UsageError("--crf: x264's quantizer is 0 to 50");
  if (kind != OutKind::Frames && o.width > 0)
    check_video_size(o.width, o.height, codec, "--size " + std::to_string(o.width) + "x" + std::to_string(o.height),
                     "give a smaller --size");

  std::unique_ptr<anitalker::OutputFile> output;
  std::unique_ptr<FramesOutput> frames;
  std::string part;
  if (kind == OutKind::Frames) {
    frames = std::make_unique<FramesOutput>(out, std::vector<std::string>{o.audio, o.portrait, o.pose_file});
    part = frames->temp_pattern();
  } else {
    anitalker::check_not_an_input(out, {o.audio, o.portrait, o.pose_file});
    // A unique temporary file beside the target, renamed over it at success
    // (lib/output_file.h): no half-written file, no run sharing another's
    // file, and SIGINT/SIGTERM remove it.
    output = std::make_unique<anitalker::OutputFile>(out);
    // The name says what the file holds: an MP4 under another name would
    // be the wrong bytes for it.  A device or a pipe takes any name.
    if (kind == OutKind::Mp4 && !output->direct() && ext != ".mp4" && ext != ".m4v" && ext != ".mov") {
      if (ext == ".png")
        throw cli::UsageError("--out " + out + ": a PNG sequence needs one %d (or %0Nd, N up to 99) in its name "
                              "and no other %, e.g. frames/%05d.png");
      throw cli::UsageError("--out " + out + ": " + (ext.empty() ? std::string("no extension") : "'" + ext + "'") +
                            "; the outputs are .mp4 (also .m4v, .mov: MP4), .webm, a folder, or PNG frames "
                            "(frames/%05d.png)");
    }
    part = output->temp_path();
  }
  // MP4 with its index (moov) before the media (faststart), as the web
  // wants it: a browser plays it while it downloads (it was written after
  // the media).  mp4mux keeps the media in this spool beside the target
  // until the end, then writes index and media; the spool is never
  // committed, so it goes with the run, as the target's temporary file does.
  // A device or a pipe gets mp4mux's streamable layout, as before.
  std::unique_ptr<anitalker::OutputFile> media_spool;
  if (kind == OutKind::Mp4 && !output->direct()) media_spool = std::make_unique<anitalker::OutputFile>(out + ".media");

  // A video portrait: its frame at --portrait-time, in a temporary PNG.
  std::unique_ptr<anitalker::OutputFile> still;
  std::string portrait = o.portrait;
  if (o.portrait_time >= 0 || is_video_file(o.portrait)) {
    const gchar* tmp = g_get_tmp_dir();
    still = std::make_unique<anitalker::OutputFile>(std::string(tmp) + "/anitalker-portrait.png");
    portrait_from_video(o.portrait, std::max(0.0, o.portrait_time), *still);
    portrait = still->temp_path();
  }
  // With --paste-back the video has the picture's size (at most --max-size
  // a side, as anitalkerpaste plans it).
  if (kind != OutKind::Frames && o.paste_back && o.width == 0) {
    const anitalker::ImageHeader h = anitalker::read_image_header(portrait);
    if (h.width >= 2 && h.height >= 2 && h.width <= INT32_MAX && h.height <= INT32_MAX) {
      const anitalker::crop::Canvas c =
          anitalker::crop::plan_canvas((int)h.width, (int)h.height, anitalker::crop::Square{0, 0, 1}, o.max_size);
      check_video_size(c.width, c.height, codec,
                       "--paste-back (" + o.portrait + " is " + std::to_string(h.width) + "x" +
                           std::to_string(h.height) + ", --max-size " + std::to_string(o.max_size) + ")",
                       "give a smaller --max-size or a --size");
    }
  }
  // crop auto on a video: the median box over the video, as the authors crop.
  std::string face_box = o.face_box;
  if (still && o.crop == "auto" && face_box.empty())
    face_box = video_face_box(o.portrait, o.models_dir + "/detection_Resnet50_Final.pth", o.device);

  // The encoder, its rate control, and the muxer's audio.
  std::string video_out, audio_enc, mux;
  const std::string big_queue = "queue max-size-buffers=0 max-size-bytes=0 max-size-time=0";
  std::string scale;
  if (o.width > 0) scale = "videoscale ! video/x-raw,width=" + std::to_string(o.width) + ",height=" +
                          std::to_string(o.height) + ",pixel-aspect-ratio=1/1 ! ";
  if (kind == OutKind::Frames) {
    video_out = scale + "videoconvert ! pngenc name=enc ! multifilesink index=1 location=" + gst_quoted(part);
  } else {
    std::string enc;
    if (codec == "vp9") {
      enc = o.bitrate > 0 ? "vp9enc name=enc end-usage=vbr target-bitrate=" + std::to_string(o.bitrate * 1000)
                          : "vp9enc name=enc end-usage=cq target-bitrate=100000000 cq-level=" + std::to_string(o.crf >= 0 ? o.crf : 30);
      // mp4mux takes VP9 only with the stream's profile, chroma format and
      // bit depth in its caps, which vp9parse adds (without it: not
      // negotiated, every run; webmmux needs none).
      if (kind != OutKind::Webm) enc += " ! vp9parse";
    } else {
      enc = o.bitrate > 0 ? "x264enc name=enc pass=cbr bitrate=" + std::to_string(o.bitrate)
                          : "x264enc name=enc pass=qual quantizer=" + std::to_string(o.crf >= 0 ? o.crf : 18);
      enc += " ! h264parse";
    }
    video_out = scale + "videoconvert ! video/x-raw,format=I420 ! " + enc + " ! " + big_queue + " ! mux.video_0";
    audio_enc = kind == OutKind::Webm ? "opusenc" : "avenc_aac";
    mux = kind == OutKind::Webm ? "webmmux name=mux"
          : media_spool            ? "mp4mux name=mux faststart=true faststart-file=" + gst_quoted(media_spool->temp_path())
                                   : "mp4mux name=mux";
  }

  // The queue after the bin gives the encoder a thread of its own: run in
  // the renderer's streaming thread, x264enc's output depended on timing
  // (2 of 100 frames differed between runs with the same seed).
  const std::string talk_branch = "anitalker name=talk ! queue ! " + video_out;
  const std::string desc =
      kind == OutKind::Frames
          ? "filesrc location=" + gst_quoted(o.audio) + " ! decodebin name=audiodec ! " + talk_branch
          : "filesrc location=" + gst_quoted(o.audio) + " ! decodebin name=audiodec ! tee name=t "
            "t. ! " + big_queue + " ! " + talk_branch + " "
            "t. ! queue ! audioconvert ! audioresample ! " + audio_enc + " ! " + big_queue + " ! mux.audio_0 " +
            mux + " ! filesink name=sink location=" + gst_quoted(part);
  GstElement* pipe = cli::launch(desc);
  cli::DecodedStreams streams;  // outlives the pipeline's streaming: set to NULL below
  streams.watch(pipe, "audiodec");
  GstElement* talk = gst_bin_get_by_name(GST_BIN(pipe), "talk");
  gst_util_set_object_arg(G_OBJECT(talk), "variant", o.variant.c_str());
  gst_util_set_object_arg(G_OBJECT(talk), "mode", o.mode.c_str());
  if (GstElement* mx = gst_bin_get_by_name(GST_BIN(pipe), "mux")) {
    // The DateUTC of WebM: fixed, so that the same inputs give the same bytes.
    if (g_object_class_find_property(G_OBJECT_GET_CLASS(mx), "creation-time")) {
      GDateTime* epoch = g_date_time_new_utc(2001, 1, 1, 0, 0, 0);
      g_object_set(mx, "creation-time", epoch, nullptr);
      g_date_time_unref(epoch);
    }
    gst_object_unref(mx);
  }
  g_object_set(talk, "crop", o.crop.c_str(), "crop-ratio", (gfloat)o.crop_ratio, "face-index", o.face_index,
               "paste-back", (gboolean)o.paste_back, "max-size", (guint)o.max_size, "feather", (guint)o.feather,
               "colour-match", (gboolean)o.colour_match, nullptr);
  if (!face_box.empty()) g_object_set(talk, "face-box", face_box.c_str(), nullptr);
  g_object_set(talk, "models-dir", o.models_dir.c_str(), "portrait", portrait.c_str(), "steps", (guint)o.steps,
               "seed", (guint64)o.seed, "control", (gboolean)o.control, "pose-yaw", (gfloat)o.yaw, "pose-pitch",
               (gfloat)o.pitch, "pose-roll", (gfloat)o.roll, "face-location", (gfloat)o.location, "face-scale",
               (gfloat)o.scale, "face-sr", (gboolean)o.face_sr, "device", o.device.c_str(), "detect-every",
               (guint)o.detect_every, "parse-every", (guint)o.parse_every, nullptr);
  if (!o.pose_file.empty()) g_object_set(talk, "pose-file", o.pose_file.c_str(), nullptr);
  gst_util_set_object_arg(G_OBJECT(talk), "precision", o.precision.c_str());

  Counter features, motion, video, sr, encoded;
  // The encoder's frames: at large sizes it runs long after the last frame is
  // rendered (8192x4352: 190 s after), which the progress then shows.
  encoded.per_buffer = true;
  add_counter(pipe, "enc", &encoded);
  // The bin makes gfpgansr (face-sr) at NULL->READY: count from there.  A
  // failure here is on the bus and read below.
  if (o.face_sr) gst_element_set_state(pipe, GST_STATE_READY);
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
  // The motion element's progress through the whole utterance's DDIM steps
  // (its PROGRESS messages), shown until its frames come: -1 when none.
  int motion_percent = -1;
  bool encoding = false;  // hubertenc's whole utterance under way (its PROGRESS START)
  while (!done) {
    GstMessage* msg = gst_bus_timed_pop_filtered(
        bus, 500 * GST_MSECOND,
        (GstMessageType)(GST_MESSAGE_ERROR | GST_MESSAGE_EOS | GST_MESSAGE_INFO | GST_MESSAGE_PROGRESS));
    if (msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_PROGRESS) {
      GstProgressType type;
      gchar* code = nullptr;
      gst_message_parse_progress(msg, &type, &code, nullptr);
      int percent = 0;
      gst_structure_get_int(gst_message_get_structure(msg), "percent", &percent);
      const bool running = type == GST_PROGRESS_TYPE_START || type == GST_PROGRESS_TYPE_CONTINUE;
      if (code && std::string(code) == "motion") motion_percent = running ? percent : -1;
      if (code && std::string(code) == "features") encoding = running;
      g_free(code);
      gst_message_unref(msg);
      msg = nullptr;
    } else if (msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_INFO) {
      // Notes from the elements (several faces found, ...).
      GError* e = nullptr;
      gst_message_parse_info(msg, &e, nullptr);
      if (e && !o.quiet) std::fprintf(stderr, "%sanitalker generate: note: %s\n", tty ? "\r" : "", e->message);
      if (e) g_error_free(e);
      gst_message_unref(msg);
      msg = nullptr;
    } else if (msg) {
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
        // hubertenc's stream errors are about the audio's samples; its
        // others (a HuBERT folder that cannot be loaded) are not (they were
        // named after the audio, found 2026-12-07).
        const bool about_audio = where.find("GstFileSrc") != std::string::npos ||
                                 where.find("GstDecodeBin") != std::string::npos ||
                                 (where.find("GstHubertEnc") != std::string::npos && e && e->domain == GST_STREAM_ERROR);
        if (about_audio)
          error = o.audio + ": " + error;
        else if (where.find("GstFileSink") != std::string::npos || where.find("GstMultiFileSink") != std::string::npos)
          error = out + ": " + error;  // writing the output (a full disk)
        const std::string cause = error_cause(dbg);
        if (!cause.empty()) error += " " + cause;
        // The sink's errors (a full disk) name the output, not its
        // temporary file.
        replace_all(error, part, out);
        // Likewise a video portrait's frame: the video's name.
        if (still) replace_all(error, portrait, o.portrait);
        // The renderer's crop messages name its properties (lib/crop.cpp
        // "no face found", "face-index N"): the options that set them here.
        for (const auto& [prop, opt] : {std::pair<const char*, const char*>{"(face-box=", "(--face-box "},
                                        {"(crop=", "(--crop "}, {": face-index ", ": --face-index "}})
          replace_all(error, prop, opt);
        // A file without audio (a video with no sound track): said so.
        const std::string none = streams.no_audio(o.audio);
        if (!none.empty()) error = none;
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
      std::fprintf(stderr, "anitalker generate: %.0f s: features %" G_GUINT64_FORMAT "%s, motion %s, video %" G_GUINT64_FORMAT
                           " of %" G_GUINT64_FORMAT " frames, encoded %" G_GUINT64_FORMAT "\n",
                   last_line - t_start, features.frames, encoding ? " (encoding)" : "",
                   motion_status(motion.frames, motion_percent).c_str(), video.frames, total, encoded.frames);
    }
    if (tty) {
      const double el = now_s() - t_start;
      const guint64 total = duration > 0 ? (guint64)(duration * 25 / GST_SECOND) : 0;
      // The rate and what is left at the end of the chain: the encoder's
      // once it has output frames (it runs behind the renderer by its
      // look-ahead, and at large sizes far behind), else the renderer's.
      const Counter& end = encoded.frames > 1 ? encoded : video;
      const double fps = end.frames > 1 && end.last > end.first ? (end.frames - 1) / (end.last - end.first) : 0;
      char eta[32] = "?";
      if (fps > 0 && total > end.frames) std::snprintf(eta, sizeof eta, "%.0f s", (total - end.frames) / fps);
      std::fprintf(stderr, "\r%6.1f s  features %" G_GUINT64_FORMAT "%s  motion %s  video %" G_GUINT64_FORMAT
                           "/%" G_GUINT64_FORMAT "  encoded %" G_GUINT64_FORMAT "  %.2f fps  ETA %s   ",
                   el, features.frames, encoding ? " (encoding)" : "", motion_status(motion.frames, motion_percent).c_str(),
                   video.frames, total, encoded.frames, fps, eta);
    }
    if (!error.empty() && !msg) done = true;
  }
  if (tty) std::fputc('\n', stderr);
  gst_element_set_state(pipe, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(talk);
  gst_object_unref(pipe);

  if (!error.empty() || video.frames == 0) {
    if (output) output->discard();
    if (frames) frames->discard();
    if (error.empty())
      error = o.audio + ": no video frames came out (" +
              (features.frames == 0 ? std::string("no audio features: the audio is shorter than one feature "
                                                  "frame (20 ms, 10 ms for MFCC), or GStreamer's decoders gave "
                                                  "no samples; for the latter convert it to PCM, e.g. "
                                                  "ffmpeg -i IN -c:a pcm_s16le OUT.wav")
                                    : "the audio is shorter than one video frame") + ")";
    throw anitalker::Error(anitalker::Error::Kind::Runtime, error);
  }
  // The muxers' wall-clock times and random UIDs: same inputs, same bytes.
  // (Not in a device or a pipe, written in place: nothing to read back.)
  const bool in_place = output && output->direct();
  if (kind == OutKind::Mp4 && !in_place) cli::clear_mp4_times(part);
  if (kind == OutKind::Webm && !in_place) cli::clear_webm_uids(part);
  if (output) output->commit();
  if (frames) {
    frames->commit();
    if (frames->stale() > 0)
      std::fprintf(stderr,
                   "anitalker generate: note: removed %" G_GUINT64_FORMAT
                   " frames after this run's last that an older run of --out %s had left\n",
                   frames->stale(), out.c_str());
  }
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
    Options o;
    cli::Options opt("generate",
                     "A portrait and speech in, a talking video out: the reference demo's job in one command, as a "
                     "GStreamer pipeline around the anitalker bin.  Progress: on a terminal a status line, otherwise "
                     "a line every 10 s.");
    opt.text("portrait", &o.portrait, "IMG|CLIP",
             "the face to animate: a photo (with --crop auto, any photo; without, a centred head, as the reference "
             "advises) or a video (see --portrait-time)")
        .required();
    opt.text("audio", &o.audio, "FILE",
             "speech, any format GStreamer decodes; a file or a pipe (--audio <(sox ... -t wav -))")
        .required();
    opt.text("out", &o.out, "PATH",
             ".mp4 (H.264 or VP9, AAC; .m4v and .mov the same), .webm (VP9, Opus), a folder (<portrait>-<audio>.mp4, "
             "_SR with --face-sr, as the reference demo names it), or a PNG sequence (a pattern with one %d, e.g. "
             "frames/%05d.png: numbered from 1, no audio); another name is refused")
        .required();
    opt.text("models-dir", &o.models_dir, "DIR", "the released files under their published names");
    opt.choice("variant", &o.variant,
               {"hubert_audio_only", "hubert_pose_only", "hubert_full_control", "mfcc_pose_only", "mfcc_full_control"},
               "the stage-2 variant (the demo's --infer_type)");
    opt.integer("steps", &o.steps, 2, 1000, "N", "DDIM steps (the demo's --step_T); N must be ceil(1000 / k) for an integer k");
    opt.integer("seed", &o.seed, 0, 1LL << 62, "K", "noise seed, as the demo's --seed");
    opt.flag("control", &o.control, "drive with the pose, location and scale options instead of the predictions");
    opt.custom("pose", "Y P R", 3,
               [&](const std::string& name, const std::vector<std::string>& v) {
                 double* f[3] = {&o.yaw, &o.pitch, &o.roll};
                 for (int i = 0; i < 3; ++i) *f[i] = cli::parse_number(name, v[i], -1, 1);
               },
               "constant yaw, pitch, roll in the model's units (1 = 90 degrees)", "0.25 0 0");
    opt.number("pose-yaw", &o.yaw, -1, 1, "Y", "the yaw alone");
    opt.number("pose-pitch", &o.pitch, -1, 1, "P", "the pitch alone");
    opt.number("pose-roll", &o.roll, -1, 1, "R", "the roll alone");
    opt.text("pose-file", &o.pose_file, "P.npy", "[N, 3] yaw, pitch, roll in degrees per frame");
    opt.number("face-location|location", &o.location, -10, 10, "L", "face location (full-control variants)");
    opt.number("face-scale|scale", &o.scale, -10, 10, "S", "face scale (full-control variants)");
    opt.flag("face-sr", &o.face_sr, "restore the face with GFPGAN v1.4 (output twice the size; with --paste-back, the picture's)");
    opt.integer("detect-every", &o.detect_every, 1, 1000, "N",
                "with --face-sr: find the face on one frame in N, reusing it in between (1: every frame, as the "
                "reference)");
    opt.integer("parse-every", &o.parse_every, 1, 1000, "N",
                "with --face-sr: make ParseNet's paste masks on one frame in N, reusing them in between (1: every "
                "frame, as the reference; 5 is about 1.7x faster on the CPU)");
    opt.text("crop", &o.crop, "C",
             "none (the whole picture), auto (the square around the face, as the authors cut their data; "
             "RetinaFace from the models folder finds it), or X,Y,SIDE (that square, in the picture's pixels)");
    opt.text("face-box", &o.face_box, "X1,Y1,X2,Y2", "with --crop auto: the face box instead of the detector");
    opt.number("crop-ratio", &o.crop_ratio, 0, 10, "R", "the square is the face's larger side x (1 + R)");
    opt.integer("face-index", &o.face_index, 0, 1023, "N", "with several faces: which").shows("the largest");
    opt.flag("paste-back", &o.paste_back, "paste the talking face back into the picture: the video has its size");
    opt.integer("max-size", &o.max_size, 16, 16384, "N", "with --paste-back: the longest side at most N");
    opt.integer("feather", &o.feather, 0, 1024, "N", "with --paste-back: blend width in pixels");
    opt.flag("colour-match|color-match", &o.colour_match,
             "with --paste-back: match the face's mean colour to the picture at the seam");
    opt.number("portrait-time", &o.portrait_time, 0, HUGE_VAL, "S", "a video portrait: the frame at S seconds").shows("0");
    opt.custom("size", "WxH", 1,
               [&](const std::string& name, const std::vector<std::string>& v) {
                 // Digits only, each side read whole (sscanf's %d wrapped
                 // 4294967360 round to 64, found 2026-12-07).
                 const std::string& t = v[0];
                 const size_t x = t.find('x');
                 auto side = [&](const std::string& d) {
                   return !d.empty() && d.size() <= 5 && d.find_first_not_of("0123456789") == std::string::npos
                              ? std::stoi(d)
                              : -1;
                 };
                 const int w = x == std::string::npos ? -1 : side(t.substr(0, x));
                 const int h = x == std::string::npos ? -1 : side(t.substr(x + 1));
                 if (w < 2 || h < 2 || w > 16384 || h > 16384 || w % 2 || h % 2)
                   throw cli::UsageError(name + ": expected WxH, even numbers from 2 to 16384, got '" + v[0] + "'");
                 o.width = w;
                 o.height = h;
               },
               "scale the video to W x H (even numbers; a video file at least 16x16 and at most 35.7 Mpx, H.264's and "
               "VP9's largest frame, e.g. 8192x4352)");
    opt.integer("crf", &o.crf, 0, 63, "N", "constant quality: x264's quantizer 0-50, VP9's cq-level 0-63")
        .shows("18 for H.264, 30 for VP9");
    opt.integer("bitrate", &o.bitrate, 1, 1000000, "KBPS", "a bitrate instead of constant quality").shows("");
    opt.choice("codec", &o.codec, {"h264", "vp9"}, "h264 (default for .mp4) or vp9 (the only one for .webm)");
    opt.device(&o.device);
    opt.precision(&o.precision,
                  "the arithmetic of HuBERT, the motion generator, the renderer and with --face-sr GFPGAN (the "
                  "bin's precision): fp32 (exact), bf16 (a CPU with AVX512_BF16: on 2 cores HuBERT and the motion generator about 1.4x, the renderer 1.3x, GFPGAN 1.0x, results not "
                  "exact) or fp16 (CUDA: the renderer and GFPGAN in float16, HuBERT and the motion generator in fp32); "
                  "MFCC stays fp32");
    opt.choice("mode", &o.mode, {"offline", "streaming", "auto"}, "offline is exact, as the reference");
    opt.flag("quiet", &o.quiet, "no progress");
    if (!opt.parse(argc, argv)) return 0;
    o.have_pose = opt.given("pose") || opt.given("pose-yaw") || opt.given("pose-pitch") || opt.given("pose-roll");
    if (o.have_pose && !o.pose_file.empty()) throw cli::UsageError("give --pose or --pose-file, not both");
    // Refused here, before the pipeline, naming the device and what it
    // supports (fp32 runs everywhere; a bad device is the element's to name).
    const anitalker::Precision precision = anitalker::parse_precision(o.precision);
    if (precision != anitalker::Precision::Fp32)
      anitalker::check_precision(precision, anitalker::parse_device(o.device), "--precision",
                                 {anitalker::Precision::Fp32, anitalker::Precision::Bf16, anitalker::Precision::Fp16},
                                 "each network");
    // The crop, as the renderer will read it.
    const anitalker::crop::Spec spec =
        anitalker::crop::make_spec(o.crop, o.face_box, o.crop_ratio, o.face_index, "--crop", "--face-box");
    if (o.paste_back && spec.mode == anitalker::crop::Spec::Mode::None)
      throw cli::UsageError("--paste-back needs a crop: --crop auto or --crop X,Y,SIDE");
    if (o.crf >= 0 && o.bitrate > 0) throw cli::UsageError("give --crf or --bitrate, not both");
    const bool detect = spec.mode == anitalker::crop::Spec::Mode::Auto && o.face_box.empty();
    // Options given that this run does not use: a note each, rather than a
    // result that silently ignores them (found 2026-12-07).
    const auto ignored = [&opt](std::initializer_list<const char*> names, const std::string& why) {
      std::string list;
      for (const char* n : names)
        if (opt.given(n)) list += (list.empty() ? "--" : ", --") + std::string(n);
      if (!list.empty()) std::fprintf(stderr, "anitalker generate: note: %s ignored: %s\n", list.c_str(), why.c_str());
    };
    const bool audio_only = o.variant == "hubert_audio_only";
    const bool full_control = o.variant.find("full_control") != std::string::npos;
    if (audio_only)
      ignored({"control", "pose", "pose-yaw", "pose-pitch", "pose-roll", "pose-file", "face-location", "face-scale"},
              "the variant hubert_audio_only takes no pose, location or scale (a pose_only or full_control "
              "variant does)");
    else if (!o.control)
      ignored({"pose", "pose-yaw", "pose-pitch", "pose-roll", "pose-file", "face-location", "face-scale"},
              "without --control the model predicts pose, location and scale");
    else if (!full_control)
      ignored({"face-location", "face-scale"}, "the variant " + o.variant + " takes no location or scale");
    if (!o.face_sr) ignored({"detect-every", "parse-every"}, "used only with --face-sr");
    if (!o.paste_back) ignored({"feather", "max-size", "colour-match"}, "used only with --paste-back");
    // The ratio sizes the square around a given box too (it was said to be
    // ignored there, found 2026-12-07); the index picks among detections.
    if (!detect) ignored({"face-index"}, "used only with --crop auto without --face-box");
    if (spec.mode != anitalker::crop::Spec::Mode::Auto) ignored({"crop-ratio"}, "used only with --crop auto");
    for (const std::string* f : {&o.portrait, &o.audio}) {
      if (is_dir(*f))
        throw anitalker::Error(anitalker::Error::Kind::Usage, *f + ": is a folder, expected a file");
      // The audio may come through a pipe (--audio <(sox ...)): GStreamer
      // reads it once, in order.  The portrait is read twice (its header,
      // then the picture): a file.
      struct stat st;
      if (::stat(f->c_str(), &st) != 0)
        throw anitalker::Error(anitalker::Error::Kind::NotFound, *f + ": no such file");
      if (!S_ISREG(st.st_mode) && !(f == &o.audio && S_ISFIFO(st.st_mode)))
        throw anitalker::Error(anitalker::Error::Kind::Usage,
                               *f + ": is not a file (a device" + std::string(f == &o.audio ? "" : ", a pipe") +
                                   " or a socket); expected a file" +
                                   (f == &o.audio ? " or a pipe" : ""));
    }
    if (!o.pose_file.empty() && !is_file(o.pose_file))
      throw anitalker::Error(anitalker::Error::Kind::NotFound, o.pose_file + ": no such file");
    const auto missing =
        anitalker::models::missing(anitalker::models::resolve(o.models_dir, o.variant, o.face_sr, detect));
    if (!missing.empty())
      throw anitalker::Error(anitalker::Error::Kind::NotFound,
                             anitalker::models::describe_missing(missing, o.models_dir));
    return generate(o);
  });
}
