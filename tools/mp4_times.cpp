#include "mp4_times.h"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "error.h"

namespace cli {

namespace {

uint64_t be(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

// Walks the boxes in [begin, end) of `d`; patches the times of the header
// boxes and descends into the containers on the way to them.
int walk(std::vector<unsigned char>& d, size_t begin, size_t end) {
  int patched = 0;
  size_t at = begin;
  while (at + 8 <= end) {
    uint64_t size = be(&d[at], 4);
    size_t header = 8;
    if (size == 1) {
      if (at + 16 > end) break;
      size = be(&d[at + 8], 8);
      header = 16;
    } else if (size == 0) {
      size = end - at;
    }
    if (size < header || at + size > end) break;
    const std::string type(reinterpret_cast<const char*>(&d[at + 4]), 4);
    const size_t body = at + header;
    if (type == "moov" || type == "trak" || type == "mdia") {
      patched += walk(d, body, at + size);
    } else if ((type == "mvhd" || type == "tkhd" || type == "mdhd") && body + 4 <= at + size) {
      const int width = d[body] == 1 ? 8 : 4;  // version 1: 64-bit times
      if (body + 4 + 2 * width <= at + size) {
        std::memset(&d[body + 4], 0, 2 * width);
        ++patched;
      }
    }
    at += size;
  }
  return patched;
}

}  // namespace

int clear_mp4_times(const std::string& path) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  if (!f) throw anitalker::Error(anitalker::Error::Kind::Unreadable, path + ": cannot open the MP4 to finish it");
  // Top-level boxes: only moov is read into memory (mdat can be large).
  f.seekg(0, std::ios::end);
  const uint64_t file_size = static_cast<uint64_t>(f.tellg());
  uint64_t at = 0;
  int patched = 0;
  while (at + 8 <= file_size) {
    unsigned char h[16];
    f.seekg(static_cast<std::streamoff>(at));
    f.read(reinterpret_cast<char*>(h), 16);
    if (f.gcount() < 8) break;
    f.clear();
    uint64_t size = be(h, 4);
    if (size == 1 && f.gcount() >= 16) size = be(h + 8, 8);
    else if (size == 0) size = file_size - at;
    if (size < 8 || at + size > file_size) break;
    if (std::memcmp(h + 4, "moov", 4) == 0 && size < (1u << 30)) {
      std::vector<unsigned char> moov(static_cast<size_t>(size));
      f.seekg(static_cast<std::streamoff>(at));
      f.read(reinterpret_cast<char*>(moov.data()), static_cast<std::streamsize>(size));
      patched += walk(moov, 0, moov.size());
      f.seekp(static_cast<std::streamoff>(at));
      f.write(reinterpret_cast<const char*>(moov.data()), static_cast<std::streamsize>(size));
      if (!f) throw anitalker::Error(anitalker::Error::Kind::Unreadable, path + ": cannot write the MP4's header");
    }
    at += size;
  }
  return patched;
}

}  // namespace cli
