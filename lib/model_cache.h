// One process-wide copy of each loaded model per (file, device): a second
// load of the same file returns the model already in memory while anybody
// still holds it (two renderers in one pipeline share their weights).
#pragma once

#include <c10/core/Device.h>
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "device.h"

namespace anitalker {

// What tells one version of a file from another: device, inode, size and
// modification time (to the nanosecond); for a folder (HuBERT's), those of
// the files in it, by name.  "" when it cannot be read (the load then says
// why).
inline std::string file_stamp(const std::string& path) {
  const auto one = [](const struct stat& s) {
    return std::to_string(s.st_dev) + ":" + std::to_string(s.st_ino) + ":" + std::to_string(s.st_size) + ":" +
           std::to_string(s.st_mtim.tv_sec) + "." + std::to_string(s.st_mtim.tv_nsec);
  };
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return "";
  if (!S_ISDIR(st.st_mode)) return one(st);
  std::vector<std::string> names;
  if (DIR* d = ::opendir(path.c_str())) {
    while (const dirent* e = ::readdir(d))
      if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") names.push_back(e->d_name);
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  std::string out;
  for (const std::string& n : names) {
    struct stat s;
    if (::stat((path + "/" + n).c_str(), &s) == 0 && S_ISREG(s.st_mode)) out += n + "=" + one(s) + ";";
  }
  return out;
}

// Returns the cached T for (realpath(path), its file_stamp, device,
// variant), or make() stored as it.  One cache per model type T;
// thread-safe.  `variant` tells apart copies of one file that compute
// differently (the precision).  A file replaced or rewritten since (new
// weights under a process that runs for days) is loaded again; the old
// model stays with those that hold it.
template <class T, class Make>
std::shared_ptr<const T> shared_model(const std::string& path, c10::Device device, Make make,
                                      const std::string& variant = "") {
  bound_num_threads();  // the load runs in the caller's thread, maybe an application's
  static std::mutex mu;
  static std::map<std::string, std::weak_ptr<const T>> cache;
  char* real = ::realpath(path.c_str(), nullptr);
  const std::string name = real ? std::string(real) : path;
  std::free(real);
  const std::string key = name + "|" + file_stamp(name) + "|" + device.str() + "|" + variant;
  std::lock_guard<std::mutex> lock(mu);
  for (auto it = cache.begin(); it != cache.end();) it = it->second.expired() ? cache.erase(it) : std::next(it);
  if (auto m = cache[key].lock()) return m;
  std::shared_ptr<const T> m = make();
  cache[key] = m;
  return m;
}

}  // namespace anitalker
