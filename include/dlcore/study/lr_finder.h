#pragma once

/// \file
/// Smith's learning-rate range test (`LRFinder`), the homework's LR grid
/// (`lr_grid_search`) and the suggestions read off them. Both train through
/// `train_epoch` (train/train_loop.h). Moved here from optim/lr_finder.h,
/// which still forwards to this header.

#include <dlcore/detail/atomic_file.h>
#include <dlcore/io/csv.h>
#include <dlcore/study/detail/cycled_range.h>
#include <dlcore/study/detail/state_snapshot.h>
#include <dlcore/study/detail/study_epoch.h>
#include <dlcore/train/losses.h>
#include <dlcore/train/plot.h>
#include <dlcore/train/train_loop.h>

#include <c10/util/Exception.h>
#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iterator>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace dlcore {

/// How the learning rate grows from `start_lr` to `end_lr` in a range test.
enum class LRStepMode {
  /// Geometric: lr_i = start_lr * (end_lr / start_lr)^(i / (num_iter - 1)).
  kExp,
  /// Arithmetic: lr_i = start_lr + (end_lr - start_lr) * i / (num_iter - 1).
  kLinear,
};

/// How the range test smooths the per-batch loss.
enum class LRSmoothing {
  /// fastai's: exponential moving average with bias correction,
  /// avg_i = beta * avg_{i-1} + (1 - beta) * loss_i (avg_{-1} = 0),
  /// smoothed_i = avg_i / (1 - beta^(i+1)).
  kEma,
  /// pytorch-lr-finder's `smooth_f`: smoothed_0 = loss_0,
  /// smoothed_i = smooth_f * loss_i + (1 - smooth_f) * smoothed_{i-1},
  /// no bias correction.
  kSmoothF,
  /// No smoothing: smoothed_i = loss_i.
  kNone,
};

/// How the swept learning rate is written into several param groups.
enum class LRGroupScaling {
  /// Every group gets the swept value (pytorch-lr-finder with `start_lr`
  /// given; fastai with a single `start_lr`).
  kSame,
  /// Group g gets lr_i * (lr_g / lr_0), its learning rate before the test
  /// relative to group 0's, so discriminative learning rates keep their
  /// ratios (fastai with one `start_lr`/`end_lr` per group); group 0 sweeps
  /// exactly from `start_lr` to `end_lr`.
  kProportional,
};

/// Why a range test ended.
enum class LRFinderStopReason {
  /// All `num_iter` iterations ran.
  kCompleted,
  /// The smoothed loss exceeded `diverge_th` times the best smoothed loss.
  kDiverged,
  /// The loss (raw or smoothed) was NaN or infinite.
  kNonFinite,
};

/// "completed", "diverged" or "non-finite".
inline const char* to_string(LRFinderStopReason reason) {
  switch (reason) {
    case LRFinderStopReason::kCompleted:
      return "completed";
    case LRFinderStopReason::kDiverged:
      return "diverged";
    case LRFinderStopReason::kNonFinite:
      return "non-finite";
  }
  return "unknown";
}

/// Options of `LRFinder`, Smith's learning-rate range test.
///
/// The defaults are fastai's sweep (1e-7 to 10 in 100 exponential steps)
/// with pytorch-lr-finder's schedule endpoints (the last iteration uses
/// exactly `end_lr`) and divergence threshold (5), and fastai's smoothing
/// (bias-corrected EMA, beta 0.98), which does not let the first, noisiest
/// batch dominate the early curve.
///
/// Example:
///   auto opts = dlcore::LRFinderOptions().start_lr(1e-6).end_lr(1.0)
///                   .num_iter(200).smoothing(dlcore::LRSmoothing::kSmoothF);
struct LRFinderOptions {
  /// First learning rate of the sweep (> 0). Default: 1e-7
  TORCH_ARG(double, start_lr) = 1e-7;
  /// Last learning rate of the sweep (> start_lr). Default: 10
  TORCH_ARG(double, end_lr) = 10.0;
  /// Number of iterations (optimizer steps) of the sweep (>= 2). Default: 100
  TORCH_ARG(int64_t, num_iter) = 100;
  /// Exponential or linear sweep. Default: LRStepMode::kExp
  TORCH_ARG(LRStepMode, step_mode) = LRStepMode::kExp;
  /// Loss smoothing. Default: LRSmoothing::kEma
  TORCH_ARG(LRSmoothing, smoothing) = LRSmoothing::kEma;
  /// EMA factor of `kEma`, in [0, 1). Default: 0.98
  TORCH_ARG(double, beta) = 0.98;
  /// Weight of the new loss in `kSmoothF`, in (0, 1]. Default: 0.05
  TORCH_ARG(double, smooth_f) = 0.05;
  /// Stop when smoothed loss > diverge_th * best smoothed loss (> 1).
  /// Default: 5
  TORCH_ARG(double, diverge_th) = 5.0;
  /// Whether to stop on divergence (non-finite losses always stop the
  /// test). Default: true
  TORCH_ARG(bool, stop_on_divergence) = true;
  /// Batches whose gradients are accumulated per optimizer step (>= 1); the
  /// recorded loss is their mean. Default: 1
  TORCH_ARG(int64_t, accumulation_steps) = 1;
  /// How several param groups are swept. Default: LRGroupScaling::kSame
  TORCH_ARG(LRGroupScaling, group_scaling) = LRGroupScaling::kSame;

 public:
  /// Checks every option; `owner` names the caller in the error.
  void validate(const std::string& owner = "LRFinder") const {
    TORCH_CHECK(
        num_iter_ >= 2, owner, ": num_iter must be >= 2, but got ", num_iter_);
    TORCH_CHECK(
        std::isfinite(start_lr_) && start_lr_ > 0.0,
        owner,
        ": start_lr must be finite and > 0, but got ",
        start_lr_);
    TORCH_CHECK(
        std::isfinite(end_lr_),
        owner,
        ": end_lr must be finite, but got ",
        end_lr_);
    TORCH_CHECK(
        end_lr_ > start_lr_,
        owner,
        ": end_lr (",
        end_lr_,
        ") must be > start_lr (",
        start_lr_,
        ")");
    TORCH_CHECK(
        beta_ >= 0.0 && beta_ < 1.0,
        owner,
        ": beta must be in [0, 1), but got ",
        beta_);
    TORCH_CHECK(
        smooth_f_ > 0.0 && smooth_f_ <= 1.0,
        owner,
        ": smooth_f must be in (0, 1], but got ",
        smooth_f_);
    TORCH_CHECK(
        std::isfinite(diverge_th_) && diverge_th_ > 1.0,
        owner,
        ": diverge_th must be finite and > 1, but got ",
        diverge_th_);
    TORCH_CHECK(
        accumulation_steps_ >= 1,
        owner,
        ": accumulation_steps must be >= 1, but got ",
        accumulation_steps_);
    // start_lr * (end_lr / start_lr)^r: a ratio that overflows would make
    // every learning rate after the first inf.
    TORCH_CHECK(
        step_mode_ != LRStepMode::kExp || std::isfinite(end_lr_ / start_lr_),
        owner,
        ": end_lr / start_lr = ",
        end_lr_,
        " / ",
        start_lr_,
        " is not finite, so the exponential sweep's learning rates would not "
        "be; narrow the range");
  }

  /// The learning rate of iteration `i` (0-based) of the sweep.
  double lr_at(int64_t i) const {
    const double r =
        static_cast<double>(i) / static_cast<double>(num_iter_ - 1);
    if (step_mode_ == LRStepMode::kExp) {
      return start_lr_ * std::pow(end_lr_ / start_lr_, r);
    }
    return start_lr_ + r * (end_lr_ - start_lr_);
  }
};

namespace detail {

/// The range test's schedule as a per-step scheduler of `train_epoch`:
/// writes iteration i's learning rate (group g: lr_i * ratios[g]) into the
/// param groups; `step()` moves to the next iteration.
struct LRSweep {
  torch::optim::Optimizer& optimizer;
  const LRFinderOptions& options;
  const std::vector<double>& ratios;
  int64_t iteration = 0;

  /// Writes iteration `iteration`'s learning rates, or stops with an error
  /// naming the iteration when one is not finite (checked for every group
  /// before any is written).
  void apply() {
    const double lr = options.lr_at(iteration);
    auto& groups = optimizer.param_groups();
    for (std::size_t g = 0; g < groups.size(); ++g) {
      TORCH_CHECK(
          std::isfinite(lr * ratios[g]),
          "LRFinder: the learning rate of param group ",
          g,
          " at iteration ",
          iteration,
          " would be ",
          lr * ratios[g],
          ", which is not finite; the test stopped there and the model and "
          "optimizer were restored (check start_lr, end_lr and the groups' "
          "learning rates)");
    }
    for (std::size_t g = 0; g < groups.size(); ++g) {
      groups[g].options().set_lr(lr * ratios[g]);
    }
  }
  void step() {
    iteration += 1;
    if (iteration < options.num_iter()) {
      apply();
    }
  }
};

} // namespace detail

/// Options of `LRFinderResult::plot`.
///
/// Example:
///   result.plot("results/lr_finder.png",
///               dlcore::LRFinderPlotOptions().skip_start(5).markers(
///                   {{bounds.max_lr, "max_lr"}}));
struct LRFinderPlotOptions {
  /// Panel title. Default: "LR range test"
  TORCH_ARG(std::string, title) = "LR range test";
  /// Mark `suggest_steepest`, `suggest_min_div10` and `suggest_valley` (each
  /// labelled with its learning rate) when the curve has enough points for
  /// them. Default: true
  TORCH_ARG(bool, suggestions) = true;
  /// Points the suggestions skip at the start of the curve (as in
  /// `suggest_steepest`). Default: 10
  TORCH_ARG(int64_t, skip_start) = 10;
  /// Points the suggestions skip at the end of the curve. Default: 5
  TORCH_ARG(int64_t, skip_end) = 5;
  /// Further vertical markers at learning rates (the `CyclicLR` bounds
  /// chosen, say). Default: none
  TORCH_ARG(std::vector<PlotMarker>, markers) = {};
  /// Logarithmic learning-rate axis, ticks as "1e-05". Default: true
  TORCH_ARG(bool, log_x) = true;
  /// gnuplot, size and figure title. Default: 900 x 550 pixels
  TORCH_ARG(PlotOptions, plot_options) = PlotOptions().width(900).height(550);

 public:
};

/// What a range test recorded, one entry per iteration.
struct LRFinderResult {
  /// Group 0's learning rate used for each iteration's step.
  std::vector<double> lrs;
  /// Every group's learning rate per iteration: group_lrs[i][g].
  std::vector<std::vector<double>> group_lrs;
  /// Raw loss of each iteration (mean over accumulated batches).
  std::vector<double> losses;
  /// Smoothed loss of each iteration (see `LRSmoothing`).
  std::vector<double> smoothed_losses;
  /// Lowest smoothed loss seen, its iteration and group 0's LR there.
  double best_loss = std::numeric_limits<double>::quiet_NaN();
  int64_t best_iteration = -1;
  double best_lr = std::numeric_limits<double>::quiet_NaN();
  /// Why the test ended.
  LRFinderStopReason stop_reason = LRFinderStopReason::kCompleted;
  /// Wall-clock seconds of the test (restoring state included).
  double seconds = 0.0;

  /// Number of iterations recorded.
  int64_t iterations() const {
    return static_cast<int64_t>(lrs.size());
  }

  /// The curve as a table, one row per iteration: `iteration`, `lr` (group
  /// 0's), `loss` (raw), `smoothed_loss`, and with several param groups
  /// `lr_1`, `lr_2`, ... (group g's learning rate). Non-finite losses are
  /// written "nan", "inf" or "-inf".
  CsvTable to_csv() const;

  /// Writes `to_csv()` to `path` atomically (see `write_file_atomic`).
  ///
  /// Example:
  ///   finder.range_test(batches).write_csv("results/lr_finder.csv");
  void write_csv(const std::string& path) const;

  /// Renders the curve into the PNG `png_path` with `plot_png`: the raw
  /// loss (thin) and the smoothed loss (thick) against the learning rate
  /// on a log axis with ticks as "1e-05", the suggestions and `markers` as
  /// labelled vertical lines. The y axis ends 10% of the losses' span above
  /// the highest smoothed loss before the smoothed minimum, so the rise to
  /// divergence does not flatten the descent. The data goes through a temporary
  /// CSV next to the PNG, removed afterwards (`write_csv` keeps it). As
  /// `plot_png`, a missing or failing gnuplot is reported in the result, not
  /// thrown.
  ///
  /// Example:
  ///   dlcore::PlotResult p = result.plot("results/lr_finder.png");
  ///   if (!p) std::cerr << "no plot: " << p.message << "\n";
  PlotResult plot(
      const std::string& png_path,
      const LRFinderPlotOptions& options = LRFinderPlotOptions()) const;

  /// The panel `plot` draws, reading the curve from `csv` (a file that
  /// `write_csv` wrote): to combine it with other panels in one figure.
  PlotPanel plot_panel(
      const std::string& csv,
      const LRFinderPlotOptions& options = LRFinderPlotOptions()) const;
};

/// Smith's learning-rate range test ("Cyclical Learning Rates for Training
/// Neural Networks", 2017, section 3.3): train for `num_iter` mini-batches
/// while the learning rate grows from `start_lr` to `end_lr`, record the
/// loss, and read good learning rates off the curve (`suggest_*`).
///
/// Per iteration i: write lr_i into the param groups, zero the gradients,
/// run `accumulation_steps` batches (forward, loss / accumulation_steps,
/// backward), take one optimizer step, record lr_i (the LR that step used),
/// the raw and smoothed loss; stop when the loss is not finite or the
/// smoothed loss exceeds `diverge_th` times the best smoothed loss so far
/// (the first iteration defines the best, so it never stops the test).
/// Batches are cycled when there are fewer than needed.
///
/// The iterations are one `train_epoch` (train/train_loop.h) over the
/// cycled batches, with `accumulation_steps`, a per-step scheduler that
/// writes lr_{i+1} after step i, and a step callback that records
/// `StepInfo::lrs` and `StepInfo::loss` and sets `StepInfo::stop`. So the
/// raw loss of iteration i is the `StepInfo::loss` `train_epoch` reports for
/// that step on the same batches and seed. The step of the stopping
/// iteration is taken (its update is undone by the restore).
///
/// The model's parameters (values and gradients), buffers and training
/// flags, and the optimizer's options (lr, momentum, ...) and state
/// (momentum buffers, Adam moments and steps) are restored exactly
/// afterwards, also when the test throws (the state of LibTorch's SGD, Adam,
/// AdamW, RMSprop and Adagrad is cloned directly; any other optimizer must
/// implement `save`/`load`, through which its state is copied). `model` (a
/// module holder such as `LeNet5`, or a `std::shared_ptr` to a module with
/// `forward(Tensor)`) is held by handle; a module itself (`*net`) is held by
/// reference. The module and `optimizer` must outlive the finder.
///
/// Example:
///   dlcore::LeNet5 model;
///   torch::optim::SGD sgd(model->parameters(),
///                         torch::optim::SGDOptions(1e-3).momentum(0.9));
///   dlcore::LRFinder finder(model, sgd, dlcore::LRFinderOptions());
///   dlcore::LRFinderResult r = finder.range_test(train_batches);
///   dlcore::CyclicBounds b = dlcore::suggest_cyclic_bounds(r);
///
/// Differences from PyTorch (Python): there is no LR finder in PyTorch; this
/// follows pytorch-lr-finder (`torch_lr_finder.LRFinder.range_test`) for the
/// schedule (the last iteration is exactly `end_lr`, fastai's stops one step
/// short), the recorded LR, `smooth_f` and `diverge_th` (fastai uses 4), and
/// fastai (`Learner.lr_find`) for the default smoothing. pytorch-lr-finder
/// keeps only the smoothed losses; this keeps raw and smoothed. Its
/// `val_loader` mode (the loss on a validation set per iteration) is not
/// offered. State is restored in place (no file is written).
template <typename Model>
class LRFinder {
 public:
  LRFinder(
      Model model,
      torch::optim::Optimizer& optimizer,
      LRFinderOptions options = {})
      : model_(std::forward<Model>(model)),
        optimizer_(optimizer),
        options_(std::move(options)) {
    options_.validate("LRFinder");
    (void)detail::module_of(model_, "LRFinder"); // a null model fails here
    TORCH_CHECK(
        !optimizer_.param_groups().empty(),
        "LRFinder: expected an optimizer with at least one param group, but "
        "got none");
  }

  const LRFinderOptions& options() const {
    return options_;
  }

  /// Runs the test over `batches` (any range of batches with `.data` and
  /// `.targets`, or `.data` and `.target`), cycling it if it holds fewer than
  /// `num_iter * accumulation_steps` batches, with `loss_fn(output, target)`
  /// (empty: `default_loss`, mean cross-entropy). The model and optimizer are
  /// restored before it returns.
  ///
  /// A `Batches` (const or not) is only read: the test visits its passes
  /// over epochs `epoch()`, `epoch() + 1`, ... (the next one each time it
  /// cycles), the batches a training loop would see from there, and
  /// `epoch()` is unchanged afterwards. Another range (a LibTorch
  /// DataLoader) is iterated as it is, `begin()` again each time it cycles.
  template <typename Batches, typename LossFn = LossFunction>
  LRFinderResult range_test(Batches&& batches, LossFn loss_fn = LossFn()) {
    const auto start_time = std::chrono::steady_clock::now();
    auto& groups = optimizer_.param_groups();
    const std::size_t num_groups = groups.size();
    std::vector<double> ratios(num_groups, 1.0);
    if (options_.group_scaling() == LRGroupScaling::kProportional) {
      const double lr0 = groups[0].options().get_lr();
      TORCH_CHECK(
          std::isfinite(lr0) && lr0 > 0.0,
          "LRFinder: group_scaling kProportional needs group 0's learning "
          "rate finite and > 0, but got ",
          lr0);
      for (std::size_t g = 0; g < num_groups; ++g) {
        ratios[g] = groups[g].options().get_lr() / lr0;
      }
    }

    // A Batches is read through its passes, leaving its epoch counter as it
    // is; any other range is iterated as it is.
    auto&& source = detail::passes_of(batches);
    using Source = std::remove_reference_t<decltype(source)>;
    using std::begin;
    using std::end;
    auto it = begin(source);
    TORCH_CHECK(
        it != end(source),
        "LRFinder: range_test expected at least one batch, but got none");

    torch::nn::Module& module = detail::module_of(model_, "LRFinder");
    // Restores model and optimizer on every exit: explicitly on success (so
    // a failure to restore is reported), from the destructor when the test
    // throws.
    struct Restorer {
      torch::nn::Module& module;
      torch::optim::Optimizer& optimizer;
      detail::ModuleSnapshot module_snapshot;
      detail::OptimizerSnapshot optimizer_snapshot;
      bool done = false;
      void restore() {
        done = true;
        optimizer_snapshot.restore(optimizer);
        module_snapshot.restore(module);
      }
      ~Restorer() {
        if (!done) {
          try {
            restore();
          } catch (...) { // NOLINT(bugprone-empty-catch): already unwinding
          }
        }
      }
    } restorer{
        module,
        optimizer_,
        detail::ModuleSnapshot(module),
        detail::OptimizerSnapshot(optimizer_)};

    LRFinderResult result;
    const int64_t n = options_.num_iter();
    result.lrs.reserve(static_cast<std::size_t>(n));
    result.losses.reserve(static_cast<std::size_t>(n));
    result.smoothed_losses.reserve(static_cast<std::size_t>(n));
    result.group_lrs.reserve(static_cast<std::size_t>(n));

    double avg = 0.0;
    auto record = [&](StepInfo& step) {
      const int64_t i = step.step;
      const double raw = step.loss;
      double smoothed = raw;
      switch (options_.smoothing()) {
        case LRSmoothing::kEma: {
          const double beta = options_.beta();
          avg = beta * avg + (1.0 - beta) * raw;
          smoothed = avg / (1.0 - std::pow(beta, static_cast<double>(i + 1)));
          break;
        }
        case LRSmoothing::kSmoothF:
          if (i > 0) {
            const double f = options_.smooth_f();
            smoothed = f * raw + (1.0 - f) * result.smoothed_losses.back();
          }
          break;
        case LRSmoothing::kNone:
          break;
      }

      result.lrs.push_back(step.lrs[0]);
      result.group_lrs.push_back(step.lrs);
      result.losses.push_back(raw);
      result.smoothed_losses.push_back(smoothed);

      if (!std::isfinite(raw) || !std::isfinite(smoothed)) {
        result.stop_reason = LRFinderStopReason::kNonFinite;
        step.stop = true;
        return;
      }
      if (i == 0 || smoothed < result.best_loss) {
        result.best_loss = smoothed;
        result.best_iteration = i;
        result.best_lr = result.lrs.back();
      }
      if (options_.stop_on_divergence() &&
          smoothed > options_.diverge_th() * result.best_loss) {
        result.stop_reason = LRFinderStopReason::kDiverged;
        step.stop = true;
      }
    };

    detail::LRSweep sweep{optimizer_, options_, ratios};
    sweep.apply();
    detail::CycledRange<Source, decltype(it)> cycled(
        source, std::move(it), n * options_.accumulation_steps(), "LRFinder");
    train_epoch(
        model_,
        cycled,
        optimizer_,
        sweep,
        TrainOptions()
            .loss_fn(LossFunction(std::move(loss_fn)))
            .accumulation_steps(options_.accumulation_steps())
            .accuracy(false)
            // optimizer.zero_grad(), as the plain loop calls it: on LibTorch
            // 1.13 it zeroes the gradients in place, so the test allocates
            // no new gradient buffers per step.
            .set_to_none(false)
            .on_step(record));
    restorer.restore();
    result.seconds = detail::seconds_since(start_time);
    return result;
  }

 private:
  Model model_;
  torch::optim::Optimizer& optimizer_;
  LRFinderOptions options_;
};

/// A module given as itself (`dlcore::LRFinder finder(*net, sgd)`) is held
/// by reference, never copied, and must outlive the finder; a holder or a
/// `std::shared_ptr` is held by handle.
template <
    typename M,
    typename = std::enable_if_t<std::is_base_of_v<torch::nn::Module, M>>>
LRFinder(M&, torch::optim::Optimizer&, LRFinderOptions = {}) -> LRFinder<M&>;

/// A suggested learning rate: the value, and the iteration (or grid index)
/// and smoothed loss of the point it was read from.
struct LRSuggestion {
  double lr = std::numeric_limits<double>::quiet_NaN();
  int64_t index = -1;
  double loss = std::numeric_limits<double>::quiet_NaN();
};

namespace detail {

/// How many points from the start of the curve have a finite smoothed loss
/// and a finite learning rate > 0.
inline int64_t finite_prefix(const LRFinderResult& r) {
  const int64_t n =
      static_cast<int64_t>(std::min(r.lrs.size(), r.smoothed_losses.size()));
  int64_t finite = 0;
  while (finite < n &&
         std::isfinite(r.smoothed_losses[static_cast<std::size_t>(finite)]) &&
         std::isfinite(r.lrs[static_cast<std::size_t>(finite)]) &&
         r.lrs[static_cast<std::size_t>(finite)] > 0.0) {
    ++finite;
  }
  return finite;
}

/// [first, last) of the points a suggestion looks at: the finite prefix of
/// the smoothed curve, less `skip_start` points at the start and `skip_end`
/// at the end. Needs at least `min_points`.
inline std::pair<int64_t, int64_t> suggestion_window(
    const LRFinderResult& r,
    int64_t skip_start,
    int64_t skip_end,
    int64_t min_points,
    const char* owner) {
  TORCH_CHECK(
      skip_start >= 0 && skip_end >= 0,
      owner,
      ": skip_start and skip_end must be >= 0, but got ",
      skip_start,
      " and ",
      skip_end);
  TORCH_CHECK(
      r.lrs.size() == r.smoothed_losses.size(),
      owner,
      ": expected as many learning rates as losses, but got ",
      r.lrs.size(),
      " and ",
      r.smoothed_losses.size());
  const int64_t finite = finite_prefix(r);
  const int64_t first = skip_start;
  const int64_t last = finite - skip_end;
  TORCH_CHECK(
      last - first >= min_points,
      owner,
      ": needs at least ",
      min_points,
      " points after skipping skip_start (",
      skip_start,
      ") and skip_end (",
      skip_end,
      ") of ",
      finite,
      " finite points; run more iterations or skip fewer");
  return {first, last};
}

} // namespace detail

/// The learning rate where the smoothed loss falls fastest against
/// log10(lr): argmin of d(smoothed loss)/d(log10 lr), the derivative taken as
/// `numpy.gradient` does (central differences inside, one-sided at the ends,
/// exact for non-uniform spacing), over the finite points less the first
/// `skip_start` and last `skip_end`.
///
/// Differences from pytorch-lr-finder: its `plot(suggest_lr=True)` takes the
/// gradient against the iteration index; for the exponential sweep log10(lr)
/// is uniform in the index, so both pick the same point; for a linear sweep
/// this one still measures the slope against log10(lr), as the plot shows.
inline LRSuggestion suggest_steepest(
    const LRFinderResult& result,
    int64_t skip_start = 10,
    int64_t skip_end = 5) {
  const auto [first, last] = detail::suggestion_window(
      result, skip_start, skip_end, 2, "suggest_steepest");
  const auto& f = result.smoothed_losses;
  std::vector<double> x;
  for (int64_t i = first; i < last; ++i) {
    x.push_back(std::log10(result.lrs[static_cast<std::size_t>(i)]));
  }
  const std::size_t m = x.size();
  auto y = [&](std::size_t j) {
    return f[static_cast<std::size_t>(first) + j];
  };
  std::vector<double> grad(m);
  grad[0] = (y(1) - y(0)) / (x[1] - x[0]);
  grad[m - 1] = (y(m - 1) - y(m - 2)) / (x[m - 1] - x[m - 2]);
  for (std::size_t j = 1; j + 1 < m; ++j) {
    const double hs = x[j] - x[j - 1];
    const double hd = x[j + 1] - x[j];
    grad[j] =
        (hs * hs * y(j + 1) + (hd * hd - hs * hs) * y(j) - hd * hd * y(j - 1)) /
        (hs * hd * (hd + hs));
  }
  const std::size_t j = static_cast<std::size_t>(
      std::min_element(grad.begin(), grad.end()) - grad.begin());
  const int64_t idx = first + static_cast<int64_t>(j);
  return {
      result.lrs[static_cast<std::size_t>(idx)],
      idx,
      f[static_cast<std::size_t>(idx)]};
}

/// fastai's "minimum": the learning rate at the lowest smoothed loss (over
/// the finite points less `skip_start` and `skip_end`) divided by 10; `index`
/// and `loss` are those of the minimum itself.
inline LRSuggestion suggest_min_div10(
    const LRFinderResult& result,
    int64_t skip_start = 10,
    int64_t skip_end = 5) {
  const auto [first, last] = detail::suggestion_window(
      result, skip_start, skip_end, 1, "suggest_min_div10");
  const auto& f = result.smoothed_losses;
  int64_t best = first;
  for (int64_t i = first + 1; i < last; ++i) {
    if (f[static_cast<std::size_t>(i)] < f[static_cast<std::size_t>(best)]) {
      best = i;
    }
  }
  return {
      result.lrs[static_cast<std::size_t>(best)] / 10.0,
      best,
      f[static_cast<std::size_t>(best)]};
}

/// fastai's "valley": the longest valley of the smoothed curve (the longest
/// strictly decreasing subsequence, found in O(n^2)), and the point 1/2 of
/// the way into it (start + floor(len/3) + floor(len/6)), over the finite
/// points less `skip_start` and `skip_end`.
///
/// Differences from fastai: when the valley starts at the first point,
/// fastai's start index is -1 (Python then reads the last point); here it is
/// clamped to the first point.
inline LRSuggestion suggest_valley(
    const LRFinderResult& result,
    int64_t skip_start = 10,
    int64_t skip_end = 5) {
  const auto [first, last] = detail::suggestion_window(
      result, skip_start, skip_end, 1, "suggest_valley");
  const auto n = static_cast<std::size_t>(last - first);
  auto y = [&](std::size_t j) {
    return result.smoothed_losses[static_cast<std::size_t>(first) + j];
  };
  std::vector<int64_t> lds(n, 1);
  std::size_t max_end = 0;
  int64_t max_start = 0;
  for (std::size_t i = 1; i < n; ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (y(i) < y(j) && lds[i] < lds[j] + 1) {
        lds[i] = lds[j] + 1;
      }
      if (lds[max_end] < lds[i]) {
        max_end = i;
        max_start = static_cast<int64_t>(max_end) - lds[max_end];
      }
    }
  }
  max_start = std::max<int64_t>(max_start, 0);
  const double sections =
      static_cast<double>(static_cast<int64_t>(max_end) - max_start) / 3.0;
  const int64_t j = max_start + static_cast<int64_t>(sections) +
                    static_cast<int64_t>(sections / 2.0);
  const int64_t idx = first + j;
  return {
      result.lrs[static_cast<std::size_t>(idx)],
      idx,
      result.smoothed_losses[static_cast<std::size_t>(idx)]};
}

/// Which suggestion gives `max_lr` in `suggest_cyclic_bounds`.
enum class CyclicMaxRule {
  /// `suggest_min_div10`.
  kMinDiv10,
  /// `suggest_steepest`.
  kSteepest,
  /// `suggest_valley`.
  kValley,
};

/// Options of `suggest_cyclic_bounds`.
struct CyclicBoundsOptions {
  /// The suggestion used as max_lr. Default: CyclicMaxRule::kMinDiv10
  TORCH_ARG(CyclicMaxRule, max_lr_rule) = CyclicMaxRule::kMinDiv10;
  /// base_lr = max_lr / base_div (> 1). Default: 4
  TORCH_ARG(double, base_div) = 4.0;
  /// Points skipped at the start of the curve. Default: 10
  TORCH_ARG(int64_t, skip_start) = 10;
  /// Points skipped at the end of the curve. Default: 5
  TORCH_ARG(int64_t, skip_end) = 5;
};

/// A (base_lr, max_lr) pair for `CyclicLR`.
struct CyclicBounds {
  double base_lr = 0.0;
  double max_lr = 0.0;
};

/// Recommended `CyclicLR` bounds from a range test: max_lr from the chosen
/// suggestion (default: minimum/10), base_lr = max_lr / base_div (default 4).
///
/// Rule: Smith (2017, section 3.3) sets max_lr where the loss stops
/// improving and notes that "the optimum learning rate is usually within a
/// factor of two of the largest one that converges", with base_lr 1/3 or 1/4
/// of max_lr. The smoothed curve's minimum lags the raw one and sits close to
/// divergence, so, as fastai does for its one-cycle max_lr, we step back a
/// factor of 10 from it; base_lr is Smith's 1/4.
inline CyclicBounds suggest_cyclic_bounds(
    const LRFinderResult& result, const CyclicBoundsOptions& options = {}) {
  TORCH_CHECK(
      std::isfinite(options.base_div()) && options.base_div() > 1.0,
      "suggest_cyclic_bounds: base_div must be finite and > 1, but got ",
      options.base_div());
  LRSuggestion s;
  try {
    switch (options.max_lr_rule()) {
      case CyclicMaxRule::kMinDiv10:
        s = suggest_min_div10(result, options.skip_start(), options.skip_end());
        break;
      case CyclicMaxRule::kSteepest:
        s = suggest_steepest(result, options.skip_start(), options.skip_end());
        break;
      case CyclicMaxRule::kValley:
        s = suggest_valley(result, options.skip_start(), options.skip_end());
        break;
    }
  } catch (const c10::Error& e) {
    // The suggestion's error (too few points, bad skips), named as ours.
    TORCH_CHECK(false, "suggest_cyclic_bounds: ", e.what_without_backtrace());
  }
  return {s.lr / options.base_div(), s.lr};
}

// ---------------------------------------------------------------------------
// The range test's CSV and plot.
// ---------------------------------------------------------------------------

namespace detail {

/// Checks that the columns of `r` have one entry per iteration.
inline void check_result_columns(const LRFinderResult& r, const char* owner) {
  TORCH_CHECK(
      r.losses.size() == r.lrs.size() &&
          r.smoothed_losses.size() == r.lrs.size() &&
          (r.group_lrs.empty() || r.group_lrs.size() == r.lrs.size()),
      owner,
      ": expected one learning rate, loss and smoothed loss (and group LR "
      "row) per iteration, but got ",
      r.lrs.size(),
      " learning rates, ",
      r.losses.size(),
      " losses, ",
      r.smoothed_losses.size(),
      " smoothed losses and ",
      r.group_lrs.size(),
      " group LR rows");
}

/// "steepest 3.2e-03": a marker label with the learning rate.
inline std::string lr_label(const char* what, double lr) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%s %.1e", what, lr);
  return buf;
}

} // namespace detail

inline CsvTable LRFinderResult::to_csv() const {
  detail::check_result_columns(*this, "LRFinderResult::to_csv");
  std::size_t groups = 1;
  if (!group_lrs.empty()) {
    groups = group_lrs.front().size();
    for (std::size_t i = 0; i < group_lrs.size(); ++i) {
      TORCH_CHECK(
          group_lrs[i].size() == groups && groups >= 1,
          "LRFinderResult::to_csv: expected the same number (>= 1) of group "
          "learning rates in every iteration, but iteration 0 has ",
          groups,
          " and iteration ",
          i,
          " has ",
          group_lrs[i].size());
    }
  }
  std::vector<std::string> header = {
      "iteration", "lr", "loss", "smoothed_loss"};
  for (std::size_t g = 1; g < groups; ++g) {
    header.push_back("lr_" + std::to_string(g));
  }
  CsvTable table(header);
  for (std::size_t i = 0; i < lrs.size(); ++i) {
    std::vector<CsvCell> row = {
        static_cast<int64_t>(i), lrs[i], losses[i], smoothed_losses[i]};
    for (std::size_t g = 1; g < groups; ++g) {
      row.emplace_back(group_lrs[i][g]);
    }
    table.add_row(row);
  }
  return table;
}

inline void LRFinderResult::write_csv(const std::string& path) const {
  to_csv().write(path);
}

inline PlotPanel LRFinderResult::plot_panel(
    const std::string& csv, const LRFinderPlotOptions& options) const {
  detail::check_result_columns(*this, "LRFinderResult::plot");
  TORCH_CHECK(
      iterations() >= 1,
      "LRFinderResult::plot: expected at least one iteration, but got none");
  TORCH_CHECK(
      options.skip_start() >= 0 && options.skip_end() >= 0,
      "LRFinderResult::plot: skip_start and skip_end must be >= 0, but got ",
      options.skip_start(),
      " and ",
      options.skip_end());
  PlotPanel panel;
  panel.title(options.title())
      .xlabel(options.log_x() ? "learning rate (log scale)" : "learning rate")
      .ylabel("training loss")
      .log_x(options.log_x())
      .x_format(options.log_x() ? TickFormat::kScientific : TickFormat::kAuto);
  if (options.suggestions()) {
    const int64_t points = detail::finite_prefix(*this) - options.skip_start() -
                           options.skip_end();
    if (points >= 2) {
      const LRSuggestion steepest =
          suggest_steepest(*this, options.skip_start(), options.skip_end());
      const LRSuggestion min10 =
          suggest_min_div10(*this, options.skip_start(), options.skip_end());
      const LRSuggestion valley =
          suggest_valley(*this, options.skip_start(), options.skip_end());
      panel.marker(steepest.lr, detail::lr_label("steepest", steepest.lr))
          .marker(min10.lr, detail::lr_label("min/10", min10.lr))
          .marker(valley.lr, detail::lr_label("valley", valley.lr));
    }
  }
  for (const PlotMarker& m : options.markers()) {
    panel.marker(m.x, m.label);
  }
  // The y axis shows the descent: up to the highest smoothed loss before
  // the smoothed minimum, plus 10% of the span, so the rise to divergence
  // (up to diverge_th times the minimum, raw spikes beyond) does not flatten
  // it.
  const auto finite = static_cast<std::size_t>(detail::finite_prefix(*this));
  std::size_t best = 0;
  for (std::size_t i = 1; i < finite; ++i) {
    if (smoothed_losses[i] < smoothed_losses[best]) {
      best = i;
    }
  }
  double lo = std::numeric_limits<double>::infinity();
  double hi = -lo;
  for (std::size_t i = 0; i < finite; ++i) {
    if (std::isfinite(losses[i])) {
      lo = std::min(lo, losses[i]);
    }
    lo = std::min(lo, smoothed_losses[i]);
    if (i <= best) {
      hi = std::max(hi, smoothed_losses[i]);
    }
  }
  if (finite > 0 && lo < hi) {
    panel.y_range(
        {std::numeric_limits<double>::quiet_NaN(), hi + 0.1 * (hi - lo)});
  }
  panel
      .add(PlotSeries(csv, "lr", "loss")
               .title("raw loss")
               .style("lines")
               .line_width(1.0))
      .add(PlotSeries(csv, "lr", "smoothed_loss")
               .title("smoothed loss")
               .style("lines")
               .line_width(2.5));
  return panel;
}

inline PlotResult LRFinderResult::plot(
    const std::string& png_path, const LRFinderPlotOptions& options) const {
  // Checks the result and options before a file is created.
  (void)plot_panel(png_path, options);
  detail::make_directories(
      detail::path_parent(png_path), "LRFinderResult::plot");
  auto [csv_tmp, csv_fd] =
      detail::make_temp_next_to(png_path + ".csv", "LRFinderResult::plot");
  ::close(csv_fd);
  detail::TempFileGuard csv_guard{csv_tmp};
  to_csv().write(csv_tmp);
  return plot_png(
      png_path, plot_panel(csv_tmp, options), options.plot_options());
}

// ---------------------------------------------------------------------------
// The homework's variant: a grid of learning rates, each trained for whole
// epochs from the same initial weights.
// ---------------------------------------------------------------------------

/// `num` learning rates evenly spaced in log10 from `start` to `end` (both
/// included), as `numpy.logspace(log10(start), log10(end), num)`.
inline std::vector<double> log_grid(double start, double end, int64_t num) {
  TORCH_CHECK(
      std::isfinite(start) && std::isfinite(end) && start > 0.0 && end > 0.0,
      "log_grid: start and end must be finite and > 0, but got ",
      start,
      " and ",
      end);
  // A grid point is a training run: a million is far beyond any study, and
  // the bound keeps the vector's allocation justified.
  TORCH_CHECK(num >= 1, "log_grid: num must be >= 1, but got ", num);
  TORCH_CHECK(
      num <= 1000000, "log_grid: num must be <= 1000000, but got ", num);
  const double a = std::log10(start);
  const double b = std::log10(end);
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(num));
  if (num == 1) {
    out.push_back(std::pow(10.0, a));
    return out;
  }
  const double step = (b - a) / static_cast<double>(num - 1);
  for (int64_t i = 0; i < num - 1; ++i) {
    out.push_back(std::pow(10.0, a + static_cast<double>(i) * step));
  }
  out.push_back(std::pow(10.0, b));
  return out;
}

/// One learning rate of `lr_grid_search`.
struct LRGridPoint {
  double lr = 0.0;
  /// Mean training loss of each epoch: `EpochMetrics::loss` of
  /// `train_epoch` with `LossAverage::kPerBatch`, the sum of the batches'
  /// mean losses / the number of batches (the homework's "running loss /
  /// batches").
  std::vector<double> epoch_losses;
  /// Training accuracy of each epoch (`EpochMetrics::accuracy`; NaN when a
  /// batch had no class targets or a loss was not finite).
  std::vector<double> epoch_accuracies;
  /// The last epoch's mean training loss (NaN or inf when it diverged).
  double final_loss = std::numeric_limits<double>::quiet_NaN();
  /// Validation loss and accuracy after the last epoch (NaN without
  /// validation batches).
  double val_loss = std::numeric_limits<double>::quiet_NaN();
  double val_accuracy = std::numeric_limits<double>::quiet_NaN();
  /// True when a loss was NaN or infinite (training stopped there).
  bool diverged = false;
  double seconds = 0.0;
};

/// Options of `lr_grid_search`.
struct LRGridOptions {
  /// Learning rates to train with (each > 0). Default: log_grid(1e-9, 10, 10)
  TORCH_ARG(std::vector<double>, lrs) = log_grid(1e-9, 10.0, 10);
  /// Epochs per learning rate (>= 1). Default: 5
  TORCH_ARG(int64_t, epochs) = 5;
  /// Stop a learning rate's training at its first non-finite loss.
  /// Default: true
  TORCH_ARG(bool, stop_on_non_finite) = true;
  /// Called after each learning rate (progress). Default: none
  TORCH_ARG(std::function<void(const LRGridPoint&)>, on_point) = nullptr;
};

/// What `lr_grid_search` recorded, one point per learning rate.
struct LRGridResult {
  std::vector<LRGridPoint> points;
};

/// How `suggest_grid_bounds` reads CyclicLR bounds off a grid.
enum class GridBoundsRule {
  /// The homework's: best = argmin of the final loss; base_lr = lrs[best-1]
  /// (lrs[0] when best is 0), max_lr = lrs[best].
  kHomework,
  /// Ours: max_lr = lrs[best] (the best fixed learning rate of the grid),
  /// base_lr = max_lr / base_div (Smith's 1/4 by default); on the default
  /// grid one step is a factor of 12.9, far wider than Smith's 3 to 4.
  kSmith,
};

/// CyclicLR bounds from a grid search. Points whose final loss is not finite
/// are ignored (the homework's `np.argmin` would pick the first NaN).
inline CyclicBounds suggest_grid_bounds(
    const LRGridResult& result,
    GridBoundsRule rule = GridBoundsRule::kSmith,
    double base_div = 4.0) {
  TORCH_CHECK(
      std::isfinite(base_div) && base_div > 1.0,
      "suggest_grid_bounds: base_div must be finite and > 1, but got ",
      base_div);
  int64_t best = -1;
  for (std::size_t i = 0; i < result.points.size(); ++i) {
    const double l = result.points[i].final_loss;
    if (std::isfinite(l) &&
        (best < 0 ||
         l < result.points[static_cast<std::size_t>(best)].final_loss)) {
      best = static_cast<int64_t>(i);
    }
  }
  TORCH_CHECK(
      best >= 0,
      "suggest_grid_bounds: expected at least one learning rate with a finite "
      "final loss, but got none of ",
      result.points.size());
  const double max_lr = result.points[static_cast<std::size_t>(best)].lr;
  if (rule == GridBoundsRule::kHomework) {
    const auto lo = static_cast<std::size_t>(std::max<int64_t>(0, best - 1));
    return {result.points[lo].lr, max_lr};
  }
  return {max_lr / base_div, max_lr};
}

namespace detail {

/// The validation batches of a grid search without validation.
struct NoValidation {};

template <
    typename MakeModel,
    typename MakeOptimizer,
    typename TrainBatches,
    typename ValBatches>
LRGridResult lr_grid(
    MakeModel& make_model,
    MakeOptimizer& make_optimizer,
    TrainBatches& train,
    ValBatches* val,
    const LRGridOptions& options,
    const LossFunction& loss_fn) {
  TORCH_CHECK(
      !options.lrs().empty(),
      "lr_grid_search: expected at least one learning rate, but got an empty "
      "grid");
  for (double lr : options.lrs()) {
    TORCH_CHECK(
        std::isfinite(lr) && lr > 0.0,
        "lr_grid_search: every learning rate must be finite and > 0, but got ",
        lr);
  }
  TORCH_CHECK(
      options.epochs() >= 1,
      "lr_grid_search: epochs must be >= 1, but got ",
      options.epochs());

  auto first = make_model();
  const ModuleSnapshot initial(module_of(first, "lr_grid_search"));
  LRGridResult result;
  for (double lr : options.lrs()) {
    const auto start = std::chrono::steady_clock::now();
    auto model = make_model();
    initial.load_values_into(module_of(model, "lr_grid_search"));
    auto made = make_optimizer(model, lr);
    torch::optim::Optimizer& optimizer = made_optimizer(made);
    LRGridPoint point;
    point.lr = lr;
    for (int64_t e = 0; e < options.epochs(); ++e) {
      set_epoch_if_any(train, e);
      const StudyEpoch epoch = train_study_epoch(
          model, train, optimizer, loss_fn, options.stop_on_non_finite());
      point.epoch_losses.push_back(epoch.metrics.loss);
      point.epoch_accuracies.push_back(epoch.metrics.accuracy);
      if (!epoch.finite) {
        point.diverged = true;
        if (options.stop_on_non_finite()) {
          break;
        }
      }
    }
    point.final_loss = point.epoch_losses.back();
    if constexpr (!std::is_same_v<ValBatches, NoValidation>) {
      if (!point.diverged) {
        const EpochMetrics v = evaluate_study(model, *val, loss_fn);
        point.val_loss = v.loss;
        point.val_accuracy = v.accuracy;
      }
    } else {
      (void)val;
    }
    point.seconds = seconds_since(start);
    if (options.on_point()) {
      options.on_point()(point);
    }
    result.points.push_back(std::move(point));
  }
  return result;
}

} // namespace detail

/// The homework's learning-rate search: for each learning rate of the grid,
/// a fresh model from `make_model()` starts from the same initial weights
/// (those of the first model made), `make_optimizer(model, lr)` builds its
/// optimizer (returned by value, `std::unique_ptr` or `std::shared_ptr`), and
/// it trains for `epochs` epochs over `train_batches` (`set_epoch(e)` is
/// called when the batches have it, so every learning rate sees the same
/// order); the final epoch's mean training loss is recorded. Each epoch is
/// one `train_epoch` with `LossAverage::kPerBatch` and `loss_fn` (empty:
/// `default_loss`), and the validation pass one `evaluate`, likewise per
/// batch.
///
/// Example:
///   auto grid = dlcore::lr_grid_search(
///       [] { return dlcore::LeNet5(); },
///       [](dlcore::LeNet5& m, double lr) {
///         return torch::optim::SGD(m->parameters(),
///                                  torch::optim::SGDOptions(lr).momentum(0.9));
///       },
///       train_batches, dlcore::LRGridOptions().epochs(5));
///   auto b = dlcore::suggest_grid_bounds(grid,
///                                        dlcore::GridBoundsRule::kHomework);
///
/// Differences from the homework: its models start from different random
/// weights (a fresh `model_class()` per LR) and each sees a different
/// shuffle; here all start from one state and see one order, so the
/// learning rate is the only difference.
template <
    typename MakeModel,
    typename MakeOptimizer,
    typename TrainBatches,
    typename LossFn = LossFunction>
LRGridResult lr_grid_search(
    MakeModel&& make_model,
    MakeOptimizer&& make_optimizer,
    TrainBatches& train_batches,
    const LRGridOptions& options = {},
    LossFn loss_fn = LossFn()) {
  detail::NoValidation* none = nullptr;
  return detail::lr_grid(
      make_model,
      make_optimizer,
      train_batches,
      none,
      options,
      LossFunction(std::move(loss_fn)));
}

/// As above, and evaluates each learning rate's final model on
/// `val_batches` (validation loss and accuracy).
template <
    typename MakeModel,
    typename MakeOptimizer,
    typename TrainBatches,
    typename ValBatches,
    typename LossFn = LossFunction>
LRGridResult lr_grid_search(
    MakeModel&& make_model,
    MakeOptimizer&& make_optimizer,
    TrainBatches& train_batches,
    ValBatches& val_batches,
    const LRGridOptions& options,
    LossFn loss_fn = LossFn()) {
  return detail::lr_grid(
      make_model,
      make_optimizer,
      train_batches,
      &val_batches,
      options,
      LossFunction(std::move(loss_fn)));
}

} // namespace dlcore
