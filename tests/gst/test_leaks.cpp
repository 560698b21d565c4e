// Leak check across 100 pipeline runs (issue "Reliability", memory): each
// run builds a pipeline, plays it to EOS and frees it.  Two checks, after a
// first run that loads the plugin and fills the one-time caches:
//   - GStreamer's leaks tracer (GST_TRACERS=leaks, set in main) tracks every
//     GstObject and GstMiniObject (elements, pads, buffers, caps, events,
//     queries, messages): after 100 more runs no type may have more live
//     objects than after the first;
//   - the C heap in use (glibc mallinfo2: every arena plus mmapped blocks,
//     i.e. torch tensors, model weights and our own structures) must not
//     grow with the number of runs: after 100 runs within a small bound of
//     what it was after 10.
// The pipelines: the whole chain through the `anitalker` bin (hubertenc,
// anitalkermotion, anitalkerrender; tiny chain models) into gfpgansr in
// aligned mode; and, in a second test, two such bins at once whose renderers
// share one executor (max-batch).  Runs with CK_FORK=no (BUILD-NOTES).
// check_util.h first: it brings the standard headers in before gst-check's
// `fail` macro.
#include "check_util.h"

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

using checkutil::data_path;

namespace {

// 100 runs; ANITALKER_LEAK_RUNS changes it: at least 31 (the heap is
// measured from run 10 or 50 on), or under ASan any count (the sanitizer
// setup runs 12: a run takes ten times as long, ASan's allocator leaves the
// heap unmeasured, and LeakSanitizer checks at exit).  Until 2026-12-07 the
// 12 became 100 there (900 s under ASan).
int runs() {
  const char* env = g_getenv("ANITALKER_LEAK_RUNS");
  const int n = env ? atoi(env) : 100;
#if defined(__SANITIZE_ADDRESS__)
  return n >= 1 ? n : 100;
#else
  return n >= 31 ? n : 100;
#endif
}

// Bytes of C heap in use: small chunks in every arena plus mmapped blocks.
size_t heap_in_use() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

GstTracer* leaks_tracer() {
  GList* tracers = gst_tracing_get_active_tracers();
  GstTracer* found = nullptr;
  for (GList* l = tracers; l != nullptr; l = l->next)
    if (found == nullptr && g_strcmp0(G_OBJECT_TYPE_NAME(l->data), "GstLeaksTracer") == 0)
      found = GST_TRACER(gst_object_ref(l->data));
  g_list_free_full(tracers, gst_object_unref);
  return found;
}

// One run: 0.2 s of audio through the bin, its video frames upscaled by
// gfpgansr (aligned: the tiny GFPGAN on each whole frame), to EOS.  With
// `shared`, a second branch with another portrait at the same time, both
// renderers sharing one executor (render::max-batch, issue 20).
int run_once(bool shared = false) {
  const std::string share = shared ? " max-batch=4 max-batch-delay=20000" : "";
  std::string desc =
      "audiotestsrc wave=pink-noise samplesperbuffer=1600 num-buffers=2 ! audio/x-raw,rate=16000,channels=1 ! "
      "anitalker name=a models-dir=\"" +
      data_path("chain") + "\" portrait=\"" + data_path("renderer/monalisa.jpg") + "\" steps=10" + share +
      " ! videoscale ! video/x-raw,width=64,height=64 ! gfpgansr aligned=true model=\"" +
      data_path("face-sr/gfpgan_tiny.pth") + "\" ! fakesink name=sink signal-handoffs=true sync=false";
  if (shared)
    desc += " audiotestsrc wave=white-noise samplesperbuffer=1600 num-buffers=2 ! audio/x-raw,rate=16000,channels=1 ! "
            "anitalker name=b models-dir=\"" +
            data_path("chain") + "\" portrait=\"" + data_path("face-sr/frame_256_bgr.png") + "\" steps=10" + share +
            " ! fakesink name=sink2 signal-handoffs=true sync=false";
  GError* err = nullptr;
  GstElement* pipe = gst_parse_launch(desc.c_str(), &err);
  fail_unless(pipe != nullptr && err == nullptr, "%s", err ? err->message : "?");
  std::atomic<int> frames(0);
  for (const char* name : {"sink", "sink2"}) {
    GstElement* sink = gst_bin_get_by_name(GST_BIN(pipe), name);
    if (sink == nullptr) continue;
    g_signal_connect(sink, "handoff",
                     G_CALLBACK(+[](GstElement*, GstBuffer*, GstPad*, gpointer d) { (*static_cast<std::atomic<int>*>(d))++; }),
                     &frames);
    gst_object_unref(sink);
  }
  fail_unless(gst_element_set_state(pipe, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
  checkutil::wait_eos(pipe, 120 * GST_SECOND);
  fail_unless_equals_int(gst_element_set_state(pipe, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
  gst_object_unref(pipe);
  return frames.load();
}

// The GstObjects and GstMiniObjects alive now (the leaks tracer's
// get-live-objects, which leaves out what GStreamer marks as kept on
// purpose), counted by type.  Call it while nothing else runs.
std::map<std::string, int> live_objects(GstTracer* tracer) {
  GstStructure* info = nullptr;
  g_signal_emit_by_name(tracer, "get-live-objects", &info);
  fail_unless(info != nullptr);
  std::map<std::string, int> by_type;
  const GValue* list = gst_structure_get_value(info, "live-objects-list");
  for (guint i = 0; i < gst_value_list_get_size(list); i++) {
    const GstStructure* s = gst_value_get_structure(gst_value_list_get_value(list, i));
    const GValue* object = gst_structure_get_value(s, "object");
    fail_unless(object != nullptr);
    by_type[G_VALUE_TYPE_NAME(object)]++;
    // The list owns one reference of each object it names ("ownership is
    // transferred to you"), a reference it did not take: take one for it,
    // so that freeing the list leaves the object as it was.
    if (G_VALUE_HOLDS_OBJECT(object))
      g_object_ref(g_value_get_object(object));
    else
      gst_mini_object_ref(GST_MINI_OBJECT_CAST(g_value_get_boxed(object)));
  }
  gst_structure_free(info);
  return by_type;
}

int total(const std::map<std::string, int>& m) {
  int n = 0;
  for (const auto& [type, count] : m) n += count;
  return n;
}

// "Type: before -> after" for each type whose count changed.
std::string changes(const std::map<std::string, int>& before, const std::map<std::string, int>& after) {
  std::string out;
  std::map<std::string, int> all = before;
  for (const auto& [type, count] : after) all[type] += 0;
  for (const auto& [type, unused] : all) {
    const int a = before.count(type) ? before.at(type) : 0, b = after.count(type) ? after.at(type) : 0;
    if (a != b) out += "  " + type + ": " + std::to_string(a) + " -> " + std::to_string(b) + "\n";
  }
  return out;
}

}  // namespace

// The two checks above over `kRuns` runs of run_once(shared), the heap
// measured from run `warm` on.
static void check_no_leaks(bool shared, int kRuns, int warm) {
  GstTracer* tracer = leaks_tracer();
  fail_unless(tracer != nullptr, "the leaks tracer is not active (GST_TRACERS=leaks)");

  const int frames0 = run_once(shared);  // loads the plugin, the models' code paths, one-time caches
  fail_unless(frames0 > 0, "no video frames");
  // A streaming thread drops its GstTask's last reference just after the
  // join that ends the state change (gst_task_func): the tracer's list can
  // name a task whose last reference is going in another thread, and taking
  // one then is a critical warning (seen once, 2026-12-04, with the suite
  // side by side).  Waiting for the task pool's threads first rules that out.
  gst_task_cleanup_all();
  const std::map<std::string, int> live1 = live_objects(tracer);
  // The tracer sees what is alive: a buffer held here shows up.
  GstBuffer* held = gst_buffer_new();
  fail_unless_equals_int(total(live_objects(tracer)), total(live1) + 1);
  gst_buffer_unref(held);

  // The heap in use every 10 runs from run 10 on.  What a run keeps is the
  // lower quartile of the ten-run increments, per run: a leak grows every
  // interval alike, while the per-thread state of a new streaming thread
  // (the bin's queues run three; a thread new to the pool pays OpenMP's team
  // and LibTorch's thread-local caches again) and glibc's arenas come as
  // steps of 30-250 kB in some intervals; on a busy CI machine a third of
  // the intervals had one (2026-12-04: increments of 1-137 kB, median 29 kB,
  // where an idle run gives a median of 3 kB), which the median does not
  // always leave out and the lower quartile does.
  // One measurement: kRuns runs, the heap marked every 10 from run `warm` on.
  auto measure = [&](double* low, size_t* heap_base, size_t* heap_end) {
    std::vector<std::pair<int, size_t>> marks;
    for (int i = 1; i <= kRuns; i++) {
      const int frames = run_once(shared);
      fail_unless_equals_int(frames, frames0);
      if (i >= warm && (i % 10 == 0 || i == kRuns)) {
        marks.emplace_back(i, heap_in_use());
        std::printf("leaks: after run %d, heap in use %.1f kB\n", i, marks.back().second / 1024.0);
      }
    }
    std::vector<double> per_run;
    for (size_t k = 1; k < marks.size(); k++)
      per_run.push_back(((double)marks[k].second - (double)marks[k - 1].second) / (marks[k].first - marks[k - 1].first));
    std::sort(per_run.begin(), per_run.end());
    *low = per_run.empty() ? 0 : per_run[per_run.size() / 4];
    *heap_base = marks.front().second;
    *heap_end = marks.back().second;
  };
  // What a leak of one frame, one buffer list or one tensor per run would
  // show: 90 runs x (>= 4 kB) = 360 kB.  A machine busy with other tests
  // can put steps into most intervals (2026-12-04, CI with the tests side by
  // side: 7 of 9 intervals 45-522 kB, where alone the same build kept 221
  // bytes a run): a measurement over that bound is taken again, and only a
  // heap that grows in both fails; a real leak grows in every run.
  const double bound = 256 * 1024;
  double low;
  size_t heap_base, heap_end;
  measure(&low, &heap_base, &heap_end);
  if (low * (kRuns - warm) >= bound) {
    std::printf("leaks: %+.0f bytes a run over %d runs: measuring again\n", low, kRuns - warm);
    measure(&low, &heap_base, &heap_end);
  }
  // A streaming thread drops its GstTask's last reference just after the
  // join that ends the state change (gst_task_func), so the last run's task
  // can still be alive for a moment: look again for up to a second.  A real
  // leak stays.
  auto grew_since = [](const std::map<std::string, int>& before, const std::map<std::string, int>& after) {
    bool g = false;
    for (const auto& [type, count] : after) g |= count > (before.count(type) ? before.at(type) : 0);
    return g;
  };
  gst_task_cleanup_all();
  std::map<std::string, int> live101 = live_objects(tracer);
  for (int tries = 0; tries < 100 && grew_since(live1, live101); tries++) {
    g_usleep(10 * 1000);
    live101 = live_objects(tracer);
  }
  gst_object_unref(tracer);

  const long grown = (long)heap_end - (long)heap_base;
  const double kept = low * (kRuns - warm);
  std::printf("leaks: %d runs of %d frames; live GStreamer objects after the first run %d, after %d more %d; "
              "heap in use after %d runs %.1f kB, after %d runs %.1f kB (%+.1f kB); lower-quartile increment %+.0f "
              "bytes per run (%+.1f kB over %d runs)\n",
              kRuns + 1, frames0, total(live1), kRuns, total(live101), warm, heap_base / 1024.0, kRuns,
              heap_end / 1024.0, grown / 1024.0, low, kept / 1024.0, kRuns - warm);
  // Fewer is fine (a task of the first run may still have been finishing).
  fail_if(grew_since(live1, live101), "GStreamer objects pile up across runs:\n%s", changes(live1, live101).c_str());
#if !defined(__SANITIZE_ADDRESS__)  // ASan has its own allocator (and quarantine)
  fail_unless(kept < bound,
              "the heap grew by %+.0f bytes a run (lower quartile of the ten-run increments) over %d runs", low,
              kRuns - warm);
#endif
}

GST_START_TEST(test_no_leaks_across_runs) { check_no_leaks(false, runs(), 10); }
GST_END_TEST;

// Two pipelines' renderers sharing one executor, created and torn down 101
// times: nothing of the executor, the requests or the threads that led
// batches may stay.  Twice the threads of the run above: the heap grows in
// its first ~50 runs as new threads fill glibc's arenas and the per-thread
// caches (measured over 150 runs: +925 kB by run 60, then +1.5 kB a run in
// the median), so it is measured from run 50 on; a leak of 5.2 kB a run
// still fails.
GST_START_TEST(test_no_leaks_shared_renderer) { check_no_leaks(true, runs(), runs() >= 100 ? 50 : 10); }
GST_END_TEST;

static Suite* leaks_suite() {
  Suite* s = suite_create("leaks");
  TCase* tc = tcase_create("leaks");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_no_leaks_across_runs);
  tcase_add_test(tc, test_no_leaks_shared_renderer);
  suite_add_tcase(s, tc);
  return s;
}

int main(int argc, char** argv) {
  g_setenv("CK_FORK", "no", FALSE);
  // Before gst_init, which starts the tracers.  Stack traces off: costly.
  g_setenv("GST_TRACERS", "leaks", TRUE);
  gst_check_init(&argc, &argv);
  if (g_getenv("ANITALKER_TEST_DATA") == nullptr) {
    g_printerr("set ANITALKER_TEST_DATA to tests/data (meson test does)\n");
    return 1;
  }
  return gst_check_run_suite(leaks_suite(), "leaks", __FILE__);
}
