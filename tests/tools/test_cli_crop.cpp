// `anitalker crop`: the square cut by the authors' rule around a given box or
// the detector's largest face, its box in JSON, and the errors (no face,
// several faces and --face-index, a box outside the photo).  The expected
// squares are computed by hand in the comments (lib/crop.h).
#include <gmock/gmock.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "../lib/test_util.h"
#include "../narrow_retinaface.h"

using testing::HasSubstr;
using testing::Not;
using testutil::data;

namespace {

std::string q(const std::string& s) { return "'" + s + "'"; }
bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}
nlohmann::json read_json(const std::string& p) {
  std::ifstream f(p);
  return nlohmann::json::parse(f);
}

// `anitalker crop` of a uniform `width` x `height` photo (DIR/p.png) with
// the narrow two-faces detector (DIR/two.pth), into DIR/a.png and a.json.
testutil::CliResult crop_uniform(const testutil::TempDir& dir, int width, int height) {
  const std::string two = dir / "two.pth";
  testutil::write_narrow_retinaface(data("face-sr/retinaface_resnet50_keys.txt"), two, true);
  EXPECT_TRUE(cv::imwrite(dir / "p.png", cv::Mat(height, width, CV_8UC3, cv::Scalar(90, 120, 150))));
  return testutil::run_cli("crop --portrait " + q(dir / "p.png") + " --detector " + q(two) + " --out " +
                           q(dir / "a.png") + " --box-out " + q(dir / "a.json") + " 2>&1");
}

}  // namespace

TEST(CropCli, GivenBox) {
  testutil::TempDir dir;
  const std::string photo = data("renderer/monalisa.jpg");
  const cv::Mat img = cv::imread(photo, cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
  ASSERT_FALSE(img.empty());
  // Box 40 x 50 at (100, 80): side 50 * 1.6 = 80; centre (120, 105): corner (80, 65).
  testutil::CliResult r = testutil::run_cli("crop --portrait " + q(photo) + " --face-box 100,80,140,130 --out " +
                                            q(dir / "c.png") + " --box-out " + q(dir / "c.json") + " 2>&1");
  ASSERT_EQ(r.status, 0) << r.out;
  const nlohmann::json j = read_json(dir / "c.json");
  EXPECT_EQ(j["x"], 80);
  EXPECT_EQ(j["y"], 65);
  EXPECT_EQ(j["side"], 80);
  EXPECT_EQ(j["picture"][0], img.cols);
  const cv::Mat c = cv::imread(dir / "c.png", cv::IMREAD_COLOR);
  ASSERT_EQ(c.cols, 80);
  ASSERT_EQ(c.rows, 80);
  cv::Mat d;
  cv::absdiff(c, img(cv::Rect(80, 65, 80, 80)), d);
  EXPECT_EQ(cv::countNonZero(d.reshape(1)), 0) << "the square is not the photo's pixels";
  // Outside the photo: refused, naming its size.
  r = testutil::run_cli("crop --portrait " + q(photo) + " --box -90,-90,-10,-10 --out " + q(dir / "o.png") + " 2>&1");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("outside the picture (" + std::to_string(img.cols) + "x" + std::to_string(img.rows) + ")"));
  EXPECT_FALSE(exists(dir / "o.png"));
  // The output may not be the photo.
  r = testutil::run_cli("crop --portrait " + q(photo) + " --box 100,80,140,130 --out " + q(photo) + " 2>&1");
  EXPECT_EQ(r.status, 2) << r.out;
  // Both a box and a detector: "not both" (it said "give one or the other",
  // as if neither were given).
  r = testutil::run_cli("crop --portrait " + q(photo) + " --box 100,80,140,130 --detector x.pth --out " +
                        q(dir / "b.png") + " 2>&1");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("--detector and --face-box: give one, not both"));
}

// A phone's photo, stored sideways with EXIF orientation 6: the box and the
// square are in the photo as shown (upright), as a viewer shows it and as
// the authors' crop script (cv2.imread) reads it; before, they were in the
// stored pixels, and the square came out lying on its side.
TEST(CropCli, PhotoWithExifOrientation) {
  testutil::TempDir dir;
  const cv::Mat upright = cv::imread(data("renderer/monalisa.jpg"), cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
  cv::Mat stored;
  cv::rotate(upright, stored, cv::ROTATE_90_COUNTERCLOCKWISE);
  std::vector<uchar> jpg;
  ASSERT_TRUE(cv::imencode(".jpg", stored, jpg));
  const std::string photo = dir / "phone.jpg";
  testutil::spit(photo, testutil::with_exif_orientation(std::string(jpg.begin(), jpg.end()), 6));
  const cv::Mat shown = cv::imread(photo, cv::IMREAD_COLOR);  // OpenCV applies the tag
  ASSERT_EQ(shown.cols, upright.cols);
  ASSERT_EQ(shown.rows, upright.rows);
  testutil::CliResult r = testutil::run_cli("crop --portrait " + q(photo) + " --face-box 100,80,140,130 --out " +
                                            q(dir / "c.png") + " --box-out " + q(dir / "c.json") + " 2>&1");
  ASSERT_EQ(r.status, 0) << r.out;
  const nlohmann::json j = read_json(dir / "c.json");
  EXPECT_EQ(j["picture"][0], upright.cols);
  EXPECT_EQ(j["picture"][1], upright.rows);
  const cv::Mat c = cv::imread(dir / "c.png", cv::IMREAD_COLOR);
  ASSERT_EQ(c.cols, 80);
  cv::Mat d;
  cv::absdiff(c, shown(cv::Rect(80, 65, 80, 80)), d);
  EXPECT_EQ(cv::countNonZero(d.reshape(1)), 0) << "the square is not the upright photo's pixels";
  // Used whole (crop=none, the reference's way) it stays as stored, with a
  // note that says how it is shown and what takes it so.
  ASSERT_EQ(::mkdir((dir / "f").c_str(), 0755), 0);
  r = testutil::run_cli("generate --portrait " + q(photo) + " --audio " + q(data("audio/speech_2s_16k.wav")) +
                        " --models-dir " + q(data("chain")) + " --steps 5 --out " + q(dir / "f/%03d.png") + " 2>&1");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("note: \"" + photo + "\" is shown turned 90 degrees clockwise (its EXIF orientation, 6); "
                               "crop=none uses it as stored"));
}

TEST(CropCli, DetectedFaces) {
  testutil::TempDir dir;
  const std::string two = dir / "two.pth", none = dir / "none.pth";
  testutil::write_narrow_retinaface(data("face-sr/retinaface_resnet50_keys.txt"), two, true);
  testutil::write_narrow_retinaface(data("face-sr/retinaface_resnet50_keys.txt"), none, false);
  cv::Mat photo(32, 64, CV_8UC3, cv::Scalar(90, 120, 150));
  ASSERT_TRUE(cv::imwrite(dir / "p.png", photo));
  // Two 16-px faces centred at (48, 16) and (16, 16), in the detector's order
  // (equal scores): side 16 * 1.6 = 25.6 -> 26; corners (48 - 13, 16 - 13) =
  // (35, 3) and (3, 3).  Equal areas: the first is "the largest".
  testutil::CliResult r = testutil::run_cli("crop --portrait " + q(dir / "p.png") + " --detector " + q(two) +
                                            " --out " + q(dir / "a.png") + " --box-out " + q(dir / "a.json") + " 2>&1");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("2 faces found; using 0 (the largest"));
  EXPECT_THAT(r.out, HasSubstr("0: (40, 8)-(56, 24)"));
  EXPECT_THAT(r.out, HasSubstr("1: (8, 8)-(24, 24)"));
  nlohmann::json j = read_json(dir / "a.json");
  EXPECT_EQ(j["x"], 35);
  EXPECT_EQ(j["y"], 3);
  EXPECT_EQ(j["side"], 26);
  r = testutil::run_cli("crop --portrait " + q(dir / "p.png") + " --detector " + q(two) + " --face-index 1 --out " +
                        q(dir / "b.png") + " --box-out " + q(dir / "b.json") + " 2>&1");
  ASSERT_EQ(r.status, 0) << r.out;
  j = read_json(dir / "b.json");
  EXPECT_EQ(j["x"], 3);
  EXPECT_EQ(j["y"], 3);
  r = testutil::run_cli("crop --portrait " + q(dir / "p.png") + " --detector " + q(two) + " --face-index 2 --out " +
                        q(dir / "x.png") + " 2>&1");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("2 face(s) found (0 to 1)"));
  // No face: an error naming the photo and the way out.
  r = testutil::run_cli("crop --portrait " + q(dir / "p.png") + " --detector " + q(none) + " --out " +
                        q(dir / "n.png") + " 2>&1");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("p.png: no face found"));
  // In the options this command has (no --crop; not the properties' forms).
  EXPECT_THAT(r.out, HasSubstr("give the face's box (--face-box X1,Y1,X2,Y2)"));
  EXPECT_THAT(r.out, Not(HasSubstr("crop=")));
  EXPECT_THAT(r.out, Not(HasSubstr("--crop")));
  EXPECT_FALSE(exists(dir / "n.png"));
}

// A photo larger than 1920 pixels on its longer side is searched on a copy
// scaled down to 1920, the boxes given in the photo's pixels: here a
// 3840x1920 photo, searched at 1920x960, where the narrow detector finds a
// 16-px face per 32x32 cell (1800 faces), 32 px in the photo.  (Before, the
// detector ran on the whole photo: 7200 faces of 16 px here; a 12 Mpx
// photo took 4.6 GB at full size, 100 Mpx more than the machine has.)
TEST(CropCli, LargePhotoSearchedScaledDown) {
  testutil::TempDir dir;
  testutil::CliResult r = crop_uniform(dir, 3840, 1920);
  ASSERT_EQ(r.status, 0) << r.out.substr(0, 2000);
  EXPECT_THAT(r.out, HasSubstr("1800 faces found"));
  // The last cell first (equal scores): centred at (1904, 944) at 1920x960.
  EXPECT_THAT(r.out, HasSubstr("0: (3792, 1872)-(3824, 1904)"));
  // The list shows the first 20 (and the one used), not 1800 lines.
  EXPECT_THAT(r.out, HasSubstr("  19: "));
  EXPECT_THAT(r.out, HasSubstr("  ...\n"));
  EXPECT_THAT(r.out, Not(HasSubstr("  20: ")));
  const nlohmann::json j = read_json(dir / "a.json");
  EXPECT_EQ(j["side"], 51);  // 32 * 1.6 = 51.2
}

// A detection wholly off the picture is no face of it.  The narrow detector
// answers a 36x32 photo with the same two boxes as the 64x32 one above:
// (40, 8)-(56, 24) lies past its right edge, (8, 8)-(24, 24) is in it.
// That one is used (the square by hand as above: (3, 3), side 26), where
// the box off the picture, "the largest" by order, used to stop the crop
// ("outside the picture").  On a 2x2 photo nothing is left: no face found.
TEST(CropCli, DetectionsOffThePictureAreNotFaces) {
  testutil::TempDir dir;
  testutil::CliResult r = crop_uniform(dir, 36, 32);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, testing::Not(HasSubstr("faces found")));
  const nlohmann::json j = read_json(dir / "a.json");
  EXPECT_EQ(j["box"][0], 8.0);
  EXPECT_EQ(j["box"][2], 24.0);
  EXPECT_EQ(j["x"], 3);
  EXPECT_EQ(j["y"], 3);
  EXPECT_EQ(j["side"], 26);
  ASSERT_TRUE(cv::imwrite(dir / "t.png", cv::Mat(2, 2, CV_8UC3, cv::Scalar(90, 120, 150))));
  r = testutil::run_cli("crop --portrait " + q(dir / "t.png") + " --detector " + q(dir / "two.pth") + " --out " +
                        q(dir / "t2.png") + " 2>&1");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("t.png: no face found"));
  EXPECT_FALSE(exists(dir / "t2.png"));
}

// The same detectors inside the chain: `generate --crop auto` finds the
// RetinaFace file in the models folder (here the tiny chain models and the
// narrow detector), cuts the largest face's square, notes the others, and
// pastes back into the 64x32 photo; no face stops the run with the photo
// named and the ways out, leaving no file.
TEST(CropCli, GenerateWithTheDetector) {
  testutil::TempDir dir;
  const std::string models = dir / "models";
  ASSERT_EQ(::mkdir(models.c_str(), 0755), 0);
  for (const char* f : {"stage1.ckpt", "stage2_audio_only_hubert.ckpt", "chinese-hubert-large"})
    ASSERT_EQ(::symlink(data(std::string("chain/") + f).c_str(), (models + "/" + f).c_str()), 0);
  const std::string detector = models + "/detection_Resnet50_Final.pth";
  testutil::write_narrow_retinaface(data("face-sr/retinaface_resnet50_keys.txt"), detector, true);
  cv::Mat photo(32, 64, CV_8UC3, cv::Scalar(90, 120, 150));
  ASSERT_TRUE(cv::imwrite(dir / "p.png", photo));
  const std::string base = "generate --portrait " + q(dir / "p.png") + " --audio " +
                           q(data("audio/speech_2s_16k.wav")) + " --models-dir " + q(models) + " --steps 5 ";
  testutil::CliResult r = testutil::run_cli(base + "--crop auto --paste-back --feather 2 --out " +
                                            q(dir / "f/%03d.png") + " 2>&1");
  ASSERT_NE(r.status, 0) << "a missing frames folder was accepted";
  ASSERT_EQ(::mkdir((dir / "f").c_str(), 0755), 0);
  r = testutil::run_cli(base + "--crop auto --paste-back --feather 2 --out " + q(dir / "f/%03d.png") + " 2>&1");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("note: Several faces in"));
  EXPECT_THAT(r.out, HasSubstr("2 faces: 0 (40, 8)-(56, 24) [used], 1 (8, 8)-(24, 24)"));
  // The frames have the photo's size; outside the square (35, 3, 26) they
  // are the photo, exactly (PNG, no codec).
  const cv::Mat f = cv::imread(dir / "f/001.png", cv::IMREAD_COLOR);
  ASSERT_EQ(f.cols, 64);
  ASSERT_EQ(f.rows, 32);
  cv::Mat diff;
  cv::absdiff(f, photo, diff);
  diff(cv::Rect(35, 3, 26, 26)).setTo(0);
  EXPECT_EQ(cv::countNonZero(diff.reshape(1)), 0) << "pixels outside the square changed";
  // A video portrait: the box is the median of the detections of every 25th
  // frame (75 frames: 0, 25, 50), the authors' rule for a video.
  // A clip of the picture `png` (3 s at 25 fps), and generate on it: the
  // median detection the run reports and the first frame's size.
  auto clip_of = [&](const std::string& png, const std::string& mp4) {
    return std::system(("ffmpeg -loglevel error -y -loop 1 -i " + q(png) + " -t 3 -r 25 -c:v libx264 -pix_fmt yuv420p " +
                        q(mp4)).c_str()) == 0;
  };
  auto generate_from = [&](const std::string& mp4, const std::string& frames) {
    EXPECT_EQ(::mkdir(frames.c_str(), 0755), 0);
    const testutil::CliResult run = testutil::run_cli(base.substr(0, base.find("--portrait")) + "--portrait " + q(mp4) +
                                                      base.substr(base.find(" --audio")) +
                                                      "--crop auto --paste-back --feather 2 --out " +
                                                      q(frames + "/%03d.png") + " 2>&1");
    EXPECT_EQ(run.status, 0) << run.out;
    EXPECT_THAT(run.out, HasSubstr("the median of 3 detections (every 25th of 75 frames): 40.00,8.00,56.00,24.00"));
    const cv::Mat first = cv::imread(frames + "/001.png", cv::IMREAD_COLOR);
    return cv::Size(first.cols, first.rows);
  };
  ASSERT_TRUE(clip_of(dir / "p.png", dir / "clip.mp4"));
  EXPECT_EQ(generate_from(dir / "clip.mp4", dir / "g"), cv::Size(64, 32));
  // A phone's video: the same photo stored sideways (32x64) with a rotation
  // of 90 degrees in the track header (the tkhd matrix, as phones write
  // it): taken upright, as players show it, so the same detections and a
  // 64x32 video (before, the frames stayed sideways: 32x64).
  cv::Mat sideways;
  cv::rotate(photo, sideways, cv::ROTATE_90_COUNTERCLOCKWISE);
  ASSERT_TRUE(cv::imwrite(dir / "s.png", sideways));
  ASSERT_TRUE(clip_of(dir / "s.png", dir / "phone.mp4"));
  {
    std::string mp4 = testutil::slurp(dir / "phone.mp4");
    const size_t tkhd = mp4.find("tkhd");
    ASSERT_NE(tkhd, std::string::npos);
    // The matrix at 44 bytes past the box's name (version 0): a b u c d v x y w
    // in 16.16 (2.30 for u v w), big-endian: a = 0, b = 1, c = -1, d = 0.
    const uint32_t m[9] = {0, 0x00010000, 0, 0xFFFF0000u, 0, 0, 0, 0, 0x40000000};
    for (int i = 0; i < 9; ++i)
      for (int k = 0; k < 4; ++k) mp4[tkhd + 44 + 4 * i + k] = static_cast<char>(m[i] >> (24 - 8 * k));
    testutil::spit(dir / "phone.mp4", mp4);
  }
  EXPECT_EQ(generate_from(dir / "phone.mp4", dir / "h"), cv::Size(64, 32));
  // No face: the run stops before any output.
  testutil::write_narrow_retinaface(data("face-sr/retinaface_resnet50_keys.txt"), detector, false);
  r = testutil::run_cli(base + "--crop auto --paste-back --out " + q(dir / "n.mp4") + " 2>&1");
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("p.png: no face found"));
  EXPECT_THAT(r.out, HasSubstr("(--face-box X1,Y1,X2,Y2), the square (--crop X,Y,SIDE), or use the picture as it is "
                               "(--crop none)"));
  EXPECT_THAT(r.out, Not(HasSubstr("crop=")));
  EXPECT_FALSE(exists(dir / "n.mp4"));
  // A long video without a face (60 s): the search stops after 50 sampled
  // frames (1250 frames) instead of decoding it to the end (60 sampled
  // before 2026-12-07; an hour's video, 3600).
  ASSERT_EQ(std::system(("ffmpeg -loglevel error -y -loop 1 -i " + q(dir / "p.png") +
                         " -t 60 -r 25 -c:v libx264 -preset ultrafast -pix_fmt yuv420p " + q(dir / "long.mp4"))
                            .c_str()),
            0);
  r = testutil::run_cli(base.substr(0, base.find("--portrait")) + "--portrait " + q(dir / "long.mp4") +
                        base.substr(base.find(" --audio")) + "--crop auto --out " + q(dir / "l.mp4") + " 2>&1");
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("long.mp4: no face found in the first 50 frames (every 25th, where the search stops;"));
  EXPECT_FALSE(exists(dir / "l.mp4"));
}
