#pragma once

// SplitMix64: the one 64-bit mixer of the library, the one way of turning a
// user's (seed, epoch, stream) into a random key, counter-based and
// sequential streams, and the maps from random words to bounded integers and
// doubles.
//
// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
// generators", OOPSLA 2014; Vigna's reference C code) keeps a 64-bit state
// that grows by the golden-ratio increment gamma and passes it through a
// fixed bijective finalizer. Output j of the stream whose state starts at k
// is therefore mix(k + (j + 1) * gamma): any position can be computed
// directly, which makes draw i of an epoch a pure function of
// (seed, epoch, i). It passes BigCrush and is the generator Java's
// SplittableRandom and the xoshiro authors use for seeding.
//
// Keys (the one derivation; every seeded component goes through it):
//
//   stream seed  s = mix(seed XOR stream)
//   epoch key    k = mix(s XOR (epoch * gamma + kSplitMixEpochOffset))
//
// where `stream` is a constant per component (below), so that one user seed
// gives unrelated randomness to unrelated components, and mix is bijective,
// so distinct seeds give distinct stream seeds and, within a stream, distinct
// epochs give distinct keys. A component that draws per epoch uses the epoch
// key; one without epochs uses the stream seed.
//
//   component            stream                   key used for
//   Batches              kBatchesStream (0)       epoch e's torch generator
//   HashtagResampler     kHashtagResamplerStream  epoch e's counter stream
//   inject_label_noise   kLabelNoiseStream        the sequential generator
//
// The selector and the random splits use no SplitMix: splits seed torch's
// generator with the user seed itself, so that they equal PyTorch's
// `torch.Generator().manual_seed(seed)` index for index.

#include <cstdint>

namespace dlcore {
namespace detail {

/// The golden-ratio increment of SplitMix64.
constexpr uint64_t kSplitMixGamma = 0x9E3779B97F4A7C15ULL;

/// The constant added to `epoch * gamma` before it is mixed into a stream
/// seed, so that epoch 0 does not XOR the stream seed with zero.
constexpr uint64_t kSplitMixEpochOffset = 0x632BE59BD9B4E019ULL;

/// Stream of `Batches` (its shuffling orders). Zero, so the stream seed is
/// mix(seed).
constexpr uint64_t kBatchesStream = 0;
/// Stream of `HashtagResampler` (draws and replicate shuffles).
constexpr uint64_t kHashtagResamplerStream = 0x6A09E667F3BCC909ULL;
/// Stream of `inject_label_noise` (selection and replacement).
constexpr uint64_t kLabelNoiseStream = 0xA54FF53A5F1D36F1ULL;

/// SplitMix64's finalizer (a bijection of 64-bit words).
inline uint64_t splitmix_finalize(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/// The seed of component `stream` for the user's `seed`:
/// mix(seed XOR stream).
inline uint64_t splitmix_stream_seed(uint64_t seed, uint64_t stream) {
  return splitmix_finalize(seed ^ stream);
}

/// The key of epoch `epoch` of component `stream` for the user's `seed`:
/// mix(mix(seed XOR stream) XOR (epoch * gamma + kSplitMixEpochOffset)),
/// with the epoch taken modulo 2^64 (negative epochs are valid).
inline uint64_t splitmix_epoch_key(
    uint64_t seed, uint64_t epoch, uint64_t stream) {
  return splitmix_finalize(
      splitmix_stream_seed(seed, stream) ^
      (epoch * kSplitMixGamma + kSplitMixEpochOffset));
}

/// Output `j` (0-based) of the SplitMix64 stream whose initial state is `key`.
inline uint64_t splitmix_at(uint64_t key, uint64_t j) {
  return splitmix_finalize(key + (j + 1) * kSplitMixGamma);
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
