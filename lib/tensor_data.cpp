#include "tensor_data.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "error.h"

namespace anitalker {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
    case DType::Int64: return "int64";
    case DType::Int32: return "int32";
    case DType::Int16: return "int16";
    case DType::Int8: return "int8";
    case DType::UInt8: return "uint8";
    case DType::Bool: return "bool";
  }
  return "?";
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::Float64:
    case DType::Int64: return 8;
    case DType::Float32:
    case DType::Int32: return 4;
    case DType::Float16:
    case DType::BFloat16:
    case DType::Int16: return 2;
    case DType::Int8:
    case DType::UInt8:
    case DType::Bool: return 1;
  }
  return 1;
}

int64_t TensorData::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& shape) {
  // Unsigned arithmetic: a shape not yet checked must not overflow here.
  std::vector<int64_t> st(shape.size());
  uint64_t acc = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    st[i] = static_cast<int64_t>(acc);
    acc *= shape[i] > 0 ? static_cast<uint64_t>(shape[i]) : 1;
  }
  return st;
}

void check_shape(const std::vector<int64_t>& shape, const std::string& what) {
  unsigned __int128 n = 1;
  for (int64_t s : shape) {
    if (s < 0) throw format_error(what + ": negative size in shape " + shape_string(shape));
    // Sizes of 0 count as 1 here: strides are products of the other sizes.
    n *= s > 0 ? static_cast<uint64_t>(s) : 1;
    if (n > (static_cast<unsigned __int128>(1) << 56)) throw format_error(what + ": shape " + shape_string(shape) + " is too large");
  }
}

bool TensorData::is_contiguous() const {
  int64_t acc = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && strides[i] != acc) return false;
    acc *= shape[i];
  }
  return true;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += shape[i] < 0 ? std::string("*") : std::to_string(shape[i]);
  }
  return s + "]";
}

void check_view_bounds(const TensorData& t, const std::string& what) {
  if (t.shape.size() != t.strides.size())
    throw format_error(what + ": size and stride have different lengths");
  check_shape(t.shape, what);
  if (!t.storage) throw format_error(what + ": tensor has no storage");
  if (t.offset < 0) throw format_error(what + ": negative storage offset");
  const size_t es = dtype_size(t.dtype);
  const size_t capacity = t.storage->nbytes / es;
  // Highest element index addressed, computed without overflow.
  unsigned __int128 last = static_cast<unsigned __int128>(t.offset);
  bool empty = false;
  for (size_t i = 0; i < t.shape.size(); ++i) {
    if (t.shape[i] < 0) throw format_error(what + ": negative size in shape " + shape_string(t.shape));
    if (t.strides[i] < 0) throw format_error(what + ": negative stride");
    if (t.shape[i] == 0) empty = true;
    else last += static_cast<unsigned __int128>(t.shape[i] - 1) * static_cast<uint64_t>(t.strides[i]);
  }
  if (empty) return;
  if (last >= capacity || t.offset > static_cast<int64_t>(capacity))
    throw format_error(what + ": storage too short: the view " + shape_string(t.shape) + " at offset " +
                       std::to_string(t.offset) + " needs " + std::to_string(static_cast<uint64_t>(last + 1)) +
                       " elements, the storage holds " + std::to_string(capacity));
}

namespace {
double half_to_double(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  double v;
  if (exp == 0) v = std::ldexp(static_cast<double>(man), -24);
  else if (exp == 31) v = man ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  else v = std::ldexp(static_cast<double>(man | 0x400), static_cast<int>(exp) - 25);
  return sign ? -v : v;
}
}  // namespace

std::vector<double> TensorData::to_doubles() const {
  const int64_t n = numel();
  std::vector<double> out(static_cast<size_t>(n));
  const size_t es = dtype_size(dtype);
  std::vector<int64_t> idx(shape.size(), 0);
  for (int64_t k = 0; k < n; ++k) {
    int64_t off = offset;
    for (size_t d = 0; d < shape.size(); ++d) off += idx[d] * strides[d];
    const uint8_t* p = storage->data + off * static_cast<int64_t>(es);
    double v = 0;
    switch (dtype) {
      case DType::Float32: { float f; std::memcpy(&f, p, 4); v = f; break; }
      case DType::Float64: std::memcpy(&v, p, 8); break;
      case DType::Float16: { uint16_t h; std::memcpy(&h, p, 2); v = half_to_double(h); break; }
      case DType::BFloat16: { uint16_t h; std::memcpy(&h, p, 2); uint32_t u = static_cast<uint32_t>(h) << 16; float f; std::memcpy(&f, &u, 4); v = f; break; }
      case DType::Int64: { int64_t i; std::memcpy(&i, p, 8); v = static_cast<double>(i); break; }
      case DType::Int32: { int32_t i; std::memcpy(&i, p, 4); v = i; break; }
      case DType::Int16: { int16_t i; std::memcpy(&i, p, 2); v = i; break; }
      case DType::Int8: v = static_cast<int8_t>(*p); break;
      case DType::UInt8: v = *p; break;
      case DType::Bool: v = *p ? 1.0 : 0.0; break;
    }
    out[static_cast<size_t>(k)] = v;
    for (size_t d = shape.size(); d-- > 0;) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

int64_t first_non_finite(const float* data, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(data[i])) return static_cast<int64_t>(i);
  return -1;
}

void require_finite(const float* data, const std::vector<int64_t>& shape, const std::string& what) {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d < 0 ? 0 : d);
  int64_t bad = first_non_finite(data, n);
  if (bad < 0) return;
  const float v = data[bad];
  std::vector<int64_t> index(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    index[d] = bad % shape[d];
    bad /= shape[d];
  }
  throw format_error(what + ": value " + shape_string(index) + " is " + (std::isnan(v) ? "nan" : v > 0 ? "inf" : "-inf") +
                     "; expected finite numbers");
}

namespace {
struct Mapping {
  void* addr = nullptr;
  size_t len = 0;
  ~Mapping() {
    if (addr && len) munmap(addr, len);
  }
};
}  // namespace

const char* file_kind(unsigned int st_mode) {
  if (S_ISDIR(st_mode)) return "a folder";
  if (S_ISFIFO(st_mode)) return "a pipe (FIFO)";
  if (S_ISCHR(st_mode) || S_ISBLK(st_mode)) return "a device";
  if (S_ISSOCK(st_mode)) return "a socket";
  return "not a file";
}

std::shared_ptr<const Storage> map_file(const std::string& path) {
  // O_NONBLOCK: a FIFO (or a device) given as a model or a WAV opens at
  // once and is refused below, where a plain open waited for a writer for
  // ever (found 2026-12-07: `anitalker inspect`, `render --checkpoint`,
  // the elements' `checkpoint`).  It changes nothing for a regular file.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) throw Error(Error::Kind::NotFound, path + ": no such file");
    throw Error(Error::Kind::Unreadable, path + ": cannot open: " + std::strerror(err));
  }
  struct stat st;
  const bool stat_ok = fstat(fd, &st) == 0;
  if (!stat_ok || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(Error::Kind::Unreadable,
                path + ": not a regular file (" + (stat_ok ? file_kind(st.st_mode) : "it cannot be examined") + ")");
  }
  auto m = std::make_shared<Mapping>();
  m->len = static_cast<size_t>(st.st_size);
  if (m->len > 0) {
    // Private and writable: pages stay shared with the page cache until
    // somebody writes to them, so an in-place op on a weight can never
    // corrupt the file or fault.
    void* p = mmap(nullptr, m->len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      m->len = 0;
      std::string why = std::strerror(err);
      if (err == ENOMEM) {  // the private map is charged to the memory and swap the system lets a process reserve
        char size[64];
        std::snprintf(size, sizeof size, "%.1f GB", static_cast<double>(st.st_size) / 1e9);
        why += std::string(" (the file is ") + size +
               ", more than the memory and swap this system lets a process reserve; is it the right file?)";
      }
      throw Error(Error::Kind::Unreadable, path + ": cannot map: " + why);
    }
    m->addr = p;
  }
  ::close(fd);
  auto s = std::make_shared<Storage>();
  s->data = static_cast<const uint8_t*>(m->addr);
  s->nbytes = m->len;
  s->owner = m;
  return s;
}

}  // namespace anitalker
