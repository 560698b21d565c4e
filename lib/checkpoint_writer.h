// Writes a state dict in torch.save's zip format (what torch.load reads):
// used by the benchmarks to make full-size files and by tests to make damaged
// ones.  Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tensor_data.h"

namespace anitalker {

struct TensorToWrite {
  std::string key;
  DType dtype = DType::Float32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // C order, numel * dtype_size bytes
};

// An OrderedDict of the tensors, or {wrapper: OrderedDict} when `wrapper` is
// not empty (GFPGAN's 'params_ema' layout).  Written to a temporary file and
// renamed, so a failure leaves nothing behind.  Files up to 4 GiB.
void write_checkpoint(const std::string& path, const std::vector<TensorToWrite>& tensors,
                      const std::string& wrapper = "");

// The parts, for tests that need to damage one of them:
// the data.pkl of such a state dict (storage i is zip entry "data/i") ...
std::string state_dict_pickle(const std::vector<TensorToWrite>& tensors, const std::string& wrapper = "");
// ... and a torch.save-style zip of the given entries ("<stem>/<name>"),
// stored, 64-byte aligned.
struct ZipEntryToWrite {
  std::string name;
  const void* data = nullptr;
  uint64_t size = 0;
};
void write_torch_zip(const std::string& path, const std::string& stem, const std::vector<ZipEntryToWrite>& entries);

}  // namespace anitalker
