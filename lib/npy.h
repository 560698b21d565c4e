// NumPy .npy files (format 1.0 to 3.0, little-endian or single-byte dtypes):
// the one reader and writer of the project.  Torch-free.
#pragma once

#include <memory>
#include <string>
#include <utility>
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

// A float32 .npy file of shape [planes, T, row] whose T is known only at
// the end, given frame by frame: append() takes n frames of [planes, row]
// each ([n, planes, row], as a stream makes HuBERT's states), commit()
// writes the file.  Each plane's rows wait in a temporary file of their own
// (an OutputFile beside `path`, never committed: unnamed where the file
// system allows, removed by an error or a signal; in TMPDIR or /tmp when
// `path` is a device or a pipe), and commit() copies them out plane by
// plane.  Memory: one append and a 1 MiB buffer, however long the clip;
// disk: the data twice until commit().
class PlaneMajorNpyWriter {
 public:
  PlaneMajorNpyWriter(const std::string& path, int64_t planes, int64_t row);
  void append(const float* frames, int64_t n);
  void commit();
  int64_t frames() const { return frames_; }

 private:
  std::string path_;
  int64_t planes_, row_, frames_ = 0;
  std::vector<std::unique_ptr<OutputFile>> spools_;
};

// Writes `bytes` to `path` through a temporary file and a rename.
void write_file_atomic(const std::string& path, const std::string& bytes);
// Several files as one set: each written under a temporary name first, then
// all renamed; a failure on the way leaves none of them (path, bytes).
void write_files_atomic(const std::vector<std::pair<std::string, std::string>>& files);

}  // namespace anitalker
