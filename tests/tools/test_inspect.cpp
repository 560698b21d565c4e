// `anitalker inspect`: its JSON lists exactly what torch.load sees in every
// fixture checkpoint; its errors exit non-zero with the reader's message.
#include <gmock/gmock.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>

#include "../lib/test_util.h"

using testing::HasSubstr;
using testutil::data;


TEST(Inspect, JsonListsExactlyWhatTorchLoadSees) {
  const nlohmann::json ref = testutil::json_file(data("reader/checkpoints.json"));
  for (auto it = ref.begin(); it != ref.end(); ++it) {
    SCOPED_TRACE(it.key());
    testutil::CliResult r = testutil::run_cli("inspect --json '" + data(it.key()) + "' 2>/dev/null");
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
  testutil::CliResult r = testutil::run_cli("inspect '" + data("face-sr/gfpgan_tiny.pth") + "' 2>/dev/null");
  ASSERT_EQ(r.status, 0);
  std::istringstream lines(r.out);
  std::string first;
  std::getline(lines, first);
  EXPECT_THAT(first, testing::MatchesRegex("params_ema\\.conv_body_first\\.weight +float32 +\\[1, 3, 1, 1\\]"));
  size_t count = 1;
  for (std::string l; std::getline(lines, l);) ++count;
  EXPECT_EQ(count, 285u);
  testutil::CliResult s = testutil::run_cli("inspect '" + data("reader/special.pt") + "' 2>&1 >/dev/null");
  EXPECT_THAT(s.out, HasSubstr("tensors, "));
}

// A model folder (chinese-hubert-large/) lists its weights file.
TEST(Inspect, ModelFolder) {
  testutil::CliResult r = testutil::run_cli("inspect '" + data("chain/chinese-hubert-large") + "' 2>&1");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("chinese-hubert-large/pytorch_model.bin\n"));
  EXPECT_THAT(r.out, HasSubstr("feature_extractor.conv_layers.0.conv.weight"));
  r = testutil::run_cli("inspect '" + data("renderer") + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.out, HasSubstr("a folder without model.safetensors or pytorch_model.bin"));
}

TEST(Inspect, ErrorsExitNonZero) {
  testutil::CliResult r = testutil::run_cli("inspect /nonexistent/stage1.ckpt");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, "anitalker inspect: /nonexistent/stage1.ckpt: no such file\n");
  r = testutil::run_cli("inspect '" + data("audio/tiny_hubert/config.json") + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.out, HasSubstr("config.json: not a checkpoint: wrong magic number"));
  r = testutil::run_cli("inspect");
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.out, HasSubstr("missing FILE"));
  r = testutil::run_cli("inspect --bogus x");
  EXPECT_EQ(r.status, 2);
  r = testutil::run_cli("inspect --help");
  EXPECT_EQ(r.status, 0);
  EXPECT_THAT(r.out, HasSubstr("usage: anitalker inspect FILE|FOLDER"));
  EXPECT_THAT(r.out, HasSubstr("--json"));
}

// What a file holds is printed, never acted on: a key (or a dtype) with a
// terminal's escape sequences and a newline that forges a line (found
// 2026-12-07: a downloaded file could clear the screen, set the window's
// title, add tensors of its own to the listing).  And a listing that could
// not be written (a full disk) is a failure, not exit 0.
TEST(Inspect, FileTextIsEscapedAndWritesChecked) {
  testutil::TempDir dir;
  auto safetensors = [&](const std::string& name, const std::string& key, const std::string& dtype) {
    const std::string hdr =
        "{\"" + key + "\":{\"dtype\":\"" + dtype + "\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    std::string f(8, '\0');
    f[0] = static_cast<char>(hdr.size());
    testutil::spit(dir / name, f + hdr + std::string(4, '\0'));
    return dir / name;
  };
  const std::string evil = "a\\u001b[2J\\u001b]0;pwned\\u0007\\nFAKE  float32  [9]\\u00c2\\u009b";
  testutil::CliResult r = testutil::run_cli("inspect '" + safetensors("k.safetensors", evil, "F32") + "' 2>&1");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("a\\x1b[2J\\x1b]0;pwned\\x07\\x0aFAKE  float32  [9]\xc3\x82"
                               "\\xc2\\x9b  float32   [1]"));
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 2) << r.out;  // the tensor's line and the count
  r = testutil::run_cli("inspect '" + safetensors("d.safetensors", "w", "Q\\u001b[2J\\n") + "' 2>&1");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("tensor 'w': unknown dtype 'Q\\x1b[2J\\x0a'"));
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << r.out;
  r = testutil::run_cli("inspect '" + data("face-sr/gfpgan_tiny.pth") + "' 2>&1 >/dev/full");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("anitalker inspect: standard output: cannot write: No space left on device"));
}
