#pragma once

// Internals of dlcore::TopKTopPSelector: the per-class bounded buffer that
// keeps the best K (score, index) pairs under the total order
// (score descending, index ascending).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

namespace dlcore {
namespace detail {

/// One candidate of a class: the teacher's score for it and the image index.
struct TopKEntry {
  double score;
  int64_t index;
};

/// The selection order: `a` ranks before `b` when its score is higher, or
/// the scores are equal and its index is lower. A strict total order on
/// entries with distinct indices.
inline bool topk_better(const TopKEntry& a, const TopKEntry& b) {
  return a.score > b.score || (a.score == b.score && a.index < b.index);
}

/// `topk_better` as a function object, so that std algorithms inline it.
struct TopKBetter {
  bool operator()(const TopKEntry& a, const TopKEntry& b) const {
    return topk_better(a, b);
  }
};

/// Moves the best `k` entries of `v` (under `topk_better`; 0 < k < size,
/// distinct indices) to its front, unordered, drops the rest and returns the
/// k-th best.
///
/// Same result as std::nth_element, faster on large buffers (the compaction
/// of a 16k-per-class selector): a strided sample of the scores brackets the
/// k-th best score, one branch-free pass keeps the entries above the bracket
/// in place and gathers those inside it, and the selection runs on that
/// small middle part only. When the bracket misses (possible with many
/// equal scores), the plain std::nth_element runs on everything.
inline TopKEntry topk_keep_best(
    std::vector<TopKEntry>& v, size_t k, std::vector<TopKEntry>& scratch) {
  const size_t n = v.size();
  constexpr size_t kSample = 512;
  if (n >= 8 * kSample) {
    double sample[kSample];
    for (size_t i = 0; i < kSample; ++i) {
      sample[i] = v[i * n / kSample].score;
    }
    // The k-th best is expected at sample rank k * kSample / n (descending);
    // a margin of a few standard deviations of that rank on either side.
    const auto t = static_cast<std::ptrdiff_t>(k * kSample / n);
    constexpr std::ptrdiff_t kMargin = 32;
    constexpr auto kLast = static_cast<std::ptrdiff_t>(kSample) - 1;
    const double inf = std::numeric_limits<double>::infinity();
    double hi = inf;
    double lo = -inf;
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
    // Every entry lands once: above the bracket at the front of `v` (in
    // place, behind the read position), inside it at the front of
    // `scratch`, below it at the back of `scratch`.
    scratch.resize(n);
    size_t above = 0;
    size_t mid = 0;
    size_t below = 0;
    for (size_t i = 0; i < n; ++i) {
      const TopKEntry e = v[i];
      const bool up = e.score > hi;
      const bool in = (e.score >= lo) & !up;
      v[above] = e;
      above += static_cast<size_t>(up);
      scratch[in ? mid : n - 1 - below] = e;
      mid += static_cast<size_t>(in);
      below += static_cast<size_t>(!in & !up);
    }
    const auto first = scratch.begin();
    if (above < k && above + mid >= k) {
      const size_t r = k - above - 1;
      std::nth_element(
          first,
          first + static_cast<std::ptrdiff_t>(r),
          first + static_cast<std::ptrdiff_t>(mid),
          TopKBetter{});
      std::copy(
          first,
          first + static_cast<std::ptrdiff_t>(r + 1),
          v.begin() + static_cast<std::ptrdiff_t>(above));
      v.resize(k);
      return scratch[r];
    }
    // The bracket missed: put every entry back into `v`.
    std::copy(
        first,
        first + static_cast<std::ptrdiff_t>(mid),
        v.begin() + static_cast<std::ptrdiff_t>(above));
    std::copy(
        first + static_cast<std::ptrdiff_t>(n - below),
        scratch.end(),
        v.begin() + static_cast<std::ptrdiff_t>(above + mid));
  }
  std::nth_element(
      v.begin(),
      v.begin() + static_cast<std::ptrdiff_t>(k - 1),
      v.end(),
      TopKBetter{});
  const TopKEntry kth = v[k - 1];
  v.resize(k);
  return kth;
}

/// The best K entries of everything pushed, in amortized O(1) per push.
///
/// Entries are appended to a buffer of capacity about 1.5 K; when it is full,
/// a selection (std::nth_element) keeps the best K and their worst becomes
/// the admission threshold: later entries not better than it are rejected
/// at once. Invariant: once `has_threshold_`, the buffer holds at least K
/// entries at least as good as `threshold_`, so a rejected entry can never be
/// among the best K of everything pushed. The kept set is therefore exact,
/// and merging two buffers (push every entry of one into the other) gives
/// exactly the buffer of the union: merge is associative and commutative.
class TopKBuffer {
 public:
  explicit TopKBuffer(int64_t k = 1) : k_(k), cap_(capacity()) {}

  int64_t k() const {
    return k_;
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
    if (static_cast<double>(t) > threshold_.score) {
      t = std::nextafter(t, std::numeric_limits<scalar_t>::lowest());
    }
    return t;
  }

  /// Whether `e` could still be among the best K.
  bool accepts(const TopKEntry& e) const {
    return !has_threshold_ || topk_better(e, threshold_);
  }

  void push(const TopKEntry& e) {
    if (!accepts(e)) {
      return;
    }
    if (items_.capacity() == 0) {
      items_.reserve(static_cast<size_t>(capacity()));
    }
    items_.push_back(e);
    // The line after the tail, so that the next pushes rarely miss.
    __builtin_prefetch(items_.data() + items_.size() + 4, 1);
    if (static_cast<int64_t>(items_.size()) >= cap_) {
      compact();
    }
  }

  /// Keeps only the best K (unordered) and tightens the threshold.
  void compact() {
    const auto k = static_cast<size_t>(k_);
    if (items_.size() > k) {
      thread_local std::vector<TopKEntry> scratch;
      threshold_ = topk_keep_best(items_, k, scratch);
      has_threshold_ = true;
    } else if (items_.size() == k) {
      threshold_ =
          *std::max_element(items_.begin(), items_.end(), TopKBetter{});
      has_threshold_ = true;
    }
  }

  /// Pushes every entry of `other`, then keeps the best K: the buffer of
  /// the union of both histories.
  void merge(const TopKBuffer& other) {
    for (const auto& e : other.items_) {
      push(e);
    }
    if (held() >= k_) {
      compact();
    }
  }

  /// Appends the raw (unordered, possibly more than K) entries to `out`.
  void append_to(std::vector<TopKEntry>& out) const {
    out.insert(out.end(), items_.begin(), items_.end());
  }

  /// The number of entries held (between 0 and about 1.5 K).
  int64_t held() const {
    return static_cast<int64_t>(items_.size());
  }

  /// Bytes reserved by the buffer.
  int64_t bytes() const {
    return static_cast<int64_t>(items_.capacity() * sizeof(TopKEntry));
  }

  void clear() {
    items_.clear();
    items_.shrink_to_fit();
    has_threshold_ = false;
  }

  int64_t capacity() const {
    return k_ + std::max<int64_t>(k_ / 2, 16);
  }

 private:
  int64_t k_;
  int64_t cap_;
  std::vector<TopKEntry> items_;
  TopKEntry threshold_{0.0, 0};
  bool has_threshold_ = false;
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
inline void topk_keep(std::vector<TopKEntry>& entries, int64_t k) {
  const auto kk = static_cast<size_t>(k);
  if (entries.size() > kk) {
    std::nth_element(
        entries.begin(),
        entries.begin() + (kk - 1),
        entries.end(),
        TopKBetter{});
    entries.resize(kk);
  }
}

/// The best `k` of `entries`, sorted by the selection order.
inline std::vector<TopKEntry> topk_sorted(
    std::vector<TopKEntry> entries, int64_t k) {
  topk_keep(entries, k);
  std::sort(entries.begin(), entries.end(), TopKBetter{});
  return entries;
}

} // namespace detail
} // namespace dlcore
