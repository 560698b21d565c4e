// The face helper around GFPGAN (alignment, ParseNet, paste-back, the whole
// frame) against the reference's outputs in tests/data/face-sr, with the
// tolerances of the fixtures' README.  The frame's faces come from the
// fixture's landmarks, as the reference run did.
#include <ATen/ATen.h>
#include <gmock/gmock.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <chrono>
#include <thread>

#include "checkpoint.h"
#include "error.h"
#include "face_restore.h"
#include "gfpgan.h"
#include "parsenet.h"
#include "state_dict.h"
#include "test_util.h"

namespace face = anitalker::face;
using anitalker::read_npy_tensor;
using testing::HasSubstr;
using testutil::data;
using testutil::error_of;

namespace {

const c10::Device kCpu(c10::kCPU);

std::shared_ptr<const anitalker::gfpgan::Model> gfpgan() {
  return anitalker::gfpgan::Model::load(data("face-sr/gfpgan_tiny.pth"), kCpu);
}
std::shared_ptr<const anitalker::parsenet::Model> parser() {
  return anitalker::parsenet::Model::load(data("face-sr/parsenet_tiny.pth"), kCpu);
}
// A ParseNet of its own from the fixture; with `generic` on the
// device-independent path (a GPU's), as ANITALKER_GENERIC=1 makes it.
std::shared_ptr<const anitalker::parsenet::Model> own_parser(bool generic) {
  if (generic) ::setenv("ANITALKER_GENERIC", "1", 1);
  auto p = std::make_shared<const anitalker::parsenet::Model>(
      anitalker::StateDict(anitalker::Checkpoint::open(data("face-sr/parsenet_tiny.pth"))), kCpu);
  ::unsetenv("ANITALKER_GENERIC");
  return p;
}

cv::Mat image(const std::string& name) {
  cv::Mat m = cv::imread(data("face-sr/" + name), cv::IMREAD_UNCHANGED);
  EXPECT_FALSE(m.empty()) << name;
  return m;
}

face::Landmarks landmarks() {
  const at::Tensor t = read_npy_tensor(data("face-sr/landmarks5.npy")).contiguous();
  face::Landmarks lm;
  for (int i = 0; i < 5; ++i) lm[i] = cv::Point2f(t[i][0].item<float>(), t[i][1].item<float>());
  return lm;
}

double max_abs(const cv::Mat& a, const at::Tensor& want) {
  const at::Tensor got = at::from_blob(a.data, {a.rows, a.cols}, at::kDouble);
  return (got - want.to(at::kDouble)).abs().max().item<double>();
}

struct ByteDiff {
  double max = 0, exact = 0, within1 = 0;
};

ByteDiff compare(const cv::Mat& got, const cv::Mat& want) {
  EXPECT_EQ(got.size(), want.size());
  EXPECT_EQ(got.type(), want.type());
  cv::Mat d;
  cv::absdiff(got, want, d);
  d = d.reshape(1);
  ByteDiff r;
  cv::minMaxLoc(d, nullptr, &r.max);
  const double n = static_cast<double>(d.total());
  r.exact = 1 - cv::countNonZero(d) / n;
  r.within1 = 1 - cv::countNonZero(d > 1) / n;
  return r;
}

}  // namespace

TEST(FaceRestore, AffineMatricesMatchTheReference) {
  const cv::Mat m = face::align_matrix(landmarks());
  ASSERT_EQ(m.type(), CV_64F);
  const double e = max_abs(m, read_npy_tensor(data("face-sr/affine_2x3.npy")));
  const double ei =
      max_abs(face::paste_matrix(m, 2), read_npy_tensor(data("face-sr/inverse_affine_2x3_upscaled_offset.npy")));
  std::printf("affine: max abs %.3g, inverse affine: max abs %.3g (tolerance 1e-6)\n", e, ei);
  EXPECT_LE(e, 1e-6);
  EXPECT_LE(ei, 1e-6);
}

TEST(FaceRestore, AlignedCropIsExact) {
  const cv::Mat crop = face::warp_face(image("frame_256_bgr.png"), face::align_matrix(landmarks()));
  const ByteDiff d = compare(crop, image("aligned_crop_512_bgr.png"));
  std::printf("aligned crop: max %g levels, %.4f%% exact (tolerance: exact)\n", d.max, 100 * d.exact);
  EXPECT_EQ(d.max, 0);
}

// parsenet::warm_up: one grey 512x512 face, once for each model; a model
// made again is warmed up again.
TEST(FaceRestore, ParseNetWarmUpOncePerModel) {
  auto p = parser();
  EXPECT_TRUE(anitalker::parsenet::warm_up(*p));
  EXPECT_FALSE(anitalker::parsenet::warm_up(*p));
  const anitalker::parsenet::Model again(
      anitalker::StateDict(anitalker::Checkpoint::open(data("face-sr/parsenet_tiny.pth"))), kCpu);
  EXPECT_TRUE(anitalker::parsenet::warm_up(again));
  EXPECT_FALSE(anitalker::parsenet::warm_up(again));
}

TEST(FaceRestore, ParseNetSizesComeFromTheCheckpoint) {
  auto p = parser();
  EXPECT_EQ(p->num_classes(), 19);
  EXPECT_EQ(p->down_steps(), 4);
  for (const std::string& k : p->unused_keys())
    EXPECT_TRUE(k.find("out_img_conv.") == 0 || k.find("num_batches_tracked") != std::string::npos) << k;
}

TEST(FaceRestore, ParseLabelsAndMaskMatchTheReference) {
  const cv::Mat labels = face::parse_labels(*parser(), image("gfpgan_restored_512_bgr.png"));
  const cv::Mat want = image("parse_labels_512.png");
  const double equal = 1 - cv::countNonZero(labels != want) / static_cast<double>(want.total());
  std::printf("parse labels: %.4f%% equal (tolerance 99.9%%)\n", 100 * equal);
  EXPECT_GE(equal, 0.999);

  // The mask from the reference's labels: on a CPU without AVX-512 the
  // kernels round differently and one label of the 262144 flips, which moves
  // the blurred mask by 7e-4 near it.  The labels are held above; the mask
  // maths (parse_mask, then warp_mask) is held here to the reference's
  // float32 precision.
  const cv::Mat inverse = face::paste_matrix(face::align_matrix(landmarks()), 2);
  const cv::Mat soft = face::warp_mask(face::parse_mask(want), inverse, cv::Size(512, 512));
  const at::Tensor ref = read_npy_tensor(data("face-sr/paste_mask_parse_512.npy"));
  // The reference mask is stored as float32: compare at that precision.
  const double e = max_abs(soft, ref);
  std::printf("paste mask: max abs %.3g (tolerance 1e-5)\n", e);
  EXPECT_LE(e, 1e-5);
}

// parse_mask on a label tensor (a GPU's way: where the labels lie, float64)
// against the OpenCV one on the reference's labels, and the whole frame
// through it (FaceRestorer with ANITALKER_GENERIC=1 takes that path) within
// the whole-frame bounds below, ParseNet on its device-independent path
// too.  Measured: max abs 1.9e-15; the labels 100% the reference's, the
// frame 99.998% exact.  Checked: zero padding instead of the mirrored edges
// fails (max abs 0.51, the frame 59 levels off), and so does ParseNet's
// unpacked convolutions without their bias (30% of the labels).
TEST(FaceRestore, ParseMaskOnTheDevice) {
  const cv::Mat labels = image("parse_labels_512.png");
  const at::Tensor l = at::from_blob(labels.data, {labels.rows, labels.cols}, at::kByte).clone();
  const at::Tensor got = face::parse_mask(l);
  ASSERT_EQ(got.sizes(), at::IntArrayRef({512, 512}));
  const cv::Mat want = face::parse_mask(labels);
  const at::Tensor w = at::from_blob(want.data, {512, 512}, at::kDouble);
  const double e = (got.to(at::kDouble) - w).abs().max().item<double>();
  std::printf("parse mask on the device's path: max abs %.3g from OpenCV's (tolerance 1e-12)\n", e);
  EXPECT_LE(e, 1e-12);
  EXPECT_THAT(error_of([&] { face::parse_mask(at::zeros({512, 512}, at::kFloat)); }), HasSubstr("integer label map"));

  // ParseNet's device-independent path too (nothing packed, NCHW).
  const auto generic_parser = own_parser(true);
  const face::FaceRestorer r(gfpgan(), nullptr, generic_parser);
  const cv::Mat generic_labels = face::parse_labels(*generic_parser, image("gfpgan_restored_512_bgr.png"));
  const double equal = 1 - cv::countNonZero(generic_labels != labels) / static_cast<double>(labels.total());
  std::printf("parse labels on the device's path: %.4f%% equal (tolerance 99.9%%)\n", 100 * equal);
  EXPECT_GE(equal, 0.999);
  const cv::Mat out = r.enhance(image("frame_256_bgr.png"), {landmarks()});
  const ByteDiff d = compare(out, image("pipeline_out_512_bgr_parse.png"));
  std::printf("whole frame, mask on the device's path: max %g levels, %.4f%% exact, %.4f%% within 1\n", d.max,
              100 * d.exact, 100 * d.within1);
  EXPECT_LE(d.max, 2);
  EXPECT_GE(d.within1, 0.995);
}

// GFPGAN's faces of several streams through one executor (gfpgansr's
// max-batch): on the CPU each frame is the bytes it is alone; on the
// device-independent path (a GPU's, here with ANITALKER_GENERIC=1) the faces
// of a call run as one batch, each within a level of itself alone, in its
// own stream's order.  Checked: handing a batch's results back reversed
// fails the raw outputs' check.
TEST(FaceRestore, FacesOfSeveralStreamsThroughOneExecutor) {
  const cv::Mat frame = image("frame_256_bgr.png");
  cv::Mat mirrored;
  cv::flip(frame, mirrored, 1);
  face::Landmarks flipped = landmarks();
  for (auto& p : flipped) p.x = frame.cols - 1 - p.x;
  std::swap(flipped[0], flipped[1]);
  std::swap(flipped[3], flipped[4]);
  cv::Mat darker;
  frame.convertTo(darker, CV_8UC3, 0.7);
  const cv::Mat inputs[3] = {frame, mirrored, darker};
  const face::Landmarks marks[3] = {landmarks(), flipped, landmarks()};
  for (bool generic : {false, true}) {
    SCOPED_TRACE(generic ? "generic path" : "CPU path");
    if (generic) ::setenv("ANITALKER_GENERIC", "1", 1);
    const auto model = generic ? std::make_shared<const anitalker::gfpgan::Model>(anitalker::StateDict(
                                     anitalker::Checkpoint::open(data("face-sr/gfpgan_tiny.pth"))),
                                                                                 c10::Device(c10::kCPU))
                               : gfpgan();
    ::unsetenv("ANITALKER_GENERIC");
    const face::FaceRestorer alone(model, nullptr, nullptr);
    cv::Mat want[3], got[3];
    for (int i = 0; i < 3; ++i) want[i] = alone.enhance(inputs[i], {marks[i]});
    const auto executor = face::shared_faces(model, 3, std::chrono::milliseconds(200));
    std::vector<std::thread> threads;
    for (int i = 0; i < 3; ++i)
      threads.emplace_back([&, i] {
        face::FaceRestorer r(model, nullptr, nullptr);
        r.set_executor(executor);
        got[i] = r.enhance(inputs[i], {marks[i]});
      });
    for (std::thread& t : threads) t.join();
    const auto stats = executor->stats();
    std::printf("%s: %llu calls for %llu faces, at most %zu in one\n", generic ? "generic" : "cpu",
                (unsigned long long)stats.batches, (unsigned long long)stats.requests, stats.largest);
    EXPECT_EQ(stats.requests, 3u);
    for (int i = 0; i < 3; ++i) {
      const ByteDiff d = compare(got[i], want[i]);
      std::printf("  stream %d: max %g levels from alone, %.4f%% exact\n", i, d.max, 100 * d.exact);
      if (generic) {
        EXPECT_LE(d.max, 1) << "stream " << i;
      } else {
        EXPECT_EQ(d.max, 0) << "stream " << i;
      }
    }
    for (int i = 0; i < 3; ++i) EXPECT_GT(compare(want[i], want[(i + 1) % 3]).max, 10);  // three different frames

    // The raw outputs of three unlike inputs through the executor, each its
    // own (within 1e-4 of itself alone, 10x further from the others).
    at::Tensor x[3], y[3];
    for (int i = 0; i < 3; ++i) x[i] = at::rand({1, 3, 512, 512}, at::detail::createCPUGenerator(7 + i)) * 2 - 1;
    std::vector<std::thread> raw;
    for (int i = 0; i < 3; ++i) raw.emplace_back([&, i] { y[i] = executor->submit(face::FaceJob{x[i]}); });
    for (std::thread& t : raw) t.join();
    for (int i = 0; i < 3; ++i) {
      const at::Tensor own = model->forward(x[i]);
      EXPECT_LE((y[i] - own).abs().max().item<float>(), 1e-4) << "input " << i;
      EXPECT_GT((own - model->forward(x[(i + 1) % 3])).abs().max().item<float>(), 1e-3) << "input " << i;
    }
  }
}

// ParseNet's faces of several streams through one executor (gfpgansr's
// max-batch with a parser): on the CPU each label map is the one it is
// alone, bit for bit; on the device-independent path (a GPU's) the faces of
// a call run as one batch, each within a label on a near tie of itself
// alone.  The whole frames of three streams through both executors are
// their frames alone (measured: on the batched path up to 1 level, 99.89%
// of bytes exact or more).  Checked: handing a batch's label maps back
// reversed fails it (2 levels, 91% exact).
TEST(FaceRestore, ParsesOfSeveralStreamsThroughOneExecutor) {
  const cv::Mat frame = image("frame_256_bgr.png");
  cv::Mat darker, brighter;
  frame.convertTo(darker, CV_8UC3, 0.7);
  frame.convertTo(brighter, CV_8UC3, 1.0, 40);
  const cv::Mat inputs[3] = {frame, darker, brighter};
  const auto model = gfpgan();
  for (bool generic : {false, true}) {
    SCOPED_TRACE(generic ? "generic path" : "CPU path");
    const auto p = own_parser(generic);
    const face::FaceRestorer alone(model, nullptr, p);
    cv::Mat want[3], got[3];
    for (int i = 0; i < 3; ++i) want[i] = alone.enhance(inputs[i], {landmarks()});
    const auto faces = face::shared_faces(model, 3, std::chrono::milliseconds(200));
    const auto parses = face::shared_parses(p, 3, std::chrono::milliseconds(200));
    std::vector<std::thread> threads;
    for (int i = 0; i < 3; ++i)
      threads.emplace_back([&, i] {
        face::FaceRestorer r(model, nullptr, p);
        r.set_executor(faces);
        r.set_parse_executor(parses);
        got[i] = r.enhance(inputs[i], {landmarks()});
      });
    for (std::thread& t : threads) t.join();
    const auto stats = parses->stats();
    std::printf("%s: ParseNet %llu calls for %llu faces, at most %zu in one\n", generic ? "generic" : "cpu",
                (unsigned long long)stats.batches, (unsigned long long)stats.requests, stats.largest);
    EXPECT_EQ(stats.requests, 3u);
    for (int i = 0; i < 3; ++i) {
      const ByteDiff d = compare(got[i], want[i]);
      std::printf("  stream %d: max %g levels from alone, %.4f%% exact\n", i, d.max, 100 * d.exact);
      EXPECT_LE(d.max, generic ? 1 : 0) << "stream " << i;
      EXPECT_GE(d.exact, 0.995) << "stream " << i;
    }
    for (int i = 0; i < 3; ++i) EXPECT_GT(compare(want[i], want[(i + 1) % 3]).max, 10);  // three different frames
  }
}

TEST(FaceRestore, WholeFrameMatchesTheReference) {
  const cv::Mat frame = image("frame_256_bgr.png");
  for (bool use_parse : {false, true}) {
    const face::FaceRestorer r(gfpgan(), nullptr, use_parse ? parser() : nullptr);
    const cv::Mat out = r.enhance(frame, {landmarks()});
    const ByteDiff d =
        compare(out, image(use_parse ? "pipeline_out_512_bgr_parse.png" : "pipeline_out_512_bgr_noparse.png"));
    std::printf("whole frame (%s): max %g levels, %.4f%% exact, %.4f%% within 1 (tolerance 2 / 99.5%%)\n",
                use_parse ? "parse" : "no parse", d.max, 100 * d.exact, 100 * d.within1);
    EXPECT_LE(d.max, 2);
    EXPECT_GE(d.within1, 0.995);
  }
}

TEST(FaceRestore, NoFaceIsTheResizedBackground) {
  const cv::Mat frame = image("frame_256_bgr.png");
  const face::FaceRestorer r(gfpgan(), nullptr, nullptr);
  const ByteDiff d = compare(r.enhance(frame, {}), face::upscale_background(frame, 2));
  EXPECT_EQ(d.max, 0);
  // Without a detector the faces must be given.
  EXPECT_THAT(error_of([&] { r.enhance(frame); }), HasSubstr("no detector"));
}

TEST(FaceRestore, AlignedModeRestoresTheWholeFrame) {
  const auto net = gfpgan();
  const face::FaceRestorer r(net, nullptr, nullptr);
  const cv::Mat crop = image("aligned_crop_512_bgr.png");
  const cv::Mat got = r.restore_aligned(crop);
  // Exactly GFPGAN on the whole input: no detection, no warp, no paste.
  EXPECT_EQ(compare(got, face::restored_to_bgr(net->forward(face::gfpgan_input(crop)))).max, 0);
  // And the reference's restored face within the GFPGAN test's bound (the
  // last level depends on the CPU's kernels: AVX2 and AVX-512 differ).
  const ByteDiff d = compare(got, image("gfpgan_restored_512_bgr.png"));
  std::printf("aligned mode: max %g levels, %.4f%% exact (tolerance 1 / 99.9%%)\n", d.max, 100 * d.exact);
  EXPECT_LE(d.max, 1);
  EXPECT_GE(d.exact, 0.999);
  EXPECT_EQ(r.restore_aligned(image("frame_256_bgr.png")).size(), cv::Size(512, 512));
}

TEST(FaceRestore, FaceSelectionFromDetections) {
  // Rows [x1, y1, x2, y2, score, 5 landmarks], by descending score, 256x256.
  auto row = [](float x1, float y1, float x2, float y2, float score, float eye_dist) {
    std::vector<float> r{x1, y1, x2, y2, score};
    const float ex = (x1 + x2) / 2, ey = (y1 + y2) / 2;
    for (float v : {ex - eye_dist / 2, ey, ex + eye_dist / 2, ey, ex, ey + 5, ex - 4, ey + 9, ex + 4, ey + 9})
      r.push_back(v);
    return r;
  };
  std::vector<float> rows;
  for (const auto& r : {row(100, 100, 150, 150, 0.999f, 4.9f),  // eyes too close: a side face
                        row(0, 0, 60, 60, 0.995f, 20),          // far from the centre
                        row(110, 100, 160, 150, 0.990f, 20)})   // near the centre
    rows.insert(rows.end(), r.begin(), r.end());
  const at::Tensor dets = at::from_blob(rows.data(), {3, 15}, at::kFloat);
  face::Options o;
  std::vector<face::Face> f = face::select_faces(dets, cv::Size(256, 256), o);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_FLOAT_EQ(f[0].score, 0.995f);
  EXPECT_FLOAT_EQ(f[1].score, 0.990f);
  EXPECT_FLOAT_EQ(f[1].landmarks[0].x, 125.0f);
  EXPECT_FLOAT_EQ(f[1].box.width, 50.0f);
  o.only_center_face = true;
  f = face::select_faces(dets, cv::Size(256, 256), o);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_FLOAT_EQ(f[0].score, 0.990f);
  o = face::Options();
  o.eye_dist_threshold = 0;
  EXPECT_EQ(face::select_faces(dets, cv::Size(256, 256), o).size(), 3u);
  EXPECT_TRUE(face::select_faces(at::zeros({0, 15}), cv::Size(256, 256), o).empty());
}

// --- The paste's steps on tensors (a GPU's way) against OpenCV's ----------
// warp_affine and resize_lanczos4 are held bit for bit to the OpenCV calls
// the reference makes (the whole frame against the reference is held
// above); here on the CPU, where the same tensor code runs as on a GPU.

namespace {

at::Tensor as_tensor(const cv::Mat& m) { return face::image_tensor(m).clone(); }

cv::Mat as_mat(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  const int ch = c.dim() == 3 ? static_cast<int>(c.size(2)) : 1;
  const int type = c.scalar_type() == at::kByte ? CV_8UC(ch) : CV_64FC(ch);
  return cv::Mat(static_cast<int>(c.size(0)), static_cast<int>(c.size(1)), type, c.data_ptr()).clone();
}

// Random similarity transforms: a rotation, a scale and a shift that put
// part of the output outside the source.
cv::Mat similarity(cv::RNG& rng, cv::Size src, cv::Size out) {
  const double a = rng.uniform(-3.2, 3.2), s = rng.uniform(0.3, 3.0);
  cv::Mat m = cv::getRotationMatrix2D(cv::Point2f(src.width / 2.f, src.height / 2.f), a * 180 / CV_PI, s);
  m.at<double>(0, 2) += rng.uniform(-0.5, 0.5) * out.width;
  m.at<double>(1, 2) += rng.uniform(-0.5, 0.5) * out.height;
  return m;
}

}  // namespace

// Measured: every byte and every float64 equal, on the fixture's alignment
// and paste matrices and 40 random ones.  Checked: without the half-step
// rounding of the positions (round_delta 0) it fails (the fixture's crop 7
// levels off).
TEST(FaceDevice, WarpAffineIsOpenCVs) {
  cv::RNG rng(20261205);
  const cv::Mat frame = image("frame_256_bgr.png");
  const cv::Mat affine = face::align_matrix(landmarks());
  std::vector<std::pair<cv::Mat, cv::Size>> cases = {{affine, cv::Size(512, 512)},
                                                     {face::paste_matrix(affine, 2), cv::Size(512, 512)}};
  for (int i = 0; i < 40; ++i) {
    const cv::Size out(rng.uniform(16, 300), rng.uniform(16, 300));
    cases.push_back({similarity(rng, frame.size(), out), out});
  }
  cv::Mat noise(97, 61, CV_8UC3), mask(120, 90, CV_64F);
  rng.fill(noise, cv::RNG::UNIFORM, 0, 256);
  rng.fill(mask, cv::RNG::UNIFORM, 0.0, 1.0);
  size_t n = 0;
  for (const auto& [m, out] : cases) {
    for (const cv::Mat& src : {frame, noise}) {
      cv::Mat want;
      cv::warpAffine(src, want, m, out, cv::INTER_LINEAR, cv::BORDER_CONSTANT, cv::Scalar(135, 133, 132));
      const cv::Mat got = as_mat(face::warp_affine(as_tensor(src), m, out, cv::Scalar(135, 133, 132)));
      ASSERT_EQ(compare(got, want).max, 0) << "uint8 case " << n;
    }
    cv::Mat want;
    cv::warpAffine(mask, want, m, out);
    const cv::Mat got = as_mat(face::warp_affine(as_tensor(mask), m, out));
    ASSERT_EQ(cv::norm(got, want, cv::NORM_INF), 0) << "float64 case " << n;
    ++n;
  }
  std::printf("warp_affine: %zu matrices, uint8 and float64, every value OpenCV's\n", n);
  EXPECT_THAT(error_of([&] { face::warp_affine(at::zeros({4, 4}, at::kFloat), affine, cv::Size(4, 4)); }),
              HasSubstr("uint8 or float64"));
  EXPECT_THAT(error_of([&] { face::warp_affine(as_tensor(frame), cv::Mat::eye(3, 3, CV_64F), cv::Size(4, 4)); }),
              HasSubstr("2x3"));
}

// Measured: every byte equal.  Checked: rounding the 11-bit weights by
// truncation instead fails (1 level, every case).
TEST(FaceDevice, LanczosResizeIsOpenCVs) {
  cv::RNG rng(5);
  cv::Mat noise(61, 97, CV_8UC3);
  rng.fill(noise, cv::RNG::UNIFORM, 0, 256);
  const cv::Mat frame = image("frame_256_bgr.png");
  const std::vector<std::pair<cv::Mat, cv::Size>> cases = {
      {frame, cv::Size(512, 512)}, {frame, cv::Size(384, 384)}, {frame, cv::Size(100, 300)},
      {noise, cv::Size(194, 122)}, {noise, cv::Size(242, 152)}, {noise, cv::Size(30, 20)}, {noise, noise.size()}};
  for (const auto& [src, out] : cases) {
    cv::Mat want;
    cv::resize(src, want, out, 0, 0, cv::INTER_LANCZOS4);
    EXPECT_EQ(compare(as_mat(face::resize_lanczos4(as_tensor(src), out)), want).max, 0)
        << src.cols << "x" << src.rows << " -> " << out.width << "x" << out.height;
  }
  EXPECT_EQ(compare(as_mat(face::resize_lanczos4(as_tensor(frame), cv::Size(512, 512))),
                    face::upscale_background(frame, 2)).max, 0);
}

TEST(FaceDevice, ConversionsAreTheCPUs) {
  const cv::Mat crop = image("aligned_crop_512_bgr.png");
  const at::Tensor t = as_tensor(crop);
  EXPECT_TRUE(at::equal(face::gfpgan_input(t), face::gfpgan_input(crop)));
  EXPECT_TRUE(at::equal(face::parsenet_input(t), face::parsenet_input(crop)));
  // Outputs past [-1, 1] and between levels.
  const at::Tensor raw = at::randn({1, 3, 64, 48}, at::detail::createCPUGenerator(3)) * 0.7;
  EXPECT_EQ(compare(as_mat(face::restored_bytes(raw)), face::restored_to_bgr(raw)).max, 0);
}

// The whole frame with the paste on the device (ParseNet on its
// device-independent path, ANITALKER_GENERIC=1) against the same steps on
// the CPU with OpenCV and the same labels: the same bytes, for two faces
// (the fixture's and one moved, so that the pastes overlap).
TEST(FaceDevice, WholeFrameIsTheCPUs) {
  const auto generic_parser = own_parser(true);
  const auto model = gfpgan();
  const face::FaceRestorer r(model, nullptr, generic_parser);
  const cv::Mat frame = image("frame_256_bgr.png");
  face::Landmarks moved = landmarks();
  for (auto& p : moved) p += cv::Point2f(23.3f, -17.1f);
  const std::vector<face::Landmarks> faces = {landmarks(), moved};
  at::Tensor first_raw;
  const cv::Mat got = r.enhance(frame, faces, &first_raw);

  cv::Mat canvas;
  face::upscale_background(frame, 2).convertTo(canvas, CV_64FC3);
  at::Tensor want_raw;
  for (size_t i = 0; i < faces.size(); ++i) {
    const cv::Mat affine = face::align_matrix(faces[i]);
    const cv::Mat crop = face::warp_face(frame, affine);
    const cv::Mat restored = face::restore_face(*model, crop, anitalker::gfpgan::Noise::Stored, i == 0 ? &want_raw : nullptr);
    const at::Tensor m = face::parse_mask(generic_parser->label_map(face::parsenet_input(restored))[0]).contiguous();
    const cv::Mat mask(512, 512, CV_64F, m.data_ptr<double>());
    face::paste_face(canvas, restored, face::paste_matrix(affine, 2), mask, 2);
  }
  const cv::Mat want = face::canvas_to_bgr(canvas);
  const ByteDiff d = compare(got, want);
  std::printf("whole frame, paste on the device's path: max %g levels from OpenCV's, %.4f%% exact\n", d.max,
              100 * d.exact);
  EXPECT_EQ(d.max, 0);
  EXPECT_TRUE(at::equal(first_raw, want_raw));
  EXPECT_GT(compare(got, face::upscale_background(frame, 2)).max, 10);  // the faces were pasted
  // A late frame (gfpgansr's qos): the plain upscale, on the device too.
  EXPECT_EQ(compare(r.frame(frame, face::FaceRestorer::FrameMode::Degraded), face::upscale_background(frame, 2)).max, 0);
}

// parse_every (gfpgansr's parse-every): ParseNet's mask of one frame pastes
// the faces of the next parse_every - 1 frames, then a new one is made.
// Shown on the fixture frame and the same frame with the head turned by 2
// degrees and moved (its landmarks moved with it): the second frame is
// exactly the paste under the first frame's mask, on the CPU path and on
// the device path, and the fourth is made anew.  Measured: the two masks
// differ by up to 0.005, and the frame under the reused mask is within 1
// level of the fresh one (100% of bytes within 1; some differ, so the test
// tells them apart).  Checked: never reusing fails it.
TEST(FaceRestore, ParseEveryReusesTheMasks) {
  const cv::Mat f0 = image("frame_256_bgr.png");
  cv::Mat move = cv::getRotationMatrix2D(cv::Point2f(128, 128), 2.0, 1.0);
  move.at<double>(0, 2) += 3.5;
  move.at<double>(1, 2) -= 2.0;
  cv::Mat f1;
  cv::warpAffine(f0, f1, move, f0.size(), cv::INTER_LINEAR, cv::BORDER_REFLECT);
  const face::Landmarks lm0 = landmarks();
  face::Landmarks lm1;
  for (int k = 0; k < 5; ++k)
    lm1[k] = cv::Point2f(static_cast<float>(move.at<double>(0, 0) * lm0[k].x + move.at<double>(0, 1) * lm0[k].y +
                                            move.at<double>(0, 2)),
                         static_cast<float>(move.at<double>(1, 0) * lm0[k].x + move.at<double>(1, 1) * lm0[k].y +
                                            move.at<double>(1, 2)));
  const auto model = gfpgan();
  for (bool generic : {false, true}) {
    SCOPED_TRACE(generic ? "device path" : "CPU path");
    const auto p = own_parser(generic);
    const face::FaceRestorer r(model, nullptr, p);
    // The mask each path makes of a frame's face.
    auto mask_of = [&](const cv::Mat& frame, const face::Landmarks& lm) {
      const cv::Mat restored = face::restore_face(*model, face::warp_face(frame, face::align_matrix(lm)),
                                                  anitalker::gfpgan::Noise::Stored);
      if (!generic) return face::parse_mask(face::parse_labels(*p, restored));
      const at::Tensor m = face::parse_mask(p->label_map(face::parsenet_input(restored))[0]).contiguous();
      return cv::Mat(512, 512, CV_64F, m.data_ptr<double>()).clone();
    };
    const cv::Mat m0 = mask_of(f0, lm0), m1 = mask_of(f1, lm1);
    const double mask_change = cv::norm(m0, m1, cv::NORM_INF);
    EXPECT_GT(mask_change, 1e-3);  // else this test could not tell the masks apart
    // The paste of f1's face under m0.
    cv::Mat canvas;
    face::upscale_background(f1, 2).convertTo(canvas, CV_64FC3);
    const cv::Mat affine1 = face::align_matrix(lm1);
    face::paste_face(canvas,
                     face::restore_face(*model, face::warp_face(f1, affine1), anitalker::gfpgan::Noise::Stored),
                     face::paste_matrix(affine1, 2), m0, 2);
    const cv::Mat under_m0 = face::canvas_to_bgr(canvas);

    face::FaceRestorer::Track t;
    t.faces = {lm0};
    t.age = 0;
    t.size = f0.size();
    size_t n = 0;
    const auto detect = face::FaceRestorer::FrameMode::Detect;
    // The landmarks come from the track (detect_every 1000): here they are
    // set for each frame, as a detector would find them.
    EXPECT_EQ(compare(r.frame(f0, detect, &n, &t, 1000, 3), r.enhance(f0, {lm0})).max, 0);
    t.faces = {lm1};
    const cv::Mat second = r.frame(f1, detect, &n, &t, 1000, 3);
    EXPECT_EQ(n, 1u);
    EXPECT_EQ(compare(second, under_m0).max, 0);
    EXPECT_EQ(compare(r.frame(f1, detect, &n, &t, 1000, 3), under_m0).max, 0);  // the third too
    const cv::Mat fresh = r.enhance(f1, {lm1});
    EXPECT_EQ(compare(r.frame(f1, detect, &n, &t, 1000, 3), fresh).max, 0);  // the fourth: a new mask
    const ByteDiff d = compare(second, fresh);
    EXPECT_GT(compare(under_m0, fresh).max, 0);  // else the reuse could not be seen
    std::printf("%s: masks of the two frames up to %.3g apart; the frame under the reused mask: max %g levels from a "
                "fresh one, %.4f%% within 1\n",
                generic ? "device path" : "CPU path", mask_change, d.max, 100 * d.within1);
    // parse_every 1: every frame its own mask.
    face::FaceRestorer::Track every;
    every.faces = {lm0};
    every.age = 0;
    every.size = f0.size();
    r.frame(f0, detect, &n, &every, 1000, 1);
    every.faces = {lm1};
    EXPECT_EQ(compare(r.frame(f1, detect, &n, &every, 1000, 1), fresh).max, 0);
  }
}

// GFPGANer keeps the aligned crop when GFPGAN's forward fails (out of
// memory, say): the crop is pasted under its own mask, on the device path
// as on the CPU's (a GFPGAN executor that fails every call stands in for
// the failure).  The two paths' masks differ in the last bits (float64
// blurs summed in another order, 1.9e-15): where the mask is 1 on one path
// and just under on the other, the paste's truncation takes a level off.
// The crop parses as face over most of its area, so that shows more than
// for the restored face: measured 1 level, 99.907% exact.
TEST(FaceDevice, FailedRestoreKeepsTheCrop) {
  auto fail = [](const std::vector<const face::FaceJob*>&) -> std::vector<at::Tensor> {
    TORCH_CHECK(false, "out of memory (a test's)");
  };
  const auto failing = std::make_shared<face::FaceBatcher>(fail, 1, std::chrono::microseconds(0));
  const cv::Mat frame = image("frame_256_bgr.png");
  cv::Mat out[2];
  for (bool generic : {false, true}) {
    const auto p = own_parser(generic);
    face::FaceRestorer r(gfpgan(), nullptr, p);
    r.set_executor(failing);
    out[generic] = r.enhance(frame, {landmarks()});
  }
  const ByteDiff d = compare(out[1], out[0]);
  std::printf("failed restore, device path against the CPU's: max %g levels, %.4f%% exact\n", d.max, 100 * d.exact);
  EXPECT_LE(d.max, 1);
  EXPECT_GE(d.exact, 0.998);
  // The crop itself, pasted: not the background alone, and not the restored face.
  const cv::Mat affine = face::align_matrix(landmarks());
  const cv::Mat crop = face::warp_face(frame, affine);
  cv::Mat canvas;
  face::upscale_background(frame, 2).convertTo(canvas, CV_64FC3);
  face::paste_face(canvas, crop, face::paste_matrix(affine, 2), face::parse_mask(face::parse_labels(*parser(), crop)), 2);
  EXPECT_EQ(compare(out[0], face::canvas_to_bgr(canvas)).max, 0);
  EXPECT_GT(compare(out[0], face::upscale_background(frame, 2)).max, 0);
}
