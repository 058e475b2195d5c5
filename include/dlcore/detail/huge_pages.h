#pragma once

// Memory that asks Linux for transparent huge pages on large arrays:
// `huge_page_alloc`, and a std::allocator replacement over it for the
// resampler's image-id index (a random read of a 200 MB array otherwise
// misses the TLB on almost every draw; below 4 MiB, or off Linux, it is the
// plain allocator). The selector's per-class buffers use it from 2 MiB.

#include <cstddef>
#include <cstdlib>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace dlcore {
namespace detail {

/// The size of a transparent huge page on x86-64 Linux.
constexpr size_t kHugePageBytes = size_t{2} << 20;

/// `bytes` of uninitialised memory, released with std::free. From
/// `huge_from` bytes up it is 2 MiB-aligned (rounded up to whole 2 MiB) and,
/// on Linux, advised to use transparent huge pages; below, plain malloc.
/// Throws std::bad_alloc.
inline void* huge_page_alloc(size_t bytes, size_t huge_from) {
  if (bytes >= huge_from) {
    const size_t rounded =
        (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
    void* p = std::aligned_alloc(kHugePageBytes, rounded);
    if (p == nullptr) {
      throw std::bad_alloc();
    }
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(p, rounded, MADV_HUGEPAGE); // a hint: failure is harmless
#endif
    return p;
  }
  void* p = std::malloc(bytes == 0 ? 1 : bytes);
  if (p == nullptr) {
    throw std::bad_alloc();
  }
  return p;
}

template <typename T>
struct HugePageAllocator {
  using value_type = T;

  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) noexcept {}

  T* allocate(size_t n) {
    return static_cast<T*>(huge_page_alloc(n * sizeof(T), 2 * kHugePageBytes));
  }

  void deallocate(T* p, size_t) noexcept {
    std::free(p);
  }

  template <typename U>
  bool operator==(const HugePageAllocator<U>&) const noexcept {
    return true;
  }
  template <typename U>
  bool operator!=(const HugePageAllocator<U>&) const noexcept {
    return false;
  }
};

} // namespace detail
} // namespace dlcore
