#pragma once

// ReduceLROnPlateau: lower the LR when a metric stops improving.

#include <dlcore/optim/detail/scheduler_common.h>
#include <dlcore/optim/lr_scheduler.h>
#include <dlcore/per_group.h>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/arg.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace dlcore {

/// Whether ReduceLROnPlateau's metric should fall or rise, as Python's
/// `mode` string.
enum class PlateauMode {
  /// Lower is better, e.g. a loss (Python `'min'`).
  kMin,
  /// Higher is better, e.g. an accuracy (Python `'max'`).
  kMax,
};

/// How ReduceLROnPlateau's threshold is applied, as Python's
/// `threshold_mode` string.
enum class ThresholdMode {
  /// Better means beyond best * (1 -/+ threshold) (Python `'rel'`).
  kRel,
  /// Better means beyond best -/+ threshold (Python `'abs'`).
  kAbs,
};

/// Options of `ReduceLROnPlateau`; names, defaults and meaning as in
/// `torch.optim.lr_scheduler.ReduceLROnPlateau` of PyTorch 1.13.
///
/// Example:
///   dlcore::ReduceLROnPlateauOptions()
///       .mode(dlcore::PlateauMode::kMax)
///       .factor(0.5)
///       .patience(3);
struct ReduceLROnPlateauOptions {
  /// kMin: reduce when the metric stops falling; kMax: stops rising.
  /// Default: PlateauMode::kMin
  TORCH_ARG(PlateauMode, mode) = PlateauMode::kMin;
  /// new_lr = lr * factor, in [0, 1). Default: 0.1
  TORCH_ARG(double, factor) = 0.1;
  /// Epochs without improvement tolerated before a reduction, >= 0.
  /// Default: 10
  TORCH_ARG(int64_t, patience) = 10;
  /// Margin a metric must beat the best by, finite and >= 0. Default: 1e-4
  TORCH_ARG(double, threshold) = 1e-4;
  /// kRel: relative margin; kAbs: absolute margin.
  /// Default: ThresholdMode::kRel
  TORCH_ARG(ThresholdMode, threshold_mode) = ThresholdMode::kRel;
  /// Epochs after a reduction during which bad epochs are not counted,
  /// >= 0. Default: 0
  TORCH_ARG(int64_t, cooldown) = 0;
  /// Lower bound of the LR, finite and >= 0; one value or one per group.
  /// Default: 0
  TORCH_ARG(PerGroup<double>, min_lr) = 0.0;
  /// A reduction smaller than eps is skipped, finite and >= 0.
  /// Default: 1e-8
  TORCH_ARG(double, eps) = 1e-8;

 public:
};

/// Reduces every group's LR by `factor` when a metric has not improved for
/// more than `patience` epochs (step(metric) once per epoch, after
/// validation). Bit-for-bit the decisions and values of
/// `torch.optim.lr_scheduler.ReduceLROnPlateau` (PyTorch 1.13):
///   better(a)  = a < best * (1 - threshold)   kMin, kRel
///              = a < best - threshold         kMin, kAbs
///              = a > best * (threshold + 1)   kMax, kRel
///              = a > best + threshold         kMax, kAbs
/// (best starts at +inf for kMin, -inf for kMax). Each step: a better metric
/// becomes best and resets the bad-epoch count, otherwise the count grows;
/// during cooldown the count is held at 0; when it exceeds patience, every
/// group's LR becomes max(lr * factor, min_lr_g) unless that lowers it by
/// eps or less, the cooldown starts and the count resets.
///
/// The optimizer must outlive the scheduler (it is held by reference).
///
/// Example:
///   dlcore::ReduceLROnPlateau sched(
///       sgd, dlcore::ReduceLROnPlateauOptions().factor(0.5).patience(2));
///   for (int epoch = 0; epoch < epochs; ++epoch) {
///     train_one_epoch();
///     sched.step(validation_loss());
///   }
///
/// Differences from PyTorch (Python):
/// - factor must be in [0, 1) (PyTorch checks < 1 only), patience, cooldown
///   >= 0, threshold, eps and min_lr finite and >= 0.
/// - A NaN metric is an error (PyTorch counts it as a bad epoch and goes on
///   lowering the LR of a diverged run); +-inf is accepted.
/// - get_last_lr() is available right after construction (the groups'
///   LRs); PyTorch defines it only after the first step.
/// - It is not an LRScheduler: SequentialLR and ChainedScheduler do not
///   take it (PyTorch's cannot be chained either).
class ReduceLROnPlateau : public SchedulerBase {
 public:
  explicit ReduceLROnPlateau(
      torch::optim::Optimizer& optimizer,
      ReduceLROnPlateauOptions options = ReduceLROnPlateauOptions())
      : SchedulerBase(optimizer, "ReduceLROnPlateau", kVersion),
        options_(std::move(options)) {
    const char* owner = "ReduceLROnPlateau";
    TORCH_CHECK(
        options_.factor() >= 0 && options_.factor() < 1,
        owner,
        ": factor must be in [0, 1), but got ",
        options_.factor());
    TORCH_CHECK(
        options_.patience() >= 0,
        owner,
        ": patience must be >= 0, but got ",
        options_.patience());
    TORCH_CHECK(
        std::isfinite(options_.threshold()) && options_.threshold() >= 0,
        owner,
        ": threshold must be finite and >= 0, but got ",
        options_.threshold());
    TORCH_CHECK(
        options_.cooldown() >= 0,
        owner,
        ": cooldown must be >= 0, but got ",
        options_.cooldown());
    TORCH_CHECK(
        std::isfinite(options_.eps()) && options_.eps() >= 0,
        owner,
        ": eps must be finite and >= 0, but got ",
        options_.eps());
    min_lrs_ = detail::sched_expand_finite(
        options_.min_lr(), num_groups(), owner, "min_lr");
    for (std::size_t i = 0; i < min_lrs_.size(); ++i) {
      TORCH_CHECK(
          min_lrs_[i] >= 0,
          owner,
          ": ",
          detail::sched_option_name(
              "min_lr", i, options_.min_lr().is_broadcast()),
          " must be >= 0, but got ",
          min_lrs_[i]);
    }
    best_ = mode_worse();
    last_epoch_ = 0;
  }

  /// Records one epoch's metric and reduces the LRs if it is time to.
  void step(double metric) {
    const int64_t epoch = next_epoch();
    TORCH_CHECK(
        !std::isnan(metric),
        "ReduceLROnPlateau: the metric at step ",
        epoch,
        " is nan (has the run diverged?); nothing was changed");
    check_groups();
    double best = best_;
    int64_t bad = num_bad_epochs_;
    int64_t cooldown = cooldown_counter_;
    if (is_better(metric, best)) {
      best = metric;
      bad = 0;
    } else {
      bad += 1;
    }
    if (cooldown > 0) {
      cooldown -= 1;
      bad = 0; // ignore any bad epochs in cooldown
    }
    scratch_.resize(num_groups());
    for (std::size_t i = 0; i < scratch_.size(); ++i) {
      scratch_[i] = group_lr(i);
    }
    if (bad > options_.patience()) {
      for (std::size_t i = 0; i < scratch_.size(); ++i) {
        const double old_lr = scratch_[i];
        const double reduced = old_lr * options_.factor();
        // Python's max(a, b) keeps a unless b > a.
        const double new_lr = min_lrs_[i] > reduced ? min_lrs_[i] : reduced;
        if (old_lr - new_lr > options_.eps()) {
          scratch_[i] = new_lr;
        }
      }
      cooldown = options_.cooldown();
      bad = 0;
    }
    commit(scratch_, epoch);
    best_ = best;
    num_bad_epochs_ = bad;
    cooldown_counter_ = cooldown;
  }

  /// step(metric.item<double>()) for a one-element tensor (a loss).
  void step(const at::Tensor& metric) {
    TORCH_CHECK(
        metric.defined() && metric.numel() == 1,
        "ReduceLROnPlateau: step expects a tensor with one element, but got ",
        metric.defined() ? metric.sizes() : at::IntArrayRef{});
    step(metric.item<double>());
  }

  /// The best metric so far (+inf for kMin, -inf for kMax before any).
  double best() const noexcept {
    return best_;
  }

  /// Epochs since the last improvement (0 during cooldown).
  int64_t num_bad_epochs() const noexcept {
    return num_bad_epochs_;
  }

  /// Epochs of cooldown left.
  int64_t cooldown_counter() const noexcept {
    return cooldown_counter_;
  }

  /// The options as given.
  const ReduceLROnPlateauOptions& options() const noexcept {
    return options_;
  }

 protected:
  void save_state(detail::StateWriter& state) const override {
    state.put_int("mode", static_cast<int64_t>(options_.mode()));
    state.put_int(
        "threshold_mode", static_cast<int64_t>(options_.threshold_mode()));
    state.put_doubles("factor", {options_.factor()});
    state.put_int("patience", options_.patience());
    state.put_doubles("threshold", {options_.threshold()});
    state.put_int("cooldown", options_.cooldown());
    state.put_doubles("min_lr", min_lrs_);
    state.put_doubles("eps", {options_.eps()});
    state.put_doubles("best", {best_});
    state.put_int("num_bad_epochs", num_bad_epochs_);
    state.put_int("cooldown_counter", cooldown_counter_);
    save_lrs(state);
  }

  void load_state(
      const detail::StateReader& state, int64_t last_epoch) override {
    check_same_int(state, "mode", static_cast<int64_t>(options_.mode()));
    check_same_int(
        state,
        "threshold_mode",
        static_cast<int64_t>(options_.threshold_mode()));
    check_same(state, "factor", options_.factor());
    check_same_int(state, "patience", options_.patience());
    check_same(state, "threshold", options_.threshold());
    check_same_int(state, "cooldown", options_.cooldown());
    check_same(state, "min_lr", min_lrs_);
    check_same(state, "eps", options_.eps());
    const std::vector<double> best = state.read_doubles("best");
    state.expect(
        best.size() == 1 && !std::isnan(best[0]),
        "best",
        "a list of one float that is not nan",
        state.read("best"));
    const int64_t bad = state.read_int("num_bad_epochs");
    // At most one bad epoch per step and at most patience of them.
    state.expect(
        bad >= 0 && bad <= options_.patience() && bad <= last_epoch,
        "num_bad_epochs",
        "an integer in [0, min(patience, last_epoch)] = [0, " +
            std::to_string(std::min(options_.patience(), last_epoch)) + "]",
        bad);
    const int64_t cooldown = state.read_int("cooldown_counter");
    state.expect(
        cooldown >= 0 && cooldown <= options_.cooldown(),
        "cooldown_counter",
        "an integer in [0, cooldown = " + std::to_string(options_.cooldown()) +
            "]",
        cooldown);
    SavedLRs lrs = read_lrs(state);
    restore_lrs(std::move(lrs), last_epoch);
    best_ = best[0];
    num_bad_epochs_ = bad;
    cooldown_counter_ = cooldown;
  }

 private:
  static constexpr int64_t kVersion = 1;

  double mode_worse() const {
    return options_.mode() == PlateauMode::kMin
               ? std::numeric_limits<double>::infinity()
               : -std::numeric_limits<double>::infinity();
  }

  bool is_better(double a, double best) const {
    const double th = options_.threshold();
    if (options_.mode() == PlateauMode::kMin) {
      if (options_.threshold_mode() == ThresholdMode::kRel) {
        const double rel_epsilon = 1. - th;
        return a < best * rel_epsilon;
      }
      return a < best - th;
    }
    if (options_.threshold_mode() == ThresholdMode::kRel) {
      const double rel_epsilon = th + 1.;
      return a > best * rel_epsilon;
    }
    return a > best + th;
  }

  ReduceLROnPlateauOptions options_;
  std::vector<double> min_lrs_;
  std::vector<double> scratch_;
  double best_ = 0;
  int64_t num_bad_epochs_ = 0;
  int64_t cooldown_counter_ = 0;
};

} // namespace dlcore
