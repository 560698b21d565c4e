#include "device.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/Context.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <cstdlib>
#include <thread>

#include "error.h"

namespace anitalker {

bool cuda_available() { return torch::cuda::is_available(); }

void synchronize(c10::Device device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

c10::Device parse_device(const std::string& name) {
  if (name == "cpu") return c10::Device(c10::kCPU);
  int index = -1;
  if (name == "cuda") {
    index = 0;
  } else if (name.compare(0, 5, "cuda:") == 0 && name.size() > 5 && name.size() < 9 &&
             name.find_first_not_of("0123456789", 5) == std::string::npos) {
    index = std::stoi(name.substr(5));
  } else {
    throw Error(Error::Kind::Usage, "device '" + name + "': expected cpu, cuda or cuda:N");
  }
  if (!torch::cuda::is_available())
    throw Error(Error::Kind::Runtime, "device '" + name + "': this build has no CUDA (LibTorch " TORCH_VERSION
                                      " without CUDA, or no GPU found); build with -Dtorch_root=<a CUDA LibTorch> or use device=cpu");
  const int count = static_cast<int>(torch::cuda::device_count());
  if (index >= count)
    throw Error(Error::Kind::Runtime, "device '" + name + "': only " + std::to_string(count) + " CUDA device(s) present");
  at::globalContext().setAllowTF32CuBLAS(false);
  at::globalContext().setAllowTF32CuDNN(false);
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

void set_num_threads(int n) {
  if (n <= 0) {
    const char* env = std::getenv("OMP_NUM_THREADS");
    n = env && std::atoi(env) > 0 ? std::atoi(env) : static_cast<int>(std::thread::hardware_concurrency());
  }
  if (n < 1) n = 1;
  if (at::get_num_threads() != n) at::set_num_threads(n);
}

std::string torch_info() {
  return std::string("LibTorch ") + TORCH_VERSION + ", " + std::to_string(at::get_num_threads()) + " threads, CUDA " +
         (torch::cuda::is_available() ? "yes, " + std::to_string(torch::cuda::device_count()) + " GPU(s)" : std::string("no"));
}

}  // namespace anitalker
