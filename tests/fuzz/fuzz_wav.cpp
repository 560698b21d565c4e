// libFuzzer target: the WAV reader (lib/wav.cpp: RIFF chunks, fmt and
// WAVE_FORMAT_EXTENSIBLE, every sample size) on arbitrary bytes, through a
// file as `anitalker features` and `bench latency` give it one.
#include <cmath>
#include <cstdint>
#include <string>

#include "error.h"
#include "fuzz_file.h"
#include "wav.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = fuzz_file(data, size);
  try {
    const anitalker::Audio a = anitalker::read_wav(path);
    if (a.sample_rate <= 0 || a.channels <= 0 || a.samples.size() > size) __builtin_trap();
    volatile float sum = 0;
    for (float v : a.samples) sum = sum + v;
  } catch (const anitalker::Error&) {
  }
  return 0;
}
