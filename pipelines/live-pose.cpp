// Animating the head pose while the avatar talks, through the GstController:
// an LFO control source drives anitalkermotion's controllable pose-yaw (the
// bin's child "motion"), so the head turns left and right every few seconds.
// The element reads controlled values at the start of each window (1 s
// windows here, motion::window=25), and with post-messages=true the bus
// shows the yaw each window used.
//
//   build/pipelines/anitalker-live-pose PORTRAIT SPEECH [MODELS_DIR] [OUT.mp4]
//
// Without OUT.mp4 the video goes to autovideosink.  Needs a variant with a
// pose (here hubert_pose_only) and control=true.

#include <gst/controller/controller.h>
#include <gst/gst.h>
#include <cstdio>

static gboolean on_message(GstBus* bus, GstMessage* msg, gpointer loop) {
  (void)bus;
  switch (GST_MESSAGE_TYPE(msg)) {
    case GST_MESSAGE_ELEMENT: {
      const GstStructure* s = gst_message_get_structure(msg);
      if (gst_structure_has_name(s, "anitalker-motion")) {
        const GValue* yaw = gst_structure_get_value(s, "yaw");
        guint64 ts = 0;
        gst_structure_get_uint64(s, "timestamp", &ts);
        if (yaw && gst_value_array_get_size(yaw) > 0)
          printf("t=%.2f s  yaw %.3f\n", (double)ts / GST_SECOND,
                 g_value_get_double(gst_value_array_get_value(yaw, 0)));
      }
      break;
    }
    case GST_MESSAGE_ERROR: {
      GError* e = NULL;
      gst_message_parse_error(msg, &e, NULL);
      fprintf(stderr, "error: %s\n", e->message);
      g_error_free(e);
      g_main_loop_quit((GMainLoop*)loop);
      break;
    }
    case GST_MESSAGE_EOS:
      g_main_loop_quit((GMainLoop*)loop);
      break;
    default:
      break;
  }
  return TRUE;
}

int main(int argc, char** argv) {
  gst_init(&argc, &argv);
  if (argc < 3) {
    fprintf(stderr, "usage: %s PORTRAIT SPEECH [MODELS_DIR] [OUT.mp4]\n", argv[0]);
    return 2;
  }
  const char* models = argc > 3 ? argv[3] : "models";
  gchar* sink = argc > 4 ? g_strdup_printf("x264enc ! mp4mux ! filesink location=\"%s\"", argv[4])
                         : g_strdup("autovideosink");
  gchar* desc = g_strdup_printf(
      "filesrc location=\"%s\" ! decodebin ! audioconvert ! audioresample ! clocksync ! "
      "anitalker name=talk variant=hubert_pose_only mode=streaming control=true motion::window=25 "
      "models-dir=\"%s\" portrait=\"%s\" ! videoconvert ! %s",
      argv[2], models, argv[1], sink);
  GError* err = NULL;
  GstElement* pipe = gst_parse_launch(desc, &err);
  g_free(desc);
  g_free(sink);
  if (!pipe) {
    fprintf(stderr, "pipeline: %s\n", err ? err->message : "?");
    return 1;
  }
  GstElement* talk = gst_bin_get_by_name(GST_BIN(pipe), "talk");
  GstElement* motion = gst_bin_get_by_name(GST_BIN(talk), "motion");
  g_object_set(motion, "post-messages", TRUE, NULL);

  /* A sine of period 4 s between yaw -0.5 and 0.5: the control source gives
   * [0, 1] (offset 0.5, amplitude 0.25 -> 0.25 .. 0.75), which the direct
   * binding maps onto pose-yaw's range [-1, 1]. */
  GstControlSource* lfo = gst_lfo_control_source_new();
  g_object_set(lfo, "waveform", GST_LFO_WAVEFORM_SINE, "frequency", 0.25, "amplitude", 0.25, "offset", 0.5, NULL);
  gst_object_add_control_binding(GST_OBJECT(motion), gst_direct_control_binding_new(GST_OBJECT(motion), "pose-yaw", lfo));
  gst_object_unref(lfo);

  GMainLoop* loop = g_main_loop_new(NULL, FALSE);
  GstBus* bus = gst_element_get_bus(pipe);
  gst_bus_add_watch(bus, on_message, loop);
  gst_object_unref(bus);
  gst_element_set_state(pipe, GST_STATE_PLAYING);
  g_main_loop_run(loop);
  gst_element_set_state(pipe, GST_STATE_NULL);
  gst_object_unref(motion);
  gst_object_unref(talk);
  gst_object_unref(pipe);
  g_main_loop_unref(loop);
  return 0;
}
