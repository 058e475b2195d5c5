#pragma once

// Counter-based and sequential SplitMix64 random numbers for the hashtag
// resampler and label-noise injection.
//
// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
// generators", OOPSLA 2014; Vigna's reference C code) keeps a 64-bit state
// that grows by the golden-ratio increment and passes it through a
// fixed bijective finalizer. Output j of the stream seeded with s is therefore
// finalize(s + (j + 1) * gamma): any position can be computed directly, which
// makes draw i of an epoch a pure function of (seed, epoch, i). It passes
// BigCrush and is the generator Java's SplittableRandom and the xoshiro
// authors use for seeding.

#include <cstdint>

namespace dlcore {
namespace detail {

/// The golden-ratio increment of SplitMix64.
constexpr uint64_t kSplitMixGamma = 0x9E3779B97F4A7C15ULL;

/// SplitMix64's finalizer (a bijection of 64-bit words).
inline uint64_t splitmix_finalize(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/// Output `j` (0-based) of the SplitMix64 stream whose initial state is `key`.
inline uint64_t splitmix_at(uint64_t key, uint64_t j) {
  return splitmix_finalize(key + (j + 1) * kSplitMixGamma);
}

/// The key of the stream for (seed, epoch): output `epoch` of the stream
/// seeded with the finalized seed, so distinct epochs get unrelated keys.
inline uint64_t stream_key(uint64_t seed, uint64_t epoch) {
  return splitmix_at(splitmix_finalize(seed ^ 0x6A09E667F3BCC909ULL), epoch);
}

/// A uniform double in [0, 1) from the top 53 bits of `x`.
inline double uniform53(uint64_t x) {
  return static_cast<double>(x >> 11) * 0x1.0p-53;
}

/// Lemire's nearly-divisionless unbiased map of a uniform 64-bit word `x` to
/// [0, n), n >= 1 ("Fast random integer generation in an interval", ACM TOMACS
/// 2019). On the rare rejection (probability below n / 2^64) the word is
/// replaced by `refill()`, so the result stays exactly uniform.
template <typename Refill>
inline uint64_t bounded(uint64_t x, uint64_t n, Refill&& refill) {
  unsigned __int128 m = static_cast<unsigned __int128>(x) * n;
  uint64_t low = static_cast<uint64_t>(m);
  if (low < n) {
    const uint64_t threshold = (0 - n) % n;
    while (low < threshold) {
      x = refill();
      m = static_cast<unsigned __int128>(x) * n;
      low = static_cast<uint64_t>(m);
    }
  }
  return static_cast<uint64_t>(m >> 64);
}

/// `bounded` for a counter-based word: a rejected word is re-finalized, which
/// keeps the result a deterministic function of the position.
inline uint64_t bounded_at(uint64_t x, uint64_t n) {
  return bounded(x, n, [&x]() {
    x = splitmix_finalize(x + kSplitMixGamma);
    return x;
  });
}

/// A sequential SplitMix64 generator for set-up work (shuffles, noise).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t next() {
    state_ += kSplitMixGamma;
    return splitmix_finalize(state_);
  }

  /// Uniform double in [0, 1) with 53 random bits.
  double uniform() {
    return uniform53(next());
  }

  /// Unbiased uniform integer in [0, n), n >= 1.
  uint64_t below(uint64_t n) {
    return bounded(next(), n, [this]() { return next(); });
  }

 private:
  uint64_t state_;
};

} // namespace detail
} // namespace dlcore
