// A narrow RetinaFace checkpoint for tests (there is no tiny RetinaFace
// fixture): the released key layout (tests/data/face-sr/
// retinaface_resnet50_keys.txt) with every width divided by 16 (RetinaFace
// reads its widths from the shapes), zero weights, and head biases that set
// what is found whatever the image holds: no face at all, or one 16-px face
// per 32x32 cell of the stride-32 level (two faces in a 64x32 image, centred
// at (16, 16) and (48, 16), eyes at (-3, -2) and (3, -2) from the centre).
// Torch-free; shared by the element and CLI tests.
#pragma once

#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "checkpoint_writer.h"

namespace testutil {

// One line of tests/data/face-sr/retinaface_resnet50_keys.txt: "key
// AxBxC dtype" ("scalar" for no dimensions); '#' lines are comments.
struct KeyLine {
  std::string key, dtype;
  std::vector<int64_t> shape;
};

inline std::vector<KeyLine> read_key_lines(const std::string& keys_txt) {
  std::ifstream f(keys_txt);
  if (!f.good()) throw std::runtime_error("cannot read " + keys_txt);
  std::vector<KeyLine> out;
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream in(line);
    KeyLine k;
    std::string shape_s;
    in >> k.key >> shape_s >> k.dtype;
    if (shape_s != "scalar") {
      std::istringstream ss(shape_s);
      for (std::string d; std::getline(ss, d, 'x');) k.shape.push_back(std::stoll(d));
    }
    out.push_back(std::move(k));
  }
  return out;
}

inline void write_narrow_retinaface(const std::string& keys_txt, const std::string& path, bool two_faces) {
  std::vector<std::vector<float>> floats;
  std::vector<std::vector<int64_t>> longs;
  std::vector<anitalker::TensorToWrite> tensors;
  floats.reserve(500);  // the tensors point into these: no reallocation
  longs.reserve(500);
  for (KeyLine& k : read_key_lines(keys_txt)) {
    const std::string& key = k.key;
    const std::string& dtype = k.dtype;
    std::vector<int64_t>& shape = k.shape;
    const bool head = key.find("Head.") != std::string::npos;
    if (!head && !shape.empty()) shape[0] /= 16;             // output channels, BN sizes
    if (shape.size() == 4 && shape[1] != 3) shape[1] /= 16;  // input channels
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    if (dtype == "int64") {
      longs.emplace_back(n, 0);
      tensors.push_back({key, anitalker::DType::Int64, shape, longs.back().data()});
      continue;
    }
    std::vector<float> v(n, key.find("running_var") != std::string::npos ? 1.f : 0.f);
    if (head && shape.size() == 1) {
      // Bias of a 1x1 head conv: 2 anchors x per-anchor values; level 2
      // (stride 32) anchor 0 is the face when there is one.
      const bool face = two_faces && key[key.find("Head.") + 5] == '2';
      if (key.find("ClassHead") != std::string::npos) {
        for (int a = 0; a < 2; ++a) {
          v[2 * a] = (face && a == 0) ? -10 : 10;  // background logit
          v[2 * a + 1] = -v[2 * a];                // face logit
        }
      } else if (face && key.find("BboxHead") != std::string::npos) {
        // w = prior_w * exp(0.2 * l): 256 px -> 16 px.
        v[2] = v[3] = static_cast<float>(std::log(16.0 / 256.0) / 0.2);
      } else if (face && key.find("LandmarkHead") != std::string::npos) {
        // point = prior centre + 0.1 * l * 256 px.
        const float px[10] = {-3, -2, 3, -2, 0, 1, -2, 4, 2, 4};
        for (int i = 0; i < 10; ++i) v[i] = px[i] / 25.6f;
      }
    }
    floats.push_back(std::move(v));
    tensors.push_back({key, anitalker::DType::Float32, shape, floats.back().data()});
  }
  if (tensors.size() != 456) throw std::runtime_error(keys_txt + ": not 456 keys");
  anitalker::write_checkpoint(path, tensors);
}

}  // namespace testutil
