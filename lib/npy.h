// NumPy .npy files (format 1.0 to 3.0, little-endian or single-byte dtypes):
// the one reader and writer of the project.  Torch-free.
#pragma once

#include <string>
#include <vector>

#include "output_file.h"
#include "tensor_data.h"

namespace anitalker {

// Reads a .npy file (mapped, not copied).  Fortran order comes back as a
// strided view.  Throws NotFound / Unreadable / Format naming the file.
TensorData read_npy(const std::string& path);
TensorData parse_npy(std::shared_ptr<const Storage> bytes, const std::string& name);

// Writes C-ordered `data` as a format 1.0 .npy file.  Writes to a temporary
// file beside `path` and renames it, so a failure leaves no partial file.
void write_npy(const std::string& path, DType dtype, const std::vector<int64_t>& shape, const void* data);

// The whole file as bytes, in memory (what write_npy writes).
std::string npy_bytes(DType dtype, const std::vector<int64_t>& shape, const void* data);
// Its header alone (the data follows, C order).
std::string npy_header(DType dtype, const std::vector<int64_t>& shape);

// A .npy file written as its rows are made (frames of a long clip, never
// all in memory): the header of `shape` at once, then append() the data in
// C order, then commit(), which refuses a count other than the shape's.
// Through a temporary file beside `path` (OutputFile): a failure, an
// exception or a signal before commit() leaves no file.
class NpyWriter {
 public:
  NpyWriter(const std::string& path, DType dtype, const std::vector<int64_t>& shape);
  void append(const void* data, size_t bytes);
  void commit();

 private:
  OutputFile out_;
  size_t expected_ = 0, written_ = 0;
};

// Writes `bytes` to `path` through a temporary file and a rename.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace anitalker
