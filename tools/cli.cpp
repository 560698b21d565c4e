#include "cli.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "device.h"
#include "error.h"

namespace cli {

long long Args::integer(const std::string& opt, long long lo, long long hi) {
  const std::string v = value(opt);
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end || x < lo || x > hi)
    throw UsageError(opt + ": expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) + ", got '" + v + "'");
  return x;
}

double Args::number(const std::string& opt) {
  const std::string v = value(opt);
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end) throw UsageError(opt + ": expected a number, got '" + v + "'");
  return x;
}

int run(const char* cmd, const std::function<int()>& body) {
  try {
    return body();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "anitalker %s: %s (see 'anitalker %s --help')\n", cmd, e.what(), cmd);
    return 2;
  } catch (const anitalker::Error& e) {
    std::fprintf(stderr, "anitalker %s: %s\n", cmd, e.what());
    return e.kind() == anitalker::Error::Kind::Usage ? 2 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "anitalker %s: %s\n", cmd, e.what());
    return 1;
  }
}

void set_threads(int n) { anitalker::set_num_threads(n); }

Memory memory() {
  Memory m;
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    char key[32];
    long long v;
    if (std::sscanf(line.c_str(), "%31s %lld", key, &v) != 2) continue;
    const std::string k = key;
    if (k == "VmRSS:") m.rss = v * 1024;
    else if (k == "RssAnon:") m.anon = v * 1024;
    else if (k == "RssFile:") m.file = v * 1024;
    else if (k == "VmHWM:") m.peak = v * 1024;
  }
  return m;
}

}  // namespace cli
