// RetinaFace-ResNet50: priors and post-processing against the reference's
// outputs in tests/data/face-sr (synthetic head outputs), and the full-size
// network built with random weights from the released key layout.
#include <ATen/ATen.h>
#include <gmock/gmock.h>

#include <chrono>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <sstream>
#include <thread>

#include "checkpoint.h"
#include "checkpoint_writer.h"
#include "error.h"
#include "face_restore.h"
#include "../narrow_retinaface.h"
#include "retinaface.h"
#include "state_dict.h"
#include "test_util.h"

namespace rf = anitalker::retinaface;
namespace face = anitalker::face;
using anitalker::read_npy_tensor;
using testing::HasSubstr;
using testutil::data;
using testutil::error_of;

namespace {

rf::Heads stored_heads() {
  rf::Heads h;
  h.loc = read_npy_tensor(data("face-sr/det_head_loc.npy")).unsqueeze(0);
  h.conf = read_npy_tensor(data("face-sr/det_head_conf_softmax.npy")).unsqueeze(0);
  h.landms = read_npy_tensor(data("face-sr/det_head_landms.npy")).unsqueeze(0);
  return h;
}

// The released layout with random values: conv weights ~ N(0, 1/fan_in),
// batch norms near identity.  `module` keeps the "module." prefix, `counts`
// the num_batches_tracked scalars.
struct RandomCheckpoint {
  std::vector<at::Tensor> values;
  std::vector<anitalker::TensorToWrite> tensors;
};

RandomCheckpoint random_retinaface(bool module, bool counts) {
  RandomCheckpoint r;
  at::manual_seed(0);
  for (const testutil::KeyLine& k : testutil::read_key_lines(data("face-sr/retinaface_resnet50_keys.txt"))) {
    const std::string& key = k.key;
    const std::string& dtype = k.dtype;
    const std::vector<int64_t>& shape = k.shape;
    if (!counts && key.find("num_batches_tracked") != std::string::npos) continue;
    at::Tensor t;
    if (dtype == "int64") {
      t = at::zeros(shape, at::kLong);
    } else if (shape.size() == 4) {
      t = at::randn(shape) / std::sqrt(static_cast<double>(shape[1] * shape[2] * shape[3]));
    } else if (key.find("running_var") != std::string::npos) {
      t = at::rand(shape) + 0.5;
    } else if (key.find(".weight") != std::string::npos) {
      t = 1 + 0.1 * at::randn(shape);
    } else {
      t = 0.1 * at::randn(shape);
    }
    r.values.push_back(t.contiguous());
    r.tensors.push_back({module ? key : key.substr(7),
                         dtype == "int64" ? anitalker::DType::Int64 : anitalker::DType::Float32, shape,
                         r.values.back().data_ptr()});
  }
  return r;
}

void expect_rows_match(const at::Tensor& got, const at::Tensor& want, const char* what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  const at::Tensor rel = (got - want).abs() / want.abs().clamp_min(1.0);
  const float mx = rel.max().item<float>();
  std::printf("detections %s: %lld rows, max relative error %.3g (tolerance 1e-4, same count and order)\n", what,
              static_cast<long long>(got.size(0)), mx);
  EXPECT_LE(mx, 1e-4) << what;
  // Same order: the scores line up one for one.
  EXPECT_TRUE(at::allclose(got.select(1, 4), want.select(1, 4), 0, 0)) << what;
}

}  // namespace

TEST(FaceDetect, PriorsMatchTheReference) {
  const at::Tensor p = rf::priors(256, 256);
  const at::Tensor want = read_npy_tensor(data("face-sr/det_priors_256.npy"));
  ASSERT_EQ(p.sizes(), want.sizes());
  const float mx = (p - want).abs().max().item<float>();
  std::printf("priors 256: max abs %.3g\n", mx);
  EXPECT_EQ(mx, 0);
  EXPECT_EQ(rf::priors(512, 512).size(0), 2 * (64 * 64 + 32 * 32 + 16 * 16));
  EXPECT_EQ(rf::priors(250, 130).size(0), 2 * (32 * 17 + 16 * 9 + 8 * 5));  // ceil(H/step) x ceil(W/step)
}

TEST(FaceDetect, PostProcessingMatchesTheReference) {
  const rf::Heads h = stored_heads();
  const at::Tensor p = rf::priors(256, 256);
  expect_rows_match(rf::decode(h, p, 256, 256, 0.97f, 0.4), read_npy_tensor(data("face-sr/det_out_thr0.97.npy")),
                    "thr 0.97");
  expect_rows_match(rf::decode(h, p, 256, 256, 0.8f, 0.4), read_npy_tensor(data("face-sr/det_out_thr0.8.npy")),
                    "thr 0.8");
}

TEST(FaceDetect, InputIsBgrMinusTheMeans) {
  cv::Mat img(2, 3, CV_8UC3, cv::Scalar(104, 117, 123));
  img.at<cv::Vec3b>(1, 2) = cv::Vec3b(0, 255, 10);
  const at::Tensor x = rf::to_input(img);
  ASSERT_EQ(x.sizes(), (std::vector<int64_t>{1, 3, 2, 3}));
  EXPECT_EQ(x[0][0][0][0].item<float>(), 0);
  EXPECT_EQ(x[0][0][1][2].item<float>(), -104);
  EXPECT_EQ(x[0][1][1][2].item<float>(), 255 - 117);
  EXPECT_EQ(x[0][2][1][2].item<float>(), 10 - 123);
}

TEST(FaceDetect, FullSizeNetworkFromTheReleasedLayout) {
  testutil::TempDir dir;
  {
    const RandomCheckpoint c = random_retinaface(true, true);
    ASSERT_EQ(c.tensors.size(), 456u);
    anitalker::write_checkpoint(dir / "module.pth", c.tensors);
  }
  const rf::Model m(anitalker::StateDict(anitalker::Checkpoint::open(dir / "module.pth")), c10::Device(c10::kCPU));
  // Only the batch counters are left over.
  EXPECT_EQ(m.unused_keys().size(), 73u);
  for (const std::string& k : m.unused_keys()) EXPECT_THAT(k, HasSubstr("num_batches_tracked"));
  for (int s : {256, 512}) {
    const rf::Heads h = m.forward(at::randn({1, 3, s, s}) * 50);
    const int64_t n = rf::priors(s, s).size(0);
    EXPECT_EQ(h.loc.sizes(), (std::vector<int64_t>{1, n, 4})) << s;
    EXPECT_EQ(h.conf.sizes(), (std::vector<int64_t>{1, n, 2})) << s;
    EXPECT_EQ(h.landms.sizes(), (std::vector<int64_t>{1, n, 10})) << s;
    EXPECT_TRUE(at::isfinite(h.loc).all().item<bool>()) << s;
    EXPECT_TRUE(at::allclose(h.conf.sum(-1), at::ones({1, n}), 1e-5, 1e-5)) << s;
  }
  const at::Tensor rows = m.detect(cv::imread(data("face-sr/frame_256_bgr.png")), 0.5f);
  EXPECT_EQ(rows.dim(), 2);
  EXPECT_EQ(rows.size(1), 15);
}

// The whole network (ResNet-50 body, FPN, SSH, heads, softmax) against
// PyTorch's modules built as facexlib builds them, at every width divided by
// 16 with random weights and batch-norm statistics, on a 70x100 input whose
// sizes do not halve evenly (the FPN's upsampling sizes matter):
// tests/data/face-sr/make_retinaface_ref.py wrote the checkpoint (released
// key layout, "module." prefix) and the outputs.
TEST(FaceDetect, WholeNetworkMatchesPyTorch) {
  const rf::Model m(anitalker::StateDict(anitalker::Checkpoint::open(data("face-sr/retinaface_narrow.pth"))),
                    c10::Device(c10::kCPU));
  const at::Tensor x = read_npy_tensor(data("face-sr/retinaface_narrow_input.npy"));
  ASSERT_EQ(x.sizes(), (std::vector<int64_t>{1, 3, 70, 100}));
  const rf::Heads h = m.forward(x);
  const std::pair<const char*, at::Tensor> outs[] = {{"loc", h.loc}, {"conf", h.conf}, {"landms", h.landms}};
  for (const auto& [name, got] : outs) {
    const at::Tensor want = read_npy_tensor(data(std::string("face-sr/retinaface_narrow_") + name + ".npy"));
    ASSERT_EQ(got.sizes(), want.sizes()) << name;
    const double diff = (got - want).abs().max().item<double>(), scale = want.abs().max().item<double>();
    std::printf("RetinaFace %s: max |PyTorch| %.4g, max |diff| %.3g\n", name, scale, diff);
    EXPECT_LE(diff, 1e-5 + 1e-4 * scale) << name;
  }
}

// The detector's frames of several streams through one executor
// (gfpgansr's max-batch): on the CPU each frame's heads are its own alone,
// bit for bit; where the detector runs as on a GPU (ANITALKER_GENERIC=1
// here) the frames of a call run as one batch, each within float rounding
// of itself alone, and a frame of another size in its own call.  The
// device's input (made from the bytes where the network runs) is the
// CPU's, value for value.  Checked: handing a batch's heads back reversed
// fails it.
TEST(FaceDetect, FramesOfSeveralStreamsThroughOneExecutor) {
  cv::RNG rng(3);
  std::vector<cv::Mat> frames;
  for (cv::Size size : {cv::Size(100, 70), cv::Size(100, 70), cv::Size(64, 48), cv::Size(100, 70)}) {
    cv::Mat f(size, CV_8UC3);
    rng.fill(f, cv::RNG::UNIFORM, 0, 256);
    frames.push_back(f);
  }
  for (const cv::Mat& f : frames) EXPECT_TRUE(at::equal(rf::to_input(f, c10::Device(c10::kCPU)), rf::to_input(f)));
  for (bool generic : {false, true}) {
    SCOPED_TRACE(generic ? "generic path" : "CPU path");
    if (generic) ::setenv("ANITALKER_GENERIC", "1", 1);
    const auto m = std::make_shared<const rf::Model>(
        anitalker::StateDict(anitalker::Checkpoint::open(data("face-sr/retinaface_narrow.pth"))), c10::Device(c10::kCPU));
    ::unsetenv("ANITALKER_GENERIC");
    EXPECT_EQ(m->generic(), generic);
    const auto executor = face::shared_detections(m, frames.size(), std::chrono::milliseconds(300));
    std::vector<rf::Heads> got(frames.size());
    std::vector<std::thread> threads;
    for (size_t i = 0; i < frames.size(); ++i)
      threads.emplace_back([&, i] { got[i] = executor->submit(rf::to_input(frames[i])); });
    for (std::thread& t : threads) t.join();
    const auto stats = executor->stats();
    std::printf("%s: %llu calls for %llu frames, at most %zu in one\n", generic ? "generic" : "cpu",
                (unsigned long long)stats.batches, (unsigned long long)stats.requests, stats.largest);
    EXPECT_EQ(stats.requests, frames.size());
    for (size_t i = 0; i < frames.size(); ++i) {
      const rf::Heads own = m->forward(rf::to_input(frames[i]));
      for (auto [a, b] : {std::pair{got[i].loc, own.loc}, {got[i].conf, own.conf}, {got[i].landms, own.landms}}) {
        ASSERT_EQ(a.sizes(), b.sizes()) << "frame " << i;
        const double d = (a - b).abs().max().item<double>();
        if (generic)
          EXPECT_LE(d, 1e-4 * b.abs().max().item<double>()) << "frame " << i;
        else
          EXPECT_EQ(d, 0) << "frame " << i;
      }
    }
    // Unlike frames give unlike heads (else the test could not tell them apart).
    EXPECT_GT((got[0].loc - got[1].loc).abs().max().item<double>(), 1e-3);
  }
}

TEST(FaceDetect, BareKeysWithoutCountersLoadAndMissingOnesAreNamed) {
  testutil::TempDir dir;
  {
    RandomCheckpoint c = random_retinaface(false, false);
    ASSERT_EQ(c.tensors.size(), 456u - 73u);
    anitalker::write_checkpoint(dir / "bare.pth", c.tensors);
    c.tensors.erase(
        std::remove_if(c.tensors.begin(), c.tensors.end(),
                       [](const anitalker::TensorToWrite& t) { return t.key == "ssh2.conv7x7_3.1.running_var"; }),
        c.tensors.end());
    anitalker::write_checkpoint(dir / "broken.pth", c.tensors);
  }
  const rf::Model m(anitalker::StateDict(anitalker::Checkpoint::open(dir / "bare.pth")), c10::Device(c10::kCPU));
  EXPECT_TRUE(m.unused_keys().empty());
  const std::string msg = error_of([&] {
    rf::Model(anitalker::StateDict(anitalker::Checkpoint::open(dir / "broken.pth")), c10::Device(c10::kCPU));
  });
  EXPECT_THAT(msg, HasSubstr("broken.pth"));
  EXPECT_THAT(msg, HasSubstr("ssh2.conv7x7_3.1.running_var"));
}
