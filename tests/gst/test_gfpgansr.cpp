// GstHarness tests of gfpgansr (gst/gstgfpgansr.cpp): caps and the upscale
// sizes, formats, timestamps and latency, aligned mode against the face-sr
// fixture (tolerance from tests/data/face-sr/README.md), zero and several
// faces, QoS degradation, the branch messages and errors, and face-sr
// through the anitalker bin.
//
// There is no tiny RetinaFace fixture, so the tests write narrow ones: the
// released key layout (tests/data/face-sr/retinaface_resnet50_keys.txt)
// with every width divided by 16 (RetinaFace reads its widths from the
// shapes), zero weights, and head biases that set what is found whatever
// the frame holds: no face at all, or one 16-px face with fixed landmarks
// per 32x32 cell of the coarsest level (two faces in a 64x32 frame).
// Runs with CK_FORK=no (BUILD-NOTES: torch/OpenMP and fork).
#include <ATen/ATen.h>
#include <glib/gstdio.h>
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <gst/video/video.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "check_util.h"
#include "../narrow_retinaface.h"
#include "checkpoint_writer.h"
#include "face_restore.h"
#include "gfpgan.h"
#include "parsenet.h"
#include "retinaface.h"

namespace face = anitalker::face;
using checkutil::data_path;

namespace {

const c10::Device kCpu(c10::kCPU);

// Set up in main: a temporary folder with the written detectors.
std::string g_tmp;
std::string zero_face_detector() { return g_tmp + "/no_face_retinaface.pth"; }
std::string two_face_detector() { return g_tmp + "/two_face_retinaface.pth"; }
std::string gfpgan_path() { return data_path("face-sr/gfpgan_tiny.pth"); }
std::string parser_path() { return data_path("face-sr/parsenet_tiny.pth"); }

// The narrow RetinaFace (see the top of the file; tests/narrow_retinaface.h).
void write_detector(const std::string& path, bool two_faces) {
  testutil::write_narrow_retinaface(data_path("face-sr/retinaface_resnet50_keys.txt"), path, two_faces);
}

cv::Mat image(const std::string& name) {
  cv::Mat m = cv::imread(data_path("face-sr/" + name), cv::IMREAD_COLOR);
  fail_unless(!m.empty(), "cannot read %s", name.c_str());
  return m;
}

// A smooth test frame without faces (BGR).
cv::Mat gradient(int w, int h) {
  cv::Mat m(h, w, CV_8UC3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) m.at<cv::Vec3b>(y, x) = cv::Vec3b(x * 255 / w, y * 255 / h, (x + y) % 256);
  return m;
}

// BGR image -> a buffer in `format` (RGB, BGR, RGBx), rows as GstVideoInfo lays them out.
GstBuffer* frame_buffer(const cv::Mat& bgr, GstVideoFormat format, GstClockTime pts = 0,
                        GstClockTime duration = 40 * GST_MSECOND) {
  GstVideoInfo info;
  gst_video_info_set_format(&info, format, bgr.cols, bgr.rows);
  GstBuffer* buf = gst_buffer_new_allocate(nullptr, GST_VIDEO_INFO_SIZE(&info), nullptr);
  GstVideoFrame f;
  fail_unless(gst_video_frame_map(&f, &info, buf, GST_MAP_WRITE));
  void* data = GST_VIDEO_FRAME_PLANE_DATA(&f, 0);
  const size_t stride = GST_VIDEO_FRAME_PLANE_STRIDE(&f, 0);
  if (format == GST_VIDEO_FORMAT_RGBx) {
    cv::Mat out(bgr.rows, bgr.cols, CV_8UC4, data, stride);
    cv::cvtColor(bgr, out, cv::COLOR_BGR2RGBA);
  } else {
    cv::Mat out(bgr.rows, bgr.cols, CV_8UC3, data, stride);
    if (format == GST_VIDEO_FORMAT_RGB)
      cv::cvtColor(bgr, out, cv::COLOR_BGR2RGB);
    else
      bgr.copyTo(out);
  }
  gst_video_frame_unmap(&f);
  GST_BUFFER_PTS(buf) = pts;
  GST_BUFFER_DURATION(buf) = duration;
  return buf;
}

// An output buffer in `format` of w x h -> BGR.
cv::Mat buffer_to_bgr(GstBuffer* buf, GstVideoFormat format, int w, int h) {
  GstVideoInfo info;
  gst_video_info_set_format(&info, format, w, h);
  fail_unless_equals_uint64(gst_buffer_get_size(buf), GST_VIDEO_INFO_SIZE(&info));
  GstVideoFrame f;
  fail_unless(gst_video_frame_map(&f, &info, buf, GST_MAP_READ));
  void* data = GST_VIDEO_FRAME_PLANE_DATA(&f, 0);
  const size_t stride = GST_VIDEO_FRAME_PLANE_STRIDE(&f, 0);
  cv::Mat bgr;
  if (format == GST_VIDEO_FORMAT_RGBx)
    cv::cvtColor(cv::Mat(h, w, CV_8UC4, data, stride), bgr, cv::COLOR_RGBA2BGR);
  else if (format == GST_VIDEO_FORMAT_RGB)
    cv::cvtColor(cv::Mat(h, w, CV_8UC3, data, stride), bgr, cv::COLOR_RGB2BGR);
  else
    bgr = cv::Mat(h, w, CV_8UC3, data, stride).clone();
  gst_video_frame_unmap(&f);
  return bgr;
}

struct ByteDiff {
  double max = 0, exact = 0;
};

ByteDiff compare(const cv::Mat& got, const cv::Mat& want) {
  fail_unless(got.size() == want.size(), "size %dx%d, want %dx%d", got.cols, got.rows, want.cols, want.rows);
  cv::Mat d;
  cv::absdiff(got, want, d);
  d = d.reshape(1);
  ByteDiff r;
  cv::minMaxLoc(d, nullptr, &r.max);
  r.exact = 1 - cv::countNonZero(d) / static_cast<double>(d.total());
  return r;
}

GstElement* make_sr(const std::string& detector, guint upscale = 2) {
  GstElement* e = gst_element_factory_make("gfpgansr", nullptr);
  fail_unless(e != nullptr, "gfpgansr not found (GST_PLUGIN_PATH_1_0?)");
  g_object_set(e, "model", gfpgan_path().c_str(), "upscale", upscale, nullptr);
  if (!detector.empty()) g_object_set(e, "detector", detector.c_str(), nullptr);
  return e;
}

GstHarness* new_harness(GstElement* e) {
  GstHarness* h = gst_harness_new_with_element(e, "sink", "src");
  gst_object_unref(e);
  return h;
}

void set_video_caps(GstHarness* h, const char* format, int w, int h_) {
  gchar* s = g_strdup_printf(
      "video/x-raw, format=(string)%s, width=(int)%d, height=(int)%d, "
      "framerate=(fraction)25/1, pixel-aspect-ratio=(fraction)1/1",
      format, w, h_);
  gst_harness_set_src_caps_str(h, s);
  g_free(s);
}

guint64 stat(GstElement* e, const char* field) {
  GstStructure* s = nullptr;
  g_object_get(e, "stats", &s, nullptr);
  fail_unless(s != nullptr);
  guint64 v = 0;
  fail_unless(gst_structure_get_uint64(s, field, &v), "stats without %s", field);
  gst_structure_free(s);
  return v;
}

// The first message of `type` on the bus (null if none).
GstMessage* pop(GstBus* bus, GstMessageType type) { return gst_bus_pop_filtered(bus, type); }

// The next error on `bus`: of `domain` and `code`, its message holding each
// of `texts`.
void expect_error(GstBus* bus, GQuark domain, gint code, std::initializer_list<const char*> texts) {
  GstMessage* msg = pop(bus, GST_MESSAGE_ERROR);
  fail_unless(msg != nullptr, "no error posted");
  GError* err = nullptr;
  gst_message_parse_error(msg, &err, nullptr);
  fail_unless(g_error_matches(err, domain, code), "%s", err->message);
  for (const char* text : texts) fail_unless(strstr(err->message, text) != nullptr, "%s", err->message);
  g_error_free(err);
  gst_message_unref(msg);
}

std::string message_text(GstMessage* msg) {
  GError* err = nullptr;
  gchar* debug = nullptr;
  switch (GST_MESSAGE_TYPE(msg)) {
    case GST_MESSAGE_ERROR:
      gst_message_parse_error(msg, &err, &debug);
      break;
    case GST_MESSAGE_WARNING:
      gst_message_parse_warning(msg, &err, &debug);
      break;
    default:
      gst_message_parse_info(msg, &err, &debug);
      break;
  }
  std::string s = err ? err->message : "";
  g_clear_error(&err);
  g_free(debug);
  return s;
}

// Starts `e` (to PAUSED) on a private bus; returns the state change result
// and the bus (the caller unrefs it after setting the element to NULL).
GstStateChangeReturn start_on_bus(GstElement* e, GstBus** bus) {
  *bus = gst_bus_new();
  gst_element_set_bus(e, *bus);
  return gst_element_set_state(e, GST_STATE_PAUSED);
}

void stop_on_bus(GstElement* e, GstBus* bus) {
  gst_element_set_state(e, GST_STATE_NULL);
  gst_element_set_bus(e, nullptr);
  gst_object_unref(bus);
  gst_object_unref(e);
}

}  // namespace

/* --- caps ------------------------------------------------------------------ */

// Zero faces: the frame upscaled with Lanczos (the lib's background), at 1, 2
// and 4 times the size; the output caps carry the size and the framerate.
GST_START_TEST(test_upscale_sizes) {
  const cv::Mat frame = gradient(64, 48);
  for (guint up : {1u, 2u, 4u}) {
    GstHarness* h = new_harness(make_sr(zero_face_detector(), up));
    set_video_caps(h, "RGB", 64, 48);
    GstCaps* caps = gst_pad_get_current_caps(h->sinkpad);
    fail_unless(caps != nullptr);
    gchar* want_s = g_strdup_printf(
        "video/x-raw, format=(string)RGB, width=(int)%u, height=(int)%u, "
        "framerate=(fraction)25/1, pixel-aspect-ratio=(fraction)1/1",
        64 * up, 48 * up);
    GstCaps* want = gst_caps_from_string(want_s);
    fail_unless(gst_caps_is_equal(caps, want), "x%u: got %" GST_PTR_FORMAT, up, caps);
    gst_caps_unref(want);
    gst_caps_unref(caps);
    g_free(want_s);

    GstBuffer* out = gst_harness_push_and_pull(h, frame_buffer(frame, GST_VIDEO_FORMAT_RGB));
    fail_unless(out != nullptr);
    const ByteDiff d =
        compare(buffer_to_bgr(out, GST_VIDEO_FORMAT_RGB, 64 * up, 48 * up), face::upscale_background(frame, up));
    fail_unless_equals_int(d.max, 0);
    gst_buffer_unref(out);
    fail_unless_equals_uint64(stat(h->element, "frames"), 1);
    fail_unless_equals_uint64(stat(h->element, "faces"), 0);
    gst_harness_teardown(h);
  }
}
GST_END_TEST;

// BGR and RGBx come out in the same format, with the same pixels.
GST_START_TEST(test_formats) {
  const cv::Mat frame = gradient(32, 32);
  const cv::Mat want = face::upscale_background(frame, 2);
  const std::pair<const char*, GstVideoFormat> formats[] = {{"BGR", GST_VIDEO_FORMAT_BGR},
                                                            {"RGBx", GST_VIDEO_FORMAT_RGBx}};
  for (const auto& [name, format] : formats) {
    GstHarness* h = new_harness(make_sr(zero_face_detector()));
    set_video_caps(h, name, 32, 32);
    GstCaps* caps = gst_pad_get_current_caps(h->sinkpad);
    fail_unless_equals_string(gst_structure_get_string(gst_caps_get_structure(caps, 0), "format"), name);
    gst_caps_unref(caps);
    GstBuffer* out = gst_harness_push_and_pull(h, frame_buffer(frame, format));
    fail_unless_equals_int(compare(buffer_to_bgr(out, format, 64, 64), want).max, 0);
    gst_buffer_unref(out);
    gst_harness_teardown(h);
  }
}
GST_END_TEST;

// Caps queries in both directions: the sink side is the src side divided by
// upscale, and a size that is not a multiple has no input.
GST_START_TEST(test_transform_caps) {
  GstHarness* h = new_harness(make_sr(zero_face_detector(), 2));
  gst_harness_set_sink_caps_str(h,
                                "video/x-raw, format=(string)BGR, width=(int)128, height=(int)96, "
                                "framerate=(fraction)25/1");
  GstCaps* caps = gst_pad_peer_query_caps(h->srcpad, nullptr);
  GstCaps* want = gst_caps_from_string(
      "video/x-raw, format=(string)BGR, width=(int)64, height=(int)48, "
      "framerate=(fraction)25/1");
  fail_unless(gst_caps_is_equal(caps, want), "got %" GST_PTR_FORMAT, caps);
  gst_caps_unref(want);
  gst_caps_unref(caps);
  gst_harness_teardown(h);

  h = new_harness(make_sr(zero_face_detector(), 2));
  gst_harness_set_sink_caps_str(h, "video/x-raw, format=(string)RGB, width=(int)127, height=(int)96");
  caps = gst_pad_peer_query_caps(h->srcpad, nullptr);
  fail_unless(gst_caps_is_empty(caps), "got %" GST_PTR_FORMAT, caps);
  gst_caps_unref(caps);
  gst_harness_teardown(h);

  // Upstream's range comes out as the multiples of upscale.
  h = new_harness(make_sr(zero_face_detector(), 4));
  GstCaps* in = gst_caps_from_string("video/x-raw, format=(string)RGB, width=(int)[ 10, 20 ], height=(int)8");
  GstCaps* t = GST_BASE_TRANSFORM_GET_CLASS(h->element)
                   ->transform_caps(GST_BASE_TRANSFORM(h->element), GST_PAD_SINK, in, nullptr);
  gint w = 0;
  const GValue* wv = gst_structure_get_value(gst_caps_get_structure(t, 0), "width");
  fail_unless(GST_VALUE_HOLDS_INT_RANGE(wv));
  fail_unless_equals_int(gst_value_get_int_range_min(wv), 40);
  fail_unless_equals_int(gst_value_get_int_range_max(wv), 80);
  fail_unless_equals_int(gst_value_get_int_range_step(wv), 4);
  fail_unless(gst_structure_get_int(gst_caps_get_structure(t, 0), "height", &w));
  fail_unless_equals_int(w, 32);
  gst_caps_unref(t);
  gst_caps_unref(in);
  gst_harness_teardown(h);
}
GST_END_TEST;

/* --- timing ---------------------------------------------------------------- */

GST_START_TEST(test_timestamps_and_latency) {
  GstHarness* h = new_harness(make_sr(zero_face_detector()));
  set_video_caps(h, "RGB", 16, 16);
  const cv::Mat frame = gradient(16, 16);
  const GstClockTime pts[] = {0, 40 * GST_MSECOND, 100 * GST_MSECOND};
  const GstClockTime dur[] = {40 * GST_MSECOND, 60 * GST_MSECOND, 33 * GST_MSECOND};
  GstClockTime took = 0;
  for (int i = 0; i < 3; ++i) {
    GstBuffer* in = frame_buffer(frame, GST_VIDEO_FORMAT_RGB, pts[i], dur[i]);
    if (i == 2) GST_BUFFER_FLAG_SET(in, GST_BUFFER_FLAG_DISCONT);
    const gint64 t0 = g_get_monotonic_time();
    GstBuffer* out = gst_harness_push_and_pull(h, in);
    took = std::max(took, (GstClockTime)(g_get_monotonic_time() - t0) * GST_USECOND);
    fail_unless_equals_uint64(GST_BUFFER_PTS(out), pts[i]);
    fail_unless_equals_uint64(GST_BUFFER_DURATION(out), dur[i]);
    fail_unless_equals_int(GST_BUFFER_FLAG_IS_SET(out, GST_BUFFER_FLAG_DISCONT), i == 2);
    gst_buffer_unref(out);
  }
  // Nothing is held back, but a live stream's frames wait for the networks:
  // upstream's latency plus the longest frame, which these three took at
  // most (and more than nothing).
  gst_harness_set_upstream_latency(h, 20 * GST_MSECOND);
  GstClockTime latency = gst_harness_query_latency(h);
  fail_unless(latency > 20 * GST_MSECOND, "%" GST_TIME_FORMAT, GST_TIME_ARGS(latency));
  fail_unless(latency - 20 * GST_MSECOND <= took, "%" GST_TIME_FORMAT " > %" GST_TIME_FORMAT,
              GST_TIME_ARGS(latency - 20 * GST_MSECOND), GST_TIME_ARGS(took));
  // A larger frame: when it took 10 ms more, a LATENCY message and a higher
  // answer; else the same answer.
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  set_video_caps(h, "RGB", 256, 256);
  gst_buffer_unref(gst_harness_push_and_pull(h, frame_buffer(gradient(256, 256), GST_VIDEO_FORMAT_RGB, 0, 0)));
  GstMessage* msg = gst_bus_pop_filtered(bus, GST_MESSAGE_LATENCY);
  if (msg != nullptr) {
    gst_message_unref(msg);
    fail_unless(gst_harness_query_latency(h) > latency);
  } else {
    fail_unless_equals_uint64(gst_harness_query_latency(h), latency);  // it was not 10 ms slower
  }
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(bus);
  // Not live: upstream's, nothing added.
  gst_harness_set_live(h, FALSE);
  fail_unless_equals_uint64(gst_harness_query_latency(h), 20 * GST_MSECOND);
  gst_harness_teardown(h);
}
GST_END_TEST;

// Renegotiation mid-stream: the input size and format change three times
// (64x48 RGB, 32x32 BGR, 96x64 RGBx, each with new caps and a new segment);
// every output frame has the size and format of the caps in force when its
// input came, the output caps follow (x2), the pixels are the upscaled frame
// of that size, and timestamps pass through.
GST_START_TEST(test_renegotiation) {
  GstHarness* h = new_harness(make_sr(zero_face_detector(), 2));
  struct Step {
    const char* name;
    GstVideoFormat format;
    int w, h;
  };
  const Step steps[] = {{"RGB", GST_VIDEO_FORMAT_RGB, 64, 48},
                        {"BGR", GST_VIDEO_FORMAT_BGR, 32, 32},
                        {"RGBx", GST_VIDEO_FORMAT_RGBx, 96, 64}};
  GstClockTime pts = 0;
  for (const Step& step : steps) {
    set_video_caps(h, step.name, step.w, step.h);
    const cv::Mat frame = gradient(step.w, step.h);
    for (int i = 0; i < 2; ++i, pts += 40 * GST_MSECOND) {
      GstBuffer* out = gst_harness_push_and_pull(h, frame_buffer(frame, step.format, pts));
      fail_unless(out != nullptr);
      fail_unless_equals_uint64(GST_BUFFER_PTS(out), pts);
      fail_unless_equals_uint64(GST_BUFFER_DURATION(out), 40 * GST_MSECOND);
      const ByteDiff d =
          compare(buffer_to_bgr(out, step.format, 2 * step.w, 2 * step.h), face::upscale_background(frame, 2));
      fail_unless_equals_int(d.max, 0);
      gst_buffer_unref(out);
    }
    GstCaps* caps = gst_pad_get_current_caps(h->sinkpad);
    const GstStructure* st = gst_caps_get_structure(caps, 0);
    gint w = 0, hh = 0;
    fail_unless(gst_structure_get_int(st, "width", &w) && gst_structure_get_int(st, "height", &hh));
    fail_unless_equals_int(w, 2 * step.w);
    fail_unless_equals_int(hh, 2 * step.h);
    fail_unless_equals_string(gst_structure_get_string(st, "format"), step.name);
    gst_caps_unref(caps);
  }
  fail_unless_equals_uint64(stat(h->element, "frames"), 6);
  gst_harness_teardown(h);
}
GST_END_TEST;

/* --- faces ------------------------------------------------------------------- */

// aligned=true without a detector: the aligned crop comes out as the
// reference's restored face (README: max 1 level, >= 99.9 % exact).
GST_START_TEST(test_aligned_matches_the_reference) {
  GstElement* e = make_sr("", 1);
  g_object_set(e, "aligned", TRUE, nullptr);
  GstHarness* h = new_harness(e);
  set_video_caps(h, "BGR", 512, 512);
  GstBuffer* out = gst_harness_push_and_pull(h, frame_buffer(image("aligned_crop_512_bgr.png"), GST_VIDEO_FORMAT_BGR));
  const ByteDiff d = compare(buffer_to_bgr(out, GST_VIDEO_FORMAT_BGR, 512, 512), image("gfpgan_restored_512_bgr.png"));
  g_print("aligned mode vs gfpgan_restored_512_bgr.png: max %g levels, %.4f%% exact (tolerance 1, 99.9%%)\n", d.max,
          100 * d.exact);
  fail_unless(d.max <= 1, "max %g", d.max);
  fail_unless(d.exact >= 0.999, "exact %g", d.exact);
  gst_buffer_unref(out);
  fail_unless_equals_uint64(stat(h->element, "faces"), 1);
  // aligned=false while playing, with no detector loaded: refused with a
  // WARNING, aligned stays true and the frames go on (the next frame used
  // to stop the stream with an ERROR, found 2026-12-07).
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  g_object_set(h->element, "aligned", FALSE, nullptr);
  GstMessage* msg = pop(bus, (GstMessageType)(GST_MESSAGE_WARNING | GST_MESSAGE_ERROR));
  fail_unless(msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_WARNING);
  GError* err = nullptr;
  gchar* dbg = nullptr;
  gst_message_parse_warning(msg, &err, &dbg);
  fail_unless(strstr(err->message, "\"aligned\"") != nullptr, "%s", err->message);
  fail_unless(strstr(dbg, "aligned=false needs the face detector") != nullptr, "%s", dbg);
  g_error_free(err);
  g_free(dbg);
  gst_message_unref(msg);
  gboolean aligned = FALSE;
  g_object_get(h->element, "aligned", &aligned, nullptr);
  fail_unless(aligned);
  out = gst_harness_push_and_pull(h, frame_buffer(image("aligned_crop_512_bgr.png"), GST_VIDEO_FORMAT_BGR));
  fail_unless(out != nullptr);
  gst_buffer_unref(out);
  fail_unless_equals_uint64(stat(h->element, "faces"), 2);
  fail_unless(gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR) == nullptr);
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(bus);
  gst_harness_teardown(h);
}
GST_END_TEST;

// Two faces in a frame: both restored and pasted, as the lib's enhance()
// does with the same detector; the frame around them is the background.
GST_START_TEST(test_several_faces) {
  const cv::Mat frame = gradient(64, 32);
  auto detector = anitalker::retinaface::Model::load(two_face_detector(), kCpu);
  const face::FaceRestorer lib(anitalker::gfpgan::Model::load(gfpgan_path(), kCpu), detector, nullptr);
  const std::vector<face::Face> faces = lib.faces(frame);
  fail_unless_equals_int(faces.size(), 2);
  const cv::Mat want = lib.enhance(frame);
  fail_unless(compare(want, face::upscale_background(frame, 2)).max > 0, "the faces changed nothing");

  GstHarness* h = new_harness(make_sr(two_face_detector()));
  set_video_caps(h, "RGB", 64, 32);
  GstBuffer* out = gst_harness_push_and_pull(h, frame_buffer(frame, GST_VIDEO_FORMAT_RGB));
  fail_unless_equals_int(compare(buffer_to_bgr(out, GST_VIDEO_FORMAT_RGB, 128, 64), want).max, 0);
  gst_buffer_unref(out);
  fail_unless_equals_uint64(stat(h->element, "faces"), 2);
  gst_harness_teardown(h);
}
GST_END_TEST;

// detect-every (lib: FaceRestorer::frame with a Track): the frames after a
// detection reuse its faces until detect_every frames have passed, then the
// detector runs again.  Shown with two detectors on one track: the
// two-face one detects, the zero-face one would find nothing.
GST_START_TEST(test_detect_every_reuses_faces) {
  const cv::Mat frame = gradient(64, 32);
  auto model = anitalker::gfpgan::Model::load(gfpgan_path(), kCpu);
  const face::FaceRestorer two(model, anitalker::retinaface::Model::load(two_face_detector(), kCpu), nullptr);
  const face::FaceRestorer none(model, anitalker::retinaface::Model::load(zero_face_detector(), kCpu), nullptr);
  const auto detect = face::FaceRestorer::FrameMode::Detect;
  for (int every : {1, 3}) {
    face::FaceRestorer::Track track;
    size_t n = 0;
    const cv::Mat detected = two.frame(frame, detect, &n, &track, every);
    fail_unless_equals_int(n, 2);
    for (int i = 1; i < 4; ++i) {
      const cv::Mat later = none.frame(frame, detect, &n, &track, every);
      // Reused for frames 1 and 2 with every=3, found anew (none) at frame 3.
      const size_t want = every == 3 && i < 3 ? 2 : 0;
      fail_unless_equals_int(n, want);
      if (want) fail_unless_equals_int(compare(later, detected).max, 0);
    }
  }
  // Another frame size detects anew.
  face::FaceRestorer::Track track;
  size_t n = 0;
  two.frame(frame, detect, &n, &track, 5);
  none.frame(gradient(32, 32), detect, &n, &track, 5);
  fail_unless_equals_int(n, 0);
}
GST_END_TEST;

// max-faces=1: only the larger of the two faces is restored, as the lib
// does with the same cap; the element counts one face a frame.
GST_START_TEST(test_max_faces) {
  const cv::Mat frame = gradient(64, 32);
  face::Options options;
  options.max_faces = 1;
  const face::FaceRestorer lib(anitalker::gfpgan::Model::load(gfpgan_path(), kCpu),
                               anitalker::retinaface::Model::load(two_face_detector(), kCpu), nullptr, options);
  fail_unless_equals_int(lib.faces(frame).size(), 1);
  const cv::Mat want = lib.enhance(frame);
  GstElement* e = make_sr(two_face_detector());
  g_object_set(e, "max-faces", 1u, "detect-every", 2u, nullptr);
  GstHarness* h = new_harness(e);
  set_video_caps(h, "RGB", 64, 32);
  for (int i = 0; i < 3; ++i) {
    GstBuffer* out = gst_harness_push_and_pull(h, frame_buffer(frame, GST_VIDEO_FORMAT_RGB, i * 40 * GST_MSECOND));
    fail_unless_equals_int(compare(buffer_to_bgr(out, GST_VIDEO_FORMAT_RGB, 128, 64), want).max, 0);
    gst_buffer_unref(out);
  }
  fail_unless_equals_uint64(stat(h->element, "faces"), 3);
  gst_harness_teardown(h);
}
GST_END_TEST;

// parse-every=3 on the element: its frames are the lib's FaceRestorer::frame
// with a track and the same setting (the masks of frame 1 paste frames 2
// and 3, frame 4 makes its own), which differ from parsing every frame.
GST_START_TEST(test_parse_every) {
  std::vector<cv::Mat> frames;
  for (int i = 0; i < 4; ++i) frames.push_back(gradient(64, 32) + cv::Scalar(40 * i, 25 * i, 60 * i));
  const face::FaceRestorer lib(anitalker::gfpgan::Model::load(gfpgan_path(), kCpu),
                               anitalker::retinaface::Model::load(two_face_detector(), kCpu),
                               anitalker::parsenet::Model::load(parser_path(), kCpu));
  const auto detect = face::FaceRestorer::FrameMode::Detect;
  face::FaceRestorer::Track reused, fresh;
  std::vector<cv::Mat> want;
  double apart = 0;
  size_t n = 0;
  for (const cv::Mat& f : frames) {
    want.push_back(lib.frame(f, detect, &n, &reused, 1, 3));
    apart = std::max(apart, compare(want.back(), lib.frame(f, detect, &n, &fresh, 1, 1)).max);
  }
  fail_unless(apart > 0, "the reused masks changed nothing: the test cannot tell");
  GstElement* e = make_sr(two_face_detector());
  g_object_set(e, "parser", parser_path().c_str(), "parse-every", 3u, nullptr);
  GstHarness* h = new_harness(e);
  set_video_caps(h, "RGB", 64, 32);
  for (size_t i = 0; i < frames.size(); ++i) {
    GstBuffer* out = gst_harness_push_and_pull(h, frame_buffer(frames[i], GST_VIDEO_FORMAT_RGB, i * 40 * GST_MSECOND));
    fail_unless_equals_int(compare(buffer_to_bgr(out, GST_VIDEO_FORMAT_RGB, 128, 64), want[i]).max, 0);
    gst_buffer_unref(out);
  }
  gst_harness_teardown(h);
}
GST_END_TEST;

// Under QoS pressure a late frame is degraded to the plain resize (and
// counted), not dropped; with qos=false nothing is degraded.
GST_START_TEST(test_qos_degrades) {
  const cv::Mat frame = gradient(16, 16);
  for (gboolean qos : {(gboolean)TRUE, (gboolean)FALSE}) {
    GstElement* e = make_sr("", 2);
    // aligned mode: a restored frame differs from the plain resize.
    g_object_set(e, "aligned", TRUE, "qos", qos, nullptr);
    GstHarness* h = new_harness(e);
    set_video_caps(h, "RGB", 16, 16);
    // Downstream: the frame at 1 s was 1 s late -> frames before 3 s are too late.
    fail_unless(
        gst_harness_push_upstream_event(h, gst_event_new_qos(GST_QOS_TYPE_UNDERFLOW, 2.0, GST_SECOND, GST_SECOND)));
    GstBuffer* out = gst_harness_push_and_pull(h, frame_buffer(frame, GST_VIDEO_FORMAT_RGB, 2 * GST_SECOND));
    fail_unless(out != nullptr, "the late frame was dropped");
    fail_unless_equals_uint64(GST_BUFFER_PTS(out), 2 * GST_SECOND);
    const double d = compare(buffer_to_bgr(out, GST_VIDEO_FORMAT_RGB, 32, 32), face::upscale_background(frame, 2)).max;
    if (qos) {
      fail_unless_equals_int(d, 0);
    } else {
      fail_unless(d > 0, "qos=false: the frame was not restored");
    }
    gst_buffer_unref(out);
    fail_unless_equals_uint64(stat(h->element, "frames"), 1);
    fail_unless_equals_uint64(stat(h->element, "degraded"), qos ? 1 : 0);
    gst_harness_teardown(h);
  }
}
GST_END_TEST;

/* --- branches and errors ----------------------------------------------------- */

// A zero-length (or short) video buffer: a STREAM FORMAT error that gives
// both sizes, not a crash.
GST_START_TEST(test_short_buffer) {
  GstElement* e = make_sr(zero_face_detector());
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(e, bus);
  GstHarness* h = new_harness(e);
  set_video_caps(h, "RGB", 32, 32);
  for (gsize size : {(gsize)0, (gsize)100}) {
    GstBuffer* buf = gst_buffer_new_allocate(nullptr, size, nullptr);
    GST_BUFFER_PTS(buf) = 0;
    fail_unless_equals_int(gst_harness_push(h, buf), GST_FLOW_ERROR);
    expect_error(bus, GST_STREAM_ERROR, GST_STREAM_ERROR_FORMAT, {"3072 bytes"});
  }
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(bus);
  gst_harness_teardown(h);
}
GST_END_TEST;

// Caps whose restored frames GStreamer cannot describe (over 2 GB): a
// negotiation error with the sizes, before any frame (before, a
// negotiation failure that said nothing).  (Frames it can describe but
// whose work would need more memory than is free are refused the same way,
// with the memory: not tested, as that depends on the machine.)
GST_START_TEST(test_output_too_large) {
  GstElement* e = make_sr(zero_face_detector(), 4);
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(e, bus);
  GstHarness* h = new_harness(e);
  set_video_caps(h, "RGB", 10000, 10000);
  GstBuffer* buf = gst_buffer_new_allocate(nullptr, 16, nullptr);
  GST_BUFFER_PTS(buf) = 0;
  fail_if(gst_harness_push(h, buf) == GST_FLOW_OK);
  expect_error(bus, GST_CORE_ERROR, GST_CORE_ERROR_NEGOTIATION,
               {"Cannot restore 10000x10000 frames at 4 times their size", "40000x40000"});
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(bus);
  gst_harness_teardown(h);
}
GST_END_TEST;

GST_START_TEST(test_missing_model) {
  GstElement* e = gst_element_factory_make("gfpgansr", nullptr);
  const char* missing = "/nonexistent/anitalker/GFPGANv1.4.pth";
  g_object_set(e, "model", missing, "aligned", TRUE, nullptr);
  GstBus* bus;
  fail_unless_equals_int(start_on_bus(e, &bus), GST_STATE_CHANGE_FAILURE);
  GstMessage* msg = pop(bus, GST_MESSAGE_ERROR);
  fail_unless(msg != nullptr);
  GError* err = nullptr;
  gst_message_parse_error(msg, &err, nullptr);
  fail_unless(g_error_matches(err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND), "%s", err->message);
  fail_unless(strstr(err->message, missing) != nullptr, "%s", err->message);
  g_error_free(err);
  gst_message_unref(msg);
  stop_on_bus(e, bus);
}
GST_END_TEST;

// No detector and not aligned: an error that says what to set.
GST_START_TEST(test_no_detector) {
  GstElement* e = make_sr("");
  GstBus* bus;
  fail_unless_equals_int(start_on_bus(e, &bus), GST_STATE_CHANGE_FAILURE);
  GstMessage* msg = pop(bus, GST_MESSAGE_ERROR);
  fail_unless(msg != nullptr);
  const std::string text = message_text(msg);
  fail_unless(text.find("detection_Resnet50_Final.pth") != std::string::npos, "%s", text.c_str());
  fail_unless(text.find("aligned=true") != std::string::npos, "%s", text.c_str());
  gst_message_unref(msg);
  stop_on_bus(e, bus);

  // A detector file that does not exist, not aligned: the file is named.
  e = make_sr("/nonexistent/anitalker/detection_Resnet50_Final.pth");
  fail_unless_equals_int(start_on_bus(e, &bus), GST_STATE_CHANGE_FAILURE);
  msg = pop(bus, GST_MESSAGE_ERROR);
  fail_unless(msg != nullptr);
  fail_unless(message_text(msg).find("/nonexistent/anitalker/detection_Resnet50_Final.pth") != std::string::npos);
  gst_message_unref(msg);
  stop_on_bus(e, bus);
}
GST_END_TEST;

// The element says which paste branch runs: INFO without a parser, WARNING
// with a parser file that does not exist, nothing with one that loads.
GST_START_TEST(test_parser_branch_messages) {
  struct Case {
    const char* parser;
    GstMessageType type;  // the message expected, 0 = none about the parser
  };
  const std::string real = parser_path();
  const Case cases[] = {{nullptr, GST_MESSAGE_INFO},
                        {"/nonexistent/anitalker/parsing_parsenet.pth", GST_MESSAGE_WARNING},
                        {real.c_str(), (GstMessageType)0}};
  for (const Case& c : cases) {
    GstElement* e = make_sr(zero_face_detector());
    if (c.parser) g_object_set(e, "parser", c.parser, nullptr);
    GstBus* bus;
    fail_unless(start_on_bus(e, &bus) != GST_STATE_CHANGE_FAILURE);
    GstMessage* msg = pop(bus, (GstMessageType)(GST_MESSAGE_INFO | GST_MESSAGE_WARNING | GST_MESSAGE_ERROR));
    if (c.type == 0) {
      fail_unless(msg == nullptr, "unexpected message: %s", msg ? message_text(msg).c_str() : "");
    } else {
      fail_unless(msg != nullptr, "no message for parser %s", c.parser ? c.parser : "(none)");
      fail_unless_equals_int(GST_MESSAGE_TYPE(msg), c.type);
      const std::string text = message_text(msg);
      fail_unless(text.find("soft mask") != std::string::npos, "%s", text.c_str());
      if (c.parser) fail_unless(text.find(c.parser) != std::string::npos, "%s", text.c_str());
      gst_message_unref(msg);
    }
    stop_on_bus(e, bus);
  }
}
GST_END_TEST;

/* --- warm-up ---------------------------------------------------------------- */

// warm-up (the default): READY->PAUSED runs GFPGAN and ParseNet once on a
// grey face, so the models the element holds (the process's copies, which
// Model::load returns while they are held) are warm: another warm_up does
// nothing.  warm-up=false leaves them cold.  The files are copies of the
// fixtures under other names, which nothing else in this run holds (main
// keeps the fixtures' models), so each start loads its models again.
GST_START_TEST(test_warm_up) {
  const c10::Device cpu(c10::kCPU);
  const std::string model = g_tmp + "/warm_gfpgan.pth", parser = g_tmp + "/warm_parsenet.pth";
  for (const auto& [from, to] : {std::make_pair(gfpgan_path(), model), std::make_pair(parser_path(), parser)}) {
    gchar* bytes = nullptr;
    gsize n = 0;
    fail_unless(g_file_get_contents(from.c_str(), &bytes, &n, nullptr), "cannot read %s", from.c_str());
    fail_unless(g_file_set_contents(to.c_str(), bytes, n, nullptr), "cannot write %s", to.c_str());
    g_free(bytes);
  }
  for (const gboolean warm : {gboolean(TRUE), gboolean(FALSE)}) {
    GstElement* e = make_sr(zero_face_detector());
    g_object_set(e, "model", model.c_str(), "parser", parser.c_str(), "warm-up", warm, nullptr);
    GstBus* bus;
    fail_unless(start_on_bus(e, &bus) != GST_STATE_CHANGE_FAILURE);
    {
      auto held = anitalker::gfpgan::Model::load(model, cpu);
      auto held_parser = anitalker::parsenet::Model::load(parser, cpu);
      fail_unless_equals_int(held.use_count(), 2);  // the element's and this
      fail_unless_equals_int(anitalker::gfpgan::warm_up(*held), !warm);
      fail_unless_equals_int(anitalker::parsenet::warm_up(*held_parser), !warm);
    }
    stop_on_bus(e, bus);
  }
  g_unlink(model.c_str());
  g_unlink(parser.c_str());
}
GST_END_TEST;

/* --- the bin ----------------------------------------------------------------- */

// face-sr=true: the anitalker bin finds GFPGANv1.4.pth,
// detection_Resnet50_Final.pth and parsing_parsenet.pth in models-dir (here
// the face-sr fixtures and the no-face detector next to the chain fixtures),
// and its video comes out at twice the renderer's 64x64.
GST_START_TEST(test_bin_face_sr) {
  const std::string models = g_tmp + "/models";
  fail_unless(g_mkdir_with_parents(models.c_str(), 0755) == 0);
  const std::pair<std::string, std::string> links[] = {
      {"stage1.ckpt", data_path("chain/stage1.ckpt")},
      {"stage2_audio_only_hubert.ckpt", data_path("chain/stage2_audio_only_hubert.ckpt")},
      {"chinese-hubert-large", data_path("chain/chinese-hubert-large")},
      {"GFPGANv1.4.pth", gfpgan_path()},
      {"parsing_parsenet.pth", parser_path()},
      {"detection_Resnet50_Final.pth", zero_face_detector()}};
  for (const auto& [name, target] : links) {
    const std::string link = models + "/" + name;
    g_unlink(link.c_str());
    fail_unless(symlink(target.c_str(), link.c_str()) == 0, "symlink %s", link.c_str());
  }

  GstElement* bin = gst_element_factory_make("anitalker", nullptr);
  fail_unless(bin != nullptr);
  g_object_set(bin, "models-dir", models.c_str(), "portrait", data_path("renderer/monalisa.jpg").c_str(), "face-sr",
               TRUE, "steps", 2, "detect-every", 3u, "parse-every", 4u, nullptr);
  GstHarness* h = new_harness(bin);
  gst_harness_set_src_caps_str(h,
                               "audio/x-raw, format=(string)F32LE, rate=(int)16000, channels=(int)1, "
                               "layout=(string)interleaved");
  // 0.5 s of a 220 Hz tone.
  std::vector<float> tone(8000);
  for (size_t i = 0; i < tone.size(); ++i) tone[i] = 0.3f * std::sin(2 * M_PI * 220 * i / 16000.0);
  GstBuffer* audio = gst_buffer_new_memdup(tone.data(), tone.size() * sizeof(float));
  GST_BUFFER_PTS(audio) = 0;
  fail_unless_equals_int(gst_harness_push(h, audio), GST_FLOW_OK);
  fail_unless(gst_harness_push_event(h, gst_event_new_eos()));
  fail_unless(checkutil::wait_eos(h), "no EOS out of the bin");  // its out-queue has its own thread

  GstCaps* caps = gst_pad_get_current_caps(h->sinkpad);
  fail_unless(caps != nullptr, "no video caps");
  gint w = 0, hh = 0;
  fail_unless(gst_structure_get_int(gst_caps_get_structure(caps, 0), "width", &w));
  fail_unless(gst_structure_get_int(gst_caps_get_structure(caps, 0), "height", &hh));
  fail_unless_equals_int(w, 128);
  fail_unless_equals_int(hh, 128);
  gst_caps_unref(caps);
  const guint frames = gst_harness_buffers_received(h);
  fail_unless(frames >= 10, "%u frames", frames);

  GstElement* sr = gst_bin_get_by_name(GST_BIN(bin), "sr");
  fail_unless(sr != nullptr);
  fail_unless_equals_uint64(stat(sr, "frames"), frames);
  gchar* parser = nullptr;
  g_object_get(sr, "parser", &parser, nullptr);
  fail_unless(g_str_has_suffix(parser, "parsing_parsenet.pth"), "%s", parser);
  g_free(parser);
  guint detect_every = 0, parse_every = 0;
  g_object_get(sr, "detect-every", &detect_every, "parse-every", &parse_every, nullptr);
  fail_unless_equals_int(detect_every, 3);  // the bin's, passed on
  fail_unless_equals_int(parse_every, 4);
  gboolean warm = FALSE;
  g_object_get(sr, "warm-up", &warm, nullptr);
  fail_unless(warm, "gfpgansr of a bin in auto mode does not warm up");
  gst_object_unref(sr);
  gst_harness_teardown(h);

  // In offline mode the bin's children do not warm up, gfpgansr neither.
  GstElement* offline = gst_element_factory_make("anitalker", nullptr);
  gst_util_set_object_arg(G_OBJECT(offline), "mode", "offline");
  g_object_set(offline, "models-dir", models.c_str(), "portrait", data_path("renderer/monalisa.jpg").c_str(),
               "face-sr", TRUE, nullptr);
  fail_unless(gst_element_set_state(offline, GST_STATE_READY) == GST_STATE_CHANGE_SUCCESS);
  sr = gst_bin_get_by_name(GST_BIN(offline), "sr");
  fail_unless(sr != nullptr);
  warm = TRUE;
  g_object_get(sr, "warm-up", &warm, nullptr);
  fail_unless(!warm, "gfpgansr of an offline bin warms up");
  gst_object_unref(sr);
  gst_element_set_state(offline, GST_STATE_NULL);
  gst_object_unref(offline);
}
GST_END_TEST;

static Suite* gfpgansr_suite() {
  Suite* s = suite_create("gfpgansr");
  TCase* tc = tcase_create("caps");
  tcase_add_test(tc, test_upscale_sizes);
  tcase_add_test(tc, test_formats);
  tcase_add_test(tc, test_transform_caps);
  tcase_add_test(tc, test_timestamps_and_latency);
  tcase_add_test(tc, test_renegotiation);
  suite_add_tcase(s, tc);

  tc = tcase_create("faces");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_aligned_matches_the_reference);
  tcase_add_test(tc, test_several_faces);
  tcase_add_test(tc, test_detect_every_reuses_faces);
  tcase_add_test(tc, test_parse_every);
  tcase_add_test(tc, test_max_faces);
  tcase_add_test(tc, test_qos_degrades);
  suite_add_tcase(s, tc);

  tc = tcase_create("errors");
  tcase_add_test(tc, test_missing_model);
  tcase_add_test(tc, test_short_buffer);
  tcase_add_test(tc, test_output_too_large);
  tcase_add_test(tc, test_no_detector);
  tcase_add_test(tc, test_parser_branch_messages);
  tcase_add_test(tc, test_warm_up);
  suite_add_tcase(s, tc);

  tc = tcase_create("bin");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_bin_face_sr);
  suite_add_tcase(s, tc);
  return s;
}

int main(int argc, char** argv) {
  // BUILD-NOTES: libgomp may hang in a forked child once torch has run in
  // the parent; meson sets CK_FORK=no, this covers running the binary alone.
  g_setenv("CK_FORK", "no", FALSE);
  gst_check_init(&argc, &argv);
  if (g_getenv("ANITALKER_TEST_DATA") == nullptr) {
    g_printerr("set ANITALKER_TEST_DATA to tests/data (meson test does)\n");
    return 1;
  }
  gchar* tmp = g_dir_make_tmp("gfpgansr-XXXXXX", nullptr);
  g_tmp = tmp;
  g_free(tmp);
  try {
    write_detector(zero_face_detector(), false);
    write_detector(two_face_detector(), true);
  } catch (const std::exception& e) {
    g_printerr("cannot write the test detectors: %s\n", e.what());
    return 1;
  }
  // One copy of each model for the whole run (the loaders cache per file
  // while a copy is alive).
  auto keep_model = anitalker::gfpgan::Model::load(gfpgan_path(), kCpu);
  auto keep_parser = anitalker::parsenet::Model::load(parser_path(), kCpu);

  const int failed = gst_check_run_suite(gfpgansr_suite(), "gfpgansr", __FILE__);
  for (const char* name : {"stage1.ckpt", "stage2_audio_only_hubert.ckpt", "chinese-hubert-large", "GFPGANv1.4.pth",
                           "parsing_parsenet.pth", "detection_Resnet50_Final.pth"})
    g_unlink((g_tmp + "/models/" + name).c_str());
  g_rmdir((g_tmp + "/models").c_str());
  g_unlink(zero_face_detector().c_str());
  g_unlink(two_face_detector().c_str());
  g_rmdir(g_tmp.c_str());
  return failed;
}
