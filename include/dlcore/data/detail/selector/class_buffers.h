#pragma once

// Internals of dlcore::TopKTopPSelector: the per-class bounded buffer that
// keeps the best K (score, index) pairs under the total order
// (score descending, index ascending).

#include <dlcore/data/detail/selector/isa.h>
#include <dlcore/detail/huge_pages.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

namespace dlcore {
namespace detail {

/// One candidate of a class: the teacher's score for it and the image index.
struct TopKEntry {
  double score;
  int64_t index;
};

/// The same in 8 bytes, exact while the score is a float32 value and the
/// index is below 2^32 (the buffers' entries while that holds for every
/// row: half the memory traffic of `TopKEntry`).
struct TopKEntry32 {
  float score;
  uint32_t index;
};

/// The largest index a `TopKEntry32` holds.
constexpr int64_t kTopKIndex32Max = std::numeric_limits<uint32_t>::max();

/// The score type of an entry type.
template <typename E>
using TopKScore = decltype(E::score);

/// The selection order: `a` ranks before `b` when its score is higher, or
/// the scores are equal and its index is lower. A strict total order on
/// entries with distinct indices.
template <typename E>
inline bool topk_better(const E& a, const E& b) {
  return a.score > b.score || (a.score == b.score && a.index < b.index);
}

/// `topk_better` as a function object, so that std algorithms inline it.
struct TopKBetter {
  template <typename E>
  bool operator()(const E& a, const E& b) const {
    return topk_better(a, b);
  }
};

/// Entries of a class buffer: K plus room for K / 2 (at least 16) entries
/// between compactions.
inline int64_t topk_capacity(int64_t k) {
  return k + std::max<int64_t>(k / 2, 16);
}

/// Writes the best `r + 1` of the `m` entries at `w` (r < m; every score
/// within [lo, hi]) to `out` (not overlapping `w`), unordered, and returns
/// the (r + 1)-th best: what std::nth_element(w, w + r, w + m, TopKBetter{})
/// leaves in w[0..r], without a comparison sort of all m (`w` is
/// overwritten). The scores are counted into 256 equal-width buckets of
/// [lo, hi], best first; the buckets before the one holding the (r + 1)-th
/// best are copied whole and only that bucket is selected. The bucket of a
/// score, (hi - score) * (256 / (hi - lo)) rounded down and capped at 255,
/// never decreases as the score decreases (every floating-point step is
/// monotone), so buckets never reorder entries. Falls back to
/// std::nth_element when [lo, hi] is open, empty or too wide or narrow for
/// a finite scale, and where floating-point expressions may be evaluated
/// in extra precision (FLT_EVAL_METHOD != 0, e.g. x87): the bucket of an
/// entry must come out the same in both passes.
template <typename E>
E topk_select_bracket(
    E* w, size_t m, size_t r, TopKScore<E> hi, TopKScore<E> lo, E* out) {
  using S = TopKScore<E>;
  constexpr size_t kBuckets = 256;
  const S width = hi - lo;
  const S scale = static_cast<S>(kBuckets) / width;
  if (FLT_EVAL_METHOD != 0 || !(width > 0) || !std::isfinite(width) ||
      !std::isfinite(scale)) {
    std::nth_element(w, w + r, w + m, TopKBetter{});
    std::copy(w, w + r + 1, out);
    return w[r];
  }
  auto bucket = [&](S score) {
    const S d = (hi - score) * scale;
    return d < static_cast<S>(kBuckets - 1) ? static_cast<size_t>(d)
                                            : kBuckets - 1;
  };
  size_t count[kBuckets] = {};
  for (size_t i = 0; i < m; ++i) {
    ++count[bucket(w[i].score)];
  }
  size_t before = 0;
  size_t pivot = 0;
  while (before + count[pivot] <= r) {
    before += count[pivot];
    ++pivot;
  }
  // Branch-free: every entry is written to both places and each position
  // advances only for its own kind. out[o] stays within the first r + 1
  // slots (o <= before <= r); w[t] stays at or behind the read position.
  size_t o = 0;
  size_t t = 0;
  for (size_t i = 0; i < m; ++i) {
    const E e = w[i];
    const size_t b = bucket(e.score);
    out[o] = e;
    w[t] = e;
    o += static_cast<size_t>(b < pivot);
    t += static_cast<size_t>(b == pivot);
  }
  const size_t need = r + 1 - before;
  std::nth_element(w, w + (need - 1), w + t, TopKBetter{});
  std::copy(w, w + need, out + before);
  return w[need - 1];
}

/// The partition step of `topk_keep_best`, one branch-free pass: entries
/// above the bracket (score > hi) go to the front of `v`, in place behind
/// the read position, those inside it (lo <= score <= hi) to the front of
/// `scratch`, those below it to its back. Returns whether the k-th best is
/// inside the bracket, with `*above_out` and `*mid_out` set; when not, every
/// entry is put back into `v` (reordered).
template <typename E>
bool topk_partition_scalar(
    E* v,
    size_t n,
    size_t k,
    TopKScore<E> hi,
    TopKScore<E> lo,
    std::vector<E>& scratch,
    size_t* above_out,
    size_t* mid_out) {
  scratch.resize(n);
  constexpr size_t kAhead = 4096 / sizeof(E);
  constexpr size_t kPerLine = 64 / sizeof(E);
  size_t above = 0;
  size_t mid = 0;
  size_t below = 0;
  for (size_t i = 0; i < n; ++i) {
    // The buffer was last written at the previous compaction and is cold:
    // one prefetch per 64-byte line, 4 KB ahead (the hardware prefetcher
    // stops at page boundaries); this loop was half stalled without it.
    if (i % kPerLine == 0 && i + kAhead < n) {
      __builtin_prefetch(v + i + kAhead);
    }
    const E e = v[i];
    const bool up = e.score > hi;
    const bool in = (e.score >= lo) & !up;
    v[above] = e;
    above += static_cast<size_t>(up);
    scratch[in ? mid : n - 1 - below] = e;
    mid += static_cast<size_t>(in);
    below += static_cast<size_t>(!in & !up);
  }
  if (above < k && above + mid >= k) {
    *above_out = above;
    *mid_out = mid;
    return true;
  }
  const auto first = scratch.begin();
  std::copy(first, first + static_cast<std::ptrdiff_t>(mid), v + above);
  std::copy(
      first + static_cast<std::ptrdiff_t>(n - below),
      scratch.end(),
      v + above + mid);
  return false;
}

#if DLCORE_TOPK_X86
/// The partition step of `topk_keep_best` for 8-byte entries with AVX-512,
/// eight entries per step without a branch. The first pass only counts the
/// entries above the bracket (score > hi) and inside it (lo <= score <= hi),
/// reading the cold buffer once with a prefetch 4 KB ahead. When the k-th
/// best lies inside the bracket, the second pass (the buffer now in L2)
/// compresses the entries above it to the front of `v`, in place, and those
/// inside it to the front of `scratch`; the entries below it are dropped,
/// unlike the scalar pass, which keeps them for a missed bracket. Returns
/// false, with `v` untouched, when the bracket misses.
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,popcnt"))) inline bool
topk_partition_avx512(
    TopKEntry32* v,
    size_t n,
    size_t k,
    float hi,
    float lo,
    std::vector<TopKEntry32>& scratch,
    size_t* above_out,
    size_t* mid_out) {
  static_assert(
      sizeof(TopKEntry32) == 8 && offsetof(TopKEntry32, score) == 0,
      "the score is the low half of each 64-bit lane");
  constexpr size_t kAhead = 4096 / sizeof(TopKEntry32);
  const __m256 hv = _mm256_set1_ps(hi);
  const __m256 lv = _mm256_set1_ps(lo);
  const size_t full = n / 8 * 8;
  size_t above = 0;
  size_t mid = 0;
  for (size_t i = 0; i < full; i += 8) {
    if (i + kAhead < n) {
      __builtin_prefetch(v + i + kAhead);
    }
    const __m512i x = _mm512_loadu_si512(v + i);
    // The low halves of the lanes (the scores). The zero-masking form: GCC
    // 12 warns that the plain form's undefined pass-through may be used.
    const __m256 sc = _mm256_castsi256_ps(_mm512_maskz_cvtepi64_epi32(0xff, x));
    const __mmask8 up = _mm256_cmp_ps_mask(sc, hv, _CMP_GT_OQ);
    const __mmask8 ge = _mm256_cmp_ps_mask(sc, lv, _CMP_GE_OQ);
    above += static_cast<size_t>(__builtin_popcount(up));
    mid += static_cast<size_t>(__builtin_popcount(ge & ~up & 0xffu));
  }
  for (size_t i = full; i < n; ++i) {
    const bool up = v[i].score > hi;
    above += static_cast<size_t>(up);
    mid += static_cast<size_t>(!up && v[i].score >= lo);
  }
  if (!(above < k && above + mid >= k)) {
    return false;
  }
  // Whole-vector stores: up to 8 slots past the last entry of `scratch`;
  // in `v` they stay behind the read position (a <= i).
  if (scratch.size() < mid + 8) {
    scratch.resize(n + 8);
  }
  TopKEntry32* out = scratch.data();
  size_t a = 0;
  size_t m = 0;
  for (size_t i = 0; i < full; i += 8) {
    const __m512i x = _mm512_loadu_si512(v + i);
    const __m256 sc = _mm256_castsi256_ps(_mm512_maskz_cvtepi64_epi32(0xff, x));
    const __mmask8 up = _mm256_cmp_ps_mask(sc, hv, _CMP_GT_OQ);
    const __mmask8 in = _mm256_cmp_ps_mask(sc, lv, _CMP_GE_OQ) & ~up & 0xffu;
    const auto nu = static_cast<size_t>(__builtin_popcount(up));
    const auto ni = static_cast<size_t>(__builtin_popcount(in));
    _mm512_storeu_si512(v + a, _mm512_maskz_compress_epi64(up, x));
    _mm512_storeu_si512(out + m, _mm512_maskz_compress_epi64(in, x));
    a += nu;
    m += ni;
  }
  for (size_t i = full; i < n; ++i) {
    const TopKEntry32 e = v[i];
    if (e.score > hi) {
      v[a++] = e;
    } else if (e.score >= lo) {
      out[m++] = e;
    }
  }
  *above_out = above;
  *mid_out = mid;
  return true;
}
#endif

/// Moves the best `k` of the `n` entries at `v` (under `topk_better`;
/// 0 < k < n, distinct indices) to its front, unordered, and returns the
/// k-th best; the entries after the first k are left unspecified.
///
/// Same result as std::nth_element, for the large buffers of the compaction
/// of a 16k-per-class selector (docs/selector_isa.md): a strided sample of the
/// scores brackets the k-th best score, a branch-free partition (one scalar
/// pass, or two AVX-512 passes for 8-byte entries: `topk_partition_avx512`)
/// keeps the entries above the bracket in place and gathers those inside it,
/// and the selection runs on that small middle part only
/// (`topk_select_bracket`). When the bracket misses (the sample's ranks are off
/// by more than the margin), the plain std::nth_element runs on everything.
template <typename E>
E topk_keep_best(E* v, size_t n, size_t k, std::vector<E>& scratch) {
  using S = TopKScore<E>;
  constexpr size_t kSample = 512;
  if (n >= 8 * kSample) {
    S sample[kSample];
    for (size_t i = 0; i < kSample; ++i) {
      sample[i] = v[i * n / kSample].score;
    }
    // The k-th best is expected at sample rank k * kSample / n (descending);
    // a margin of a few standard deviations of that rank on either side.
    const auto t = static_cast<std::ptrdiff_t>(k * kSample / n);
    constexpr std::ptrdiff_t kMargin = 32;
    constexpr auto kLast = static_cast<std::ptrdiff_t>(kSample) - 1;
    const S inf = std::numeric_limits<S>::infinity();
    S hi = inf;
    S lo = -inf;
    if (t - kMargin >= 0) {
      std::nth_element(
          sample, sample + t - kMargin, sample + kSample, std::greater<>());
      hi = sample[t - kMargin];
    }
    if (t + kMargin <= kLast) {
      std::nth_element(
          sample, sample + t + kMargin, sample + kSample, std::greater<>());
      lo = sample[t + kMargin];
    }
    // When the k-th best is inside the bracket, `above` entries better than
    // it are at the front of `v` and the `mid` inside it at the front of
    // `scratch`: select there. Otherwise `v` still holds all n entries.
    size_t above = 0;
    size_t mid = 0;
    bool inside = false;
#if DLCORE_TOPK_X86
    if constexpr (std::is_same_v<E, TopKEntry32>) {
      if (topk_isa() == TopKIsa::kAvx512) {
        inside = topk_partition_avx512(v, n, k, hi, lo, scratch, &above, &mid);
      } else {
        inside = topk_partition_scalar(v, n, k, hi, lo, scratch, &above, &mid);
      }
    } else
#endif
    {
      inside = topk_partition_scalar(v, n, k, hi, lo, scratch, &above, &mid);
    }
    if (inside) {
      return topk_select_bracket(
          scratch.data(), mid, k - above - 1, hi, lo, v + above);
    }
  }
  std::nth_element(v, v + (k - 1), v + n, TopKBetter{});
  return v[k - 1];
}

/// The best K entries of everything pushed, in amortized O(1) per push.
///
/// Entries are appended to `topk_capacity(k)` slots (about 1.5 K); when they
/// are full, a selection (`topk_keep_best`) keeps the best K and their worst
/// becomes the admission threshold: later entries not better than it are
/// rejected at once. Invariant: once `has_threshold_`, the buffer holds at
/// least K entries at least as good as `threshold_`, so a rejected entry can
/// never be among the best K of everything pushed. The kept set is therefore
/// exact, and merging two buffers (push every entry of one into the other)
/// gives exactly the buffer of the union: merge is associative and
/// commutative.
///
/// The slots belong to the caller (a `TopKState` holds the slots of all its
/// classes in one allocation); the row scan appends to them in place
/// (`TopKOffers` in row_scan.h). `E` is `TopKEntry` or `TopKEntry32`.
template <typename E>
class TopKBuffer {
 public:
  /// A buffer over `slots`, `topk_capacity(k)` entries that outlive it.
  TopKBuffer(int64_t k, E* slots)
      : k_(k), cap_(topk_capacity(k)), slots_(slots) {}

  // A view of slots it does not own: copies would share them (a state
  // copies its buffers with `assign`).
  TopKBuffer(const TopKBuffer&) = delete;
  TopKBuffer& operator=(const TopKBuffer&) = delete;
  TopKBuffer(TopKBuffer&&) noexcept = default;
  TopKBuffer& operator=(TopKBuffer&&) noexcept = default;
  ~TopKBuffer() = default;

  int64_t k() const {
    return k_;
  }

  /// Makes this buffer (same k) hold what `other` holds: its entries, copied
  /// into this buffer's slots, and its threshold (widened exactly when
  /// `other` holds `TopKEntry32`s and this `TopKEntry`s).
  template <typename F>
  void assign(const TopKBuffer<F>& other) {
    for (int64_t i = 0; i < other.n_; ++i) {
      slots_[i] = convert(other.slots_[i]);
    }
    n_ = other.n_;
    threshold_ = convert(other.threshold_);
    has_threshold_ = other.has_threshold_;
  }

  /// A score below which nothing is accepted any more: `scalar_t`'s lowest
  /// value until the buffer has a threshold, then its score rounded down to
  /// `scalar_t` (a cheap conservative pre-check of `accepts`).
  template <typename scalar_t>
  scalar_t reject_below() const {
    if (!has_threshold_) {
      return std::numeric_limits<scalar_t>::lowest();
    }
    auto t = static_cast<scalar_t>(threshold_.score);
    if (static_cast<double>(t) > static_cast<double>(threshold_.score)) {
      t = std::nextafter(t, std::numeric_limits<scalar_t>::lowest());
    }
    return t;
  }

  /// With `reject_below`: an entry whose score equals `reject_below()` is
  /// rejected when its index is at least this (the threshold's index, or
  /// INT64_MAX before there is a threshold).
  int64_t reject_index() const {
    return has_threshold_ ? static_cast<int64_t>(threshold_.index)
                          : std::numeric_limits<int64_t>::max();
  }

  /// Whether `e` could still be among the best K.
  bool accepts(const E& e) const {
    return !has_threshold_ || topk_better(e, threshold_);
  }

  /// Appends `e` when it could still be among the best K.
  void push(const E& e) {
    if (n_ >= cap_) {
      compact(); // full only after a compaction that threw
    }
    if (accepts(e)) {
      slots_[n_++] = e;
      if (n_ == cap_) {
        compact();
      }
    }
  }

  /// The number of entries held (between 0 and `topk_capacity(k)`).
  int64_t held() const {
    return n_;
  }

  /// For a writer that appends in place (the row scan's `TopKOffers`): the
  /// first `n` slots hold the entries (n <= `topk_capacity(k)`); call `compact`
  /// when n reaches the capacity.
  void set_held(int64_t n) {
    n_ = n;
  }

  /// Keeps only the best K (unordered) and tightens the threshold.
  void compact() {
    const auto k = static_cast<size_t>(k_);
    const auto n = static_cast<size_t>(n_);
    if (n > k) {
      thread_local std::vector<E> scratch;
      threshold_ = topk_keep_best(slots_, n, k, scratch);
      has_threshold_ = true;
      n_ = k_;
    } else if (n == k) {
      threshold_ = *std::max_element(slots_, slots_ + n, TopKBetter{});
      has_threshold_ = true;
    }
  }

  /// Pushes every entry of `other`, then keeps the best K: the buffer of
  /// the union of both histories. `F` is `E`, or `TopKEntry32` when `E` is
  /// `TopKEntry`.
  template <typename F>
  void merge(const TopKBuffer<F>& other) {
    for (int64_t i = 0; i < other.n_; ++i) {
      push(convert(other.slots_[i]));
    }
    if (held() >= k_) {
      compact();
    }
  }

  /// Appends the raw (unordered, possibly more than K) entries to `out`,
  /// as `TopKEntry`s.
  void append_to(std::vector<TopKEntry>& out) const {
    if constexpr (std::is_same_v<E, TopKEntry>) {
      out.insert(out.end(), slots_, slots_ + n_);
    } else {
      for (int64_t i = 0; i < n_; ++i) {
        out.push_back(TopKEntry{slots_[i].score, slots_[i].index});
      }
    }
  }

 private:
  template <typename>
  friend class TopKBuffer;

  // Only ever widens (float to double, uint32 to int64): exact.
  template <typename F>
  static E convert(const F& f) {
    static_assert(
        std::is_same_v<E, F> || std::is_same_v<E, TopKEntry>,
        "TopKBuffer: entries only widen");
    return E{f.score, f.index};
  }

  int64_t k_;
  int64_t cap_;
  E* slots_;
  int64_t n_ = 0;
  E threshold_{0, 0};
  bool has_threshold_ = false;
};

/// Memory for `n` entries: one allocation, left uninitialised (pages are
/// touched only as entries arrive: 4 KB at a time, or 2 MB with huge
/// pages). From 2 MB up it is aligned to 2 MB and, on Linux, advised to use
/// transparent huge pages (`huge_page_alloc`): the row scan writes to the tails
/// of C buffers spread over C * 1.5 K entries (192 MB of 8-byte entries at C =
/// 1000, K = 16000), 1000 pages at a time (what it bought:
/// docs/selector_isa.md).
template <typename E>
class TopKSlots {
 public:
  /// `n` * sizeof(E) must fit in int64 (`TopKTopPSelectorOptions::check`).
  explicit TopKSlots(int64_t n)
      : bytes_(n * static_cast<int64_t>(sizeof(E))),
        data_(static_cast<E*>(
            huge_page_alloc(static_cast<size_t>(bytes_), kHugePageBytes))) {}

  E* data() const {
    return data_.get();
  }

  /// Bytes of the `n` entries (the allocation may round this up).
  int64_t bytes() const {
    return bytes_;
  }

 private:
  struct Free {
    void operator()(E* p) const {
      std::free(p);
    }
  };
  int64_t bytes_;
  std::unique_ptr<E, Free> data_;
};

/// The buffers of all C classes of one ingesting thread, over one
/// `TopKSlots` allocation (class c's slots at c * topk_capacity(k)). Copies are
/// deep; a state of `TopKEntry32`s converts (exactly) to one of
/// `TopKEntry`s.
template <typename E>
class TopKState {
 public:
  using Entry = E;

  TopKState(int64_t classes, int64_t k) : slots_(classes * topk_capacity(k)) {
    const int64_t cap = topk_capacity(k);
    buffers_.reserve(static_cast<size_t>(classes));
    for (int64_t c = 0; c < classes; ++c) {
      buffers_.emplace_back(k, slots_.data() + c * cap);
    }
  }

  TopKState(const TopKState& o) : TopKState(o.size(), o.k()) {
    assign_all(o);
  }
  template <typename F>
  explicit TopKState(const TopKState<F>& o) : TopKState(o.size(), o.k()) {
    assign_all(o);
  }
  TopKState& operator=(const TopKState& o) {
    if (this != &o) {
      TopKState copy(o);
      *this = std::move(copy);
    }
    return *this;
  }
  // Moving the allocation keeps the buffers' slot pointers valid.
  TopKState(TopKState&&) noexcept = default;
  TopKState& operator=(TopKState&&) noexcept = default;
  ~TopKState() = default;

  int64_t size() const {
    return static_cast<int64_t>(buffers_.size());
  }

  int64_t k() const {
    return buffers_.empty() ? 1 : buffers_.front().k();
  }

  TopKBuffer<E>& operator[](int64_t c) {
    return buffers_[static_cast<size_t>(c)];
  }
  const TopKBuffer<E>& operator[](int64_t c) const {
    return buffers_[static_cast<size_t>(c)];
  }

  /// The slots of all classes: class c's at `slots() + c * stride()`.
  E* slots() const {
    return slots_.data();
  }

  int64_t stride() const {
    return buffers_.empty() ? 0 : topk_capacity(k());
  }

  /// Bytes reserved for the entries of all classes.
  int64_t bytes() const {
    return slots_.bytes();
  }

  /// Merges `o`'s buffers (same C and K; `F` is `E`, or `TopKEntry32` when
  /// `E` is `TopKEntry`) into this state's, class by class.
  template <typename F>
  void merge(const TopKState<F>& o) {
    for (int64_t c = 0; c < size(); ++c) {
      (*this)[c].merge(o[c]);
    }
  }

 private:
  template <typename F>
  void assign_all(const TopKState<F>& o) {
    for (int64_t c = 0; c < size(); ++c) {
      (*this)[c].assign(o[c]);
    }
  }

  TopKSlots<E> slots_;
  std::vector<TopKBuffer<E>> buffers_;
};

/// Sorts non-negative int64 values ascending: least-significant-digit radix
/// sort, 11 bits per pass, as many passes as the largest value needs (3 for
/// indices below 2^33); std::sort for small inputs.
inline void topk_radix_sort(std::vector<int64_t>& v) {
  if (v.size() < 4096) {
    std::sort(v.begin(), v.end());
    return;
  }
  const auto top = static_cast<uint64_t>(*std::max_element(v.begin(), v.end()));
  std::vector<int64_t> tmp(v.size());
  constexpr int kBits = 11;
  constexpr size_t kBuckets = size_t{1} << kBits;
  for (int shift = 0; shift < 64 && (top >> shift) != 0; shift += kBits) {
    std::vector<size_t> count(kBuckets + 1, 0);
    for (const int64_t x : v) {
      ++count[((static_cast<uint64_t>(x) >> shift) & (kBuckets - 1)) + 1];
    }
    for (size_t b = 1; b <= kBuckets; ++b) {
      count[b] += count[b - 1];
    }
    for (const int64_t x : v) {
      tmp[count[(static_cast<uint64_t>(x) >> shift) & (kBuckets - 1)]++] = x;
    }
    v.swap(tmp);
  }
}

/// Keeps the best `k` of `entries`, unordered.
inline void topk_keep(
    std::vector<TopKEntry>& entries,
    int64_t k,
    std::vector<TopKEntry>& scratch) {
  const auto kk = static_cast<size_t>(k);
  if (entries.size() > kk) {
    topk_keep_best(entries.data(), entries.size(), kk, scratch);
    entries.resize(kk);
  }
}

/// An unsigned key whose ascending order is the descending order of the
/// score (-0.0 and +0.0 map to one key, as they compare equal).
inline uint64_t topk_descending_key(double score) {
  const double s = score + 0.0; // -0.0 + 0.0 == +0.0
  uint64_t u = 0;
  std::memcpy(&u, &s, sizeof(u));
  u = (u >> 63) != 0 ? ~u : (u | (uint64_t{1} << 63));
  return ~u;
}

/// Sorts `v` by the selection order (`topk_better`): a stable least-
/// significant-digit radix sort on the score's 8 bytes, skipping every byte
/// that all keys share (float scores leave the low 29 bits of their double
/// zero; the top scores of a class share sign and exponent), then each run
/// of equal scores by index. `tmp` is scratch space.
inline void topk_sort_entries(
    std::vector<TopKEntry>& v, std::vector<TopKEntry>& tmp) {
  const size_t n = v.size();
  if (n < 512) {
    std::sort(v.begin(), v.end(), TopKBetter{});
    return;
  }
  std::vector<uint32_t> hist(8 * 256, 0);
  for (const TopKEntry& e : v) {
    const uint64_t key = topk_descending_key(e.score);
    for (int d = 0; d < 8; ++d) {
      ++hist[static_cast<size_t>(d * 256) + ((key >> (8 * d)) & 0xff)];
    }
  }
  tmp.resize(n);
  const uint64_t first = topk_descending_key(v[0].score);
  for (int d = 0; d < 8; ++d) {
    uint32_t* h = hist.data() + d * 256;
    if (h[(first >> (8 * d)) & 0xff] == n) {
      continue; // every key has this byte
    }
    uint32_t at = 0;
    for (int b = 0; b < 256; ++b) {
      const uint32_t c = h[b];
      h[b] = at;
      at += c;
    }
    for (const TopKEntry& e : v) {
      tmp[h[(topk_descending_key(e.score) >> (8 * d)) & 0xff]++] = e;
    }
    v.swap(tmp);
  }
  for (size_t i = 0; i < n;) {
    size_t j = i + 1;
    while (j < n && v[j].score == v[i].score) {
      ++j;
    }
    if (j - i > 1) {
      std::sort(
          v.begin() + static_cast<std::ptrdiff_t>(i),
          v.begin() + static_cast<std::ptrdiff_t>(j),
          [](const TopKEntry& a, const TopKEntry& b) {
            return a.index < b.index;
          });
    }
    i = j;
  }
}

} // namespace detail
} // namespace dlcore
