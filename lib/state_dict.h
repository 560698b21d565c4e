// Loading by name: every network takes its weights through a StateDict.
// get(key, shape) returns an at::Tensor that views the mapped file (no copy)
// after checking the shape, its pages of the file mapped in one call (a
// network reads every weight it takes; faulting them in one by one cost
// more than the reading); sub(prefix) narrows to a module; unused() lists the
// keys nobody asked for, so a loader can report training-only leftovers.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "checkpoint.h"

namespace anitalker {

// The tensor as an at::Tensor sharing the checkpoint's memory (CPU).
at::Tensor to_tensor(const TensorData& t);

// .npy files as at::Tensor (through npy.h): read (mapped) and write (any
// device, any layout; written C-ordered, atomically).
at::Tensor read_npy_tensor(const std::string& path);
void write_npy_tensor(const std::string& path, const at::Tensor& t);
// The .npy file's bytes of `t` (for a caller that writes several files as
// one set); `path` names it in errors.
std::string npy_tensor_bytes(const at::Tensor& t, const std::string& path);

class StateDict {
 public:
  explicit StateDict(std::shared_ptr<const Checkpoint> ckpt, std::string prefix = "");

  // -1 in `shape` matches any size.  Throws a Format error such as
  // "stage1.ckpt: lia.dec.direction.weight: expected shape [512, *], got [512]".
  at::Tensor get(const std::string& key, const std::vector<int64_t>& shape) const;
  // The same, converted to float32 (a copy only if stored otherwise).
  at::Tensor get_float(const std::string& key, const std::vector<int64_t>& shape) const;
  // Only the shape, for reading widths before loading.
  std::vector<int64_t> shape(const std::string& key) const;
  bool has(const std::string& key) const;

  // A view on the keys under `prefix` + "." style names; shares the record of
  // used keys with this one.
  StateDict sub(const std::string& prefix) const;
  // Keys under this view's prefix (without it), in file order.
  std::vector<std::string> keys() const;
  // Keys under this view's prefix that no get() has asked for.
  std::vector<std::string> unused() const;

  const std::string& prefix() const { return prefix_; }
  const Checkpoint& checkpoint() const { return *ckpt_; }

 private:
  struct Used {
    std::mutex mu;
    std::set<std::string> keys;
  };
  const TensorData& lookup(const std::string& key) const;

  std::shared_ptr<const Checkpoint> ckpt_;
  std::string prefix_;
  std::shared_ptr<Used> used_;
};

}  // namespace anitalker
