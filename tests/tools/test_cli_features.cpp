// `anitalker features`: HuBERT and MFCC outputs against the audio fixtures,
// the GStreamer conversion of a 44.1 kHz stereo file, and the errors.
#include <gmock/gmock.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "device.h"
#include "../lib/test_util.h"
#include "npy.h"

using testing::HasSubstr;
using testutil::data;

namespace {


void expect_close(const std::string& got_path, const std::string& ref_path, double atol, double rtol) {
  anitalker::TensorData g = anitalker::read_npy(got_path), r = anitalker::read_npy(ref_path);
  ASSERT_EQ(g.shape, r.shape) << ref_path;
  EXPECT_EQ(g.dtype, anitalker::DType::Float32);
  const auto a = g.to_doubles(), b = r.to_doubles();
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]) - (atol + rtol * std::fabs(b[i])));
  EXPECT_LE(worst, 0.0) << ref_path;
}

}  // namespace

TEST(FeaturesCli, HubertAndMfccMatchTheReference) {
  testutil::TempDir dir;
  const std::string wav = data("audio/speech_2s_16k.wav");
  testutil::CliResult r = testutil::run_cli("features --hubert '" + data("audio/tiny_hubert") + "' --audio '" + wav + "' --out '" + dir / "h.npy" + "'");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("103 HuBERT frames (+1 padding, 52 video frames)"));
  expect_close(dir / "h.npy", data("audio/ref/hubert_padded.npy"), 1e-4, 1e-4);
  r = testutil::run_cli("features --mfcc --audio '" + wav + "' --out '" + dir / "m.npy" + "'");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("207 MFCC frames (51 video frames)"));
  expect_close(dir / "m.npy", data("audio/ref/mfcc39.npy"), 1e-4, 0);
}

// Audio from a pipe (a FIFO another program writes, `--audio /dev/stdin`):
// read as it comes, the reference's MFCC.  Until 2026-12-07 a FIFO named
// *.wav was refused as "not a regular file".
TEST(FeaturesCli, AudioFromAPipe) {
  testutil::TempDir dir;
  const std::string fifo = dir / "speech.wav";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  testutil::CliResult r = testutil::run_cli("features --mfcc --audio '" + fifo + "' --out '" + dir / "m.npy" +
                                            "' 2>&1 & cat '" + data("audio/speech_2s_16k.wav") + "' > '" + fifo +
                                            "'; wait $!");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("speech.wav: read from a pipe"));
  EXPECT_THAT(r.out, HasSubstr("207 MFCC frames (51 video frames)"));
  expect_close(dir / "m.npy", data("audio/ref/mfcc39.npy"), 1e-4, 0);
}

// --stream: hubertenc's windowing (lib/feature_stream.h).  MFCC streams
// exactly; HuBERT with a window longer than the clip is the offline run; in
// 200 ms windows (1 s context, 100 ms look-ahead) every frame comes once.
TEST(FeaturesCli, Stream) {
  testutil::TempDir dir;
  const std::string wav = data("audio/speech_2s_16k.wav");
  testutil::CliResult r =
      testutil::run_cli("features --mfcc --stream 200 --audio '" + wav + "' --out '" + dir / "m.npy" + "'");
  ASSERT_EQ(r.status, 0) << r.out;
  expect_close(dir / "m.npy", data("audio/ref/mfcc39.npy"), 1e-4, 0);
  r = testutil::run_cli("features --hubert '" + data("audio/tiny_hubert") + "' --stream 5000 --audio '" + wav +
                        "' --out '" + dir / "h.npy" + "'");
  ASSERT_EQ(r.status, 0) << r.out;
  expect_close(dir / "h.npy", data("audio/ref/hubert_padded.npy"), 1e-4, 1e-4);
  r = testutil::run_cli("features --hubert '" + data("audio/tiny_hubert") + "' --stream 200,1000,100 --audio '" + wav +
                        "' --out '" + dir / "w.npy" + "'");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(anitalker::read_npy(dir / "w.npy").shape, anitalker::read_npy(data("audio/ref/hubert_padded.npy")).shape);
  // --context-cache: the same frames, other values (the context is not encoded again).
  r = testutil::run_cli("features --hubert '" + data("audio/tiny_hubert") + "' --stream 200,1000,100 --context-cache "
                        "--audio '" + wav + "' --out '" + dir / "c.npy" + "'");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("context 1000 ms cached"));
  const anitalker::TensorData plain = anitalker::read_npy(dir / "w.npy"), cached = anitalker::read_npy(dir / "c.npy");
  ASSERT_EQ(plain.shape, cached.shape);
  const std::vector<double> p = plain.to_doubles(), c = cached.to_doubles();
  double most = 0;
  for (size_t i = 0; i < p.size(); i++) most = std::max(most, std::fabs(p[i] - c[i]));
  EXPECT_GT(most, 1e-3);
  r = testutil::run_cli("features --mfcc --stream 200 --context-cache --audio '" + wav + "' --out '" + dir / "x.npy" + "'");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("--context-cache goes with --stream and --hubert"));
  r = testutil::run_cli("features --mfcc --stream 100,0,200 --audio '" + wav + "' --out '" + dir / "x.npy" + "'");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("L from 0 to W"));
}

TEST(FeaturesCli, OtherRatesGoThroughGStreamer) {
  testutil::TempDir dir;
  testutil::CliResult r = testutil::run_cli("features --mfcc --audio '" + data("audio/speech_2s_44k1_stereo.wav") + "' --out '" + dir / "m.npy" + "'");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("converted to 16 kHz mono with GStreamer"));
  // 91880 samples at 44.1 kHz are 33333 at 16 kHz: 1 + ceil((33333 - 400) / 160) = 207 frames.
  anitalker::TensorData m = anitalker::read_npy(dir / "m.npy");
  EXPECT_EQ(m.shape, (std::vector<int64_t>{207, 39}));
}

// A mono IEEE float32 WAV.
static void write_float_wav(const std::string& path, int rate, const std::vector<float>& v) {
  auto u32 = [](uint32_t x) { return std::string(reinterpret_cast<const char*>(&x), 4); };
  auto u16 = [](uint16_t x) { return std::string(reinterpret_cast<const char*>(&x), 2); };
  const uint32_t bytes = static_cast<uint32_t>(v.size() * 4);
  std::string w = "RIFF" + u32(36 + bytes) + "WAVEfmt " + u32(16) + u16(3) + u16(1) + u32(rate) + u32(rate * 4) +
                  u16(4) + u16(32) + "data" + u32(bytes);
  w.append(reinterpret_cast<const char*>(v.data()), bytes);
  testutil::spit(path, w);
}

// Offline HuBERT over more than --offline-limit seconds (default 120, as
// hubertenc's) is refused before the work, naming the length and what to do
// (its attention spans the clip: full size, 120 s took 4.5 GB, 10 minutes
// of the test model 4.5 GB); MFCC and --stream are not limited.  Here the
// 2.08 s clip against a limit of 1 s.
TEST(FeaturesCli, OfflineLimit) {
  testutil::TempDir dir;
  const std::string wav = data("audio/speech_2s_16k.wav"), out = dir / "f.npy";
  const std::string hubert = "features --hubert '" + data("audio/tiny_hubert") + "' --audio '" + wav + "' --out '" + out + "'";
  testutil::CliResult r = testutil::run_cli(hubert + " --offline-limit 1");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("speech_2s_16k.wav: 2.1 s of audio, more than --offline-limit 1 s: offline HuBERT attends "
                               "over the whole clip"));
  EXPECT_THAT(r.out, HasSubstr("give --stream 2000"));
  struct stat st;
  EXPECT_NE(::stat(out.c_str(), &st), 0);
  r = testutil::run_cli(hubert + " --offline-limit 1 --stream 2000");
  EXPECT_EQ(r.status, 0) << r.out;
  r = testutil::run_cli("features --mfcc --audio '" + wav + "' --out '" + out + "' --offline-limit 1");
  EXPECT_EQ(r.status, 0) << r.out;
  r = testutil::run_cli(hubert + " --offline-limit 0");
  EXPECT_EQ(r.status, 0) << r.out;
  r = testutil::run_cli(hubert);  // the default, 120 s
  EXPECT_EQ(r.status, 0) << r.out;
}

TEST(FeaturesCli, Errors) {
  testutil::TempDir dir;
  const std::string out = dir / "f.npy";
  testutil::CliResult r = testutil::run_cli("features --mfcc --audio '" + dir / "none.wav" + "' --out '" + out + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.out, HasSubstr("none.wav: no such file"));
  r = testutil::run_cli("features --hubert '" + dir / "nomodel" + "' --audio '" + data("audio/speech_2s_16k.wav") + "' --out '" + out + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.out, HasSubstr("nomodel: no such folder"));
  testutil::spit(dir / "noise.wav", "definitely not audio at all");
  r = testutil::run_cli("features --mfcc --audio '" + dir / "noise.wav" + "' --out '" + out + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.out, HasSubstr("noise.wav: cannot decode the audio"));
  struct stat st;
  EXPECT_NE(::stat(out.c_str(), &st), 0);
  // A sample that is not finite: refused, naming the file and where, as
  // hubertenc refuses it (every feature would be NaN), on the WAV path (16
  // kHz float) and through GStreamer (8 kHz float).
  for (int rate : {16000, 8000}) {
    std::vector<float> wave(static_cast<size_t>(rate), 0.1f);
    wave[static_cast<size_t>(rate) / 2] = rate == 16000 ? INFINITY : NAN;
    const std::string path = dir / ("bad" + std::to_string(rate) + ".wav");
    write_float_wav(path, rate, wave);
    r = testutil::run_cli("features --mfcc --audio '" + path + "' --out '" + out + "' 2>&1");
    EXPECT_EQ(r.status, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr(path + ": sample "));
    // Resampled, the filter carries the NaN a few ms earlier.
    EXPECT_THAT(r.out, HasSubstr(rate == 16000 ? "sample 8000 (at 0.500 s" : "(at 0.4"));
    EXPECT_THAT(r.out, HasSubstr("holds NaN or inf"));
    EXPECT_NE(::stat(out.c_str(), &st), 0);
  }
  // --stream takes hubertenc's ranges (context at most 30000 ms), whole
  // numbers only.
  for (const char* bad : {"20,100000,0", "2000ms", "20,,", "20,1000,40,5"}) {
    r = testutil::run_cli("features --mfcc --audio '" + data("audio/speech_2s_16k.wav") + "' --out '" + out +
                          "' --stream '" + bad + "' 2>&1");
    EXPECT_EQ(r.status, 2) << bad << ": " << r.out;
    EXPECT_THAT(r.out, HasSubstr("C from 0 to 30000")) << bad;
  }
  // Audio shorter than HuBERT's first frame (399 samples, 1): the file's
  // fault, exit 1 naming it, offline as streaming (offline was exit 2, a
  // usage error, from the library's check of its caller's tensor).
  for (size_t n : {size_t{1}, size_t{399}}) {
    const std::string path = dir / ("short" + std::to_string(n) + ".wav");
    write_float_wav(path, 16000, std::vector<float>(n, 0.1f));
    for (const char* stream : {"", " --stream 200"}) {
      r = testutil::run_cli("features --hubert '" + data("audio/tiny_hubert") + "' --audio '" + path + "' --out '" +
                            out + "'" + stream + " 2>&1");
      EXPECT_EQ(r.status, 1) << n << stream << ": " << r.out;
      EXPECT_THAT(r.out, HasSubstr(path + ": too short for one HuBERT frame")) << stream;
      EXPECT_NE(::stat(out.c_str(), &st), 0);
    }
  }
  r = testutil::run_cli("features --mfcc --hubert x --audio a --out b");
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.out, HasSubstr("give exactly one of --hubert DIR and --mfcc"));
}

// --precision: bf16 (a CPU with AVX512_BF16) holds HuBERT's states to the
// reference by the library test's bound (relative to each state's largest
// value) and is not the float32 run; fp16 on the CPU and bf16 without
// AVX512_BF16 are refused before any work, naming the option and the
// device; MFCC takes a note and stays exact.
TEST(FeaturesCli, Precision) {
  testutil::TempDir dir;
  const std::string wav = data("audio/speech_2s_16k.wav");
  const std::string hubert = "features --hubert '" + data("audio/tiny_hubert") + "' --audio '" + wav + "' --out ";
  testutil::CliResult r = testutil::run_cli(hubert + "'" + dir / "x.npy" + "' --precision fp16");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("--precision=fp16: needs a CUDA device; HuBERT on cpu supports fp32"));
  struct stat st;
  EXPECT_NE(::stat((dir / "x.npy").c_str(), &st), 0);
  r = testutil::run_cli("features --mfcc --precision bf16 --audio '" + wav + "' --out '" + dir / "m.npy" + "'");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("--precision bf16 is for HuBERT; MFCC is computed exactly"));
  expect_close(dir / "m.npy", data("audio/ref/mfcc39.npy"), 1e-4, 0);

  r = testutil::run_cli(hubert + "'" + dir / "b.npy" + "' --precision bf16");
  if (!anitalker::cpu_has_bf16()) {
    EXPECT_EQ(r.status, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("--precision=bf16: this CPU has no AVX512_BF16"));
    GTEST_SKIP() << "this CPU has no AVX512_BF16";
  }
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("states of 64, bf16, to"));
  const anitalker::TensorData got = anitalker::read_npy(dir / "b.npy");
  const anitalker::TensorData want = anitalker::read_npy(data("audio/ref/hubert_padded.npy"));
  ASSERT_EQ(got.shape, want.shape);
  const std::vector<double> g = got.to_doubles(), w = want.to_doubles();
  const size_t per_state = g.size() / static_cast<size_t>(got.shape[0]);
  double worst = 0, any = 0;
  for (size_t s = 0; s < static_cast<size_t>(got.shape[0]); s++) {
    double diff = 0, top = 0;
    for (size_t i = s * per_state; i < (s + 1) * per_state; i++) {
      diff = std::max(diff, std::fabs(g[i] - w[i]));
      top = std::max(top, std::fabs(w[i]));
    }
    worst = std::max(worst, diff / top);
    any = std::max(any, diff);
  }
  std::printf("bf16 states: max |diff| / max |reference| %.3g\n", worst);
  EXPECT_LE(worst, 0.012);  // the library test's bound (tests/lib/test_hubert.cpp)
  EXPECT_GT(any, 1e-5);     // not the float32 run (which is within 1e-4 + 1e-4 |x|)
}

// A WAV whose data chunk runs "to the end" (size 0xFFFFFFFF, as streaming
// writers leave it) of a sparse 8 GiB file, 8-bit: 34 GB of float32
// samples.  Refused before they are allocated, naming the length and the
// memory free (found 2026-12-07: std::bad_alloc, or below the machine's
// size the system's OOM killer).
TEST(FeaturesCli, AudioLargerThanMemory) {
  testutil::TempDir dir;
  const std::string wav = dir / "huge.wav";
  std::string head = "RIFF\xff\xff\xff\xffWAVEfmt ";
  const unsigned char fmt[] = {16, 0, 0, 0, 1, 0, 1, 0, 0x80, 0x3e, 0, 0, 0x80, 0x3e, 0, 0, 1, 0, 8, 0};
  head.append(reinterpret_cast<const char*>(fmt), sizeof fmt);
  head += "data\xff\xff\xff\xff";
  testutil::spit(wav, head);
  // 8 GiB, or half the memory free where that is more: its float32 samples
  // (4 bytes for each byte) are then more than the memory free.
  long long avail_kb = -1;
  {
    std::ifstream m("/proc/meminfo");
    for (std::string line; std::getline(m, line);)
      if (line.rfind("MemAvailable:", 0) == 0) avail_kb = std::atoll(line.c_str() + 13);
  }
  ASSERT_GT(avail_kb, 0) << "/proc/meminfo gives no MemAvailable";
  const long long size = std::max(8LL << 30, avail_kb * 1024 / 2);
  ASSERT_EQ(::truncate(wav.c_str(), static_cast<off_t>(size)), 0) << std::strerror(errno);
  const testutil::CliResult r = testutil::run_cli("features --mfcc --audio '" + wav + "' --out '" + dir / "f.npy" + "'");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_THAT(r.out, testing::Not(HasSubstr("bad_alloc")));
  // A machine whose memory and swap are under the file's size cannot map
  // it: also said, naming it.
  if (r.out.find("cannot map") == std::string::npos) {
    const long long samples = size - 44;  // 8-bit mono: a byte a sample after the 44-byte header
    char want[160];
    std::snprintf(want, sizeof want, "huge.wav: %lld samples (%.1f hours at 16000 Hz), %.1f GB as float32, more than ",
                  samples, samples / 16000.0 / 3600, samples * 4 / 1e9);
    EXPECT_THAT(r.out, HasSubstr(std::string(want) + "the memory free for it ("));
  } else {
    EXPECT_THAT(r.out, HasSubstr("huge.wav: cannot map"));
  }
  struct stat st;
  EXPECT_NE(::stat((dir / "f.npy").c_str(), &st), 0);
}
