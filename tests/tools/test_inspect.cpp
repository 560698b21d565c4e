// `anitalker inspect`: its JSON lists exactly what torch.load sees in every
// fixture checkpoint; its errors exit non-zero with the reader's message.
#include <gmock/gmock.h>
#include <sys/wait.h>

#include <cstdio>

#include "../lib/test_util.h"

using testing::HasSubstr;
using testutil::data;

namespace {

struct Result {
  int status = -1;
  std::string out;
};

Result run(const std::string& args) {
  const char* bin = std::getenv("ANITALKER_BIN");
  // Standard error joins the output unless the arguments redirect it.
  const std::string cmd = std::string(bin ? bin : "anitalker") + " " + args + (args.find("2>") == std::string::npos ? " 2>&1" : "");
  Result r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

}  // namespace

TEST(Inspect, JsonListsExactlyWhatTorchLoadSees) {
  const nlohmann::json ref = testutil::json_file(data("reader/checkpoints.json"));
  for (auto it = ref.begin(); it != ref.end(); ++it) {
    SCOPED_TRACE(it.key());
    Result r = run("inspect --json '" + data(it.key()) + "' 2>/dev/null");
    ASSERT_EQ(r.status, 0) << r.out;
    const nlohmann::json got = nlohmann::json::parse(r.out);
    ASSERT_EQ(got.size(), it.value().size());
    for (size_t i = 0; i < got.size(); ++i) {
      const auto& want = it.value()[i];
      EXPECT_EQ(got[i].size(), 3u);
      EXPECT_EQ(got[i]["key"], want["key"]);
      EXPECT_EQ(got[i]["dtype"], want["dtype"]);
      EXPECT_EQ(got[i]["shape"], want["shape"]);
    }
  }
}

TEST(Inspect, PlainListing) {
  Result r = run("inspect '" + data("face-sr/gfpgan_tiny.pth") + "' 2>/dev/null");
  ASSERT_EQ(r.status, 0);
  std::istringstream lines(r.out);
  std::string first;
  std::getline(lines, first);
  EXPECT_THAT(first, testing::MatchesRegex("params_ema\\.conv_body_first\\.weight +float32 +\\[1, 3, 1, 1\\]"));
  size_t count = 1;
  for (std::string l; std::getline(lines, l);) ++count;
  EXPECT_EQ(count, 285u);
  Result s = run("inspect '" + data("reader/special.pt") + "' 2>&1 >/dev/null");
  EXPECT_THAT(s.out, HasSubstr("tensors, "));
}

TEST(Inspect, ErrorsExitNonZero) {
  Result r = run("inspect /nonexistent/stage1.ckpt");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, "anitalker inspect: /nonexistent/stage1.ckpt: no such file\n");
  r = run("inspect '" + data("audio/tiny_hubert/config.json") + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.out, HasSubstr("config.json: not a checkpoint: wrong magic number"));
  r = run("inspect");
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.out, HasSubstr("missing FILE"));
  r = run("inspect --bogus x");
  EXPECT_EQ(r.status, 2);
  r = run("inspect --help");
  EXPECT_EQ(r.status, 0);
  EXPECT_THAT(r.out, HasSubstr("usage: anitalker inspect FILE [--json]"));
}
