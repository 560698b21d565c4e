// MFCC features against python_speech_features' output (spec
// audio-features.md section 2; fixtures in tests/data/audio/ref).
#include "mfcc.h"

#include <gmock/gmock.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "error.h"
#include "npy.h"
#include "test_util.h"

using testing::HasSubstr;
using testutil::data;
using testutil::error_of;

namespace {

std::vector<float> read_f32(const std::string& rel) {
  anitalker::TensorData t = anitalker::read_npy(data(rel));
  EXPECT_EQ(t.dtype, anitalker::DType::Float32) << rel;
  std::vector<float> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), t.data(), v.size() * sizeof(float));
  return v;
}

// Checks the shape exactly and returns the largest |ours - ref|.
double max_abs_diff(const std::vector<double>& ours, size_t rows, size_t cols, const std::string& rel) {
  anitalker::TensorData ref = anitalker::read_npy(data(rel));
  EXPECT_EQ(ref.shape, (std::vector<int64_t>{static_cast<int64_t>(rows), static_cast<int64_t>(cols)})) << rel;
  const std::vector<double> r = ref.to_doubles();
  EXPECT_EQ(ours.size(), r.size()) << rel;
  double m = 0.0;
  for (size_t i = 0; i < std::min(ours.size(), r.size()); ++i) m = std::max(m, std::abs(ours[i] - r[i]));
  std::printf("max |diff| %-28s %.3g\n", rel.c_str(), m);
  testing::Test::RecordProperty("max_abs_diff " + rel, std::to_string(m));
  return m;
}

const double kLnEps = std::log(DBL_EPSILON);

}  // namespace

TEST(Mfcc, MelBinPointsAreTheSpecs) {
  const std::array<int, 28> expect = {0,  2,  4,  7,  10, 13, 16,  20,  24,  29,  34,  40,  46,  53,
                                      60, 68, 77, 87, 97, 109, 122, 136, 152, 169, 188, 209, 231, 256};
  EXPECT_EQ(anitalker::mfcc_mel_bin_points(), expect);
}

TEST(Mfcc, FrameCounts) {
  EXPECT_EQ(anitalker::mfcc_frame_count(1), 1u);
  EXPECT_EQ(anitalker::mfcc_frame_count(350), 1u);
  EXPECT_EQ(anitalker::mfcc_frame_count(400), 1u);
  EXPECT_EQ(anitalker::mfcc_frame_count(401), 2u);
  EXPECT_EQ(anitalker::mfcc_frame_count(560), 2u);
  EXPECT_EQ(anitalker::mfcc_frame_count(561), 3u);
  EXPECT_EQ(anitalker::mfcc_frame_count(16133), 100u);
  EXPECT_EQ(anitalker::mfcc_frame_count(33337), 207u);
  EXPECT_EQ(anitalker::mfcc_frame_count(63841), 398u);
  EXPECT_EQ(anitalker::mfcc_video_frames(207), 51u);
  EXPECT_EQ(anitalker::mfcc_video_frames(3), 0u);
  EXPECT_EQ(anitalker::mfcc_video_frames(4), 1u);
  const nlohmann::json meta = testutil::json_file(data("audio/ref/meta.json"));
  EXPECT_EQ(anitalker::mfcc_frame_count(meta["n_samples"].get<size_t>()), meta["T_mfcc"].get<size_t>());
  EXPECT_EQ(anitalker::mfcc_video_frames(meta["T_mfcc"].get<size_t>()), meta["T_video_mfcc"].get<size_t>());
}

TEST(Mfcc, DeltasAreRegressionsWithEdgePadding) {
  // Not delta-of-delta: both are slopes of the features themselves.
  const std::vector<double> f = {0, 1, 4, 9};
  EXPECT_EQ(anitalker::mfcc_delta(f, 4, 1, 1), (std::vector<double>{0.5, 2, 4, 2.5}));
  const std::vector<double> d2 = anitalker::mfcc_delta(f, 4, 1, 2);
  const std::vector<double> expect = {0.9, 2.2, 2.6, 2.1};
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(d2[i], expect[i], 1e-15) << i;
}

TEST(Mfcc, SpeechMatchesReference) {
  const std::vector<float> x = read_f32("audio/ref/input_f32.npy");
  ASSERT_EQ(x.size(), 33337u);
  const anitalker::Mfcc m = anitalker::mfcc(x.data(), x.size());
  ASSERT_EQ(m.frames, 207u);
  EXPECT_LE(max_abs_diff(m.c13, 207, 13, "audio/ref/mfcc13.npy"), 1e-4);
  EXPECT_LE(max_abs_diff(m.d1, 207, 13, "audio/ref/mfcc_delta1.npy"), 1e-4);
  EXPECT_LE(max_abs_diff(m.d2, 207, 13, "audio/ref/mfcc_delta2.npy"), 1e-4);
  const std::vector<double> s = m.stacked39();
  EXPECT_LE(max_abs_diff(s, 207, 39, "audio/ref/mfcc39.npy"), 1e-4);
  size_t frames = 0;
  EXPECT_EQ(anitalker::mfcc39(x.data(), x.size(), &frames), s);
  EXPECT_EQ(frames, 207u);
  // espeak-ng's digital silence: 18 frames floor at exactly ln(DBL_EPSILON).
  size_t silent = 0;
  for (size_t f = 0; f < m.frames; ++f) {
    if (m.c13[f * 13] != kLnEps) continue;
    ++silent;
    for (size_t c = 1; c < 13; ++c) EXPECT_EQ(m.c13[f * 13 + c], 0.0) << f << "," << c;
  }
  EXPECT_EQ(silent, 18u);
}

TEST(Mfcc, DigitalSilenceHitsTheEpsilonFloors) {
  const std::vector<float> x = read_f32("audio/ref/mfcc_silence_input.npy");
  ASSERT_EQ(x.size(), 16133u);
  size_t frames = 0;
  const std::vector<double> s = anitalker::mfcc39(x.data(), x.size(), &frames);
  ASSERT_EQ(frames, 100u);
  EXPECT_LE(max_abs_diff(s, 100, 39, "audio/ref/mfcc_silence_mfcc39.npy"), 1e-4);
  EXPECT_NEAR(kLnEps, -36.04365338911715, 1e-13);
  size_t silent = 0;
  for (size_t f = 0; f < frames; ++f) {
    if (s[f * 39] != kLnEps) continue;
    ++silent;
    for (size_t c = 1; c < 13; ++c) EXPECT_EQ(s[f * 39 + c], 0.0) << f << "," << c;
  }
  EXPECT_EQ(silent, 67u);
  // The first frames (0.5 s of zeros) are silent, and so are their deltas.
  for (size_t c = 0; c < 39; ++c) EXPECT_EQ(s[c], c == 0 ? kLnEps : 0.0) << c;
}

TEST(Mfcc, ShortClipIsOnePaddedFrame) {
  const std::vector<float> x = read_f32("audio/ref/mfcc_short_input.npy");
  ASSERT_EQ(x.size(), 350u);
  const anitalker::Mfcc m = anitalker::mfcc(x.data(), x.size());
  ASSERT_EQ(m.frames, 1u);
  EXPECT_LE(max_abs_diff(m.stacked39(), 1, 39, "audio/ref/mfcc_short_mfcc39.npy"), 1e-4);
  EXPECT_EQ(m.d1, std::vector<double>(13, 0.0));
  EXPECT_EQ(m.d2, std::vector<double>(13, 0.0));
}

TEST(Mfcc, StreamsOfTheSameClipAgree) {
  // Frame f depends only on samples [160 f - 1, 160 f + 400): appending
  // samples past a frame's end leaves that frame's static MFCCs unchanged.
  const std::vector<float> x = read_f32("audio/ref/input_f32.npy");
  const anitalker::Mfcc whole = anitalker::mfcc(x.data(), x.size());
  const anitalker::Mfcc head = anitalker::mfcc(x.data(), 160 * 99 + 400);
  ASSERT_EQ(head.frames, 100u);
  EXPECT_TRUE(std::equal(head.c13.begin(), head.c13.end(), whole.c13.begin()));
}

TEST(Mfcc, EmptySignalIsAnError) {
  const float none[1] = {0.0f};
  EXPECT_THAT(error_of([&] { anitalker::mfcc(none, 0); }), HasSubstr("mfcc: empty signal"));
}
