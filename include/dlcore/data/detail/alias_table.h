#pragma once

// Walker's alias method with Vose's numerically stable construction
// (Vose, "A linear algorithm for generating random numbers with a given
// distribution", IEEE TSE 1991): O(K) set-up in double precision, O(1) draw.

#include <dlcore/detail/splitmix.h>

#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace dlcore {
namespace detail {

/// An alias table over K categories. Column j keeps itself with probability
/// `threshold(j)` and otherwise yields `alias(j)`; a draw picks a column
/// uniformly, then tosses the coin.
class AliasTable {
 public:
  AliasTable() = default;

  /// Builds the table for non-negative finite `weights` with a positive sum
  /// (the caller validates; this only asserts). Categories of zero weight are
  /// never drawn: their column threshold is 0 and their alias has positive
  /// weight.
  explicit AliasTable(const std::vector<double>& weights) {
    const size_t k = weights.size();
    TORCH_INTERNAL_ASSERT(k > 0 && k <= UINT32_MAX);
    double total = 0.0;
    for (double w : weights) {
      TORCH_INTERNAL_ASSERT(w >= 0.0 && std::isfinite(w));
      total += w;
    }
    TORCH_INTERNAL_ASSERT(total > 0.0 && std::isfinite(total));
    entries_.resize(k);
    std::vector<double> scaled(k);
    std::vector<uint32_t> small;
    std::vector<uint32_t> large;
    small.reserve(k);
    large.reserve(k);
    const double scale = static_cast<double>(k) / total;
    for (size_t j = 0; j < k; ++j) {
      scaled[j] = weights[j] * scale;
      (scaled[j] < 1.0 ? small : large).push_back(static_cast<uint32_t>(j));
    }
    while (!small.empty() && !large.empty()) {
      const uint32_t s = small.back();
      small.pop_back();
      const uint32_t l = large.back();
      entries_[s] = Entry{scaled[s], l};
      // Vose: subtract the deficit from the large column in this order, which
      // keeps the rounding error from accumulating.
      scaled[l] = (scaled[l] + scaled[s]) - 1.0;
      if (scaled[l] < 1.0) {
        large.pop_back();
        small.push_back(l);
      }
    }
    // What is left has weight 1 up to rounding: it keeps itself. A leftover
    // "small" column of zero weight (only by rounding) must not keep itself.
    for (uint32_t l : large) {
      entries_[l] = Entry{1.0, l};
    }
    for (uint32_t s : small) {
      entries_[s] =
          Entry{weights[s] > 0.0 ? 1.0 : 0.0, first_positive(weights)};
    }
  }

  size_t size() const {
    return entries_.size();
  }

  /// Draws a category from a uniform column word and a uniform coin in [0, 1).
  uint32_t sample(uint64_t column_word, double coin) const {
    const Entry& e = entries_[bounded_at(column_word, entries_.size())];
    return coin < e.threshold ? static_cast<uint32_t>(&e - entries_.data())
                              : e.alias;
  }

  /// Probability that `sample` returns category j (O(K); for tests).
  std::vector<double> probabilities() const {
    const size_t k = entries_.size();
    std::vector<double> p(k, 0.0);
    for (size_t j = 0; j < k; ++j) {
      p[j] += entries_[j].threshold / static_cast<double>(k);
      p[entries_[j].alias] +=
          (1.0 - entries_[j].threshold) / static_cast<double>(k);
    }
    return p;
  }

 private:
  struct Entry {
    double threshold = 1.0;
    uint32_t alias = 0;
  };

  static uint32_t first_positive(const std::vector<double>& w) {
    for (size_t j = 0; j < w.size(); ++j) {
      if (w[j] > 0.0) {
        return static_cast<uint32_t>(j);
      }
    }
    return 0;
  }

  std::vector<Entry> entries_;
};

} // namespace detail
} // namespace dlcore
