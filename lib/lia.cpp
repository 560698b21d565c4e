// Stage 1 of AniTalker: LIA encoder and flow-warping renderer
// (spec/renderer.md 2-4, 6).  The modulated convolutions modulate the
// activations instead of the weights: conv(x * s, W) * d equals
// conv(x, W * s * d) per sample, but runs as one ordinary convolution over
// the whole batch, so batching helps instead of hurting (the reference's
// grouped convolution gets slower per frame as the batch grows).  One image
// on the CPU at the finer levels folds them into the weights instead
// (styled_conv()), where the weights are the smaller operand.
#include "lia.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/InferenceMode.h>

#include <array>
#include <cmath>
#include <map>
#include <mutex>
#include <tuple>

#include "checkpoint.h"
#include "cuda_graph.h"
#include "device.h"
#include "error.h"
#include "image.h"
#include "kernels.h"
#include "model_cache.h"
#include "state_dict.h"
#include "weights.h"

namespace anitalker::lia {

namespace {

constexpr double kSqrt2 = 1.4142135623730951;

// An EqualLinear: y = x @ (W * 1/sqrt(in))^T + b (spec 3.1).
struct Linear {
  at::Tensor w, b;  // w already scaled (out, in)
  at::Tensor operator()(const at::Tensor& x) const { return at::linear(x, w, b); }
  template <class F>
  void each(F& f) {
    visit_all(f, w, b);
  }
};

Linear equal_linear(const StateDict& sd, const std::string& p, int64_t out = -1, int64_t in = -1) {
  at::Tensor w = sd.get_float(p + ".weight", {out, in});
  Linear l;
  l.w = w * (1.0 / std::sqrt(static_cast<double>(w.size(1))));
  l.b = sd.get_float(p + ".bias", {w.size(0)});
  return l;
}

Linear plain_linear(const StateDict& sd, const std::string& p, int64_t out = -1, int64_t in = -1) {
  Linear l;
  l.w = sd.get_float(p + ".weight", {out, in});
  l.b = sd.get_float(p + ".bias", {l.w.size(0)});
  return l;
}

// EqualConv2d weight, scaled by 1/sqrt(Cin*k*k).
at::Tensor equal_conv(const StateDict& sd, const std::string& key, int64_t out, int64_t in, int64_t k) {
  at::Tensor w = sd.get_float(key, {out, in, k, k});
  return w * (1.0 / std::sqrt(static_cast<double>(w.size(1) * k * k)));
}

// conv2d without bias (lib/kernels.h: oneDNN directly where LibTorch 1.13
// would take its slow path, as for the decoder's 4x4 level: five
// convolutions of 512 channels, 4.5 ms a frame).
at::Tensor conv2d(const at::Tensor& x, const at::Tensor& w, at::IntArrayRef stride, at::IntArrayRef pad, int64_t groups) {
  return dnn_conv(x, w, at::Tensor(), stride, pad, groups);
}
at::Tensor conv(const at::Tensor& x, const at::Tensor& w, int64_t stride = 1, int64_t pad = 0, int64_t groups = 1) {
  return conv2d(x, w, at::IntArrayRef{stride, stride}, at::IntArrayRef{pad, pad}, groups);
}
// With zero padding (rows, columns) done by the convolution, not by a copy.
at::Tensor conv_pad(const at::Tensor& x, const at::Tensor& w, int64_t pad_h, int64_t pad_w, int64_t groups = 1) {
  return conv2d(x, w, at::IntArrayRef{1, 1}, at::IntArrayRef{pad_h, pad_w}, groups);
}

// rows @ w^T (+ b): (B, in) x (out, in) -> (B, out).  One row (the CPU
// renders one image at a time) as a matrix-vector product: BLAS's matrix
// product packs all of w at every call, which for one row cost more than
// the product (the decoder's modulations, 4.5 ms a frame as 19 products).
at::Tensor rows_times(const at::Tensor& rows, const at::Tensor& w, const at::Tensor& b = at::Tensor()) {
  if (rows.size(0) == 1 && rows.is_cpu()) {
    const at::Tensor v = rows[0];
    return (b.defined() ? at::addmv(b, w, v) : at::mv(w, v)).unsqueeze(0);
  }
  return b.defined() ? at::linear(rows, w, b) : at::matmul(rows, w.t());
}

// Fused leaky ReLU: leaky_relu(x + b, 0.2) * sqrt(2) (spec 3.2).
at::Tensor flrelu(const at::Tensor& x, const at::Tensor& b) { return at::leaky_relu(x + b, 0.2) * kSqrt2; }
// The same in place, on a tensor nobody else holds (a layer's fresh output).
at::Tensor flrelu_(at::Tensor x, const at::Tensor& b) {
  x.add_(b);
  at::leaky_relu_(x, 0.2);
  return x.mul_(kSqrt2);
}

// A blur kernel as a depthwise conv weight: flipped (upfirdn2d convolves),
// one copy per channel: (C, 1, 4, 4), contiguous.
at::Tensor depthwise(const at::Tensor& k, int64_t c) { return k.flip({0, 1}).expand({c, 1, k.size(0), k.size(1)}).contiguous(); }

// upfirdn2d with up = down = 1: pad, then a depthwise conv (spec 3.3).
// kd: the kernel from depthwise().
at::Tensor blur(const at::Tensor& x, const at::Tensor& kd, int64_t p0, int64_t p1) {
  const int64_t b = x.size(0), c = x.size(1);
  // One image, or a batch channels-last (the device-independent path's
  // option, Model::Model): the padding in the convolution.
  const bool nhwc = x.dim() == 4 && x.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  if ((b == 1 || nhwc) && p0 == p1) return conv_pad(x, kd, p0, p0, c);
  at::Tensor xp = at::constant_pad_nd(x, {p0, p1, p0, p1}, 0);
  if (b == 1) return conv(xp, kd, 1, 0, c);
  // A depthwise conv over a batch takes a slow path in LibTorch 1.13 on the
  // CPU (40x slower per image, measured): fold the batch into the channels.
  at::Tensor y = conv(xp.reshape({1, b * c, xp.size(2), xp.size(3)}), kd.repeat({b, 1, 1, 1}), 1, 0, b * c);
  return y.view({b, c, y.size(2), y.size(3)});
}

// upfirdn2d with up = 2, pad (2, 1): zeros after every sample, then blur.
// On the CPU (float32, NCHW: the 3-channel flow and colour maps) directly:
// output (Y, X) takes the four taps of kd whose positions meet a sample,
// rows i = Y mod 2 (+2) and columns j = X mod 2 (+2), from x at
// ((Y + i - 2) / 2, (X + j - 2) / 2), zero outside; the same products as the
// zero-filled picture's convolution, without its 12 zero taps in 16 and its
// copies (2.5 ms a frame at 256x256).  `add`, if defined (x's batch and
// channels, twice its size), is added to the result in the same pass.
// generic: LibTorch's operations (the device-independent path) everywhere.
at::Tensor upsample2(const at::Tensor& x, const at::Tensor& k, const at::Tensor& add = at::Tensor(),
                     bool generic = true) {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  if (!generic && x.is_cpu() && x.scalar_type() == at::kFloat && x.is_contiguous() && k.is_contiguous() &&
      k.scalar_type() == at::kFloat && k.size(0) == c && k.size(2) == 4 && k.size(3) == 4 &&
      (!add.defined() || (add.is_cpu() && add.scalar_type() == at::kFloat && add.is_contiguous() &&
                          add.sizes() == at::IntArrayRef{b, c, 2 * h, 2 * w}))) {
    at::Tensor out = at::empty({b, c, 2 * h, 2 * w}, x.options());
    const float* xs = x.data_ptr<float>();
    const float* ks = k.data_ptr<float>();
    const float* as = add.defined() ? add.data_ptr<float>() : nullptr;
    float* os = out.data_ptr<float>();
    const int64_t H = 2 * h, W = 2 * w;
    at::parallel_for(0, b * c * H, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t plane = r / H, Y = r % H, ch = plane % c;
        const float* kk = ks + ch * 16;
        const float* xp = xs + plane * h * w;
        const int64_t i0 = Y % 2;
        float* o = os + r * W;
        const float* a = as ? as + r * W : nullptr;
        for (int64_t X = 0; X < W; ++X) {
          const int64_t j0 = X % 2;
          float sum = 0.f;
          for (int64_t i = i0; i < 4; i += 2) {
            const int64_t ya = Y + i - 2;  // even
            if (ya < 0 || ya / 2 >= h) continue;
            for (int64_t j = j0; j < 4; j += 2) {
              const int64_t xa = X + j - 2;
              if (xa < 0 || xa / 2 >= w) continue;
              sum += kk[i * 4 + j] * xp[(ya / 2) * w + xa / 2];
            }
          }
          o[X] = a ? a[X] + sum : sum;
        }
      }
    });
    return out;
  }
  at::Tensor up = at::zeros({b, c, h, 2, w, 2}, x.options());
  up.select(5, 0).select(3, 0).copy_(x);
  const at::Tensor y = blur(up.view({b, c, 2 * h, 2 * w}), k, 2, 1);
  return add.defined() ? add + y : y;
}

struct ConvLayer {  // EqualConv2d + fused leaky ReLU, optional blur-downsample
  at::Tensor w, bias, kernel;
  template <class F>
  void each(F& f) {
    visit_all(f, w, bias, kernel);
  }
};

struct ResBlock {
  ConvLayer conv1, conv2;
  at::Tensor skip_kernel, skip_w;
  template <class F>
  void each(F& f) {
    visit_all(f, conv1, conv2, skip_kernel, skip_w);
  }
};

struct ModConv {
  at::Tensor w;      // (Cout, Cin, k, k), scaled by 1/sqrt(Cin*k*k)
  at::Tensor wt;     // upsampling convs: w as (Cin, Cout, k, k)
  // Upsampling 3x3 convs on the CPU: the transposed convolution's four
  // output phases as ordinary convolutions (sub_pixel_up()).
  at::Tensor phase00, phase01, phase10, phase11;
  // The trunk's arithmetic (conv1 and the 2L convs, not the 1x1 flows):
  // float32, or bfloat16 (Precision::Bf16) or float16 (Precision::Fp16,
  // CUDA) with float32 in and out.
  at::ScalarType low = at::kFloat;
  // The device-independent path (a GPU's, or the CPU's with
  // ANITALKER_GENERIC=1): no packed weights, no style folded into them,
  // upsampling as a transposed convolution.
  bool generic = false;
  // The trunk's weights in `low` where nothing is packed (a GPU, a build
  // without oneDNN's headers, the generic path): w, and the phases (CPU) or
  // wt (generic) of an upsampling conv; not in the weight walk (made after
  // the weights are placed).
  struct Half {
    at::Tensor w, wt, phase00, phase01, phase10, phase11;
  } half;
  // On the CPU where the build has oneDNN's headers: w and the phases with
  // their weights packed once (in bfloat16 for bf16), for the calls that do
  // not fold the style into the weights (coarse levels, batches); not walked.
  struct Packed {
    PackedConv w;
    std::array<PackedConv, 4> phases;  // 00, 01, 10, 11
  } packed;
  at::Tensor wsq;    // (Cout, Cin): sum over k of w^2, for demodulation
  Linear modulation; // latent -> (B, Cin); its rows are a view of Weights::styles
  int64_t style_at = 0;  // where its Cin values start in a row of the stacked styles
  at::Tensor act_bias, blur_kernel;
  bool upsample = false, demodulate = true;
  template <class F>
  void each(F& f) {
    visit_all(f, w, wt, phase00, phase01, phase10, phase11, wsq, modulation, act_bias, blur_kernel);
  }
};

ModConv mod_conv(const StateDict& sd, const std::string& p, int64_t style, bool upsample, bool demodulate,
                 const std::string& act_bias_key) {
  ModConv m;
  at::Tensor w5 = sd.get_float(p + ".weight", {1, -1, -1, -1, -1});
  const int64_t cin = w5.size(2), k = w5.size(3);
  m.w = (w5[0] * (1.0 / std::sqrt(static_cast<double>(cin * k * k)))).contiguous();
  m.wsq = m.w.pow(2).sum({2, 3});
  m.modulation = equal_linear(sd, p + ".modulation", cin, style);
  m.upsample = upsample;
  m.demodulate = demodulate;
  if (upsample) {
    // Transposed-conv layout (Cin, Cout, k, k): a transpose, no flip (spec 3.8).
    m.wt = m.w.transpose(0, 1).contiguous();
    if (k == 3) {
      // Output row 2a takes input rows a (tap 0) and a-1 (tap 2), row 2a+1
      // input row a (tap 1); columns alike.  As correlations over the input
      // padded by one: taps {2, 0} in that order, or tap 1 alone.
      const at::Tensor even = at::tensor({2, 0}, at::kLong);
      m.phase00 = m.w.index_select(2, even).index_select(3, even).contiguous();
      m.phase01 = m.w.index_select(2, even).slice(3, 1, 2).contiguous();
      m.phase10 = m.w.slice(2, 1, 2).index_select(3, even).contiguous();
      m.phase11 = m.w.slice(2, 1, 2).slice(3, 1, 2).contiguous();
    }
    m.blur_kernel = depthwise(sd.get_float(p + ".blur.kernel", {4, 4}), m.w.size(0));
  }
  if (!act_bias_key.empty()) m.act_bias = sd.get_float(act_bias_key, {1, m.w.size(0), 1, 1});
  return m;
}

// conv_transpose2d(x, wt, stride 2, padding 0) for a 3x3 kernel, as four
// ordinary convolutions, one per output phase (even/odd row and column),
// written into their places: the same 9 taps per input pixel, but through
// LibTorch's fast convolutions (its CPU transposed convolution reached about
// a third of the roof; docs/performance.md).  Sums in another order: within
// float32 rounding of the transposed convolution.
// With bfloat16 phases the input is cast once and the output comes back as
// `out_dtype`.
// phase(i, x, pad_h, pad_w): phase i's convolution (00, 01, 10, 11) of x
// with that zero padding, C output channels.
template <class Phase>
at::Tensor sub_pixel_up_by(Phase&& phase, const at::Tensor& x, int64_t C, at::ScalarType out_dtype) {
  const int64_t B = x.size(0), H = x.size(2), W = x.size(3);
  at::Tensor out = at::empty({B, C, 2 * H + 1, 2 * W + 1},
                             x.options().dtype(out_dtype).memory_format(x.suggest_memory_format()));
  out.slice(2, 0, 2 * H + 1, 2).slice(3, 0, 2 * W + 1, 2).copy_(phase(0, x, 1, 1));
  out.slice(2, 0, 2 * H + 1, 2).slice(3, 1, 2 * W, 2).copy_(phase(1, x, 1, 0));
  out.slice(2, 1, 2 * H, 2).slice(3, 0, 2 * W + 1, 2).copy_(phase(2, x, 0, 1));
  out.slice(2, 1, 2 * H, 2).slice(3, 1, 2 * W, 2).copy_(phase(3, x, 0, 0));
  return out;
}
at::Tensor sub_pixel_up(const at::Tensor& p00, const at::Tensor& p01, const at::Tensor& p10, const at::Tensor& p11,
                        const at::Tensor& x_in, at::ScalarType out_dtype) {
  const std::array<const at::Tensor*, 4> p{&p00, &p01, &p10, &p11};
  return sub_pixel_up_by([&](int i, const at::Tensor& x, int64_t ph, int64_t pw) { return conv_pad(x, *p[i], ph, pw); },
                         x_in.to(p00.scalar_type()), p00.size(0), out_dtype);
}

// at::grid_sampler(f, grid, bilinear, zeros, align_corners=false).  On the
// CPU LibTorch 1.13 spreads the work over the images only, so one image
// used one thread: the channels are split into groups that sample as extra
// images of the same grid (views of the same memory), bit-identical and
// about twice as fast on 2 threads at 64x64 and above.
at::Tensor sample(const at::Tensor& f, const at::Tensor& grid) {
  const int64_t B = f.size(0), C = f.size(1);
  int64_t k = 1;
  if (f.is_cpu() && f.is_contiguous()) {
    const int64_t want = 2 * static_cast<int64_t>(at::get_num_threads());
    while (B * k * 2 <= want && C % (k * 2) == 0) k *= 2;
  }
  if (k == 1) return at::grid_sampler(f, grid, 0, 0, false);
  const int64_t Ho = grid.size(1), Wo = grid.size(2);
  const at::Tensor g = grid.unsqueeze(1).expand({B, k, Ho, Wo, 2}).reshape({B * k, Ho, Wo, 2});
  return at::grid_sampler(f.view({B * k, C / k, f.size(2), f.size(3)}), g, 0, 0, false).view({B, C, Ho, Wo});
}

// The generic path's upsampling convolution in its reduced precision
// (m.low): a transposed convolution on the rounded input and weights, in
// float16 on a GPU; on the CPU (the tests' stand-in for it, bfloat16:
// LibTorch 1.13 has no working bfloat16 transposed convolution there, its
// oneDNN one returns 1x1 images) the same rounded operands with float32
// products and sums, which is what a bfloat16 convolution with float32
// accumulation computes.
// y in x's layout: cuDNN's transposed convolution keeps a channels-last
// input's layout, LibTorch 1.13's on the CPU does not (NCHW out), so the CPU
// (the tests' stand-in for a GPU) follows a GPU's layouts with a copy here.
at::Tensor like_layout(const at::Tensor& y, const at::Tensor& x) {
  const at::MemoryFormat f = x.suggest_memory_format();
  return y.suggest_memory_format() == f ? y : y.contiguous(f);
}

at::Tensor conv_up_low(const ModConv& m, const at::Tensor& xs) {
  const at::Tensor x = xs.to(m.low);
  if (xs.is_cpu())
    return like_layout(at::conv_transpose2d(x.to(xs.scalar_type()), m.half.wt.to(xs.scalar_type()), c10::nullopt,
                                            at::IntArrayRef{2}, at::IntArrayRef{0}),
                       xs);
  return at::conv_transpose2d(x, m.half.wt, c10::nullopt, at::IntArrayRef{2}, at::IntArrayRef{0}).to(xs.scalar_type());
}

// Modulated convolution (spec 3.8), with the style applied to the input and
// the demodulation to the output.
// s: the conv's style, (B, Cin) (style_of()).
at::Tensor run_mod_conv(const ModConv& m, const at::Tensor& x, const at::Tensor& s) {
  at::Tensor xs = x * s.unsqueeze(-1).unsqueeze(-1);
  at::Tensor y;
  if (m.upsample) {
    y = m.packed.phases[0].usable()
            ? sub_pixel_up_by([&](int i, const at::Tensor& x, int64_t ph, int64_t pw) { return m.packed.phases[i](x, ph, pw); },
                              xs.to(m.low), m.w.size(0), xs.scalar_type())
        : m.half.phase00.defined()
            ? sub_pixel_up(m.half.phase00, m.half.phase01, m.half.phase10, m.half.phase11, xs, xs.scalar_type())
        : m.half.wt.defined()
            ? conv_up_low(m, xs)
        : m.phase00.defined() && !m.generic
            ? sub_pixel_up(m.phase00, m.phase01, m.phase10, m.phase11, xs, xs.scalar_type())
            : like_layout(at::conv_transpose2d(xs, m.wt, c10::nullopt, at::IntArrayRef{2}, at::IntArrayRef{0}), xs);
    y = blur(y, m.blur_kernel, 1, 1);
  } else {
    const int64_t p = m.w.size(2) / 2;
    y = m.packed.w.usable() ? m.packed.w(xs, p, p)
        : m.half.w.defined()  ? conv(xs.to(m.low), m.half.w, 1, p).to(xs.scalar_type())
                              : conv(xs, m.w, 1, p);
  }
  if (m.demodulate) {
    at::Tensor d = at::rsqrt(rows_times(s * s, m.wsq) + 1e-8);  // (B, Cout)
    y.mul_(d.unsqueeze(-1).unsqueeze(-1));  // y is this call's own
  }
  return y;
}

// One image on the CPU, where its weights move fewer bytes than its
// activations (the finer levels): the style s, the demodulation d and the
// activation's sqrt(2) folded into the weights, W * s * d * sqrt(2) (the
// reference's own order of work, spec 3.8), and the activation's bias into
// the convolution where no blur follows it.  What is left over the output is
// the leaky ReLU (and the bias after an upsampling's blur): one or two
// passes instead of five (x * s, * d, + bias, leaky ReLU, * sqrt(2)); these
// were a tenth of a frame.  leaky_relu(sqrt(2) y) = sqrt(2) leaky_relu(y):
// the same values within float32 rounding.
// A float32 3x3 convolution that runs as Winograd (kernels.h) transforms
// folded weights at every call, oneDNN's reorder taking about 50 times what
// a pass over as many activations does (256 -> 256 channels: 11.7 ms, where
// the passes over 64x64 take about 1 ms): there the style is applied to the
// input and the demodulation to the output, around packed weights (the
// renderer at full size: 256 channels at 64x64 and 128 at 128x128 are not
// folded, 64 at 256x256 are).
// What m's convolution takes beyond its input and output as float32
// Winograd on an H x W image (kernels.h winograd_bytes); 0 where it would
// not run so (an upsampling, a kernel other than 3x3, a shape it does not
// take).
size_t winograd_extra(const ModConv& m, int64_t H, int64_t W) {
  if (m.upsample || m.w.size(2) != 3 || m.w.size(3) != 3) return 0;
  return winograd_bytes(m.w.size(1), H, W, m.w.size(0));
}

bool folds(const ModConv& m, bool cpu, at::ScalarType t, int64_t B, int64_t C, int64_t H, int64_t W) {
  if (m.generic || !cpu || B != 1 || (t != at::kFloat && t != m.low)) return false;
  const int64_t up = m.upsample ? 4 : 1;
  const int64_t y = m.w.size(0) * H * W * up;
  const bool wino = m.low == at::kFloat && m.packed.w.usable() && winograd_extra(m, H, W) > 0;
  return (wino ? 50 : 1) * m.w.numel() < C * H * W + 2 * y;
}
bool fold_pays(const ModConv& m, const at::Tensor& x) {
  return folds(m, x.is_cpu(), x.scalar_type(), x.size(0), x.size(1), x.size(2), x.size(3));
}
// Whether c1 folds (and takes its input in bfloat16) after c0 on x.
bool next_folds_in_bf16(const ModConv& c0, const ModConv& c1, const at::Tensor& x) {
  const int64_t up = c0.upsample ? 2 : 1;
  return c1.low == at::kBFloat16 && fold_pays(c0, x) &&
         folds(c1, x.is_cpu(), c1.low, x.size(0), c0.w.size(0), x.size(2) * up, x.size(3) * up);
}

// flrelu_(run_mod_conv(m, x, latent), m.act_bias), for a demodulated conv
// with an activation.  Where it folds, the bias and the leaky ReLU are
// applied in the convolution's pass (the upsampling's blur's), and the
// output is stored as `out` (float32, or bfloat16 for a next convolution
// that rounds its input to it anyway: the same values); elsewhere float32.
at::Tensor styled_conv(const ModConv& m, const at::Tensor& x, const at::Tensor& s,
                       at::ScalarType out = at::kFloat) {
  if (!fold_pays(m, x)) return flrelu_(run_mod_conv(m, x, s), m.act_bias);
  const at::Tensor d = at::rsqrt(rows_times(s * s, m.wsq) + 1e-8);  // (1, Cout)
  const at::Tensor scale = (d * kSqrt2).view({-1, 1, 1, 1}) * s.view({1, -1, 1, 1});  // (Cout, Cin, 1, 1)
  auto fold = [&](const at::Tensor& w) { return (w * scale).to(m.low); };
  const at::Tensor xin = x.to(m.low);
  const at::Tensor bias = (m.act_bias * kSqrt2).view({-1});
  if (m.upsample) {
    // One oneDNN transposed convolution (its output written in place, where
    // the four phases of sub_pixel_up() each took a copy into theirs: 1-1.2
    // ms a level at 64x64 and finer), then blur(y) + bias, leaky ReLU.  In
    // bfloat16 y is rounded once from float32 sums, and the blur's taps
    // (k/64) are bfloat16 exactly.
    const at::Tensor y = dnn_conv_transpose(xin, fold(m.w), 2, m.low);
    return dnn_conv_act(y, m.blur_kernel.to(y.scalar_type()), bias, 1, y.size(1), 0.2, out);
  }
  return dnn_conv_act(xin, fold(m.w), bias, m.w.size(2) / 2, 1, 0.2, out);
}

// A ToFlow's modulated 1x1 conv (not demodulated) plus its bias (spec 3.9),
// on the CPU with s folded into its three filters and the bias into the
// convolution.
at::Tensor to_flow_conv(const ModConv& m, const at::Tensor& bias, const at::Tensor& x, const at::Tensor& s) {
  if (m.generic || !x.is_cpu() || x.size(0) != 1 || x.scalar_type() != at::kFloat)
    return run_mod_conv(m, x, s) + bias;
  return dnn_conv(x, m.w * s.view({1, -1, 1, 1}), bias.view({-1}), at::IntArrayRef{1, 1}, at::IntArrayRef{0, 0});
}

}  // namespace

// warp_channels_last (lia.h): each output pixel's four corners and weights
// are computed once and its C values summed as vectors over the channels,
// which lie next to each other; LibTorch 1.13's kernel works on NCHW and gathers each
// channel's corners separately (16-21 ms a frame at full size).  The
// arithmetic is LibTorch's vectorised kernel's, fused multiply-adds where
// GCC fuses its AVX2 code: x = (g + 1) * W/2 - 0.5, the weights from
// x - floor(x), nw, ne, sw, se summed in that order, a corner outside the
// picture as 0 (times its weight): its values (test LiaWarp).
#if defined(__x86_64__)
// No contraction: the blend's product and sum are rounded apart, as
// LibTorch's mul_ and add_ round them (GCC 12 contracts a * b + c into an
// FMA even in ISO mode); the FMAs that LibTorch does use are written out.
#define ANITALKER_WARP_TARGET __attribute__((target("avx2,fma"), optimize("fp-contract=off")))
#else
#define ANITALKER_WARP_TARGET
#endif
namespace {

struct WarpRows {
  const float *f, *grid, *mask, *zeros;
  float *out, *blend;  // blend: x, or null
  int64_t C, H, W, Ho, Wo;
  bool one;  // one picture for every grid
};
ANITALKER_WARP_TARGET void warp_rows(const WarpRows& a, int64_t r0, int64_t r1) {
  const float sx = static_cast<float>(a.W) / 2, sy = static_cast<float>(a.H) / 2;
  const int64_t C = a.C;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / a.Ho;
    const float* g = a.grid + r * a.Wo * 2;
    const float* m = a.mask + r * a.Wo;
    const float* fb = a.f + (a.one ? 0 : b) * a.H * a.W * C;
    float* o = a.out + r * a.Wo * C;
    for (int64_t k = 0; k < a.Wo; ++k, o += C) {
      const float x = __builtin_fmaf(g[2 * k] + 1.f, sx, -0.5f), y = __builtin_fmaf(g[2 * k + 1] + 1.f, sy, -0.5f);
      const float xw = std::floor(x), yn = std::floor(y);
      const float we = x - xw, ee = 1.f - we, s = y - yn, n = 1.f - s;
      const float wt[4] = {n * ee, n * we, s * ee, s * we};  // nw, ne, sw, se
      // Far outside, or not a number: every corner outside (and no
      // undefined float -> int conversion).
      const bool near =
          xw >= -2.f && xw <= static_cast<float>(a.W) + 1 && yn >= -2.f && yn <= static_cast<float>(a.H) + 1;
      const int64_t ix = near ? static_cast<int64_t>(xw) : -2, iy = near ? static_cast<int64_t>(yn) : -2;
      const float* q[4];
      for (int c = 0; c < 4; ++c) {
        const int64_t cx = ix + (c & 1), cy = iy + (c >> 1);
        q[c] = cx >= 0 && cx < a.W && cy >= 0 && cy < a.H ? fb + (cy * a.W + cx) * C : a.zeros;
      }
      const float mk = m[k];
      if (a.blend == nullptr) {
        for (int64_t c = 0; c < C; ++c) {
          const float v = __builtin_fmaf(q[1][c], wt[1], q[0][c] * wt[0]);
          o[c] = __builtin_fmaf(q[3][c], wt[3], __builtin_fmaf(q[2][c], wt[2], v)) * mk;
        }
      } else {
        // x * (1 - mask) + warp, rounded after the product and after the
        // sum as LibTorch's mul_ and add_ do.
        float* xb = a.blend + (o - a.out);
        const float keep = 1.f - mk;
        for (int64_t c = 0; c < C; ++c) {
          const float v = __builtin_fmaf(q[1][c], wt[1], q[0][c] * wt[0]);
          const float wv = __builtin_fmaf(q[3][c], wt[3], __builtin_fmaf(q[2][c], wt[2], v)) * mk;
          o[c] = wv;
          xb[c] = xb[c] * keep + wv;
        }
      }
    }
  }
}

}  // namespace

at::Tensor warp_channels_last(const at::Tensor& f_in, const at::Tensor& grid_in, const at::Tensor& mask_in,
                              const at::Tensor& x) {
  const bool one = f_in.size(0) == 1 || f_in.stride(0) == 0;
  const at::Tensor f = (one ? f_in.narrow(0, 0, 1) : f_in).contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor grid = grid_in.contiguous(), mask = mask_in.contiguous();
  const int64_t B = grid.size(0), C = f.size(1), Ho = grid.size(1), Wo = grid.size(2);
  at::Tensor out = at::empty({B, C, Ho, Wo}, f.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (x.defined() && (x.scalar_type() != at::kFloat || x.sizes() != out.sizes() ||
                      !x.is_contiguous(at::MemoryFormat::ChannelsLast)))
    throw Error(Error::Kind::Runtime, "lia warp: the blended features must be float32 channels-last of shape " +
                                          c10::str(out.sizes()) + ", got " + c10::str(x.sizes()));
  const std::vector<float> zeros(static_cast<size_t>(C), 0.f);
  const WarpRows a{f.data_ptr<float>(), grid.data_ptr<float>(), mask.data_ptr<float>(), zeros.data(),
                   out.data_ptr<float>(), x.defined() ? x.data_ptr<float>() : nullptr, C, f.size(2), f.size(3), Ho, Wo, one};
  at::parallel_for(0, B * Ho, 1, [&](int64_t r0, int64_t r1) { warp_rows(a, r0, r1); });
  return out;
}

struct Model::Weights {
  // Encoder (enc.net_app): first conv, L ResBlocks, final 4x4 conv.
  at::Tensor conv0_w, conv0_b;
  std::vector<ResBlock> blocks;
  at::Tensor final_w;
  std::vector<Linear> hal_fc;  // fc1..fc3
  at::Tensor hal_w;            // softmax(ws.weights)
  Linear excl0, excl2;         // identity_excluded_net (plain nn.Linear)
  std::vector<Linear> fc;      // enc.fc.0..4 (EqualLinear)
  // Decoder.
  at::Tensor const_input;  // (1, style, 4, 4)
  ModConv conv1;
  std::vector<ModConv> convs;  // 2L
  struct ToRgb {
    at::Tensor w, conv_bias, bias, up_kernel;
    template <class F>
    void each(F& f) {
      visit_all(f, w, conv_bias, bias, up_kernel);
    }
  };
  struct ToFlow {
    ModConv conv;
    at::Tensor bias, up_kernel;
    template <class F>
    void each(F& f) {
      visit_all(f, conv, bias, up_kernel);
    }
  };
  std::vector<ToRgb> to_rgbs;
  std::vector<ToFlow> to_flows;
  std::vector<at::Tensor> grids;  // base grid per level, (1, r, r, 2)
  // Every modulation of the decoder (conv1, the 2L convs, the L ToFlows) as
  // one linear layer: their weights and biases stacked, each ModConv's
  // modulation a view of its rows.  Made after the weights are placed.
  Linear styles;
  template <class F>
  void each(F& f) {
    visit_all(f, conv0_w, conv0_b, blocks, final_w, hal_fc, hal_w, excl0, excl2, fc, const_input, conv1, convs, to_rgbs,
              to_flows, grids);
  }
};

// One conv's style from a row of Model::styles(): (B, Cin).
at::Tensor style_of(const ModConv& m, const at::Tensor& styles) {
  return styles.narrow(1, m.style_at, m.modulation.w.size(0));
}

// The graphs of a model (Model::set_graphs), under one lock: a graph's
// inputs and output are its own tensors, one call at a time.
struct Model::GraphCache {
  static constexpr size_t kMost = 32;
  std::mutex lock;
  Graphs mode = Graphs::Off;
  std::string failure;
  std::shared_ptr<CudaGraph::Pool> pool;
  struct Entry {
    at::Tensor motion, starts;      // (B, motion), (n, style)
    std::vector<at::Tensor> feats;  // L maps (n, C, r, r); n = 1 (one portrait) or B
    // Per row of starts and feats: the coarsest map of the portrait whose
    // values the row holds, kept so that its address cannot name another.
    std::vector<at::Tensor> held;
    std::unique_ptr<CudaGraph> graph;
  };
  std::map<std::pair<int64_t, bool>, Entry> entries;  // by (B, one portrait)
};

Model::Model(const StateDict& all, c10::Device device, at::ScalarType dtype, Precision precision,
             std::optional<bool> nhwc)
    : device_(device), dtype_(dtype), precision_(precision) {
  check_precision(precision, device, "precision", {Precision::Fp32, Precision::Bf16, Precision::Fp16}, "the renderer");
  generic_ = generic_path(device);
  if (generic_) nhwc_ = nhwc ? *nhwc : generic_channels_last();
  graphs_ = std::make_shared<GraphCache>();
  if (device.is_cuda() && cuda_graphs_built() && env_switch("ANITALKER_CUDA_GRAPHS")) {
    graphs_->mode = Graphs::On;
    graphs_->pool = CudaGraph::new_pool();
  }
  // The released file prefixes every key with "lia."; the original loader
  // also accepts the bare names (spec 2), so do we.
  const StateDict sd = all.sub(!all.has("lia.dec.direction.weight") && all.has("dec.direction.weight") ? "" : "lia.");
  auto w = std::make_shared<Weights>();
  const std::string name = all.checkpoint().name();

  // Sizes, from the shapes (spec 1).
  const std::vector<int64_t> dir = sd.shape("dec.direction.weight");
  if (dir.size() != 2) throw format_error(name + ": " + sd.prefix() + "dec.direction.weight: expected 2 dimensions");
  style_dim_ = static_cast<int>(dir[0]);
  motion_dim_ = static_cast<int>(dir[1]);
  levels_ = 0;
  while (sd.has("dec.to_flows." + std::to_string(levels_) + ".conv.weight")) ++levels_;
  if (levels_ < 1) throw format_error(name + ": no lia.dec.to_flows.* tensors: not a stage-1 (LIA) checkpoint");
  size_ = 4 << levels_;
  const int64_t S = style_dim_;
  const int L = levels_;

  // Encoder trunk (spec 3.4, 3.5).
  const StateDict app = sd.sub("enc.net_app.");
  w->conv0_w = equal_conv(app, "convs.0.0.weight", -1, 3, 1);
  w->conv0_b = app.get_float("convs.0.1.bias", {1, w->conv0_w.size(0), 1, 1});
  int64_t cin = w->conv0_w.size(0);
  for (int r = 1; r <= L; ++r) {
    const std::string p = "convs." + std::to_string(r) + ".";
    ResBlock b;
    b.conv1.w = equal_conv(app, p + "conv1.0.weight", cin, cin, 3);
    b.conv1.bias = app.get_float(p + "conv1.1.bias", {1, cin, 1, 1});
    b.conv2.kernel = depthwise(app.get_float(p + "conv2.0.kernel", {4, 4}), cin);
    b.conv2.w = equal_conv(app, p + "conv2.1.weight", -1, cin, 3);
    const int64_t cout = b.conv2.w.size(0);
    b.conv2.bias = app.get_float(p + "conv2.2.bias", {1, cout, 1, 1});
    b.skip_kernel = depthwise(app.get_float(p + "skip.0.kernel", {4, 4}), cin);
    b.skip_w = equal_conv(app, p + "skip.1.weight", cout, cin, 1);
    w->blocks.push_back(std::move(b));
    cin = cout;
  }
  if (cin != S) throw format_error(name + ": the encoder's last ResBlock has " + std::to_string(cin) + " channels, the style has " + std::to_string(S));
  w->final_w = equal_conv(app, "convs." + std::to_string(L + 1) + ".weight", S, S, 4);
  for (int i = 1; i <= 3; ++i) w->hal_fc.push_back(equal_linear(app, "fc" + std::to_string(i), S, -1));
  at::Tensor ws = app.get_float("ws.weights", {-1});
  if (ws.size(0) < L + 2)
    throw format_error(name + ": lia.enc.net_app.ws.weights has " + std::to_string(ws.size(0)) + " weights, the encoder needs " + std::to_string(L + 2));
  w->hal_w = at::softmax(ws, 0);
  w->excl0 = plain_linear(sd, "enc.net_decouping.identity_excluded_net.0", S, S);
  w->excl2 = plain_linear(sd, "enc.net_decouping.identity_excluded_net.2", S, S);
  for (int i = 0; i < 5; ++i) w->fc.push_back(equal_linear(sd, "enc.fc." + std::to_string(i), i < 4 ? S : motion_dim_, S));

  // Direction basis (spec 3.7), once per checkpoint.
  at::Tensor dw = sd.get_float("dec.direction.weight", {S, motion_dim_});
  q_ = std::get<0>(at::linalg_qr(dw + 1e-8, "reduced")).contiguous();

  // Decoder (spec 3.8-3.11).
  w->const_input = sd.get_float("dec.input.input", {1, S, 4, 4});
  w->conv1 = mod_conv(sd, "dec.conv1.conv", S, false, true, "dec.conv1.activate.bias");
  for (int k = 0; k < 2 * L; ++k) {
    const std::string p = "dec.convs." + std::to_string(k);
    w->convs.push_back(mod_conv(sd, p + ".conv", S, k % 2 == 0, true, p + ".activate.bias"));
  }
  for (int j = 0; j < L; ++j) {
    const int64_t c = w->convs[2 * j + 1].w.size(0);
    const std::string pr = "dec.to_rgbs." + std::to_string(j) + ".";
    Weights::ToRgb rgb;
    rgb.w = equal_conv(sd, pr + "conv.0.weight", 3, c, 1);
    rgb.conv_bias = sd.get_float(pr + "conv.1.bias", {1, 3, 1, 1});
    rgb.bias = sd.get_float(pr + "bias", {1, 3, 1, 1});
    if (j >= 1) rgb.up_kernel = depthwise(sd.get_float(pr + "upsample.kernel", {4, 4}), 3);
    w->to_rgbs.push_back(rgb);
    const std::string pf = "dec.to_flows." + std::to_string(j) + ".";
    Weights::ToFlow fl;
    fl.conv = mod_conv(sd, pf + "conv", S, false, false, "");
    if (fl.conv.w.size(0) != 3 || fl.conv.w.size(1) != c)
      throw format_error(name + ": lia." + pf + "conv.weight: expected shape [1, 3, " + std::to_string(c) + ", 1, 1]");
    fl.bias = sd.get_float(pf + "bias", {1, 3, 1, 1});
    if (j >= 1) fl.up_kernel = depthwise(sd.get_float(pf + "upsample.kernel", {4, 4}), 3);
    w->to_flows.push_back(fl);
    // Base grid: linspace(-1, 1, r) in float64, cast to float32 (spec 3.9).
    const int64_t r = 8LL << j;
    at::Tensor g = at::linspace(-1.0, 1.0, r, at::kDouble).to(at::kFloat);
    at::Tensor gx = g.view({1, r}).expand({r, r});
    at::Tensor gy = g.view({r, 1}).expand({r, r});
    w->grids.push_back(at::stack({gx, gy}, -1).unsqueeze(0).contiguous());
  }
  unused_ = all.unused();

  place_weights(*w, device_, dtype_);
  place_weights(q_, device_, dtype_);
  {
    // The modulations stacked (Weights::styles): one product a call for
    // all 2L + L + 1 of them, where each was a small product of its own
    // (19 at full size, each a GEMM call that packed its weights).
    std::vector<ModConv*> mods{&w->conv1};
    for (ModConv& m : w->convs) mods.push_back(&m);
    for (auto& tf : w->to_flows) mods.push_back(&tf.conv);
    std::vector<at::Tensor> ws, bs;
    int64_t at_row = 0;
    for (ModConv* m : mods) {
      m->style_at = at_row;
      at_row += m->modulation.w.size(0);
      ws.push_back(m->modulation.w);
      bs.push_back(m->modulation.b);
    }
    w->styles.w = at::cat(ws, 0).contiguous();
    w->styles.b = at::cat(bs, 0).contiguous();
    for (ModConv* m : mods) {
      const int64_t n = m->modulation.w.size(0);
      m->modulation.w = w->styles.w.narrow(0, m->style_at, n);
      m->modulation.b = w->styles.b.narrow(0, m->style_at, n);
    }
  }
  if (channels_last()) {
    // The decoder runs channels-last on the CPU (see levels()): its
    // convolution weights too, or oneDNN would reorder them at every call.
    auto cl = [](at::Tensor& t) {
      if (t.defined() && t.dim() == 4) t = t.contiguous(at::MemoryFormat::ChannelsLast);
    };
    auto cl_mod = [&](ModConv& m) {
      for (at::Tensor* t : {&m.w, &m.phase00, &m.phase01, &m.phase10, &m.phase11, &m.blur_kernel}) cl(*t);
    };
    cl_mod(w->conv1);
    for (ModConv& m : w->convs) cl_mod(m);
    for (auto& tf : w->to_flows) cl_mod(tf.conv);
    for (auto& tr : w->to_rgbs) cl(tr.w);
  }
  const at::ScalarType low = precision_ == Precision::Bf16   ? at::kBFloat16
                             : precision_ == Precision::Fp16 ? at::kHalf
                                                             : at::kFloat;
  auto trunk = [&](auto&& f) {
    f(w->conv1);
    for (ModConv& m : w->convs) f(m);
  };
  trunk([&](ModConv& m) { m.low = low; });
  auto generic = [&](ModConv& m) { m.generic = generic_; };
  trunk(generic);
  if (low == at::kBFloat16 && device_.is_cpu() && dtype_ == at::kFloat && !generic_) {
    // At bf16, a level's 3x3 convolution of 128 channels or more runs as
    // float32 Winograd (kernels.h), which is faster there on 2 cores than
    // oneDNN's bfloat16 direct one (512 at 32x32: 6.2 against 10.2 ms; 256
    // at 64x64 8.0 against 10.2; 128 at 128x128 9.3 against 10.6; 64 at
    // 256x256 alike, so it stays bfloat16), and exact.
    for (int j = 0; j < levels_; ++j) {
      ModConv& c1 = w->convs[2 * j + 1];
      const int64_t r = int64_t{8} << j;
      if (c1.w.size(1) >= 128 && winograd_extra(c1, r, r) > 0) c1.low = at::kFloat;
    }
  }
  for (auto& tf : w->to_flows) generic(tf.conv);
  if (device_.is_cpu() && dtype_ == at::kFloat && !generic_) {
    // Packed when first used (lazily: one image at a time, only the coarse
    // levels get there, fold_pays()); the bf16 trunk in bfloat16, the 1x1
    // flows float32.
    auto pack = [](ModConv& m) {
      const bool bf16 = m.low == at::kBFloat16;
      m.packed.w = PackedConv(m.w, {1, 1}, bf16);
      if (m.phase00.defined())
        m.packed.phases = {PackedConv(m.phase00, {1, 1}, bf16), PackedConv(m.phase01, {1, 1}, bf16),
                           PackedConv(m.phase10, {1, 1}, bf16), PackedConv(m.phase11, {1, 1}, bf16)};
    };
    trunk(pack);
    for (auto& tf : w->to_flows) pack(tf.conv);
  }
  // The bf16 or fp16 trunk's weights for what is not packed: the phases of
  // an upsampling conv on the CPU's own path, its transposed weights on the
  // generic one.
  auto half = [](ModConv& m) {
    if (m.low == at::kFloat) return;
    if (!m.packed.w.usable()) m.half.w = m.w.to(m.low);
    if (m.upsample && m.generic) {
      m.half.wt = m.wt.to(m.low);
    } else if (m.phase00.defined() && !m.packed.phases[0].usable()) {
      m.half.phase00 = m.phase00.to(m.low);
      m.half.phase01 = m.phase01.to(m.low);
      m.half.phase10 = m.phase10.to(m.low);
      m.half.phase11 = m.phase11.to(m.low);
    }
  };
  trunk(half);
  if (nhwc_) {
    // The device-independent path channels-last: the trunk's and the
    // flows' weights (and the blurs') in that layout once, so that cuDNN
    // runs each convolution in it without reordering a weight per call.
    auto cl = [](at::Tensor& t) {
      if (t.defined() && t.dim() == 4) t = t.contiguous(at::MemoryFormat::ChannelsLast);
    };
    auto cl_mod = [&](ModConv& m) {
      for (at::Tensor* t : {&m.w, &m.wt, &m.half.w, &m.half.wt, &m.blur_kernel}) cl(*t);
    };
    trunk(cl_mod);
    for (auto& tf : w->to_flows) cl_mod(tf.conv);
  }
  w_ = w;
}

bool Model::channels_last() const {
#if defined(__x86_64__)
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");  // warp_rows()
#else
  static const bool avx2 = true;
#endif
  return avx2 && device_.is_cpu() && dtype_ == at::kFloat && !generic_;
}

std::shared_ptr<const Model> Model::load(const std::string& path, c10::Device device, Precision precision) {
  return shared_model<Model>(
      path, device,
      [&] { return std::make_shared<const Model>(StateDict(Checkpoint::open(path)), device, at::kFloat, precision); },
      precision_name(precision));
}

Portrait Model::encode(const at::Tensor& image) const {
  const Weights& w = *w_;
  if (image.dim() != 4 || image.size(0) != 1 || image.size(1) != 3 || image.size(2) != size_ || image.size(3) != size_)
    throw Error(Error::Kind::Usage, "lia encode: expected an image of shape [1, 3, " + std::to_string(size_) + ", " +
                                        std::to_string(size_) + "], got " + c10::str(image.sizes()));
  at::NoGradGuard no_grad;
  Portrait p;
  p.image = image.to(device_, dtype_).contiguous();
  // Trunk: h0, ResBlocks h1..hL, final 1x1 code h(L+1).
  std::vector<at::Tensor> h;
  h.push_back(flrelu(conv(p.image, w.conv0_w), w.conv0_b));
  for (const ResBlock& b : w.blocks) {
    const at::Tensor& x = h.back();
    at::Tensor y = flrelu(conv(x, b.conv1.w, 1, 1), b.conv1.bias);
    y = flrelu(conv(blur(y, b.conv2.kernel, 2, 2), b.conv2.w, 2, 0), b.conv2.bias);
    at::Tensor skip = conv(blur(x, b.skip_kernel, 1, 1), b.skip_w, 2, 0);
    h.push_back((y + skip) / kSqrt2);
  }
  h.push_back(conv(h.back(), w.final_w));
  // HAL fusion (spec 3.5): mean-pool every level, project the first three.
  at::Tensor wa = at::zeros({1, style_dim_}, p.image.options());
  for (size_t i = 0; i < h.size(); ++i) {
    at::Tensor v = h[i].mean({2, 3});
    if (i < 3) v = w.hal_fc[i](v);
    wa = wa + w.hal_w[static_cast<int64_t>(i)] * v;
  }
  p.start = wa;
  // Direction code (spec 3.6): plain MLP, then five linear EqualLinears.
  at::Tensor u = w.excl2(at::relu(w.excl0(wa)));
  for (const Linear& l : w.fc) u = l(u);
  p.direction = u;
  // feats: trunk outputs 0..L-1, coarse to fine.
  // Channels-last where the decoder runs so (levels()).
  for (int j = levels_ - 1; j >= 0; --j)
    p.feats.push_back(channels_last() ? h[static_cast<size_t>(j)].contiguous(at::MemoryFormat::ChannelsLast)
                                      : h[static_cast<size_t>(j)]);
  return p;
}

at::Tensor Model::latent(const Portrait& p, const at::Tensor& motion) const {
  return p.start + at::matmul(motion, q_.t());
}

// About what one image holds at once in the decoder at a level of r x r
// with c channels: kLive * c + kMaps maps of r x r (the features, the
// upsampling's output, the warp, and the flow, grid, mask and colour maps
// with their copies), as one batch (a GPU's way, measured here on the CPU:
// 68-86 MB an image at full size; for the 256 fixture model 12.5 MB a frame
// of 4, 8.3 with oneDNN held to AVX2); one image at a time on the CPU
// fewer (44 and 6.5 MB).  Fitted to what calls took (bench render's memory
// line; test LiaMemory, which bounds it both ways, also on AVX2 alone).
// And per frame out, 3 x size x size values as float32 and the
// temporaries of to_uint8() (14 bytes a value at its peak).
constexpr size_t kLive = 5, kMaps = 32, kLiveOneAtATime = 3, kMapsOneAtATime = 24;

// Decoder levels [j0, j1) (spec 3.9-3.11); x, flow and rgb carry over.
void Model::levels(const std::vector<at::Tensor>& feats, const at::Tensor& styles, int j0, int j1, at::Tensor& x,
                   at::Tensor& flow, at::Tensor& rgb) const {
  const Weights& w = *w_;
  const int64_t B = x.size(0);
  for (int j = j0; j < j1; ++j) {
    const ModConv& c0 = w.convs[2 * j];
    const ModConv& c1 = w.convs[2 * j + 1];
    x = styled_conv(c0, x, style_of(c0, styles), next_folds_in_bf16(c0, c1, x) ? at::kBFloat16 : at::kFloat);
    x = styled_conv(c1, x, style_of(c1, styles));
    // ToFlow (spec 3.9).
    const Weights::ToFlow& tf = w.to_flows[j];
    at::Tensor o = to_flow_conv(tf.conv, tf.bias, x, style_of(tf.conv, styles)).contiguous();
    if (j >= 1) o = upsample2(flow, tf.up_kernel, o, generic_);
    at::Tensor sampler = at::tanh(o.slice(1, 0, 2));
    at::Tensor mask = at::sigmoid(o.slice(1, 2, 3));
    at::Tensor grid = sampler.permute({0, 2, 3, 1}) + w.grids[j];
    // The portrait's features: one portrait for every row, or one per row.
    at::Tensor f = feats[static_cast<size_t>(j)];
    if (f.size(0) == 1 && B > 1) f = f.expand({B, -1, -1, -1});
    // x becomes x * (1 - mask) + warp (x: this level's own output, from
    // styled_conv() above); on the CPU in the warp's own pass.
    at::Tensor warp;
    if (x.is_contiguous(at::MemoryFormat::ChannelsLast) && channels_last()) {
      warp = warp_channels_last(f, grid, mask, x);
    } else {
      warp = sample(f, grid).mul_(mask);
      x.mul_(1 - mask).add_(warp);
    }
    flow = o;
    // ToRGB (spec 3.10) on the warped feature.
    const Weights::ToRgb& tr = w.to_rgbs[j];
    at::Tensor r = (flrelu(conv(warp, tr.w), tr.conv_bias) + tr.bias).contiguous();
    if (j >= 1) r = upsample2(rgb, tr.up_kernel, r, generic_);
    rgb = r;
  }
}

at::Tensor Model::render(const Portrait& p, const at::Tensor& motion_in) const {
  const Weights& w = *w_;
  if (motion_in.dim() != 2 || motion_in.size(1) != motion_dim_)
    throw Error(Error::Kind::Usage, "lia render: expected motion codes of shape [B, " + std::to_string(motion_dim_) + "], got " +
                                        c10::str(motion_in.sizes()));
  if (p.feats.size() != static_cast<size_t>(levels_))
    throw Error(Error::Kind::Usage, "lia render: a portrait that this model did not encode");
  // Through its graph where graphs are on (a GPU, or emulated).
  if (const at::Tensor r = render_graphed({&p}, motion_in); r.defined()) return r;
  at::NoGradGuard no_grad;
  const at::Tensor motion = motion_in.to(device_, dtype_);
  // On a GPU the whole batch at once (the CPU's way is below).
  if (!device_.is_cpu()) return decode(motion, p.start, p.feats);
  const int64_t B = motion.size(0);
  const at::Tensor st = rows_times(latent(p, motion), w.styles.w, w.styles.b);  // (B, every modulation's Cin)

  at::Tensor x = w.const_input.expand({B, -1, -1, -1});
  x = flrelu(run_mod_conv(w.conv1, x, style_of(w.conv1, st)), w.conv1.act_bias);
  // On the CPU the levels run one image at a time: the decoder is bound by
  // its activations, which for one image stay in cache; a batch run as one
  // tensor was 2-7x slower per image at 64x64 and above with LibTorch 1.13
  // (measured; docs/performance.md).  Only the coarse 8x8 and 16x16 levels
  // gain from a batch, by too little to matter.
  if (channels_last()) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  std::vector<at::Tensor> out;
  for (int64_t i = 0; i < B; ++i) {
    at::Tensor xi = x.slice(0, i, i + 1), fi, ri;
    levels(p.feats, st.slice(0, i, i + 1), 0, levels_, xi, fi, ri);
    out.push_back(ri);
  }
  return B == 1 ? out[0] : at::cat(out, 0);
}

at::Tensor Model::render(const std::vector<const Portrait*>& portraits, const at::Tensor& motion_in, bool one_batch) const {
  if (motion_in.dim() != 2 || motion_in.size(1) != motion_dim_ || motion_in.size(0) != (int64_t)portraits.size())
    throw Error(Error::Kind::Usage, "lia render: expected motion codes of shape [" + std::to_string(portraits.size()) +
                                        ", " + std::to_string(motion_dim_) + "] (one row per portrait), got " +
                                        c10::str(motion_in.sizes()));
  for (const Portrait* p : portraits)
    if (p == nullptr || p->feats.size() != static_cast<size_t>(levels_))
      throw Error(Error::Kind::Usage, "lia render: a portrait that this model did not encode");
  if (portraits.empty()) return at::empty({0, 3, size_, size_}, at::TensorOptions().dtype(dtype_).device(device_));
  if (!one_batch) {
    // Each run of rows of one portrait as render() alone renders it.
    std::vector<at::Tensor> out;
    for (size_t a = 0; a < portraits.size();) {
      size_t e = a + 1;
      while (e < portraits.size() && portraits[e] == portraits[a]) ++e;
      out.push_back(render(*portraits[a], motion_in.slice(0, (int64_t)a, (int64_t)e)));
      a = e;
    }
    return out.size() == 1 ? out[0] : at::cat(out, 0);
  }
  if (const at::Tensor r = render_graphed(portraits, motion_in); r.defined()) return r;
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> starts, feats;
  for (const Portrait* p : portraits) starts.push_back(p->start);
  for (size_t j = 0; j < static_cast<size_t>(levels_); ++j) {
    std::vector<at::Tensor> rows;
    for (const Portrait* p : portraits) rows.push_back(p->feats[j]);
    feats.push_back(rows.size() == 1 ? rows[0] : at::cat(rows, 0));
  }
  return decode(motion_in.to(device_, dtype_), starts.size() == 1 ? starts[0] : at::cat(starts, 0), feats);
}

at::Tensor Model::decode(const at::Tensor& motion, const at::Tensor& starts, const std::vector<at::Tensor>& feats) const {
  const Weights& w = *w_;
  const int64_t B = motion.size(0);
  const at::Tensor lat = starts + at::matmul(motion, q_.t());  // (B, style)
  const at::Tensor st = rows_times(lat, w.styles.w, w.styles.b);
  at::Tensor x = w.const_input.expand({B, -1, -1, -1});
  if (nhwc_) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  x = flrelu(run_mod_conv(w.conv1, x, style_of(w.conv1, st)), w.conv1.act_bias);
  at::Tensor flow, rgb;
  levels(feats, st, 0, levels_, x, flow, rgb);
  return rgb;
}

void Model::set_graphs(Graphs mode) const {
  if (mode == Graphs::On && (!device_.is_cuda() || !cuda_graphs_built()))
    throw Error(Error::Kind::Usage, std::string("CUDA graphs: ") +
                                        (device_.is_cuda() ? "this build has none (it needs a CUDA LibTorch and CUDA's "
                                                             "headers: docs/building.md)"
                                                           : "the renderer runs on " + device_.str() + ", not a CUDA device"));
  GraphCache& g = *graphs_;
  std::lock_guard<std::mutex> hold(g.lock);
  g.mode = mode;
  g.failure.clear();
  g.entries.clear();
  g.pool = mode == Graphs::On ? CudaGraph::new_pool() : nullptr;
}

Model::Graphs Model::graphs() const {
  std::lock_guard<std::mutex> hold(graphs_->lock);
  return graphs_->mode;
}

std::string Model::graphs_status() const {
  GraphCache& g = *graphs_;
  std::lock_guard<std::mutex> hold(g.lock);
  if (!g.failure.empty()) return "failed: " + g.failure + "; rendering without graphs";
  if (g.mode == Graphs::Off) return "off";
  std::string sizes;
  for (const auto& [key, e] : g.entries)
    if (e.graph) sizes += (sizes.empty() ? "" : ", ") + std::to_string(key.first) + (key.second ? "" : " (one portrait a row)");
  return std::string(g.mode == Graphs::On ? "on" : "emulated") + ", " + std::to_string(g.entries.size()) +
         " recorded" + (sizes.empty() ? "" : " (batch sizes " + sizes + ")");
}

at::Tensor Model::render_graphed(const std::vector<const Portrait*>& ps, const at::Tensor& motion_in) const {
  GraphCache& g = *graphs_;
  std::lock_guard<std::mutex> hold(g.lock);
  const int64_t B = motion_in.size(0);
  if (g.mode == Graphs::Off || !g.failure.empty() || B == 0) return at::Tensor();
  const bool one = ps.size() == 1;
  const int64_t n = one ? 1 : B;
  auto it = g.entries.find({B, one});
  if (it == g.entries.end()) {
    if (g.entries.size() >= GraphCache::kMost) return at::Tensor();
    it = g.entries.emplace(std::make_pair(B, one), GraphCache::Entry()).first;
  }
  GraphCache::Entry& e = it->second;
  c10::InferenceMode inference;
  if (!e.motion.defined()) {
    const auto opts = at::TensorOptions().dtype(dtype_).device(device_);
    e.motion = at::empty({B, motion_dim_}, opts);
    e.starts = at::empty({n, style_dim_}, opts);
    for (const at::Tensor& f : ps[0]->feats)
      e.feats.push_back(at::empty({n, f.size(1), f.size(2), f.size(3)}, f.options().memory_format(f.suggest_memory_format())));
    e.held.resize(static_cast<size_t>(n));
  }
  e.motion.copy_(motion_in);
  for (int64_t i = 0; i < n; ++i) {
    const Portrait& p = *ps[static_cast<size_t>(i)];
    at::Tensor& held = e.held[static_cast<size_t>(i)];
    if (held.defined() && held.is_same(p.feats[0])) continue;
    e.starts[i].copy_(p.start[0]);
    for (size_t j = 0; j < e.feats.size(); ++j) e.feats[j][i].copy_(p.feats[j][0]);
    held = p.feats[0];
  }
  if (!e.graph) {
    try {
      e.graph = std::make_unique<CudaGraph>(
          device_, [this, &e] { return decode(e.motion, e.starts, e.feats); }, g.pool, g.mode == Graphs::Emulated);
    } catch (const Error& err) {
      g.failure = err.what();
      g.entries.clear();
      return at::Tensor();
    }
  }
  e.graph->replay();
  return e.graph->output().clone();
}

size_t Model::call_bytes(int64_t frames, bool one_batch) const {
  const Weights& w = *w_;
  const size_t elem = c10::elementSize(dtype_);
  size_t image = 0;  // the largest level's
  size_t wino = 0;   // the largest level's with its Winograd convolution
  for (int j = 0; j < levels_; ++j) {
    const size_t r = size_t{8} << j, c = (size_t)w.convs[2 * j].w.size(0);
    const size_t level = (one_batch ? kLive * c + kMaps : kLiveOneAtATime * c + kMapsOneAtATime) * r * r * elem;
    image = std::max(image, level);
    // One image on the CPU in float32: the level's 3x3 convolution runs as
    // Winograd where it can, with copies and a scratchpad of its own
    // (oneDNN's: 7-53 MB at full size, kernels.h), beside the styled input
    // and the output (the 128x128 level at full size took 99 MB: 107
    // estimated).
    const ModConv& c1 = w.convs[2 * j + 1];
    if (device_.is_cpu() && !generic_ && c1.low == at::kFloat) {
      const size_t bytes = winograd_extra(c1, (int64_t)r, (int64_t)r);
      if (bytes > 0) wino = std::max(wino, level + bytes + 2 * c * r * r * elem);
    }
  }
  // Winograd runs on one image: one at a time, or a batch of one.
  if (!one_batch || frames == 1) image = std::max(image, wino);
  const size_t out = (size_t)frames * 3 * (size_t)size_ * (size_t)size_ * (3 * elem + 2);
  return (one_batch ? (size_t)frames : 1) * image + out;
}

at::Tensor to_uint8(const at::Tensor& raw) {
  // clamp, (x+1)/2, *255 in float32, truncation (spec 6).
  at::Tensor v = (raw.to(at::kFloat).clamp(-1, 1) + 1) / 2;
  return (v * 255).to(at::kByte).permute({0, 2, 3, 1}).contiguous().cpu();
}

void check_call_memory(const Model& model, int64_t frames, const std::string& setting,
                       std::optional<size_t> free_bytes) {
  const size_t free = free_bytes ? *free_bytes : device_memory_free(model.device());
  const bool one_batch = !model.device().is_cpu();
  // With graphs a call's memory is held twice: by the graph's recording
  // and by the allocator's cache, where the run before the recording left it.
  const size_t copies = model.graphs() == Model::Graphs::Off ? 1 : 2;
  const size_t need = copies * model.call_bytes(frames, one_batch);
  if (free == 0 || need <= free) return;
  // call_bytes is a fixed part plus a part per frame.
  const size_t fixed = model.call_bytes(0, one_batch), per_frame = model.call_bytes(1, one_batch) - fixed;
  const int64_t most = free / copies > fixed ? static_cast<int64_t>((free / copies - fixed) / per_frame) : 0;
  throw Error(Error::Kind::Usage,
              setting + ": one call renders up to " + std::to_string(frames) + " frames, which take about " +
                  format_bytes(need) + " on " + model.device().str() + (one_batch ? " (one batch)" : "") +
                  (copies > 1 ? " (twice: CUDA graphs keep their recordings' memory)" : "") + "; " +
                  format_bytes(free) + " free there: at most " + std::to_string(most) + " frames a call");
}

bool warm_up(const Model& model, int64_t batch) {
  if (!model.warm_ups().first("batch " + std::to_string(batch))) return false;
  c10::InferenceMode guard;
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(model.device());
  const Portrait grey = model.encode(at::zeros({1, 3, model.size(), model.size()}, opts));
  to_uint8(model.render(grey, at::zeros({batch, model.motion_dim()}, opts)));
  return true;
}

std::shared_ptr<RenderBatcher> shared_renderer(const std::shared_ptr<const Model>& model, size_t max_batch,
                                               std::chrono::microseconds max_delay) {
  auto run = [model](const std::vector<const RenderRequest*>& requests) {
    c10::InferenceMode guard;
    std::vector<const Portrait*> portraits;
    std::vector<at::Tensor> motions;
    for (const RenderRequest* r : requests) {
      if (!r->portrait || r->motion.dim() != 2)
        throw Error(Error::Kind::Usage, "lia shared renderer: a request without a portrait or (n, motion) codes");
      for (int64_t i = 0; i < r->motion.size(0); ++i) portraits.push_back(r->portrait.get());
      motions.push_back(r->motion);
    }
    const at::Tensor frames =
        to_uint8(model->render(portraits, at::cat(motions, 0), !model->device().is_cpu()));
    std::vector<at::Tensor> out;
    int64_t at0 = 0;
    for (const RenderRequest* r : requests) {
      out.push_back(frames.slice(0, at0, at0 + r->motion.size(0)).contiguous());
      at0 += r->motion.size(0);
    }
    return out;
  };
  return shared_batcher<RenderBatcher>(model.get(), max_batch, max_delay, [&] {
    return std::make_shared<RenderBatcher>(run, max_batch, max_delay);
  });
}

Renderer::~Renderer() { stop_encoder(); }

void Renderer::reset(std::shared_ptr<const Model> model, std::shared_ptr<RenderBatcher> shared) {
  stop_encoder();
  std::lock_guard<std::mutex> hold(lock_);
  model_ = std::move(model);
  shared_ = std::move(shared);
  const unsigned serial = current_.serial;
  current_ = Current();
  current_.serial = serial;
}

std::shared_ptr<const Model> Renderer::model() const {
  std::lock_guard<std::mutex> hold(lock_);
  return model_;
}

Renderer::Current Renderer::current() const {
  std::lock_guard<std::mutex> hold(lock_);
  return current_;
}

Renderer::Encoded Renderer::encode(const std::shared_ptr<const Model>& model, const PortraitSource& source) const {
  c10::InferenceMode guard;
  PreparedPortrait prepared = prepare_portrait(source.path, model->size(), source.spec, source.detector, model->device());
  Encoded out;
  out.model = model;
  out.portrait = std::make_shared<const Portrait>(model->encode(prepared.tensor.to(model->device())));
  out.picture = std::make_shared<const RgbImage>(std::move(prepared.picture));
  out.choice = prepared.choice;
  return out;
}

Renderer::Current Renderer::make_current(Encoded encoded) {
  std::lock_guard<std::mutex> hold(lock_);
  if (model_ != encoded.model) return Current();  // reset meanwhile
  current_.portrait = std::move(encoded.portrait);
  current_.picture = std::move(encoded.picture);
  current_.choice = encoded.choice;
  current_.serial++;
  Current out = current_;
  out.fresh = true;
  return out;
}

Renderer::Current Renderer::update(const std::function<std::optional<PortraitSource>(bool have)>& want) {
  std::lock_guard<std::mutex> one(update_);
  Current now = current();
  const std::shared_ptr<const Model> model = this->model();
  if (!model) return now;
  const std::optional<PortraitSource> source = want(now.portrait != nullptr);
  if (!source) return now;
  return make_current(encode(model, *source));
}

void Renderer::encode_later(PortraitSource source) {
  std::lock_guard<std::mutex> hold(async_);
  waiting_ = std::move(source);
  if (running_) return;
  if (encoder_.joinable()) encoder_.join();  // one that ran out of work: it holds no lock now
  running_ = true;
  encoder_ = std::thread([this] { encoder_loop(); });
}

bool Renderer::encoding() const {
  std::lock_guard<std::mutex> hold(async_);
  return running_ || waiting_.has_value();
}

void Renderer::encoder_loop() {
  bound_num_threads();  // a thread of its own: OpenMP's team from the environment
  for (;;) {
    PortraitSource source;
    {
      std::lock_guard<std::mutex> hold(async_);
      if (stopping_ || !waiting_) {
        running_ = false;
        return;
      }
      source = std::move(*waiting_);
      waiting_.reset();
    }
    const std::shared_ptr<const Model> model = this->model();
    if (!model) continue;
    Finished done;
    try {
      std::lock_guard<std::mutex> one(update_);  // one encode at a time, whoever asks
      done.encoded = encode(model, source);
    } catch (...) {
      done.error = std::current_exception();
    }
    done.source = std::move(source);
    std::lock_guard<std::mutex> hold(async_);
    finished_ = std::move(done);  // replaces one nobody adopted
  }
}

std::optional<Renderer::Adopted> Renderer::adopt_finished() {
  std::optional<Finished> done;
  {
    std::lock_guard<std::mutex> hold(async_);
    done.swap(finished_);
  }
  if (!done) return std::nullopt;
  Adopted out;
  out.source = std::move(done->source);
  out.error = done->error;
  out.now = out.error ? current() : make_current(std::move(done->encoded));
  return out;
}

void Renderer::stop_encoder() {
  std::thread running;
  {
    std::lock_guard<std::mutex> hold(async_);
    stopping_ = true;
    waiting_.reset();
    running.swap(encoder_);
  }
  if (running.joinable()) running.join();
  std::lock_guard<std::mutex> hold(async_);
  stopping_ = false;
  running_ = false;
  finished_.reset();
}

at::Tensor Renderer::render(const float* motion, int64_t n) const {
  std::shared_ptr<const Model> model;
  std::shared_ptr<RenderBatcher> shared;
  std::shared_ptr<const Portrait> portrait;
  {
    std::lock_guard<std::mutex> hold(lock_);
    model = model_;
    shared = shared_;
    portrait = current_.portrait;
  }
  if (!model || !portrait) throw Error(Error::Kind::Usage, "lia renderer: no model or portrait to render with");
  c10::InferenceMode guard;
  const at::Tensor m = at::from_blob(const_cast<float*>(motion), {n, model->motion_dim()}, at::kFloat)
                           .to(model->device(), at::kFloat, /*non_blocking=*/false, /*copy=*/true);
  at::Tensor frames = shared ? shared->submit({portrait, m}) : to_uint8(model->render(*portrait, m));
  const int64_t S = model->size();
  if (frames.dim() != 4 || frames.size(0) != n || frames.size(1) != S || frames.size(2) != S || frames.size(3) != 3 ||
      frames.scalar_type() != at::kByte || !frames.is_contiguous() || !frames.is_cpu())
    throw Error(Error::Kind::Runtime, "lia renderer: frames of an unexpected shape (expected (" + std::to_string(n) +
                                          "," + std::to_string(S) + "," + std::to_string(S) + ",3) uint8)");
  return frames;
}

}  // namespace anitalker::lia
