// GFPGANv1Clean against the reference's outputs in tests/data/face-sr (narrow
// 1/32 fixture, stored noise), with the tolerances of the fixtures' README.
#include <ATen/ATen.h>
#include <gmock/gmock.h>

#include <opencv2/imgcodecs.hpp>

#include "checkpoint.h"
#include "checkpoint_writer.h"
#include "error.h"
#include "face_restore.h"
#include "device.h"
#include "gfpgan.h"
#include "state_dict.h"
#include "test_util.h"

using anitalker::read_npy_tensor;
using anitalker::gfpgan::Model;
using anitalker::gfpgan::Noise;
using testing::HasSubstr;
using testutil::data;
using testutil::error_of;

namespace {

const c10::Device kCpu(c10::kCPU);

std::shared_ptr<const Model> tiny() { return Model::load(data("face-sr/gfpgan_tiny.pth"), kCpu); }

cv::Mat image(const std::string& name) {
  cv::Mat m = cv::imread(data("face-sr/" + name), cv::IMREAD_UNCHANGED);
  EXPECT_FALSE(m.empty()) << name;
  return m;
}

// The raw output for the fixture's aligned crop, computed once.
const at::Tensor& raw_output() {
  static const at::Tensor raw = tiny()->forward(anitalker::face::gfpgan_input(image("aligned_crop_512_bgr.png")));
  return raw;
}

// Copies every tensor of `sd` except `drop`, under `wrapper` ("" = plain).
void rewrite(const anitalker::StateDict& sd, const std::string& path, const std::string& wrapper,
             const std::string& drop = "") {
  std::vector<anitalker::TensorToWrite> ts;
  const auto& ck = sd.checkpoint();
  for (const std::string& k : ck.keys()) {
    const std::string bare = k.substr(k.find('.') + 1);  // without "params_ema."
    if (bare == drop) continue;
    const anitalker::TensorData& t = ck.at(k);
    ts.push_back({bare, t.dtype, t.shape, t.data()});
  }
  anitalker::write_checkpoint(path, ts, wrapper);
}

}  // namespace

TEST(Gfpgan, SizesComeFromTheCheckpoint) {
  auto m = tiny();
  EXPECT_EQ(m->size(), 512);
  EXPECT_EQ(m->style_dim(), 32);
  EXPECT_EQ(m->num_latents(), 16);
  // Only the weights inference never uses are left: style_mlp and the U-Net toRGB.
  EXPECT_EQ(m->unused_keys().size(), 16u + 14u);
  for (const std::string& k : m->unused_keys())
    EXPECT_TRUE(k.find("stylegan_decoder.style_mlp.") != std::string::npos || k.find("params_ema.toRGB.") == 0) << k;
}

TEST(Gfpgan, RawOutputMatchesTheReference) {
  const at::Tensor& raw = raw_output();
  ASSERT_EQ(raw.sizes(), (std::vector<int64_t>{1, 3, 512, 512}));
  const at::Tensor want = read_npy_tensor(data("face-sr/gfpgan_raw_output_rgb_center256.npy"));
  const at::Tensor got = raw.slice(2, 128, 384).slice(3, 128, 384);
  const at::Tensor d = (got - want).abs();
  const float mx = d.max().item<float>(), mean = d.mean().item<float>();
  std::printf("gfpgan raw window: max abs %.3g, mean abs %.3g (tolerance 1e-3 / 1e-4)\n", mx, mean);
  EXPECT_LE(mx, 1e-3);
  EXPECT_LE(mean, 1e-4);
}

// precision=bf16 (a CPU with AVX512_BF16): every convolution in bfloat16.
// Not exact: held to the reference's output within bounds measured on this
// fixture (printed), loose enough for bfloat16's rounding and far below what
// a left-out bias or a float32 layer taken for a bfloat16 one gives.
TEST(Gfpgan, Bf16StaysNearTheReference) {
  TESTUTIL_BF16_OR_SKIP(Model::load(data("face-sr/gfpgan_tiny.pth"), kCpu, anitalker::Precision::Bf16));
  auto m = Model::load(data("face-sr/gfpgan_tiny.pth"), kCpu, anitalker::Precision::Bf16);
  EXPECT_EQ(m->precision(), anitalker::Precision::Bf16);
  EXPECT_NE(m, tiny());  // one copy per precision
  const at::Tensor raw = m->forward(anitalker::face::gfpgan_input(image("aligned_crop_512_bgr.png")));
  const at::Tensor want = read_npy_tensor(data("face-sr/gfpgan_raw_output_rgb_center256.npy"));
  const at::Tensor d = (raw.slice(2, 128, 384).slice(3, 128, 384) - want).abs();
  const float mx = d.max().item<float>(), mean = d.mean().item<float>();
  const float from_fp32 = (raw - raw_output()).abs().max().item<float>();
  std::printf("gfpgan bf16 raw window: max abs %.3g, mean abs %.3g; max abs from float32 %.3g\n", mx, mean, from_fp32);
  EXPECT_GT(from_fp32, 0.0f);  // the bfloat16 path ran
  EXPECT_LE(mx, 0.06f);
  EXPECT_LE(mean, 0.015f);
  EXPECT_THAT(error_of([&] { Model::load(data("face-sr/gfpgan_tiny.pth"), kCpu, anitalker::Precision::Fp16); }),
              HasSubstr("precision"));
}

// The device-independent path, what a GPU runs (NCHW, nothing packed, the
// modulated weights per call), on the CPU through ANITALKER_GENERIC=1:
// float32 within the reference's tolerances, and its reduced-precision
// convolutions (float16 on a GPU, bfloat16 here: the same casts) within
// the bfloat16 bounds above (measured: float32 within 2e-6 of the reference's
// window, bfloat16 max 0.025, mean 0.0058).  Checked: the reduced
// precision's weights left unused (float32 throughout) fail "the reduced
// path ran".
TEST(Gfpgan, GenericPathKeepsTheReference) {
  auto load = [&](anitalker::Precision precision, bool nhwc = false) {
    ::setenv("ANITALKER_GENERIC", "1", 1);
    auto m = std::make_shared<Model>(anitalker::StateDict(anitalker::Checkpoint::open(data("face-sr/gfpgan_tiny.pth"))),
                                     kCpu, at::kFloat, precision, nhwc);
    ::unsetenv("ANITALKER_GENERIC");
    return m;
  };
  const at::Tensor x = anitalker::face::gfpgan_input(image("aligned_crop_512_bgr.png"));
  const at::Tensor want = read_npy_tensor(data("face-sr/gfpgan_raw_output_rgb_center256.npy"));
  auto window = [](const at::Tensor& raw) { return raw.slice(2, 128, 384).slice(3, 128, 384); };
  const at::Tensor raw = load(anitalker::Precision::Fp32)->forward(x);
  const at::Tensor d = (window(raw) - want).abs();
  std::printf("gfpgan generic raw window: max abs %.3g, mean abs %.3g (tolerance 1e-3 / 1e-4)\n", d.max().item<float>(),
              d.mean().item<float>());
  EXPECT_LE(d.max().item<float>(), 1e-3);
  EXPECT_LE(d.mean().item<float>(), 1e-4);
  // A batch (a GPU's batched faces: the modulation on the input, one
  // convolution with shared weights): the reference's face among others.
  const at::Tensor batch = load(anitalker::Precision::Fp32)->forward(at::cat({x.flip(3), x, x.flip(2)}, 0));
  const at::Tensor db = (window(batch.slice(0, 1, 2)) - want).abs();
  std::printf("gfpgan generic batch of 3, the reference's face: max abs %.3g, mean abs %.3g\n", db.max().item<float>(),
              db.mean().item<float>());
  EXPECT_LE(db.max().item<float>(), 1e-3);
  EXPECT_LE(db.mean().item<float>(), 1e-4);
  EXPECT_LE((batch[0] - load(anitalker::Precision::Fp32)->forward(x.flip(3))[0]).abs().max().item<float>(), 1e-4);
  {
    // Channels-last (a GPU's option): one face and a batch.
    const auto mc = load(anitalker::Precision::Fp32, true);
    EXPECT_TRUE(mc->channels_last());
    EXPECT_FALSE(load(anitalker::Precision::Fp32)->channels_last());
    const at::Tensor one = mc->forward(x), three = mc->forward(at::cat({x.flip(3), x, x.flip(2)}, 0));
    for (const at::Tensor& got : {one, three.slice(0, 1, 2)}) {
      const at::Tensor dc = (window(got) - want).abs();
      std::printf("gfpgan generic channels-last, the reference's face: max abs %.3g, mean abs %.3g\n",
                  dc.max().item<float>(), dc.mean().item<float>());
      EXPECT_LE(dc.max().item<float>(), 1e-3);
      EXPECT_LE(dc.mean().item<float>(), 1e-4);
    }
  }
  if (!anitalker::cpu_has_bf16()) GTEST_SKIP() << "no AVX512_BF16: the reduced-precision half is not run";
  {
    const at::Tensor b16 = load(anitalker::Precision::Bf16)->forward(at::cat({x.flip(3), x}, 0));
    const at::Tensor d16 = (window(b16.slice(0, 1, 2)) - want).abs();
    std::printf("gfpgan generic bf16 batch of 2, the reference's face: max abs %.3g, mean abs %.3g\n",
                d16.max().item<float>(), d16.mean().item<float>());
    EXPECT_LE(d16.max().item<float>(), 0.06f);
    EXPECT_LE(d16.mean().item<float>(), 0.015f);
  }
  const at::Tensor raw16 = load(anitalker::Precision::Bf16)->forward(x);
  const at::Tensor d16 = (window(raw16) - want).abs();
  const float from_fp32 = (raw16 - raw).abs().max().item<float>();
  std::printf("gfpgan generic bf16 raw window: max abs %.3g, mean abs %.3g; max abs from float32 %.3g\n",
              d16.max().item<float>(), d16.mean().item<float>(), from_fp32);
  EXPECT_GT(from_fp32, 1e-3f);  // the reduced path ran: measured 0.025 on the whole face
  EXPECT_LE(d16.max().item<float>(), 0.06f);
  EXPECT_LE(d16.mean().item<float>(), 0.015f);
}

TEST(Gfpgan, RestoredBytesMatchTheReference) {
  const cv::Mat got = anitalker::face::restored_to_bgr(raw_output());
  const cv::Mat want = image("gfpgan_restored_512_bgr.png");
  cv::Mat diff;
  cv::absdiff(got, want, diff);
  double mx = 0;
  cv::minMaxLoc(diff.reshape(1), nullptr, &mx);
  const double exact = 1.0 - cv::countNonZero(diff.reshape(1)) / static_cast<double>(diff.total() * 3);
  std::printf("gfpgan restored uint8: max %g levels, %.5f%% of values exact (tolerance 1 / 99.9%%)\n", mx, 100 * exact);
  EXPECT_LE(mx, 1);
  EXPECT_GE(exact, 0.999);
}

TEST(Gfpgan, NoiseModes) {
  auto m = tiny();
  const at::Tensor x = anitalker::face::gfpgan_input(image("aligned_crop_512_bgr.png"));
  const at::Tensor none = m->forward(x, Noise::None);
  // The fixture's noise strengths are not zero, so every mode differs.
  EXPECT_GT((none - raw_output()).abs().max().item<float>(), 1e-3);
  at::manual_seed(5);
  const at::Tensor r1 = m->forward(x, Noise::Random);
  at::manual_seed(5);
  const at::Tensor r2 = m->forward(x, Noise::Random);
  EXPECT_TRUE(at::equal(r1, r2));
  EXPECT_GT((r1 - raw_output()).abs().max().item<float>(), 1e-3);
  EXPECT_EQ(anitalker::gfpgan::parse_noise("random"), Noise::Random);
  EXPECT_THAT(error_of([] { anitalker::gfpgan::parse_noise("fresh"); }), HasSubstr("stored, random or none"));
}

// warm_up: one grey face through the network with the stored noise (no
// random draws, the output unchanged), once for each model: a model made
// again (an element restarted; its packed and Winograd-transformed weights
// are its own) is warmed up again.
TEST(Gfpgan, WarmUpOncePerModel) {
  auto m = tiny();
  at::manual_seed(11);
  const at::Tensor draws = at::randn({4});
  at::manual_seed(11);
  EXPECT_TRUE(anitalker::gfpgan::warm_up(*m));
  EXPECT_FALSE(anitalker::gfpgan::warm_up(*m));
  EXPECT_TRUE(at::equal(at::randn({4}), draws));
  const at::Tensor x = anitalker::face::gfpgan_input(image("aligned_crop_512_bgr.png"));
  EXPECT_TRUE(at::equal(m->forward(x), raw_output()));
  const Model again(anitalker::StateDict(anitalker::Checkpoint::open(data("face-sr/gfpgan_tiny.pth"))), kCpu);
  EXPECT_NE(again.model_id(), m->model_id());
  EXPECT_TRUE(anitalker::gfpgan::warm_up(again));
  EXPECT_FALSE(anitalker::gfpgan::warm_up(again));
}

TEST(Gfpgan, PlainStateDictLoadsToo) {
  testutil::TempDir dir;
  const anitalker::StateDict sd(anitalker::Checkpoint::open(data("face-sr/gfpgan_tiny.pth")));
  rewrite(sd, dir / "plain.pth", "");
  rewrite(sd, dir / "params.pth", "params");
  const Model params(anitalker::StateDict(anitalker::Checkpoint::open(dir / "params.pth")), kCpu);
  EXPECT_EQ(params.unused_keys().size(), tiny()->unused_keys().size());
  const Model plain(anitalker::StateDict(anitalker::Checkpoint::open(dir / "plain.pth")), kCpu);
  const at::Tensor x = anitalker::face::gfpgan_input(image("aligned_crop_512_bgr.png"));
  EXPECT_TRUE(at::equal(plain.forward(x), raw_output()));
}

TEST(Gfpgan, ErrorsNameTheFileAndTheKey) {
  testutil::TempDir dir;
  const anitalker::StateDict sd(anitalker::Checkpoint::open(data("face-sr/gfpgan_tiny.pth")));
  rewrite(sd, dir / "broken.pth", "params_ema", "condition_shift.3.2.weight");
  const std::string msg =
      error_of([&] { Model(anitalker::StateDict(anitalker::Checkpoint::open(dir / "broken.pth")), kCpu); });
  EXPECT_THAT(msg, HasSubstr("broken.pth"));
  EXPECT_THAT(msg, HasSubstr("params_ema.condition_shift.3.2.weight"));
  EXPECT_THAT(error_of([&] { tiny()->forward(at::zeros({1, 3, 256, 256})); }), HasSubstr("[B, 3, 512, 512]"));
}

TEST(Gfpgan, BatchOfTwoIsTwoSingleImages) {
  // Per-sample modulated weights run as a grouped convolution over the batch.
  const at::Tensor x = anitalker::face::gfpgan_input(image("aligned_crop_512_bgr.png"));
  const at::Tensor y = tiny()->forward(at::cat({x.flip(3), x}, 0));
  ASSERT_EQ(y.size(0), 2);
  EXPECT_LE((y[1] - raw_output()[0]).abs().max().item<float>(), 1e-4);
  EXPECT_LE((y[0] - tiny()->forward(x.flip(3))[0]).abs().max().item<float>(), 1e-4);
}
