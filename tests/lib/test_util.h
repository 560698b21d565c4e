// Shared by the tests: where the data is, temporary folders, reading files.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

namespace testutil {

// tests/data, from the environment that meson test sets.
inline std::string data(const std::string& rel = "") {
  const char* d = std::getenv("ANITALKER_TEST_DATA");
  return std::string(d ? d : "tests/data") + (rel.empty() ? "" : "/" + rel);
}

inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void spit(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
}

inline nlohmann::json json_file(const std::string& path) { return nlohmann::json::parse(slurp(path)); }

// A JPEG file's bytes with an EXIF orientation tag added (a phone's photo:
// 6 = turn 90 degrees clockwise to show): an APP1 Exif segment after the
// SOI, a big-endian TIFF header and one IFD entry, Orientation (0x0112)
// SHORT.
inline std::string with_exif_orientation(const std::string& jpeg, int orientation) {
  const unsigned char app1[] = {0xFF, 0xE1, 0x00, 0x22, 'E', 'x', 'i', 'f', 0, 0, 'M', 'M', 0x00, 0x2A, 0, 0, 0, 8,
                                0x00, 0x01, 0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1, 0x00,
                                static_cast<unsigned char>(orientation), 0, 0, 0, 0, 0, 0};
  return jpeg.substr(0, 2) + std::string(reinterpret_cast<const char*>(app1), sizeof app1) + jpeg.substr(2);
}

// A fresh folder, removed with its contents when the object dies.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/anitalker-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs `fn` and returns the message of the anitalker::Error (or other
// exception) it throws; fails the test if it throws nothing.
template <class F>
std::string error_of(F fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an error";
  return "";
}

// Runs the `anitalker` tool (ANITALKER_BIN) with `args` through the shell;
// standard error joins the output unless the arguments redirect it.
struct CliResult {
  int status = -1;
  std::string out;
};

inline CliResult run_cli(const std::string& args) {
  const char* bin = std::getenv("ANITALKER_BIN");
  const std::string cmd = std::string(bin ? bin : "anitalker") + " " + args + (args.find("2>") == std::string::npos ? " 2>&1" : "");
  CliResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

}  // namespace testutil

// The bfloat16 tests: on a CPU without AVX512_BF16, `load` (a statement that
// loads the network at precision bf16) must be refused naming it; the
// numeric part is then skipped, the refusal having been checked.
#define TESTUTIL_BF16_OR_SKIP(load)                                                        \
  if (!anitalker::cpu_has_bf16()) {                                                        \
    EXPECT_THAT(testutil::error_of([&] { load; }), ::testing::HasSubstr("AVX512_BF16"));  \
    GTEST_SKIP() << "this CPU has no AVX512_BF16";                                         \
  }
