#pragma once

// SequentialLR and ChainedScheduler: schedulers built from other schedulers.

#include <dlcore/optim/lr_scheduler.h>

#include <c10/util/Exception.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace dlcore {

namespace detail {

// Checks the children of a composite scheduler and returns their optimizer.
inline torch::optim::Optimizer& composite_optimizer(
    const std::vector<std::shared_ptr<LRScheduler>>& schedulers,
    const char* owner) {
  TORCH_CHECK(!schedulers.empty(), owner, ": expects at least one scheduler");
  for (std::size_t i = 0; i < schedulers.size(); ++i) {
    TORCH_CHECK(
        schedulers[i] != nullptr, owner, ": schedulers[", i, "] is null");
    TORCH_CHECK(
        &schedulers[i]->optimizer() == &schedulers[0]->optimizer(),
        owner,
        ": expects all schedulers to belong to the same optimizer, but "
        "schedulers[",
        i,
        "] (",
        schedulers[i]->name(),
        ") drives another one than schedulers[0]");
  }
  return schedulers[0]->optimizer();
}

inline std::string composite_key(std::size_t i) {
  return "scheduler_" + std::to_string(i);
}

/// Writes the children of a composite scheduler, each as a nested archive.
inline void save_children(
    detail::StateWriter& state,
    const std::vector<std::shared_ptr<LRScheduler>>& schedulers) {
  for (std::size_t i = 0; i < schedulers.size(); ++i) {
    torch::serialize::OutputArchive child;
    schedulers[i]->save(child);
    state.put_archive(composite_key(i), child);
  }
}

/// Reads every child's archive first (a missing one fails before any child
/// changed), then loads them in order; a child that refuses its archive
/// throws, and children before it keep what they loaded.
inline void load_children(
    const detail::StateReader& state,
    const std::vector<std::shared_ptr<LRScheduler>>& schedulers) {
  std::vector<torch::serialize::InputArchive> children(schedulers.size());
  for (std::size_t i = 0; i < schedulers.size(); ++i) {
    state.read_archive(composite_key(i), children[i]);
  }
  for (std::size_t i = 0; i < schedulers.size(); ++i) {
    schedulers[i]->load(children[i]);
  }
}

} // namespace detail

/// Runs schedulers one after the other: schedulers[i] drives the LR from
/// milestones[i - 1] on. As `torch.optim.lr_scheduler.SequentialLR`
/// (PyTorch 1.13), step for step:
/// - construction sets every group's LR back to its initial LR, moves every
///   child's last_epoch back by one (undoing its construction step) and runs
///   the first child's construction step again;
/// - step() at epoch e steps the child that owns e; at a milestone, the new
///   child is restarted with PyTorch's step(0): its last_epoch becomes 0 and
///   its LRs are its *closed form* at 0 where PyTorch has one (StepLR,
///   MultiStepLR, ConstantLR, LinearLR, ExponentialLR, PolynomialLR,
///   CosineAnnealingLR; CosineAnnealingWarmRestarts restarts its period),
///   or its get_lr at 0 otherwise. This is PyTorch's behaviour, peculiar as
///   it is: at the milestone the LR jumps to the new child's value at epoch
///   0 computed from the initial LR (for example, ExponentialLR after a
///   LinearLR warm-up starts again at the initial LR, not at the warmed-up
///   one times gamma).
///
/// Initial LRs: PyTorch keeps `initial_lr` in each param group, written by
/// the first scheduler built on the optimizer; every later scheduler takes
/// its base LRs from it. LibTorch's param groups have no such entry, so each
/// dlcore scheduler takes its base LRs from the groups' LRs when it is built,
/// and SequentialLR gives every child the base LRs of schedulers[0]. This
/// equals PyTorch when schedulers[0] is built first (the usual order).
///
/// The children are shared: do not step them yourself.
///
/// Example (linear warm-up for 5 epochs, then cosine decay):
///   auto warmup = std::make_shared<dlcore::LinearLR>(
///       sgd, dlcore::LinearLROptions().start_factor(0.1).total_iters(5));
///   auto cosine = std::make_shared<dlcore::CosineAnnealingLR>(
///       sgd, dlcore::CosineAnnealingLROptions(epochs - 5));
///   dlcore::SequentialLR sched(sgd, {warmup, cosine}, {5});
///   for (int epoch = 0; epoch < epochs; ++epoch) {
///     train_one_epoch(); sched.step();
///   }
///
/// Differences from PyTorch (Python): milestones must be strictly
/// increasing and >= 1; a child cannot be SequentialLR or ChainedScheduler
/// (PyTorch fails on them at the first milestone).
class SequentialLR : public LRScheduler {
 public:
  SequentialLR(
      torch::optim::Optimizer& optimizer,
      std::vector<std::shared_ptr<LRScheduler>> schedulers,
      std::vector<int64_t> milestones)
      : LRScheduler(optimizer, "SequentialLR", kVersion),
        schedulers_(std::move(schedulers)),
        milestones_(std::move(milestones)) {
    torch::optim::Optimizer& shared =
        detail::composite_optimizer(schedulers_, "SequentialLR");
    TORCH_CHECK(
        &shared == &optimizer,
        "SequentialLR: expects all schedulers to belong to the optimizer "
        "passed in, but they drive another one");
    TORCH_CHECK(
        milestones_.size() + 1 == schedulers_.size(),
        "SequentialLR: expects one milestone fewer than schedulers, but got ",
        schedulers_.size(),
        " schedulers and ",
        milestones_.size(),
        " milestones");
    for (std::size_t i = 0; i < milestones_.size(); ++i) {
      TORCH_CHECK(
          milestones_[i] >= 1 &&
              (i == 0 || milestones_[i] > milestones_[i - 1]),
          "SequentialLR: milestones must be strictly increasing and >= 1, "
          "but milestones[",
          i,
          "] is ",
          milestones_[i]);
    }
    for (std::size_t i = 0; i < schedulers_.size(); ++i) {
      TORCH_CHECK(
          !schedulers_[i]->is_composite(),
          "SequentialLR: schedulers[",
          i,
          "] is a ",
          schedulers_[i]->name(),
          ", which cannot be restarted at a milestone; pass its children");
      TORCH_CHECK(
          schedulers_[i]->num_groups() == num_groups(),
          "SequentialLR: schedulers[",
          i,
          "] was built for ",
          schedulers_[i]->num_groups(),
          " param groups, but the optimizer has ",
          num_groups());
    }
    // group["lr"] = group["initial_lr"]; every child's base_lrs are the
    // initial LRs.
    base_lrs_ = schedulers_[0]->base_lrs();
    for (auto& s : schedulers_) {
      s->base_lrs_ = base_lrs_;
    }
    last_lr_ = base_lrs_;
    write_last_lr();
    // "Undo" the step performed by each child, then redo the first one's.
    for (auto& s : schedulers_) {
      TORCH_CHECK(
          s->last_epoch_ >= 0,
          "SequentialLR: a child has last_epoch ",
          s->last_epoch_);
      s->last_epoch_ -= 1;
    }
    schedulers_[0]->step();
    last_epoch_ = 0;
    last_lr_ = schedulers_[0]->get_last_lr();
  }

  /// Steps the child that owns the next epoch (restarting it at its
  /// milestone) and takes its LRs.
  void step() override {
    const int64_t epoch = next_epoch();
    const std::size_t idx = static_cast<std::size_t>(
        std::upper_bound(milestones_.begin(), milestones_.end(), epoch) -
        milestones_.begin());
    LRScheduler& child = *schedulers_[idx];
    // A child's error (a non-finite LR, say) names the child's own step; say
    // which of this scheduler's steps it was. The child left the optimizer
    // unchanged, and so does this one.
    try {
      if (idx > 0 && milestones_[idx - 1] == epoch) {
        child.restart();
      } else {
        child.step();
      }
    } catch (const c10::Error& e) {
      TORCH_CHECK(
          false,
          "SequentialLR: at step ",
          epoch,
          ", schedulers[",
          idx,
          "] failed: ",
          e.what_without_backtrace());
    }
    last_epoch_ = epoch;
    last_lr_ = child.get_last_lr();
  }

  /// The children, in order.
  const std::vector<std::shared_ptr<LRScheduler>>& schedulers() const {
    return schedulers_;
  }

  /// The milestones as given.
  const std::vector<int64_t>& milestones() const noexcept {
    return milestones_;
  }

 protected:
  void get_lr(int64_t /*epoch*/, std::vector<double>& out) const override {
    out = last_lr_;
  }

  void restart() override {
    TORCH_CHECK(false, "SequentialLR cannot be restarted at epoch 0");
  }

  bool is_composite() const noexcept override {
    return true;
  }

  void save_state(detail::StateWriter& state) const override {
    state.put_ints("milestones", milestones_);
    state.put_int("num_schedulers", static_cast<int64_t>(schedulers_.size()));
    save_lrs(state);
    detail::save_children(state, schedulers_);
  }

  void load_state(
      const detail::StateReader& state, int64_t last_epoch) override {
    check_same_ints(state, "milestones", milestones_);
    check_same_int(
        state, "num_schedulers", static_cast<int64_t>(schedulers_.size()));
    SavedLRs lrs = read_lrs(state);
    detail::load_children(state, schedulers_);
    restore_lrs(std::move(lrs), last_epoch);
  }

 private:
  static constexpr int64_t kVersion = 1;
  std::vector<std::shared_ptr<LRScheduler>> schedulers_;
  std::vector<int64_t> milestones_;
};

/// Steps several schedulers at once, in order, each on the LR the previous
/// one left: `torch.optim.lr_scheduler.ChainedScheduler` (PyTorch 1.13).
/// Chainable schedulers (those that multiply the group's current LR:
/// MultiplicativeLR, StepLR, MultiStepLR, ConstantLR, LinearLR,
/// ExponentialLR, PolynomialLR, CosineAnnealingLR) compose; a closed-form
/// one (LambdaLR, CosineAnnealingWarmRestarts, CyclicLR, OneCycleLR)
/// overwrites what the others did before it.
///
/// Construction steps nothing (as in PyTorch); get_last_lr() is the groups'
/// LRs after the children's construction steps. last_epoch() counts
/// step() calls. Every child gets the base LRs of schedulers[0] (see
/// SequentialLR on initial LRs).
///
/// The children are shared: do not step them yourself.
///
/// Example:
///   auto constant = std::make_shared<dlcore::ConstantLR>(
///       sgd, dlcore::ConstantLROptions().factor(0.1).total_iters(2));
///   auto decay = std::make_shared<dlcore::ExponentialLR>(
///       sgd, dlcore::ExponentialLROptions(0.9));
///   dlcore::ChainedScheduler sched({constant, decay});
///
/// Differences from PyTorch (Python): a child that throws in step() leaves
/// the children before it stepped (PyTorch alike), and the chain's
/// last_epoch is not advanced.
class ChainedScheduler : public LRScheduler {
 public:
  explicit ChainedScheduler(
      std::vector<std::shared_ptr<LRScheduler>> schedulers)
      : LRScheduler(
            detail::composite_optimizer(schedulers, "ChainedScheduler"),
            "ChainedScheduler",
            kVersion),
        schedulers_(std::move(schedulers)) {
    for (std::size_t i = 0; i < schedulers_.size(); ++i) {
      TORCH_CHECK(
          schedulers_[i]->num_groups() == num_groups(),
          "ChainedScheduler: schedulers[",
          i,
          "] was built for ",
          schedulers_[i]->num_groups(),
          " param groups, but the optimizer has ",
          num_groups());
    }
    // last_lr_ holds the groups' current LRs (the base class read them).
    base_lrs_ = schedulers_[0]->base_lrs();
    for (auto& s : schedulers_) {
      s->base_lrs_ = base_lrs_;
    }
    last_epoch_ = 0;
  }

  /// Steps every child in order.
  void step() override {
    const int64_t epoch = next_epoch();
    for (auto& s : schedulers_) {
      s->step();
    }
    last_epoch_ = epoch;
    for (std::size_t i = 0; i < last_lr_.size(); ++i) {
      last_lr_[i] = group_lr(i);
    }
  }

  /// The children, in order.
  const std::vector<std::shared_ptr<LRScheduler>>& schedulers() const {
    return schedulers_;
  }

 protected:
  void get_lr(int64_t /*epoch*/, std::vector<double>& out) const override {
    out = last_lr_;
  }

  void restart() override {
    TORCH_CHECK(false, "ChainedScheduler cannot be restarted at epoch 0");
  }

  bool is_composite() const noexcept override {
    return true;
  }

  void save_state(detail::StateWriter& state) const override {
    state.put_int("num_schedulers", static_cast<int64_t>(schedulers_.size()));
    save_lrs(state);
    detail::save_children(state, schedulers_);
  }

  void load_state(
      const detail::StateReader& state, int64_t last_epoch) override {
    check_same_int(
        state, "num_schedulers", static_cast<int64_t>(schedulers_.size()));
    SavedLRs lrs = read_lrs(state);
    detail::load_children(state, schedulers_);
    restore_lrs(std::move(lrs), last_epoch);
  }

 private:
  static constexpr int64_t kVersion = 1;
  std::vector<std::shared_ptr<LRScheduler>> schedulers_;
};

} // namespace dlcore
