// libFuzzer target: HuBERT's config.json parser on arbitrary bytes, then the
// frame arithmetic on whatever it accepts.
#include <cstdint>
#include <cstring>

#include "error.h"
#include "hubert_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    anitalker::hubert::Config c = anitalker::hubert::parse_config(reinterpret_cast<const char*>(data), size, "fuzz.json");
    volatile int64_t n = anitalker::hubert::receptive_field(c);
    n = anitalker::hubert::frame_count(c, 16000) + anitalker::hubert::frame_count(c, INT32_MAX);
    (void)n;
  } catch (const anitalker::Error&) {
  }
  return 0;
}
