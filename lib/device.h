// The one device abstraction: "cpu", "cuda" or "cuda:N" to a c10::Device,
// with an error that says why a device cannot be used.
#pragma once

#include <c10/core/Device.h>

#include <cstddef>
#include <cstdint>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <cctype>
#include <cstdlib>
#endif
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <set>
#include <string>

namespace at {
class Tensor;
}

namespace anitalker {

// Throws a Usage error for a malformed name, and a Runtime error when CUDA is
// asked for but this build or machine has none (or not that many GPUs).
// Choosing a CUDA device turns TF32 off for cuBLAS and cuDNN, process-wide:
// float32 then stays float32 (TF32 keeps 10 mantissa bits and would move
// the outputs by about 1e-3, past the parity tolerances).
c10::Device parse_device(const std::string& name);

// Waits for the work queued on `device` (CUDA runs asynchronously); nothing
// for the CPU.  For timings and before handing results to another thread.
void synchronize(c10::Device device);

// A constant tensor (a table, a filter) made once per (key, device) by
// `make` (on the CPU) and kept on `device` for the life of the process.
// Per-frame work on a GPU takes its constants from here: a copy from
// pageable host memory in the middle of a frame would make the CPU wait
// for the GPU's queue.
const at::Tensor& device_constant(const std::string& key, c10::Device device, const std::function<at::Tensor()>& make);

// True when this build links a LibTorch with CUDA and a GPU is present.
bool cuda_available();

// LibTorch's intra-op threads for the calling thread (the OpenMP backend
// keeps the setting per thread): n > 0 (at most kMaxThreads), or with
// n <= 0 OMP_NUM_THREADS when it is a whole number from 1 to kMaxThreads,
// else one per core (Debian's build would otherwise use 1).  The tools'
// --num-threads has that range, the elements' num-threads at most 64.
constexpr int kMaxThreads = 256;
void set_num_threads(int n);
// When the calling thread's OpenMP team is larger than kMaxThreads (the
// environment's OMP_NUM_THREADS=100000 crashed libgomp in the first
// parallel region of a model load in an application's thread), sets it as
// set_num_threads(0) would; leaves any other setting alone.  Every model
// load calls it.
void bound_num_threads();

// How many threads at::parallel_for gives this library's own loops (the
// renderer's warp and upsampling, the motion conformer's fused passes) on
// the calling thread now: at::get_num_threads() where the library was built
// with OpenMP, as LibTorch was; 1 where it was not (an external LibTorch
// with its own OpenMP runtime, lib/meson.build), whatever the setting.
int library_loop_threads();

// Installs a CPU allocator for LibTorch that keeps freed tensor memory of
// 128 KB and more for the next tensor of the same size or up to a quarter
// smaller (blocks of 2 MB and more in whole 2 MB pages, transparent huge
// pages where the kernel gives them), up to a cap (default
// 2048 MB; ANITALKER_CPU_CACHE_MB=N sets it, 0 leaves LibTorch's allocator).
// The networks allocate and free tensors of tens of MB at every layer; from
// the C library each is a fresh mapping whose pages all fault in again, and
// those faults cost more than the arithmetic on these machines
// (docs/performance.md, "Freed tensor memory kept").  Process-wide, once; the
// CLI and the GStreamer plugin call it at start.  Returns the cap in bytes (0:
// not installed, also under AddressSanitizer).
size_t cache_cpu_memory();
// The cap in MB that ANITALKER_CPU_CACHE_MB's text `env` asks for: a whole
// number from 0 to 1048576; anything else (empty, "abc", "-1", "1e3", past
// the range) gives `fallback`, the default, rather than turning the cache
// off or wrapping to no cap.
size_t cpu_cache_mb(const char* env, size_t fallback);
// With that allocator: the most bytes its large blocks (128 KB and more)
// held in use at once since the last call with reset = true (which starts
// the count anew from what is in use now and returns that); 0 without it.
// How the memory a call needs is measured (tests, benchmarks).
size_t cpu_memory_peak(bool reset = false);

// Bytes of memory free for tensors on `device` now: the CPU's
// MemAvailable (/proc/meminfo), a CUDA device's free memory (cudaMemGetInfo,
// when LibTorch's CUDA runtime exports it to the process); 0 when it cannot
// be told.  Memory LibTorch's caches hold counts as taken.
size_t device_memory_free(c10::Device device);
// "12.3 GB", "850 MB": a byte count for messages.
std::string format_bytes(size_t bytes);

// The warm-ups a model has run (the networks' warm_up(): runs on silence or
// grey pictures at the shapes of a live stream's first windows): first(key)
// is true the first time for `key` (a configuration: a window setting, a
// batch), false after.  Part of what a warm-up sets up is process-wide
// (oneDNN's primitive cache, the cached tensor memory above, cuDNN's
// plans), part is the model's own (PackedConv's weights packed per shape at
// first use, Winograd's transformed weights), so the record is the model's:
// copies share it, a model loaded again (an element restarted, a file
// replaced) starts without one and is warmed up again, and a model's record
// goes with it (a process that rebuilds its pipelines for days keeps none of
// the old ones).  Thread-safe.
class WarmUps {
 public:
  bool first(const std::string& key) const {
    std::lock_guard<std::mutex> g(state_->lock);
    return state_->done.insert(key).second;
  }

 private:
  struct State {
    std::mutex lock;
    std::set<std::string> done;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

// A number no other model of this process has had (from 1), for the
// networks' model_id(): copies of a model share its weights and its id.
uint64_t new_model_id();

// The arithmetic of a network's heavy layers (the `precision` property):
// float32 everywhere (the default: the parity of the fixtures), or
// bfloat16 for the convolutions that carry most of the work on a CPU with
// AVX512_BF16 (oneDNN; float32 accumulation), or float16 on a CUDA device.
// What each network keeps in float32 is in docs/performance.md.
enum class Precision { Fp32, Bf16, Fp16 };
// "fp32", "bf16", "fp16", and back (Error(Usage) for another name).
const char* precision_name(Precision p);
Precision parse_precision(const std::string& name);
// Throws Error(Usage) naming `property` (e.g. "precision"), the device and
// what it supports, when `p` cannot be used on `device`: bf16 on a CPU
// without AVX512_BF16 (or on a CUDA device, for now), fp16 anywhere but
// CUDA.  `what` names the network(s) for which only some precisions exist:
// `supported` lists them (Fp32 always).
void check_precision(Precision p, c10::Device device, const std::string& property,
                     std::initializer_list<Precision> supported, const std::string& what);
// Whether this CPU has AVX512_BF16 (x86 CPUID; false elsewhere) and oneDNN
// may use it: ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA) set to an ISA without
// bfloat16 dot products (AVX2, AVX512_CORE, ...) makes oneDNN emulate them,
// slower than float32, so bf16 is then refused as on a CPU without them
// (the tests' AVX2 runs set it).  Inline: the torch-free tests ask too.
inline bool cpu_has_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  for (const char* var : {"ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"}) {
    const char* cap = std::getenv(var);
    if (cap == nullptr || *cap == 0) continue;
    std::string isa(cap);
    for (char& ch : isa) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    for (const char* without : {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"})
      if (isa == without) return false;
    break;  // oneDNN reads the first one set
  }
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 1, a, b, c, d);
  return (a >> 5) & 1u;  // CPUID.(EAX=7,ECX=1):EAX bit 5
#else
  return false;
#endif
}

// Whether a network on `device` takes its device-independent path (what a
// GPU runs: plain LibTorch ops, no packed weights or CPU-only kernels)
// rather than the CPU's own: true off the CPU, and on the CPU where the
// environment sets ANITALKER_GENERIC=1 (the tests check a GPU path's
// arithmetic on the CPU that way).  Read when a model is built.
bool generic_path(c10::Device device);
// Whether the environment sets `name` to "1" (the library's switches:
// ANITALKER_GENERIC, ANITALKER_CHANNELS_LAST, ANITALKER_CUDA_GRAPHS, ...).
bool env_switch(const char* name);
// Whether that path runs channels-last unless a model is told otherwise:
// where the environment sets ANITALKER_CHANNELS_LAST=1 (the renderer's and
// GFPGAN's GPU option, docs/elements.md).  Read when a model is built.
bool generic_channels_last();

// What an NVIDIA GPU is doing now, from NVML (libnvidia-ml.so.1, opened at
// the first call; `known` false where it is absent or fails: no NVIDIA
// driver, another device): memory used on the whole GPU (every process) and
// the share of the last sample period (1/6 to 1 s, the driver's) in which
// a kernel ran.  `index` is NVML's, which is CUDA's where
// CUDA_VISIBLE_DEVICES does not reorder them.  Thread-safe.
struct GpuUse {
  bool known = false;
  double used_mb = 0, total_mb = 0;
  int util_percent = 0;
};
GpuUse gpu_use(int index);

// One line on the LibTorch build: version, threads, CUDA.
std::string torch_info();

}  // namespace anitalker
