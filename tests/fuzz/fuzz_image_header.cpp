// libFuzzer target: the portrait header reader (lib/image_header.cpp: PNG
// chunks, JPEG markers and EXIF, WebP, BMP, ISO media brands, MPEG-TS) on
// arbitrary bytes, through a file as the elements and tools give it one.
#include <cstdint>
#include <string>

#include "error.h"
#include "fuzz_file.h"
#include "image_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = fuzz_file(data, size);
  try {
    const anitalker::ImageHeader h = anitalker::read_image_header(path);
    if (h.orientation < 0 || h.orientation > 8) __builtin_trap();
    anitalker::check_image_header(path);
  } catch (const anitalker::Error&) {
  }
  return 0;
}
