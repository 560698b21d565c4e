#include "crop.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "error.h"

namespace anitalker::crop {

namespace {

std::string size_text(int width, int height) { return std::to_string(width) + "x" + std::to_string(height); }

std::string box_text(const Box& b) {
  char t[160];
  std::snprintf(t, sizeof t, "(%g, %g)-(%g, %g)", b.x1, b.y1, b.x2, b.y2);
  return t;
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

Square square_for(const Box& b, int width, int height, double ratio) {
  if (width <= 0 || height <= 0) throw Error(Error::Kind::Usage, "crop: an empty picture (" + size_text(width, height) + ")");
  if (!(ratio >= 0) || !std::isfinite(ratio))
    throw Error(Error::Kind::Usage, "crop: expanded ratio " + std::to_string(ratio) + ": expected a number >= 0");
  if (!std::isfinite(b.x1) || !std::isfinite(b.y1) || !std::isfinite(b.x2) || !std::isfinite(b.y2) ||
      !(b.width() > 0) || !(b.height() > 0))
    throw Error(Error::Kind::Usage, "crop: the face box " + box_text(b) + " is empty");
  if (b.x2 <= 0 || b.y2 <= 0 || b.x1 >= width || b.y1 >= height)
    throw Error(Error::Kind::Usage, "crop: the face box " + box_text(b) + " is outside the picture (" +
                                        size_text(width, height) + ")");
  const double cx = (b.x1 + b.x2) / 2, cy = (b.y1 + b.y2) / 2;
  long side = std::lround(std::max(b.width(), b.height()) * (1 + ratio));
  side = std::max(1L, std::min<long>(side, std::min(width, height)));
  Square s;
  s.side = static_cast<int>(side);
  s.x = static_cast<int>(std::lround(cx - side / 2.0));
  s.y = static_cast<int>(std::lround(cy - side / 2.0));
  return s;
}

size_t largest(const std::vector<Box>& boxes) {
  if (boxes.empty()) throw Error(Error::Kind::Usage, "crop: no face boxes");
  size_t best = 0;
  for (size_t i = 1; i < boxes.size(); ++i)
    if (boxes[i].width() * boxes[i].height() > boxes[best].width() * boxes[best].height()) best = i;
  return best;
}

Box median(const std::vector<Box>& boxes) {
  if (boxes.empty()) throw Error(Error::Kind::Usage, "crop: no face boxes");
  std::vector<double> cx, cy, w, h;
  for (const Box& b : boxes) {
    cx.push_back((b.x1 + b.x2) / 2);
    cy.push_back((b.y1 + b.y2) / 2);
    w.push_back(b.width());
    h.push_back(b.height());
  }
  const double mx = median_of(cx), my = median_of(cy), mw = median_of(w), mh = median_of(h);
  return Box{mx - mw / 2, my - mh / 2, mx + mw / 2, my + mh / 2};
}

RgbImage cut(const RgbImage& picture, const Square& sq, Pad pad, const uint8_t colour[3]) {
  if (picture.width <= 0 || picture.height <= 0 || sq.side <= 0)
    throw Error(Error::Kind::Usage, "crop: nothing to cut (picture " + size_text(picture.width, picture.height) +
                                        ", side " + std::to_string(sq.side) + ")");
  const uint8_t black[3] = {0, 0, 0};
  if (colour == nullptr) colour = black;
  RgbImage out;
  out.width = out.height = sq.side;
  out.data.resize(static_cast<size_t>(sq.side) * sq.side * 3);
  for (int y = 0; y < sq.side; ++y)
    for (int x = 0; x < sq.side; ++x) {
      int px = sq.x + x, py = sq.y + y;
      const bool inside = px >= 0 && py >= 0 && px < picture.width && py < picture.height;
      uint8_t* o = out.at(x, y);
      if (!inside && pad == Pad::Colour) {
        std::copy(colour, colour + 3, o);
        continue;
      }
      px = std::clamp(px, 0, picture.width - 1);
      py = std::clamp(py, 0, picture.height - 1);
      std::copy(picture.at(px, py), picture.at(px, py) + 3, o);
    }
  return out;
}

RgbImage paste(const RgbImage& picture, const RgbImage& face, const Square& sq, int feather) {
  if (face.width != sq.side || face.height != sq.side)
    throw Error(Error::Kind::Usage, "paste: the face is " + size_text(face.width, face.height) + ", the square " +
                                        size_text(sq.side, sq.side) + "; resize it to the square first");
  if (feather < 0) throw Error(Error::Kind::Usage, "paste: feather " + std::to_string(feather) + ": expected >= 0");
  RgbImage out = picture;
  const int x0 = std::max(0, sq.x), y0 = std::max(0, sq.y);
  const int x1 = std::min(picture.width, sq.x + sq.side), y1 = std::min(picture.height, sq.y + sq.side);
  for (int py = y0; py < y1; ++py)
    for (int px = x0; px < x1; ++px) {
      // Distance from the pixel's centre to the nearest side of the square.
      const double d = std::min({px + 0.5 - sq.x, sq.x + sq.side - (px + 0.5), py + 0.5 - sq.y,
                                 sq.y + sq.side - (py + 0.5)});
      const double w = feather == 0 ? 1.0 : std::min(1.0, d / feather);
      const uint8_t* f = face.at(px - sq.x, py - sq.y);
      uint8_t* o = out.at(px, py);
      for (int c = 0; c < 3; ++c) o[c] = static_cast<uint8_t>(std::lround(w * f[c] + (1 - w) * o[c]));
    }
  return out;
}

}  // namespace anitalker::crop
