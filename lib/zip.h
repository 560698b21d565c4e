// A reader for the zip container of torch.save (format >= 1.6): entries are
// stored uncompressed, so each entry is a byte range of the mapped file.
// Zip64 records are understood; compressed entries are reported, not read.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "tensor_data.h"

namespace anitalker {

class ZipArchive {
 public:
  struct Entry {
    uint64_t offset = 0;  // of the data, from the start of the file
    uint64_t size = 0;
    uint16_t method = 0;  // 0 = stored
  };

  // `file` is the whole archive; `name` is used in error messages.
  ZipArchive(std::shared_ptr<const Storage> file, std::string name);

  const std::map<std::string, Entry>& entries() const { return entries_; }
  bool has(const std::string& entry) const { return entries_.count(entry) != 0; }
  // The bytes of a stored entry, sharing the archive's memory.  Throws a Format
  // error naming the archive and the entry if it is missing or compressed.
  std::shared_ptr<const Storage> read(const std::string& entry) const;

 private:
  std::shared_ptr<const Storage> file_;
  std::string name_;
  std::map<std::string, Entry> entries_;
};

}  // namespace anitalker
