// GstHarness tests of anitalkerpaste (gst/gstanitalkerpaste.cpp): the
// identity check (the crop fed back unchanged gives the photo again: exact
// outside the feather band, within 1 level inside), caps and timestamps,
// the renderer's crop event (and a new picture renegotiating), max-size, and
// the errors.  Expected pictures are the photo itself, never our library's
// output.
// OpenCV first: gst-check's macros clash with the iostream headers it pulls in.
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <gst/video/video.h>

#include <glib/gstdio.h>
#include <unistd.h>

#include <cstring>

#include <algorithm>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "gstanitalkercaps.h"

namespace {

// A smooth random photo (w x h, RGB): the values vary, so a misplaced pixel shows.
std::vector<guint8> photo(int w, int h, unsigned seed) {
  std::vector<guint8> p((size_t)w * h * 3);
  std::mt19937 g(seed);
  for (auto& v : p) v = (guint8)(g() & 0xff);
  return p;
}

std::string write_png(const std::vector<guint8>& rgb, int w, int h) {
  gchar* path = nullptr;
  const int fd = g_file_open_tmp("paste-XXXXXX.png", &path, nullptr);
  close(fd);
  cv::Mat m(h, w, CV_8UC3, const_cast<guint8*>(rgb.data())), bgr;
  cv::cvtColor(m, bgr, cv::COLOR_RGB2BGR);
  fail_unless(cv::imwrite(path, bgr));
  std::string out(path);
  g_free(path);
  return out;
}

// The square (x, y, side) cut out of the photo by hand, zero outside it.
std::vector<guint8> cut(const std::vector<guint8>& p, int w, int h, int x, int y, int side) {
  std::vector<guint8> c((size_t)side * side * 3, 0);
  for (int r = 0; r < side; r++)
    for (int col = 0; col < side; col++) {
      const int px = x + col, py = y + r;
      if (px < 0 || py < 0 || px >= w || py >= h) continue;
      std::copy_n(&p[((size_t)py * w + px) * 3], 3, &c[((size_t)r * side + col) * 3]);
    }
  return c;
}

// A packed RGB frame as GStreamer lays it out (rows padded to 4 bytes).
GstBuffer* frame_buffer(const std::vector<guint8>& rgb, int side, GstClockTime pts) {
  GstVideoInfo info;
  gst_video_info_set_format(&info, GST_VIDEO_FORMAT_RGB, side, side);
  GstBuffer* b = gst_buffer_new_allocate(nullptr, GST_VIDEO_INFO_SIZE(&info), nullptr);
  GstMapInfo map;
  gst_buffer_map(b, &map, GST_MAP_WRITE);
  for (int r = 0; r < side; r++)
    std::memcpy(map.data + (size_t)r * GST_VIDEO_INFO_PLANE_STRIDE(&info, 0), &rgb[(size_t)r * side * 3], side * 3);
  gst_buffer_unmap(b, &map);
  GST_BUFFER_PTS(b) = pts;
  GST_BUFFER_DURATION(b) = 40 * GST_MSECOND;
  return b;
}

// The output frame as packed rows, and its size from the caps.
std::vector<guint8> unpack(GstHarness* h, GstBuffer* b, int* w, int* hgt) {
  GstCaps* caps = gst_pad_get_current_caps(h->sinkpad);
  fail_unless(caps != nullptr);
  GstVideoInfo info;
  fail_unless(gst_video_info_from_caps(&info, caps));
  gst_caps_unref(caps);
  *w = info.width;
  *hgt = info.height;
  std::vector<guint8> out((size_t)info.width * info.height * 3);
  GstMapInfo map;
  gst_buffer_map(b, &map, GST_MAP_READ);
  fail_unless_equals_int((int)map.size, (int)GST_VIDEO_INFO_SIZE(&info));
  for (int r = 0; r < info.height; r++)
    std::memcpy(&out[(size_t)r * info.width * 3], map.data + (size_t)r * GST_VIDEO_INFO_PLANE_STRIDE(&info, 0),
                info.width * 3);
  gst_buffer_unmap(b, &map);
  return out;
}

// A harness around an element given its picture and square (read at start,
// so set before the harness plays it).
GstHarness* with_picture(const std::string& png, const std::string& square, int feather) {
  GstElement* e = gst_element_factory_make("anitalkerpaste", nullptr);
  g_object_set(e, "portrait", png.c_str(), "square", square.c_str(), "feather", feather, nullptr);
  GstHarness* h = gst_harness_new_with_element(e, "sink", "src");
  gst_object_unref(e);
  return h;
}

std::string caps_for(int side) {
  return "video/x-raw, format=(string)RGB, width=(int)" + std::to_string(side) + ", height=(int)" +
         std::to_string(side) + ", framerate=(fraction)25/1";
}

}  // namespace

// The identity check on landscape and portrait photos, for squares in the
// middle, at each edge and at each corner (partly outside: padding).
GST_START_TEST(test_identity) {
  for (const auto& [w, h] : {std::pair<int, int>{96, 64}, {64, 96}}) {
    const std::vector<guint8> p = photo(w, h, 5);
    const std::string png = write_png(p, w, h);
    const int s = 40, f = 6;
    const int squares[][2] = {{(w - s) / 2, (h - s) / 2}, {-10, (h - s) / 2}, {w - 30, (h - s) / 2},
                              {(w - s) / 2, -10},         {(w - s) / 2, h - 30}, {-10, -10},
                              {w - 30, -10},              {-10, h - 30},         {w - 30, h - 30}};
    for (const auto& sq : squares) {
      const std::string square = std::to_string(sq[0]) + "," + std::to_string(sq[1]) + "," + std::to_string(s);
      GstHarness* hn = with_picture(png, square, f);
      gst_harness_set_src_caps_str(hn, caps_for(s).c_str());
      fail_unless_equals_int(gst_harness_push(hn, frame_buffer(cut(p, w, h, sq[0], sq[1], s), s, 0)), GST_FLOW_OK);
      GstBuffer* out = gst_harness_pull(hn);
      // From a buffer pool agreed with downstream (ALLOCATION), not a new allocation.
      fail_unless(out->pool != nullptr, "the frame does not come from a pool");
      int ow = 0, oh = 0;
      const std::vector<guint8> o = unpack(hn, out, &ow, &oh);
      fail_unless_equals_int(ow, w);
      fail_unless_equals_int(oh, h);
      int worst_band = 0, worst_elsewhere = 0;
      for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
          // In the band: inside the square, nearer than `f` to its edge.
          const int d = std::min({x - sq[0], sq[0] + s - 1 - x, y - sq[1], sq[1] + s - 1 - y});
          const bool band = d >= 0 && d < f;
          for (int c = 0; c < 3; c++) {
            const int diff = std::abs(o[((size_t)y * w + x) * 3 + c] - p[((size_t)y * w + x) * 3 + c]);
            (band ? worst_band : worst_elsewhere) = std::max(band ? worst_band : worst_elsewhere, diff);
          }
        }
      fail_unless(worst_elsewhere == 0, "%dx%d square %s: %d levels off outside the band", w, h, square.c_str(),
                  worst_elsewhere);
      fail_unless(worst_band <= 1, "%dx%d square %s: %d levels off in the band", w, h, square.c_str(), worst_band);
      gst_buffer_unref(out);
      gst_harness_teardown(hn);
    }
    g_unlink(png.c_str());
  }
}
GST_END_TEST;

// Timestamps and flags pass; the output caps are the picture's, at the
// input's framerate; the held segment follows the caps.
GST_START_TEST(test_caps_and_timestamps) {
  const std::vector<guint8> p = photo(50, 31, 6);  // 31 rows: the odd last one is dropped
  const std::string png = write_png(p, 50, 31);
  GstHarness* h = with_picture(png, "10,0,20", 16);
  gst_harness_set_src_caps_str(h, caps_for(20).c_str());
  GstBuffer* in = frame_buffer(cut(p, 50, 31, 10, 0, 20), 20, 120 * GST_MSECOND);
  GST_BUFFER_FLAG_SET(in, GST_BUFFER_FLAG_DISCONT);
  fail_unless_equals_int(gst_harness_push(h, in), GST_FLOW_OK);
  GstBuffer* out = gst_harness_pull(h);
  fail_unless_equals_uint64(GST_BUFFER_PTS(out), 120 * GST_MSECOND);
  fail_unless_equals_uint64(GST_BUFFER_DURATION(out), 40 * GST_MSECOND);
  fail_unless(GST_BUFFER_FLAG_IS_SET(out, GST_BUFFER_FLAG_DISCONT));
  GstCaps* caps = gst_pad_get_current_caps(h->sinkpad);
  GstStructure* s = gst_caps_get_structure(caps, 0);
  int w = 0, hh = 0, n = 0, d = 0;
  gst_structure_get_int(s, "width", &w);
  gst_structure_get_int(s, "height", &hh);
  gst_structure_get_fraction(s, "framerate", &n, &d);
  fail_unless_equals_int(w, 50);
  fail_unless_equals_int(hh, 30);  // the odd last row dropped
  fail_unless_equals_int(n, 25);
  fail_unless_equals_int(d, 1);
  gst_caps_unref(caps);
  gst_buffer_unref(out);
  // The segment came out after the caps, and EOS passes.
  GstEvent* e;
  bool saw_segment = false;
  while ((e = gst_harness_try_pull_event(h)) != nullptr) {
    if (GST_EVENT_TYPE(e) == GST_EVENT_SEGMENT) saw_segment = true;
    gst_event_unref(e);
  }
  fail_unless(saw_segment);
  fail_unless(gst_harness_push_event(h, gst_event_new_eos()));
  gst_harness_teardown(h);
  g_unlink(png.c_str());
}
GST_END_TEST;

// A live stream's frames wait here as long as the paste takes (12 ms for a
// 1920x1080 picture on 2 cores): upstream's latency plus the longest frame,
// which the pushes took at most.
GST_START_TEST(test_latency) {
  const int w = 1280, hgt = 720;
  const std::vector<guint8> p = photo(w, hgt, 7);
  const std::string png = write_png(p, w, hgt);
  GstHarness* h = with_picture(png, "500,200,256", 16);
  gst_harness_set_src_caps_str(h, caps_for(256).c_str());
  gst_harness_set_upstream_latency(h, 10 * GST_MSECOND);
  GstClockTime took = 0;
  for (int i = 0; i < 3; i++) {
    const gint64 t0 = g_get_monotonic_time();
    fail_unless_equals_int(gst_harness_push(h, frame_buffer(cut(p, w, hgt, 500, 200, 256), 256, i * 40 * GST_MSECOND)),
                           GST_FLOW_OK);
    took = std::max(took, (GstClockTime)(g_get_monotonic_time() - t0) * GST_USECOND);
    gst_buffer_unref(gst_harness_pull(h));
  }
  const GstClockTime latency = gst_harness_query_latency(h);
  fail_unless(latency > 10 * GST_MSECOND && latency - 10 * GST_MSECOND <= took,
              "latency %" GST_TIME_FORMAT ", pushes took up to %" GST_TIME_FORMAT, GST_TIME_ARGS(latency),
              GST_TIME_ARGS(took));
  gst_harness_teardown(h);
  g_unlink(png.c_str());
}
GST_END_TEST;

static GstEvent* crop_event(const std::vector<guint8>& p, int w, int h, int x, int y, int side, bool cropped) {
  GstBuffer* buf = gst_buffer_new_memdup(p.data(), p.size());
  GstStructure* s = gst_structure_new(GST_ANITALKER_EVENT_CROP, "picture", GST_TYPE_BUFFER, buf, "width", G_TYPE_INT, w,
                                      "height", G_TYPE_INT, h, "cropped", G_TYPE_BOOLEAN, (gboolean)cropped, "x",
                                      G_TYPE_INT, x, "y", G_TYPE_INT, y, "side", G_TYPE_INT, side,
                                      GST_ANITALKER_FIELD_PORTRAIT_SERIAL, G_TYPE_UINT, 1u, nullptr);
  gst_buffer_unref(buf);
  return gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM_STICKY, s);
}

// The renderer's event gives the picture; a second one (a new portrait of
// another size) renegotiates; max-size scales the picture down.
GST_START_TEST(test_crop_event) {
  GstHarness* h = gst_harness_new("anitalkerpaste");
  g_object_set(h->element, "max-size", 40, "feather", 2, nullptr);
  gst_harness_set_src_caps_str(h, caps_for(16).c_str());
  const std::vector<guint8> a = photo(80, 40, 7), b = photo(30, 30, 8);
  fail_unless(gst_harness_push_event(h, crop_event(a, 80, 40, 20, 4, 32, true)));
  fail_unless_equals_int(gst_harness_push(h, frame_buffer(std::vector<guint8>(16 * 16 * 3, 9), 16, 0)), GST_FLOW_OK);
  GstBuffer* out = gst_harness_pull(h);
  int w = 0, hh = 0;
  const std::vector<guint8> o = unpack(h, out, &w, &hh);
  fail_unless_equals_int(w, 40);  // 80x40 at max-size 40: scale 0.5
  fail_unless_equals_int(hh, 20);
  // The square 20,4,32 -> 10,2,16 at half size; past the 2-pixel band, the frame's 9.
  fail_unless_equals_int(o[((size_t)10 * 40 + 18) * 3], 9);
  gst_buffer_unref(out);
  // crop=none with a square picture: the whole picture is the square.
  fail_unless(gst_harness_push_event(h, crop_event(b, 30, 30, 0, 0, 0, false)));
  fail_unless_equals_int(gst_harness_push(h, frame_buffer(std::vector<guint8>(16 * 16 * 3, 200), 16, 40 * GST_MSECOND)),
                         GST_FLOW_OK);
  out = gst_harness_pull(h);
  const std::vector<guint8> o2 = unpack(h, out, &w, &hh);
  fail_unless_equals_int(w, 30);
  fail_unless_equals_int(hh, 30);
  fail_unless_equals_int(o2[((size_t)15 * 30 + 15) * 3], 200);
  gst_buffer_unref(out);
  // Then crop=none with a picture that is not square (a live renderer's
  // crop or portrait changed): a WARNING, the picture and square in use
  // stay, the frames go on (the next frame stopped the stream with an
  // ERROR, found 2026-12-07).
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  fail_unless(gst_harness_push_event(h, crop_event(photo(60, 40, 9), 60, 40, 0, 0, 0, false)));
  GstMessage* m = gst_bus_pop_filtered(bus, GST_MESSAGE_WARNING);
  fail_unless(m != nullptr);
  GError* err = nullptr;
  gst_message_parse_warning(m, &err, nullptr);
  fail_unless(g_strrstr(err->message, "crop=none for a 60x40 picture; the picture and square in use stay") != nullptr,
              "%s", err->message);
  g_error_free(err);
  gst_message_unref(m);
  fail_unless_equals_int(gst_harness_push(h, frame_buffer(std::vector<guint8>(16 * 16 * 3, 100), 16, 80 * GST_MSECOND)),
                         GST_FLOW_OK);
  out = gst_harness_pull(h);
  const std::vector<guint8> o3 = unpack(h, out, &w, &hh);
  fail_unless_equals_int(w, 30);
  fail_unless_equals_int(o3[((size_t)15 * 30 + 15) * 3], 100);
  gst_buffer_unref(out);
  fail_unless(gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR) == nullptr);
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(bus);
  gst_harness_teardown(h);
}
GST_END_TEST;

// The errors: no picture; crop=none with a picture that is not square;
// square input only; half the properties.
GST_START_TEST(test_errors) {
  GstHarness* h = gst_harness_new("anitalkerpaste");
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  gst_harness_set_src_caps_str(h, caps_for(16).c_str());
  fail_unless_equals_int(gst_harness_push(h, frame_buffer(std::vector<guint8>(16 * 16 * 3, 0), 16, 0)),
                         GST_FLOW_NOT_NEGOTIATED);
  GstMessage* m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
  fail_unless(m != nullptr);
  GError* err = nullptr;
  gchar* dbg = nullptr;
  gst_message_parse_error(m, &err, &dbg);
  fail_unless(g_strrstr(err->message, "No picture") != nullptr, "%s", err->message);
  g_error_free(err);
  g_free(dbg);
  gst_message_unref(m);
  const std::vector<guint8> a = photo(60, 40, 9);
  fail_unless(gst_harness_push_event(h, crop_event(a, 60, 40, 0, 0, 0, false)));
  fail_unless_equals_int(gst_harness_push(h, frame_buffer(std::vector<guint8>(16 * 16 * 3, 0), 16, 0)),
                         GST_FLOW_NOT_NEGOTIATED);
  m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
  fail_unless(m != nullptr);
  gst_message_parse_error(m, &err, &dbg);
  fail_unless(g_strrstr(err->message, "crop=none") != nullptr, "%s", err->message);
  fail_unless(g_strrstr(dbg, "60x40") != nullptr, "%s", dbg);
  g_error_free(err);
  g_free(dbg);
  gst_message_unref(m);
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(bus);
  gst_harness_teardown(h);

  // Not a square: refused at the caps.
  h = gst_harness_new("anitalkerpaste");
  GstCaps* caps = gst_caps_from_string("video/x-raw, format=(string)RGB, width=(int)16, height=(int)8, framerate=(fraction)25/1");
  fail_unless(!gst_pad_peer_query_accept_caps(h->srcpad, caps));
  gst_caps_unref(caps);
  gst_harness_teardown(h);

  // A square that is not X,Y,SIDE (auto, none, two numbers): the start
  // fails naming the square and the one form it takes (it named the picture,
  // and offered auto and none, which it then refused).
  for (const char* bad : {"auto", "none", "a,b,c", "10,10", "0,0,2147483647"}) {
    GstElement* p = gst_element_factory_make("anitalkerpaste", nullptr);
    GstBus* b = gst_bus_new();
    gst_element_set_bus(p, b);
    g_object_set(p, "portrait", "x.png", "square", bad, nullptr);
    fail_unless_equals_int(gst_element_set_state(p, GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);
    GstMessage* msg = gst_bus_pop_filtered(b, GST_MESSAGE_ERROR);
    fail_unless(msg != nullptr, "%s: no error", bad);
    GError* e2 = nullptr;
    gst_message_parse_error(msg, &e2, nullptr);
    fail_unless(g_strrstr(e2->message, "square") && g_strrstr(e2->message, bad) &&
                    g_strrstr(e2->message, "expected X,Y,SIDE") && !g_strrstr(e2->message, "auto, none") &&
                    g_strrstr(e2->message, "from -1000000 to 1000000"),
                "%s: %s", bad, e2->message);
    g_error_free(e2);
    gst_message_unref(msg);
    gst_element_set_state(p, GST_STATE_NULL);
    gst_element_set_bus(p, nullptr);
    gst_object_unref(b);
    gst_object_unref(p);
  }

  // portrait without square: the start fails.
  GstElement* e = gst_element_factory_make("anitalkerpaste", nullptr);
  g_object_set(e, "portrait", "x.png", nullptr);
  fail_unless_equals_int(gst_element_set_state(e, GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);
  gst_element_set_state(e, GST_STATE_NULL);
  gst_object_unref(e);
}
GST_END_TEST;

static Suite* anitalkerpaste_suite() {
  Suite* s = suite_create("anitalkerpaste");
  TCase* tc = tcase_create("paste");
  tcase_add_test(tc, test_identity);
  tcase_add_test(tc, test_caps_and_timestamps);
  tcase_add_test(tc, test_latency);
  tcase_add_test(tc, test_crop_event);
  tcase_add_test(tc, test_errors);
  suite_add_tcase(s, tc);
  return s;
}

GST_CHECK_MAIN(anitalkerpaste);
