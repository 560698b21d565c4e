// The video side shared by the elements (gstanitalkervideo.h).

#include "gstanitalkervideo.h"

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cstring>

#include "gstanitalkercaps.h"

/* --- Packed 8-bit frames ------------------------------------------------- */

GstBuffer* gst_anitalker_video_buffer_from_rgb(const GstVideoInfo* info, const uint8_t* rgb,
                                               GstAnitalkerOutputPool* pool) {
  GstBuffer* buffer = pool ? pool->acquire() : nullptr;
  if (buffer == nullptr) buffer = gst_buffer_new_allocate(nullptr, GST_VIDEO_INFO_SIZE(info), nullptr);
  GstVideoFrame frame;
  if (!gst_video_frame_map(&frame, info, buffer, GST_MAP_WRITE)) {
    gst_buffer_unref(buffer);
    return nullptr;
  }
  const int w = GST_VIDEO_FRAME_WIDTH(&frame), h = GST_VIDEO_FRAME_HEIGHT(&frame);
  const int stride = GST_VIDEO_FRAME_PLANE_STRIDE(&frame, 0);
  uint8_t* out = static_cast<uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&frame, 0));
  const GstVideoFormat format = GST_VIDEO_FRAME_FORMAT(&frame);
  // Where R, G and B go in an output pixel of `step` bytes.
  const bool bgr = format == GST_VIDEO_FORMAT_BGR || format == GST_VIDEO_FORMAT_BGRx;
  const int step = GST_VIDEO_FRAME_COMP_PSTRIDE(&frame, 0);
  for (int y = 0; y < h; y++) {
    const uint8_t* src = rgb + (size_t)y * w * 3;
    uint8_t* dst = out + (size_t)y * stride;
    if (format == GST_VIDEO_FORMAT_RGB) {
      memcpy(dst, src, (size_t)w * 3);
      continue;
    }
    for (int x = 0; x < w; x++, src += 3, dst += step) {
      dst[0] = src[bgr ? 2 : 0];
      dst[1] = src[1];
      dst[2] = src[bgr ? 0 : 2];
      if (step == 4) dst[3] = 0xff;
    }
  }
  gst_video_frame_unmap(&frame);
  return buffer;
}

cv::Mat gst_anitalker_video_frame_to_bgr(const GstVideoFrame* f) {
  const int w = GST_VIDEO_FRAME_WIDTH(f), h = GST_VIDEO_FRAME_HEIGHT(f);
  const size_t stride = GST_VIDEO_FRAME_PLANE_STRIDE(f, 0);
  void* data = GST_VIDEO_FRAME_PLANE_DATA(f, 0);
  cv::Mat bgr;
  switch (GST_VIDEO_FRAME_FORMAT(f)) {
    case GST_VIDEO_FORMAT_BGR:
      return cv::Mat(h, w, CV_8UC3, data, stride);
    case GST_VIDEO_FORMAT_RGB:
      cv::cvtColor(cv::Mat(h, w, CV_8UC3, data, stride), bgr, cv::COLOR_RGB2BGR);
      return bgr;
    case GST_VIDEO_FORMAT_RGBx:
      cv::cvtColor(cv::Mat(h, w, CV_8UC4, data, stride), bgr, cv::COLOR_RGBA2BGR);
      return bgr;
    default:
      g_assert_not_reached();
  }
  return bgr;
}

void gst_anitalker_video_frame_from_bgr(const cv::Mat& bgr, GstVideoFrame* f) {
  const int w = GST_VIDEO_FRAME_WIDTH(f), h = GST_VIDEO_FRAME_HEIGHT(f);
  const size_t stride = GST_VIDEO_FRAME_PLANE_STRIDE(f, 0);
  void* data = GST_VIDEO_FRAME_PLANE_DATA(f, 0);
  switch (GST_VIDEO_FRAME_FORMAT(f)) {
    case GST_VIDEO_FORMAT_BGR: {
      cv::Mat out(h, w, CV_8UC3, data, stride);
      bgr.copyTo(out);
      break;
    }
    case GST_VIDEO_FORMAT_RGB: {
      cv::Mat out(h, w, CV_8UC3, data, stride);
      cv::cvtColor(bgr, out, cv::COLOR_BGR2RGB);
      break;
    }
    case GST_VIDEO_FORMAT_RGBx: {
      cv::Mat out(h, w, CV_8UC4, data, stride);
      cv::cvtColor(bgr, out, cv::COLOR_BGR2RGBA);  // x = 255
      break;
    }
    default:
      g_assert_not_reached();
  }
}

/* --- Output caps ----------------------------------------------------------- */

gboolean gst_anitalker_video_negotiate(GstPad* srcpad, GstCaps* ours, GstVideoInfo* info, std::string* refused) {
  gst_pad_check_reconfigure(srcpad);  // this negotiation answers any pending request
  GstCaps* caps = gst_pad_peer_query_caps(srcpad, ours);
  if (gst_caps_is_empty(caps)) {
    GstCaps* peer = gst_pad_peer_query_caps(srcpad, nullptr);
    gchar* offered = gst_caps_to_string(ours);
    gchar* takes = gst_caps_to_string(peer);
    GST_WARNING_OBJECT(srcpad, "downstream accepts none of %s; it takes %s", offered, takes);
    if (refused)
      *refused = std::string("it makes ") + offered + "; downstream takes " + takes +
                 ". Put videoconvert, videoscale or videorate after it to change the format, size or frame rate";
    g_free(offered);
    g_free(takes);
    gst_caps_unref(peer);
    gst_caps_unref(ours);
    gst_caps_unref(caps);
    gst_pad_mark_reconfigure(srcpad);
    return FALSE;
  }
  gst_caps_unref(ours);
  caps = gst_caps_fixate(caps);
  GstVideoInfo fixed;
  gboolean ok = gst_video_info_from_caps(&fixed, caps);
  GstCaps* current = gst_pad_get_current_caps(srcpad);
  if (ok && (current == nullptr || !gst_caps_is_equal(current, caps))) {
    GST_DEBUG_OBJECT(srcpad, "output caps %" GST_PTR_FORMAT, caps);
    ok = gst_pad_push_event(srcpad, gst_event_new_caps(caps));
  }
  if (current) gst_caps_unref(current);
  gst_caps_unref(caps);
  if (ok)
    *info = fixed;
  else {
    if (refused) *refused = "downstream refused the caps event";
    gst_pad_mark_reconfigure(srcpad);
  }
  return ok;
}

/* --- Output buffers from a pool ---------------------------------------------- */

gboolean GstAnitalkerOutputPool::decide(GstPad* srcpad, const GstVideoInfo* info) {
  clear();
  GstCaps* caps = gst_video_info_to_caps(info);
  GstQuery* query = gst_query_new_allocation(caps, TRUE);
  guint size = GST_VIDEO_INFO_SIZE(info), min = 0, max = 0;
  GstBufferPool* pool = nullptr;
  gboolean meta = FALSE;
  if (gst_pad_peer_query(srcpad, query)) {
    meta = gst_query_find_allocation_meta(query, GST_VIDEO_META_API_TYPE, nullptr);
    if (gst_query_get_n_allocation_pools(query) > 0) {
      gst_query_parse_nth_allocation_pool(query, 0, &pool, &size, &min, &max);
      size = std::max<guint>(size, GST_VIDEO_INFO_SIZE(info));
      if (pool != nullptr && max != 0) {  // capped: the element's own, with downstream's minimum
        GST_DEBUG_OBJECT(srcpad, "downstream's pool caps its buffers at %u: using one of ours", max);
        gst_object_unref(pool);
        pool = nullptr;
      }
    }
  }
  gst_query_unref(query);
  // Configures and activates p (taken); FALSE (p dropped) where it refuses.
  auto use = [&](GstBufferPool* p, guint bytes) -> bool {
    GstStructure* config = gst_buffer_pool_get_config(p);
    gst_buffer_pool_config_set_params(config, caps, bytes, min, 0);
    if (meta) gst_buffer_pool_config_add_option(config, GST_BUFFER_POOL_OPTION_VIDEO_META);
    if (gst_buffer_pool_set_config(p, config) && gst_buffer_pool_set_active(p, TRUE)) {
      pool_ = p;
      return true;
    }
    GST_DEBUG_OBJECT(srcpad, "pool %" GST_PTR_FORMAT " refused the frames' configuration", p);
    gst_object_unref(p);
    return false;
  };
  if (pool == nullptr || !use(pool, size)) use(gst_video_buffer_pool_new(), GST_VIDEO_INFO_SIZE(info));
  gst_caps_unref(caps);
  if (pool_) GST_DEBUG_OBJECT(srcpad, "output buffers from %" GST_PTR_FORMAT, pool_);
  return pool_ != nullptr;
}

GstBuffer* GstAnitalkerOutputPool::acquire() {
  GstBuffer* buffer = nullptr;
  if (pool_ == nullptr || gst_buffer_pool_acquire_buffer(pool_, &buffer, nullptr) != GST_FLOW_OK) return nullptr;
  return buffer;
}

void GstAnitalkerOutputPool::clear() {
  if (pool_ == nullptr) return;
  gst_buffer_pool_set_active(pool_, FALSE);
  gst_object_unref(pool_);
  pool_ = nullptr;
}

/* --- Frames held for a batch ------------------------------------------------ */

void GstAnitalkerFrameTiming::apply(GstBuffer* buffer) const {
  GST_BUFFER_PTS(buffer) = pts;
  GST_BUFFER_DURATION(buffer) = duration;
  if (discont) GST_BUFFER_FLAG_SET(buffer, GST_BUFFER_FLAG_DISCONT);
}

GstClockTime GstAnitalkerFrameClock::span(guint64 n) const {
  return fps_n_ > 0 ? gst_util_uint64_scale(n, GST_SECOND * fps_d_, fps_n_) : gst_util_uint64_scale(n, GST_SECOND, 25);
}

void GstAnitalkerFrameClock::set_rate(int fps_n, int fps_d) {
  if (fps_n_ > 0 && GST_CLOCK_TIME_IS_VALID(anchor_)) {
    anchor_ += span(since_anchor_);
    since_anchor_ = 0;
  }
  fps_n_ = fps_n;
  fps_d_ = fps_d;
}

bool GstAnitalkerFrameClock::stamp(GstAnitalkerElement* element, GstBuffer* input, guint64 count) {
  if (GST_BUFFER_PTS_IS_VALID(input)) {
    anchor_ = GST_BUFFER_PTS(input);
    since_anchor_ = 0;
  } else if (!GST_CLOCK_TIME_IS_VALID(anchor_)) {
    anchor_ = element->segment.start;  // no timestamps yet
    since_anchor_ = 0;
  }
  // The last frame's end must lie within GstClockTime (below NONE): at a
  // framerate of 1/2147483647 (a frame per 68 years) the ninth frame got a
  // wrong duration and the tenth PTS NONE, without a word (found
  // 2026-12-07); so did a PTS near the end of the range.
  const GstClockTime last_end = span(since_anchor_ + count);
  if (last_end == GST_CLOCK_TIME_NONE || anchor_ >= GST_CLOCK_TIME_NONE - last_end) return false;
  for (guint64 i = 0; i < count; i++) {
    const guint64 n = since_anchor_ + i;
    const GstClockTime start = span(n);
    held_.push_back({anchor_ + start, span(n + 1) - start, (bool)element->discont});
    element->discont = FALSE;
  }
  since_anchor_ += count;
  return true;
}

std::vector<GstAnitalkerFrameTiming> GstAnitalkerFrameClock::take(size_t n) {
  n = std::min(n, held_.size());
  std::vector<GstAnitalkerFrameTiming> out(held_.begin(), held_.begin() + n);
  held_.erase(held_.begin(), held_.begin() + n);
  return out;
}

void GstAnitalkerFrameClock::reset() {
  held_.clear();
  anchor_ = GST_CLOCK_TIME_NONE;
  since_anchor_ = 0;
}

/* --- The crop event ----------------------------------------------------------- */

GstEvent* gst_anitalker_crop_event_new(const anitalker::RgbImage& picture, const anitalker::crop::Choice& choice,
                                       guint serial) {
  GstBuffer* buf = gst_buffer_new_memdup(picture.data.data(), picture.data.size());
  GstStructure* s = gst_structure_new(
      GST_ANITALKER_EVENT_CROP, "picture", GST_TYPE_BUFFER, buf, "width", G_TYPE_INT, picture.width, "height",
      G_TYPE_INT, picture.height, "cropped", G_TYPE_BOOLEAN, (gboolean)choice.cropped, "x", G_TYPE_INT,
      choice.square.x, "y", G_TYPE_INT, choice.square.y, "side", G_TYPE_INT, choice.square.side,
      GST_ANITALKER_FIELD_PORTRAIT_SERIAL, G_TYPE_UINT, serial, nullptr);
  gst_buffer_unref(buf);
  return gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM_STICKY, s);
}

bool gst_anitalker_crop_event_parse(const GstStructure* s, anitalker::RgbImage* picture,
                                    anitalker::crop::Square* square, bool* cropped) {
  GstBuffer* buf = nullptr;
  gint w = 0, h = 0, x = 0, y = 0, side = 0;
  gboolean is_cropped = FALSE;
  if (!gst_structure_has_name(s, GST_ANITALKER_EVENT_CROP) ||
      !gst_structure_get(s, "picture", GST_TYPE_BUFFER, &buf, "width", G_TYPE_INT, &w, "height", G_TYPE_INT, &h,
                         "cropped", G_TYPE_BOOLEAN, &is_cropped, "x", G_TYPE_INT, &x, "y", G_TYPE_INT, &y, "side",
                         G_TYPE_INT, &side, nullptr) ||
      w <= 0 || h <= 0 || gst_buffer_get_size(buf) != (gsize)w * h * 3) {
    if (buf) gst_buffer_unref(buf);
    return false;
  }
  picture->width = w;
  picture->height = h;
  picture->data.resize((size_t)w * h * 3);
  gst_buffer_extract(buf, 0, picture->data.data(), picture->data.size());
  gst_buffer_unref(buf);
  *square = {x, y, side};
  *cropped = is_cropped;
  return true;
}
