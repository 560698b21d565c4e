// libFuzzer target: the checkpoint reader (torch.save zip + pickle,
// safetensors) on arbitrary bytes.  Every input must end in a tensor list or
// an anitalker::Error; anything else (a crash, a sanitizer report, another
// exception, a hang) is a finding.  Built with clang; torch-free.
#include <cstring>

#include "checkpoint.h"
#include "error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exact-size heap copy, so reads past the end are caught by ASan.
  auto buf = std::shared_ptr<uint8_t>(new uint8_t[size ? size : 1], std::default_delete<uint8_t[]>());
  if (size) std::memcpy(buf.get(), data, size);
  auto s = std::make_shared<anitalker::Storage>();
  s->data = buf.get();
  s->nbytes = size;
  s->owner = buf;
  try {
    auto ckpt = anitalker::Checkpoint::from_bytes(s, "fuzz");
    for (const std::string& k : ckpt->keys()) {
      const anitalker::TensorData& t = ckpt->at(k);
      if (t.numel() <= 4096) {
        volatile double sum = 0;
        for (double v : t.to_doubles()) sum = sum + v;
      }
    }
  } catch (const anitalker::Error&) {
  }
  return 0;
}
