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
 * ## Holes, overlaps and drift in the audio
 *
 * The frames are timed by the samples (frame t at t0 + t / rate), so the
 * element keeps the samples on the audio's own timeline: each buffer's PTS
 * is compared with the end of the audio taken so far (t0 + samples / 16000).
 *
 * - Within #GstHubertEnc:tolerance (40 ms by default) the buffer simply
 *   follows, DISCONT flag or not: timestamp jitter and a DISCONT that lost
 *   no time (a resampler's resync) change nothing.
 * - Later by more (a lost packet, a source whose clock runs fast): the hole
 *   is filled with silence, so the video keeps the audio's time and the
 *   motion goes on without a seam.  A GAP event is filled the same way up to
 *   its end.  In streaming mode a hole longer than #GstHubertEnc:gap-fill
 *   (500 ms by default; 0: none filled) instead finishes the stream so far
 *   (as at EOS, padding frame included) and starts anew at the buffer's
 *   PTS, the next output buffer flagged DISCONT (and a GAP event is passed
 *   on); offline every hole is filled.
 * - Earlier by more (audio that repeats time already taken, a source whose
 *   clock runs slow): the samples before the end of the audio taken are
 *   dropped.  Further back than gap-fill (the source's timestamps started
 *   again): in streaming mode the stream so far ends and starts anew at the
 *   buffer's PTS; offline the samples follow as they come.
 *
 * Without these the video drifted from the audio by every lost packet and
 * by the sources' clock drift, for good, and every DISCONT cut the motion
 * (docs/reliability.md).  A DISCONT buffer without a PTS still finishes the
 * stream so far in streaming mode.  FLUSH_STOP drops the audio not yet
 * encoded; a SEGMENT finishes it first (both modes: a concat or playlist of
 * clips gives each its frames; until 2026-12-06 it was dropped, offline the
 * whole clip before the segment).
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

#include <algorithm>
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

enum { PROP_0, PROP_MODEL, PROP_CONTEXT_CACHE, PROP_TOLERANCE, PROP_GAP_FILL, PROP_STATS };

#define STATS_NAME "application/x-hubertenc-stats"

#define TOLERANCE_DEFAULT_MS 40
#define GAP_FILL_DEFAULT_MS 500

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

  // The audio's timeline since the start, for the stats property: holes
  // filled with silence and their seconds, overlaps dropped and their
  // seconds, streams ended by a hole or timestamps that went back.
  guint64 holes = 0, overlaps = 0, restarts = 0;
  double silence_s = 0, dropped_s = 0;

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
  guint tolerance_ms;  // how far a buffer's PTS may lie from the audio's end before it counts
  guint gap_fill_ms;   // streaming: the longest hole filled with silence
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
  st->holes = st->overlaps = st->restarts = 0;
  st->silence_s = st->dropped_s = 0;
  st->is_mfcc = is_mfcc;
  st->shared = std::move(shared);
  st->model = std::move(model);
  st->origin = 0;
  st->stream = std::make_unique<anitalker::features::Stream>(st->model, cfg);
  st->stream->set_executor(st->shared);
  // A flush (a seek) or a stop while the whole utterance is encoded stops
  // the pass at its next layer, not after all of them.
  st->stream->set_interrupt([element]() {
    if (gst_anitalker_element_cancelled(element)) throw GstAnitalkerCancelled();
  });
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
  int windows = 0;
  if (!GST_ANITALKER_TRY(self, "Could not run HuBERT on silence (warm-up).", false,
                         windows = anitalker::features::warm_up(model, cfg)))
    return FALSE;
  // Not inside the logging macro: it evaluates its arguments only when the
  // category logs at DEBUG (until 2026-12-07 the warm-up ran only then).
  GST_DEBUG_OBJECT(self, "warm-up: %d windows", windows);
  return TRUE;
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
  bool cancelled = false;
  if (!GST_ANITALKER_TRY(self,
                         gst_anitalker_printf("Encoding %" G_GINT64_FORMAT " samples of audio failed.",
                                              stream->received()),
                         false, try {
                           stream->set_window(cfg.window_ms, cfg.context_ms, cfg.lookahead_ms);
                           stream->set_cache_context(cfg.cache_context);
                           f = stream->next(final);
                         } catch (const GstAnitalkerCancelled&) { cancelled = true; })) {
    if (whole)
      gst_anitalker_post_progress(GST_ELEMENT_CAST(self), GST_PROGRESS_TYPE_ERROR, "features", 0,
                                  "Encoding the audio failed.");
    return GST_FLOW_ERROR;
  }
  if (cancelled) {
    GST_DEBUG_OBJECT(self, "encoding stopped by a flush or a stop");
    if (whole)
      gst_anitalker_post_progress(GST_ELEMENT_CAST(self), GST_PROGRESS_TYPE_CANCELED, "features", 0,
                                  "Encoding the audio stopped (a flush or a stop).");
    return GST_FLOW_FLUSHING;
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

// FLUSH_STOP: the audio not yet encoded is dropped (a SEGMENT drains first).
static void gst_hubert_enc_flush(GstAnitalkerElement* element) {
  EncState* st = GST_HUBERT_ENC(element)->state;
  if (st->stream) {
    GST_DEBUG_OBJECT(element, "dropping %" G_GINT64_FORMAT " samples", st->stream->held_samples());
    st->stream->reset();
  }
  GstAnitalkerLocked lock(&st->lock);
  st->origin = 0;
}

/* --- The audio's timeline --------------------------------------------------- */

// Appends `count` samples to the stream and encodes what is due (offline:
// past offline-limit, auto goes on in windows and offline fails).
static GstFlowReturn take_samples(GstHubertEnc* self, const float* samples, gint64 count) {
  GstAnitalkerElement* element = GST_ANITALKER_ELEMENT(self);
  EncState* st = self->state;
  st->stream->push(samples, count);
  if (!gst_anitalker_element_streaming(element) &&
      gst_anitalker_element_check_offline_limit(element, (double)st->stream->received() / SAMPLE_RATE) < 0)
    return GST_FLOW_ERROR;
  return gst_hubert_enc_encode(self, false);
}

// How far `pts` lies after the end of the audio taken since the stream's
// start (t0 + samples / rate): positive for a hole, negative for an overlap.
static GstClockTimeDiff lead(GstHubertEnc* self, GstClockTime pts) {
  GstAnitalkerElement* element = GST_ANITALKER_ELEMENT(self);
  const GstClockTime end = element->t0 + gst_util_uint64_scale_round((guint64)self->state->stream->received(),
                                                                      GST_SECOND, SAMPLE_RATE);
  return GST_CLOCK_DIFF(end, pts);
}

// Where the audio taken so far ends (the base holds serialized events
// until the frames reach it): on the samples' timeline, which does not need
// the buffers' durations (appsrc do-timestamp=true sets none).
static GstClockTime gst_hubert_enc_input_end(GstAnitalkerElement* element) {
  GstHubertEnc* self = GST_HUBERT_ENC(element);
  if (!GST_CLOCK_TIME_IS_VALID(element->t0) || !self->state->stream) return GST_CLOCK_TIME_NONE;
  return element->t0 + gst_util_uint64_scale_round((guint64)self->state->stream->received(), GST_SECOND, SAMPLE_RATE);
}

// Ends the stream so far (gst_anitalker_element_restart), counted in stats.
static GstFlowReturn restart_stream(GstHubertEnc* self) {
  {
    GstAnitalkerLocked lock(&self->state->lock);
    self->state->restarts++;
  }
  return gst_anitalker_element_restart(GST_ANITALKER_ELEMENT(self));
}

// A hole of `hole` ns in the audio before `what` (a buffer, a gap):
// silence fills it, in pieces of a second.  In windows (streaming, or
// `auto` gone past offline-limit meanwhile) what is left of it, when longer
// than gap-fill, is not computed but finishes the stream so far instead
// (*restarted): a timestamp hours ahead is not hours of silence.
static GstFlowReturn close_hole(GstHubertEnc* self, GstClockTimeDiff hole, const char* what, bool* restarted) {
  GstAnitalkerElement* element = GST_ANITALKER_ELEMENT(self);
  const GstClockTimeDiff gap_fill = (GstClockTimeDiff)gst_anitalker_get(self, &self->gap_fill_ms) * GST_MSECOND;
  *restarted = false;
  const guint64 n = gst_util_uint64_scale_round((guint64)hole, SAMPLE_RATE, GST_SECOND);
  const std::vector<float> silence((size_t)std::min<guint64>(n, SAMPLE_RATE), 0.0f);
  GstFlowReturn ret = GST_FLOW_OK;
  for (guint64 filled = 0; filled < n && ret == GST_FLOW_OK;) {
    const GstClockTimeDiff left = hole - (GstClockTimeDiff)gst_util_uint64_scale(filled, GST_SECOND, SAMPLE_RATE);
    if (gst_anitalker_element_streaming(element) && left > gap_fill) {
      GST_INFO_OBJECT(self, "a hole of %.3f s before the %s, %.3f s of it over gap-fill: the stream so far ends",
                      hole / 1e9, what, left / 1e9);
      *restarted = true;
      return restart_stream(self);
    }
    const guint64 piece = std::min<guint64>(n - filled, silence.size());
    {
      GstAnitalkerLocked lock(&self->state->lock);
      if (filled == 0) self->state->holes++;
      self->state->silence_s += (double)piece / SAMPLE_RATE;
    }
    GST_INFO_OBJECT(self, "a hole of %.3f s before the %s: %" G_GUINT64_FORMAT " samples of silence", hole / 1e9,
                    what, piece);
    ret = take_samples(self, silence.data(), (gint64)piece);
    filled += piece;
  }
  return ret;
}

static GstFlowReturn gst_hubert_enc_handle_buffer(GstAnitalkerElement* element, GstBuffer* buffer) {
  GstHubertEnc* self = GST_HUBERT_ENC(element);
  EncState* st = self->state;
  if (!st->stream) {
    GST_ELEMENT_ERROR(self, CORE, STATE_CHANGE, ("No model to encode with."), (nullptr));
    return GST_FLOW_ERROR;
  }
  // The buffer against the audio's timeline (see "Holes, overlaps and drift"
  // above): a hole is filled or ends the stream, an overlap is cut off.
  guint64 overlap = 0;
  if (GST_CLOCK_TIME_IS_VALID(element->t0) && GST_BUFFER_PTS_IS_VALID(buffer)) {
    const GstClockTimeDiff tolerance = (GstClockTimeDiff)gst_anitalker_get(self, &self->tolerance_ms) * GST_MSECOND;
    const GstClockTimeDiff d = lead(self, GST_BUFFER_PTS(buffer));
    if (d > tolerance) {
      bool restarted;
      const GstFlowReturn ret = close_hole(self, d, "buffer", &restarted);
      if (ret != GST_FLOW_OK) return ret;
    } else if (d < -tolerance && -d <= (GstClockTimeDiff)gst_anitalker_get(self, &self->gap_fill_ms) * GST_MSECOND) {
      overlap = gst_util_uint64_scale_round((guint64)-d, SAMPLE_RATE, GST_SECOND);
      {
        GstAnitalkerLocked lock(&st->lock);
        st->overlaps++;
        st->dropped_s += (double)overlap / SAMPLE_RATE;  // at most the buffer's, counted below
      }
      GST_INFO_OBJECT(self, "the buffer at %" GST_TIME_FORMAT " repeats %.3f s of audio already taken: dropped",
                      GST_TIME_ARGS(GST_BUFFER_PTS(buffer)), -d / 1e9);
    } else if (d < -tolerance) {
      // Further back than gap-fill: the source's timestamps started again.
      GST_INFO_OBJECT(self, "the timestamps went back by %.3f s: %s", -d / 1e9,
                      gst_anitalker_element_streaming(element) ? "the stream so far ends" : "taken as they come");
      if (gst_anitalker_element_streaming(element)) {
        const GstFlowReturn ret = restart_stream(self);
        if (ret != GST_FLOW_OK) return ret;
      }
    } else if (GST_BUFFER_IS_DISCONT(buffer)) {
      GST_DEBUG_OBJECT(self, "DISCONT %.3f ms from the audio's end: within tolerance, the stream goes on", d / 1e6);
    }
  } else if (GST_BUFFER_IS_DISCONT(buffer) && GST_CLOCK_TIME_IS_VALID(element->t0) &&
             gst_anitalker_element_streaming(element)) {
    // No timestamp to tell how much is missing: the stream so far ends.
    const GstFlowReturn ret = restart_stream(self);
    if (ret != GST_FLOW_OK) return ret;
  }
  gst_anitalker_element_anchor(element, buffer);
  std::vector<float> samples;
  const gssize count = gst_anitalker_element_take_frames(
      element, buffer, 1, "audio", (guint64)st->stream->received(), &samples,
      st->s16 ? GST_ANITALKER_VALUES_S16LE : GST_ANITALKER_VALUES_F32LE, SAMPLE_RATE);
  if (count < 0) return GST_FLOW_ERROR;
  if ((guint64)count < overlap) {  // wholly taken already: what was dropped is the buffer
    GstAnitalkerLocked lock(&st->lock);
    st->dropped_s -= (double)(overlap - (guint64)count) / SAMPLE_RATE;
  }
  if ((guint64)count <= overlap) return GST_FLOW_OK;  // an empty buffer adds nothing, nor one wholly taken
  return take_samples(self, samples.data() + overlap, (gint64)(count - (gssize)overlap));
}

// A GAP event is silence up to its end (see above); in streaming one that
// reaches further than gap-fill ends the stream so far and is passed on.
static gboolean gst_hubert_enc_sink_event(GstAnitalkerElement* element, GstEvent* event, gboolean* result) {
  if (GST_EVENT_TYPE(event) != GST_EVENT_GAP) return FALSE;
  GstHubertEnc* self = GST_HUBERT_ENC(element);
  GstClockTime ts, duration;
  gst_event_parse_gap(event, &ts, &duration);
  // Before the caps nothing could be pushed for it: passed on.
  if (!self->state->stream || !GST_CLOCK_TIME_IS_VALID(ts) || !gst_pad_has_current_caps(element->sinkpad))
    return FALSE;
  if (!GST_CLOCK_TIME_IS_VALID(element->t0)) element->t0 = ts;  // a stream that starts with a gap
  const GstClockTimeDiff d = lead(self, GST_CLOCK_TIME_IS_VALID(duration) ? ts + duration : ts);
  bool restarted = false;
  if (d > 0) {
    const GstFlowReturn ret = close_hole(self, d, "gap's end", &restarted);
    if (ret != GST_FLOW_OK && ret != GST_FLOW_FLUSHING)
      GST_DEBUG_OBJECT(self, "filling the gap: %s", gst_flow_get_name(ret));
  }
  if (restarted) return FALSE;  // passed on, as the stream so far has ended
  gst_event_unref(event);       // its time is in the frames now
  *result = TRUE;
  return TRUE;
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

static void gst_hubert_enc_get_property(GObject* object, guint prop_id, GValue* value, GParamSpec* pspec) {
  if (prop_id != PROP_STATS) {
    gst_anitalker_get_property(object, prop_id, value, pspec);
    return;
  }
  EncState* st = GST_HUBERT_ENC(object)->state;
  GstAnitalkerLocked lock(&st->lock);
  g_value_take_boxed(value, gst_structure_new(STATS_NAME, "holes", G_TYPE_UINT64, st->holes, "silence", G_TYPE_DOUBLE,
                                              st->silence_s, "overlaps", G_TYPE_UINT64, st->overlaps, "dropped",
                                              G_TYPE_DOUBLE, st->dropped_s, "restarts", G_TYPE_UINT64,
                                              st->restarts, nullptr));
}

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
  /**
   * GstHubertEnc:tolerance:
   *
   * How far (ms) a buffer's PTS may lie from the end of the audio taken so
   * far (the stream's first PTS + samples / 16000) before the element acts
   * on it: filling a hole with silence, or dropping audio that repeats time
   * already taken (see "Holes, overlaps and drift" above).  As GstAudioEncoder's
   * tolerance: within it the samples follow one another whatever the
   * timestamps say.  May change while playing.
   */
  gst_anitalker_install_property(
      gobject_class, PROP_TOLERANCE,
      g_param_spec_uint("tolerance", "Tolerance",
                        "ms a buffer's PTS may lie from the end of the audio taken so far before a hole is filled "
                        "with silence or repeated audio is dropped (default: 40)",
                        1, 10000, TOLERANCE_DEFAULT_MS, GST_ANITALKER_PARAM_PLAYING),
      G_STRUCT_OFFSET(GstHubertEnc, tolerance_ms));

  /**
   * GstHubertEnc:gap-fill:
   *
   * Streaming: the longest hole in the audio (ms; a lost packet, a GAP
   * event, a source's clock drift) filled with silence so that the motion
   * goes on without a seam and the video keeps the audio's time.  A longer
   * hole finishes the stream so far and starts anew at the next buffer's
   * PTS, as a pause in the speech would; 0 fills none.  Offline every hole
   * is filled.  The silence is computed when the hole is seen, so a live
   * stream's frames of a long hole come late: 500 ms keeps that short.
   * May change while playing.
   */
  gst_anitalker_install_property(
      gobject_class, PROP_GAP_FILL,
      g_param_spec_uint("gap-fill", "Gap fill",
                        "Streaming: the longest hole in the audio (ms) filled with silence, so the motion goes on "
                        "and the video keeps the audio's time; a longer one starts the stream anew; 0 = none "
                        "(offline: every hole is filled) (default: 500)",
                        0, 60000, GAP_FILL_DEFAULT_MS, GST_ANITALKER_PARAM_PLAYING),
      G_STRUCT_OFFSET(GstHubertEnc, gap_fill_ms));
  /**
   * GstHubertEnc:stats:
   *
   * The audio's timeline since the element last started, as a structure
   * named `application/x-hubertenc-stats`: `holes` (guint64, holes filled
   * with silence), `silence` (gdouble, their seconds), `overlaps`
   * (guint64, buffers whose start repeated audio already taken),
   * `dropped` (gdouble, the seconds of it dropped) and `restarts` (guint64,
   * streams ended by a hole over gap-fill or timestamps that went back).
   * For monitoring a live input: packet loss and clock drift show here.
   */
  g_object_class_install_property(
      gobject_class, PROP_STATS,
      g_param_spec_boxed("stats", "Statistics",
                         "The audio's timeline since the start: holes filled with silence and their seconds, "
                         "overlaps dropped and their seconds, streams restarted by a long hole",
                         GST_TYPE_STRUCTURE, (GParamFlags)(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));
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
  // A SEGMENT without a flush (concat, a playlist, a non-flushing seek) ends
  // the stream so far: what is pending is finished and pushed, not dropped.
  base_class->drain_on_segment = TRUE;
  base_class->drain_on_stream_start = TRUE;
  base_class->forward_only = TRUE;
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
  base_class->input_end = gst_hubert_enc_input_end;
  base_class->src_query = gst_hubert_enc_src_query;
  base_class->sink_event = gst_hubert_enc_sink_event;
  base_class->own_timeline = TRUE;
  gobject_class->get_property = gst_hubert_enc_get_property;  // after the base's: stats, then the table
}

static void gst_hubert_enc_init(GstHubertEnc* self) {
  self->tolerance_ms = TOLERANCE_DEFAULT_MS;
  self->gap_fill_ms = GAP_FILL_DEFAULT_MS;
  self->state = gst_anitalker_element_make_state<EncState>(GST_ANITALKER_ELEMENT(self));
}
