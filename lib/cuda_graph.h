// A computation on a GPU recorded once as a CUDA graph and replayed as one
// launch (issue 20: at small batches the renderer's decoder on a GPU is
// bound by its few hundred kernel launches, not by its arithmetic).
//
// The recorded kernels read and write fixed memory: the graph's inputs are
// tensors the caller allocated before the capture and refreshes (copy_)
// before each replay, its output the tensor the recorded run returned,
// rewritten by each replay.  Only LibTorch's graph type is used
// (at::cuda::CUDAGraph, with its private memory pool in LibTorch's caching
// allocator), so this file alone needs CUDA's headers: a build has graphs
// where it was compiled with ANITALKER_CUDA_GRAPHS (a CUDA LibTorch and
// CUDA's include folder: meson.build, tests/device/run.sh).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <functional>
#include <memory>
#include <string>

namespace anitalker {

// Whether this build records CUDA graphs (see above).
bool cuda_graphs_built();

class CudaGraph {
 public:
  // Memory that several graphs replayed one at a time share (each one's
  // intermediate tensors are dead between its replays): one per model.
  struct Pool;
  static std::shared_ptr<Pool> new_pool();

  // Runs fn once on a side stream of `device` (the first call's set-up:
  // cuBLAS and cuDNN handles, plans), then records a second run of it.  fn
  // must read only tensors that outlive the graph and must not wait for the
  // GPU (no .item(), no copies to the host).  The recording is the calling
  // thread's alone (other threads go on using the GPU).  Throws
  // Error(Runtime) where the build has no graphs or the recording fails (an
  // operation that cannot be recorded); the device is usable afterwards.
  // emulate: no recording, on any device: replay() runs fn again and copies
  // its result into output(), so that what surrounds a graph (its inputs
  // refreshed before each replay) can be tested on a CPU.
  CudaGraph(c10::Device device, const std::function<at::Tensor()>& fn, const std::shared_ptr<Pool>& pool,
            bool emulate = false);
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // The recorded work on the current stream of the device (where the
  // inputs were copied): output() holds its result once that stream gets
  // there.  Not thread-safe: one replay at a time, its output consumed
  // before the next.
  void replay();
  const at::Tensor& output() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace anitalker
