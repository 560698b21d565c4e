// Caps strings and the names of the custom queries and events that the
// anitalker elements share (DESIGN.md "Between the elements").  Plain C
// macros, so that any element or test can use them without C++.
#pragma once

// --- Audio features: hubertenc -> anitalkermotion.
// Buffers hold float32, time-major: a buffer carries k >= 1 whole frames.
//   kind=hubert: rate 50/1 (20 ms a frame); one frame is `layers` x `dims`
//     floats, frame-major: all hidden states of frame t are contiguous, state
//     0 first, so a run of T frames is laid out [T, layers, dims].  layers is
//     the model's hidden-state count (25 for chinese-hubert-large), dims its
//     width (1024).  At the end of the stream one padding frame (a copy of
//     the last frame) follows, as the demo pads (spec audio-features.md 1.7).
//   kind=mfcc: rate 100/1 (10 ms a frame), layers 1, dims 39: each frame is
//     13 MFCCs (c0 = log energy) | delta N=1 | delta N=2 (spec section 2).
// Frame t of a stream has PTS = first audio PTS + t / rate.
#define GST_ANITALKER_FEATURES_CAPS_NAME "application/x-anitalker-features"
#define GST_ANITALKER_FEATURES_CAPS                   \
  GST_ANITALKER_FEATURES_CAPS_NAME ", "               \
  "kind = (string) { hubert, mfcc }, "                \
  "layers = (int) [ 1, 2147483647 ], "                \
  "dims = (int) [ 1, 2147483647 ], "                  \
  "rate = (fraction) [ 1/2147483647, 2147483647/1 ]"
#define GST_ANITALKER_FEATURES_KIND_HUBERT "hubert"
#define GST_ANITALKER_FEATURES_KIND_MFCC "mfcc"

// --- Motion latents: anitalkermotion -> anitalkerrender.
// Buffers hold float32, time-major: a buffer carries k >= 1 frames of `dims`
// values.  The motion element produces framerate 25/1; the renderer accepts
// any positive framerate and passes it on to its video output.
#define GST_ANITALKER_MOTION_CAPS_NAME "application/x-anitalker-motion"
#define GST_ANITALKER_MOTION_CAPS                     \
  GST_ANITALKER_MOTION_CAPS_NAME ", "                 \
  "dims = (int) [ 1, 2147483647 ], "                  \
  "framerate = (fraction) [ 1/2147483647, 2147483647/1 ]"

// --- Rendered video: 8-bit RGB, or the padded RGBx / BGRx.
#define GST_ANITALKER_RENDER_VIDEO_FORMATS "{ RGB, RGBx, BGRx }"

// --- The portrait's codes, asked for by the motion element.
// A GST_QUERY_CUSTOM that the motion element sends downstream (out of its src
// pad) and the renderer answers on its sink pad, carrying a structure of this
// name.  The renderer fills in:
//   "start"           GstBuffer, style-dim float32 values (h_source / wa)
//   "direction"       GstBuffer, motion-dim float32 values (h_motion / alpha)
//   "style-dim"       int
//   "motion-dim"      int
//   "portrait-serial" uint, incremented each time a new portrait is encoded
#define GST_ANITALKER_QUERY_PORTRAIT_CODES "anitalker-portrait-codes"
#define GST_ANITALKER_FIELD_START "start"
#define GST_ANITALKER_FIELD_DIRECTION "direction"
#define GST_ANITALKER_FIELD_STYLE_DIM "style-dim"
#define GST_ANITALKER_FIELD_MOTION_DIM "motion-dim"
#define GST_ANITALKER_FIELD_PORTRAIT_SERIAL "portrait-serial"
// Set by a renderer that cannot answer (its portrait failed): why, for the
// asker's message (the renderer has posted its own error).
#define GST_ANITALKER_FIELD_REASON "reason"

// --- How the features come.
// A GST_QUERY_CUSTOM that the motion element sends upstream (out of its sink
// pad) when it answers the LATENCY query.  hubertenc answers it with HuBERT
// in streaming mode, where its frames go out in whole hops counted from a
// frame: "hop" (int, frames) and "origin" (guint64, the frame index since
// the stream (re)started that the hops count from).  MFCC, offline mode and
// other producers leave it unanswered; the motion element then assumes
// nothing of the arrival and adds its whole window.
#define GST_ANITALKER_QUERY_FEATURES_HOP "anitalker-features-hop"
#define GST_ANITALKER_FIELD_HOP "hop"
#define GST_ANITALKER_FIELD_ORIGIN "origin"

// --- The portrait changed.
// A GST_EVENT_CUSTOM_UPSTREAM pushed by the renderer out of its sink pad each
// time it has encoded a new portrait; field "portrait-serial" (uint) as in
// the query.  The motion element re-issues the codes query when the serial
// differs from the one it holds.
#define GST_ANITALKER_EVENT_PORTRAIT_CHANGED "anitalker-portrait-changed"

// --- Where the rendered square sits in the original picture.
// A GST_EVENT_CUSTOM_DOWNSTREAM_STICKY that the renderer pushes out of its
// src pad before the first frame of each newly encoded portrait; anitalkerpaste
// pastes the frames back into the picture with it.  Fields:
//   "picture"          GstBuffer, the whole picture, 8-bit RGB, rows of width * 3 bytes
//   "width", "height"  int, the picture's size
//   "cropped"          boolean; FALSE for crop=none (the whole picture was resized)
//   "x", "y", "side"   int, the square in the picture's pixels (may pass its edges)
//   "portrait-serial"  uint, as in the codes query
#define GST_ANITALKER_EVENT_CROP "anitalker-crop"
