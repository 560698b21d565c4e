// libFuzzer target: the portrait header reader (lib/image_header.cpp: PNG
// chunks, JPEG markers and EXIF, WebP, BMP, ISO media brands, MPEG-TS) on
// arbitrary bytes, through a file as the elements and tools give it one.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "error.h"
#include "image_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const int fd = memfd_create("fuzz-image", 0);
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  if (fd < 0 || ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)))
    __builtin_trap();
  try {
    const anitalker::ImageHeader h = anitalker::read_image_header(path);
    if (h.orientation < 0 || h.orientation > 8) __builtin_trap();
    anitalker::check_image_header(path);
  } catch (const anitalker::Error&) {
  }
  return 0;
}
