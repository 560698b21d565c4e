// Full-size networks with random weights, written in the released layouts,
// for the benchmarks (`anitalker bench ...`): they load through the same
// code as the real files.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <c10/core/Device.h>

#include "checkpoint_writer.h"
#include "motion.h"

namespace bench {

// Tensors to write, with the memory that holds them.
struct RandomCheckpoint {
  std::vector<anitalker::TensorToWrite> tensors;
  std::vector<std::vector<float>> buffers;
  std::mt19937 rng{1234};
  // init: "randn" (N(0, scale^2)), "zero", "one", "blur" / "blur4" (the
  // [1,3,3,1] kernel / 64, times 4 after upsampling), "uniform" (+-scale).
  void add(const std::string& key, std::vector<int64_t> shape, const char* init, float scale = 1.f);
  // An int64 scalar (BatchNorm's num_batches_tracked).
  void add_int64(const std::string& key, int64_t value);
  std::deque<int64_t> ints;  // stable addresses
  int64_t values() const;
  void write(const std::string& path) { anitalker::write_checkpoint(path, tensors); }
};

// chinese-hubert-large's layout (config.json, preprocessor_config.json and
// pytorch_model.bin) in `dir`; the defaults are the released sizes.
struct HubertShape {
  int layers = 24, heads = 16;
  int64_t conv = 512, hidden = 1024, ffn = 4096, pos_kernel = 128, pos_groups = 16;
};
void write_hubert(const std::string& dir, const HubertShape& shape, RandomCheckpoint* keep = nullptr);
// The released sizes with `layers` transformer layers.
void write_hubert_large(const std::string& dir, int layers, RandomCheckpoint* keep = nullptr);

// stage1.ckpt's layout; the defaults are the released sizes: 256x256,
// style 512, motion 20, channels 64 (256x256) .. 512 (32x32 and below).
// Levels of 8x8 and below always carry the style width (the encoder's HAL
// adds them into the style code).
struct Stage1Shape {
  int64_t size = 256, style = 512, motion = 20;
  // The standard deviation of the ToFlow convolutions' random weights (1:
  // as every other weight).  Smaller gives smaller flows, the warps moving
  // the portrait's features less far (bench render --flow-scale).
  float flow_scale = 1.f;
  int64_t (*channels)(int64_t res) = [](int64_t res) -> int64_t {
    return res >= 256 ? 64 : res == 128 ? 128 : res == 64 ? 256 : 512;
  };
};
void write_stage1(const std::string& path, const Stage1Shape& shape);
void write_stage1(const std::string& path);

// A stage-2 checkpoint of the released layout and full size (spec/motion.md
// sections 1 and 2: hubert 25 x 1024, speech 512, projections 128, decoder
// 1024 in 2 blocks, LSTMs 2 x 128, motion 20, start 512): "x_T"
// [32,3,256,256], then "model.*" and "ema_model.*" with the same values (the
// loader reads only ema_model.*).  Weights uniform +-1/sqrt(fan_in) as
// PyTorch initialises them, norms at their defaults.  Returns the number of
// tensors written (spec 1: HA 507, HP 547, HF 627, MP 229, MF 309).
size_t write_stage2(const std::string& path, anitalker::motion::Variant v);
// The same with other widths (the defaults are the released ones).
struct Stage2Shape {
  int64_t layers = 25, hubert = 1024, speech = 512, proj = 128, motion = 20, start = 512, lstm = 128, mfcc_mid = 256;
  std::vector<int64_t> x_T = {32, 3, 256, 256};
};
size_t write_stage2(const std::string& path, anitalker::motion::Variant v, const Stage2Shape& shape);

// GFPGANv1Clean v1.4 (512, style 512, channel multiplier 2) in the
// {'params_ema': ...} layout, ParseNet (512, 19 classes) and
// RetinaFace-ResNet50 with the "module." prefix (spec/face-sr.md appendices
// A-C), random weights; each returns the FLOPs of one call (RetinaFace on a
// size x size frame).
double write_gfpgan(const std::string& path);
double write_parsenet(const std::string& path);
double write_retinaface(const std::string& path, int64_t size);

// The machine's float32 roof, measured in the same run as each benchmark:
// a 2048x2048 matmul (BLAS; OpenBLAS keeps the kernels OPENBLAS_CORETYPE
// chooses) and a 3x3 convolution 512->512 on 4 images of 32x32 (oneDNN on
// the CPU), each the best of 5 runs (a peak).  Both are printed; the larger,
// in GFLOP/s, is the denominator of the benchmarks' "of roof" column.
double roof_gflops(c10::Device dev);

// Runs `fn` once under LibTorch's profiler and prints the ops by self time
// (a note instead in builds without the profiler, ANITALKER_NO_PROFILER).
void profile(const std::function<void()>& fn);

// Removes a file or a folder with what is in it (the temporary models).
void remove_tree(const std::string& path);

// A fresh temporary folder or file name under /tmp.
std::string temp_path(const char* stem);

}  // namespace bench
