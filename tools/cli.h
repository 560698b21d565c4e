// Small helpers shared by the `anitalker` subcommands: option parsing and the
// uniform handling of errors (message on stderr, exit 1; usage errors exit 2).
#pragma once

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace cli {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Walks argv: options "--name value" / "--flag", and positional arguments.
class Args {
 public:
  Args(int argc, char** argv) : args_(argv + 1, argv + argc) {}
  bool done() const { return i_ >= args_.size(); }
  const std::string& peek() const { return args_[i_]; }
  std::string next() { return args_[i_++]; }
  // The value after the option just taken.
  std::string value(const std::string& opt) {
    if (done()) throw UsageError("option " + opt + " needs a value");
    return next();
  }
  long long integer(const std::string& opt, long long lo, long long hi);
  double number(const std::string& opt);

 private:
  std::vector<std::string> args_;
  size_t i_ = 0;
};

// Runs `body`, mapping exceptions to messages "anitalker <cmd>: <what>" and
// exit codes (1 for failures, 2 for usage errors).
int run(const char* cmd, const std::function<int()>& body);

// LibTorch's intra-op threads: n > 0, or every core when n is 0 (Debian's
// build defaults to 1 when OMP_NUM_THREADS is unset).
void set_threads(int n);

// Resident memory of this process, in bytes: total, anonymous, file-backed
// (from /proc/self/status), and the peak.
struct Memory {
  long long rss = 0, anon = 0, file = 0, peak = 0;
};
Memory memory();

}  // namespace cli
