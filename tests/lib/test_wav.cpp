// The WAV reader: librosa-identical float32 samples, the mono mixdown, the
// encodings and chunk layouts it accepts, and its errors.
#include "wav.h"

#include <gmock/gmock.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "error.h"
#include "npy.h"
#include "test_util.h"

using testing::HasSubstr;
using testutil::data;
using testutil::error_of;

namespace {

std::string u16(uint16_t v) { return std::string{static_cast<char>(v & 0xFF), static_cast<char>(v >> 8)}; }
std::string u32(uint32_t v) { return u16(static_cast<uint16_t>(v & 0xFFFF)) + u16(static_cast<uint16_t>(v >> 16)); }

// A chunk with its pad byte when the size is odd.
std::string chunk(const std::string& id, const std::string& body) {
  std::string c = id + u32(static_cast<uint32_t>(body.size())) + body;
  if (body.size() % 2) c += '\0';
  return c;
}

std::string riff(const std::string& chunks) { return "RIFF" + u32(static_cast<uint32_t>(4 + chunks.size())) + "WAVE" + chunks; }

std::string fmt_body(uint16_t format, uint16_t channels, uint32_t rate, uint16_t bits) {
  const uint16_t align = static_cast<uint16_t>(channels * ((bits + 7) / 8));
  return u16(format) + u16(channels) + u32(rate) + u32(rate * align) + u16(align) + u16(bits);
}

// WAVE_FORMAT_EXTENSIBLE with the standard SubFormat GUID for `sub`.
std::string fmt_extensible(uint16_t sub, uint16_t channels, uint32_t rate, uint16_t bits) {
  std::string f = fmt_body(0xFFFE, channels, rate, bits) + u16(22) + u16(bits) + u32(3);
  f += u16(sub) + std::string("\x00\x00\x00\x00\x10\x00\x80\x00\x00\xAA\x00\x38\x9B\x71", 14);
  return f;
}

int16_t raw16(const std::string& bytes, size_t at) {
  int16_t v;
  std::memcpy(&v, bytes.data() + at, 2);
  return v;
}

}  // namespace

TEST(Wav, Mono16kIsBitIdenticalToLibrosa) {
  anitalker::Audio a = anitalker::read_wav(data("audio/speech_2s_16k.wav"));
  EXPECT_EQ(a.sample_rate, 16000);
  EXPECT_EQ(a.channels, 1);
  ASSERT_EQ(a.samples.size(), 33337u);
  anitalker::TensorData ref = anitalker::read_npy(data("audio/ref/input_f32.npy"));
  ASSERT_EQ(ref.dtype, anitalker::DType::Float32);
  ASSERT_EQ(ref.shape, (std::vector<int64_t>{33337}));
  EXPECT_EQ(std::memcmp(a.samples.data(), ref.data(), 33337 * sizeof(float)), 0);
}

TEST(Wav, StereoIsMixedByTheMean) {
  const std::string path = data("audio/speech_2s_44k1_stereo.wav");
  anitalker::Audio a = anitalker::read_wav(path);
  EXPECT_EQ(a.sample_rate, 44100);
  EXPECT_EQ(a.channels, 2);
  ASSERT_EQ(a.samples.size(), 91880u);
  const std::string raw = testutil::slurp(path);
  const size_t d = raw.find("data");
  ASSERT_NE(d, std::string::npos);
  const size_t base = d + 8;
  // The loudest sample and a few others; right = 0.5 x left, so the mix is
  // 0.75 x left up to the rounding of the stored right channel.
  size_t loudest = 0;
  for (size_t i = 0; i < 91880; ++i)
    if (std::abs(raw16(raw, base + 4 * i)) > std::abs(raw16(raw, base + 4 * loudest))) loudest = i;
  ASSERT_GT(std::abs(raw16(raw, base + 4 * loudest)), 1000);
  int nonzero = 0;
  for (size_t i : {loudest, size_t{0}, size_t{20000}, size_t{45000}, size_t{45001}, size_t{60000}, size_t{91879}}) {
    const int16_t l = raw16(raw, base + 4 * i), r = raw16(raw, base + 4 * i + 2);
    EXPECT_LE(std::abs(2 * r - l), 1) << i;
    const float expect = (static_cast<float>(l) / 32768.0f + static_cast<float>(r) / 32768.0f) / 2.0f;
    EXPECT_EQ(a.samples[i], expect) << i;
    EXPECT_NEAR(a.samples[i], 0.75f * static_cast<float>(l) / 32768.0f, 0.5f / 32768.0f) << i;
    nonzero += l != 0;
  }
  EXPECT_GE(nonzero, 3);
}

TEST(Wav, EncodingsAndChunkLayouts) {
  testutil::TempDir dir;
  // Two frames of two channels: (0.5, -0.25), (-1, 0.75) in each encoding.
  const std::vector<float> mix = {0.125f, -0.125f};
  struct Case {
    const char* name;
    std::string fmt;
    std::string samples;
  };
  const std::string pcm8 = std::string{char(128 + 64), char(128 - 32), char(0), char(128 + 96)};
  const std::string pcm16 = u16(0x4000) + u16(0xE000) + u16(0x8000) + u16(0x6000);
  const std::string pcm24 = std::string("\x00\x00\x40\x00\x00\xE0\x00\x00\x80\x00\x00\x60", 12);
  const std::string pcm32 = u32(0x40000000u) + u32(0xE0000000u) + u32(0x80000000u) + u32(0x60000000u);
  std::string f32, f64;
  for (float v : {0.5f, -0.25f, -1.0f, 0.75f}) {
    f32.append(reinterpret_cast<const char*>(&v), 4);
    const double dv = v;
    f64.append(reinterpret_cast<const char*>(&dv), 8);
  }
  const std::vector<Case> cases = {
      {"pcm8", fmt_body(1, 2, 8000, 8), pcm8},
      {"pcm16", fmt_body(1, 2, 8000, 16), pcm16},
      {"pcm24", fmt_body(1, 2, 8000, 24), pcm24},
      {"pcm32", fmt_body(1, 2, 8000, 32), pcm32},
      {"float32", fmt_body(3, 2, 8000, 32) + u16(0), f32},
      {"float64", fmt_body(3, 2, 8000, 64) + u16(0), f64},
      {"ext_pcm24", fmt_extensible(1, 2, 8000, 24), pcm24},
      {"ext_float32", fmt_extensible(3, 2, 8000, 32), f32},
  };
  for (const Case& c : cases) {
    // An odd-sized LIST chunk (with its pad byte) before fmt, an odd-sized
    // unknown chunk between fmt and data, and a trailing chunk after data.
    const std::string file = riff(chunk("LIST", "INFOISFT" + u32(5) + std::string("Lavf\0", 5)) + chunk("fmt ", c.fmt) +
                                  chunk("junk", "abc") + chunk("data", c.samples) + chunk("id3 ", "tag"));
    testutil::spit(dir / (std::string(c.name) + ".wav"), file);
    anitalker::Audio a = anitalker::read_wav(dir / (std::string(c.name) + ".wav"));
    EXPECT_EQ(a.sample_rate, 8000) << c.name;
    EXPECT_EQ(a.channels, 2) << c.name;
    EXPECT_EQ(a.samples, mix) << c.name;
  }
  // Mono 16 bit: exactly int16 / 32768, and a trailing partial frame is dropped.
  testutil::spit(dir / "mono.wav", riff(chunk("fmt ", fmt_body(1, 1, 22050, 16)) + chunk("data", u16(1) + u16(0x7FFF) + "\x01")));
  anitalker::Audio m = anitalker::read_wav(dir / "mono.wav");
  EXPECT_EQ(m.sample_rate, 22050);
  EXPECT_EQ(m.samples, (std::vector<float>{1.0f / 32768.0f, 32767.0f / 32768.0f}));
  // Three channels: the mean, summed in float then divided by 3.
  testutil::spit(dir / "three.wav", riff(chunk("fmt ", fmt_body(1, 3, 16000, 16)) + chunk("data", u16(0x4000) + u16(0x2000) + u16(0x1000))));
  EXPECT_EQ(anitalker::read_wav(dir / "three.wav").samples, (std::vector<float>{(0.5f + 0.25f + 0.125f) / 3.0f}));
  // A data chunk of unknown size (0xFFFFFFFF, streaming writers) runs to the end.
  testutil::spit(dir / "stream.wav", riff(chunk("fmt ", fmt_body(1, 1, 16000, 16))) + "data" + u32(0xFFFFFFFFu) + u16(0x4000) + u16(0xC000));
  EXPECT_EQ(anitalker::read_wav(dir / "stream.wav").samples, (std::vector<float>{0.5f, -0.5f}));
}

TEST(Wav, BadFiles) {
  testutil::TempDir dir;
  auto kind_of = [](const std::string& path) {
    try {
      anitalker::read_wav(path);
    } catch (const anitalker::Error& e) {
      return e.kind();
    }
    ADD_FAILURE() << "expected an error";
    return anitalker::Error::Kind::Runtime;
  };
  EXPECT_THAT(error_of([&] { anitalker::read_wav(dir / "none.wav"); }), HasSubstr("none.wav: no such file"));
  EXPECT_EQ(kind_of(dir / "none.wav"), anitalker::Error::Kind::NotFound);

  testutil::spit(dir / "text.wav", "this is not audio at all");
  EXPECT_THAT(error_of([&] { anitalker::read_wav(dir / "text.wav"); }), HasSubstr("text.wav: not a WAV file (no RIFF/WAVE header)"));
  EXPECT_EQ(kind_of(dir / "text.wav"), anitalker::Error::Kind::Format);
  testutil::spit(dir / "empty.wav", "");
  EXPECT_THAT(error_of([&] { anitalker::read_wav(dir / "empty.wav"); }), HasSubstr("empty.wav: not a WAV file (no RIFF/WAVE header)"));

  const std::string fmt = chunk("fmt ", fmt_body(1, 1, 16000, 16));
  testutil::spit(dir / "trunc.wav", riff(fmt) + "data" + u32(1000) + std::string(10, '\0'));
  EXPECT_THAT(error_of([&] { anitalker::read_wav(dir / "trunc.wav"); }),
              HasSubstr("trunc.wav: truncated data chunk (1000 bytes declared, 10 present)"));
  EXPECT_EQ(kind_of(dir / "trunc.wav"), anitalker::Error::Kind::Format);

  testutil::spit(dir / "mp3.wav", riff(chunk("fmt ", fmt_body(0x55, 1, 16000, 0) + u16(0)) + chunk("data", "abcd")));
  EXPECT_THAT(error_of([&] { anitalker::read_wav(dir / "mp3.wav"); }),
              HasSubstr("mp3.wav: unsupported WAV encoding (format 0x0055); expected PCM or IEEE float"));
  testutil::spit(dir / "alaw.wav", riff(chunk("fmt ", fmt_extensible(6, 1, 8000, 8)) + chunk("data", "ab")));
  EXPECT_THAT(error_of([&] { anitalker::read_wav(dir / "alaw.wav"); }),
              HasSubstr("alaw.wav: unsupported WAV encoding (format 0x0006); expected PCM or IEEE float"));

  testutil::spit(dir / "nodata.wav", riff(fmt));
  EXPECT_THAT(error_of([&] { anitalker::read_wav(dir / "nodata.wav"); }), HasSubstr("nodata.wav: not a usable WAV file (no data chunk)"));
  testutil::spit(dir / "nofmt.wav", riff(chunk("data", "abcd")));
  EXPECT_THAT(error_of([&] { anitalker::read_wav(dir / "nofmt.wav"); }), HasSubstr("nofmt.wav: not a usable WAV file (no fmt chunk)"));
  testutil::spit(dir / "f16.wav", riff(chunk("fmt ", fmt_body(3, 1, 16000, 16)) + chunk("data", "abcd")));
  EXPECT_THAT(error_of([&] { anitalker::read_wav(dir / "f16.wav"); }),
              HasSubstr("f16.wav: unsupported WAV sample size (16 bits in 2 bytes, IEEE float)"));
  testutil::spit(dir / "zero.wav", riff(chunk("fmt ", fmt_body(1, 0, 16000, 16)) + chunk("data", "abcd")));
  EXPECT_THAT(error_of([&] { anitalker::read_wav(dir / "zero.wav"); }), HasSubstr("zero.wav: WAV file has 0 channels"));
}
