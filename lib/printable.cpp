#include "printable.h"

#include <cstdint>
#include <cstdio>

namespace anitalker {

namespace {

// The code point at p (at most n bytes), and its length; 0 bytes when the
// bytes there are not valid UTF-8 (overlong forms, surrogates, past
// U+10FFFF, a sequence cut short).
size_t utf8_at(const unsigned char* p, size_t n, uint32_t* c) {
  const unsigned char b = p[0];
  size_t len;
  uint32_t v, min;
  if (b < 0x80) {
    *c = b;
    return 1;
  } else if ((b & 0xe0) == 0xc0) {
    len = 2, v = b & 0x1f, min = 0x80;
  } else if ((b & 0xf0) == 0xe0) {
    len = 3, v = b & 0x0f, min = 0x800;
  } else if ((b & 0xf8) == 0xf0) {
    len = 4, v = b & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (n < len) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((p[k] & 0xc0) != 0x80) return 0;
    v = (v << 6) | (p[k] & 0x3f);
  }
  if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
  *c = v;
  return len;
}

bool control(uint32_t c) {
  return c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == 0x2028 || c == 0x2029 || (c >= 0x202a && c <= 0x202e) ||
         (c >= 0x2066 && c <= 0x2069);
}

std::string escaped(const std::string& v, size_t max, bool keep_lines) {
  std::string out;
  const auto escape = [&out](const unsigned char* p, size_t n) {
    for (size_t k = 0; k < n; ++k) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\x%02x", p[k]);
      out += esc;
    }
  };
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  const auto* end = p + v.size();
  while (p < end && out.size() < max) {
    uint32_t c = 0;
    const size_t len = utf8_at(p, static_cast<size_t>(end - p), &c);
    if (len == 0) {  // not UTF-8 here: this byte alone
      escape(p, 1);
      ++p;
      continue;
    }
    if (control(c) && !(keep_lines && (c == '\n' || c == '\t')))
      escape(p, len);
    else
      out.append(reinterpret_cast<const char*>(p), len);
    p += len;
  }
  if (p < end) out += "... (" + std::to_string(v.size()) + " bytes)";
  return out;
}

}  // namespace

std::string printable(const std::string& v, size_t max) { return escaped(v, max, false); }

std::string printable_lines(const std::string& v) { return escaped(v, std::string::npos, true); }

}  // namespace anitalker
