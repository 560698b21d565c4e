// An 8-bit RGB image in memory: the one picture type of libanitalker's
// torch-free parts (crop.h) and of image.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace anitalker {

// Rows of width * 3 bytes, R G B.
struct RgbImage {
  int width = 0, height = 0;
  std::vector<uint8_t> data;
  uint8_t* at(int x, int y) { return data.data() + (static_cast<size_t>(y) * width + x) * 3; }
  const uint8_t* at(int x, int y) const { return data.data() + (static_cast<size_t>(y) * width + x) * 3; }
};

// Decodes an image file (any format OpenCV reads) to 8-bit RGB: grey and
// palette are expanded, alpha is dropped (not composited), 16-bit is scaled
// down, EXIF orientation is not applied (as PIL's convert('RGB')).  Throws
// NotFound / Format naming the file.  (In image.cpp; declared here so that
// torch-free code can read pictures.)
RgbImage read_rgb_image(const std::string& path);

}  // namespace anitalker
