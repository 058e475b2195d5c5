#pragma once

// LambdaLR and MultiplicativeLR: schedules given by a function of the epoch.

#include <dlcore/optim/detail/scheduler_common.h>
#include <dlcore/optim/lr_scheduler.h>
#include <dlcore/per_group.h>

#include <c10/util/Exception.h>
#include <torch/arg.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace dlcore {

/// A factor as a function of the epoch index, as Python's `lr_lambda`.
using LRLambda = std::function<double(int64_t)>;

namespace detail {

// Expands one function or one per group and checks that none is empty.
inline std::vector<LRLambda> expand_lr_lambdas(
    const PerGroup<LRLambda>& lambdas, std::size_t n, const char* owner) {
  std::vector<LRLambda> out = lambdas.expand(n, owner, "lr_lambda");
  for (std::size_t i = 0; i < out.size(); ++i) {
    TORCH_CHECK(
        static_cast<bool>(out[i]),
        owner,
        ": ",
        sched_option_name("lr_lambda", i, lambdas.is_broadcast()),
        " is an empty std::function");
  }
  return out;
}

} // namespace detail

/// Options of `LambdaLR`; as `torch.optim.lr_scheduler.LambdaLR`
/// (PyTorch 1.13).
///
/// Example:
///   dlcore::LambdaLROptions([](int64_t e) { return std::pow(0.95, e); });
///   dlcore::LambdaLROptions({f_backbone, f_head}); // one per param group
struct LambdaLROptions {
  /// One function for every param group.
  /* implicit */ LambdaLROptions(LRLambda lr_lambda)
      : lr_lambda_(std::move(lr_lambda)) {}
  /// One function per param group, in the optimizer's group order.
  /* implicit */ LambdaLROptions(std::vector<LRLambda> lr_lambdas)
      : lr_lambda_(std::move(lr_lambdas)) {}

  /// lr = base_lr * lr_lambda(epoch); one function or one per group.
  TORCH_ARG(PerGroup<LRLambda>, lr_lambda);

 public:
};

/// Sets every group's LR to its base LR times a function of the epoch:
///   lr_g(e) = base_lr_g * lr_lambda_g(e)
/// with base_lr the group's LR when the scheduler is built (PyTorch's
/// `initial_lr`). Construction applies e = 0. Bit-for-bit the values of
/// `torch.optim.lr_scheduler.LambdaLR` (PyTorch 1.13).
///
/// The optimizer must outlive the scheduler (it is held by reference).
///
/// Example:
///   dlcore::LambdaLR sched(sgd, dlcore::LambdaLROptions([](int64_t e) {
///     return e < 5 ? (e + 1) / 5.0 : 1.0; // linear warm-up
///   }));
///   for (int epoch = 0; epoch < epochs; ++epoch) {
///     train_one_epoch(); sched.step();
///   }
///
/// Differences from PyTorch (Python):
/// - The functions are not saved (PyTorch saves the `__dict__` of callable
///   objects): load() restores the epoch and LRs into a scheduler built with
///   the same functions.
/// - A function returning a non-finite factor is an error at that step.
class LambdaLR : public LRScheduler {
 public:
  LambdaLR(torch::optim::Optimizer& optimizer, LambdaLROptions options)
      : LRScheduler(optimizer, "LambdaLR", kVersion),
        options_(std::move(options)),
        lambdas_(detail::expand_lr_lambdas(
            options_.lr_lambda(), num_groups(), "LambdaLR")) {
    last_epoch_ = -1;
    step();
  }

  /// The options as given.
  const LambdaLROptions& options() const noexcept {
    return options_;
  }

 protected:
  void get_lr(int64_t epoch, std::vector<double>& out) const override {
    out.resize(num_groups());
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i] = base_lrs_[i] * lambdas_[i](epoch);
    }
  }

  void save_state(detail::StateWriter& state) const override {
    save_lrs(state);
  }

  void load_state(
      const detail::StateReader& state, int64_t last_epoch) override {
    restore_lrs(read_lrs(state), last_epoch);
  }

 private:
  static constexpr int64_t kVersion = 1;
  LambdaLROptions options_;
  std::vector<LRLambda> lambdas_;
};

/// Options of `MultiplicativeLR`; as
/// `torch.optim.lr_scheduler.MultiplicativeLR` (PyTorch 1.13).
///
/// Example:
///   dlcore::MultiplicativeLROptions([](int64_t) { return 0.95; });
struct MultiplicativeLROptions {
  /// One function for every param group.
  /* implicit */ MultiplicativeLROptions(LRLambda lr_lambda)
      : lr_lambda_(std::move(lr_lambda)) {}
  /// One function per param group, in the optimizer's group order.
  /* implicit */ MultiplicativeLROptions(std::vector<LRLambda> lr_lambdas)
      : lr_lambda_(std::move(lr_lambdas)) {}

  /// lr *= lr_lambda(epoch) at every epoch > 0; one function or one per
  /// group.
  TORCH_ARG(PerGroup<LRLambda>, lr_lambda);

 public:
};

/// Multiplies every group's current LR by a function of the epoch:
///   lr_g(e) = lr_g(e - 1) * lr_lambda_g(e)   for e > 0
/// (construction, e = 0, leaves the LR). Bit-for-bit the values of
/// `torch.optim.lr_scheduler.MultiplicativeLR` (PyTorch 1.13). Being
/// chainable, it multiplies whatever LR the group holds, so it composes with
/// other schedulers in ChainedScheduler.
///
/// The optimizer must outlive the scheduler (it is held by reference).
///
/// Example:
///   dlcore::MultiplicativeLR sched(
///       sgd, dlcore::MultiplicativeLROptions([](int64_t) { return 0.95; }));
///
/// Differences from PyTorch (Python): as LambdaLR's.
class MultiplicativeLR : public LRScheduler {
 public:
  MultiplicativeLR(
      torch::optim::Optimizer& optimizer, MultiplicativeLROptions options)
      : LRScheduler(optimizer, "MultiplicativeLR", kVersion),
        options_(std::move(options)),
        lambdas_(detail::expand_lr_lambdas(
            options_.lr_lambda(), num_groups(), "MultiplicativeLR")) {
    last_epoch_ = -1;
    step();
  }

  /// The options as given.
  const MultiplicativeLROptions& options() const noexcept {
    return options_;
  }

 protected:
  void get_lr(int64_t epoch, std::vector<double>& out) const override {
    out.resize(num_groups());
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i] = epoch > 0 ? group_lr(i) * lambdas_[i](epoch) : group_lr(i);
    }
  }

  void save_state(detail::StateWriter& state) const override {
    save_lrs(state);
  }

  void load_state(
      const detail::StateReader& state, int64_t last_epoch) override {
    restore_lrs(read_lrs(state), last_epoch);
  }

 private:
  static constexpr int64_t kVersion = 1;
  MultiplicativeLROptions options_;
  std::vector<LRLambda> lambdas_;
};

} // namespace dlcore
