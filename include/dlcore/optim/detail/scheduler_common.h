#pragma once

// Internals shared by dlcore's schedulers: per-group option expansion and
// validation and writing values into an optimizer's param groups (used
// through SchedulerBase in optim/lr_scheduler.h; their state goes through
// detail/state.h).

#include <dlcore/optim/momentum.h>
#include <dlcore/per_group.h>

#include <c10/util/Exception.h>
#include <torch/optim/optimizer.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <typeinfo>
#include <vector>

namespace dlcore {
namespace detail {

/// The option's name as shown in messages: `base_lr` for a broadcast value,
/// `base_lr[i]` for the i-th entry of a per-group list.
inline std::string sched_option_name(
    const std::string& option, std::size_t index, bool broadcast) {
  if (broadcast) {
    return option;
  }
  return option + "[" + std::to_string(index) + "]";
}

/// Expands a per-group option to `num_groups` values and checks that each is
/// finite.
inline std::vector<double> sched_expand_finite(
    const PerGroup<double>& value,
    std::size_t num_groups,
    const char* owner,
    const char* option) {
  std::vector<double> out = value.expand(num_groups, owner, option);
  for (std::size_t i = 0; i < out.size(); ++i) {
    TORCH_CHECK(
        std::isfinite(out[i]),
        owner,
        ": ",
        sched_option_name(option, i, value.is_broadcast()),
        " must be finite, but got ",
        out[i]);
  }
  return out;
}

/// Checks that every param group has a momentum-like option (momentum for
/// SGD/RMSprop, beta1 for Adam/AdamW).
inline void sched_require_momentum(
    const torch::optim::Optimizer& optimizer, const char* owner) {
  const auto& groups = optimizer.param_groups();
  for (std::size_t i = 0; i < groups.size(); ++i) {
    TORCH_CHECK(
        momentum_kind(groups[i].options()) != MomentumKind::kNone,
        owner,
        ": cycle_momentum is true, but param group ",
        i,
        " has neither `momentum` (SGD, RMSprop) nor `betas` (Adam, AdamW);"
        " use an optimizer with momentum or set cycle_momentum(false)");
  }
}

/// The momentum bounds of a momentum-cycling scheduler, one per group.
struct SchedMomenta {
  std::vector<double> base;
  std::vector<double> max;
};

/// Checks that `optimizer` has a momentum-like option in every group,
/// expands `base` and `max` to `n` groups (finite) and checks
/// 0 <= base <= max per group. `max_first` expands max_momentum first (the
/// order of the scheduler's own arguments, so the first error reported is
/// the one PyTorch would meet first).
inline SchedMomenta sched_momentum_bounds(
    const torch::optim::Optimizer& optimizer,
    const PerGroup<double>& base,
    const PerGroup<double>& max,
    std::size_t n,
    const char* owner,
    bool max_first) {
  sched_require_momentum(optimizer, owner);
  SchedMomenta m;
  if (max_first) {
    m.max = sched_expand_finite(max, n, owner, "max_momentum");
    m.base = sched_expand_finite(base, n, owner, "base_momentum");
  } else {
    m.base = sched_expand_finite(base, n, owner, "base_momentum");
    m.max = sched_expand_finite(max, n, owner, "max_momentum");
  }
  for (std::size_t i = 0; i < n; ++i) {
    const std::string name =
        sched_option_name("base_momentum", i, base.is_broadcast());
    TORCH_CHECK(
        m.base[i] >= 0,
        owner,
        ": ",
        name,
        " must be >= 0, but got ",
        m.base[i]);
    TORCH_CHECK(
        m.base[i] <= m.max[i],
        owner,
        ": ",
        name,
        " (",
        m.base[i],
        ") must be <= max_momentum (",
        m.max[i],
        ")");
  }
  return m;
}

/// Writes one learning rate per param group.
inline void sched_write_lrs(
    torch::optim::Optimizer& optimizer, const std::vector<double>& lrs) {
  auto& groups = optimizer.param_groups();
  TORCH_INTERNAL_ASSERT(groups.size() == lrs.size());
  for (std::size_t i = 0; i < lrs.size(); ++i) {
    groups[i].options().set_lr(lrs[i]);
  }
}

/// Writes one momentum (or beta1) per param group. Remembers each group's
/// options type, so the per-step cost is a type check instead of a chain of
/// `dynamic_cast`s (which compare type names across LibTorch's shared
/// library); a group whose options object was replaced is looked up again.
class SchedMomentumWriter {
 public:
  void write(
      torch::optim::Optimizer& optimizer, const std::vector<double>& momenta) {
    auto& groups = optimizer.param_groups();
    TORCH_INTERNAL_ASSERT(groups.size() == momenta.size());
    cache_.resize(groups.size());
    for (std::size_t i = 0; i < momenta.size(); ++i) {
      torch::optim::OptimizerOptions& o = groups[i].options();
      Entry& c = cache_[i];
      if (c.options != &o || c.type == nullptr || typeid(o) != *c.type) {
        c = Entry{&o, &typeid(o), kind_of(o)};
      }
      switch (c.kind) {
        case Kind::kSGD:
          static_cast<torch::optim::SGDOptions&>(o).momentum(momenta[i]);
          break;
        case Kind::kRMSprop:
          static_cast<torch::optim::RMSpropOptions&>(o).momentum(momenta[i]);
          break;
        case Kind::kAdam:
          std::get<0>(static_cast<torch::optim::AdamOptions&>(o).betas()) =
              momenta[i];
          break;
        case Kind::kAdamW:
          std::get<0>(static_cast<torch::optim::AdamWOptions&>(o).betas()) =
              momenta[i];
          break;
        case Kind::kOther: {
          const bool ok = set_momentum(o, momenta[i]);
          TORCH_INTERNAL_ASSERT(ok, "param group without momentum");
          break;
        }
      }
    }
  }

 private:
  enum class Kind { kSGD, kRMSprop, kAdam, kAdamW, kOther };
  struct Entry {
    const torch::optim::OptimizerOptions* options = nullptr;
    const std::type_info* type = nullptr;
    Kind kind = Kind::kOther;
  };

  static Kind kind_of(torch::optim::OptimizerOptions& o) {
    // Exact types only; subclasses go through set_momentum's dynamic_cast.
    if (typeid(o) == typeid(torch::optim::SGDOptions)) {
      return Kind::kSGD;
    }
    if (typeid(o) == typeid(torch::optim::RMSpropOptions)) {
      return Kind::kRMSprop;
    }
    if (typeid(o) == typeid(torch::optim::AdamOptions)) {
      return Kind::kAdam;
    }
    if (typeid(o) == typeid(torch::optim::AdamWOptions)) {
      return Kind::kAdamW;
    }
    return Kind::kOther;
  }

  std::vector<Entry> cache_;
};

} // namespace detail
} // namespace dlcore
