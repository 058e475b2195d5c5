#pragma once

// Replacement distributions q(c -> j) of the label-noise modes, with exact
// sampling conditioned on an excluded set (the other tags of a multi-label
// image).

#include <dlcore/data/detail/alias_table.h>
#include <dlcore/detail/splitmix.h>

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace dlcore {
namespace detail {

enum class NoiseRowKind { kSymmetric, kUniform, kPairFlip, kMatrix, kMarginal };

/// Row c of a replacement distribution over C classes.
class NoiseRows {
 public:
  /// `matrix` is row-major C x C (kMatrix), `marginal` has C entries
  /// (kMarginal); both already validated.
  NoiseRows(
      NoiseRowKind kind,
      int64_t num_classes,
      std::vector<double> matrix,
      std::vector<double> marginal)
      : kind_(kind),
        c_(num_classes),
        matrix_(std::move(matrix)),
        marginal_(std::move(marginal)) {
    if (kind_ == NoiseRowKind::kMatrix) {
      rows_.reserve(static_cast<size_t>(c_));
      for (int64_t a = 0; a < c_; ++a) {
        rows_.emplace_back(std::vector<double>(
            matrix_.begin() + a * c_, matrix_.begin() + (a + 1) * c_));
      }
    } else if (kind_ == NoiseRowKind::kMarginal) {
      marginal_table_ = AliasTable(marginal_);
    }
  }

  /// Unnormalized q(c -> j).
  double weight(int64_t c, int64_t j) const {
    switch (kind_) {
      case NoiseRowKind::kSymmetric:
        return j == c ? 0.0 : 1.0;
      case NoiseRowKind::kUniform:
        return 1.0;
      case NoiseRowKind::kPairFlip:
        return j == (c + 1) % c_ ? 1.0 : 0.0;
      case NoiseRowKind::kMatrix:
        return matrix_[static_cast<size_t>(c * c_ + j)];
      case NoiseRowKind::kMarginal:
        return j == c ? 0.0 : marginal_[static_cast<size_t>(j)];
    }
    return 0.0;
  }

  /// A draw from q(c -> .) restricted to classes outside the sorted list
  /// `excluded`; returns c itself when the restriction has no mass. Exact:
  /// rejection sampling, then (after 64 rejections) the explicit restricted
  /// distribution, both of which yield the restricted law.
  int64_t draw(
      int64_t c, const std::vector<int64_t>& excluded, SplitMix64& rng) const {
    auto allowed = [&](int64_t j) {
      return weight(c, j) > 0.0 &&
             !std::binary_search(excluded.begin(), excluded.end(), j);
    };
    for (int attempt = 0; attempt < 64; ++attempt) {
      const int64_t j = raw_draw(c, rng);
      if (allowed(j)) {
        return j;
      }
    }
    double total = 0.0;
    for (int64_t j = 0; j < c_; ++j) {
      total += allowed(j) ? weight(c, j) : 0.0;
    }
    if (total <= 0.0) {
      return c;
    }
    const double u = rng.uniform() * total;
    double acc = 0.0;
    int64_t last = c;
    for (int64_t j = 0; j < c_; ++j) {
      if (!allowed(j)) {
        continue;
      }
      acc += weight(c, j);
      last = j;
      if (u < acc) {
        return j;
      }
    }
    return last;
  }

 private:
  int64_t raw_draw(int64_t c, SplitMix64& rng) const {
    switch (kind_) {
      case NoiseRowKind::kSymmetric: {
        const auto j = static_cast<int64_t>(rng.below(c_ - 1));
        return j >= c ? j + 1 : j;
      }
      case NoiseRowKind::kUniform:
        return static_cast<int64_t>(rng.below(c_));
      case NoiseRowKind::kPairFlip:
        return (c + 1) % c_;
      case NoiseRowKind::kMatrix:
        return rows_[static_cast<size_t>(c)].sample(rng.next(), rng.uniform());
      case NoiseRowKind::kMarginal:
        return marginal_table_.sample(rng.next(), rng.uniform());
    }
    return c;
  }

  NoiseRowKind kind_;
  int64_t c_;
  std::vector<double> matrix_;
  std::vector<double> marginal_;
  std::vector<AliasTable> rows_;
  AliasTable marginal_table_;
};

} // namespace detail
} // namespace dlcore
