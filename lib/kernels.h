// CPU kernel choices shared by the networks: where LibTorch 1.13's default
// operator on the CPU leaves much of the machine unused, the faster
// formulation of the same sums (the results differ only in float32 rounding
// order).  Other devices take LibTorch's operators as they are.
#pragma once

#include <ATen/core/Tensor.h>

namespace anitalker {

// y = x w16^T + b over the last dimension of x (any leading dimensions)
// with bfloat16 weights `w16` (out, in) on the CPU: x rounded to bfloat16,
// the products summed in float32 by oneDNN (a 1x1 convolution over a
// channels-last view of the rows, which LibTorch 1.13 reorders to NCHW
// inside), the result float32 plus the float32 bias b (out) or undefined.
// (HuBERT runs channel-major and takes NCHW directly: lib/hubert.cpp.)
at::Tensor linear_bf16(const at::Tensor& x, const at::Tensor& w16, const at::Tensor& b);

}  // namespace anitalker
