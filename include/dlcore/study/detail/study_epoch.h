#pragma once

// One training epoch and one evaluation pass as the LR grid and the
// batch-size study record them: `train_epoch` and `evaluate` with the
// homework's per-batch mean loss, and a stop at the first non-finite loss.
// Internal to dlcore (study/lr_finder.h, study/batch_size_study.h).

#include <dlcore/train/train_loop.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

namespace dlcore {
namespace detail {

/// A study's training epoch: the `train_epoch` metrics and whether every
/// batch's loss was finite.
struct StudyEpoch {
  EpochMetrics metrics;
  bool finite = true;
};

/// One `train_epoch` of `model` over `batches` with `LossAverage::kPerBatch`
/// (the homework's `running_loss / len(loader)`) and gradients cleared by
/// `optimizer.zero_grad()`. With `stop_on_non_finite`, the callback ends the
/// epoch after the first batch whose loss is not finite (that batch is
/// counted). The epoch loss is then not finite either (a sum of finite float
/// losses cannot overflow a double), which is how a non-finite batch is seen
/// without a callback; its accuracy is then NaN.
template <typename Model, typename Batches, typename Optimizer>
StudyEpoch train_study_epoch(
    Model& model,
    Batches& batches,
    Optimizer& optimizer,
    const LossFunction& loss_fn,
    bool stop_on_non_finite) {
  // set_to_none(false): optimizer.zero_grad(), as the homework's loop calls
  // it.
  auto options = TrainOptions()
                     .loss_fn(loss_fn)
                     .loss_average(LossAverage::kPerBatch)
                     .set_to_none(false);
  if (stop_on_non_finite) {
    options.on_step(
        [](StepInfo& step) { step.stop = !std::isfinite(step.loss); });
  }
  StudyEpoch epoch;
  epoch.metrics = train_epoch(model, batches, optimizer, options);
  epoch.finite =
      epoch.metrics.batches == 0 || std::isfinite(epoch.metrics.loss);
  if (!epoch.finite) {
    epoch.metrics.accuracy = std::numeric_limits<double>::quiet_NaN();
  }
  return epoch;
}

/// `evaluate` with `LossAverage::kPerBatch`.
template <typename Model, typename Batches>
EpochMetrics evaluate_study(
    Model& model, Batches& batches, const LossFunction& loss_fn) {
  return evaluate(
      model,
      batches,
      EvaluateOptions().loss_fn(loss_fn).loss_average(LossAverage::kPerBatch));
}

/// The optimizer `make_optimizer` returned: by value, or behind a
/// `std::unique_ptr` / `std::shared_ptr` (checked non-null).
template <typename T>
torch::optim::Optimizer& made_optimizer(T& made) {
  return pointee(made, "make_optimizer", "an optimizer");
}

template <typename B, typename = void>
struct HasSetEpoch : std::false_type {};
template <typename B>
struct HasSetEpoch<
    B,
    std::void_t<decltype(std::declval<B&>().set_epoch(int64_t{0}))>>
    : std::true_type {};

/// `batches.set_epoch(epoch)` when the batches have it (`dlcore::Batches`),
/// so every run of a study sees the same order; nothing otherwise.
template <typename B>
void set_epoch_if_any(B& batches, int64_t epoch) {
  if constexpr (HasSetEpoch<B>::value) {
    batches.set_epoch(epoch);
  } else {
    (void)batches;
    (void)epoch;
  }
}

} // namespace detail
} // namespace dlcore
