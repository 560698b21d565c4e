// Text that came from outside (a file's keys and fields, a client's
// report) made safe to print: no control characters that a terminal or a
// log would act on.  No LibTorch, no GStreamer.
#pragma once

#include <cstddef>
#include <string>

namespace anitalker {

// `v` with control characters written as \xNN for each of their bytes: C0
// (below 0x20: a newline that would forge a line of its own, ESC that
// starts a terminal's escape sequence), DEL, C1 (U+0080-U+009F: a terminal
// takes U+009B as ESC [ and U+009D as ESC ]), the line and paragraph
// separators, the bidirectional overrides and isolates (which make a line
// read other than it is), and every byte that is not valid UTF-8.  At most
// `max` bytes of the result are kept, then "... (N bytes)".
std::string printable(const std::string& v, size_t max = 200);

// The same for a whole message whose line breaks are its own (an error
// that lists files a line each): \n and \t kept, everything else as above,
// no length limit.
std::string printable_lines(const std::string& v);

}  // namespace anitalker
