// One process-wide copy of each loaded model per (file, device): a second
// load of the same file returns the model already in memory while anybody
// still holds it (two renderers in one pipeline share their weights).
#pragma once

#include <c10/core/Device.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace anitalker {

// Returns the cached T for (realpath(path), device, variant), or make()
// stored as it.  One cache per model type T; thread-safe.  `variant` tells
// apart copies of one file that compute differently (the precision).
template <class T, class Make>
std::shared_ptr<const T> shared_model(const std::string& path, c10::Device device, Make make,
                                      const std::string& variant = "") {
  static std::mutex mu;
  static std::map<std::string, std::weak_ptr<const T>> cache;
  char* real = ::realpath(path.c_str(), nullptr);
  const std::string key = (real ? std::string(real) : path) + "|" + device.str() + "|" + variant;
  std::free(real);
  std::lock_guard<std::mutex> lock(mu);
  if (auto m = cache[key].lock()) return m;
  std::shared_ptr<const T> m = make();
  cache[key] = m;
  return m;
}

}  // namespace anitalker
