// lib/cuda_graph.h.  With ANITALKER_CUDA_GRAPHS, LibTorch's at::cuda::CUDAGraph;
// without, only the emulation (tests) and a clear refusal.
#include "cuda_graph.h"

#include <ATen/ATen.h>

#include "device.h"
#include "error.h"

#if defined(ANITALKER_CUDA_GRAPHS)
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#if __has_include(<torch/version.h>)
#include <torch/version.h>  // TORCH_VERSION_MAJOR (not in every 1.x install)
#endif
#endif

namespace anitalker {

struct CudaGraph::Pool {
#if defined(ANITALKER_CUDA_GRAPHS)
  decltype(at::cuda::graph_pool_handle()) id = at::cuda::graph_pool_handle();
#endif
};

struct CudaGraph::Impl {
  std::function<at::Tensor()> fn;  // emulation: run again at each replay
  at::Tensor out;
#if defined(ANITALKER_CUDA_GRAPHS)
  std::unique_ptr<at::cuda::CUDAGraph> graph;
#endif
};

bool cuda_graphs_built() {
#if defined(ANITALKER_CUDA_GRAPHS)
  return true;
#else
  return false;
#endif
}

std::shared_ptr<CudaGraph::Pool> CudaGraph::new_pool() { return std::make_shared<Pool>(); }

CudaGraph::CudaGraph(c10::Device device, const std::function<at::Tensor()>& fn, const std::shared_ptr<Pool>& pool,
                     bool emulate)
    : impl_(std::make_unique<Impl>()) {
  if (emulate) {
    impl_->fn = fn;
    impl_->out = fn().clone();
    return;
  }
  if (!device.is_cuda()) throw Error(Error::Kind::Runtime, "CUDA graphs: " + device.str() + " is not a CUDA device");
#if defined(ANITALKER_CUDA_GRAPHS)
  try {
    c10::cuda::CUDAGuard on(device.index());
    // What produced the inputs (on the current stream) is done before the
    // side stream reads them; recording is rare (once a batch size).
    synchronize(device);
    c10::cuda::CUDAStreamGuard side(c10::cuda::getStreamFromPool(false, device.index()));
    fn();  // the set-up of the first call, outside the recording
    synchronize(device);
    auto graph = std::make_unique<at::cuda::CUDAGraph>();
    // Thread-local capture mode: other threads (other pipelines' networks)
    // may allocate, copy to the host and synchronise meanwhile.  LibTorch
    // before 2.0 records in global mode only.
    const decltype(at::cuda::graph_pool_handle()) id = pool ? pool->id : decltype(id){0, 0};
#if TORCH_VERSION_MAJOR >= 2
    graph->capture_begin(id, cudaStreamCaptureModeThreadLocal);
#else
    graph->capture_begin(id);
#endif
    try {
      impl_->out = fn();
    } catch (...) {
      try {
        graph->capture_end();
      } catch (...) {
      }
      throw;
    }
    graph->capture_end();
    impl_->graph = std::move(graph);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(Error::Kind::Runtime, std::string("CUDA graphs: recording failed on ") + device.str() + ": " + e.what());
  }
#else
  (void)pool;
  throw Error(Error::Kind::Runtime,
              "CUDA graphs: this build has none (it needs a CUDA LibTorch and CUDA's headers: docs/building.md)");
#endif
}

CudaGraph::~CudaGraph() = default;

void CudaGraph::replay() {
  if (impl_->fn) {
    impl_->out.copy_(impl_->fn());
    return;
  }
#if defined(ANITALKER_CUDA_GRAPHS)
  impl_->graph->replay();
#endif
}

const at::Tensor& CudaGraph::output() const { return impl_->out; }

}  // namespace anitalker
