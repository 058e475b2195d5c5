#pragma once

#include <dlcore/optim/detail/scheduler_common.h>
#include <dlcore/optim/lr_scheduler.h>
#include <dlcore/optim/momentum.h>
#include <dlcore/per_group.h>

#include <ATen/core/ivalue.h>
#include <c10/util/Exception.h>
#include <torch/arg.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace dlcore {

/// The amplitude policy of `CyclicLR`, as Python's `mode` string.
enum class CyclicMode {
  /// Constant amplitude: scale 1 (Python `'triangular'`).
  kTriangular,
  /// Amplitude halved every cycle: scale 1 / 2^(cycle - 1)
  /// (Python `'triangular2'`).
  kTriangular2,
  /// Amplitude decayed per iteration: scale gamma^t, t the global batch index
  /// (Python `'exp_range'`).
  kExpRange,
};

/// What a custom `scale_fn` of `CyclicLR` receives, as Python's
/// `scale_mode` string.
enum class ScaleMode {
  /// The cycle number, 1 for the first cycle (Python `'cycle'`).
  kCycle,
  /// The global batch index t = last_epoch (Python `'iterations'`).
  kIterations,
};

/// Options of `CyclicLR`; names, defaults and meaning as in
/// `torch.optim.lr_scheduler.CyclicLR` of PyTorch 1.13.
///
/// Example:
///   auto opts = dlcore::CyclicLROptions(/*base_lr=*/1e-3, /*max_lr=*/0.1)
///                   .step_size_up(500)
///                   .mode(dlcore::CyclicMode::kExpRange)
///                   .gamma(0.9999);
struct CyclicLROptions {
  /// `base_lr` and `max_lr`: the lower and upper bound of the cycle, one value
  /// for every param group or one per group.
  CyclicLROptions(PerGroup<double> base_lr, PerGroup<double> max_lr)
      : base_lr_(std::move(base_lr)), max_lr_(std::move(max_lr)) {}

  /// Lower LR bound of the cycle, > 0, one value or one per group.
  TORCH_ARG(PerGroup<double>, base_lr);
  /// Upper LR bound of the cycle, >= base_lr, one value or one per group.
  TORCH_ARG(PerGroup<double>, max_lr);
  /// Batches in the increasing half of a cycle, >= 1. Default: 2000
  TORCH_ARG(int64_t, step_size_up) = 2000;
  /// Batches in the decreasing half of a cycle, >= 1; empty means
  /// step_size_up. Default: empty
  TORCH_ARG(std::optional<int64_t>, step_size_down) = std::nullopt;
  /// Amplitude policy; ignored when scale_fn is set.
  /// Default: CyclicMode::kTriangular
  TORCH_ARG(CyclicMode, mode) = CyclicMode::kTriangular;
  /// Per-iteration decay of kExpRange, > 0. Default: 1.0
  TORCH_ARG(double, gamma) = 1.0;
  /// Custom amplitude scale, called with the cycle number or the batch index
  /// (see scale_mode); overrides mode. Default: empty (use mode)
  TORCH_ARG(std::function<double(double)>, scale_fn);
  /// What scale_fn receives; only used with a custom scale_fn.
  /// Default: ScaleMode::kCycle
  TORCH_ARG(ScaleMode, scale_mode) = ScaleMode::kCycle;
  /// Cycle momentum (SGD, RMSprop) or beta1 (Adam, AdamW) inversely to the
  /// LR, between base_momentum and max_momentum. Default: true
  TORCH_ARG(bool, cycle_momentum) = true;
  /// Lower momentum bound, reached at max_lr; one value or one per group.
  /// Default: 0.8
  TORCH_ARG(PerGroup<double>, base_momentum) = 0.8;
  /// Upper momentum bound, reached at base_lr; one value or one per group.
  /// Default: 0.9
  TORCH_ARG(PerGroup<double>, max_momentum) = 0.9;
  /// Index of the last batch; -1 starts a new schedule. As in PyTorch, the
  /// constructor then takes one step, so last_epoch() is this + 1.
  /// Default: -1
  TORCH_ARG(int64_t, last_epoch) = -1;

 public:
};

/// Cyclical learning rate (Smith 2017), per batch, with inverse momentum
/// cycling: bit-for-bit the values of `torch.optim.lr_scheduler.CyclicLR`
/// (PyTorch 1.13), keeping its order of floating-point operations.
///
/// With t = last_epoch() (batches done), total = step_size_up + step_size_down
/// and ratio = step_size_up / total:
///   cycle = floor(1 + t / total)
///   x     = 1 + t / total - cycle
///   s     = x / ratio                 if x <= ratio (rising)
///         = (x - 1) / (ratio - 1)     otherwise     (falling)
///   lr    = base_lr + (max_lr - base_lr) * s * scale
///   m     = max_momentum - (max_momentum - base_momentum) * s * scale
/// with scale = 1 (kTriangular), 1 / 2^(cycle - 1) (kTriangular2),
/// gamma^t (kExpRange), or scale_fn(cycle or t) for a custom function.
///
/// Construction writes the values of step 0 (base_lr, max_momentum) into every
/// param group; after k calls of step() the optimizer holds PyTorch's values
/// for batch k. Call step() after each optimizer.step().
///
/// The optimizer must outlive the scheduler (it is held by reference).
///
/// Example:
///   torch::optim::SGD sgd(model->parameters(),
///                         torch::optim::SGDOptions(0.1).momentum(0.9));
///   dlcore::CyclicLR sched(sgd, dlcore::CyclicLROptions(1e-3, 0.1)
///                                   .step_size_up(500)
///                                   .mode(dlcore::CyclicMode::kTriangular2));
///   for (auto& batch : batches) {
///     ... loss.backward(); sgd.step(); sched.step();
///   }
///
/// Differences from PyTorch (Python):
/// - base_lr must be > 0, max_lr >= base_lr, step sizes >= 1, gamma > 0,
///   base_momentum <= max_momentum and every value finite; PyTorch accepts
///   any value.
/// - cycle_momentum with Adam/AdamW cycles beta1 (as PyTorch >= 2.0 does);
///   PyTorch 1.13 refuses optimizers without a `momentum` option.
/// - Restarting with last_epoch >= 0 uses base_momentum from the options;
///   PyTorch 1.13 reads it back from the groups' current momentum.
/// - A scale_fn returning a non-finite value is an error, and so is a step
///   whose LR or momentum would not be finite (kExpRange with gamma > 1
///   overflows after enough batches): the optimizer keeps its values.
/// - State is saved with save()/load() into torch::serialize archives;
///   load() also writes the restored step's LR and momentum into the optimizer.
/// - base_lrs() (PyTorch's `initial_lr`) is base_lr, which PyTorch writes
///   into the groups before it reads `initial_lr`. Built on an optimizer that
///   already has a scheduler, PyTorch 1.13 computes its construction step
///   from that scheduler's `initial_lr` instead of base_lr; dlcore always
///   starts at base_lr.
class CyclicLR : public LRScheduler {
 public:
  /// Validates the options against the optimizer's param groups, writes the
  /// values of batch last_epoch + 1 (0 for a new schedule) into every group.
  CyclicLR(torch::optim::Optimizer& optimizer, CyclicLROptions options)
      : LRScheduler(optimizer, "CyclicLR", kVersion),
        options_(std::move(options)) {
    const char* owner = "CyclicLR";
    const std::size_t n = num_groups();
    lower_lrs_ =
        detail::sched_expand_finite(options_.base_lr(), n, owner, "base_lr");
    max_lrs_ =
        detail::sched_expand_finite(options_.max_lr(), n, owner, "max_lr");
    for (std::size_t i = 0; i < n; ++i) {
      TORCH_CHECK(
          lower_lrs_[i] > 0,
          owner,
          ": ",
          detail::sched_option_name(
              "base_lr", i, options_.base_lr().is_broadcast()),
          " must be > 0, but got ",
          lower_lrs_[i]);
      TORCH_CHECK(
          max_lrs_[i] >= lower_lrs_[i],
          owner,
          ": ",
          detail::sched_option_name(
              "max_lr", i, options_.max_lr().is_broadcast()),
          " (",
          max_lrs_[i],
          ") must be >= base_lr (",
          lower_lrs_[i],
          ")");
    }
    TORCH_CHECK(
        options_.step_size_up() >= 1,
        owner,
        ": step_size_up must be >= 1, but got ",
        options_.step_size_up());
    TORCH_CHECK(
        !options_.step_size_down() || *options_.step_size_down() >= 1,
        owner,
        ": step_size_down must be >= 1, but got ",
        options_.step_size_down().value_or(0));
    TORCH_CHECK(
        std::isfinite(options_.gamma()) && options_.gamma() > 0,
        owner,
        ": gamma must be finite and > 0, but got ",
        options_.gamma());
    TORCH_CHECK(
        options_.last_epoch() >= -1,
        owner,
        ": last_epoch must be >= -1, but got ",
        options_.last_epoch());
    if (options_.cycle_momentum()) {
      detail::SchedMomenta m = detail::sched_momentum_bounds(
          optimizer,
          options_.base_momentum(),
          options_.max_momentum(),
          n,
          owner,
          /*max_first=*/false);
      base_momenta_ = std::move(m.base);
      max_momenta_ = std::move(m.max);
    }
    // float(step_size_up), float(step_size_down) as in PyTorch.
    const double up = static_cast<double>(options_.step_size_up());
    const double down = options_.step_size_down()
                            ? static_cast<double>(*options_.step_size_down())
                            : up;
    total_size_ = up + down;
    step_ratio_ = up / total_size_;

    base_lrs_ = lower_lrs_;
    last_epoch_ = options_.last_epoch();
    step();
  }

  /// Advances one batch and writes its LR (and momentum) into every group.
  void step() override {
    advance_to(next_epoch());
  }

  /// The momenta (or beta1) written by the last step, one per group; empty
  /// when cycle_momentum is false.
  const std::vector<double>& get_last_momentum() const {
    return last_momentum_;
  }

  /// The LRs of batch t (t >= 0), one per group; a pure query.
  std::vector<double> lr_at(int64_t t) const {
    TORCH_CHECK(t >= 0, "CyclicLR: lr_at expects t >= 0, but got ", t);
    std::vector<double> lrs;
    std::vector<double> momenta;
    compute(t, lrs, momenta);
    return lrs;
  }

  /// The momenta (or beta1) of batch t (t >= 0), one per group; a pure query.
  /// An error when cycle_momentum is false.
  std::vector<double> momentum_at(int64_t t) const {
    TORCH_CHECK(
        options_.cycle_momentum(),
        "CyclicLR: momentum_at needs cycle_momentum(true)");
    TORCH_CHECK(t >= 0, "CyclicLR: momentum_at expects t >= 0, but got ", t);
    std::vector<double> lrs;
    std::vector<double> momenta;
    compute(t, lrs, momenta);
    return momenta;
  }

  /// The options as given.
  const CyclicLROptions& options() const noexcept {
    return options_;
  }

  // save() writes type, version, last_epoch and the bounds it was built
  // with; load() checks them against this scheduler's and writes the
  // restored batch's LR and momentum into the optimizer, so the next step()
  // continues the saved run exactly.

 protected:
  void save_state(detail::StateWriter& state) const override {
    state.put_doubles("base_lr", lower_lrs_);
    state.put_doubles("max_lr", max_lrs_);
    state.put_doubles("total_size", {total_size_});
    state.put_doubles("step_ratio", {step_ratio_});
    state.put_int("mode", mode_code());
    state.put_doubles("gamma", {options_.gamma()});
    state.put_bool("cycle_momentum", options_.cycle_momentum());
    if (options_.cycle_momentum()) {
      state.put_doubles("base_momentum", base_momenta_);
      state.put_doubles("max_momentum", max_momenta_);
    }
  }

  void load_state(
      const detail::StateReader& state, int64_t last_epoch) override {
    const char* owner = "CyclicLR";
    check_same(state, "base_lr", lower_lrs_);
    check_same(state, "max_lr", max_lrs_);
    check_same(state, "total_size", total_size_);
    check_same(state, "step_ratio", step_ratio_);
    const int64_t mode = state.read_int("mode");
    TORCH_CHECK(
        mode == mode_code(),
        owner,
        ": the archive was saved with another mode or scale_fn (code ",
        mode,
        "), but this scheduler has code ",
        mode_code(),
        " (0 triangular, 1 triangular2, 2 exp_range, 3 custom scale_fn "
        "per cycle, 4 custom scale_fn per iteration)");
    check_same(state, "gamma", options_.gamma());
    check_same_bool(state, "cycle_momentum", options_.cycle_momentum());
    if (options_.cycle_momentum()) {
      check_same(state, "base_momentum", base_momenta_);
      check_same(state, "max_momentum", max_momenta_);
    }
    if (last_epoch < 0) {
      // A child of SequentialLR whose turn has not come: nothing to write.
      last_epoch_ = last_epoch;
      return;
    }
    advance_to(last_epoch);
  }

  void get_lr(int64_t epoch, std::vector<double>& out) const override {
    std::vector<double> momenta;
    compute(epoch, out, momenta);
  }

  // PyTorch's step(0) (SequentialLR at a milestone): batch 0 again.
  void restart() override {
    advance_to(0);
  }

 private:
  static constexpr int64_t kVersion = 1;

  // The amplitude policy as saved: 0..2 the modes, 3/4 a custom scale_fn per
  // cycle/iteration.
  int64_t mode_code() const {
    if (options_.scale_fn()) {
      return options_.scale_mode() == ScaleMode::kCycle ? 3 : 4;
    }
    return static_cast<int64_t>(options_.mode());
  }

  // PyTorch's get_lr() at last_epoch = t, operation for operation.
  void compute(
      int64_t t, std::vector<double>& lrs, std::vector<double>& momenta) const {
    const double td = static_cast<double>(t);
    const double cycle = std::floor(1.0 + td / total_size_);
    const double x = 1.0 + td / total_size_ - cycle;
    double scale_factor;
    if (x <= step_ratio_) {
      scale_factor = x / step_ratio_;
    } else {
      scale_factor = (x - 1.0) / (step_ratio_ - 1.0);
    }
    const double scale = scale_at(cycle, td);
    const std::size_t n = lower_lrs_.size();
    lrs.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      const double base_height = (max_lrs_[i] - lower_lrs_[i]) * scale_factor;
      lrs[i] = lower_lrs_[i] + base_height * scale;
    }
    if (options_.cycle_momentum()) {
      momenta.resize(n);
      for (std::size_t i = 0; i < n; ++i) {
        const double base_height =
            (max_momenta_[i] - base_momenta_[i]) * scale_factor;
        momenta[i] = max_momenta_[i] - base_height * scale;
      }
    } else {
      momenta.clear();
    }
  }

  double scale_at(double cycle, double t) const {
    if (options_.scale_fn()) {
      const double arg = options_.scale_mode() == ScaleMode::kCycle ? cycle : t;
      const double s = options_.scale_fn()(arg);
      TORCH_CHECK(
          std::isfinite(s),
          "CyclicLR: scale_fn(",
          arg,
          ") returned ",
          s,
          "; it must return a finite value");
      return s;
    }
    switch (options_.mode()) {
      case CyclicMode::kTriangular:
        return 1.0;
      case CyclicMode::kTriangular2:
        return 1.0 / std::pow(2.0, cycle - 1.0);
      case CyclicMode::kExpRange:
        return std::pow(options_.gamma(), t);
    }
    TORCH_INTERNAL_ASSERT(false, "unknown CyclicMode");
    return 1.0;
  }

  // Computes batch t, checks that it is finite and writes it into the
  // groups; changes nothing when a check fails.
  void advance_to(int64_t t) {
    check_groups();
    compute(t, scratch_, next_momentum_);
    if (options_.cycle_momentum()) {
      commit(scratch_, next_momentum_, last_momentum_, momentum_writer_, t);
    } else {
      commit(scratch_, t);
    }
  }

  CyclicLROptions options_;
  std::vector<double> lower_lrs_; // base_lr per group
  std::vector<double> max_lrs_;
  std::vector<double> base_momenta_;
  std::vector<double> max_momenta_;
  double total_size_ = 0;
  double step_ratio_ = 0;
  std::vector<double> last_momentum_;
  std::vector<double> next_momentum_;
  detail::SchedMomentumWriter momentum_writer_;
};

} // namespace dlcore
