// libFuzzer target: a pose file (.npy [N, 3] in degrees) on arbitrary bytes.
#include <cstdint>
#include <cstring>
#include <memory>

#include "error.h"
#include "npy.h"
#include "pose_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto buf = std::shared_ptr<uint8_t>(new uint8_t[size ? size : 1], std::default_delete<uint8_t[]>());
  if (size) std::memcpy(buf.get(), data, size);
  auto s = std::make_shared<anitalker::Storage>();
  s->data = buf.get();
  s->nbytes = size;
  s->owner = buf;
  try {
    anitalker::TensorData t = anitalker::parse_npy(s, "fuzz.npy");
    if (t.numel() <= (1 << 16)) {
      std::vector<float> v = anitalker::pose_values(t, "fuzz.npy");
      volatile float sum = 0;
      for (float x : v) sum = sum + x;
    }
  } catch (const anitalker::Error&) {
  }
  return 0;
}
