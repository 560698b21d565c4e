// CPU kernel choices shared by the networks: where LibTorch 1.13's default
// operator on the CPU leaves much of the machine unused, the faster
// formulation of the same sums (the results differ only in float32 rounding
// order).  Other devices take LibTorch's operators as they are.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>

namespace anitalker {

// y = x w16^T + b over the last dimension of x (any leading dimensions)
// with bfloat16 weights `w16` (out, in) on the CPU: x rounded to bfloat16,
// the products summed in float32 by oneDNN (a 1x1 convolution over a
// channels-last view of the rows, which LibTorch 1.13 reorders to NCHW
// inside), the result float32 plus the float32 bias b (out) or undefined.
// (HuBERT runs channel-major and takes NCHW directly: lib/hubert.cpp.)
at::Tensor linear_bf16(const at::Tensor& x, const at::Tensor& w16, const at::Tensor& b);

// A 1-d or 2-d convolution (by x's dimensions) with optional bias b
// (undefined: none).  On the CPU, for float32 or bfloat16 x and w of the
// same type and groups = 1, it calls oneDNN directly: LibTorch 1.13 sends
// one image with at most 20480 values and a kernel of 3x3 or less (a short
// window, a 4x4 image) to its slow path (im2col and a GEMM), and 1x1
// kernels on one thread too; the larger inputs it would send to oneDNN
// anyway.  Elsewhere LibTorch's own convolution.
at::Tensor dnn_conv(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, at::IntArrayRef stride,
                    at::IntArrayRef pad, int64_t groups = 1);

// leaky_relu(conv(x, w) + b, slope), stride 1, zero padding `pad` on every
// side, rounded once to `out` (float32 or bfloat16): on the CPU for float32
// or bfloat16 x and w of the same type (NCHW or channels-last; the output
// in x's layout) one oneDNN pass, the bias and the activation applied to the
// float32 sums before they are stored (post-ops), where LibTorch would store
// them, add the bias, apply the activation and convert in four.  b: float32
// (Cout) or undefined; slope: none for no activation.  The weights are
// reordered at each call (they may change per call: styles folded in);
// float32 3x3 ones at padding 1 of one image run as Winograd where
// winograd_bytes() says so, its weight transform at each call (256 -> 256
// channels: 11.7 ms on 2 cores).  Elsewhere the same as separate passes
// (dnn_conv, then float32 bias, activation and rounding).
at::Tensor dnn_conv_act(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, int64_t pad, int64_t groups,
                        c10::optional<double> slope, at::ScalarType out);

// The transposed convolution of x by w (Cout, Cin, kh, kw: the layout of
// the convolution it transposes; at::conv_transpose2d's weight is w
// transposed in its first two dimensions) at `stride`, no padding, stored
// as `out` (float32 or bfloat16): on the CPU for float32 or bfloat16 x and w
// of the same type (NCHW or channels-last) one oneDNN deconvolution, its
// sums in float32; the weights reordered at each call.  Elsewhere
// at::conv_transpose2d in float32.  The output in x's layout.
at::Tensor dnn_conv_transpose(const at::Tensor& x, const at::Tensor& w, int64_t stride, at::ScalarType out);

// y = x w^T + b over the last dimension of float32 x on the CPU (any
// leading dimensions), through oneDNN's matmul with w packed once, at
// construction, in the layout its kernel reads: LibTorch 1.13's oneDNN paths
// reorder the weights at every call, and this ran 1.2-1.5x faster than the
// 1x1 convolution at 50-1000 rows (docs/performance.md).  The sums are the
// same up to float32 rounding order.  Not usable() (and never called) where
// the build had no oneDNN headers, for other devices or types.  The packed
// copy is the only one it keeps (the network may drop its own): a row count
// oneDNN would only run in its reference code, or an x of another type or
// device, takes at::linear with the weights unpacked for that call.  The
// packed copies (also PackedConv's) are tensors of the process's CPU
// allocator, in 2 MB pages where cache_cpu_memory() is installed.
class PackedLinear {
 public:
  // An activation applied to the output inside the product's pass: Gelu,
  // the erf form (at::gelu's default; oneDNN's erf, within float32 rounding).
  enum class Act { None, Gelu };
  PackedLinear() = default;
  // w (out, in) and b (out) or undefined, float32 (b is kept).
  // bf16: weights packed in bfloat16 and x rounded to bfloat16 at each
  // call, the products summed in float32, y float32 (linear_bf16's
  // arithmetic, without its per-call weight reorder and transposes); none
  // where the CPU has no bfloat16 kernel.
  PackedLinear(const at::Tensor& w, const at::Tensor& b, bool bf16 = false, Act act = Act::None);
  bool usable() const { return impl_ != nullptr; }
  at::Tensor operator()(const at::Tensor& x) const;
  // act(x w^T + b) + add, add of the output's shape (a residual): on the
  // CPU the sum inside the product's pass (a oneDNN post-op, the same
  // float32 sum), else after it.
  at::Tensor operator()(const at::Tensor& x, const at::Tensor& add) const;
  // Whether this build packs at all (oneDNN's headers were found).
  static bool available();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// A 2-D convolution of float32 x on the CPU (N, Cin, H, W), NCHW or
// channels-last, by the weights w (Cout, Cin / groups, kh, kw) at `stride`, zero
// padding given per call, no bias, through oneDNN's convolution primitive
// with the weights packed once into its kernel's layout: LibTorch 1.13's
// mkldnn_convolution reorders them at every call, a third of the time of a
// 3x3 convolution of 512 channels at 4x4-16x16 (docs/performance.md).  The
// output has x's memory format; the sums are oneDNN's, as dnn_conv's.
// Primitives are made per input shape and padding on first use, packed
// weights shared where their layouts agree; callable from several threads
// at once.  Not usable() where the build has no oneDNN headers or for
// weights other than float32 on the CPU; an x it cannot take (another
// type, device or layout) goes to dnn_conv.  A float32 3x3 one at stride 1
// of one image runs as Winograd where winograd_bytes() says so (its
// weights then packed transformed, 4 times their size); with bf16 so too
// where the image has 128 channels or more (float32 Winograd is faster
// there than a bfloat16 direct convolution) and x is float32.
class PackedConv {
 public:
  PackedConv() = default;
  // bf16: the weights packed in bfloat16, x rounded to bfloat16 (unless it
  // is already), the sums and the output float32.
  PackedConv(const at::Tensor& w, at::IntArrayRef stride, bool bf16 = false, int64_t groups = 1);
  bool usable() const { return impl_ != nullptr; }
  at::Tensor operator()(const at::Tensor& x, int64_t pad_h, int64_t pad_w) const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// What a float32 3x3 convolution (stride 1, padding 1) of one image of Ci
// channels, H x W, to Co channels takes beyond its input and output where
// PackedConv and dnn_conv_act() run it as Winograd F(4x4, 3x3) (its blocked
// copies of input and output, and oneDNN's scratchpad): for estimates of a
// call's memory.  0 where they do not (a build without oneDNN's headers, a
// CPU without the kernel, ANITALKER_WINOGRAD=0, shapes it does not take).
size_t winograd_bytes(int64_t Ci, int64_t H, int64_t W, int64_t Co);

// Winograd for the convolutions whose primitives are made from now on (a
// PackedConv's, dnn_conv_act's, per shape at first use): on by default;
// ANITALKER_WINOGRAD=0 turns it off for good.  Its weight transform is paid
// once per convolution (oneDNN's: 15-18 ms for 256 x 256 channels, 50-90 ms
// for 512 x 512; GFPGAN about 1.6 s on 2 cores), which a caller that runs a
// network on one or two images (`anitalker sr` on a photo) saves by turning
// it off before their first call.  Process-wide.
void set_winograd(bool on);

// Multi-head self-attention of time-major rows on the CPU: qkv (T, 3H)
// float32 contiguous, each row q, k, v of all heads, q already scaled;
// returns o (T, H) whose head h columns are softmax(q_h k_h^T) v_h.  Two
// oneDNN batched matmuls over a group of heads (as many as keep the group's
// T x T scores within max_scores floats, in cache) read q, k and v where
// they lie and write o in place; LibTorch's softmax between.  LibTorch
// 1.13's bmm over the same heads ran each head's product as its own BLAS
// call, with a copy and a parallel region each (docs/performance.md).
// Undefined where this build has no oneDNN headers, oneDNN has only its
// reference code for the shape, or qkv is not as described: the caller's
// own path then.
at::Tensor attend_heads(const at::Tensor& qkv, int64_t heads, int64_t max_scores);

}  // namespace anitalker
