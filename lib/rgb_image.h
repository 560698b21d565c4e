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
  // read_rgb_image: the fraction of the file's pixels that were not opaque
  // (alpha below its maximum), whose alpha was dropped (0 without alpha).
  double transparent = 0;
  uint8_t* at(int x, int y) { return data.data() + (static_cast<size_t>(y) * width + x) * 3; }
  const uint8_t* at(int x, int y) const { return data.data() + (static_cast<size_t>(y) * width + x) * 3; }
};

// Whether a picture's EXIF orientation (a phone's photo is stored sideways
// with a tag that says how to turn it) is applied.
enum class Orientation {
  Stored,  // the pixels as stored, as PIL's Image.open().convert('RGB') gives
           // them: the reference demo's portrait
  Shown,   // turned as the tag says, as viewers show it and as cv2.imread
           // reads it in the authors' crop script: a photo to crop
};

// Decodes an image file (any format OpenCV reads) to 8-bit RGB: grey and
// palette are expanded, alpha is dropped (not composited), 16-bit is scaled
// down, EXIF orientation applied or not as `orientation` says (*tag, when
// given: the file's orientation tag, 0 when it has none).  Throws
// NotFound / Format naming the file.  (In image.cpp; declared here so that
// torch-free code can read pictures.)
RgbImage read_rgb_image(const std::string& path, Orientation orientation = Orientation::Stored, int* tag = nullptr);

}  // namespace anitalker
