#pragma once

#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>
#include <torch/types.h>

#include <dlcore/data/tensor_dataset.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace dlcore {

namespace detail {

/// Int64 CPU contiguous copy of 1-D integer targets; `owner` names the caller.
inline torch::Tensor split_int_targets(
    const torch::Tensor& targets, const std::string& owner) {
  TORCH_CHECK(
      targets.defined() && targets.dim() == 1 &&
          at::isIntegralType(targets.scalar_type(), /*includeBool=*/false),
      owner,
      ": expected 1-D integer class targets but got ",
      targets.defined() ? c10::toString(targets.scalar_type()) : "undefined",
      " ",
      targets.defined() ? targets.sizes() : c10::IntArrayRef{});
  detail::check_has_data(targets, owner.c_str(), "targets");
  return targets.to(at::kCPU, at::kLong).contiguous();
}

} // namespace detail

/// The samples of `dataset` at `indices` (1-D int64 or int32, each in
/// `[0, dataset.size())`, repeats allowed), in the order given: one
/// `index_select` of `data` and of `targets`, so the result owns contiguous
/// copies. Results stay on the data's device.
///
/// Example:
///   dlcore::TensorDataset few = dlcore::subset(
///       train, dlcore::class_balanced_indices(train.targets, 10, 0));
///
/// Differences from PyTorch (Python): `torch.utils.data.Subset` keeps the
/// indices and defers to the parent set per sample; this copies the selected
/// rows once, which is what batch iteration wants.
inline TensorDataset subset(
    const TensorDataset& dataset, const torch::Tensor& indices) {
  dataset.check("subset");
  TORCH_CHECK(
      indices.defined() && indices.dim() == 1 &&
          (indices.scalar_type() == at::kLong ||
           indices.scalar_type() == at::kInt),
      "subset: expected 1-D int64 or int32 indices but got ",
      indices.defined() ? c10::toString(indices.scalar_type()) : "undefined",
      " ",
      indices.defined() ? indices.sizes() : c10::IntArrayRef{});
  detail::check_has_data(indices, "subset", "indices");
  const torch::Tensor idx = indices.to(at::kCPU, at::kLong);
  if (idx.numel() > 0) {
    const int64_t lo = idx.min().item<int64_t>();
    const int64_t hi = idx.max().item<int64_t>();
    TORCH_CHECK(
        lo >= 0 && hi < dataset.size(),
        "subset: expected indices in [0, ",
        dataset.size(),
        ") but got values in [",
        lo,
        ", ",
        hi,
        "]");
  }
  return TensorDataset{
      dataset.data.index_select(0, idx.to(dataset.data.device())),
      dataset.targets.index_select(0, idx.to(dataset.targets.device()))};
}

/// The index sets of a seeded random split of `n` samples: the first holds
/// `floor(first_fraction * n)` indices, the second the rest. Both are slices
/// of `torch.randperm(n, generator=torch.Generator().manual_seed(seed))`, so
/// they equal what `torch.utils.data.random_split(ds, [k, n - k],
/// generator=torch.Generator().manual_seed(seed))` selects, index for index.
inline std::pair<torch::Tensor, torch::Tensor> random_split_indices(
    int64_t n, double first_fraction, uint64_t seed) {
  TORCH_CHECK(n >= 0, "random_split: expected a sample count >= 0 but got ", n);
  TORCH_CHECK(
      first_fraction > 0.0 && first_fraction < 1.0,
      "random_split: expected first_fraction in (0, 1) but got ",
      first_fraction);
  const auto first =
      static_cast<int64_t>(std::floor(first_fraction * static_cast<double>(n)));
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const torch::Tensor perm = at::randperm(n, gen, at::kLong);
  return {perm.narrow(0, 0, first), perm.narrow(0, first, n - first)};
}

/// Splits `dataset` at random into two disjoint parts that together hold
/// every sample once: the first with `floor(first_fraction * n)` samples, the
/// second with the rest. The same seed gives the same split.
///
/// The homework's `random_split(train_set, [int(0.8 * n), n - int(0.8 *
/// n)])` is `random_split(train, 0.8, seed)`: 48000 and 12000 of the 60000
/// training images. With a seed, the selected indices equal PyTorch's for
/// `generator=torch.Generator().manual_seed(seed)` (see
/// `random_split_indices`).
///
/// Example:
///   auto [train, val] = dlcore::random_split(full, 0.8, /*seed=*/0);
///
/// Differences from PyTorch (Python): takes one fraction and rounds it down,
/// like the homework's `int(0.8 * n)`; `random_split` given fractions
/// `[0.8, 0.2]` instead hands the rounding remainder to the first subsets
/// round-robin (n = 7: 6 and 1 there, 5 and 2 here). The samples are copied
/// (`subset`), not referenced.
inline std::pair<TensorDataset, TensorDataset> random_split(
    const TensorDataset& dataset, double first_fraction, uint64_t seed) {
  dataset.check("random_split");
  auto [a, b] = random_split_indices(dataset.size(), first_fraction, seed);
  return {subset(dataset, a), subset(dataset, b)};
}

/// Indices of `per_class` samples of every class, drawn at random without
/// replacement, for few-label experiments. The classes are the distinct
/// values of `targets` (1-D integers >= 0), or `0..num_classes-1` when
/// `num_classes` is given (then every target must be below it, and a class
/// with no sample is an error). Returns int64 indices sorted ascending (so
/// `subset` keeps the data set's order), `per_class * classes` of them.
///
/// Rule: one generator seeded with `seed`; classes in ascending order; class
/// c's sample indices in ascending order, permuted by `randperm(count_c)`,
/// the first `per_class` kept. The same seed and targets give the same
/// indices.
///
/// Example:
///   torch::Tensor idx = dlcore::class_balanced_indices(train.targets, 100, 0);
///   dlcore::TensorDataset labelled = dlcore::subset(train, idx);  // 1000
inline torch::Tensor class_balanced_indices(
    const torch::Tensor& targets,
    int64_t per_class,
    uint64_t seed,
    int64_t num_classes = -1) {
  const torch::Tensor t =
      detail::split_int_targets(targets, "class_balanced_indices");
  TORCH_CHECK(
      per_class >= 1,
      "class_balanced_indices: expected per_class >= 1 but got ",
      per_class);
  TORCH_CHECK(
      num_classes == -1 || num_classes >= 1,
      "class_balanced_indices: expected num_classes -1 (the largest target "
      "+ 1) or >= 1 but got ",
      num_classes);
  const int64_t* y = t.data_ptr<int64_t>();
  const int64_t n = t.numel();
  int64_t max_label = -1;
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(
        y[i] >= 0,
        "class_balanced_indices: expected class targets >= 0 but target ",
        i,
        " is ",
        y[i]);
    TORCH_CHECK(
        num_classes < 0 || y[i] < num_classes,
        "class_balanced_indices: expected class targets below num_classes (",
        num_classes,
        ") but target ",
        i,
        " is ",
        y[i]);
    max_label = std::max(max_label, y[i]);
  }
  // A class beyond the largest target has no sample; refused before the
  // per-class lists are allocated.
  TORCH_CHECK(
      num_classes < 0 || num_classes <= max_label + 1,
      "class_balanced_indices: expected at least per_class (",
      per_class,
      ") samples of every class but class ",
      max_label + 1,
      " has 0");
  const int64_t classes = num_classes >= 0 ? num_classes : max_label + 1;
  std::vector<std::vector<int64_t>> members(static_cast<size_t>(classes));
  for (int64_t i = 0; i < n; ++i) {
    members[static_cast<size_t>(y[i])].push_back(i);
  }
  at::Generator gen = at::detail::createCPUGenerator(seed);
  std::vector<int64_t> picked;
  picked.reserve(static_cast<size_t>(per_class * classes));
  for (int64_t c = 0; c < classes; ++c) {
    const auto& m = members[static_cast<size_t>(c)];
    const auto count = static_cast<int64_t>(m.size());
    if (count == 0 && num_classes < 0) {
      continue; // Not a class of these targets.
    }
    TORCH_CHECK(
        count >= per_class,
        "class_balanced_indices: expected at least per_class (",
        per_class,
        ") samples of every class but class ",
        c,
        " has ",
        count);
    const torch::Tensor perm = at::randperm(count, gen, at::kLong);
    const int64_t* p = perm.data_ptr<int64_t>();
    for (int64_t j = 0; j < per_class; ++j) {
      picked.push_back(m[static_cast<size_t>(p[j])]);
    }
  }
  std::sort(picked.begin(), picked.end());
  return at::tensor(picked, at::kLong);
}

/// The samples of `dataset` whose class is one of `classes`, in the data
/// set's order. With `relabel`, targets become positions in `classes`
/// (`classes[k]` -> k), so a subset of classes trains a k-way head; without,
/// they keep their values. Targets must be 1-D integers; `classes` must be
/// non-empty and free of repeats.
///
/// Example:
///   // Sandals, sneakers and ankle boots as a 3-class problem: 5->0, 7->1,
///   9->2. auto shoes = dlcore::filter_classes(train, {5, 7, 9},
///   /*relabel=*/true);
inline TensorDataset filter_classes(
    const TensorDataset& dataset,
    const std::vector<int64_t>& classes,
    bool relabel) {
  dataset.check("filter_classes");
  const torch::Tensor t =
      detail::split_int_targets(dataset.targets, "filter_classes");
  TORCH_CHECK(
      !classes.empty(),
      "filter_classes: expected at least one class but got none");
  std::map<int64_t, int64_t> position;
  for (size_t k = 0; k < classes.size(); ++k) {
    TORCH_CHECK(
        position.emplace(classes[k], static_cast<int64_t>(k)).second,
        "filter_classes: expected distinct classes but ",
        classes[k],
        " appears more than once");
  }
  const int64_t* y = t.data_ptr<int64_t>();
  std::vector<int64_t> keep;
  std::vector<int64_t> relabelled;
  for (int64_t i = 0; i < t.numel(); ++i) {
    const auto it = position.find(y[i]);
    if (it != position.end()) {
      keep.push_back(i);
      relabelled.push_back(it->second);
    }
  }
  TensorDataset out = subset(dataset, at::tensor(keep, at::kLong));
  if (relabel) {
    out.targets =
        at::tensor(relabelled, at::kLong)
            .to(dataset.targets.device(), dataset.targets.scalar_type());
  }
  return out;
}

} // namespace dlcore
