// HuBERT's config.json (spec/audio-features.md 1): the fields the forward
// pass needs, checked.  Torch-free, so that the fuzzer can run it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace anitalker::hubert {

struct Config {
  int hidden = 0, layers = 0, heads = 0, intermediate = 0;
  std::vector<int> conv_dim, conv_kernel, conv_stride;
  int pos_kernel = 0, pos_groups = 0;
  double layer_norm_eps = 1e-5;
  std::string feat_extract_norm;  // "layer" or "group"
  bool conv_bias = true;
};

// Reads and checks config.json; errors name the file and the field.
Config read_config(const std::string& path);
// The same from bytes in memory; `name` is used in the errors.
Config parse_config(const char* data, size_t size, const std::string& name);

// Output frames of the conv encoder for n samples (0 when n is shorter than
// the receptive field): the layer-by-layer floor cascade, which for the
// released kernels is floor((n - 400) / 320) + 1.
int64_t frame_count(const Config& c, int64_t n);
// Samples that one output frame sees (400 for the released kernels).
int64_t receptive_field(const Config& c);

}  // namespace anitalker::hubert
