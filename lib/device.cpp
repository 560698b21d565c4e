#include "device.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/Context.h>
#include <c10/core/CPUAllocator.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <dlfcn.h>
#include <sys/mman.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <set>
#include <unordered_map>
#include <thread>

#include "error.h"
#include "kernels.h"
#if ANITALKER_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace anitalker {

bool cuda_available() { return torch::cuda::is_available(); }

void synchronize(c10::Device device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

c10::Device parse_device(const std::string& name) {
  if (name == "cpu") return c10::Device(c10::kCPU);
  int index = -1;
  if (name == "cuda") {
    index = 0;
  } else if (name.compare(0, 5, "cuda:") == 0 && name.size() > 5 && name.size() < 9 &&
             name.find_first_not_of("0123456789", 5) == std::string::npos) {
    index = std::stoi(name.substr(5));
  } else {
    throw Error(Error::Kind::Usage, "device '" + name + "': expected cpu, cuda or cuda:N");
  }
  if (!torch::cuda::is_available())
    throw Error(Error::Kind::Runtime, "device '" + name + "': this build has no CUDA (LibTorch " TORCH_VERSION
                                      " without CUDA, or no GPU found); build with -Dtorch_root=<a CUDA LibTorch> or use device=cpu");
  const int count = static_cast<int>(torch::cuda::device_count());
  if (index >= count)
    throw Error(Error::Kind::Runtime, "device '" + name + "': only " + std::to_string(count) + " CUDA device(s) present");
  at::globalContext().setAllowTF32CuBLAS(false);
  at::globalContext().setAllowTF32CuDNN(false);
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

namespace {

// OMP_NUM_THREADS when it is a whole number from 1 to kMaxThreads (strtol:
// "abc", "1e3", "-3" are not; OMP_NUM_THREADS=100000 made OpenMP's first
// parallel region crash, SIGSEGV in libgomp, found 2026-12-07), else one
// thread per core.
int default_threads() {
  const char* env = std::getenv("OMP_NUM_THREADS");
  char* end = nullptr;
  errno = 0;
  const long v = env ? std::strtol(env, &end, 10) : 0;
  if (env && end != env && *end == 0 && errno == 0 && v > 0 && v <= kMaxThreads) return static_cast<int>(v);
  return std::max(1, std::min(static_cast<int>(std::thread::hardware_concurrency()), kMaxThreads));
}

}  // namespace

void set_num_threads(int n) {
  n = n <= 0 ? default_threads() : std::min(n, kMaxThreads);
  if (at::get_num_threads() != n) at::set_num_threads(n);
}

void bound_num_threads() {
  if (at::get_num_threads() > kMaxThreads) at::set_num_threads(default_threads());
}

namespace {

// LibTorch's CPU allocator with a cache of freed blocks of 128 KB and more,
// each reused for the next request of its size (4 KB rounded, 2 MB from 2
// MB on) or up to a quarter less: a network allocates the same sizes at
// every call, and a block from the C library would be a fresh mapping whose
// every page faults in again; a new length (an utterance, a window) reuses
// the blocks of a somewhat longer one.  Blocks beyond the cap are freed at
// once.
// The context of a DataPtr is its data pointer (oneDNN's raw_allocate wants
// that), so the sizes are kept in a map.
class CachingCpuAllocator final : public c10::Allocator {
 public:
  CachingCpuAllocator(c10::Allocator* base, size_t cap) : base_(base), cap_(cap) {}

  // Both forms: LibTorch 1.x declares allocate() const, 2.3 and later not.
  c10::DataPtr allocate(size_t n) const { return take(n); }
  c10::DataPtr allocate(size_t n) { return take(n); }
  // Pure virtual from LibTorch 2.3 on; a plain member before.
  void copy_data(void* dest, const void* src, std::size_t count) const { std::memcpy(dest, src, count); }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }

  static CachingCpuAllocator* instance;

  // Bytes of the blocks it handed out that are in use, and the most since
  // the last reset_peak().
  size_t reset_peak() {
    std::lock_guard<std::mutex> lock(mu_);
    return peak_ = in_use_;
  }
  size_t peak() const {
    std::lock_guard<std::mutex> lock(mu_);
    return peak_;
  }

 private:
  static constexpr size_t kMin = size_t{1} << 17, kRound = size_t{1} << 12, kHuge = size_t{1} << 21;

  c10::DataPtr take(size_t n) const {
    if (n < kMin) return base_->allocate(n);
    // Blocks of 2 MB and more: whole 2 MB pages, which the kernel may back
    // with transparent huge pages (madvise; Debian's default is to use them
    // only where asked): a fresh block then faults in per 2 MB, not per
    // 4 KB.  In a virtual machine each fault is a trap to the hypervisor:
    // HuBERT's first pass over a 10 s clip spent about 1 s of its 2.9 s in
    // page faults (perf), which is what a new clip length or a first call
    // costs.
    const size_t round = n >= kHuge ? kHuge : kRound;
    size_t size = (n + round - 1) / round * round;
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      // The smallest kept block that fits, if it is at most a quarter
      // larger (bounded waste; a block is held at its own size).
      auto it = free_.lower_bound(size);
      if (it != free_.end() && it->first - size <= size / 4) {
        p = it->second;
        size = it->first;
        free_.erase(it);
        cached_ -= size;
      }
    }
    if (!p) {
      if (posix_memalign(&p, size >= kHuge ? kHuge : 64, size) != 0) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
      if (size >= kHuge) madvise(p, size, MADV_HUGEPAGE);  // a hint: refused, nothing changes
#endif
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      sizes_[p] = size;
      in_use_ += size;
      if (in_use_ > peak_) peak_ = in_use_;
    }
    return {p, p, &release, c10::Device(c10::kCPU)};
  }

  static void release(void* p) {
    CachingCpuAllocator* a = instance;
    size_t size = 0;
    bool kept = false;
    {
      std::lock_guard<std::mutex> lock(a->mu_);
      auto it = a->sizes_.find(p);
      if (it != a->sizes_.end()) {
        size = it->second;
        a->sizes_.erase(it);
        a->in_use_ -= size;
        if (a->cached_ + size <= a->cap_) {
          a->free_.emplace(size, p);
          a->cached_ += size;
          kept = true;
        }
      }
    }
    if (kept) return;
    if (size > 0) {
      std::free(p);
    } else if (p && a->base_->raw_deleter()) {
      a->base_->raw_deleter()(p);  // a small block of the base allocator, via raw_allocate
    }
  }

  c10::Allocator* base_;
  const size_t cap_;
  mutable std::mutex mu_;
  mutable std::multimap<size_t, void*> free_;
  mutable std::unordered_map<void*, size_t> sizes_;
  mutable size_t cached_ = 0;
  mutable size_t in_use_ = 0, peak_ = 0;
};

CachingCpuAllocator* CachingCpuAllocator::instance = nullptr;

}  // namespace

size_t cpu_cache_mb(const char* env, size_t fallback) {
  if (env == nullptr || *env < '0' || *env > '9') return fallback;
  char* end = nullptr;
  errno = 0;
  const unsigned long long mb = std::strtoull(env, &end, 10);
  if (errno != 0 || *end != 0 || mb > (1ULL << 20)) return fallback;
  return static_cast<size_t>(mb);
}

size_t cache_cpu_memory() {
  static size_t cap = 0;
  static std::once_flag once;
  std::call_once(once, [] {
#if !defined(__SANITIZE_ADDRESS__)  // ASan wants to see every free
    size_t mb = 2048;
    mb = cpu_cache_mb(std::getenv("ANITALKER_CPU_CACHE_MB"), mb);
    if (mb == 0) return;
    cap = mb << 20;
    // Kept for the life of the process: tensors may outlive any owner.
    CachingCpuAllocator::instance = new CachingCpuAllocator(c10::GetCPUAllocator(), cap);
    c10::SetCPUAllocator(CachingCpuAllocator::instance, /*priority=*/1);
#endif
  });
  return cap;
}

size_t device_memory_free(c10::Device device) {
  if (device.is_cpu()) {
    FILE* f = std::fopen("/proc/meminfo", "r");
    if (f == nullptr) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    std::fclose(f);
    return static_cast<size_t>(kb) * 1024;
  }
  if (device.is_cuda()) {
    using GetInfo = int (*)(size_t*, size_t*);
    using GetSet = int (*)(int*);
    using Set = int (*)(int);
    auto info = reinterpret_cast<GetInfo>(dlsym(RTLD_DEFAULT, "cudaMemGetInfo"));
    auto get = reinterpret_cast<GetSet>(dlsym(RTLD_DEFAULT, "cudaGetDevice"));
    auto set = reinterpret_cast<Set>(dlsym(RTLD_DEFAULT, "cudaSetDevice"));
    if (!info || !get || !set) return 0;
    int was = 0;
    if (get(&was) != 0) return 0;
    const int want = device.has_index() ? device.index() : was;
    size_t free = 0, total = 0;
    const bool ok = set(want) == 0 && info(&free, &total) == 0;
    set(was);
    return ok ? free : 0;
  }
  return 0;
}

std::string format_bytes(size_t bytes) {
  char buf[32];
  if (bytes >= (size_t{1} << 30)) std::snprintf(buf, sizeof buf, "%.1f GB", bytes / 1073741824.0);
  else std::snprintf(buf, sizeof buf, "%.0f MB", bytes / 1048576.0);
  return buf;
}

size_t cpu_memory_peak(bool reset) {
  CachingCpuAllocator* a = CachingCpuAllocator::instance;
  if (a == nullptr) return 0;
  return reset ? a->reset_peak() : a->peak();
}

int library_loop_threads() {
  // Each chunk records the thread that ran it; one chunk per index.
  std::mutex lock;
  std::set<int> seen;
  at::parallel_for(0, 64, 1, [&](int64_t, int64_t) {
    std::lock_guard<std::mutex> hold(lock);
    seen.insert(at::get_thread_num());
  });
  return static_cast<int>(seen.size());
}

// ", OMP_WAIT_POLICY=PASSIVE" where the environment sets it: with PASSIVE
// each parallel region wakes a sleeping thread, which moves the short live
// windows' times by 5-30% (docs/performance.md), so a figure names it.
static std::string wait_policy_info() {
  const char* p = std::getenv("OMP_WAIT_POLICY");
  return p && *p ? std::string(", OMP_WAIT_POLICY=") + p : std::string();
}

std::string torch_info() {
  const int threads = at::get_num_threads(), loops = library_loop_threads();
  return std::string("LibTorch ") + TORCH_VERSION + ", " + std::to_string(threads) + " threads" +
         (loops < threads ? " (this build's own loops: " + std::to_string(loops) + ")" : std::string()) + ", CUDA " +
         (torch::cuda::is_available() ? "yes, " + std::to_string(torch::cuda::device_count()) + " GPU(s)" : std::string("no")) +
         wait_policy_info();
}

const at::Tensor& device_constant(const std::string& key, c10::Device device, const std::function<at::Tensor()>& make) {
  static std::mutex lock;
  // Never destroyed: a CUDA tensor must not outlive its context at exit.
  static auto* kept = new std::map<std::string, at::Tensor>;
  const std::string k = key + "@" + device.str();
  std::lock_guard<std::mutex> g(lock);
  auto it = kept->find(k);
  if (it == kept->end()) it = kept->emplace(k, make().to(device)).first;
  return it->second;
}

uint64_t new_model_id() {
  static std::atomic<uint64_t> next{1};
  return next++;
}

GpuUse gpu_use(int index) {
  // NVML's C API, declared here (no header needed): every call returns 0 on
  // success; the structures are NVML's nvmlMemory_t and nvmlUtilization_t.
  struct Memory {
    unsigned long long total, free, used;
  };
  struct Utilization {
    unsigned int gpu, memory;
  };
  struct Api {
    int (*init)() = nullptr;
    int (*handle)(unsigned int, void**) = nullptr;
    int (*memory)(void*, Memory*) = nullptr;
    int (*utilization)(void*, Utilization*) = nullptr;
    bool ok = false;
  };
  static const Api api = [] {
    Api a;
    void* lib = ::dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) return a;
    a.init = reinterpret_cast<int (*)()>(::dlsym(lib, "nvmlInit_v2"));
    a.handle = reinterpret_cast<int (*)(unsigned int, void**)>(::dlsym(lib, "nvmlDeviceGetHandleByIndex_v2"));
    a.memory = reinterpret_cast<int (*)(void*, Memory*)>(::dlsym(lib, "nvmlDeviceGetMemoryInfo"));
    a.utilization = reinterpret_cast<int (*)(void*, Utilization*)>(::dlsym(lib, "nvmlDeviceGetUtilizationRates"));
    a.ok = a.init && a.handle && a.memory && a.utilization && a.init() == 0;
    return a;
  }();
  GpuUse u;
  void* dev = nullptr;
  Memory m{};
  Utilization r{};
  if (!api.ok || index < 0 || api.handle(static_cast<unsigned>(index), &dev) != 0 || api.memory(dev, &m) != 0 ||
      api.utilization(dev, &r) != 0)
    return u;
  u.known = true;
  u.used_mb = m.used / 1e6;
  u.total_mb = m.total / 1e6;
  u.util_percent = static_cast<int>(r.gpu);
  return u;
}

bool env_switch(const char* name) {
  const char* knob = std::getenv(name);
  return knob != nullptr && std::string(knob) == "1";
}

bool generic_path(c10::Device device) { return !device.is_cpu() || env_switch("ANITALKER_GENERIC"); }

bool generic_channels_last() { return env_switch("ANITALKER_CHANNELS_LAST"); }

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::Bf16: return "bf16";
    case Precision::Fp16: return "fp16";
    default: return "fp32";
  }
}

Precision parse_precision(const std::string& name) {
  for (Precision p : {Precision::Fp32, Precision::Bf16, Precision::Fp16})
    if (name == precision_name(p)) return p;
  throw Error(Error::Kind::Usage, "precision '" + name + "': expected fp32, bf16 or fp16");
}

void check_precision(Precision p, c10::Device device, const std::string& property,
                     std::initializer_list<Precision> supported, const std::string& what) {
  if (p == Precision::Fp32) return;
  // What `what` can run on `device`.
  auto runs_here = [&](Precision q) {
    return q == Precision::Fp32 || (q == Precision::Bf16 && device.is_cpu() && cpu_has_bf16()) ||
           (q == Precision::Fp16 && device.is_cuda());
  };
  std::string here = "fp32";
  bool listed = false;
  for (Precision q : supported) {
    listed = listed || q == p;
    if (q != Precision::Fp32 && runs_here(q)) here += std::string(" or ") + precision_name(q);
  }
  const std::string set = property + "=" + precision_name(p) + ": ";
  const std::string hint = "; " + what + " on " + device.str() + " supports " + here;
  if (p == Precision::Fp16 && !device.is_cuda()) throw Error(Error::Kind::Usage, set + "needs a CUDA device" + hint);
  if (p == Precision::Bf16 && !device.is_cpu())
    throw Error(Error::Kind::Usage, set + "the bfloat16 paths are for the CPU" + hint);
  if (p == Precision::Bf16 && !cpu_has_bf16())
    throw Error(Error::Kind::Usage,
                set + "this CPU has no AVX512_BF16 (bfloat16 would run emulated, slower than float32)" + hint);
  if (!listed) throw Error(Error::Kind::Usage, set + what + " has no " + precision_name(p) + " path" + hint);
}

at::Tensor linear_bf16(const at::Tensor& x, const at::Tensor& w16, const at::Tensor& b) {
  const int64_t in = w16.size(1), out = w16.size(0);
  std::vector<int64_t> shape = x.sizes().vec();
  const at::Tensor rows = x.reshape({-1, in}).to(at::kBFloat16).contiguous();
  const at::Tensor y = at::conv2d(rows.t().unsqueeze(0).unsqueeze(2), w16.view({out, in, 1, 1}));
  shape.back() = out;
  at::Tensor r = y.squeeze(2)[0].t().to(x.scalar_type()).contiguous().view(shape);
  return b.defined() ? r.add_(b) : r;
}

at::Tensor dnn_conv(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, at::IntArrayRef stride,
                    at::IntArrayRef pad, int64_t groups) {
  const c10::optional<at::Tensor> bias = b.defined() ? c10::optional<at::Tensor>(b) : c10::nullopt;
  const std::vector<int64_t> dilation(stride.size(), 1);
  if (x.is_cpu() && groups == 1 && x.scalar_type() == w.scalar_type() &&
      (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16))
    // Each in its own layout (a channels-last weight made contiguous would
    // be copied, and copied back inside for a channels-last input).
    return at::mkldnn_convolution(x.contiguous(x.suggest_memory_format()), w.contiguous(w.suggest_memory_format()),
                                  bias, pad, stride, dilation, groups);
  return at::convolution(x, w, bias, stride, pad, dilation, false, std::vector<int64_t>(stride.size(), 0), groups);
}

// dnn_conv_act() as separate passes: the convolution (in x's type), then
// the bias, the activation and the rounding to `out` in float32.
at::Tensor dnn_conv_act_plain(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, int64_t pad,
                              int64_t groups, c10::optional<double> slope, at::ScalarType out) {
  at::Tensor y = dnn_conv(x, w, at::Tensor(), at::IntArrayRef{1, 1}, at::IntArrayRef{pad, pad}, groups);
  if (y.scalar_type() != at::kFloat) y = y.to(at::kFloat);
  if (b.defined()) y.add_(b.view({1, -1, 1, 1}));
  if (slope) at::leaky_relu_(y, *slope);
  return y.scalar_type() == out ? y : y.to(out);
}

#if ANITALKER_HAVE_DNNL
namespace {
dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

// Whether oneDNN picked only its reference code (slower than LibTorch's path).
bool reference_only(const dnnl::primitive_desc_base& pd) {
  return std::string(pd.impl_info_str()).rfind("ref", 0) == 0;
}

// Memory for packed weights in a tensor's bytes, kept in `keep`: through
// the process's CPU allocator, so that with cache_cpu_memory() a block of
// 2 MB or more is backed by transparent huge pages and faults in per 2 MB.
// oneDNN's own allocation faulted per 4 KB page: packing HuBERT-large's
// 1.2 GB of weights spent most of its time in page faults (perf).
dnnl::memory packed_memory(const dnnl::memory::desc& d, at::Tensor* keep) {
  *keep = at::empty({static_cast<int64_t>(d.get_size())}, at::kByte);
  return dnnl::memory(d, cpu_engine(), keep->data_ptr());
}

// Runs `prim` with this call's own scratchpad: this oneDNN is built without
// DNNL_ENABLE_CONCURRENT_EXEC, so its own scratchpad is one buffer for every
// primitive of the process, and two pipelines' streaming threads running at
// once would share it (the primitives are made with scratchpad_mode::user).
void execute(const dnnl::primitive& prim, const dnnl::memory::desc& scratchpad,
             std::unordered_map<int, dnnl::memory> args) {
  at::Tensor scratch = at::empty({static_cast<int64_t>(scratchpad.get_size())}, at::kByte);
  args.emplace(DNNL_ARG_SCRATCHPAD, dnnl::memory(scratchpad, cpu_engine(), scratch.data_ptr()));
  dnnl::stream stream(cpu_engine());
  prim.execute(stream, args);
  stream.wait();
}

// A reorder with a scratchpad of its own (execute()): the one into
// Winograd's weight layout takes one as large as its output.
void reorder(dnnl::memory& from, dnnl::memory& to) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const dnnl::reorder::primitive_desc pd(cpu_engine(), from.get_desc(), cpu_engine(), to.get_desc(), attr);
  execute(dnnl::reorder(pd), pd.scratchpad_desc(), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}});
}

// Winograd F(4x4, 3x3) for float32 3x3 convolutions at stride 1, padding 1 or 0
// (oneDNN's jit_wino_4x3, AVX-512): 2.25 times fewer products than the
// direct convolution, measured 2.6-2.9 times faster on 2 cores at the
// renderer's shapes (docs/performance.md).  oneDNN runs it on its blocked
// layout (nChw16c) only, with a bias but no leaky ReLU: the input is
// reordered into that layout, the activation is a pass of its own over the
// blocked output, and the output is reordered back into x's layout.  Its
// sums are not the direct convolution's: within 1e-5 of outputs of about 5
// (float32 products of transformed tiles), as between two direct kernels'
// orders.  Off with ANITALKER_WINOGRAD=0 (docs/elements.md).
std::atomic<bool> winograd_wanted{true};  // set_winograd()

bool winograd_on() {
  static const bool allowed = [] {
    const char* knob = std::getenv("ANITALKER_WINOGRAD");
    return knob == nullptr || std::string(knob) != "0";
  }();
  return allowed && winograd_wanted.load();
}

struct Wino {
  dnnl::convolution_forward conv;
  dnnl::memory::desc user_src, src, dst, user_dst, weights, scratchpad;
  dnnl::reorder to_blocked, from_blocked;
  bool act = false;
  dnnl::eltwise_forward leaky;
};

// Null where the shape does not suit it (channels not multiples of 16, a
// small picture, a batch) or oneDNN has no Winograd kernel for this CPU.
// One image only: the CPU's way (a batch is a GPU's, or the CPU's shared
// renderer's), where its scratchpad and the weights' transform (4 times
// their size) are held once; a batch of 4 at full size held 60 MB more.
// pad: 1 (the output the input's size) or 0 (an input padded before, as
// ParseNet's reflection).
std::shared_ptr<Wino> make_wino(int64_t N, int64_t Ci, int64_t H, int64_t W, int64_t Co, int64_t pad, bool bias,
                                c10::optional<float> slope, bool nhwc) {
  if (!winograd_on() || N != 1 || Ci % 16 != 0 || Co % 16 != 0 || H * W < 16 * 16 || (pad != 0 && pad != 1))
    return nullptr;
  try {
    const int64_t Ho = H + 2 * pad - 2, Wo = W + 2 * pad - 2;
    const dnnl::memory::dims sd{N, Ci, H, W}, dd{N, Co, Ho, Wo};
    const tag t = nhwc ? tag::nhwc : tag::nchw;
    auto w = std::make_shared<Wino>();
    w->user_src = dnnl::memory::desc(sd, dt::f32, t);
    w->user_dst = dnnl::memory::desc(dd, dt::f32, t);
    w->src = dnnl::memory::desc(sd, dt::f32, tag::nChw16c);
    w->dst = dnnl::memory::desc(dd, dt::f32, tag::nChw16c);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const dnnl::memory::desc wany({Co, Ci, 3, 3}, dt::f32, tag::any);
    const auto alg = dnnl::algorithm::convolution_winograd;
    const auto inference = dnnl::prop_kind::forward_inference;
    const dnnl::convolution_forward::primitive_desc pd =
        bias ? dnnl::convolution_forward::primitive_desc(
                   dnnl::convolution_forward::desc(inference, alg, w->src, wany,
                                                   dnnl::memory::desc({Co}, dt::f32, tag::a), w->dst, {1, 1},
                                                   {pad, pad}, {pad, pad}),
                   attr, cpu_engine())
             : dnnl::convolution_forward::primitive_desc(
                   dnnl::convolution_forward::desc(inference, alg, w->src, wany, w->dst, {1, 1}, {pad, pad},
                                                   {pad, pad}),
                   attr, cpu_engine());
    if (reference_only(pd)) return nullptr;
    w->conv = dnnl::convolution_forward(pd);
    w->weights = pd.weights_desc();
    w->scratchpad = pd.scratchpad_desc();
    // The layout changes and the activation need no scratchpad (none
    // shared between threads: execute()); where one would, no Winograd.
    const dnnl::reorder::primitive_desc in(cpu_engine(), w->user_src, cpu_engine(), w->src, attr),
        out(cpu_engine(), w->dst, cpu_engine(), w->user_dst, attr);
    if (in.scratchpad_desc().get_size() != 0 || out.scratchpad_desc().get_size() != 0) return nullptr;
    w->to_blocked = dnnl::reorder(in);
    w->from_blocked = dnnl::reorder(out);
    if (slope) {
      const dnnl::eltwise_forward::primitive_desc leaky(
          dnnl::eltwise_forward::desc(inference, dnnl::algorithm::eltwise_relu, w->dst, *slope, 0.f), attr,
          cpu_engine());
      if (leaky.scratchpad_desc().get_size() != 0) return nullptr;
      w->act = true;
      w->leaky = dnnl::eltwise_forward(leaky);
    }
    return w;
  } catch (const dnnl::error&) {
    return nullptr;
  }
}

// The convolution of x (float32, contiguous in the layout make_wino() was
// given) by `weights` (in w.weights' layout), plus `bias` (Co floats) where
// given: a new float32 tensor in x's layout.
at::Tensor run_wino(const Wino& w, const at::Tensor& x, const dnnl::memory& weights, const float* bias) {
  dnnl::engine& e = cpu_engine();
  const dnnl::memory::dims d = w.user_dst.dims();
  const bool nhwc = x.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  const at::MemoryFormat layout = nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor y = at::empty({d[0], d[1], d[2], d[3]}, x.options().memory_format(layout));
  at::Tensor src_bytes = at::empty({static_cast<int64_t>(w.src.get_size())}, at::kByte);
  at::Tensor dst_bytes = at::empty({static_cast<int64_t>(w.dst.get_size())}, at::kByte);
  at::Tensor scratch = at::empty({static_cast<int64_t>(w.scratchpad.get_size())}, at::kByte);
  dnnl::memory user_src(w.user_src, e, x.data_ptr()), src(w.src, e, src_bytes.data_ptr()),
      dst(w.dst, e, dst_bytes.data_ptr()), user_dst(w.user_dst, e, y.data_ptr());
  dnnl::stream stream(e);
  w.to_blocked.execute(stream, user_src, src);
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, src},
                                             {DNNL_ARG_WEIGHTS, weights},
                                             {DNNL_ARG_DST, dst},
                                             {DNNL_ARG_SCRATCHPAD, dnnl::memory(w.scratchpad, e, scratch.data_ptr())}};
  if (bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory({{d[1]}, dt::f32, tag::a}, e, const_cast<float*>(bias)));
  w.conv.execute(stream, args);
  if (w.act) w.leaky.execute(stream, {{DNNL_ARG_SRC, dst}, {DNNL_ARG_DST, dst}});
  w.from_blocked.execute(stream, dst, user_dst);
  stream.wait();
  return y;
}
}  // namespace

void set_winograd(bool on) { winograd_wanted = on; }

size_t winograd_bytes(int64_t Ci, int64_t H, int64_t W, int64_t Co) {
  if (!winograd_on()) return 0;
  static std::mutex lock;
  static std::map<std::vector<int64_t>, size_t> known;
  const std::vector<int64_t> key{Ci, H, W, Co};
  std::lock_guard<std::mutex> hold(lock);
  auto it = known.find(key);
  if (it != known.end()) return it->second;
  const std::shared_ptr<Wino> w = make_wino(1, Ci, H, W, Co, 1, true, 0.2f, true);
  const size_t bytes = w ? w->src.get_size() + w->dst.get_size() + w->scratchpad.get_size() : 0;
  known.emplace(key, bytes);
  return bytes;
}

struct PackedLinear::Impl {
  at::Tensor b;  // as given
  int64_t in = 0, out = 0;
  dt src_type = dt::f32;  // and the weights' (bf16: x rounded to bfloat16 first)
  bool gelu = false;      // Act::Gelu
  dnnl::memory::desc packed_desc;
  dnnl::memory packed;  // in packed_bytes
  at::Tensor packed_bytes;
  std::mutex lock;
  struct Prim {
    dnnl::matmul matmul;
    dnnl::memory::desc scratchpad;
  };
  // By row count and whether a sum is added; null: oneDNN's reference code only.
  std::map<std::pair<int64_t, bool>, std::shared_ptr<Prim>> prims;

  // The scratchpad is the caller's (execute()).  Post-ops: the activation,
  // then (add) a float32 tensor of the output's shape, post-op `add_index()`.
  dnnl::matmul::primitive_desc describe(int64_t rows, const dnnl::memory::desc& weights, bool add = false) const {
    const dnnl::memory::desc src({rows, in}, src_type, tag::ab), dst({rows, out}, dt::f32, tag::ab);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::post_ops ops;
    if (gelu) ops.append_eltwise(1.f, dnnl::algorithm::eltwise_gelu_erf, 0.f, 0.f);
    if (add) ops.append_binary(dnnl::algorithm::binary_add, dst);
    attr.set_post_ops(ops);
    if (!b.defined())
      return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weights, dst), attr, cpu_engine());
    const dnnl::memory::desc bias({1, out}, dt::f32, tag::ab);
    return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weights, bias, dst), attr, cpu_engine());
  }
  int add_index() const { return gelu ? 1 : 0; }
  std::shared_ptr<Prim> prim(int64_t rows, bool add) {
    std::lock_guard<std::mutex> hold(lock);
    const std::pair<int64_t, bool> key{rows, add};
    auto it = prims.find(key);
    if (it != prims.end()) return it->second;
    std::shared_ptr<Prim> p;
    try {
      const dnnl::matmul::primitive_desc pd = describe(rows, packed_desc, add);
      if (!reference_only(pd)) p = std::make_shared<Prim>(Prim{dnnl::matmul(pd), pd.scratchpad_desc()});
    } catch (const dnnl::error&) {
    }
    if (prims.size() >= 256) prims.clear();  // row counts of a long life of varying windows
    prims.emplace(key, p);
    return p;
  }
  // w (out, in) float32 from the packed copy (bf16: its rounded values).
  at::Tensor unpack() const {
    at::Tensor w = at::empty({out, in}, at::kFloat);
    dnnl::memory user({{in, out}, dt::f32, tag::ba}, cpu_engine(), w.data_ptr<float>());
    dnnl::memory from(packed_desc, cpu_engine(), packed.get_data_handle());
    reorder(from, user);
    return w;
  }
};

bool PackedLinear::available() { return true; }

PackedLinear::PackedLinear(const at::Tensor& w, const at::Tensor& b, bool bf16, Act act) {
  if (!w.is_cpu() || w.scalar_type() != at::kFloat || w.dim() != 2 ||
      (b.defined() && (!b.is_cpu() || b.scalar_type() != at::kFloat || b.numel() != w.size(0))))
    return;
  auto impl = std::make_shared<Impl>();
  impl->b = b.defined() ? b.contiguous() : b;
  impl->in = w.size(1);
  impl->out = w.size(0);
  if (bf16) impl->src_type = dt::bf16;
  impl->gelu = act == Act::Gelu;
  try {
    // The layout oneDNN's kernel wants for a typical window of rows; every
    // row count then uses it.
    const dnnl::matmul::primitive_desc pd =
        impl->describe(256, dnnl::memory::desc({impl->in, impl->out}, impl->src_type, tag::any));
    if (reference_only(pd)) return;
    impl->packed_desc = pd.weights_desc();
    impl->packed = packed_memory(impl->packed_desc, &impl->packed_bytes);
    const at::Tensor wc = w.contiguous();  // (out, in) row-major: w^T as (in, out) column-major
    dnnl::memory user({{impl->in, impl->out}, dt::f32, tag::ba}, cpu_engine(), wc.data_ptr<float>());
    reorder(user, impl->packed);
  } catch (const dnnl::error&) {
    return;
  }
  impl_ = impl;
}

at::Tensor PackedLinear::operator()(const at::Tensor& x_in) const { return (*this)(x_in, at::Tensor()); }

at::Tensor PackedLinear::operator()(const at::Tensor& x_in, const at::Tensor& add) const {
  Impl& im = *impl_;
  const bool bf16 = im.src_type == dt::bf16;
  // Where oneDNN has only its reference code (or for an x it cannot take):
  // the weights unpacked for this call (the packed copy is the only one
  // kept: the network may drop its own).
  const auto fallback = [&] {
    const at::Tensor w = im.unpack().to(x_in.device());
    const at::Tensor b = im.b.defined() ? im.b.to(x_in.options()) : im.b;
    at::Tensor y = bf16 ? linear_bf16(x_in, w.to(at::kBFloat16), b) : at::linear(x_in, w.to(x_in.options()), b);
    if (im.gelu) y = at::gelu(y);
    return add.defined() ? y + add : y;
  };
  if (!x_in.is_cpu() || x_in.scalar_type() != at::kFloat || x_in.dim() < 1 || x_in.size(-1) != im.in)
    return fallback();
  const at::Tensor x = bf16 ? x_in.to(at::kBFloat16).contiguous() : x_in.contiguous();
  const int64_t rows = x.numel() / im.in;
  std::vector<int64_t> sizes = x.sizes().vec();
  sizes.back() = im.out;
  at::Tensor y = at::empty(sizes, x_in.options());
  if (rows == 0) return y;
  // The sum in the product's pass where add is float32 rows of y's shape.
  const bool fuse = add.defined() && add.is_cpu() && add.scalar_type() == at::kFloat && add.sizes() == y.sizes() &&
                    add.is_contiguous();
  const std::shared_ptr<Impl::Prim> p = im.prim(rows, fuse);
  // Not fused: the product alone (or the fallback), then the sum.
  if (add.defined() && (!fuse || !p)) return (*this)(x_in).add_(add);
  if (!p) return fallback();
  dnnl::engine& e = cpu_engine();
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, dnnl::memory({{rows, im.in}, im.src_type, tag::ab}, e, x.data_ptr())},
      {DNNL_ARG_WEIGHTS, im.packed},
      {DNNL_ARG_DST, dnnl::memory({{rows, im.out}, dt::f32, tag::ab}, e, y.data_ptr<float>())}};
  if (im.b.defined()) args.emplace(DNNL_ARG_BIAS, dnnl::memory({{1, im.out}, dt::f32, tag::ab}, e, im.b.data_ptr<float>()));
  if (fuse)
    args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(im.add_index()) | DNNL_ARG_SRC_1,
                 dnnl::memory({{rows, im.out}, dt::f32, tag::ab}, e, add.data_ptr<float>()));
  execute(p->matmul, p->scratchpad, std::move(args));
  return y;
}

struct PackedConv::Impl {
  at::Tensor w;  // (Cout, Cin / groups, kh, kw), for dnn_conv's fallback and packing
  std::vector<int64_t> stride;
  int64_t groups = 1;
  dt type = dt::f32;  // of x and the packed weights (the output is float32)
  struct Prim {
    dnnl::convolution_forward conv;
    dnnl::memory weights;  // packed, possibly shared with other shapes
    dnnl::memory::desc scratchpad;
    dnnl::memory::dims dst;  // N, Cout, Ho, Wo
    std::shared_ptr<Wino> wino;  // where set, it runs the convolution (conv unused)
  };
  std::mutex lock;
  std::map<std::vector<int64_t>, std::shared_ptr<Prim>> prims;  // by N, C, H, W, pads, layout; null: not packed
  std::vector<dnnl::memory> packs;                               // one per weight layout
  std::vector<at::Tensor> pack_bytes;                            // their memory

  // The weights in the layout `want` (its type too), packed on first use
  // and shared by the shapes that want the same; under `lock`.
  dnnl::memory packed_as(const dnnl::memory::desc& want) {
    for (const dnnl::memory& m : packs)
      if (m.get_desc() == want) return m;
    pack_bytes.emplace_back();
    dnnl::memory packed = packed_memory(want, &pack_bytes.back());
    const at::Tensor wc = w.contiguous();
    const int64_t G = groups, Co = w.size(0);
    dnnl::memory user(G == 1 ? dnnl::memory::desc({Co, w.size(1), w.size(2), w.size(3)}, dt::f32, tag::oihw)
                             : dnnl::memory::desc({G, Co / G, w.size(1), w.size(2), w.size(3)}, dt::f32, tag::goihw),
                      cpu_engine(), wc.data_ptr<float>());
    reorder(user, packed);
    packs.push_back(packed);
    return packed;
  }

  // wino32: float32 Winograd for x (float32) or nothing (bf16's way where
  // it is faster: operator()).
  std::shared_ptr<Prim> prim(const at::Tensor& x, int64_t ph, int64_t pw, bool nhwc, bool wino32 = false) {
    const std::vector<int64_t> key{x.size(0), x.size(1), x.size(2), x.size(3), ph, pw, nhwc ? 1 : 0, wino32 ? 1 : 0};
    std::lock_guard<std::mutex> hold(lock);
    auto it = prims.find(key);
    if (it != prims.end()) return it->second;
    std::shared_ptr<Prim> p;
    try {
      const int64_t N = x.size(0), H = x.size(2), W = x.size(3), Co = w.size(0), kh = w.size(2), kw = w.size(3),
                    G = groups;
      const int64_t Ho = (H + 2 * ph - kh) / stride[0] + 1, Wo = (W + 2 * pw - kw) / stride[1] + 1;
      const tag t = nhwc ? tag::nhwc : tag::nchw;
      std::shared_ptr<Wino> wino;
      if ((type == dt::f32 || wino32) && G == 1 && kh == 3 && kw == 3 && stride[0] == 1 && stride[1] == 1 && ph == pw)
        wino = make_wino(N, x.size(1), H, W, Co, ph, false, c10::nullopt, nhwc);
      if (wino) {
        p = std::make_shared<Prim>(
            Prim{dnnl::convolution_forward(), packed_as(wino->weights), {}, {N, Co, Ho, Wo}, wino});
      } else if (!wino32) {  // wino32 without Winograd: nothing (null)
        const dnnl::memory::desc src({N, x.size(1), H, W}, type, t), dst({N, Co, Ho, Wo}, dt::f32, t),
            wany(G == 1 ? dnnl::memory::dims{Co, w.size(1), kh, kw}
                        : dnnl::memory::dims{G, Co / G, w.size(1), kh, kw},
                 type, tag::any);
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        const dnnl::convolution_forward::primitive_desc pd(
            dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                            src, wany, dst, {stride[0], stride[1]}, {ph, pw}, {ph, pw}),
            attr, cpu_engine());
        if (!reference_only(pd))
          p = std::make_shared<Prim>(Prim{dnnl::convolution_forward(pd), packed_as(pd.weights_desc()),
                                          pd.scratchpad_desc(), {N, Co, Ho, Wo}, nullptr});
      }
    } catch (const dnnl::error&) {
    }
    if (prims.size() >= 256) prims.clear();
    prims.emplace(key, p);
    return p;
  }
};

PackedConv::PackedConv(const at::Tensor& w, at::IntArrayRef stride, bool bf16, int64_t groups) {
  if (!w.is_cpu() || w.scalar_type() != at::kFloat || w.dim() != 4 || stride.size() != 2 || groups < 1 ||
      w.size(0) % groups != 0)
    return;
  auto impl = std::make_shared<Impl>();
  impl->w = w;
  impl->stride = stride.vec();
  impl->groups = groups;
  if (bf16) impl->type = dt::bf16;
  impl_ = impl;
}

at::Tensor PackedConv::operator()(const at::Tensor& x_in, int64_t pad_h, int64_t pad_w) const {
  Impl& im = *impl_;
  const bool bf16 = im.type == dt::bf16;
  // bf16, a float32 3x3 convolution of one image of 128 channels or more:
  // float32 Winograd where it runs, faster there on 2 cores than oneDNN's
  // bfloat16 direct one (512 at 32x32: 6.2 against 10.2 ms; 128 at
  // 128x128: 9.3 against 10.6; 64 at 256x256 alike), and exact.
  if (bf16 && x_in.is_cpu() && x_in.scalar_type() == at::kFloat && x_in.dim() == 4 && x_in.size(0) == 1 &&
      x_in.size(1) >= 128 && x_in.size(1) == im.w.size(1) && im.groups == 1 && im.w.size(2) == 3 &&
      im.w.size(3) == 3 && im.stride[0] == 1 && im.stride[1] == 1 && pad_h == pad_w && x_in.numel() > 0) {
    const bool last = x_in.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
    if (last ? x_in.is_contiguous(at::MemoryFormat::ChannelsLast) : x_in.is_contiguous()) {
      const std::shared_ptr<Impl::Prim> p = im.prim(x_in, pad_h, pad_w, last, /*wino32=*/true);
      if (p) return run_wino(*p->wino, x_in, p->weights, nullptr);
    }
  }
  // bf16: x rounded to bfloat16 here unless it is already.
  const at::Tensor x = bf16 && x_in.scalar_type() == at::kFloat ? x_in.to(at::kBFloat16) : x_in;
  const bool nhwc = x.dim() == 4 && x.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  const bool plain = nhwc ? x.is_contiguous(at::MemoryFormat::ChannelsLast) : x.is_contiguous();
  std::shared_ptr<Impl::Prim> p;
  if (x.is_cpu() && x.scalar_type() == (bf16 ? at::kBFloat16 : at::kFloat) && x.dim() == 4 && plain &&
      x.size(1) == im.w.size(1) * im.groups && x.numel() > 0)
    p = im.prim(x, pad_h, pad_w, nhwc);
  if (!p) {
    const at::Tensor y = dnn_conv(x, im.w.to(x.options()), at::Tensor(), im.stride, {pad_h, pad_w}, im.groups);
    return bf16 ? y.to(at::kFloat) : y;
  }
  if (p->wino) return run_wino(*p->wino, x, p->weights, nullptr);
  const dnnl::memory::dims& d = p->dst;
  at::Tensor y = at::empty({d[0], d[1], d[2], d[3]}, x.options().dtype(at::kFloat).memory_format(
                                                          nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous));
  dnnl::engine& e = cpu_engine();
  const tag t = nhwc ? tag::nhwc : tag::nchw;
  execute(p->conv, p->scratchpad,
          {{DNNL_ARG_SRC, dnnl::memory({{x.size(0), x.size(1), x.size(2), x.size(3)}, im.type, t}, e, x.data_ptr())},
           {DNNL_ARG_WEIGHTS, p->weights},
           {DNNL_ARG_DST, dnnl::memory({d, dt::f32, t}, e, y.data_ptr<float>())}});
  return y;
}
namespace {
// attend_heads()'s two products for one shape: scores = q k^T over a group
// of heads, then o = softmax(scores) v, each a oneDNN batched matmul over
// the group reading q, k, v where they lie in the packed rows and writing
// o's columns in place.
struct AttendPrims {
  dnnl::matmul scores, mix;
  dnnl::memory::desc q, kt, s, v, o, scores_pad, mix_pad;
};

std::shared_ptr<AttendPrims> attend_prims(int64_t T, int64_t group, int64_t hd, int64_t H) {
  static std::mutex lock;
  static std::map<std::array<int64_t, 4>, std::shared_ptr<AttendPrims>> cache;  // null: oneDNN's reference code only
  const std::array<int64_t, 4> key{T, group, hd, H};
  std::lock_guard<std::mutex> hold(lock);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  std::shared_ptr<AttendPrims> p;
  try {
    auto a = std::make_shared<AttendPrims>();
    const int64_t row = 3 * H;  // a packed row: q, k, v of every head
    a->q = dnnl::memory::desc({group, T, hd}, dt::f32, dnnl::memory::dims{hd, row, 1});
    a->kt = dnnl::memory::desc({group, hd, T}, dt::f32, dnnl::memory::dims{hd, 1, row});
    a->s = dnnl::memory::desc({group, T, T}, dt::f32, tag::abc);
    a->v = dnnl::memory::desc({group, T, hd}, dt::f32, dnnl::memory::dims{hd, row, 1});
    a->o = dnnl::memory::desc({group, T, hd}, dt::f32, dnnl::memory::dims{hd, H, 1});
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const dnnl::matmul::primitive_desc s_pd(dnnl::matmul::desc(a->q, a->kt, a->s), attr, cpu_engine());
    const dnnl::matmul::primitive_desc m_pd(dnnl::matmul::desc(a->s, a->v, a->o), attr, cpu_engine());
    if (!reference_only(s_pd) && !reference_only(m_pd)) {
      a->scores = dnnl::matmul(s_pd);
      a->mix = dnnl::matmul(m_pd);
      a->scores_pad = s_pd.scratchpad_desc();
      a->mix_pad = m_pd.scratchpad_desc();
      p = a;
    }
  } catch (const dnnl::error&) {
  }
  if (cache.size() >= 256) cache.clear();  // window lengths of a long life
  cache.emplace(key, p);
  return p;
}
}  // namespace

at::Tensor attend_heads(const at::Tensor& qkv, int64_t heads, int64_t max_scores) {
  if (!qkv.is_cpu() || qkv.scalar_type() != at::kFloat || qkv.dim() != 2 || !qkv.is_contiguous() || heads < 1 ||
      qkv.size(1) % (3 * heads) != 0 || qkv.size(0) < 1)
    return at::Tensor();
  const int64_t T = qkv.size(0), H = qkv.size(1) / 3, hd = H / heads;
  // Heads a product: as many as keep their scores under max_scores, a divisor of heads.
  int64_t group = std::max<int64_t>(1, std::min<int64_t>(heads, max_scores / (T * T)));
  while (heads % group != 0) --group;
  const std::shared_ptr<AttendPrims> p = attend_prims(T, group, hd, H);
  if (!p) return at::Tensor();
  at::Tensor o = at::empty({T, H}, qkv.options()), s = at::empty({group, T, T}, qkv.options());
  dnnl::engine& e = cpu_engine();
  float* rows = qkv.data_ptr<float>();
  for (int64_t h = 0; h < heads; h += group) {
    float* base = rows + h * hd;
    execute(p->scores, p->scores_pad,
            {{DNNL_ARG_SRC, dnnl::memory(p->q, e, base)},
             {DNNL_ARG_WEIGHTS, dnnl::memory(p->kt, e, base + H)},
             {DNNL_ARG_DST, dnnl::memory(p->s, e, s.data_ptr<float>())}});
    at::softmax_out(s, s, -1);
    execute(p->mix, p->mix_pad,
            {{DNNL_ARG_SRC, dnnl::memory(p->s, e, s.data_ptr<float>())},
             {DNNL_ARG_WEIGHTS, dnnl::memory(p->v, e, base + 2 * H)},
             {DNNL_ARG_DST, dnnl::memory(p->o, e, o.data_ptr<float>() + h * hd)}});
  }
  return o;
}
namespace {
// The primitive of `key` from a process-wide cache, made by make() on first
// use under the lock; null (also when make throws dnnl::error) where oneDNN
// has only its reference code.  Cleared at 256 keys (shapes of a long life).
template <class P, class Make>
std::shared_ptr<P> cached(std::mutex& lock, std::map<std::vector<int64_t>, std::shared_ptr<P>>& cache,
                          const std::vector<int64_t>& key, Make&& make) {
  std::lock_guard<std::mutex> hold(lock);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  std::shared_ptr<P> p;
  try {
    p = make();
  } catch (const dnnl::error&) {
  }
  if (cache.size() >= 256) cache.clear();
  cache.emplace(key, p);
  return p;
}

// One call's arguments: the source x, the weights w (lying as `user`
// describes; reordered into wbuf where the primitive wants another layout)
// and a new output y (dims d: N, C, H, W; type `out`, in x's layout).
std::unordered_map<int, dnnl::memory> call_args(const at::Tensor& x, const at::Tensor& w,
                                                const dnnl::memory::desc& user, const dnnl::memory::desc& want,
                                                const dnnl::memory::dims& d, at::ScalarType out, bool nhwc,
                                                at::Tensor& wbuf, at::Tensor& y) {
  dnnl::engine& e = cpu_engine();
  dnnl::memory weights(user, e, w.data_ptr());
  if (!(want == user)) {
    wbuf = at::empty({static_cast<int64_t>(want.get_size())}, at::kByte);
    dnnl::memory to(want, e, wbuf.data_ptr());
    reorder(weights, to);
    weights = to;
  }
  y = at::empty({d[0], d[1], d[2], d[3]},
                x.options().dtype(out).memory_format(nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous));
  const tag t = nhwc ? tag::nhwc : tag::nchw;
  const dt xt = x.scalar_type() == at::kBFloat16 ? dt::bf16 : dt::f32;
  return {{DNNL_ARG_SRC, dnnl::memory({{x.size(0), x.size(1), x.size(2), x.size(3)}, xt, t}, e, x.data_ptr())},
          {DNNL_ARG_WEIGHTS, weights},
          {DNNL_ARG_DST, dnnl::memory({d, out == at::kBFloat16 ? dt::bf16 : dt::f32, t}, e, y.data_ptr())}};
}

// dnn_conv_act()'s primitive for one shape, types and weight layout.
struct ConvActPrim {
  dnnl::convolution_forward conv;
  dnnl::memory::desc user_weights, weights, scratchpad;
  dnnl::memory::dims dst;  // N, Cout, Ho, Wo
  // Where set, Winograd runs the convolution (conv unused), its weights
  // reordered (transformed) from user_weights, OIHW, at each call.
  std::shared_ptr<Wino> wino;
};

// Null: oneDNN has only its reference code for it (or none).
std::shared_ptr<ConvActPrim> conv_act_prim(const at::Tensor& x, const at::Tensor& w, bool bias, int64_t pad,
                                           int64_t groups, float slope, bool act, at::ScalarType out, bool nhwc) {
  static std::mutex lock;
  static std::map<std::vector<int64_t>, std::shared_ptr<ConvActPrim>> cache;
  const dt xt = x.scalar_type() == at::kBFloat16 ? dt::bf16 : dt::f32;
  const dt ot = out == at::kBFloat16 ? dt::bf16 : dt::f32;
  std::vector<int64_t> key{x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(1), w.size(2), w.size(3),
                           pad, groups, static_cast<int64_t>(xt), static_cast<int64_t>(ot), nhwc, bias, act};
  for (int d = 0; d < 4; ++d) key.push_back(w.stride(d));
  int32_t bits = 0;
  std::memcpy(&bits, &slope, sizeof bits);
  key.push_back(bits);
  return cached(lock, cache, key, [&]() -> std::shared_ptr<ConvActPrim> {
    const int64_t N = x.size(0), H = x.size(2), W = x.size(3), Co = w.size(0), kh = w.size(2), kw = w.size(3), G = groups;
    const int64_t Ho = H + 2 * pad - kh + 1, Wo = W + 2 * pad - kw + 1;
    const tag t = nhwc ? tag::nhwc : tag::nchw;
    const dnnl::memory::desc src({N, x.size(1), H, W}, xt, t), dst({N, Co, Ho, Wo}, ot, t);
    // The weights as they lie, (G,) Cout / G, Cin / G, kh, kw.
    const dnnl::memory::desc user =
        G == 1 ? dnnl::memory::desc({Co, w.size(1), kh, kw}, xt, {w.stride(0), w.stride(1), w.stride(2), w.stride(3)})
               : dnnl::memory::desc({G, Co / G, w.size(1), kh, kw}, xt,
                                    {(Co / G) * w.stride(0), w.stride(0), w.stride(1), w.stride(2), w.stride(3)});
    if (xt == dt::f32 && ot == dt::f32 && G == 1 && kh == 3 && kw == 3 && pad == 1) {
      const std::shared_ptr<Wino> wino =
          make_wino(N, x.size(1), H, W, Co, 1, bias, act ? c10::optional<float>(slope) : c10::nullopt, nhwc);
      if (wino) {
        // The weights' reorder into Winograd's layout (its transform) takes
        // them as OIHW (not as any strides): dnn_conv_act() passes them so;
        // where oneDNN has no such reorder, no Winograd.
        try {
          const dnnl::memory::desc oihw({Co, x.size(1), 3, 3}, dt::f32, tag::oihw);
          dnnl::reorder::primitive_desc(cpu_engine(), oihw, cpu_engine(), wino->weights);
          return std::make_shared<ConvActPrim>(
              ConvActPrim{dnnl::convolution_forward(), oihw, wino->weights, {}, {N, Co, Ho, Wo}, wino});
        } catch (const dnnl::error&) {
        }
      }
    }
    const dnnl::memory::desc wany(user.dims(), xt, tag::any);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (act) {
      dnnl::post_ops ops;
      ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, slope, 0.f);
      attr.set_post_ops(ops);
    }
    const auto direct = dnnl::algorithm::convolution_direct;
    const auto inference = dnnl::prop_kind::forward_inference;
    const dnnl::convolution_forward::primitive_desc pd =
        bias ? dnnl::convolution_forward::primitive_desc(
                   dnnl::convolution_forward::desc(inference, direct, src, wany, dnnl::memory::desc({Co}, dt::f32, tag::a),
                                                   dst, {1, 1}, {pad, pad}, {pad, pad}),
                   attr, cpu_engine())
             : dnnl::convolution_forward::primitive_desc(
                   dnnl::convolution_forward::desc(inference, direct, src, wany, dst, {1, 1}, {pad, pad}, {pad, pad}),
                   attr, cpu_engine());
    if (reference_only(pd)) return nullptr;
    return std::make_shared<ConvActPrim>(ConvActPrim{dnnl::convolution_forward(pd), user, pd.weights_desc(),
                                                     pd.scratchpad_desc(), {N, Co, Ho, Wo}, nullptr});
  });
}
}  // namespace

at::Tensor dnn_conv_act(const at::Tensor& x, const at::Tensor& w_in, const at::Tensor& b, int64_t pad, int64_t groups,
                        c10::optional<double> slope, at::ScalarType out) {
  const bool nhwc = x.dim() == 4 && x.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  const at::Tensor w = groups == 1 ? w_in : w_in.contiguous();
  const bool types = (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16) &&
                     w.scalar_type() == x.scalar_type() && (out == at::kFloat || out == at::kBFloat16) &&
                     (!b.defined() || (b.is_cpu() && b.scalar_type() == at::kFloat && b.dim() == 1 && b.is_contiguous()));
  std::shared_ptr<ConvActPrim> p;
  if (types && x.is_cpu() && w.is_cpu() && x.dim() == 4 && w.dim() == 4 && groups >= 1 && w.size(0) % groups == 0 &&
      x.size(1) == w.size(1) * groups && (!b.defined() || b.size(0) == w.size(0)) && x.numel() > 0 &&
      (nhwc ? x.is_contiguous(at::MemoryFormat::ChannelsLast) : x.is_contiguous()))
    p = conv_act_prim(x, w, b.defined(), pad, groups, static_cast<float>(slope.value_or(0.)), slope.has_value(), out,
                      nhwc);
  if (!p) return dnn_conv_act_plain(x, w_in, b, pad, groups, slope, out);
  if (p->wino) {
    dnnl::engine& e = cpu_engine();
    at::Tensor wbuf = at::empty({static_cast<int64_t>(p->weights.get_size())}, at::kByte);
    const at::Tensor wc = w.contiguous();
    dnnl::memory user(p->user_weights, e, wc.data_ptr()), packed(p->weights, e, wbuf.data_ptr());
    reorder(user, packed);
    return run_wino(*p->wino, x, packed, b.defined() ? b.data_ptr<float>() : nullptr);
  }
  at::Tensor wbuf, y;
  std::unordered_map<int, dnnl::memory> args = call_args(x, w, p->user_weights, p->weights, p->dst, out, nhwc, wbuf, y);
  if (b.defined())
    args.emplace(DNNL_ARG_BIAS, dnnl::memory({{w.size(0)}, dt::f32, tag::a}, cpu_engine(), b.data_ptr<float>()));
  execute(p->conv, p->scratchpad, std::move(args));
  return y;
}
namespace {
// dnn_conv_transpose()'s primitive for one shape and types.
struct DeconvPrim {
  dnnl::deconvolution_forward deconv;
  dnnl::memory::desc user_weights, weights, scratchpad;
  dnnl::memory::dims dst;
};

std::shared_ptr<DeconvPrim> deconv_prim(const at::Tensor& x, const at::Tensor& w, int64_t stride, at::ScalarType out,
                                        bool nhwc) {
  static std::mutex lock;
  static std::map<std::vector<int64_t>, std::shared_ptr<DeconvPrim>> cache;
  const dt xt = x.scalar_type() == at::kBFloat16 ? dt::bf16 : dt::f32;
  const dt ot = out == at::kBFloat16 ? dt::bf16 : dt::f32;
  std::vector<int64_t> key{x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(2), w.size(3),
                           stride, static_cast<int64_t>(xt), static_cast<int64_t>(ot), nhwc};
  for (int d = 0; d < 4; ++d) key.push_back(w.stride(d));
  return cached(lock, cache, key, [&]() -> std::shared_ptr<DeconvPrim> {
    const int64_t N = x.size(0), H = x.size(2), W = x.size(3), Co = w.size(0), kh = w.size(2), kw = w.size(3);
    const int64_t Ho = (H - 1) * stride + kh, Wo = (W - 1) * stride + kw;
    const tag t = nhwc ? tag::nhwc : tag::nchw;
    const dnnl::memory::desc src({N, x.size(1), H, W}, xt, t), dst({N, Co, Ho, Wo}, ot, t);
    const dnnl::memory::desc user({Co, w.size(1), kh, kw}, xt, {w.stride(0), w.stride(1), w.stride(2), w.stride(3)});
    const dnnl::memory::desc wany(user.dims(), xt, tag::any);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const dnnl::deconvolution_forward::primitive_desc pd(
        dnnl::deconvolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::deconvolution_direct, src,
                                          wany, dst, {stride, stride}, {0, 0}, {0, 0}),
        attr, cpu_engine());
    if (reference_only(pd)) return nullptr;
    return std::make_shared<DeconvPrim>(
        DeconvPrim{dnnl::deconvolution_forward(pd), user, pd.weights_desc(), pd.scratchpad_desc(), {N, Co, Ho, Wo}});
  });
}
}  // namespace

at::Tensor dnn_conv_transpose(const at::Tensor& x, const at::Tensor& w, int64_t stride, at::ScalarType out) {
  const bool nhwc = x.dim() == 4 && x.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  std::shared_ptr<DeconvPrim> p;
  if (x.is_cpu() && w.is_cpu() && x.dim() == 4 && w.dim() == 4 && stride >= 1 &&
      (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16) && w.scalar_type() == x.scalar_type() &&
      (out == at::kFloat || out == at::kBFloat16) && x.size(1) == w.size(1) && x.numel() > 0 &&
      (nhwc ? x.is_contiguous(at::MemoryFormat::ChannelsLast) : x.is_contiguous()))
    p = deconv_prim(x, w, stride, out, nhwc);
  if (!p)
    return at::conv_transpose2d(x.to(at::kFloat), w.transpose(0, 1).to(at::kFloat), c10::nullopt,
                                at::IntArrayRef{stride, stride}, at::IntArrayRef{0, 0})
        .to(out, false, false, x.suggest_memory_format());
  at::Tensor wbuf, y;
  execute(p->deconv, p->scratchpad, call_args(x, w, p->user_weights, p->weights, p->dst, out, nhwc, wbuf, y));
  return y;
}
#else
struct PackedLinear::Impl {};
bool PackedLinear::available() { return false; }
PackedLinear::PackedLinear(const at::Tensor&, const at::Tensor&, bool, Act) {}
at::Tensor PackedLinear::operator()(const at::Tensor& x) const { return x; }  // never: not usable()
at::Tensor PackedLinear::operator()(const at::Tensor& x, const at::Tensor&) const { return x; }  // never
struct PackedConv::Impl {};
size_t winograd_bytes(int64_t, int64_t, int64_t, int64_t) { return 0; }
void set_winograd(bool) {}
PackedConv::PackedConv(const at::Tensor&, at::IntArrayRef, bool, int64_t) {}
at::Tensor PackedConv::operator()(const at::Tensor& x, int64_t, int64_t) const { return x; }  // never: not usable()
at::Tensor attend_heads(const at::Tensor&, int64_t, int64_t) { return at::Tensor(); }
at::Tensor dnn_conv_act(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, int64_t pad, int64_t groups,
                        c10::optional<double> slope, at::ScalarType out) {
  return dnn_conv_act_plain(x, w, b, pad, groups, slope, out);
}
at::Tensor dnn_conv_transpose(const at::Tensor& x, const at::Tensor& w, int64_t stride, at::ScalarType out) {
  // In x's layout, as oneDNN's (a channels-last feature map stays so: the
  // renderer's warp takes it directly).
  return at::conv_transpose2d(x.to(at::kFloat), w.transpose(0, 1).to(at::kFloat), c10::nullopt,
                              at::IntArrayRef{stride, stride}, at::IntArrayRef{0, 0})
      .to(out, false, false, x.suggest_memory_format());
}
#endif

}  // namespace anitalker
