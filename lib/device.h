// The one device abstraction: "cpu", "cuda" or "cuda:N" to a c10::Device,
// with an error that says why a device cannot be used.
#pragma once

#include <c10/core/Device.h>

#include <string>

namespace anitalker {

// Throws a Usage error for a malformed name, and a Runtime error when CUDA is
// asked for but this build or machine has none (or not that many GPUs).
c10::Device parse_device(const std::string& name);

// True when this build links a LibTorch with CUDA and a GPU is present.
bool cuda_available();

// One line on the LibTorch build: version, threads, CUDA.
std::string torch_info();

}  // namespace anitalker
