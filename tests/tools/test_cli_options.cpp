// The `anitalker` option table (tools/cli.h): one declaration gives the
// parser and the help; the default in --help is the variable's value; ranges,
// choices, required options and aliases are enforced with messages naming
// the option.  And every subcommand's --help comes from its table.
#include <gmock/gmock.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <sstream>

#include "../../tools/cli.h"
#include "../lib/test_util.h"

using testing::HasSubstr;
using testing::Not;

namespace {

// argv from a string, argv[0] = the subcommand.
struct Argv {
  explicit Argv(const std::string& line) {
    std::istringstream in("cmd " + line);
    for (std::string w; in >> w;) words.push_back(w);
    for (std::string& w : words) ptrs.push_back(w.data());
  }
  int argc() const { return static_cast<int>(ptrs.size()); }
  char** argv() { return ptrs.data(); }
  std::vector<std::string> words;
  std::vector<char*> ptrs;
};

struct Parsed {
  std::string in, mode = "fast";
  long long steps = 50;
  int threads = 0;
  double ratio = 0.6;
  double time = 0;
  bool flag = false;
  std::vector<int> list = {1, 4};
  double pose[3] = {0.25, 0, 0};
  std::string positional;
};

cli::Options table(Parsed* p) {
  cli::Options o("demo", "What demo does.");
  o.text("in|input", &p->in, "FILE", "the input").required();
  o.choice("mode", &p->mode, {"fast", "exact"}, "how");
  o.integer("steps", &p->steps, 1, 1000, "N", "DDIM steps");
  o.number("crop-ratio|ratio", &p->ratio, 0, 10, "R", "the ratio");
  o.number("time", &p->time, 0, HUGE_VAL, "S", "a time");
  o.flag("flag", &p->flag, "a switch");
  o.integers("batch", &p->list, 1, 256, "LIST", "batch sizes");
  o.custom("pose", "Y P R", 3,
           [p](const std::string& opt, const std::vector<std::string>& v) {
             for (int i = 0; i < 3; ++i) p->pose[i] = cli::parse_number(opt, v[i], -1, 1);
           },
           "a pose", "0.25 0 0");
  o.positional("DIR", &p->positional, "a folder", true);
  o.threads(&p->threads);
  return o;
}

std::string usage_error(const std::string& line) {
  Parsed p;
  cli::Options o = table(&p);
  Argv a(line);
  try {
    o.parse(a.argc(), a.argv());
  } catch (const cli::UsageError& e) {
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST(CliOptions, ParsesEveryKind) {
  Parsed p;
  cli::Options o = table(&p);
  Argv a("--input x.wav --mode exact --steps 25 --ratio=1.5 --flag --batch 2,8,16 --pose 0.5 -0.5 1 out "
         "--threads 3");
  ASSERT_TRUE(o.parse(a.argc(), a.argv()));
  EXPECT_EQ(p.in, "x.wav");
  EXPECT_EQ(p.mode, "exact");
  EXPECT_EQ(p.steps, 25);
  EXPECT_EQ(p.ratio, 1.5);
  EXPECT_TRUE(p.flag);
  EXPECT_EQ(p.list, (std::vector<int>{2, 8, 16}));
  EXPECT_EQ(p.pose[0], 0.5);
  EXPECT_EQ(p.pose[1], -0.5);
  EXPECT_EQ(p.pose[2], 1);
  EXPECT_EQ(p.positional, "out");
  EXPECT_EQ(p.threads, 3);
  EXPECT_TRUE(o.given("in"));
  EXPECT_TRUE(o.given("ratio"));  // by its alias
  EXPECT_FALSE(Parsed().flag);
}

TEST(CliOptions, DefaultsStayWhenNotGiven) {
  Parsed p;
  cli::Options o = table(&p);
  Argv a("--in x");
  ASSERT_TRUE(o.parse(a.argc(), a.argv()));
  EXPECT_EQ(p.mode, "fast");
  EXPECT_EQ(p.steps, 50);
  EXPECT_EQ(p.list, (std::vector<int>{1, 4}));
  EXPECT_FALSE(o.given("steps"));
  EXPECT_FALSE(o.given("DIR"));
}

TEST(CliOptions, RefusesWithTheOptionNamed) {
  EXPECT_EQ(usage_error("--steps 5"), "missing --in");
  EXPECT_EQ(usage_error("--in x --steps 0"), "--steps: expected an integer from 1 to 1000, got '0'");
  EXPECT_EQ(usage_error("--in x --steps 2x"), "--steps: expected an integer from 1 to 1000, got '2x'");
  EXPECT_EQ(usage_error("--in x --steps 99999999999999999999"),
            "--steps: expected an integer from 1 to 1000, got '99999999999999999999'");
  EXPECT_EQ(usage_error("--in x --ratio 11"), "--ratio: expected a number from 0 to 10, got '11'");
  EXPECT_EQ(usage_error("--in x --crop-ratio nan"), "--crop-ratio: expected a number from 0 to 10, got 'nan'");
  // A range open above says its bound ('-1' is a number).
  EXPECT_EQ(usage_error("--in x --time -1"), "--time: expected a number of 0 or more, got '-1'");
  EXPECT_EQ(usage_error("--in x --time inf"), "--time: expected a number of 0 or more, got 'inf'");
  EXPECT_EQ(usage_error("--in x --mode slow"), "--mode: fast or exact, not 'slow'");
  EXPECT_EQ(usage_error("--in x --batch 1,,2"),
            "--batch: expected a comma-separated list of values from 1 to 256, got ''");
  EXPECT_EQ(usage_error("--in x --pose 0 2 0"), "--pose: expected a number from -1 to 1, got '2'");
  EXPECT_EQ(usage_error("--in x --pose 0 0"), "option --pose needs values Y P R");
  EXPECT_EQ(usage_error("--in"), "option --in needs a value");
  EXPECT_EQ(usage_error("--in x --bogus"), "unknown option --bogus");
  EXPECT_EQ(usage_error("--in x -z"), "unknown option -z");
  EXPECT_EQ(usage_error("--in x a b"), "unexpected argument 'b'");
  EXPECT_EQ(usage_error("--in x --flag=1"), "--flag takes no value");
  EXPECT_EQ(usage_error("--in x --threads 300"), "--threads: expected an integer from 0 to 256, got '300'");
}

// A file given as a file:// URI (a file manager's "copy link", a web front
// end) is its local path, escapes decoded; another URL is refused, naming
// the option (the elements' file properties take file:// URIs too).
TEST(CliOptions, FileUrisArePathsOtherUrlsRefused) {
  Parsed p;
  cli::Options o = table(&p);
  Argv a("--in file:///srv/a%20face%25.jpg file://localhost/data/models");
  ASSERT_TRUE(o.parse(a.argc(), a.argv()));
  EXPECT_EQ(p.in, "/srv/a face%.jpg");
  EXPECT_EQ(p.positional, "/data/models");
  EXPECT_EQ(usage_error("--in https://example.org/speech.wav"),
            "--in: 'https://example.org/speech.wav' is a URL (https); the tool reads and writes local files "
            "(download it first; for live output see pipelines/live-rtmp.sh and `anitalker webrtc`)");
  EXPECT_EQ(usage_error("--in x RTMP://live/key"),
            "DIR: 'RTMP://live/key' is a URL (rtmp); the tool reads and writes local files "
            "(download it first; for live output see pipelines/live-rtmp.sh and `anitalker webrtc`)");
  EXPECT_EQ(usage_error("--in file://server/x.wav"),
            "--in: 'file://server/x.wav': expected file:///PATH (a file on this machine, not on server)");
  EXPECT_EQ(usage_error("--in file:///x%zz.wav"),
            "--in: 'file:///x%zz.wav': a bad escape at '%zz' (a URI writes a byte as %XX, '%' itself as %25)");
  EXPECT_EQ(usage_error("--in file:///x%00.wav"),
            "--in: 'file:///x%00.wav': a bad escape at '%00' (a URI writes a byte as %XX, '%' itself as %25)");
  EXPECT_EQ(usage_error("--in file:///x%2"),
            "--in: 'file:///x%2': a bad escape at '%2' (a URI writes a byte as %XX, '%' itself as %25)");
  // What is not a URI stays as written: a device, a name with a colon.
  Parsed q;
  cli::Options o2 = table(&q);
  Argv b("--in cuda:0 a:b");
  ASSERT_TRUE(o2.parse(b.argc(), b.argv()));
  EXPECT_EQ(q.in, "cuda:0");
  EXPECT_EQ(q.positional, "a:b");
}

TEST(CliOptions, HelpComesFromTheTable) {
  Parsed p;
  p.steps = 77;  // the default shown is the variable's value when declared
  cli::Options o = table(&p);
  const std::string h = o.help();
  EXPECT_THAT(h, HasSubstr("usage: anitalker demo --in FILE [DIR] [options]"));
  EXPECT_THAT(h, HasSubstr("What demo does."));
  EXPECT_THAT(h, HasSubstr("--steps N"));
  EXPECT_THAT(h, HasSubstr("(1 to 1000; default: 77)"));
  EXPECT_THAT(h, Not(HasSubstr("default: 50")));
  EXPECT_THAT(h, HasSubstr("--mode fast|exact"));
  EXPECT_THAT(h, HasSubstr("--crop-ratio R"));
  EXPECT_THAT(h, HasSubstr("also --ratio; 0 to 10; default: 0.6"));
  EXPECT_THAT(h, HasSubstr("--num-threads N"));
  EXPECT_THAT(h, HasSubstr("also --threads"));
  EXPECT_THAT(h, HasSubstr("(also --input; required)"));
  EXPECT_THAT(h, HasSubstr("(each 1 to 256; default: 1,4)"));
  EXPECT_THAT(h, HasSubstr("(default: 0.25 0 0)"));
  // No line past 100 columns but for an unbreakable word.
  std::istringstream lines(h);
  for (std::string l; std::getline(lines, l);) EXPECT_LE(l.size(), 100u) << l;

  Parsed q;
  cli::Options o2 = table(&q);
  Argv a("--in x --help --steps 0");
  testing::internal::CaptureStdout();
  const bool go_on = o2.parse(a.argc(), a.argv());
  const std::string printed = testing::internal::GetCapturedStdout();
  EXPECT_FALSE(go_on);
  EXPECT_EQ(printed, o2.help());
}

// Every subcommand, as `anitalker --help`, `bench --help` and `fixtures
// --help` list them, answers --help with its usage and exit 0, and refuses an
// unknown option with exit 2 naming it.
TEST(CliOptions, EverySubcommandHasItsTable) {
  std::vector<std::string> cmds;
  for (const auto& [group, prefix] : std::vector<std::pair<std::string, std::string>>{
           {"--help", ""}, {"bench --help", "bench "}, {"fixtures --help", "fixtures "}}) {
    const testutil::CliResult r = testutil::run_cli(group);
    ASSERT_EQ(r.status, 0) << r.out;
    std::istringstream lines(r.out);
    for (std::string l; std::getline(lines, l);) {
      if (l.size() < 4 || l.compare(0, 2, "  ") != 0 || l[2] == ' ') continue;
      const std::string name = l.substr(2, l.find(' ', 2) - 2);
      if (prefix.empty() && (name == "bench" || name == "fixtures")) continue;
      cmds.push_back(prefix + name);
    }
  }
  ASSERT_GE(cmds.size(), 20u);
  for (const std::string& c : cmds) {
    testutil::CliResult r = testutil::run_cli(c + " --help");
    EXPECT_EQ(r.status, 0) << c << ": " << r.out;
    EXPECT_THAT(r.out, HasSubstr("usage: anitalker " + c)) << c;
    EXPECT_THAT(r.out, HasSubstr("  -h, --help")) << c;
    r = testutil::run_cli(c + " --no-such-option");
    EXPECT_EQ(r.status, 2) << c << ": " << r.out;
    EXPECT_THAT(r.out, HasSubstr("anitalker " + c + ": unknown option --no-such-option")) << c;
  }
}

// `bench latency --quality-cost --audio` of a WAV with no samples: it looped
// the clip to --seconds for ever (100% of a core, found 2026-12-07); now
// refused, naming the file.  (The error comes before any model is loaded.)
TEST(CliOptions, BenchLatencyRefusesEmptyAudio) {
  testutil::TempDir dir;
  std::string wav("RIFF\x24\x00\x00\x00WAVEfmt ", 16);
  const unsigned char fmt[] = {16, 0, 0, 0, 1, 0, 1, 0, 0x80, 0x3e, 0, 0, 0, 0x7d, 0, 0, 2, 0, 16, 0};
  wav.append(reinterpret_cast<const char*>(fmt), sizeof fmt);
  wav.append(std::string("data\0\0\0\0", 8));
  testutil::spit(dir / "empty.wav", wav);
  const testutil::CliResult r = testutil::run_cli("bench latency --quality-cost --audio '" + dir / "empty.wav" +
                                                  "' --models-dir '" + dir.path() + "' --seconds 2");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("empty.wav: no audio samples"));
}

// `bench load --file PATH` writes its own checkpoint there and removes it
// after: a file that is there (a model, a link to one, a pipe) was replaced
// by random weights and then deleted, exit 0 (found 2026-12-07).  Now
// refused before anything is written; a path where nothing is gets the
// file, removed after.
TEST(CliOptions, BenchLoadNeverTakesAnExistingFile) {
  testutil::TempDir dir;
  testutil::spit(dir / "precious.ckpt", "precious");
  ASSERT_EQ(::symlink("precious.ckpt", (dir / "link.ckpt").c_str()), 0);
  ASSERT_EQ(::mkfifo((dir / "fifo.ckpt").c_str(), 0600), 0);
  for (const char* name : {"precious.ckpt", "link.ckpt", "fifo.ckpt"}) {
    const testutil::CliResult r =
        testutil::run_cli("bench load --layers 1 --repeat 1 --file '" + dir / name + "' 2>&1");
    EXPECT_EQ(r.status, 2) << name << ": " << r.out;
    EXPECT_THAT(r.out, HasSubstr(dir / name + " exists")) << name;
  }
  EXPECT_EQ(testutil::slurp(dir / "precious.ckpt"), "precious");
  struct stat st;
  EXPECT_EQ(::lstat((dir / "link.ckpt").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  const testutil::CliResult r =
      testutil::run_cli("bench load --layers 1 --repeat 1 --file '" + dir / "new.ckpt" + "' 2>&1");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("warm"));
  EXPECT_NE(::lstat((dir / "new.ckpt").c_str(), &st), 0);
}
