#pragma once

// The small training loop shared by the LR finder, the LR grid search and the
// batch-size study: batch field access for several batch types, the default
// loss, one optimizer step, one epoch and an evaluation pass (over
// dlcore::Batches or any range of batches). Internal to dlcore.

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/optimizer.h>
#include <torch/utils.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

namespace dlcore {
namespace detail {

// ---- batch fields: `.data` plus `.targets` (dlcore::Batch) or `.target`
// (torch::data::Example) ----

template <typename B, typename = void>
struct FinderHasTargets : std::false_type {};
template <typename B>
struct FinderHasTargets<B, std::void_t<decltype(std::declval<B&>().targets)>>
    : std::true_type {};

template <typename B>
const torch::Tensor& finder_input(const B& batch) {
  return batch.data;
}

template <typename B>
const torch::Tensor& finder_target(const B& batch) {
  if constexpr (FinderHasTargets<B>::value) {
    return batch.targets;
  } else {
    return batch.target;
  }
}

// ---- optional `set_epoch(int64_t)` on a batch source ----

template <typename B, typename = void>
struct FinderHasSetEpoch : std::false_type {};
template <typename B>
struct FinderHasSetEpoch<
    B,
    std::void_t<decltype(std::declval<B&>().set_epoch(int64_t{0}))>>
    : std::true_type {};

template <typename B>
void finder_set_epoch(B& batches, int64_t epoch) {
  if constexpr (FinderHasSetEpoch<B>::value) {
    batches.set_epoch(epoch);
  } else {
    (void)batches;
    (void)epoch;
  }
}

// ---- an optimizer returned by value, unique_ptr or shared_ptr ----

template <typename T>
torch::optim::Optimizer& finder_deref(T& o) {
  if constexpr (std::is_base_of_v<torch::optim::Optimizer, T>) {
    return o;
  } else {
    TORCH_CHECK(o != nullptr, "make_optimizer returned a null pointer");
    return *o;
  }
}

/// The default loss: mean cross-entropy of logits against class indices (or
/// soft targets), as `torch.nn.CrossEntropyLoss()`.
struct FinderCrossEntropy {
  torch::Tensor operator()(
      const torch::Tensor& output, const torch::Tensor& target) const {
    return torch::nn::functional::cross_entropy(output, target);
  }
};

/// Number of correct argmax predictions, or -1 when the targets are not
/// class indices.
inline int64_t finder_correct(
    const torch::Tensor& output, const torch::Tensor& target) {
  if (target.dim() != 1 || target.scalar_type() != torch::kLong ||
      output.dim() != 2) {
    return -1;
  }
  return output.argmax(1).eq(target).sum().item<int64_t>();
}

inline double finder_seconds_since(
    std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

/// Loss and accuracy of one pass.
struct FinderPass {
  double loss = 0.0; // mean of the per-batch losses (the homework's)
  double accuracy = std::nan(""); // fraction in [0, 1]; NaN without classes
  int64_t samples = 0;
  int64_t steps = 0;
  bool finite = true;
};

/// One training epoch: zero_grad, forward, loss, backward, step per batch.
/// Stops at the first non-finite loss when `stop_on_non_finite`.
template <typename Model, typename Batches, typename LossFn>
FinderPass finder_train_epoch(
    Model& model,
    torch::optim::Optimizer& optimizer,
    Batches& batches,
    LossFn& loss_fn,
    bool stop_on_non_finite) {
  model->train();
  FinderPass pass;
  double loss_sum = 0.0;
  int64_t correct = 0;
  bool has_classes = true;
  for (const auto& batch : batches) {
    const auto& x = finder_input(batch);
    const auto& y = finder_target(batch);
    optimizer.zero_grad();
    torch::Tensor output = model->forward(x);
    torch::Tensor loss = loss_fn(output, y);
    const double value = loss.template item<double>();
    if (!std::isfinite(value)) {
      pass.finite = false;
      if (stop_on_non_finite) {
        loss_sum += value;
        pass.steps += 1;
        pass.samples += x.size(0);
        break;
      }
    }
    loss.backward();
    optimizer.step();
    loss_sum += value;
    pass.steps += 1;
    pass.samples += x.size(0);
    const int64_t c = finder_correct(output.detach(), y);
    if (c < 0) {
      has_classes = false;
    } else {
      correct += c;
    }
  }
  pass.loss = pass.steps > 0 ? loss_sum / static_cast<double>(pass.steps)
                             : std::nan("");
  if (has_classes && pass.samples > 0 && pass.finite) {
    pass.accuracy =
        static_cast<double>(correct) / static_cast<double>(pass.samples);
  }
  return pass;
}

/// An evaluation pass in eval mode without gradients; the training flag is
/// restored afterwards.
template <typename Model, typename Batches, typename LossFn>
FinderPass finder_evaluate(Model& model, Batches& batches, LossFn& loss_fn) {
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  FinderPass pass;
  double loss_sum = 0.0;
  int64_t correct = 0;
  bool has_classes = true;
  for (const auto& batch : batches) {
    const auto& x = finder_input(batch);
    const auto& y = finder_target(batch);
    torch::Tensor output = model->forward(x);
    const double value = loss_fn(output, y).template item<double>();
    pass.finite = pass.finite && std::isfinite(value);
    loss_sum += value;
    pass.steps += 1;
    pass.samples += x.size(0);
    const int64_t c = finder_correct(output, y);
    if (c < 0) {
      has_classes = false;
    } else {
      correct += c;
    }
  }
  pass.loss = pass.steps > 0 ? loss_sum / static_cast<double>(pass.steps)
                             : std::nan("");
  if (has_classes && pass.samples > 0) {
    pass.accuracy =
        static_cast<double>(correct) / static_cast<double>(pass.samples);
  }
  model->train(was_training);
  return pass;
}

} // namespace detail
} // namespace dlcore
