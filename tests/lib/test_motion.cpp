// Stage 2 (motion generator + DDIM sampler) against the reference's outputs in
// tests/data/motion, with the tolerances of the fixtures' README.
#include "motion.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>

#include "checkpoint.h"
#include "checkpoint_writer.h"
#include "error.h"
#include "state_dict.h"
#include "test_util.h"

using anitalker::read_npy_tensor;
using anitalker::motion::Model;
using anitalker::motion::Variant;
using testing::HasSubstr;
using testutil::data;
using testutil::error_of;

namespace {

struct Case {
  Variant v;
  bool cf;
};

std::string type(Variant v) { return anitalker::motion::variant_name(v); }
at::Tensor in(const std::string& n) { return read_npy_tensor(data("motion/in_" + n + ".npy")); }
at::Tensor ref(Variant v, const std::string& n) { return read_npy_tensor(data("motion/" + type(v) + "__" + n + ".npy")); }
float max_abs(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a.to(at::kFloat) - b.to(at::kFloat)).abs().max().item<float>();
}

std::shared_ptr<const Model> model(Variant v) { return Model::load(data("motion/ckpt_" + type(v) + ".pt"), c10::Device(c10::kCPU), v); }

anitalker::motion::Condition cond(const Model& m, bool cf) {
  return m.condition(in("start"), in("direction"), m.hubert() ? in("hubert") : in("mfcc"), cf, in("pose"), in("location"), in("scale"));
}

const Case kCases[] = {{Variant::HubertAudioOnly, false}, {Variant::HubertPoseOnly, false},   {Variant::HubertPoseOnly, true},
                       {Variant::HubertFullControl, false}, {Variant::HubertFullControl, true}, {Variant::MfccPoseOnly, false},
                       {Variant::MfccPoseOnly, true},      {Variant::MfccFullControl, false},   {Variant::MfccFullControl, true}};

class Motion : public testing::TestWithParam<Case> {};

std::string tag(const Case& c) { return std::string(c.cf ? "cf1" : "cf0"); }

TEST_P(Motion, ForwardT500) {
  const Case c = GetParam();
  auto m = model(c.v);
  const std::string p = "fwd_t500_" + tag(c) + "__";
  auto cd = cond(*m, c.cf);
  anitalker::motion::Taps taps;
  at::Tensor eps = m->denoise(cd, ref(c.v, "noisyT_seed0"), 500.0, &taps);
  const float ds = max_abs(cd.speech, ref(c.v, p + "speech"));
  const float dc = max_abs(taps.concat, ref(c.v, p + "concat"));
  const float dd = max_abs(taps.decoder, ref(c.v, p + "decoder"));
  const float de = max_abs(eps, ref(c.v, p + "eps"));
  EXPECT_LE(ds, 1e-4);
  EXPECT_LE(dc, 1e-4);
  EXPECT_LE(dd, 1e-4);
  EXPECT_LE(de, 1e-4);
  float dp = 0, dl = 0, dsc = 0;
  if (m->has_pose()) {
    dp = max_abs(cd.pose, ref(c.v, p + "pred_pose"));
    EXPECT_LE(dp, 1e-4);
  }
  if (m->has_location()) {
    dl = max_abs(cd.location, ref(c.v, p + "pred_location"));
    dsc = max_abs(cd.scale, ref(c.v, p + "pred_scale"));
    EXPECT_LE(dl, 1e-4);
    EXPECT_LE(dsc, 1e-4);
  }
  std::printf("[%s %s] max abs: speech %.3g concat %.3g decoder %.3g eps %.3g pose %.3g loc %.3g scale %.3g\n", type(c.v).c_str(),
              tag(c).c_str(), ds, dc, dd, de, dp, dl, dsc);
}

TEST_P(Motion, Samples) {
  const Case c = GetParam();
  auto m = model(c.v);
  auto cd = cond(*m, c.cf);
  at::Tensor noise = ref(c.v, "noisyT_seed0");
  float dt_x0 = 0, dt_x = 0;
  if (!c.cf) {
    anitalker::motion::Trajectory tr;
    at::Tensor s = m->sample(cd, noise, 10, &tr);
    ASSERT_EQ(tr.x.size(), 10u);
    dt_x0 = max_abs(at::stack(tr.pred_x0), ref(c.v, "traj_T10_cf0__pred_x0"));
    dt_x = max_abs(at::stack(tr.x), ref(c.v, "traj_T10_cf0__x"));
    EXPECT_LE(dt_x0, 1e-3);
    EXPECT_LE(dt_x, 1e-3);
    EXPECT_TRUE(at::equal(s, tr.x.back()));
  }
  const float d10 = max_abs(m->sample(cd, noise, 10), ref(c.v, "sample_T10_" + tag(c)));
  const float d50 = max_abs(m->sample(cd, noise, 50), ref(c.v, "sample_T50_" + tag(c)));
  EXPECT_LE(d10, 2e-4);
  EXPECT_LE(d50, 2e-4);
  std::printf("[%s %s] max abs: traj pred_x0 %.3g traj x %.3g T10 %.3g T50 %.3g\n", type(c.v).c_str(), tag(c).c_str(), dt_x0, dt_x, d10, d50);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Motion, testing::ValuesIn(kCases), [](const testing::TestParamInfo<Case>& i) {
  return type(i.param.v) + "_" + tag(i.param);
});

TEST(MotionSeed, NoiseSeed0BitExact) {
  const auto manifest = testutil::json_file(data("motion/manifest.json"));
  for (Variant v : {Variant::HubertAudioOnly, Variant::HubertPoseOnly, Variant::HubertFullControl, Variant::MfccPoseOnly, Variant::MfccFullControl}) {
    auto m = model(v);
    EXPECT_EQ(m->init_draws(), manifest["types"][type(v)]["uniform_draws_before_xT"].get<int64_t>()) << type(v);
    EXPECT_EQ(m->xT_numel(), 192) << type(v);
    at::Tensor n = m->seed_noise(0, 50);
    EXPECT_TRUE(at::equal(n, ref(v, "noisyT_seed0"))) << type(v);
  }
}

TEST(MotionSampler, Timesteps) {
  auto t50 = anitalker::motion::ddim_timesteps(50);
  ASSERT_EQ(t50.size(), 50u);
  EXPECT_EQ(t50.back(), 980);
  EXPECT_EQ(anitalker::motion::ddim_timesteps(10).back(), 900);
  EXPECT_EQ(anitalker::motion::ddim_timesteps(30).back(), 986);
  EXPECT_EQ(anitalker::motion::ddim_timesteps(7)[1], 143);
  EXPECT_EQ(anitalker::motion::ddim_timesteps(3)[1], 334);
  EXPECT_THAT(error_of([] { anitalker::motion::ddim_timesteps(999); }), HasSubstr("999 DDIM steps"));
}

TEST(MotionLoad, VariantsAndSharing) {
  EXPECT_EQ(model(Variant::MfccFullControl)->variant(), Variant::MfccFullControl);
  EXPECT_EQ(model(Variant::HubertPoseOnly).get(), model(Variant::HubertPoseOnly).get());
  EXPECT_THAT(error_of([] { Model::load(data("motion/ckpt_mfcc_pose_only.pt"), c10::Device(c10::kCPU), Variant::HubertFullControl); }),
              HasSubstr("ckpt_mfcc_pose_only.pt: a mfcc_pose_only checkpoint, but infer type hubert_full_control was asked for"));
}

TEST(MotionLoad, ErrorsNameFileAndKey) {
  testutil::TempDir dir;
  auto ckpt = anitalker::Checkpoint::open(data("motion/ckpt_hubert_pose_only.pt"));
  auto write = [&](const std::string& file, const std::string& drop, const std::string& reshape) {
    std::vector<anitalker::TensorToWrite> ts;
    std::vector<std::vector<float>> keep;
    keep.reserve(ckpt->keys().size());
    for (const std::string& k : ckpt->keys()) {
      if (k == drop) continue;
      const anitalker::TensorData& t = ckpt->at(k);
      std::vector<int64_t> shape = t.shape;
      if (k == reshape) shape[0] += 1;
      int64_t n = 1;
      for (int64_t s : shape) n *= s;
      keep.emplace_back(static_cast<size_t>(n), 0.1f);
      ts.push_back({k, anitalker::DType::Float32, shape, keep.back().data()});
    }
    anitalker::write_checkpoint(dir / file, ts);
  };
  write("missing.pt", "ema_model.pose_encoder.fc.bias", "");
  EXPECT_THAT(error_of([&] { Model::load(dir / "missing.pt", c10::Device(c10::kCPU)); }),
              HasSubstr("missing.pt: missing tensor 'ema_model.pose_encoder.fc.bias'"));
  write("shape.pt", "", "ema_model.coarse_decoder.encoders.1.feed_forward.w_2.bias");
  EXPECT_THAT(error_of([&] { Model::load(dir / "shape.pt", c10::Device(c10::kCPU)); }),
              HasSubstr("shape.pt: ema_model.coarse_decoder.encoders.1.feed_forward.w_2.bias: expected shape [56], got [57]"));
}

}  // namespace
