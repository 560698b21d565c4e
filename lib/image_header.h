// What an image file says about itself before it is decoded: its format and
// size from the header, so that a huge picture is refused before its pixels
// are allocated and a truncated JPEG is not rendered half-decoded.
// Torch-free.
#pragma once

#include <cstdint>
#include <string>

namespace anitalker {

struct ImageHeader {
  // "png", "jpeg", "gif", "bmp", "webp", "tiff"; "heif" (HEIC), "avif"; the videos "isobmff" (another
  // ftyp file: MP4, QuickTime), "matroska" (and WebM), "avi", "mpegts" (188- or 192-byte packets),
  // "mpegps", "flv"; or "" when not recognised
  std::string format;
  bool video() const {
    return format == "isobmff" || format == "matroska" || format == "avi" || format == "mpegts" || format == "mpegps" ||
           format == "flv";
  }
  int64_t width = -1, height = -1;  // -1 when the header does not say (or is not read)
  bool truncated = false;           // a JPEG without its end marker, a PNG without IEND
  bool alpha = false;   // a PNG with an alpha channel (grey or colour), a WebP whose header says it has alpha
  int orientation = 0;  // a JPEG's EXIF orientation tag, 1 to 8 (6: shown turned 90 degrees clockwise); 0: none
};

// Reads the header of `path` (and, for JPEG and PNG, looks for the end
// marker).  Throws Error(NotFound / Unreadable) naming the file.
ImageHeader read_image_header(const std::string& path);

// The most pixels (width x height) a portrait may have: 100 million, or the
// environment variable ANITALKER_MAX_PIXELS.
int64_t max_image_pixels();

// Throws Error(Format) naming the file when the image cannot be used as a
// portrait without decoding it: larger than max_image_pixels() (the message
// gives both sizes and the variable), truncated, or a GIF (OpenCV has no GIF
// decoder).  Unrecognised formats are left to the decoder.  Returns the
// header.
ImageHeader check_image_header(const std::string& path);

}  // namespace anitalker
