// GFPGANv1Clean (spec/face-sr.md 2): U-Net encoder, W+ style code, SFT
// conditions, StyleGAN2 "clean" decoder.  The operations follow the
// reference one for one (bilinear resizes with the same scale arguments,
// leaky ReLU after bias), with one exception on the CPU in float32: there
// every convolution runs channels-last with its weights packed once, and a
// modulated convolution of one image takes the style on its input channels
// and the demodulation on its output channels instead of modulating the
// weights per call (the same sums, rounded in another order; the decoder's
// modulated convolutions are half of the FLOPs).  The device-independent
// path (a GPU's) does the same for a batch of several faces, which is then
// one ordinary convolution instead of a grouped one over per-face weights;
// one face there keeps the per-sample modulated weights.
#include "gfpgan.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "checkpoint.h"
#include "error.h"
#include "kernels.h"
#include "model_cache.h"
#include "state_dict.h"
#include "weights.h"

namespace anitalker::gfpgan {

namespace {

constexpr double kSqrt2 = 1.4142135623730951;  // 2**0.5 in StyleConv

struct Conv {  // nn.Conv2d or nn.Linear: weight and optional bias
  at::Tensor w, b;
  at::Tensor hw;        // precision bf16 / fp16 without a packed copy: w in bfloat16 / float16 (made after placing; not visited)
  PackedConv packed;    // float32 on the CPU: w packed once, stride 1 (not visited)
  template <class F>
  void each(F& f) {
    visit_all(f, w, b);
  }
};

Conv conv_weights(const StateDict& sd, const std::string& p, int64_t out, int64_t in, int64_t k, bool bias = true) {
  Conv c;
  c.w = sd.get_float(p + ".weight", {out, in, k, k});
  if (bias) c.b = sd.get_float(p + ".bias", {c.w.size(0)});
  return c;
}

Conv linear_weights(const StateDict& sd, const std::string& p, int64_t out, int64_t in) {
  Conv c;
  c.w = sd.get_float(p + ".weight", {out, in});
  c.b = sd.get_float(p + ".bias", {c.w.size(0)});
  return c;
}

at::Tensor conv(const at::Tensor& x, const Conv& c, int64_t pad) {
  if (c.packed.usable()) {  // x's layout in and out: channels-last in the U-Net
    at::Tensor y = c.packed(x, pad, pad);
    return c.b.defined() ? y.add_(c.b.view({1, -1, 1, 1})) : y;
  }
  if (!c.hw.defined()) return at::conv2d(x, c.w, c.b, at::IntArrayRef{1}, at::IntArrayRef{pad});
  // bfloat16 / float16: the convolution alone, its bias added in float32.
  at::Tensor y = at::conv2d(x.to(c.hw.scalar_type()), c.hw, c10::nullopt, at::IntArrayRef{1}, at::IntArrayRef{pad})
                     .to(x.scalar_type());
  return c.b.defined() ? y.add_(c.b.view({1, -1, 1, 1})) : y;
}

// In place: every caller hands over a tensor of its own (a fresh result).
// The in-place ops below give the same bits as their out-of-place forms and
// spare a 512x512 pass its allocation.
at::Tensor lrelu(at::Tensor x) { return at::leaky_relu_(x, 0.2); }

// F.interpolate(x, scale_factor=s, mode='bilinear', align_corners=False):
// the scale goes to the kernel as given, as Python passes it.
at::Tensor resize(const at::Tensor& x, double s) {
  const int64_t h = static_cast<int64_t>(static_cast<double>(x.size(2)) * s);
  const int64_t w = static_cast<int64_t>(static_cast<double>(x.size(3)) * s);
  return at::upsample_bilinear2d(x, {h, w}, false, s, s);
}

struct ResBlock {  // spec 2.1
  Conv conv1, conv2, skip;
  double scale = 1;
  template <class F>
  void each(F& f) {
    visit_all(f, conv1, conv2, skip);
  }
};

ResBlock res_block(const StateDict& sd, const std::string& p, int64_t cin, double scale) {
  ResBlock r;
  r.conv1 = conv_weights(sd, p + ".conv1", cin, cin, 3);
  r.conv2 = conv_weights(sd, p + ".conv2", -1, cin, 3);
  r.skip = conv_weights(sd, p + ".skip", r.conv2.w.size(0), cin, 1, false);
  r.scale = scale;
  return r;
}

at::Tensor run(const ResBlock& r, const at::Tensor& x) {
  at::Tensor y = lrelu(conv(x, r.conv1, 1));
  y = resize(y, r.scale);
  y = lrelu(conv(y, r.conv2, 1));
  return y.add_(conv(resize(x, r.scale), r.skip, 0));
}

struct ModConv {  // spec 2.4, ModulatedConv2d
  at::Tensor w;   // (1, Cout, Cin, k, k)
  Conv modulation;
  bool demodulate = true, upsample = false;
  // precision bf16 / fp16: the convolution on the modulated weights rounded
  // to bfloat16 / float16 (kFloat: float32).
  at::ScalarType low = at::kFloat;
  // float32 on the CPU (not visited, made after placing): the style folded
  // into the input instead of the weights, w packed once, and for the
  // demodulation the sums of w^2 over each kernel, (Cout, Cin).
  PackedConv packed;
  at::Tensor w_sq;
  // The device-independent path's batches (run() below): the weights as
  // one convolution's, (Cout, Cin, k, k), in `low`; made after placing.
  at::Tensor w_low;
  bool grouped = false;  // ANITALKER_GFPGAN_GROUPED=1: batches as before (measurements)
  template <class F>
  void each(F& f) {
    visit_all(f, w, modulation);
  }
};

ModConv mod_conv(const StateDict& sd, const std::string& p, int64_t out, int64_t in, int64_t k, int64_t style,
                 bool demodulate, bool upsample) {
  ModConv m;
  m.w = sd.get_float(p + ".weight", {1, out, in, k, k});
  m.modulation = linear_weights(sd, p + ".modulation", m.w.size(2), style);
  m.demodulate = demodulate;
  m.upsample = upsample;
  return m;
}

at::Tensor run(const ModConv& m, at::Tensor x, const at::Tensor& latent) {
  const int64_t b = x.size(0), cin = x.size(1), cout = m.w.size(1), k = m.w.size(3);
  if (m.packed.usable() && b == 1) {
    // conv(x, w * s) * d == conv(x * s, w) * d: the same sums with the
    // style on the (upsampled) input channels and the demodulation on the
    // output channels, so the weights stay packed.  d from the kernel's
    // sums of squares: sum over (i, kernel) of (w s_i)^2 = w_sq s^2.
    const at::Tensor s = at::linear(latent, m.modulation.w, m.modulation.b);  // (1, Cin)
    if (m.upsample) x = resize(x, 2.0);
    at::Tensor y = m.packed(x * s.view({1, cin, 1, 1}), k / 2, k / 2);
    if (m.demodulate) y.mul_(at::rsqrt(at::mm(s * s, m.w_sq.t()) + 1e-8).view({1, cout, 1, 1}));
    return y;
  }
  if (b > 1 && m.w_low.defined() && !m.grouped) {
    // A batch of faces (a GPU's way): the style on the input channels and
    // the demodulation on the output ones, as above, so that the batch is
    // one ordinary convolution with shared weights instead of a grouped one
    // over per-face weights (StyleGAN2's unfused modulation); within float
    // rounding of it.
    const at::Tensor s = at::linear(latent, m.modulation.w, m.modulation.b);  // (B, Cin)
    if (m.upsample) x = resize(x, 2.0);
    const at::Tensor xs = x * s.view({b, cin, 1, 1});
    at::Tensor y = at::conv2d(xs.to(m.w_low.scalar_type()), m.w_low, c10::nullopt, at::IntArrayRef{1},
                              at::IntArrayRef{k / 2});
    if (y.scalar_type() != x.scalar_type()) y = y.to(x.scalar_type());
    if (m.demodulate) y.mul_(at::rsqrt(at::mm(s * s, m.w_sq.t()) + 1e-8).view({b, cout, 1, 1}));
    return y;
  }
  at::Tensor s = at::linear(latent, m.modulation.w, m.modulation.b).view({b, 1, cin, 1, 1});
  at::Tensor w = m.w * s;
  if (m.demodulate) {
    at::Tensor d = at::rsqrt(w.pow(2).sum({2, 3, 4}) + 1e-8);
    w = w * d.view({b, cout, 1, 1, 1});
  }
  w = w.view({b * cout, cin, k, k});
  if (m.upsample) x = resize(x, 2.0);
  const int64_t h = x.size(2), wd = x.size(3);
  const at::ScalarType t = m.low != at::kFloat ? m.low : x.scalar_type();
  at::Tensor y = at::conv2d(x.reshape({1, b * cin, h, wd}).to(t), w.to(t), c10::nullopt, at::IntArrayRef{1},
                            at::IntArrayRef{k / 2}, at::IntArrayRef{1}, b);
  return y.to(x.scalar_type()).view({b, cout, y.size(2), y.size(3)});
}

struct StyleConv {
  ModConv conv;
  at::Tensor strength;  // `weight`: the learned noise scale, shape [1]
  at::Tensor bias;      // (1, C, 1, 1)
  at::Tensor noise;     // the stored buffer (1, 1, H, W)
  template <class F>
  void each(F& f) {
    visit_all(f, conv, strength, bias, noise);
  }
};

struct ToRgb {
  ModConv conv;
  at::Tensor bias;  // (1, 3, 1, 1)
  template <class F>
  void each(F& f) {
    visit_all(f, conv, bias);
  }
};

}  // namespace

struct Model::Weights {
  // U-Net (spec 2.1-2.3).
  Conv first;                                        // conv_body_first
  std::vector<ResBlock> down, up;                    // conv_body_down.*, conv_body_up.*
  Conv final_conv, final_linear;                     // final_conv, final_linear
  std::vector<Conv> scale0, scale2, shift0, shift2;  // condition_{scale,shift}.i.{0,2}
  // StyleGAN2 decoder (spec 2.4), stylegan_decoder.*.
  at::Tensor const_input;        // constant_input.weight (1, C, 4, 4)
  StyleConv conv1;               // style_conv1
  ToRgb rgb1;                    // to_rgb1
  std::vector<StyleConv> convs;  // style_convs.0..2L-1
  std::vector<ToRgb> rgbs;       // to_rgbs.0..L-1
  template <class F>
  void each(F& f) {
    visit_all(f, first, down, up, final_conv, final_linear, scale0, scale2, shift0, shift2, const_input, conv1, rgb1,
              convs, rgbs);
  }
};

Noise parse_noise(const std::string& name) {
  if (name == "stored") return Noise::Stored;
  if (name == "random") return Noise::Random;
  if (name == "none") return Noise::None;
  throw Error(Error::Kind::Usage, "noise: expected stored, random or none, got '" + name + "'");
}

const char* noise_name(Noise n) {
  switch (n) {
    case Noise::Stored:
      return "stored";
    case Noise::Random:
      return "random";
    case Noise::None:
      return "none";
  }
  return "?";
}

Model::Model(const StateDict& all, c10::Device device, at::ScalarType dtype, Precision precision,
             std::optional<bool> nhwc)
    : device_(device), dtype_(dtype), precision_(precision) {
  check_precision(precision, device, "precision", {Precision::Fp32, Precision::Bf16, Precision::Fp16}, "GFPGAN");
  // GFPGANer reads 'params_ema', else 'params'; a bare state dict also loads.
  const std::string prefix = all.has("params_ema.conv_body_first.weight") ? "params_ema."
                             : all.has("params.conv_body_first.weight")   ? "params."
                                                                          : "";
  const StateDict sd = all.sub(prefix);
  const std::string name = all.checkpoint().name();
  auto w = std::make_shared<Weights>();

  // Levels: one down block per halving from S to 4 (7 at 512).
  int levels = 0;
  while (sd.has("conv_body_down." + std::to_string(levels) + ".conv1.weight")) ++levels;
  if (levels < 1 || !sd.has("stylegan_decoder.constant_input.weight"))
    throw format_error(name + ": no " + prefix +
                       "conv_body_down.* / stylegan_decoder.* tensors: not a GFPGANv1Clean checkpoint");
  size_ = 4 << levels;

  // U-Net encoder (spec 2.1).
  w->first = conv_weights(sd, "conv_body_first", -1, 3, 1);
  int64_t c = w->first.w.size(0);
  for (int i = 0; i < levels; ++i) {
    w->down.push_back(res_block(sd, "conv_body_down." + std::to_string(i), c, 0.5));
    c = w->down.back().conv2.w.size(0);
  }
  const int64_t c4 = c;
  w->final_conv = conv_weights(sd, "final_conv", c4, c4, 3);

  // Style code (spec 2.2): 4x4 feature -> num_latents x style_dim.
  style_dim_ = static_cast<int>(sd.shape("stylegan_decoder.style_conv1.modulated_conv.modulation.weight").at(1));
  num_latents_ = 2 * (levels + 2) - 2;
  w->final_linear = linear_weights(sd, "final_linear", int64_t{num_latents_} * style_dim_, c4 * 16);

  // U-Net decoder and SFT conditions (spec 2.3).  toRGB.* is not used.
  for (int i = 0; i < levels; ++i) {
    const std::string n = std::to_string(i);
    w->up.push_back(res_block(sd, "conv_body_up." + n, c, 2.0));
    c = w->up.back().conv2.w.size(0);
    w->scale0.push_back(conv_weights(sd, "condition_scale." + n + ".0", c, c, 3));
    w->scale2.push_back(conv_weights(sd, "condition_scale." + n + ".2", -1, c, 3));
    w->shift0.push_back(conv_weights(sd, "condition_shift." + n + ".0", c, c, 3));
    w->shift2.push_back(conv_weights(sd, "condition_shift." + n + ".2", w->scale2.back().w.size(0), c, 3));
  }

  // StyleGAN2 decoder (spec 2.4).
  const StateDict dec = sd.sub("stylegan_decoder.");
  const int64_t S = style_dim_;
  w->const_input = dec.get_float("constant_input.weight", {1, -1, 4, 4});
  int64_t cd = w->const_input.size(1);
  auto style_conv = [&](const std::string& p, int64_t cin, bool upsample, int k) {
    StyleConv s;
    s.conv = mod_conv(dec, p + ".modulated_conv", -1, cin, 3, S, true, upsample);
    const int64_t cout = s.conv.w.size(1);
    s.strength = dec.get_float(p + ".weight", {1});
    s.bias = dec.get_float(p + ".bias", {1, cout, 1, 1});
    const int64_t r = 4LL << ((k + 1) / 2);
    s.noise = dec.get_float("noises.noise" + std::to_string(k), {1, 1, r, r});
    return s;
  };
  auto to_rgb = [&](const std::string& p, int64_t cin) {
    ToRgb t;
    t.conv = mod_conv(dec, p + ".modulated_conv", 3, cin, 1, S, false, false);
    t.bias = dec.get_float(p + ".bias", {1, 3, 1, 1});
    return t;
  };
  w->conv1 = style_conv("style_conv1", cd, false, 0);
  w->rgb1 = to_rgb("to_rgb1", cd);
  for (int j = 0; j < levels; ++j) {
    w->convs.push_back(style_conv("style_convs." + std::to_string(2 * j), cd, true, 2 * j + 1));
    cd = w->convs.back().conv.w.size(1);
    // SFT on the second half of the channels (sft_half): the conditions
    // must have exactly half of the decoder's width.
    if (w->scale2[j].w.size(0) * 2 != cd)
      throw format_error(name + ": " + prefix + "condition_scale." + std::to_string(j) + ".2.weight: expected " +
                         std::to_string(cd / 2) + " output channels (half of style_convs." + std::to_string(2 * j) +
                         "), got " + std::to_string(w->scale2[j].w.size(0)));
    w->convs.push_back(style_conv("style_convs." + std::to_string(2 * j + 1), cd, false, 2 * j + 2));
    w->rgbs.push_back(to_rgb("to_rgbs." + std::to_string(j), cd));
  }
  unused_ = all.unused();

  place_weights(*w, device_, dtype_);
  // Every plain convolution (the U-Net's and the conditions'), and every
  // modulated one (the decoder's).
  const auto plain = [&](auto&& f) {
    f(w->first);
    for (auto* blocks : {&w->down, &w->up})
      for (ResBlock& r : *blocks) {
        f(r.conv1);
        f(r.conv2);
        f(r.skip);
      }
    f(w->final_conv);
    for (auto* cs : {&w->scale0, &w->scale2, &w->shift0, &w->shift2})
      for (Conv& c : *cs) f(c);
  };
  const auto modulated = [&](auto&& f) {
    f(w->conv1.conv);
    f(w->rgb1.conv);
    for (StyleConv& c : w->convs) f(c.conv);
    for (ToRgb& t : w->rgbs) f(t.conv);
  };
  // On the CPU every convolution channels-last through oneDNN with its
  // weights packed once, in bfloat16 for bf16 (PackedConv; not usable() in a
  // build without oneDNN): LibTorch 1.13 moves each 512x512 NCHW activation
  // to oneDNN's blocked layout and back at every call, and reorders the
  // weights too.  The modulated ones keep the style out of their weights
  // (run(ModConv) above).  What is not packed takes LibTorch's convolutions,
  // for bf16 / fp16 on bfloat16 / float16 weights (hw; the modulated ones
  // per call).  A GPU (or ANITALKER_GENERIC=1: device.h generic_path) packs
  // nothing and runs NCHW.
  const bool bf16 = precision_ == Precision::Bf16;
  const at::ScalarType low = bf16 ? at::kBFloat16 : precision_ == Precision::Fp16 ? at::kHalf : at::kFloat;
  generic_ = generic_path(device_);
  if (generic_) nhwc_ = nhwc ? *nhwc : generic_channels_last();
  const bool pack = device_.is_cpu() && dtype_ == at::kFloat && !generic_;
  plain([&](Conv& c) {
    if (pack) c.packed = PackedConv(c.w, {1, 1}, bf16);
    if (low != at::kFloat && !c.packed.usable()) c.hw = c.w.to(low);
  });
  const bool grouped = env_switch("ANITALKER_GFPGAN_GROUPED");
  modulated([&](ModConv& m) {
    m.low = low;  // batches of several images, or no packed copy
    const at::Tensor w4 = m.w[0];  // (Cout, Cin, k, k)
    if (generic_) {
      m.w_low = w4.to(low).contiguous();
      m.grouped = grouped;
    }
    if (pack) m.packed = PackedConv(w4, {1, 1}, bf16);
    // For the demodulation where the style goes on the input (run()).
    if (generic_ || m.packed.usable()) m.w_sq = w4.pow(2).sum({2, 3});
  });
  if (nhwc_) {
    // Channels-last weights once (forward() runs the activations so): no
    // reorder of a weight per call.  The modulated weights of one face are
    // made per call, in the layout cuDNN then picks from the input's.
    auto cl = [](at::Tensor& t) {
      if (t.defined() && t.dim() == 4) t = t.contiguous(at::MemoryFormat::ChannelsLast);
    };
    plain([&](Conv& c) {
      cl(c.w);
      cl(c.hw);
    });
    modulated([&](ModConv& m) { cl(m.w_low); });
  }

  w_ = w;
}

std::shared_ptr<const Model> Model::load(const std::string& path, c10::Device device, Precision precision) {
  return shared_model<Model>(
      path, device,
      [&] { return std::make_shared<const Model>(StateDict(Checkpoint::open(path)), device, at::kFloat, precision); },
      precision_name(precision));
}

namespace {

// StyleConv (spec 2.4): modulated conv * sqrt(2), + strength * noise, + bias,
// leaky ReLU 0.2.
at::Tensor run(const StyleConv& s, const at::Tensor& x, const at::Tensor& latent, Noise noise) {
  at::Tensor y = run(s.conv, x, latent).mul_(kSqrt2);
  if (noise == Noise::Stored) {
    y.add_(s.strength * s.noise);
  } else if (noise == Noise::Random) {
    // out.new_empty(b, 1, h, w).normal_(), as the reference draws it.
    y.add_(s.strength * at::empty({y.size(0), 1, y.size(2), y.size(3)}, y.options()).normal_());
  }
  return lrelu(y.add_(s.bias));
}

at::Tensor run(const ToRgb& t, const at::Tensor& x, const at::Tensor& latent, const at::Tensor& skip) {
  at::Tensor y = run(t.conv, x, latent).add_(t.bias);
  if (skip.defined()) y.add_(resize(skip, 2.0));
  return y;
}

}  // namespace

at::Tensor Model::forward(const at::Tensor& x_in, Noise noise) const {
  const Weights& w = *w_;
  if (x_in.dim() != 4 || x_in.size(1) != 3 || x_in.size(2) != size_ || x_in.size(3) != size_)
    throw Error(Error::Kind::Usage, "gfpgan: expected an image of shape [B, 3, " + std::to_string(size_) + ", " +
                                        std::to_string(size_) + "], got " + c10::str(x_in.sizes()));
  at::NoGradGuard no_grad;
  // Channels-last throughout where the convolutions are packed, or where
  // the device-independent path was made so.
  const bool nhwc = w.first.packed.usable() || nhwc_;
  const at::Tensor x =
      x_in.to(device_, dtype_).contiguous(nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  const int64_t B = x.size(0);
  const int levels = static_cast<int>(w.down.size());

  // U-Net encoder; skips are kept coarse first.
  at::Tensor feat = lrelu(conv(x, w.first, 0));
  std::vector<at::Tensor> skips;
  for (const ResBlock& r : w.down) {
    feat = run(r, feat);
    skips.insert(skips.begin(), feat);
  }
  feat = lrelu(conv(feat, w.final_conv, 1));

  // W+ style code: (B, num_latents, style_dim).
  const at::Tensor style =
      at::linear(feat.contiguous().reshape({B, -1}), w.final_linear.w, w.final_linear.b).view({B, -1, style_dim_});

  // U-Net decoder and the SFT conditions, [scale_0, shift_0, scale_1, ...].
  std::vector<at::Tensor> scales, shifts;
  for (int i = 0; i < levels; ++i) {
    feat = run(w.up[i], feat + skips[i]);
    scales.push_back(conv(lrelu(conv(feat, w.scale0[i], 1)), w.scale2[i], 1));
    shifts.push_back(conv(lrelu(conv(feat, w.shift0[i], 1)), w.shift2[i], 1));
  }

  // StyleGAN2 decoder: level j uses latents 2j+1, 2j+2 and 2j+3.
  auto lat = [&](int i) { return style.select(1, i); };
  at::Tensor out = w.const_input.expand({B, -1, -1, -1}).contiguous(x.suggest_memory_format());
  out = run(w.conv1, out, lat(0), noise);
  at::Tensor skip = run(w.rgb1, out, lat(1), at::Tensor());
  for (int j = 0; j < levels; ++j) {
    const int i = 2 * j + 1;
    out = run(w.convs[2 * j], out, lat(i), noise);
    // SFT on the second half of the channels; the scale multiplies as is.
    // In place in out (a StyleConv result of its own): the same bits as
    // cat(same, sft * scale + shift).
    const int64_t half = out.size(1) / 2;
    out.slice(1, half).mul_(scales[j]).add_(shifts[j]);
    out = run(w.convs[2 * j + 1], out, lat(i + 1), noise);
    skip = run(w.rgbs[j], out, lat(i + 2), skip);
  }
  return skip.contiguous();
}

bool warm_up(const Model& model) {
  if (!model.warm_ups().first("one face")) return false;
  c10::InferenceMode guard;
  const int s = model.size();
  model.forward(at::zeros({1, 3, s, s}, at::TensorOptions().dtype(at::kFloat).device(model.device())), Noise::Stored);
  return true;
}

}  // namespace anitalker::gfpgan
