// The MFCC audio features of AniTalker's mfcc_* inference types: what
// python_speech_features 0.6 computes with the demo's arguments (spec
// audio-features.md section 2): 13 MFCCs (c0 = log frame energy) plus their
// N = 1 and N = 2 regression deltas, 39 values per 10 ms frame.  The input is
// the 16 kHz mono float32 waveform of section 0.  Double precision throughout
// after the float32 pre-emphasis, as in the reference (section 5, item 10).
// Torch-free.
#pragma once

#include <array>
#include <cstddef>
#include <vector>

namespace anitalker {

// The analysis settings the demo uses (all python_speech_features defaults but
// winlen / winstep / numcep, which the demo passes with these same values).
constexpr int kMfccSampleRate = 16000;
constexpr size_t kMfccFrameLength = 400;  // 25 ms
constexpr size_t kMfccFrameStep = 160;    // 10 ms
constexpr size_t kMfccNfft = 512;
constexpr size_t kMfccFilters = 26;
constexpr size_t kMfccCoefficients = 13;
constexpr size_t kMfccChannels = 3 * kMfccCoefficients;  // 39

struct Mfcc {
  size_t frames = 0;
  std::vector<double> c13;  // [frames, 13] row-major; column 0 = ln(frame energy)
  std::vector<double> d1;   // [frames, 13]: delta(c13, N = 1)
  std::vector<double> d2;   // [frames, 13]: delta(c13, N = 2), not delta-of-delta
  // [frames, 39]: each row is c13 | d1 | d2 (np.hstack).
  std::vector<double> stacked39() const;
};

// The features of x[0..n-1] (16 kHz mono).  n must be at least 1 (the
// reference fails on an empty signal); throws a Usage error otherwise.
Mfcc mfcc(const float* x, size_t n);

// Shorthand for mfcc(x, n).stacked39(); stores the frame count in *frames when
// frames is not null.
std::vector<double> mfcc39(const float* x, size_t n, size_t* frames = nullptr);

// Frames for n samples: 1 if n <= 400, else 1 + ceil((n - 400) / 160).
size_t mfcc_frame_count(size_t n);

// Video frames (25 fps) for t MFCC frames (100 fps): floor(t / 4).  The model
// input is MFCC rows 0 .. 4 * mfcc_video_frames(t) - 1 (no padding).
size_t mfcc_video_frames(size_t mfcc_frames);

// The 28 integer FFT-bin points of the 26 triangular mel filters, computed as
// the reference computes them (section 2, step 6).
std::array<int, kMfccFilters + 2> mfcc_mel_bin_points();

// delta(feat, N) of python_speech_features on a [frames, width] row-major
// block: regression slope over +-N frames with edge padding.
std::vector<double> mfcc_delta(const std::vector<double>& feat, size_t frames, size_t width, int N);

}  // namespace anitalker
