// State changes and concurrency, the way users stress long-running
// pipelines (issue "Reliability"): NULL <-> PLAYING 200 times with data
// flowing, properties set from another thread while streaming, and two
// pipelines sharing the models with one torn down while the other streams.
// The tiny chain models (tests/data/chain).  Resident memory is compared
// across the cycles: what we allocate per run must not pile up.  Runs with
// CK_FORK=no (BUILD-NOTES).
// Standard headers first: gst-check defines a `fail` macro that clashes
// with std::ios::fail.
#include <atomic>
#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <gst/check/gstcheck.h>

#include "check_util.h"

using checkutil::data_path;
using checkutil::wait_eos;

namespace {

long rss_kb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return 0;
}

// Live-like audio through the whole bin in streaming mode with small windows.
GstElement* make_pipeline(int buffers, const char* name = "p") {
  const std::string desc = "audiotestsrc wave=pink-noise samplesperbuffer=1600 num-buffers=" + std::to_string(buffers) +
                           " ! audio/x-raw,rate=16000,channels=1 ! anitalker name=talk models-dir=\"" +
                           data_path("chain") + "\" portrait=\"" + data_path("renderer/monalisa.jpg") +
                           "\" mode=streaming steps=10 features::window=400 features::context=400 "
                           "motion::window=5 motion::context=5 ! fakesink name=sink sync=false signal-handoffs=true";
  GError* err = nullptr;
  GstElement* p = gst_parse_launch(desc.c_str(), &err);
  fail_unless(p != nullptr && err == nullptr, "%s", err ? err->message : "?");
  gst_object_set_name(GST_OBJECT(p), name);
  return p;
}

void count_handoff(GstElement*, GstBuffer*, GstPad*, gpointer data) { (*static_cast<std::atomic<int>*>(data))++; }

std::atomic<int>* watch_frames(GstElement* pipe) {
  auto* n = new std::atomic<int>(0);
  GstElement* sink = gst_bin_get_by_name(GST_BIN(pipe), "sink");
  g_signal_connect(sink, "handoff", G_CALLBACK(count_handoff), n);
  gst_object_unref(sink);
  return n;
}

}  // namespace

// NULL -> PLAYING -> NULL 200 times, each time until some video came out
// (or 2 s), then torn down mid-stream.  No crash, no deadlock, no error, and
// the resident memory after 200 cycles within 32 MB of what it was after 20.
GST_START_TEST(test_state_cycles) {
  GstElement* pipe = make_pipeline(-1);
  std::atomic<int>* frames = watch_frames(pipe);
  GstBus* bus = gst_element_get_bus(pipe);
  long rss20 = 0;
  for (int i = 0; i < 200; i++) {
    fail_unless(gst_element_set_state(pipe, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE, "cycle %d", i);
    const int before = frames->load();
    // Wait for a frame, or stop anyway after 2 s (state changes with data
    // in flight are the point); 10 s under ASan, which runs ~10x slower.
#if defined(__SANITIZE_ADDRESS__)
    const int wait_10ms = 1000;
#else
    const int wait_10ms = 200;
#endif
    for (int t = 0; t < wait_10ms && frames->load() == before; t++) g_usleep(10000);
    if (GstMessage* m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR)) {
      GError* e = nullptr;
      gst_message_parse_error(m, &e, nullptr);
      fail("cycle %d: %s", i, e ? e->message : "?");
    }
    fail_unless_equals_int(gst_element_set_state(pipe, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
    if (i == 19) rss20 = rss_kb();
  }
  const long rss200 = rss_kb();
  std::printf("state cycles: %d frames in 200 cycles; RSS after 20 cycles %ld kB, after 200 %ld kB\n", frames->load(),
              rss20, rss200);
  fail_unless(frames->load() >= 200, "only %d frames in 200 cycles", frames->load());
#if !defined(__SANITIZE_ADDRESS__)
  // Under ASan freed memory waits in its quarantine (up to 256 MB), so the
  // resident size says nothing there; LeakSanitizer checks instead.
  fail_unless(rss200 - rss20 < 32 * 1024, "RSS grew by %ld kB over 180 cycles", rss200 - rss20);
#endif
  gst_object_unref(bus);
  gst_object_unref(pipe);
  delete frames;
}
GST_END_TEST;

// Properties set from another thread while the chain streams.
GST_START_TEST(test_properties_from_another_thread) {
  GstElement* pipe = make_pipeline(60);
  GstElement* talk = gst_bin_get_by_name(GST_BIN(pipe), "talk");
  g_object_set(talk, "variant", 2 /* hubert_pose_only */, "control", TRUE, nullptr);
  std::atomic<bool> stop(false);
  struct Ctx {
    GstElement* talk;
    std::atomic<bool>* stop;
  } ctx{talk, &stop};
  GThread* setter = g_thread_new(
      "setter",
      [](gpointer d) -> gpointer {
        Ctx* c = static_cast<Ctx*>(d);
        for (int i = 0; !c->stop->load(); i++) {
          g_object_set(c->talk, "pose-yaw", (gfloat)((i % 21) - 10) / 10.0f, "face-scale", 0.5f + (i % 5) * 0.1f,
                       "control", (gboolean)(i % 3 != 0), nullptr);
          if (i % 50 == 0) g_object_set(c->talk, "portrait", data_path("renderer/monalisa.jpg").c_str(), nullptr);
          g_usleep(2000);
        }
        return nullptr;
      },
      &ctx);
  fail_unless(gst_element_set_state(pipe, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
  wait_eos(pipe, 120 * GST_SECOND);
  stop = true;
  g_thread_join(setter);
  gst_element_set_state(pipe, GST_STATE_NULL);
  gst_object_unref(talk);
  gst_object_unref(pipe);
}
GST_END_TEST;

// Two pipelines in one process share the models (one copy per file); one is
// torn down while the other streams on to EOS with every frame.
GST_START_TEST(test_two_pipelines_sharing_models) {
  GstElement* a = make_pipeline(-1, "a");
  GstElement* b = make_pipeline(60, "b");  // 6 s of audio: 150 video frames
  std::atomic<int>* fa = watch_frames(a);
  std::atomic<int>* fb = watch_frames(b);
  fail_unless(gst_element_set_state(a, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
  fail_unless(gst_element_set_state(b, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
  for (int t = 0; t < 1000 && (fa->load() < 10 || fb->load() < 10); t++) g_usleep(10000);
  fail_unless(fa->load() >= 10 && fb->load() >= 10, "frames: a %d, b %d", fa->load(), fb->load());
  fail_unless_equals_int(gst_element_set_state(a, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
  gst_object_unref(a);
  wait_eos(b, 120 * GST_SECOND);
  std::printf("two pipelines: a %d frames before teardown, b %d frames\n", fa->load(), fb->load());
  fail_unless_equals_int(fb->load(), 150);
  gst_element_set_state(b, GST_STATE_NULL);
  gst_object_unref(b);
  delete fa;
  delete fb;
}
GST_END_TEST;

// Several flushing seeks in a file pipeline through the whole chain (offline
// mode, so each seek restarts an utterance): no error, and the frames after
// each seek start at its position.
GST_START_TEST(test_seeks) {
  const std::string desc = "filesrc location=\"" + data_path("audio/speech_2s_16k.wav") +
                           "\" ! wavparse ! anitalker name=talk models-dir=\"" + data_path("chain") + "\" portrait=\"" +
                           data_path("renderer/monalisa.jpg") + "\" mode=offline steps=10 ! fakesink name=sink sync=false signal-handoffs=true";
  GError* err = nullptr;
  GstElement* pipe = gst_parse_launch(desc.c_str(), &err);
  fail_unless(pipe != nullptr && err == nullptr);
  std::atomic<int>* frames = watch_frames(pipe);
  fail_unless(gst_element_set_state(pipe, GST_STATE_PAUSED) != GST_STATE_CHANGE_FAILURE);
  fail_unless(gst_element_get_state(pipe, nullptr, nullptr, 30 * GST_SECOND) != GST_STATE_CHANGE_FAILURE);
  for (GstClockTime pos : {GST_SECOND, 500 * GST_MSECOND, 1500 * GST_MSECOND}) {
    fail_unless(gst_element_seek_simple(pipe, GST_FORMAT_TIME, (GstSeekFlags)(GST_SEEK_FLAG_FLUSH | GST_SEEK_FLAG_ACCURATE),
                                        pos));
    fail_unless(gst_element_get_state(pipe, nullptr, nullptr, 30 * GST_SECOND) != GST_STATE_CHANGE_FAILURE);
  }
  // Play from the last seek (1.5 s) to the end: about 0.58 s of audio, 14 frames.
  const int before = frames->load();
  fail_unless(gst_element_set_state(pipe, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
  wait_eos(pipe, 60 * GST_SECOND);
  const int after = frames->load() - before;
  std::printf("seeks: %d frames after seeking to 1.5 s\n", after);
  fail_unless(after >= 12 && after <= 16, "%d frames after the seek to 1.5 s of a 2.08 s clip", after);
  gst_element_set_state(pipe, GST_STATE_NULL);
  gst_object_unref(pipe);
  delete frames;
}
GST_END_TEST;

namespace {

// Which thread posted each child's READY->PAUSED, in the order they came.
struct Starts {
  GMutex lock;
  std::vector<std::pair<std::string, GThread*>> seen;
};

GstBusSyncReply record_start(GstBus*, GstMessage* m, gpointer data) {
  auto* starts = static_cast<Starts*>(data);
  if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_STATE_CHANGED) {
    GstState old_state, new_state;
    gst_message_parse_state_changed(m, &old_state, &new_state, nullptr);
    if (old_state == GST_STATE_READY && new_state == GST_STATE_PAUSED) {
      g_mutex_lock(&starts->lock);
      starts->seen.emplace_back(GST_OBJECT_NAME(GST_MESSAGE_SRC(m)), g_thread_self());
      g_mutex_unlock(&starts->lock);
    }
  }
  return GST_BUS_PASS;
}

}  // namespace

// The bin starts hubertenc and anitalkerrender (and gfpgansr) at once, each
// in a thread of its own, and anitalkermotion after them (its warm-up
// measures its window alone): their READY->PAUSED come from two threads,
// and motion's after both.  Twice, through a NULL in between.
GST_START_TEST(test_children_start_together) {
  GstElement* pipe = make_pipeline(10);
  Starts starts;
  g_mutex_init(&starts.lock);
  GstBus* bus = gst_element_get_bus(pipe);
  gst_bus_set_sync_handler(bus, record_start, &starts, nullptr);
  for (int run = 0; run < 2; run++) {
    starts.seen.clear();
    fail_unless(gst_element_set_state(pipe, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
    wait_eos(pipe, 120 * GST_SECOND);
    fail_unless_equals_int(gst_element_set_state(pipe, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
    GThread* features = nullptr;
    GThread* render = nullptr;
    int i_features = -1, i_render = -1, i_motion = -1;
    for (size_t i = 0; i < starts.seen.size(); i++) {
      const std::string& name = starts.seen[i].first;
      if (name == "features") features = starts.seen[i].second, i_features = (int)i;
      if (name == "render") render = starts.seen[i].second, i_render = (int)i;
      if (name == "motion") i_motion = (int)i;
    }
    fail_unless(i_features >= 0 && i_render >= 0 && i_motion >= 0, "run %d: features %d, render %d, motion %d", run,
                i_features, i_render, i_motion);
    fail_unless(features != render, "run %d: hubertenc and anitalkerrender started in one thread, one after the other",
                run);
    fail_unless(i_motion > i_features && i_motion > i_render, "run %d: anitalkermotion started before the others",
                run);
  }
  gst_bus_set_sync_handler(bus, nullptr, nullptr, nullptr);
  gst_object_unref(bus);
  gst_object_unref(pipe);
  g_mutex_clear(&starts.lock);
}
GST_END_TEST;

// A child that fails while the others start beside it (a stage-1 file that
// is not a checkpoint): the bin's change fails with the renderer's error
// naming the file, anitalkermotion does not start, and the pipeline goes to
// NULL and starts again once the file is set right.
GST_START_TEST(test_child_start_failure) {
  GstElement* pipe = make_pipeline(10);
  GstElement* talk = gst_bin_get_by_name(GST_BIN(pipe), "talk");
  GstElement* motion = gst_bin_get_by_name(GST_BIN(talk), "motion");
  const std::string bad = data_path("renderer/monalisa.jpg");
  g_object_set(talk, "stage1", bad.c_str(), nullptr);
  GstBus* bus = gst_element_get_bus(pipe);
  for (int run = 0; run < 2; run++) {
    fail_unless_equals_int(gst_element_set_state(pipe, GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);
    GstMessage* m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
    fail_unless(m != nullptr, "run %d: no error", run);
    GError* e = nullptr;
    gchar* debug = nullptr;
    gst_message_parse_error(m, &e, &debug);
    const std::string text = std::string(e->message) + " " + (debug ? debug : "");
    fail_unless(text.find("monalisa.jpg") != std::string::npos, "run %d: %s", run, text.c_str());
    fail_unless(std::string(GST_OBJECT_NAME(GST_MESSAGE_SRC(m))) == "render", "run %d: from %s", run,
                GST_OBJECT_NAME(GST_MESSAGE_SRC(m)));
    g_error_free(e);
    g_free(debug);
    gst_message_unref(m);
    GstState state;
    gst_element_get_state(motion, &state, nullptr, 0);
    fail_unless_equals_int(state, GST_STATE_READY);
    fail_unless_equals_int(gst_element_set_state(pipe, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
    gst_element_get_state(motion, &state, nullptr, 0);
    fail_unless_equals_int(state, GST_STATE_NULL);
  }
  gst_bus_set_flushing(bus, TRUE);
  gst_bus_set_flushing(bus, FALSE);
  g_object_set(talk, "stage1", nullptr, nullptr);
  fail_unless(gst_element_set_state(pipe, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
  wait_eos(pipe, 120 * GST_SECOND);
  gst_element_set_state(pipe, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(motion);
  gst_object_unref(talk);
  gst_object_unref(pipe);
}
GST_END_TEST;

static Suite* stress_suite() {
  Suite* s = suite_create("stress");
  TCase* tc = tcase_create("stress");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_state_cycles);
  tcase_add_test(tc, test_properties_from_another_thread);
  tcase_add_test(tc, test_two_pipelines_sharing_models);
  tcase_add_test(tc, test_seeks);
  tcase_add_test(tc, test_children_start_together);
  tcase_add_test(tc, test_child_start_failure);
  suite_add_tcase(s, tc);
  return s;
}

int main(int argc, char** argv) {
  g_setenv("CK_FORK", "no", FALSE);
  gst_check_init(&argc, &argv);
  if (g_getenv("ANITALKER_TEST_DATA") == nullptr) {
    g_printerr("set ANITALKER_TEST_DATA to tests/data (meson test does)\n");
    return 1;
  }
  return gst_check_run_suite(stress_suite(), "stress", __FILE__);
}
