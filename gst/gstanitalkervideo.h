// The video side shared by the elements that make or take frames
// (anitalkerrender, anitalkerpaste, gfpgansr): packed 8-bit RGB in and out
// of mapped frames, the output caps negotiation, the timing of frames held
// for a batch, and the "anitalker-crop" event between the renderer and
// anitalkerpaste (gstanitalkercaps.h).  Plumbing only; torch-free.
#pragma once

#include <gst/gst.h>
#include <gst/video/video.h>

#include <cstdint>
#include <string>
#include <vector>

#include "crop.h"
#include "gstanitalkerelement.h"
#include "rgb_image.h"

namespace cv {
class Mat;
}

// --- Packed 8-bit frames.

// A buffer of `info` (RGB, BGR, RGBx or BGRx) holding the (height, width,
// 3) RGB pixels `rgb` (x = 255), from `pool` where given (else a new one);
// null when it cannot be mapped.
class GstAnitalkerOutputPool;
GstBuffer* gst_anitalker_video_buffer_from_rgb(const GstVideoInfo* info, const uint8_t* rgb,
                                               GstAnitalkerOutputPool* pool = nullptr);
// The mapped frame (RGB, BGR or RGBx) as BGR: a view for BGR, a converted copy else.
cv::Mat gst_anitalker_video_frame_to_bgr(const GstVideoFrame* frame);
// Writes a BGR image of the frame's size into the mapped frame (RGB, BGR or RGBx; x = 255).
void gst_anitalker_video_frame_from_bgr(const cv::Mat& bgr, GstVideoFrame* frame);

// --- Output caps.

// Offers `ours` (transfer full; most preferred first) to the src pad's peer,
// fixates the answer and pushes it as the caps event unless it is already
// the current caps.  TRUE with *info filled; FALSE (the pad marked for
// reconfiguration) when downstream takes none of them or refuses the event;
// then *refused (when given) says which: what was offered and what the peer
// takes, and the converters that would bridge them, for the element's error.
gboolean gst_anitalker_video_negotiate(GstPad* srcpad, GstCaps* ours, GstVideoInfo* info,
                                       std::string* refused = nullptr);

// --- Output buffers from a pool agreed with downstream.

// After each negotiation (the caps event sent), the ALLOCATION query to
// downstream: its first pool where it offers one that does not cap its
// buffers (a capped one would block the streaming thread while downstream
// holds them), else a video buffer pool of the element's own, with at least
// as many buffers as downstream asks for; GstVideoMeta on where downstream
// takes it.  A buffer goes back to its pool when downstream is done with
// it, instead of a new allocation a frame.  Streaming thread, and the
// element's stop (clear).
class GstAnitalkerOutputPool {
 public:
  GstAnitalkerOutputPool() = default;
  GstAnitalkerOutputPool(const GstAnitalkerOutputPool&) = delete;
  GstAnitalkerOutputPool& operator=(const GstAnitalkerOutputPool&) = delete;
  ~GstAnitalkerOutputPool() { clear(); }
  // FALSE, with no pool (buffers then allocated one by one), where no pool
  // takes `info`'s frames.
  gboolean decide(GstPad* srcpad, const GstVideoInfo* info);
  // A buffer for a frame of the negotiated info; null without a pool.
  GstBuffer* acquire();
  // Deactivates and drops the pool.
  void clear();

 private:
  GstBufferPool* pool_ = nullptr;
};

// --- Frames held for a batch: their timing is fixed when they arrive.

struct GstAnitalkerFrameTiming {
  GstClockTime pts, duration;
  bool discont;
  // Sets PTS, duration and DISCONT on `buffer`.
  void apply(GstBuffer* buffer) const;
};

// Frame i of an input buffer with PTS p gets p + i / framerate; frames of
// buffers without a PTS continue from the last one that had one (or from the
// segment's start).  Computed from the index, never accumulated.  Streaming
// thread only.
class GstAnitalkerFrameClock {
 public:
  // The input framerate; frames after a change continue from where the old
  // rate left them.
  void set_rate(int fps_n, int fps_d);
  bool has_rate() const { return fps_n_ > 0; }
  // Stamps `count` frames of `input` (PTS, else the element's segment start)
  // and holds their timing; takes the element's pending DISCONT.  False,
  // with nothing held, when the frames would end past GstClockTime's range.
  bool stamp(GstAnitalkerElement* element, GstBuffer* input, guint64 count);
  int fps_n() const { return fps_n_; }
  int fps_d() const { return fps_d_; }
  size_t held() const { return held_.size(); }
  // The timing of held frame i (i < held()).
  const GstAnitalkerFrameTiming& at(size_t i) const { return held_[i]; }
  // The timing of the first n held frames, no longer held.
  std::vector<GstAnitalkerFrameTiming> take(size_t n);
  // Drops the held frames (the anchor stays).
  void drop() { held_.clear(); }
  // A new segment, a flush or a stop: drops the frames and the anchor.
  void reset();
  // The duration of n frames at the current rate (25 fps before caps).
  GstClockTime span(guint64 n) const;

 private:
  int fps_n_ = 0, fps_d_ = 1;
  GstClockTime anchor_ = GST_CLOCK_TIME_NONE;  // PTS of the last input that had one
  guint64 since_anchor_ = 0;                   // frames since `anchor_`
  std::vector<GstAnitalkerFrameTiming> held_;
};

// --- The crop event (GST_ANITALKER_EVENT_CROP).

GstEvent* gst_anitalker_crop_event_new(const anitalker::RgbImage& picture, const anitalker::crop::Choice& choice,
                                       guint serial);
// The picture and the square of a crop event's structure; false when it is malformed.
bool gst_anitalker_crop_event_parse(const GstStructure* s, anitalker::RgbImage* picture,
                                    anitalker::crop::Square* square, bool* cropped);
