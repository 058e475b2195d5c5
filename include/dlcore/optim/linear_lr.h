#pragma once

// ConstantLR, LinearLR and PolynomialLR: a factor that changes over the first
// total_iters epochs (warm-up or decay), then stays.

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

inline void check_total_iters(int64_t total_iters, const char* owner) {
  TORCH_CHECK(
      total_iters >= 1,
      owner,
      ": total_iters must be >= 1, but got ",
      total_iters);
}

} // namespace detail

/// Options of `ConstantLR`; as `torch.optim.lr_scheduler.ConstantLR`
/// (PyTorch 1.13).
///
/// Example:
///   dlcore::ConstantLROptions().factor(0.5).total_iters(4);
struct ConstantLROptions {
  /// The LR factor until total_iters, in (0, 1]. Default: 1/3
  TORCH_ARG(double, factor) = 1.0 / 3;
  /// Epochs run at factor * LR, >= 1. Default: 5
  TORCH_ARG(int64_t, total_iters) = 5;

 public:
};

/// Runs the first total_iters epochs at factor times the LR, then restores
/// it:
///   e = 0:            lr_g = lr_g * factor          (at construction)
///   e = total_iters:  lr_g = lr_g * (1 / factor)
///   otherwise:        lr_g unchanged
/// Bit-for-bit the values of `torch.optim.lr_scheduler.ConstantLR`
/// (PyTorch 1.13); construction changes the groups' LRs, as in PyTorch.
///
/// The optimizer must outlive the scheduler (it is held by reference).
///
/// Example:
///   dlcore::ConstantLR sched(sgd, dlcore::ConstantLROptions().factor(0.1));
///
/// Differences from PyTorch (Python): factor must be in (0, 1] (PyTorch
/// also accepts 0 and then divides by zero at total_iters) and total_iters
/// >= 1.
class ConstantLR : public LRScheduler {
 public:
  explicit ConstantLR(
      torch::optim::Optimizer& optimizer,
      ConstantLROptions options = ConstantLROptions())
      : LRScheduler(optimizer, "ConstantLR", kVersion),
        options_(std::move(options)) {
    TORCH_CHECK(
        options_.factor() > 0 && options_.factor() <= 1,
        "ConstantLR: factor must be in (0, 1], but got ",
        options_.factor());
    detail::check_total_iters(options_.total_iters(), "ConstantLR");
    last_epoch_ = -1;
    step();
  }

  /// The options as given.
  const ConstantLROptions& options() const noexcept {
    return options_;
  }

 protected:
  void get_lr(int64_t epoch, std::vector<double>& out) const override {
    out.resize(num_groups());
    const double factor = options_.factor();
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (epoch == 0) {
        out[i] = group_lr(i) * factor;
      } else if (epoch != options_.total_iters()) {
        out[i] = group_lr(i);
      } else {
        out[i] = group_lr(i) * (1.0 / factor);
      }
    }
  }

  void closed_form_lr(int64_t epoch, std::vector<double>& out) const override {
    out.resize(num_groups());
    const double factor = options_.factor();
    // factor + (epoch >= total_iters) * (1 - factor), a bool times a float.
    const double rest = epoch >= options_.total_iters() ? 1.0 - factor : 0.0;
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i] = base_lrs_[i] * (factor + rest);
    }
  }

  void save_state(detail::StateWriter& state) const override {
    state.put_doubles("factor", {options_.factor()});
    state.put_int("total_iters", options_.total_iters());
    save_lrs(state);
  }

  void load_state(
      const detail::StateReader& state, int64_t last_epoch) override {
    check_same(state, "factor", options_.factor());
    check_same_int(state, "total_iters", options_.total_iters());
    restore_lrs(read_lrs(state), last_epoch);
  }

 private:
  static constexpr int64_t kVersion = 1;
  ConstantLROptions options_;
};

/// Options of `LinearLR`; as `torch.optim.lr_scheduler.LinearLR`
/// (PyTorch 1.13).
///
/// Example:
///   dlcore::LinearLROptions().start_factor(0.1).total_iters(5); // warm-up
struct LinearLROptions {
  /// The LR factor at epoch 0, in (0, 1]. Default: 1/3
  TORCH_ARG(double, start_factor) = 1.0 / 3;
  /// The LR factor from total_iters on, in [0, 1]. Default: 1.0
  TORCH_ARG(double, end_factor) = 1.0;
  /// Epochs over which the factor moves linearly, >= 1. Default: 5
  TORCH_ARG(int64_t, total_iters) = 5;

 public:
};

/// Moves the LR factor linearly from start_factor to end_factor over
/// total_iters epochs (a warm-up when start < end, a decay otherwise):
///   e = 0:                 lr_g = lr_g * start_factor   (at construction)
///   0 < e <= total_iters:  lr_g = lr_g * (1 + (end - start) /
///                                 (total_iters * start + (e - 1) * (end -
///                                 start)))
///   e > total_iters:       lr_g unchanged
/// so, alone, lr_g(e) = base_lr_g * (start + (end - start) *
/// min(e, total_iters) / total_iters) up to rounding. Bit-for-bit the values
/// of `torch.optim.lr_scheduler.LinearLR` (PyTorch 1.13), which computes the
/// recursive form above.
///
/// The optimizer must outlive the scheduler (it is held by reference).
///
/// Example:
///   dlcore::LinearLR warmup(
///       sgd, dlcore::LinearLROptions().start_factor(0.1).total_iters(5));
///
/// Differences from PyTorch (Python): start_factor must be > 0 (PyTorch
/// 1.13 accepts 0 and then divides by zero at epoch 1; PyTorch 2.x refuses
/// it too) and total_iters >= 1.
class LinearLR : public LRScheduler {
 public:
  explicit LinearLR(
      torch::optim::Optimizer& optimizer,
      LinearLROptions options = LinearLROptions())
      : LRScheduler(optimizer, "LinearLR", kVersion),
        options_(std::move(options)) {
    TORCH_CHECK(
        options_.start_factor() > 0 && options_.start_factor() <= 1,
        "LinearLR: start_factor must be in (0, 1], but got ",
        options_.start_factor());
    TORCH_CHECK(
        options_.end_factor() >= 0 && options_.end_factor() <= 1,
        "LinearLR: end_factor must be in [0, 1], but got ",
        options_.end_factor());
    detail::check_total_iters(options_.total_iters(), "LinearLR");
    last_epoch_ = -1;
    step();
  }

  /// The options as given.
  const LinearLROptions& options() const noexcept {
    return options_;
  }

 protected:
  void get_lr(int64_t epoch, std::vector<double>& out) const override {
    out.resize(num_groups());
    const double start = options_.start_factor();
    const double end = options_.end_factor();
    const int64_t total = options_.total_iters();
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (epoch == 0) {
        out[i] = group_lr(i) * start;
      } else if (epoch > total) {
        out[i] = group_lr(i);
      } else {
        out[i] = group_lr(i) *
                 (1.0 + (end - start) /
                            (static_cast<double>(total) * start +
                             static_cast<double>(epoch - 1) * (end - start)));
      }
    }
  }

  void closed_form_lr(int64_t epoch, std::vector<double>& out) const override {
    out.resize(num_groups());
    const double start = options_.start_factor();
    const double end = options_.end_factor();
    const int64_t total = options_.total_iters();
    const double reached = static_cast<double>(std::min(total, epoch));
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i] = base_lrs_[i] *
               (start + (end - start) * reached / static_cast<double>(total));
    }
  }

  void save_state(detail::StateWriter& state) const override {
    state.put_doubles("start_factor", {options_.start_factor()});
    state.put_doubles("end_factor", {options_.end_factor()});
    state.put_int("total_iters", options_.total_iters());
    save_lrs(state);
  }

  void load_state(
      const detail::StateReader& state, int64_t last_epoch) override {
    check_same(state, "start_factor", options_.start_factor());
    check_same(state, "end_factor", options_.end_factor());
    check_same_int(state, "total_iters", options_.total_iters());
    restore_lrs(read_lrs(state), last_epoch);
  }

 private:
  static constexpr int64_t kVersion = 1;
  LinearLROptions options_;
};

/// Options of `PolynomialLR`; as `torch.optim.lr_scheduler.PolynomialLR`
/// (PyTorch 1.13).
///
/// Example:
///   dlcore::PolynomialLROptions().total_iters(100).power(2.0);
struct PolynomialLROptions {
  /// Epochs over which the LR decays to 0, >= 1. Default: 5
  TORCH_ARG(int64_t, total_iters) = 5;
  /// The polynomial's power, finite and >= 0. Default: 1.0
  TORCH_ARG(double, power) = 1.0;

 public:
};

/// Decays the LR polynomially to 0 over total_iters epochs:
///   0 < e <= total_iters:  lr_g = lr_g * ((1 - e / total_iters) /
///                                 (1 - (e - 1) / total_iters))^power
///   otherwise:             lr_g unchanged
/// so, alone, lr_g(e) = base_lr_g * (1 - min(e, total_iters) /
/// total_iters)^power up to rounding. Bit-for-bit the values of
/// `torch.optim.lr_scheduler.PolynomialLR` (PyTorch 1.13).
///
/// The optimizer must outlive the scheduler (it is held by reference).
///
/// Example:
///   dlcore::PolynomialLR sched(
///       sgd, dlcore::PolynomialLROptions().total_iters(90).power(0.9));
///
/// Differences from PyTorch (Python): total_iters >= 1 and power finite and
/// >= 0 are required.
class PolynomialLR : public LRScheduler {
 public:
  explicit PolynomialLR(
      torch::optim::Optimizer& optimizer,
      PolynomialLROptions options = PolynomialLROptions())
      : LRScheduler(optimizer, "PolynomialLR", kVersion),
        options_(std::move(options)) {
    detail::check_total_iters(options_.total_iters(), "PolynomialLR");
    TORCH_CHECK(
        std::isfinite(options_.power()) && options_.power() >= 0,
        "PolynomialLR: power must be finite and >= 0, but got ",
        options_.power());
    last_epoch_ = -1;
    step();
  }

  /// The options as given.
  const PolynomialLROptions& options() const noexcept {
    return options_;
  }

 protected:
  void get_lr(int64_t epoch, std::vector<double>& out) const override {
    out.resize(num_groups());
    const int64_t total = options_.total_iters();
    if (epoch == 0 || epoch > total) {
      for (std::size_t i = 0; i < out.size(); ++i) {
        out[i] = group_lr(i);
      }
      return;
    }
    const double t = static_cast<double>(total);
    const double decay = std::pow(
        (1.0 - static_cast<double>(epoch) / t) /
            (1.0 - static_cast<double>(epoch - 1) / t),
        options_.power());
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i] = group_lr(i) * decay;
    }
  }

  void closed_form_lr(int64_t epoch, std::vector<double>& out) const override {
    out.resize(num_groups());
    const int64_t total = options_.total_iters();
    const double factor = std::pow(
        1.0 - static_cast<double>(std::min(total, epoch)) /
                  static_cast<double>(total),
        options_.power());
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i] = base_lrs_[i] * factor;
    }
  }

  void save_state(detail::StateWriter& state) const override {
    state.put_int("total_iters", options_.total_iters());
    state.put_doubles("power", {options_.power()});
    save_lrs(state);
  }

  void load_state(
      const detail::StateReader& state, int64_t last_epoch) override {
    check_same_int(state, "total_iters", options_.total_iters());
    check_same(state, "power", options_.power());
    restore_lrs(read_lrs(state), last_epoch);
  }

 private:
  static constexpr int64_t kVersion = 1;
  PolynomialLROptions options_;
};

} // namespace dlcore
