#include "cli.h"

#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "device.h"
#include "error.h"
#include "printable.h"
#include "offline_limit.h"

namespace cli {

namespace {

// A path option's value as given, or, when it is a URI (SCHEME://...) that
// names no file as written: a file:// URI's local path (its %XX escapes
// decoded, as the elements' file properties take it), anything else
// refused naming the option and the scheme.
std::string local_path(const std::string& opt, const std::string& v) {
  size_t colon = v.find("://");
  const auto scheme_char = [](char c) { return std::isalnum((unsigned char)c) || c == '+' || c == '-' || c == '.'; };
  if (colon == std::string::npos || colon == 0 || !std::isalpha((unsigned char)v[0])) return v;
  for (size_t i = 0; i < colon; ++i)
    if (!scheme_char(v[i])) return v;
  struct stat st;
  if (::lstat(v.c_str(), &st) == 0) return v;  // a file named so (in a folder "http:")
  std::string scheme = v.substr(0, colon);
  for (char& c : scheme) c = (char)std::tolower((unsigned char)c);
  if (scheme != "file")
    throw UsageError(opt + ": '" + v + "' is a URL (" + scheme +
                     "); the tool reads and writes local files (download it first; for live output see "
                     "pipelines/live-rtmp.sh and `anitalker webrtc`)");
  const size_t slash = v.find('/', colon + 3);
  const std::string host = v.substr(colon + 3, slash == std::string::npos ? std::string::npos : slash - colon - 3);
  if (slash == std::string::npos || !(host.empty() || host == "localhost"))
    throw UsageError(opt + ": '" + v + "': expected file:///PATH (a file on this machine" +
                     (host.empty() ? std::string(")") : ", not on " + host + ")"));
  std::string path;
  for (size_t i = slash; i < v.size(); ++i) {
    if (v[i] != '%') {
      path += v[i];
      continue;
    }
    const auto hex = [](char c) { return std::isxdigit((unsigned char)c) ? (std::isdigit((unsigned char)c) ? c - '0' : std::tolower((unsigned char)c) - 'a' + 10) : -1; };
    const int hi = i + 2 < v.size() ? hex(v[i + 1]) : -1, lo = i + 2 < v.size() ? hex(v[i + 2]) : -1;
    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
      throw UsageError(opt + ": '" + v + "': a bad escape at '" + v.substr(i, 3) +
                       "' (a URI writes a byte as %XX, '%' itself as %25)");
    path += (char)(hi * 16 + lo);
    i += 2;
  }
  return path;
}

std::string num(double x) {
  char b[64];
  std::snprintf(b, sizeof b, "%g", x);
  return b;
}

// Words of `text` wrapped to `width` columns, lines after the first indented
// by `indent`; a '\n' in the text starts a new line.
void wrap(std::string& out, const std::string& text, size_t col, size_t indent, size_t width) {
  bool first_para = true;
  for (const std::string& para : split(text, '\n')) {
    if (!first_para) {
      out.append(indent, ' ');
      col = indent;
    }
    first_para = false;
    std::istringstream words(para);
    std::string w;
    bool first = true;
    while (words >> w) {
      if (!first && col + 1 + w.size() > width) {
        out += "\n";
        out.append(indent, ' ');
        col = indent;
        first = true;
      }
      if (!first) {
        out += ' ';
        ++col;
      }
      out += w;
      col += w.size();
      first = false;
    }
    out += "\n";
    col = 0;
  }
}

}  // namespace

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t p = 0;
  while (true) {
    const size_t q = s.find(sep, p);
    out.push_back(s.substr(p, q == std::string::npos ? std::string::npos : q - p));
    if (q == std::string::npos) return out;
    p = q + 1;
  }
}

std::vector<int> parse_int_list(const std::string& opt, const std::string& v, int lo, int hi) {
  std::vector<int> out;
  for (const std::string& t : split(v, ',')) {
    char* end = nullptr;
    const long y = std::strtol(t.c_str(), &end, 10);
    if (t.empty() || *end || y < lo || y > hi)
      throw UsageError(opt + ": expected a comma-separated list of values from " + std::to_string(lo) + " to " +
                       std::to_string(hi) + ", got '" + t + "'");
    out.push_back(static_cast<int>(y));
  }
  return out;
}

long long parse_integer(const std::string& opt, const std::string& v, long long lo, long long hi) {
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end || errno == ERANGE || x < lo || x > hi)
    throw UsageError(opt + ": expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
                     ", got '" + v + "'");
  return x;
}

double parse_number(const std::string& opt, const std::string& v, double lo, double hi) {
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end || !std::isfinite(x) || x < lo || x > hi)
    throw UsageError(opt + ": expected a number" +
                     (std::isfinite(lo) && std::isfinite(hi) ? " from " + num(lo) + " to " + num(hi)
                      : std::isfinite(lo)                    ? " of " + num(lo) + " or more"
                      : std::isfinite(hi)                    ? " of " + num(hi) + " or less"
                                                             : "") +
                     ", got '" + v + "'");
  return x;
}

Options::Options(std::string cmd, std::string about) : cmd_(std::move(cmd)), about_(std::move(about)) {}

Options::Opt& Options::add(const char* names, const char* meta, int nargs, Setter set, const char* help) {
  Opt o;
  o.names = split(names, '|');
  for (const std::string& n : o.names)
    if (find(n)) throw std::logic_error("cli::Options: --" + n + " declared twice");
  o.meta = meta ? meta : "";
  o.nargs = nargs;
  o.set = std::move(set);
  o.help = help ? help : "";
  opts_.push_back(std::move(o));
  return opts_.back();
}

Options::Opt* Options::find(const std::string& name) {
  for (Opt& o : opts_)
    if (!o.positional)
      for (const std::string& n : o.names)
        if (n == name) return &o;
  return nullptr;
}

Options& Options::text(const char* names, std::string* v, const char* meta, const char* help) {
  add(names, meta, 1, [v](const std::string& opt, const std::vector<std::string>& x) { *v = local_path(opt, x[0]); },
      help)
      .shown = *v;
  return *this;
}

Options& Options::choice(const char* names, std::string* v, std::initializer_list<const char*> values,
                         const char* help) {
  std::vector<std::string> allowed(values.begin(), values.end());
  std::string meta, listed;
  for (size_t i = 0; i < allowed.size(); ++i) {
    meta += (i ? "|" : "") + allowed[i];
    listed += (i == 0 ? "" : i + 1 == allowed.size() ? " or " : ", ") + allowed[i];
  }
  Opt& o = add(names, meta.c_str(), 1,
               [v, allowed, listed](const std::string& opt, const std::vector<std::string>& x) {
                 for (const std::string& a : allowed)
                   if (a == x[0]) {
                     *v = x[0];
                     return;
                   }
                 throw UsageError(opt + ": " + listed + ", not '" + x[0] + "'");
               },
               help);
  o.shown = *v;
  return *this;
}

Options& Options::add_integer(const char* names, const char* meta, const char* help, long long lo, long long hi,
                              long long shown, std::function<void(long long)> set) {
  Opt& o = add(names, meta, 1,
               [set, lo, hi](const std::string& opt, const std::vector<std::string>& x) {
                 set(parse_integer(opt, x[0], lo, hi));
               },
               help);
  o.shown = std::to_string(shown);
  o.range = std::to_string(lo) + " to " + std::to_string(hi);
  return *this;
}

Options& Options::add_number(const char* names, const char* meta, const char* help, double lo, double hi,
                             double shown, std::function<void(double)> set) {
  Opt& o = add(names, meta, 1,
               [set, lo, hi](const std::string& opt, const std::vector<std::string>& x) {
                 set(parse_number(opt, x[0], lo, hi));
               },
               help);
  o.shown = num(shown);
  if (std::isfinite(lo) && std::isfinite(hi)) o.range = num(lo) + " to " + num(hi);
  return *this;
}

Options& Options::flag(const char* names, bool* v, const char* help) {
  add(names, "", 0, [v](const std::string&, const std::vector<std::string>&) { *v = true; }, help);
  return *this;
}

Options& Options::integers(const char* names, std::vector<int>* v, int lo, int hi, const char* meta,
                           const char* help) {
  Opt& o = add(names, meta, 1,
               [v, lo, hi](const std::string& opt, const std::vector<std::string>& x) {
                 *v = parse_int_list(opt, x[0], lo, hi);
               },
               help);
  for (size_t i = 0; i < v->size(); ++i) o.shown += (i ? "," : "") + std::to_string((*v)[i]);
  o.range = "each " + std::to_string(lo) + " to " + std::to_string(hi);
  return *this;
}

Options& Options::custom(const char* names, const char* meta, int nargs, Setter set, const char* help,
                         const char* shown) {
  add(names, meta, nargs, std::move(set), help).shown = shown ? shown : "";
  return *this;
}

Options& Options::device(std::string* v, const char* what) {
  std::string help = "cpu, cuda or cuda:N";
  if (what) help += std::string(" (") + what + ")";
  return text("device", v, "D", help.c_str());
}

Options& Options::precision(std::string* v, const char* what) {
  return choice("precision", v, {"fp32", "bf16", "fp16"}, what);
}

Options& Options::positional(const char* meta, std::string* v, const char* help, bool optional) {
  Opt o;
  o.names = {meta};
  o.meta = meta;
  o.help = help ? help : "";
  o.positional = true;
  o.required = !optional;
  o.set = [v](const std::string& opt, const std::vector<std::string>& x) { *v = local_path(opt, x[0]); };
  o.shown = *v;
  opts_.push_back(std::move(o));
  return *this;
}

Options& Options::epilog(const char* text) {
  epilog_ = text;
  return *this;
}

Options& Options::required() {
  opts_.back().required = true;
  opts_.back().shown.clear();
  return *this;
}

Options& Options::shows(const char* text) {
  opts_.back().shown = text ? text : "";
  return *this;
}

bool Options::given(const char* name) const {
  for (const Opt& o : opts_)
    for (const std::string& n : o.names)
      if (n == name) return o.seen;
  throw std::logic_error(std::string("cli::Options::given: no option --") + name);
}

std::string Options::help() const {
  std::string s = "usage: anitalker " + cmd_;
  for (const Opt& o : opts_)
    if (o.required && !o.positional) s += " --" + o.names[0] + (o.meta.empty() ? "" : " " + o.meta);
  for (const Opt& o : opts_)
    if (o.positional) s += o.required ? " " + o.meta : " [" + o.meta + "]";
  s += " [options]\n";
  if (!about_.empty()) {
    s += "\n";
    wrap(s, about_, 0, 0, 100);
  }
  const size_t indent = 24, width = 100;
  auto row = [&](const std::string& left, const std::string& text) {
    s += "  " + left;
    size_t col = 2 + left.size();
    if (col + 2 > indent) {
      s += "\n";
      s.append(indent, ' ');
    } else {
      s.append(indent - col, ' ');
    }
    wrap(s, text, indent, indent, width);
  };
  bool any_positional = false;
  for (const Opt& o : opts_)
    if (o.positional) {
      if (!any_positional) s += "\narguments:\n";
      any_positional = true;
      row(o.meta, o.help);
    }
  s += "\noptions:\n";
  for (const Opt& o : opts_) {
    if (o.positional) continue;
    std::string text = o.help;
    std::string notes;
    if (o.names.size() > 1)
      for (size_t i = 1; i < o.names.size(); ++i) notes += (notes.empty() ? "also --" : ", --") + o.names[i];
    if (o.required) notes += std::string(notes.empty() ? "" : "; ") + "required";
    if (!o.range.empty()) notes += std::string(notes.empty() ? "" : "; ") + o.range;
    if (!o.shown.empty()) notes += std::string(notes.empty() ? "" : "; ") + "default: " + o.shown;
    if (!notes.empty()) text += " (" + notes + ")";
    row("--" + o.names[0] + (o.meta.empty() ? "" : " " + o.meta), text);
  }
  row("-h, --help", "this text");
  if (!epilog_.empty()) {
    s += "\n";
    wrap(s, epilog_, 0, 0, width);
  }
  return s;
}

bool Options::parse(int argc, char** argv) {
  size_t next_positional = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(help().c_str(), stdout);
      return false;
    }
    if (a.size() > 2 && a.compare(0, 2, "--") == 0) {
      std::string name = a.substr(2), inline_value;
      bool has_inline = false;
      const size_t eq = name.find('=');
      if (eq != std::string::npos) {
        inline_value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_inline = true;
      }
      Opt* o = find(name);
      if (o == nullptr) throw UsageError("unknown option --" + name);
      const std::string opt = "--" + name;
      std::vector<std::string> values;
      if (has_inline) {
        if (o->nargs != 1) throw UsageError(opt + " takes " + (o->nargs ? "values after a space" : "no value"));
        values.push_back(inline_value);
      } else {
        for (int k = 0; k < o->nargs; ++k) {
          if (i + 1 >= argc) throw UsageError("option " + opt + " needs " + (o->nargs > 1 ? "values " + o->meta : "a value"));
          values.push_back(argv[++i]);
        }
      }
      o->set(opt, values);
      o->seen = true;
      continue;
    }
    if (a.size() > 1 && a[0] == '-') throw UsageError("unknown option " + a);
    Opt* p = nullptr;
    size_t k = 0;
    for (Opt& o : opts_)
      if (o.positional && k++ == next_positional) {
        p = &o;
        break;
      }
    if (p == nullptr) throw UsageError("unexpected argument '" + a + "'");
    p->set(p->meta, {a});
    p->seen = true;
    ++next_positional;
  }
  for (const Opt& o : opts_)
    if (o.required && !o.seen) throw UsageError("missing " + (o.positional ? o.meta : "--" + o.names[0]));
  return true;
}

void check_offline_limit(const std::string& amount, double seconds, unsigned limit_s, const std::string& attends,
                         const std::string& advice) {
  if (!anitalker::past_offline_limit(seconds, limit_s)) return;
  throw anitalker::Error(anitalker::Error::Kind::Usage,
                         amount + ", more than --offline-limit " + std::to_string(limit_s) + " s: " + attends +
                             " attends over the whole clip, its memory growing with the square of the length; " +
                             advice);
}

int run(const char* cmd, const std::function<int()>& body) {
  // Messages may quote what a file holds (a key, a field): printed with
  // their control characters escaped, their own line breaks kept.
  int rc;
  try {
    rc = body();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "anitalker %s: %s (see 'anitalker %s --help')\n", cmd,
                 anitalker::printable_lines(e.what()).c_str(), cmd);
    return 2;
  } catch (const anitalker::Error& e) {
    std::fprintf(stderr, "anitalker %s: %s\n", cmd, anitalker::printable_lines(e.what()).c_str());
    return e.kind() == anitalker::Error::Kind::Usage ? 2 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "anitalker %s: %s\n", cmd, anitalker::printable_lines(e.what()).c_str());
    return 1;
  }
  // What went to standard output (inspect's listing, models --manifest)
  // reached it: a full disk or a closed pipe is a failure, not exit 0 with
  // nothing written (found 2026-12-07: `inspect F > /dev/full`).
  errno = 0;
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    const int err = errno;
    std::fprintf(stderr, "anitalker %s: standard output: cannot write%s%s\n", cmd, err ? ": " : "",
                 err ? std::strerror(err) : "");
    return rc == 0 ? 1 : rc;
  }
  return rc;
}

void make_folder(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0777) != 0 && errno != EEXIST)
    throw anitalker::Error(anitalker::Error::Kind::Unreadable,
                           dir + ": cannot make the folder (" + std::strerror(errno) + ")");
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
