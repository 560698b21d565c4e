// One way to reach every tensor of a network's weights.  Each weights struct
// names its tensor members once, beside their declarations:
//
//   struct Conv {
//     at::Tensor w, b;
//     template <class F> void each(F& f) { visit_all(f, w, b); }
//   };
//
// and visit() walks tensors, structs with each(), and vectors and arrays of
// them alike.  place_weights() moves (and casts) them all, so a network's
// constructor builds its weights on the CPU in float32 and ends with one
// call, instead of a hand-written list of every tensor to move (a tensor
// missed there only failed on a GPU).  The test `weights` runs each of the
// six networks with its weights placed in float64 through the same walk: a
// tensor the walk misses, or an input cast hard-coded to float32, then
// fails on the CPU as it would on a GPU.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <array>
#include <utility>
#include <vector>

namespace anitalker {

// Declared first, so that each overload sees the others whatever the types.
template <class F>
void visit(at::Tensor& t, F& f);
template <class T, class F>
void visit(std::vector<T>& v, F& f);
template <class T, size_t N, class F>
void visit(std::array<T, N>& v, F& f);
template <class T, size_t N, class F>
void visit(T (&v)[N], F& f);
template <class T, class F>
auto visit(T& x, F& f) -> decltype(x.each(f), void());

template <class F>
void visit(at::Tensor& t, F& f) {
  f(t);
}
template <class T, class F>
void visit(std::vector<T>& v, F& f) {
  for (T& x : v) visit(x, f);
}
template <class T, size_t N, class F>
void visit(std::array<T, N>& v, F& f) {
  for (T& x : v) visit(x, f);
}
template <class T, size_t N, class F>
void visit(T (&v)[N], F& f) {
  for (T& x : v) visit(x, f);
}
template <class T, class F>
auto visit(T& x, F& f) -> decltype(x.each(f), void()) {
  x.each(f);
}
template <class F, class... Ts>
void visit_all(F& f, Ts&... xs) {
  (visit(xs, f), ...);
}

// Every defined tensor of `w` to `device` and `dtype` (float32 and the CPU:
// nothing moves).
template <class W>
void place_weights(W& w, c10::Device device, at::ScalarType dtype) {
  if (device.is_cpu() && dtype == at::kFloat) return;
  auto f = [&](at::Tensor& t) {
    if (t.defined()) t = t.to(device, t.is_floating_point() ? dtype : t.scalar_type());
  };
  visit(w, f);
}

}  // namespace anitalker
