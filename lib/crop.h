// Any photo in: the square the networks see, cut around the face as the
// authors cut their training data, and the generated square pasted back
// into the photo.  Torch-free.
//
// The crop rule (the authors' talking_face_preprocessing,
// extract_cropped_faces.py): take the face box's centre; the side is the
// larger of the box's width and height times (1 + expanded_ratio), ratio 0.6
// by default; the side is clamped to the picture's shorter side; the square
// is centred on the box centre and padded where it leaves the picture.  For a
// video, centre and side are medians over the detections (every 25th frame).
// The authors detect with FaceBoxesV2; this project uses RetinaFace's box.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "rgb_image.h"

namespace anitalker::crop {

// A face box in picture pixels: [x1, x2) x [y1, y2), as the detectors give.
struct Box {
  double x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  double width() const { return x2 - x1; }
  double height() const { return y2 - y1; }
};

// The square in picture pixels: columns [x, x + side), rows [y, y + side);
// x and y may be negative and x + side may pass the picture (padding).
struct Square {
  int x = 0, y = 0, side = 0;
};

// The rule above.  side = round(max(w, h) * (1 + ratio)), at most
// min(width, height); x = round(cx - side / 2), y likewise (halves round
// away from zero, as std::lround).  Throws Error(Usage) for a box that is
// empty, not finite or wholly outside the picture (the message gives the
// picture's size), or a ratio below 0.
Square square_for(const Box& box, int width, int height, double expanded_ratio = 0.6);

// The largest face (by area; the first of equals), the authors' choice.
// Throws Error(Usage) for an empty list.
size_t largest(const std::vector<Box>& boxes);

// A video: the box whose centre and size are the medians of the boxes'
// centres, widths and heights (the mean of the two middle values for an
// even count).  Throws Error(Usage) for an empty list.
Box median(const std::vector<Box>& boxes);

enum class Pad { Colour, Replicate };

// The square cut from the picture, `side` x `side`, padded outside it with
// `colour` (RGB) or by repeating the nearest edge pixel.
RgbImage cut(const RgbImage& picture, const Square& sq, Pad pad = Pad::Colour,
             const uint8_t colour[3] = nullptr);

// Pastes `face` (side x side, the generated square at the crop's size) into
// a copy of `picture` at `sq`: pixels farther than `feather` pixels inside
// the square's edge are the face's, pixels outside the square the
// picture's, and in between a linear blend (weight = distance to the
// edge / feather, distances measured from the pixel centres to the square's
// sides).  Parts of the square outside the picture are dropped.  Throws
// Error(Usage) when the sizes do not agree.
RgbImage paste(const RgbImage& picture, const RgbImage& face, const Square& sq, int feather = 16);

}  // namespace anitalker::crop
