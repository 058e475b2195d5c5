#pragma once

// Process-wide memory allocator settings for CPU training loops.

#include <c10/util/Exception.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace dlcore {

/// What `configure_allocator` did, so that a program can log it.
struct AllocatorConfig {
  /// True when the settings were applied (glibc's malloc; false under
  /// another allocator, e.g. AddressSanitizer's, which refuses `mallopt`).
  bool applied = false;
  /// Allocations at least this large are served by mmap (bytes).
  int64_t mmap_threshold = 0;
  /// Free memory at the top of the heap beyond this is returned to the
  /// operating system (bytes).
  int64_t trim_threshold = 0;

  /// One line for a log, e.g. "malloc: mmap threshold 32 MB, trim 256 MB".
  std::string describe() const {
    if (!applied) {
      return "malloc: defaults (not glibc's allocator, or mallopt refused)";
    }
    return "malloc: mmap threshold " + std::to_string(mmap_threshold >> 20) +
           " MB, trim threshold " + std::to_string(trim_threshold >> 20) +
           " MB";
  }
};

/// Keeps the memory of freed tensors in the process for reuse.
///
/// A training step allocates and frees the same activation and gradient
/// tensors (hundreds of KB to MB each) every step. With glibc's defaults,
/// allocations above a dynamic threshold (128 KB to start) are mmap'ed and
/// unmapped again, and free memory at the heap top above twice that is
/// returned to the system; either way the next step touches fresh pages, and
/// every 4 KB page costs a page fault (the kernel zeroes it). On LeNet-5 that
/// was 1.6 million page faults and about a quarter of a single-threaded
/// epoch (docs/performance/epoch.md). This raises both thresholds
/// (`mallopt(M_MMAP_THRESHOLD / M_TRIM_THRESHOLD)`), so freed blocks up to
/// `mmap_threshold` stay in the heap and are reused; the process keeps up to
/// `trim_threshold` of free memory instead of returning it. It also exports
/// `MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_` so that child
/// processes (e.g. a Python baseline) run under the same policy. The same
/// effect as the environment variables, or as preloading jemalloc or
/// tcmalloc, which PyTorch's CPU tuning guide recommends.
///
/// `mmap_threshold` must lie in [0, 32 MB] (mallopt(3)'s documented maximum
/// on 64-bit, DEFAULT_MMAP_THRESHOLD_MAX) and
/// `trim_threshold` in [0, 2^31 - 1]; anything else is an error. A no-op
/// (`applied == false`) with another C library. Call it once, early in
/// `main`.
///
/// Example:
///   std::cout << dlcore::configure_allocator().describe() << "\n";
inline AllocatorConfig configure_allocator(
    int64_t mmap_threshold = int64_t{32} << 20,
    int64_t trim_threshold = int64_t{256} << 20) {
  constexpr int64_t kMaxMmap = int64_t{32} << 20;
  constexpr int64_t kMaxTrim = (int64_t{1} << 31) - 1;
  TORCH_CHECK(
      mmap_threshold >= 0 && mmap_threshold <= kMaxMmap,
      "configure_allocator: expected 0 <= mmap_threshold <= ",
      kMaxMmap,
      " (32 MB), but got ",
      mmap_threshold);
  TORCH_CHECK(
      trim_threshold >= 0 && trim_threshold <= kMaxTrim,
      "configure_allocator: expected 0 <= trim_threshold <= ",
      kMaxTrim,
      ", but got ",
      trim_threshold);
  AllocatorConfig config;
  config.mmap_threshold = mmap_threshold;
  config.trim_threshold = trim_threshold;
#if defined(__GLIBC__)
  const bool mmap_ok =
      mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap_threshold)) == 1;
  const bool trim_ok =
      mallopt(M_TRIM_THRESHOLD, static_cast<int>(trim_threshold)) == 1;
  config.applied = mmap_ok && trim_ok;
  if (config.applied) {
    ::setenv(
        "MALLOC_MMAP_THRESHOLD_",
        std::to_string(mmap_threshold).c_str(),
        /*overwrite=*/1);
    ::setenv(
        "MALLOC_TRIM_THRESHOLD_",
        std::to_string(trim_threshold).c_str(),
        /*overwrite=*/1);
  }
#endif
  return config;
}

} // namespace dlcore
