// Pose files (pose_file.h).
#include "pose_file.h"

#include <cmath>

#include "error.h"

namespace anitalker {

std::vector<float> pose_values(const TensorData& t, const std::string& name) {
  std::string shape = "[";
  for (size_t i = 0; i < t.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(t.shape[i]);
  shape += "]";
  if (t.shape.size() != 2 || t.shape[1] != 3 || t.shape[0] < 1)
    throw Error(Error::Kind::Format,
                name + ": expected a pose file of shape [N, 3] (yaw, pitch, roll in degrees), got " + shape);
  const std::vector<double> v = t.to_doubles();
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i]))
      throw Error(Error::Kind::Format, name + ": row " + std::to_string(i / 3) +
                                           " holds NaN or inf; a pose file must hold finite degrees");
    out[i] = static_cast<float>(v[i]);
  }
  return out;
}

}  // namespace anitalker
