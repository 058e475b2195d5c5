#pragma once

// Internals of dlcore::TopKTopPSelector: which SIMD instruction set the hot
// loops (row_scan.h, class_buffers.h) use, chosen at run time so that the
// headers need no -m flags.

#include <atomic>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && \
    defined(__SSE2__)
#define DLCORE_TOPK_X86 1
#include <immintrin.h>
#else
#define DLCORE_TOPK_X86 0
#endif

namespace dlcore {
namespace detail {

/// Instruction sets of the selector's hot loops. For the row scan
/// (row_scan.h), `kScalar` is the exact block method alone and the others
/// guess a threshold and collect candidates with SIMD; with `kAvx512`, the
/// compaction of 8-byte buffers (`topk_keep_best`) partitions with SIMD too.
enum class TopKIsa : int { kScalar = 0, kSse2 = 1, kAvx2 = 2, kAvx512 = 3 };

/// The best instruction set this CPU runs (checked once, at run time: the
/// headers need no -m flags).
inline TopKIsa topk_isa_supported() {
#if DLCORE_TOPK_X86
  static const TopKIsa best = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("popcnt")) {
      return TopKIsa::kAvx512;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt")) {
      return TopKIsa::kAvx2;
    }
    return TopKIsa::kSse2;
  }();
  return best;
#else
  return TopKIsa::kScalar;
#endif
}

/// -1 selects the best supported instruction set; a `TopKIsa` value caps it
/// (the tests run every path the machine has).
inline std::atomic<int>& topk_isa_cap() {
  static std::atomic<int> cap{-1};
  return cap;
}

/// The instruction set the hot loops use now.
inline TopKIsa topk_isa() {
  const int cap = topk_isa_cap().load(std::memory_order_relaxed);
  const TopKIsa best = topk_isa_supported();
  return cap >= 0 && cap < static_cast<int>(best) ? static_cast<TopKIsa>(cap)
                                                  : best;
}

} // namespace detail
} // namespace dlcore
