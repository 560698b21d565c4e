// `anitalker sr`: the CLI reproduces the face-sr fixtures (both final frames
// from the fixture's landmarks, the raw GFPGAN window, aligned mode) with the
// tolerances of tests/data/face-sr/README.md, writes the detector's rows, and
// fails cleanly (message, exit status, no output file).
#include <gmock/gmock.h>
#include <sys/stat.h>

#include <cmath>
#include <fstream>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <sstream>

#include "../lib/test_util.h"
#include "../narrow_retinaface.h"
#include "checkpoint_writer.h"
#include "device.h"
#include "npy.h"

using testing::HasSubstr;
using testutil::data;

namespace {

bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

std::string q(const std::string& s) { return "'" + s + "'"; }

std::string model() { return "--model " + q(data("face-sr/gfpgan_tiny.pth")); }

struct ByteDiff {
  double max = 0, exact = 0, within1 = 0;
};

ByteDiff compare(const std::string& got_path, const std::string& want_name) {
  const cv::Mat got = cv::imread(got_path, cv::IMREAD_COLOR), want = cv::imread(data("face-sr/" + want_name));
  ByteDiff r;
  EXPECT_EQ(got.size(), want.size()) << got_path;
  if (got.size() != want.size()) return {255, 0, 0};
  cv::Mat d;
  cv::absdiff(got, want, d);
  d = d.reshape(1);
  cv::minMaxLoc(d, nullptr, &r.max);
  const double n = static_cast<double>(d.total());
  r.exact = 1 - cv::countNonZero(d) / n;
  r.within1 = 1 - cv::countNonZero(d > 1) / n;
  return r;
}

// The two-face narrow RetinaFace (tests/narrow_retinaface.h).
void write_two_face_detector(const std::string& path) {
  testutil::write_narrow_retinaface(data("face-sr/retinaface_resnet50_keys.txt"), path, true);
}

}  // namespace

// Both final frames of the fixture from its landmarks, and the raw window.
TEST(SrCli, WholeFrameAndRawMatchTheReference) {
  testutil::TempDir dir;
  for (bool parse : {true, false}) {
    const std::string out = dir / (parse ? "parse.png" : "noparse.png");
    const std::string raw = dir / "raw.npy";
    testutil::CliResult r =
        testutil::run_cli("sr " + model() + (parse ? " --parser " + q(data("face-sr/parsenet_tiny.pth")) : "") +
                          " --landmarks " + q(data("face-sr/landmarks5.npy")) + " --in " +
                          q(data("face-sr/frame_256_bgr.png")) + " --out " + q(out) + " --raw " + q(raw));
    ASSERT_EQ(r.status, 0) << r.out;
    if (!parse) {
      EXPECT_THAT(r.out, HasSubstr("soft mask"));
    }
    const ByteDiff d = compare(out, parse ? "pipeline_out_512_bgr_parse.png" : "pipeline_out_512_bgr_noparse.png");
    std::printf("sr %s: max %g levels, %.4f%% within 1 (tolerance 2, 99.5%%)\n", parse ? "parse" : "no parse", d.max,
                100 * d.within1);
    EXPECT_LE(d.max, 2);
    EXPECT_GE(d.within1, 0.995);

    // The raw output (1,3,512,512) against the stored window [128:384, 128:384].
    const anitalker::TensorData got = anitalker::read_npy(raw);
    ASSERT_EQ(got.dtype, anitalker::DType::Float32);
    ASSERT_EQ(got.shape, (std::vector<int64_t>{1, 3, 512, 512}));
    const anitalker::TensorData want = anitalker::read_npy(data("face-sr/gfpgan_raw_output_rgb_center256.npy"));
    ASSERT_EQ(want.shape, (std::vector<int64_t>{1, 3, 256, 256}));
    const std::vector<double> g = got.to_doubles(), w = want.to_doubles();
    double mx = 0, sum = 0;
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 256; ++y)
        for (int x = 0; x < 256; ++x) {
          const double e = std::fabs(g[(c * 512 + y + 128) * 512 + x + 128] - w[(c * 256 + y) * 256 + x]);
          mx = std::max(mx, e);
          sum += e;
        }
    const double mean = sum / w.size();
    std::printf("sr --raw window: max abs %.3g, mean abs %.3g (tolerance 1e-3, 1e-4)\n", mx, mean);
    EXPECT_LE(mx, 1e-3);
    EXPECT_LE(mean, 1e-4);
  }
}

TEST(SrCli, AlignedRestoresTheCrop) {
  testutil::TempDir dir;
  testutil::CliResult r = testutil::run_cli("sr " + model() + " --aligned --in " +
                                            q(data("face-sr/aligned_crop_512_bgr.png")) + " --out " + q(dir / "a.png"));
  ASSERT_EQ(r.status, 0) << r.out;
  const ByteDiff d = compare(dir / "a.png", "gfpgan_restored_512_bgr.png");
  std::printf("sr --aligned: max %g levels, %.4f%% exact (tolerance 1, 99.9%%)\n", d.max, 100 * d.exact);
  EXPECT_LE(d.max, 1);
  EXPECT_GE(d.exact, 0.999);
}

// --precision: bf16 (a CPU with AVX512_BF16) restores the crop near the
// reference (GFPGAN's convolutions in bfloat16: not exact, bounds measured on
// this fixture); fp16 on the CPU is refused, writing nothing.
TEST(SrCli, Precision) {
  testutil::TempDir dir;
  const std::string args = "sr " + model() + " --aligned --in " + q(data("face-sr/aligned_crop_512_bgr.png"));
  testutil::CliResult r = testutil::run_cli(args + " --precision fp16 --out " + q(dir / "h.png"));
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.out, HasSubstr("--precision=fp16: needs a CUDA device; GFPGAN on cpu supports fp32"));
  EXPECT_FALSE(exists(dir / "h.png"));
  // Before any input is read: a missing image is not what it names.
  r = testutil::run_cli("sr " + model() + " --aligned --in " + q(dir / "none.png") + " --precision fp16 --out " + q(dir / "h.png"));
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.out, HasSubstr("--precision=fp16: needs a CUDA device"));
  r = testutil::run_cli(args + " --precision bf16 --out " + q(dir / "b.png"));
  if (!anitalker::cpu_has_bf16()) {
    EXPECT_NE(r.status, 0);
    EXPECT_THAT(r.out, HasSubstr("AVX512_BF16"));
    GTEST_SKIP() << "this CPU has no AVX512_BF16 (the refusal was checked)";
  }
  ASSERT_EQ(r.status, 0) << r.out;
  const ByteDiff d = compare(dir / "b.png", "gfpgan_restored_512_bgr.png");
  std::printf("sr --aligned --precision bf16: max %g levels, %.4f%% exact, %.4f%% within 1\n", d.max, 100 * d.exact,
              100 * d.within1);
  EXPECT_LE(d.max, 8);
  EXPECT_GE(d.within1, 0.9);
}

// --detections without --out only detects: the rows of the two faces.
TEST(SrCli, DetectionsAreWritten) {
  testutil::TempDir dir;
  write_two_face_detector(dir / "det.pth");
  cv::Mat img(32, 64, CV_8UC3, cv::Scalar(90, 120, 150));
  ASSERT_TRUE(cv::imwrite(dir / "in.png", img));
  testutil::CliResult r = testutil::run_cli("sr " + model() + " --detector " + q(dir / "det.pth") + " --in " +
                                            q(dir / "in.png") + " --detections " + q(dir / "dets.npy"));
  ASSERT_EQ(r.status, 0) << r.out;
  const anitalker::TensorData t = anitalker::read_npy(dir / "dets.npy");
  ASSERT_EQ(t.dtype, anitalker::DType::Float32);
  ASSERT_EQ(t.shape, (std::vector<int64_t>{2, 15}));
  const std::vector<double> v = t.to_doubles();
  std::vector<double> centres;
  for (int i = 0; i < 2; ++i) {
    const double* row = &v[i * 15];
    const double cx = (row[0] + row[2]) / 2, cy = (row[1] + row[3]) / 2;
    centres.push_back(cx);
    EXPECT_NEAR(row[2] - row[0], 16, 1e-3);
    EXPECT_NEAR(row[3] - row[1], 16, 1e-3);
    EXPECT_NEAR(cy, 16, 1e-3);
    EXPECT_GT(row[4], 0.97);
    EXPECT_NEAR(row[5], cx - 3, 1e-3);  // left eye
    EXPECT_NEAR(row[6], cy - 2, 1e-3);
    EXPECT_NEAR(row[7], cx + 3, 1e-3);  // right eye
  }
  std::sort(centres.begin(), centres.end());
  EXPECT_NEAR(centres[0], 16, 1e-3);
  EXPECT_NEAR(centres[1], 48, 1e-3);
  EXPECT_FALSE(exists(dir / "out.png"));

  // With --out too: both faces are restored into the 128x64 image.
  r = testutil::run_cli("sr " + model() + " --detector " + q(dir / "det.pth") + " --in " + q(dir / "in.png") +
                        " --out " + q(dir / "out.png"));
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("2 faces"));
  EXPECT_EQ(cv::imread(dir / "out.png").size(), cv::Size(128, 64));
}

TEST(SrCli, ErrorsLeaveNoFile) {
  testutil::TempDir dir;
  const std::string out = dir / "out.png", raw = dir / "raw.npy";
  const std::string frame = " --in " + q(data("face-sr/frame_256_bgr.png"));
  const std::string lm = " --landmarks " + q(data("face-sr/landmarks5.npy"));
  const std::string outs = " --out " + q(out) + " --raw " + q(raw);

  // A model file that does not exist.
  testutil::CliResult r = testutil::run_cli("sr --model " + q(dir / "GFPGANv1.4.pth") + lm + frame + outs);
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.out, HasSubstr("anitalker sr: "));
  EXPECT_THAT(r.out, HasSubstr("GFPGANv1.4.pth"));
  // A model file that is not GFPGAN.
  r = testutil::run_cli("sr --model " + q(data("face-sr/parsenet_tiny.pth")) + lm + frame + outs);
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.out, HasSubstr("parsenet_tiny.pth"));
  // An input that is not there.
  r = testutil::run_cli("sr " + model() + lm + " --in " + q(dir / "nobody.png") + outs);
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.out, HasSubstr("nobody.png: no such file"));
  // Landmarks of the wrong shape (the affine fixture is (2,3)).
  r = testutil::run_cli("sr " + model() + " --landmarks " + q(data("face-sr/affine_2x3.npy")) + frame + outs);
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.out, HasSubstr("(N, 5, 2)"));
  // No way to find faces; an output format OpenCV cannot write; bad noise.
  r = testutil::run_cli("sr " + model() + frame + outs);
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.out, HasSubstr("--detector, --landmarks or --aligned"));
  r = testutil::run_cli("sr " + model() + lm + frame + " --out " + q(dir / "out.xyz"));
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.out, HasSubstr("out.xyz"));
  r = testutil::run_cli("sr " + model() + lm + frame + " --noise loud" + outs);
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.out, HasSubstr("loud"));

  for (const std::string& f : {out, raw, dir / "out.xyz"}) EXPECT_FALSE(exists(f)) << f;
}

// A result larger than the memory free: refused from the image's header
// before any work, with the sizes (before, a 100 Mpx photo at --upscale 4
// ran until the system killed the process).  The PNG holds a 100000x100000
// header and an end, no pixels: it is never decoded.  The input limit is
// raised so that only the result's size refuses it; at --upscale 4 that is
// 160000 Mpx, more than any machine has free.
TEST(SrCli, ResultLargerThanMemoryIsRefused) {
  testutil::TempDir dir;
  const std::string png = dir / "huge.png", out = dir / "out.png";
  {
    std::ofstream f(png, std::ios::binary);
    const unsigned char head[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n',  // signature
                                  0, 0, 0, 13, 'I', 'H', 'D', 'R', 0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0, 8, 2, 0, 0, 0,
                                  0, 0, 0, 0,                                              // CRC (not checked)
                                  0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};  // IEND
    f.write(reinterpret_cast<const char*>(head), sizeof head);
  }
  ::setenv("ANITALKER_MAX_PIXELS", "100000000000", 1);
  const testutil::CliResult r = testutil::run_cli("sr " + model() + " --landmarks " +
                                                  q(data("face-sr/landmarks5.npy")) + " --in " + q(png) +
                                                  " --upscale 4 --out " + q(out));
  ::unsetenv("ANITALKER_MAX_PIXELS");
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.out, HasSubstr("--upscale 4: the result of"));
  EXPECT_THAT(r.out, HasSubstr("would be 400000x400000 (160000 Mpx)"));
  EXPECT_THAT(r.out, HasSubstr("is free"));
  EXPECT_FALSE(exists(out));
}

// The input photo is checked from its header as a portrait is (found
// 2026-12-07): more pixels than ANITALKER_MAX_PIXELS, a truncated JPEG,
// refused before decoding, also when only --raw is asked (no result-size
// check then); a header of 3000000000x3000000000 under the highest limit is
// refused by the result's size, its numbers right (at --upscale 2 the
// products overflowed 64 signed bits before).
TEST(SrCli, InputCheckedFromItsHeader) {
  testutil::TempDir dir;
  auto png_header = [&](const std::string& path, uint32_t w, uint32_t h) {
    std::ofstream f(path, std::ios::binary);
    const unsigned char head[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                                  uint8_t(w >> 24), uint8_t(w >> 16), uint8_t(w >> 8), uint8_t(w),
                                  uint8_t(h >> 24), uint8_t(h >> 16), uint8_t(h >> 8), uint8_t(h), 8, 2, 0, 0, 0,
                                  0, 0, 0, 0, 0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
    f.write(reinterpret_cast<const char*>(head), sizeof head);
  };
  const std::string lm = " --landmarks " + q(data("face-sr/landmarks5.npy"));
  png_header(dir / "big.png", 20000, 10000);
  for (const std::string outs : {" --out " + q(dir / "out.png"), " --raw " + q(dir / "raw.npy")}) {
    const testutil::CliResult r = testutil::run_cli("sr " + model() + lm + " --in " + q(dir / "big.png") + outs);
    EXPECT_EQ(r.status, 1) << outs;
    EXPECT_THAT(r.out, HasSubstr("big.png: the image is 20000x10000 (200 Mpx), more than the limit of 100 Mpx"));
    EXPECT_THAT(r.out, HasSubstr("ANITALKER_MAX_PIXELS"));
  }
  std::string jpg;
  {
    std::ifstream f(data("face-sr/frame_256_bgr.png"), std::ios::binary);
    std::vector<uchar> bytes;
    ASSERT_TRUE(cv::imencode(".jpg", cv::imread(data("face-sr/frame_256_bgr.png")), bytes));
    jpg.assign(bytes.begin(), bytes.begin() + bytes.size() / 2);
  }
  testutil::spit(dir / "cut.jpg", jpg);
  testutil::CliResult r = testutil::run_cli("sr " + model() + lm + " --in " + q(dir / "cut.jpg") + " --raw " +
                                            q(dir / "raw.npy"));
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.out, HasSubstr("cut.jpg: the jpeg file is truncated"));

  png_header(dir / "max.png", 3000000000u, 3000000000u);
  ::setenv("ANITALKER_MAX_PIXELS", "9223372036854775807", 1);
  r = testutil::run_cli("sr " + model() + lm + " --in " + q(dir / "max.png") + " --upscale 2 --out " +
                        q(dir / "out.png"));
  ::unsetenv("ANITALKER_MAX_PIXELS");
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.out, HasSubstr("would be 6000000000x6000000000 (36000000000000 Mpx)"));
  for (const std::string& f : {dir / "out.png", dir / "raw.npy"}) EXPECT_FALSE(exists(f)) << f;
}
