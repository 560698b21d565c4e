// Stage 2 of AniTalker: DiffusionPredictor + DDIM sampler (spec/motion.md).
#include "motion.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <map>
#include <mutex>

#include "checkpoint.h"
#include "error.h"
#include "kernels.h"
#include "model_cache.h"
#include "state_dict.h"
#include "weights.h"

namespace anitalker::motion {

namespace {

// A linear layer.  On the CPU a sequence (B,T,in) goes through oneDNN as a
// 1x1 convolution: oneDNN uses the AVX-512 units where OpenBLAS (at::linear)
// may not (Debian's OpenBLAS is often pinned to its Haswell kernels), and
// measured 2-2.6x faster at the decoder's sizes (docs/performance.md).  The
// sums are the same up to float32 rounding order.  (HuBERT's channels-last
// form, lib/kernels.h, measured slower here: 50 steps 3.2-3.5 s against
// 3.06-3.15 s.)  The decoder's layers on the CPU (float32, or bfloat16
// with Precision::Bf16) go through oneDNN's matmul with their weights
// packed once where the build has oneDNN's headers (PackedLinear,
// lib/kernels.h): a denoiser pass 1.3x faster again.
struct Linear {
  at::Tensor w, b;
  at::Tensor w16;  // Precision::Bf16: w in bfloat16 (made after the weights are placed, not walked)
  anitalker::PackedLinear packed;  // CPU, float32 or bfloat16, where the build has oneDNN (made after placing, not walked)
  at::Tensor operator()(const at::Tensor& x) const {
    if (w16.defined()) return anitalker::linear_bf16(x, w16, b);
    if (packed.usable() && x.is_cpu()) return packed(x);
    // w as a [out, in, 1] kernel: a view of the same memory.
    if (x.dim() == 3 && x.is_cpu()) {
      // As a 1x1 conv1d over [B, C, T] (oneDNN directly, lib/kernels.h: a
      // short window, the low-latency preset's 13 frames, would go to
      // LibTorch 1.13's slow path).
      return dnn_conv(x.transpose(1, 2), w.unsqueeze(-1), b, at::IntArrayRef{1}, at::IntArrayRef{0})
          .transpose(1, 2)
          .contiguous();
    }
    return at::linear(x, w, b);
  }
  template <class F>
  void each(F& f) {
    visit_all(f, w, b);
  }
};

Linear linear(const StateDict& sd, const std::string& p, int64_t out, int64_t in, bool bias = true) {
  Linear l;
  l.w = sd.get_float(p + ".weight", {out, in});
  if (bias) l.b = sd.get_float(p + ".bias", {l.w.size(0)});
  return l;
}

struct Norm {
  at::Tensor w, b;
  at::Tensor operator()(const at::Tensor& x) const { return at::layer_norm(x, {w.size(0)}, w, b, 1e-12); }
  template <class F>
  void each(F& f) {
    visit_all(f, w, b);
  }
};

Norm norm(const StateDict& sd, const std::string& p, int64_t d) { return {sd.get_float(p + ".weight", {d}), sd.get_float(p + ".bias", {d})}; }

struct Conv1d {
  at::Tensor w, b;
  at::Tensor w16;  // Precision::Bf16, pointwise convolutions only (not walked)
  int64_t stride = 1, pad = 0, groups = 1;
  // x channels-first (B,C,L)
  at::Tensor operator()(const at::Tensor& x) const {
    if (w16.defined()) {
      at::Tensor y = at::conv1d(x.to(at::kBFloat16), w16, c10::nullopt, at::IntArrayRef{stride}, at::IntArrayRef{pad},
                                at::IntArrayRef{1}, groups)
                         .to(x.scalar_type());
      return b.defined() ? y.add_(b.unsqueeze(-1)) : y;
    }
    return at::conv1d(x, w, b, at::IntArrayRef{stride}, at::IntArrayRef{pad}, at::IntArrayRef{1}, groups);
  }
  template <class F>
  void each(F& f) {
    visit_all(f, w, b);
  }
};

Conv1d conv1d(const StateDict& sd, const std::string& p, int64_t out, int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t groups = 1) {
  Conv1d c;
  c.w = sd.get_float(p + ".weight", {out, in, k});
  c.b = sd.get_float(p + ".bias", {c.w.size(0)});
  c.stride = stride;
  c.pad = pad;
  c.groups = groups;
  return c;
}

at::Tensor swish(const at::Tensor& x) { return x * at::sigmoid(x); }

struct Block {
  Linear ffm1, ffm2, ff1, ff2, q, k, v, out, pos;
  at::Tensor pos_u, pos_v;  // (h, d_k)
  Conv1d pw1, dw, pw2;
  anitalker::PackedLinear pw1_packed, pw2_packed;  // pw1, pw2 as linear layers (made after placing, not walked)
  // The conformers' CPU path (run_block_fused; made after placing,
  // not walked): q, k and v as one packed layer (3d outputs), the
  // depthwise taps time-major (k, d), and the batch norm with the depthwise
  // bias folded into a per-channel scale and shift.
  anitalker::PackedLinear qkv_packed;
  at::Tensor dw_taps, dw_scale, dw_shift;
  at::Tensor bn_w, bn_b, bn_mean, bn_var;
  Norm n_ffm, n_mha, n_conv, n_ff, n_final;
  template <class F>
  void each(F& f) {
    visit_all(f, ffm1, ffm2, ff1, ff2, q, k, v, out, pos, pos_u, pos_v, pw1, dw, pw2, bn_w, bn_b, bn_mean, bn_var, n_ffm,
              n_mha, n_conv, n_ff, n_final);
  }
};

constexpr int kHeads = 2;

Block block(const StateDict& sd, int64_t d) {
  Block b;
  b.ffm1 = linear(sd, "feed_forward_macaron.w_1", -1, d);
  const int64_t hid = b.ffm1.w.size(0);
  b.ffm2 = linear(sd, "feed_forward_macaron.w_2", d, hid);
  b.ff1 = linear(sd, "feed_forward.w_1", hid, d);
  b.ff2 = linear(sd, "feed_forward.w_2", d, hid);
  b.q = linear(sd, "self_attn.linear_q", d, d);
  b.k = linear(sd, "self_attn.linear_k", d, d);
  b.v = linear(sd, "self_attn.linear_v", d, d);
  b.out = linear(sd, "self_attn.linear_out", d, d);
  b.pos = linear(sd, "self_attn.linear_pos", d, d, false);
  b.pos_u = sd.get_float("self_attn.pos_bias_u", {kHeads, d / kHeads});
  b.pos_v = sd.get_float("self_attn.pos_bias_v", {kHeads, d / kHeads});
  b.pw1 = conv1d(sd, "conv_module.pointwise_conv1", 2 * d, d, 1, 1, 0);
  const int64_t k = sd.shape("conv_module.depthwise_conv.weight").at(2);
  b.dw = conv1d(sd, "conv_module.depthwise_conv", d, 1, k, 1, (k - 1) / 2, d);
  b.pw2 = conv1d(sd, "conv_module.pointwise_conv2", d, d, 1, 1, 0);
  b.bn_w = sd.get_float("conv_module.norm.weight", {d});
  b.bn_b = sd.get_float("conv_module.norm.bias", {d});
  b.bn_mean = sd.get_float("conv_module.norm.running_mean", {d});
  b.bn_var = sd.get_float("conv_module.norm.running_var", {d});
  b.n_ffm = norm(sd, "norm_ff_macaron", d);
  b.n_mha = norm(sd, "norm_mha", d);
  b.n_conv = norm(sd, "norm_conv", d);
  b.n_ff = norm(sd, "norm_ff", d);
  b.n_final = norm(sd, "norm_final", d);
  return b;
}

std::vector<Block> conformer(const StateDict& sd, int64_t d, const std::string& name, const std::string& prefix) {
  std::vector<Block> bs;
  for (int i = 0; sd.has("encoders." + std::to_string(i) + ".norm_ff.weight"); ++i)
    bs.push_back(block(sd.sub("encoders." + std::to_string(i) + "."), d));
  if (bs.empty()) throw format_error(name + ": missing tensor '" + prefix + "encoders.0.norm_ff.weight'");
  return bs;
}

// Relative positional table (1, 2T-1, d), spec 3.2 step 1.
at::Tensor rel_pos(int64_t T, int64_t d, const at::TensorOptions& o) {
  at::Tensor omega = at::exp(at::arange(0, d, 2, at::kFloat) * (-(std::log(10000.0) / static_cast<double>(d))));
  at::Tensor p = at::arange(0, T, at::kFloat).unsqueeze(1);
  at::Tensor pos = at::zeros({T, d}, at::kFloat), neg = at::zeros({T, d}, at::kFloat);
  using at::indexing::None;
  using at::indexing::Slice;
  pos.index_put_({Slice(), Slice(0, None, 2)}, at::sin(p * omega));
  pos.index_put_({Slice(), Slice(1, None, 2)}, at::cos(p * omega));
  neg.index_put_({Slice(), Slice(0, None, 2)}, at::sin(-1 * p * omega));
  neg.index_put_({Slice(), Slice(1, None, 2)}, at::cos(-1 * p * omega));
  at::Tensor r = at::cat({at::flip(pos, {0}), neg.index({Slice(1, None)})}, 0).unsqueeze(0);
  return r.to(o.device(), o.dtype());
}

at::Tensor rel_shift(const at::Tensor& x) {
  // espnet's pad-reshape-slice (spec 3.2).
  const int64_t b = x.size(0), h = x.size(1), t = x.size(2), n = x.size(3);
  at::Tensor zp = at::zeros({b, h, t, 1}, x.options());
  at::Tensor xp = at::cat({zp, x}, -1).view({b, h, n + 1, t});
  using at::indexing::None;
  using at::indexing::Slice;
  return xp.index({Slice(), Slice(), Slice(1, None)}).reshape({b, h, t, n}).index({Slice(), Slice(), Slice(), Slice(0, n / 2 + 1)});
}

// The attention of spec 3.2 from q, k, v (B,T,d) (views of any layout).
at::Tensor attend(const Block& w, const at::Tensor& q_, const at::Tensor& k_, const at::Tensor& v_,
                  const at::Tensor& pos) {
  const int64_t B = q_.size(0), T = q_.size(1), d = q_.size(2), dk = d / kHeads;
  at::Tensor q = q_.reshape({B, T, kHeads, dk});  // (B,T,h,dk)
  at::Tensor k = k_.reshape({B, T, kHeads, dk}).transpose(1, 2);
  at::Tensor v = v_.reshape({B, T, kHeads, dk}).transpose(1, 2);
  at::Tensor p = pos.view({pos.size(0), -1, kHeads, dk}).transpose(1, 2);
  at::Tensor qu = (q + w.pos_u).transpose(1, 2);
  at::Tensor qv = (q + w.pos_v).transpose(1, 2);
  at::Tensor ac = at::matmul(qu, k.transpose(-2, -1));
  at::Tensor bd = rel_shift(at::matmul(qv, p.transpose(-2, -1)));
  at::Tensor scores = (ac + bd) / std::sqrt(static_cast<double>(dk));
  at::Tensor attn = at::softmax(scores, -1);
  at::Tensor ctx = at::matmul(attn, v).transpose(1, 2).contiguous().view({B, T, d});
  return w.out(ctx);
}

// p: the block's linear_pos of the relative positional table, (1, 2T-1, d).
at::Tensor mhsa(const Block& w, const at::Tensor& x, const at::Tensor& pos) { return attend(w, w.q(x), w.k(x), w.v(x), pos); }

at::Tensor conv_module(const Block& w, const at::Tensor& x) {
  if (w.pw1_packed.usable() && w.pw2_packed.usable() && x.is_cpu()) {
    // The pointwise convolutions as linear layers over the time-major rows
    // (the packed matmul), the depthwise one channel-major between them.
    at::Tensor y = at::glu(w.pw1_packed(x), -1).transpose(1, 2);
    y = w.dw(y);
    y = at::batch_norm(y, w.bn_w, w.bn_b, w.bn_mean, w.bn_var, false, 0.1, 1e-5, true);
    return w.pw2_packed(swish(y).transpose(1, 2));
  }
  at::Tensor y = w.pw1(x.transpose(1, 2));
  y = at::glu(y, 1);
  y = w.dw(y);
  y = at::batch_norm(y, w.bn_w, w.bn_b, w.bn_mean, w.bn_var, false, 0.1, 1e-5, true);
  y = swish(y);
  y = w.pw2(y);
  return y.transpose(1, 2);
}

// Each block's linear_pos of the relative positional table for T frames:
// they depend on T only, so the sampler computes them once, not every step
// (about a seventh of the decoder's work).
std::vector<at::Tensor> block_positions(const std::vector<Block>& bs, int64_t T, int64_t d, const at::TensorOptions& o) {
  at::Tensor R = rel_pos(T, d, o);
  std::vector<at::Tensor> ps;
  for (const Block& w : bs) ps.push_back(w.pos(R));
  return ps;
}

// --- The CPU path of the conformers (float32 activations) -----------------
//
// A streaming window is 5-60 frames.  At such sizes a denoiser step is a
// few milliseconds of matrix products and some seventy small ATen ops
// around them, and most of those ops open a parallel region of their own;
// with OMP_WAIT_POLICY=PASSIVE (what a machine shared by several elements
// wants) each region wakes a sleeping thread: a 23-frame window ran 1.5x
// slower than with threads that spin (docs/performance.md).  This path
// does the work between the products in plain loops, serial for a short
// window: the residual + layer norm, GLU + depthwise convolution + batch
// norm + swish, and for short windows the attention with its relative
// shift; q, k and v are one product.  Longer sequences (offline) take it
// too, with BLAS's attention: no slower there with spinning threads, a few
// percent faster with PASSIVE ones.  The same arithmetic in another order:
// float32 rounding.

// Frames up to which a conformer takes this path (all, unless
// ANITALKER_MOTION_FUSED_FRAMES says otherwise: 0 = never, the ATen path;
// for tests and measurements), and up to which its attention runs in plain
// loops rather than BLAS's products (32: the `balanced` and `low` presets'
// windows, 23 and 13 frames with their context; at `quality`'s 60 the
// loops cost what they save; ANITALKER_MOTION_LOOP_FRAMES).
int64_t frames_env(const char* name, int64_t fallback) {
  const char* e = std::getenv(name);
  return e && *e ? std::strtoll(e, nullptr, 10) : fallback;
}
int64_t fused_max_frames() { return frames_env("ANITALKER_MOTION_FUSED_FRAMES", INT64_MAX); }
int64_t loop_attention_frames() { return frames_env("ANITALKER_MOTION_LOOP_FRAMES", 32); }

// Rows per task in the loops below: a short window stays on one thread.
int64_t row_grain(int64_t width) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, width)); }

// x <- LayerNorm(x + s * y) over the last dimension, in place (x and y
// contiguous float32; y undefined: x alone).  eps 1e-12, as the blocks'.
void add_layer_norm_(at::Tensor& x, const at::Tensor& y, float s, const Norm& n) {
  const int64_t d = x.size(-1), rows = x.numel() / d;
  TORCH_CHECK(x.is_contiguous() && (!y.defined() || y.sizes() == x.sizes()), "add_layer_norm_: shapes");
  const at::Tensor yc = y.defined() ? y.contiguous() : y;
  float* xp = x.data_ptr<float>();
  const float* yp = yc.defined() ? yc.data_ptr<float>() : nullptr;
  const float* g = n.w.data_ptr<float>();
  const float* b = n.b.data_ptr<float>();
  at::parallel_for(0, rows, row_grain(d), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* row = xp + r * d;
      if (yp) {
        const float* yr = yp + r * d;
        for (int64_t i = 0; i < d; ++i) row[i] = row[i] + s * yr[i];
      }
      // Two passes in eight running sums each (vectorisable; no long
      // chain of dependent additions).
      float s8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t i = 0;
      for (; i + 8 <= d; i += 8)
        for (int j = 0; j < 8; ++j) s8[j] += row[i + j];
      double sum = 0;
      for (float v : s8) sum += v;
      for (; i < d; ++i) sum += row[i];
      const float m = static_cast<float>(sum / static_cast<double>(d));
      float q8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (i = 0; i + 8 <= d; i += 8)
        for (int j = 0; j < 8; ++j) q8[j] += (row[i + j] - m) * (row[i + j] - m);
      double sq = 0;
      for (float v : q8) sq += v;
      for (; i < d; ++i) sq += (row[i] - m) * (row[i] - m);
      const float rstd = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(d) + 1e-12));
      for (int64_t i = 0; i < d; ++i) row[i] = (row[i] - m) * rstd * g[i] + b[i];
    }
  });
}

// The dot product of n floats, in eight running sums (vectorisable without
// reassociation by the compiler).
inline float dot(const float* a, const float* b, int64_t n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) s[j] += a[i + j] * b[i + j];
  float t = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
  for (; i < n; ++i) t += a[i] * b[i];
  return t;
}

// The relative-position self-attention of spec 3.2 for x (B,T,d): q, k, v
// from one packed product; per head, scores (q + u).k_m + (q + v').p_r with
// r = T-1-i+m (the relative shift, read in place), divided by sqrt(d_k),
// softmax over m, the context, then linear_out.
// loops: whether the attention runs in the loops (else BLAS's products).
at::Tensor mhsa_fused(const Block& w, const at::Tensor& x, const at::Tensor& pos, bool loops) {
  const int64_t B = x.size(0), T = x.size(1), d = x.size(2), dk = d / kHeads;
  const at::Tensor qkv = w.qkv_packed(x).contiguous();  // (B,T,3d)
  if (!loops)  // longer windows: BLAS's products on the views of qkv
    return attend(w, qkv.narrow(2, 0, d), qkv.narrow(2, d, d), qkv.narrow(2, 2 * d, d), pos);
  const at::Tensor p = pos.contiguous();                // (1,2T-1,d)
  at::Tensor ctx = at::zeros({B, T, d}, x.options());
  const float* Q = qkv.data_ptr<float>();
  const float* Pp = p.data_ptr<float>();
  const float* U = w.pos_u.data_ptr<float>();
  const float* V = w.pos_v.data_ptr<float>();
  float* C = ctx.data_ptr<float>();
  const float root = static_cast<float>(std::sqrt(static_cast<double>(dk)));
  at::parallel_for(0, B * kHeads, row_grain(3 * T * dk), [&](int64_t j0, int64_t j1) {
    std::vector<float> qu(dk), qv(dk), a(T);
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t b = j / kHeads, h = j % kHeads;
      const float* q0 = Q + b * T * 3 * d + h * dk;
      const float* k0 = q0 + d;
      const float* v0 = q0 + 2 * d;
      const float* p0 = Pp + h * dk;
      for (int64_t i = 0; i < T; ++i) {
        const float* qi = q0 + i * 3 * d;
        for (int64_t c = 0; c < dk; ++c) {
          qu[c] = qi[c] + U[h * dk + c];
          qv[c] = qi[c] + V[h * dk + c];
        }
        float top = -INFINITY;
        for (int64_t m = 0; m < T; ++m) {
          const float ac = dot(qu.data(), k0 + m * 3 * d, dk);
          const float bd = dot(qv.data(), p0 + (T - 1 - i + m) * d, dk);
          a[m] = (ac + bd) / root;
          top = std::max(top, a[m]);
        }
        float sum = 0;
        for (int64_t m = 0; m < T; ++m) {
          a[m] = std::exp(a[m] - top);
          sum += a[m];
        }
        float* ci = C + (b * T + i) * d + h * dk;
        for (int64_t m = 0; m < T; ++m) {
          const float am = a[m] / sum;
          const float* vm = v0 + m * 3 * d;
          for (int64_t c = 0; c < dk; ++c) ci[c] += am * vm[c];
        }
      }
    }
  });
  return w.out(ctx);
}

// The convolution module of spec 3.2, time-major throughout: pw1 (packed),
// GLU, the depthwise convolution (zero padded) with its bias and the batch
// norm folded into a scale and shift per channel, swish, pw2 (packed).
at::Tensor conv_module_fused(const Block& w, const at::Tensor& x) {
  const at::Tensor h = w.pw1_packed(x).contiguous();  // (B,T,2d)
  const int64_t B = h.size(0), T = h.size(1), d = h.size(2) / 2;
  // GLU: a * sigmoid(b), a and b the halves of each row.  (at::glu on the
  // halves' strided views cost 5 times this.)
  const at::Tensor sig = at::sigmoid(h.narrow(-1, d, d));  // contiguous (B,T,d)
  at::Tensor g = at::empty({B, T, d}, x.options());
  {
    const float* H = h.data_ptr<float>();
    const float* S = sig.data_ptr<float>();
    float* Gw = g.data_ptr<float>();
    at::parallel_for(0, B * T, row_grain(d), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = 0; c < d; ++c) Gw[r * d + c] = H[r * 2 * d + c] * S[r * d + c];
    });
  }
  at::Tensor y = at::empty({B, T, d}, x.options());
  const int64_t k = w.dw_taps.size(0), pad = (k - 1) / 2;
  const float* G = g.data_ptr<float>();
  const float* taps = w.dw_taps.data_ptr<float>();
  const float* scale = w.dw_scale.data_ptr<float>();
  const float* shift = w.dw_shift.data_ptr<float>();
  float* Y = y.data_ptr<float>();
  at::parallel_for(0, B * T, row_grain(k * d), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / T, t = r % T;
      float* yr = Y + r * d;
      for (int64_t c = 0; c < d; ++c) yr[c] = 0.f;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t s = t + j - pad;
        if (s < 0 || s >= T) continue;
        const float* gs = G + (b * T + s) * d;
        const float* tj = taps + j * d;
        for (int64_t c = 0; c < d; ++c) yr[c] += tj[c] * gs[c];
      }
      for (int64_t c = 0; c < d; ++c) yr[c] = yr[c] * scale[c] + shift[c];
    }
  });
  return w.pw2_packed(at::silu_(y));
}

// One block on the CPU path (x (B,T,d) contiguous float32, on
// the CPU, the block's extras made): spec 3.2 step 2.
void run_block_fused(const Block& w, at::Tensor& x, const at::Tensor& pos, bool loops) {
  at::Tensor h = w.ffm1(x);
  add_layer_norm_(x, w.ffm2(at::silu_(h)), 0.5f, w.n_ffm);
  add_layer_norm_(x, mhsa_fused(w, x, pos, loops), 1.f, w.n_mha);
  add_layer_norm_(x, conv_module_fused(w, x), 1.f, w.n_conv);
  h = w.ff1(x);
  add_layer_norm_(x, w.ff2(at::silu_(h)), 0.5f, w.n_ff);
  add_layer_norm_(x, at::Tensor(), 0.f, w.n_final);
}

at::Tensor run_conformer(const std::vector<Block>& bs, at::Tensor x, const std::vector<at::Tensor>& positions = {}) {
  const int64_t d = x.size(2);
  x = x * std::sqrt(static_cast<double>(d));
  const std::vector<at::Tensor> ps = positions.empty() ? block_positions(bs, x.size(1), d, x.options()) : positions;
  const bool fused = !bs.empty() && bs[0].qkv_packed.usable() && x.is_cpu() && x.scalar_type() == at::kFloat &&
                     x.size(1) <= fused_max_frames();
  if (fused) {
    x = x.contiguous();
    const bool loops = x.size(1) <= loop_attention_frames();  // read once per run, not per block
    for (size_t i = 0; i < bs.size(); ++i) run_block_fused(bs[i], x, ps[i], loops);
    return x;
  }
  for (size_t i = 0; i < bs.size(); ++i) {
    const Block& w = bs[i];
    x = w.n_ffm(x + 0.5 * w.ffm2(swish(w.ffm1(x))));
    x = w.n_mha(x + mhsa(w, x, ps[i]));
    x = w.n_conv(x + conv_module(w, x));
    x = w.n_ff(x + 0.5 * w.ff2(swish(w.ff1(x))));
    x = w.n_final(x);
  }
  return x;
}

struct Lstm {
  std::vector<at::Tensor> params;
  at::Tensor flat;  // on CUDA: the one buffer params are views of (cuDNN's layout)
  int64_t hidden = 0;
  Linear fc;
  at::Tensor operator()(const at::Tensor& x) const {
    const int64_t layers = static_cast<int64_t>(params.size() / 4);
    at::Tensor h0 = at::zeros({layers, x.size(0), hidden}, x.options());
    auto r = at::lstm(x, {h0, h0}, params, true, layers, 0.0, false, false, true);
    return fc(std::get<0>(r));
  }
  template <class F>
  void each(F& f) {
    visit_all(f, params, flat, fc);
  }
};

Lstm lstm(const StateDict& sd, const std::string& p, int64_t in, int64_t out) {
  Lstm l;
  l.hidden = sd.shape(p + ".lstm.weight_hh_l0").at(1);
  const int64_t H = l.hidden;
  for (int k = 0; sd.has(p + ".lstm.weight_ih_l" + std::to_string(k)); ++k) {
    const std::string s = std::to_string(k);
    l.params.push_back(sd.get_float(p + ".lstm.weight_ih_l" + s, {4 * H, k == 0 ? in : H}));
    l.params.push_back(sd.get_float(p + ".lstm.weight_hh_l" + s, {4 * H, H}));
    l.params.push_back(sd.get_float(p + ".lstm.bias_ih_l" + s, {4 * H}));
    l.params.push_back(sd.get_float(p + ".lstm.bias_hh_l" + s, {4 * H}));
  }
  l.fc = linear(sd, p + ".fc", out, H);
  return l;
}

}  // namespace

std::string variant_name(Variant v) {
  switch (v) {
    case Variant::HubertAudioOnly: return "hubert_audio_only";
    case Variant::HubertPoseOnly: return "hubert_pose_only";
    case Variant::HubertFullControl: return "hubert_full_control";
    case Variant::MfccPoseOnly: return "mfcc_pose_only";
    case Variant::MfccFullControl: return "mfcc_full_control";
  }
  return "?";
}

struct Model::Weights {
  at::Tensor hal_w;  // softmax(weights), (L)
  Conv1d down1, down2;
  std::vector<Block> speech, decoder;
  Lstm pose_pred, pose_enc, loc_pred, loc_enc, scale_pred, scale_enc;
  Linear init_code, noisy, t_enc, dir, out;
  template <class F>
  void each(F& f) {
    visit_all(f, hal_w, down1, down2, speech, decoder, pose_pred, pose_enc, loc_pred, loc_enc, scale_pred, scale_enc,
              init_code, noisy, t_enc, dir, out);
  }
};

Model::Model(const StateDict& all, c10::Device device, at::ScalarType dtype, Precision precision)
    : device_(device), dtype_(dtype), precision_(precision) {
  check_precision(precision, device, "precision", {Precision::Fp32, Precision::Bf16}, "the motion generator");
  const std::string name = all.checkpoint().name();
  const StateDict sd = all.sub("ema_model.");
  auto w = std::make_shared<Weights>();

  // Sizes from the shapes (spec 1).
  const std::vector<int64_t> op = sd.shape("out_proj.weight");
  if (op.size() != 2) throw format_error(name + ": ema_model.out_proj.weight: expected 2 dimensions");
  motion_dim_ = static_cast<int>(op[0]);
  decoder_dim_ = static_cast<int>(op[1]);
  const bool hub = sd.has("weights");
  const bool pose = sd.has("pose_predictor.fc.weight");
  const bool loc = sd.has("location_predictor.fc.weight");
  if (hub) {
    variant_ = !pose ? Variant::HubertAudioOnly : loc ? Variant::HubertFullControl : Variant::HubertPoseOnly;
  } else {
    if (!sd.has("down_sample2.weight"))
      throw format_error(name + ": missing tensor 'ema_model.weights' (hubert) or 'ema_model.down_sample2.weight' (mfcc): not a stage-2 checkpoint");
    if (!pose) throw format_error(name + ": missing tensor 'ema_model.pose_predictor.fc.weight' (an mfcc checkpoint without pose)");
    variant_ = loc ? Variant::MfccFullControl : Variant::MfccPoseOnly;
  }

  if (hub) {
    at::Tensor ws = sd.get_float("weights", {-1});
    hubert_layers_ = static_cast<int>(ws.size(0));
    w->hal_w = at::softmax(ws, -1);
    w->down1 = conv1d(sd, "down_sample1", -1, -1, 3, 2, 1);
    speech_dim_ = static_cast<int>(w->down1.w.size(0));
    audio_dim_ = static_cast<int>(w->down1.w.size(1));
    w->speech = conformer(sd.sub("speech_encoder."), speech_dim_, name, "ema_model.speech_encoder.");
  } else {
    w->down1 = conv1d(sd, "down_sample1", -1, -1, 3, 2, 1);
    audio_dim_ = static_cast<int>(w->down1.w.size(1));
    w->down2 = conv1d(sd, "down_sample2", -1, w->down1.w.size(0), 3, 2, 1);
    speech_dim_ = static_cast<int>(w->down2.w.size(0));
  }
  const int64_t S = speech_dim_, D = decoder_dim_, M = motion_dim_;
  w->init_code = linear(sd, "init_code_proj.0", -1, -1);
  const int64_t P = w->init_code.w.size(0);
  start_dim_ = static_cast<int>(w->init_code.w.size(1));
  if (D != S + 4 * P)
    throw format_error(name + ": ema_model.out_proj.weight: decoder width " + std::to_string(D) + " is not speech width " + std::to_string(S) +
                       " + 4 x projection width " + std::to_string(P));
  w->noisy = linear(sd, "noisy_encoder.0", P, M);
  w->t_enc = linear(sd, "t_encoder.0", P, 1);
  w->dir = linear(sd, "encoder_direction_code", P, M);
  w->out = linear(sd, "out_proj", M, D);
  w->decoder = conformer(sd.sub("coarse_decoder."), D, name, "ema_model.coarse_decoder.");
  if (pose) {
    w->pose_pred = lstm(sd, "pose_predictor", S, 3);
    w->pose_enc = lstm(sd, "pose_encoder", 3, S);
  }
  if (loc) {
    w->loc_pred = lstm(sd, "location_predictor", S, 1);
    w->loc_enc = lstm(sd, "location_encoder", 1, S);
    w->scale_pred = lstm(sd, "face_scale_predictor", S, 1);
    w->scale_enc = lstm(sd, "face_scale_encoder", 1, S);
  }

  // RNG draws of the original's initialisation (spec 7): every ema float
  // tensor except the HAL weights and LayerNorm/BatchNorm parameters/buffers.
  const std::string pre = "ema_model.";
  for (const std::string& k : all.checkpoint().keys()) {
    if (k.compare(0, pre.size(), pre) != 0) continue;
    const std::string r = k.substr(pre.size());
    if (r == "weights" || r.find("norm") != std::string::npos) continue;
    int64_t n = 1;
    for (int64_t s : all.checkpoint().at(k).shape) n *= s;
    init_draws_ += n;
  }
  if (all.has("x_T")) {
    xT_numel_ = 1;
    for (int64_t s : all.shape("x_T")) xT_numel_ *= s;
  }

  place_weights(*w, device_, dtype_);
  // The decoder's layers on the CPU: packed where oneDNN has a kernel for
  // them (float32, or bfloat16 weights and inputs), else as below.
  const bool bf16 = precision_ == Precision::Bf16;
  // Not on the device-independent path (a GPU's; ANITALKER_GENERIC=1 on the
  // CPU, device.h generic_path): nothing packed, so no fused blocks either.
  const bool packs =
      (bf16 || precision_ == Precision::Fp32) && device_.is_cpu() && dtype_ == at::kFloat && !generic_path(device_);
  // A block's layers packed (bfloat16 or float32), and the extras of the
  // CPU path (run_block_fused).
  // q, k and v packed together: not also alone, nor in bfloat16 for
  // linear_bf16 (copies of their weights that only the ATen path, forced by
  // ANITALKER_MOTION_FUSED_FRAMES=0, would read: it then runs them in float32).
  const auto merged = [](const Block& b, const Linear* l) {
    return b.qkv_packed.usable() && (l == &b.q || l == &b.k || l == &b.v);
  };
  const auto pack = [&](Block& b, bool in_bf16) {
    b.qkv_packed = PackedLinear(at::cat({b.q.w, b.k.w, b.v.w}, 0), at::cat({b.q.b, b.k.b, b.v.b}, 0), in_bf16);
    for (Linear* l : {&b.ffm1, &b.ffm2, &b.ff1, &b.ff2, &b.q, &b.k, &b.v, &b.out})
      if (!merged(b, l)) l->packed = PackedLinear(l->w, l->b, in_bf16);
    b.pw1_packed = PackedLinear(b.pw1.w.squeeze(-1), b.pw1.b, in_bf16);
    b.pw2_packed = PackedLinear(b.pw2.w.squeeze(-1), b.pw2.b, in_bf16);
    b.dw_taps = b.dw.w.squeeze(1).t().contiguous();  // (k, d)
    const at::Tensor inv = b.bn_w / at::sqrt(b.bn_var + 1e-5);
    b.dw_scale = inv.contiguous();
    b.dw_shift = ((b.dw.b - b.bn_mean) * inv + b.bn_b).contiguous();
  };
  for (Block& b : w->decoder) {
    if (packs) pack(b, bf16);
    if (bf16) {  // what is not packed: bfloat16 weights for linear_bf16 / the conv
      for (Linear* l : {&b.ffm1, &b.ffm2, &b.ff1, &b.ff2, &b.q, &b.k, &b.v, &b.out})
        if (!l->packed.usable() && !merged(b, l)) l->w16 = l->w.to(at::kBFloat16);
      if (!(b.pw1_packed.usable() && b.pw2_packed.usable()))
        for (Conv1d* c : {&b.pw1, &b.pw2}) c->w16 = c->w.to(at::kBFloat16);
    }
  }
  if (packs) {
    // The speech conformer (HuBERT variants; float32 at either precision),
    // run once per window: 30 ms of a 23-frame window in small ops before.
    for (Block& b : w->speech) pack(b, false);
    // The denoiser's input and output layers (float32 either way): as 3-D
    // inputs they went through a 1x1 convolution, a parallel region and two
    // copies each per step.
    for (Linear* l : {&w->noisy, &w->out}) l->packed = PackedLinear(l->w, l->b);
  }
  // cuDNN wants an LSTM's weights in one buffer; separate tensors make it
  // repack them at every call and warn each time.  This packs them once (the
  // tensors become views of the buffer), as PyTorch's flatten_parameters()
  // does.
  if (device_.is_cuda() && at::globalContext().userEnabledCuDNN())
    for (Lstm* l : {&w->pose_pred, &w->pose_enc, &w->loc_pred, &w->loc_enc, &w->scale_pred, &w->scale_enc})
      if (!l->params.empty())
        l->flat = at::_cudnn_rnn_flatten_weight(l->params, 4, l->params[0].size(1), /*CUDNN_LSTM*/ 2, l->hidden, 0,
                                                static_cast<int64_t>(l->params.size() / 4), true, false);
  w_ = w;
}

std::shared_ptr<const Model> Model::load(const std::string& path, c10::Device device, Precision precision) {
  return shared_model<Model>(
      path, device,
      [&] { return std::make_shared<const Model>(StateDict(Checkpoint::open(path)), device, at::kFloat, precision); },
      precision_name(precision));
}

std::shared_ptr<const Model> Model::load(const std::string& path, c10::Device device, Variant expected,
                                         Precision precision) {
  auto m = load(path, device, precision);
  if (m->variant() != expected)
    throw Error(Error::Kind::Usage, path + ": a " + variant_name(m->variant()) + " checkpoint, but infer type " + variant_name(expected) + " was asked for");
  return m;
}

Condition Model::condition(const at::Tensor& start, const at::Tensor& direction, const at::Tensor& audio, bool control_flag,
                           const at::Tensor& pose, const at::Tensor& location, const at::Tensor& scale) const {
  const Weights& w = *w_;
  at::NoGradGuard no_grad;
  auto usage = [](const std::string& s) { return Error(Error::Kind::Usage, "motion: " + s); };
  if (start.dim() != 2 || start.size(1) != start_dim_) throw usage("expected a start code of shape [1, " + std::to_string(start_dim_) + "]");
  if (direction.dim() != 2 || direction.size(1) != motion_dim_)
    throw usage("expected a direction code of shape [1, " + std::to_string(motion_dim_) + "]");
  Condition c;
  at::Tensor a = audio.to(device_, dtype_);
  if (hubert()) {
    if (a.dim() != 4 || a.size(1) != hubert_layers_ || a.size(3) != audio_dim_)
      throw usage("expected hubert features of shape [1, " + std::to_string(hubert_layers_) + ", 2T, " + std::to_string(audio_dim_) + "]");
    at::Tensor feat = (w.hal_w.unsqueeze(0).unsqueeze(-1).unsqueeze(-1) * a).sum(1);
    at::Tensor x = w.down1(feat.transpose(1, 2)).transpose(1, 2);
    c.speech = run_conformer(w.speech, x);
  } else {
    if (a.dim() != 3 || a.size(2) != audio_dim_) throw usage("expected mfcc features of shape [1, 4T, " + std::to_string(audio_dim_) + "]");
    c.speech = w.down2(w.down1(a.transpose(1, 2))).transpose(1, 2);
  }
  const int64_t B = c.speech.size(0), T = c.speech.size(1);
  auto given = [&](const at::Tensor& t, int64_t ch, const char* what) {
    if (!t.defined() || t.dim() != 3 || t.size(1) != T || t.size(2) != ch)
      throw usage(std::string("control flag on: expected ") + what + " of shape [1, " + std::to_string(T) + ", " + std::to_string(ch) + "]");
    return t.to(device_, dtype_);
  };
  at::Tensor x = c.speech;
  if (variant_ == Variant::HubertAudioOnly) {
    c.pose = pose;
    c.location = location;
    c.scale = scale;
  } else {
    if (has_location()) {
      c.location = control_flag ? given(location, 1, "a location") : w.loc_pred(x);
      x = x + w.loc_enc(c.location);
      c.scale = control_flag ? given(scale, 1, "a scale") : w.scale_pred(x);
      x = x + w.scale_enc(c.scale);
    } else {
      c.location = at::zeros({B, T, 1}, x.options());
      c.scale = at::zeros({B, T, 1}, x.options());
    }
    c.pose = control_flag ? given(pose, 3, "a pose") : w.pose_pred(x);
    x = x + w.pose_enc(c.pose);
  }
  c.adjusted = x;
  c.decoder_positions = block_positions(w.decoder, T, decoder_dim_, x.options());
  c.c_dir = w.dir(direction.to(device_, dtype_));
  c.c_start = w.init_code(start.to(device_, dtype_));
  return c;
}

at::Tensor Model::denoise(const Condition& c, const at::Tensor& x_t, double t, Taps* taps) const {
  const Weights& w = *w_;
  at::NoGradGuard no_grad;
  const int64_t B = c.adjusted.size(0), T = c.adjusted.size(1);
  if (x_t.dim() != 3 || x_t.size(1) != T || x_t.size(2) != motion_dim_)
    throw Error(Error::Kind::Usage, "motion: expected x_t of shape [1, " + std::to_string(T) + ", " + std::to_string(motion_dim_) + "]");
  const int64_t P = c.c_dir.size(1);
  // One t for the whole batch: its encoding once, the same bits for every
  // row whatever the batch (a product of one row and of several may round
  // differently).
  at::Tensor tt = at::full({1, 1}, t, c.adjusted.options());
  at::Tensor ct = w.t_enc(tt).unsqueeze(1).expand({B, T, P});
  const at::Tensor xt = x_t.to(device_, dtype_);  // a CPU x_t is fine on any device
  at::Tensor z = at::cat({c.adjusted, c.c_dir.unsqueeze(1).expand({B, T, P}), c.c_start.unsqueeze(1).expand({B, T, P}), w.noisy(xt), ct}, -1);
  if (taps) taps->concat = z;
  z = run_conformer(w.decoder, z, c.decoder_positions);
  if (taps) taps->decoder = z;
  return w.out(z);
}

// The reference searches strides k from 1 to 999 for ceil(1000 / k) ==
// steps; ceil(1000 / k) falls as k grows, so the smallest stride that gives
// at most `steps`, ceil(1000 / steps), is the one that can give exactly it.
bool ddim_steps_work(int steps) {
  if (steps < 2 || steps > 1000) return false;
  const int k = (1000 + steps - 1) / steps;
  return (1000 + k - 1) / k == steps;
}

std::vector<int64_t> ddim_timesteps(int steps) {
  constexpr int kT = 1000;
  if (ddim_steps_work(steps)) {
    std::vector<int64_t> v;
    for (int n = 0; n < kT; n += (kT + steps - 1) / steps) v.push_back(n);
    return v;
  }
  // The counts that work are ceil(1000 / k) for k < 1000, as the
  // reference's search runs k from 1 to 999: every one from 2 to 32, then
  // 33, 34, 35, 36, 38, 39, 40, 42, ..., 500, 1000 (1 step never: that needs
  // k = 1000).  Name the nearest.
  int below = 0, above = 0;
  for (int i = 1; i < kT; ++i) {
    const int n = (kT + i - 1) / i;
    if (n < steps && n > below) below = n;
    if (n > steps && (above == 0 || n < above)) above = n;
  }
  std::string nearest = below > 0 && above > 0 ? "are " + std::to_string(below) + " or " + std::to_string(above)
                        : below > 0           ? "is " + std::to_string(below)
                                              : "is " + std::to_string(above);
  throw Error(Error::Kind::Usage, "motion: cannot create exactly " + std::to_string(steps) +
                                      " DDIM steps with an integer stride over 1000 timesteps (the counts that work "
                                      "are ceil(1000/k) for k from 1 to 999: 2 to 32, then 33, 34, 35, 36, 38, 39, 40, 42, 44, 46, "
                                      "48, 50, 53, 56, 59, 63, 67, 72, 77, 84, 91, 100, 112, 125, 143, 167, 200, "
                                      "250, 334, 500, 1000; the nearest " + nearest + ")");
}

at::Tensor Model::sample(const Condition& c, const at::Tensor& noise, int steps, Trajectory* traj) const {
  return sample(c, noise, steps, at::Tensor(), traj);
}

at::Tensor Model::sample(const Condition& c, const at::Tensor& noise, int steps, const at::Tensor& known, Trajectory* traj) const {
  at::NoGradGuard no_grad;
  const std::vector<int64_t> map = ddim_timesteps(steps);
  // Base linear schedule (float64, as np.linspace) and respacing (spec 4).
  constexpr int kT = 1000;
  const double b0 = 1e-4, b1 = 0.02, step = (b1 - b0) / (kT - 1);
  std::vector<double> new_betas;
  double acp = 1.0, last = 1.0;
  size_t j = 0;
  for (int n = 0; n < kT; ++n) {
    const double beta = n == kT - 1 ? b1 : n * step + b0;
    acp *= 1.0 - beta;
    if (j < map.size() && map[j] == n) {
      new_betas.push_back(1.0 - acp / last);
      last = acp;
      ++j;
    }
  }
  const size_t S = new_betas.size();
  std::vector<double> ac(S), ac_prev(S);
  double cp = 1.0;
  for (size_t k = 0; k < S; ++k) {
    ac_prev[k] = cp;
    cp *= 1.0 - new_betas[k];
    ac[k] = cp;
  }
  auto f = [&](double v) { return at::full({1, 1, 1}, static_cast<float>(v), noise.options().dtype(dtype_).device(device_)); };
  at::Tensor x = noise.to(device_, dtype_);
  const int64_t C = known.defined() ? known.size(1) : 0;
  at::Tensor kn, kz;  // known x0 and its noise
  if (C > 0) {
    if (known.dim() != 3 || known.size(0) != x.size(0) || C > x.size(1) || known.size(2) != x.size(2))
      throw Error(Error::Kind::Usage, "motion: the known frames must be [1, C <= T, " + std::to_string(motion_dim_) + "]");
    kn = known.to(device_, dtype_);
    kz = x.narrow(1, 0, C).clone();
    x = x.clone();
    x.narrow(1, 0, C).copy_(f(std::sqrt(ac[S - 1])) * kn + f(std::sqrt(1.0 - ac[S - 1])) * kz);
  }
  for (int k = static_cast<int>(S) - 1; k >= 0; --k) {
    at::Tensor eps = denoise(c, x, static_cast<double>(map[k]));
    at::Tensor A = f(std::sqrt(1.0 / ac[k])), Bc = f(std::sqrt(1.0 / ac[k] - 1.0));
    at::Tensor x0 = at::clamp(A * x - Bc * eps, -1.0, 1.0);
    at::Tensor e2 = (A * x - x0) / Bc;
    at::Tensor abp = f(ac_prev[k]);
    at::Tensor sigma = at::zeros_like(abp);
    x = x0 * at::sqrt(abp) + at::sqrt(1 - abp - sigma * sigma) * e2;
    if (C > 0) {
      if (k == 0)
        x.narrow(1, 0, C).copy_(kn);
      else
        x.narrow(1, 0, C).copy_(f(std::sqrt(ac_prev[k])) * kn + f(std::sqrt(1.0 - ac_prev[k])) * kz);
    }
    if (traj && traj->record) {
      traj->x.push_back(x);
      traj->pred_x0.push_back(x0);
    }
    if (traj && traj->on_step) traj->on_step(static_cast<int>(S) - k, static_cast<int>(S));
  }
  return x;
}

namespace {

// The conditions of runs of one length as one batch: what the denoiser reads
// (the positions depend on T only).
Condition stack_conditions(const std::vector<const Condition*>& cs) {
  std::vector<at::Tensor> adjusted, dir, start;
  for (const Condition* c : cs) {
    adjusted.push_back(c->adjusted);
    dir.push_back(c->c_dir);
    start.push_back(c->c_start);
  }
  Condition b;
  b.adjusted = at::cat(adjusted, 0);
  b.c_dir = at::cat(dir, 0);
  b.c_start = at::cat(start, 0);
  b.decoder_positions = cs.front()->decoder_positions;
  return b;
}

}  // namespace

std::vector<at::Tensor> Model::sample_batch(const std::vector<SampleCall>& calls, int steps) const {
  if (calls.empty()) return {};
  // Each call's progress, after each step of the one run.
  Trajectory progress;
  progress.record = false;
  progress.on_step = [&calls](int done, int total) {
    for (const SampleCall& c : calls)
      if (c.on_step) c.on_step(done, total);
  };
  const bool told = std::any_of(calls.begin(), calls.end(), [](const SampleCall& c) { return bool(c.on_step); });
  Trajectory* tr = told ? &progress : nullptr;
  if (calls.size() == 1) return {sample(*calls[0].c, calls[0].noise, steps, calls[0].known, tr)};
  const int64_t T = calls[0].c->adjusted.size(1);
  const int64_t C = calls[0].known.defined() ? calls[0].known.size(1) : 0;
  std::vector<const Condition*> conds;
  std::vector<at::Tensor> noise, known;
  for (const SampleCall& k : calls) {
    const int64_t Ck = k.known.defined() ? k.known.size(1) : 0;
    if (k.c->adjusted.size(0) != 1 || k.c->adjusted.size(1) != T || Ck != C)
      throw Error(Error::Kind::Usage, "motion: a batch of runs needs one window shape: " + std::to_string(T) +
                                          " frames with " + std::to_string(C) + " known, not " +
                                          std::to_string(k.c->adjusted.size(1)) + " with " + std::to_string(Ck));
    conds.push_back(k.c);
    noise.push_back(k.noise.to(device_, dtype_));
    if (C > 0) known.push_back(k.known.to(device_, dtype_));
  }
  const at::Tensor x =
      sample(stack_conditions(conds), at::cat(noise, 0), steps, C > 0 ? at::cat(known, 0) : at::Tensor(), tr);
  std::vector<at::Tensor> out;
  for (size_t i = 0; i < calls.size(); ++i) out.push_back(x.narrow(0, (int64_t)i, 1).clone());
  return out;
}

bool Model::batch_exact() const {
  std::call_once(batch_once_, [this] {
    at::NoGradGuard no_grad;
    // Its own generator: the process's stream of random numbers stays as it was.
    at::Generator gen = at::detail::createCPUGenerator(2024);
    auto randn = [&](at::IntArrayRef shape) { return at::randn(shape, gen, at::kFloat); };
    batch_exact_ = true;
    // Odd lengths: a run's rows then start at an odd row of the batch
    // (tiny models' products treat such rows differently: the test fixtures').
    for (int64_t T : {1, 7, 41}) {
      std::vector<Condition> cs;
      for (int i = 0; i < 3; ++i) {
        const at::Tensor audio = hubert() ? randn({1, hubert_layers_, 2 * T, audio_dim_}) : randn({1, 4 * T, audio_dim_});
        cs.push_back(condition(randn({1, start_dim_}), randn({1, motion_dim_}), audio, false));
      }
      const at::Tensor x = randn({3, T, motion_dim_}).to(device_, dtype_);
      const at::Tensor among = denoise(stack_conditions({&cs[0], &cs[1], &cs[2]}), x, 500.0).narrow(0, 1, 1);
      const at::Tensor alone = denoise(cs[1], x.narrow(0, 1, 1), 500.0);
      batch_exact_ = batch_exact_ && at::equal(alone, among);
    }
  });
  return batch_exact_;
}

at::Tensor Model::seed_noise(uint64_t seed, int64_t frames) const {
  at::NoGradGuard no_grad;
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const int64_t n = init_draws_ + xT_numel_;
  constexpr int64_t kChunk = 1 << 20;
  at::Tensor buf = at::empty({std::min(n, kChunk)}, at::kFloat);
  for (int64_t done = 0; done < n; done += kChunk) {
    const int64_t m = std::min(kChunk, n - done);
    buf.narrow(0, 0, m).uniform_(0, 1, gen);
  }
  return at::randn({1, frames, motion_dim_}, gen, at::kFloat);
}

}  // namespace anitalker::motion
