#include "state_dict.h"

#include <ATen/ATen.h>
#include <sys/mman.h>
#include <unistd.h>

#include "error.h"
#include "npy.h"

namespace anitalker {

namespace {
at::ScalarType scalar_type(DType t) {
  switch (t) {
    case DType::Float32: return at::kFloat;
    case DType::Float64: return at::kDouble;
    case DType::Float16: return at::kHalf;
    case DType::BFloat16: return at::kBFloat16;
    case DType::Int64: return at::kLong;
    case DType::Int32: return at::kInt;
    case DType::Int16: return at::kShort;
    case DType::Int8: return at::kChar;
    case DType::UInt8: return at::kByte;
    case DType::Bool: return at::kBool;
  }
  return at::kFloat;
}

// Maps the pages of a tensor of 1 MB and more in one call
// (MADV_POPULATE_READ, Linux 5.14; elsewhere nothing happens): its first
// read then takes no page fault per 64 KB.  In a virtual machine each
// fault traps to the hypervisor, and a network's load reads every weight
// once (packing).
void prefault(const TensorData& t) {
#ifdef MADV_POPULATE_READ
  int64_t last = 0;  // the last element's offset from the first
  for (size_t i = 0; i < t.shape.size(); ++i) {
    if (t.shape[i] == 0) return;
    last += (t.shape[i] - 1) * t.strides[i];
  }
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t from = reinterpret_cast<uintptr_t>(t.data()) & ~(page - 1);
  const uintptr_t to = reinterpret_cast<uintptr_t>(t.data()) + (last + 1) * static_cast<int64_t>(dtype_size(t.dtype));
  if (to > from + (size_t{1} << 20)) madvise(reinterpret_cast<void*>(from), to - from, MADV_POPULATE_READ);
#else
  (void)t;
#endif
}
}  // namespace

at::Tensor to_tensor(const TensorData& t) {
  // The deleter holds the storage (and through it the mapping) alive for as
  // long as LibTorch holds the tensor.
  auto keep = new std::shared_ptr<const Storage>(t.storage);
  void* base = const_cast<uint8_t*>(t.storage->data);
  const int64_t n_el = static_cast<int64_t>(t.storage->nbytes / dtype_size(t.dtype));
  at::Tensor whole = at::from_blob(
      base, {n_el}, [keep](void*) { delete keep; }, at::TensorOptions().dtype(scalar_type(t.dtype)));
  return whole.as_strided(t.shape, t.strides, t.offset);
}

at::Tensor read_npy_tensor(const std::string& path) { return to_tensor(read_npy(path)); }

namespace {
DType npy_dtype(const at::Tensor& c, const std::string& path) {
  DType dt;
  switch (c.scalar_type()) {
    case at::kFloat: dt = DType::Float32; break;
    case at::kDouble: dt = DType::Float64; break;
    case at::kHalf: dt = DType::Float16; break;
    case at::kLong: dt = DType::Int64; break;
    case at::kInt: dt = DType::Int32; break;
    case at::kShort: dt = DType::Int16; break;
    case at::kChar: dt = DType::Int8; break;
    case at::kByte: dt = DType::UInt8; break;
    case at::kBool: dt = DType::Bool; break;
    default: throw Error(Error::Kind::Usage, path + ": cannot write a " + std::string(c10::toString(c.scalar_type())) + " tensor as .npy");
  }
  return dt;
}
}  // namespace

void write_npy_tensor(const std::string& path, const at::Tensor& t) {
  const at::Tensor c = t.detach().cpu().contiguous();
  write_npy(path, npy_dtype(c, path), c.sizes().vec(), c.data_ptr());
}

std::string npy_tensor_bytes(const at::Tensor& t, const std::string& path) {
  const at::Tensor c = t.detach().cpu().contiguous();
  return npy_bytes(npy_dtype(c, path), c.sizes().vec(), c.data_ptr());
}

StateDict::StateDict(std::shared_ptr<const Checkpoint> ckpt, std::string prefix)
    : ckpt_(std::move(ckpt)), prefix_(std::move(prefix)), used_(std::make_shared<Used>()) {}

namespace {

bool any_key_under(const Checkpoint& c, const std::string& prefix) {
  for (const std::string& k : c.keys())
    if (k.compare(0, prefix.size(), prefix) == 0) return true;
  return false;
}

// What a file of the project's kinds looks like by its keys, for the error
// of a file given in another's place ("" when none fits).
std::string kind_by_keys(const Checkpoint& c) {
  if (any_key_under(c, "ema_model.")) return "a stage-2 (motion) checkpoint, stage2_*.ckpt";
  if (any_key_under(c, "lia.") || c.find("dec.direction.weight")) return "a stage-1 (renderer) checkpoint, stage1.ckpt";
  if (any_key_under(c, "encoder.layers.") && any_key_under(c, "feature_extractor.")) return "a HuBERT model";
  return "";
}

}  // namespace

const TensorData& StateDict::lookup(const std::string& key) const {
  const TensorData* t = ckpt_->find(prefix_ + key);
  if (!t) {
    std::string text = ckpt_->name() + ": missing tensor '" + prefix_ + key + "'";
    // Nothing under the prefix at all: the file is of another kind.  Say
    // which, when it is one of ours (stage1.ckpt and a stage-2 file swapped).
    if (!prefix_.empty() && !any_key_under(*ckpt_, prefix_)) {
      const std::string kind = kind_by_keys(*ckpt_);
      text += " (the file holds no " + prefix_ + "* tensors" + (kind.empty() ? "" : "; it looks like " + kind) + ")";
    }
    throw format_error(text);
  }
  return *t;
}

bool StateDict::has(const std::string& key) const { return ckpt_->find(prefix_ + key) != nullptr; }

std::vector<int64_t> StateDict::shape(const std::string& key) const { return lookup(key).shape; }

at::Tensor StateDict::get(const std::string& key, const std::vector<int64_t>& shape) const {
  const TensorData& t = lookup(key);
  bool ok = t.shape.size() == shape.size();
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || shape[i] == t.shape[i];
  if (!ok)
    throw format_error(ckpt_->name() + ": " + prefix_ + key + ": expected shape " + shape_string(shape) + ", got " +
                       shape_string(t.shape));
  {
    std::lock_guard<std::mutex> lock(used_->mu);
    used_->keys.insert(prefix_ + key);
  }
  prefault(t);
  return to_tensor(t);
}

at::Tensor StateDict::get_float(const std::string& key, const std::vector<int64_t>& shape) const {
  at::Tensor t = get(key, shape);
  return t.scalar_type() == at::kFloat ? t : t.to(at::kFloat);
}

StateDict StateDict::sub(const std::string& prefix) const {
  StateDict s(*this);
  s.prefix_ = prefix_ + prefix;
  return s;
}

std::vector<std::string> StateDict::keys() const {
  std::vector<std::string> out;
  for (const std::string& k : ckpt_->keys())
    if (k.compare(0, prefix_.size(), prefix_) == 0) out.push_back(k.substr(prefix_.size()));
  return out;
}

std::vector<std::string> StateDict::unused() const {
  std::lock_guard<std::mutex> lock(used_->mu);
  std::vector<std::string> out;
  for (const std::string& k : ckpt_->keys())
    if (k.compare(0, prefix_.size(), prefix_) == 0 && !used_->keys.count(k)) out.push_back(k.substr(prefix_.size()));
  return out;
}

}  // namespace anitalker
