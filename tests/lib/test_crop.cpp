// lib/crop.h: the crop rule and the paste-back, against values computed by
// hand from the rule (not by the code under test).
#include "crop.h"

#include <gmock/gmock.h>

#include <clocale>
#include <cstdlib>
#include <functional>
#include <random>

#include "error.h"
#include "test_util.h"

namespace crop = anitalker::crop;
using anitalker::RgbImage;
using testing::HasSubstr;
using testing::Not;

namespace {

void expect_square(const crop::Square& s, int x, int y, int side) {
  EXPECT_EQ(s.x, x);
  EXPECT_EQ(s.y, y);
  EXPECT_EQ(s.side, side);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const anitalker::Error& e) {
    return e.what();
  }
  return "";
}

RgbImage noise(int w, int h, unsigned seed) {
  RgbImage im;
  im.width = w;
  im.height = h;
  im.data.resize(static_cast<size_t>(w) * h * 3);
  std::mt19937 g(seed);
  for (auto& v : im.data) v = static_cast<uint8_t>(g() & 0xff);
  return im;
}

}  // namespace

TEST(Crop, SquareInTheMiddle) {
  // 100 x 120 box: side 120 * 1.6 = 192; centre (650, 360): corner 650 - 96, 360 - 96.
  expect_square(crop::square_for({600, 300, 700, 420}, 1280, 720), 554, 264, 192);
  // ratio 0: the box's larger side.
  expect_square(crop::square_for({600, 300, 700, 420}, 1280, 720, 0.0), 590, 300, 120);
}

TEST(Crop, SideClampedToTheShorterSide) {
  // 500 x 600 box: 960 > 720, so 720; centre (350, 400): corner -10, 40 (10 columns of padding).
  expect_square(crop::square_for({100, 100, 600, 700}, 1280, 720), -10, 40, 720);
  // A portrait picture: the width is the shorter side.
  expect_square(crop::square_for({50, 300, 350, 600}, 400, 900), 0, 250, 400);
}

TEST(Crop, EdgesAndCornersArePadded) {
  // Top-left corner: 50 x 50 -> 80; centre (25, 25): -15, -15.
  expect_square(crop::square_for({0, 0, 50, 50}, 200, 100), -15, -15, 80);
  // Right edge: centre (975, 125), 80: 935 .. 1015 on a 1000-wide picture.
  expect_square(crop::square_for({950, 100, 1000, 150}, 1000, 300), 935, 85, 80);
  // Bottom-right corner of a portrait picture: centre (290, 590), 32: 274, 574.
  expect_square(crop::square_for({280, 580, 300, 600}, 300, 600), 274, 574, 32);
}

TEST(Crop, Rounding) {
  // 10.5 x 10: 16.8 -> 17; centre (15.25, 15): 6.75 -> 7, 6.5 -> 7 (halves away from zero).
  expect_square(crop::square_for({10, 10, 20.5, 20}, 100, 100), 7, 7, 17);
}

TEST(Crop, BadBoxes) {
  EXPECT_THAT(error_of([] { crop::square_for({-50, -50, -10, -10}, 200, 100); }),
              HasSubstr("is outside the picture (200x100)"));
  EXPECT_THAT(error_of([] { crop::square_for({300, 10, 400, 20}, 200, 100); }), HasSubstr("outside the picture (200x100)"));
  EXPECT_THAT(error_of([] { crop::square_for({10, 10, 10, 20}, 200, 100); }), HasSubstr("is empty"));
  EXPECT_THAT(error_of([] { crop::square_for({10, 10, NAN, 20}, 200, 100); }), HasSubstr("is empty"));
  EXPECT_THAT(error_of([] { crop::square_for({10, 10, 20, 20}, 200, 100, -1); }), HasSubstr("expected a number >= 0"));
  EXPECT_THAT(error_of([] { crop::largest({}); }), HasSubstr("no face boxes"));
  // A box that reaches into the picture but centres far outside it: its
  // square (capped to the shorter side) held none of the picture and was
  // cut as an all-black face; 1e30 overflowed the rounding to a 1x1 square.
  EXPECT_THAT(error_of([] { crop::square_for({0, 0, 5000, 5000}, 256, 256); }),
              HasSubstr("the face box (0, 0)-(5000, 5000) centres at (2500, 2500), so far outside the picture (256x256) "
                        "that its square (side 256) holds none of it"));
  EXPECT_THAT(error_of([] { crop::square_for({0, 0, 1e30, 1e30}, 256, 256); }), HasSubstr("holds none of it"));
  EXPECT_THAT(error_of([] { crop::square_for({-1e30, -1e30, 10, 10}, 256, 256); }), HasSubstr("holds none of it"));
  // Half the face off the picture still gives a square that holds it.
  expect_square(crop::square_for({-20, 50, 40, 110}, 256, 256, 0), -20, 50, 60);
}

TEST(Crop, LargestFaceAndVideoMedian) {
  // Areas 100, 400, 400, 50: the first of the two largest.
  EXPECT_EQ(crop::largest({{0, 0, 10, 10}, {0, 0, 20, 20}, {5, 5, 25, 25}, {0, 0, 5, 10}}), 1u);
  // Centres x 10, 30, 20 -> 20; y 10, 10, 40 -> 10; widths 20, 40, 10 -> 20; heights 20, 20, 60 -> 20.
  const crop::Box m = crop::median({{0, 0, 20, 20}, {10, 0, 50, 20}, {15, 10, 25, 70}});
  EXPECT_DOUBLE_EQ(m.x1, 10);
  EXPECT_DOUBLE_EQ(m.y1, 0);
  EXPECT_DOUBLE_EQ(m.x2, 30);
  EXPECT_DOUBLE_EQ(m.y2, 20);
  // An even count: the mean of the middle two (centres x 10, 30 -> 20; widths 20, 40 -> 30).
  const crop::Box e = crop::median({{0, 0, 20, 20}, {10, 0, 50, 20}});
  EXPECT_DOUBLE_EQ(e.x1, 5);
  EXPECT_DOUBLE_EQ(e.x2, 35);
}

TEST(Crop, CutPadsWithAColourOrTheEdge) {
  const RgbImage p = noise(4, 3, 1);
  const uint8_t grey[3] = {7, 8, 9};
  const RgbImage c = crop::cut(p, {-1, -1, 3}, crop::Pad::Colour, grey);
  ASSERT_EQ(c.width, 3);
  EXPECT_EQ(std::vector<uint8_t>(c.at(0, 0), c.at(0, 0) + 3), std::vector<uint8_t>({7, 8, 9}));
  EXPECT_EQ(std::vector<uint8_t>(c.at(2, 0), c.at(2, 0) + 3), std::vector<uint8_t>({7, 8, 9}));
  EXPECT_EQ(std::vector<uint8_t>(c.at(1, 1), c.at(1, 1) + 3), std::vector<uint8_t>(p.at(0, 0), p.at(0, 0) + 3));
  EXPECT_EQ(std::vector<uint8_t>(c.at(2, 2), c.at(2, 2) + 3), std::vector<uint8_t>(p.at(1, 1), p.at(1, 1) + 3));
  const RgbImage r = crop::cut(p, {2, 1, 3}, crop::Pad::Replicate);
  // Column 4 (past the right edge) repeats column 3; row 3 repeats row 2.
  EXPECT_EQ(std::vector<uint8_t>(r.at(2, 2), r.at(2, 2) + 3), std::vector<uint8_t>(p.at(3, 2), p.at(3, 2) + 3));
  EXPECT_EQ(std::vector<uint8_t>(r.at(2, 0), r.at(2, 0) + 3), std::vector<uint8_t>(p.at(3, 1), p.at(3, 1) + 3));
}

// The identity check: the crop pasted back unchanged gives the photo again,
// exactly outside the square and within 1 level inside (the blend of equal
// values), for squares in the middle, at each edge and each corner, on
// portrait and landscape photos.
TEST(Crop, PasteOfTheCropIsTheIdentity) {
  for (const auto& [w, h] : {std::pair<int, int>{96, 64}, {64, 96}}) {
    const RgbImage p = noise(w, h, 2);
    const int s = 40;
    const std::vector<crop::Square> squares = {
        {(w - s) / 2, (h - s) / 2, s}, {-10, (h - s) / 2, s}, {w - 30, (h - s) / 2, s}, {(w - s) / 2, -10, s},
        {(w - s) / 2, h - 30, s},      {-10, -10, s},          {w - 30, -10, s},         {-10, h - 30, s},
        {w - 30, h - 30, s}};
    for (const crop::Square& sq : squares) {
      SCOPED_TRACE(std::to_string(w) + "x" + std::to_string(h) + " at " + std::to_string(sq.x) + "," +
                   std::to_string(sq.y));
      for (crop::Pad pad : {crop::Pad::Colour, crop::Pad::Replicate}) {
        const RgbImage back = crop::paste(p, crop::cut(p, sq, pad), sq, 8);
        ASSERT_EQ(back.data.size(), p.data.size());
        int worst = 0;
        for (size_t i = 0; i < p.data.size(); ++i) worst = std::max(worst, std::abs(back.data[i] - p.data[i]));
        EXPECT_LE(worst, 1);
      }
    }
  }
}

TEST(Crop, PasteBlendsLinearlyOverTheFeather) {
  RgbImage p;
  p.width = p.height = 20;
  p.data.assign(20 * 20 * 3, 100);
  RgbImage face;
  face.width = face.height = 10;
  face.data.assign(10 * 10 * 3, 200);
  const RgbImage out = crop::paste(p, face, {5, 5, 10}, 4);
  EXPECT_EQ(out.at(4, 10)[0], 100);  // outside the square
  // Pixel (5, 10): its centre is 0.5 from the left side: 0.125 * 200 + 0.875 * 100 = 112.5 -> 113.
  EXPECT_EQ(out.at(5, 10)[0], 113);
  // (6, 10): 1.5 / 4 -> 137.5 -> 138; (8, 10): 3.5 / 4 -> 187.5 -> 188; (9, 10): 4.5 >= 4 -> 200.
  EXPECT_EQ(out.at(6, 10)[0], 138);
  EXPECT_EQ(out.at(8, 10)[0], 188);
  EXPECT_EQ(out.at(9, 10)[0], 200);
  EXPECT_THAT(error_of([&] { crop::paste(p, face, {5, 5, 12}, 4); }), HasSubstr("the face is 10x10, the square 12x12"));
}

TEST(Crop, ParseSpecAndBox) {
  EXPECT_EQ(crop::parse_spec("none").mode, crop::Spec::Mode::None);
  EXPECT_EQ(crop::parse_spec("auto").mode, crop::Spec::Mode::Auto);
  const crop::Spec s = crop::parse_spec("-10,20,300");
  EXPECT_EQ(s.mode, crop::Spec::Mode::Square);
  expect_square(s.square, -10, 20, 300);
  for (const char* bad : {"Auto", "1,2", "1,2,3,4", "1,2,0", "1.5,2,3", "a,b,c", "1,2,3,", ",1,2,3", "1,2,nan"})
    EXPECT_THAT(error_of([&] { crop::parse_spec(bad, "--crop"); }),
                HasSubstr(std::string("--crop: expected auto, none or X,Y,SIDE")))
        << bad;
  const crop::Box b = crop::parse_box("1,2.5,30,40");
  EXPECT_DOUBLE_EQ(b.y1, 2.5);
  EXPECT_DOUBLE_EQ(b.x2, 30);
  for (const char* bad : {"1,2,3", "30,2,1,40", "1,40,30,2", "1,2,inf,4", ""})
    EXPECT_THAT(error_of([&] { crop::parse_box(bad); }), HasSubstr("face-box: expected X1,Y1,X2,Y2")) << bad;
}

// Numbers in a face box or a square are read with '.' as the decimal point
// in any locale: an application that sets a comma-decimal one (Qt and GTK
// applications call setlocale) got "905.5,..." refused (strtod stopped at
// the '.').  The test builds de_DE with localedef (Debian: locales).
TEST(Crop, NumbersInAnyLocale) {
  testutil::TempDir dir;
  ASSERT_EQ(std::system(("localedef -i de_DE -f UTF-8 '" + dir / "de_DE.UTF-8" + "' 2>&1").c_str()), 0)
      << "localedef could not build de_DE (Debian: the locales package)";
  const char* old_path = std::getenv("LOCPATH");
  const std::string keep_path = old_path ? old_path : "";
  ::setenv("LOCPATH", dir.path().c_str(), 1);
  const std::string keep = std::setlocale(LC_NUMERIC, nullptr);
  ASSERT_NE(std::setlocale(LC_NUMERIC, "de_DE.UTF-8"), nullptr);
  const double seen = std::strtod("0.5", nullptr);  // 0: the locale is in force
  crop::Box b;
  crop::Spec sq;
  std::string error;
  try {
    b = crop::parse_box("905.5,265,1085.25,+520");
    sq = crop::parse_spec(" 10,20,300");
  } catch (const std::exception& e) {
    error = e.what();
  }
  std::setlocale(LC_NUMERIC, keep.c_str());
  if (old_path) ::setenv("LOCPATH", keep_path.c_str(), 1); else ::unsetenv("LOCPATH");
  EXPECT_EQ(seen, 0.0) << "de_DE did not take effect";
  ASSERT_EQ(error, "");
  EXPECT_DOUBLE_EQ(b.x1, 905.5);
  EXPECT_DOUBLE_EQ(b.x2, 1085.25);
  EXPECT_DOUBLE_EQ(b.y2, 520);
  expect_square(sq.square, 10, 20, 300);
}

// The settings of the renderer and the CLI into one Spec: values pass
// through, a face box needs auto, errors use the caller's names.
TEST(Crop, MakeSpec) {
  const crop::Spec s = crop::make_spec("auto", "1,2,30,40", 0.25, 2);
  EXPECT_EQ(s.mode, crop::Spec::Mode::Auto);
  EXPECT_TRUE(s.have_box);
  EXPECT_DOUBLE_EQ(s.box.x2, 30);
  EXPECT_DOUBLE_EQ(s.ratio, 0.25);
  EXPECT_EQ(s.face_index, 2);
  EXPECT_FALSE(crop::make_spec("auto", "", 0.6, -1).have_box);
  EXPECT_EQ(crop::make_spec("0,0,64", "", 0.6, -1).mode, crop::Spec::Mode::Square);
  EXPECT_THAT(error_of([&] { crop::make_spec("none", "1,2,30,40", 0.6, -1, "--crop", "--face-box"); }),
              HasSubstr("--face-box is only read with --crop auto"));
  EXPECT_THAT(error_of([&] { crop::make_spec("auto", "1,2", 0.6, -1, "--crop", "--face-box"); }),
              HasSubstr("--face-box: expected X1,Y1,X2,Y2"));
  EXPECT_THAT(error_of([&] { crop::make_spec("middle", "", 0.6, -1); }), HasSubstr("crop: expected auto"));
}

// The detector's output fed in (the released RetinaFace is not here).
TEST(Crop, ChooseFromTheDetectorsFaces) {
  crop::Spec auto_spec = crop::parse_spec("auto");
  // Areas 40x40 = 1600 and 100x120 = 12000: the second; its square as in SquareInTheMiddle.
  const std::vector<crop::Box> faces = {{10, 10, 50, 50}, {600, 300, 700, 420}};
  crop::Choice c = crop::choose(auto_spec, 1280, 720, faces, "photo.jpg");
  EXPECT_TRUE(c.cropped);
  EXPECT_EQ(c.picked, 1);
  expect_square(c.square, 554, 264, 192);
  EXPECT_EQ(crop::describe_faces(c), "2 faces: 0 (10, 10)-(50, 50), 1 (600, 300)-(700, 420) [used]");
  // face-index 0: 40 * 1.6 = 64 around (30, 30): -2, -2.
  auto_spec.face_index = 0;
  c = crop::choose(auto_spec, 1280, 720, faces, "photo.jpg");
  expect_square(c.square, -2, -2, 64);
  auto_spec.face_index = 2;
  EXPECT_THAT(error_of([&] { crop::choose(auto_spec, 1280, 720, faces, "photo.jpg"); }),
              HasSubstr("photo.jpg: face-index 2: 2 face(s) found (0 to 1)"));
  auto_spec.face_index = -1;
  const std::string none = error_of([&] { crop::choose(auto_spec, 1280, 720, {}, "photo.jpg"); });
  EXPECT_THAT(none, HasSubstr("photo.jpg: no face found"));
  // The properties' forms (the elements' Spec), not the options'.
  EXPECT_THAT(none, HasSubstr("(face-box=X1,Y1,X2,Y2), the square (crop=X,Y,SIDE), or use the picture as it is "
                              "(crop=none)"));
  EXPECT_THAT(none, Not(HasSubstr("--")));
  // A box given: the detector's list is not read.
  auto_spec.have_box = true;
  auto_spec.box = {950, 100, 1000, 150};
  expect_square(crop::choose(auto_spec, 1000, 300, {}, "p.png").square, 935, 85, 80);
  auto_spec.box = {1100, 100, 1200, 150};
  EXPECT_THAT(error_of([&] { crop::choose(auto_spec, 1000, 300, {}, "p.png"); }),
              HasSubstr("p.png: crop: the face box (1100, 100)-(1200, 150) is outside the picture (1000x300)"));
  // A square given, and one outside.
  expect_square(crop::choose(crop::parse_spec("-10,20,300"), 400, 300, {}, "p.png").square, -10, 20, 300);
  EXPECT_THAT(error_of([&] { crop::choose(crop::parse_spec("400,0,10"), 400, 300, {}, "p.png"); }),
              HasSubstr("is outside the picture (400x300)"));
  EXPECT_FALSE(crop::choose(crop::parse_spec("none"), 400, 300, {}, "p.png").cropped);
}

TEST(Crop, ColourMatchShiftsTheFaceByTheBandsMeanDifference) {
  RgbImage p;
  p.width = p.height = 20;
  p.data.assign(20 * 20 * 3, 100);
  RgbImage face;
  face.width = face.height = 10;
  face.data.assign(10 * 10 * 3, 130);
  // Band mean of picture - face = -30: the face becomes 100, the blend 100 everywhere.
  const RgbImage out = crop::paste(p, face, {5, 5, 10}, 4, true);
  for (uint8_t v : out.data) ASSERT_EQ(v, 100);
  // Without it, the centre keeps the face's 130.
  EXPECT_EQ(crop::paste(p, face, {5, 5, 10}, 4, false).at(10, 10)[0], 130);
}

TEST(Crop, CanvasKeepsTheSizeOrScalesTheLongerSide) {
  // 1280x720 under 1920: as it is.
  crop::Canvas c = crop::plan_canvas(1280, 720, {554, 264, 192});
  EXPECT_EQ(c.width, 1280);
  EXPECT_EQ(c.height, 720);
  expect_square(c.square, 554, 264, 192);
  // Odd sizes at scale 1: the last column and row dropped.
  c = crop::plan_canvas(1281, 721, {554, 264, 192});
  EXPECT_EQ(c.width, 1280);
  EXPECT_EQ(c.height, 720);
  // 4000x3000 -> 1920 x 1440 (scale 0.48); the square 1000,500,900 -> 480, 240, 432.
  c = crop::plan_canvas(4000, 3000, {1000, 500, 900});
  EXPECT_EQ(c.width, 1920);
  EXPECT_EQ(c.height, 1440);
  EXPECT_DOUBLE_EQ(c.scale, 0.48);
  expect_square(c.square, 480, 240, 432);
  // Portrait 1001x3001 at max 1000: scale 1000/3001; 333.6 -> 334 (even), 1000.
  c = crop::plan_canvas(1001, 3001, {0, 0, 1001}, 1000);
  EXPECT_EQ(c.width, 334);
  EXPECT_EQ(c.height, 1000);
  // An odd max-size is a bound too: 512x512 at 255 -> 254, at 5 -> 4 (they
  // rounded up to 256 and 6).
  for (const auto& [max, side] : {std::pair<int, int>{255, 254}, {101, 100}, {5, 4}, {3, 2}}) {
    c = crop::plan_canvas(512, 512, {0, 0, 512}, max);
    EXPECT_EQ(c.width, side) << max;
    EXPECT_EQ(c.height, side) << max;
  }
  // fit_picture at scale 1 drops, never resamples.
  const RgbImage p = noise(5, 3, 4);
  const RgbImage f = crop::fit_picture(p, crop::plan_canvas(5, 3, {0, 0, 2}));
  ASSERT_EQ(f.width, 4);
  ASSERT_EQ(f.height, 2);
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 4; ++x)
      EXPECT_EQ(std::vector<uint8_t>(f.at(x, y), f.at(x, y) + 3), std::vector<uint8_t>(p.at(x, y), p.at(x, y) + 3));
}
