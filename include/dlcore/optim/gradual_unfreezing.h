#pragma once

// Gradual unfreezing (ULMFiT): which layer groups train at each epoch. Pair it
// with `add_trainable_param_group` (optim/param_groups.h) to hand the newly
// trainable tensors to the optimizer.

#include <dlcore/detail/module_walk.h>
#include <dlcore/nn/freeze.h>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/arg.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace dlcore {

/// Options of `GradualUnfreezing`.
struct GradualUnfreezingOptions {
  /// Layer groups trainable from the start, counted from the head.
  /// Default: 1
  TORCH_ARG(int64_t, initially_trainable) = 1;
  /// First epoch at which one more group unfreezes. Default: 1
  TORCH_ARG(int64_t, start_epoch) = 1;
  /// Epochs between two unfreezings. Default: 1
  TORCH_ARG(int64_t, epochs_per_group) = 1;

 public:
};

/// Gradual unfreezing (Howard & Ruder 2018, ULMFiT): the last
/// `initially_trainable` groups train from epoch 0, then one more group from
/// the head down unfreezes at `start_epoch`, `start_epoch + epochs_per_group`,
/// and so on.
///
/// trainable_groups(e) = min(G, k0) for e < start_epoch, else
///                       min(G, k0 + 1 + (e - start_epoch) / epochs_per_group)
///
/// The schedule is a pure function of the epoch, so `apply(e)` at any epoch
/// (also after a restart) gives the same state; there is nothing to save.
/// The groups' tensors are shared with the model, which must outlive this.
///
/// Example:
///   dlcore::GradualUnfreezing schedule(groups, {});
///   for (int64_t e = 0; e < epochs; ++e) {
///     auto fresh = schedule.apply(e);
///     dlcore::add_trainable_param_group(sgd, fresh);
///     ...
///   }
class GradualUnfreezing {
 public:
  GradualUnfreezing(LayerGroups groups, GradualUnfreezingOptions options)
      : groups_(std::move(groups)), options_(options) {
    TORCH_CHECK(
        !groups_.empty(),
        "GradualUnfreezing: expected at least one layer group, but got none");
    TORCH_CHECK(
        options_.initially_trainable() >= 0,
        "GradualUnfreezing: expected initially_trainable >= 0, but got ",
        options_.initially_trainable());
    TORCH_CHECK(
        options_.start_epoch() >= 0,
        "GradualUnfreezing: expected start_epoch >= 0, but got ",
        options_.start_epoch());
    TORCH_CHECK(
        options_.epochs_per_group() >= 1,
        "GradualUnfreezing: expected epochs_per_group >= 1, but got ",
        options_.epochs_per_group());
  }

  /// Number of layer groups.
  int64_t num_groups() const {
    return static_cast<int64_t>(groups_.size());
  }

  /// How many groups (from the head) are trainable at `epoch`.
  int64_t trainable_groups(int64_t epoch) const {
    int64_t k = options_.initially_trainable();
    if (epoch >= options_.start_epoch()) {
      k += 1 + (epoch - options_.start_epoch()) / options_.epochs_per_group();
    }
    return std::min(k, num_groups());
  }

  /// The first epoch at which `group` (0 = nearest the input) is trainable.
  int64_t unfreeze_epoch(int64_t group) const {
    TORCH_CHECK(
        group >= 0 && group < num_groups(),
        "GradualUnfreezing: expected group in [0, ",
        num_groups(),
        "), but got ",
        group);
    const int64_t needed = num_groups() - group; // groups trainable from top
    if (needed <= options_.initially_trainable()) {
      return 0;
    }
    return options_.start_epoch() +
           (needed - options_.initially_trainable() - 1) *
               options_.epochs_per_group();
  }

  /// Sets the trainable state of every group for `epoch` and returns the
  /// tensors that became trainable (to add to the optimizer).
  std::vector<torch::Tensor> apply(int64_t epoch) {
    TORCH_CHECK(
        epoch >= 0, "GradualUnfreezing: expected epoch >= 0, but got ", epoch);
    const int64_t boundary = num_groups() - trainable_groups(epoch);
    std::vector<torch::Tensor> fresh;
    for (int64_t g = 0; g < num_groups(); ++g) {
      const auto& group = groups_[static_cast<std::size_t>(g)];
      if (g >= boundary) {
        for (const auto& t : group) {
          if (!t.requires_grad()) {
            fresh.push_back(t);
          }
        }
        detail::set_requires_grad(group, true);
      } else {
        detail::set_requires_grad(group, false);
      }
    }
    return fresh;
  }

  /// The layer groups.
  const LayerGroups& groups() const {
    return groups_;
  }

 private:
  LayerGroups groups_;
  GradualUnfreezingOptions options_;
};

} // namespace dlcore
