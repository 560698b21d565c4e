// Portrait images: decoding and the reference's preprocessing
// (spec/renderer.md 5): RGB, Pillow's bicubic resize (antialiased, 22-bit
// fixed point), then [-1,1] CHW float32.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "crop.h"
#include "rgb_image.h"

#include <cstdint>
#include <string>
#include <vector>

namespace anitalker {


// Pillow's Image.resize(size, BICUBIC) on 8-bit RGB, bit-exact.
RgbImage pil_resize_bicubic(const RgbImage& in, int width, int height);

// (1,3,H,W) float32 in [-1,1]: (u/255 - 0.5) * 2.
at::Tensor rgb_to_tensor(const RgbImage& img);

// read_rgb_image, resize to size x size, rgb_to_tensor.
at::Tensor load_portrait(const std::string& path, int size);

// The faces RetinaFace finds in a picture (threshold 0.97, as gfpgansr),
// by descending score.  `detector` is detection_Resnet50_Final.pth.  A box
// that does not overlap the picture (or is not finite) is left out: it is
// no face of the picture, and as "the largest" it would stop the crop of
// a face that is there.  A picture whose longer side exceeds
// kDetectMaxSide is searched on a copy scaled down to it, the boxes given
// in the picture's pixels.
constexpr int kDetectMaxSide = 1920;
std::vector<crop::Box> detect_faces(const std::string& detector, const RgbImage& picture, c10::Device device);

// A portrait as the networks see it and where it came from: the picture
// read, the square chosen by `spec` (lib/crop.h; with crop auto and no face
// box, RetinaFace from `detector` finds the faces), the square cut (or the
// whole picture for crop none), resized to size x size as load_portrait.
struct PreparedPortrait {
  RgbImage picture;
  crop::Choice choice;
  at::Tensor tensor;  // (1,3,size,size) in [-1,1]
};
PreparedPortrait prepare_portrait(const std::string& path, int size, const crop::Spec& spec,
                                  const std::string& detector, c10::Device device);

}  // namespace anitalker
