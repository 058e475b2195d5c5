#pragma once

/// \file
/// The homework's batch-size study: the same initial model trained at
/// several batch sizes through `train_epoch` (train/train_loop.h). Moved
/// here from train/batch_size_study.h, which still forwards to this header.

#include <dlcore/data/batches.h>
#include <dlcore/data/tensor_dataset.h>
#include <dlcore/study/detail/state_snapshot.h>
#include <dlcore/study/detail/study_epoch.h>
#include <dlcore/train/losses.h>
#include <dlcore/train/train_loop.h>

#include <c10/util/Exception.h>
#include <torch/arg.h>
#include <torch/optim/optimizer.h>

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace dlcore {

/// How the learning rate of a batch-size run is chosen.
enum class BatchLRRule {
  /// The same learning rate `lr` at every batch size (the homework's).
  kFixed,
  /// Goyal et al. (2017)'s linear scaling rule: lr * batch_size /
  /// base_batch_size.
  kLinear,
};

/// "fixed" or "linear".
inline const char* to_string(BatchLRRule rule) {
  return rule == BatchLRRule::kFixed ? "fixed" : "linear";
}

/// One (batch size, LR rule) run of `batch_size_study`.
struct BatchSizeRun {
  int64_t batch_size = 0;
  BatchLRRule rule = BatchLRRule::kFixed;
  /// The learning rate the optimizer was built with.
  double lr = 0.0;
  /// Per epoch: the mean training loss over the epoch's batches
  /// (`EpochMetrics::loss` of `train_epoch` with `LossAverage::kPerBatch`:
  /// the sum of the batches' mean losses / the number of batches, the
  /// homework's `running_loss / len(loader)`; it differs from `train_epoch`'s
  /// default per-sample mean only when the last batch is partial), the
  /// training accuracy (NaN when a loss was not finite), and the validation
  /// loss (`evaluate`, likewise per batch) and accuracy after the epoch.
  std::vector<double> train_loss;
  std::vector<double> train_accuracy;
  std::vector<double> val_loss;
  std::vector<double> val_accuracy;
  /// The last epoch's values (NaN when the run diverged before them).
  double final_train_loss = std::numeric_limits<double>::quiet_NaN();
  double final_val_loss = std::numeric_limits<double>::quiet_NaN();
  double final_val_accuracy = std::numeric_limits<double>::quiet_NaN();
  /// Optimizer steps taken, wall-clock seconds (training and validation).
  int64_t steps = 0;
  double seconds = 0.0;
  /// True when a training loss was NaN or infinite (the run stopped there).
  bool diverged = false;
  /// True when this record was copied from an earlier run at the same batch
  /// size with the same LR (which it would repeat exactly) instead of being
  /// trained again; `seconds` are then that run's.
  bool reused = false;
};

/// Every run of a study, in the order batch size (outer) x rule (inner).
struct BatchSizeStudyResult {
  std::vector<BatchSizeRun> runs;
};

/// Options of `batch_size_study`.
///
/// Example:
///   auto opts = dlcore::BatchSizeStudyOptions(/*lr=*/0.05)
///                   .batch_sizes({32, 256, 2048})
///                   .rules({dlcore::BatchLRRule::kFixed,
///                           dlcore::BatchLRRule::kLinear});
struct BatchSizeStudyOptions {
  /// The learning rate (at `base_batch_size` for kLinear); finite, > 0.
  /* implicit */ BatchSizeStudyOptions(double lr) : lr_(lr) {}

  /// The learning rate. Required.
  TORCH_ARG(double, lr);
  /// Batch sizes to train with (each >= 1). Default: 32, 64, ..., 4096
  TORCH_ARG(std::vector<int64_t>, batch_sizes) = std::vector<int64_t>{
      32, 64, 128, 256, 512, 1024, 2048, 4096};
  /// Learning-rate rules, each run at every batch size.
  /// Default: {BatchLRRule::kFixed}
  TORCH_ARG(std::vector<BatchLRRule>, rules) = std::vector<BatchLRRule>{
      BatchLRRule::kFixed};
  /// Batch size at which kLinear uses `lr` unchanged (>= 1). Default: 32
  TORCH_ARG(int64_t, base_batch_size) = 32;
  /// Epochs per run (>= 1). Default: 5
  TORCH_ARG(int64_t, epochs) = 5;
  /// Shuffle the training set each epoch. Default: true
  TORCH_ARG(bool, shuffle) = true;
  /// Seed of the shuffle; epoch e of every run uses the same seed, so runs
  /// differ only in batch size and LR. Default: 0
  TORCH_ARG(uint64_t, seed) = 0;
  /// Drop the last partial training batch. Default: false
  TORCH_ARG(bool, drop_last) = false;
  /// Batch size of the validation pass (>= 1). Default: 1024
  TORCH_ARG(int64_t, eval_batch_size) = 1024;
  /// Stop a run at its first non-finite training loss. Default: true
  TORCH_ARG(bool, stop_on_non_finite) = true;
  /// Called after each run (progress). Default: none
  TORCH_ARG(std::function<void(const BatchSizeRun&)>, on_run) = nullptr;

 public:
  /// Checks every option.
  void validate() const {
    TORCH_CHECK(
        std::isfinite(lr_) && lr_ > 0.0,
        "batch_size_study: lr must be finite and > 0, but got ",
        lr_);
    TORCH_CHECK(
        !batch_sizes_.empty(),
        "batch_size_study: expected at least one batch size, but got none");
    for (int64_t bs : batch_sizes_) {
      TORCH_CHECK(
          bs >= 1, "batch_size_study: batch sizes must be >= 1, but got ", bs);
    }
    TORCH_CHECK(
        !rules_.empty(),
        "batch_size_study: expected at least one LR rule, but got none");
    TORCH_CHECK(
        base_batch_size_ >= 1,
        "batch_size_study: base_batch_size must be >= 1, but got ",
        base_batch_size_);
    TORCH_CHECK(
        epochs_ >= 1,
        "batch_size_study: epochs must be >= 1, but got ",
        epochs_);
    TORCH_CHECK(
        eval_batch_size_ >= 1,
        "batch_size_study: eval_batch_size must be >= 1, but got ",
        eval_batch_size_);
    // kLinear scales lr by batch_size / base_batch_size: every run's LR
    // must stay finite.
    for (int64_t bs : batch_sizes_) {
      for (BatchLRRule rule : rules_) {
        TORCH_CHECK(
            std::isfinite(lr_for(bs, rule)),
            "batch_size_study: the ",
            to_string(rule),
            " LR of batch size ",
            bs,
            " (lr ",
            lr_,
            " scaled by ",
            bs,
            " / base_batch_size ",
            base_batch_size_,
            ") is not finite");
      }
    }
  }

  /// The learning rate of a run at `batch_size` under `rule`.
  double lr_for(int64_t batch_size, BatchLRRule rule) const {
    if (rule == BatchLRRule::kLinear) {
      return lr_ * static_cast<double>(batch_size) /
             static_cast<double>(base_batch_size_);
    }
    return lr_;
  }
};

/// Trains the same initial model at several batch sizes (the homework's
/// problem 1 study: 32 ... 4096 at a fixed learning rate, 5 epochs each) and
/// records per run the training loss and validation accuracy per epoch, the
/// final ones, steps and seconds. With `rules({kFixed, kLinear})` each batch
/// size is also trained with Goyal et al.'s linearly scaled learning rate.
///
/// Every run starts from the weights of the first model `make_model()` made
/// and, per epoch, from the same seeded shuffle, so batch size and LR are
/// the only differences. `make_optimizer(model, lr)` builds the optimizer
/// (by value, `std::unique_ptr` or `std::shared_ptr`). Each epoch is one
/// `train_epoch` with `LossAverage::kPerBatch` and `loss_fn(output, target)`
/// (empty: `default_loss`, mean cross-entropy), stopped by its step callback
/// at the first non-finite loss when `stop_on_non_finite`; each validation
/// pass is one `evaluate`. Accuracy is `train_epoch`'s: argmax against
/// class indices (or the argmax of probability targets).
///
/// Example:
///   auto study = dlcore::batch_size_study(
///       [] { return dlcore::LeNet5(); },
///       [](dlcore::LeNet5& m, double lr) {
///         return torch::optim::SGD(m->parameters(),
///                                  torch::optim::SGDOptions(lr).momentum(0.9));
///       },
///       train, val, dlcore::BatchSizeStudyOptions(0.05).epochs(5));
///
/// Differences from the homework: its models start from different random
/// weights and shuffles per batch size; the linear-scaling runs are ours
/// (Goyal et al., "Accurate, Large Minibatch SGD", 2017, without warm-up).
template <
    typename MakeModel,
    typename MakeOptimizer,
    typename LossFn = LossFunction>
BatchSizeStudyResult batch_size_study(
    MakeModel&& make_model,
    MakeOptimizer&& make_optimizer,
    const TensorDataset& train,
    const TensorDataset& val,
    const BatchSizeStudyOptions& options,
    LossFn loss_fn = LossFn()) {
  options.validate();
  train.check("batch_size_study (train)");
  val.check("batch_size_study (val)");
  TORCH_CHECK(
      train.size() > 0 && val.size() > 0,
      "batch_size_study: expected non-empty train and val sets, but got ",
      train.size(),
      " and ",
      val.size(),
      " samples");

  const LossFunction loss(std::move(loss_fn));
  auto first = make_model();
  const detail::ModuleSnapshot initial(
      detail::module_of(first, "batch_size_study"));
  Batches val_batches(val, BatchesOptions(options.eval_batch_size()));

  BatchSizeStudyResult result;
  for (int64_t bs : options.batch_sizes()) {
    const std::size_t first_of_bs = result.runs.size();
    for (BatchLRRule rule : options.rules()) {
      const double lr = options.lr_for(bs, rule);
      // Same batch size, same LR (kLinear at base_batch_size): the run would
      // repeat an earlier one exactly (same weights, same order), so its
      // record is reused instead of training again.
      bool reused = false;
      for (std::size_t k = first_of_bs; k < result.runs.size(); ++k) {
        if (result.runs[k].lr == lr) {
          BatchSizeRun copy = result.runs[k];
          copy.rule = rule;
          copy.reused = true;
          if (options.on_run()) {
            options.on_run()(copy);
          }
          result.runs.push_back(std::move(copy));
          reused = true;
          break;
        }
      }
      if (reused) {
        continue;
      }
      const auto start = std::chrono::steady_clock::now();
      BatchSizeRun run;
      run.batch_size = bs;
      run.rule = rule;
      run.lr = lr;
      auto model = make_model();
      initial.load_values_into(detail::module_of(model, "batch_size_study"));
      auto made = make_optimizer(model, run.lr);
      torch::optim::Optimizer& optimizer = detail::made_optimizer(made);
      Batches train_batches(
          train,
          BatchesOptions(bs)
              .shuffle(options.shuffle())
              .seed(options.seed())
              .drop_last(options.drop_last()));
      TORCH_CHECK(
          train_batches.size() > 0,
          "batch_size_study: batch size ",
          bs,
          " with drop_last leaves no batch of the ",
          train.size(),
          " training samples");
      for (int64_t e = 0; e < options.epochs(); ++e) {
        train_batches.set_epoch(e);
        const detail::StudyEpoch epoch = detail::train_study_epoch(
            model,
            train_batches,
            optimizer,
            loss,
            options.stop_on_non_finite());
        run.steps += epoch.metrics.steps;
        run.train_loss.push_back(epoch.metrics.loss);
        run.train_accuracy.push_back(epoch.metrics.accuracy);
        if (!epoch.finite) {
          run.diverged = true;
          if (options.stop_on_non_finite()) {
            break;
          }
        }
        const EpochMetrics v = detail::evaluate_study(model, val_batches, loss);
        run.val_loss.push_back(v.loss);
        run.val_accuracy.push_back(v.accuracy);
      }
      if (!run.diverged ||
          static_cast<int64_t>(run.val_accuracy.size()) == options.epochs()) {
        run.final_train_loss = run.train_loss.back();
        run.final_val_loss = run.val_loss.back();
        run.final_val_accuracy = run.val_accuracy.back();
      } else {
        run.final_train_loss = run.train_loss.back();
      }
      run.seconds = detail::seconds_since(start);
      if (options.on_run()) {
        options.on_run()(run);
      }
      result.runs.push_back(std::move(run));
    }
  }
  return result;
}

} // namespace dlcore
