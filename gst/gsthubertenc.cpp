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
 * - HuBERT is an approximation, in hops of #GstHubertEnc:window ms
 *   (rounded down to whole 20 ms frames): each time the audio of the next
 *   hop's frames has arrived (the last frame's 25 ms receptive field ends
 *   5 ms past the hop), the model runs on the new audio with up to
 *   #GstHubertEnc:context ms of already-encoded audio before it (rounded
 *   down to whole 20 ms frames), normalised with the statistics of that
 *   span alone, and the new frames go out in whole hops, counted from the
 *   stream's first frame (after a long input buffer, several at once; the
 *   rest with the next).  anitalkermotion asks for the hop (the
 *   "anitalker-features-hop" query) and adds no wait of its own for windows
 *   that are whole hops.  Those frames
 *   therefore see no audio after the window's end and only `context` ms
 *   before it; how far this moves the features from the offline result
 *   depends on the weights and has to be measured with the real model.  At
 *   EOS the rest goes out, then the padding frame, so the frame count equals
 *   the offline count.  With a window longer than the utterance the result
 *   is the offline one.  #GstHubertEnc:lookahead ms of audio after the
 *   window may be waited for and encoded too (HuBERT's attention sees both
 *   ways), its frames going out with the next window.  The reported latency
 *   grows by the hop + 5 ms + `lookahead`.  The three may change while playing
 *   (the bin's latency presets) and apply from the next window.  With
 *   #GstHubertEnc:context-cache the context is not encoded again: each
 *   window encodes only its new frames and look-ahead, attending to the
 *   keys and values its earlier windows kept (less work, a little further
 *   from offline).
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

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gstanitalkercaps.h"
#include "gstanitalkerelement.h"
#include "feature_stream.h"
#include "hubert.h"
#include "mfcc.h"

GST_DEBUG_CATEGORY_STATIC(gst_hubert_enc_debug);
#define GST_CAT_DEFAULT gst_hubert_enc_debug

namespace hubert = anitalker::hubert;

#define MODEL_MFCC "mfcc"
#define SAMPLE_RATE 16000
// Frames per output buffer: pushing a long utterance in pieces lets
// downstream start on the first ones.
#define FRAMES_PER_BUFFER 50

enum { PROP_0, PROP_MODEL, PROP_CONTEXT_CACHE };

namespace {

// The C++ state of one element: the model and the stream.
struct EncState {
  // Under `lock`, held briefly: read from the streaming thread, from query
  // handlers (any thread) and from the state change.
  GstAnitalkerMutex lock;
  bool started = false;                        // from READY->PAUSED to PAUSED->READY
  bool is_mfcc = false;                        // kind of features
  std::shared_ptr<const hubert::Model> model;  // HuBERT only
  // The frames sent since the stream (re)started: the hops of the window
  // now set count from here (the hop query, gstanitalkercaps.h).
  gint64 origin = 0;

  // With max-batch above 1 and HuBERT: the process's executor for this
  // network's windows (lib/hubert.h shared_windows), from start to stop;
  // the stream runs its passes through it.
  std::shared_ptr<hubert::WindowBatcher> shared;

  // Streaming thread only (and the serialized events, which run in it).
  bool s16 = false;       // sink caps: S16LE, else F32LE
  // The windowing and the maths (lib/feature_stream.h): from start on.
  std::unique_ptr<anitalker::features::Stream> stream;
};

}  // namespace

struct _GstHubertEnc {
  GstAnitalkerElement parent;
  gchar* model;             // properties, under the object lock
  gboolean context_cache;
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
G_DEFINE_TYPE(GstHubertEnc, gst_hubert_enc, GST_TYPE_ANITALKER_ELEMENT);
GST_ELEMENT_REGISTER_DEFINE(hubertenc, "hubertenc", GST_RANK_NONE, GST_TYPE_HUBERT_ENC);

static void gst_hubert_enc_flush(GstAnitalkerElement* element);

// The streaming windows, in ms (the hop, the left context, the look-ahead).
static const GstAnitalkerWindowSpec kWindows = {
    "ms", 20, 60000, 2000, 30000, 1000, 0,
    "Streaming HuBERT: the hop, ms of frames sent at a time (rounded down to whole 20 ms frames; the frames go out "
    "in whole hops); may change while playing (default: 2000)",
    "Streaming HuBERT: ms of left context before each window, rounded down to 20 ms frames (default: 1000)",
    "Streaming HuBERT: ms of audio after each window encoded with it (right context), at most the window; adds "
    "latency (default: 0)",
};

/* --- Start and stop ------------------------------------------------------ */

// The window settings as now set (they may change while playing).
static anitalker::features::StreamConfig window_config(GstAnitalkerElement* element) {
  anitalker::features::StreamConfig cfg;
  gst_anitalker_element_windows(element, &cfg.window_ms, &cfg.context_ms, &cfg.lookahead_ms);
  cfg.cache_context = gst_anitalker_get(element, &GST_HUBERT_ENC(element)->context_cache);
  return cfg;
}

// READY->PAUSED: loads the model, so that a bad folder fails the state change
// with the folder named (STYLE.md: weights load in start, never in caps
// handlers).
static gboolean gst_hubert_enc_start(GstAnitalkerElement* element) {
  GstHubertEnc* self = GST_HUBERT_ENC(element);
  EncState* st = self->state;
  const std::string model_dir = gst_anitalker_get_string(GST_ELEMENT_CAST(self), &self->model);
  std::shared_ptr<const hubert::Model> model;
  const bool is_mfcc = model_dir == MODEL_MFCC;
  anitalker::Precision precision;
  if (is_mfcc ? !gst_anitalker_element_precision(element, c10::Device(c10::kCPU), {anitalker::Precision::Fp32},
                                                 "MFCC", &precision)
              : !gst_anitalker_element_load(
                    element, model_dir, "model", "the HuBERT model",
                    {anitalker::Precision::Fp32, anitalker::Precision::Bf16}, "HuBERT",
                    [&](c10::Device device, anitalker::Precision precision) {
                      model = hubert::Model::load(model_dir, device, precision);
                    },
                    "a HuBERT folder (chinese-hubert-large) or to \"mfcc\""))
    return FALSE;
  if (model)
    GST_INFO_OBJECT(self, "%s: %d hidden states of %d values, on %s", model_dir.c_str(), model->num_states(),
                    model->hidden(), model->device().str().c_str());
  const anitalker::features::StreamConfig cfg = window_config(element);
  std::shared_ptr<hubert::WindowBatcher> shared;
  if (model)
    shared = gst_anitalker_element_share(element, [&](guint max_batch, std::chrono::microseconds delay) {
      return hubert::shared_windows(model, max_batch, delay);
    });

  GstAnitalkerLocked lock(&st->lock);
  st->started = true;
  st->is_mfcc = is_mfcc;
  st->shared = std::move(shared);
  st->model = std::move(model);
  st->origin = 0;
  st->stream = std::make_unique<anitalker::features::Stream>(st->model, cfg);
  st->stream->set_executor(st->shared);
  return TRUE;
}

// Streaming or auto, HuBERT: the first windows' shapes, on silence (the base's warm_up).
static gboolean gst_hubert_enc_warm_up(GstAnitalkerElement* element) {
  GstHubertEnc* self = GST_HUBERT_ENC(element);
  EncState* st = self->state;
  std::shared_ptr<const hubert::Model> model;
  {
    GstAnitalkerLocked lock(&st->lock);
    model = st->model;
  }
  const anitalker::features::StreamConfig cfg = window_config(element);
  return GST_ANITALKER_TRY(self, "Could not run HuBERT on silence (warm-up).", false,
                           GST_DEBUG_OBJECT(self, "warm-up: %d windows", anitalker::features::warm_up(model, cfg)));
}

static void gst_hubert_enc_stop(GstAnitalkerElement* element) {
  EncState* st = GST_HUBERT_ENC(element)->state;
  GstAnitalkerLocked lock(&st->lock);
  st->started = false;
  st->model.reset();
  st->shared.reset();
  st->stream.reset();
}

/* --- Caps ------------------------------------------------------------------ */

// The fixed output caps; null before start.
static GstCaps* gst_hubert_enc_get_caps(GstAnitalkerElement* element, GstPadDirection direction) {
  EncState* st = GST_HUBERT_ENC(element)->state;
  if (direction != GST_PAD_SRC) return nullptr;  // the template's
  GstAnitalkerLocked lock(&st->lock);
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

// The caps fit the template (the base checked): only the format varies.
static gboolean gst_hubert_enc_set_caps(GstAnitalkerElement* element, GstCaps* caps) {
  const gchar* format = gst_structure_get_string(gst_caps_get_structure(caps, 0), "format");
  GST_HUBERT_ENC(element)->state->s16 = strcmp(format, "S16LE") == 0;
  return gst_anitalker_element_push_caps(element, gst_hubert_enc_get_caps(element, GST_PAD_SRC));
}

/* --- Encoding -------------------------------------------------------------- */

// The frames that are due (lib/feature_stream.h: MFCC exact, HuBERT in
// windows; `final`: all the rest, and HuBERT's padding frame), pushed.
// Errors are posted here.
static GstFlowReturn gst_hubert_enc_encode(GstHubertEnc* self, bool final) {
  GstAnitalkerElement* element = GST_ANITALKER_ELEMENT(self);
  EncState* st = self->state;
  {
    GstAnitalkerLocked lock(&st->lock);
    if (!st->started || !st->stream) return GST_FLOW_FLUSHING;
  }
  if (!final && !gst_anitalker_element_streaming(element)) return GST_FLOW_OK;  // offline: all at EOS
  anitalker::features::Stream* stream = st->stream.get();
  const anitalker::features::StreamConfig cfg = window_config(element);
  const gint64 t0 = g_get_monotonic_time();
  // Offline, the whole utterance at once (seconds at full size on a CPU):
  // its progress, START and COMPLETE (or ERROR).
  const bool whole = final && !gst_anitalker_element_streaming(element) && stream->received() > 0;
  const double seconds = (double)stream->received() / SAMPLE_RATE;
  if (whole)
    gst_anitalker_post_progress(GST_ELEMENT_CAST(self), GST_PROGRESS_TYPE_START, "features", 0,
                                gst_anitalker_printf("Encoding %.2f s of audio.", seconds));
  anitalker::features::Frames f;
  if (!GST_ANITALKER_TRY(self,
                         gst_anitalker_printf("Encoding %" G_GINT64_FORMAT " samples of audio failed.",
                                              stream->received()),
                         false, stream->set_window(cfg.window_ms, cfg.context_ms, cfg.lookahead_ms);
                         stream->set_cache_context(cfg.cache_context); f = stream->next(final))) {
    if (whole)
      gst_anitalker_post_progress(GST_ELEMENT_CAST(self), GST_PROGRESS_TYPE_ERROR, "features", 0,
                                  "Encoding the audio failed.");
    return GST_FLOW_ERROR;
  }
  if (whole)
    gst_anitalker_post_progress(GST_ELEMENT_CAST(self), GST_PROGRESS_TYPE_COMPLETE, "features", 100,
                                gst_anitalker_printf("%.2f s of audio encoded in %.2f s (%" G_GINT64_FORMAT
                                                     " feature frames).",
                                                     seconds, (g_get_monotonic_time() - t0) / 1e6, f.count));
  {
    // Every window sends whole hops: the frames sent so far are a hop
    // boundary of the window now set.
    GstAnitalkerLocked lock(&st->lock);
    st->origin = stream->emitted();
  }
  if (final && stream->too_short())
    GST_ELEMENT_WARNING(self, STREAM, FAILED,
                        ("%" G_GINT64_FORMAT " samples of audio are too short for one HuBERT frame; no features.",
                         stream->received()),
                        (nullptr));
  if (f.count == 0) return GST_FLOW_OK;
  // Streaming: a window's compute time is part of the latency we add.
  if (!final) gst_anitalker_element_add_compute(element, t0);
  GST_LOG_OBJECT(self, "frames %" G_GUINT64_FORMAT " .. %" G_GUINT64_FORMAT " of %" G_GINT64_FORMAT " samples",
                 element->emitted, element->emitted + f.count - 1, stream->received());
  return gst_anitalker_element_push_frames(element, f.data.data(), (guint64)f.count, (gsize)stream->frame_floats(),
                                           stream->rate(), FRAMES_PER_BUFFER);
}

// The end of the stream so far (EOS, discont, gap): every pending frame,
// then counting anew.
static GstFlowReturn gst_hubert_enc_drain(GstAnitalkerElement* element) {
  GstHubertEnc* self = GST_HUBERT_ENC(element);
  const anitalker::features::Stream* stream = self->state->stream.get();
  const GstFlowReturn ret = stream && stream->received() > 0 ? gst_hubert_enc_encode(self, true) : GST_FLOW_OK;
  gst_hubert_enc_flush(element);
  return ret;
}

// FLUSH_STOP, SEGMENT: the audio not yet encoded is dropped.
static void gst_hubert_enc_flush(GstAnitalkerElement* element) {
  EncState* st = GST_HUBERT_ENC(element)->state;
  if (st->stream) {
    GST_DEBUG_OBJECT(element, "dropping %" G_GINT64_FORMAT " samples", st->stream->held_samples());
    st->stream->reset();
  }
  GstAnitalkerLocked lock(&st->lock);
  st->origin = 0;
}

static GstFlowReturn gst_hubert_enc_handle_buffer(GstAnitalkerElement* element, GstBuffer* buffer) {
  GstHubertEnc* self = GST_HUBERT_ENC(element);
  EncState* st = self->state;
  if (!st->stream) {
    GST_ELEMENT_ERROR(self, CORE, STATE_CHANGE, ("No model to encode with."), (nullptr));
    return GST_FLOW_ERROR;
  }
  gst_anitalker_element_anchor(element, buffer);
  std::vector<float> samples;
  const gssize count = gst_anitalker_element_take_frames(
      element, buffer, 1, "audio", (guint64)st->stream->received(), &samples,
      st->s16 ? GST_ANITALKER_VALUES_S16LE : GST_ANITALKER_VALUES_F32LE, SAMPLE_RATE);
  if (count <= 0) return count < 0 ? GST_FLOW_ERROR : GST_FLOW_OK;  // an empty buffer adds nothing
  st->stream->push(samples.data(), (int64_t)count);
  // Offline: past offline-limit, auto goes on in windows and offline fails.
  if (!gst_anitalker_element_streaming(element) &&
      gst_anitalker_element_check_offline_limit(element, (double)st->stream->received() / SAMPLE_RATE) < 0)
    return GST_FLOW_ERROR;
  return gst_hubert_enc_encode(self, false);
}

/* --- Latency --------------------------------------------------------------- */

// The hop query of anitalkermotion (gstanitalkercaps.h): answered with HuBERT
// in streaming mode.
static gboolean gst_hubert_enc_src_query(GstAnitalkerElement* element, GstQuery* query, gboolean* result) {
  if (!gst_anitalker_query_is(query, GST_ANITALKER_QUERY_FEATURES_HOP)) return FALSE;
  EncState* st = GST_HUBERT_ENC(element)->state;
  std::shared_ptr<const hubert::Model> model;
  gint64 origin;
  {
    GstAnitalkerLocked lock(&st->lock);
    if (!st->is_mfcc) model = st->model;
    origin = st->origin;
  }
  *result = FALSE;
  if (!model || !gst_anitalker_element_streaming(element)) return TRUE;
  const anitalker::features::StreamConfig cfg = window_config(element);
  gst_anitalker_hop_answer(query, (gint)anitalker::features::hop_frames(model.get(), cfg), (guint64)origin);
  *result = TRUE;
  return TRUE;
}

// Streaming: MFCC frame t is final when frame t+2 is complete, 720 samples
// after frame t starts; the first HuBERT frame of a hop waits for the hop,
// its last frame's receptive field past it (5 ms) and the look-ahead.
static GstClockTime gst_hubert_enc_latency(GstAnitalkerElement* element, gboolean) {
  EncState* st = GST_HUBERT_ENC(element)->state;
  std::shared_ptr<const hubert::Model> model;
  bool started;
  {
    GstAnitalkerLocked lock(&st->lock);
    if (!st->is_mfcc) model = st->model;
    started = st->is_mfcc || model;
  }
  const anitalker::features::StreamConfig cfg = window_config(element);
  if (!started) return (GstClockTime)(cfg.window_ms + cfg.lookahead_ms) * GST_MSECOND;  // before the model is known
  return gst_util_uint64_scale((guint64)anitalker::features::wait_samples(model.get(), cfg), GST_SECOND, SAMPLE_RATE);
}

/* --- The class ------------------------------------------------------------- */

static void gst_hubert_enc_class_init(GstHubertEncClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  GstAnitalkerElementClass* base_class = GST_ANITALKER_ELEMENT_CLASS(klass);

  GST_DEBUG_CATEGORY_INIT(gst_hubert_enc_debug, "hubertenc", 0, "AniTalker audio features");

  /**
   * GstHubertEnc:model:
   *
   * A HuBERT folder (config.json and pytorch_model.bin or
   * model.safetensors, e.g. models/chinese-hubert-large), loaded when the
   * element goes from READY to PAUSED; elements with the same folder and
   * device share one copy of the weights.  The word `mfcc` selects the MFCC
   * features instead (no weights).
   *
   * The element's other properties (device, num-threads, mode, window,
   * context, lookahead, offline-limit) are the streaming elements' common
   * ones: see docs/elements.md.
   */
  gst_anitalker_install_property(
      gobject_class, PROP_MODEL,
      g_param_spec_string("model", "Model",
                          "HuBERT model folder, loaded on READY->PAUSED, or \"mfcc\" for MFCC features "
                          "(default: none; required)",
                          nullptr, GST_ANITALKER_PARAM_READY),
      G_STRUCT_OFFSET(GstHubertEnc, model));

  /**
   * GstHubertEnc:context-cache:
   *
   * Streaming HuBERT: keep each window's keys and values (and the
   * positional convolution's input) of the frames it sends, and let the
   * next windows attend to them instead of encoding the context's audio
   * again.  A window then encodes only its new frames and look-ahead: at
   * the released size 1.9x less work at the `balanced` windows and 2.8x at
   * `low`, for features a little further from offline (the context's keys
   * were made with the right context their own window had); the figures
   * are in docs/elements.md.  May change while playing (from the next
   * window).  Offline mode ignores it.
   */
  gst_anitalker_install_property(
      gobject_class, PROP_CONTEXT_CACHE,
      g_param_spec_boolean("context-cache", "Context cache",
                           "Streaming HuBERT: attend to the context's keys and values kept from earlier windows "
                           "instead of encoding its audio again (less work, a little further from offline; "
                           "default: false)",
                           FALSE, GST_ANITALKER_PARAM_PLAYING),
      G_STRUCT_OFFSET(GstHubertEnc, context_cache));
  gst_anitalker_element_class_install_common(
      base_class,
      GST_ANITALKER_COMMON_DEVICE | GST_ANITALKER_COMMON_STREAMING | GST_ANITALKER_COMMON_SHARING |
          GST_ANITALKER_COMMON_BUDGET,
      "HuBERT (MFCC runs on the CPU)", &kWindows);

  gst_element_class_set_static_metadata(element_class, "AniTalker audio features", "Filter/Analyzer/Audio",
                                        "Computes HuBERT hidden states or MFCCs of 16 kHz speech for AniTalker",
                                        "anitalker-gst developers");
  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);

  base_class->failure = "Encoding audio failed.";
  base_class->input = "Audio";
  base_class->start = gst_hubert_enc_start;
  base_class->warm_up = gst_hubert_enc_warm_up;
  base_class->stop = gst_hubert_enc_stop;
  base_class->set_caps = gst_hubert_enc_set_caps;
  base_class->get_caps = gst_hubert_enc_get_caps;
  base_class->handle_buffer = gst_hubert_enc_handle_buffer;
  base_class->drain = gst_hubert_enc_drain;
  base_class->flush = gst_hubert_enc_flush;
  base_class->latency = gst_hubert_enc_latency;
  base_class->src_query = gst_hubert_enc_src_query;
}

static void gst_hubert_enc_init(GstHubertEnc* self) {
  self->state = gst_anitalker_element_make_state<EncState>(GST_ANITALKER_ELEMENT(self));
}
