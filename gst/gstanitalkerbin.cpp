// anitalker: the whole chain in one bin (gstanitalkerbin.h).  Plumbing only:
// it creates and links the children, finds the released files in a models
// folder (lib/models.h) and forwards its properties.

/**
 * SECTION:element-anitalker
 * @title: anitalker
 *
 * Speech in, the talking portrait out: a bin of
 *
 *     audioconvert ! audioresample ! audio/x-raw,rate=16000,channels=1,format=F32LE ! queue name=in-queue !
 *     hubertenc name=features ! anitalkermotion name=motion ! anitalkerrender name=render
 *     [! gfpgansr name=sr] [! anitalkerpaste name=paste] ! queue name=out-queue
 *
 * The two queues give the bin three threads: a live capture upstream is
 * never held up by the networks, and a synchronised sink downstream waits
 * for each frame's time without holding up the next window's work (the
 * in-queue holds up to 10 s of audio; the out-queue up to 5 s or 64 MB of
 * video).
 *
 * Its sink takes audio in any format GStreamer can convert; its src gives
 * RGB video at 25 frames a second (256x256 with the released stage1.ckpt;
 * twice that with #GstAnitalkerBin:face-sr).  The audio itself does not come
 * out: tee it before the bin to mux it with the video (see the example).
 *
 * Any photo in, the photo out: #GstAnitalkerBin:crop (auto: the square
 * around the face, found with RetinaFace from models-dir, as the authors cut
 * their training data) and #GstAnitalkerBin:paste-back (anitalkerpaste at
 * the end: the video has the photo's size, up to
 * #GstAnitalkerBin:max-size).
 *
 * With #GstAnitalkerBin:models-dir the bin finds the released files under
 * their published names: stage1.ckpt, the variant's
 * stage2_&lt;...&gt;.ckpt, chinese-hubert-large/ (HuBERT variants) and,
 * with face-sr, GFPGANv1.4.pth, detection_Resnet50_Final.pth and
 * parsing_parsenet.pth.  A missing file fails the start with an error that
 * lists each one and where it is published.  #GstAnitalkerBin:stage1,
 * #GstAnitalkerBin:stage2 and #GstAnitalkerBin:hubert override single files.
 *
 * The other properties go to the children: see hubertenc, anitalkermotion
 * and anitalkerrender for what they do.  The children are named, so
 * gst-launch can also reach their own properties (`anitalker
 * motion::lookahead=2`), and a #GstControlSource can animate the motion
 * child's pose properties (pipelines/live-pose.sh).
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 filesrc location=speech.wav ! decodebin ! tee name=t
 *     t. ! queue ! anitalker models-dir=models portrait=face.jpg ! videoconvert ! x264enc ! queue ! mux.
 *     t. ! queue ! audioconvert ! avenc_aac ! queue ! mux.
 *     mp4mux name=mux ! filesink location=out.mp4
 * ]|
 */

#include "gstanitalkerbin.h"

#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "error.h"
#include "gstanitalkercommon.h"
#include "gstanitalkermotion.h"
#include "gstanitalkerpaste.h"
#include "gstanitalkerrender.h"
#include "models.h"

GST_DEBUG_CATEGORY_STATIC(gst_anitalker_bin_debug);
#define GST_CAT_DEFAULT gst_anitalker_bin_debug

#define DEFAULT_MODELS_DIR "models"
#define DEFAULT_VARIANT GST_ANITALKER_MOTION_TYPE_HUBERT_AUDIO_ONLY
#define DEFAULT_DEVICE "cpu"
#define DEFAULT_MODE GST_ANITALKER_MODE_AUTO

enum {
  PROP_0,
  PROP_MODELS_DIR,
  PROP_PORTRAIT,
  PROP_VARIANT,
  PROP_STAGE1,
  PROP_STAGE2,
  PROP_HUBERT,
  PROP_FACE_SR,
  PROP_DEVICE,
  PROP_MODE,
  PROP_MAX_BATCH,
  PROP_MAX_BATCH_DELAY,
  PROP_LATENCY_RECOVERY,
  PROP_PRECISION,
  // The paste-back.
  PROP_PASTE_BACK,
  PROP_LATENCY,
  PROP_DETECT_EVERY,
  PROP_PARSE_EVERY,
  // The children's own properties, forwarded as they are (kForwarded): ids
  // from here on, in the table's order.
  PROP_FORWARDED,
};

struct _GstAnitalkerBin {
  GstBin parent;

  GstElement* convert;
  GstElement* resample;
  GstElement* filter;
  GstElement* in_queue;  // after the conversion: the source's thread only converts
  GstElement* features;
  GstElement* motion;
  GstElement* render;
  GstElement* sr;     // with face-sr, from NULL->READY
  GstElement* paste;  // linked with paste-back
  GstElement* out_queue;  // the chain's last element -> here -> the src ghost pad
  GstPad* srcpad;         // ghost

  // Under the object lock.
  gchar* models_dir;
  gchar* portrait;
  GstAnitalkerMotionType variant;
  gchar* stage1;
  gchar* stage2;
  gchar* hubert;
  gboolean face_sr;
  gchar* device;
  GstAnitalkerMode mode;
  gint precision;  // GstAnitalkerPrecision
  gboolean paste_back;
  GstAnitalkerLatency latency;
  guint detect_every, parse_every;  // gfpgansr's, with face-sr
  // A setting the children take from the bin changed since they last took
  // it (NULL->READY): READY->PAUSED configures them again.
  gboolean dirty;
};

// The latency presets: streaming window settings of hubertenc (ms) and
// anitalkermotion (frames of 40 ms).  hubertenc sends its frames in whole
// hops of its window; each motion window is one hop (two HuBERT frames a
// motion frame) without look-ahead, so it never waits for part of the next
// hop and adds no latency of its own (docs/elements.md has the measured
// delay and the cost of each).  The small hops keep hubertenc's context
// as keys and values (context-cache) instead of encoding its second of
// audio again at every hop.
static const struct {
  GstAnitalkerLatency preset;
  guint features_window, features_context, features_lookahead;
  gboolean features_cache;
  guint motion_window, motion_context, motion_lookahead;
} kPresets[] = {
    {GST_ANITALKER_LATENCY_QUALITY, 2000, 1000, 0, FALSE, 50, 10, 0},
    {GST_ANITALKER_LATENCY_BALANCED, 520, 1000, 100, TRUE, 13, 10, 0},
    {GST_ANITALKER_LATENCY_LOW, 120, 1000, 40, TRUE, 3, 10, 0},
};

GType gst_anitalker_latency_get_type(void) {
  static GType type = 0;
  static const GEnumValue values[] = {
      {GST_ANITALKER_LATENCY_QUALITY,
       "Windows of 2 s (features: 2000 ms, 1000 ms context; motion: 50 frames, 10 context): closest to offline",
       "quality"},
      {GST_ANITALKER_LATENCY_BALANCED,
       "Windows of 0.52 s (features: 520 ms + 100 ms look-ahead, 1000 ms context kept as keys and values; motion: "
       "13 frames, 10 context)",
       "balanced"},
      {GST_ANITALKER_LATENCY_LOW,
       "Small hops (features: 120 ms + 40 ms look-ahead, 1000 ms context kept as keys and values; motion: 3 "
       "frames, 10 context): for conversation",
       "low"},
      {0, nullptr, nullptr},
  };
  if (g_once_init_enter(&type)) {
    GType t = g_enum_register_static("GstAnitalkerLatency", values);
    g_once_init_leave(&type, t);
  }
  return type;
}

// Sets the children's windows to a preset; look-aheads first to 0, so
// that no step has a look-ahead longer than its window.
static void apply_latency(GstAnitalkerBin* self, GstAnitalkerLatency latency) {
  for (const auto& p : kPresets) {
    if (p.preset != latency) continue;
    g_object_set(self->features, "lookahead", 0u, "window", p.features_window, "context", p.features_context,
                 "lookahead", p.features_lookahead, "context-cache", p.features_cache, nullptr);
    g_object_set(self->motion, "lookahead", 0u, "window", p.motion_window, "context", p.motion_context, "lookahead",
                 p.motion_lookahead, nullptr);
  }
}

/**
 * GstAnitalkerBin!sink:
 *
 * Any raw audio; converted to 16 kHz mono float inside.
 */
static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS("audio/x-raw"));

/**
 * GstAnitalkerBin!src:
 *
 * The rendered video (anitalkerrender's, or gfpgansr's with face-sr).
 */
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS("video/x-raw"));

#define gst_anitalker_bin_parent_class parent_class
G_DEFINE_TYPE(GstAnitalkerBin, gst_anitalker_bin, GST_TYPE_BIN);
GST_ELEMENT_REGISTER_DEFINE(anitalker, "anitalker", GST_RANK_NONE, GST_TYPE_ANITALKER_BIN);

static void gst_anitalker_bin_set_property(GObject* object, guint prop_id, const GValue* value, GParamSpec* pspec);
static void gst_anitalker_bin_get_property(GObject* object, guint prop_id, GValue* value, GParamSpec* pspec);
static void gst_anitalker_bin_finalize(GObject* object);
static GstStateChangeReturn gst_anitalker_bin_change_state(GstElement* element, GstStateChange transition);

// A property of a child, re-installed on the bin with the child's spec
// (name, range, default, blurb), so the two never disagree.
static void forward_property(GObjectClass* klass, GObjectClass* child_class, guint id, const char* name) {
  GParamSpec* child = g_object_class_find_property(child_class, name);
  g_assert(child != nullptr);
  GParamSpec* spec = nullptr;
  const GParamFlags flags = (GParamFlags)(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
                                          (child->flags & (GST_PARAM_MUTABLE_PLAYING | GST_PARAM_MUTABLE_READY)));
  const char* nick = g_param_spec_get_nick(child);
  const char* blurb = g_param_spec_get_blurb(child);
  if (G_IS_PARAM_SPEC_UINT(child)) {
    GParamSpecUInt* p = G_PARAM_SPEC_UINT(child);
    spec = gst_anitalker_param_spec_uint(name, nick, blurb, p->minimum, p->maximum, p->default_value, flags);
  } else if (G_IS_PARAM_SPEC_INT(child)) {
    GParamSpecInt* p = G_PARAM_SPEC_INT(child);
    spec = gst_anitalker_param_spec_int(name, nick, blurb, p->minimum, p->maximum, p->default_value, flags);
  } else if (G_IS_PARAM_SPEC_UINT64(child)) {
    GParamSpecUInt64* p = G_PARAM_SPEC_UINT64(child);
    spec = gst_anitalker_param_spec_uint64(name, nick, blurb, p->minimum, p->maximum, p->default_value, flags);
  } else if (G_IS_PARAM_SPEC_FLOAT(child)) {
    // The child's kind of spec: bad values reach the child, which refuses them.
    GParamSpecFloat* p = G_PARAM_SPEC_FLOAT(child);
    spec = gst_anitalker_param_spec_float(name, nick, blurb, p->minimum, p->maximum, p->default_value, flags);
  } else if (G_IS_PARAM_SPEC_BOOLEAN(child)) {
    spec = g_param_spec_boolean(name, nick, blurb, G_PARAM_SPEC_BOOLEAN(child)->default_value, flags);
  } else if (G_IS_PARAM_SPEC_STRING(child)) {
    spec = g_param_spec_string(name, nick, blurb, G_PARAM_SPEC_STRING(child)->default_value, flags);
  } else if (G_IS_PARAM_SPEC_ENUM(child)) {
    spec = g_param_spec_enum(name, nick, blurb, G_PARAM_SPEC_VALUE_TYPE(child), G_PARAM_SPEC_ENUM(child)->default_value,
                             flags);
  }
  g_assert(spec != nullptr);
  g_object_class_install_property(klass, id, spec);
}

enum Child { MOTION, RENDER, PASTE };

// Property PROP_FORWARDED + i is kForwarded[i].
static const struct {
  const char* name;
  Child child;
} kForwarded[] = {
    {"steps", MOTION},
    {"min-steps", MOTION},
    {"seed", MOTION},
    {"control", MOTION},
    {"pose-yaw", MOTION},
    {"pose-pitch", MOTION},
    {"pose-roll", MOTION},
    {"pose-file", MOTION},
    {"face-location", MOTION},
    {"face-scale", MOTION},
    {"crop", RENDER},
    {"face-box", RENDER},
    {"crop-ratio", RENDER},
    {"face-index", RENDER},
    {"qos", RENDER},
    {"max-size", PASTE},
    {"feather", PASTE},
    {"colour-match", PASTE},
};

// The child and its property for a forwarded id; null otherwise.
static GstElement* forwarded(GstAnitalkerBin* self, guint id, const char** name) {
  if (id < PROP_FORWARDED || id >= PROP_FORWARDED + G_N_ELEMENTS(kForwarded)) return nullptr;
  const auto& p = kForwarded[id - PROP_FORWARDED];
  *name = p.name;
  return p.child == MOTION ? self->motion : p.child == RENDER ? self->render : self->paste;
}

static void gst_anitalker_bin_class_init(GstAnitalkerBinClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);

  GST_DEBUG_CATEGORY_INIT(gst_anitalker_bin_debug, "anitalkerbin", 0, "AniTalker bin");

  gobject_class->set_property = gst_anitalker_bin_set_property;
  gobject_class->get_property = gst_anitalker_bin_get_property;
  gobject_class->finalize = gst_anitalker_bin_finalize;

  const GParamFlags ready = GST_ANITALKER_PARAM_READY;

  g_object_class_install_property(
      gobject_class, PROP_MODELS_DIR,
      g_param_spec_string("models-dir", "Models folder",
                          "Folder with the released files under their published names (default: \"models\")",
                          DEFAULT_MODELS_DIR, ready));
  g_object_class_install_property(
      gobject_class, PROP_PORTRAIT,
      g_param_spec_string("portrait", "Portrait",
                          "Portrait image (JPEG, PNG, ...; a centred face, as the reference advises); can change "
                          "while playing (live, the current face goes on until the new one is encoded) (default: "
                          "none; required)",
                          nullptr,
                          GST_ANITALKER_PARAM_PLAYING));
  g_object_class_install_property(
      gobject_class, PROP_VARIANT,
      g_param_spec_enum("variant", "Variant",
                        "Motion model, by the reference's names (default: hubert_audio_only, the reference's advice)",
                        gst_anitalker_variant_get_type(), DEFAULT_VARIANT, ready));
  g_object_class_install_property(
      gobject_class, PROP_STAGE1,
      g_param_spec_string("stage1", "Stage-1 checkpoint",
                          "Use this stage-1 checkpoint instead of <models-dir>/stage1.ckpt (default: none)", nullptr,
                          ready));
  g_object_class_install_property(
      gobject_class, PROP_STAGE2,
      g_param_spec_string("stage2", "Stage-2 checkpoint",
                          "Use this stage-2 checkpoint instead of the variant's file in models-dir; it must be of "
                          "the variant (default: none)",
                          nullptr, ready));
  g_object_class_install_property(
      gobject_class, PROP_HUBERT,
      g_param_spec_string("hubert", "HuBERT folder",
                          "Use this HuBERT folder instead of <models-dir>/chinese-hubert-large (default: none)",
                          nullptr, ready));
  g_object_class_install_property(
      gobject_class, PROP_FACE_SR,
      g_param_spec_boolean("face-sr", "Face super-resolution",
                           "Restore the face with gfpgansr (GFPGAN v1.4) and double the size (with paste-back, the picture's size) "
                           "(default: false)", FALSE,
                           ready));
  /**
   * GstAnitalkerBin:detect-every:
   *
   * With face-sr: gfpgansr's detect-every, RetinaFace on one frame in N
   * (the frames between reuse its landmarks).  1 detects on every frame,
   * as the reference does.
   */
  g_object_class_install_property(
      gobject_class, PROP_DETECT_EVERY,
      gst_anitalker_param_spec_uint("detect-every", "Detect every",
                        "With face-sr: find the face on one frame in N and reuse it in between (gfpgansr's "
                        "detect-every); 1 = every frame, exact (default: 1)",
                        1, 1000, 1, ready));
  /**
   * GstAnitalkerBin:parse-every:
   *
   * With face-sr: gfpgansr's parse-every, ParseNet's paste masks made on
   * one frame in N.  1 parses every frame, as the reference does.
   */
  g_object_class_install_property(
      gobject_class, PROP_PARSE_EVERY,
      gst_anitalker_param_spec_uint("parse-every", "Parse every",
                        "With face-sr: make the paste masks on one frame in N and reuse them in between (gfpgansr's "
                        "parse-every); 1 = every frame, exact (default: 1)",
                        1, 1000, 1, ready));
  g_object_class_install_property(
      gobject_class, PROP_DEVICE,
      g_param_spec_string("device", "Device", "Device of every network: cpu, cuda or cuda:N (default: cpu)",
                          DEFAULT_DEVICE, ready));
  g_object_class_install_property(
      gobject_class, PROP_MODE,
      g_param_spec_enum("mode", "Mode",
                        "offline (exact, waits for EOS), streaming (bounded latency), or auto (streaming for live "
                        "sources) for features and motion",
                        GST_TYPE_ANITALKER_MODE, DEFAULT_MODE, ready));

  /**
   * GstAnitalkerBin:latency:
   *
   * How the streaming modes trade delay for closeness to the offline
   * result: sets the window, context and look-ahead of hubertenc and
   * anitalkermotion together (the children's own properties stay reachable
   * as features::window and so on, and a later preset overrides them).  May
   * change while playing: each child takes the new settings at its next
   * window, without a gap in the timestamps.  Offline mode is not affected.
   */
  g_object_class_install_property(
      gobject_class, PROP_LATENCY,
      g_param_spec_enum("latency", "Latency",
                        "Streaming windows of features and motion: quality (2 s windows, closest to offline), "
                        "balanced (hops of 0.52 s) or low (hops of 120 ms, for conversation)",
                        GST_TYPE_ANITALKER_LATENCY, GST_ANITALKER_LATENCY_QUALITY,
                        GST_ANITALKER_PARAM_PLAYING));

  /**
   * GstAnitalkerBin:precision:
   *
   * The arithmetic of every network with a reduced-precision path: set on
   * hubertenc (with HuBERT; MFCC has no network and stays fp32),
   * anitalkermotion, anitalkerrender and, with face-sr, gfpgansr (GFPGAN;
   * its detector and parser stay fp32).  fp16 goes to the renderer and
   * GFPGAN only (a GPU's bulk of the work): HuBERT and the motion generator
   * have no float16 path and stay fp32.  A child that cannot run its
   * precision refuses at start, naming the device and what it supports.
   */
  g_object_class_install_property(
      gobject_class, PROP_PRECISION,
      g_param_spec_enum("precision", "Precision",
                        "Arithmetic of HuBERT, the motion generator, the renderer and GFPGAN: fp32 (exact, as the "
                        "reference), bf16 (a CPU with AVX512_BF16: on 2 cores HuBERT and the motion generator about 1.4x, the renderer 1.3x, GFPGAN 1.0x, results not exact) or fp16 "
                        "(CUDA: the renderer and GFPGAN in float16; HuBERT and the motion generator, which have no "
                        "float16 path, in fp32); MFCC stays fp32",
                        GST_TYPE_ANITALKER_PRECISION, GST_ANITALKER_PRECISION_FP32, ready));

  /**
   * GstAnitalkerBin:max-batch:
   *
   * Above 1, hubertenc, anitalkermotion, anitalkerrender and, with
   * face-sr, gfpgansr each share one executor with the same networks of
   * every other bin (or element) of the process that sets the same files,
   * device and values: several live avatars in one process.  On the CPU
   * their requests take turns (no cores oversubscribed, each result as
   * alone); on a GPU the frames (and faces) of several pipelines run as one
   * batch.
   */
  g_object_class_install_property(
      gobject_class, PROP_MAX_BATCH,
      gst_anitalker_param_spec_uint("max-batch", "Max batch",
                        "Above 1: HuBERT, the motion generator, the renderer and GFPGAN shared with the other pipelines of "
                        "this process that set the same files, device and values, up to this many requests a call "
                        "(default: 1, no sharing)",
                        1, 1024, 1, ready));
  g_object_class_install_property(
      gobject_class, PROP_MAX_BATCH_DELAY,
      gst_anitalker_param_spec_uint("max-batch-delay", "Max batch delay",
                        "With max-batch above 1: microseconds the first request of a call waits for others "
                        "(default: 2000)",
                        0, 1000000, 2000, ready));

  /**
   * GstAnitalkerBin:latency-recovery:
   *
   * Seconds after which a compute stall stops counting in the latency the
   * chain reports (hubertenc's, anitalkermotion's, anitalkerrender's and
   * with face-sr gfpgansr's `latency-recovery`): one slow window raises the live latency at once;
   * it falls back when the stall is this old.  0 keeps the highest ever.
   */
  g_object_class_install_property(
      gobject_class, PROP_LATENCY_RECOVERY,
      gst_anitalker_param_spec_uint("latency-recovery", "Latency recovery",
                        "Seconds after which a compute stall stops counting in the live latency the chain reports (hubertenc, "
                        "anitalkermotion, anitalkerrender, gfpgansr and anitalkerpaste): it "
                        "rises at once when a window takes longer and falls back when the stall is this old (the "
                        "sinks then skip that much delay once); 0 = the highest since the start, never lowered "
                        "(default: 60)",
                        0, GST_ANITALKER_LATENCY_RECOVERY_MAX_S, GST_ANITALKER_LATENCY_RECOVERY_DEFAULT_S,
                        GST_ANITALKER_PARAM_PLAYING));

  g_object_class_install_property(
      gobject_class, PROP_PASTE_BACK,
      g_param_spec_boolean("paste-back", "Paste back",
                           "Paste the talking face back into the portrait (anitalkerpaste): the video has the "
                           "picture's size (capped by max-size); needs crop=auto or X,Y,SIDE (default: false)",
                           FALSE, ready));

  GObjectClass* classes[3] = {G_OBJECT_CLASS(g_type_class_ref(GST_TYPE_ANITALKER_MOTION)),
                              G_OBJECT_CLASS(g_type_class_ref(GST_TYPE_ANITALKER_RENDER)),
                              G_OBJECT_CLASS(g_type_class_ref(GST_TYPE_ANITALKER_PASTE))};
  for (guint i = 0; i < G_N_ELEMENTS(kForwarded); i++)
    forward_property(gobject_class, classes[kForwarded[i].child], PROP_FORWARDED + i, kForwarded[i].name);
  for (GObjectClass* c : classes) g_type_class_unref(c);

  gst_element_class_set_static_metadata(element_class, "AniTalker", "Generator/Video",
                                        "Animates a portrait from speech: HuBERT/MFCC features, diffusion motion, "
                                        "LIA rendering and optional GFPGAN face restoration",
                                        "anitalker-gst developers");
  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  element_class->change_state = GST_DEBUG_FUNCPTR(gst_anitalker_bin_change_state);
}

static GstElement* make(GstAnitalkerBin* self, const char* factory, const char* name) {
  GstElement* e = gst_element_factory_make(factory, name);
  if (e == nullptr) {
    GST_ERROR_OBJECT(self, "no element %s", factory);
    return nullptr;
  }
  gst_bin_add(GST_BIN(self), e);
  return e;
}

static void gst_anitalker_bin_init(GstAnitalkerBin* self) {
  self->models_dir = g_strdup(DEFAULT_MODELS_DIR);
  self->portrait = nullptr;
  self->variant = DEFAULT_VARIANT;
  self->stage1 = self->stage2 = self->hubert = nullptr;
  self->face_sr = FALSE;
  self->detect_every = 1;
  self->parse_every = 1;
  self->device = g_strdup(DEFAULT_DEVICE);
  self->mode = DEFAULT_MODE;
  self->precision = GST_ANITALKER_PRECISION_FP32;
  self->paste_back = FALSE;
  self->latency = GST_ANITALKER_LATENCY_QUALITY;
  self->sr = nullptr;

  self->convert = make(self, "audioconvert", "convert");
  self->resample = make(self, "audioresample", "resample");
  self->filter = make(self, "capsfilter", "format");
  self->in_queue = make(self, "queue", "in-queue");
  self->features = make(self, "hubertenc", "features");
  self->motion = make(self, "anitalkermotion", "motion");
  self->render = make(self, "anitalkerrender", "render");
  self->paste = make(self, "anitalkerpaste", "paste");  // linked at READY with paste-back
  self->out_queue = make(self, "queue", "out-queue");
  // Three threads: the source's (conversion only, so that a live capture
  // is never held up by the networks), the networks' (in-queue to
  // out-queue), and the sink's (a synchronised sink waits for each frame's
  // time there, not in the networks' thread: otherwise the next window is
  // computed only after the last frame of this one has been shown, and the
  // chain runs just in time).  Both queues are bounded by time; the
  // out-queue also by bytes (paste-back frames can be large).
  if (self->in_queue)
    g_object_set(self->in_queue, "max-size-buffers", 0u, "max-size-bytes", 0u, "max-size-time",
                 (guint64)(10 * GST_SECOND), nullptr);
  if (self->out_queue)
    g_object_set(self->out_queue, "max-size-buffers", 0u, "max-size-bytes", 64u << 20, "max-size-time",
                 (guint64)(5 * GST_SECOND), nullptr);
  // Without audioconvert/audioresample (gst-plugins-base) the start fails
  // with a message; the pads exist either way.
  if (self->filter) {
    GstCaps* caps = gst_caps_from_string("audio/x-raw, format=(string)F32LE, rate=(int)16000, channels=(int)1, "
                                         "layout=(string)interleaved");
    g_object_set(self->filter, "caps", caps, nullptr);
    gst_caps_unref(caps);
  }
  if (self->convert && self->resample && self->filter) {
    if (self->in_queue)
      gst_element_link_many(self->convert, self->resample, self->filter, self->in_queue, self->features,
                            self->motion, self->render, nullptr);
    else
      gst_element_link_many(self->convert, self->resample, self->filter, self->features, self->motion, self->render,
                            nullptr);
  }
  if (self->out_queue) gst_element_link(self->render, self->out_queue);

  GstPadTemplate* st = gst_static_pad_template_get(&sink_template);
  GstPad* sink = self->convert ? gst_element_get_static_pad(self->convert, "sink") : nullptr;
  GstPad* ghost = sink ? gst_ghost_pad_new_from_template("sink", sink, st)
                       : gst_ghost_pad_new_no_target_from_template("sink", st);
  gst_element_add_pad(GST_ELEMENT(self), ghost);
  if (sink) gst_object_unref(sink);
  gst_object_unref(st);

  GstPadTemplate* tt = gst_static_pad_template_get(&src_template);
  GstPad* src = gst_element_get_static_pad(self->out_queue ? self->out_queue : self->render, "src");
  self->srcpad = gst_ghost_pad_new_from_template("src", src, tt);
  gst_element_add_pad(GST_ELEMENT(self), self->srcpad);
  gst_object_unref(src);
  gst_object_unref(tt);
}

static void gst_anitalker_bin_finalize(GObject* object) {
  GstAnitalkerBin* self = GST_ANITALKER_BIN(object);
  g_free(self->models_dir);
  g_free(self->portrait);
  g_free(self->stage1);
  g_free(self->stage2);
  g_free(self->hubert);
  g_free(self->device);
  G_OBJECT_CLASS(parent_class)->finalize(object);
}

static void gst_anitalker_bin_set_property(GObject* object, guint prop_id, const GValue* value, GParamSpec* pspec) {
  GstAnitalkerBin* self = GST_ANITALKER_BIN(object);
  const char* name = nullptr;
  if (GstElement* child = forwarded(self, prop_id, &name)) {
    g_object_set_property(G_OBJECT(child), name, value);
    return;
  }
  if (prop_id == PROP_LATENCY_RECOVERY) {
    // The three networks', and gfpgansr's and anitalkerpaste's when there
    // are (else at the next configure, from the renderer's).
    if (!gst_anitalker_check_range(GST_ELEMENT_CAST(self), pspec, value)) return;
    for (GstElement* child : {self->features, self->motion, self->render})
      g_object_set_property(G_OBJECT(child), g_param_spec_get_name(pspec), value);
    GST_OBJECT_LOCK(self);
    GstElement* sr = self->sr ? GST_ELEMENT(gst_object_ref(self->sr)) : nullptr;
    GstElement* paste = self->paste ? GST_ELEMENT(gst_object_ref(self->paste)) : nullptr;
    GST_OBJECT_UNLOCK(self);
    for (GstElement* child : {sr, paste})
      if (child) {
        g_object_set_property(G_OBJECT(child), g_param_spec_get_name(pspec), value);
        gst_object_unref(child);
      }
    return;
  }
  if (prop_id == PROP_MAX_BATCH || prop_id == PROP_MAX_BATCH_DELAY) {
    if (!gst_anitalker_check_mutable(GST_ELEMENT_CAST(self), pspec)) return;
    // The three networks' executors alike (the renderer answers the getter);
    // gfpgansr's at the next configure.
    for (GstElement* child : {self->features, self->motion, self->render})
      g_object_set_property(G_OBJECT(child), g_param_spec_get_name(pspec), value);
    GST_OBJECT_LOCK(self);
    self->dirty = TRUE;
    GST_OBJECT_UNLOCK(self);
    return;
  }
  if (!gst_anitalker_check_mutable(GST_ELEMENT_CAST(self), pspec)) return;
  if (!gst_anitalker_check_range(GST_ELEMENT_CAST(self), pspec, value)) return;
  GST_OBJECT_LOCK(self);
  switch (prop_id) {
    case PROP_MODELS_DIR:
      g_free(self->models_dir);
      self->models_dir = gst_anitalker_dup_path_property(pspec, value);
      break;
    case PROP_PORTRAIT:
      g_free(self->portrait);
      self->portrait = gst_anitalker_dup_path_property(pspec, value);
      break;
    case PROP_VARIANT:
      self->variant = (GstAnitalkerMotionType)g_value_get_enum(value);
      break;
    case PROP_STAGE1:
      g_free(self->stage1);
      self->stage1 = gst_anitalker_dup_path_property(pspec, value);
      break;
    case PROP_STAGE2:
      g_free(self->stage2);
      self->stage2 = gst_anitalker_dup_path_property(pspec, value);
      break;
    case PROP_HUBERT:
      g_free(self->hubert);
      self->hubert = gst_anitalker_dup_path_property(pspec, value);
      break;
    case PROP_FACE_SR:
      self->face_sr = g_value_get_boolean(value);
      break;
    case PROP_DETECT_EVERY:
      self->detect_every = g_value_get_uint(value);
      break;
    case PROP_PARSE_EVERY:
      self->parse_every = g_value_get_uint(value);
      break;
    case PROP_DEVICE:
      g_free(self->device);
      self->device = g_value_dup_string(value);
      break;
    case PROP_MODE:
      self->mode = (GstAnitalkerMode)g_value_get_enum(value);
      break;
    case PROP_PRECISION:
      self->precision = g_value_get_enum(value);
      break;
    case PROP_PASTE_BACK:
      self->paste_back = g_value_get_boolean(value);
      break;
    case PROP_LATENCY:
      self->latency = (GstAnitalkerLatency)g_value_get_enum(value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
      break;
  }
  // What the children take at configure (the portrait and the latency
  // preset go to them at once, below).
  if (prop_id != PROP_PORTRAIT && prop_id != PROP_LATENCY) self->dirty = TRUE;
  GST_OBJECT_UNLOCK(self);
  gst_anitalker_accept_setting(GST_ELEMENT_CAST(self), pspec->name);
  // The portrait may change while playing: the renderer re-encodes it.
  if (prop_id == PROP_PORTRAIT) g_object_set_property(G_OBJECT(self->render), "portrait", value);
  if (prop_id == PROP_LATENCY) apply_latency(self, (GstAnitalkerLatency)g_value_get_enum(value));
}

static void gst_anitalker_bin_get_property(GObject* object, guint prop_id, GValue* value, GParamSpec* pspec) {
  GstAnitalkerBin* self = GST_ANITALKER_BIN(object);
  const char* name = nullptr;
  if (GstElement* child = forwarded(self, prop_id, &name)) {
    g_object_get_property(G_OBJECT(child), name, value);
    return;
  }
  if (prop_id == PROP_MAX_BATCH || prop_id == PROP_MAX_BATCH_DELAY || prop_id == PROP_LATENCY_RECOVERY) {
    g_object_get_property(G_OBJECT(self->render), g_param_spec_get_name(pspec), value);
    return;
  }
  GST_OBJECT_LOCK(self);
  switch (prop_id) {
    case PROP_MODELS_DIR:
      g_value_set_string(value, self->models_dir);
      break;
    case PROP_PORTRAIT:
      g_value_set_string(value, self->portrait);
      break;
    case PROP_VARIANT:
      g_value_set_enum(value, self->variant);
      break;
    case PROP_STAGE1:
      g_value_set_string(value, self->stage1);
      break;
    case PROP_STAGE2:
      g_value_set_string(value, self->stage2);
      break;
    case PROP_HUBERT:
      g_value_set_string(value, self->hubert);
      break;
    case PROP_FACE_SR:
      g_value_set_boolean(value, self->face_sr);
      break;
    case PROP_DETECT_EVERY:
      g_value_set_uint(value, self->detect_every);
      break;
    case PROP_PARSE_EVERY:
      g_value_set_uint(value, self->parse_every);
      break;
    case PROP_DEVICE:
      g_value_set_string(value, self->device);
      break;
    case PROP_MODE:
      g_value_set_enum(value, self->mode);
      break;
    case PROP_PRECISION:
      g_value_set_enum(value, self->precision);
      break;
    case PROP_PASTE_BACK:
      g_value_set_boolean(value, self->paste_back);
      break;
    case PROP_LATENCY:
      g_value_set_enum(value, self->latency);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK(self);
}

static std::string dup_or(const gchar* s, const std::string& fallback) { return s && *s ? s : fallback; }

// Links the tail of the chain: anitalkerrender [! gfpgansr] [! anitalkerpaste]
// and points the src ghost pad at its end.  gfpgansr is made when face-sr
// is first on (it may be missing) and removed when it is off.
static bool gst_anitalker_bin_set_tail(GstAnitalkerBin* self, bool sr_on, bool paste_on,
                                       const anitalker::models::Set& files, const std::string& device,
                                       gint precision) {
  // The ghost pad's target is the out-queue's src: the tail before it is
  // relinked.  (Without a queue element, the target is the tail's end.)
  if (self->out_queue) {
    GstPad* in = gst_element_get_static_pad(self->out_queue, "sink");
    GstPad* peer = gst_pad_get_peer(in);
    if (peer) {
      gst_pad_unlink(peer, in);
      gst_object_unref(peer);
    }
    gst_object_unref(in);
  } else {
    gst_ghost_pad_set_target(GST_GHOST_PAD(self->srcpad), nullptr);
  }
  if (self->sr) {
    gst_element_unlink(self->render, self->sr);
    if (self->paste) gst_element_unlink(self->sr, self->paste);
  }
  if (self->paste) gst_element_unlink(self->render, self->paste);

  if (sr_on && self->sr == nullptr) {
    self->sr = gst_element_factory_make("gfpgansr", "sr");
    if (self->sr == nullptr) {
      GST_ELEMENT_ERROR(self, CORE, MISSING_PLUGIN, ("face-sr needs the gfpgansr element, which is not installed."),
                        (nullptr));
      return false;
    }
    gst_bin_add(GST_BIN(self), self->sr);
  } else if (!sr_on && self->sr) {
    gst_element_set_state(self->sr, GST_STATE_NULL);
    gst_bin_remove(GST_BIN(self), self->sr);
    self->sr = nullptr;
  }
  if (self->sr) {
    guint max_batch = 1, max_batch_delay = 2000, recovery = GST_ANITALKER_LATENCY_RECOVERY_DEFAULT_S;  // the bin's, as the renderer holds them
    g_object_get(self->render, "max-batch", &max_batch, "max-batch-delay", &max_batch_delay, "latency-recovery",
                 &recovery, nullptr);
    GST_OBJECT_LOCK(self);
    const guint detect_every = self->detect_every, parse_every = self->parse_every;
    GST_OBJECT_UNLOCK(self);
    // gfpgansr warms up as the other children do: not in offline mode (a
    // whole clip, where its first frame's set-up is paid once anyway).
    gint mode = GST_ANITALKER_MODE_AUTO;
    g_object_get(self->motion, "mode", &mode, nullptr);
    g_object_set(self->sr, "model", files.gfpgan.c_str(), "detector", files.detector.c_str(), "parser",
                 files.parser.c_str(), "device", device.c_str(), "precision", precision, "max-batch", max_batch, "latency-recovery", recovery,
                 "max-batch-delay", max_batch_delay, "detect-every", detect_every, "parse-every", parse_every,
                 "warm-up", (gboolean)(mode != GST_ANITALKER_MODE_OFFLINE), nullptr);
  }
  if (paste_on && self->paste == nullptr) {
    GST_ELEMENT_ERROR(self, CORE, MISSING_PLUGIN, ("paste-back needs the anitalkerpaste element."), (nullptr));
    return false;
  }

  GstElement* last = self->render;
  for (GstElement* next : {sr_on ? self->sr : nullptr, paste_on ? self->paste : nullptr}) {
    if (next == nullptr) continue;
    if (!gst_element_link(last, next)) {
      GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Could not link %s to %s.", GST_ELEMENT_NAME(last),
                                                 GST_ELEMENT_NAME(next)),
                        (nullptr));
      return false;
    }
    last = next;
  }
  if (self->out_queue) {
    if (!gst_element_link(last, self->out_queue)) {
      // Name what each side takes: the usual cause is downstream's (an
      // encoder or muxer that wants at least 16x16, another format).
      GstPad* src = gst_element_get_static_pad(last, "src");
      GstPad* sink = gst_element_get_static_pad(self->out_queue, "sink");
      GstCaps* made = gst_pad_query_caps(src, nullptr);
      GstCaps* taken = gst_pad_query_caps(sink, nullptr);
      gchar* made_s = gst_caps_to_string(made);
      gchar* taken_s = gst_caps_to_string(taken);
      GST_ELEMENT_ERROR(self, CORE, NEGOTIATION,
                        ("Could not link %s to the out-queue: what it makes (%s) is nothing downstream takes (%s).",
                         GST_ELEMENT_NAME(last), made_s, taken_s),
                        (nullptr));
      g_free(made_s);
      g_free(taken_s);
      gst_caps_unref(made);
      gst_caps_unref(taken);
      gst_object_unref(src);
      gst_object_unref(sink);
      return false;
    }
    return true;
  }
  GstPad* src = gst_element_get_static_pad(last, "src");
  gst_ghost_pad_set_target(GST_GHOST_PAD(self->srcpad), src);
  gst_object_unref(src);
  return true;
}

// NULL->READY: finds the files, checks they exist, configures the children.
static gboolean gst_anitalker_bin_configure(GstAnitalkerBin* self) {
  if (!self->convert || !self->resample || !self->filter || !self->features || !self->motion || !self->render) {
    GST_ELEMENT_ERROR(self, CORE, MISSING_PLUGIN,
                      ("A child element is missing: the bin needs audioconvert, audioresample and capsfilter "
                       "(gst-plugins-base) and this plugin's hubertenc, anitalkermotion and anitalkerrender."),
                      (nullptr));
    return FALSE;
  }
  // Its own numbers refused while set (detect-every, parse-every).
  if (!gst_anitalker_check_settings(GST_ELEMENT_CAST(self))) return FALSE;
  GST_OBJECT_LOCK(self);
  const std::string dir = dup_or(self->models_dir, DEFAULT_MODELS_DIR);
  const std::string portrait = dup_or(self->portrait, "");
  const GstAnitalkerMotionType variant = self->variant;
  const std::string stage1 = dup_or(self->stage1, ""), stage2 = dup_or(self->stage2, ""),
                    hubert = dup_or(self->hubert, "");
  const bool face_sr = self->face_sr;
  const std::string device = dup_or(self->device, DEFAULT_DEVICE);
  const GstAnitalkerMode mode = self->mode;
  const gint precision = self->precision;
  const bool paste_back = self->paste_back;
  self->dirty = FALSE;
  GST_OBJECT_UNLOCK(self);
  // crop=auto without a face box runs the detector: its file is needed.
  gchar* crop = nullptr;
  gchar* face_box = nullptr;
  g_object_get(self->render, "crop", &crop, "face-box", &face_box, nullptr);
  const bool detect = crop && std::string(crop) == "auto" && (face_box == nullptr || *face_box == 0);
  g_free(crop);
  g_free(face_box);

  if (portrait.empty()) {
    GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND, ("No portrait set."), ("set the \"portrait\" property to an image"));
    return FALSE;
  }
  if (variant == GST_ANITALKER_MOTION_TYPE_AUTO) {
    GST_ELEMENT_ERROR(self, LIBRARY, SETTINGS, ("variant=auto is not a variant the bin can find files for."),
                      ("use one of hubert_audio_only, hubert_pose_only, hubert_full_control, mfcc_pose_only, "
                       "mfcc_full_control"));
    return FALSE;
  }
  GEnumClass* ec = G_ENUM_CLASS(g_type_class_ref(GST_TYPE_ANITALKER_MOTION_TYPE));
  const std::string variant_name = g_enum_get_value(ec, variant)->value_nick;
  g_type_class_unref(ec);

  anitalker::models::Set files = anitalker::models::resolve(dir, variant_name, face_sr, detect);
  // Overrides replace their entries in the checks.
  std::vector<anitalker::models::File> checked;
  for (const anitalker::models::File& f : files.files) {
    if (!stage1.empty() && f.path == files.stage1) continue;
    if (!stage2.empty() && f.path == files.stage2) continue;
    if (!hubert.empty() && !files.hubert_dir.empty() && f.path.rfind(files.hubert_dir + "/", 0) == 0) continue;
    checked.push_back(f);
  }
  if (!stage1.empty()) files.stage1 = stage1;
  if (!stage2.empty()) files.stage2 = stage2;
  if (!hubert.empty() && !files.hubert_dir.empty()) files.hubert_dir = hubert;
  files.files = checked;
  const std::vector<anitalker::models::File> missing = anitalker::models::missing(files);
  if (!missing.empty()) {
    const std::string text = anitalker::models::describe_missing(missing, dir);
    GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND, ("%s", text.c_str()),
                      ("models-dir \"%s\", variant %s", dir.c_str(), variant_name.c_str()));
    return FALSE;
  }

  GST_INFO_OBJECT(self, "variant %s: %s, %s, %s", variant_name.c_str(), files.stage1.c_str(), files.stage2.c_str(),
                  files.hubert_dir.empty() ? "mfcc" : files.hubert_dir.c_str());
  const bool mfcc = files.hubert_dir.empty();
  // fp16 is for the renderer and GFPGAN (the GPU's bulk of the work);
  // HuBERT and the motion generator, which have no float16 path, stay fp32.
  const gint audio_precision = precision == GST_ANITALKER_PRECISION_FP16 ? (gint)GST_ANITALKER_PRECISION_FP32 : precision;
  g_object_set(self->features, "model", mfcc ? "mfcc" : files.hubert_dir.c_str(), "device", device.c_str(),
               "precision", mfcc ? (gint)GST_ANITALKER_PRECISION_FP32 : audio_precision, nullptr);
  g_object_set(self->motion, "checkpoint", files.stage2.c_str(), "type", variant, "device", device.c_str(), "mode",
               mode, "precision", audio_precision, nullptr);
  g_object_set(self->features, "mode", mode, nullptr);
  // The detector goes to the renderer whenever models-dir has it, needed
  // now or not: crop=auto (or face-box cleared) set after this, in READY or
  // while playing, finds it (until 2026-12-07 the renderer then said it
  // had no detector).  It is required only where the crop needs it now.
  std::string detector = files.detector;
  if (detector.empty()) {
    const std::string found = anitalker::models::resolve(dir, variant_name, face_sr, true).detector;
    struct stat st;
    if (!found.empty() && ::stat(found.c_str(), &st) == 0 && S_ISREG(st.st_mode)) detector = found;
  }
  g_object_set(self->render, "checkpoint", files.stage1.c_str(), "portrait", portrait.c_str(), "device",
               device.c_str(), "detector", detector.empty() ? nullptr : detector.c_str(), "precision", precision,
               nullptr);
  return gst_anitalker_bin_set_tail(self, face_sr, paste_back, files, device, precision) ? TRUE : FALSE;
}

// READY->PAUSED: the children that load networks and the portrait
// (hubertenc, anitalkerrender, gfpgansr) go to PAUSED at once, each from a
// thread of its own, before GstBin walks all the children in order (it
// then finds these in PAUSED already).  Their loads are file reads, page
// faults and single-threaded unpacking, and their warm-ups oneDNN's
// single-threaded set-up for a good part: at full size on 2 cores
// (latency=balanced, bf16) a live start took 3.3-3.8 s one after another
// and 2.7-3.0 s so; with face-sr 8.8-14.2 s and 7.8-8.2 s.
// anitalkermotion starts after, alone, as before: its warm-up measures its
// last window to choose the live stream's first step count (min-steps),
// which the others' work beside it would make look slower than it is.
// Errors are the children's own (GST_ELEMENT_ERROR from their start); one
// that fails fails the bin's change, as GstBin's own walk would, and the
// others, in PAUSED, go down with the bin.  mode=offline (`generate`): one
// after another, as before: without the warm-ups the loads alone, mostly
// page faults of fresh memory, contend and gain nothing (measured at full
// size: 1.20-1.79 s one after another, 1.29-1.65 s at once).
// ANITALKER_PARALLEL_START=0: one after another (a measurement's baseline).
static GstStateChangeReturn gst_anitalker_bin_start_children(GstAnitalkerBin* self) {
  const char* env = std::getenv("ANITALKER_PARALLEL_START");
  if (env && std::strcmp(env, "0") == 0) return GST_STATE_CHANGE_SUCCESS;
  std::vector<GstElement*> children;
  GST_OBJECT_LOCK(self);
  if (self->mode != GST_ANITALKER_MODE_OFFLINE)
    for (GstElement* e : {self->features, self->render, self->sr})
      if (e && GST_OBJECT_PARENT(e) == GST_OBJECT_CAST(self)) children.push_back(GST_ELEMENT(gst_object_ref(e)));
  GST_OBJECT_UNLOCK(self);
  std::vector<GstStateChangeReturn> results(children.size(), GST_STATE_CHANGE_SUCCESS);
  std::vector<std::thread> threads;
  for (size_t i = 1; i < children.size(); i++)
    threads.emplace_back([&children, &results, i] { results[i] = gst_element_set_state(children[i], GST_STATE_PAUSED); });
  // The first in this thread.
  if (!children.empty()) results[0] = gst_element_set_state(children[0], GST_STATE_PAUSED);
  for (std::thread& t : threads) t.join();
  GstStateChangeReturn ret = GST_STATE_CHANGE_SUCCESS;
  for (size_t i = 0; i < children.size(); i++) {
    if (results[i] == GST_STATE_CHANGE_FAILURE) {
      GST_INFO_OBJECT(self, "%s did not start", GST_ELEMENT_NAME(children[i]));
      ret = GST_STATE_CHANGE_FAILURE;
    }
    gst_object_unref(children[i]);
  }
  return ret;
}

static GstStateChangeReturn gst_anitalker_bin_change_state(GstElement* element, GstStateChange transition) {
  GstAnitalkerBin* self = GST_ANITALKER_BIN(element);
  GST_OBJECT_LOCK(self);
  const bool dirty = self->dirty;
  GST_OBJECT_UNLOCK(self);
  // NULL->READY, and READY->PAUSED after a setting changed in READY (the
  // children are in READY still and take it).
  if (transition == GST_STATE_CHANGE_NULL_TO_READY || (transition == GST_STATE_CHANGE_READY_TO_PAUSED && dirty)) {
    gboolean ok = FALSE;
    try {
      ok = gst_anitalker_bin_configure(self);
    } catch (...) {
      GST_ANITALKER_POST_CURRENT_EXCEPTION(self, "Could not configure the bin.", false);
    }
    if (!ok) return GST_STATE_CHANGE_FAILURE;
  }
  if (transition == GST_STATE_CHANGE_READY_TO_PAUSED &&
      gst_anitalker_bin_start_children(self) == GST_STATE_CHANGE_FAILURE)
    return GST_STATE_CHANGE_FAILURE;
  return GST_ELEMENT_CLASS(parent_class)->change_state(element, transition);
}
