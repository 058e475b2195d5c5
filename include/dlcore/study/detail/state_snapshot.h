#pragma once

// Exact snapshots of a module and an optimizer: the LR range test takes them
// before it trains and restores them afterwards; the LR grid and the
// batch-size study start every model from one module snapshot. Internal to
// dlcore (study/lr_finder.h, study/batch_size_study.h).

#include <dlcore/detail/torch_compat.h>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/nn/module.h>
#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/optimizer.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/utils.h>

#include <cstddef>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace dlcore {
namespace detail {

/// A deep copy of a module's parameters (values and gradients), buffers and
/// per-submodule training flags. `restore` writes them back in place
/// (`copy_`), so tensor identity is kept and an optimizer that holds the
/// parameters stays valid; the values are restored bit for bit.
class ModuleSnapshot {
 public:
  ModuleSnapshot() = default;

  explicit ModuleSnapshot(const torch::nn::Module& module) {
    torch::NoGradGuard no_grad;
    for (const auto& p : module.parameters(/*recurse=*/true)) {
      params_.push_back(p.detach().clone());
      const auto& g = p.grad();
      grads_.push_back(g.defined() ? g.detach().clone() : torch::Tensor());
    }
    for (const auto& b : module.buffers(/*recurse=*/true)) {
      buffers_.push_back(b.defined() ? b.detach().clone() : torch::Tensor());
    }
    for (const auto& m : module.modules(/*include_self=*/true)) {
      training_.push_back(m->is_training());
    }
  }

  /// Writes the saved state back into `module` (the same module, or one with
  /// the same structure: parameters, buffers and submodules in the same
  /// order with the same shapes).
  void restore(torch::nn::Module& module) const {
    torch::NoGradGuard no_grad;
    auto params = module.parameters(/*recurse=*/true);
    auto buffers = module.buffers(/*recurse=*/true);
    auto modules = module.modules(/*include_self=*/true);
    TORCH_CHECK(
        params.size() == params_.size() && buffers.size() == buffers_.size() &&
            modules.size() == training_.size(),
        "LRFinder: the module's structure changed during the run (",
        params_.size(),
        " parameters, ",
        buffers_.size(),
        " buffers saved; ",
        params.size(),
        " and ",
        buffers.size(),
        " now)");
    for (std::size_t i = 0; i < params.size(); ++i) {
      params[i].copy_(params_[i]);
      if (grads_[i].defined()) {
        params[i].mutable_grad() = grads_[i].clone();
      } else {
        params[i].mutable_grad() = torch::Tensor();
      }
    }
    for (std::size_t i = 0; i < buffers.size(); ++i) {
      if (buffers_[i].defined() && buffers[i].defined()) {
        buffers[i].copy_(buffers_[i]);
      }
    }
    // Module::train(bool) recurses; modules() is in pre-order, so setting
    // each module in order leaves every one with its own saved flag.
    for (std::size_t i = 0; i < modules.size(); ++i) {
      modules[i]->train(training_[i]);
    }
  }

  /// Copies only the parameter and buffer values (not gradients or training
  /// flags) into `module`: used to start several models from one initial
  /// state.
  void load_values_into(torch::nn::Module& module) const {
    torch::NoGradGuard no_grad;
    auto params = module.parameters(/*recurse=*/true);
    auto buffers = module.buffers(/*recurse=*/true);
    TORCH_CHECK(
        params.size() == params_.size() && buffers.size() == buffers_.size(),
        "make_model: every model must have the same structure, but the first "
        "had ",
        params_.size(),
        " parameters and ",
        buffers_.size(),
        " buffers, and this one has ",
        params.size(),
        " and ",
        buffers.size());
    for (std::size_t i = 0; i < params.size(); ++i) {
      TORCH_CHECK(
          params[i].sizes() == params_[i].sizes(),
          "make_model: parameter ",
          i,
          " has shape ",
          params[i].sizes(),
          " but the first model's has ",
          params_[i].sizes());
      params[i].copy_(params_[i]);
    }
    for (std::size_t i = 0; i < buffers.size(); ++i) {
      if (buffers_[i].defined() && buffers[i].defined()) {
        buffers[i].copy_(buffers_[i]);
      }
    }
  }

 private:
  std::vector<torch::Tensor> params_;
  std::vector<torch::Tensor> grads_;
  std::vector<torch::Tensor> buffers_;
  std::vector<bool> training_;
};

inline torch::Tensor clone_if_defined(const torch::Tensor& t) {
  return t.defined() ? t.detach().clone() : torch::Tensor();
}

/// A deep copy (tensors cloned) of the per-parameter state of LibTorch's
/// SGD, Adam, AdamW, RMSprop and Adagrad; null for any other type.
inline std::unique_ptr<torch::optim::OptimizerParamState>
deep_clone_param_state(const torch::optim::OptimizerParamState& s) {
  namespace o = torch::optim;
  if (auto* p = dynamic_cast<const o::SGDParamState*>(&s)) {
    auto c = std::make_unique<o::SGDParamState>(*p);
    c->momentum_buffer(clone_if_defined(p->momentum_buffer()));
    return c;
  }
  if (auto* p = dynamic_cast<const o::AdamParamState*>(&s)) {
    auto c = std::make_unique<o::AdamParamState>(*p);
    c->exp_avg(clone_if_defined(p->exp_avg()));
    c->exp_avg_sq(clone_if_defined(p->exp_avg_sq()));
    c->max_exp_avg_sq(clone_if_defined(p->max_exp_avg_sq()));
    return c;
  }
  if (auto* p = dynamic_cast<const o::AdamWParamState*>(&s)) {
    auto c = std::make_unique<o::AdamWParamState>(*p);
    c->exp_avg(clone_if_defined(p->exp_avg()));
    c->exp_avg_sq(clone_if_defined(p->exp_avg_sq()));
    c->max_exp_avg_sq(clone_if_defined(p->max_exp_avg_sq()));
    return c;
  }
  if (auto* p = dynamic_cast<const o::RMSpropParamState*>(&s)) {
    auto c = std::make_unique<o::RMSpropParamState>(*p);
    c->square_avg(clone_if_defined(p->square_avg()));
    c->momentum_buffer(clone_if_defined(p->momentum_buffer()));
    c->grad_avg(clone_if_defined(p->grad_avg()));
    return c;
  }
  if (auto* p = dynamic_cast<const o::AdagradParamState*>(&s)) {
    auto c = std::make_unique<o::AdagradParamState>(*p);
    c->sum(clone_if_defined(p->sum()));
    return c;
  }
  return nullptr;
}

/// A deep copy of an optimizer: every param group's options (lr, momentum,
/// betas, weight decay, ...) and the per-parameter state (momentum buffers,
/// Adam moments and step counts). LibTorch's SGD, Adam, AdamW, RMSprop and
/// Adagrad states are cloned directly; any other optimizer goes through its
/// own serialization into memory. Both copy tensors and doubles exactly.
/// `restore` also drops state that was created after the snapshot.
class OptimizerSnapshot {
 public:
  explicit OptimizerSnapshot(const torch::optim::Optimizer& optimizer) {
    for (const auto& g : optimizer.param_groups()) {
      options_.push_back(g.options().clone());
    }
    for (const auto& [key, state] : optimizer.state()) {
      auto copy = deep_clone_param_state(*state);
      if (copy == nullptr) {
        state_.clear();
        serialized_ = true;
        break;
      }
      state_.emplace_back(key, std::move(copy));
    }
    if (serialized_) {
      torch::serialize::OutputArchive archive;
      optimizer.save(archive);
      std::ostringstream out;
      archive.save_to(out);
      bytes_ = out.str();
    }
  }

  void restore(torch::optim::Optimizer& optimizer) const {
    auto& groups = optimizer.param_groups();
    TORCH_CHECK(
        groups.size() == options_.size(),
        "LRFinder: the optimizer's number of param groups changed during the "
        "run (",
        options_.size(),
        " saved, ",
        groups.size(),
        " now)");
    optimizer.state().clear();
    if (serialized_) {
      std::istringstream in(bytes_);
      torch::serialize::InputArchive archive;
      archive.load_from(in);
      optimizer.load(archive);
    } else {
      for (const auto& [key, state] : state_) {
        optimizer.state()[key] = deep_clone_param_state(*state);
      }
    }
    for (std::size_t i = 0; i < groups.size(); ++i) {
      groups[i].set_options(options_[i]->clone());
    }
  }

 private:
  std::vector<std::unique_ptr<torch::optim::OptimizerOptions>> options_;
  std::vector<std::pair<
      OptimizerStateKey,
      std::unique_ptr<torch::optim::OptimizerParamState>>>
      state_;
  bool serialized_ = false;
  std::string bytes_;
};

} // namespace detail
} // namespace dlcore
