// For libFuzzer targets whose reader takes a path: the input written to one
// memfd of the process, named /proc/self/fd/N (a regular file, re-opened by
// the reader as any file is).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>

inline const std::string& fuzz_file(const uint8_t* data, size_t size) {
  static const int fd = memfd_create("fuzz-input", 0);
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  if (fd < 0 || ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)))
    __builtin_trap();
  return path;
}
