#include "output_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <random>

#include <sys/syscall.h>
#include <pthread.h>
#include "error.h"

namespace anitalker {

namespace {

// The temporary files still open, readable from a signal handler: fixed
// slots, each a path and a flag set once the path is complete.
constexpr int kSlots = 64;
constexpr size_t kPathMax = 4096;
char g_paths[kSlots][kPathMax];
// 0 free, 1 being written, 2 published (the handler removes those).
std::atomic<int> g_state[kSlots];
bool g_is_dir[kSlots];  // a temporary folder: its files, then itself
char g_gone[kSlots][kPathMax + 8];  // a folder's name once moved aside by the handler

void register_temp(const std::string& path, bool is_dir = false) {
  if (path.size() >= kPathMax) return;  // still removed by the destructor
  for (int i = 0; i < kSlots; ++i) {
    int expected = 0;
    if (!g_state[i].compare_exchange_strong(expected, 1)) continue;
    std::memcpy(g_paths[i], path.c_str(), path.size() + 1);
    std::memcpy(g_gone[i], path.c_str(), path.size());
    std::memcpy(g_gone[i] + path.size(), ".gone", 6);
    g_is_dir[i] = is_dir;
    g_state[i].store(2);
    return;
  }
}

// Empties and removes a folder with system calls only (async-signal-safe:
// getdents64, unlinkat, rmdir); its files are flat (no subfolders).  Other
// threads may still be writing into it: when the folder is not empty at the
// end, it is emptied again (a few times).
void empty_folder(const char* path);
void remove_folder(const char* path) {
  for (int tries = 0; tries < 20; ++tries) {
    empty_folder(path);
    if (::rmdir(path) == 0 || errno == ENOENT) return;
  }
}

void empty_folder(const char* path) {
  const int fd = ::open(path, O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    alignas(8) char buf[4096];
    for (;;) {
      const long n = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
      if (n <= 0) break;
      for (long at = 0; at < n;) {
        struct Entry {
          uint64_t ino;
          int64_t off;
          unsigned short reclen;
          unsigned char type;
          char name[1];
        };
        const Entry* e = reinterpret_cast<const Entry*>(buf + at);
        if (!(e->name[0] == '.' && (e->name[1] == 0 || (e->name[1] == '.' && e->name[2] == 0))))
          ::unlinkat(fd, e->name, 0);
        at += e->reclen;
      }
    }
    ::close(fd);
  }
}

void unregister_temp(const std::string& path) {
  for (int i = 0; i < kSlots; ++i)
    if (g_state[i].load() == 2 && path == g_paths[i]) {
      g_state[i].store(0);
      return;
    }
}

// Every signal whose default action ends the process and that a user or
// the system sends (SIGUSR1, an alarm, a broken pipe, a CPU or file-size
// limit left .part files of named temporaries behind, found 2026-12-07).
const int kSignals[] = {SIGINT,  SIGTERM, SIGHUP,  SIGQUIT,   SIGUSR1, SIGUSR2,
                        SIGALRM, SIGPIPE, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF};
struct sigaction g_old[sizeof kSignals / sizeof kSignals[0]];

void on_signal(int sig) {
  const int saved = errno;
  for (int i = 0; i < kSlots; ++i)
    if (g_state[i].load() == 2) {
      if (g_is_dir[i]) {
        // Moved aside first: a writer's next file cannot be created in it.
        if (::rename(g_paths[i], g_gone[i]) == 0) remove_folder(g_gone[i]);
        else remove_folder(g_paths[i]);
      } else {
        ::unlink(g_paths[i]);  // async-signal-safe
      }
    }
  for (size_t k = 0; k < sizeof kSignals / sizeof kSignals[0]; ++k) {
    if (kSignals[k] != sig) continue;
    const struct sigaction& old = g_old[k];
    if (!(old.sa_flags & SA_SIGINFO) && old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN) {
      errno = saved;
      old.sa_handler(sig);  // a handler the program had before ours
      return;
    }
  }
  // End as the signal would have: default action, raised again.
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ::sigaction(sig, &dfl, nullptr);
  ::raise(sig);
  errno = saved;
}

std::string folder_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string base_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// ".NAME." in the target's folder: the start of its temporary files' names.
std::string hidden_prefix(const std::string& target) {
  const std::string dir = folder_of(target);
  return (dir == "." && target.find('/') == std::string::npos ? "" : dir + "/") + "." + base_of(target) + ".";
}

// An unnamed file in `dir` (O_TMPFILE), reachable by the path
// /proc/self/fd/N; -1 where the file system or the kernel has none, or
// /proc cannot reach it.
int open_unnamed(const std::string& dir, std::string& path) {
#ifdef O_TMPFILE
  const int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  path = "/proc/self/fd/" + std::to_string(fd);
  struct stat a, b;
  if (::stat(path.c_str(), &a) == 0 && ::fstat(fd, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) return fd;
  ::close(fd);
#else
  (void)dir;
  (void)path;
#endif
  return -1;
}

// Where `target` writes: `path` (a link to a file followed, so the link
// stays a link), and whether it is written in place (`direct`: a character
// device such as /dev/null, or a pipe, which a rename would replace).
struct Dest {
  std::string path;
  bool direct = false;
};

Dest resolve_target(const std::string& target, const std::string& option) {
  if (target.empty()) throw Error(Error::Kind::Usage, option + ": the output file name is empty");
  if (target == "-")
    throw Error(Error::Kind::Usage, option + " -: standard output is not supported (the outputs are files, and an "
                                             "MP4 needs seeking); give a file name (./- for a file named -)");
  struct stat link;
  if (::lstat(target.c_str(), &link) != 0) return {target, false};  // a new file
  struct stat st;
  if (::stat(target.c_str(), &st) != 0)
    throw Error(Error::Kind::Usage, target + ": is a link to a missing file; expected a file name");
  if (S_ISDIR(st.st_mode)) throw Error(Error::Kind::Usage, target + ": is a folder, expected a file name");
  if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode)) return {target, true};
  if (!S_ISREG(st.st_mode))
    throw Error(Error::Kind::Usage, target + ": is neither a file, a character device nor a pipe; expected a file name");
  if (!S_ISLNK(link.st_mode)) return {target, false};
  char* real = ::realpath(target.c_str(), nullptr);
  Dest d{real ? real : target, false};
  std::free(real);
  return d;
}

// Who made a temporary folder: the machine (its name and this boot) and the
// process (its id and start time, so that a reused id is not taken for it).
std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string host_name() {
  char name[256] = {0};
  ::gethostname(name, sizeof name - 1);
  return name;
}

std::string boot_id() {
  std::string id = read_text("/proc/sys/kernel/random/boot_id");
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  return id;
}

// Field 22 of /proc/PID/stat (the start time in clock ticks), or "".
std::string start_time(long pid) {
  const std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  const size_t paren = stat.rfind(')');  // the command name may hold spaces
  if (paren == std::string::npos) return "";
  std::istringstream in(stat.substr(paren + 2));
  std::string field;
  for (int i = 3; i <= 22 && (in >> field); ++i)
    if (i == 22) return field;
  return "";
}

constexpr const char* kOwner = ".owner";

std::string owner_record() {
  const long pid = static_cast<long>(::getpid());
  return host_name() + "\n" + boot_id() + "\n" + std::to_string(pid) + "\n" + start_time(pid) + "\n";
}

// Whether a maker is gone for sure, given whether it ran on this machine
// and in this boot, its process id and start time: made on this machine,
// and before its last boot or by a process that no longer runs.  Anything
// unsure (another machine's file on a shared disk, a record that cannot be
// read) counts as alive.
bool maker_gone(bool this_host, bool this_boot, const std::string& pid, const std::string& start) {
  if (!this_host) return false;
  if (!this_boot) return true;
  char* end = nullptr;
  const long p = std::strtol(pid.c_str(), &end, 10);
  if (end == pid.c_str() || *end || p <= 0) return false;
  if (::kill(static_cast<pid_t>(p), 0) != 0 && errno == ESRCH) return true;
  const std::string now = start_time(p);
  return !now.empty() && now != start;
}

// Whether the folder's maker is gone for sure (its ".owner" record; no
// complete record yet, a maker that is writing it, counts as alive).
bool is_stale(const std::string& folder) {
  std::istringstream in(read_text(folder + "/" + kOwner));
  std::string host, boot, pid, start;
  if (!(in >> host >> boot >> pid >> start)) return false;
  return maker_gone(host == host_name(), boot == boot_id(), pid, start);
}

// A named temporary file's maker, in its name (a file cannot hold a record
// beside its data): "HOST-BOOT-PID-START", HOST the FNV-1a hash of the
// machine's name and BOOT the start of its boot id, 8 hex digits each.
std::string hex8(uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}
std::string host_hash() {
  uint32_t h = 2166136261u;
  for (unsigned char c : host_name()) h = (h ^ c) * 16777619u;
  return hex8(h);
}
std::string boot_prefix() { return boot_id().substr(0, 8); }
std::string owner_token() {
  const long pid = static_cast<long>(::getpid());
  return host_hash() + "-" + boot_prefix() + "-" + std::to_string(pid) + "-" + start_time(pid);
}
// ".NAME.TOKEN." for `dest`'s temporary files, or ".NAME." where the token
// would take the name past 255 bytes (its files are then not swept).
std::string temp_prefix(const std::string& dest) {
  const std::string token = owner_token();
  const bool fits = 1 + base_of(dest).size() + 1 + token.size() + 1 + 6 + 5 <= 255;
  return hidden_prefix(dest) + (fits ? token + "." : "");
}

// Whether `token` is an owner_token() whose maker is gone for sure.
bool token_stale(const std::string& token) {
  std::vector<std::string> f;
  for (size_t a = 0;;) {
    const size_t b = token.find('-', a);
    f.push_back(token.substr(a, b == std::string::npos ? std::string::npos : b - a));
    if (b == std::string::npos) break;
    a = b + 1;
  }
  if (f.size() != 4 || f[0].size() != 8 || f[1].size() != 8 || f[3].empty() ||
      f[3].find_first_not_of("0123456789") != std::string::npos)
    return false;
  return maker_gone(f[0] == host_hash(), f[1] == boot_prefix(), f[2], f[3]);
}

// The names in `dir` that start with `prefix`, listed whole before the
// caller removes any (none when it cannot be read).
std::vector<std::string> names_with_prefix(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return names;
  while (const dirent* e = ::readdir(d))
    if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0) names.emplace_back(e->d_name);
  ::closedir(d);
  return names;
}

// The mode of `path` itself (a link not followed), or 0 when it is gone.
mode_t mode_of(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 ? st.st_mode : 0;
}

// Removes the named temporary files of `dest` (".NAME.TOKEN.XXXXXX.part"
// beside it) whose makers are gone for sure: what SIGKILL, a crash or a
// power cut leaves where the file system has no unnamed files, or in the
// instant between commit()'s link and rename.
void sweep_stale_files(const std::string& dest) {
  const std::string dir = folder_of(dest), prefix = "." + base_of(dest) + ".", suffix = ".part";
  for (const std::string& name : names_with_prefix(dir, prefix)) {
    if (name.size() <= prefix.size() + suffix.size() + 7 ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    // TOKEN.XXXXXX between the prefix and the suffix
    const std::string middle = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    const size_t dot = middle.size() - 7;
    if (middle[dot] != '.' || middle.find('.') != dot || !token_stale(middle.substr(0, dot))) continue;
    const std::string path = dir + "/" + name;
    if (S_ISREG(mode_of(path))) ::unlink(path.c_str());
  }
}

// Removes the hidden folders ".STEM.part.*" in `dir` whose makers are gone
// (SIGKILL, a crash, a power cut: what the signal handler cannot clean).
void sweep_stale(const std::string& dir, const std::string& stem) {
  for (const std::string& name : names_with_prefix(dir, "." + stem + ".part.")) {
    const std::string path = dir + "/" + name;
    if (S_ISDIR(mode_of(path)) && is_stale(path)) remove_folder(path.c_str());
  }
}

}  // namespace

void install_output_signal_handlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    for (size_t k = 0; k < sizeof kSignals / sizeof kSignals[0]; ++k) {
      struct sigaction old;
      if (::sigaction(kSignals[k], nullptr, &old) != 0) continue;
      g_old[k] = old;
      if (!(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_IGN) continue;  // e.g. SIGHUP under nohup
      struct sigaction sa;
      std::memset(&sa, 0, sizeof sa);
      sa.sa_handler = on_signal;
      sigemptyset(&sa.sa_mask);
      sa.sa_flags = SA_RESTART;
      ::sigaction(kSignals[k], &sa, nullptr);
    }
  });
}

void check_not_an_input(const std::string& target, const std::vector<std::string>& inputs, const std::string& option) {
  struct stat t;
  if (::stat(target.c_str(), &t) != 0) return;  // a new file cannot be an input
  for (const std::string& in : inputs) {
    struct stat s;
    if (in.empty() || ::stat(in.c_str(), &s) != 0) continue;
    if (s.st_dev == t.st_dev && s.st_ino == t.st_ino)
      throw Error(Error::Kind::Usage, option + " " + target + " is the input " + in +
                                          "; refusing to write over an input (choose another output name)");
  }
}

namespace {

// check_output_path(), and where the target writes.
Dest checked_dest(const std::string& target, const std::vector<std::string>& inputs, const std::string& option) {
  const Dest d = resolve_target(target, option);
  if (!d.direct) {
    struct stat st;
    const std::string dir = folder_of(d.path);
    if (::stat(dir.c_str(), &st) != 0)
      throw Error(Error::Kind::NotFound, target + ": cannot write: the folder " + dir + " does not exist");
    if (!S_ISDIR(st.st_mode)) throw Error(Error::Kind::NotFound, target + ": cannot write: " + dir + " is not a folder");
  }
  check_not_an_input(target, inputs, option);
  return d;
}

}  // namespace

void check_output_path(const std::string& target, const std::vector<std::string>& inputs, const std::string& option) {
  checked_dest(target, inputs, option);
}

void check_output_extension(const std::string& target, const std::string& extension, const std::string& what,
                            const std::string& option) {
  struct stat st;
  if (::stat(target.c_str(), &st) == 0 && (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode))) return;
  const size_t n = extension.size();
  bool ok = target.size() > n;
  for (size_t i = 0; ok && i < n; ++i)
    ok = std::tolower(static_cast<unsigned char>(target[target.size() - n + i])) ==
         std::tolower(static_cast<unsigned char>(extension[i]));
  if (!ok)
    throw Error(Error::Kind::Usage,
                option + " " + target + ": the file is " + what + "; give it a " + extension + " name");
}

namespace {

// The folder (resolved) and name of a path, for comparing outputs that do
// not exist yet.
std::string where(const std::string& path) {
  char* real = ::realpath(folder_of(path).c_str(), nullptr);
  const std::string dir = real ? real : folder_of(path);
  std::free(real);
  return dir + "/" + base_of(path);
}

}  // namespace

void check_distinct_outputs(const std::vector<std::pair<std::string, std::string>>& outputs) {
  for (size_t i = 0; i < outputs.size(); ++i)
    for (size_t j = 0; j < i; ++j) {
      const std::string &a = outputs[j].second, &b = outputs[i].second;
      if (a.empty() || b.empty()) continue;
      struct stat sa, sb;
      const bool same = ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0
                            ? sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino && !S_ISCHR(sa.st_mode)
                            : where(a) == where(b);
      if (same)
        throw Error(Error::Kind::Usage, outputs[i].first + " " + b + " is also " + outputs[j].first +
                                            ": each output needs its own file");
    }
}

void check_folder_outputs(const std::string& folder, const std::vector<std::string>& names, const std::string& option,
                          const std::vector<std::string>& inputs,
                          std::vector<std::pair<std::string, std::string>> outputs) {
  for (const std::string& n : names) {
    check_not_an_input(folder + "/" + n, inputs, option);
    outputs.push_back({option, folder + "/" + n});
  }
  check_distinct_outputs(outputs);
}

OutputFile::OutputFile(const std::string& target) : target_(target) {
  const Dest d = checked_dest(target, {}, "--out");
  if (d.direct) {  // written in place: nothing to rename, nothing to remove
    temp_ = dest_ = target;
    direct_ = open_ = true;
    return;
  }
  dest_ = d.path;
  const std::string dir = folder_of(dest_);
  install_output_signal_handlers();
  sweep_stale_files(dest_);
  // ANITALKER_NAMED_TEMPORARIES=1: a named file even where the file system
  // has unnamed ones (the tests' way to reach the path other file systems
  // take).
  const char* named = std::getenv("ANITALKER_NAMED_TEMPORARIES");
  fd_ = named && std::strcmp(named, "1") == 0 ? -1 : open_unnamed(dir, temp_);
  if (fd_ >= 0) {
    open_ = true;
    return;
  }
  const std::string tmpl = temp_prefix(dest_) + "XXXXXX.part";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back(0);
  // Block the signals while the file exists but is not yet registered.
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, &old);
  const int fd = ::mkstemps(buf.data(), 5);  // O_CREAT | O_EXCL, mode 0600
  const int err = errno;
  if (fd >= 0) {
    temp_ = buf.data();
    register_temp(temp_);
    open_ = true;
    ::close(fd);
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (fd < 0) throw Error(Error::Kind::Unreadable, target + ": cannot write in " + dir + ": " + std::strerror(err));
}

OutputFile::~OutputFile() { discard(); }

void OutputFile::write(const std::string& bytes) {
  FILE* f = std::fopen(temp_.c_str(), "wb");
  if (!f) throw Error(Error::Kind::Unreadable, target_ + ": cannot write: " + std::strerror(errno));
  // The error of the call that failed: a short file's bytes are buffered,
  // so a full disk shows at the flush (the message named a stale errno,
  // "No such file or directory", found 2026-12-07).
  int err = 0;
  if (std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) err = errno;
  if (std::fflush(f) != 0 && err == 0) err = errno;
  if (std::fclose(f) != 0 && err == 0) err = errno;
  if (err != 0) throw Error(Error::Kind::Unreadable, target_ + ": cannot write: " + std::strerror(err));
}

void OutputFile::append(const void* data, size_t n) {
  if (!open_) throw Error(Error::Kind::Runtime, target_ + ": the output was already committed or discarded");
  if (stream_ == nullptr) {
    stream_ = std::fopen(temp_.c_str(), "wb");
    if (stream_ == nullptr) throw Error(Error::Kind::Unreadable, target_ + ": cannot write: " + std::strerror(errno));
  }
  if (n > 0 && std::fwrite(data, 1, n, stream_) != n)
    throw Error(Error::Kind::Unreadable, target_ + ": cannot write: " + std::strerror(errno));
}

void OutputFile::close_stream() {
  if (stream_ == nullptr) return;
  const bool flushed = std::fflush(stream_) == 0;
  const int err = errno;
  const bool closed = std::fclose(stream_) == 0;
  stream_ = nullptr;
  if (!flushed || !closed) throw Error(Error::Kind::Unreadable, target_ + ": cannot write: " + std::strerror(flushed ? errno : err));
}

void OutputFile::commit() {
  if (!open_) throw Error(Error::Kind::Runtime, target_ + ": the output was already committed or discarded");
  close_stream();  // a failed last write (a full disk) throws here: the destructor discards
  if (direct_) {
    open_ = false;
    return;
  }
  const mode_t mask = ::umask(0);
  ::umask(mask);
  std::string named = temp_;
  if (fd_ >= 0) {
    ::fsync(fd_);
    ::fchmod(fd_, 0666 & ~mask);
    // linkat cannot replace the target: a hidden name first, registered for
    // the signal handler, renamed over the target below.
    static std::atomic<unsigned> serial{0};
    std::random_device entropy;
    const char* digits = "abcdefghijklmnopqrstuvwxyz0123456789";
    named.clear();
    int err = EEXIST;
    for (int attempt = 0; attempt < 100 && named.empty() && err == EEXIST; ++attempt) {
      unsigned r = entropy() ^ (serial++ * 2654435761u) ^ static_cast<unsigned>(::getpid());
      std::string name = temp_prefix(dest_);
      for (int k = 0; k < 6; ++k, r /= 36) name += digits[r % 36];
      name += ".part";
      sigset_t all, old;
      sigfillset(&all);
      ::pthread_sigmask(SIG_BLOCK, &all, &old);
      if (::linkat(AT_FDCWD, temp_.c_str(), AT_FDCWD, name.c_str(), AT_SYMLINK_FOLLOW) == 0) {
        named = name;
        register_temp(named);
      } else {
        err = errno;
      }
      ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    }
    if (named.empty()) {
      discard();
      throw Error(Error::Kind::Unreadable, target_ + ": cannot write: " + std::strerror(err));
    }
  } else {
    const int fd = ::open(temp_.c_str(), O_RDONLY);
    if (fd >= 0) {
      ::fsync(fd);
      ::fchmod(fd, 0666 & ~mask);
      ::close(fd);
    }
  }
  if (std::rename(named.c_str(), dest_.c_str()) != 0) {
    const int err = errno;
    if (named != temp_) {
      ::unlink(named.c_str());
      unregister_temp(named);
    }
    discard();
    throw Error(Error::Kind::Unreadable, target_ + ": cannot write: " + std::strerror(err));
  }
  unregister_temp(named);
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  open_ = false;
}

void OutputFile::discard() {
  if (stream_ != nullptr) {
    std::fclose(stream_);
    stream_ = nullptr;
  }
  if (!open_) return;
  if (fd_ >= 0) {
    ::close(fd_);  // an unnamed file goes with its last descriptor
    fd_ = -1;
  } else if (!direct_) {  // (a device or a pipe written in place: nothing to undo)
    ::unlink(temp_.c_str());
    unregister_temp(temp_);
  }
  open_ = false;
}

OutputFolder::OutputFolder(const std::string& dir, const std::string& stem) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw Error(Error::Kind::NotFound, dir + ": no such folder");
  install_output_signal_handlers();
  sweep_stale(dir, stem);
  std::string tmpl = dir + "/." + stem + ".part.XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back(0);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  const char* made = ::mkdtemp(buf.data());
  if (made) {
    path_ = made;
    register_temp(path_, true);
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (!made) throw Error(Error::Kind::Unreadable, dir + ": cannot create a folder there");
  // Its maker, for a later run's sweep_stale() should this process be killed.
  std::ofstream(path_ + "/" + kOwner) << owner_record();
}

OutputFolder::~OutputFolder() { discard(); }

void OutputFolder::discard() {
  if (path_.empty()) return;
  unregister_temp(path_);
  remove_folder(path_.c_str());
  path_.clear();
}

}  // namespace anitalker
