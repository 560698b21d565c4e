// Portrait images: decoding and the reference's preprocessing
// (spec/renderer.md 5): RGB, Pillow's bicubic resize (antialiased, 22-bit
// fixed point), then [-1,1] CHW float32.
#pragma once

#include <ATen/core/Tensor.h>

#include "rgb_image.h"

#include <cstdint>
#include <string>
#include <vector>

namespace anitalker {


// Decodes an image file (any format OpenCV reads) to 8-bit RGB: grey and
// palette are expanded, alpha is dropped (not composited), 16-bit is scaled
// down, EXIF orientation is not applied (as PIL's convert('RGB')).  Throws
// NotFound / Format naming the file.
RgbImage read_rgb_image(const std::string& path);

// Pillow's Image.resize(size, BICUBIC) on 8-bit RGB, bit-exact.
RgbImage pil_resize_bicubic(const RgbImage& in, int width, int height);

// (1,3,H,W) float32 in [-1,1]: (u/255 - 0.5) * 2.
at::Tensor rgb_to_tensor(const RgbImage& img);

// read_rgb_image, resize to size x size, rgb_to_tensor.
at::Tensor load_portrait(const std::string& path, int size);

}  // namespace anitalker
