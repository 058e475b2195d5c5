#pragma once

// Optimizer param groups for transfer learning: discriminative learning rates
// over layer groups (a geometric ladder) and adding newly unfrozen tensors to
// a running optimizer by tensor identity.

#include <dlcore/nn/freeze.h>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/optim/optimizer.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <unordered_set>
#include <utility>
#include <vector>

namespace dlcore {

/// The geometric ladder of `num_groups` learning rates from `lr_low` (group
/// 0, nearest the input) to `lr_high` (the last group, the head):
/// lr_i = lr_low * (lr_high / lr_low)^(i / (G - 1)); one group gets lr_high.
///
/// Differences from fastai: fastai's `slice(lo, hi)` builds the same
/// geometric ladder (`even_mults`).
inline std::vector<double> discriminative_lrs(
    int64_t num_groups, double lr_low, double lr_high) {
  TORCH_CHECK(
      num_groups > 0,
      "discriminative_lrs: expected num_groups > 0, but got ",
      num_groups);
  TORCH_CHECK(
      lr_low > 0.0 && lr_high >= lr_low && std::isfinite(lr_high),
      "discriminative_lrs: expected 0 < lr_low <= lr_high, both finite, but "
      "got lr_low = ",
      lr_low,
      " and lr_high = ",
      lr_high);
  std::vector<double> lrs(static_cast<std::size_t>(num_groups), lr_high);
  if (num_groups > 1) {
    const double ratio = lr_high / lr_low;
    for (int64_t i = 0; i < num_groups; ++i) {
      lrs[static_cast<std::size_t>(i)] =
          lr_low *
          std::pow(
              ratio,
              static_cast<double>(i) / static_cast<double>(num_groups - 1));
    }
    lrs.back() = lr_high;
  }
  return lrs;
}

/// One optimizer param group per layer group, with the learning rates of
/// `discriminative_lrs` and the other options cloned from `base` (e.g.
/// `torch::optim::SGDOptions(0.1).momentum(0.9)`; its lr is overwritten).
///
/// Example:
///   auto groups = dlcore::layer_groups(model, {"conv1", "layer1", "fc"});
///   torch::optim::SGD sgd(
///       dlcore::discriminative_param_groups(groups, 1e-3, 1e-1,
///           torch::optim::SGDOptions(0.1).momentum(0.9)),
///       torch::optim::SGDOptions(0.1).momentum(0.9));
inline std::vector<torch::optim::OptimizerParamGroup>
discriminative_param_groups(
    const LayerGroups& groups,
    double lr_low,
    double lr_high,
    const torch::optim::OptimizerOptions& base) {
  const auto lrs =
      discriminative_lrs(static_cast<int64_t>(groups.size()), lr_low, lr_high);
  std::vector<torch::optim::OptimizerParamGroup> out;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    auto options = base.clone();
    options->set_lr(lrs[g]);
    out.emplace_back(groups[g], std::move(options));
  }
  return out;
}

/// Adds, as one new param group, exactly those `candidates` that require
/// grad and are not yet in any of the optimizer's groups, matched by tensor
/// identity (`TensorImpl`), never by value; returns how many tensors were
/// added (no group is added when 0). The group's options are the
/// optimizer's defaults, with `lr` when given.
///
/// Example:
///   dlcore::unfreeze(model, "layer3");
///   dlcore::add_trainable_param_group(sgd, model->parameters(), 0.01);
///
/// Differences from PyTorch Lightning: `BaseFinetuning` filters parameters
/// already in the optimizer by comparing values in some versions; two layers
/// with equal values (e.g. freshly zero-initialized biases) are then
/// confused. Identity cannot be.
inline int64_t add_trainable_param_group(
    torch::optim::Optimizer& optimizer,
    const std::vector<torch::Tensor>& candidates,
    std::optional<double> lr = std::nullopt) {
  std::unordered_set<const c10::TensorImpl*> present;
  for (const auto& group : optimizer.param_groups()) {
    for (const auto& p : group.params()) {
      present.insert(p.unsafeGetTensorImpl());
    }
  }
  std::vector<torch::Tensor> fresh;
  for (const auto& t : candidates) {
    if (t.defined() && t.requires_grad() &&
        present.insert(t.unsafeGetTensorImpl()).second) {
      fresh.push_back(t);
    }
  }
  if (fresh.empty()) {
    return 0;
  }
  auto options = optimizer.defaults().clone();
  if (lr) {
    TORCH_CHECK(
        std::isfinite(*lr) && *lr >= 0.0,
        "add_trainable_param_group: expected a finite lr >= 0, but got ",
        *lr);
    options->set_lr(*lr);
  }
  const auto added = static_cast<int64_t>(fresh.size());
  optimizer.add_param_group(
      torch::optim::OptimizerParamGroup(std::move(fresh), std::move(options)));
  return added;
}

} // namespace dlcore
