#include "npy.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "error.h"
#include "printable.h"
#include "output_file.h"

namespace anitalker {

namespace {

const char* descr_of(DType t) {
  switch (t) {
    case DType::Float32: return "<f4";
    case DType::Float64: return "<f8";
    case DType::Float16: return "<f2";
    case DType::Int64: return "<i8";
    case DType::Int32: return "<i4";
    case DType::Int16: return "<i2";
    case DType::Int8: return "|i1";
    case DType::UInt8: return "|u1";
    case DType::Bool: return "|b1";
    case DType::BFloat16: break;
  }
  throw Error(Error::Kind::Usage, std::string("npy: dtype ") + dtype_name(t) + " has no .npy representation");
}

// Finds `'key':` in the header dict and returns what follows it.
size_t find_key(const std::string& h, const std::string& key, const std::string& name) {
  size_t p = h.find("'" + key + "'");
  if (p == std::string::npos) throw format_error(name + ": npy header has no '" + key + "' field");
  p = h.find(':', p);
  if (p == std::string::npos) throw format_error(name + ": npy header: no value for '" + key + "'");
  ++p;
  while (p < h.size() && h[p] == ' ') ++p;
  return p;
}

}  // namespace

TensorData parse_npy(std::shared_ptr<const Storage> bytes, const std::string& name) {
  const uint8_t* d = bytes->data;
  const size_t n = bytes->nbytes;
  if (n < 10 || std::memcmp(d, "\x93NUMPY", 6) != 0) throw format_error(name + ": not a .npy file (wrong magic number)");
  const int major = d[6];
  size_t hlen, hoff;
  if (major == 1) {
    hlen = d[8] | (d[9] << 8);
    hoff = 10;
  } else if (major == 2 || major == 3) {
    if (n < 12) throw format_error(name + ": truncated .npy header");
    hlen = d[8] | (d[9] << 8) | (static_cast<size_t>(d[10]) << 16) | (static_cast<size_t>(d[11]) << 24);
    hoff = 12;
  } else {
    throw format_error(name + ": unsupported .npy format version " + std::to_string(major));
  }
  if (hlen > n - hoff) throw format_error(name + ": truncated .npy header");
  const std::string h(reinterpret_cast<const char*>(d + hoff), hlen);

  size_t p = find_key(h, "descr", name);
  if (p >= h.size() || (h[p] != '\'' && h[p] != '"')) throw format_error(name + ": npy 'descr' is not a simple dtype string");
  const size_t q = h.find(h[p], p + 1);
  if (q == std::string::npos) throw format_error(name + ": npy 'descr' is not terminated");
  std::string descr = h.substr(p + 1, q - p - 1);
  static const std::map<std::string, DType> table = {
      {"<f4", DType::Float32}, {"<f8", DType::Float64}, {"<f2", DType::Float16}, {"<i8", DType::Int64},
      {"<i4", DType::Int32},   {"<i2", DType::Int16},   {"|i1", DType::Int8},    {"|u1", DType::UInt8},
      {"|b1", DType::Bool},    {"<u1", DType::UInt8},   {"<i1", DType::Int8},    {"<b1", DType::Bool}};
  auto it = table.find(descr);
  if (it == table.end())
    throw format_error(name + ": unsupported npy dtype '" + printable(descr) + "' (expected little-endian float16/32/64, int8/16/32/64, uint8 or bool)");

  p = find_key(h, "fortran_order", name);
  bool fortran;
  if (h.compare(p, 4, "True") == 0) fortran = true;
  else if (h.compare(p, 5, "False") == 0) fortran = false;
  else throw format_error(name + ": npy 'fortran_order' is neither True nor False");

  p = find_key(h, "shape", name);
  if (p >= h.size() || h[p] != '(') throw format_error(name + ": npy 'shape' is not a tuple");
  const size_t close = h.find(')', p);
  if (close == std::string::npos) throw format_error(name + ": npy 'shape' is not terminated");
  TensorData t;
  t.dtype = it->second;
  for (size_t i = p + 1; i < close;) {
    while (i < close && (h[i] == ' ' || h[i] == ',')) ++i;
    if (i >= close) break;
    if (h[i] < '0' || h[i] > '9') throw format_error(name + ": npy 'shape' holds something other than integers");
    int64_t v = 0;
    while (i < close && h[i] >= '0' && h[i] <= '9') {
      if (v > (INT64_MAX - 9) / 10) throw format_error(name + ": npy shape value too large");
      v = v * 10 + (h[i++] - '0');
    }
    while (i < close && h[i] == 'L') ++i;
    t.shape.push_back(v);
  }
  check_shape(t.shape, name);
  if (fortran) {
    t.strides.assign(t.shape.size(), 1);
    int64_t acc = 1;
    for (size_t i = 0; i < t.shape.size(); ++i) {
      t.strides[i] = acc;
      acc *= t.shape[i] > 0 ? t.shape[i] : 1;
    }
  } else {
    t.strides = contiguous_strides(t.shape);
  }
  auto s = std::make_shared<Storage>();
  const size_t off = hoff + hlen;
  s->data = d + off;
  s->nbytes = n - off;
  s->owner = bytes;
  t.storage = s;
  const unsigned __int128 need = static_cast<unsigned __int128>(t.numel()) * dtype_size(t.dtype);
  if (need > s->nbytes)
    throw format_error(name + ": npy data too short for shape " + shape_string(t.shape) + ": " +
                       std::to_string(s->nbytes) + " bytes, expected " + std::to_string(static_cast<uint64_t>(need)));
  check_view_bounds(t, name);
  if (reinterpret_cast<uintptr_t>(s->data) % dtype_size(t.dtype) != 0) {
    const size_t nb = static_cast<size_t>(need);
    auto buf = std::shared_ptr<uint8_t>(new uint8_t[nb ? nb : 1], std::default_delete<uint8_t[]>());
    std::memcpy(buf.get(), s->data, nb);
    s->data = buf.get();
    s->nbytes = nb;
    s->owner = buf;
  }
  return t;
}

TensorData read_npy(const std::string& path) { return parse_npy(map_file(path), path); }

std::string npy_bytes(DType dtype, const std::vector<int64_t>& shape, const void* data) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::string out = npy_header(dtype, shape);
  out.append(static_cast<const char*>(data), static_cast<size_t>(n) * dtype_size(dtype));
  return out;
}

std::string npy_header(DType dtype, const std::vector<int64_t>& shape) {
  std::string dict = std::string("{'descr': '") + descr_of(dtype) + "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.size(); ++i) {
    dict += std::to_string(shape[i]);
    dict += shape.size() == 1 ? "," : (i + 1 < shape.size() ? ", " : "");
  }
  dict += "), }";
  // Magic (6) + version (2) + length (2) + dict + padding + '\n', a multiple of 64.
  size_t total = 10 + dict.size() + 1;
  const size_t pad = (64 - total % 64) % 64;
  dict.append(pad, ' ');
  dict += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(dict.size() & 0xff);
  out += static_cast<char>((dict.size() >> 8) & 0xff);
  out += dict;
  return out;
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  OutputFile out(path);
  out.write(bytes);
  out.commit();
}

void write_files_atomic(const std::vector<std::pair<std::string, std::string>>& files) {
  std::vector<std::unique_ptr<OutputFile>> outs;
  for (const auto& [path, bytes] : files) {
    outs.push_back(std::make_unique<OutputFile>(path));
    outs.back()->write(bytes);
  }
  for (auto& o : outs) o->commit();
}

void write_npy(const std::string& path, DType dtype, const std::vector<int64_t>& shape, const void* data) {
  // Header and data written apart: no copy of the data in memory.
  NpyWriter w(path, dtype, shape);
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  w.append(data, n * dtype_size(dtype));
  w.commit();
}

NpyWriter::NpyWriter(const std::string& path, DType dtype, const std::vector<int64_t>& shape) : out_(path) {
  expected_ = dtype_size(dtype);
  for (int64_t d : shape) {
    if (d < 0) throw Error(Error::Kind::Usage, path + ": a negative dimension in the shape");
    expected_ *= static_cast<size_t>(d);
  }
  const std::string head = npy_header(dtype, shape);
  out_.append(head.data(), head.size());
}

void NpyWriter::append(const void* data, size_t bytes) {
  if (written_ + bytes > expected_)
    throw Error(Error::Kind::Runtime, out_.target() + ": more data than its shape holds (" +
                                          std::to_string(written_ + bytes) + " bytes of " + std::to_string(expected_) + ")");
  out_.append(data, bytes);
  written_ += bytes;
}

void NpyWriter::commit() {
  if (written_ != expected_)
    throw Error(Error::Kind::Runtime, out_.target() + ": " + std::to_string(written_) + " bytes of data written, its shape holds " +
                                          std::to_string(expected_));
  out_.commit();
}

PlaneMajorNpyWriter::PlaneMajorNpyWriter(const std::string& path, int64_t planes, int64_t row)
    : path_(path), planes_(planes), row_(row) {
  if (planes <= 0 || row <= 0)
    throw Error(Error::Kind::Usage, path + ": planes and rows of a .npy writer must be above 0");
  auto first = std::make_unique<OutputFile>(path);
  std::string spool_target = path;
  if (first->direct()) {  // a device or a pipe: the planes wait in the temporary folder
    const char* tmp = std::getenv("TMPDIR");
    spool_target = std::string(tmp && *tmp ? tmp : "/tmp") + "/anitalker-spool.npy";
    first = std::make_unique<OutputFile>(spool_target);
  }
  spools_.push_back(std::move(first));
  for (int64_t p = 1; p < planes; ++p) spools_.push_back(std::make_unique<OutputFile>(spool_target));
}

void PlaneMajorNpyWriter::append(const float* frames, int64_t n) {
  if (n < 0) throw Error(Error::Kind::Usage, path_ + ": a negative frame count");
  const size_t row_bytes = static_cast<size_t>(row_) * sizeof(float);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t p = 0; p < planes_; ++p) spools_[p]->append(frames + (t * planes_ + p) * row_, row_bytes);
  frames_ += n;
}

void PlaneMajorNpyWriter::commit() {
  NpyWriter out(path_, DType::Float32, {planes_, frames_, row_});
  const uint64_t plane_bytes = static_cast<uint64_t>(frames_) * static_cast<uint64_t>(row_) * sizeof(float);
  std::vector<char> buf(size_t(1) << 20);
  for (auto& spool : spools_) {
    spool->finish_appends();
    uint64_t copied = 0;
    if (plane_bytes > 0) {
      std::FILE* f = std::fopen(spool->temp_path().c_str(), "rb");
      if (!f) throw Error(Error::Kind::Unreadable, path_ + ": cannot read back its temporary data: " + std::strerror(errno));
      for (size_t got; (got = std::fread(buf.data(), 1, buf.size(), f)) > 0; copied += got) out.append(buf.data(), got);
      const bool failed = std::ferror(f) != 0;
      std::fclose(f);
      if (failed) throw Error(Error::Kind::Unreadable, path_ + ": cannot read back its temporary data");
    }
    if (copied != plane_bytes)
      throw Error(Error::Kind::Runtime, path_ + ": a plane's temporary data holds " + std::to_string(copied) +
                                            " bytes, expected " + std::to_string(plane_bytes));
    spool->discard();
  }
  out.commit();
}

}  // namespace anitalker
