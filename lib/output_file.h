// Writing an output file safely: the one way every writer of the project
// (the npy writer, the CLI's --out, `anitalker generate`'s MP4) creates its
// results.  Torch-free.
//
//  - The data goes to a temporary file in the target's folder, which only
//    commit() puts in the target's place (a rename): a reader never sees a
//    half-written target, and two runs with the same target never share a
//    temporary file.  Where the folder's file system can (Linux's
//    O_TMPFILE: ext4, xfs, btrfs, tmpfs), the temporary file has no name
//    until commit() links it under a hidden one and renames that over the
//    target, so a process that ends in any way before then, even by SIGKILL
//    or a crash, leaves nothing.  Elsewhere it is ".NAME.TOKEN.XXXXXX.part",
//    created with O_EXCL, TOKEN naming its maker (a hash of the machine's
//    name, the start of its boot id, the process id and start time); making
//    an OutputFile first removes the files of the same target whose makers
//    are gone for sure, and leaves other machines' and live processes'
//    alone.  ANITALKER_NAMED_TEMPORARIES=1 in the environment takes that
//    path everywhere (tests).
//  - A target that resolves to one of the inputs (same device and inode) is
//    refused before anything runs.
//  - A link to a file is followed: the file it names is replaced, the link
//    stays.  A character device (/dev/null) or a pipe is written in place
//    (a rename would replace the device node itself).  "-" (standard output),
//    a folder, a link to nothing and other kinds of file are refused.
//  - SIGINT, SIGTERM, SIGHUP and SIGQUIT remove every named temporary file
//    still open, then end the process as the signal would have.  (SIGKILL
//    cannot be caught: it leaves a named temporary file, never a
//    half-written target, until the next OutputFile of that target.)
#pragma once

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace anitalker {

// Throws Error(Usage) when `target` is the same file as one of `inputs`
// (same st_dev and st_ino; inputs that do not exist are skipped).  `option`
// names the option in the message, e.g. "--out".
void check_not_an_input(const std::string& target, const std::vector<std::string>& inputs,
                        const std::string& option = "--out");

// Throws what OutputFile's constructor would (a missing folder, a target
// that is a folder), and what check_not_an_input throws: for tools that
// check their outputs before any work.
void check_output_path(const std::string& target, const std::vector<std::string>& inputs = {},
                       const std::string& option = "--out");

// Throws Error(Usage) when `target` does not end in `extension` (".npy";
// any case), naming `what` the file holds; a character device or a pipe
// takes any name.  A name that promises another kind of file gets none.
void check_output_extension(const std::string& target, const std::string& extension, const std::string& what,
                            const std::string& option = "--out");

// Throws Error(Usage) when two of the (option, path) outputs are one file
// (the same file when both exist, else the same folder and name): the
// second written would replace the first.  Empty paths are skipped.
void check_distinct_outputs(const std::vector<std::pair<std::string, std::string>>& outputs);

// check_output_extension() for numpy data.
inline void check_npy_output(const std::string& target, const std::string& option = "--out") {
  check_output_extension(target, ".npy", "numpy data (.npy)", option);
}

// The files a tool writes under fixed `names` into `folder` (its option
// `option`): none may be one of `inputs` (it would be replaced after being
// read) nor one of `outputs` (check_distinct_outputs).
void check_folder_outputs(const std::string& folder, const std::vector<std::string>& names, const std::string& option,
                          const std::vector<std::string>& inputs,
                          std::vector<std::pair<std::string, std::string>> outputs);

class OutputFile {
 public:
  // Creates the temporary file next to `target`.  Throws Error(NotFound) when
  // the target's folder does not exist, Error(Unreadable) when it cannot be
  // written, Error(Usage) when the target is an existing folder.
  explicit OutputFile(const std::string& target);
  ~OutputFile();  // removes the temporary file unless committed
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  const std::string& target() const { return target_; }
  // The path to write to (an existing, empty file of this process; for an
  // unnamed file /proc/self/fd/N, which only this process can open).
  const std::string& temp_path() const { return temp_; }
  // Whether the temporary file has no name (nothing to clean up after a kill).
  bool unnamed() const { return fd_ >= 0; }
  // Whether the target is written in place: a character device (/dev/null)
  // or a pipe, which a rename would replace; temp_path() is the target, and
  // commit() and discard() do nothing.
  bool direct() const { return direct_; }
  // Writes `bytes` to the temporary file (replacing what it held).
  void write(const std::string& bytes);
  // Appends `n` bytes: the first call starts the temporary file anew and
  // keeps it open until commit() or discard() (a long output written as it
  // is made, never whole in memory).
  void append(const void* data, size_t n);
  // Ends append()'s writing (flushed and closed; throws Error(Unreadable)
  // when the last writes failed): the temporary file can then be read at
  // temp_path(), e.g. a spool that is never committed.
  void finish_appends() { close_stream(); }
  // Flushes the temporary file to disk, gives it the permissions a new file
  // gets (0666 less the umask) and renames it over the target.
  void commit();
  // Removes the temporary file (also done by the destructor).
  void discard();

 private:
  std::string target_, temp_;
  std::string dest_;  // what commit() renames over: the target, or the file a link to it names
  bool open_ = false;
  bool direct_ = false;  // a character device or a pipe: written in place
  int fd_ = -1;  // the unnamed file's descriptor, kept open until commit() or discard()
  FILE* stream_ = nullptr;  // append()'s
  void close_stream();      // throws Error(Unreadable) when the last writes failed
};

// A temporary folder for outputs of many files (a PNG sequence): hidden
// (".STEM.part.XXXXXX" in `dir`), emptied and removed by discard(), by the
// destructor and by SIGINT/SIGTERM/SIGHUP/SIGQUIT, as OutputFile's
// temporary file.  The caller moves its files out, then discards it.  Its
// files must be flat (no subfolders).  It records its maker (machine, boot,
// process id and start time, in ".owner"); making one first removes the
// ".STEM.part.*" folders in `dir` whose makers are gone for sure (killed by
// SIGKILL, a crash, a reboot), and leaves any other machine's alone.
class OutputFolder {
 public:
  OutputFolder(const std::string& dir, const std::string& stem);
  ~OutputFolder();
  OutputFolder(const OutputFolder&) = delete;
  OutputFolder& operator=(const OutputFolder&) = delete;
  const std::string& path() const { return path_; }
  void discard();

 private:
  std::string path_;
};

// Installs the signal handlers that remove open temporary files (idempotent;
// OutputFile installs them on first use).
void install_output_signal_handlers();

}  // namespace anitalker
