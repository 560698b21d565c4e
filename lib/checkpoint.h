// Opens checkpoints as published: torch.save zip archives (stage1.ckpt,
// stage2_*.ckpt, GFPGANv1.4.pth, HuBERT's pytorch_model.bin) and safetensors
// files.  The file is mapped, never copied: every tensor is a view on the
// mapping.  Nested dicts are flattened with dots ("params_ema.conv.weight");
// objects that are not tensors (hyper-parameters, argparse.Namespace) are
// skipped.  Torch-free: see state_dict.h for typed access as at::Tensor.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "tensor_data.h"

namespace anitalker {

class Checkpoint {
 public:
  enum class Format { TorchZip, Safetensors };

  // Throws anitalker::Error (NotFound, Unreadable, Format) naming the file and
  // the entry or key at fault.
  static std::shared_ptr<const Checkpoint> open(const std::string& path);
  // The same from bytes in memory (used by the fuzzers); `name` stands in for
  // the file name in messages.
  static std::shared_ptr<const Checkpoint> from_bytes(std::shared_ptr<const Storage> bytes, const std::string& name);

  const std::string& name() const { return name_; }
  Format format() const { return format_; }
  size_t size() const { return keys_.size(); }
  const std::vector<std::string>& keys() const { return keys_; }  // in file order
  const TensorData* find(const std::string& key) const;
  const TensorData& at(const std::string& key) const;  // throws, naming file and key

 private:
  void add(const std::string& key, TensorData t);
  void load_torch_zip(const std::shared_ptr<const Storage>& bytes);
  void load_safetensors(const std::shared_ptr<const Storage>& bytes);

  std::string name_;
  Format format_ = Format::TorchZip;
  std::vector<std::string> keys_;
  std::unordered_map<std::string, TensorData> tensors_;
};

}  // namespace anitalker
