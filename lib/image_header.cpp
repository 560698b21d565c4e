#include "image_header.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <vector>

#include "error.h"
#include "tensor_data.h"

namespace anitalker {

namespace {

uint32_t be32(const unsigned char* p) { return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3]; }
uint32_t be16(const unsigned char* p) { return (uint32_t(p[0]) << 8) | p[1]; }
uint32_t le16(const unsigned char* p) { return uint32_t(p[0]) | (uint32_t(p[1]) << 8); }
uint32_t le24(const unsigned char* p) { return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16); }
uint32_t le32(const unsigned char* p) { return le24(p) | (uint32_t(p[3]) << 24); }

// The orientation tag (0x0112, a SHORT from 1 to 8) in the first IFD of an
// APP1 segment's data `p` (n bytes: "Exif\0\0", then a TIFF structure in
// either byte order); 0 when there is none or it cannot be read.  Every
// offset is checked against the segment.
int exif_orientation(const unsigned char* p, size_t n) {
  if (n < 14 || std::memcmp(p, "Exif\0\0", 6) != 0) return 0;
  const unsigned char* t = p + 6;
  const size_t tn = n - 6;
  bool little;
  if (t[0] == 'I' && t[1] == 'I')
    little = true;
  else if (t[0] == 'M' && t[1] == 'M')
    little = false;
  else
    return 0;
  auto u16 = [&](uint64_t o) { return little ? le16(t + o) : be16(t + o); };
  auto u32 = [&](uint64_t o) { return little ? le32(t + o) : be32(t + o); };
  if (u16(2) != 42) return 0;
  const uint64_t ifd = u32(4);
  if (ifd + 2 > tn) return 0;
  const uint32_t count = u16(ifd);
  for (uint32_t k = 0; k < count; ++k) {
    const uint64_t e = ifd + 2 + 12ull * k;
    if (e + 12 > tn) return 0;
    if (u16(e) == 0x0112 && u16(e + 2) == 3) {
      const uint32_t v = u16(e + 8);
      return v >= 1 && v <= 8 ? static_cast<int>(v) : 0;
    }
  }
  return 0;
}

// A file's bytes read a window at a time: a header scan holds at most
// kWindow bytes however large the file is (a 30 GB file that opens like a
// JPEG was read whole before: 8.6 GB resident for an 8 GB one).
class Window {
 public:
  static constexpr size_t kWindow = size_t(1) << 20;  // more than a JPEG segment (64 KiB)

  Window(const std::string& path, uint64_t size) : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK)), size_(size) {}
  ~Window() {
    if (fd_ >= 0) ::close(fd_);
  }
  Window(const Window&) = delete;
  Window& operator=(const Window&) = delete;

  // Bytes [at, at + n) (n <= kWindow), or nullptr when the file ends first.
  const unsigned char* get(uint64_t at, size_t n) {
    if (at > size_ || n > size_ - at) return nullptr;
    if (at < base_ || at + n > base_ + got_) load(at);
    return at + n <= base_ + got_ ? buf_.data() + (at - base_) : nullptr;  // nullptr: the file shrank
  }

  // The bytes from *at to the end of the window holding them (a new window
  // when fewer than 2 are left in this one); *n of them, 0 at the end.  A
  // new window starts at the file's next data: *at moves past a hole of a
  // sparse file (zeros, with no marker in them).
  const unsigned char* data_span(uint64_t* at, size_t* n) {
    *n = 0;
    if (*at >= size_) return nullptr;
    if (*at < base_ || *at + 2 > base_ + got_) {
      const off_t data = fd_ >= 0 ? ::lseek(fd_, static_cast<off_t>(*at), SEEK_DATA) : -1;
      if (data < 0 && errno == ENXIO) return nullptr;  // nothing but a hole to the end
      if (data > static_cast<off_t>(*at)) *at = static_cast<uint64_t>(data);
      if (*at >= size_) return nullptr;
      load(*at);
    }
    if (*at >= base_ + got_) return nullptr;
    *n = static_cast<size_t>(base_ + got_ - *at);
    return buf_.data() + (*at - base_);
  }

 private:
  void load(uint64_t at) {
    buf_.resize(static_cast<size_t>(std::min<uint64_t>(kWindow, size_ - at)));
    base_ = at;
    got_ = 0;
    while (fd_ >= 0 && got_ < buf_.size()) {
      const ssize_t r = ::pread(fd_, buf_.data() + got_, buf_.size() - got_, static_cast<off_t>(at + got_));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      got_ += static_cast<uint64_t>(r);
    }
  }

  int fd_;
  uint64_t size_;
  std::vector<unsigned char> buf_;
  uint64_t base_ = 0, got_ = 0;
};

// JPEG: the SOF marker's size, and whether an EOI marker follows the first
// SOS (entropy-coded data stuffs every 0xFF with 0x00, so FF D9 there is the
// end marker).
void jpeg(Window& w, ImageHeader* h) {
  uint64_t i = 2;
  while (const unsigned char* p = w.get(i, 4)) {
    if (p[0] != 0xFF) return;  // not a marker where one must be: leave it to the decoder
    const unsigned char m = p[1];
    if (m == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {
      i += 2;
      continue;
    }
    const size_t len = be16(p + 2);
    if (len < 2) return;
    const bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
    if (sof)
      if (const unsigned char* s = w.get(i, 9)) {
        h->height = be16(s + 5);
        h->width = be16(s + 7);
      }
    if (m == 0xE1 && h->orientation == 0 && len > 2)
      if (const unsigned char* s = w.get(i + 4, len - 2)) h->orientation = exif_orientation(s, len - 2);
    if (m == 0xDA) {  // start of scan: look for the end marker after it, a window at a time
      size_t n = 0;
      uint64_t k = i + 2 + len;
      while (const unsigned char* s = w.data_span(&k, &n)) {
        if (n < 2) break;
        const void* ff = std::memchr(s, 0xFF, n - 1);  // an FF with its next byte in this window
        if (!ff) {
          k += n - 1;
          continue;
        }
        const unsigned char* at = static_cast<const unsigned char*>(ff);
        if (at[1] == 0xD9) return;
        k += static_cast<uint64_t>(at - s) + 1;
      }
      h->truncated = true;
      return;
    }
    i += 2 + len;
  }
  h->truncated = true;  // the file ends inside the headers
}

}  // namespace

ImageHeader read_image_header(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw Error(Error::Kind::NotFound, path + ": no such file");
  if (S_ISDIR(st.st_mode)) throw Error(Error::Kind::Unreadable, path + ": is a folder, expected an image file");
  // A pipe or a device: the open below would wait for a writer (`anitalker
  // sr --in FIFO` hung, found 2026-12-07) or read for ever.
  if (!S_ISREG(st.st_mode))
    throw Error(Error::Kind::Unreadable, path + ": not a regular file (" + file_kind(st.st_mode) + ")");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(Error::Kind::Unreadable, path + ": cannot open: " + std::strerror(errno));
  ImageHeader h;
  unsigned char head[32] = {0};
  f.read(reinterpret_cast<char*>(head), sizeof head);
  const size_t n = static_cast<size_t>(f.gcount());
  if (n >= 24 && std::memcmp(head, "\x89PNG\r\n\x1a\n", 8) == 0) {
    h.format = "png";
    if (std::memcmp(head + 12, "IHDR", 4) == 0) {
      h.width = be32(head + 16);
      h.height = be32(head + 20);
      h.alpha = n >= 26 && (head[25] == 4 || head[25] == 6);  // colour type: grey + alpha, RGBA
    }
    // Else transparency by a tRNS chunk (a palette's, or one grey or RGB
    // colour's), which comes before the first IDAT: the chunks' heads read
    // in turn, at most 64 of them.
    std::streamoff at = 8;
    for (int i = 0; i < 64 && !h.alpha && at + 8 <= st.st_size; ++i) {
      unsigned char ch[8];
      f.clear();
      f.seekg(at);
      if (!f.read(reinterpret_cast<char*>(ch), 8)) break;
      if (std::memcmp(ch + 4, "IDAT", 4) == 0 || std::memcmp(ch + 4, "IEND", 4) == 0) break;
      h.alpha = std::memcmp(ch + 4, "tRNS", 4) == 0;
      at += 12 + static_cast<std::streamoff>(be32(ch));
    }
    // The last chunk is IEND (some writers add bytes after it: look in the
    // last 4 KiB).
    const std::streamoff tail_size = st.st_size < 4096 ? st.st_size : 4096;
    std::string tail(static_cast<size_t>(tail_size), '\0');
    f.clear();
    f.seekg(st.st_size - tail_size);
    f.read(&tail[0], tail_size);
    h.truncated = !f || tail.find("IEND") == std::string::npos;
  } else if (n >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF) {
    h.format = "jpeg";
    Window w(path, static_cast<uint64_t>(st.st_size));
    jpeg(w, &h);
  } else if (n >= 10 && (std::memcmp(head, "GIF87a", 6) == 0 || std::memcmp(head, "GIF89a", 6) == 0)) {
    h.format = "gif";
    h.width = le16(head + 6);
    h.height = le16(head + 8);
  } else if (n >= 26 && head[0] == 'B' && head[1] == 'M') {
    h.format = "bmp";
    h.width = static_cast<int32_t>(le32(head + 18));
    const int32_t hh = static_cast<int32_t>(le32(head + 22));
    h.height = hh < 0 ? -static_cast<int64_t>(hh) : hh;
  } else if (n >= 30 && std::memcmp(head, "RIFF", 4) == 0 && std::memcmp(head + 8, "WEBP", 4) == 0) {
    h.format = "webp";
    if (std::memcmp(head + 12, "VP8X", 4) == 0) {
      h.width = le24(head + 24) + 1;
      h.height = le24(head + 27) + 1;
      h.alpha = (head[20] & 0x10) != 0;
    } else if (std::memcmp(head + 12, "VP8L", 4) == 0) {
      const uint32_t b = le32(head + 21);
      h.width = (b & 0x3FFF) + 1;
      h.height = ((b >> 14) & 0x3FFF) + 1;
      h.alpha = ((b >> 28) & 1) != 0;  // alpha_is_used
    } else if (std::memcmp(head + 12, "VP8 ", 4) == 0) {
      h.width = le16(head + 26) & 0x3FFF;
      h.height = le16(head + 28) & 0x3FFF;
    }
  } else if (n >= 4 && (std::memcmp(head, "II*\0", 4) == 0 || std::memcmp(head, "MM\0*", 4) == 0)) {
    h.format = "tiff";
  } else if (n >= 12 && std::memcmp(head + 4, "ftyp", 4) == 0) {
    // ISO base media: HEIF (HEIC, as iPhones save photos), AVIF, or a
    // video (MP4, QuickTime).  The major brand, then the compatible brands
    // the first 32 bytes hold (a "mif1" file names heic or avif there).
    const size_t box = std::min<size_t>(std::min<size_t>(be32(head), sizeof head), n);
    auto brand_in = [&](std::initializer_list<const char*> brands) {
      for (size_t at = 8; at + 4 <= box; at += (at == 8 ? 8 : 4))  // skip the minor version after the major brand
        for (const char* b : brands)
          if (std::memcmp(head + at, b, 4) == 0) return true;
      return false;
    };
    if (brand_in({"avif", "avis"}))
      h.format = "avif";
    else if (brand_in({"heic", "heix", "hevc", "hevx", "heim", "heis", "mif1", "msf1"}))
      h.format = "heif";
    else
      h.format = "isobmff";
  } else if (n >= 4 && head[0] == 0x1A && head[1] == 0x45 && head[2] == 0xDF && head[3] == 0xA3) {
    h.format = "matroska";  // EBML: Matroska or WebM
  } else if (n >= 12 && std::memcmp(head, "RIFF", 4) == 0 && std::memcmp(head + 8, "AVI ", 4) == 0) {
    h.format = "avi";
  } else if (n >= 4 && std::memcmp(head, "FLV\x01", 4) == 0) {
    h.format = "flv";
  } else if (n >= 4 && head[0] == 0 && head[1] == 0 && head[2] == 1 && head[3] == 0xBA) {
    h.format = "mpegps";  // an MPEG program stream pack header (.mpg, .vob)
  } else {
    // An MPEG transport stream (a broadcast recording, .ts / .mts / .m2ts
    // or no extension): the sync byte 0x47 opening three packets of 188
    // bytes, or of 192 (M2TS: a 4-byte time code before each).
    unsigned char ts[4 + 2 * 192 + 1] = {0};
    f.clear();
    f.seekg(0);
    f.read(reinterpret_cast<char*>(ts), sizeof ts);
    const size_t m = static_cast<size_t>(f.gcount());
    for (size_t step : {188, 192}) {
      const size_t first = step == 188 ? 0 : 4;
      if (m > first + 2 * step && ts[first] == 0x47 && ts[first + step] == 0x47 && ts[first + 2 * step] == 0x47)
        h.format = "mpegts";
    }
  }
  return h;
}

namespace {

// ANITALKER_MAX_PIXELS read: the limit, and *ignored its text when it is
// set but not a whole number above 0 (then the default is in force).
int64_t read_max_pixels(std::string* ignored) {
  const char* v = std::getenv("ANITALKER_MAX_PIXELS");
  if (v && *v) {
    char* end = nullptr;
    errno = 0;
    const long long x = std::strtoll(v, &end, 10);
    if (end && *end == 0 && x > 0 && errno == 0) return x;
    if (ignored) *ignored = v;
  }
  return 100000000;
}

}  // namespace

int64_t max_image_pixels() { return read_max_pixels(nullptr); }

ImageHeader check_image_header(const std::string& path) {
  const ImageHeader h = read_image_header(path);
  if (h.format == "gif")
    throw format_error(path + ": GIF images cannot be read (OpenCV has no GIF decoder); convert it to PNG or JPEG");
  if (h.truncated)
    throw format_error(path + ": the " + h.format + " file is truncated (no end marker); it would decode only in part");
  if (h.width >= 0 && h.height >= 0) {
    if (h.width == 0 || h.height == 0)
      throw format_error(path + ": the header gives an empty image (" + std::to_string(h.width) + "x" +
                         std::to_string(h.height) + ")");
    std::string ignored;
    const int64_t limit = read_max_pixels(&ignored);
    // Headers give sizes below 2^32 (PNG's, BMP's and WebP's fields), so the
    // count fits 64 unsigned bits where a signed product could overflow
    // (4294967295 x 4294967295, found by fuzz_image_header).
    const uint64_t pixels = static_cast<uint64_t>(h.width) * static_cast<uint64_t>(h.height);
    if (pixels > static_cast<uint64_t>(limit))
      throw format_error(path + ": the image is " + std::to_string(h.width) + "x" + std::to_string(h.height) + " (" +
                         std::to_string(pixels / 1000000) + " Mpx), more than the limit of " +
                         (limit >= 1000000 ? std::to_string(limit / 1000000) + " Mpx" : std::to_string(limit) + " pixels") +
                         "; scale it down (the networks see 256x256) or raise ANITALKER_MAX_PIXELS" +
                         (ignored.empty() ? std::string()
                                          : " (ANITALKER_MAX_PIXELS=" + ignored +
                                                " is not a whole number of pixels above 0, so the default is in force)"));
  }
  return h;
}

}  // namespace anitalker
