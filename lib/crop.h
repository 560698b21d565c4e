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
#include <string>
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

// What to cut: the `crop` property of the elements and generate's --crop.
struct Spec {
  enum class Mode { None, Auto, Square };
  Mode mode = Mode::None;
  Square square;          // Mode::Square: the square itself, in picture pixels
  bool have_box = false;  // Mode::Auto: the face box given (the detector's answer by hand)
  Box box;
  double ratio = 0.6;  // expanded_ratio
  int face_index = -1;  // Mode::Auto with a detector: -1 = the largest face
  Pad pad = Pad::Colour;
  // How the caller names its settings in messages (make_spec): `crop` and
  // `face-box` (properties, NAME=VALUE) or `--crop` and `--face-box`
  // (options, NAME VALUE); an empty crop_name: the caller has no crop
  // setting (`anitalker crop`), so "no face found" suggests only the box.
  std::string crop_name = "crop", box_name = "face-box";
};

// "none", "auto" or "X,Y,SIDE" (integers, SIDE > 0) -> the mode and square.
// Throws Error(Usage) naming `what` and the accepted forms.
Spec parse_spec(const std::string& text, const std::string& what = "crop");
// "X1,Y1,X2,Y2" -> a box (finite numbers, X2 > X1, Y2 > Y1).
Box parse_box(const std::string& text, const std::string& what = "face-box");

// The crop settings as one Spec: `crop` as parse_spec reads it, a face box
// (empty: none; only with auto), the ratio and the face index.  The
// anitalkerrender properties and the `--crop` / `--face-box` options of
// `anitalker generate` and `crop` go through here; Usage errors name the
// settings as `crop_name` and `box_name` call them.
Spec make_spec(const std::string& crop, const std::string& face_box, double ratio, int face_index,
               const std::string& crop_name = "crop", const std::string& box_name = "face-box");

// The square chosen for one picture, and what was seen on the way.
struct Choice {
  bool cropped = false;  // false: Mode::None, the whole picture
  Square square;         // when cropped
  std::vector<Box> faces;  // the detector's faces (Mode::Auto without a box)
  int picked = -1;         // the one used, an index into faces
  // Uncropped: the picture's EXIF orientation tag when it says the picture
  // is shown otherwise than stored (2 to 8), used as stored all the same
  // (as the reference's PIL); 0 otherwise.  For a note.
  int stored_turned = 0;
  // The fraction of the picture's pixels that were transparent (its alpha
  // dropped, as the reference's PIL drops it; the colours stored under them,
  // often black, are used).  For a note.
  double transparent = 0;
};

// The spec applied to a `width` x `height` picture; `faces` is what the
// detector found (only read for Mode::Auto without a box).  Errors name
// `name` (the picture's file): no face found (suggesting crop=none, a
// face-box or a square), a face-index past the faces, a box or square
// outside the picture (with its size).
Choice choose(const Spec& spec, int width, int height, const std::vector<Box>& faces, const std::string& name);

// A short text of the faces found, for a note: "3 faces: 0 (x1, y1)-(x2, y2)
// [used], 1 ...".
std::string describe_faces(const Choice& c);
// The faces a list shows: the first kFacesListed and the one used (a crowd
// or a random-weight detector finds thousands).
constexpr size_t kFacesListed = 20;
bool listed(size_t i, const Choice& c);

// Pastes `face` (side x side, the generated square at the crop's size) into
// a copy of `picture` at `sq`: pixels farther than `feather` pixels inside
// the square's edge are the face's, pixels outside the square the
// picture's, and in between a linear blend (weight = distance to the
// edge / feather, distances measured from the pixel centres to the square's
// sides).  Parts of the square outside the picture are dropped.  With
// `colour_match`, the face is first shifted, per channel, by the mean of
// picture - face over the blend band (rounded, saturated), so a face whose
// light drifted meets the picture without a visible edge.  Throws
// Error(Usage) when the sizes do not agree.
RgbImage paste(const RgbImage& picture, const RgbImage& face, const Square& sq, int feather = 16,
               bool colour_match = false);

// The output of a paste-back: the picture's size, scaled down so that its
// longer side is at most `max_size` (never up), and made even (H.264): at
// scale 1 an odd last column or row is dropped (no resampling of the
// picture); below 1 the scaled size is rounded to even.  The square in the
// output's pixels: x, y and side times the scale, rounded.
struct Canvas {
  int width = 0, height = 0;
  double scale = 1;
  Square square;
};
Canvas plan_canvas(int width, int height, const Square& sq, int max_size = 1920);

// The picture made the canvas's size (drop or area-resample, as above).
RgbImage fit_picture(const RgbImage& picture, const Canvas& canvas);

// A face square resized to `side` (area when shrinking, bicubic when
// growing, a copy when equal).
RgbImage resize_square(const RgbImage& face, int side);

}  // namespace anitalker::crop
