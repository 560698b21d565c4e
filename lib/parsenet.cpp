// ParseNet (spec/face-sr.md 4): encoder of down-sampling residual blocks,
// a residual body, up-sampling decoder, 3x3 heads.  Every ConvLayer is
// reflection pad -> conv -> batch norm (eval) -> leaky ReLU 0.2 with the
// reference's own ops (no folding of the norm into the conv), because one
// flipped label near the face edge moves the blurred paste mask by ~7e-4,
// far above its 1e-5 tolerance.
#include "parsenet.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "checkpoint.h"
#include "device.h"
#include "error.h"
#include "kernels.h"
#include "model_cache.h"
#include "state_dict.h"
#include "weights.h"

namespace anitalker::parsenet {

namespace {

enum class Scale { None, Down, Up };

struct ConvLayer {  // <p>.conv2d.{weight,bias}, <p>.norm.norm.*
  at::Tensor w, b;
  at::Tensor bn_w, bn_b, bn_mean, bn_var;  // defined for norm 'bn'
  Scale scale = Scale::None;
  bool act = false;     // LeakyReLU 0.2
  PackedConv packed;    // float32 on the CPU: w packed once (not walked)
  template <class F>
  void each(F& f) {
    visit_all(f, w, b, bn_w, bn_b, bn_mean, bn_var);
  }
};

ConvLayer conv_layer(const StateDict& sd, const std::string& p, int64_t cin, int64_t cout, Scale scale, bool norm,
                     bool act) {
  ConvLayer c;
  c.w = sd.get_float(p + ".conv2d.weight", {cout, cin, 3, 3});
  const int64_t n = c.w.size(0);
  if (norm) {
    // With batch norm the conv has no bias.
    const std::string q = p + ".norm.norm.";
    c.bn_w = sd.get_float(q + "weight", {n});
    c.bn_b = sd.get_float(q + "bias", {n});
    c.bn_mean = sd.get_float(q + "running_mean", {n});
    c.bn_var = sd.get_float(q + "running_var", {n});
  } else {
    c.b = sd.get_float(p + ".conv2d.bias", {n});
  }
  c.scale = scale;
  c.act = act;
  return c;
}

// ReflectionPad2d(1) of x, after a nearest 2x upsampling when `up`: the
// same values as upsample_nearest2d + reflection_pad2d (pure copies), in one
// strided copy into the padded buffer plus its border rows and columns.
// LibTorch 1.13's CPU reflection_pad2d and upsample_nearest2d are scalar
// loops: they took 27% of a 512x512 pass between them.
at::Tensor pad_reflect1(const at::Tensor& x, bool up) {  // x: contiguous in its own memory format
  const int64_t N = x.size(0), C = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t H = up ? 2 * h : h, W = up ? 2 * w : w;
  if (H < 2 || W < 2) {  // reflection needs two rows and columns: the library's own error
    at::Tensor y = up ? at::upsample_nearest2d(x, {H, W}, 2.0, 2.0) : x;
    return at::reflection_pad2d(y, {1, 1, 1, 1});
  }
  at::Tensor out = at::empty({N, C, H + 2, W + 2}, x.options().memory_format(x.suggest_memory_format()));
  at::Tensor inner = out.narrow(2, 1, H).narrow(3, 1, W);
  if (up) {
    // inner viewed as [N, C, h, 2, w, 2]: each input pixel fills a 2x2 block.
    const auto s = inner.strides();
    inner.as_strided({N, C, h, 2, w, 2}, {s[0], s[1], 2 * s[2], s[2], 2 * s[3], s[3]})
        .copy_(x.view({N, C, h, 1, w, 1}).expand({N, C, h, 2, w, 2}));
  } else {
    inner.copy_(x);
  }
  // Columns -1 and W take columns 1 and W-2; then rows -1 and H (corners
  // included) take rows 1 and H-2 of the padded result.
  out.narrow(2, 1, H).select(3, 0).copy_(out.narrow(2, 1, H).select(3, 2));
  out.narrow(2, 1, H).select(3, W + 1).copy_(out.narrow(2, 1, H).select(3, W - 1));
  out.select(2, 0).copy_(out.select(2, 2));
  out.select(2, H + 1).copy_(out.select(2, H - 1));
  return out;
}

int64_t stride_of(const ConvLayer& c) { return c.scale == Scale::Down ? 2 : 1; }

at::Tensor run(const ConvLayer& c, const at::Tensor& in) {
  at::Tensor x = pad_reflect1(in.contiguous(in.suggest_memory_format()), c.scale == Scale::Up);
  if (c.packed.usable()) {
    x = c.packed(x, 0, 0);  // channels-last in, channels-last out
    if (c.b.defined()) x.add_(c.b.view({1, -1, 1, 1}));
  } else {
    x = at::conv2d(x, c.w, c.b, at::IntArrayRef{stride_of(c)});
  }
  if (c.bn_w.defined()) x = at::batch_norm(x, c.bn_w, c.bn_b, c.bn_mean, c.bn_var, false, 0.1, 1e-5, true);
  if (c.act) at::leaky_relu_(x, 0.2);  // in place: x is this layer's own
  return x;
}

struct ResidualBlock {
  ConvLayer shortcut;  // undefined weight: identity
  ConvLayer conv1, conv2;
  template <class F>
  void each(F& f) {
    visit_all(f, shortcut, conv1, conv2);
  }
};

// Up blocks scale in conv1, down blocks in conv2; the shortcut (a plain conv
// with bias) exists whenever the block rescales or changes width.
ResidualBlock residual_block(const StateDict& sd, const std::string& p, int64_t cin, Scale scale) {
  ResidualBlock r;
  r.conv1 = conv_layer(sd, p + ".conv1", cin, -1, scale == Scale::Up ? Scale::Up : Scale::None, true, true);
  const int64_t cout = r.conv1.w.size(0);
  r.conv2 = conv_layer(sd, p + ".conv2", cout, cout, scale == Scale::Down ? Scale::Down : Scale::None, true, false);
  if (scale != Scale::None || cin != cout)
    r.shortcut = conv_layer(sd, p + ".shortcut_func", cin, cout, scale, false, false);
  return r;
}

at::Tensor run(const ResidualBlock& r, const at::Tensor& x) {
  at::Tensor y = run(r.conv2, run(r.conv1, x));
  // identity + y, in y's own memory (float addition commutes exactly).
  return y.add_(r.shortcut.w.defined() ? run(r.shortcut, x) : x);
}

int count(const StateDict& sd, const std::string& group) {
  int n = 0;
  while (sd.has(group + "." + std::to_string(n) + ".conv1.conv2d.weight")) ++n;
  return n;
}

}  // namespace

struct Model::Weights {
  ConvLayer first;                                    // encoder.0
  std::vector<ResidualBlock> encoder, body, decoder;  // encoder.1.., body.*, decoder.*
  ConvLayer mask;                                     // out_mask_conv
  template <class F>
  void each(F& f) {
    visit_all(f, first, encoder, body, decoder, mask);
  }
};

Model::Model(const StateDict& sd, c10::Device device, at::ScalarType dtype) : device_(device), dtype_(dtype) {
  const std::string name = sd.checkpoint().name();
  if (!sd.has("encoder.0.conv2d.weight") || !sd.has("out_mask_conv.conv2d.weight"))
    throw format_error(name + ": no encoder.0.conv2d.weight / out_mask_conv.conv2d.weight: not a ParseNet checkpoint");
  auto w = std::make_shared<Weights>();
  w->first = conv_layer(sd, "encoder.0", 3, -1, Scale::None, false, false);
  int64_t c = w->first.w.size(0);
  // encoder.0 is the plain conv; encoder.1.. are the down blocks.
  int n = 1;
  while (sd.has("encoder." + std::to_string(n) + ".conv1.conv2d.weight")) {
    w->encoder.push_back(residual_block(sd, "encoder." + std::to_string(n), c, Scale::Down));
    c = w->encoder.back().conv1.w.size(0);
    ++n;
  }
  down_steps_ = static_cast<int>(w->encoder.size());
  const int body = count(sd, "body"), up = count(sd, "decoder");
  for (int i = 0; i < body; ++i) {
    w->body.push_back(residual_block(sd, "body." + std::to_string(i), c, Scale::None));
    if (w->body.back().conv1.w.size(0) != c)
      throw format_error(name + ": body." + std::to_string(i) + ".conv1.conv2d.weight: expected " + std::to_string(c) +
                         " output channels (the body keeps its width)");
  }
  for (int i = 0; i < up; ++i) {
    w->decoder.push_back(residual_block(sd, "decoder." + std::to_string(i), c, Scale::Up));
    c = w->decoder.back().conv1.w.size(0);
  }
  if (up != down_steps_)
    throw format_error(name + ": " + std::to_string(down_steps_) + " encoder blocks but " + std::to_string(up) +
                       " decoder blocks: the parser must output its input size");
  w->mask = conv_layer(sd, "out_mask_conv", c, -1, Scale::None, false, false);
  num_classes_ = static_cast<int>(w->mask.w.size(0));
  unused_ = sd.unused();

  place_weights(*w, device_, dtype_);
  // On the CPU in float32 every convolution runs channels-last through
  // oneDNN with its weights packed once (PackedConv): LibTorch 1.13 turns
  // each NCHW activation into oneDNN's blocked layout and back at every
  // call, and reorders the weights too.
  // Not on the device-independent path (a GPU's; ANITALKER_GENERIC=1 on the
  // CPU, device.h generic_path).
  generic_ = generic_path(device_);
  if (device_.is_cpu() && dtype_ == at::kFloat && !generic_) {  // (not usable() without oneDNN)
    auto pack = [](ConvLayer& c) {
      if (c.w.defined()) c.packed = PackedConv(c.w, {stride_of(c), stride_of(c)});
    };
    pack(w->first);
    pack(w->mask);
    for (auto* blocks : {&w->encoder, &w->body, &w->decoder})
      for (ResidualBlock& r : *blocks) {
        pack(r.shortcut);
        pack(r.conv1);
        pack(r.conv2);
      }
  }
  w_ = w;
}

std::shared_ptr<const Model> Model::load(const std::string& path, c10::Device device) {
  return shared_model<Model>(path, device,
                             [&] { return std::make_shared<const Model>(StateDict(Checkpoint::open(path)), device); });
}

at::Tensor Model::forward(const at::Tensor& x_in) const {
  const Weights& w = *w_;
  const int64_t m = int64_t{1} << down_steps_;
  if (x_in.dim() != 4 || x_in.size(1) != 3 || x_in.size(2) % m != 0 || x_in.size(3) % m != 0)
    throw Error(Error::Kind::Usage, "parsenet: expected an image of shape [B, 3, H, W] with H and W multiples of " +
                                        std::to_string(m) + ", got " + c10::str(x_in.sizes()));
  at::NoGradGuard no_grad;
  const at::MemoryFormat layout = w.first.packed.usable() ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor feat = run(w.first, x_in.to(device_, dtype_).contiguous(layout));
  for (const ResidualBlock& r : w.encoder) feat = run(r, feat);
  at::Tensor x = feat;
  for (const ResidualBlock& r : w.body) x = run(r, x);
  x = feat + x;
  for (const ResidualBlock& r : w.decoder) x = run(r, x);
  return run(w.mask, x);
}

at::Tensor Model::labels(const at::Tensor& x) const { return label_map(x).to(at::kCPU, at::kByte); }
at::Tensor Model::label_map(const at::Tensor& x) const { return forward(x).argmax(1); }

bool warm_up(const Model& model) {
  if (!model.warm_ups().first("512x512")) return false;
  c10::InferenceMode guard;
  model.label_map(at::zeros({1, 3, 512, 512}, at::TensorOptions().dtype(at::kFloat).device(model.device())));
  return true;
}

}  // namespace anitalker::parsenet
