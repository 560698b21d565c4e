// anitalker::Error: the one exception type of libanitalker.
// Its text names the file, the key or entry, what was expected and what was
// found; its kind lets the GStreamer adapters pick the element-error domain.
#pragma once

#include <stdexcept>
#include <string>

namespace anitalker {

class Error : public std::runtime_error {
 public:
  enum class Kind {
    NotFound,    // a file that does not exist
    Unreadable,  // a file that exists but cannot be opened or read
    Format,      // a file or value that is not what was expected
    Runtime,     // anything that goes wrong while computing
    Usage,       // a bad argument or setting from the caller
  };

  Error(Kind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
  Kind kind() const noexcept { return kind_; }

 private:
  Kind kind_;
};

inline Error format_error(const std::string& what) { return Error(Error::Kind::Format, what); }

}  // namespace anitalker
