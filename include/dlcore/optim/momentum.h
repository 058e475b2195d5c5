#pragma once

#include <c10/util/Exception.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/optimizer.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>

#include <cstddef>
#include <limits>
#include <optional>
#include <tuple>
#include <vector>

namespace dlcore {

/// Which option of a param group plays the role of "momentum" for cyclic
/// schedules, as in PyTorch's `CyclicLR` and `OneCycleLR`.
enum class MomentumKind {
  /// The optimizer has no momentum-like option (Adagrad, LBFGS, ...).
  kNone,
  /// `momentum`, for SGD and RMSprop.
  kMomentum,
  /// The first of `betas`, for Adam and AdamW (beta2 is never touched).
  kBeta1,
};

/// The momentum-like option that a param group's options expose.
inline MomentumKind momentum_kind(const torch::optim::OptimizerOptions& o) {
  if (dynamic_cast<const torch::optim::SGDOptions*>(&o) != nullptr ||
      dynamic_cast<const torch::optim::RMSpropOptions*>(&o) != nullptr) {
    return MomentumKind::kMomentum;
  }
  if (dynamic_cast<const torch::optim::AdamOptions*>(&o) != nullptr ||
      dynamic_cast<const torch::optim::AdamWOptions*>(&o) != nullptr) {
    return MomentumKind::kBeta1;
  }
  return MomentumKind::kNone;
}

/// The group's momentum (SGD, RMSprop) or beta1 (Adam, AdamW); empty when the
/// optimizer has neither.
inline std::optional<double> get_momentum(
    const torch::optim::OptimizerOptions& o) {
  if (auto* s = dynamic_cast<const torch::optim::SGDOptions*>(&o)) {
    return s->momentum();
  }
  if (auto* r = dynamic_cast<const torch::optim::RMSpropOptions*>(&o)) {
    return r->momentum();
  }
  if (auto* a = dynamic_cast<const torch::optim::AdamOptions*>(&o)) {
    return std::get<0>(a->betas());
  }
  if (auto* w = dynamic_cast<const torch::optim::AdamWOptions*>(&o)) {
    return std::get<0>(w->betas());
  }
  return std::nullopt;
}

/// Writes the group's momentum (SGD, RMSprop) or beta1 (Adam, AdamW), leaving
/// beta2 as it is. Returns false, changing nothing, when the optimizer has
/// neither.
inline bool set_momentum(torch::optim::OptimizerOptions& o, double value) {
  if (auto* s = dynamic_cast<torch::optim::SGDOptions*>(&o)) {
    s->momentum(value);
    return true;
  }
  if (auto* r = dynamic_cast<torch::optim::RMSpropOptions*>(&o)) {
    r->momentum(value);
    return true;
  }
  if (auto* a = dynamic_cast<torch::optim::AdamOptions*>(&o)) {
    a->betas(std::make_tuple(value, std::get<1>(a->betas())));
    return true;
  }
  if (auto* w = dynamic_cast<torch::optim::AdamWOptions*>(&o)) {
    w->betas(std::make_tuple(value, std::get<1>(w->betas())));
    return true;
  }
  return false;
}

/// Every param group's learning rate, in group order.
inline std::vector<double> group_lrs(const torch::optim::Optimizer& opt) {
  std::vector<double> out;
  out.reserve(opt.param_groups().size());
  for (const auto& g : opt.param_groups()) {
    out.push_back(g.options().get_lr());
  }
  return out;
}

/// Every param group's momentum or beta1 (NaN for a group without one).
inline std::vector<double> group_momenta(const torch::optim::Optimizer& opt) {
  std::vector<double> out;
  out.reserve(opt.param_groups().size());
  for (const auto& g : opt.param_groups()) {
    out.push_back(get_momentum(g.options())
                      .value_or(std::numeric_limits<double>::quiet_NaN()));
  }
  return out;
}

} // namespace dlcore
