#pragma once

// Internals of dlcore::TopKTopPSelector: the per-class bounded buffer that
// keeps the best K (score, index) pairs under the total order
// (score descending, index ascending).

#include <algorithm>
#include <cstdint>
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
  explicit TopKBuffer(int64_t k = 1) : k_(k) {}

  int64_t k() const {
    return k_;
  }

  /// Whether `e` could still be among the best K.
  bool accepts(const TopKEntry& e) const {
    return !has_threshold_ || topk_better(e, threshold_);
  }

  void push(const TopKEntry& e) {
    if (!accepts(e)) {
      return;
    }
    if (items_.empty()) {
      items_.reserve(static_cast<size_t>(capacity()));
    }
    items_.push_back(e);
    const auto n = static_cast<int64_t>(items_.size());
    if (n >= capacity()) {
      compact();
    } else if ((n & 3) == 0) {
      // The next line of the tail: 4 entries of 16 bytes per 64-byte line.
      __builtin_prefetch(items_.data() + n + 4, 1);
    }
  }

  /// Keeps only the best K (unordered) and tightens the threshold.
  void compact() {
    const auto k = static_cast<size_t>(k_);
    if (items_.size() > k) {
      std::nth_element(
          items_.begin(), items_.begin() + (k - 1), items_.end(), TopKBetter{});
      threshold_ = items_[k - 1];
      has_threshold_ = true;
      items_.resize(k);
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
  std::vector<TopKEntry> items_;
  TopKEntry threshold_{0.0, 0};
  bool has_threshold_ = false;
};

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
  const auto kk = static_cast<size_t>(k);
  if (entries.size() > kk) {
    std::nth_element(
        entries.begin(),
        entries.begin() + (kk - 1),
        entries.end(),
        topk_better);
    entries.resize(kk);
  }
  std::sort(entries.begin(), entries.end(), TopKBetter{});
  return entries;
}

} // namespace detail
} // namespace dlcore
