// RetinaFace-ResNet50 (spec/face-sr.md 3): torchvision ResNet-50 body
// (layers 2-4), FPN, SSH context modules, 1x1 heads; then priors, decoding,
// threshold and NMS as facexlib does them.  Batch norm runs as the
// reference's eval-mode op (not folded into the convs), and the decoding
// uses the same float32 tensor expressions, so that boxes agree to the last
// bit on the same LibTorch.
#include "retinaface.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "checkpoint.h"
#include "device.h"
#include "error.h"
#include "model_cache.h"
#include "state_dict.h"
#include "weights.h"

namespace anitalker::retinaface {

namespace {

struct ConvBn {  // conv without bias + BatchNorm2d (eval)
  at::Tensor w, bn_w, bn_b, bn_mean, bn_var;
  int64_t stride = 1, pad = 0;
  template <class F>
  void each(F& f) {
    visit_all(f, w, bn_w, bn_b, bn_mean, bn_var);
  }
};

// conv at `conv_key`, batch norm under `bn_prefix` (weight, bias,
// running_mean, running_var; num_batches_tracked is not needed).
ConvBn conv_bn(const StateDict& sd, const std::string& conv_key, const std::string& bn_prefix, int64_t out, int64_t in,
               int64_t k, int64_t stride) {
  ConvBn c;
  c.w = sd.get_float(conv_key, {out, in, k, k});
  const int64_t n = c.w.size(0);
  c.bn_w = sd.get_float(bn_prefix + ".weight", {n});
  c.bn_b = sd.get_float(bn_prefix + ".bias", {n});
  c.bn_mean = sd.get_float(bn_prefix + ".running_mean", {n});
  c.bn_var = sd.get_float(bn_prefix + ".running_var", {n});
  c.stride = stride;
  c.pad = k / 2;
  return c;
}

// facexlib's Sequential(conv, bn[, leaky relu]): keys <p>.0.weight, <p>.1.*.
ConvBn seq_conv_bn(const StateDict& sd, const std::string& p, int64_t out, int64_t in, int64_t k) {
  return conv_bn(sd, p + ".0.weight", p + ".1", out, in, k, 1);
}

at::Tensor run(const ConvBn& c, const at::Tensor& x) {
  at::Tensor y = at::conv2d(x, c.w, c10::nullopt, at::IntArrayRef{c.stride}, at::IntArrayRef{c.pad});
  return at::batch_norm(y, c.bn_w, c.bn_b, c.bn_mean, c.bn_var, false, 0.1, 1e-5, true);
}

// LeakyReLU(slope) with facexlib's rule: slope 0.1 only for <= 64 channels.
at::Tensor act(const at::Tensor& x, double slope) { return slope == 0 ? at::relu(x) : at::leaky_relu(x, slope); }

struct Bottleneck {                  // torchvision v1.5: the stride sits in conv2
  ConvBn conv1, conv2, conv3, down;  // down.w undefined: identity
  template <class F>
  void each(F& f) {
    visit_all(f, conv1, conv2, conv3, down);
  }
};

struct Ssh {
  ConvBn c3, c5_1, c5_2, c7_2, c7_3;
  double slope = 0;
  template <class F>
  void each(F& f) {
    visit_all(f, c3, c5_1, c5_2, c7_2, c7_3);
  }
};

struct Head {
  at::Tensor w, b;  // 1x1 conv with bias
  template <class F>
  void each(F& f) {
    visit_all(f, w, b);
  }
};

}  // namespace

struct Model::Weights {
  ConvBn stem;                                  // body.conv1, body.bn1
  std::vector<std::vector<Bottleneck>> layers;  // body.layer1..4
  ConvBn out1, out2, out3, merge1, merge2;      // fpn.*
  double fpn_slope = 0;
  Ssh ssh[3];                   // ssh1..3
  Head cls[3], box[3], ldm[3];  // ClassHead, BboxHead, LandmarkHead
  template <class F>
  void each(F& f) {
    visit_all(f, stem, layers, out1, out2, out3, merge1, merge2, ssh, cls, box, ldm);
  }
};

Model::Model(const StateDict& all, c10::Device device, at::ScalarType dtype)
    : device_(device), dtype_(dtype), generic_(generic_path(device)) {
  // The released file carries DataParallel's "module." prefix; facexlib
  // strips it, so both spellings load.
  const std::string prefix = all.has("module.body.conv1.weight") ? "module." : "";
  const StateDict sd = all.sub(prefix);
  const std::string name = all.checkpoint().name();
  if (!sd.has("body.conv1.weight"))
    throw format_error(name + ": no body.conv1.weight (with or without module.): not a RetinaFace-ResNet50 checkpoint");
  auto w = std::make_shared<Weights>();

  // Backbone.
  w->stem = conv_bn(sd, "body.conv1.weight", "body.bn1", -1, 3, 7, 2);
  int64_t c = w->stem.w.size(0);
  std::vector<int64_t> stage_channels;
  for (int l = 1; l <= 4; ++l) {
    const std::string lp = "body.layer" + std::to_string(l) + ".";
    std::vector<Bottleneck> blocks;
    for (int i = 0; sd.has(lp + std::to_string(i) + ".conv1.weight"); ++i) {
      const std::string p = lp + std::to_string(i) + ".";
      const int64_t stride = (l > 1 && i == 0) ? 2 : 1;
      Bottleneck b;
      b.conv1 = conv_bn(sd, p + "conv1.weight", p + "bn1", -1, c, 1, 1);
      const int64_t mid = b.conv1.w.size(0);
      b.conv2 = conv_bn(sd, p + "conv2.weight", p + "bn2", mid, mid, 3, stride);
      b.conv3 = conv_bn(sd, p + "conv3.weight", p + "bn3", -1, mid, 1, 1);
      const int64_t out = b.conv3.w.size(0);
      if (sd.has(p + "downsample.0.weight")) {
        b.down = conv_bn(sd, p + "downsample.0.weight", p + "downsample.1", out, c, 1, stride);
      } else if (stride != 1 || out != c) {
        throw format_error(name + ": missing tensor '" + prefix + p + "downsample.0.weight' (block changes size)");
      }
      blocks.push_back(b);
      c = out;
    }
    if (blocks.empty()) throw format_error(name + ": missing tensor '" + prefix + lp + "0.conv1.weight'");
    w->layers.push_back(std::move(blocks));
    stage_channels.push_back(c);
  }

  // FPN over layer2..4.
  const int64_t oc = sd.shape("fpn.output1.0.weight").at(0);
  w->fpn_slope = oc <= 64 ? 0.1 : 0.0;
  w->out1 = seq_conv_bn(sd, "fpn.output1", oc, stage_channels[1], 1);
  w->out2 = seq_conv_bn(sd, "fpn.output2", oc, stage_channels[2], 1);
  w->out3 = seq_conv_bn(sd, "fpn.output3", oc, stage_channels[3], 1);
  w->merge1 = seq_conv_bn(sd, "fpn.merge1", oc, oc, 3);
  w->merge2 = seq_conv_bn(sd, "fpn.merge2", oc, oc, 3);

  // SSH and heads per level.
  for (int k = 0; k < 3; ++k) {
    const std::string p = "ssh" + std::to_string(k + 1) + ".";
    Ssh& s = w->ssh[k];
    s.slope = oc <= 64 ? 0.1 : 0.0;
    s.c3 = seq_conv_bn(sd, p + "conv3X3", oc / 2, oc, 3);
    s.c5_1 = seq_conv_bn(sd, p + "conv5X5_1", oc / 4, oc, 3);
    s.c5_2 = seq_conv_bn(sd, p + "conv5X5_2", oc / 4, oc / 4, 3);
    s.c7_2 = seq_conv_bn(sd, p + "conv7X7_2", oc / 4, oc / 4, 3);
    s.c7_3 = seq_conv_bn(sd, p + "conv7x7_3", oc / 4, oc / 4, 3);  // sic: lower-case x
    auto head = [&](const std::string& group, int64_t per_anchor) {
      const std::string hp = group + "." + std::to_string(k) + ".conv1x1.";
      Head h;
      h.w = sd.get_float(hp + "weight", {2 * per_anchor, oc, 1, 1});
      h.b = sd.get_float(hp + "bias", {2 * per_anchor});
      return h;
    };
    w->cls[k] = head("ClassHead", 2);
    w->box[k] = head("BboxHead", 4);
    w->ldm[k] = head("LandmarkHead", 10);
  }
  unused_ = all.unused();

  place_weights(*w, device_, dtype_);
  w_ = w;
}

std::shared_ptr<const Model> Model::load(const std::string& path, c10::Device device) {
  return shared_model<Model>(path, device,
                             [&] { return std::make_shared<const Model>(StateDict(Checkpoint::open(path)), device); });
}

namespace {

at::Tensor run(const Bottleneck& b, const at::Tensor& x) {
  at::Tensor y = at::relu(run(b.conv1, x));
  y = at::relu(run(b.conv2, y));
  y = run(b.conv3, y);
  return at::relu(y + (b.down.w.defined() ? run(b.down, x) : x));
}

at::Tensor run(const Ssh& s, const at::Tensor& x) {
  at::Tensor a = run(s.c3, x);
  at::Tensor t = act(run(s.c5_1, x), s.slope);
  at::Tensor b = run(s.c5_2, t);
  at::Tensor u = act(run(s.c7_2, t), s.slope);
  at::Tensor c = run(s.c7_3, u);
  return at::relu(at::cat({a, b, c}, 1));
}

// 1x1 conv -> NHWC -> (B, H*W*anchors, per_anchor).
at::Tensor run(const Head& h, const at::Tensor& x, int64_t per_anchor) {
  at::Tensor y = at::conv2d(x, h.w, h.b).permute({0, 2, 3, 1}).contiguous();
  return y.view({y.size(0), -1, per_anchor});
}

at::Tensor nearest_to(const at::Tensor& x, const at::Tensor& like) {
  return at::upsample_nearest2d(x, {like.size(2), like.size(3)});
}

}  // namespace

Heads Model::forward(const at::Tensor& x_in) const {
  const Weights& w = *w_;
  if (x_in.dim() != 4 || x_in.size(1) != 3)
    throw Error(Error::Kind::Usage,
                "retinaface: expected an image of shape [B, 3, H, W], got " + c10::str(x_in.sizes()));
  at::NoGradGuard no_grad;
  at::Tensor x = x_in.to(device_, dtype_).contiguous();
  x = at::relu(run(w.stem, x));
  x = at::max_pool2d(x, {3, 3}, {2, 2}, {1, 1});
  std::vector<at::Tensor> stages;
  for (const auto& layer : w.layers) {
    for (const Bottleneck& b : layer) x = run(b, x);
    stages.push_back(x);
  }
  // FPN (spec 3.2): top-down with nearest resizes to the lower level's size.
  at::Tensor o1 = act(run(w.out1, stages[1]), w.fpn_slope);
  at::Tensor o2 = act(run(w.out2, stages[2]), w.fpn_slope);
  at::Tensor o3 = act(run(w.out3, stages[3]), w.fpn_slope);
  o2 = act(run(w.merge2, o2 + nearest_to(o3, o2)), w.fpn_slope);
  o1 = act(run(w.merge1, o1 + nearest_to(o2, o1)), w.fpn_slope);
  const at::Tensor feats[3] = {run(w.ssh[0], o1), run(w.ssh[1], o2), run(w.ssh[2], o3)};
  std::vector<at::Tensor> loc, conf, ldm;
  for (int k = 0; k < 3; ++k) {
    loc.push_back(run(w.box[k], feats[k], 4));
    conf.push_back(run(w.cls[k], feats[k], 2));
    ldm.push_back(run(w.ldm[k], feats[k], 10));
  }
  // One copy to the host for the three heads (a GPU waits once).
  const at::Tensor all =
      at::cat({at::cat(loc, 1), at::softmax(at::cat(conf, 1), -1), at::cat(ldm, 1)}, 2).cpu();
  Heads h;
  h.loc = all.narrow(2, 0, 4);
  h.conf = all.narrow(2, 4, 2);
  h.landms = all.narrow(2, 6, 10);
  return h;
}

at::Tensor priors(int height, int width) {
  // Python computes in double and torch.Tensor() rounds to float32.
  static constexpr int kSteps[3] = {8, 16, 32};
  static constexpr int kMinSizes[3][2] = {{16, 32}, {64, 128}, {256, 512}};
  std::vector<float> a;
  for (int k = 0; k < 3; ++k) {
    const int step = kSteps[k];
    const int fh = (height + step - 1) / step, fw = (width + step - 1) / step;
    for (int i = 0; i < fh; ++i)
      for (int j = 0; j < fw; ++j)
        for (int m : kMinSizes[k]) {
          a.push_back(static_cast<float>((j + 0.5) * step / width));
          a.push_back(static_cast<float>((i + 0.5) * step / height));
          a.push_back(static_cast<float>(static_cast<double>(m) / width));
          a.push_back(static_cast<float>(static_cast<double>(m) / height));
        }
  }
  return at::from_blob(a.data(), {static_cast<int64_t>(a.size() / 4), 4}, at::kFloat).clone();
}

at::Tensor to_input(const cv::Mat& bgr, c10::Device device) {
  if (bgr.empty() || bgr.type() != CV_8UC3)
    throw Error(Error::Kind::Usage, "retinaface: expected a BGR uint8 image (CV_8UC3)");
  // The bytes copied once, then the same float32 subtraction on the device.
  const at::Tensor& mean = device_constant("retinaface mean", device, [] {
    return at::tensor({104.f, 117.f, 123.f}, at::kFloat).view({1, 3, 1, 1});
  });
  const at::Tensor u8 =
      at::from_blob(bgr.data, {bgr.rows, bgr.cols, 3}, {static_cast<int64_t>(bgr.step[0]), 3, 1}, at::kByte).to(device);
  return (u8.permute({2, 0, 1}).unsqueeze(0).to(at::kFloat) - mean).contiguous();
}

at::Tensor to_input(const cv::Mat& bgr) {
  if (bgr.empty() || bgr.type() != CV_8UC3)
    throw Error(Error::Kind::Usage, "retinaface: expected a BGR uint8 image (CV_8UC3)");
  const int h = bgr.rows, w = bgr.cols;
  at::Tensor t = at::empty({1, 3, h, w}, at::kFloat);
  float* p = t.data_ptr<float>();
  const float mean[3] = {104.f, 117.f, 123.f};  // B, G, R
  const size_t plane = static_cast<size_t>(h) * w;
  for (int y = 0; y < h; ++y) {
    const uint8_t* row = bgr.ptr<uint8_t>(y);
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        p[c * plane + static_cast<size_t>(y) * w + x] = static_cast<float>(row[3 * x + c]) - mean[c];
  }
  return t;
}

at::Tensor decode(const Heads& heads, const at::Tensor& pri, int height, int width, float conf_threshold,
                  double nms_threshold) {
  const at::Tensor loc = heads.loc[0].to(at::kCPU, at::kFloat), pre = heads.landms[0].to(at::kCPU, at::kFloat);
  const at::Tensor scores = heads.conf[0].select(1, 1).to(at::kCPU, at::kFloat).contiguous();
  const at::Tensor p = pri.to(at::kCPU, at::kFloat);
  if (loc.size(0) != p.size(0) || pre.size(0) != p.size(0) || scores.size(0) != p.size(0))
    throw Error(Error::Kind::Usage, "retinaface decode: " + std::to_string(p.size(0)) + " priors but heads of " +
                                        c10::str(heads.loc.sizes()) + ", " + c10::str(heads.conf.sizes()) + ", " +
                                        c10::str(heads.landms.sizes()));
  // facexlib's decode / decode_landm (variances 0.1, 0.2), the same float32
  // expressions, then * (W, H, ...) (resize is 1).
  const at::Tensor pc = p.slice(1, 0, 2), ps = p.slice(1, 2, 4);
  at::Tensor boxes = at::cat({pc + loc.slice(1, 0, 2) * 0.1 * ps, ps * at::exp(loc.slice(1, 2, 4) * 0.2)}, 1);
  boxes.slice(1, 0, 2) -= boxes.slice(1, 2, 4) / 2;
  boxes.slice(1, 2, 4) += boxes.slice(1, 0, 2);
  const float W = static_cast<float>(width), H = static_cast<float>(height);
  boxes = (boxes * at::tensor({W, H, W, H})).contiguous();
  std::vector<at::Tensor> lm;
  for (int m = 0; m < 5; ++m) lm.push_back(pc + pre.slice(1, 2 * m, 2 * m + 2) * 0.1 * ps);
  const at::Tensor landms = (at::cat(lm, 1) * at::tensor({W, H, W, H, W, H, W, H, W, H})).contiguous();

  // Threshold (numpy compares in float32), then order by descending score:
  // numpy's argsort reversed, i.e. ties in reverse index order.
  const float* s = scores.data_ptr<float>();
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < scores.size(0); ++i)
    if (s[i] > conf_threshold) idx.push_back(i);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return s[a] < s[b]; });
  std::reverse(idx.begin(), idx.end());

  // torchvision.ops.nms: float32 IoU, areas without +1, strict > threshold
  // (compared in double).
  const float* bx = boxes.data_ptr<float>();
  std::vector<float> area(idx.size());
  for (size_t a = 0; a < idx.size(); ++a) {
    const float* b = bx + 4 * idx[a];
    area[a] = (b[2] - b[0]) * (b[3] - b[1]);
  }
  std::vector<char> suppressed(idx.size(), 0);
  std::vector<int64_t> keep;
  for (size_t a = 0; a < idx.size(); ++a) {
    if (suppressed[a]) continue;
    keep.push_back(idx[a]);
    const float* bi = bx + 4 * idx[a];
    for (size_t c = a + 1; c < idx.size(); ++c) {
      if (suppressed[c]) continue;
      const float* bj = bx + 4 * idx[c];
      const float xx1 = std::max(bi[0], bj[0]), yy1 = std::max(bi[1], bj[1]);
      const float xx2 = std::min(bi[2], bj[2]), yy2 = std::min(bi[3], bj[3]);
      const float w = std::max(0.0f, xx2 - xx1), h = std::max(0.0f, yy2 - yy1);
      const float inter = w * h;
      const float ovr = inter / (area[a] + area[c] - inter);
      if (static_cast<double>(ovr) > nms_threshold) suppressed[c] = 1;
    }
  }
  at::Tensor out = at::empty({static_cast<int64_t>(keep.size()), 15}, at::kFloat);
  float* o = out.data_ptr<float>();
  const float* lp = landms.data_ptr<float>();
  for (int64_t k : keep) {
    std::copy(bx + 4 * k, bx + 4 * k + 4, o);
    o[4] = s[k];
    std::copy(lp + 10 * k, lp + 10 * k + 10, o + 5);
    o += 15;
  }
  return out;
}

at::Tensor Model::detect(const cv::Mat& bgr, float conf_threshold, double nms_threshold) const {
  const Heads h = forward(generic_ ? to_input(bgr, device_) : to_input(bgr));
  return decode(h, priors(bgr.rows, bgr.cols), bgr.rows, bgr.cols, conf_threshold, nms_threshold);
}

}  // namespace anitalker::retinaface
