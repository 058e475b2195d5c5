#pragma once

// StepLR, MultiStepLR and ExponentialLR: multiplicative decay at fixed
// epochs.

#include <dlcore/optim/lr_scheduler.h>

#include <c10/util/Exception.h>
#include <torch/arg.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace dlcore {

namespace detail {

inline void check_decay_gamma(double gamma, const char* owner) {
  TORCH_CHECK(
      std::isfinite(gamma) && gamma > 0,
      owner,
      ": gamma must be finite and > 0, but got ",
      gamma);
}

} // namespace detail

/// Options of `StepLR`; as `torch.optim.lr_scheduler.StepLR` (PyTorch 1.13).
///
/// Example:
///   dlcore::StepLROptions(/*step_size=*/30).gamma(0.1);
struct StepLROptions {
  /* implicit */ StepLROptions(int64_t step_size) : step_size_(step_size) {}

  /// Epochs between two decays, >= 1.
  TORCH_ARG(int64_t, step_size);
  /// Factor of each decay, finite and > 0. Default: 0.1
  TORCH_ARG(double, gamma) = 0.1;

 public:
};

/// Multiplies every group's LR by gamma every step_size epochs:
///   lr_g(e) = lr_g(e - 1) * gamma   if e > 0 and e % step_size == 0
///           = lr_g(e - 1)           otherwise
/// so, alone, lr_g(e) = base_lr_g * gamma^floor(e / step_size). Bit-for-bit
/// the values of `torch.optim.lr_scheduler.StepLR` (PyTorch 1.13), and the
/// same as LibTorch's `torch::optim::StepLR`, with dlcore's save/load,
/// validation and composition.
///
/// The optimizer must outlive the scheduler (it is held by reference).
///
/// Example:
///   dlcore::StepLR sched(sgd, dlcore::StepLROptions(30).gamma(0.1));
///   for (int epoch = 0; epoch < 90; ++epoch) {
///     train_one_epoch(); sched.step();
///   }
///
/// Differences from PyTorch (Python): step_size >= 1 and gamma finite and
/// > 0 are required (PyTorch accepts any value).
class StepLR : public LRScheduler {
 public:
  StepLR(torch::optim::Optimizer& optimizer, StepLROptions options)
      : LRScheduler(optimizer, "StepLR", kVersion),
        options_(std::move(options)) {
    TORCH_CHECK(
        options_.step_size() >= 1,
        "StepLR: step_size must be >= 1, but got ",
        options_.step_size());
    detail::check_decay_gamma(options_.gamma(), "StepLR");
    last_epoch_ = -1;
    step();
  }

  /// The options as given.
  const StepLROptions& options() const noexcept {
    return options_;
  }

 protected:
  void get_lr(int64_t epoch, std::vector<double>& out) const override {
    out.resize(num_groups());
    const bool decay = epoch != 0 && epoch % options_.step_size() == 0;
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i] = decay ? group_lr(i) * options_.gamma() : group_lr(i);
    }
  }

  void closed_form_lr(int64_t epoch, std::vector<double>& out) const override {
    out.resize(num_groups());
    const double k = static_cast<double>(epoch / options_.step_size());
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i] = base_lrs_[i] * std::pow(options_.gamma(), k);
    }
  }

  void save_state(detail::StateWriter& state) const override {
    state.put_int("step_size", options_.step_size());
    state.put_doubles("gamma", {options_.gamma()});
    save_lrs(state);
  }

  void load_state(
      const detail::StateReader& state, int64_t last_epoch) override {
    check_same_int(state, "step_size", options_.step_size());
    check_same(state, "gamma", options_.gamma());
    restore_lrs(read_lrs(state), last_epoch);
  }

 private:
  static constexpr int64_t kVersion = 1;
  StepLROptions options_;
};

/// Options of `MultiStepLR`; as `torch.optim.lr_scheduler.MultiStepLR`
/// (PyTorch 1.13).
///
/// Example:
///   dlcore::MultiStepLROptions({30, 80}).gamma(0.1);
struct MultiStepLROptions {
  /* implicit */ MultiStepLROptions(std::vector<int64_t> milestones)
      : milestones_(std::move(milestones)) {}

  /// Epochs at which the LR decays, each >= 0, in any order; an epoch given
  /// k times decays by gamma^k there (Python's `Counter`).
  TORCH_ARG(std::vector<int64_t>, milestones);
  /// Factor of each decay, finite and > 0. Default: 0.1
  TORCH_ARG(double, gamma) = 0.1;

 public:
};

/// Multiplies every group's LR by gamma^c at each milestone, c the number of
/// times the epoch appears in milestones:
///   lr_g(e) = lr_g(e - 1) * gamma^count(e)   if e is a milestone
///           = lr_g(e - 1)                    otherwise
/// so, alone, lr_g(e) = base_lr_g * gamma^(milestones <= e). A milestone 0
/// decays at construction, as in PyTorch. Bit-for-bit the values of
/// `torch.optim.lr_scheduler.MultiStepLR` (PyTorch 1.13).
///
/// The optimizer must outlive the scheduler (it is held by reference).
///
/// Example:
///   dlcore::MultiStepLR sched(sgd, dlcore::MultiStepLROptions({30, 80}));
///
/// Differences from PyTorch (Python): milestones must be >= 0 (a negative
/// one is never reached) and gamma finite and > 0.
class MultiStepLR : public LRScheduler {
 public:
  MultiStepLR(torch::optim::Optimizer& optimizer, MultiStepLROptions options)
      : LRScheduler(optimizer, "MultiStepLR", kVersion),
        options_(std::move(options)),
        sorted_(options_.milestones()) {
    for (std::size_t i = 0; i < sorted_.size(); ++i) {
      TORCH_CHECK(
          sorted_[i] >= 0,
          "MultiStepLR: milestones[",
          i,
          "] must be >= 0, but got ",
          sorted_[i]);
    }
    detail::check_decay_gamma(options_.gamma(), "MultiStepLR");
    std::sort(sorted_.begin(), sorted_.end());
    last_epoch_ = -1;
    step();
  }

  /// The options as given.
  const MultiStepLROptions& options() const noexcept {
    return options_;
  }

 protected:
  void get_lr(int64_t epoch, std::vector<double>& out) const override {
    out.resize(num_groups());
    const auto range = std::equal_range(sorted_.begin(), sorted_.end(), epoch);
    const auto count = range.second - range.first;
    for (std::size_t i = 0; i < out.size(); ++i) {
      // gamma ** Counter[epoch]: Python's float ** int is pow().
      out[i] = count == 0
                   ? group_lr(i)
                   : group_lr(i) *
                         std::pow(options_.gamma(), static_cast<double>(count));
    }
  }

  void closed_form_lr(int64_t epoch, std::vector<double>& out) const override {
    out.resize(num_groups());
    // bisect_right(sorted milestones, epoch)
    const auto k = std::upper_bound(sorted_.begin(), sorted_.end(), epoch) -
                   sorted_.begin();
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i] =
          base_lrs_[i] * std::pow(options_.gamma(), static_cast<double>(k));
    }
  }

  void save_state(detail::StateWriter& state) const override {
    state.put_ints("milestones", sorted_);
    state.put_doubles("gamma", {options_.gamma()});
    save_lrs(state);
  }

  void load_state(
      const detail::StateReader& state, int64_t last_epoch) override {
    check_same_ints(state, "milestones", sorted_);
    check_same(state, "gamma", options_.gamma());
    restore_lrs(read_lrs(state), last_epoch);
  }

 private:
  static constexpr int64_t kVersion = 1;
  MultiStepLROptions options_;
  std::vector<int64_t> sorted_;
};

/// Options of `ExponentialLR`; as `torch.optim.lr_scheduler.ExponentialLR`
/// (PyTorch 1.13).
///
/// Example:
///   dlcore::ExponentialLROptions(/*gamma=*/0.95);
struct ExponentialLROptions {
  /* implicit */ ExponentialLROptions(double gamma) : gamma_(gamma) {}

  /// Factor per epoch, finite and > 0.
  TORCH_ARG(double, gamma);

 public:
};

/// Multiplies every group's LR by gamma every epoch:
///   lr_g(e) = lr_g(e - 1) * gamma   for e > 0
/// so, alone, lr_g(e) = base_lr_g * gamma^e (up to rounding: PyTorch
/// multiplies step by step, and so does this). Bit-for-bit the values of
/// `torch.optim.lr_scheduler.ExponentialLR` (PyTorch 1.13).
///
/// The optimizer must outlive the scheduler (it is held by reference).
///
/// Example:
///   dlcore::ExponentialLR sched(sgd, dlcore::ExponentialLROptions(0.95));
///
/// Differences from PyTorch (Python): gamma must be finite and > 0.
class ExponentialLR : public LRScheduler {
 public:
  ExponentialLR(
      torch::optim::Optimizer& optimizer, ExponentialLROptions options)
      : LRScheduler(optimizer, "ExponentialLR", kVersion),
        options_(std::move(options)) {
    detail::check_decay_gamma(options_.gamma(), "ExponentialLR");
    last_epoch_ = -1;
    step();
  }

  /// The options as given.
  const ExponentialLROptions& options() const noexcept {
    return options_;
  }

 protected:
  void get_lr(int64_t epoch, std::vector<double>& out) const override {
    out.resize(num_groups());
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i] = epoch == 0 ? group_lr(i) : group_lr(i) * options_.gamma();
    }
  }

  void closed_form_lr(int64_t epoch, std::vector<double>& out) const override {
    out.resize(num_groups());
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i] =
          base_lrs_[i] * std::pow(options_.gamma(), static_cast<double>(epoch));
    }
  }

  void save_state(detail::StateWriter& state) const override {
    state.put_doubles("gamma", {options_.gamma()});
    save_lrs(state);
  }

  void load_state(
      const detail::StateReader& state, int64_t last_epoch) override {
    check_same(state, "gamma", options_.gamma());
    restore_lrs(read_lrs(state), last_epoch);
  }

 private:
  static constexpr int64_t kVersion = 1;
  ExponentialLROptions options_;
};

} // namespace dlcore
