#include "checkpoint_writer.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "error.h"
#include "output_file.h"

namespace anitalker {

namespace {

uint32_t crc32_update(uint32_t crc, const uint8_t* p, size_t n) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

const char* storage_class(DType t) {
  switch (t) {
    case DType::Float32: return "FloatStorage";
    case DType::Float64: return "DoubleStorage";
    case DType::Float16: return "HalfStorage";
    case DType::BFloat16: return "BFloat16Storage";
    case DType::Int64: return "LongStorage";
    case DType::Int32: return "IntStorage";
    case DType::Int16: return "ShortStorage";
    case DType::Int8: return "CharStorage";
    case DType::UInt8: return "ByteStorage";
    case DType::Bool: return "BoolStorage";
  }
  return "FloatStorage";
}

// Pickle protocol 2, the opcodes torch.save uses.
struct PickleOut {
  std::string b;
  void op(char c) { b += c; }
  void str(const std::string& s) {
    op('X');
    put32(static_cast<uint32_t>(s.size()));
    b += s;
  }
  void global(const char* mod, const char* name) {
    op('c');
    b += mod;
    b += '\n';
    b += name;
    b += '\n';
  }
  void put32(uint32_t v) {
    for (int i = 0; i < 4; ++i) b += static_cast<char>((v >> (8 * i)) & 0xff);
  }
  void integer(int64_t v) {
    if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');
      put32(static_cast<uint32_t>(static_cast<int32_t>(v)));
    } else {
      op('\x8a');
      b += '\x08';
      for (int i = 0; i < 8; ++i) b += static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff);
    }
  }
  void int_tuple(const std::vector<int64_t>& v) {
    op('(');
    for (int64_t x : v) integer(x);
    op('t');
  }
  void ordered_dict() {
    global("collections", "OrderedDict");
    op(')');
    op('R');
  }
};

class ZipOut {
 public:
  explicit ZipOut(FILE* f) : f_(f) {}
  void add(const std::string& name, const void* data, uint64_t size) {
    if (pos_ + size + 4096 > 0xffffffffull) throw Error(Error::Kind::Usage, "checkpoint writer: files over 4 GiB are not supported");
    const uint8_t* p = static_cast<const uint8_t*>(data);
    const uint32_t crc = crc32_update(0, p, static_cast<size_t>(size));
    // Pad the local header's extra field so the data starts on 64 bytes, as torch.save does.
    const uint64_t base = pos_ + 30 + name.size() + 4;
    const uint16_t pad = static_cast<uint16_t>((64 - base % 64) % 64);
    std::string h;
    put(h, 0x04034b50, 4);
    put(h, 0, 2);  // version
    put(h, 0, 2);  // flags
    put(h, 0, 2);  // stored
    put(h, 0, 4);  // time, date
    put(h, crc, 4);
    put(h, size, 4);
    put(h, size, 4);
    put(h, name.size(), 2);
    put(h, 4 + pad, 2);
    h += name;
    put(h, 0x4246, 2);  // "FB": PyTorch's padding field
    put(h, pad, 2);
    h.append(pad, 'Z');
    central_.push_back(Central{name, crc, size, pos_});
    write(h.data(), h.size());
    write(p, static_cast<size_t>(size));
  }
  void finish() {
    const uint64_t cd_off = pos_;
    std::string cd;
    for (const Central& c : central_) {
      put(cd, 0x02014b50, 4);
      put(cd, 0, 2);
      put(cd, 0, 2);
      put(cd, 0, 2);
      put(cd, 0, 2);
      put(cd, 0, 4);
      put(cd, c.crc, 4);
      put(cd, c.size, 4);
      put(cd, c.size, 4);
      put(cd, c.name.size(), 2);
      put(cd, 0, 2);
      put(cd, 0, 2);
      put(cd, 0, 2);
      put(cd, 0, 2);
      put(cd, 0, 4);
      put(cd, c.offset, 4);
      cd += c.name;
    }
    const uint64_t cd_size = cd.size();
    put(cd, 0x06054b50, 4);
    put(cd, 0, 4);
    put(cd, central_.size(), 2);
    put(cd, central_.size(), 2);
    put(cd, cd_size, 4);
    put(cd, cd_off, 4);
    put(cd, 0, 2);
    write(cd.data(), cd.size());
  }

 private:
  struct Central {
    std::string name;
    uint32_t crc;
    uint64_t size, offset;
  };
  static void put(std::string& s, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
  }
  void write(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f_) != n) throw Error(Error::Kind::Unreadable, std::string("write failed: ") + std::strerror(errno));
    pos_ += n;
  }
  FILE* f_;
  uint64_t pos_ = 0;
  std::vector<Central> central_;
};

}  // namespace

std::string state_dict_pickle(const std::vector<TensorToWrite>& tensors, const std::string& wrapper) {
  PickleOut pk;
  pk.op('\x80');
  pk.b += '\x02';
  if (!wrapper.empty()) {
    pk.op('}');
    pk.str(wrapper);
  }
  pk.ordered_dict();
  pk.op('(');
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorToWrite& t = tensors[i];
    int64_t n = 1;
    for (int64_t s : t.shape) n *= s;
    pk.str(t.key);
    pk.global("torch._utils", "_rebuild_tensor_v2");
    pk.op('(');
    pk.op('(');
    pk.str("storage");
    pk.global("torch", storage_class(t.dtype));
    pk.str(std::to_string(i));
    pk.str("cpu");
    pk.integer(n);
    pk.op('t');
    pk.op('Q');
    pk.integer(0);
    pk.int_tuple(t.shape);
    pk.int_tuple(contiguous_strides(t.shape));
    pk.op('\x89');
    pk.ordered_dict();
    pk.op('t');
    pk.op('R');
  }
  pk.op('u');
  if (!wrapper.empty()) pk.op('s');
  pk.op('.');
  return pk.b;
}

void write_torch_zip(const std::string& path, const std::string& stem, const std::vector<ZipEntryToWrite>& entries) {
  // Through the project's one way of writing outputs (lib/output_file.h):
  // an unnamed or hidden temporary file, put in place whole at the end.
  OutputFile out(path);
  FILE* f = std::fopen(out.temp_path().c_str(), "wb");
  if (!f) throw Error(Error::Kind::Unreadable, path + ": cannot write: " + std::strerror(errno));
  try {
    ZipOut zip(f);
    for (const ZipEntryToWrite& e : entries) zip.add(stem + "/" + e.name, e.data, e.size);
    zip.finish();
    const int rc = std::fclose(f);
    f = nullptr;
    if (rc != 0) throw Error(Error::Kind::Unreadable, path + ": cannot write: " + std::strerror(errno));
  } catch (...) {
    if (f) std::fclose(f);
    throw;  // out's destructor removes the temporary file
  }
  out.commit();
}

void write_checkpoint(const std::string& path, const std::vector<TensorToWrite>& tensors, const std::string& wrapper) {
  const std::string pkl = state_dict_pickle(tensors, wrapper);
  // The archive's folder is the file's stem, as torch.save names it.
  std::string stem = path.substr(path.find_last_of('/') + 1);
  if (stem.find('.') != std::string::npos) stem = stem.substr(0, stem.find('.'));
  if (stem.empty()) stem = "archive";
  std::vector<ZipEntryToWrite> entries{{"data.pkl", pkl.data(), pkl.size()}};
  for (size_t i = 0; i < tensors.size(); ++i) {
    int64_t n = 1;
    for (int64_t s : tensors[i].shape) n *= s;
    entries.push_back({"data/" + std::to_string(i), tensors[i].data, static_cast<uint64_t>(n) * dtype_size(tensors[i].dtype)});
  }
  entries.push_back({"version", "3\n", 2});
  write_torch_zip(path, stem, entries);
}

}  // namespace anitalker
