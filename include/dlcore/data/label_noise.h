#pragma once

#include <dlcore/data/detail/noise_rows.h>
#include <dlcore/data/tag_lists.h>
#include <dlcore/detail/splitmix.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/arg.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iomanip>
#include <string>
#include <utility>
#include <vector>

namespace dlcore {

/// How a label selected for corruption is replaced (C classes).
enum class NoiseMode {
  /// Uniformly one of the other C - 1 classes (always changes).
  kSymmetric,
  /// Uniformly one of all C classes, the original included (the DivideMix
  /// convention): a selected label changes with probability (C - 1) / C, so
  /// the effective flip rate is rate * (C - 1) / C.
  kUniform,
  /// c -> (c + 1) mod C.
  kPairFlip,
  /// A draw from row c of a row-stochastic C x C `transition_matrix` (the
  /// diagonal may keep the label); with rate 1 and Bernoulli selection this
  /// applies the matrix to every label.
  kMatrix,
  /// Mahajan et al.'s replacement: a draw from the tag marginal (given, or
  /// the empirical frequencies of the clean labels) excluding the original.
  kMarginal,
};

/// Options of `inject_label_noise`.
///
/// Example:
///   auto opts = dlcore::LabelNoiseOptions(dlcore::NoiseMode::kMarginal, 0.25)
///                   .seed(3);
struct LabelNoiseOptions {
  LabelNoiseOptions(NoiseMode mode, double rate) : mode_(mode), rate_(rate) {}

  /// How a selected label is replaced.
  TORCH_ARG(NoiseMode, mode);
  /// Fraction r in [0, 1] of the labels (tags) selected for corruption.
  TORCH_ARG(double, rate);
  /// true: exactly round(r * M) of the M labels are selected, by a seeded
  /// partial Fisher-Yates shuffle; false: each label independently with
  /// probability r. Default: true
  TORCH_ARG(bool, exact_count) = true;
  /// Seed of the selection and of the replacements. Default: 0
  TORCH_ARG(uint64_t, seed) = 0;
  /// Number of classes C. The [C, C] results must be justified by the
  /// input: C^2 <= max(2^24, 64 * number of labels) unless a [C, C]
  /// `transition_matrix` is given (checked before allocating). Default: -1
  /// (the matrix's or the marginal's size if given, else the largest
  /// label + 1)
  TORCH_ARG(int64_t, num_classes) = -1;
  /// kMatrix only: row-stochastic float [C, C] (non-negative, each row sums
  /// to 1 within 1e-9 for float64, C * 1.2e-7 for float32). Default:
  /// undefined
  TORCH_ARG(torch::Tensor, transition_matrix);
  /// kMarginal only: non-negative float [C] with a positive sum (normalized
  /// here). Default: undefined (the empirical label/tag frequencies)
  TORCH_ARG(torch::Tensor, marginal);
};

/// What `inject_label_noise` did.
struct LabelNoiseResult {
  /// The noisy labels, int64 with the input's shape (for tag lists: the noisy
  /// tags [P], to be paired with the unchanged offsets).
  torch::Tensor labels;
  /// bool, true where the label differs from the clean one.
  torch::Tensor changed;
  /// bool, true where the label was selected for corruption (a superset of
  /// `changed`: kUniform, kMatrix and an empty restriction may keep it).
  torch::Tensor selected;
  /// int64 [C, C]: counts[a][b] = entries with clean label a and noisy label
  /// b, unselected entries included (on the diagonal).
  torch::Tensor transition_counts;
  /// float64 [C, C]: `transition_counts` row-normalized, the realized
  /// P(noisy = b | clean = a); a class that never occurs has a zero row.
  torch::Tensor transition_matrix;
  int64_t num_selected = 0;
  int64_t num_changed = 0;
  /// num_changed / number of labels (0 for no labels).
  double realized_rate = 0.0;
};

namespace detail {

inline std::vector<double> noise_tensor_values(
    const torch::Tensor& t, const char* name) {
  TORCH_CHECK(
      t.is_floating_point(),
      "inject_label_noise: expected a floating-point ",
      name,
      ", but got ",
      t.toString());
  check_has_data(t, "inject_label_noise", name);
  auto d = t.to(torch::kCPU, torch::kDouble).contiguous();
  return std::vector<double>(
      d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

// M entries with clean labels `clean`; for tag lists, `offsets` (N + 1) so
// each entry's image's other tags are excluded from its replacement.
inline LabelNoiseResult inject_label_noise_impl(
    const torch::Tensor& clean_in,
    const int64_t* offsets,
    int64_t num_images,
    const LabelNoiseOptions& o) {
  const double r = o.rate();
  TORCH_CHECK(
      std::isfinite(r) && r >= 0.0 && r <= 1.0,
      "inject_label_noise: rate must be in [0, 1], but got ",
      r);
  const bool is_matrix = o.mode() == NoiseMode::kMatrix;
  const bool is_marginal = o.mode() == NoiseMode::kMarginal;
  TORCH_CHECK(
      !is_matrix || o.transition_matrix().defined(),
      "inject_label_noise: kMatrix needs a transition_matrix");
  TORCH_CHECK(
      is_matrix || !o.transition_matrix().defined(),
      "inject_label_noise: transition_matrix is only used by kMatrix");
  TORCH_CHECK(
      is_marginal || !o.marginal().defined(),
      "inject_label_noise: marginal is only used by kMarginal");
  auto clean = clean_in.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t m = clean.numel();
  const int64_t* y = clean.data_ptr<int64_t>();
  int64_t lo = 0;
  int64_t hi = -1;
  for (int64_t k = 0; k < m; ++k) {
    lo = std::min(lo, y[k]);
    hi = std::max(hi, y[k]);
  }
  TORCH_CHECK(lo >= 0, "inject_label_noise: labels must be >= 0, but got ", lo);
  int64_t c = o.num_classes();
  if (c == -1) {
    // hi + 1 only below 2^32: no overflow for any label.
    c = is_matrix ? o.transition_matrix().size(0)
        : (is_marginal && o.marginal().defined())
            ? o.marginal().numel()
            : (hi < static_cast<int64_t>(UINT32_MAX) ? hi + 1 : hi);
  }
  TORCH_CHECK(
      c >= 2 && c <= static_cast<int64_t>(UINT32_MAX),
      "inject_label_noise: needs num_classes in [2, 2^32), but got ",
      c);
  // The [C, C] results (counts and matrix, about 24 C^2 bytes) must be
  // justified by the input: C^2 <= max(2^24, 64 * number of labels), unless
  // the caller passed a [C, C] transition_matrix.
  if (!is_matrix) {
    const double entries = static_cast<double>(c) * static_cast<double>(c);
    const double bound = std::max(16777216.0, 64.0 * static_cast<double>(m));
    TORCH_CHECK(
        entries <= bound,
        "inject_label_noise: num_classes ",
        c,
        " implies [C, C] transition matrices of ",
        entries,
        " entries (about ",
        24.0 * entries,
        " bytes), more than the bound max(2^24, 64 * labels) = ",
        bound,
        " that ",
        m,
        " labels justify");
  }
  TORCH_CHECK(
      hi < c,
      "inject_label_noise: label ",
      hi,
      " is outside [0, num_classes = ",
      c,
      ")");
  std::vector<double> matrix;
  std::vector<double> marginal;
  if (is_matrix) {
    const auto& t = o.transition_matrix();
    TORCH_CHECK(
        t.dim() == 2 && t.size(0) == c && t.size(1) == c,
        "inject_label_noise: expected a transition_matrix of shape [",
        c,
        ", ",
        c,
        "], but got ",
        t.sizes());
    matrix = noise_tensor_values(t, "transition_matrix");
    // 1e-9 for float64; a lower precision cannot represent rows that exact.
    const double tolerance =
        t.scalar_type() == torch::kDouble
            ? 1e-9
            : std::max(1e-9, static_cast<double>(c) * 1.2e-7);
    for (int64_t a = 0; a < c; ++a) {
      double sum = 0.0;
      for (int64_t b = 0; b < c; ++b) {
        const double v = matrix[static_cast<size_t>(a * c + b)];
        TORCH_CHECK(
            std::isfinite(v) && v >= 0.0,
            "inject_label_noise: transition_matrix entries must be finite "
            "and >= 0, but entry (",
            a,
            ", ",
            b,
            ") is ",
            v);
        sum += v;
      }
      TORCH_CHECK(
          std::abs(sum - 1.0) <= tolerance,
          "inject_label_noise: transition_matrix row ",
          a,
          " sums to ",
          std::setprecision(17),
          sum,
          "; expected 1 within ",
          std::setprecision(3),
          tolerance);
    }
  }
  if (is_marginal) {
    if (o.marginal().defined()) {
      TORCH_CHECK(
          o.marginal().dim() == 1 && o.marginal().numel() == c,
          "inject_label_noise: expected a marginal of shape [",
          c,
          "], but got ",
          o.marginal().sizes());
      marginal = noise_tensor_values(o.marginal(), "marginal");
    } else {
      marginal.assign(static_cast<size_t>(c), 0.0);
      for (int64_t k = 0; k < m; ++k) {
        marginal[static_cast<size_t>(y[k])] += 1.0;
      }
    }
    double largest = 0.0;
    for (int64_t j = 0; j < c; ++j) {
      const double v = marginal[static_cast<size_t>(j)];
      TORCH_CHECK(
          std::isfinite(v) && v >= 0.0,
          "inject_label_noise: marginal entries must be finite and >= 0, but "
          "entry ",
          j,
          " is ",
          v);
      largest = std::max(largest, v);
    }
    double total = 0.0;
    for (const double v : marginal) {
      total += v;
    }
    if (!std::isfinite(total)) {
      // Entries so large that their sum overflows: scaled by the largest,
      // the sum is at most C and the distribution the same.
      total = 0.0;
      for (auto& v : marginal) {
        v /= largest;
        total += v;
      }
    }
    TORCH_CHECK(
        total > 0.0 || m == 0,
        "inject_label_noise: the marginal has zero total mass");
    if (total <= 0.0) {
      marginal.assign(static_cast<size_t>(c), 1.0);
    }
  }
  const NoiseRows rows(
      static_cast<NoiseRowKind>(static_cast<int>(o.mode())),
      c,
      std::move(matrix),
      std::move(marginal));

  // Selection.
  // The label-noise stream of the one seed derivation (detail/splitmix.h).
  SplitMix64 rng(splitmix_stream_seed(o.seed(), kLabelNoiseStream));
  auto selected = torch::zeros({m}, torch::kBool);
  bool* sel = selected.data_ptr<bool>();
  int64_t num_selected = 0;
  if (o.exact_count()) {
    num_selected = std::min<int64_t>(
        m, static_cast<int64_t>(std::llround(r * static_cast<double>(m))));
    std::vector<int64_t> perm(static_cast<size_t>(m));
    for (int64_t k = 0; k < m; ++k) {
      perm[static_cast<size_t>(k)] = k;
    }
    for (int64_t k = 0; k < num_selected; ++k) {
      const int64_t j =
          k + static_cast<int64_t>(rng.below(static_cast<uint64_t>(m - k)));
      std::swap(perm[static_cast<size_t>(k)], perm[static_cast<size_t>(j)]);
      sel[perm[static_cast<size_t>(k)]] = true;
    }
  } else {
    for (int64_t k = 0; k < m; ++k) {
      sel[k] = rng.uniform() < r;
      num_selected += sel[k] ? 1 : 0;
    }
  }

  // Replacement, entry after entry.
  auto noisy = clean.clone();
  int64_t* z = noisy.data_ptr<int64_t>();
  std::vector<int64_t> excluded;
  int64_t image = 0;
  for (int64_t k = 0; k < m; ++k) {
    if (!sel[k]) {
      continue;
    }
    excluded.clear();
    if (offsets != nullptr) {
      while (offsets[image + 1] <= k) {
        ++image;
      }
      TORCH_INTERNAL_ASSERT(image < num_images);
      for (int64_t q = offsets[image]; q < offsets[image + 1]; ++q) {
        if (q != k) {
          excluded.push_back(z[q]); // the image's current other tags
        }
      }
      std::sort(excluded.begin(), excluded.end());
    }
    z[k] = rows.draw(y[k], excluded, rng);
  }

  LabelNoiseResult out;
  out.changed = noisy.ne(clean);
  out.labels = noisy.view(clean_in.sizes());
  out.changed = out.changed.view(clean_in.sizes());
  out.selected = selected.view(clean_in.sizes());
  out.transition_counts = torch::zeros({c, c}, torch::kLong);
  int64_t* tc = out.transition_counts.data_ptr<int64_t>();
  for (int64_t k = 0; k < m; ++k) {
    ++tc[y[k] * c + z[k]];
  }
  auto counts = out.transition_counts.to(torch::kDouble);
  auto row = counts.sum(1, /*keepdim=*/true);
  out.transition_matrix = counts / row.clamp_min(1.0);
  out.num_selected = num_selected;
  out.num_changed = out.changed.sum().item<int64_t>();
  out.realized_rate =
      m == 0 ? 0.0
             : static_cast<double>(out.num_changed) / static_cast<double>(m);
  return out;
}

} // namespace detail

/// Injects label noise into single labels (integer [N] or any shape, values
/// in [0, C)): selects labels by `rate` (exact count or Bernoulli) and
/// replaces each selected one by the mode's rule. The input is not modified.
///
/// Rule per selected label with class c: kSymmetric -> uniform over the
/// other C - 1 classes; kUniform -> uniform over all C (effective flip rate
/// r (C - 1) / C; in exact-count mode exactly round(rN) labels are *selected*
/// and about 1/C of them keep their class); kPairFlip -> (c + 1) mod C;
/// kMatrix -> a draw from row c of the matrix; kMarginal -> a draw from the
/// marginal with c excluded (kept when no other class has mass).
///
/// Mahajan et al. (ECCV 2018), Section 4.2, replace p% of the hashtags "with
/// hashtags obtained by sampling from the marginal distribution over
/// hashtags (excluding the tag to be replaced)": that is kMarginal.
///
/// Example:
///   auto noise = dlcore::inject_label_noise(
///       train.targets,
///       dlcore::LabelNoiseOptions(dlcore::NoiseMode::kMarginal, 0.1).seed(1));
///   train.targets = noise.labels;  // noise.realized_rate == 0.1
///
/// Differences from PyTorch (Python) and other libraries: torchvision has no
/// label-noise injection; DivideMix's "sym" noise draws from all classes
/// (our kUniform), while most papers' "symmetric" excludes the true class
/// (our kSymmetric). Selection and replacement use SplitMix64 seeded by
/// `seed` (its label-noise stream, detail/splitmix.h), not torch's
/// generator.
inline LabelNoiseResult inject_label_noise(
    const torch::Tensor& labels, const LabelNoiseOptions& options) {
  TORCH_CHECK(
      labels.defined() && !labels.is_floating_point() && !labels.is_complex() &&
          labels.scalar_type() != torch::kBool,
      "inject_label_noise: expected integer labels, but got ",
      labels.defined() ? labels.toString() : std::string("undefined"));
  detail::check_has_data(labels, "inject_label_noise", "labels");
  auto out = detail::inject_label_noise_impl(labels, nullptr, 0, options);
  out.labels = out.labels.to(labels.device());
  out.changed = out.changed.to(labels.device());
  out.selected = out.selected.to(labels.device());
  return out;
}

/// Injects label noise into multi-label tag lists: the M entries are the P
/// (image, tag) pairs, selected as for single labels; a selected tag's
/// replacement is drawn from the mode's row restricted to tags the image does
/// not already carry (so no image gets a tag twice; the tag is kept when
/// nothing is left). The empirical marginal of kMarginal is the tag frequency
/// over all pairs. `result.labels` holds the noisy tags [P]; pair them with
/// `tags.offsets`.
///
/// Example:
///   auto noise = dlcore::inject_label_noise(
///       tags, dlcore::LabelNoiseOptions(dlcore::NoiseMode::kMarginal, 0.25));
///   dlcore::TagLists noisy{tags.offsets, noise.labels};
inline LabelNoiseResult inject_label_noise(
    const TagLists& tags, const LabelNoiseOptions& options) {
  tags.check("inject_label_noise");
  auto off = tags.offsets.contiguous();
  return detail::inject_label_noise_impl(
      tags.tags, off.data_ptr<int64_t>(), tags.size(), options);
}

} // namespace dlcore
