// Loading by name: typed views as at::Tensor, shape checks, prefixes, unused
// keys; and a value check against the renderer fixture's direction_Q.npy.
#include "state_dict.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <gmock/gmock.h>
#include <sys/mman.h>
#include <sys/utsname.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <thread>

#include "checkpoint_writer.h"
#include "device.h"
#include "error.h"
#include "kernels.h"
#include "npy.h"
#include "test_util.h"

using anitalker::Checkpoint;
using anitalker::StateDict;
using testing::HasSubstr;
using testing::Not;
using testutil::data;
using testutil::error_of;

TEST(StateDict, GetChecksShapeAndNamesKey) {
  StateDict sd(Checkpoint::open(data("renderer/tiny_lia.ckpt")));
  at::Tensor w = sd.get("lia.dec.direction.weight", {24, 20});
  EXPECT_EQ(w.sizes(), at::IntArrayRef({24, 20}));
  EXPECT_EQ(sd.get("lia.dec.direction.weight", {-1, 20}).size(0), 24);
  EXPECT_THAT(error_of([&] { sd.get("lia.dec.direction.weight", {512, 20}); }),
              HasSubstr("tiny_lia.ckpt: lia.dec.direction.weight: expected shape [512, 20], got [24, 20]"));
  EXPECT_THAT(error_of([&] { sd.get("lia.dec.direction.weight", {24}); }),
              HasSubstr("expected shape [24], got [24, 20]"));
  EXPECT_THAT(error_of([&] { sd.get("lia.dec.nothing", {1}); }), HasSubstr("tiny_lia.ckpt: missing tensor 'lia.dec.nothing'"));
}

TEST(StateDict, PrefixAndUnusedKeys) {
  StateDict all(Checkpoint::open(data("renderer/tiny_lia.ckpt")));
  StateDict dec = all.sub("lia.dec.");
  EXPECT_TRUE(dec.has("direction.weight"));
  EXPECT_EQ(dec.shape("direction.weight"), (std::vector<int64_t>{24, 20}));
  const size_t n_dec = dec.keys().size();
  EXPECT_GT(n_dec, 10u);
  EXPECT_EQ(dec.unused().size(), n_dec);
  dec.get("direction.weight", {24, 20});
  EXPECT_EQ(dec.unused().size(), n_dec - 1);
  // The record of used keys is shared by all views of one StateDict.
  EXPECT_EQ(all.unused().size(), all.keys().size() - 1);
  auto unused = all.unused();
  EXPECT_EQ(std::count(unused.begin(), unused.end(), "lia.dec.direction.weight"), 0);
  EXPECT_EQ(std::count(unused.begin(), unused.end(), "lia.dis.convs.0.0.weight"), 1);  // a training-only key
}

TEST(StateDict, TensorsViewTheFileWithoutCopies) {
  auto ckpt = Checkpoint::open(data("reader/special.pt"));
  StateDict sd(ckpt, "state_dict.");
  const nlohmann::json ref = testutil::json_file(data("reader/special.json"));
  for (const auto& r : ref) {
    const std::string key = r["key"];
    if (key.rfind("state_dict.", 0) != 0) continue;
    SCOPED_TRACE(key);
    at::Tensor t = sd.get(key.substr(11), r["shape"].get<std::vector<int64_t>>());
    at::Tensor d = t.to(at::kDouble).contiguous().reshape(-1);
    const auto want = r["values"].get<std::vector<double>>();
    ASSERT_EQ(d.numel(), static_cast<int64_t>(want.size()));
    for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(d[static_cast<int64_t>(i)].item<double>(), want[i]);
  }
  at::Tensor a = sd.get("shared.a", {4, 6}), b = sd.get("shared.b", {3, 4});
  EXPECT_EQ(static_cast<const float*>(b.data_ptr()) - static_cast<const float*>(a.data_ptr()), 6);
  at::Tensor tr = sd.get("view.transposed", {8, 6});
  EXPECT_FALSE(tr.is_contiguous());
  EXPECT_EQ(tr.strides(), at::IntArrayRef({1, 8}));
  // The bytes are those of the mapped file.
  EXPECT_EQ(a.data_ptr(), static_cast<const void*>(ckpt->at("state_dict.shared.a").data()));
  // get_float converts other dtypes.
  EXPECT_EQ(sd.get_float("half", {5}).scalar_type(), at::kFloat);
}

namespace {
// kB of the mapping holding `p` that are in this process's page tables
// (/proc/self/smaps "Rss"); -1 where it cannot be told.
long mapped_kb(const void* p) {
  std::ifstream f("/proc/self/smaps");
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  std::string line;
  bool inside = false;
  while (std::getline(f, line)) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) {
      inside = a >= lo && a < hi;
      continue;
    }
    long kb = 0;
    if (inside && std::sscanf(line.c_str(), "Rss: %ld kB", &kb) == 1) return kb;
  }
  return -1;
}
}  // namespace

// A tensor's pages of the file are mapped in one call when it is taken
// (MADV_POPULATE_READ, Linux 5.14 and later), not faulted in one by one by
// whatever reads it first: in a virtual machine each fault traps to the
// hypervisor (docs/performance.md, "Loading without a page fault per
// page").  Fails without the call: nothing has read the tensor yet.
TEST(StateDict, TakenTensorsAreMappedInOneCall) {
  testutil::TempDir dir;
  const std::vector<float> values(size_t{2} << 20, 0.5f);  // 8 MB each
  anitalker::write_checkpoint(dir / "two.pt", {{"a", anitalker::DType::Float32, {2048, 1024}, values.data()},
                                                {"b", anitalker::DType::Float32, {2048, 1024}, values.data()}});
  StateDict sd(Checkpoint::open(dir / "two.pt"));
  const long before = mapped_kb(sd.get("b", {2048, 1024}).data_ptr());
  if (before < 0) GTEST_SKIP() << "no /proc/self/smaps here";
  const at::Tensor a = sd.get("a", {2048, 1024});
  const long after = mapped_kb(a.data_ptr());
#ifdef MADV_POPULATE_READ
  struct utsname u;
  int major = 0, minor = 0;
  if (uname(&u) == 0 && std::sscanf(u.release, "%d.%d", &major, &minor) == 2 && (major > 5 || (major == 5 && minor >= 14))) {
    EXPECT_GE(after - before, 7 * 1024) << "a's 8 MB were not mapped when it was taken";
  }
#endif
  EXPECT_EQ(a.sum().item<double>(), 0.5 * 2048 * 1024);
}

TEST(StateDict, TensorsOutliveTheCheckpointObject) {
  at::Tensor w;
  {
    StateDict sd(Checkpoint::open(data("renderer/tiny_lia.ckpt")));
    w = sd.get("lia.dec.direction.weight", {24, 20}).clone().zero_();
    w = sd.get("lia.dec.direction.weight", {24, 20});
  }
  EXPECT_TRUE(std::isfinite(w.sum().item<float>()));
  // In-place ops on a mapped weight touch only this process's copy-on-write page.
  w.mul_(2);
  StateDict again(Checkpoint::open(data("renderer/tiny_lia.ckpt")));
  EXPECT_TRUE(at::allclose(again.get("lia.dec.direction.weight", {24, 20}) * 2, w));
}

TEST(StateDict, DirectionBasisMatchesFixture) {
  // spec/renderer.md 3.7: Q = reduced QR of (dec.direction.weight + 1e-8),
  // LAPACK's sign convention; the fixtures hold the reference's Q.
  for (const std::string dir : {"renderer", "renderer/s64_perturbed"}) {
    SCOPED_TRACE(dir);
    auto ckpt = Checkpoint::open(data(dir + (dir == "renderer" ? "/tiny_lia.ckpt" : "/tiny64_perturbed_lia.ckpt")));
    StateDict sd(ckpt);
    at::Tensor w = sd.get("lia.dec.direction.weight", {-1, -1});
    at::Tensor q = std::get<0>(at::linalg_qr(w + 1e-8, "reduced"));
    anitalker::TensorData ref = anitalker::read_npy(data(dir + "/direction_Q.npy"));
    at::Tensor r = anitalker::to_tensor(ref);
    ASSERT_EQ(q.sizes(), r.sizes());
    EXPECT_LE((q - r).abs().max().item<float>(), 1e-5);
  }
}

TEST(Device, ParseNames) {
  EXPECT_EQ(anitalker::parse_device("cpu"), c10::Device(c10::kCPU));
  EXPECT_THAT(error_of([] { anitalker::parse_device("gpu"); }), HasSubstr("device 'gpu': expected cpu, cuda or cuda:N"));
  EXPECT_THAT(error_of([] { anitalker::parse_device("cuda:x"); }), HasSubstr("expected cpu, cuda or cuda:N"));
  if (!anitalker::cuda_available()) {
    EXPECT_THAT(error_of([] { anitalker::parse_device("cuda:0"); }), HasSubstr("device 'cuda:0': this build has no CUDA"));
  } else {
    EXPECT_EQ(anitalker::parse_device("cuda").type(), c10::kCUDA);
  }
}

// ANITALKER_CPU_CACHE_MB: a whole number of MB, else the default (until
// 2026-12-06 "abc" turned the cache off and "-1" wrapped to no cap).
TEST(Device, CpuCacheSetting) {
  EXPECT_EQ(anitalker::cpu_cache_mb("512", 2048), 512u);
  EXPECT_EQ(anitalker::cpu_cache_mb("0", 2048), 0u);
  EXPECT_EQ(anitalker::cpu_cache_mb("1048576", 2048), 1048576u);
  for (const char* bad : {"", "abc", "-1", "1e3", "12MB", " 5", "1048577", "99999999999999999999999"})
    EXPECT_EQ(anitalker::cpu_cache_mb(bad, 2048), 2048u) << "'" << bad << "'";
  EXPECT_EQ(anitalker::cpu_cache_mb(nullptr, 2048), 2048u);
}

TEST(Device, CpuMemoryCache) {
#if !defined(__SANITIZE_ADDRESS__)
  ASSERT_GT(anitalker::cache_cpu_memory(), 0u);
  EXPECT_EQ(anitalker::cache_cpu_memory(), anitalker::cache_cpu_memory());  // once per process
  // A freed 96 MB block goes to the next tensor of that size; two alive at
  // once get two blocks; the values are whatever is written.
  void* first = nullptr;
  {
    at::Tensor t = at::empty({24 << 20});
    first = t.data_ptr();
  }
  at::Tensor a = at::empty({24 << 20}).fill_(1.f), b = at::empty({24 << 20}).fill_(2.f);
  EXPECT_EQ(a.data_ptr(), first);
  EXPECT_NE(b.data_ptr(), first);
  EXPECT_EQ(a.sum().item<double>(), 24.0 * (1 << 20));
  EXPECT_EQ(b.sum().item<double>(), 48.0 * (1 << 20));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data_ptr()) % 64, 0u);  // LibTorch's alignment
  // A new size takes a kept block at most a quarter larger than it needs
  // (an utterance of a new length reusing a longer one's blocks), no larger
  // one: a freed 96 MB block serves 80 MB, not 72 MB.  Fails with blocks
  // reused by exact size only, or by any larger size (checked).
  void* big = nullptr;
  {
    at::Tensor t = at::empty({24 << 20});
    big = t.data_ptr();
  }
  EXPECT_NE(at::empty({18 << 20}).data_ptr(), big);
  EXPECT_EQ(at::empty({20 << 20}).data_ptr(), big);
  // Blocks of 2 MB and more are whole 2 MB pages (transparent huge pages
  // where the kernel gives them): 3 MB takes a 4 MB block, which a 4 MB
  // tensor then reuses.
  void* three = nullptr;
  {
    at::Tensor t = at::empty({3 << 18});
    three = t.data_ptr();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(three) % (2u << 20), 0u);
  }
  EXPECT_EQ(at::empty({1 << 20}).data_ptr(), three);
  // Small tensors still come from LibTorch's own allocator.
  EXPECT_EQ(at::ones({16}).sum().item<float>(), 16.f);
#else
  GTEST_SKIP() << "not under AddressSanitizer (it wants to see every free)";
#endif
}

// The library's own loops (the renderer's warp and upsampling, the motion
// conformer's fused passes: at::parallel_for) run on every thread LibTorch
// has.  at::parallel_for is a template: its threads exist only where the
// caller is compiled with -fopenmp, and until 2026-12-06 libanitalker was
// not, so those loops ran on one thread (perf: the warp on one of two).
// Fails with the library built without OpenMP (checked).
TEST(Device, LibraryLoopsUseEveryThread) {
#if defined(ANITALKER_TEST_PARALLEL_LOOPS)
  const int before = at::get_num_threads();
  anitalker::set_num_threads(2);
  EXPECT_EQ(anitalker::library_loop_threads(), 2);
  anitalker::set_num_threads(1);
  EXPECT_EQ(anitalker::library_loop_threads(), 1);
  anitalker::set_num_threads(before);
  EXPECT_THAT(anitalker::torch_info(), Not(HasSubstr("own loops")));
#else
  GTEST_SKIP() << "a build on an external LibTorch: the library's loops are serial there (lib/meson.build)";
#endif
}

// Packed weights are held in the process's CPU allocator (2 MB pages where
// the kernel gives them), not in oneDNN's own allocation, whose fresh 4 KB
// pages made HuBERT-large's load mostly page faults (docs/performance.md,
// "Loading without a page fault per page").  Fails with the packed memory
// allocated by oneDNN: the allocator then sees none of it.
TEST(Kernels, PackedWeightsLiveInTheCpuAllocator) {
#if !defined(__SANITIZE_ADDRESS__)
  ASSERT_GT(anitalker::cache_cpu_memory(), 0u);
  if (!anitalker::PackedLinear::available()) GTEST_SKIP() << "built without oneDNN's headers (libdnnl-dev)";
  at::manual_seed(3);
  const at::Tensor w = at::randn({1024, 1024}), b = at::randn({1024});  // views of nothing new: 4 MB
  size_t base = anitalker::cpu_memory_peak(true);
  const anitalker::PackedLinear lin(w, b);
  ASSERT_TRUE(lin.usable());
  EXPECT_GE(anitalker::cpu_memory_peak() - base, size_t{4} << 20);
  // A convolution's weights are packed at its first call (2.25 MB here; x
  // and y are small blocks, which the count leaves out).
  const at::Tensor wc = at::randn({256, 256, 3, 3});
  const anitalker::PackedConv conv(wc, at::IntArrayRef{1, 1});
  if (!conv.usable()) GTEST_SKIP() << "no packed convolution here";
  const at::Tensor x = at::randn({1, 256, 4, 4});
  base = anitalker::cpu_memory_peak(true);
  const at::Tensor y = conv(x, 1, 1);
  EXPECT_GE(anitalker::cpu_memory_peak() - base, size_t{9} << 18);
  EXPECT_LT((y - at::conv2d(x, wc, {}, 1, 1)).abs().max().item<float>(), 1e-3);
#else
  GTEST_SKIP() << "not under AddressSanitizer (its allocator is LibTorch's)";
#endif
}

// The packed linear layer is at::linear up to float32 rounding, for any row
// count (one primitive each), leading dimensions, a transposed input and no
// bias; other types and devices are not packed.
// The activation and the residual inside the product's pass (HuBERT's ff1
// and its residual sums): against at::gelu and + in float64, the sum fused
// (contiguous float32 of y's shape) and not (a transposed view, float64),
// and equal to the product and then the sum.  Fails with the sum's
// operand read from x (checked).
TEST(Kernels, PackedLinearGeluAndResidual) {
  at::manual_seed(6);
  const at::Tensor w = at::randn({48, 40}) * 0.2, b = at::randn({48});
  const anitalker::PackedLinear lin(w, b), act(w, b, false, anitalker::PackedLinear::Act::Gelu);
  if (!act.usable()) GTEST_SKIP() << "built without oneDNN's headers (libdnnl-dev)";
  for (const int64_t rows : {1, 23, 81, 257}) {
    const at::Tensor x = at::randn({rows, 40}), r = at::randn({rows, 48});
    const at::Tensor lin64 = at::linear(x.to(at::kDouble), w.to(at::kDouble), b.to(at::kDouble));
    EXPECT_LT((act(x).to(at::kDouble) - at::gelu(lin64)).abs().max().item<double>(), 1e-4) << rows;
    const at::Tensor fused = lin(x, r);
    EXPECT_LT((fused.to(at::kDouble) - (lin64 + r.to(at::kDouble))).abs().max().item<double>(), 1e-4) << rows;
    EXPECT_TRUE(at::equal(fused, lin(x) + r)) << rows;  // the same float32 sum
    EXPECT_LT((act(x, r).to(at::kDouble) - (at::gelu(lin64) + r.to(at::kDouble))).abs().max().item<double>(), 1e-4);
    const at::Tensor rt = at::randn({48, rows}).t();  // not contiguous: the sum after the product
    EXPECT_TRUE(at::equal(lin(x, rt), lin(x) + rt)) << rows;
  }
}

TEST(Kernels, PackedLinearIsLinear) {
  at::manual_seed(5);
  const at::Tensor w = at::randn({96, 40}), b = at::randn({96});
  const anitalker::PackedLinear lin(w, b), nob(w, at::Tensor());
  if (!anitalker::PackedLinear::available()) {
    EXPECT_FALSE(lin.usable());
    GTEST_SKIP() << "built without oneDNN's headers (libdnnl-dev): LibTorch's paths";
  }
  ASSERT_TRUE(lin.usable());
  ASSERT_TRUE(nob.usable());
  EXPECT_FALSE(anitalker::PackedLinear(w.to(at::kDouble), b.to(at::kDouble)).usable());
  EXPECT_FALSE(anitalker::PackedLinear(w, at::randn({95})).usable());
  for (const std::vector<int64_t>& lead : std::vector<std::vector<int64_t>>{{1}, {13}, {2, 23}, {3, 257}, {0}}) {
    std::vector<int64_t> shape = lead;
    shape.push_back(40);
    const at::Tensor x = at::randn(shape);
    const at::Tensor want = at::linear(x.to(at::kDouble), w.to(at::kDouble), b.to(at::kDouble));
    const at::Tensor got = lin(x);
    ASSERT_EQ(got.sizes(), want.sizes());
    if (x.numel() == 0) continue;
    EXPECT_LT((got.to(at::kDouble) - want).abs().max().item<double>(), 1e-4) << x.sizes();
    const at::Tensor want0 = at::linear(x.to(at::kDouble), w.to(at::kDouble));
    EXPECT_LT((nob(x).to(at::kDouble) - want0).abs().max().item<double>(), 1e-4) << x.sizes();
    // The same rows again: the same bytes (same seed, same bytes).
    EXPECT_TRUE(at::equal(lin(x), got));
  }
  const at::Tensor xt = at::randn({40, 17}).t();  // not contiguous
  EXPECT_LT((lin(xt) - at::linear(xt, w, b)).abs().max().item<float>(), 1e-4);
  // Another type: at::linear with the weights unpacked (none kept besides the packed copy).
  const at::Tensor xd = at::randn({5, 40}, at::kDouble);
  const at::Tensor yd = lin(xd);
  EXPECT_EQ(yd.scalar_type(), at::kDouble);
  EXPECT_LT((yd - at::linear(xd, w.to(at::kDouble), b.to(at::kDouble))).abs().max().item<double>(), 1e-5);
}

// bfloat16: x and w rounded to bfloat16, the products summed in float32
// (compared with the same rounded values summed in float64).  Without a
// bfloat16 kernel it is not usable (the motion decoder keeps linear_bf16).
TEST(Kernels, PackedLinearBf16RoundsOnlyTheInputs) {
  at::manual_seed(7);
  const at::Tensor w = at::randn({96, 40}), b = at::randn({96});
  const anitalker::PackedLinear lin(w, b, /*bf16=*/true);
  if (!lin.usable()) GTEST_SKIP() << "no oneDNN headers, or no bfloat16 matmul kernel on this CPU";
  const auto round = [](const at::Tensor& t) { return t.to(at::kBFloat16).to(at::kDouble); };
  for (const int64_t rows : {1, 13, 257}) {
    const at::Tensor x = at::randn({rows, 40});
    const at::Tensor got = lin(x);
    ASSERT_EQ(got.scalar_type(), at::kFloat);
    const at::Tensor want = at::linear(round(x), round(w), b.to(at::kDouble));
    EXPECT_LT((got.to(at::kDouble) - want).abs().max().item<double>(), 1e-4) << rows;
    // Not float32 arithmetic: the rounding of the inputs shows.
    const at::Tensor exact = at::linear(x.to(at::kDouble), w.to(at::kDouble), b.to(at::kDouble));
    EXPECT_GT((got.to(at::kDouble) - exact).abs().max().item<double>(), 1e-3) << rows;
  }
}

// The packed convolution against at::conv2d in float64: both layouts, its
// output in x's layout, paddings per call, a stride, and what it cannot take
// (float64 x, a non-contiguous x) through dnn_conv.
TEST(Kernels, PackedConvIsConv) {
  at::manual_seed(8);
  const at::Tensor w = at::randn({24, 16, 3, 3}), w1 = at::randn({24, 16, 1, 1});
  const anitalker::PackedConv conv(w, {1, 1}), strided(w, {1, 2}), one(w1, {1, 1});
  if (!anitalker::PackedLinear::available()) {
    EXPECT_FALSE(conv.usable());
    GTEST_SKIP() << "built without oneDNN's headers (libdnnl-dev): dnn_conv";
  }
  ASSERT_TRUE(conv.usable());
  EXPECT_FALSE(anitalker::PackedConv(w.to(at::kDouble), {1, 1}).usable());
  const auto want = [](const at::Tensor& x, const at::Tensor& w, int64_t sw, int64_t ph, int64_t pw) {
    return at::conv2d(x.to(at::kDouble), w.to(at::kDouble), {}, {1, sw}, {ph, pw});
  };
  for (const bool last : {false, true})
    for (const std::vector<int64_t>& s : std::vector<std::vector<int64_t>>{{1, 4, 4}, {2, 9, 7}, {3, 32, 17}}) {
      at::Tensor x = at::randn({s[0], 16, s[1], s[2]});
      if (last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
      for (const std::array<int64_t, 2> pad : {std::array<int64_t, 2>{1, 1}, {1, 0}, {0, 1}, {0, 0}}) {
        const at::Tensor got = conv(x, pad[0], pad[1]);
        ASSERT_EQ(got.sizes(), want(x, w, 1, pad[0], pad[1]).sizes());
        EXPECT_LT((got.to(at::kDouble) - want(x, w, 1, pad[0], pad[1])).abs().max().item<double>(), 1e-4);
        EXPECT_TRUE(got.is_contiguous(last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous));
        EXPECT_TRUE(at::equal(conv(x, pad[0], pad[1]), got));  // same bytes again
      }
      EXPECT_LT((strided(x, 1, 1).to(at::kDouble) - want(x, w, 2, 1, 1)).abs().max().item<double>(), 1e-4);
      EXPECT_LT((one(x, 0, 0).to(at::kDouble) - want(x, w1, 1, 0, 0)).abs().max().item<double>(), 1e-4);
    }
  const at::Tensor xd = at::randn({1, 16, 5, 5}, at::kDouble);
  EXPECT_LT((conv(xd, 1, 1) - want(xd, w, 1, 1, 1)).abs().max().item<double>(), 1e-9);
  const at::Tensor xs = at::randn({1, 16, 6, 10}).narrow(3, 0, 5);  // not contiguous
  EXPECT_LT((conv(xs, 1, 1).to(at::kDouble) - want(xs, w, 1, 1, 1)).abs().max().item<double>(), 1e-4);
}

// Grouped, as HuBERT's positional convolution (groups of channels, a long
// 1 x K kernel, K/2 padding on the time axis): rows [T, C] as (1, C, 1, T)
// channels-last, and NCHW, against at::conv2d in float64.  Fails with the
// groups left out of the packed weights' layout (checked).
TEST(Kernels, PackedConvGrouped) {
  at::manual_seed(10);
  const int64_t C = 32, G = 4, K = 16;
  const at::Tensor w = at::randn({C, C / G, 1, K});
  const anitalker::PackedConv conv(w, {1, 1}, false, G);
  if (!conv.usable()) GTEST_SKIP() << "built without oneDNN's headers (libdnnl-dev)";
  EXPECT_FALSE(anitalker::PackedConv(at::randn({30, 8, 1, K}), {1, 1}, false, G).usable());  // 30 outputs, 4 groups
  for (const int64_t T : {1, 7, 50, 81}) {
    const at::Tensor rows = at::randn({T, C});
    const at::Tensor x = rows.view({1, 1, T, C}).permute({0, 3, 1, 2});  // (1, C, 1, T) channels-last
    ASSERT_TRUE(x.is_contiguous(at::MemoryFormat::ChannelsLast));
    const at::Tensor want = at::conv2d(x.to(at::kDouble), w.to(at::kDouble), at::Tensor(), at::IntArrayRef{1, 1}, at::IntArrayRef{0, K / 2}, at::IntArrayRef{1, 1}, G);
    const at::Tensor got = conv(x, 0, K / 2);
    ASSERT_EQ(got.sizes(), want.sizes()) << T;
    EXPECT_LT((got.to(at::kDouble) - want).abs().max().item<double>(), 1e-4) << T;
    const at::Tensor got_nchw = conv(x.contiguous(), 0, K / 2);
    EXPECT_LT((got_nchw.to(at::kDouble) - want).abs().max().item<double>(), 1e-4) << T;
  }
}

// bfloat16: x and w rounded to bfloat16, float32 sums and output; x may come
// in either type.
TEST(Kernels, PackedConvBf16RoundsOnlyTheInputs) {
  at::manual_seed(9);
  const at::Tensor w = at::randn({24, 16, 3, 3});
  const anitalker::PackedConv conv(w, {1, 1}, /*bf16=*/true);
  if (!conv.usable()) GTEST_SKIP() << "built without oneDNN's headers (libdnnl-dev)";
  // Where precision=bf16 is refused (check_precision), nothing packs in bfloat16.
  if (!anitalker::cpu_has_bf16()) GTEST_SKIP() << "no AVX512_BF16 here (or oneDNN held below it)";
  const auto round = [](const at::Tensor& t) { return t.to(at::kBFloat16).to(at::kDouble); };
  const at::Tensor x = at::randn({2, 16, 9, 7}).contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor got = conv(x, 1, 1);
  ASSERT_EQ(got.scalar_type(), at::kFloat);
  EXPECT_TRUE(got.is_contiguous(at::MemoryFormat::ChannelsLast));
  const at::Tensor want = at::conv2d(round(x), round(w), {}, 1, 1);
  EXPECT_LT((got.to(at::kDouble) - want).abs().max().item<double>(), 1e-4);
  const at::Tensor exact = at::conv2d(x.to(at::kDouble), w.to(at::kDouble), {}, 1, 1);
  EXPECT_GT((got.to(at::kDouble) - exact).abs().max().item<double>(), 1e-3);  // the rounding shows
  EXPECT_TRUE(at::equal(conv(x.to(at::kBFloat16), 1, 1), got));
}

// The convolution with its bias and leaky ReLU in one pass, against
// at::conv2d, the bias and at::leaky_relu in float64: both layouts, groups
// (the renderer's depthwise blur), no activation; output in x's layout and
// in the type asked for (bfloat16 rounded once, from the float32 result);
// bfloat16 x and w: only the inputs rounded, float32 sums.
TEST(Kernels, ConvWithBiasAndActivationInOnePass) {
  at::manual_seed(11);
  const auto want = [](const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, int64_t pad, int64_t groups,
                       bool act) {
    at::Tensor y = at::conv2d(x.to(at::kDouble), w.to(at::kDouble), b.to(at::kDouble), {1, 1}, {pad, pad}, {1, 1},
                              groups);
    return act ? at::leaky_relu(y, 0.2) : y;
  };
  for (const bool last : {false, true})
    for (const int64_t groups : {int64_t{1}, int64_t{16}}) {
      at::Tensor x = at::randn({1, 16, 11, 9}), w = at::randn({16, 16 / groups, groups == 1 ? 3 : 4, groups == 1 ? 3 : 4});
      const at::Tensor b = at::randn({16});
      if (last) {
        x = x.contiguous(at::MemoryFormat::ChannelsLast);
        w = w.contiguous(at::MemoryFormat::ChannelsLast);
      }
      for (const bool act : {true, false}) {
        SCOPED_TRACE(std::string(last ? "channels-last" : "NCHW") + ", groups " + std::to_string(groups) +
                     (act ? ", leaky ReLU" : ""));
        const c10::optional<double> slope = act ? c10::optional<double>(0.2) : c10::nullopt;
        const at::Tensor got = anitalker::dnn_conv_act(x, w, b, 1, groups, slope, at::kFloat);
        const at::Tensor exact = want(x, w, b, 1, groups, act);
        ASSERT_EQ(got.sizes(), exact.sizes());
        EXPECT_EQ(got.scalar_type(), at::kFloat);
        EXPECT_TRUE(got.is_contiguous(last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous));
        EXPECT_LT((got.to(at::kDouble) - exact).abs().max().item<double>(), 1e-4);
        // Rounded once to bfloat16: float32's result rounded.
        const at::Tensor low = anitalker::dnn_conv_act(x, w, b, 1, groups, slope, at::kBFloat16);
        EXPECT_EQ(low.scalar_type(), at::kBFloat16);
        // (within half a bfloat16 step of each value, and the sums' rounding)
        EXPECT_TRUE(((low.to(at::kFloat) - got).abs() <= got.abs() / 256 + 1e-5).all().item<bool>());
        EXPECT_GT((low.to(at::kFloat) - got).abs().max().item<float>(), 0.f);  // and not float32
        if (!anitalker::cpu_has_bf16()) continue;
        const auto round = [](const at::Tensor& t) { return t.to(at::kBFloat16).to(at::kDouble); };
        const at::Tensor in16 = anitalker::dnn_conv_act(x.to(at::kBFloat16), w.to(at::kBFloat16), b, 1, groups, slope,
                                                        at::kFloat);
        EXPECT_EQ(in16.scalar_type(), at::kFloat);
        const at::Tensor rounded_in = want(round(x), round(w), b, 1, groups, act);
        if (anitalker::PackedLinear::available()) {
          EXPECT_LT((in16.to(at::kDouble) - rounded_in).abs().max().item<double>(), 1e-4);  // float32 sums
        } else {
          // A build without oneDNN's API (an external LibTorch, the device
          // build) goes through LibTorch's bfloat16 convolution, which also
          // rounds its sums to bfloat16 before the bias: within a step of
          // each sum (the leaky ReLU only shrinks it).
          const at::Tensor sums = want(round(x), round(w), at::zeros_like(b), 1, groups, false);
          EXPECT_TRUE(((in16.to(at::kDouble) - rounded_in).abs() <= sums.abs() / 256 + 1e-4).all().item<bool>());
        }
        EXPECT_GT((in16.to(at::kDouble) - exact).abs().max().item<double>(), 1e-3);  // the rounding shows
      }
    }
  // What oneDNN does not take here (float64) is the same in separate passes.
  const at::Tensor xd = at::randn({1, 4, 5, 5}, at::kDouble), wd = at::randn({4, 4, 3, 3}, at::kDouble);
  const at::Tensor bd = at::randn({4});
  const at::Tensor got = anitalker::dnn_conv_act(xd, wd, bd, 1, 1, 0.2, at::kFloat);
  EXPECT_EQ(got.scalar_type(), at::kFloat);
  EXPECT_LT((got.to(at::kDouble) - want(xd, wd, bd, 1, 1, true)).abs().max().item<double>(), 1e-4);
}

// Winograd (kernels.h winograd_bytes): one image whose channels are
// multiples of 16 and whose picture has 256 pixels or more goes through
// oneDNN's Winograd F(4x4, 3x3), in PackedConv (padding 1 and 0, as the
// renderer's and ParseNet's) and dnn_conv_act (bias and leaky ReLU),
// against at::conv2d in float64 in both layouts.  Its sums are not the
// direct convolution's but within 2e-5 of the output's scale (about 2e-6
// at 512 channels); a tile transform or layout gone wrong is off by the
// order of the values (checked: the leaky ReLU left out, 0.74-0.81).
TEST(Kernels, WinogradIsConv) {
  if (anitalker::winograd_bytes(32, 20, 24, 48) == 0)
    GTEST_SKIP() << "no Winograd here (a CPU without AVX-512, no oneDNN headers, or ANITALKER_WINOGRAD=0)";
  EXPECT_EQ(anitalker::winograd_bytes(24, 20, 24, 48), 0u);  // channels not a multiple of 16
  EXPECT_EQ(anitalker::winograd_bytes(32, 8, 8, 48), 0u);    // 64 pixels
  anitalker::set_winograd(false);  // as `anitalker sr` on one or two faces
  EXPECT_EQ(anitalker::winograd_bytes(32, 20, 24, 48), 0u);
  anitalker::set_winograd(true);
  EXPECT_GT(anitalker::winograd_bytes(32, 20, 24, 48), 0u);
  at::manual_seed(21);
  const at::Tensor w = at::randn({48, 32, 3, 3}) / 17, b = at::randn({48});
  const anitalker::PackedConv conv(w, {1, 1});
  const auto rel = [](const at::Tensor& got, const at::Tensor& want) {
    return (got.to(at::kDouble) - want).abs().max().item<double>() / want.abs().max().item<double>();
  };
  for (const bool last : {false, true}) {
    SCOPED_TRACE(last ? "channels-last" : "NCHW");
    at::Tensor x = at::randn({1, 32, 20, 24});
    if (last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    for (const int64_t pad : {1, 0}) {
      const at::Tensor want = at::conv2d(x.to(at::kDouble), w.to(at::kDouble), {}, {1, 1}, {pad, pad});
      const at::Tensor got = conv(x, pad, pad);
      ASSERT_EQ(got.sizes(), want.sizes());
      EXPECT_TRUE(got.is_contiguous(last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous));
      EXPECT_LT(rel(got, want), 2e-5) << "pad " << pad;
    }
    for (const bool act : {true, false}) {
      const c10::optional<double> slope = act ? c10::optional<double>(0.2) : c10::nullopt;
      at::Tensor want = at::conv2d(x.to(at::kDouble), w.to(at::kDouble), b.to(at::kDouble), {1, 1}, {1, 1});
      if (act) want = at::leaky_relu(want, 0.2);
      for (const bool wlast : {false, true}) {  // the renderer's folded weights are channels-last
        const at::Tensor wl = wlast ? w.contiguous(at::MemoryFormat::ChannelsLast) : w;
        const at::Tensor got = anitalker::dnn_conv_act(x, wl, b, 1, 1, slope, at::kFloat);
        ASSERT_EQ(got.sizes(), want.sizes());
        EXPECT_TRUE(got.is_contiguous(last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous));
        EXPECT_LT(rel(got, want), 2e-5) << (act ? "leaky ReLU" : "no activation") << (wlast ? ", weights NHWC" : "");
      }
    }
  }
  // bf16 weights, 128 input channels or more: float32 Winograd, faster there
  // than bfloat16's direct convolution, and not rounded (bfloat16 inputs:
  // about 4e-3 off); 64 channels stay bfloat16.
  const at::Tensor w128 = at::randn({32, 128, 3, 3}) / 34, w64 = at::randn({32, 64, 3, 3}) / 24;
  const anitalker::PackedConv b128(w128, {1, 1}, /*bf16=*/true), b64(w64, {1, 1}, /*bf16=*/true);
  if (!b128.usable()) return;
  const at::Tensor x128 = at::randn({1, 128, 16, 16}), x64 = at::randn({1, 64, 16, 16});
  EXPECT_LT(rel(b128(x128, 1, 1), at::conv2d(x128.to(at::kDouble), w128.to(at::kDouble), {}, {1, 1}, {1, 1})), 2e-5);
  EXPECT_GT(rel(b64(x64, 1, 1), at::conv2d(x64.to(at::kDouble), w64.to(at::kDouble), {}, {1, 1}, {1, 1})), 1e-4);
}

// The transposed convolution against at::conv_transpose2d in float64 (its
// weight the convolution's, (Cout, Cin, k, k)), both layouts, float32 and
// bfloat16 output; bfloat16 x and w: only the inputs rounded.
TEST(Kernels, ConvTransposeIsConvTranspose2d) {
  at::manual_seed(12);
  for (const bool last : {false, true})
    for (const int64_t k : {int64_t{3}, int64_t{4}}) {
      SCOPED_TRACE(std::string(last ? "channels-last" : "NCHW") + ", k " + std::to_string(k));
      at::Tensor x = at::randn({1, 16, 7, 9}), w = at::randn({24, 16, k, k});
      if (last) {
        x = x.contiguous(at::MemoryFormat::ChannelsLast);
        w = w.contiguous(at::MemoryFormat::ChannelsLast);
      }
      const auto want = [](const at::Tensor& x, const at::Tensor& w) {
        return at::conv_transpose2d(x.to(at::kDouble), w.to(at::kDouble).transpose(0, 1), {}, 2, 0);
      };
      const at::Tensor got = anitalker::dnn_conv_transpose(x, w, 2, at::kFloat), exact = want(x, w);
      ASSERT_EQ(got.sizes(), exact.sizes());
      EXPECT_EQ(got.scalar_type(), at::kFloat);
      EXPECT_TRUE(got.is_contiguous(last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous));
      EXPECT_LT((got.to(at::kDouble) - exact).abs().max().item<double>(), 1e-4);
      const at::Tensor low = anitalker::dnn_conv_transpose(x, w, 2, at::kBFloat16);
      EXPECT_EQ(low.scalar_type(), at::kBFloat16);
      EXPECT_TRUE(((low.to(at::kFloat) - got).abs() <= got.abs() / 256 + 1e-5).all().item<bool>());
      if (!anitalker::cpu_has_bf16()) continue;
      const auto round = [](const at::Tensor& t) { return t.to(at::kBFloat16).to(at::kDouble); };
      const at::Tensor in16 = anitalker::dnn_conv_transpose(x.to(at::kBFloat16), w.to(at::kBFloat16), 2, at::kFloat);
      EXPECT_LT((in16.to(at::kDouble) - want(round(x), round(w))).abs().max().item<double>(), 1e-4);
      EXPECT_GT((in16.to(at::kDouble) - exact).abs().max().item<double>(), 1e-3);  // the rounding shows
    }
}

// Pipelines run one model's layers from several streaming threads at once:
// each call has its own scratchpad (oneDNN's own is one buffer for the whole
// process in this build), so concurrent calls give what a call alone gives.
TEST(Kernels, PackedLinearFromSeveralThreads) {
  if (!anitalker::PackedLinear::available()) GTEST_SKIP() << "built without oneDNN's headers (libdnnl-dev)";
  at::manual_seed(6);
  const at::Tensor w = at::randn({512, 1024}), b = at::randn({512});
  const anitalker::PackedLinear lin(w, b);
  ASSERT_TRUE(lin.usable());
  constexpr int kThreads = 4;
  std::vector<at::Tensor> x, want;
  for (int i = 0; i < kThreads; i++) {
    x.push_back(at::randn({23 + 40 * i, 1024}));
    want.push_back(lin(x.back()));
  }
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; i++)
    threads.emplace_back([&, i] {
      c10::InferenceMode guard;
      for (int r = 0; r < 100; r++)
        if (!at::equal(lin(x[i]), want[i])) wrong++;
    });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}
