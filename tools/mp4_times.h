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

// The same for WebM: matroskamux gives each track a random TrackUID (and
// the tags refer to it), so two runs differed in those bytes.  Renumbers
// the tracks' UIDs 1, 2, ... in their order, and the tags' references with
// them, in place, in the same widths.  Returns the number of fields patched.
int clear_webm_uids(const std::string& path);

}  // namespace cli
