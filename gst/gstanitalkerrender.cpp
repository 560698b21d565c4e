// anitalkerrender: renders motion latents to video frames of one portrait with
// the stage-1 LIA model (spec/renderer.md; the maths is in lib/lia.h).  This
// file does caps, timestamps, batching, latency, the portrait's life cycle
// and the codes query of the motion element (DESIGN.md); no maths.

/**
 * SECTION:element-anitalkerrender
 * @title: anitalkerrender
 *
 * Renders AniTalker motion latents (`application/x-anitalker-motion`, as
 * produced by anitalkermotion) into video frames of one portrait, with the
 * stage-1 LIA encoder and flow-warping renderer.  The portrait is encoded
 * once (and again each time the #GstAnitalkerRender:portrait property
 * changes, which may happen while PLAYING: with a live upstream the new face
 * is encoded on a thread of its own while the frames go on with the current
 * one); every motion frame then becomes one RGB frame of the checkpoint's
 * image size (256x256 for the released stage1.ckpt) at the framerate of the
 * motion stream.
 *
 * Output frame i of an input buffer with PTS p gets PTS
 * p + i * framerate_d / framerate_n seconds; frames of buffers without a PTS
 * continue from the last buffer that had one (or from the segment's start).
 * A DISCONT input flags the next output frame.  With #GstAnitalkerRender:batch-size
 * above 1, frames are held until a batch is full (or EOS) and the element
 * reports the extra latency in the LATENCY query.
 *
 * Quality of service (#GstAnitalkerRender:qos, on by default, as in video
 * decoders): when a sink downstream reports in a QoS event that frames
 * reach it late, the frames whose running time has already passed the
 * point it gave are not rendered (their motion is dropped, a QoS message
 * is posted for each, and the next frame out is flagged DISCONT), so a
 * renderer slower than real time shows fewer frames at their times rather
 * than every frame later and later.  Sinks that send no QoS events
 * (fakesink, appsink, filesink; most network sinks) change nothing.
 *
 * Any photo: #GstAnitalkerRender:crop chooses the square of the portrait
 * that the networks see: the whole picture (none, the reference's way), the
 * square around the face as the authors cut their training data (auto, with
 * RetinaFace or a given #GstAnitalkerRender:face-box), or a given square.
 * The picture and the square then go downstream in the sticky custom event
 * "anitalker-crop", with which anitalkerpaste puts the frames back into the
 * picture.
 *
 * The element also answers the custom query "anitalker-portrait-codes" on
 * its sink pad (the portrait's start and direction codes, which the motion
 * generator needs) and sends the custom upstream event
 * "anitalker-portrait-changed" when a new portrait has been encoded.
 *
 * ## Sharing the renderer
 *
 * With `max-batch` above 1 this renderer shares one executor with every
 * other renderer of the process that has the same checkpoint, device,
 * max-batch and max-batch-delay: the frames of several pipelines (live
 * avatars) run in one call of the model, up to max-batch buffers at once,
 * each with its own portrait, and go back to their pipelines.  On a GPU that
 * is one batch; on the CPU, which renders one image at a time anyway, the
 * calls only take turns, and every frame is bit for bit what the pipeline
 * makes alone.  The first buffer of a call waits at most max-batch-delay
 * microseconds for the others (measured with the compute time in the
 * LATENCY answer).  A pipeline never waits for another's EOS, and one
 * pipeline's error does not stop the others.  A max-batch x batch-size
 * whose calls would not fit in the device's free memory fails the start,
 * saying how many frames a call can have.
 *
 * ## On a GPU
 *
 * Two options of the process's environment, off by default until measured
 * on a GPU: ANITALKER_CUDA_GRAPHS=1 records the decoder once for each
 * batch size and replays it as one launch (a build with CUDA graphs; the
 * same frames; a recording that fails is posted as a warning and the
 * frames go on without graphs, and the memory check then counts a call
 * twice), and ANITALKER_CHANNELS_LAST=1 runs it channels-last.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 filesrc location=speech.wav ! decodebin ! audioconvert ! audioresample !
 *     audio/x-raw,rate=16000,channels=1,format=F32LE !
 *     hubertenc model=models/chinese-hubert-large !
 *     anitalkermotion checkpoint=models/stage2_audio_only_hubert.ckpt !
 *     anitalkerrender checkpoint=models/stage1.ckpt portrait=face.jpg batch-size=4 !
 *     videoconvert ! x264enc ! mp4mux ! filesink location=out.mp4
 * ]|
 */

#include "gstanitalkerrender.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gst/video/video.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gstanitalkercaps.h"
#include "gstanitalkervideo.h"
#include "lia.h"

GST_DEBUG_CATEGORY_STATIC(gst_anitalker_render_debug);
#define GST_CAT_DEFAULT gst_anitalker_render_debug

namespace lia = anitalker::lia;

#define DEFAULT_CROP "none"

enum {
  PROP_0,
  PROP_CHECKPOINT,
  PROP_PORTRAIT,
  PROP_BATCH_SIZE,
  PROP_CROP,
  PROP_FACE_BOX,
  PROP_CROP_RATIO,
  PROP_FACE_INDEX,
  PROP_DETECTOR,
  PROP_QOS,
};

namespace {

// The C++ state of one element: the renderer and the held frames.
struct RenderState {
  // The model, the portrait and the rendering, from READY->PAUSED to
  // PAUSED->READY (lib lia::Renderer: thread-safe; the streaming thread and
  // the codes query, which may come from another thread, both encode).
  lia::Renderer renderer;
  // Under `lock`, held briefly: read from the streaming thread, from query
  // handlers (any thread) and from the state change.  Lock order: the
  // renderer's update, lock, the object lock.
  GstAnitalkerMutex lock;
  int dims = 0;              // from the sink caps; 0 = none yet
  int fps_n = 25, fps_d = 1;  // likewise; until then, what anitalkermotion makes

  // Streaming thread only (and the serialized events, which run in it).
  guint announced_serial = 0;  // last serial sent upstream in an event
  guint crop_serial = 0;       // last serial sent downstream in the crop event
  GstVideoInfo out_info;
  bool have_out_caps = false;
  GstAnitalkerOutputPool pool;   // the output buffers', agreed after each negotiation
  GstAnitalkerFrameClock clock;  // the held frames' timing
  std::vector<float> motion;     // the held frames x dims, time-major
  guint64 received = 0;          // frames since the stream (re)started, for messages
  bool graphs_told = false;      // the CUDA graphs' state reported (ANITALKER_CUDA_GRAPHS)
  // Upstream is live (asked at the stream's first buffer; -1 not yet):
  // then a new face is encoded apart while the current one stays in use.
  // Read by the codes query too.
  std::atomic<int> live{-1};

  // QoS: the running time before which frames are too late for downstream
  // (from its last QoS event; NONE: none yet), its proportion, and the
  // frames rendered and dropped for the QoS messages.  Under `lock` (the
  // event comes from downstream's thread).
  GstClockTime earliest = GST_CLOCK_TIME_NONE;
  gdouble proportion = 1.0;
  guint64 rendered = 0, dropped = 0;  // streaming thread only
  bool discont_next = false;          // streaming thread only: after a drop

  void reset_stream() {
    clock.reset();
    motion.clear();
    received = 0;
    live = -1;
    discont_next = false;
  }
  // Takes `lock`.
  void reset_qos() {
    GstAnitalkerLocked l(&lock);
    earliest = GST_CLOCK_TIME_NONE;
    proportion = 1.0;
  }
};

}  // namespace

struct _GstAnitalkerRender {
  GstAnitalkerElement parent;

  // Properties, under the object lock.
  gchar* checkpoint;
  gchar* portrait;
  guint batch_size;
  gboolean portrait_dirty;  // `portrait` (or the crop) was set since the last encode picked it up
  gchar* crop;
  gchar* face_box;
  gfloat crop_ratio;
  gint face_index;
  gchar* detector;
  gboolean qos;

  RenderState* state;
};

/**
 * GstAnitalkerRender!sink:
 *
 * Motion latents: float32, time-major; each buffer holds one or more frames
 * of `dims` values.  `dims` must equal the checkpoint's motion dimension
 * (20 for the released models).  anitalkermotion produces framerate 25/1;
 * any positive framerate is accepted and passed on to the video.
 */
static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(GST_ANITALKER_MOTION_CAPS));

/**
 * GstAnitalkerRender!src:
 *
 * Video frames of the checkpoint's image size (square), at the framerate of
 * the motion stream.  RGB is the model's output; RGBx and BGRx are offered
 * as a cheap repacking.
 */
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(GST_VIDEO_CAPS_MAKE(GST_ANITALKER_RENDER_VIDEO_FORMATS)));

#define gst_anitalker_render_parent_class parent_class
G_DEFINE_TYPE(GstAnitalkerRender, gst_anitalker_render, GST_TYPE_ANITALKER_ELEMENT);
GST_ELEMENT_REGISTER_DEFINE(anitalkerrender, "anitalkerrender", GST_RANK_NONE, GST_TYPE_ANITALKER_RENDER);

static GstCaps* gst_anitalker_render_get_caps(GstAnitalkerElement* element, GstPadDirection direction);
static GstFlowReturn gst_anitalker_render_drain(GstAnitalkerElement* element);

// A batch-size set while the model is loaded (PAUSED, PLAYING): its calls
// must fit in the device's memory as start() checks them (max-batch x
// batch-size frames a call), else a WARNING and the value in force stays.
static bool gst_anitalker_render_batch_fits(GstAnitalkerRender* self, guint batch) {
  const std::shared_ptr<const lia::Model> model = self->state->renderer.model();
  if (!model || batch == 0) return true;  // not loaded (start checks), or refused by the range check
  guint max_batch = 1;
  std::chrono::microseconds delay{0};
  const guint share = gst_anitalker_element_sharing(GST_ANITALKER_ELEMENT(self), &max_batch, &delay) ? max_batch : 1;
  const std::string setting = share > 1 ? gst_anitalker_printf("max-batch=%u x batch-size=%u", share, batch)
                                        : gst_anitalker_printf("batch-size=%u", batch);
  try {
    lia::check_call_memory(*model, (int64_t)share * batch, setting);
  } catch (const std::exception& e) {
    gst_anitalker_refuse_setting(GST_ELEMENT_CAST(self), "batch-size", e.what());
    return false;
  }
  return true;
}

// What the generic setter does not: an empty portrait keeps the current
// face; the portrait and crop settings apply from the next encode; a
// batch-size whose calls would not fit in memory is refused.
static void gst_anitalker_render_set_property(GObject* object, guint prop_id, const GValue* value,
                                              GParamSpec* pspec) {
  GstAnitalkerRender* self = GST_ANITALKER_RENDER(object);
  if (prop_id == PROP_PORTRAIT && (g_value_get_string(value) == nullptr || *g_value_get_string(value) == '\0'))
    return;
  if (prop_id == PROP_BATCH_SIZE && !gst_anitalker_render_batch_fits(self, g_value_get_uint(value))) return;
  G_OBJECT_CLASS(parent_class)->set_property(object, prop_id, value, pspec);
  if (prop_id == PROP_PORTRAIT || (prop_id >= PROP_CROP && prop_id <= PROP_DETECTOR)) {
    GST_OBJECT_LOCK(self);
    self->portrait_dirty = TRUE;
    GST_OBJECT_UNLOCK(self);
  }
}

// The crop properties as lib/crop.h's spec; throws anitalker::Error(Usage)
// naming the property.  *detector is the detector's file.
static anitalker::crop::Spec gst_anitalker_render_crop_spec(GstAnitalkerRender* self,
                                                            std::string* detector = nullptr) {
  GST_OBJECT_LOCK(self);
  const std::string crop = self->crop ? self->crop : DEFAULT_CROP;
  const std::string box = self->face_box ? self->face_box : "";
  const float ratio = self->crop_ratio;
  const int index = self->face_index;
  if (detector) *detector = self->detector ? self->detector : "";
  GST_OBJECT_UNLOCK(self);
  return anitalker::crop::make_spec(crop, box, ratio, index);
}

// READY->PAUSED: loads the checkpoint, so that a bad path fails the state
// change with the file named (STYLE.md: weights load in start, never in caps
// handlers).
static gboolean gst_anitalker_render_start(GstAnitalkerElement* element) {
  GstAnitalkerRender* self = GST_ANITALKER_RENDER(element);
  const std::string checkpoint = gst_anitalker_get_string(GST_ELEMENT_CAST(self), &self->checkpoint);
  std::shared_ptr<const lia::Model> model;
  // A bad crop or face-box fails the start, not the first frame.
  if (!GST_ANITALKER_TRY(self, "Bad crop settings.", false, gst_anitalker_render_crop_spec(self)) ||
      !gst_anitalker_element_load(element, checkpoint, "checkpoint", "the stage-1 checkpoint",
                                  {anitalker::Precision::Fp32, anitalker::Precision::Bf16, anitalker::Precision::Fp16},
                                  "the renderer",
                                  [&](c10::Device device, anitalker::Precision precision) {
                                    model = lia::Model::load(checkpoint, device, precision);
                                  }))
    return FALSE;
  GST_INFO_OBJECT(self, "%s: image size %d, style %d, motion %d, %d levels, on %s, %s", checkpoint.c_str(),
                  model->size(), model->style_dim(), model->motion_dim(), model->levels(),
                  model->device().str().c_str(), anitalker::precision_name(model->precision()));
  // One call of the model renders batch-size frames, or through the shared
  // renderer up to max-batch buffers of them: refused when that would not
  // fit in the device's memory.
  guint share = 1;
  std::shared_ptr<lia::RenderBatcher> shared =
      gst_anitalker_element_share(element, [&](guint max_batch, std::chrono::microseconds delay) {
        share = max_batch;
        return lia::shared_renderer(model, max_batch, delay);
      });
  const guint batch = gst_anitalker_get(self, &self->batch_size);
  const std::string setting = share > 1 ? gst_anitalker_printf("max-batch=%u x batch-size=%u", share, batch)
                                        : gst_anitalker_printf("batch-size=%u", batch);
  if (!GST_ANITALKER_TRY(self, "Batches too large for the device's memory.", false,
                         lia::check_call_memory(*model, (int64_t)share * batch, setting)))
    return FALSE;
  // The portrait is encoded by this model after the warm-up, or at the first
  // buffer or codes query (the rest of the state is as stop() left it).
  self->state->renderer.reset(model, shared);
  return TRUE;
}

static void gst_anitalker_render_stop(GstAnitalkerElement* element) {
  RenderState* st = GST_ANITALKER_RENDER(element)->state;
  st->renderer.reset(nullptr);
  st->pool.clear();  // the streaming thread has stopped
  {
    GstAnitalkerLocked lock(&st->lock);
    st->dims = 0;
    st->fps_n = 25;
    st->fps_d = 1;
    st->have_out_caps = false;
    st->reset_stream();
    st->rendered = st->dropped = 0;
  }
  st->reset_qos();
}

// Where the portrait is looked at: the warm-up, a buffer (the streaming
// thread) or the motion element's codes query (any thread).
enum class PortraitAt { Start, Buffer, Query };
static gboolean gst_anitalker_render_update_portrait(GstAnitalkerRender* self, lia::Renderer::Current* now,
                                                    PortraitAt at);

// The base's warm_up (lib lia::warm_up: a grey picture and one batch of zero
// motion, thrown away), then the portrait set so far encoded: the first
// frame of a live stream waited for that encode (the first window's codes
// query), which no element's latency counts (tiny chain: 35-40 ms of the
// `low` preset's 0.23 s; full size 0.2 s).  A portrait that cannot be used
// is left for the first buffer, which posts the error as before.
static gboolean gst_anitalker_render_warm_up(GstAnitalkerElement* element) {
  GstAnitalkerRender* self = GST_ANITALKER_RENDER(element);
  const std::shared_ptr<const lia::Model> model = self->state->renderer.model();
  const int64_t batch = gst_anitalker_get(self, &self->batch_size);
  if (!model) return TRUE;
  if (!GST_ANITALKER_TRY(self, "Could not render a grey picture (warm-up).", false, lia::warm_up(*model, batch)))
    return FALSE;
  lia::Renderer::Current now;
  return gst_anitalker_render_update_portrait(self, &now, PortraitAt::Start);
}

/* --- The portrait ---------------------------------------------------------- */

// What a new portrait encode says: several faces (info), where it was cut.
static void gst_anitalker_render_report_portrait(GstAnitalkerRender* self, const lia::Renderer::Current& now,
                                                 const std::string& path, int face_index) {
  if (now.choice.faces.size() > 1) {
    const std::string note = "Several faces in \"" + path + "\": " + anitalker::crop::describe_faces(now.choice) +
                             " (" + (face_index >= 0 ? "face-index" : "the largest; face-index chooses") + ").";
    GST_ELEMENT_INFO(self, RESOURCE, SETTINGS, ("%s", note.c_str()), (nullptr));
  }
  if (now.choice.stored_turned > 1) {
    static const char* const shown[9] = {"", "", "mirrored", "turned 180 degrees", "flipped upside down",
                                         "mirrored and turned", "turned 90 degrees clockwise", "turned and mirrored",
                                         "turned 90 degrees counter-clockwise"};
    GST_ELEMENT_INFO(self, RESOURCE, SETTINGS,
                     ("\"%s\" is shown %s (its EXIF orientation, %d); crop=none uses it as stored, as the reference "
                      "demo does, so the face may lie on its side: crop=auto or a square takes the photo as shown.",
                      path.c_str(), shown[now.choice.stored_turned], now.choice.stored_turned),
                     (nullptr));
  }
  if (now.choice.transparent >= 0.01) {  // a few soft edge pixels are not worth a note
    // Whole percents (no decimal point, whatever the application's locale).
    const int percent = static_cast<int>(now.choice.transparent * 100 + 0.5);
    GST_ELEMENT_INFO(self, RESOURCE, SETTINGS,
                     ("\"%s\" is transparent in %d%% of its pixels; its alpha is dropped, as the reference reads a "
                      "picture, and the colours stored there are used (under fully transparent pixels often black): "
                      "put it on a background first to give the networks a photo like their training data.",
                      path.c_str(), std::min(percent, 100)),
                     (nullptr));
  }
  const anitalker::crop::Square& q = now.choice.square;
  GST_INFO_OBJECT(self, "portrait %u: %s%s", now.serial, path.c_str(),
                  now.choice.cropped ? gst_anitalker_printf(" square %d,%d,%d", q.x, q.y, q.side).c_str() : "");
}

// A new portrait that cannot be used while a face is in use (a live
// stream): a warning, and the current face stays.
static void gst_anitalker_render_warn_portrait(GstAnitalkerRender* self, const std::string& path) {
  gst_anitalker_post_current_exception(GST_ELEMENT_CAST(self),
                                       "Could not use the new portrait \"" + path + "\"; the current one stays.", true,
                                       __FILE__, GST_FUNCTION, __LINE__, GST_MESSAGE_WARNING);
}

// Encodes the `portrait` property's file when it was set since the last
// encode, or when nothing was encoded yet (lib lia::Renderer::update), into
// *now, the portrait now current (none when none is set or no model is
// loaded); posts the element error naming the file and returns FALSE when it
// cannot be used, unless a portrait is already current: then a warning, and
// that one stays.  At the start (the warm-up) a portrait that cannot be used
// is left, unreported, for the first buffer.
//
// A live stream with a face in use does not wait for a new one: at a buffer
// the new file is given to the renderer's own encoder thread
// (lia::Renderer::encode_later) and the current face goes on; the first
// buffer after that encode finished makes it current (or warns when it
// failed).  A codes query then answers with the current face.
static gboolean gst_anitalker_render_update_portrait(GstAnitalkerRender* self, lia::Renderer::Current* now,
                                                    PortraitAt at) {
  RenderState* st = self->state;
  std::string path;
  int face_index = -1;
  // The settings of the next encode, taken (the property no longer dirty).
  auto take = [&]() -> std::optional<lia::PortraitSource> {
    GST_OBJECT_LOCK(self);
    path = self->portrait ? self->portrait : "";
    self->portrait_dirty = FALSE;
    GST_OBJECT_UNLOCK(self);
    if (path.empty()) return std::nullopt;
    lia::PortraitSource source;
    source.path = path;
    source.spec = gst_anitalker_render_crop_spec(self, &source.detector);
    face_index = source.spec.face_index;
    return source;
  };

  if (at == PortraitAt::Buffer) {
    if (std::optional<lia::Renderer::Adopted> done = st->renderer.adopt_finished()) {
      if (done->error) {
        try {
          std::rethrow_exception(done->error);
        } catch (...) {
          gst_anitalker_render_warn_portrait(self, done->source.path);
        }
      } else if (done->now.fresh) {
        GST_DEBUG_OBJECT(self, "portrait %s encoded apart, now current", done->source.path.c_str());
        gst_anitalker_render_report_portrait(self, done->now, done->source.path, done->source.spec.face_index);
      }
    }
  }
  if (at != PortraitAt::Start && st->live == 1) {
    const lia::Renderer::Current current = st->renderer.current();
    GST_OBJECT_LOCK(self);
    const gboolean dirty = self->portrait_dirty;
    GST_OBJECT_UNLOCK(self);
    if (current.portrait) {
      if (dirty && at == PortraitAt::Buffer) {
        // A crop or face box that cannot be read (crop=garbage; face-box
        // set before crop=auto, one property at a time) is a warning like a
        // picture that cannot be used: the current face stays (until
        // 2026-12-07 the error stopped the stream).
        std::optional<lia::PortraitSource> source;
        try {
          source = take();
        } catch (...) {
          gst_anitalker_post_current_exception(GST_ELEMENT_CAST(self),
                                               "Could not use the crop or face-box set; the current face stays.",
                                               true, __FILE__, GST_FUNCTION, __LINE__, GST_MESSAGE_WARNING);
        }
        if (source) {
          GST_DEBUG_OBJECT(self, "encoding portrait %s apart; the current one stays meanwhile", path.c_str());
          st->renderer.encode_later(std::move(*source));
        }
      }
      *now = current;
      return TRUE;
    }
  }

  auto want = [&](bool have) -> std::optional<lia::PortraitSource> {
    GST_OBJECT_LOCK(self);
    const gboolean dirty = self->portrait_dirty;
    GST_OBJECT_UNLOCK(self);
    if (!dirty && have) return std::nullopt;
    std::optional<lia::PortraitSource> source = take();
    if (source) GST_DEBUG_OBJECT(self, "encoding portrait %s", path.c_str());
    return source;
  };
  try {
    *now = st->renderer.update(want);
  } catch (...) {
    if (at == PortraitAt::Start) {
      GST_DEBUG_OBJECT(self, "portrait %s left for the first buffer", path.c_str());
      GST_OBJECT_LOCK(self);
      self->portrait_dirty = TRUE;
      GST_OBJECT_UNLOCK(self);
      return TRUE;
    }
    // While a face is in use (a live stream), a new one that cannot be used
    // is a warning: the current face stays and the stream goes on.
    const lia::Renderer::Current current = st->renderer.current();
    if (current.portrait) {
      gst_anitalker_render_warn_portrait(self, path);
      *now = current;
      return TRUE;
    }
    gst_anitalker_post_current_exception(GST_ELEMENT_CAST(self), "Could not use the portrait \"" + path + "\".", true,
                                         __FILE__, GST_FUNCTION, __LINE__);
    return FALSE;
  }
  if (now->fresh) gst_anitalker_render_report_portrait(self, *now, path, face_index);
  return TRUE;
}

// Tells upstream (the motion element) that the codes changed, and downstream
// (anitalkerpaste) the picture and the square of the portrait whose frames
// follow.
static void gst_anitalker_render_announce(GstAnitalkerRender* self, const lia::Renderer::Current& now) {
  RenderState* st = self->state;
  if (now.serial != st->announced_serial) {
    st->announced_serial = now.serial;
    GST_DEBUG_OBJECT(self, "announcing portrait %u upstream", now.serial);
    // Nobody upstream may care (a plain source): not an error.
    gst_pad_push_event(GST_ANITALKER_ELEMENT(self)->sinkpad, gst_anitalker_portrait_changed_new(now.serial));
  }
  if (now.serial != st->crop_serial && now.picture) {
    st->crop_serial = now.serial;
    gst_pad_push_event(GST_ANITALKER_ELEMENT(self)->srcpad,
                       gst_anitalker_crop_event_new(*now.picture, now.choice, now.serial));
  }
}

/* --- Caps -------------------------------------------------------------------- */

// Picks the output format with downstream (the sink caps known) and sends
// the caps event.  When downstream takes none of the renderer's video (a
// caps filter with another size, rate or format, and no converter between)
// posts the negotiation error naming both sides: the frames could not go
// anywhere (offline, they are pushed at EOS, where a flow return reaches no
// source to post it).
static gboolean gst_anitalker_render_negotiate(GstAnitalkerRender* self) {
  RenderState* st = self->state;
  GstPad* srcpad = GST_ANITALKER_ELEMENT(self)->srcpad;
  GstCaps* ours = st->dims != 0 ? gst_anitalker_render_get_caps(GST_ANITALKER_ELEMENT(self), GST_PAD_SRC) : nullptr;
  std::string refused;
  st->have_out_caps = ours && gst_anitalker_video_negotiate(srcpad, ours, &st->out_info, &refused);
  // Then the buffers' pool (ALLOCATION); without one, a buffer a frame.
  if (st->have_out_caps) st->pool.decide(srcpad, &st->out_info);
  if (!st->have_out_caps && !refused.empty() && !GST_PAD_IS_FLUSHING(srcpad))
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION,
                      ("Downstream takes none of the video the renderer makes: %s.", refused.c_str()),
                      (nullptr));
  return st->have_out_caps;
}

// The motion fits the checkpoint (the base checked against get_caps):
// dims and a positive framerate.
static gboolean gst_anitalker_render_set_caps(GstAnitalkerElement* element, GstCaps* caps) {
  RenderState* st = GST_ANITALKER_RENDER(element)->state;
  GstStructure* s = gst_caps_get_structure(caps, 0);
  gint dims = 0, fps_n = 0, fps_d = 0;
  gst_structure_get_int(s, "dims", &dims);
  gst_structure_get_fraction(s, "framerate", &fps_n, &fps_d);
  // Frames already held keep the timing they arrived with; frames without
  // PTS go on from where the old framerate left them.
  if (st->clock.held() > 0 && gst_anitalker_render_drain(element) != GST_FLOW_OK) return FALSE;
  st->clock.set_rate(fps_n, fps_d);
  {
    GstAnitalkerLocked lock(&st->lock);
    st->dims = dims;
    st->fps_n = fps_n;
    st->fps_d = fps_d;
  }
  return gst_anitalker_render_negotiate(GST_ANITALKER_RENDER(element));
}

/* --- Rendering --------------------------------------------------------------- */

// QoS: of the first n held frames, those whose running time is at or before
// the earliest time downstream's last QoS event gave are dropped (they
// would reach it late), with a QoS message each; returns how many.  They are
// the first ones: the frames are in time order.
static size_t gst_anitalker_render_drop_late(GstAnitalkerRender* self, size_t n) {
  GstAnitalkerElement* element = GST_ANITALKER_ELEMENT(self);
  RenderState* st = self->state;
  if (!gst_anitalker_get(self, &self->qos)) return 0;
  GstClockTime earliest;
  gdouble proportion;
  {
    GstAnitalkerLocked lock(&st->lock);
    earliest = st->earliest;
    proportion = st->proportion;
  }
  if (!GST_CLOCK_TIME_IS_VALID(earliest)) return 0;
  size_t late = 0;
  for (; late < n; late++) {
    const GstAnitalkerFrameTiming& t = st->clock.at(late);
    if (!GST_CLOCK_TIME_IS_VALID(t.pts)) break;
    const GstClockTime running = gst_segment_to_running_time(&element->segment, GST_FORMAT_TIME, t.pts);
    if (!GST_CLOCK_TIME_IS_VALID(running) || running > earliest) break;
    st->dropped++;
    GstMessage* m = gst_message_new_qos(GST_OBJECT_CAST(self), FALSE, running,
                                        gst_segment_to_stream_time(&element->segment, GST_FORMAT_TIME, t.pts), t.pts,
                                        t.duration);
    gst_message_set_qos_values(m, (gint64)(earliest - running), proportion, 1000000);
    gst_message_set_qos_stats(m, GST_FORMAT_BUFFERS, st->rendered + st->dropped, st->dropped);
    gst_element_post_message(GST_ELEMENT_CAST(self), m);
  }
  if (late == 0) return 0;
  GST_DEBUG_OBJECT(self, "QoS: %zu frames too late (before %" GST_TIME_FORMAT "), not rendered", late,
                   GST_TIME_ARGS(earliest));
  st->clock.take(late);
  st->motion.erase(st->motion.begin(), st->motion.begin() + late * st->dims);
  st->discont_next = true;
  return late;
}

// Renders the first n pending frames in one call of the model and pushes them.
static GstFlowReturn gst_anitalker_render_frames(GstAnitalkerRender* self, size_t n) {
  GstAnitalkerElement* element = GST_ANITALKER_ELEMENT(self);
  RenderState* st = self->state;
  if (gst_pad_check_reconfigure(element->srcpad) || !st->have_out_caps) {
    if (!gst_anitalker_render_negotiate(self)) {
      gst_pad_mark_reconfigure(element->srcpad);
      return GST_PAD_IS_FLUSHING(element->srcpad) ? GST_FLOW_FLUSHING : GST_FLOW_NOT_NEGOTIATED;
    }
  }
  // Frames already too late for downstream are not rendered (QoS).
  const size_t late = gst_anitalker_render_drop_late(self, n);
  if (late == n) return GST_FLOW_OK;
  n -= late;
  // (n,S,S,3) uint8 on the CPU; shared: with other pipelines' frames.
  at::Tensor frames;
  const gint64 t0 = g_get_monotonic_time();
  if (!GST_ANITALKER_TRY(self, gst_anitalker_printf("Rendering %zu frames failed.", n), false,
                         frames = st->renderer.render(st->motion.data(), (int64_t)n)))
    return GST_FLOW_ERROR;
  gst_anitalker_element_add_compute(element, t0);
  GST_LOG_OBJECT(self, "rendered %zu frames in %.3f s", n, (g_get_monotonic_time() - t0) / 1e6);
  if (!st->graphs_told) {
    // CUDA graphs (ANITALKER_CUDA_GRAPHS=1 on a GPU): said once, a failed
    // recording as a warning (the frames go on without graphs).
    const std::shared_ptr<const lia::Model> model = st->renderer.model();
    if (model && model->graphs() != lia::Model::Graphs::Off) {
      const std::string status = model->graphs_status();
      if (status.rfind("failed", 0) == 0) {
        GST_ELEMENT_WARNING(self, LIBRARY, FAILED, ("CUDA graphs could not be used; rendering without them."),
                            ("%s", status.c_str()));
        st->graphs_told = true;
      } else {
        GST_DEBUG_OBJECT(self, "CUDA graphs: %s", status.c_str());
      }
    } else {
      st->graphs_told = true;
    }
  }

  const std::vector<GstAnitalkerFrameTiming> timing = st->clock.take(n);
  st->motion.erase(st->motion.begin(), st->motion.begin() + n * st->dims);
  const uint8_t* data = frames.data_ptr<uint8_t>();
  const size_t frame_bytes = (size_t)frames.numel() / n;
  for (size_t i = 0; i < n; i++) {
    GstBuffer* buffer = gst_anitalker_video_buffer_from_rgb(&st->out_info, data + i * frame_bytes, &st->pool);
    if (buffer == nullptr) {
      GST_ELEMENT_ERROR(self, STREAM, FAILED, ("Could not map an output buffer."), (nullptr));
      return GST_FLOW_ERROR;
    }
    timing[i].apply(buffer);
    if (i == 0 && st->discont_next) GST_BUFFER_FLAG_SET(buffer, GST_BUFFER_FLAG_DISCONT);
    st->discont_next = false;
    st->rendered++;
    const GstFlowReturn ret = gst_anitalker_element_push(element, buffer);
    if (ret != GST_FLOW_OK) return ret;
  }
  return GST_FLOW_OK;
}

// Renders every pending frame, in batches of at most batch-size.
static GstFlowReturn gst_anitalker_render_drain(GstAnitalkerElement* element) {
  GstAnitalkerRender* self = GST_ANITALKER_RENDER(element);
  RenderState* st = self->state;
  const size_t batch = gst_anitalker_get(self, &self->batch_size);
  GstFlowReturn ret = GST_FLOW_OK;
  while (st->clock.held() > 0 && ret == GST_FLOW_OK)
    ret = gst_anitalker_render_frames(self, std::min(batch, st->clock.held()));
  // On an error the rest cannot be rendered either.
  st->clock.drop();
  st->motion.clear();
  return ret;
}

// FLUSH_STOP: the held frames are dropped.
static void gst_anitalker_render_flush(GstAnitalkerElement* element) {
  GST_ANITALKER_RENDER(element)->state->reset_stream();
  GST_ANITALKER_RENDER(element)->state->reset_qos();
}

static GstFlowReturn gst_anitalker_render_handle_buffer(GstAnitalkerElement* element, GstBuffer* buffer) {
  GstAnitalkerRender* self = GST_ANITALKER_RENDER(element);
  RenderState* st = self->state;
  // Checked before anything else happens (a portrait encode, a drain).
  std::vector<float> piece;
  const gssize count =
      gst_anitalker_element_take_frames(element, buffer, (gsize)st->dims, "motion", st->received, &piece);
  if (count < 0) return GST_FLOW_ERROR;
  st->received += (guint64)count;

  // Settings are picked up at buffer boundaries.
  GST_OBJECT_LOCK(self);
  const size_t batch = self->batch_size;
  const gboolean new_portrait = self->portrait_dirty;
  GST_OBJECT_UNLOCK(self);

  if (st->live < 0) {
    st->live = gst_anitalker_element_upstream_live(element) ? 1 : 0;
    GST_DEBUG_OBJECT(self, "upstream is %slive: a new portrait is encoded %s", st->live ? "" : "not ",
                     st->live ? "apart while the current one stays in use" : "before the next frame");
  }

  GstFlowReturn ret;
  // Frames that arrived before the new face are rendered with the old one
  // (not live; a live stream goes on with it until the new one is encoded).
  if (new_portrait && st->live == 0 && st->clock.held() > 0 &&
      (ret = gst_anitalker_render_drain(element)) != GST_FLOW_OK)
    return ret;

  lia::Renderer::Current now;
  if (!gst_anitalker_render_update_portrait(self, &now, PortraitAt::Buffer)) return GST_FLOW_ERROR;
  if (!now.portrait) {
    GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND, ("No portrait set."),
                      ("set the \"portrait\" property to an image file"));
    return GST_FLOW_ERROR;
  }
  gst_anitalker_render_announce(self, now);

  if (!st->clock.stamp(element, buffer, count)) {
    GST_ELEMENT_ERROR(self, STREAM, FAILED, ("The video's timestamps run past GStreamer's time range."),
                      ("%" G_GUINT64_FORMAT " motion frames from PTS %" GST_TIME_FORMAT
                       " at framerate %d/%d would end after 2^64-1 ns (584 years): the caps' framerate is too low "
                       "or the timestamps too large",
                       count, GST_TIME_ARGS(GST_BUFFER_PTS(buffer)), st->clock.fps_n(), st->clock.fps_d()));
    return GST_FLOW_ERROR;
  }
  st->motion.insert(st->motion.end(), piece.begin(), piece.end());

  while (st->clock.held() >= batch) {
    if ((ret = gst_anitalker_render_frames(self, batch)) != GST_FLOW_OK) return ret;
  }
  return GST_FLOW_OK;
}

/* --- Events and queries ------------------------------------------------------ */

// QoS from downstream (gst_anitalker_qos_earliest); the event goes on
// upstream.
static gboolean gst_anitalker_render_src_event(GstAnitalkerElement* element, GstEvent* event, gboolean*) {
  if (GST_EVENT_TYPE(event) != GST_EVENT_QOS) return FALSE;
  gdouble proportion;
  const GstClockTime earliest = gst_anitalker_qos_earliest(event, &proportion);
  GST_LOG_OBJECT(element, "QoS: proportion %g, earliest %" GST_TIME_FORMAT, proportion, GST_TIME_ARGS(earliest));
  RenderState* st = GST_ANITALKER_RENDER(element)->state;
  GstAnitalkerLocked lock(&st->lock);
  st->earliest = earliest;
  st->proportion = proportion;
  return FALSE;
}

// A new segment: frames without PTS count from its start (the base renders
// the held frames first).
static gboolean gst_anitalker_render_sink_event(GstAnitalkerElement* element, GstEvent* event, gboolean*) {
  if (GST_EVENT_TYPE(event) == GST_EVENT_SEGMENT) {
    GST_ANITALKER_RENDER(element)->state->clock.reset();
    GST_ANITALKER_RENDER(element)->state->reset_qos();  // running times start anew
  }
  return FALSE;
}

// The codes query of the motion element (gstanitalkercaps.h).
static gboolean gst_anitalker_render_codes_query(GstAnitalkerRender* self, GstQuery* query) {
  lia::Renderer::Current now;
  if (!gst_anitalker_render_update_portrait(self, &now, PortraitAt::Query)) {
    // The error is posted; the motion element's own says what happened
    // (it said to put a renderer downstream, found 2026-12-07).
    GST_OBJECT_LOCK(self);
    const std::string path = self->portrait ? self->portrait : "";
    GST_OBJECT_UNLOCK(self);
    gst_structure_set(gst_query_writable_structure(query), GST_ANITALKER_FIELD_REASON, G_TYPE_STRING,
                      gst_anitalker_printf("%s could not use its portrait \"%s\" (its own error says why)",
                                           GST_OBJECT_NAME(self), path.c_str())
                          .c_str(),
                      nullptr);
    return FALSE;
  }
  if (!now.portrait) {
    GST_DEBUG_OBJECT(self, "codes query: no portrait (or no model) yet");
    return FALSE;
  }
  // start (1,style), direction (1,motion) -> float32 on the CPU.
  c10::InferenceMode guard;
  const at::Tensor start = now.portrait->start.to(at::kCPU, at::kFloat).contiguous();
  const at::Tensor direction = now.portrait->direction.to(at::kCPU, at::kFloat).contiguous();
  gst_anitalker_codes_answer(query, start.data_ptr<float>(), (int)start.numel(), direction.data_ptr<float>(),
                             (int)direction.numel(), now.serial);
  GST_DEBUG_OBJECT(self, "codes query answered with portrait %u", now.serial);
  return TRUE;
}

static gboolean gst_anitalker_render_sink_query(GstAnitalkerElement* element, GstQuery* query, gboolean* result) {
  if (!gst_anitalker_query_is(query, GST_ANITALKER_QUERY_PORTRAIT_CODES)) return FALSE;
  *result = gst_anitalker_render_codes_query(GST_ANITALKER_RENDER(element), query);
  return TRUE;
}

// Sink: the template with dims pinned once the checkpoint is loaded.  Src:
// after the sink caps, the output caps we make, most preferred format
// first; before, the template with the size.
static GstCaps* gst_anitalker_render_get_caps(GstAnitalkerElement* element, GstPadDirection direction) {
  RenderState* st = GST_ANITALKER_RENDER(element)->state;
  const std::shared_ptr<const lia::Model> model = st->renderer.model();
  if (!model) return nullptr;
  GstCaps* caps = gst_caps_make_writable(
      gst_pad_get_pad_template_caps(direction == GST_PAD_SRC ? element->srcpad : element->sinkpad));
  if (direction == GST_PAD_SINK) {
    gst_caps_set_simple(caps, "dims", G_TYPE_INT, model->motion_dim(), nullptr);
    return caps;
  }
  // Progressive, one view: said, so that fields a downstream filter asks for
  // (interlace-mode=interleaved, multiview-mode=side-by-side) are not taken
  // into the caps of frames that are neither (found 2026-12-07).
  gst_caps_set_simple(caps, "width", G_TYPE_INT, model->size(), "height", G_TYPE_INT, model->size(), "interlace-mode",
                      G_TYPE_STRING, "progressive", "multiview-mode", G_TYPE_STRING, "mono", nullptr);
  GstAnitalkerLocked lock(&st->lock);
  if (st->dims != 0)  // the formats stay in the template's order (RGB first)
    gst_caps_set_simple(caps, "framerate", GST_TYPE_FRACTION, st->fps_n, st->fps_d, "pixel-aspect-ratio",
                        GST_TYPE_FRACTION, 1, 1, nullptr);
  return caps;
}

// A frame waits for the batch-size - 1 frames after it (then for its
// rendering: the base adds the compute budget).
static GstClockTime gst_anitalker_render_latency(GstAnitalkerElement* element, gboolean) {
  GstAnitalkerRender* self = GST_ANITALKER_RENDER(element);
  const guint batch = gst_anitalker_get(self, &self->batch_size);
  GstAnitalkerLocked lock(&self->state->lock);
  return gst_util_uint64_scale(batch - 1, GST_SECOND * self->state->fps_d, self->state->fps_n);
}

/* --- The class ------------------------------------------------------------- */

#define FIELD(f) G_STRUCT_OFFSET(GstAnitalkerRender, f)

static void gst_anitalker_render_class_init(GstAnitalkerRenderClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  GstAnitalkerElementClass* base_class = GST_ANITALKER_ELEMENT_CLASS(klass);

  GST_DEBUG_CATEGORY_INIT(gst_anitalker_render_debug, "anitalkerrender", 0, "AniTalker renderer");

  gobject_class->set_property = gst_anitalker_render_set_property;
  const GParamFlags ready = GST_ANITALKER_PARAM_READY, playing = GST_ANITALKER_PARAM_PLAYING;

  /**
   * GstAnitalkerRender:checkpoint:
   *
   * The stage-1 checkpoint (e.g. models/stage1.ckpt).  Loaded when the
   * element goes from READY to PAUSED; renderers with the same file and
   * device share one copy of the weights.
   */
  gst_anitalker_install_property(
      gobject_class, PROP_CHECKPOINT,
      g_param_spec_string("checkpoint", "Checkpoint",
                          "Path of the stage-1 (LIA) checkpoint, loaded on READY->PAUSED (default: none; required)",
                          nullptr, ready),
      FIELD(checkpoint));

  /**
   * GstAnitalkerRender:portrait:
   *
   * The face to animate: an image file (JPEG, PNG, ... anything OpenCV
   * reads), resized to the model's image size as the reference does.  May
   * be changed while PLAYING: the new face is encoded at the next buffer
   * boundary and used from the next rendered frame on.  Setting it to
   * %NULL or "" keeps the current face.
   */
  gst_anitalker_install_property(
      gobject_class, PROP_PORTRAIT,
      g_param_spec_string("portrait", "Portrait",
                          "Path of the portrait image to animate; may change while PLAYING (live: the current face goes on "
                          "until the new one is encoded; not live: the next buffer waits for it) (default: none; required)",
                          nullptr, playing),
      FIELD(portrait));

  /**
   * GstAnitalkerRender:batch-size:
   *
   * Motion frames rendered in one call of the model.  Above 1, frames are
   * held until the batch is full (or EOS), which adds batch-size - 1 frame
   * durations of latency.
   */
  gst_anitalker_install_property(
      gobject_class, PROP_BATCH_SIZE,
      gst_anitalker_param_spec_uint("batch-size", "Batch size",
                        "Motion frames rendered in one call of the model (default: 1); adds batch-size - 1 frames of "
                        "latency",
                        1, 64, 1, GST_ANITALKER_PARAM_PLAYING_LATENCY),
      FIELD(batch_size));

  /**
   * GstAnitalkerRender:crop:
   *
   * Which square of the portrait the networks see.  "none": the whole
   * picture, resized to the model's size (the reference's way: give it a
   * centred head).  "auto": the square around the face as the authors cut
   * their training data (the face box's centre, its larger side times 1 +
   * #GstAnitalkerRender:crop-ratio, at most the picture's shorter side,
   * padded with black where it leaves the picture); the face box comes from
   * #GstAnitalkerRender:face-box or, without one, from RetinaFace
   * (#GstAnitalkerRender:detector): the largest face, or
   * #GstAnitalkerRender:face-index.  "X,Y,SIDE": that square, in the
   * picture's pixels.  Applies from the next portrait encode; the picture
   * and the square go downstream in the "anitalker-crop" event, for
   * anitalkerpaste.
   */
  gst_anitalker_install_property(
      gobject_class, PROP_CROP,
      g_param_spec_string("crop", "Crop",
                          "none (the whole picture, as stored, as the reference reads it), auto (the square around "
                          "the face, as the authors cut their data) or X,Y,SIDE (that square in the picture's "
                          "pixels); a picture to crop is taken as shown, its EXIF orientation applied (a phone's "
                          "photo upright) (default: none)",
                          DEFAULT_CROP, playing),
      FIELD(crop));
  gst_anitalker_install_property(
      gobject_class, PROP_FACE_BOX,
      g_param_spec_string("face-box", "Face box",
                          "With crop=auto: the face box X1,Y1,X2,Y2 in the picture's pixels instead of running the "
                          "detector (default: none)",
                          nullptr, playing),
      FIELD(face_box));
  gst_anitalker_install_property(
      gobject_class, PROP_CROP_RATIO,
      gst_anitalker_param_spec_float("crop-ratio", "Crop ratio",
                                     "With crop=auto: the square's side is the face box's larger side times 1 + "
                                     "this (the authors' expanded_ratio)",
                                     0.0f, 10.0f, 0.6f, playing),
      FIELD(crop_ratio));
  gst_anitalker_install_property(
      gobject_class, PROP_FACE_INDEX,
      gst_anitalker_param_spec_int("face-index", "Face index",
                       "With crop=auto and the detector: which face, in the detector's order (by score); -1 = the "
                       "largest, the authors' choice (default: -1)",
                       -1, 1023, -1, playing),
      FIELD(face_index));
  gst_anitalker_install_property(
      gobject_class, PROP_DETECTOR,
      g_param_spec_string("detector", "Face detector",
                          "RetinaFace weights (detection_Resnet50_Final.pth) for crop=auto without a face-box "
                          "(default: none)",
                          nullptr, playing),
      FIELD(detector));
  /**
   * GstAnitalkerRender:qos:
   *
   * Skip the frames that a QoS event from downstream says would arrive too
   * late, as video decoders do (see above): a renderer slower than real time
   * then shows fewer frames at their times instead of every frame later
   * and later.  Only sinks that send QoS events (video sinks) cause it.
   */
  gst_anitalker_install_property(
      gobject_class, PROP_QOS,
      g_param_spec_boolean("qos", "QoS",
                           "Skip frames that downstream's QoS events say would arrive too late (default: true)", TRUE,
                           playing),
      FIELD(qos));
  gst_anitalker_element_class_install_common(base_class, GST_ANITALKER_COMMON_DEVICE | GST_ANITALKER_COMMON_SHARING | GST_ANITALKER_COMMON_BUDGET,
                                             "the renderer");

  gst_element_class_set_static_metadata(element_class, "AniTalker renderer", "Filter/Converter/Video",
                                        "Renders AniTalker motion latents into video frames of a portrait "
                                        "with the stage-1 LIA model",
                                        "anitalker-gst developers");
  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);

  base_class->failure = "Rendering failed.";
  base_class->input = "Motion data";
  // Held frames belong before a new segment, stream or gap: rendered first.
  base_class->drain_on_segment = TRUE;
  base_class->drain_on_stream_start = TRUE;
  base_class->start = gst_anitalker_render_start;
  base_class->warm_up = gst_anitalker_render_warm_up;
  base_class->stop = gst_anitalker_render_stop;
  base_class->set_caps = gst_anitalker_render_set_caps;
  base_class->get_caps = gst_anitalker_render_get_caps;
  base_class->handle_buffer = gst_anitalker_render_handle_buffer;
  base_class->drain = gst_anitalker_render_drain;
  base_class->flush = gst_anitalker_render_flush;
  base_class->latency = gst_anitalker_render_latency;
  base_class->sink_event = gst_anitalker_render_sink_event;
  base_class->src_event = gst_anitalker_render_src_event;
  base_class->sink_query = gst_anitalker_render_sink_query;
}

static void gst_anitalker_render_init(GstAnitalkerRender* self) {
  self->qos = TRUE;
  self->state = gst_anitalker_element_make_state<RenderState>(GST_ANITALKER_ELEMENT(self));
}
