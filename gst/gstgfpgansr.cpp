// gfpgansr: face restoration of video frames with GFPGAN v1.4, as AniTalker's
// --face_sr runs it (spec/face-sr.md; the maths is in lib/face_restore.h).
// This file does caps, the models' life cycle, the branch choice, QoS and
// the pixel formats; no maths.

/**
 * SECTION:element-gfpgansr
 * @title: gfpgansr
 *
 * Restores the faces of each video frame with GFPGAN v1.4 and pastes them
 * into the frame upscaled by #GstGfpganSr:upscale (2 by default), as the
 * reference's `GFPGANer.enhance(paste_back=True)` does:
 *
 * 1. RetinaFace (#GstGfpganSr:detector, detection_Resnet50_Final.pth) finds
 *    the faces: score above 0.97, NMS at 0.4, eyes at least 5 px apart;
 *    with #GstGfpganSr:only-center-face only the face nearest the centre.
 * 2. Each face is aligned to the 512x512 FFHQ template from its five
 *    landmarks and restored with GFPGAN (#GstGfpganSr:model,
 *    GFPGANv1.4.pth).
 * 3. The frame is upscaled with Lanczos, and every restored face is pasted
 *    back through the inverse warp with a soft mask: from ParseNet's face
 *    labels when #GstGfpganSr:parser (parsing_parsenet.pth) is set, else the
 *    reference's eroded and blurred square (its use_parse=False branch).
 *
 * A frame without faces comes out as the upscaled frame; every face found
 * is restored, unless #GstGfpganSr:max-faces or #GstGfpganSr:only-center-face
 * limit them; with #GstGfpganSr:detect-every above 1 RetinaFace runs on one
 * frame in N and the frames between reuse its faces.  With #GstGfpganSr:aligned the whole frame is taken as one
 * face that is already aligned (a crop such as the 512x512 FFHQ ones):
 * no detector is needed, the frame is resized to 512x512 (bilinear),
 * restored, and resized to the output size (Lanczos up, area down).
 *
 * The element says which branch it runs when it starts: an INFO message
 * without a parser (or a WARNING when the parser file named does not
 * exist), and an error when neither a detector nor #GstGfpganSr:aligned
 * is set.  A file that exists but does not load is an error.
 *
 * Caps: RGB, BGR or RGBx in, the same format out at #GstGfpganSr:upscale
 * times the width and height; framerate and pixel aspect ratio pass
 * through.  Timestamps, durations and flags pass through.  Nothing is held
 * back, but a frame leaves as long after it came as the networks take
 * (seconds on a CPU, see docs/performance.md; milliseconds on a GPU, more
 * when the faces of several pipelines wait for one batch): with a live
 * upstream the element adds the longest such time (of the last
 * #GstGfpganSr:latency-recovery seconds) to the LATENCY query, and posts a
 * LATENCY message when it grows, as anitalkerrender does for its frames.
 *
 * With #GstGfpganSr:qos, a frame that arrives later than downstream's last
 * QoS event says it can still use is not dropped but degraded to the plain
 * upscaled frame (no detection, no GFPGAN), so the video stays complete and
 * catches up.  #GstGfpganSr:stats counts the frames, the degraded frames
 * and the faces restored.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 filesrc location=face.png ! pngdec ! videoconvert ! video/x-raw,format=RGB !
 *     imagefreeze num-buffers=1 ! gfpgansr model=models/GFPGANv1.4.pth
 *     detector=models/detection_Resnet50_Final.pth parser=models/parsing_parsenet.pth warm-up=false !
 *     videoconvert ! pngenc ! filesink location=restored.png
 * ]|
 * (one picture: #GstGfpganSr:warm-up off, which a video or a live stream
 * wants on.)
 */

#include "gstgfpgansr.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gst/video/video.h>
#include <sys/stat.h>

#include <chrono>
#include <memory>
#include <opencv2/imgproc.hpp>
#include <string>

#include "device.h"
#include "error.h"
#include "face_restore.h"
#include "gfpgan.h"
#include "gstanitalkercommon.h"
#include "gstanitalkervideo.h"
#include "parsenet.h"
#include "retinaface.h"

GST_DEBUG_CATEGORY_STATIC(gst_gfpgan_sr_debug);
#define GST_CAT_DEFAULT gst_gfpgan_sr_debug

namespace face = anitalker::face;

#define DEFAULT_UPSCALE 2
#define MAX_UPSCALE 4
#define DEFAULT_NOISE GST_GFPGAN_SR_NOISE_STORED
#define STATS_NAME "application/x-gfpgansr-stats"

enum {
  PROP_0,
  PROP_MODEL,
  PROP_DETECTOR,
  PROP_PARSER,
  PROP_UPSCALE,
  PROP_DEVICE,
  PROP_NOISE,
  PROP_ALIGNED,
  PROP_ONLY_CENTER_FACE,
  PROP_MAX_FACES,
  PROP_DETECT_EVERY,
  PROP_PARSE_EVERY,
  PROP_QOS,
  PROP_NUM_THREADS,
  PROP_PRECISION,
  PROP_MAX_BATCH,
  PROP_MAX_BATCH_DELAY,
  PROP_LATENCY_RECOVERY,
  PROP_WARM_UP,
  PROP_STATS,
};

namespace {

// The C++ state of one element (GObject structs never run C++ constructors:
// BUILD-NOTES), made in _init and deleted in _finalize.
struct SrState {
  // Under `lock`: written by start/stop and the streaming thread, read by
  // the stats property from any thread.
  GstAnitalkerMutex lock;
  std::shared_ptr<const anitalker::gfpgan::Model> model;  // from start() to stop()
  std::shared_ptr<const anitalker::retinaface::Model> detector;
  std::shared_ptr<const anitalker::parsenet::Model> parser;
  // With max-batch above 1: the process's GFPGAN executor for this model.
  std::shared_ptr<anitalker::face::FaceBatcher> executor;
  // And ParseNet's and RetinaFace's, with a parser and a detector.
  std::shared_ptr<anitalker::face::ParseBatcher> parse_executor;
  std::shared_ptr<anitalker::face::DetectBatcher> detect_executor;
  guint64 frames = 0, degraded = 0, faces = 0;
  // The running time before which frames are too late, from the last QoS
  // event (as GstBaseTransform computes it); NONE = no pressure.
  GstClockTime earliest = GST_CLOCK_TIME_NONE;
  // The longest frame (of the last latency-recovery seconds): what a live
  // stream's frames wait here, added to the LATENCY answer.  Thread-safe.
  GstAnitalkerBudget budget;

  // Streaming thread only (set_caps and the serialized events run in it).
  GstVideoInfo in_info, out_info;
  anitalker::face::FaceRestorer::Track track;  // detect-every's last detection
};

}  // namespace

struct _GstGfpganSr {
  GstBaseTransform parent;

  // Properties, under the object lock.
  gchar* model;
  gchar* detector;
  gchar* parser;
  gchar* device;
  guint upscale;
  gint noise;  // GstGfpganSrNoise
  gboolean aligned;
  gboolean only_center_face;
  guint max_faces;
  guint detect_every;
  guint parse_every;
  gboolean qos;
  gint num_threads;
  gint precision;  // GstAnitalkerPrecision
  guint max_batch;
  guint max_batch_delay;
  guint latency_recovery_s;
  gboolean warm_up;

  SrState* state;
};

#define VIDEO_CAPS GST_VIDEO_CAPS_MAKE("{ RGB, BGR, RGBx }")

/**
 * GstGfpganSr!sink:
 *
 * Video frames of any size, packed 8-bit RGB, BGR or RGBx.
 */
static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(VIDEO_CAPS));

/**
 * GstGfpganSr!src:
 *
 * The same format at #GstGfpganSr:upscale times the width and height.
 */
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(VIDEO_CAPS));

GType gst_gfpgan_sr_noise_get_type(void) {
  static gsize type = 0;
  if (g_once_init_enter(&type)) {
    static const GEnumValue values[] = {
        {GST_GFPGAN_SR_NOISE_STORED, "The checkpoint's stored noise buffers: repeatable output", "stored"},
        {GST_GFPGAN_SR_NOISE_RANDOM, "Fresh N(0,1) noise for every face, as the reference's enhance()", "random"},
        {GST_GFPGAN_SR_NOISE_NONE, "No noise", "none"},
        {0, nullptr, nullptr},
    };
    g_once_init_leave(&type, g_enum_register_static("GstGfpganSrNoise", values));
  }
  return type;
}

#define gst_gfpgan_sr_parent_class parent_class
G_DEFINE_TYPE(GstGfpganSr, gst_gfpgan_sr, GST_TYPE_BASE_TRANSFORM);
GST_ELEMENT_REGISTER_DEFINE(gfpgansr, "gfpgansr", GST_RANK_NONE, GST_TYPE_GFPGAN_SR);

static void gst_gfpgan_sr_set_property(GObject* object, guint prop_id, const GValue* value, GParamSpec* pspec);
static void gst_gfpgan_sr_get_property(GObject* object, guint prop_id, GValue* value, GParamSpec* pspec);
static void gst_gfpgan_sr_finalize(GObject* object);
static gboolean gst_gfpgan_sr_start(GstBaseTransform* trans);
static gboolean gst_gfpgan_sr_stop(GstBaseTransform* trans);
static GstCaps* gst_gfpgan_sr_transform_caps(GstBaseTransform* trans, GstPadDirection direction, GstCaps* caps,
                                             GstCaps* filter);
static GstCaps* gst_gfpgan_sr_fixate_caps(GstBaseTransform* trans, GstPadDirection direction, GstCaps* caps,
                                          GstCaps* othercaps);
static gboolean gst_gfpgan_sr_set_caps(GstBaseTransform* trans, GstCaps* incaps, GstCaps* outcaps);
static gboolean gst_gfpgan_sr_get_unit_size(GstBaseTransform* trans, GstCaps* caps, gsize* size);
static gboolean gst_gfpgan_sr_transform_size(GstBaseTransform* trans, GstPadDirection direction, GstCaps* caps,
                                             gsize size, GstCaps* othercaps, gsize* othersize);
static gboolean gst_gfpgan_sr_src_event(GstBaseTransform* trans, GstEvent* event);
static gboolean gst_gfpgan_sr_sink_event(GstBaseTransform* trans, GstEvent* event);
static GstFlowReturn gst_gfpgan_sr_transform(GstBaseTransform* trans, GstBuffer* inbuf, GstBuffer* outbuf);
static gboolean gst_gfpgan_sr_query(GstBaseTransform* trans, GstPadDirection direction, GstQuery* query);

static void gst_gfpgan_sr_class_init(GstGfpganSrClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  GstBaseTransformClass* trans_class = GST_BASE_TRANSFORM_CLASS(klass);

  GST_DEBUG_CATEGORY_INIT(gst_gfpgan_sr_debug, "gfpgansr", 0, "GFPGAN face restoration");

  gobject_class->set_property = gst_gfpgan_sr_set_property;
  gobject_class->get_property = gst_gfpgan_sr_get_property;
  gobject_class->finalize = gst_gfpgan_sr_finalize;

  const GParamFlags ready = GST_ANITALKER_PARAM_READY;
  const GParamFlags playing = GST_ANITALKER_PARAM_PLAYING;

  /**
   * GstGfpganSr:model:
   *
   * The GFPGAN checkpoint: GFPGANv1.4.pth ({'params_ema': ...}, the
   * GFPGANv1Clean architecture; widths come from the shapes).  Loaded on
   * READY->PAUSED; elements with the same file and device share one copy.
   */
  gst_anitalker_install_property(
      gobject_class, PROP_MODEL,
      g_param_spec_string("model", "GFPGAN model",
                          "Path of GFPGANv1.4.pth, loaded on READY->PAUSED (default: none; required)", nullptr, ready),
      G_STRUCT_OFFSET(GstGfpganSr, model));

  /**
   * GstGfpganSr:detector:
   *
   * The RetinaFace-ResNet50 checkpoint, detection_Resnet50_Final.pth.
   * Required unless #GstGfpganSr:aligned is set (then it is not loaded).
   */
  gst_anitalker_install_property(
      gobject_class, PROP_DETECTOR,
      g_param_spec_string("detector", "Face detector",
                          "Path of detection_Resnet50_Final.pth (RetinaFace); required unless aligned=true "
                          "(default: none)",
                          nullptr, ready),
      G_STRUCT_OFFSET(GstGfpganSr, detector));

  /**
   * GstGfpganSr:parser:
   *
   * The ParseNet checkpoint, parsing_parsenet.pth, whose face labels shape
   * the paste mask (the reference's use_parse=True, AniTalker's setting).
   * Unset or missing: the square soft mask is used, and a message says so.
   */
  gst_anitalker_install_property(
      gobject_class, PROP_PARSER,
      g_param_spec_string("parser", "Face parser",
                          "Path of parsing_parsenet.pth for the paste mask; without it the square soft mask "
                          "is used (default: none)",
                          nullptr, ready),
      G_STRUCT_OFFSET(GstGfpganSr, parser));

  /**
   * GstGfpganSr:upscale:
   *
   * The output is this many times the input's width and height.
   */
  gst_anitalker_install_property(
      gobject_class, PROP_UPSCALE,
      gst_anitalker_param_spec_uint("upscale", "Upscale", "Output size = input size times this (default: 2)", 1, MAX_UPSCALE,
                        DEFAULT_UPSCALE, ready),
      G_STRUCT_OFFSET(GstGfpganSr, upscale));

  /**
   * GstGfpganSr:noise:
   *
   * The StyleGAN2 decoder's per-layer noise.  The reference draws fresh
   * noise for every face (random); the checkpoint's stored buffers give
   * the same output for the same input (stored, the default).
   */
  gst_anitalker_install_property(
      gobject_class, PROP_NOISE,
      g_param_spec_enum("noise", "Noise",
                        "GFPGAN decoder noise: stored (repeatable), random (as the reference) or none",
                        GST_TYPE_GFPGAN_SR_NOISE, DEFAULT_NOISE, playing),
      G_STRUCT_OFFSET(GstGfpganSr, noise));

  /**
   * GstGfpganSr:aligned:
   *
   * Take every frame as one face already aligned to the FFHQ template:
   * no detection and no paste-back; the restored face, resized to the
   * output size, is the output.
   */
  gst_anitalker_install_property(
      gobject_class, PROP_ALIGNED,
      g_param_spec_boolean("aligned", "Aligned",
                           "Treat the whole frame as one aligned face: skip detection and paste-back (default: false)",
                           FALSE, playing),
      G_STRUCT_OFFSET(GstGfpganSr, aligned));

  /**
   * GstGfpganSr:only-center-face:
   *
   * Restore only the detected face whose box centre is nearest the frame's
   * centre.
   */
  gst_anitalker_install_property(
      gobject_class, PROP_ONLY_CENTER_FACE,
      g_param_spec_boolean("only-center-face", "Only the centre face",
                           "Restore only the face nearest the centre of the frame (default: false)", FALSE, playing),
      G_STRUCT_OFFSET(GstGfpganSr, only_center_face));

  /**
   * GstGfpganSr:max-faces:
   *
   * At most this many faces restored in a frame: the largest boxes (the
   * rest stay the plain upscaled background).  0 restores every face, as
   * the reference does.  A cap bounds the time a crowded frame takes.
   */
  gst_anitalker_install_property(
      gobject_class, PROP_MAX_FACES,
      gst_anitalker_param_spec_uint("max-faces", "Max faces",
                        "Restore at most this many faces a frame, the largest; 0 = every face (default: 0)", 0, 1024,
                        0, playing),
      G_STRUCT_OFFSET(GstGfpganSr, max_faces));

  /**
   * GstGfpganSr:detect-every:
   *
   * Run the face detector on one frame in this many; the frames between
   * reuse its faces (their landmarks) for the alignment and the paste.  A
   * live avatar's head stays nearly in place, so 2-5 saves most of
   * RetinaFace's time at the cost of a paste that lags the head by up to
   * detect-every - 1 frames.  1 (the default) detects on every frame, as
   * the reference does.  A flush, a new segment or new caps detect anew.
   */
  gst_anitalker_install_property(
      gobject_class, PROP_DETECT_EVERY,
      gst_anitalker_param_spec_uint("detect-every", "Detect every",
                        "Run the face detector on one frame in N and reuse its faces in between; 1 = every frame, "
                        "exact (default: 1)",
                        1, 1000, 1, playing),
      G_STRUCT_OFFSET(GstGfpganSr, detect_every));

  /**
   * GstGfpganSr:parse-every:
   *
   * With a `parser`: run ParseNet on one frame in this many and paste the
   * faces of the frames between under its masks.  A mask lies in the
   * aligned face's coordinates and follows the head through the current
   * landmarks; it marks the face against hair, neck, clothes and
   * background (the mouth and eyes count as face), an outline a talking
   * head keeps.  ParseNet is about half of a frame's work on the CPU and as
   * much as GFPGAN on a GPU.  1 (the default) parses every frame, as the
   * reference does.  A flush, a new segment, new caps or another number of
   * faces parse anew.
   */
  gst_anitalker_install_property(
      gobject_class, PROP_PARSE_EVERY,
      gst_anitalker_param_spec_uint("parse-every", "Parse every",
                        "With a parser: make the paste masks on one frame in N and paste the frames between under "
                        "them; 1 = every frame, exact (default: 1)",
                        1, 1000, 1, playing),
      G_STRUCT_OFFSET(GstGfpganSr, parse_every));

  /**
   * GstGfpganSr:qos:
   *
   * Under real-time pressure (downstream's QoS events say a frame is already
   * late), output the plain upscaled frame instead of restoring it, rather
   * than dropping it.  Such frames are counted in #GstGfpganSr:stats.  This
   * replaces GstBaseTransform's qos property, which drops frames.
   */
  gst_anitalker_install_property(
      gobject_class, PROP_QOS,
      g_param_spec_boolean("qos", "QoS",
                           "Degrade late frames to a plain resize instead of dropping them (default: false)", FALSE,
                           playing),
      G_STRUCT_OFFSET(GstGfpganSr, qos));

  gst_anitalker_install_device_properties(gobject_class, PROP_DEVICE, G_STRUCT_OFFSET(GstGfpganSr, device),
                                          PROP_NUM_THREADS, G_STRUCT_OFFSET(GstGfpganSr, num_threads),
                                          PROP_PRECISION, G_STRUCT_OFFSET(GstGfpganSr, precision), "the networks");

  /**
   * GstGfpganSr:max-batch:
   *
   * Above 1, GFPGAN (and ParseNet and RetinaFace) is shared with the other
   * gfpgansr elements of the process that set the same model file, device,
   * precision, max-batch and max-batch-delay: their faces go through one
   * executor per network, up to this many a call.  On a GPU the faces of a call run as one batch (each within
   * float rounding of itself alone; random noise excepted, whose faces run
   * one at a time); on the CPU they take turns, each as alone, so that
   * several pipelines do not oversubscribe the cores.
   */
  gst_anitalker_install_sharing_properties(
      gobject_class, PROP_MAX_BATCH, G_STRUCT_OFFSET(GstGfpganSr, max_batch), PROP_MAX_BATCH_DELAY,
      G_STRUCT_OFFSET(GstGfpganSr, max_batch_delay),
      "Above 1: GFPGAN, ParseNet and RetinaFace shared with the other gfpgansr elements of this process that set the same "
      "model, device, precision and values, up to this many faces a call; batched on a GPU (default: 1, no sharing)",
      "face");

  /**
   * GstGfpganSr:latency-recovery:
   *
   * Seconds after which a slow frame stops counting in the latency the
   * element adds with a live upstream: the latency rises at once when a
   * frame takes longer, and falls back when the longest of the last this
   * many seconds is well under it (under 80% and by 50 ms or more).  0 keeps
   * the longest since the start.
   */
  gst_anitalker_install_property(
      gobject_class, PROP_LATENCY_RECOVERY,
      gst_anitalker_param_spec_uint(
          "latency-recovery", "Latency recovery",
          "Seconds after which a slow frame stops counting in the live latency this element adds (its longest "
          "frame): it rises at once and falls back when the longest of the last this many seconds is well under it; "
          "0 = the longest since the start (default: 60)",
          0, GST_ANITALKER_LATENCY_RECOVERY_MAX_S, GST_ANITALKER_LATENCY_RECOVERY_DEFAULT_S, playing),
      G_STRUCT_OFFSET(GstGfpganSr, latency_recovery_s));

  /**
   * GstGfpganSr:warm-up:
   *
   * On READY->PAUSED, after loading, run GFPGAN (and ParseNet, when it is
   * set and aligned is not) once on a grey face and throw the result away,
   * so that the first frame does not pay the networks' one-off set-up: on
   * the CPU oneDNN's primitives and each convolution's weights packed or
   * transformed for Winograd, about 2 of a first frame's 3 s for GFPGAN at
   * full size on 2 cores; on a GPU its kernels' selection.  A live
   * pipeline's first frame and its latency then show what a frame really
   * takes.  Each loaded model is warmed up once (a second element sharing
   * it does not again).  Turn it off for a pipeline of a single picture,
   * where it adds a pass of each network.
   */
  gst_anitalker_install_property(
      gobject_class, PROP_WARM_UP,
      g_param_spec_boolean("warm-up", "Warm up",
                           "Run the networks once on a grey face at start, so that the first frame does not pay their "
                           "one-off set-up (seconds on the CPU); false for a pipeline of one picture (default: true)",
                           TRUE, ready),
      G_STRUCT_OFFSET(GstGfpganSr, warm_up));

  /**
   * GstGfpganSr:stats:
   *
   * Counters since the element last started, as a structure named
   * `application/x-gfpgansr-stats`: `frames` (guint64, frames output),
   * `degraded` (guint64, frames output as a plain resize under QoS) and
   * `faces` (guint64, faces restored).
   */
  g_object_class_install_property(
      gobject_class, PROP_STATS,
      g_param_spec_boxed("stats", "Statistics", "Frames output, frames degraded under QoS, faces restored",
                         GST_TYPE_STRUCTURE, (GParamFlags)(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));

  gst_element_class_set_static_metadata(element_class, "GFPGAN face restoration", "Filter/Effect/Video",
                                        "Restores faces with GFPGAN v1.4 (RetinaFace detection, alignment, "
                                        "ParseNet paste mask) and upscales the frame",
                                        "anitalker-gst developers");
  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);

  trans_class->start = GST_DEBUG_FUNCPTR(gst_gfpgan_sr_start);
  trans_class->stop = GST_DEBUG_FUNCPTR(gst_gfpgan_sr_stop);
  trans_class->transform_caps = GST_DEBUG_FUNCPTR(gst_gfpgan_sr_transform_caps);
  trans_class->fixate_caps = GST_DEBUG_FUNCPTR(gst_gfpgan_sr_fixate_caps);
  trans_class->set_caps = GST_DEBUG_FUNCPTR(gst_gfpgan_sr_set_caps);
  trans_class->get_unit_size = GST_DEBUG_FUNCPTR(gst_gfpgan_sr_get_unit_size);
  trans_class->transform_size = GST_DEBUG_FUNCPTR(gst_gfpgan_sr_transform_size);
  trans_class->src_event = GST_DEBUG_FUNCPTR(gst_gfpgan_sr_src_event);
  trans_class->sink_event = GST_DEBUG_FUNCPTR(gst_gfpgan_sr_sink_event);
  trans_class->transform = GST_DEBUG_FUNCPTR(gst_gfpgan_sr_transform);
  trans_class->query = GST_DEBUG_FUNCPTR(gst_gfpgan_sr_query);
  // upscale=1 gives equal caps, and the faces must still be restored.
  trans_class->passthrough_on_same_caps = FALSE;

  gst_type_mark_as_plugin_api(GST_TYPE_GFPGAN_SR_NOISE, (GstPluginAPIFlags)0);
}

static void gst_gfpgan_sr_init(GstGfpganSr* self) {
  gst_anitalker_init_properties(G_OBJECT(self));
  self->state = new SrState();
  // Our own QoS degrades instead of dropping: the base class's stays off.
  gst_base_transform_set_qos_enabled(GST_BASE_TRANSFORM(self), FALSE);
}

static void gst_gfpgan_sr_finalize(GObject* object) {
  GstGfpganSr* self = GST_GFPGAN_SR(object);
  delete self->state;
  self->state = nullptr;
  gst_anitalker_finalize_properties(object);
  G_OBJECT_CLASS(parent_class)->finalize(object);
}

static void gst_gfpgan_sr_set_property(GObject* object, guint prop_id, const GValue* value, GParamSpec* pspec) {
  GstGfpganSr* self = GST_GFPGAN_SR(object);
  if (prop_id == PROP_ALIGNED && !g_value_get_boolean(value)) {
    // Started with aligned=true and no detector: aligned=false cannot take
    // effect while it runs.  Refused here (a WARNING while playing, the value
    // in force staying), not at the next frame, where it stopped the stream
    // with an ERROR (found 2026-12-07).
    bool started, detector;
    {
      GstAnitalkerLocked lock(&self->state->lock);
      started = self->state->model != nullptr;
      detector = self->state->detector != nullptr;
    }
    if (started && !detector) {
      gst_anitalker_refuse_setting(GST_ELEMENT_CAST(self), "aligned",
                                   "aligned=false needs the face detector, and none was loaded when the element "
                                   "started: set \"detector\" before it starts (it is loaded with aligned=true too)");
      return;
    }
  }
  const guint upscale = gst_anitalker_get(self, &self->upscale);
  gst_anitalker_set_property(object, prop_id, value, pspec);
  // The output size depends on upscale.
  if (prop_id == PROP_UPSCALE && g_value_get_uint(value) != upscale)
    gst_base_transform_reconfigure_src(GST_BASE_TRANSFORM(self));
}

static void gst_gfpgan_sr_get_property(GObject* object, guint prop_id, GValue* value, GParamSpec* pspec) {
  GstGfpganSr* self = GST_GFPGAN_SR(object);
  if (prop_id != PROP_STATS) {
    gst_anitalker_get_property(object, prop_id, value, pspec);
    return;
  }
  SrState* st = self->state;
  GstAnitalkerLocked lock(&st->lock);
  g_value_take_boxed(value, gst_structure_new(STATS_NAME, "frames", G_TYPE_UINT64, st->frames, "degraded",
                                              G_TYPE_UINT64, st->degraded, "faces", G_TYPE_UINT64, st->faces, nullptr));
}

/* --- Start and stop ------------------------------------------------------ */

static bool file_exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// READY->PAUSED: loads the networks, so that a bad path fails the state
// change with the file named (STYLE.md: weights load in start, never in caps
// handlers), and says which branch runs.
static gboolean gst_gfpgan_sr_start(GstBaseTransform* trans) {
  // Freed tensor memory kept for reuse (lib/device.h; ANITALKER_CPU_CACHE_MB caps
  // it, 0 turns it off): the networks run up to 4x faster.  Once per process.
  anitalker::cache_cpu_memory();
  GstGfpganSr* self = GST_GFPGAN_SR(trans);
  SrState* st = self->state;

  GST_OBJECT_LOCK(self);
  const std::string model_path = self->model ? self->model : "";
  const std::string detector_path = self->detector ? self->detector : "";
  const std::string parser_path = self->parser ? self->parser : "";
  const std::string device_name = self->device ? self->device : "cpu";
  const bool aligned = self->aligned;
  const bool warm_up = self->warm_up;
  GST_OBJECT_UNLOCK(self);

  if (model_path.empty()) {
    GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND, ("No GFPGAN model set."),
                      ("set the \"model\" property to GFPGANv1.4.pth"));
    return FALSE;
  }
  if (!aligned && detector_path.empty()) {
    GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND,
                      ("No face detector set: set \"detector\" to detection_Resnet50_Final.pth, or aligned=true "
                       "for frames that are one aligned face."),
                      (nullptr));
    return FALSE;
  }

  c10::Device device(c10::kCPU);
  if (!gst_anitalker_parse_device(GST_ELEMENT_CAST(self), device_name, &device)) return FALSE;
  const gint precision_value = gst_anitalker_get(self, &self->precision);
  anitalker::Precision precision;
  if (!gst_anitalker_check_precision(GST_ELEMENT_CAST(self), precision_value, device,
                                     {anitalker::Precision::Fp32, anitalker::Precision::Bf16, anitalker::Precision::Fp16},
                                     "GFPGAN", &precision))
    return FALSE;

  std::shared_ptr<const anitalker::gfpgan::Model> model;
  std::shared_ptr<const anitalker::retinaface::Model> detector;
  std::shared_ptr<const anitalker::parsenet::Model> parser;
  std::string loading = model_path;
  try {
    model = anitalker::gfpgan::Model::load(model_path, device, precision);
    // In aligned mode a detector given is loaded too (aligned may be turned
    // off while playing), but it need not exist.
    if (!detector_path.empty() && (!aligned || file_exists(detector_path))) {
      loading = detector_path;
      detector = anitalker::retinaface::Model::load(detector_path, device);
    }
    if (!parser_path.empty() && file_exists(parser_path)) {
      loading = parser_path;
      parser = anitalker::parsenet::Model::load(parser_path, device);
    }
  } catch (...) {
    GST_ANITALKER_POST_CURRENT_EXCEPTION(self, gst_anitalker_printf("Could not load \"%s\".", loading.c_str()), true);
    return FALSE;
  }

  // Which branch runs, for the user (the output differs near the face's edge).
  if (aligned) {
    GST_ELEMENT_INFO(self, RESOURCE, SETTINGS, ("aligned=true: every frame is restored as one aligned face."),
                     ("no detection, no paste-back"));
  } else if (parser_path.empty()) {
    GST_ELEMENT_INFO(self, RESOURCE, SETTINGS,
                     ("No face parser set: faces are pasted with the square soft mask (the no-parser branch)."),
                     ("set \"parser\" to parsing_parsenet.pth for the reference's parse mask"));
  } else if (!parser) {
    GST_ELEMENT_WARNING(self, RESOURCE, NOT_FOUND,
                        ("Face parser \"%s\" not found: faces are pasted with the square soft mask (the no-parser "
                         "branch).",
                         parser_path.c_str()),
                        (nullptr));
  }
  GST_INFO_OBJECT(self, "%s: %d px, on %s; detector %s; parser %s", model_path.c_str(), model->size(),
                  device.str().c_str(), detector ? detector_path.c_str() : "none",
                  parser ? parser_path.c_str() : "none");

  if (warm_up) {
    const gint64 t0 = g_get_monotonic_time();
    bool ran = false;
    try {
      ran = anitalker::gfpgan::warm_up(*model);
      if (parser && !aligned) ran = anitalker::parsenet::warm_up(*parser) || ran;
    } catch (...) {
      GST_ANITALKER_POST_CURRENT_EXCEPTION(self, "Could not run the networks on a grey face (warm-up).", false);
      return FALSE;
    }
    GST_INFO_OBJECT(self, ran ? "warmed up in %.3f s" : "warmed up before (%.3f s)",
                    (g_get_monotonic_time() - t0) / 1e6);
  }

  // max-batch above 1: the process's executor for this model (shared with
  // the other gfpgansr elements that set the same file, device, precision
  // and values).
  const guint max_batch = gst_anitalker_get(self, &self->max_batch);
  const auto max_delay = std::chrono::microseconds(gst_anitalker_get(self, &self->max_batch_delay));
  std::shared_ptr<anitalker::face::FaceBatcher> executor =
      max_batch > 1 ? anitalker::face::shared_faces(model, max_batch, max_delay) : nullptr;
  std::shared_ptr<anitalker::face::ParseBatcher> parse_executor =
      max_batch > 1 && parser ? anitalker::face::shared_parses(parser, max_batch, max_delay) : nullptr;
  std::shared_ptr<anitalker::face::DetectBatcher> detect_executor =
      max_batch > 1 && detector ? anitalker::face::shared_detections(detector, max_batch, max_delay) : nullptr;

  GstAnitalkerLocked lock(&st->lock);
  st->model = std::move(model);
  st->detector = std::move(detector);
  st->parser = std::move(parser);
  st->executor = std::move(executor);
  st->parse_executor = std::move(parse_executor);
  st->detect_executor = std::move(detect_executor);
  st->frames = st->degraded = st->faces = 0;
  st->earliest = GST_CLOCK_TIME_NONE;
  st->budget.reset();
  return TRUE;
}

static gboolean gst_gfpgan_sr_stop(GstBaseTransform* trans) {
  SrState* st = GST_GFPGAN_SR(trans)->state;
  GstAnitalkerLocked lock(&st->lock);
  st->model.reset();
  st->detector.reset();
  st->parser.reset();
  st->executor.reset();
  st->parse_executor.reset();
  st->detect_executor.reset();
  st->earliest = GST_CLOCK_TIME_NONE;
  st->track = {};
  return TRUE;
}

/* --- Caps -------------------------------------------------------------------- */

// One size field of a caps structure, multiplied (sink to src) or divided
// (src to sink) by `up`.  FALSE when no size of `v` maps (a size that is not
// a multiple of `up` has no input).
static gboolean scale_size(const GValue* v, GValue* out, gint up, gboolean multiply) {
  if (G_VALUE_HOLDS_INT(v)) {
    const gint x = g_value_get_int(v);
    if (multiply ? x > G_MAXINT / up : x % up != 0) return FALSE;
    g_value_init(out, G_TYPE_INT);
    g_value_set_int(out, multiply ? x * up : x / up);
    return TRUE;
  }
  if (GST_VALUE_HOLDS_INT_RANGE(v)) {
    const gint lo = gst_value_get_int_range_min(v), hi = gst_value_get_int_range_max(v);
    gint nlo, nhi, step = 1;
    if (multiply) {
      nlo = lo > G_MAXINT / up ? G_MAXINT : lo * up;
      nhi = (hi > G_MAXINT / up ? G_MAXINT / up : hi) * up;
      step = up;
    } else {
      nlo = (lo + up - 1) / up;
      nhi = hi / up;
    }
    if (nlo > nhi) return FALSE;
    g_value_init(out, GST_TYPE_INT_RANGE);
    if (nlo == nhi) {
      g_value_unset(out);
      g_value_init(out, G_TYPE_INT);
      g_value_set_int(out, nlo);
    } else {
      gst_value_set_int_range_step(out, nlo, nhi, step);
    }
    return TRUE;
  }
  if (GST_VALUE_HOLDS_LIST(v)) {
    g_value_init(out, GST_TYPE_LIST);
    for (guint i = 0; i < gst_value_list_get_size(v); i++) {
      GValue item = G_VALUE_INIT;
      if (scale_size(gst_value_list_get_value(v, i), &item, up, multiply))
        gst_value_list_append_and_take_value(out, &item);
    }
    if (gst_value_list_get_size(out) == 0) {
      g_value_unset(out);
      return FALSE;
    }
    return TRUE;
  }
  return FALSE;
}

// Same format and framerate, width and height times (or divided by) upscale.
static GstCaps* gst_gfpgan_sr_transform_caps(GstBaseTransform* trans, GstPadDirection direction, GstCaps* caps,
                                             GstCaps* filter) {
  const gint up = (gint)gst_anitalker_get(trans, &GST_GFPGAN_SR(trans)->upscale);
  const gboolean multiply = direction == GST_PAD_SINK;
  GstCaps* out = gst_caps_new_empty();
  for (guint i = 0; i < gst_caps_get_size(caps); i++) {
    GstStructure* s = gst_structure_copy(gst_caps_get_structure(caps, i));
    gboolean ok = TRUE;
    for (const char* field : {"width", "height"}) {
      const GValue* v = gst_structure_get_value(s, field);
      if (v == nullptr) continue;  // any size stays any size
      GValue scaled = G_VALUE_INIT;
      if (!scale_size(v, &scaled, up, multiply)) {
        ok = FALSE;
        break;
      }
      gst_structure_take_value(s, field, &scaled);
    }
    if (!ok) {
      gst_structure_free(s);
      continue;
    }
    GstCapsFeatures* f = gst_caps_get_features(caps, i);
    out = gst_caps_merge_structure_full(out, s, f ? gst_caps_features_copy(f) : nullptr);
  }
  if (filter) {
    GstCaps* t = gst_caps_intersect_full(filter, out, GST_CAPS_INTERSECT_FIRST);
    gst_caps_unref(out);
    out = t;
  }
  GST_DEBUG_OBJECT(trans, "%s x%d: %" GST_PTR_FORMAT " -> %" GST_PTR_FORMAT, multiply ? "sink->src" : "src->sink", up,
                   caps, out);
  return out;
}

// The other side's size is the exact multiple (or quotient) of this side's.
static GstCaps* gst_gfpgan_sr_fixate_caps(GstBaseTransform* trans, GstPadDirection direction, GstCaps* caps,
                                          GstCaps* othercaps) {
  const gint up = (gint)gst_anitalker_get(trans, &GST_GFPGAN_SR(trans)->upscale);
  othercaps = gst_caps_make_writable(gst_caps_truncate(othercaps));
  const GstStructure* in = gst_caps_get_structure(caps, 0);
  GstStructure* s = gst_caps_get_structure(othercaps, 0);
  for (const char* field : {"width", "height"}) {
    gint x;
    if (gst_structure_get_int(in, field, &x))
      gst_structure_fixate_field_nearest_int(s, field, direction == GST_PAD_SINK ? x * up : x / up);
  }
  gint n, d;
  if (gst_structure_get_fraction(in, "framerate", &n, &d))
    gst_structure_fixate_field_nearest_fraction(s, "framerate", n, d);
  return gst_caps_fixate(othercaps);
}

static gboolean gst_gfpgan_sr_set_caps(GstBaseTransform* trans, GstCaps* incaps, GstCaps* outcaps) {
  GstGfpganSr* self = GST_GFPGAN_SR(trans);
  SrState* st = self->state;
  const gint up = (gint)gst_anitalker_get(self, &self->upscale);
  GstVideoInfo in, out;
  if (!gst_video_info_from_caps(&in, incaps) || !gst_video_info_from_caps(&out, outcaps)) {
    // GstVideoInfo describes frames of at most 2 GB: a large input at a
    // large upscale has no output caps (before, a negotiation failure that
    // said nothing).
    gint w = 0, h = 0;
    const GstStructure* st_in = gst_caps_get_structure(incaps, 0);
    gst_structure_get_int(st_in, "width", &w);
    gst_structure_get_int(st_in, "height", &h);
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION,
                      ("Cannot restore %dx%d frames at %d times their size: GStreamer cannot describe a %" G_GINT64_FORMAT
                       "x%" G_GINT64_FORMAT " frame (at most 2 GB).",
                       w, h, up, (gint64)w * up, (gint64)h * up),
                      ("caps %" GST_PTR_FORMAT " -> %" GST_PTR_FORMAT "; lower upscale, or scale the video down before "
                       "gfpgansr",
                       incaps, outcaps));
    return FALSE;
  }
  if (GST_VIDEO_INFO_FORMAT(&in) != GST_VIDEO_INFO_FORMAT(&out) ||
      GST_VIDEO_INFO_WIDTH(&out) != GST_VIDEO_INFO_WIDTH(&in) * up ||
      GST_VIDEO_INFO_HEIGHT(&out) != GST_VIDEO_INFO_HEIGHT(&in) * up) {
    GST_ERROR_OBJECT(
        self, "output caps are not the input's format at %d times its size: %" GST_PTR_FORMAT " -> %" GST_PTR_FORMAT,
        up, incaps, outcaps);
    return FALSE;
  }
  // Caps whose frames would need more than the memory free
  // (face::result_working_memory) are refused here rather than killed by
  // the system at the first frame.
  const size_t need = anitalker::face::result_working_memory(GST_VIDEO_INFO_WIDTH(&out), GST_VIDEO_INFO_HEIGHT(&out));
  const size_t free = anitalker::device_memory_free(c10::Device(c10::kCPU));
  if (free > 0 && need > free) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION,
                      ("A %dx%d frame restored at %d times its size is %dx%d: about %s of working memory, and %s is "
                       "free.",
                       GST_VIDEO_INFO_WIDTH(&in), GST_VIDEO_INFO_HEIGHT(&in), up, GST_VIDEO_INFO_WIDTH(&out),
                       GST_VIDEO_INFO_HEIGHT(&out), anitalker::format_bytes(need).c_str(),
                       anitalker::format_bytes(free).c_str()),
                      ("lower upscale, or scale the video down before gfpgansr"));
    return FALSE;
  }
  st->in_info = in;
  st->out_info = out;
  return TRUE;
}

static gboolean gst_gfpgan_sr_get_unit_size(GstBaseTransform* trans, GstCaps* caps, gsize* size) {
  GstVideoInfo info;
  if (!gst_video_info_from_caps(&info, caps)) {
    GST_WARNING_OBJECT(trans, "not video caps: %" GST_PTR_FORMAT, caps);
    return FALSE;
  }
  *size = GST_VIDEO_INFO_SIZE(&info);
  return TRUE;
}

// One frame in, one frame out.  An input buffer smaller than one frame of
// its caps is a stream error that gives both sizes (GstBaseTransform's
// default, by unit size, only warns).  Larger is accepted: a GstVideoMeta
// may describe padded rows.
static gboolean gst_gfpgan_sr_transform_size(GstBaseTransform* trans, GstPadDirection direction, GstCaps* caps,
                                             gsize size, GstCaps* othercaps, gsize* othersize) {
  GstVideoInfo info, other;
  if (!gst_video_info_from_caps(&info, caps) || !gst_video_info_from_caps(&other, othercaps)) return FALSE;
  if (size < GST_VIDEO_INFO_SIZE(&info)) {
    if (direction == GST_PAD_SINK)
      GST_ELEMENT_ERROR(trans, STREAM, FORMAT,
                        ("A video buffer of %" G_GSIZE_FORMAT " bytes is smaller than one %s %dx%d frame (%" G_GSIZE_FORMAT
                         " bytes).",
                         size, GST_VIDEO_INFO_NAME(&info), GST_VIDEO_INFO_WIDTH(&info), GST_VIDEO_INFO_HEIGHT(&info),
                         (gsize)GST_VIDEO_INFO_SIZE(&info)),
                        (nullptr));
    return FALSE;
  }
  *othersize = GST_VIDEO_INFO_SIZE(&other);
  return TRUE;
}

/* --- Events -------------------------------------------------------------- */

static gboolean gst_gfpgan_sr_src_event(GstBaseTransform* trans, GstEvent* event) {
  SrState* st = GST_GFPGAN_SR(trans)->state;
  if (GST_EVENT_TYPE(event) == GST_EVENT_QOS) {
    gdouble proportion;
    const GstClockTime earliest = gst_anitalker_qos_earliest(event, &proportion);
    GST_LOG_OBJECT(trans, "QoS: proportion %g, earliest %" GST_TIME_FORMAT, proportion, GST_TIME_ARGS(earliest));
    GstAnitalkerLocked lock(&st->lock);
    st->earliest = earliest;
  }
  return GST_BASE_TRANSFORM_CLASS(parent_class)->src_event(trans, event);
}

static gboolean gst_gfpgan_sr_sink_event(GstBaseTransform* trans, GstEvent* event) {
  SrState* st = GST_GFPGAN_SR(trans)->state;
  if (GST_EVENT_TYPE(event) == GST_EVENT_FLUSH_STOP || GST_EVENT_TYPE(event) == GST_EVENT_SEGMENT) {
    // Running times start anew; so do the detections.
    st->track = {};
    GstAnitalkerLocked lock(&st->lock);
    st->earliest = GST_CLOCK_TIME_NONE;
  }
  return GST_BASE_TRANSFORM_CLASS(parent_class)->sink_event(trans, event);
}

/* --- Frames -------------------------------------------------------------- */

static GstFlowReturn gst_gfpgan_sr_transform(GstBaseTransform* trans, GstBuffer* inbuf, GstBuffer* outbuf) {
  GstGfpganSr* self = GST_GFPGAN_SR(trans);
  SrState* st = self->state;

  // Settings are picked up at frame boundaries.
  face::Options options;
  GST_OBJECT_LOCK(self);
  options.upscale = self->upscale;
  options.noise = self->noise == GST_GFPGAN_SR_NOISE_RANDOM ? anitalker::gfpgan::Noise::Random
                  : self->noise == GST_GFPGAN_SR_NOISE_NONE ? anitalker::gfpgan::Noise::None
                                                            : anitalker::gfpgan::Noise::Stored;
  options.only_center_face = self->only_center_face;
  options.max_faces = (int)self->max_faces;
  const int detect_every = (int)self->detect_every;
  const int parse_every = (int)self->parse_every;
  const bool aligned = self->aligned;
  const bool qos = self->qos;
  const int threads = self->num_threads;
  GST_OBJECT_UNLOCK(self);
  // OpenMP: per thread (BUILD-NOTES), so it is set here, in the streaming thread.
  anitalker::set_num_threads(threads);

  std::shared_ptr<const anitalker::gfpgan::Model> model;
  std::shared_ptr<const anitalker::retinaface::Model> detector;
  std::shared_ptr<const anitalker::parsenet::Model> parser;
  std::shared_ptr<face::FaceBatcher> executor;
  std::shared_ptr<face::ParseBatcher> parse_executor;
  std::shared_ptr<face::DetectBatcher> detect_executor;
  GstClockTime earliest;
  {
    GstAnitalkerLocked lock(&st->lock);
    model = st->model;
    detector = st->detector;
    parser = st->parser;
    executor = st->executor;
    parse_executor = st->parse_executor;
    detect_executor = st->detect_executor;
    earliest = st->earliest;
  }
  if (!model) {
    GST_ELEMENT_ERROR(self, CORE, STATE_CHANGE, ("No model to restore faces with."), (nullptr));
    return GST_FLOW_ERROR;
  }
  if (!aligned && !detector) {
    // aligned was set at start and cleared while playing.
    GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND,
                      ("No face detector loaded: aligned=false needs \"detector\" set when the element starts."),
                      (nullptr));
    return GST_FLOW_ERROR;
  }

  // Too late for downstream: the plain resize, which takes milliseconds.
  bool degrade = false;
  if (qos && GST_CLOCK_TIME_IS_VALID(earliest) && GST_BUFFER_PTS_IS_VALID(inbuf)) {
    const GstClockTime running = gst_segment_to_running_time(&trans->segment, GST_FORMAT_TIME, GST_BUFFER_PTS(inbuf));
    degrade = GST_CLOCK_TIME_IS_VALID(running) && running <= earliest;
  }

  if (gst_buffer_get_size(inbuf) < GST_VIDEO_INFO_SIZE(&st->in_info)) {
    GST_ELEMENT_ERROR(self, STREAM, FORMAT,
                      ("A video buffer of %" G_GSIZE_FORMAT " bytes is smaller than one %s %dx%d frame (%" G_GSIZE_FORMAT
                       " bytes).",
                       gst_buffer_get_size(inbuf), GST_VIDEO_INFO_NAME(&st->in_info), GST_VIDEO_INFO_WIDTH(&st->in_info),
                       GST_VIDEO_INFO_HEIGHT(&st->in_info), (gsize)GST_VIDEO_INFO_SIZE(&st->in_info)),
                      (nullptr));
    return GST_FLOW_ERROR;
  }
  GstVideoFrame in, out;
  if (!gst_video_frame_map(&in, &st->in_info, inbuf, GST_MAP_READ)) {
    GST_ELEMENT_ERROR(self, STREAM, FAILED, ("Could not map an input frame."), (nullptr));
    return GST_FLOW_ERROR;
  }
  if (!gst_video_frame_map(&out, &st->out_info, outbuf, GST_MAP_WRITE)) {
    gst_video_frame_unmap(&in);
    GST_ELEMENT_ERROR(self, STREAM, FAILED, ("Could not map an output frame."), (nullptr));
    return GST_FLOW_ERROR;
  }

  GstFlowReturn ret = GST_FLOW_OK;
  size_t faces = 0;
  const gint64 t0 = g_get_monotonic_time();
  try {
    c10::InferenceMode guard;
    const cv::Mat bgr = gst_anitalker_video_frame_to_bgr(&in);
    face::FaceRestorer restorer(model, aligned ? nullptr : detector, parser, options);
    restorer.set_executor(executor);
    restorer.set_parse_executor(parse_executor);
    restorer.set_detect_executor(detect_executor);
    const cv::Mat result = restorer.frame(bgr,
                                          degrade   ? face::FaceRestorer::FrameMode::Degraded
                                          : aligned ? face::FaceRestorer::FrameMode::Aligned
                                                    : face::FaceRestorer::FrameMode::Detect,
                                          &faces, &st->track, detect_every, parse_every);
    if (result.cols != GST_VIDEO_FRAME_WIDTH(&out) || result.rows != GST_VIDEO_FRAME_HEIGHT(&out))
      throw anitalker::Error(anitalker::Error::Kind::Runtime, "the restored frame does not fit the output caps");
    gst_anitalker_video_frame_from_bgr(result, &out);
  } catch (...) {
    GST_ANITALKER_POST_CURRENT_EXCEPTION(
        self,
        gst_anitalker_printf("Face restoration of the frame at %" GST_TIME_FORMAT " failed.",
                             GST_TIME_ARGS(GST_BUFFER_PTS(inbuf))),
        false);
    ret = GST_FLOW_ERROR;
  }
  gst_video_frame_unmap(&out);
  gst_video_frame_unmap(&in);
  if (ret != GST_FLOW_OK) return ret;

  GST_LOG_OBJECT(self, "frame %" GST_TIME_FORMAT ": %s, %zu faces, %.3f s", GST_TIME_ARGS(GST_BUFFER_PTS(inbuf)),
                 degrade ? "degraded" : "restored", faces, (g_get_monotonic_time() - t0) / 1e6);
  // What this frame waited here is part of the latency the element adds.
  gst_anitalker_add_compute(GST_ELEMENT_CAST(self), &st->budget, t0, gst_anitalker_get(self, &self->latency_recovery_s));
  GstAnitalkerLocked lock(&st->lock);
  st->frames++;
  st->faces += faces;
  if (degrade) st->degraded++;
  return GST_FLOW_OK;
}

// LATENCY: upstream's, plus (live) the longest frame's time here.
static gboolean gst_gfpgan_sr_query(GstBaseTransform* trans, GstPadDirection direction, GstQuery* query) {
  if (direction != GST_PAD_SRC || GST_QUERY_TYPE(query) != GST_QUERY_LATENCY)
    return GST_BASE_TRANSFORM_CLASS(parent_class)->query(trans, direction, query);
  if (!gst_pad_peer_query(GST_BASE_TRANSFORM_SINK_PAD(trans), query)) return FALSE;
  gboolean live;
  GstClockTime min, max;
  gst_query_parse_latency(query, &live, &min, &max);
  const GstClockTime ours = live ? GST_GFPGAN_SR(trans)->state->budget.report() : 0;
  gst_anitalker_set_latency(GST_ELEMENT_CAST(trans), query, live, min, max, ours);
  return TRUE;
}
