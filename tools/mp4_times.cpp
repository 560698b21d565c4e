#include "mp4_times.h"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
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

namespace {

// EBML: an element is an ID (1-4 bytes, marker bit kept), a size (a vint of
// 1-8 bytes, marker removed; all ones = unknown) and a body.
struct Ebml {
  uint32_t id = 0;
  uint64_t size = 0;
  size_t header = 0;
  bool unknown = false;
};

int vint_length(unsigned char first) {
  for (int n = 1; n <= 8; ++n)
    if (first & (0x80 >> (n - 1))) return n;
  return 0;
}

bool read_element(const unsigned char* p, size_t avail, Ebml* e) {
  if (avail < 2) return false;
  const int il = vint_length(p[0]);
  if (il == 0 || il > 4 || (size_t)il >= avail) return false;
  e->id = (uint32_t)be(p, il);
  const int sl = vint_length(p[il]);
  if (sl == 0 || (size_t)(il + sl) > avail) return false;
  uint64_t v = p[il] & (0xff >> sl);
  bool all_ones = v == (uint64_t)(0xff >> sl);
  for (int i = 1; i < sl; ++i) {
    v = (v << 8) | p[il + i];
    all_ones = all_ones && p[il + i] == 0xff;
  }
  e->size = v;
  e->unknown = all_ones;
  e->header = (size_t)(il + sl);
  return true;
}

constexpr uint32_t kSegment = 0x18538067, kTracks = 0x1654AE6B, kTrackEntry = 0xAE, kTrackUid = 0x73C5,
                   kTags = 0x1254C367, kTag = 0x7373, kTargets = 0x63C0, kTagTrackUid = 0x63C5;

// Rewrites the unsigned integers of `leaf` under the masters in `path`
// (matched in order) inside d[begin, end): `rename` maps old -> new.
template <class F>
int rewrite(std::vector<unsigned char>& d, size_t begin, size_t end, const std::vector<uint32_t>& path, size_t depth,
            uint32_t leaf, F&& rename) {
  int n = 0;
  size_t at = begin;
  while (at < end) {
    Ebml e;
    if (!read_element(&d[at], end - at, &e) || e.unknown || at + e.header + e.size > end) break;
    const size_t body = at + e.header;
    if (depth < path.size() && e.id == path[depth]) {
      n += rewrite(d, body, body + e.size, path, depth + 1, leaf, rename);
    } else if (depth == path.size() && e.id == leaf && e.size >= 1 && e.size <= 8) {
      const uint64_t v = rename(be(&d[body], (int)e.size));
      for (uint64_t i = 0; i < e.size; ++i) d[body + i] = (unsigned char)(v >> (8 * (e.size - 1 - i)));
      ++n;
    }
    at = body + e.size;
  }
  return n;
}

}  // namespace

int clear_webm_uids(const std::string& path) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  if (!f) throw anitalker::Error(anitalker::Error::Kind::Unreadable, path + ": cannot open the WebM to finish it");
  f.seekg(0, std::ios::end);
  const uint64_t file_size = static_cast<uint64_t>(f.tellg());
  auto header_at = [&](uint64_t at, Ebml* e) {
    unsigned char h[12] = {0};
    f.seekg(static_cast<std::streamoff>(at));
    f.read(reinterpret_cast<char*>(h), sizeof h);
    const size_t got = static_cast<size_t>(f.gcount());
    f.clear();
    return read_element(h, got, e);
  };
  // The EBML header, then the Segment.
  Ebml e;
  if (!header_at(0, &e) || e.unknown) return 0;
  uint64_t at = e.header + e.size;
  if (!header_at(at, &e) || e.id != kSegment) return 0;
  const uint64_t seg_end = e.unknown ? file_size : std::min<uint64_t>(file_size, at + e.header + e.size);
  at += e.header;
  std::map<uint64_t, uint64_t> renumbered;
  int patched = 0;
  struct Body {
    uint64_t at;
    std::vector<unsigned char> data;
    uint32_t id;
  };
  std::vector<Body> bodies;
  while (at < seg_end && header_at(at, &e) && !e.unknown && at + e.header + e.size <= seg_end) {
    if ((e.id == kTracks || e.id == kTags) && e.size < (1u << 24)) {
      Body b{at + e.header, std::vector<unsigned char>(static_cast<size_t>(e.size)), e.id};
      f.seekg(static_cast<std::streamoff>(b.at));
      f.read(reinterpret_cast<char*>(b.data.data()), static_cast<std::streamsize>(b.data.size()));
      if (static_cast<uint64_t>(f.gcount()) == e.size) bodies.push_back(std::move(b));
      f.clear();
    }
    at += e.header + e.size;
  }
  // Tracks first (the new numbers), then the tags that point at them.
  for (Body& b : bodies)
    if (b.id == kTracks)
      patched += rewrite(b.data, 0, b.data.size(), {kTrackEntry}, 0, kTrackUid, [&](uint64_t old) {
        const uint64_t now = renumbered.size() + 1;
        renumbered.emplace(old, now);
        return renumbered[old];
      });
  for (Body& b : bodies)
    if (b.id == kTags)
      patched += rewrite(b.data, 0, b.data.size(), {kTag, kTargets}, 0, kTagTrackUid, [&](uint64_t old) {
        auto it = renumbered.find(old);
        return it == renumbered.end() ? old : it->second;
      });
  for (const Body& b : bodies) {
    f.seekp(static_cast<std::streamoff>(b.at));
    f.write(reinterpret_cast<const char*>(b.data.data()), static_cast<std::streamsize>(b.data.size()));
  }
  if (!f) throw anitalker::Error(anitalker::Error::Kind::Unreadable, path + ": cannot write the WebM's header");
  return patched;
}

}  // namespace cli
