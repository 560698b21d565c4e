// `anitalker check`: the device-against-CPU comparison at full size.  CI has
// no GPU, so this runs it CPU against CPU (the comparison, the table, the
// exit status) and checks its errors; tests/device/run.sh runs it on a GPU.
#include <gmock/gmock.h>

#include "../lib/test_util.h"

using testing::HasSubstr;

TEST(CheckCli, CpuAgainstCpuPasses) {
  testutil::CliResult r = testutil::run_cli("check --device cpu --only render");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("cpu against cpu"));
  EXPECT_THAT(r.out, HasSubstr("stage1 start code"));
  EXPECT_THAT(r.out, HasSubstr("stage1 8 frames, 8-bit"));
  EXPECT_THAT(r.out, HasSubstr("4 outputs compared, 0 differ"));
}

// The comparison can fail: outputs moved by more than the tolerance are
// reported and the exit status is 1; moved by less, they pass.  (CPU against
// CPU on one thread count gives identical outputs: max |diff| 0.)
TEST(CheckCli, DetectsDifferences) {
  testutil::CliResult r = testutil::run_cli("check --device cpu --only render --perturb 0.01");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("DIFFERS"));
  EXPECT_THAT(r.out, testing::Not(HasSubstr(" ok")));
  EXPECT_THAT(r.out, HasSubstr("4 outputs compared, 3 differ by more than 1.0e-03"));  // + 1 info row
  r = testutil::run_cli("check --device cpu --only render --perturb 0.0001");
  EXPECT_EQ(r.status, 0) << r.out;  // 8-bit frames: ceil(0.0255) = 1 level is allowed, the float rows pass
  EXPECT_THAT(r.out, HasSubstr("0 differ"));
}

TEST(CheckCli, Errors) {
  testutil::CliResult r = testutil::run_cli("check --only renderer");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("--only: expected a list of hubert, motion, render, sr; got 'renderer'"));
  // An empty list (a script's unset variable) compared nothing and passed.
  for (const char* empty : {"''", ",", ",,"}) {
    r = testutil::run_cli(std::string("check --device cpu --only ") + empty);
    EXPECT_EQ(r.status, 2) << empty << ": " << r.out;
    EXPECT_THAT(r.out, HasSubstr("--only: expected a list of hubert, motion, render, sr"));
  }
  r = testutil::run_cli("check --device cpu --steps 999");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("cannot create exactly 999 DDIM steps"));
  r = testutil::run_cli("check --device tpu");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("device 'tpu': expected cpu, cuda or cuda:N"));
  r = testutil::run_cli("check --tolerance 0");
  EXPECT_EQ(r.status, 2) << r.out;
  r = testutil::run_cli("check --device cuda --only render");
  if (r.status == 1) EXPECT_THAT(r.out, HasSubstr("this build has no CUDA"));  // a CPU LibTorch, as in CI
}
