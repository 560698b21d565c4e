// Sets the creation and modification times of an MP4 (mvhd, tkhd, mdhd
// boxes) to 0, i.e. "not given": mp4mux writes the wall clock there, which
// alone made two runs of `anitalker generate` differ.  Same inputs, same
// seed, same bytes.
#pragma once

#include <string>

namespace cli {

// Patches `path` in place; throws anitalker::Error naming the file when it
// cannot be read or written.  Returns the number of boxes patched.
int clear_mp4_times(const std::string& path);

}  // namespace cli
