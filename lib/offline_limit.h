// How much audio is worked on in one piece: the elements' `offline-limit`
// property and the tools' `--offline-limit` option share its default and
// range.  HuBERT's and the denoiser's attention span the whole clip, so the
// memory of one piece grows with the square of its length.  Torch-free.
#pragma once

namespace anitalker {

constexpr unsigned kOfflineLimitDefaultS = 120;  // seconds
constexpr unsigned kOfflineLimitMaxS = 86400;

// Whether `seconds` of audio go past `limit_s` (0: no limit).
inline bool past_offline_limit(double seconds, unsigned limit_s) { return limit_s > 0 && seconds > limit_s; }

}  // namespace anitalker
