// `anitalker render`: the CLI reproduces the renderer fixtures, writes the
// codes, and fails cleanly (message, exit status, no output file).
#include <gmock/gmock.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>

#include "device.h"
#include "../lib/test_util.h"
#include "npy.h"

using testing::HasSubstr;
using testutil::data;

namespace {


bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

std::string common() {
  return "--stage1 '" + data("renderer/tiny_lia.ckpt") + "' --portrait '" + data("renderer/monalisa.jpg") + "' --motion '" +
         data("renderer/motions.npy") + "'";
}

}  // namespace

TEST(RenderCli, FramesAndCodesMatchTheReference) {
  testutil::TempDir dir;
  testutil::CliResult r = testutil::run_cli("render " + common() + " --out '" + dir / "frames.npy" + "' --codes-dir '" + dir / "codes" + "' --batch-size 2");
  ASSERT_EQ(r.status, 0) << r.out;
  anitalker::TensorData frames = anitalker::read_npy(dir / "frames.npy");
  ASSERT_EQ(frames.dtype, anitalker::DType::UInt8);
  ASSERT_EQ(frames.shape, (std::vector<int64_t>{3, 256, 256, 3}));
  const std::vector<double> got = frames.to_doubles();
  const size_t per = 256 * 256 * 3;
  for (int i = 0; i < 3; ++i) {
    const std::vector<double> want = anitalker::read_npy(data("renderer/frame" + std::to_string(i) + "_u8.npy")).to_doubles();
    ASSERT_EQ(want.size(), per);
    double mx = 0;
    size_t differ = 0;
    for (size_t k = 0; k < per; ++k) {
      const double d = std::fabs(got[i * per + k] - want[k]);
      mx = std::max(mx, d);
      differ += d > 0;
    }
    EXPECT_LE(mx, 13) << "frame " << i;
    EXPECT_LE(static_cast<double>(differ) / per, 0.005) << "frame " << i;
  }
  for (const char* code : {"h_source", "h_motion"}) {
    const auto a = anitalker::read_npy(dir / (std::string("codes/") + code + ".npy")).to_doubles();
    const auto b = anitalker::read_npy(data(std::string("renderer/") + code + ".npy")).to_doubles();
    ASSERT_EQ(a.size(), b.size());
    for (size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(a[k], b[k], 1e-5) << code << " " << k;
  }
  EXPECT_EQ(anitalker::read_npy(dir / "codes/input.npy").to_doubles(), anitalker::read_npy(data("renderer/input.npy")).to_doubles());
  for (int k = 0; k < 6; ++k) EXPECT_TRUE(exists(dir / ("codes/feat_" + std::to_string(k) + ".npy"))) << k;
}

TEST(RenderCli, RawOutput) {
  testutil::TempDir dir;
  testutil::CliResult r = testutil::run_cli("render " + common() + " --out '" + dir / "raw.npy" + "' --raw");
  ASSERT_EQ(r.status, 0) << r.out;
  anitalker::TensorData raw = anitalker::read_npy(dir / "raw.npy");
  EXPECT_EQ(raw.dtype, anitalker::DType::Float32);
  EXPECT_EQ(raw.shape, (std::vector<int64_t>{3, 3, 256, 256}));
}

// OMP_NUM_THREADS far above what any machine runs (found 2026-12-07):
// `--num-threads 0` took it as the thread count and libgomp crashed
// (SIGSEGV) in the model load; now a value above 256 counts as unset (one
// thread per core).  The same frames, within a level (another thread count
// may sum in another order).
TEST(RenderCli, AbsurdOmpNumThreads) {
  testutil::TempDir dir;
  const char* before = std::getenv("OMP_NUM_THREADS");
  const std::string keep = before ? before : "";
  ::setenv("OMP_NUM_THREADS", "100000", 1);
  testutil::CliResult r = testutil::run_cli("render " + common() + " --out '" + dir / "many.npy" + "'");
  if (before) ::setenv("OMP_NUM_THREADS", keep.c_str(), 1); else ::unsetenv("OMP_NUM_THREADS");
  ASSERT_EQ(r.status, 0) << r.out;
  r = testutil::run_cli("render " + common() + " --out '" + dir / "plain.npy" + "'");
  ASSERT_EQ(r.status, 0) << r.out;
  const std::string many = testutil::slurp(dir / "many.npy"), plain = testutil::slurp(dir / "plain.npy");
  ASSERT_EQ(many.size(), plain.size());
  int most = 0;
  for (size_t i = 0; i < many.size(); ++i)
    most = std::max(most, std::abs(static_cast<int>(static_cast<uint8_t>(many[i])) - static_cast<uint8_t>(plain[i])));
  EXPECT_LE(most, 1);
}

TEST(RenderCli, ErrorsLeaveNoFile) {
  testutil::TempDir dir;
  const std::string out = dir / "frames.npy";
  testutil::CliResult r = testutil::run_cli("render --stage1 '" + data("renderer/tiny_lia.ckpt") + "' --portrait '" + dir / "nobody.jpg" + "' --motion '" +
                 data("renderer/motions.npy") + "' --out '" + out + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.out, HasSubstr("anitalker render: "));
  EXPECT_THAT(r.out, HasSubstr("nobody.jpg: no such file"));
  EXPECT_FALSE(exists(out));
  // Motion codes of the wrong width.
  r = testutil::run_cli("render --stage1 '" + data("renderer/tiny_lia.ckpt") + "' --portrait '" + data("renderer/monalisa.jpg") + "' --motion '" +
          data("renderer/h_source.npy") + "' --out '" + out + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.out, HasSubstr("h_source.npy: motion codes have 24 dims"));
  EXPECT_FALSE(exists(out));
  // A motion code that is not finite: refused, naming the file and the
  // value, where the frames would have been garbage.
  {
    const anitalker::TensorData t = anitalker::read_npy(data("renderer/motions.npy"));
    const std::vector<double> v = t.to_doubles();
    std::vector<float> f(v.begin(), v.end());
    f[t.shape.back() + 3] = -INFINITY;  // frame 1, value 3
    anitalker::write_npy(dir / "inf.npy", anitalker::DType::Float32, t.shape, f.data());
    r = testutil::run_cli("render --stage1 '" + data("renderer/tiny_lia.ckpt") + "' --portrait '" +
                          data("renderer/monalisa.jpg") + "' --motion '" + dir / "inf.npy" + "' --out '" + out + "'");
    EXPECT_EQ(r.status, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("inf.npy: value [" + std::string(t.shape.size() == 3 ? "0, " : "") +
                                 "1, 3] is -inf; expected finite numbers"));
    EXPECT_FALSE(exists(out));
  }
  // Another model's checkpoint.
  r = testutil::run_cli("render --stage1 '" + data("face-sr/gfpgan_tiny.pth") + "' --portrait '" + data("renderer/monalisa.jpg") + "' --motion '" +
          data("renderer/motions.npy") + "' --out '" + out + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.out, HasSubstr("gfpgan_tiny.pth: missing tensor 'lia.dec.direction.weight'"));
  EXPECT_FALSE(exists(out));
  r = testutil::run_cli("render --stage1 x");
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.out, HasSubstr("missing --portrait"));
  // A precision the CPU cannot run: a usage error naming the device and
  // what it supports.
  r = testutil::run_cli("render " + common() + " --out '" + out + "' --precision fp16");
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.out, HasSubstr("--precision=fp16: needs a CUDA device; the renderer on cpu supports fp32"));
  EXPECT_FALSE(exists(out));
  // Before any input is read: a missing motion file is not what it names.
  r = testutil::run_cli("render --stage1 '" + data("renderer/tiny_lia.ckpt") + "' --portrait '" + data("renderer/monalisa.jpg") +
                        "' --motion '" + out + ".none.npy' --out '" + out + "' --precision fp16");
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.out, HasSubstr("--precision=fp16: needs a CUDA device"));
  r = testutil::run_cli("render " + common() + " --out '" + out + "' --precision fp8");
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.out, HasSubstr("--precision"));
}

// --precision bf16 on a CPU with AVX512_BF16: frames near float32's (the
// bounds are test_lia's); elsewhere refused.
TEST(RenderCli, Bf16) {
  testutil::TempDir dir;
  testutil::CliResult r = testutil::run_cli("render " + common() + " --out '" + dir / "f.npy" + "' --precision bf16");
  if (!anitalker::cpu_has_bf16()) {
    EXPECT_EQ(r.status, 2);
    EXPECT_THAT(r.out, HasSubstr("no AVX512_BF16"));
    return;
  }
  ASSERT_EQ(r.status, 0) << r.out;
  anitalker::TensorData f = anitalker::read_npy(dir / "f.npy");
  EXPECT_EQ(f.shape, (std::vector<int64_t>{3, 256, 256, 3}));
}
