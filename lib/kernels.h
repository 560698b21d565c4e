// CPU kernel choices shared by the networks: where LibTorch 1.13's default
// operator on the CPU leaves much of the machine unused, the faster
// formulation of the same sums (the results differ only in float32 rounding
// order).  Other devices take LibTorch's operators as they are.
#pragma once

#include <ATen/core/Tensor.h>

namespace anitalker {

// y = x w^T + b over the last dimension of x (any leading dimensions), w
// (out, in), b (out) or undefined.  On the CPU the rows go through oneDNN as
// one 1x1 convolution over a channels-last view ([N, in] is (1, in, 1, N) in
// channels-last order): AVX-512 where OpenBLAS (at::linear) may be pinned to
// its AVX2 kernels.  LibTorch 1.13 reorders that view to NCHW inside and
// returns NCHW, so the input and the output are each copied once.  At HuBERT's
// sizes 1.4-1.7x faster than at::linear and 1.05-2.7x faster than a 1x1
// conv1d over the transposed rows (whose weights and transposes cost more
// where the rows are many; docs/performance.md).
at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);

// The same with bfloat16 weights `w16` (out, in) on the CPU: x rounded to
// bfloat16, the products summed in float32 by oneDNN, the result float32
// plus the float32 bias b.
at::Tensor linear_bf16(const at::Tensor& x, const at::Tensor& w16, const at::Tensor& b);

}  // namespace anitalker
