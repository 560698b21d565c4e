// WAV files as the AniTalker demo's librosa.load sees them (spec
// audio-features.md section 0): mono float32, multichannel files mixed down by
// the arithmetic mean of the channels, 16-bit PCM scaled by 1/32768.  No
// resampling here: the caller resamples when sample_rate is not 16000.
// Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace anitalker {

struct Audio {
  int sample_rate = 0;         // the file's rate, in Hz
  int channels = 0;            // the file's channel count (before the mixdown)
  std::vector<float> samples;  // mono: the mean of the channels, in [-1, 1) for integer PCM
};

// Reads a RIFF/WAVE file: PCM 8 (unsigned), 16, 24 or 32 bit, IEEE float 32 or
// 64 bit, and WAVE_FORMAT_EXTENSIBLE with a PCM or float subformat.  Chunks it
// does not need (LIST, fact, cue, ...) are skipped.  Throws anitalker::Error
// naming the file: NotFound / Unreadable when it cannot be opened, Format when
// it is not a WAV file this reader understands, Runtime when its samples
// (mono float32) would be more than `max_samples` (the caller's memory
// bound: a header may say "to the end" of a file of any size), before they
// are allocated.
Audio read_wav(const std::string& path, size_t max_samples = SIZE_MAX);

}  // namespace anitalker
