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

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace dlcore {

/// How `OneCycleLR` anneals between two values, as Python's
/// `anneal_strategy` string.
enum class AnnealStrategy {
  /// end + (start - end) / 2 * (cos(pi * pct) + 1)  (Python `'cos'`).
  kCos,
  /// (end - start) * pct + start  (Python `'linear'`).
  kLinear,
};

/// Options of `OneCycleLR`; names, defaults and meaning as in
/// `torch.optim.lr_scheduler.OneCycleLR` of PyTorch 1.13.
///
/// Example:
///   auto opts = dlcore::OneCycleLROptions(/*max_lr=*/0.1)
///                   .epochs(10)
///                   .steps_per_epoch(469)
///                   .anneal_strategy(dlcore::AnnealStrategy::kLinear);
struct OneCycleLROptions {
  /// `max_lr`: the peak LR, one value for every param group or one per group.
  /* implicit */ OneCycleLROptions(PerGroup<double> max_lr)
      : max_lr_(std::move(max_lr)) {}

  /// Peak LR, > 0, one value or one per group.
  TORCH_ARG(PerGroup<double>, max_lr);
  /// Length of the schedule in batches, >= 1; when empty, epochs *
  /// steps_per_epoch. Default: empty
  TORCH_ARG(std::optional<int64_t>, total_steps) = std::nullopt;
  /// Epochs, >= 1; used with steps_per_epoch when total_steps is empty.
  /// Default: empty
  TORCH_ARG(std::optional<int64_t>, epochs) = std::nullopt;
  /// Batches per epoch, >= 1; used with epochs when total_steps is empty.
  /// Default: empty
  TORCH_ARG(std::optional<int64_t>, steps_per_epoch) = std::nullopt;
  /// Fraction of the schedule spent increasing the LR, in [0, 1].
  /// Default: 0.3
  TORCH_ARG(double, pct_start) = 0.3;
  /// Annealing shape. Default: AnnealStrategy::kCos
  TORCH_ARG(AnnealStrategy, anneal_strategy) = AnnealStrategy::kCos;
  /// Cycle momentum (SGD, RMSprop) or beta1 (Adam, AdamW) inversely to the
  /// LR, between base_momentum and max_momentum. Default: true
  TORCH_ARG(bool, cycle_momentum) = true;
  /// Lower momentum bound, reached at max_lr; one value or one per group.
  /// Default: 0.85
  TORCH_ARG(PerGroup<double>, base_momentum) = 0.85;
  /// Upper momentum bound, at the start and end; one value or one per group.
  /// Default: 0.95
  TORCH_ARG(PerGroup<double>, max_momentum) = 0.95;
  /// initial_lr = max_lr / div_factor, > 0. Default: 25
  TORCH_ARG(double, div_factor) = 25.0;
  /// min_lr = initial_lr / final_div_factor, > 0. Default: 1e4
  TORCH_ARG(double, final_div_factor) = 1e4;
  /// Three phases (up, back down to initial_lr, annihilate to min_lr)
  /// instead of two (up, anneal to min_lr). Default: false
  TORCH_ARG(bool, three_phase) = false;
  /// Index of the last batch; -1 starts a new schedule. As in PyTorch, the
  /// constructor then takes one step, so last_epoch() is this + 1.
  /// Default: -1
  TORCH_ARG(int64_t, last_epoch) = -1;

 public:
};

/// The 1cycle policy (Smith & Topin 2017), per batch: bit-for-bit the values
/// of `torch.optim.lr_scheduler.OneCycleLR` (PyTorch 1.13), keeping its order
/// of floating-point operations.
///
/// With T = total_steps, initial_lr = max_lr / div_factor and
/// min_lr = initial_lr / final_div_factor, the phases end at batch
///   two phases:   pct_start*T - 1 (initial_lr -> max_lr, momentum max -> base)
///                 T - 1           (max_lr -> min_lr,     momentum base -> max)
///   three phases: pct_start*T - 1   (initial_lr -> max_lr, max -> base)
///                 2*pct_start*T - 2 (max_lr -> initial_lr, base -> max)
///                 T - 1             (initial_lr -> min_lr, max -> max)
/// and batch t of the phase [start, end] has pct = (t - start) / (end - start)
/// and value anneal(start_value, end_value, pct).
///
/// Construction writes the values of batch 0 into every param group; after k
/// calls of step() the optimizer holds PyTorch's values for batch k. As in
/// PyTorch, batch T is still allowed (pct past 1); stepping further is an
/// error "Tried to step T + 2 times".
///
/// The optimizer must outlive the scheduler (it is held by reference).
///
/// Example:
///   torch::optim::AdamW adamw(model->parameters(),
///                             torch::optim::AdamWOptions(1e-3));
///   dlcore::OneCycleLR sched(
///       adamw, dlcore::OneCycleLROptions(0.01).epochs(10).steps_per_epoch(
///                  static_cast<int64_t>(batches.size())));
///   ... after each adamw.step(): sched.step();
///
/// Differences from PyTorch (Python):
/// - max_lr must be > 0, div_factor and final_div_factor > 0,
///   0 <= base_momentum <= max_momentum and every value finite; PyTorch
///   accepts any value.
/// - A step past the end throws without advancing last_epoch (PyTorch has
///   already incremented it when it raises); a phase of zero length
///   (pct_start * total_steps == 1, or pct_start == 1 at batch T) is a
///   c10::Error where PyTorch raises ZeroDivisionError.
/// - Restarting with last_epoch >= 0 needs no `initial_lr`/`max_lr` entries in
///   the groups (PyTorch raises KeyError without them); the options are used.
/// - initial_lr and min_lr must be finite (max_lr 1e300 with div_factor
///   1e-300 is an error, not an infinite LR), and so must every step's LR and
///   momentum: a step that would write a non-finite value is an error.
/// - State is saved with save()/load() into torch::serialize archives;
///   load() also writes the restored step's LR and momentum into the optimizer.
class OneCycleLR : public LRScheduler {
 public:
  /// Validates the options against the optimizer's param groups, writes the
  /// values of batch last_epoch + 1 (0 for a new schedule) into every group.
  OneCycleLR(torch::optim::Optimizer& optimizer, OneCycleLROptions options)
      : LRScheduler(optimizer, "OneCycleLR", kVersion),
        options_(std::move(options)) {
    // PyTorch's step total_steps extrapolates the last phase: below 0 with
    // the linear anneal. Every other value is checked as in any scheduler.
    allow_negative_lr_ = true;
    const char* owner = "OneCycleLR";
    const std::size_t n = num_groups();

    if (options_.total_steps()) {
      TORCH_CHECK(
          *options_.total_steps() > 0,
          owner,
          ": total_steps must be >= 1, but got ",
          *options_.total_steps());
      total_steps_ = *options_.total_steps();
    } else {
      TORCH_CHECK(
          options_.epochs() && options_.steps_per_epoch(),
          owner,
          ": you must define either total_steps or (epochs and "
          "steps_per_epoch); got epochs = ",
          options_.epochs() ? std::to_string(*options_.epochs()) : "none",
          ", steps_per_epoch = ",
          options_.steps_per_epoch()
              ? std::to_string(*options_.steps_per_epoch())
              : "none");
      TORCH_CHECK(
          *options_.epochs() > 0,
          owner,
          ": epochs must be >= 1, but got ",
          *options_.epochs());
      TORCH_CHECK(
          *options_.steps_per_epoch() > 0,
          owner,
          ": steps_per_epoch must be >= 1, but got ",
          *options_.steps_per_epoch());
      TORCH_CHECK(
          *options_.epochs() <=
              std::numeric_limits<int64_t>::max() / *options_.steps_per_epoch(),
          owner,
          ": epochs * steps_per_epoch overflows (",
          *options_.epochs(),
          " * ",
          *options_.steps_per_epoch(),
          ")");
      total_steps_ = *options_.epochs() * *options_.steps_per_epoch();
    }
    const double pct = options_.pct_start();
    TORCH_CHECK(
        pct >= 0 && pct <= 1,
        owner,
        ": pct_start must be in [0, 1], but got ",
        pct);
    TORCH_CHECK(
        std::isfinite(options_.div_factor()) && options_.div_factor() > 0,
        owner,
        ": div_factor must be finite and > 0, but got ",
        options_.div_factor());
    TORCH_CHECK(
        std::isfinite(options_.final_div_factor()) &&
            options_.final_div_factor() > 0,
        owner,
        ": final_div_factor must be finite and > 0, but got ",
        options_.final_div_factor());
    TORCH_CHECK(
        options_.last_epoch() >= -1,
        owner,
        ": last_epoch must be >= -1, but got ",
        options_.last_epoch());

    const double total = static_cast<double>(total_steps_);
    if (options_.three_phase()) {
      phases_ = {
          {pct * total - 1.0, kInitial, kMax, kMaxM, kBaseM},
          // Python: float(2 * pct_start * total_steps) - 2, left to right.
          {2.0 * pct * total - 2.0, kMax, kInitial, kBaseM, kMaxM},
          {total - 1.0, kInitial, kMin, kMaxM, kMaxM},
      };
    } else {
      phases_ = {
          {pct * total - 1.0, kInitial, kMax, kMaxM, kBaseM},
          {total - 1.0, kMax, kMin, kBaseM, kMaxM},
      };
    }

    const std::vector<double> max_lrs =
        detail::sched_expand_finite(options_.max_lr(), n, owner, "max_lr");
    values_.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      TORCH_CHECK(
          max_lrs[i] > 0,
          owner,
          ": ",
          detail::sched_option_name(
              "max_lr", i, options_.max_lr().is_broadcast()),
          " must be > 0, but got ",
          max_lrs[i]);
      auto& v = values_[i];
      v[kMax] = max_lrs[i];
      v[kInitial] = max_lrs[i] / options_.div_factor();
      v[kMin] = v[kInitial] / options_.final_div_factor();
      TORCH_CHECK(
          std::isfinite(v[kInitial]),
          owner,
          ": initial_lr of param group ",
          i,
          " = max_lr / div_factor = ",
          v[kMax],
          " / ",
          options_.div_factor(),
          " is not finite (the learning rate of step 0); choose a larger "
          "div_factor");
      TORCH_CHECK(
          std::isfinite(v[kMin]),
          owner,
          ": min_lr of param group ",
          i,
          " = initial_lr / final_div_factor = ",
          v[kInitial],
          " / ",
          options_.final_div_factor(),
          " is not finite; choose a larger final_div_factor");
      base_lrs_[i] = v[kInitial]; // PyTorch's group['initial_lr']
    }
    if (options_.cycle_momentum()) {
      const detail::SchedMomenta m = detail::sched_momentum_bounds(
          optimizer,
          options_.base_momentum(),
          options_.max_momentum(),
          n,
          owner,
          /*max_first=*/true);
      for (std::size_t i = 0; i < n; ++i) {
        values_[i][kMaxM] = m.max[i];
        values_[i][kBaseM] = m.base[i];
      }
    }

    last_epoch_ = options_.last_epoch();
    step();
  }

  /// Advances one batch and writes its LR (and momentum) into every group.
  /// Stepping past batch total_steps is an error that changes nothing.
  void step() override {
    const int64_t t = next_epoch();
    TORCH_CHECK(
        t <= total_steps_,
        "OneCycleLR: Tried to step ",
        t + 1,
        " times. The specified number of total steps is ",
        total_steps_,
        " (as in PyTorch, the count includes the constructor's initial step: "
        "batches run from 0 to ",
        total_steps_,
        ", and this step would reach batch ",
        t,
        ")");
    advance_to(t);
  }

  /// The momenta (or beta1) written by the last step, one per group; empty
  /// when cycle_momentum is false.
  const std::vector<double>& get_last_momentum() const {
    return last_momentum_;
  }

  /// The schedule's length in batches (total_steps or epochs *
  /// steps_per_epoch).
  int64_t total_steps() const {
    return total_steps_;
  }

  /// The LRs of batch t, 0 <= t <= total_steps, one per group; a pure query.
  std::vector<double> lr_at(int64_t t) const {
    std::vector<double> lrs;
    std::vector<double> momenta;
    compute(t, lrs, momenta);
    return lrs;
  }

  /// The momenta (or beta1) of batch t, 0 <= t <= total_steps, one per group;
  /// a pure query. An error when cycle_momentum is false.
  std::vector<double> momentum_at(int64_t t) const {
    TORCH_CHECK(
        options_.cycle_momentum(),
        "OneCycleLR: momentum_at needs cycle_momentum(true)");
    std::vector<double> lrs;
    std::vector<double> momenta;
    compute(t, lrs, momenta);
    return momenta;
  }

  /// The options as given.
  const OneCycleLROptions& options() const noexcept {
    return options_;
  }

  // save() writes type, version, last_epoch and the schedule it was built
  // with; load() checks them against this scheduler's and writes the
  // restored batch's LR and momentum into the optimizer, so the next step()
  // continues the saved run exactly.

 protected:
  void save_state(detail::StateWriter& state) const override {
    state.put_int("total_steps", total_steps_);
    state.put_doubles("phase_ends", phase_ends());
    state.put_int(
        "anneal_strategy", static_cast<int64_t>(options_.anneal_strategy()));
    for (int k = 0; k < kNumValues; ++k) {
      state.put_doubles(kValueNames[k], column(k));
    }
    state.put_bool("cycle_momentum", options_.cycle_momentum());
  }

  void load_state(
      const detail::StateReader& state, int64_t last_epoch) override {
    check_same_int(state, "total_steps", total_steps_);
    check_same(state, "phase_ends", phase_ends());
    const int64_t strategy = state.read_int("anneal_strategy");
    TORCH_CHECK(
        strategy == static_cast<int64_t>(options_.anneal_strategy()),
        "OneCycleLR: the archive was saved with another anneal_strategy");
    for (int k = 0; k < kNumValues; ++k) {
      check_same(state, kValueNames[k], column(k));
    }
    check_same_bool(state, "cycle_momentum", options_.cycle_momentum());
    state.expect(
        last_epoch <= total_steps_,
        "last_epoch",
        "an integer in [-1, total_steps = " + std::to_string(total_steps_) +
            "]",
        last_epoch);
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

  // Indices of a group's named values, as PyTorch's group keys.
  enum Value : int {
    kInitial = 0,
    kMax = 1,
    kMin = 2,
    kMaxM = 3,
    kBaseM = 4,
  };
  static constexpr int kNumValues = 5;
  static constexpr const char* kValueNames[kNumValues] = {
      "initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum"};

  struct Phase {
    double end_step;
    Value start_lr;
    Value end_lr;
    Value start_momentum;
    Value end_momentum;
  };

  std::vector<double> phase_ends() const {
    std::vector<double> ends;
    for (const auto& p : phases_) {
      ends.push_back(p.end_step);
    }
    return ends;
  }

  std::vector<double> column(int k) const {
    std::vector<double> out;
    for (const auto& v : values_) {
      out.push_back(v[k]);
    }
    return out;
  }

  double anneal(double start, double end, double pct) const {
    if (options_.anneal_strategy() == AnnealStrategy::kCos) {
      // math.pi is this double.
      const double cos_out = std::cos(3.141592653589793 * pct) + 1.0;
      return end + (start - end) / 2.0 * cos_out;
    }
    return (end - start) * pct + start;
  }

  // PyTorch's get_lr() at last_epoch = t, operation for operation.
  void compute(
      int64_t t, std::vector<double>& lrs, std::vector<double>& momenta) const {
    TORCH_CHECK(
        t >= 0 && t <= total_steps_,
        "OneCycleLR: batch index ",
        t,
        " is outside the schedule [0, ",
        total_steps_,
        "]");
    const double step_num = static_cast<double>(t);
    double start_step = 0;
    const Phase* phase = nullptr;
    for (std::size_t i = 0; i < phases_.size(); ++i) {
      if (step_num <= phases_[i].end_step || i + 1 == phases_.size()) {
        phase = &phases_[i];
        break;
      }
      start_step = phases_[i].end_step;
    }
    TORCH_INTERNAL_ASSERT(phase != nullptr);
    const double length = phase->end_step - start_step;
    TORCH_CHECK(
        length != 0,
        "OneCycleLR: batch ",
        t,
        " falls in a phase of zero length (it ends at batch ",
        phase->end_step,
        "); choose pct_start and total_steps so that pct_start * total_steps "
        "!= 1 and pct_start < 1 (PyTorch raises ZeroDivisionError here)");
    const double pct = (step_num - start_step) / length;
    const std::size_t n = values_.size();
    lrs.resize(n);
    if (options_.cycle_momentum()) {
      momenta.resize(n);
    } else {
      momenta.clear();
    }
    for (std::size_t i = 0; i < n; ++i) {
      const auto& v = values_[i];
      lrs[i] = anneal(v[phase->start_lr], v[phase->end_lr], pct);
      if (options_.cycle_momentum()) {
        momenta[i] =
            anneal(v[phase->start_momentum], v[phase->end_momentum], pct);
      }
    }
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

  OneCycleLROptions options_;
  int64_t total_steps_ = 0;
  std::vector<Phase> phases_;
  std::vector<std::array<double, kNumValues>> values_;
  std::vector<double> last_momentum_;
  std::vector<double> next_momentum_;
  detail::SchedMomentumWriter momentum_writer_;
};

} // namespace dlcore
