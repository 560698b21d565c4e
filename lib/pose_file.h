// The demo's pose file (--pose_driven_path): .npy [N, 3] yaw, pitch, roll in
// degrees per frame.  Torch-free checks, so that the fuzzer can run them;
// anitalker::motion::read_pose_file (motion_driver.h) makes the tensor.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tensor_data.h"

namespace anitalker {

// The N x 3 values of a parsed .npy, row after row, as float.  Throws a
// Format error naming `name` for any other shape, N = 0, or a NaN or inf
// (with its row).
std::vector<float> pose_values(const TensorData& t, const std::string& name);

}  // namespace anitalker
