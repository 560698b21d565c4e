#include "crop.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <opencv2/imgproc.hpp>
#include <sstream>
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
  // The side capped before rounding (a box of 1e30 overflowed lround).
  const long side = std::max(
      1L, std::lround(std::min(std::max(b.width(), b.height()) * (1 + ratio), double(std::min(width, height)))));
  const double x = cx - side / 2.0, y = cy - side / 2.0;
  // A box that reaches into the picture but centres far outside it (one
  // measured on a larger copy of the photo): its square, capped to the
  // picture's shorter side, would hold nothing of the picture (it was cut
  // as an all-black face, found 2026-12-07).
  if (!(x + side >= 1 && y + side >= 1 && x <= width - 1 && y <= height - 1)) {
    char centre[96];
    std::snprintf(centre, sizeof centre, "(%.0f, %.0f)", cx, cy);
    throw Error(Error::Kind::Usage, "crop: the face box " + box_text(b) + " centres at " + centre + ", so far outside the picture (" +
                                        size_text(width, height) + ") that its square (side " + std::to_string(side) +
                                        ") holds none of it: was the box measured on another size of the photo?");
  }
  Square s;
  s.side = static_cast<int>(side);
  s.x = static_cast<int>(std::lround(x));
  s.y = static_cast<int>(std::lround(y));
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

namespace {

// The numbers of "A,B,C..." (each as C writes it, '.' for the decimal
// point, whatever the process's locale: an application that sets a
// comma-decimal one, as Qt and GTK applications do, would otherwise have
// "905.5" refused; blanks and a '+' before a number are taken, as strtod
// takes them; empty parts, trailing text and non-finite values are refused).
bool numbers_of(const std::string& text, std::vector<double>* out) {
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, ',');) {
    const char* p = part.c_str();
    const char* const end = p + part.size();
    while (p < end && std::isspace(static_cast<unsigned char>(*p))) ++p;
    if (p < end && *p == '+') ++p;
    double x = 0;
    const std::from_chars_result r = std::from_chars(p, end, x);
    if (p == end || r.ec != std::errc() || r.ptr != end || !std::isfinite(x)) return false;
    out->push_back(x);
  }
  return !text.empty() && text.back() != ',';
}

}  // namespace

Spec parse_spec(const std::string& text, const std::string& what) {
  Spec s;
  if (text == "none" || text.empty()) return s;
  if (text == "auto") {
    s.mode = Spec::Mode::Auto;
    return s;
  }
  std::vector<double> n;
  const std::string expected = what + ": expected auto, none or X,Y,SIDE (the square in the picture's pixels), got '" +
                               text + "'";
  if (!numbers_of(text, &n) || n.size() != 3) throw Error(Error::Kind::Usage, expected);
  for (double v : n)
    if (v != std::floor(v) || std::fabs(v) > 1e6)
      throw Error(Error::Kind::Usage, expected + " (whole numbers from -1000000 to 1000000)");
  if (n[2] < 1) throw Error(Error::Kind::Usage, expected + " (SIDE >= 1)");
  s.mode = Spec::Mode::Square;
  s.square = {static_cast<int>(n[0]), static_cast<int>(n[1]), static_cast<int>(n[2])};
  return s;
}

Spec make_spec(const std::string& crop, const std::string& face_box, double ratio, int face_index,
               const std::string& crop_name, const std::string& box_name) {
  Spec spec = parse_spec(crop, crop_name.empty() ? "crop" : crop_name);
  spec.crop_name = crop_name;
  spec.box_name = box_name;
  spec.ratio = ratio;
  spec.face_index = face_index;
  if (!face_box.empty()) {
    if (spec.mode != Spec::Mode::Auto)
      throw Error(Error::Kind::Usage, box_name + " is only read with " + crop_name + " auto (" + crop_name + " is \"" +
                                          crop + "\")");
    spec.have_box = true;
    spec.box = parse_box(face_box, box_name);
  }
  return spec;
}

Box parse_box(const std::string& text, const std::string& what) {
  std::vector<double> n;
  if (!numbers_of(text, &n) || n.size() != 4 || !(n[2] > n[0]) || !(n[3] > n[1]))
    throw Error(Error::Kind::Usage,
                what + ": expected X1,Y1,X2,Y2 with X2 > X1 and Y2 > Y1 (the face box in the picture's pixels), got '" +
                    text + "'");
  return {n[0], n[1], n[2], n[3]};
}

Choice choose(const Spec& spec, int width, int height, const std::vector<Box>& faces, const std::string& name) {
  Choice c;
  const std::string where = name.empty() ? "" : name + ": ";
  try {
    switch (spec.mode) {
      case Spec::Mode::None:
        return c;
      case Spec::Mode::Square: {
        const Square& q = spec.square;
        if (q.side < 1 || q.x + q.side <= 0 || q.y + q.side <= 0 || q.x >= width || q.y >= height ||
            q.side > 2 * std::max(width, height))
          throw Error(Error::Kind::Usage,
                      "crop: the square " + std::to_string(q.x) + "," + std::to_string(q.y) + "," +
                          std::to_string(q.side) + " is outside the picture (" + size_text(width, height) +
                          ") or larger than twice its longer side");
        c.cropped = true;
        c.square = q;
        return c;
      }
      case Spec::Mode::Auto:
        break;
    }
    if (spec.have_box) {
      c.cropped = true;
      c.square = square_for(spec.box, width, height, spec.ratio);
      return c;
    }
    c.faces = faces;
    // A setting as the caller's user writes it: --name value (options) or
    // name=value (properties).
    const bool options = spec.box_name.compare(0, 2, "--") == 0;
    auto setting = [options](const std::string& name, const std::string& value) {
      return options ? name + " " + value : name + "=" + value;
    };
    if (faces.empty()) {
      std::string hint = "give the face's box (" + setting(spec.box_name, "X1,Y1,X2,Y2") + ")";
      if (!spec.crop_name.empty())
        hint += ", the square (" + setting(spec.crop_name, "X,Y,SIDE") + "), or use the picture as it is (" +
                setting(spec.crop_name, "none") + ")";
      throw Error(Error::Kind::Format, "no face found (RetinaFace, threshold 0.97); " + hint);
    }
    if (spec.face_index >= 0 && static_cast<size_t>(spec.face_index) >= faces.size()) {
      throw Error(Error::Kind::Usage, std::string(options ? "--face-index " : "face-index ") + std::to_string(spec.face_index) + ": " +
                                          std::to_string(faces.size()) + " face(s) found (0 to " +
                                          std::to_string(faces.size() - 1) + ")");
    }
    c.picked = spec.face_index >= 0 ? spec.face_index : static_cast<int>(largest(faces));
    c.cropped = true;
    c.square = square_for(faces[c.picked], width, height, spec.ratio);
    return c;
  } catch (const Error& e) {
    throw Error(e.kind(), where + e.what());
  }
}

std::string describe_faces(const Choice& c) {
  std::string out = std::to_string(c.faces.size()) + " faces:";
  for (size_t i = 0; i < c.faces.size(); ++i) {
    if (!listed(i, c)) {
      if (i == kFacesListed) out += ", ...";
      continue;
    }
    const Box& b = c.faces[i];
    char t[200];
    std::snprintf(t, sizeof t, "%s %zu (%.0f, %.0f)-(%.0f, %.0f)%s", i ? "," : "", i, b.x1, b.y1, b.x2, b.y2,
                  static_cast<int>(i) == c.picked ? " [used]" : "");
    out += t;
  }
  return out;
}

bool listed(size_t i, const Choice& c) { return i < kFacesListed || static_cast<int>(i) == c.picked; }

RgbImage paste(const RgbImage& picture, const RgbImage& face, const Square& sq, int feather, bool colour_match) {
  if (face.width != sq.side || face.height != sq.side)
    throw Error(Error::Kind::Usage, "paste: the face is " + size_text(face.width, face.height) + ", the square " +
                                        size_text(sq.side, sq.side) + "; resize it to the square first");
  if (feather < 0) throw Error(Error::Kind::Usage, "paste: feather " + std::to_string(feather) + ": expected >= 0");
  RgbImage out = picture;
  const int x0 = std::max(0, sq.x), y0 = std::max(0, sq.y);
  const int x1 = std::min(picture.width, sq.x + sq.side), y1 = std::min(picture.height, sq.y + sq.side);
  // Distance from a pixel's centre to the nearest side of the square, and
  // the face's weight there.
  auto weight = [&](int px, int py) {
    const double d = std::min({px + 0.5 - sq.x, sq.x + sq.side - (px + 0.5), py + 0.5 - sq.y,
                               sq.y + sq.side - (py + 0.5)});
    return feather == 0 ? 1.0 : std::min(1.0, d / feather);
  };
  int shift[3] = {0, 0, 0};
  if (colour_match && feather > 0) {
    double sum[3] = {0, 0, 0};
    long count = 0;
    for (int py = y0; py < y1; ++py)
      for (int px = x0; px < x1; ++px) {
        if (weight(px, py) >= 1.0) continue;
        const uint8_t* f = face.at(px - sq.x, py - sq.y);
        const uint8_t* p = picture.at(px, py);
        for (int c = 0; c < 3; ++c) sum[c] += static_cast<double>(p[c]) - f[c];
        ++count;
      }
    if (count > 0)
      for (int c = 0; c < 3; ++c) shift[c] = static_cast<int>(std::lround(sum[c] / count));
  }
  for (int py = y0; py < y1; ++py)
    for (int px = x0; px < x1; ++px) {
      const double w = weight(px, py);
      const uint8_t* f = face.at(px - sq.x, py - sq.y);
      uint8_t* o = out.at(px, py);
      for (int c = 0; c < 3; ++c) {
        const int fc = std::clamp(f[c] + shift[c], 0, 255);
        o[c] = static_cast<uint8_t>(std::lround(w * fc + (1 - w) * o[c]));
      }
    }
  return out;
}

Canvas plan_canvas(int width, int height, const Square& sq, int max_size) {
  if (width < 2 || height < 2) throw Error(Error::Kind::Usage, "paste: a picture of " + size_text(width, height) + " is too small");
  if (max_size < 2) throw Error(Error::Kind::Usage, "paste: max-size " + std::to_string(max_size) + ": expected >= 2");
  Canvas c;
  const int longer = std::max(width, height);
  if (longer <= max_size) {
    c.width = width - width % 2;
    c.height = height - height % 2;
    c.scale = 1;
    c.square = sq;
    return c;
  }
  c.scale = static_cast<double>(max_size) / longer;
  // Even sides (the video formats' chroma), never past max_size (an odd
  // max-size 255 gave 256, found 2026-12-07).
  const int top = std::max(2, max_size - max_size % 2);
  auto even = [top](double v) { return std::min(top, std::max(2, static_cast<int>(std::lround(v / 2)) * 2)); };
  c.width = even(width * c.scale);
  c.height = even(height * c.scale);
  c.square.x = static_cast<int>(std::lround(sq.x * c.scale));
  c.square.y = static_cast<int>(std::lround(sq.y * c.scale));
  c.square.side = std::max(1, static_cast<int>(std::lround(sq.side * c.scale)));
  return c;
}

namespace {

cv::Mat view(const RgbImage& im) {
  return cv::Mat(im.height, im.width, CV_8UC3, const_cast<uint8_t*>(im.data.data()));
}

}  // namespace

RgbImage fit_picture(const RgbImage& picture, const Canvas& canvas) {
  RgbImage out;
  out.width = canvas.width;
  out.height = canvas.height;
  out.data.resize(static_cast<size_t>(out.width) * out.height * 3);
  if (canvas.width <= picture.width && canvas.height <= picture.height && canvas.scale == 1) {
    for (int y = 0; y < out.height; ++y) std::copy(picture.at(0, y), picture.at(0, y) + out.width * 3, out.at(0, y));
    return out;
  }
  cv::Mat dst = view(out);
  cv::resize(view(picture), dst, cv::Size(out.width, out.height), 0, 0, cv::INTER_AREA);
  return out;
}

RgbImage resize_square(const RgbImage& face, int side) {
  if (face.width == side && face.height == side) return face;
  RgbImage out;
  out.width = out.height = side;
  out.data.resize(static_cast<size_t>(side) * side * 3);
  cv::Mat dst = view(out);
  cv::resize(view(face), dst, cv::Size(side, side), 0, 0, side < face.width ? cv::INTER_AREA : cv::INTER_CUBIC);
  return out;
}

}  // namespace anitalker::crop
