// hubertenc: computes AniTalker's audio features (spec/audio-features.md)
// from 16 kHz mono audio: the hidden states of a HuBERT model, or MFCCs with
// deltas.  This file does caps, buffering, timestamps, latency, the offline /
// streaming policy and the model's life cycle (DESIGN.md); the maths is in
// lib/hubert.h and lib/mfcc.h.

/**
 * SECTION:element-hubertenc
 * @title: hubertenc
 *
 * Turns 16 kHz mono speech into the audio features that AniTalker's motion
 * generator takes (`application/x-anitalker-features`, see
 * gstanitalkercaps.h for the payload):
 *
 * - with #GstHubertEnc:model naming a HuBERT folder (config.json and
 *   pytorch_model.bin, e.g. chinese-hubert-large): all hidden states of
 *   the model, 50 frames a second, each frame `layers` x `dims` float32
 *   values (25 x 1024 for chinese-hubert-large), followed at the end of
 *   the stream by one padding frame that repeats the last one, as the
 *   AniTalker demo pads (spec 1.7);
 * - with #GstHubertEnc:model set to `mfcc`: 13 MFCCs and their two delta
 *   blocks, 100 frames a second, 39 float32 values a frame (spec 2).
 *
 * The sink pad takes only 16 kHz mono (F32LE, or S16LE scaled by 1/32768);
 * put `audioconvert ! audioresample` before the element for anything else.
 *
 * Frame t gets PTS t0 + t / rate, where t0 is the PTS of the first audio
 * buffer (the segment's start when it has none); timestamps are computed
 * from t, never accumulated.  A DISCONT buffer re-anchors t0 (see below).
 *
 * ## Offline and streaming
 *
 * In offline mode the element gathers the whole utterance until EOS and then
 * computes exactly what the reference computes.  HuBERT attends over the
 * whole clip and normalises the waveform with the clip's mean and variance
 * (spec 1.10), so nothing comes out before EOS.
 *
 * In streaming mode:
 *
 * - MFCC is exact: a frame goes out as soon as its value is final (its
 *   deltas need the two frames after it, so 45 ms after its PTS), and the
 *   concatenated output equals the offline output bit for bit.
 * - HuBERT is an approximation: each time #GstHubertEnc:window ms of new
 *   audio have arrived, the model runs on that audio with up to
 *   #GstHubertEnc:context ms of already-encoded audio before it (rounded
 *   down to whole 20 ms frames), normalised with the statistics of that
 *   span alone, and only the frames of the new audio go out.  Those frames
 *   therefore see no audio after the window's end and only `context` ms
 *   before it; how far this moves the features from the offline result
 *   depends on the weights and has to be measured with the real model.  At
 *   EOS the rest goes out, then the padding frame, so the frame count equals
 *   the offline count.  With a window longer than the utterance the result
 *   is the offline one.  #GstHubertEnc:lookahead ms of audio after the
 *   window may be waited for and encoded too (HuBERT's attention sees both
 *   ways), its frames going out with the next window.  The reported latency
 *   grows by `window` + `lookahead`.  The three may change while playing
 *   (the bin's latency presets) and apply from the next window.
 *
 * In `auto` mode (the default) the element streams when upstream reports a
 * live source in the LATENCY query and works offline otherwise.
 *
 * FLUSH_STOP and SEGMENT drop the audio not yet encoded.  In streaming mode a
 * DISCONT buffer or a GAP event first finishes the stream so far (as at EOS,
 * padding frame included), then starts anew from the next buffer's PTS; the
 * next output buffer is flagged DISCONT.  Offline, the utterance runs from
 * the stream's start to EOS whatever lies between.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 filesrc location=speech.wav ! decodebin ! audioconvert ! audioresample !
 *     hubertenc model=models/chinese-hubert-large !
 *     anitalkermotion checkpoint=models/stage2_audio_only_hubert.ckpt !
 *     anitalkerrender checkpoint=models/stage1.ckpt portrait=face.jpg !
 *     videoconvert ! x264enc ! mp4mux ! filesink location=out.mp4
 * ]|
 */

#include "gsthubertenc.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "device.h"
#include "error.h"
#include "gstanitalkercaps.h"
#include "feature_stream.h"
#include "gstanitalkercommon.h"
#include "hubert.h"
#include "mfcc.h"

GST_DEBUG_CATEGORY_STATIC(gst_hubert_enc_debug);
#define GST_CAT_DEFAULT gst_hubert_enc_debug

namespace hubert = anitalker::hubert;

#define DEFAULT_DEVICE "cpu"
#define DEFAULT_NUM_THREADS 0
#define MAX_NUM_THREADS 64
#define DEFAULT_MODE GST_HUBERT_ENC_MODE_AUTO
#define DEFAULT_WINDOW_MS 2000
#define MIN_WINDOW_MS 20
#define DEFAULT_LOOKAHEAD_MS 0
#define MAX_WINDOW_MS 60000
#define DEFAULT_CONTEXT_MS 1000
#define DEFAULT_OFFLINE_LIMIT_S 120
#define MAX_OFFLINE_LIMIT_S 86400
#define MAX_CONTEXT_MS 30000
#define MODEL_MFCC "mfcc"
#define SAMPLE_RATE 16000
// Frames per output buffer: pushing a long utterance in pieces lets
// downstream start on the first ones.
#define FRAMES_PER_BUFFER 50

enum {
  PROP_0,
  PROP_MODEL,
  PROP_DEVICE,
  PROP_NUM_THREADS,
  PROP_MODE,
  PROP_WINDOW,
  PROP_CONTEXT,
  PROP_OFFLINE_LIMIT,
  PROP_LOOKAHEAD,
};

GType gst_hubert_enc_mode_get_type(void) {
  static GType type = 0;
  static const GEnumValue values[] = {
      {GST_HUBERT_ENC_MODE_OFFLINE, "Gather the whole utterance until EOS (exact)", "offline"},
      {GST_HUBERT_ENC_MODE_STREAMING, "Encode in windows as audio arrives (bounded latency)", "streaming"},
      {GST_HUBERT_ENC_MODE_AUTO, "Streaming for live upstream, else offline", "auto"},
      {0, nullptr, nullptr},
  };
  if (g_once_init_enter(&type)) {
    GType t = g_enum_register_static("GstHubertEncMode", values);
    g_once_init_leave(&type, t);
  }
  return type;
}

namespace {

// The C++ state of one element (GObject structs never run C++ constructors:
// BUILD-NOTES), made in _init and deleted in _finalize.
struct EncState {
  EncState() { g_mutex_init(&lock); }
  ~EncState() { g_mutex_clear(&lock); }

  GstAnitalkerBudget budget;  // the longest streaming window's compute time

  // Under `lock`, held briefly: read from the streaming thread, from query
  // handlers (any thread) and from the state change.  Lock order: lock, then
  // the object lock.
  GMutex lock;
  bool started = false;                         // from READY->PAUSED to PAUSED->READY
  bool is_mfcc = false;                         // kind of features
  std::shared_ptr<const hubert::Model> model;   // HuBERT only
  std::string model_dir;                        // the folder `model` came from
  GstHubertEncMode mode = DEFAULT_MODE;         // the property, as at start
  int resolved = -1;                            // -1: auto not decided yet; else 0 offline, 1 streaming
  guint offline_limit_s = DEFAULT_OFFLINE_LIMIT_S;  // as at start; 0: none

  // Streaming thread only (and the serialized events, which run in it).
  bool s16 = false;                           // sink caps: S16LE, else F32LE
  bool have_caps = false;
  GstClockTime segment_start = 0;             // of the last (TIME) segment
  GstClockTime t0 = GST_CLOCK_TIME_NONE;      // PTS of frame 0; unset until the first buffer
  bool discont = true;                        // flag the next output buffer DISCONT
  guint64 received = 0;                       // samples since the stream (re)started
  guint64 emitted = 0;                        // frames pushed since the stream (re)started
  // The windowing and the maths (lib/feature_stream.h): from start on.
  std::unique_ptr<anitalker::features::Stream> stream;

  void reset_stream() {
    t0 = GST_CLOCK_TIME_NONE;
    discont = true;
    received = 0;
    emitted = 0;
    if (stream) stream->reset();
  }
};



}  // namespace

struct _GstHubertEnc {
  GstElement parent;

  GstPad* sinkpad;
  GstPad* srcpad;

  // Properties, under the object lock.
  gchar* model;
  gchar* device;
  gint num_threads;
  GstHubertEncMode mode;
  guint window_ms;
  guint context_ms;
  guint lookahead_ms;
  guint offline_limit_s;
  gchar* settings_error;  // a refused window / look-ahead, for the next start

  EncState* state;
};

/**
 * GstHubertEnc!sink:
 *
 * 16 kHz mono audio, float32 or int16 (scaled by 1/32768, as librosa does).
 * Other rates and channel counts are refused: put audioconvert !
 * audioresample before the element.
 */
static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE(
    "sink", GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("audio/x-raw, format = (string) { F32LE, S16LE }, rate = (int) 16000, channels = (int) 1, "
                    "layout = (string) interleaved"));

/**
 * GstHubertEnc!src:
 *
 * Audio features, float32, time-major (gstanitalkercaps.h): HuBERT hidden
 * states (kind=hubert, rate 50/1, frames of layers x dims) or MFCC + deltas
 * (kind=mfcc, layers 1, dims 39, rate 100/1).
 */
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(GST_ANITALKER_FEATURES_CAPS));

#define gst_hubert_enc_parent_class parent_class
G_DEFINE_TYPE(GstHubertEnc, gst_hubert_enc, GST_TYPE_ELEMENT);
GST_ELEMENT_REGISTER_DEFINE(hubertenc, "hubertenc", GST_RANK_NONE, GST_TYPE_HUBERT_ENC);

static void gst_hubert_enc_set_property(GObject* object, guint prop_id, const GValue* value, GParamSpec* pspec);
static void gst_hubert_enc_get_property(GObject* object, guint prop_id, GValue* value, GParamSpec* pspec);
static void gst_hubert_enc_finalize(GObject* object);
static GstStateChangeReturn gst_hubert_enc_change_state(GstElement* element, GstStateChange transition);
static GstFlowReturn gst_hubert_enc_chain(GstPad* pad, GstObject* parent, GstBuffer* buffer);
static gboolean gst_hubert_enc_sink_event(GstPad* pad, GstObject* parent, GstEvent* event);
static gboolean gst_hubert_enc_src_query(GstPad* pad, GstObject* parent, GstQuery* query);

static void gst_hubert_enc_class_init(GstHubertEncClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);

  GST_DEBUG_CATEGORY_INIT(gst_hubert_enc_debug, "hubertenc", 0, "AniTalker audio features");

  gobject_class->set_property = gst_hubert_enc_set_property;
  gobject_class->get_property = gst_hubert_enc_get_property;
  gobject_class->finalize = gst_hubert_enc_finalize;

  /**
   * GstHubertEnc:model:
   *
   * A HuBERT folder (config.json and pytorch_model.bin or
   * model.safetensors, e.g. models/chinese-hubert-large), loaded when the
   * element goes from READY to PAUSED; elements with the same folder and
   * device share one copy of the weights.  The word `mfcc` selects the MFCC
   * features instead (no weights).
   */
  g_object_class_install_property(
      gobject_class, PROP_MODEL,
      g_param_spec_string("model", "Model",
                          "HuBERT model folder, loaded on READY->PAUSED, or \"mfcc\" for MFCC features "
                          "(default: none; required)",
                          nullptr,
                          (GParamFlags)(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY)));

  /**
   * GstHubertEnc:device:
   *
   * Where HuBERT runs: "cpu", "cuda" or "cuda:N" (CUDA needs a build against
   * a CUDA LibTorch).  MFCC always runs on the CPU.
   */
  g_object_class_install_property(
      gobject_class, PROP_DEVICE,
      g_param_spec_string("device", "Device", "Device to run HuBERT on: cpu, cuda or cuda:N (default: cpu)",
                          DEFAULT_DEVICE,
                          (GParamFlags)(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY)));

  /**
   * GstHubertEnc:num-threads:
   *
   * LibTorch intra-op threads of the streaming thread (OpenMP: the setting
   * is per thread).  0 leaves LibTorch's default.
   */
  g_object_class_install_property(
      gobject_class, PROP_NUM_THREADS,
      g_param_spec_int("num-threads", "Threads",
                       "LibTorch threads used by HuBERT; 0 = OMP_NUM_THREADS if set, else one per CPU core "
                       "(default: 0)",
                       0, MAX_NUM_THREADS, DEFAULT_NUM_THREADS,
                       (GParamFlags)(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING)));

  /**
   * GstHubertEnc:mode:
   *
   * offline: gather the utterance until EOS and compute the exact result;
   * streaming: emit features as audio arrives (exact for MFCC, windowed for
   * HuBERT); auto: streaming when upstream is live, else offline.
   */
  g_object_class_install_property(
      gobject_class, PROP_MODE,
      g_param_spec_enum("mode", "Mode", "offline (exact, waits for EOS), streaming, or auto (by upstream liveness)",
                        GST_TYPE_HUBERT_ENC_MODE, DEFAULT_MODE,
                        (GParamFlags)(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY)));

  /**
   * GstHubertEnc:window:
   *
   * Streaming HuBERT: milliseconds of new audio encoded at a time; the
   * latency the element adds.
   */
  const GParamFlags live_window =
      (GParamFlags)(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING);
  g_object_class_install_property(
      gobject_class, PROP_WINDOW,
      g_param_spec_uint("window", "Window",
                        "Streaming HuBERT: ms of new audio encoded at a time (the hop); may change while playing "
                        "(default: 2000)",
                        MIN_WINDOW_MS, MAX_WINDOW_MS, DEFAULT_WINDOW_MS, live_window));

  /**
   * GstHubertEnc:lookahead:
   *
   * Streaming HuBERT: milliseconds of audio after each window that are
   * waited for and encoded with it (the model's attention sees both ways);
   * their frames go out with the next window.  At most the window.  Adds
   * its length to the latency.
   */
  g_object_class_install_property(
      gobject_class, PROP_LOOKAHEAD,
      g_param_spec_uint("lookahead", "Look-ahead",
                        "Streaming HuBERT: ms of audio after each window encoded with it (right context), at most "
                        "the window; adds latency (default: 0)",
                        0, MAX_WINDOW_MS, DEFAULT_LOOKAHEAD_MS, live_window));

  /**
   * GstHubertEnc:context:
   *
   * Streaming HuBERT: milliseconds of already-encoded audio run through the
   * model again before each window (rounded down to 20 ms frames).
   */
  g_object_class_install_property(
      gobject_class, PROP_CONTEXT,
      g_param_spec_uint("context", "Context",
                        "Streaming HuBERT: ms of left context before each window (default: 1000)", 0,
                        MAX_CONTEXT_MS, DEFAULT_CONTEXT_MS, live_window));

  /**
   * GstHubertEnc:offline-limit:
   *
   * The longest audio, in seconds, encoded in one piece.  Offline HuBERT's
   * attention costs memory and time with the square of the length (a
   * 10-minute clip needs several GB), so: with mode=auto on a non-live
   * source, past this length the element goes on in windows (as streaming,
   * without a gap in the timestamps); with mode=offline, longer audio is an
   * error that suggests mode=auto or streaming.  0 = no limit.
   */
  g_object_class_install_property(
      gobject_class, PROP_OFFLINE_LIMIT,
      g_param_spec_uint("offline-limit", "Offline limit",
                        "Seconds of audio encoded in one piece: auto goes on in windows past it, offline refuses "
                        "longer audio; 0 = no limit (default: 120)",
                        0, MAX_OFFLINE_LIMIT_S, DEFAULT_OFFLINE_LIMIT_S,
                        (GParamFlags)(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY)));

  gst_element_class_set_static_metadata(element_class, "AniTalker audio features", "Filter/Analyzer/Audio",
                                        "Computes HuBERT hidden states or MFCCs of 16 kHz speech for AniTalker",
                                        "anitalker-gst developers <https://github.com/X-LANCE/AniTalker>");
  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);

  element_class->change_state = GST_DEBUG_FUNCPTR(gst_hubert_enc_change_state);
  gst_type_mark_as_plugin_api(GST_TYPE_HUBERT_ENC_MODE, (GstPluginAPIFlags)0);
}

static void gst_hubert_enc_init(GstHubertEnc* self) {
  self->sinkpad = gst_pad_new_from_static_template(&sink_template, "sink");
  gst_pad_set_chain_function(self->sinkpad, GST_DEBUG_FUNCPTR(gst_hubert_enc_chain));
  gst_pad_set_event_function(self->sinkpad, GST_DEBUG_FUNCPTR(gst_hubert_enc_sink_event));
  gst_element_add_pad(GST_ELEMENT(self), self->sinkpad);

  self->srcpad = gst_pad_new_from_static_template(&src_template, "src");
  gst_pad_set_query_function(self->srcpad, GST_DEBUG_FUNCPTR(gst_hubert_enc_src_query));
  gst_element_add_pad(GST_ELEMENT(self), self->srcpad);

  self->model = nullptr;
  self->device = g_strdup(DEFAULT_DEVICE);
  self->num_threads = DEFAULT_NUM_THREADS;
  self->mode = DEFAULT_MODE;
  self->window_ms = DEFAULT_WINDOW_MS;
  self->context_ms = DEFAULT_CONTEXT_MS;
  self->lookahead_ms = DEFAULT_LOOKAHEAD_MS;
  self->settings_error = nullptr;
  self->offline_limit_s = DEFAULT_OFFLINE_LIMIT_S;
  self->state = new EncState();
}

static void gst_hubert_enc_finalize(GObject* object) {
  GstHubertEnc* self = GST_HUBERT_ENC(object);
  delete self->state;
  self->state = nullptr;
  g_free(self->model);
  g_free(self->device);
  g_free(self->settings_error);
  G_OBJECT_CLASS(parent_class)->finalize(object);
}

static void gst_hubert_enc_set_property(GObject* object, guint prop_id, const GValue* value, GParamSpec* pspec) {
  GstHubertEnc* self = GST_HUBERT_ENC(object);
  std::string refused;  // a setting refused below, posted unlocked
  GST_OBJECT_LOCK(self);
  switch (prop_id) {
    case PROP_MODEL:
      g_free(self->model);
      self->model = g_value_dup_string(value);
      break;
    case PROP_DEVICE:
      g_free(self->device);
      self->device = g_value_dup_string(value);
      break;
    case PROP_NUM_THREADS:
      self->num_threads = g_value_get_int(value);
      break;
    case PROP_MODE:
      self->mode = (GstHubertEncMode)g_value_get_enum(value);
      break;
    case PROP_WINDOW:
    case PROP_LOOKAHEAD: {
      // A look-ahead longer than the window: refused (the value in force stays).
      const guint v = g_value_get_uint(value);
      const guint window = prop_id == PROP_WINDOW ? v : self->window_ms;
      const guint lookahead = prop_id == PROP_LOOKAHEAD ? v : self->lookahead_ms;
      if (lookahead > window) {
        refused = gst_anitalker_printf("%s=%u refused: the look-ahead can be 0 to the window (%u ms), not %u ms; "
                                       "set the window first",
                                       pspec->name, v, window, lookahead);
        break;
      }
      (prop_id == PROP_WINDOW ? self->window_ms : self->lookahead_ms) = v;
      g_clear_pointer(&self->settings_error, g_free);
      break;
    }
    case PROP_CONTEXT:
      self->context_ms = g_value_get_uint(value);
      break;
    case PROP_OFFLINE_LIMIT:
      self->offline_limit_s = g_value_get_uint(value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK(self);
  if (!refused.empty()) gst_anitalker_refuse_setting(GST_ELEMENT_CAST(self), pspec->name, refused, &self->settings_error);
  // A new window or look-ahead changes the latency: let the pipeline ask again.
  if (refused.empty() && (prop_id == PROP_WINDOW || prop_id == PROP_LOOKAHEAD) && GST_STATE(self) >= GST_STATE_PAUSED)
    gst_element_post_message(GST_ELEMENT_CAST(self), gst_message_new_latency(GST_OBJECT_CAST(self)));
}

static void gst_hubert_enc_get_property(GObject* object, guint prop_id, GValue* value, GParamSpec* pspec) {
  GstHubertEnc* self = GST_HUBERT_ENC(object);
  GST_OBJECT_LOCK(self);
  switch (prop_id) {
    case PROP_MODEL:
      g_value_set_string(value, self->model);
      break;
    case PROP_DEVICE:
      g_value_set_string(value, self->device);
      break;
    case PROP_NUM_THREADS:
      g_value_set_int(value, self->num_threads);
      break;
    case PROP_MODE:
      g_value_set_enum(value, self->mode);
      break;
    case PROP_WINDOW:
      g_value_set_uint(value, self->window_ms);
      break;
    case PROP_CONTEXT:
      g_value_set_uint(value, self->context_ms);
      break;
    case PROP_OFFLINE_LIMIT:
      g_value_set_uint(value, self->offline_limit_s);
      break;
    case PROP_LOOKAHEAD:
      g_value_set_uint(value, self->lookahead_ms);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK(self);
}

/* --- Start and stop ------------------------------------------------------ */

// READY->PAUSED: loads the model, so that a bad folder fails the state change
// with the folder named (STYLE.md: weights load in start, never in caps
// handlers), and takes the settings that hold until PAUSED->READY.
static gboolean gst_hubert_enc_start(GstHubertEnc* self) {
  // Freed tensor memory kept for reuse (lib/device.h; ANITALKER_CPU_CACHE_MB caps
  // it, 0 turns it off): the networks run up to 4x faster.  Once per process.
  anitalker::cache_cpu_memory();
  EncState* st = self->state;

  GST_OBJECT_LOCK(self);
  std::string model_dir = self->model ? self->model : "";
  std::string device_name = self->device ? self->device : DEFAULT_DEVICE;
  const GstHubertEncMode mode = self->mode;
  const guint window_ms = self->window_ms;
  const guint context_ms = self->context_ms;
  const guint offline_limit_s = self->offline_limit_s;
  const std::string settings_error = self->settings_error ? self->settings_error : "";
  GST_OBJECT_UNLOCK(self);

  if (!settings_error.empty()) {
    GST_ELEMENT_ERROR(self, LIBRARY, SETTINGS, ("A property was set to an invalid value."),
                      ("%s", settings_error.c_str()));
    return FALSE;
  }
  if (model_dir.empty()) {
    GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND, ("No model set."),
                      ("set the \"model\" property to a HuBERT folder or to \"mfcc\""));
    return FALSE;
  }

  std::shared_ptr<const hubert::Model> model;
  const bool is_mfcc = model_dir == MODEL_MFCC;
  if (!is_mfcc) {
    c10::Device device(c10::kCPU);
    if (!gst_anitalker_parse_device(GST_ELEMENT_CAST(self), device_name, &device)) return FALSE;
    try {
      model = hubert::Model::load(model_dir, device);
    } catch (...) {
      GST_ANITALKER_POST_CURRENT_EXCEPTION(
          self, gst_anitalker_printf("Could not load the HuBERT model \"%s\".", model_dir.c_str()), true);
      return FALSE;
    }
    GST_INFO_OBJECT(self, "%s: %d hidden states of %d values, on %s", model_dir.c_str(), model->num_states(),
                    model->hidden(), model->device().str().c_str());
  }

  GstAnitalkerLocked lock(&st->lock);
  st->started = true;
  st->is_mfcc = is_mfcc;
  st->model = std::move(model);
  st->model_dir = model_dir;
  st->mode = mode;
  st->resolved = mode == GST_HUBERT_ENC_MODE_AUTO ? -1 : (mode == GST_HUBERT_ENC_MODE_STREAMING ? 1 : 0);
  st->offline_limit_s = offline_limit_s;
  st->have_caps = false;
  st->segment_start = 0;
  st->budget.reset();
  anitalker::features::StreamConfig fcfg;
  fcfg.window_ms = (int)window_ms;
  fcfg.context_ms = (int)context_ms;
  st->stream = std::make_unique<anitalker::features::Stream>(st->model, fcfg);
  st->reset_stream();
  return TRUE;
}

static void gst_hubert_enc_stop(GstHubertEnc* self) {
  EncState* st = self->state;
  GstAnitalkerLocked lock(&st->lock);
  st->started = false;
  st->model.reset();
  st->have_caps = false;
  st->reset_stream();
}

static GstStateChangeReturn gst_hubert_enc_change_state(GstElement* element, GstStateChange transition) {
  GstHubertEnc* self = GST_HUBERT_ENC(element);

  if (transition == GST_STATE_CHANGE_READY_TO_PAUSED && !gst_hubert_enc_start(self)) return GST_STATE_CHANGE_FAILURE;

  GstStateChangeReturn ret = GST_ELEMENT_CLASS(parent_class)->change_state(element, transition);
  if (ret == GST_STATE_CHANGE_FAILURE) {
    if (transition == GST_STATE_CHANGE_READY_TO_PAUSED) gst_hubert_enc_stop(self);
    return ret;
  }

  if (transition == GST_STATE_CHANGE_PAUSED_TO_READY) gst_hubert_enc_stop(self);
  return ret;
}

/* --- Caps ------------------------------------------------------------------ */

// The fixed output caps; null before start.  Call with st->lock held.
static GstCaps* gst_hubert_enc_output_caps_locked(EncState* st) {
  if (!st->started) return nullptr;
  if (st->is_mfcc) {
    return gst_caps_new_simple(GST_ANITALKER_FEATURES_CAPS_NAME, "kind", G_TYPE_STRING,
                               GST_ANITALKER_FEATURES_KIND_MFCC, "layers", G_TYPE_INT, 1, "dims", G_TYPE_INT,
                               (int)anitalker::kMfccChannels, "rate", GST_TYPE_FRACTION, 100, 1, nullptr);
  }
  if (!st->model) return nullptr;
  return gst_caps_new_simple(GST_ANITALKER_FEATURES_CAPS_NAME, "kind", G_TYPE_STRING,
                             GST_ANITALKER_FEATURES_KIND_HUBERT, "layers", G_TYPE_INT, st->model->num_states(),
                             "dims", G_TYPE_INT, st->model->hidden(), "rate", GST_TYPE_FRACTION, 50, 1, nullptr);
}

static gboolean gst_hubert_enc_set_sink_caps(GstHubertEnc* self, GstCaps* caps) {
  EncState* st = self->state;
  // The template pins rate, channels and layout; only the format varies.
  const gchar* format = gst_structure_get_string(gst_caps_get_structure(caps, 0), "format");
  if (format == nullptr || (strcmp(format, "F32LE") != 0 && strcmp(format, "S16LE") != 0)) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Audio caps without a format of F32LE or S16LE."),
                      ("caps: %" GST_PTR_FORMAT, caps));
    return FALSE;
  }
  GstCaps* out;
  {
    GstAnitalkerLocked lock(&st->lock);
    out = gst_hubert_enc_output_caps_locked(st);
  }
  if (out == nullptr) return FALSE;
  st->s16 = strcmp(format, "S16LE") == 0;
  gboolean ok = gst_pad_push_event(self->srcpad, gst_event_new_caps(out));
  GST_DEBUG_OBJECT(self, "input %s, output caps %" GST_PTR_FORMAT, format, out);
  gst_caps_unref(out);
  st->have_caps = ok;
  return ok;
}

/* --- Encoding -------------------------------------------------------------- */

// Whether this stream is encoded in windows; decides `auto` on first use by
// asking upstream whether it is live.
static bool gst_hubert_enc_streaming(GstHubertEnc* self) {
  EncState* st = self->state;
  {
    GstAnitalkerLocked lock(&st->lock);
    if (st->resolved == 0 && st->mode == GST_HUBERT_ENC_MODE_AUTO && st->offline_limit_s > 0 &&
        st->received > (guint64)st->offline_limit_s * SAMPLE_RATE) {
      // Auto on a long non-live input: on in windows, from the first frame
      // not yet pushed (none: offline pushes nothing before EOS).
      GST_INFO_OBJECT(self, "mode auto: more than %u s of audio, going on in windows", st->offline_limit_s);
      st->resolved = 1;
    }
    if (st->resolved >= 0) return st->resolved == 1;
  }
  gboolean live = FALSE;
  GstQuery* q = gst_query_new_latency();
  if (gst_pad_peer_query(self->sinkpad, q)) gst_query_parse_latency(q, &live, nullptr, nullptr);
  gst_query_unref(q);
  GST_INFO_OBJECT(self, "mode auto: upstream is %slive, encoding %s", live ? "" : "not ",
                  live ? "in windows (streaming)" : "offline");
  GstAnitalkerLocked lock(&st->lock);
  st->resolved = live ? 1 : 0;
  return live;
}

// Pushes `count` frames of `frame_floats` values from `data` (time-major),
// frame indices st->emitted onwards, in buffers of at most FRAMES_PER_BUFFER.
static GstFlowReturn gst_hubert_enc_push_frames(GstHubertEnc* self, const float* data, guint64 count,
                                                size_t frame_floats, int rate) {
  EncState* st = self->state;
  if (!GST_CLOCK_TIME_IS_VALID(st->t0)) st->t0 = st->segment_start;
  for (guint64 done = 0; done < count;) {
    const guint64 n = std::min<guint64>(FRAMES_PER_BUFFER, count - done);
    const guint64 first = st->emitted;
    GstBuffer* buffer =
        gst_buffer_new_memdup(data + done * frame_floats, (gsize)(n * frame_floats * sizeof(float)));
    // Computed from the frame index, never accumulated.
    const GstClockTime start = st->t0 + gst_util_uint64_scale(first, GST_SECOND, rate);
    GST_BUFFER_PTS(buffer) = start;
    GST_BUFFER_DURATION(buffer) = st->t0 + gst_util_uint64_scale(first + n, GST_SECOND, rate) - start;
    GST_BUFFER_OFFSET(buffer) = first;
    GST_BUFFER_OFFSET_END(buffer) = first + n;
    if (st->discont) {
      GST_BUFFER_FLAG_SET(buffer, GST_BUFFER_FLAG_DISCONT);
      st->discont = false;
    }
    st->emitted += n;
    done += n;
    GstFlowReturn ret = gst_pad_push(self->srcpad, buffer);
    if (ret != GST_FLOW_OK) {
      GST_DEBUG_OBJECT(self, "push: %s", gst_flow_get_name(ret));
      return ret;
    }
  }
  return GST_FLOW_OK;
}

// The frames that are due (lib/feature_stream.h: MFCC exact, HuBERT in
// windows; `final`: all the rest, and HuBERT's padding frame), pushed.
static GstFlowReturn gst_hubert_enc_encode(GstHubertEnc* self, bool final) {
  EncState* st = self->state;
  anitalker::features::Stream* stream = st->stream.get();
  if (stream == nullptr) {
    GST_ELEMENT_ERROR(self, CORE, STATE_CHANGE, ("No model to encode with."), (nullptr));
    return GST_FLOW_ERROR;
  }
  // The window settings as now set: they may change while playing (checked
  // at set time).
  GST_OBJECT_LOCK(self);
  const int window_ms = (int)self->window_ms, context_ms = (int)self->context_ms,
            lookahead_ms = (int)self->lookahead_ms;
  GST_OBJECT_UNLOCK(self);
  stream->set_window(window_ms, context_ms, lookahead_ms);

  const gint64 t0 = g_get_monotonic_time();
  anitalker::features::Frames f = stream->next(final);
  // Streaming: a window's compute time is part of the latency we add.
  if (!final && f.count > 0 && st->budget.add((GstClockTime)(g_get_monotonic_time() - t0) * GST_USECOND))
    gst_element_post_message(GST_ELEMENT_CAST(self), gst_message_new_latency(GST_OBJECT_CAST(self)));
  if (f.count > 0)
    GST_LOG_OBJECT(self, "frames %" G_GUINT64_FORMAT " .. %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " samples",
                   st->emitted, st->emitted + f.count - 1, st->received);
  const GstFlowReturn ret =
      f.count > 0 ? gst_hubert_enc_push_frames(self, f.data.data(), (guint64)f.count, (size_t)stream->frame_floats(),
                                               stream->rate())
                  : GST_FLOW_OK;
  if (final && stream->too_short()) {
    GST_ELEMENT_WARNING(self, STREAM, FAILED,
                        ("%" G_GUINT64_FORMAT " samples of audio are too short for one HuBERT frame; no features.",
                         st->received),
                        (nullptr));
  }
  return ret;
}

// Encodes what is due; `final` at the end of a stream (EOS, or a discont in
// streaming mode).  Errors are posted here.
static GstFlowReturn gst_hubert_enc_process(GstHubertEnc* self, bool final) {
  EncState* st = self->state;
  bool is_mfcc;
  {
    GstAnitalkerLocked lock(&st->lock);
    if (!st->started) return GST_FLOW_FLUSHING;
    is_mfcc = st->is_mfcc;
  }
  if (!final && !gst_hubert_enc_streaming(self)) return GST_FLOW_OK;  // offline: all at EOS

  GST_OBJECT_LOCK(self);
  const int threads = self->num_threads;
  GST_OBJECT_UNLOCK(self);
  // OpenMP: per thread (BUILD-NOTES), so it is set here, in the streaming thread.
  anitalker::set_num_threads(threads);

  try {
    (void)is_mfcc;
    return gst_hubert_enc_encode(self, final);
  } catch (...) {
    GST_ANITALKER_POST_CURRENT_EXCEPTION(
        self, gst_anitalker_printf("Encoding %" G_GUINT64_FORMAT " samples of audio failed.", st->received), false);
    return GST_FLOW_ERROR;
  }
}

// Ends the stream so far (EOS, discont, gap): pushes every pending frame,
// then starts counting anew.  The caller decides on the DISCONT flag.
static GstFlowReturn gst_hubert_enc_drain(GstHubertEnc* self) {
  EncState* st = self->state;
  GstFlowReturn ret = GST_FLOW_OK;
  if (st->received > 0) ret = gst_hubert_enc_process(self, true);
  st->reset_stream();
  return ret;
}

static GstFlowReturn gst_hubert_enc_chain_impl(GstHubertEnc* self, GstBuffer* buffer) {
  EncState* st = self->state;
  if (!st->have_caps) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Audio arrived before its caps."), (nullptr));
    return GST_FLOW_NOT_NEGOTIATED;
  }
  const gsize size = gst_buffer_get_size(buffer);
  const gsize bps = st->s16 ? 2 : 4;
  if (size % bps != 0) {
    GST_ELEMENT_ERROR(self, STREAM, FORMAT,
                      ("An audio buffer of %" G_GSIZE_FORMAT " bytes is not a whole number of %s samples.", size,
                       st->s16 ? "S16LE" : "F32LE"),
                      (nullptr));
    return GST_FLOW_ERROR;
  }

  GstFlowReturn ret;
  if (GST_BUFFER_IS_DISCONT(buffer) && st->received > 0 && gst_hubert_enc_streaming(self)) {
    // The audio before the gap is a stream of its own.
    GST_DEBUG_OBJECT(self, "discont: draining %" G_GUINT64_FORMAT " samples", st->received);
    if ((ret = gst_hubert_enc_drain(self)) != GST_FLOW_OK) return ret;
  }
  if (!GST_CLOCK_TIME_IS_VALID(st->t0))
    st->t0 = GST_BUFFER_PTS_IS_VALID(buffer) ? GST_BUFFER_PTS(buffer) : st->segment_start;

  const gsize count = size / bps;
  if (count == 0) return GST_FLOW_OK;  // an empty buffer adds nothing (its DISCONT is handled above)
  std::vector<float> samples(count);
  GstMapInfo map;
  if (!gst_buffer_map(buffer, &map, GST_MAP_READ)) {
    GST_ELEMENT_ERROR(self, STREAM, FAILED, ("Could not map an audio buffer."), (nullptr));
    return GST_FLOW_ERROR;
  }
  if (st->s16) {
    const guint8* p = map.data;
    for (gsize i = 0; i < count; i++) {
      const gint16 v = (gint16)GST_READ_UINT16_LE(p + 2 * i);
      samples[i] = (float)v / 32768.0f;
    }
  } else {
    memcpy(samples.data(), map.data, count * sizeof(float));
#if G_BYTE_ORDER == G_BIG_ENDIAN
    for (gsize i = 0; i < count; i++) {
      guint32 u;
      memcpy(&u, &samples[i], 4);
      u = GUINT32_SWAP_LE_BE(u);
      memcpy(&samples[i], &u, 4);
    }
#endif
  }
  gst_buffer_unmap(buffer, &map);
  const gssize bad = gst_anitalker_first_non_finite(samples.data(), count);
  if (bad >= 0) {
    const guint64 at = st->received + (guint64)bad;
    GST_ELEMENT_ERROR(self, STREAM, FORMAT,
                      ("Audio sample %" G_GUINT64_FORMAT " (at %.3f s) is NaN or inf.", at, (double)at / SAMPLE_RATE),
                      ("audio samples must be finite numbers"));
    return GST_FLOW_ERROR;
  }
  if (!st->stream) {
    GST_ELEMENT_ERROR(self, CORE, STATE_CHANGE, ("No model to encode with."), (nullptr));
    return GST_FLOW_ERROR;
  }
  st->stream->push(samples.data(), (int64_t)count);
  st->received += count;

  guint limit_s;
  GstHubertEncMode mode;
  {
    GstAnitalkerLocked lock(&st->lock);
    limit_s = st->offline_limit_s;
    mode = st->mode;
  }
  if (mode == GST_HUBERT_ENC_MODE_OFFLINE && limit_s > 0 && st->received > (guint64)limit_s * SAMPLE_RATE) {
    GST_ELEMENT_ERROR(self, STREAM, TOO_LAZY,
                      ("More than %u s of audio in offline mode.", limit_s),
                      ("offline encoding costs memory with the square of the length; use mode=auto or "
                       "mode=streaming (windows), or raise offline-limit"));
    return GST_FLOW_ERROR;
  }
  return gst_hubert_enc_process(self, false);
}

static GstFlowReturn gst_hubert_enc_chain(GstPad* pad, GstObject* parent, GstBuffer* buffer) {
  (void)pad;
  GstHubertEnc* self = GST_HUBERT_ENC(parent);
  GstFlowReturn ret;
  try {
    ret = gst_hubert_enc_chain_impl(self, buffer);
  } catch (...) {
    // The lib/ calls catch their own; this is for the rest (std::bad_alloc).
    GST_ANITALKER_POST_CURRENT_EXCEPTION(self, "Encoding audio failed.", false);
    ret = GST_FLOW_ERROR;
  }
  gst_buffer_unref(buffer);
  return ret;
}

/* --- Events and queries ------------------------------------------------------ */

static gboolean gst_hubert_enc_sink_event_impl(GstHubertEnc* self, GstPad* pad, GstEvent* event) {
  EncState* st = self->state;
  switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_CAPS: {
      GstCaps* caps;
      gst_event_parse_caps(event, &caps);
      gboolean ok = gst_hubert_enc_set_sink_caps(self, caps);
      gst_event_unref(event);  // the src pad gets features caps instead
      return ok;
    }
    case GST_EVENT_FLUSH_STOP:
      st->reset_stream();
      break;
    case GST_EVENT_SEGMENT: {
      // A new segment starts a new stream: audio not yet encoded is dropped.
      if (st->received > 0)
        GST_DEBUG_OBJECT(self, "new segment: dropping %" G_GUINT64_FORMAT " samples", st->received);
      st->reset_stream();
      // Audio from a source without time counts from 0.
      st->segment_start = gst_anitalker_time_segment(GST_ELEMENT_CAST(self), &event);
      break;
    }
    case GST_EVENT_GAP:
      // Streaming: the audio before the gap is a stream of its own.  Offline
      // the utterance goes on (its frames cannot skip the gap).
      if (st->received > 0 && gst_hubert_enc_streaming(self)) gst_hubert_enc_drain(self);
      break;
    case GST_EVENT_EOS:
      // A failed encode has posted its error; EOS still goes on.
      gst_hubert_enc_drain(self);
      break;
    default:
      break;
  }
  return gst_pad_event_default(pad, GST_OBJECT(self), event);
}

static gboolean gst_hubert_enc_sink_event(GstPad* pad, GstObject* parent, GstEvent* event) {
  GstHubertEnc* self = GST_HUBERT_ENC(parent);
  try {
    return gst_hubert_enc_sink_event_impl(self, pad, event);
  } catch (...) {
    GST_ANITALKER_POST_CURRENT_EXCEPTION(self, "Handling an event failed.", false);
    return FALSE;
  }
}


static gboolean gst_hubert_enc_src_query_impl(GstHubertEnc* self, GstPad* pad, GstQuery* query) {
  EncState* st = self->state;
  switch (GST_QUERY_TYPE(query)) {
    case GST_QUERY_CAPS: {
      GstCaps* caps;
      {
        GstAnitalkerLocked lock(&st->lock);
        caps = gst_hubert_enc_output_caps_locked(st);
      }
      if (caps == nullptr) caps = gst_pad_get_pad_template_caps(pad);
      gst_anitalker_set_caps_result(query, caps);
      return TRUE;
    }
    case GST_QUERY_LATENCY: {
      if (!gst_pad_peer_query(self->sinkpad, query)) return FALSE;
      gboolean live;
      GstClockTime min, max;
      gst_query_parse_latency(query, &live, &min, &max);
      bool streaming, is_mfcc;
      {
        GstAnitalkerLocked lock(&st->lock);
        streaming = st->resolved >= 0 ? st->resolved == 1 : live;
        is_mfcc = st->is_mfcc;
      }
      GST_OBJECT_LOCK(self);
      const guint window_ms = self->window_ms + self->lookahead_ms;  // a frame waits for both
      GST_OBJECT_UNLOCK(self);
      GstClockTime ours = 0;
      if (streaming) {
        // MFCC: frame t is final when frame t+2 is complete, 720 samples
        // after frame t starts.  HuBERT: a frame waits for its window.
        const guint64 wait = is_mfcc ? 2 * anitalker::kMfccFrameStep + anitalker::kMfccFrameLength
                                     : (guint64)window_ms * SAMPLE_RATE / 1000;
        ours = gst_util_uint64_scale(wait, GST_SECOND, SAMPLE_RATE) + st->budget.report();
      } else if (live) {
        GST_WARNING_OBJECT(self, "offline mode on a live source: nothing comes out before EOS");
      }
      gst_anitalker_set_latency(GST_ELEMENT_CAST(self), query, live, min, max, ours);
      return TRUE;
    }
    default:
      break;
  }
  return gst_pad_query_default(pad, GST_OBJECT(self), query);
}

static gboolean gst_hubert_enc_src_query(GstPad* pad, GstObject* parent, GstQuery* query) {
  GstHubertEnc* self = GST_HUBERT_ENC(parent);
  try {
    return gst_hubert_enc_src_query_impl(self, pad, query);
  } catch (...) {
    GST_ANITALKER_POST_CURRENT_EXCEPTION(self, "Answering a query failed.", false);
    return FALSE;
  }
}
