#pragma once

// The common base of dlcore's learning-rate schedulers: SchedulerBase (param
// groups, last_epoch, get_last_lr, checked save/load, finite and overflow
// guards) and LRScheduler (the schedulers stepped by step(), which
// SequentialLR and ChainedScheduler compose).

#include <dlcore/detail/archive.h>
#include <dlcore/detail/atomic_file.h>
#include <dlcore/detail/state.h>
#include <dlcore/optim/detail/scheduler_common.h>

#include <ATen/core/ivalue.h>
#include <c10/util/Exception.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace dlcore {

class SequentialLR;
class ChainedScheduler;

/// What every dlcore learning-rate scheduler shares: the optimizer it drives
/// (held by reference; it must outlive the scheduler), one base LR per param
/// group, the epoch counter `last_epoch`, the LRs it wrote last, and a
/// versioned save/load.
///
/// Guards that hold for every scheduler:
/// - a step whose learning rate (or momentum) would not be finite, or whose
///   learning rate would be negative, throws a `c10::Error` naming the
///   scheduler, the param group and the step, and leaves the optimizer and
///   the scheduler unchanged;
/// - `last_epoch` never overflows: stepping at INT64_MAX is an error;
/// - the optimizer must keep the param groups the scheduler was built for.
///
/// Archives hold dlcore's state format (detail/state.h, docs/state.md):
/// `type` ("dlcore." and the class name), `version`, `last_epoch` and named
/// fields; `load` checks the type, the version and every field (a scheduler
/// built with other options refuses the archive), changes nothing when a check
/// fails (a composite keeps the children it loaded before the failing one),
/// and writes the restored LRs into the optimizer. Archives written before
/// this format (the type without "dlcore.") load too.
///
/// Example (checkpoint and resume any scheduler):
///   sched.save("sched.pt");
///   // later, a scheduler built with the same options on a new optimizer:
///   resumed.load("sched.pt"); // continues exactly where `sched` stopped
/// (`save`/`load` also take an archive, to store the scheduler beside other
/// state; `load(path)` checks the file before LibTorch parses it.)
class SchedulerBase {
 public:
  virtual ~SchedulerBase() = default;
  SchedulerBase(const SchedulerBase&) = delete;
  SchedulerBase& operator=(const SchedulerBase&) = delete;

  /// The LRs written by the last step (or the constructor), one per group.
  const std::vector<double>& get_last_lr() const noexcept {
    return last_lr_;
  }

  /// Steps done since the start of the schedule (PyTorch's `last_epoch`):
  /// 0 after construction, k after k calls of step(); -1 for a child of
  /// SequentialLR whose turn has not come.
  int64_t last_epoch() const noexcept {
    return last_epoch_;
  }

  /// The groups' LRs the schedule starts from (PyTorch's `base_lrs`, read
  /// from each group's `initial_lr`): the groups' LRs when the scheduler was
  /// built, or what SequentialLR/ChainedScheduler set (see there).
  const std::vector<double>& base_lrs() const noexcept {
    return base_lrs_;
  }

  /// The optimizer this scheduler writes into.
  torch::optim::Optimizer& optimizer() const noexcept {
    return optimizer_;
  }

  /// The class name, as written into archives and messages.
  const char* name() const noexcept {
    return name_;
  }

  /// Writes `type`, `version`, `last_epoch` and the scheduler's fields.
  void save(torch::serialize::OutputArchive& archive) const {
    detail::StateWriter state(archive, name_, version_);
    state.put_int("last_epoch", last_epoch_);
    save_state(state);
  }

  /// Restores the state written by save() into a scheduler built with the
  /// same options (checked) and writes the restored LRs into the optimizer,
  /// so the next step continues the saved run exactly. Nothing changes when
  /// the archive is refused.
  void load(torch::serialize::InputArchive& archive) {
    const detail::StateReader state(archive, name_, name_, version_);
    const int64_t last_epoch = state.read_int("last_epoch");
    // -1: a child of SequentialLR whose turn has not come.
    state.expect(
        last_epoch >= -1, "last_epoch", "an integer >= -1", last_epoch);
    load_state(state, last_epoch);
  }

  /// Writes save()'s archive to `path`, atomically (a temporary file beside
  /// it, then a rename).
  void save(const std::string& path) const {
    detail::save_archive_file(*this, path, name_);
  }

  /// Loads a file written by `save(path)`. Only a regular file is opened,
  /// and the archive is checked (zip structure, CRC-32 of every entry, a
  /// bounded pickle walk: `detail::check_archive`) before LibTorch parses
  /// it; every error is a `c10::Error` naming the file.
  void load(const std::string& path) {
    detail::load_archive_file(*this, path, name_);
  }

 protected:
  /// Reads the groups' LRs as base_lrs() and get_last_lr(); `name` must be a
  /// string literal (it is kept).
  SchedulerBase(
      torch::optim::Optimizer& optimizer, const char* name, int64_t version)
      : optimizer_(optimizer), name_(name), version_(version) {
    const auto& groups = optimizer_.param_groups();
    TORCH_CHECK(!groups.empty(), name_, ": the optimizer has no param groups");
    base_lrs_.resize(groups.size());
    for (std::size_t i = 0; i < groups.size(); ++i) {
      base_lrs_[i] = groups[i].options().get_lr();
      TORCH_CHECK(
          std::isfinite(base_lrs_[i]),
          name_,
          ": param group ",
          i,
          " has the learning rate ",
          base_lrs_[i],
          "; it must be finite");
    }
    last_lr_ = base_lrs_;
  }

  /// Writes the fields after `type`, `version` and `last_epoch`.
  virtual void save_state(detail::StateWriter& state) const = 0;
  /// Reads and checks every field (`state.version()` tells the layout), then
  /// (only then) restores the state with `last_epoch` and writes the restored
  /// LRs into the optimizer.
  virtual void load_state(
      const detail::StateReader& state, int64_t last_epoch) = 0;

  std::size_t num_groups() const noexcept {
    return base_lrs_.size();
  }

  /// Checks that the optimizer still has the groups this scheduler was
  /// built for.
  void check_groups() const {
    const std::size_t n = optimizer_.param_groups().size();
    TORCH_CHECK(
        n == base_lrs_.size(),
        name_,
        ": the optimizer has ",
        n,
        " param groups, but the scheduler was built for ",
        base_lrs_.size(),
        "; build a new scheduler after add_param_group");
  }

  /// The current LR of param group i.
  double group_lr(std::size_t i) const {
    return optimizer_.param_groups()[i].options().get_lr();
  }

  /// last_epoch + 1, or an error at INT64_MAX.
  int64_t next_epoch() const {
    TORCH_CHECK(
        last_epoch_ < std::numeric_limits<int64_t>::max(),
        name_,
        ": last_epoch is ",
        last_epoch_,
        ", the largest int64; the scheduler cannot step further");
    return last_epoch_ + 1;
  }

  /// Throws unless every value is finite; `what` is "learning rate" or
  /// "momentum".
  void check_finite(
      const std::vector<double>& values,
      int64_t epoch,
      const char* what) const {
    for (std::size_t i = 0; i < values.size(); ++i) {
      TORCH_CHECK(
          std::isfinite(values[i]),
          name_,
          ": the ",
          what,
          " of param group ",
          i,
          " at step ",
          epoch,
          " would be ",
          values[i],
          ", which is not finite; the optimizer was left unchanged (check "
          "the scheduler's options)");
    }
  }

  /// Set by a scheduler whose PyTorch original itself gives a negative
  /// learning rate from valid options (OneCycleLR's linear anneal at step
  /// total_steps), so that it stays value for value PyTorch's.
  bool allow_negative_lr_ = false;

  /// Throws unless every learning rate is >= 0 (a user's LR function can
  /// return a negative factor; the optimizers check their LR only when they
  /// are built).
  void check_non_negative(const std::vector<double>& lrs, int64_t epoch) const {
    if (allow_negative_lr_) {
      return;
    }
    for (std::size_t i = 0; i < lrs.size(); ++i) {
      TORCH_CHECK(
          lrs[i] >= 0.0,
          name_,
          ": the learning rate of param group ",
          i,
          " at step ",
          epoch,
          " would be ",
          lrs[i],
          ", which is negative; the optimizer was left unchanged (check "
          "the scheduler's options)");
    }
  }

  /// Checks that `lrs` are finite and >= 0, writes them into the groups and
  /// makes them get_last_lr() at `epoch`. `lrs` receives the previous LRs'
  /// storage (no allocation per step).
  void commit(std::vector<double>& lrs, int64_t epoch) {
    check_finite(lrs, epoch, "learning rate");
    check_non_negative(lrs, epoch);
    check_groups();
    detail::sched_write_lrs(optimizer_, lrs);
    last_lr_.swap(lrs);
    last_epoch_ = epoch;
  }

  /// As commit(), for a scheduler that also cycles momentum: checks that
  /// `lrs` and `momenta` (momentum or beta1, one per group) are finite before
  /// writing either, writes the momenta through `writer` and swaps them into
  /// `last_momenta`.
  void commit(
      std::vector<double>& lrs,
      std::vector<double>& momenta,
      std::vector<double>& last_momenta,
      detail::SchedMomentumWriter& writer,
      int64_t epoch) {
    check_finite(lrs, epoch, "learning rate");
    check_non_negative(lrs, epoch);
    check_finite(momenta, epoch, "momentum");
    check_groups();
    writer.write(optimizer_, momenta);
    last_momenta.swap(momenta);
    commit(lrs, epoch);
  }

  /// Writes get_last_lr() into the groups (after load).
  void write_last_lr() {
    check_groups();
    detail::sched_write_lrs(optimizer_, last_lr_);
  }

  /// A list of one finite double per param group.
  std::vector<double> read_group_values(
      const detail::StateReader& state, const std::string& key) const {
    std::vector<double> out = state.read_doubles(key);
    TORCH_CHECK(
        out.size() == num_groups(),
        name_,
        ": the archive was saved for ",
        out.size(),
        " param groups, but this optimizer has ",
        num_groups());
    for (std::size_t i = 0; i < out.size(); ++i) {
      TORCH_CHECK(
          std::isfinite(out[i]),
          name_,
          ": field `",
          key,
          "[",
          i,
          "]` must be finite, but got ",
          out[i]);
    }
    return out;
  }

  /// Checks that a saved list of doubles (one per group) equals this
  /// scheduler's.
  void check_same(
      const detail::StateReader& state,
      const std::string& key,
      const std::vector<double>& expected) const {
    const std::vector<double> saved = state.read_doubles(key);
    TORCH_CHECK(
        saved.size() == expected.size(),
        name_,
        ": the archive was saved for ",
        saved.size(),
        " param groups, but this optimizer has ",
        expected.size());
    for (std::size_t i = 0; i < saved.size(); ++i) {
      TORCH_CHECK(
          saved[i] == expected[i],
          name_,
          ": the archive was saved with ",
          key,
          "[",
          i,
          "] = ",
          saved[i],
          ", but this scheduler has ",
          expected[i],
          "; construct it with the options of the saved run");
    }
  }

  /// Checks that a saved double (a list of one float) equals this
  /// scheduler's.
  void check_same(
      const detail::StateReader& state,
      const std::string& key,
      double expected) const {
    check_same(state, key, std::vector<double>{expected});
  }

  /// Checks that a saved integer equals this scheduler's.
  void check_same_int(
      const detail::StateReader& state,
      const std::string& key,
      int64_t expected) const {
    check_saved_equal(key, state.read_int(key), expected);
  }

  /// Checks that a saved bool equals this scheduler's.
  void check_same_bool(
      const detail::StateReader& state,
      const std::string& key,
      bool expected) const {
    check_saved_equal(key, state.read_bool(key), expected);
  }

  /// The error of a saved scalar option that differs from this scheduler's.
  template <typename T>
  void check_saved_equal(
      const std::string& key, const T& saved, const T& expected) const {
    TORCH_CHECK(
        saved == expected,
        name_,
        ": the archive was saved with ",
        key,
        " = ",
        saved,
        ", but this scheduler has ",
        expected,
        "; construct it with the options of the saved run");
  }

  /// Checks that a saved list of integers equals this scheduler's.
  void check_same_ints(
      const detail::StateReader& state,
      const std::string& key,
      const std::vector<int64_t>& expected) const {
    const std::vector<int64_t> saved = state.read_ints(key);
    TORCH_CHECK(
        saved == expected,
        name_,
        ": the archive was saved with other ",
        key,
        " (",
        c10::IValue(saved),
        "), but this scheduler has ",
        c10::IValue(expected),
        "; construct it with the options of the saved run");
  }

  /// Writes `base_lrs` and `last_lr` (the state of every chainable
  /// scheduler).
  void save_lrs(detail::StateWriter& state) const {
    state.put_doubles("base_lrs", base_lrs_);
    state.put_doubles("last_lr", last_lr_);
  }

  /// The `base_lrs` and `last_lr` of an archive, checked.
  struct SavedLRs {
    std::vector<double> base_lrs;
    std::vector<double> last_lr;
  };
  SavedLRs read_lrs(const detail::StateReader& state) const {
    SavedLRs s;
    s.base_lrs = read_group_values(state, "base_lrs");
    s.last_lr = read_group_values(state, "last_lr");
    return s;
  }

  /// Restores checked LRs and last_epoch and writes the LRs into the groups.
  void restore_lrs(SavedLRs saved, int64_t last_epoch) {
    check_groups();
    base_lrs_ = std::move(saved.base_lrs);
    last_lr_ = std::move(saved.last_lr);
    last_epoch_ = last_epoch;
    write_last_lr();
  }

  int64_t last_epoch_ = 0;
  std::vector<double> base_lrs_;
  std::vector<double> last_lr_;

 private:
  torch::optim::Optimizer& optimizer_;
  const char* name_;
  int64_t version_;
};

/// A scheduler stepped once per epoch (or batch) with step(): every dlcore
/// scheduler except ReduceLROnPlateau. SequentialLR and ChainedScheduler
/// hold them as `std::shared_ptr<LRScheduler>`.
///
/// A derived class gives PyTorch's `get_lr()` (the chainable form, which may
/// read the groups' current LRs) and, where PyTorch has one,
/// `_get_closed_form_lr()`; both are written operation for operation like
/// PyTorch 1.13's, so the LRs are the same doubles.
class LRScheduler : public SchedulerBase {
 public:
  /// Advances last_epoch by one and writes the new LRs into every group.
  virtual void step() {
    const int64_t epoch = next_epoch();
    check_groups();
    get_lr(epoch, scratch_);
    commit(scratch_, epoch);
  }

 protected:
  using SchedulerBase::SchedulerBase;

  /// PyTorch's get_lr() with last_epoch = `epoch`, into `out` (one per
  /// group).
  virtual void get_lr(int64_t epoch, std::vector<double>& out) const = 0;

  /// PyTorch's _get_closed_form_lr() at `epoch`; get_lr where PyTorch has
  /// no closed form (as its step(epoch) does).
  virtual void closed_form_lr(int64_t epoch, std::vector<double>& out) const {
    get_lr(epoch, out);
  }

  /// PyTorch's step(0), which SequentialLR calls at a milestone: last_epoch
  /// becomes 0 and the LRs are the closed form at 0 where PyTorch has one.
  virtual void restart() {
    check_groups();
    closed_form_lr(0, scratch_);
    commit(scratch_, 0);
  }

  /// SequentialLR and ChainedScheduler; they cannot be restarted at epoch 0
  /// (PyTorch's have no step(epoch) either), so SequentialLR refuses them.
  virtual bool is_composite() const noexcept {
    return false;
  }

  /// Scratch storage for the next LRs (swapped with get_last_lr()).
  std::vector<double> scratch_;

  friend class SequentialLR;
  friend class ChainedScheduler;
};

} // namespace dlcore
