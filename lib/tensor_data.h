// Tensors as they lie in a file, before LibTorch sees them: a dtype, a shape,
// strides and an offset into a shared storage (a mapped file region or an
// owned buffer).  This header has no torch in it, so the readers, the fuzzers
// and the CLI's `inspect` build without LibTorch's headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace anitalker {

enum class DType { Float32, Float64, Float16, BFloat16, Int64, Int32, Int16, Int8, UInt8, Bool };

// numpy's name of a dtype ("float32", "int64", ...; "bfloat16" has no numpy
// name and keeps PyTorch's).
const char* dtype_name(DType t);
size_t dtype_size(DType t);

// A contiguous run of bytes that tensors index into.  `owner` keeps the memory
// alive: the mapping of the file, or a heap buffer.
struct Storage {
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  std::shared_ptr<const void> owner;
};

struct TensorData {
  DType dtype = DType::Float32;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // in elements
  int64_t offset = 0;            // in elements, from storage->data
  std::shared_ptr<const Storage> storage;

  int64_t numel() const;
  bool is_contiguous() const;
  const uint8_t* data() const { return storage->data + offset * static_cast<int64_t>(dtype_size(dtype)); }
  // The elements in C order as doubles (for tests and spot checks; any dtype).
  std::vector<double> to_doubles() const;
};

std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& shape);

// "[3, 20]"
std::string shape_string(const std::vector<int64_t>& shape);

// Checks that a shape read from a file has no negative size and that its
// element count fits in int64 (with room for byte counts); throws a Format
// error naming `what` otherwise.
void check_shape(const std::vector<int64_t>& shape, const std::string& what);

// Checks that every element the view can address lies inside its storage;
// throws a Format error naming `what` otherwise.
void check_view_bounds(const TensorData& t, const std::string& what);

// The index of the first NaN or inf among n floats, or -1.
int64_t first_non_finite(const float* data, size_t n);

// Throws a Format error naming `what` when one of the floats of a
// C-ordered tensor of `shape` is NaN or inf: "WHAT: value [i, j] is nan;
// expected finite numbers".  Data read from a file is checked so before a
// network turns one bad value into a whole output of NaN.
void require_finite(const float* data, const std::vector<int64_t>& shape, const std::string& what);

// A read-only, copy-on-write mapping of a whole file.  Throws NotFound or
// Unreadable naming the file (and what it is when it is not a regular
// file; a FIFO is refused at once, not waited on).
std::shared_ptr<const Storage> map_file(const std::string& path);

// What a file of `st_mode` that is not a regular file is, for messages:
// "a folder", "a pipe (FIFO)", "a device", "a socket", else "not a file".
const char* file_kind(unsigned int st_mode);

}  // namespace anitalker
