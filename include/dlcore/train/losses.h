#pragma once

/// \file
/// The losses of the training loop: cross-entropy with class indices or with
/// soft (probability) targets. `train_epoch`, `evaluate`, the LR range test
/// and the studies default to `default_loss`.

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/nn/functional/loss.h>
#include <torch/types.h>

namespace dlcore {

/// Cross-entropy with soft targets: `mean_i( -sum_c t_ic log_softmax(z_i)_c )`
/// for logits `z` `[N, C]` and float targets `t` `[N, C]` (rows are
/// probabilities, e.g. from a teacher or label smoothing).
///
/// Example:
///   auto loss = dlcore::soft_target_cross_entropy(logits, teacher_probs);
///
/// Differences from PyTorch (Python): the same value as
/// `F.cross_entropy(z, t)` with probability targets (PyTorch >= 1.10).
inline torch::Tensor soft_target_cross_entropy(
    const torch::Tensor& logits, const torch::Tensor& targets) {
  TORCH_CHECK(
      logits.dim() == 2 && targets.sizes() == logits.sizes(),
      "soft_target_cross_entropy: expected logits [N, C] and targets of the "
      "same shape, but got logits ",
      logits.sizes(),
      " and targets ",
      targets.sizes());
  TORCH_CHECK(
      logits.is_floating_point() && targets.is_floating_point(),
      "soft_target_cross_entropy: expected floating-point logits and target "
      "probabilities, but got ",
      logits.scalar_type(),
      " and ",
      targets.scalar_type());
  return -(targets.to(logits.scalar_type()) * torch::log_softmax(logits, 1))
              .sum(1)
              .mean();
}

/// The default loss of `train_epoch` and `evaluate`: cross-entropy with class
/// indices (int64 `[N]`, `torch.nn.CrossEntropyLoss()`), or
/// `soft_target_cross_entropy` when the targets are float `[N, C]`.
inline torch::Tensor default_loss(
    const torch::Tensor& logits, const torch::Tensor& targets) {
  if (targets.is_floating_point()) {
    return soft_target_cross_entropy(logits, targets);
  }
  TORCH_CHECK(
      targets.dim() == 1 && logits.dim() == 2 &&
          targets.size(0) == logits.size(0),
      "default_loss: expected int64 targets [N] for logits [N, C], but got "
      "targets ",
      targets.sizes(),
      " (",
      targets.scalar_type(),
      ") for logits ",
      logits.sizes());
  return torch::nn::functional::cross_entropy(logits, targets);
}

/// The soft-target cross-entropy Mahajan et al. train with (hashtag
/// prediction); the same function as `soft_target_cross_entropy`, kept under
/// this name for code written against `data/hashtag_resampler.h`.
inline torch::Tensor soft_cross_entropy(
    const torch::Tensor& logits, const torch::Tensor& targets) {
  return soft_target_cross_entropy(logits, targets);
}

} // namespace dlcore
