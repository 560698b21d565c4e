// anitalkerpaste: square face frames in, the original picture with the face
// pasted back out.  Plumbing only: caps, the held events, timestamps; the
// canvas and the blend are lib/crop.h's.

/**
 * SECTION:element-anitalkerpaste
 * @title: anitalkerpaste
 *
 * Pastes each square video frame (anitalkerrender's 256x256, or gfpgansr's
 * 512x512) back into the picture it was cut from, so that the output is
 * the user's own photo with the face talking.
 *
 * The picture and the square come from the "anitalker-crop" event that
 * anitalkerrender sends before the frames of each portrait (its
 * #GstAnitalkerRender:crop property chooses the square), so a new portrait
 * set while playing is followed here too.  Without a renderer upstream,
 * #GstAnitalkerPaste:portrait and #GstAnitalkerPaste:square give them.
 *
 * The output has the picture's size, scaled down so that its longer side is
 * at most #GstAnitalkerPaste:max-size, and even (H.264 needs it): at full
 * size an odd last column or row is dropped, never resampled.  Each frame
 * is resized to the square's side in the output (area when shrinking,
 * bicubic when growing) and blended in over #GstAnitalkerPaste:feather
 * pixels inside the square's edge: farther in, the frame's pixels; outside
 * the square, the picture's, unchanged.  Parts of the square outside the
 * picture (the padding) are dropped.
 *
 * Timestamps, durations and flags pass through; the output caps follow the
 * picture (a new portrait of another size renegotiates).
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 filesrc location=speech.wav ! decodebin ! audioconvert ! audioresample !
 *     hubertenc model=models/chinese-hubert-large ! anitalkermotion checkpoint=models/stage2_audio_only_hubert.ckpt !
 *     anitalkerrender checkpoint=models/stage1.ckpt portrait=photo.jpg crop=auto
 *         detector=models/detection_Resnet50_Final.pth !
 *     anitalkerpaste ! videoconvert ! x264enc ! mp4mux ! filesink location=out.mp4
 * ]|
 */

#include "gstanitalkerpaste.h"

#include <gst/video/video.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "crop.h"
#include "error.h"
#include "gstanitalkercaps.h"
#include "gstanitalkercommon.h"
#include "gstanitalkervideo.h"
#include "rgb_image.h"

GST_DEBUG_CATEGORY_STATIC(gst_anitalker_paste_debug);
#define GST_CAT_DEFAULT gst_anitalker_paste_debug

namespace crop = anitalker::crop;

#define DEFAULT_FEATHER 16
#define MAX_FEATHER 1024
#define DEFAULT_MAX_SIZE 1920
#define MAX_MAX_SIZE 16384

enum {
  PROP_0,
  PROP_FEATHER,
  PROP_COLOUR_MATCH,
  PROP_MAX_SIZE,
  PROP_PORTRAIT,
  PROP_SQUARE,
};

namespace {

// Streaming-thread state (and the state change, with the stream stopped).
struct PasteState {
  // Where the frames go, from the crop event or the properties.
  std::shared_ptr<const anitalker::RgbImage> picture;
  crop::Square square;
  bool cropped = false;
  bool dirty = true;  // picture, square or input changed: recompute the canvas and caps

  crop::Canvas canvas;
  anitalker::RgbImage fitted;  // the picture at the canvas's size
  GstVideoInfo in_info;
  GstVideoInfo out_info;  // the canvas, once have_out
  GstAnitalkerOutputPool pool;  // the output buffers', agreed after each negotiation
  bool have_in = false;
  bool have_out = false;
  std::vector<GstEvent*> held;  // sticky events waiting for our first caps

  void drop_held() {
    for (GstEvent* e : held) gst_event_unref(e);
    held.clear();
  }
  void reset() {
    drop_held();
    pool.clear();
    picture.reset();
    cropped = false;
    dirty = true;
    have_in = have_out = false;
    fitted = {};
  }
};

}  // namespace

struct _GstAnitalkerPaste {
  GstAnitalkerElement parent;

  // Properties, under the object lock.
  guint feather;
  gboolean colour_match;
  guint max_size;
  gchar* portrait;
  gchar* square;

  PasteState* state;
};

/**
 * GstAnitalkerPaste!sink:
 *
 * Square RGB frames (anitalkerrender's or gfpgansr's).
 */
static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(GST_VIDEO_CAPS_MAKE("RGB")));

/**
 * GstAnitalkerPaste!src:
 *
 * The picture's size (capped by max-size, even), RGB, the input's framerate.
 */
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(GST_VIDEO_CAPS_MAKE("RGB")));

#define gst_anitalker_paste_parent_class parent_class
G_DEFINE_TYPE(GstAnitalkerPaste, gst_anitalker_paste, GST_TYPE_ANITALKER_ELEMENT);
GST_ELEMENT_REGISTER_DEFINE(anitalkerpaste, "anitalkerpaste", GST_RANK_NONE, GST_TYPE_ANITALKER_PASTE);

static gboolean gst_anitalker_paste_start(GstAnitalkerElement* element);
static void gst_anitalker_paste_stop(GstAnitalkerElement* element);
static gboolean gst_anitalker_paste_set_caps(GstAnitalkerElement* element, GstCaps* caps);
static GstCaps* gst_anitalker_paste_get_caps(GstAnitalkerElement* element, GstPadDirection direction);
static GstFlowReturn gst_anitalker_paste_handle_buffer(GstAnitalkerElement* element, GstBuffer* buffer);
static GstClockTime gst_anitalker_paste_latency(GstAnitalkerElement* element, gboolean live);
static gboolean gst_anitalker_paste_sink_event(GstAnitalkerElement* element, GstEvent* event, gboolean* result);
static gboolean gst_anitalker_paste_sink_query(GstAnitalkerElement* element, GstQuery* query, gboolean* result);

#define FIELD(f) G_STRUCT_OFFSET(GstAnitalkerPaste, f)

static void gst_anitalker_paste_class_init(GstAnitalkerPasteClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  GST_DEBUG_CATEGORY_INIT(gst_anitalker_paste_debug, "anitalkerpaste", 0, "AniTalker paste-back");

  const GParamFlags playing = GST_ANITALKER_PARAM_PLAYING;
  const GParamFlags ready = GST_ANITALKER_PARAM_READY;
  gst_anitalker_install_property(
      gobject_class, PROP_FEATHER,
      gst_anitalker_param_spec_uint("feather", "Feather",
                        "Width in output pixels of the blend inside the square's edge: the face's weight rises "
                        "linearly from 0 at the edge to 1 this far in; 0 = a hard edge (default: 16)",
                        0, MAX_FEATHER, DEFAULT_FEATHER, playing),
      FIELD(feather));
  gst_anitalker_install_property(
      gobject_class, PROP_COLOUR_MATCH,
      g_param_spec_boolean("colour-match", "Colour match",
                           "Shift the face's colours by the mean difference from the picture over the blend band, "
                           "so a face whose light drifted meets the picture without a visible edge (default: false)",
                           FALSE, playing),
      FIELD(colour_match));
  gst_anitalker_install_property(
      gobject_class, PROP_MAX_SIZE,
      gst_anitalker_param_spec_uint("max-size", "Maximum size",
                        "Longest side of the output; larger pictures are scaled down; while playing, from the next "
                        "picture (default: 1920)",
                        2, MAX_MAX_SIZE, DEFAULT_MAX_SIZE, playing),
      FIELD(max_size));
  gst_anitalker_install_property(
      gobject_class, PROP_PORTRAIT,
      g_param_spec_string("portrait", "Picture",
                          "The picture to paste into, instead of the one in anitalkerrender's crop event, as shown "
                          "(EXIF orientation applied); needs square (default: none)",
                          nullptr, ready),
      FIELD(portrait));
  gst_anitalker_install_property(
      gobject_class, PROP_SQUARE,
      g_param_spec_string("square", "Square",
                          "With portrait: where the frames go, X,Y,SIDE in the picture's pixels (default: none)",
                          nullptr, ready),
      FIELD(square));

  gst_element_class_set_static_metadata(element_class, "AniTalker paste-back", "Filter/Effect/Video",
                                        "Pastes the talking face back into the original picture, with a "
                                        "feathered edge",
                                        "anitalker-gst developers");
  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  GstAnitalkerElementClass* base_class = GST_ANITALKER_ELEMENT_CLASS(klass);
  gst_anitalker_element_class_install_common(base_class, GST_ANITALKER_COMMON_BUDGET, nullptr);
  base_class->failure = "Pasting failed.";
  base_class->input = "Video";
  base_class->start = gst_anitalker_paste_start;
  base_class->stop = gst_anitalker_paste_stop;
  base_class->set_caps = gst_anitalker_paste_set_caps;
  base_class->get_caps = gst_anitalker_paste_get_caps;
  base_class->handle_buffer = gst_anitalker_paste_handle_buffer;
  base_class->latency = gst_anitalker_paste_latency;
  base_class->sink_event = gst_anitalker_paste_sink_event;
  base_class->sink_query = gst_anitalker_paste_sink_query;
}

static void gst_anitalker_paste_init(GstAnitalkerPaste* self) {
  self->state = gst_anitalker_element_make_state<PasteState>(GST_ANITALKER_ELEMENT(self));
}

// READY->PAUSED: the portrait and square properties, when given, are read
// here, so that a bad file or square fails the start with its name.
static gboolean gst_anitalker_paste_start(GstAnitalkerElement* element) {
  GstAnitalkerPaste* self = GST_ANITALKER_PASTE(element);
  PasteState* st = self->state;
  st->reset();
  GST_OBJECT_LOCK(self);
  const std::string portrait = self->portrait ? self->portrait : "";
  const std::string square = self->square ? self->square : "";
  GST_OBJECT_UNLOCK(self);
  if (portrait.empty() && square.empty()) return TRUE;  // from the renderer's event
  if (portrait.empty() || square.empty()) {
    GST_ELEMENT_ERROR(self, LIBRARY, SETTINGS, ("Give both portrait and square, or neither."),
                      ("portrait \"%s\", square \"%s\"; without them the renderer's crop event is used",
                       portrait.c_str(), square.c_str()));
    return FALSE;
  }
  // The square alone first: its message names it, and only the form this
  // property takes (not the renderer crop's auto and none).
  crop::Spec spec;
  bool square_ok = false;
  try {
    spec = crop::parse_spec(square, "square");
    square_ok = spec.mode == crop::Spec::Mode::Square;
  } catch (...) {
  }
  if (!square_ok) {
    GST_ELEMENT_ERROR(self, LIBRARY, SETTINGS,
                      ("Could not use square \"%s\": expected X,Y,SIDE, the face's square in the picture's pixels "
                       "(three whole numbers from -1000000 to 1000000, SIDE above 0).",
                       square.c_str()),
                      ("portrait \"%s\"", portrait.c_str()));
    return FALSE;
  }
  try {
    auto picture = std::make_shared<const anitalker::RgbImage>(anitalker::read_rgb_image(portrait, anitalker::Orientation::Shown));
    const crop::Choice c = crop::choose(spec, picture->width, picture->height, {}, portrait);
    st->picture = std::move(picture);
    st->square = c.square;
    st->cropped = true;
  } catch (...) {
    GST_ANITALKER_POST_CURRENT_EXCEPTION(self, gst_anitalker_printf("Could not use the picture \"%s\".", portrait.c_str()),
                                         true);
    return FALSE;
  }
  return TRUE;
}

static void gst_anitalker_paste_stop(GstAnitalkerElement* element) { GST_ANITALKER_PASTE(element)->state->reset(); }

// The crop event from anitalkerrender: the picture and the square.
static void gst_anitalker_paste_take_crop(GstAnitalkerPaste* self, const GstStructure* s) {
  PasteState* st = self->state;
  GST_OBJECT_LOCK(self);
  const bool own = self->portrait && *self->portrait;
  GST_OBJECT_UNLOCK(self);
  if (own) return;  // the properties win
  auto picture = std::make_shared<anitalker::RgbImage>();
  crop::Square square;
  bool cropped = false;
  if (!gst_anitalker_crop_event_parse(s, picture.get(), &square, &cropped)) {
    GST_WARNING_OBJECT(self, "ignoring a malformed %s event", GST_ANITALKER_EVENT_CROP);
    return;
  }
  if (!cropped && picture->width != picture->height && st->have_out) {
    // Running (a live stream whose renderer got crop=none, or a picture
    // that is not square under it): nothing to paste into, so a WARNING and
    // the picture and square in use stay; the stream goes on (it stopped
    // with the ERROR below, found 2026-12-07).  At the start it is an error.
    GST_ELEMENT_WARNING(self, LIBRARY, SETTINGS,
                        ("Paste-back needs a crop: the renderer has crop=none for a %dx%d picture; the picture and "
                         "square in use stay.",
                         picture->width, picture->height),
                        ("set crop=auto or crop=X,Y,SIDE on anitalkerrender (the bin's crop) for this picture"));
    return;
  }
  GST_INFO_OBJECT(self, "picture %dx%d, square %d,%d,%d%s", picture->width, picture->height, square.x, square.y,
                  square.side, cropped ? "" : " (not cropped)");
  st->picture = std::move(picture);
  st->square = square;
  st->cropped = cropped;
  st->dirty = true;
}

// The canvas for the current picture and input, and the output caps pushed
// (with the events held for them).  Posts the error and returns FALSE when
// it cannot be done.
static gboolean gst_anitalker_paste_configure(GstAnitalkerPaste* self) {
  PasteState* st = self->state;
  if (!st->dirty && st->have_out) return TRUE;
  if (!st->have_in) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("No caps before the first frame."), (nullptr));
    return FALSE;
  }
  if (!st->picture) {
    GST_ELEMENT_ERROR(self, CORE, FAILED, ("No picture to paste into."),
                      ("put anitalkerrender upstream (its crop event gives the picture and the square), or set the "
                       "portrait and square properties"));
    return FALSE;
  }
  crop::Square square = st->square;
  if (!st->cropped) {
    if (st->picture->width != st->picture->height) {
      GST_ELEMENT_ERROR(self, LIBRARY, SETTINGS, ("Paste-back needs a crop: the renderer has crop=none."),
                        ("with crop=none the %dx%d picture was squeezed into the square; set crop=auto or "
                         "crop=X,Y,SIDE on anitalkerrender",
                         st->picture->width, st->picture->height));
      return FALSE;
    }
    square = {0, 0, st->picture->width};
  }
  const int max_size = (int)gst_anitalker_get(self, &self->max_size);
  try {
    st->canvas = crop::plan_canvas(st->picture->width, st->picture->height, square, max_size);
    st->fitted = crop::fit_picture(*st->picture, st->canvas);
  } catch (...) {
    GST_ANITALKER_POST_CURRENT_EXCEPTION(self, "Could not place the picture.", false);
    return FALSE;
  }
  GstVideoInfo out;
  gst_video_info_set_format(&out, GST_VIDEO_FORMAT_RGB, st->canvas.width, st->canvas.height);
  out.fps_n = GST_VIDEO_INFO_FPS_N(&st->in_info);
  out.fps_d = GST_VIDEO_INFO_FPS_D(&st->in_info);
  std::string refused;
  if (!gst_anitalker_video_negotiate(GST_ANITALKER_ELEMENT(self)->srcpad, gst_video_info_to_caps(&out),
                                     &st->out_info, &refused)) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION,
                      ("Downstream refused %dx%d RGB video: %s.", out.width, out.height, refused.c_str()),
                      (nullptr));
    return FALSE;
  }
  // Then the buffers' pool (ALLOCATION): a 1920x1080 frame is 6 MB, which
  // a new allocation maps and faults in again at every frame.
  st->pool.decide(GST_ANITALKER_ELEMENT(self)->srcpad, &st->out_info);
  st->have_out = true;
  st->dirty = false;
  for (GstEvent* e : st->held) gst_pad_push_event(GST_ANITALKER_ELEMENT(self)->srcpad, e);
  st->held.clear();
  return TRUE;
}

static GstFlowReturn gst_anitalker_paste_handle_buffer(GstAnitalkerElement* element, GstBuffer* buffer) {
  GstAnitalkerPaste* self = GST_ANITALKER_PASTE(element);
  PasteState* st = self->state;
  if (!gst_anitalker_paste_configure(self)) return GST_FLOW_NOT_NEGOTIATED;
  GST_OBJECT_LOCK(self);
  const int feather = (int)self->feather;
  const bool colour_match = self->colour_match;
  GST_OBJECT_UNLOCK(self);

  const gint64 t0 = g_get_monotonic_time();
  GstVideoFrame in;
  if (!gst_video_frame_map(&in, &st->in_info, buffer, GST_MAP_READ)) {
    GST_ELEMENT_ERROR(self, STREAM, FORMAT, ("A frame does not match its caps."), (nullptr));
    return GST_FLOW_ERROR;
  }
  anitalker::RgbImage face;
  face.width = GST_VIDEO_FRAME_WIDTH(&in);
  face.height = GST_VIDEO_FRAME_HEIGHT(&in);
  face.data.resize((size_t)face.width * face.height * 3);
  const guint8* src = (const guint8*)GST_VIDEO_FRAME_PLANE_DATA(&in, 0);
  const gint in_stride = GST_VIDEO_FRAME_PLANE_STRIDE(&in, 0);
  for (int y = 0; y < face.height; y++) std::memcpy(face.at(0, y), src + (size_t)y * in_stride, face.width * 3);
  gst_video_frame_unmap(&in);

  anitalker::RgbImage out_image;
  try {
    out_image = crop::paste(st->fitted, crop::resize_square(face, st->canvas.square.side), st->canvas.square,
                            std::min(feather, st->canvas.square.side / 2), colour_match);
  } catch (...) {
    GST_ANITALKER_POST_CURRENT_EXCEPTION(self, "Could not paste the frame.", false);
    return GST_FLOW_ERROR;
  }

  const GstVideoInfo& out_info = st->out_info;
  GstBuffer* out = st->pool.acquire();
  if (out == nullptr) out = gst_buffer_new_allocate(nullptr, GST_VIDEO_INFO_SIZE(&out_info), nullptr);
  gst_buffer_copy_into(out, buffer, (GstBufferCopyFlags)(GST_BUFFER_COPY_FLAGS | GST_BUFFER_COPY_TIMESTAMPS), 0, -1);
  GstVideoFrame frame;  // the strides of the buffer's video meta, where a pool gave one
  if (!gst_video_frame_map(&frame, &out_info, out, GST_MAP_WRITE)) {
    gst_buffer_unref(out);
    GST_ELEMENT_ERROR(self, STREAM, FAILED, ("Could not map an output buffer."), (nullptr));
    return GST_FLOW_ERROR;
  }
  const gint stride = GST_VIDEO_FRAME_PLANE_STRIDE(&frame, 0);
  uint8_t* rows = static_cast<uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&frame, 0));
  for (int y = 0; y < out_image.height; y++)
    std::memcpy(rows + (size_t)y * stride, out_image.at(0, y), (size_t)out_image.width * 3);
  gst_video_frame_unmap(&frame);
  // A frame's time here (12 ms for a 1920x1080 picture on 2 cores) is part
  // of the latency the element adds.
  gst_anitalker_element_add_compute(element, t0);
  return gst_anitalker_element_push(element, out);
}

// Nothing is held back: what the element adds is the longest frame's time
// (the base adds the budget).
static GstClockTime gst_anitalker_paste_latency(GstAnitalkerElement*, gboolean) { return 0; }

static gboolean gst_anitalker_paste_set_caps(GstAnitalkerElement* element, GstCaps* caps) {
  PasteState* st = GST_ANITALKER_PASTE(element)->state;
  GstVideoInfo info;
  if (!gst_video_info_from_caps(&info, caps) || info.width != info.height) {
    GST_WARNING_OBJECT(element, "refusing %" GST_PTR_FORMAT ": square RGB frames expected", caps);
    return FALSE;
  }
  st->in_info = info;
  st->have_in = true;
  st->dirty = true;
  return TRUE;  // our own caps go out before the next frame
}

static gboolean gst_anitalker_paste_sink_event(GstAnitalkerElement* element, GstEvent* event, gboolean* result) {
  GstAnitalkerPaste* self = GST_ANITALKER_PASTE(element);
  PasteState* st = self->state;
  const GstStructure* s = gst_event_get_structure(event);
  switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_CAPS:
      return FALSE;  // set_caps
    case GST_EVENT_CUSTOM_DOWNSTREAM_STICKY:
      if (s && gst_structure_has_name(s, GST_ANITALKER_EVENT_CROP)) {
        gst_anitalker_paste_take_crop(self, s);
        gst_event_unref(event);
        *result = TRUE;
        return TRUE;
      }
      break;
    case GST_EVENT_EOS:
      // Nothing came through: still pass on what was held, then EOS.
      for (GstEvent* e : st->held) gst_pad_push_event(element->srcpad, e);
      st->held.clear();
      return FALSE;
    default:
      break;
  }
  // Sticky events after caps (segment, tags, ...) wait for our first caps.
  if (!st->have_out && GST_EVENT_IS_STICKY(event) && GST_EVENT_TYPE(event) != GST_EVENT_STREAM_START) {
    st->held.push_back(event);
    *result = TRUE;
    return TRUE;
  }
  return FALSE;
}

static gboolean gst_anitalker_paste_sink_query(GstAnitalkerElement*, GstQuery* query, gboolean* result) {
  switch (GST_QUERY_TYPE(query)) {
    case GST_QUERY_ACCEPT_CAPS: {
      GstCaps* caps;
      gst_query_parse_accept_caps(query, &caps);
      GstVideoInfo info;
      gst_query_set_accept_caps_result(query, gst_video_info_from_caps(&info, caps) && info.width == info.height &&
                                                  GST_VIDEO_INFO_FORMAT(&info) == GST_VIDEO_FORMAT_RGB);
      *result = TRUE;
      return TRUE;
    }
    case GST_QUERY_ALLOCATION:
      *result = FALSE;  // downstream's pool is for our output size, not our input
      return TRUE;
    default:
      return FALSE;
  }
}

// Src: the caps pushed, else the template; sink: any square RGB frame (the
// template), whose size never constrains ours.
static GstCaps* gst_anitalker_paste_get_caps(GstAnitalkerElement* element, GstPadDirection direction) {
  return direction == GST_PAD_SRC ? gst_pad_get_current_caps(element->srcpad) : nullptr;
}
