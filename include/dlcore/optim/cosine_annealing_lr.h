#pragma once

// CosineAnnealingLR (PyTorch's recursive form) and CosineAnnealingWarmRestarts
// (SGDR, with fractional epochs).

#include <dlcore/optim/lr_scheduler.h>

#include <c10/util/Exception.h>
#include <torch/arg.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace dlcore {

namespace detail {

// Python's math.pi.
inline constexpr double kCosinePi = 3.141592653589793;

inline void check_eta_min(double eta_min, const char* owner) {
  TORCH_CHECK(
      std::isfinite(eta_min) && eta_min >= 0,
      owner,
      ": eta_min must be finite and >= 0, but got ",
      eta_min);
}

} // namespace detail

/// Options of `CosineAnnealingLR`; as
/// `torch.optim.lr_scheduler.CosineAnnealingLR` (PyTorch 1.13).
///
/// Example:
///   dlcore::CosineAnnealingLROptions(/*t_max=*/100).eta_min(1e-5);
struct CosineAnnealingLROptions {
  /* implicit */ CosineAnnealingLROptions(int64_t t_max) : t_max_(t_max) {}

  /// Epochs of a half cosine period (Python `T_max`), in [1, 2^62].
  TORCH_ARG(int64_t, t_max);
  /// The lowest LR, reached at t_max; finite and >= 0. Default: 0.0
  TORCH_ARG(double, eta_min) = 0.0;

 public:
};

/// Cosine annealing (Loshchilov & Hutter, SGDR), computed as PyTorch 1.13
/// computes it: recursively from the group's current LR, not with the closed
/// form of its documentation. With T = t_max, eta = eta_min and base_lr the
/// group's LR when the scheduler is built:
///   e = 0:                      lr unchanged
///   (e - 1 - T) % (2T) == 0:    lr + (base_lr - eta) * (1 - cos(pi / T)) / 2
///   otherwise:                  (1 + cos(pi e / T)) / (1 + cos(pi (e - 1) /
///   T))
///                               * (lr - eta) + eta
/// Alone, this follows eta + (base_lr - eta) * (1 + cos(pi e / T)) / 2 up to
/// rounding (past T it rises again, as PyTorch's does); the recursion's
/// rounding differs from the closed form's in the last bits, which is why
/// hand ports differ from PyTorch. Bit-for-bit the values of
/// `torch.optim.lr_scheduler.CosineAnnealingLR`.
///
/// The optimizer must outlive the scheduler (it is held by reference).
///
/// Example:
///   dlcore::CosineAnnealingLR sched(
///       sgd, dlcore::CosineAnnealingLROptions(epochs).eta_min(1e-5));
///
/// Differences from PyTorch (Python):
/// - t_max must be in [1, 2^62] and eta_min finite and >= 0.
/// - There is no last_epoch argument (resume with save/load), so PyTorch's
///   branch for a scheduler built with last_epoch > 0 (the closed form at its
///   first step) does not exist here.
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(
      torch::optim::Optimizer& optimizer, CosineAnnealingLROptions options)
      : LRScheduler(optimizer, "CosineAnnealingLR", kVersion),
        options_(std::move(options)) {
    TORCH_CHECK(
        options_.t_max() >= 1 && options_.t_max() <= (int64_t{1} << 62),
        "CosineAnnealingLR: t_max must be in [1, 2^62], but got ",
        options_.t_max());
    detail::check_eta_min(options_.eta_min(), "CosineAnnealingLR");
    last_epoch_ = -1;
    step();
  }

  /// The options as given.
  const CosineAnnealingLROptions& options() const noexcept {
    return options_;
  }

 protected:
  void get_lr(int64_t epoch, std::vector<double>& out) const override {
    out.resize(num_groups());
    const double pi = detail::kCosinePi;
    const int64_t t_max = options_.t_max();
    const double t = static_cast<double>(t_max);
    const double eta = options_.eta_min();
    if (epoch == 0) {
      for (std::size_t i = 0; i < out.size(); ++i) {
        out[i] = group_lr(i);
      }
    } else if ((epoch - 1 - t_max) % (2 * t_max) == 0) {
      const double rise = 1.0 - std::cos(pi / t);
      for (std::size_t i = 0; i < out.size(); ++i) {
        out[i] = group_lr(i) + (base_lrs_[i] - eta) * rise / 2.0;
      }
    } else {
      const double num = 1.0 + std::cos(pi * static_cast<double>(epoch) / t);
      const double den =
          1.0 + std::cos(pi * static_cast<double>(epoch - 1) / t);
      for (std::size_t i = 0; i < out.size(); ++i) {
        out[i] = num / den * (group_lr(i) - eta) + eta;
      }
    }
  }

  void closed_form_lr(int64_t epoch, std::vector<double>& out) const override {
    out.resize(num_groups());
    const double eta = options_.eta_min();
    const double c = 1.0 + std::cos(
                               detail::kCosinePi * static_cast<double>(epoch) /
                               static_cast<double>(options_.t_max()));
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i] = eta + (base_lrs_[i] - eta) * c / 2.0;
    }
  }

  void save_state(detail::StateWriter& state) const override {
    state.put_int("t_max", options_.t_max());
    state.put_doubles("eta_min", {options_.eta_min()});
    save_lrs(state);
  }

  void load_state(
      const detail::StateReader& state, int64_t last_epoch) override {
    check_same_int(state, "t_max", options_.t_max());
    check_same(state, "eta_min", options_.eta_min());
    restore_lrs(read_lrs(state), last_epoch);
  }

 private:
  static constexpr int64_t kVersion = 1;
  CosineAnnealingLROptions options_;
};

/// Options of `CosineAnnealingWarmRestarts`; as
/// `torch.optim.lr_scheduler.CosineAnnealingWarmRestarts` (PyTorch 1.13).
///
/// Example:
///   dlcore::CosineAnnealingWarmRestartsOptions(/*t_0=*/10).t_mult(2);
struct CosineAnnealingWarmRestartsOptions {
  /* implicit */ CosineAnnealingWarmRestartsOptions(int64_t t_0) : t_0_(t_0) {}

  /// Epochs until the first restart (Python `T_0`), >= 1.
  TORCH_ARG(int64_t, t_0);
  /// Growth of the period after each restart (Python `T_mult`), >= 1.
  /// Default: 1
  TORCH_ARG(int64_t, t_mult) = 1;
  /// The lowest LR; finite and >= 0. Default: 0.0
  TORCH_ARG(double, eta_min) = 0.0;

 public:
};

/// SGDR (Loshchilov & Hutter 2017): cosine annealing from base_lr to
/// eta_min over T_i epochs, then a restart at base_lr with
/// T_{i+1} = T_i * t_mult (T_0 = t_0):
///   lr_g = eta_min + (base_lr_g - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2
/// T_cur counts epochs since the last restart and may be fractional:
/// step(epoch) takes a real epoch (epoch + i / batches_per_epoch per batch),
/// and step() adds 1 to T_cur. Bit-for-bit the values of
/// `torch.optim.lr_scheduler.CosineAnnealingWarmRestarts` (PyTorch 1.13),
/// including its restart arithmetic for step(epoch) (T_cur = epoch % t_0
/// when t_mult is 1; otherwise n = int(log(epoch / t_0 * (t_mult - 1) + 1,
/// t_mult)), T_cur = epoch - t_0 * (t_mult^n - 1) / (t_mult - 1),
/// T_i = t_0 * t_mult^n).
///
/// The optimizer must outlive the scheduler (it is held by reference).
///
/// Example:
///   dlcore::CosineAnnealingWarmRestarts sched(
///       sgd, dlcore::CosineAnnealingWarmRestartsOptions(10).t_mult(2));
///   for (int epoch = 0; epoch < epochs; ++epoch) {
///     for (int64_t i = 0; i < batches; ++i) {
///       ... sgd.step();
///       sched.step(epoch + static_cast<double>(i) / batches);
///     }
///   }
///
/// Differences from PyTorch (Python): t_0 >= 1, t_mult >= 1 (as PyTorch)
/// and eta_min finite and >= 0; step(epoch) needs a finite epoch in
/// [0, 2^63); a period T_i beyond int64 is an error.
class CosineAnnealingWarmRestarts : public LRScheduler {
 public:
  CosineAnnealingWarmRestarts(
      torch::optim::Optimizer& optimizer,
      CosineAnnealingWarmRestartsOptions options)
      : LRScheduler(optimizer, "CosineAnnealingWarmRestarts", kVersion),
        options_(std::move(options)) {
    TORCH_CHECK(
        options_.t_0() >= 1,
        "CosineAnnealingWarmRestarts: t_0 must be >= 1, but got ",
        options_.t_0());
    TORCH_CHECK(
        options_.t_mult() >= 1,
        "CosineAnnealingWarmRestarts: t_mult must be >= 1, but got ",
        options_.t_mult());
    detail::check_eta_min(options_.eta_min(), "CosineAnnealingWarmRestarts");
    t_i_ = options_.t_0();
    t_cur_ = -1;
    last_epoch_ = -1;
    step();
  }

  /// Advances T_cur by one epoch (restarting when it reaches T_i) and writes
  /// the LRs into every group.
  void step() override {
    if (last_epoch_ < 0) {
      step(0.0);
      return;
    }
    const int64_t epoch = next_epoch();
    double t_cur = t_cur_ + 1;
    int64_t t_i = t_i_;
    if (t_cur >= static_cast<double>(t_i)) {
      t_cur = t_cur - static_cast<double>(t_i);
      t_i = checked_mul(t_i, options_.t_mult());
    }
    apply(t_cur, t_i, epoch);
  }

  /// Sets the (possibly fractional) epoch, finite and in [0, 2^63), and
  /// writes its LRs; last_epoch() becomes floor(epoch).
  void step(double epoch) {
    TORCH_CHECK(
        std::isfinite(epoch) && epoch >= 0 && epoch < 9223372036854775808.0,
        "CosineAnnealingWarmRestarts: step(epoch) expects a finite epoch in "
        "[0, 2^63), but got ",
        epoch);
    const int64_t t_0 = options_.t_0();
    const int64_t t_mult = options_.t_mult();
    double t_cur = 0;
    int64_t t_i = t_0;
    if (epoch >= static_cast<double>(t_0)) {
      if (t_mult == 1) {
        t_cur = std::fmod(epoch, static_cast<double>(t_0));
      } else {
        // n = int(math.log(epoch / T_0 * (T_mult - 1) + 1, T_mult)); CPython
        // computes log(x) / log(base).
        const double x =
            epoch / static_cast<double>(t_0) * static_cast<double>(t_mult - 1) +
            1;
        const double n =
            std::trunc(std::log(x) / std::log(static_cast<double>(t_mult)));
        const int64_t power = checked_pow(t_mult, static_cast<int64_t>(n));
        // T_0 * (T_mult ** n - 1) / (T_mult - 1): exact integers, then one
        // rounded division.
        const int64_t done = checked_mul(t_0, power - 1);
        t_cur =
            epoch - static_cast<double>(done) / static_cast<double>(t_mult - 1);
        t_i = checked_mul(t_0, power);
      }
    } else {
      t_cur = epoch;
    }
    apply(t_cur, t_i, static_cast<int64_t>(std::floor(epoch)));
  }

  /// The options as given.
  const CosineAnnealingWarmRestartsOptions& options() const noexcept {
    return options_;
  }

  /// Epochs since the last restart (Python `T_cur`).
  double t_cur() const noexcept {
    return t_cur_;
  }

  /// The current period (Python `T_i`).
  int64_t t_i() const noexcept {
    return t_i_;
  }

 protected:
  void get_lr(int64_t /*epoch*/, std::vector<double>& out) const override {
    lrs_at(t_cur_, t_i_, out);
  }

  // PyTorch's step(0).
  void restart() override {
    step(0.0);
  }

  void save_state(detail::StateWriter& state) const override {
    state.put_int("t_0", options_.t_0());
    state.put_int("t_mult", options_.t_mult());
    state.put_doubles("eta_min", {options_.eta_min()});
    state.put_int("t_i", t_i_);
    state.put_doubles("t_cur", {t_cur_});
    save_lrs(state);
  }

  void load_state(
      const detail::StateReader& state, int64_t last_epoch) override {
    check_same_int(state, "t_0", options_.t_0());
    check_same_int(state, "t_mult", options_.t_mult());
    check_same(state, "eta_min", options_.eta_min());
    const int64_t t_i = state.read_int("t_i");
    state.expect(
        t_i >= options_.t_0(),
        "t_i",
        "an integer >= t_0 (" + std::to_string(options_.t_0()) + ")",
        t_i);
    const std::vector<double> t_cur = state.read_doubles("t_cur");
    state.expect(
        t_cur.size() == 1 && std::isfinite(t_cur[0]) && t_cur[0] >= 0,
        "t_cur",
        "a list of one finite float >= 0",
        state.read("t_cur"));
    SavedLRs lrs = read_lrs(state);
    restore_lrs(std::move(lrs), last_epoch);
    t_i_ = t_i;
    t_cur_ = t_cur[0];
  }

 private:
  static constexpr int64_t kVersion = 1;

  int64_t checked_mul(int64_t a, int64_t b) const {
    TORCH_CHECK(
        b == 0 || a <= std::numeric_limits<int64_t>::max() / b,
        "CosineAnnealingWarmRestarts: the period T_i = ",
        a,
        " * ",
        b,
        " does not fit in int64");
    return a * b;
  }

  int64_t checked_pow(int64_t base, int64_t exponent) const {
    int64_t out = 1;
    for (int64_t k = 0; k < exponent; ++k) {
      out = checked_mul(out, base);
    }
    return out;
  }

  void lrs_at(double t_cur, int64_t t_i, std::vector<double>& out) const {
    out.resize(num_groups());
    const double eta = options_.eta_min();
    const double c =
        1.0 + std::cos(detail::kCosinePi * t_cur / static_cast<double>(t_i));
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i] = eta + (base_lrs_[i] - eta) * c / 2.0;
    }
  }

  // Computes the LRs at (t_cur, t_i), checks and writes them, then commits
  // the new state; nothing changes on error.
  void apply(double t_cur, int64_t t_i, int64_t epoch) {
    check_groups();
    lrs_at(t_cur, t_i, scratch_);
    commit(scratch_, epoch);
    t_cur_ = t_cur;
    t_i_ = t_i;
  }

  CosineAnnealingWarmRestartsOptions options_;
  double t_cur_ = -1;
  int64_t t_i_ = 1;
};

} // namespace dlcore
