// Full-size networks with random weights, written in the released layouts,
// for the benchmarks (`anitalker bench ...`): they load through the same
// code as the real files.
#pragma once

#include <random>
#include <string>
#include <vector>

#include <c10/core/Device.h>

#include "checkpoint_writer.h"

namespace bench {

// Tensors to write, with the memory that holds them.
struct RandomCheckpoint {
  std::vector<anitalker::TensorToWrite> tensors;
  std::vector<std::vector<float>> buffers;
  std::mt19937 rng{1234};
  // init: "randn" (N(0, scale^2)), "zero", "one", "blur" / "blur4" (the
  // [1,3,3,1] kernel / 64, times 4 after upsampling), "uniform" (+-scale).
  void add(const std::string& key, std::vector<int64_t> shape, const char* init, float scale = 1.f);
  int64_t values() const;
  void write(const std::string& path) { anitalker::write_checkpoint(path, tensors); }
};

// chinese-hubert-large's layout (config.json + pytorch_model.bin) in `dir`,
// with `layers` transformer layers (24 released).
void write_hubert_large(const std::string& dir, int layers, RandomCheckpoint* keep = nullptr);

// stage1.ckpt's layout: 256x256, style 512, motion 20, channels 64..512.
void write_stage1(const std::string& path);

// Float32 GEMM throughput of this machine (a 2048x2048 matmul, median of 5),
// printed as the benchmarks' reference line; in GFLOP/s.
double gemm_gflops(c10::Device dev);

// A fresh temporary folder or file name under /tmp.
std::string temp_path(const char* stem);

}  // namespace bench
