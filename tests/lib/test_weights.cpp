// One walk over every network's weights (lib/weights.h), checked without a
// GPU: each of the six networks is built with its weights placed in float64
// through the same walk that moves them to a GPU, and run on the test
// models.  A tensor the walk misses stays float32, and a convolution, linear
// layer, matrix product or LSTM that meets it fails here as it would fail on
// a GPU (a CPU tensor among CUDA ones); so does an input cast hard-coded to
// float32.  The float64 results must also agree with float32's.
#include <ATen/ATen.h>
#include <gmock/gmock.h>

#include "checkpoint.h"
#include "gfpgan.h"
#include "hubert.h"
#include "hubert_config.h"
#include "lia.h"
#include "motion.h"
#include "motion_driver.h"
#include "parsenet.h"
#include "retinaface.h"
#include "state_dict.h"
#include "test_util.h"
#include "weights.h"

using anitalker::Checkpoint;
using anitalker::StateDict;
using testutil::data;

namespace {

const c10::Device kCpu(c10::kCPU);

StateDict open(const std::string& path) { return StateDict(Checkpoint::open(path)); }

// max |b - a| / max |a|, with b in float64 and of a's shape.
double relative(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(b.scalar_type(), at::kDouble);
  EXPECT_EQ(a.sizes(), b.sizes());
  const at::Tensor ad = a.to(at::kDouble);
  return (b - ad).abs().max().item<double>() / std::max(ad.abs().max().item<double>(), 1e-30);
}

struct Leaf {
  at::Tensor a, b;
  template <class F>
  void each(F& f) {
    anitalker::visit_all(f, a, b);
  }
};
struct Tree {
  Leaf one;
  std::vector<std::vector<Leaf>> many;
  Leaf fixed[2];
  at::Tensor t;
  template <class F>
  void each(F& f) {
    anitalker::visit_all(f, one, many, fixed, t);
  }
};

}  // namespace

TEST(Weights, VisitReachesNestedMembers) {
  Tree tree;
  tree.one = {at::ones({1}), at::ones({2})};
  tree.many = {{Leaf{at::ones({3}), at::Tensor()}}, {}, {Leaf{at::ones({4}), at::ones({5})}}};
  tree.fixed[0] = {at::ones({6}), at::ones({7})};
  tree.t = at::ones({8}, at::kInt);
  int visited = 0;
  auto count = [&](at::Tensor&) { ++visited; };
  anitalker::visit(tree, count);
  EXPECT_EQ(visited, 11);  // undefined ones too
  anitalker::place_weights(tree, kCpu, at::kDouble);
  for (const at::Tensor* t : {&tree.one.a, &tree.one.b, &tree.many[0][0].a, &tree.many[2][0].b, &tree.fixed[0].a})
    EXPECT_EQ(t->scalar_type(), at::kDouble);
  EXPECT_FALSE(tree.many[0][0].b.defined());
  EXPECT_FALSE(tree.fixed[1].a.defined());
  EXPECT_EQ(tree.t.scalar_type(), at::kInt);  // integer tensors keep their type
}

TEST(Weights, HubertInFloat64) {
  const std::string dir = data("chain/chinese-hubert-large");
  const auto cfg = anitalker::hubert::read_config(dir + "/config.json");
  const anitalker::hubert::Model f(cfg, open(dir + "/pytorch_model.bin"), kCpu);
  const anitalker::hubert::Model d(cfg, open(dir + "/pytorch_model.bin"), kCpu, at::kDouble);
  at::manual_seed(1);
  const at::Tensor wave = at::randn({8000}) * 0.1;
  EXPECT_LT(relative(f.hidden_states(wave), d.hidden_states(wave)), 1e-4);
}

TEST(Weights, RendererInFloat64) {
  const std::string path = data("chain/stage1.ckpt");
  const anitalker::lia::Model f(open(path), kCpu);
  const anitalker::lia::Model d(open(path), kCpu, at::kDouble);
  at::manual_seed(2);
  const at::Tensor image = at::rand({1, 3, f.size(), f.size()}) * 2 - 1;
  const at::Tensor motion = at::randn({3, f.motion_dim()}) * 0.5;
  const anitalker::lia::Portrait pf = f.encode(image), pd = d.encode(image);
  EXPECT_LT(relative(pf.start, pd.start), 1e-4);
  EXPECT_LT(relative(pf.direction, pd.direction), 1e-4);
  EXPECT_LT(relative(f.render(pf, motion), d.render(pd, motion)), 1e-3);
}

TEST(Weights, MotionInFloat64EveryVariant) {
  for (const char* name : {"audio_only_hubert", "pose_only_hubert", "full_control_hubert", "pose_only_mfcc",
                           "full_control_mfcc"}) {
    SCOPED_TRACE(name);
    const std::string path = data(std::string("chain/stage2_") + name + ".ckpt");
    const anitalker::motion::Model f(open(path), kCpu);
    const anitalker::motion::Model d(open(path), kCpu, at::kDouble);
    at::manual_seed(3);
    const int64_t T = 12, n = (f.hubert() ? 2 : 4) * T;
    const at::Tensor feats =
        f.hubert() ? at::randn({n, f.hubert_layers(), f.audio_dim()}) : at::randn({n, f.audio_dim()});
    const at::Tensor audio = anitalker::motion::audio_input(f, feats);
    const at::Tensor start = at::randn({1, f.start_dim()}), direction = at::randn({1, f.motion_dim()});
    const at::Tensor noise = f.seed_noise(0, T);
    for (bool control : {false, true}) {
      anitalker::motion::Controls c;
      c.control = control;
      const anitalker::motion::Generated gf = anitalker::motion::generate(f, start, direction, audio, c, noise, 5);
      const anitalker::motion::Generated gd = anitalker::motion::generate(d, start, direction, audio, c, noise, 5);
      EXPECT_LT(relative(gf.motion, gd.motion), 1e-3) << (control ? "control" : "predicted");
    }
  }
}

TEST(Weights, FaceRestorationInFloat64) {
  at::manual_seed(4);
  const at::Tensor face = at::rand({1, 3, 512, 512}) * 2 - 1;
  {
    const std::string path = data("face-sr/gfpgan_tiny.pth");
    const anitalker::gfpgan::Model f(open(path), kCpu), d(open(path), kCpu, at::kDouble);
    EXPECT_LT(relative(f.forward(face), d.forward(face)), 1e-4);
  }
  {
    const std::string path = data("face-sr/parsenet_tiny.pth");
    const anitalker::parsenet::Model f(open(path), kCpu), d(open(path), kCpu, at::kDouble);
    EXPECT_LT(relative(f.forward(face), d.forward(face)), 1e-4);
  }
  {
    const std::string path = data("face-sr/retinaface_narrow.pth");
    const anitalker::retinaface::Model f(open(path), kCpu), d(open(path), kCpu, at::kDouble);
    const at::Tensor x = at::randn({1, 3, 64, 64}) * 50;
    const anitalker::retinaface::Heads hf = f.forward(x), hd = d.forward(x);
    EXPECT_LT(relative(hf.loc, hd.loc), 1e-4);
    EXPECT_LT(relative(hf.conf, hd.conf), 1e-4);
    EXPECT_LT(relative(hf.landms, hd.landms), 1e-4);
  }
}
