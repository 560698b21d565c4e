#include "zip.h"

#include <cstring>

#include "error.h"
#include "printable.h"

namespace anitalker {

namespace {

uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t rd32(const uint8_t* p) { return rd16(p) | (static_cast<uint32_t>(rd16(p + 2)) << 16); }
uint64_t rd64(const uint8_t* p) { return rd32(p) | (static_cast<uint64_t>(rd32(p + 4)) << 32); }

constexpr uint32_t kEocdSig = 0x06054b50, kZip64EocdSig = 0x06064b50, kZip64LocSig = 0x07064b50;
constexpr uint32_t kCentralSig = 0x02014b50, kLocalSig = 0x04034b50;

}  // namespace

ZipArchive::ZipArchive(std::shared_ptr<const Storage> file, std::string name)
    : file_(std::move(file)), name_(std::move(name)) {
  const uint8_t* d = file_->data;
  const uint64_t n = file_->nbytes;
  auto fail = [&](const std::string& why) { return format_error(name_ + ": broken zip archive: " + why); };
  if (n < 22) throw fail("file is too short (" + std::to_string(n) + " bytes) to hold a zip directory; truncated?");

  // The end-of-central-directory record sits in the last 22 + 65535 bytes.
  uint64_t eocd = UINT64_MAX;
  const uint64_t lo = n > 22 + 65535 ? n - 22 - 65535 : 0;
  for (uint64_t p = n - 22 + 1; p-- > lo;) {
    if (rd32(d + p) == kEocdSig && p + 22 + rd16(d + p + 20) <= n) {
      eocd = p;
      break;
    }
  }
  if (eocd == UINT64_MAX) throw fail("no end-of-central-directory record (truncated file?)");

  uint64_t count = rd16(d + eocd + 10);
  uint64_t cd_size = rd32(d + eocd + 12);
  uint64_t cd_off = rd32(d + eocd + 16);
  if (eocd >= 20 && rd32(d + eocd - 20) == kZip64LocSig) {
    const uint64_t z = rd64(d + eocd - 20 + 8);
    if (z > n || n - z < 56 || rd32(d + z) != kZip64EocdSig) throw fail("bad zip64 end-of-central-directory record");
    count = rd64(d + z + 32);
    cd_size = rd64(d + z + 40);
    cd_off = rd64(d + z + 48);
  }
  if (cd_off > n || cd_size > n - cd_off) throw fail("central directory lies outside the file (truncated file?)");

  uint64_t p = cd_off;
  const uint64_t cd_end = cd_off + cd_size;
  for (uint64_t i = 0; i < count; ++i) {
    if (cd_end - p < 46 || rd32(d + p) != kCentralSig) throw fail("bad central directory entry " + std::to_string(i));
    const uint16_t method = rd16(d + p + 10);
    uint64_t csize = rd32(d + p + 20), usize = rd32(d + p + 24);
    const uint16_t nlen = rd16(d + p + 28), xlen = rd16(d + p + 30), clen = rd16(d + p + 32);
    uint64_t loff = rd32(d + p + 42);
    if (cd_end - p - 46 < static_cast<uint64_t>(nlen) + xlen + clen)
      throw fail("central directory entry " + std::to_string(i) + " runs past the directory");
    std::string ename(reinterpret_cast<const char*>(d + p + 46), nlen);
    // Zip64 extended information: only the fields saturated in the header follow.
    const uint8_t* x = d + p + 46 + nlen;
    for (uint32_t q = 0; q + 4 <= xlen;) {
      const uint16_t id = rd16(x + q), len = rd16(x + q + 2);
      if (q + 4 + len > xlen) break;
      if (id == 0x0001) {
        const uint8_t* f = x + q + 4;
        uint32_t left = len;
        auto take = [&](uint64_t& v) {
          if (v != 0xffffffffu) return;
          if (left < 8) throw fail(ename + ": short zip64 field");
          v = rd64(f);
          f += 8;
          left -= 8;
        };
        take(usize);
        take(csize);
        take(loff);
      }
      q += 4 + len;
    }
    if (loff > n || n - loff < 30 || rd32(d + loff) != kLocalSig)
      throw fail("entry '" + printable(ename) + "': bad local header (truncated file?)");
    const uint64_t data_off = loff + 30 + rd16(d + loff + 26) + rd16(d + loff + 28);
    if (data_off > n || csize > n - data_off)
      throw fail("entry '" + printable(ename) + "' (" + std::to_string(csize) + " bytes) runs past the end of the file (truncated file?)");
    if (method == 0 && csize != usize) throw fail("entry '" + printable(ename) + "': stored sizes disagree");
    entries_[ename] = Entry{data_off, method == 0 ? usize : csize, method};
    p += 46 + nlen + xlen + clen;
  }
}

std::shared_ptr<const Storage> ZipArchive::read(const std::string& entry) const {
  auto it = entries_.find(entry);
  if (it == entries_.end()) throw format_error(name_ + ": missing zip entry '" + printable(entry) + "'");
  if (it->second.method != 0)
    throw format_error(name_ + ": zip entry '" + printable(entry) + "' is compressed (method " +
                       std::to_string(it->second.method) + "); torch.save stores entries uncompressed");
  auto s = std::make_shared<Storage>();
  s->data = file_->data + it->second.offset;
  s->nbytes = it->second.size;
  s->owner = file_;
  return s;
}

}  // namespace anitalker
