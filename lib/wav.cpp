// RIFF/WAVE reader (spec audio-features.md section 0).
//
// The reference reads audio with librosa.load, i.e. libsndfile's float32
// conversion followed by np.mean over the channels.  The integer scalings below
// are libsndfile's (x / 2^(bits-1), unsigned 8-bit centred on 128); every one
// is an exact power-of-two scaling of a value float32 holds exactly (16/24 bit)
// or rounds once (32 bit), so the result is bit-identical to librosa's.
#include "wav.h"

#include <cstdint>
#include <cstdio>
#include <cstring>

#include "error.h"
#include "tensor_data.h"

namespace anitalker {

namespace {

constexpr uint16_t kFormatPcm = 0x0001;
constexpr uint16_t kFormatFloat = 0x0003;
constexpr uint16_t kFormatExtensible = 0xFFFE;

uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

std::string hex16(unsigned v) {
  char b[8];
  std::snprintf(b, sizeof b, "0x%04X", v & 0xFFFFu);
  return b;
}

// One sample of the given container size and encoding, as float32 the way
// libsndfile converts it.
float sample_at(const uint8_t* p, unsigned bytes, bool is_float) {
  if (is_float) {
    if (bytes == 4) {
      float f;
      std::memcpy(&f, p, 4);  // little-endian host (x86-64, aarch64)
      return f;
    }
    double d;
    std::memcpy(&d, p, 8);
    return static_cast<float>(d);
  }
  switch (bytes) {
    case 1: return static_cast<float>(static_cast<int>(p[0]) - 128) * (1.0f / 128.0f);
    case 2: return static_cast<float>(static_cast<int16_t>(le16(p))) * (1.0f / 32768.0f);
    case 3: {
      const int32_t v = static_cast<int32_t>(static_cast<uint32_t>(p[0]) << 8 | static_cast<uint32_t>(p[1]) << 16 |
                                             static_cast<uint32_t>(p[2]) << 24) >> 8;
      return static_cast<float>(v) * (1.0f / 8388608.0f);
    }
    default:
      // int32 -> float rounds once, then the power-of-two scale is exact.
      return static_cast<float>(static_cast<int32_t>(le32(p))) * (1.0f / 2147483648.0f);
  }
}

}  // namespace

Audio read_wav(const std::string& path, size_t max_samples) {
  const std::shared_ptr<const Storage> file = map_file(path);
  const uint8_t* d = file->data;
  const size_t n = file->nbytes;
  if (n < 12 || std::memcmp(d, "RIFF", 4) != 0 || std::memcmp(d + 8, "WAVE", 4) != 0) {
    if (n >= 4 && (std::memcmp(d, "RIFX", 4) == 0 || std::memcmp(d, "RF64", 4) == 0))
      throw format_error(path + ": unsupported WAV variant '" + std::string(reinterpret_cast<const char*>(d), 4) +
                         "'; expected a little-endian RIFF/WAVE file");
    throw format_error(path + ": not a WAV file (no RIFF/WAVE header)");
  }

  // Walk the chunks to the end of the file rather than to the RIFF size: some
  // writers leave that size at 0 or 0xFFFFFFFF when they stream.
  const uint8_t* fmt = nullptr;
  size_t fmt_size = 0;
  const uint8_t* data = nullptr;
  size_t data_size = 0;
  size_t pos = 12;
  while (pos + 8 <= n) {
    const uint8_t* id = d + pos;
    const uint32_t size = le32(d + pos + 4);
    const size_t body = pos + 8;
    const size_t avail = n - body;
    if (std::memcmp(id, "fmt ", 4) == 0) {
      if (size > avail) throw format_error(path + ": truncated fmt chunk");
      fmt = d + body;
      fmt_size = size;
    } else if (std::memcmp(id, "data", 4) == 0) {
      if (size == 0xFFFFFFFFu) {
        // Unknown length (a streaming writer): the data runs to the end.
        data_size = avail;
      } else if (size > avail) {
        throw format_error(path + ": truncated data chunk (" + std::to_string(size) + " bytes declared, " +
                           std::to_string(avail) + " present)");
      } else {
        data_size = size;
      }
      data = d + body;
      if (fmt) break;  // everything needed is known; ignore trailing chunks
    }
    // Chunks are padded to an even size; the pad byte is not in `size`.
    const uint64_t next = static_cast<uint64_t>(body) + size + (size & 1u);
    if (next > n) break;  // a trailing chunk cut short that we do not need
    pos = static_cast<size_t>(next);
  }
  if (!fmt) throw format_error(path + ": not a usable WAV file (no fmt chunk)");
  if (!data) throw format_error(path + ": not a usable WAV file (no data chunk)");
  if (fmt_size < 16) throw format_error(path + ": WAV fmt chunk too short (" + std::to_string(fmt_size) + " bytes, expected at least 16)");

  uint16_t format = le16(fmt);
  const unsigned channels = le16(fmt + 2);
  const uint32_t rate = le32(fmt + 4);
  const unsigned block_align = le16(fmt + 12);
  const unsigned bits = le16(fmt + 14);
  if (format == kFormatExtensible) {
    // WAVEFORMATEXTENSIBLE: the real format code is the first two bytes of the
    // SubFormat GUID {xxxxxxxx-0000-0010-8000-00aa00389b71}.
    static const uint8_t kGuidTail[14] = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
                                          0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};
    if (fmt_size < 40) throw format_error(path + ": WAVE_FORMAT_EXTENSIBLE fmt chunk too short (" + std::to_string(fmt_size) + " bytes, expected 40)");
    if (std::memcmp(fmt + 26, kGuidTail, sizeof kGuidTail) != 0)
      throw format_error(path + ": unsupported WAV encoding (WAVE_FORMAT_EXTENSIBLE with a non-standard SubFormat GUID); expected PCM or IEEE float");
    format = le16(fmt + 24);
  }
  if (format != kFormatPcm && format != kFormatFloat)
    throw format_error(path + ": unsupported WAV encoding (format " + hex16(format) + "); expected PCM or IEEE float");
  const bool is_float = format == kFormatFloat;
  if (channels == 0) throw format_error(path + ": WAV file has 0 channels");
  if (rate == 0 || rate > 0x7FFFFFFFu) throw format_error(path + ": WAV sample rate " + std::to_string(rate) + " is invalid");
  // The container size per sample comes from the block alignment; bits may be
  // smaller (e.g. 20 valid bits in 24), the value being left-justified, so
  // decoding by container size scales it right.
  if (block_align == 0 || block_align % channels != 0)
    throw format_error(path + ": WAV block alignment " + std::to_string(block_align) + " does not fit " +
                       std::to_string(channels) + " channels");
  const unsigned bytes = block_align / channels;
  const unsigned expect_bytes = (bits + 7) / 8;
  const bool ok = is_float ? (bytes == 4 || bytes == 8) && bits == bytes * 8 : bytes >= 1 && bytes <= 4 && bits >= 1 && expect_bytes == bytes;
  if (!ok)
    throw format_error(path + ": unsupported WAV sample size (" + std::to_string(bits) + " bits in " + std::to_string(bytes) +
                       " bytes, " + (is_float ? "IEEE float" : "PCM") +
                       "); expected PCM 8, 16, 24 or 32 bit or IEEE float 32 or 64 bit");

  Audio a;
  a.sample_rate = static_cast<int>(rate);
  a.channels = static_cast<int>(channels);
  const size_t frames = data_size / block_align;  // a partial last frame is dropped
  if (frames > max_samples) {
    char len[96];
    std::snprintf(len, sizeof len, "%zu samples (%.1f hours at %u Hz), %.1f GB as float32", frames,
                  static_cast<double>(frames) / rate / 3600, rate, static_cast<double>(frames) * 4 / 1e9);
    char free[64];
    std::snprintf(free, sizeof free, "%.1f GB", static_cast<double>(max_samples) * 4 / 1e9);
    throw Error(Error::Kind::Runtime, path + ": " + len + ", more than the memory free for it (" + free +
                                          "); cut the audio into parts");
  }
  a.samples.resize(frames);
  const float channels_f = static_cast<float>(channels);
  for (size_t f = 0; f < frames; ++f) {
    const uint8_t* p = data + f * block_align;
    float acc = sample_at(p, bytes, is_float);
    if (channels > 1) {
      // np.mean over the channel axis in float32: a running float sum, then a
      // division by the count.  For stereo this is (l + r) / 2.
      for (unsigned c = 1; c < channels; ++c) acc += sample_at(p + c * bytes, bytes, is_float);
      acc /= channels_f;
    }
    a.samples[f] = acc;
  }
  return a;
}

}  // namespace anitalker
