// write_narrow_retinaface KEYS.txt OUT.pth two|none: the narrow RetinaFace of
// tests/narrow_retinaface.h as a file, for the shell tests (docs' commands
// with `--crop auto`): "two" finds one 16-px face per 32x32 cell (the
// largest is the first), "none" finds nothing.
#include <cstdio>
#include <exception>
#include <string>

#include "../narrow_retinaface.h"

int main(int argc, char** argv) {
  if (argc != 4 || (std::string(argv[3]) != "two" && std::string(argv[3]) != "none")) {
    std::fprintf(stderr, "usage: write_narrow_retinaface KEYS.txt OUT.pth two|none\n");
    return 2;
  }
  try {
    testutil::write_narrow_retinaface(argv[1], argv[2], std::string(argv[3]) == "two");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "write_narrow_retinaface: %s\n", e.what());
    return 1;
  }
  return 0;
}
