// Small helpers shared by the `anitalker` subcommands: option parsing and the
// uniform handling of errors (message on stderr, exit 1; usage errors exit 2).
#pragma once

#include <functional>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

namespace cli {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A value of option `opt`: an integer from lo to hi, a finite number from lo
// to hi; else a UsageError naming the option, the range and the value.
long long parse_integer(const std::string& opt, const std::string& v, long long lo, long long hi);
double parse_number(const std::string& opt, const std::string& v, double lo, double hi);
// "1,4,16" -> {1, 4, 16}: each value from lo to hi.
std::vector<int> parse_int_list(const std::string& opt, const std::string& v, int lo, int hi);
// "a,b" -> {"a", "b"}.
std::vector<std::string> split(const std::string& s, char sep = ',');

// One subcommand's options, declared once: the parser and `--help` both
// read this table, and the default that --help prints is the value the
// variable holds when it is declared, i.e. the one the code uses.  Names are
// given without dashes, "num-threads|threads" = one option and its alias.
// Long options follow the element properties they set (`--num-threads`,
// `--face-location`, `--crop-ratio`).
//
//   cli::Options o("render", "Encodes the portrait ...");
//   o.text("stage1", &stage1, "CKPT", "stage1.ckpt ...").required();
//   o.integer("batch-size", &batch, 1, 1024, "N", "frames rendered together");
//   o.device(&device).threads(&threads);
//   if (!o.parse(argc, argv)) return 0;   // --help was printed
class Options {
 public:
  using Setter = std::function<void(const std::string& opt, const std::vector<std::string>& values)>;

  // `cmd`: the subcommand as typed ("render", "bench render"); `about`: what
  // it does, printed under the usage line.
  Options(std::string cmd, std::string about);

  Options& text(const char* names, std::string* v, const char* meta, const char* help);
  Options& choice(const char* names, std::string* v, std::initializer_list<const char*> values, const char* help);
  template <class T>  // int, long long
  Options& integer(const char* names, T* v, long long lo, long long hi, const char* meta, const char* help) {
    return add_integer(names, meta, help, lo, hi, static_cast<long long>(*v),
                       [v](long long x) { *v = static_cast<T>(x); });
  }
  template <class T>  // float, double
  Options& number(const char* names, T* v, double lo, double hi, const char* meta, const char* help) {
    return add_number(names, meta, help, lo, hi, static_cast<double>(*v), [v](double x) { *v = static_cast<T>(x); });
  }
  Options& flag(const char* names, bool* v, const char* help);
  // "1,4,16": each value from lo to hi.
  Options& integers(const char* names, std::vector<int>* v, int lo, int hi, const char* meta, const char* help);
  // Anything else: `nargs` values (meta names them, e.g. "Y P R"), given to
  // `set`, which throws UsageError for a bad one; `shown` is the default.
  Options& custom(const char* names, const char* meta, int nargs, Setter set, const char* help,
                  const char* shown = "");
  // The common pair: --device D (cpu, cuda, cuda:N) and --num-threads N
  // (alias --threads; 0 = every core).
  Options& device(std::string* v, const char* what = nullptr);
  // --precision fp32|bf16|fp16, as the elements' `precision` property
  // (lib/device.h); `what` says which networks have which paths.
  Options& precision(std::string* v, const char* what);
  template <class T>
  Options& threads(T* v) {
    return integer("num-threads|threads", v, 0, 256, "N", "LibTorch threads; 0 = OMP_NUM_THREADS, else one per core");
  }
  // One positional argument (in order); required unless `optional`.
  Options& positional(const char* meta, std::string* v, const char* help, bool optional = false);
  // Free text after the options (examples, notes).
  Options& epilog(const char* text);

  // Modifiers of the option declared last.
  Options& required();
  // The default as words instead of the variable's value ("" = none shown).
  Options& shows(const char* text);

  // Parses argv (argv[0] = the subcommand).  Returns false when --help (-h)
  // printed the help: the command then exits 0.  Throws UsageError: an
  // unknown option, a missing value or required option, a value out of range.
  bool parse(int argc, char** argv);
  // Whether an option (any of its names, without dashes) was on the command line.
  bool given(const char* name) const;
  std::string help() const;

 private:
  struct Opt {
    std::vector<std::string> names;  // without dashes; [0] is the one shown
    std::string meta, help, shown, range;
    int nargs = 1;
    bool required = false, positional = false, seen = false;
    Setter set;
  };
  Opt& add(const char* names, const char* meta, int nargs, Setter set, const char* help);
  Options& add_integer(const char* names, const char* meta, const char* help, long long lo, long long hi,
                       long long shown, std::function<void(long long)> set);
  Options& add_number(const char* names, const char* meta, const char* help, double lo, double hi, double shown,
                      std::function<void(double)> set);
  Opt* find(const std::string& name);

  std::string cmd_, about_, epilog_;
  std::vector<Opt> opts_;
};

// The tools' --offline-limit (lib/offline_limit.h): refused, naming
// `amount` ("FILE: 625.1 s of audio"), the limit, what attends over the
// whole clip and `advice`, when `seconds` go past `limit_s`.
void check_offline_limit(const std::string& amount, double seconds, unsigned limit_s, const std::string& attends,
                         const std::string& advice);

// Runs `body`, mapping exceptions to messages "anitalker <cmd>: <what>" and
// exit codes (1 for failures, 2 for usage errors).
int run(const char* cmd, const std::function<int()>& body);

// LibTorch's intra-op threads: n > 0, or every core when n is 0 (Debian's
// build defaults to 1 when OMP_NUM_THREADS is unset).
// Makes folder `dir` (one level) unless it is there; throws
// anitalker::Error(Unreadable) naming it and the system's reason otherwise
// (a read-only parent was reported later as "the folder does not exist").
void make_folder(const std::string& dir);
void set_threads(int n);

// Resident memory of this process, in bytes: total, anonymous, file-backed
// (from /proc/self/status), and the peak.
struct Memory {
  long long rss = 0, anon = 0, file = 0, peak = 0;
};
Memory memory();

}  // namespace cli
