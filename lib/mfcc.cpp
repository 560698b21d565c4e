// MFCC features, python_speech_features 0.6 as called by the AniTalker demo.
//
// Spec: shared/spec/audio-features.md section 2 (the steps are numbered as
// there), tolerances in section 3, pitfalls in section 5 (items 9 to 11).
// The pipeline per 400-sample frame:
//   float32 pre-emphasis -> rectangular frame -> |rfft 512|^2 / 512 (double)
//   -> frame energy and 26 mel-filter energies, floored at DBL_EPSILON only
//   when exactly 0 -> ln -> orthonormal DCT-II (13 kept) -> lifter 22 ->
//   c0 := ln(energy); then delta N = 1 and N = 2 over the whole clip.
#include "mfcc.h"

#include <cfloat>
#include <cmath>
#include <cstdint>

#include "error.h"

namespace anitalker {

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr size_t kBins = kMfccNfft / 2 + 1;  // 257

// python_speech_features' hz2mel / mel2hz.
double hz2mel(double hz) { return 2595.0 * std::log10(1.0 + hz / 700.0); }
double mel2hz(double mel) { return 700.0 * (std::pow(10.0, mel / 2595.0) - 1.0); }

struct Tables {
  double wr[kMfccNfft / 2], wi[kMfccNfft / 2];  // exp(-2 pi i k / 512)
  uint16_t rev[kMfccNfft];                      // bit reversal of 9 bits
  std::array<int, kMfccFilters + 2> bins;
  double fb[kMfccFilters][kBins];  // triangle weights, zero outside [b[j], b[j+2])
  double dct[kMfccCoefficients][kMfccFilters];  // s_n cos(pi n (2j + 1) / 52)
  double lift[kMfccCoefficients];

  Tables() {
    for (size_t k = 0; k < kMfccNfft / 2; ++k) {
      const double a = 2.0 * kPi * static_cast<double>(k) / static_cast<double>(kMfccNfft);
      wr[k] = std::cos(a);
      wi[k] = -std::sin(a);
    }
    for (size_t i = 0; i < kMfccNfft; ++i) {
      unsigned r = 0;
      for (size_t b = 1, m = kMfccNfft >> 1; m; b <<= 1, m >>= 1)
        if (i & b) r |= static_cast<unsigned>(m);
      rev[i] = static_cast<uint16_t>(r);
    }

    // Step 6.  numpy.linspace(lowmel, highmel, 28) is i * step + start with
    // the last point set to stop exactly; the bins are floor((nfft + 1) * hz /
    // rate).  Reproducing the arithmetic matters only where a point lands near
    // an integer, but the test checks every point against the spec's list.
    const double lowmel = hz2mel(0.0), highmel = hz2mel(kMfccSampleRate / 2.0);
    const size_t np = kMfccFilters + 2;
    const double step = (highmel - lowmel) / static_cast<double>(np - 1);
    for (size_t i = 0; i < np; ++i) {
      const double mel = i + 1 == np ? highmel : static_cast<double>(i) * step + lowmel;
      bins[i] = static_cast<int>(std::floor(static_cast<double>(kMfccNfft + 1) * mel2hz(mel) / kMfccSampleRate));
    }
    for (size_t j = 0; j < kMfccFilters; ++j) {
      for (size_t k = 0; k < kBins; ++k) fb[j][k] = 0.0;
      // Rising edge: weight 0 at the left foot b[j], 1 at the peak b[j+1];
      // falling edge stops before b[j+2] (that bin gets no weight).
      for (int i = bins[j]; i < bins[j + 1]; ++i)
        fb[j][i] = static_cast<double>(i - bins[j]) / static_cast<double>(bins[j + 1] - bins[j]);
      for (int i = bins[j + 1]; i < bins[j + 2]; ++i)
        fb[j][i] = static_cast<double>(bins[j + 2] - i) / static_cast<double>(bins[j + 2] - bins[j + 1]);
    }

    // Step 8: scipy's dct(type=2, norm='ortho'): s_0 = sqrt(1/26), s_n = sqrt(2/26).
    for (size_t n = 0; n < kMfccCoefficients; ++n) {
      const double s = std::sqrt((n == 0 ? 1.0 : 2.0) / static_cast<double>(kMfccFilters));
      for (size_t j = 0; j < kMfccFilters; ++j)
        dct[n][j] = s * std::cos(kPi * static_cast<double>(n) * static_cast<double>(2 * j + 1) / (2.0 * kMfccFilters));
    }
    // Step 9: lifter(L = 22) = 1 + (L / 2) sin(pi n / L).
    for (size_t n = 0; n < kMfccCoefficients; ++n) lift[n] = 1.0 + 11.0 * std::sin(kPi * static_cast<double>(n) / 22.0);
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

// In-place radix-2 complex FFT of length 512 (input already in bit-reversed
// order).  Double precision: numpy's pocketfft is double too, and the log of
// weak filter energies amplifies any float32 FFT rounding past 1e-4 (section 5,
// item 10).
void fft512(double* re, double* im, const Tables& t) {
  for (size_t len = 2; len <= kMfccNfft; len <<= 1) {
    const size_t half = len / 2, stride = kMfccNfft / len;
    for (size_t i = 0; i < kMfccNfft; i += len) {
      for (size_t j = 0; j < half; ++j) {
        const double wr = t.wr[j * stride], wi = t.wi[j * stride];
        const size_t a = i + j, b = a + half;
        const double vr = re[b] * wr - im[b] * wi;
        const double vi = re[b] * wi + im[b] * wr;
        re[b] = re[a] - vr;
        im[b] = im[a] - vi;
        re[a] += vr;
        im[a] += vi;
      }
    }
  }
}

// Steps 4 to 10 for one 400-sample frame `y` (already pre-emphasised); writes
// the 13 coefficients to `out`.
void frame_mfcc(const float* y, const Tables& t, double* out) {
  double re[kMfccNfft], im[kMfccNfft];
  for (size_t i = 0; i < kMfccNfft; ++i) {
    // Step 3: rectangular window, so the frame is used as is; step 4 pads it
    // with zeros from 400 to 512.  float32 -> double is exact.
    re[t.rev[i]] = i < kMfccFrameLength ? static_cast<double>(y[i]) : 0.0;
    im[i] = 0.0;
  }
  fft512(re, im, t);

  // Step 4: P = |X|^2 / 512, numpy's square(absolute(X)) (absolute = hypot).
  double p[kBins];
  double energy = 0.0;
  for (size_t k = 0; k < kBins; ++k) {
    const double mag = std::hypot(re[k], im[k]);
    p[k] = (1.0 / static_cast<double>(kMfccNfft)) * (mag * mag);
    energy += p[k];  // step 5: all 257 bins, 256 included
  }
  // Steps 5 and 7: the floor applies to exact zeros only (digital silence),
  // giving ln(DBL_EPSILON) = -36.04; a tiny but non-zero energy keeps its own
  // log, so no max(x, eps) here.
  if (energy == 0.0) energy = DBL_EPSILON;

  double logf[kMfccFilters];
  for (size_t j = 0; j < kMfccFilters; ++j) {
    double f = 0.0;
    for (int k = t.bins[j]; k < t.bins[j + 2]; ++k) f += p[k] * t.fb[j][k];
    if (f == 0.0) f = DBL_EPSILON;
    logf[j] = std::log(f);
  }

  // Step 8 (c0 of the DCT is skipped: step 10 replaces it).  For n >= 1 the
  // cosines sum to zero over j, so subtracting the constant logf[0] changes
  // nothing mathematically; it makes a flat log spectrum (an all-silent frame,
  // every filter at ln(DBL_EPSILON)) give exactly 0 where the reference has
  // ~3e-14 of cosine rounding (spec: "columns 1..12 = 0").
  for (size_t n = 1; n < kMfccCoefficients; ++n) {
    double s = 0.0;
    for (size_t j = 0; j < kMfccFilters; ++j) s += t.dct[n][j] * (logf[j] - logf[0]);
    out[n] = s * t.lift[n];  // step 9
  }
  // Step 10: appendEnergy sets c0 to ln(E): not liftered, not a cepstral
  // coefficient.
  out[0] = std::log(energy);
}

}  // namespace

size_t mfcc_frame_count(size_t n) {
  if (n <= kMfccFrameLength) return 1;
  return 1 + (n - kMfccFrameLength + kMfccFrameStep - 1) / kMfccFrameStep;
}

size_t mfcc_video_frames(size_t mfcc_frames) { return mfcc_frames / 4; }

std::array<int, kMfccFilters + 2> mfcc_mel_bin_points() { return tables().bins; }

std::vector<double> mfcc_delta(const std::vector<double>& feat, size_t frames, size_t width, int N) {
  if (N < 1) throw Error(Error::Kind::Usage, "mfcc_delta: N must be >= 1");
  if (feat.size() != frames * width) throw Error(Error::Kind::Usage, "mfcc_delta: feature size does not match frames x width");
  double denom = 0.0;
  for (int k = 1; k <= N; ++k) denom += static_cast<double>(k * k);
  denom *= 2.0;
  std::vector<double> d(frames * width, 0.0);
  const long last = static_cast<long>(frames) - 1;
  for (long t = 0; t <= last; ++t) {
    for (size_t c = 0; c < width; ++c) {
      double num = 0.0;
      for (int k = 1; k <= N; ++k) {
        // numpy.pad(mode='edge'): frames before 0 / after the end repeat the
        // first / last frame.
        const long ahead = t + k > last ? last : t + k;
        const long behind = t - k < 0 ? 0 : t - k;
        num += static_cast<double>(k) * (feat[ahead * width + c] - feat[behind * width + c]);
      }
      d[t * width + c] = num / denom;
    }
  }
  return d;
}

Mfcc mfcc(const float* x, size_t n) {
  if (n == 0) throw Error(Error::Kind::Usage, "mfcc: empty signal (at least one sample is needed)");
  const Tables& t = tables();
  Mfcc m;
  m.frames = mfcc_frame_count(n);

  // Step 2: zero padding at the end only, to (T - 1) * 160 + 400 samples.
  const size_t padded = (m.frames - 1) * kMfccFrameStep + kMfccFrameLength;
  std::vector<float> y(padded, 0.0f);

  // Step 1, in float32 as numpy does it (float32 array times a Python float
  // stays float32): 0.97 rounded to float, the product rounded to float, then
  // the difference rounded.  The volatile store forces that rounding of the
  // product: with fused multiply-add (-ffp-contract=fast and an FMA target)
  // the product would stay exact and the result could differ in the last bit.
  y[0] = x[0];
  for (size_t i = 1; i < n; ++i) {
    volatile float prod = 0.97f * x[i - 1];
    y[i] = x[i] - prod;
  }

  m.c13.resize(m.frames * kMfccCoefficients);
  for (size_t f = 0; f < m.frames; ++f)
    frame_mfcc(y.data() + f * kMfccFrameStep, t, m.c13.data() + f * kMfccCoefficients);

  // Step 11: both delta blocks are regressions of the MFCCs themselves.
  m.d1 = mfcc_delta(m.c13, m.frames, kMfccCoefficients, 1);
  m.d2 = mfcc_delta(m.c13, m.frames, kMfccCoefficients, 2);
  return m;
}

std::vector<double> Mfcc::stacked39() const {
  std::vector<double> out(frames * kMfccChannels);
  for (size_t f = 0; f < frames; ++f) {
    double* o = out.data() + f * kMfccChannels;
    for (size_t c = 0; c < kMfccCoefficients; ++c) {
      o[c] = c13[f * kMfccCoefficients + c];
      o[kMfccCoefficients + c] = d1[f * kMfccCoefficients + c];
      o[2 * kMfccCoefficients + c] = d2[f * kMfccCoefficients + c];
    }
  }
  return out;
}

std::vector<double> mfcc39(const float* x, size_t n, size_t* frames) {
  Mfcc m = mfcc(x, n);
  if (frames) *frames = m.frames;
  return m.stacked39();
}

}  // namespace anitalker
