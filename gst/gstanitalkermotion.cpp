// anitalkermotion: turns AniTalker audio features into motion latents with
// the stage-2 diffusion motion generator (spec/motion.md).  This file does
// caps, buffering, timestamps, latency, the offline / streaming policy, the
// portrait codes from downstream, the controls and the model's life cycle
// (DESIGN.md); the maths is in lib/motion.h and lib/motion_driver.h.

/**
 * SECTION:element-anitalkermotion
 * @title: anitalkermotion
 *
 * Generates AniTalker motion latents (`application/x-anitalker-motion`, 25
 * frames a second, 20 values a frame for the released checkpoints) from the
 * audio features of hubertenc (`application/x-anitalker-features`: HuBERT
 * hidden states at 50 Hz or MFCCs at 100 Hz), with one of the five released
 * stage-2 checkpoints (stage2_audio_only_hubert.ckpt, stage2_pose_only_hubert.ckpt,
 * stage2_full_control_hubert.ckpt, stage2_pose_only_mfcc.ckpt,
 * stage2_full_control_mfcc.ckpt).  The variant is read from the checkpoint's
 * keys; the feature kind, layer count and width it needs are fixed on the
 * sink pad.
 *
 * The generator needs the portrait's start and direction codes.  It asks the
 * downstream anitalkerrender for them (the custom query
 * "anitalker-portrait-codes") before it generates, and again after the
 * renderer announces a new portrait; a new portrait applies from the next
 * generated window.  So anitalkerrender must follow (queues in between are
 * fine).
 *
 * Motion frame n gets PTS t0 + n * 40 ms, where t0 is the PTS of the first
 * feature buffer (the segment's start when it has none).  Video frame n is
 * driven by feature frames 2n and 2n+1 (HuBERT) or 4n .. 4n+3 (MFCC), as in
 * the reference demo; a trailing odd frame is dropped as the demo drops it.
 *
 * Each buffer carries a #GstAnitalkerMotionMeta with the pose, face location
 * and face scale of its frames: the model's predictions with
 * #GstAnitalkerMotion:control off, else the controls given.  With
 * #GstAnitalkerMotion:post-messages the same values are posted as element
 * messages named "anitalker-motion" (fields: "timestamp", "duration",
 * "frames", and arrays "yaw", "pitch", "roll", "location", "scale").
 *
 * ## Offline and streaming
 *
 * In offline mode the element gathers the utterance until EOS and then runs
 * exactly what the reference demo runs: the whole sequence through the
 * conformers, #GstAnitalkerMotion:steps DDIM steps from the noise the demo
 * draws with `--seed` #GstAnitalkerMotion:seed.  With the released
 * checkpoints the output is then the demo's.
 *
 * In streaming mode the element generates windows of
 * #GstAnitalkerMotion:window frames as soon as their features (and
 * #GstAnitalkerMotion:lookahead frames more) have arrived.  Each window also
 * re-generates the last #GstAnitalkerMotion:context frames already sent, held
 * at every denoising step to the values that went out, so that the new frames
 * continue them; the look-ahead frames are dropped and generated again by the
 * next window.  Memory stays bounded; the LATENCY query adds at most
 * (window + lookahead) frames: only what a window waits past the hops of
 * hubertenc upstream (nothing when each window is one of its hops, as at
 * the bin's presets).  The result is an approximation of the offline
 * output (the conformers see only the window); docs/elements.md gives the
 * measured distance and seam jumps.
 *
 * In `auto` mode (the default) the element streams when upstream reports a
 * live source in the LATENCY query and works offline otherwise.
 *
 * Streaming from a live source, a window that starts later than its
 * features' timestamps and upstream's latency allow means the generator is
 * slower than real time here; left so, it would fall further behind at
 * every window, for as long as the stream runs.  With
 * #GstAnitalkerMotion:min-steps (10 by default) the element then gives its
 * next windows fewer DDIM steps, down to that count, and goes back up once
 * it is in time again and the larger count fits (docs/elements.md "Falling
 * behind").  Each change posts an "anitalker-motion-steps" element message
 * (`steps`, `previous`, `configured`, `frame`: the first frame with the new
 * count, `late`: nanoseconds the window started late); the first
 * step down after the element started is also a WARNING.  Offline, and from a source that
 * is not live, every window has #GstAnitalkerMotion:steps.  A live window
 * that starts more than 2 s late with no fewer steps left to take (at
 * min-steps, or with it 0) is a stream that falls further behind: a WARNING
 * says so, once after each start.
 *
 * FLUSH_STOP drops the features not yet used.  A SEGMENT (without a flush:
 * concat, a playlist), and in streaming mode a DISCONT buffer or a GAP
 * event, first finishes the stream so far (as at EOS), then starts anew;
 * the next output buffer is flagged DISCONT.
 *
 * The control properties (pose, face location and scale) are controllable:
 * a #GstControlSource can animate them; they are read at the start of each
 * window (streaming) or once (offline).
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 filesrc location=speech.wav ! decodebin ! audioconvert ! audioresample !
 *     hubertenc model=models/chinese-hubert-large !
 *     anitalkermotion checkpoint=models/stage2_audio_only_hubert.ckpt seed=0 !
 *     anitalkerrender checkpoint=models/stage1.ckpt portrait=face.jpg !
 *     videoconvert ! x264enc ! mp4mux ! filesink location=out.mp4
 * ]|
 */

#include "gstanitalkermotion.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "batcher.h"
#include "gstanitalkercaps.h"
#include "gstanitalkermotionmeta.h"
#include "motion.h"
#include "motion_driver.h"

GST_DEBUG_CATEGORY_STATIC(gst_anitalker_motion_debug);
#define GST_CAT_DEFAULT gst_anitalker_motion_debug

namespace motion = anitalker::motion;

#define FPS 25
// Frames per output buffer offline: downstream can start on the first ones.
#define FRAMES_PER_BUFFER 25

enum {
  PROP_0,
  PROP_CHECKPOINT,
  PROP_TYPE,
  PROP_STEPS,
  PROP_SEED,
  PROP_CONTROL,
  PROP_POSE_YAW,
  PROP_POSE_PITCH,
  PROP_POSE_ROLL,
  PROP_POSE_FILE,
  PROP_FACE_LOCATION,
  PROP_FACE_SCALE,
  PROP_POST_MESSAGES,
  PROP_MIN_STEPS,
};

// auto, then the released variants (gst_anitalker_variant_get_type() takes
// them from the second on).
static const GEnumValue kMotionTypes[] = {
    {GST_ANITALKER_MOTION_TYPE_AUTO, "Whatever the checkpoint holds", "auto"},
    {GST_ANITALKER_MOTION_TYPE_HUBERT_AUDIO_ONLY, "HuBERT features, no controls", "hubert_audio_only"},
    {GST_ANITALKER_MOTION_TYPE_HUBERT_POSE_ONLY, "HuBERT features, pose control", "hubert_pose_only"},
    {GST_ANITALKER_MOTION_TYPE_HUBERT_FULL_CONTROL, "HuBERT features, pose, location and scale control",
     "hubert_full_control"},
    {GST_ANITALKER_MOTION_TYPE_MFCC_POSE_ONLY, "MFCC features, pose control", "mfcc_pose_only"},
    {GST_ANITALKER_MOTION_TYPE_MFCC_FULL_CONTROL, "MFCC features, pose, location and scale control",
     "mfcc_full_control"},
    {0, nullptr, nullptr},
};

GType gst_anitalker_motion_type_get_type(void) {
  static GType type = 0;
  if (g_once_init_enter(&type)) {
    GType t = g_enum_register_static("GstAnitalkerMotionType", kMotionTypes);
    g_once_init_leave(&type, t);
  }
  return type;
}

GType gst_anitalker_variant_get_type(void) {
  static GType type = 0;
  if (g_once_init_enter(&type)) {
    GType t = g_enum_register_static("GstAnitalkerVariant", kMotionTypes + 1);
    g_once_init_leave(&type, t);
  }
  return type;
}

namespace {

// The `type` values other than auto are lib's variants, in lib's order.
static_assert((int)motion::Variant::HubertAudioOnly + 1 == GST_ANITALKER_MOTION_TYPE_HUBERT_AUDIO_ONLY &&
                  (int)motion::Variant::HubertPoseOnly + 1 == GST_ANITALKER_MOTION_TYPE_HUBERT_POSE_ONLY &&
                  (int)motion::Variant::HubertFullControl + 1 == GST_ANITALKER_MOTION_TYPE_HUBERT_FULL_CONTROL &&
                  (int)motion::Variant::MfccPoseOnly + 1 == GST_ANITALKER_MOTION_TYPE_MFCC_POSE_ONLY &&
                  (int)motion::Variant::MfccFullControl + 1 == GST_ANITALKER_MOTION_TYPE_MFCC_FULL_CONTROL,
              "GstAnitalkerMotionType follows motion::Variant");
motion::Variant variant_of(GstAnitalkerMotionType t) { return (motion::Variant)(t - 1); }

// The C++ state of one element: the model, the portrait's codes, the stream.
struct MotionState {
  // Under `lock`, held briefly: read from the streaming thread, from query
  // and upstream-event handlers (any thread) and from the state change.
  GstAnitalkerMutex lock;
  std::shared_ptr<const motion::Model> model;  // from start to stop
  motion::StreamConfig cfg;                    // as at start (steps, seed)
  at::Tensor pose_file;                        // (N,3) degrees, or undefined
  GstAnitalkerCodes codes;                     // the portrait's, from downstream (thread-safe)

  // Streaming thread only (and the serialized events, which run in it).
  // The features since the stream (re)started: the whole utterance offline,
  // the windows streaming (lib/motion_driver.h).  From start to stop.
  std::unique_ptr<motion::Stream> stream;
  // Under `lock`: streaming, the first motion frame of the next window (for
  // the LATENCY answer, from any thread).
  gint64 next_window = 0;

  // Streaming thread only (and start): the steps of live windows
  // (min-steps), what the last window measured, and which warnings were
  // given since the start.
  std::unique_ptr<motion::StepController> steps;
  double last_compute_s = 0;
  gint64 last_start_us = 0;    // when the last window started (monotonic; 0: none this stream)
  double last_cycle_s = 0;     // from the last window's start to the next one's
  bool warned = false;         // the first step down
  bool warned_behind = false;  // far behind at the fewest steps
};

// Feature frames a second: HuBERT's 50, MFCC's 100.
int feature_rate(const motion::Model& m) { return m.hubert() ? 50 : 100; }

}  // namespace

struct _GstAnitalkerMotion {
  GstAnitalkerElement parent;

  // Properties, under the object lock.
  gchar* checkpoint;
  gint type;  // GstAnitalkerMotionType
  guint steps;
  guint64 seed;
  gboolean control;
  gfloat yaw, pitch, roll;
  gchar* pose_file;
  gfloat location, scale;
  gboolean post_messages;
  guint min_steps;

  MotionState* state;
};

/**
 * GstAnitalkerMotion!sink:
 *
 * Audio features from hubertenc (gstanitalkercaps.h): HuBERT hidden states
 * (kind=hubert, rate 50/1) for the hubert_* checkpoints, MFCCs (kind=mfcc,
 * rate 100/1) for the mfcc_* ones.  Layers and dims must be the
 * checkpoint's (25 x 1024 for the released HuBERT checkpoints, 1 x 39 for
 * MFCC).
 */
static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(GST_ANITALKER_FEATURES_CAPS));

/**
 * GstAnitalkerMotion!src:
 *
 * Motion latents, float32, time-major, 25 frames a second, `dims` (20 for
 * the released checkpoints) values a frame, each buffer with a
 * #GstAnitalkerMotionMeta.
 */
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS(GST_ANITALKER_MOTION_CAPS_NAME ", dims = (int) [ 1, 2147483647 ], framerate = (fraction) 25/1"));

#define gst_anitalker_motion_parent_class parent_class
G_DEFINE_TYPE(GstAnitalkerMotion, gst_anitalker_motion, GST_TYPE_ANITALKER_ELEMENT);
GST_ELEMENT_REGISTER_DEFINE(anitalkermotion, "anitalkermotion", GST_RANK_NONE, GST_TYPE_ANITALKER_MOTION);

static void gst_anitalker_motion_flush(GstAnitalkerElement* element);
static GstClockTime gst_anitalker_motion_latency(GstAnitalkerElement* element, gboolean streaming);
static void gst_anitalker_motion_steps_changed(GstAnitalkerMotion* self, motion::Stream* stream, int before,
                                               int after, double late, const std::string& why);

// The streaming windows, in motion frames of 40 ms.
static const GstAnitalkerWindowSpec kWindows = {
    "frames", 1, 1500, 50, 1500, 10, 0,
    "Streaming: motion frames (40 ms each) generated per window, the hop; with the look-ahead at most the latency "
    "added (less when hubertenc's hops fill whole windows); may change while playing (default: 50)",
    "Streaming: frames already sent that each window re-generates, held to their values (default: 10)",
    "Streaming: frames generated past each window and dropped, at most the window; adds latency (default: 0)",
};

/* --- Start and stop ------------------------------------------------------ */

// READY->PAUSED: loads the checkpoint and the pose file, so that a bad file
// fails the state change with its name, and checks the settings.
static gboolean gst_anitalker_motion_start(GstAnitalkerElement* element) {
  GstAnitalkerMotion* self = GST_ANITALKER_MOTION(element);
  MotionState* st = self->state;

  GST_OBJECT_LOCK(self);
  const std::string checkpoint = self->checkpoint ? self->checkpoint : "";
  const std::string pose_path = self->pose_file ? self->pose_file : "";
  const GstAnitalkerMotionType type = (GstAnitalkerMotionType)self->type;
  motion::StreamConfig cfg;
  cfg.steps = (int)self->steps;
  cfg.seed = self->seed;
  const int min_steps = (int)self->min_steps;
  GST_OBJECT_UNLOCK(self);
  gst_anitalker_element_windows(element, &cfg.window, &cfg.context, &cfg.lookahead);

  std::shared_ptr<const motion::Model> model;
  at::Tensor pose_file;
  std::unique_ptr<motion::StepController> steps;
  if (!GST_ANITALKER_TRY(self, gst_anitalker_printf("steps=%d cannot be used.", cfg.steps), false,
                         motion::ddim_timesteps(cfg.steps)) ||
      !GST_ANITALKER_TRY(self, gst_anitalker_printf("min-steps=%d cannot be used.", min_steps), false,
                         steps = std::make_unique<motion::StepController>(cfg.steps, min_steps)) ||
      !gst_anitalker_element_load(element, checkpoint, "checkpoint", "the stage-2 checkpoint",
                                  {anitalker::Precision::Fp32, anitalker::Precision::Bf16}, "the motion generator",
                                  [&](c10::Device device, anitalker::Precision precision) {
                                    model = type == GST_ANITALKER_MOTION_TYPE_AUTO
                                                ? motion::Model::load(checkpoint, device, precision)
                                                : motion::Model::load(checkpoint, device, variant_of(type), precision);
                                  }) ||
      (!pose_path.empty() &&
       !GST_ANITALKER_TRY(self, "Could not read the pose file \"" + pose_path + "\".", true,
                          pose_file = motion::read_pose_file(pose_path))))
    return FALSE;
  gst_anitalker_element_set_model_name(
      element, "the " + motion::variant_name(model->variant()) + " checkpoint \"" + checkpoint + "\"");
  GST_INFO_OBJECT(self, "%s: %s, motion %d, start %d, on %s", checkpoint.c_str(),
                  motion::variant_name(model->variant()).c_str(), model->motion_dim(), model->start_dim(),
                  model->device().str().c_str());
  // With max-batch above 1, the windows go through the process's executor
  // for this model (lib motion::shared_windows).
  auto shared = gst_anitalker_element_share(element, [&](guint max_batch, std::chrono::microseconds delay) {
    return motion::shared_windows(model, max_batch, delay);
  });

  GstAnitalkerLocked lock(&st->lock);
  st->model = model;
  st->cfg = cfg;
  st->pose_file = pose_file;
  st->codes.reset();
  st->stream = std::make_unique<motion::Stream>(model, cfg);
  st->stream->set_executor(std::move(shared));
  st->next_window = 0;
  GST_DEBUG_OBJECT(self, "live windows: %zu step counts from %d", steps->ladder().size(), cfg.steps);
  st->steps = std::move(steps);
  st->last_compute_s = st->last_cycle_s = 0;
  st->last_start_us = 0;
  st->warned = st->warned_behind = false;
  return TRUE;
}

// The model and the settings taken at start (null model: stopped).
static std::shared_ptr<const motion::Model> gst_anitalker_motion_model(MotionState* st, motion::StreamConfig* cfg) {
  GstAnitalkerLocked lock(&st->lock);
  *cfg = st->cfg;
  return st->model;
}

// Streaming or auto: the first windows' shapes, on silence (the base's warm_up).
static gboolean gst_anitalker_motion_warm_up(GstAnitalkerElement* element) {
  GstAnitalkerMotion* self = GST_ANITALKER_MOTION(element);
  motion::StreamConfig cfg;
  const std::shared_ptr<const motion::Model> model = gst_anitalker_motion_model(self->state, &cfg);
  int windows = 0;
  double window_s = 0;
  if (!GST_ANITALKER_TRY(self, "Could not run the motion generator on silence (warm-up).", false,
                         windows = motion::warm_up(model, cfg, &window_s)))
    return FALSE;
  // Not inside the logging macro: it evaluates its arguments only when the
  // category logs at DEBUG (until 2026-12-07 the warm-up ran only then).
  GST_DEBUG_OBJECT(self, "warm-up: %d windows, the last %.3f s", windows, window_s);
  // min-steps: a window that takes longer than its audio can never keep up;
  // start at the rung whose windows fit (the warm-up's last window scaled).
  MotionState* st = self->state;
  const double hop = (double)cfg.window / FPS;
  if (st->steps && st->stream && st->steps->ladder().size() > 1 && window_s > hop) {
    const int before = st->steps->steps(), after = st->steps->start_from(window_s, hop);
    if (after != before)
      gst_anitalker_motion_steps_changed(self, st->stream.get(), before, after, 0.0,
                                         gst_anitalker_printf("a window of %.3f s of audio took %.3f s at %d steps in "
                                                              "the warm-up",
                                                              hop, window_s, before));
  }
  return TRUE;
}

static void gst_anitalker_motion_stop(GstAnitalkerElement* element) {
  MotionState* st = GST_ANITALKER_MOTION(element)->state;
  GstAnitalkerLocked lock(&st->lock);
  st->stream.reset();
  st->steps.reset();
  st->model.reset();
  st->codes.reset();
  st->pose_file = at::Tensor();
}

/* --- Caps -------------------------------------------------------------------- */

// Sink: what the checkpoint takes, features caps with kind, layers, dims and
// rate fixed; src: the motion caps.  Null before start.
static GstCaps* gst_anitalker_motion_get_caps(GstAnitalkerElement* element, GstPadDirection direction) {
  MotionState* st = GST_ANITALKER_MOTION(element)->state;
  GstAnitalkerLocked lock(&st->lock);
  if (!st->model) return nullptr;
  const motion::Model& m = *st->model;
  if (direction == GST_PAD_SRC)
    return gst_caps_new_simple(GST_ANITALKER_MOTION_CAPS_NAME, "dims", G_TYPE_INT, m.motion_dim(), "framerate",
                               GST_TYPE_FRACTION, FPS, 1, nullptr);
  return gst_caps_new_simple(GST_ANITALKER_FEATURES_CAPS_NAME, "kind", G_TYPE_STRING,
                             m.hubert() ? GST_ANITALKER_FEATURES_KIND_HUBERT : GST_ANITALKER_FEATURES_KIND_MFCC,
                             "layers", G_TYPE_INT, m.hubert() ? m.hubert_layers() : 1, "dims", G_TYPE_INT,
                             m.audio_dim(), "rate", GST_TYPE_FRACTION, feature_rate(m), 1, nullptr);
}

// The features fit the checkpoint (the base checked against get_caps).
static gboolean gst_anitalker_motion_set_caps(GstAnitalkerElement* element, GstCaps*) {
  return gst_anitalker_element_push_caps(element, gst_anitalker_motion_get_caps(element, GST_PAD_SRC));
}

/* --- The portrait's codes and the controls ------------------------------------ */

// The controls as the properties say at stream time of frame `frame`
// (controllable properties are synced first).
static motion::Controls gst_anitalker_motion_controls(GstAnitalkerMotion* self, guint64 frame) {
  MotionState* st = self->state;
  GstAnitalkerElement* element = GST_ANITALKER_ELEMENT(self);
  const GstClockTime pts = element->t0 + gst_util_uint64_scale(frame, GST_SECOND, FPS);
  const GstClockTime stream_time = gst_segment_to_stream_time(&element->segment, GST_FORMAT_TIME, pts);
  if (GST_CLOCK_TIME_IS_VALID(stream_time)) gst_object_sync_values(GST_OBJECT(self), stream_time);
  motion::Controls c;
  GST_OBJECT_LOCK(self);
  c.control = self->control;
  c.yaw = self->yaw;
  c.pitch = self->pitch;
  c.roll = self->roll;
  c.location = self->location;
  c.scale = self->scale;
  GST_OBJECT_UNLOCK(self);
  GstAnitalkerLocked lock(&st->lock);
  c.pose_file = st->pose_file;
  return c;
}

/* --- Generation ---------------------------------------------------------------- */

// Pushes the frames of `g` (motion (1,k,M) and its predictions) in buffers
// of at most `per_buffer` frames, each with its motion meta.
static GstFlowReturn gst_anitalker_motion_push(GstAnitalkerMotion* self, const motion::Generated& g, bool control,
                                               guint per_buffer) {
  MotionState* st = self->state;
  bool has_pose, has_location;
  {
    GstAnitalkerLocked lock(&st->lock);
    if (!st->model) return GST_FLOW_FLUSHING;
    has_pose = st->model->has_pose();
    has_location = st->model->has_location();
  }
  const bool post = gst_anitalker_get(self, &self->post_messages);
  at::Tensor m = g.motion.to(at::kCPU, at::kFloat).contiguous();
  at::Tensor pose = g.pose.to(at::kCPU, at::kFloat).contiguous();
  at::Tensor location = g.location.to(at::kCPU, at::kFloat).contiguous();
  at::Tensor scale = g.scale.to(at::kCPU, at::kFloat).contiguous();
  return gst_anitalker_element_push_frames(
      GST_ANITALKER_ELEMENT(self), m.data_ptr<float>(), (guint64)m.size(1), (gsize)m.size(2), FPS, per_buffer,
      [&](GstBuffer* buf, guint64 first, guint64 n) {
        const float* p = pose.data_ptr<float>() + first * 3;
        const float* l = location.data_ptr<float>() + first;
        const float* s = scale.data_ptr<float>() + first;
        // With control on, the values are the given ones (the predictors are
        // bypassed), except for what the variant cannot take.
        gst_buffer_add_anitalker_motion_meta(buf, (guint)n, p, l, s, !control, has_pose, has_location);
        if (post)
          gst_element_post_message(GST_ELEMENT_CAST(self), gst_anitalker_motion_meta_message_new(GST_OBJECT_CAST(self), buf));
      });
}

// The portrait's codes (asked downstream when new) and the controls as now
// set, given to `stream` for what it generates next.  False: the error is posted.
static bool gst_anitalker_motion_prepare(GstAnitalkerMotion* self, motion::Stream* stream, motion::Controls* controls) {
  const motion::Model& m = stream->model();
  std::vector<float> s, d;
  std::string why;
  const int asked = self->state->codes.update(GST_ANITALKER_ELEMENT(self)->srcpad, m.start_dim(), m.motion_dim(), &s,
                                              &d, &why);
  if (asked < 0) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION,
                      ("%s", asked == -1   ? "No portrait codes from downstream."
                             : asked == -3 ? "No portrait codes: the renderer downstream could not use its portrait."
                                           : "The portrait codes do not fit the checkpoint."),
                      ("%s", why.c_str()));
    return false;
  }
  if (asked > 0) {
    GST_DEBUG_OBJECT(self, "new portrait codes from downstream");
    stream->set_codes(at::from_blob(s.data(), {1, m.start_dim()}, at::kFloat),
                      at::from_blob(d.data(), {1, m.motion_dim()}, at::kFloat));
  }
  *controls = gst_anitalker_motion_controls(self, (guint64)stream->emitted());
  stream->set_controls(*controls);
  return true;
}

// Offline: the whole utterance at once, as the demo (spec 5).
static GstFlowReturn gst_anitalker_motion_generate_offline(GstAnitalkerMotion* self, motion::Stream* stream) {
  const int64_t N = stream->received();
  if (motion::motion_frames(stream->model(), N) < 1) {
    if (N > 0)
      GST_ELEMENT_WARNING(self, STREAM, FAILED,
                          ("%" G_GINT64_FORMAT " feature frames are too short for one motion frame (%d are needed); "
                           "no motion.",
                           N, stream->model().hubert() ? 2 : 4),
                          (nullptr));
    return GST_FLOW_OK;
  }
  motion::Controls controls;
  if (!gst_anitalker_motion_prepare(self, stream, &controls)) return GST_FLOW_ERROR;
  const int steps = stream->config().steps;
  const int64_t T = motion::motion_frames(stream->model(), N);
  GST_DEBUG_OBJECT(self, "offline: %" G_GINT64_FORMAT " feature frames, %d steps", N, steps);
  // Progress of the whole utterance's run (seconds at full size on a CPU,
  // before any frame): START, CONTINUE at most every half second, COMPLETE.
  GstElement* e = GST_ELEMENT_CAST(self);
  gst_anitalker_post_progress(e, GST_PROGRESS_TYPE_START, "motion", 0,
                              gst_anitalker_printf("Generating %" G_GINT64_FORMAT " motion frames: %d DDIM steps.",
                                                   T, steps));
  const gint64 t0 = g_get_monotonic_time();
  gint64 told_at = t0;
  int told = 0;
  auto on_step = [self, e, &told, &told_at](int done, int total) {
    // A flush (a seek) or a stop while the utterance is made: stop at this
    // step, not after all of them (seconds to minutes for a long one).
    if (gst_anitalker_element_cancelled(GST_ANITALKER_ELEMENT(self))) throw GstAnitalkerCancelled();
    const gint64 now = g_get_monotonic_time();
    if (done == total || now - told_at < G_USEC_PER_SEC / 2) return;
    told_at = now;
    told = done * 100 / total;
    gst_anitalker_post_progress(e, GST_PROGRESS_TYPE_CONTINUE, "motion", told,
                                gst_anitalker_printf("DDIM step %d of %d.", done, total));
  };
  motion::Generated g;
  try {
    c10::InferenceMode guard;
    g = stream->whole(on_step);
  } catch (const GstAnitalkerCancelled&) {
    GST_DEBUG_OBJECT(self, "offline motion stopped at DDIM step %d%% by a flush or a stop", told);
    gst_anitalker_post_progress(e, GST_PROGRESS_TYPE_CANCELED, "motion", told,
                                "Generating the motion stopped (a flush or a stop).");
    return GST_FLOW_FLUSHING;
  } catch (...) {
    gst_anitalker_post_progress(e, GST_PROGRESS_TYPE_ERROR, "motion", told, "Generating the motion failed.");
    throw;  // the element's error (the base posts it)
  }
  gst_anitalker_post_progress(e, GST_PROGRESS_TYPE_COMPLETE, "motion", 100,
                              gst_anitalker_printf("%" G_GINT64_FORMAT " motion frames in %.2f s.", T,
                                                   (g_get_monotonic_time() - t0) / 1e6));
  return gst_anitalker_motion_push(self, g, controls.control, FRAMES_PER_BUFFER);
}

// How late the next window of `stream` starts, in seconds (<= 0: in time):
// the running time now against when its features were due (the window's
// first frame's running time + upstream's minimum latency + what the element
// waits for a window, its `latency`).  NaN without a clock, a live upstream
// or timestamps.
static double gst_anitalker_motion_late_s(GstAnitalkerMotion* self, const motion::Stream& stream) {
  GstAnitalkerElement* element = GST_ANITALKER_ELEMENT(self);
  if (!GST_CLOCK_TIME_IS_VALID(element->t0)) return NAN;
  GstClock* clock = gst_element_get_clock(GST_ELEMENT_CAST(self));
  if (clock == nullptr) return NAN;
  const GstClockTime now = gst_clock_get_time(clock);
  gst_object_unref(clock);
  const GstClockTime base = gst_element_get_base_time(GST_ELEMENT_CAST(self));
  const GstClockTime first = gst_segment_to_running_time(
      &element->segment, GST_FORMAT_TIME, element->t0 + gst_util_uint64_scale((guint64)stream.emitted(), GST_SECOND, FPS));
  if (!GST_CLOCK_TIME_IS_VALID(now) || !GST_CLOCK_TIME_IS_VALID(base) || !GST_CLOCK_TIME_IS_VALID(first) || now < base)
    return NAN;
  GstClockTime upstream = 0;
  if (!gst_anitalker_element_upstream_latency(element, &upstream) || !GST_CLOCK_TIME_IS_VALID(upstream)) return NAN;
  const GstClockTime due = first + upstream + gst_anitalker_motion_latency(element, TRUE);
  return ((double)(now - base) - (double)due) / GST_SECOND;
}

// A live window this late, with no fewer steps left to take, is a stream
// that falls further behind: warned of once after each start.
#define BEHIND_WARNING_S 2.0

// The steps of the stream's next windows changed from `before` to `after`
// (min-steps): set, logged, posted as an "anitalker-motion-steps" message;
// the first step down after the element started is also a WARNING (`why`
// its details).
static void gst_anitalker_motion_steps_changed(GstAnitalkerMotion* self, motion::Stream* stream, int before,
                                               int after, double late, const std::string& why) {
  MotionState* st = self->state;
  stream->set_steps(after);
  const int configured = st->steps->ladder().front();
  GST_INFO_OBJECT(self, "from frame %" G_GINT64_FORMAT ": %d DDIM steps instead of %d (%s)", stream->emitted(), after,
                  before, why.c_str());
  if (after < before && !st->warned) {
    st->warned = true;
    GST_ELEMENT_WARNING(self, STREAM, FAILED,
                        ("The motion generator is slower than real time: %d DDIM steps a window instead of %d from "
                         "now on, fewer if it stays behind (min-steps %d).",
                         after, configured, st->steps->ladder().back()),
                        ("%s", why.c_str()));
  }
  gst_element_post_message(
      GST_ELEMENT_CAST(self),
      gst_message_new_element(GST_OBJECT_CAST(self),
                              gst_structure_new("anitalker-motion-steps", "steps", G_TYPE_INT, after, "previous",
                                                G_TYPE_INT, before, "configured", G_TYPE_INT, configured, "frame",
                                                G_TYPE_UINT64, (guint64)stream->emitted(), "late", G_TYPE_INT64,
                                                (gint64)(late * GST_SECOND), nullptr)));
}

// Live streaming: the steps of the next window with min-steps
// (motion::StepController), posted and logged when they change; a WARNING
// when the stream is far behind with no fewer steps to take.
static void gst_anitalker_motion_adapt_steps(GstAnitalkerMotion* self, motion::Stream* stream) {
  MotionState* st = self->state;
  if (!st->steps) return;
  const double late = gst_anitalker_motion_late_s(self, *stream);
  if (std::isnan(late)) return;
  const double hop = (double)stream->config().window / FPS;
  if (late > BEHIND_WARNING_S && st->steps->steps() == st->steps->ladder().back() && !st->warned_behind) {
    st->warned_behind = true;
    GST_ELEMENT_WARNING(self, STREAM, FAILED,
                        ("The stream is %.1f s behind real time at the motion generator and falls further behind: "
                         "this machine does not keep up with this chain at %d DDIM steps.  A longer window "
                         "(latency=quality), precision=bf16, fewer steps (min-steps) or a faster device may.",
                         late, st->steps->steps()),
                        ("window of frame %" G_GINT64_FORMAT ": the last window took %.3f s for %.3f s of audio%s",
                         stream->emitted(), st->last_compute_s, hop,
                         st->last_compute_s < hop ? " (less than its audio: the time goes elsewhere too, hubertenc "
                                                    "or the elements after this one in its thread)"
                                                  : ""));
  }
  if (st->steps->ladder().size() < 2) return;
  const int before = st->steps->steps();
  const int after = st->steps->next(late, hop, st->last_compute_s, st->last_cycle_s);
  if (after != before)
    gst_anitalker_motion_steps_changed(self, stream, before, after, late,
                                       gst_anitalker_printf("window of frame %" G_GINT64_FORMAT " started %.3f s "
                                                            "late; the last window took %.3f s for %.3f s of audio",
                                                            stream->emitted(), late, st->last_compute_s, hop));
}

// Streaming: every window that is ready (all that remain when `final`).
static GstFlowReturn gst_anitalker_motion_generate_windows(GstAnitalkerMotion* self, motion::Stream* stream,
                                                           bool final) {
  GstAnitalkerElement* element = GST_ANITALKER_ELEMENT(self);
  MotionState* st = self->state;
  // The window settings in force now (they may change while playing).
  int window, context, lookahead;
  gst_anitalker_element_windows(element, &window, &context, &lookahead);
  const motion::StreamConfig& now = stream->config();
  if (now.window != window || now.context != context || now.lookahead != lookahead) {
    GST_INFO_OBJECT(self, "from frame %" G_GINT64_FORMAT ": window %d, context %d, look-ahead %d", stream->emitted(),
                    window, context, lookahead);
    stream->set_window(window, context, lookahead);
  }
  while (stream->ready(final)) {
    motion::Controls controls;
    if (!gst_anitalker_motion_prepare(self, stream, &controls)) return GST_FLOW_ERROR;
    if (!final) {
      // The cycle of the window before: its compute, what the elements after
      // it in this thread did with its frames, and any wait for input.
      const gint64 now = g_get_monotonic_time();
      st->last_cycle_s = st->last_start_us ? (now - st->last_start_us) / 1e6 : 0;
      gst_anitalker_motion_adapt_steps(self, stream);
    }
    motion::Generated g;
    const gint64 t0 = g_get_monotonic_time();
    st->last_start_us = t0;
    {
      c10::InferenceMode guard;
      g = stream->next(final);
    }
    st->last_compute_s = (g_get_monotonic_time() - t0) / 1e6;
    // The window's compute time is part of the latency we add.
    if (!final) gst_anitalker_element_add_compute(element, t0);
    GST_LOG_OBJECT(self, "window: frames %" G_GINT64_FORMAT " .. %" G_GINT64_FORMAT, stream->emitted() - g.motion.size(1),
                   stream->emitted() - 1);
    {
      GstAnitalkerLocked lock(&st->lock);
      st->next_window = stream->emitted();
    }
    const GstFlowReturn ret = gst_anitalker_motion_push(self, g, controls.control, (guint)g.motion.size(1));
    if (ret != GST_FLOW_OK) return ret;
  }
  return GST_FLOW_OK;
}

// Generates what is due; `final` at the end of a stream.  Errors are posted here.
static GstFlowReturn gst_anitalker_motion_process(GstAnitalkerMotion* self, bool final) {
  motion::Stream* stream = self->state->stream.get();
  if (stream == nullptr) return GST_FLOW_FLUSHING;
  const bool streaming = gst_anitalker_element_streaming(GST_ANITALKER_ELEMENT(self));
  if (!final && !streaming) return GST_FLOW_OK;
  GstFlowReturn ret = GST_FLOW_ERROR;
  GST_ANITALKER_TRY(self,
                    gst_anitalker_printf("Generating motion from %" G_GINT64_FORMAT " feature frames failed.",
                                         stream->received()),
                    false,
                    ret = streaming ? gst_anitalker_motion_generate_windows(self, stream, final)
                                    : gst_anitalker_motion_generate_offline(self, stream));
  return ret;
}

static GstFlowReturn gst_anitalker_motion_drain(GstAnitalkerElement* element) {
  GstAnitalkerMotion* self = GST_ANITALKER_MOTION(element);
  const motion::Stream* stream = self->state->stream.get();
  const GstFlowReturn ret = stream && stream->received() > 0 ? gst_anitalker_motion_process(self, true) : GST_FLOW_OK;
  gst_anitalker_motion_flush(element);
  return ret;
}

// FLUSH_STOP: the features not yet used are dropped (a SEGMENT drains first).
static void gst_anitalker_motion_flush(GstAnitalkerElement* element) {
  MotionState* st = GST_ANITALKER_MOTION(element)->state;
  if (st->stream) {
    GST_DEBUG_OBJECT(element, "dropping %" G_GINT64_FORMAT " feature frames", st->stream->held_features());
    st->stream->reset();
  }
  // The steps stay where the machine's speed put them, and the warnings are
  // not repeated: once after each start (a stream's first SEGMENT and
  // STREAM_START come here too).
  st->last_start_us = 0;
  GstAnitalkerLocked lock(&st->lock);
  st->next_window = 0;
}

static GstFlowReturn gst_anitalker_motion_handle_buffer(GstAnitalkerElement* element, GstBuffer* buffer) {
  GstAnitalkerMotion* self = GST_ANITALKER_MOTION(element);
  motion::Stream* stream = self->state->stream.get();
  if (stream == nullptr) return GST_FLOW_FLUSHING;
  const motion::Model& m = stream->model();
  const gsize frame_floats = (gsize)(m.hubert() ? m.hubert_layers() : 1) * (gsize)m.audio_dim();
  gst_anitalker_element_anchor(element, buffer);
  std::vector<float> piece;
  const gssize frames =
      gst_anitalker_element_take_frames(element, buffer, frame_floats, "feature", (guint64)stream->received(), &piece);
  if (frames < 0) return GST_FLOW_ERROR;
  // Offline the stream gathers the whole utterance; past offline-limit, auto
  // goes on in windows from frame 0 (nothing was pushed yet) and offline fails.
  stream->push(piece.data(), (int64_t)frames);
  if (!gst_anitalker_element_streaming(element) &&
      gst_anitalker_element_check_offline_limit(element, (double)stream->received() / feature_rate(m)) < 0)
    return GST_FLOW_ERROR;
  return gst_anitalker_motion_process(self, false);
}

// Where the features taken so far end (the base holds serialized events
// until the motion frames reach it).
static GstClockTime gst_anitalker_motion_input_end(GstAnitalkerElement* element) {
  const motion::Stream* stream = GST_ANITALKER_MOTION(element)->state->stream.get();
  if (!GST_CLOCK_TIME_IS_VALID(element->t0) || stream == nullptr) return GST_CLOCK_TIME_NONE;
  return element->t0 + gst_util_uint64_scale((guint64)stream->received(), GST_SECOND, feature_rate(stream->model()));
}

/* --- Events and latency ---------------------------------------------------------- */

// The renderer announces a new portrait: its codes are asked for again
// before the next window.
static gboolean gst_anitalker_motion_src_event(GstAnitalkerElement* element, GstEvent* event, gboolean* result) {
  if (!GST_ANITALKER_MOTION(element)->state->codes.take_event(event)) return FALSE;
  GST_DEBUG_OBJECT(element, "downstream has a new portrait");
  *result = TRUE;
  return TRUE;
}

// A window's first frame waits for the features of the window and the
// look-ahead (lib motion::window_wait, with the hops of upstream's features
// when it says it sends whole hops: the hop query, gstanitalkercaps.h); the
// buffer that holds the last of them reaches us at most upstream's latency
// after its own PTS.  The settings as now set: they apply from the next window.
static GstClockTime gst_anitalker_motion_latency(GstAnitalkerElement* element, gboolean) {
  MotionState* st = GST_ANITALKER_MOTION(element)->state;
  gint64 ratio = 0, next = 0;  // feature frames a motion frame; the next window's first frame
  {
    GstAnitalkerLocked lock(&st->lock);
    if (st->model) ratio = st->model->hubert() ? 2 : 4;
    next = st->next_window;
  }
  int window, context, lookahead;
  gst_anitalker_element_windows(element, &window, &context, &lookahead);
  if (ratio == 0)  // not started: whole motion frames
    return gst_util_uint64_scale((guint64)(window + lookahead), GST_SECOND, FPS);
  gint64 hop = 0, origin = 0;
  if (gst_anitalker_hop_ask(element->sinkpad, &hop, &origin))
    GST_DEBUG_OBJECT(element, "features in hops of %" G_GINT64_FORMAT " from %" G_GINT64_FORMAT, hop, origin);
  const int64_t wait = motion::window_wait(ratio, window, lookahead, next, hop, origin);  // feature frames
  return gst_util_uint64_scale((guint64)wait, GST_SECOND, (guint64)(FPS * ratio));
}

/* --- The class ------------------------------------------------------------- */

// A control: animatable, changeable while playing, read at each window.
static void install_control(GObjectClass* klass, guint id, const char* name, const char* nick, const char* blurb,
                            float lo, float hi, float def, gsize offset) {
  gst_anitalker_install_property(klass, id,
          gst_anitalker_param_spec_float(name, nick, blurb, lo, hi, def,
                                         (GParamFlags)(GST_ANITALKER_PARAM_PLAYING | GST_PARAM_CONTROLLABLE)),
          offset);
}

#define FIELD(f) G_STRUCT_OFFSET(GstAnitalkerMotion, f)

static void gst_anitalker_motion_class_init(GstAnitalkerMotionClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  GstAnitalkerElementClass* base_class = GST_ANITALKER_ELEMENT_CLASS(klass);

  GST_DEBUG_CATEGORY_INIT(gst_anitalker_motion_debug, "anitalkermotion", 0, "AniTalker motion generator");

  const GParamFlags ready = GST_ANITALKER_PARAM_READY;

  /**
   * GstAnitalkerMotion:checkpoint:
   *
   * A stage-2 checkpoint as released (stage2_*.ckpt; its `ema_model.*`
   * weights are used), loaded when the element goes from READY to PAUSED;
   * elements with the same file and device share one copy.
   */
  gst_anitalker_install_property(gobject_class, PROP_CHECKPOINT,
          g_param_spec_string("checkpoint", "Checkpoint",
                              "Stage-2 checkpoint (stage2_*.ckpt), loaded on READY->PAUSED (default: none; required)",
                              nullptr, ready),
          FIELD(checkpoint));

  /**
   * GstAnitalkerMotion:type:
   *
   * The variant expected (the demo's --infer_type); the checkpoint's keys
   * decide it, and a checkpoint of another variant is an error naming both.
   */
  gst_anitalker_install_property(gobject_class, PROP_TYPE,
          g_param_spec_enum("type", "Type", "Expected variant; auto accepts whatever the checkpoint holds",
                            GST_TYPE_ANITALKER_MOTION_TYPE, GST_ANITALKER_MOTION_TYPE_AUTO, ready),
          FIELD(type));

  /**
   * GstAnitalkerMotion:steps:
   *
   * DDIM steps (the demo's --step_T).  The respacing rule needs an integer
   * stride over 1000 timesteps: 1000/steps rounded up must give back
   * `steps` (50, 25, 20, 10 and 100 do; 600 does not, and is refused when the
   * element starts, naming the nearest counts that work).  One step never
   * works (the reference searches strides up to 999), so the range starts
   * at 2.
   */
  gst_anitalker_install_property(gobject_class, PROP_STEPS,
          gst_anitalker_param_spec_uint("steps", "Steps",
                            "DDIM denoising steps (default: 50); only counts of the form ceil(1000/k) work: 2 "
                            "to 32, then 33-36, 38, 39, 40, 42, ..., 50, 53, ..., 91, 100, 112, 125, 143, 167, 200, 250, 334, 500, "
                            "1000; "
                            "others are refused at start naming the nearest",
                            2, 1000, 50, ready),
          FIELD(steps));

  /**
   * GstAnitalkerMotion:min-steps:
   *
   * Streaming from a live source: the fewest DDIM steps a window may get
   * when the element falls behind real time (a window that starts later
   * than its features' timestamps and upstream's latency allow).  It then
   * steps down from #GstAnitalkerMotion:steps about 0.7x a window while it
   * stays behind, and back up once in time when the larger count fits in
   * half a window's audio.  10 steps lie within this project's documented
   * bound for live use (docs/elements.md "Steps and the live presets").
   * 0, or a count not below `steps`: always `steps`.  Must be a count
   * `steps` may be.
   */
  gst_anitalker_install_property(gobject_class, PROP_MIN_STEPS,
          gst_anitalker_param_spec_uint("min-steps", "Fewest steps",
                            "Live streaming: the fewest DDIM steps a window may get while the element is slower "
                            "than real time, stepping down from steps and back up when in time again; 0 = always "
                            "steps (default: 10)",
                            0, 1000, 10, ready),
          FIELD(min_steps));

  /**
   * GstAnitalkerMotion:seed:
   *
   * Seed of the initial noise.  Offline, the noise is exactly what the
   * reference demo draws with `--seed` of the same value and the same
   * variant; streaming, each frame's noise comes in order from a generator
   * seeded with it.
   */
  gst_anitalker_install_property(gobject_class, PROP_SEED,
          gst_anitalker_param_spec_uint64("seed", "Seed", "Seed of the initial noise, as the demo's --seed (default: 0)", 0,
                              G_MAXUINT64, 0, ready),
          FIELD(seed));

  /**
   * GstAnitalkerMotion:control:
   *
   * The demo's --control_flag: on, the pose (and location and scale for the
   * full-control variants) given by the properties drive the motion; off,
   * the model's own predictions do (hubert_audio_only has none and ignores
   * the controls).
   */
  gst_anitalker_install_property(gobject_class, PROP_CONTROL,
          g_param_spec_boolean("control", "Control",
                               "Drive with the pose/location/scale properties instead of the model's predictions "
                               "(default: false)",
                               FALSE, (GParamFlags)(GST_ANITALKER_PARAM_PLAYING | GST_PARAM_CONTROLLABLE)),
          FIELD(control));

  /**
   * GstAnitalkerMotion:pose-yaw:
   *
   * Head yaw with #GstAnitalkerMotion:control on, in the model's units
   * (1 = 90 degrees; the demo's --pose_yaw), from -1 to 1 (a value outside is refused).
   */
  install_control(gobject_class, PROP_POSE_YAW, "pose-yaw", "Yaw",
                  "Head yaw with control on, 1 = 90 degrees (default: 0.25)", -1.0f, 1.0f, 0.25f, FIELD(yaw));
  install_control(gobject_class, PROP_POSE_PITCH, "pose-pitch", "Pitch",
                  "Head pitch with control on, 1 = 90 degrees (default: 0)", -1.0f, 1.0f, 0.0f, FIELD(pitch));
  install_control(gobject_class, PROP_POSE_ROLL, "pose-roll", "Roll",
                  "Head roll with control on, 1 = 90 degrees (default: 0)", -1.0f, 1.0f, 0.0f, FIELD(roll));

  /**
   * GstAnitalkerMotion:pose-file:
   *
   * A .npy file of [N, 3] yaw, pitch, roll in degrees, frame by frame (the
   * demo's --pose_driven_path): divided by 90, cut or padded with its last
   * row to the utterance, and used instead of the constant pose when
   * #GstAnitalkerMotion:control is on.  Read when the element starts.
   */
  gst_anitalker_install_property(gobject_class, PROP_POSE_FILE,
          g_param_spec_string("pose-file", "Pose file",
                              "Per-frame pose .npy [N, 3] in degrees, used with control on (default: none)", nullptr,
                              ready),
          FIELD(pose_file));
  install_control(gobject_class, PROP_FACE_LOCATION, "face-location", "Face location",
                  "Face location with control on, full-control variants (default: 0.5)", -10.0f, 10.0f, 0.5f,
                  FIELD(location));
  install_control(gobject_class, PROP_FACE_SCALE, "face-scale", "Face scale",
                  "Face scale with control on, full-control variants (default: 0.5)", -10.0f, 10.0f, 0.5f,
                  FIELD(scale));
  gst_anitalker_install_property(gobject_class, PROP_POST_MESSAGES,
          g_param_spec_boolean("post-messages", "Post messages",
                               "Post the predicted pose/location/scale of each buffer as \"anitalker-motion\" "
                               "element messages (default: false)",
                               FALSE, GST_ANITALKER_PARAM_PLAYING),
          FIELD(post_messages));

  /**
   * GstAnitalkerMotion:offline-limit:
   *
   * The longest audio, in seconds, generated in one piece.  The denoiser's
   * attention costs memory and time with the square of the length, so: with
   * mode=auto on a non-live source, past this length the element goes on in
   * windows (as streaming, without a gap in the timestamps); with
   * mode=offline, longer audio is an error that suggests mode=auto or
   * streaming.  0 = no limit.
   */
  gst_anitalker_element_class_install_common(base_class, GST_ANITALKER_COMMON_DEVICE | GST_ANITALKER_COMMON_STREAMING | GST_ANITALKER_COMMON_BUDGET |
                                                 GST_ANITALKER_COMMON_SHARING,
                                             "the motion generator", &kWindows);

  gst_element_class_set_static_metadata(element_class, "AniTalker motion generator", "Filter/Converter",
                                        "Generates talking-head motion latents from audio features with AniTalker's "
                                        "stage-2 diffusion model",
                                        "anitalker-gst developers");
  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_type_mark_as_plugin_api(GST_TYPE_ANITALKER_MOTION_TYPE, (GstPluginAPIFlags)0);

  base_class->failure = "Generating motion failed.";
  // A SEGMENT without a flush (concat, a playlist, a non-flushing seek) ends
  // the stream so far: what is pending is finished and pushed, not dropped.
  base_class->drain_on_segment = TRUE;
  base_class->drain_on_stream_start = TRUE;
  base_class->forward_only = TRUE;
  base_class->input = "Features";
  base_class->start = gst_anitalker_motion_start;
  base_class->warm_up = gst_anitalker_motion_warm_up;
  base_class->stop = gst_anitalker_motion_stop;
  base_class->set_caps = gst_anitalker_motion_set_caps;
  base_class->get_caps = gst_anitalker_motion_get_caps;
  base_class->handle_buffer = gst_anitalker_motion_handle_buffer;
  base_class->drain = gst_anitalker_motion_drain;
  base_class->flush = gst_anitalker_motion_flush;
  base_class->latency = gst_anitalker_motion_latency;
  base_class->input_end = gst_anitalker_motion_input_end;
  base_class->src_event = gst_anitalker_motion_src_event;
}

static void gst_anitalker_motion_init(GstAnitalkerMotion* self) {
  self->state = gst_anitalker_element_make_state<MotionState>(GST_ANITALKER_ELEMENT(self));
}
