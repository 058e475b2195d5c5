#pragma once

// Selecting parameters by name, freezing and unfreezing them, and ordered
// layer groups (`freeze_to`).
//
// The rest of the transfer-learning toolkit has its own headers:
//   nn/batch_norm_policy.h     FrozenBatchNorm2d, EvalStickyBatchNorm2d,
//                              BatchNormPolicy, set_batchnorm_policy
//   nn/forward_child.h         forward_child
//   nn/heads.h                 replace_head, replace_linear_head
//   optim/param_groups.h       discriminative_lrs, discriminative_param_groups,
//                              add_trainable_param_group
//   optim/gradual_unfreezing.h GradualUnfreezing
// This header still includes the three nn/ ones, for one release, so that
// code written when they lived here keeps compiling; the optim/ ones must be
// included by name (nn/ never includes optim/).

#include <dlcore/detail/module_handle.h>
#include <dlcore/detail/module_walk.h>
// For one release only (deprecated): include these by name.
#include <dlcore/nn/batch_norm_policy.h>
#include <dlcore/nn/forward_child.h>
#include <dlcore/nn/heads.h>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <memory>
#include <regex>
#include <string>
#include <utility>
#include <vector>

namespace dlcore {

// ---------------------------------------------------------------------------
// Selecting parameters
// ---------------------------------------------------------------------------

/// Selects parameters of a module by their dotted name (as in
/// `named_parameters()`, e.g. "layer1.0.conv1.weight").
///
/// A prefix matches whole name components: "layer1" selects
/// "layer1.0.conv1.weight" and "layer1" itself but not "layer10.weight"; the
/// empty prefix selects everything. A regex (ECMAScript) selects the names in
/// which it is found anywhere (`std::regex_search`, as Python's `re.search`).
///
/// Example:
///   dlcore::freeze(model, "layer1");                          // prefix
///   dlcore::freeze(model, dlcore::ParamSelector::regex("bn"));  // regex
class ParamSelector {
 public:
  /// A prefix selector (implicit, so a string literal reads as a prefix).
  ParamSelector(std::string prefix)
      : kind_(Kind::kPrefix), text_(std::move(prefix)) {}
  ParamSelector(const char* prefix) : ParamSelector(std::string(prefix)) {}

  /// Names starting with the dotted `prefix`.
  static ParamSelector prefix(std::string prefix) {
    return ParamSelector(std::move(prefix));
  }
  /// Names in which `pattern` (ECMAScript regex) is found.
  static ParamSelector regex(std::string pattern) {
    ParamSelector s(pattern);
    s.kind_ = Kind::kRegex;
    try {
      s.regex_ = std::regex(pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      TORCH_CHECK(
          false,
          "ParamSelector: expected a valid ECMAScript regex, but got '",
          pattern,
          "' (",
          e.what(),
          ")");
    }
    return s;
  }

  /// True when `name` is selected.
  bool matches(const std::string& name) const {
    if (kind_ == Kind::kRegex) {
      return std::regex_search(name, regex_);
    }
    if (text_.empty() || name == text_) {
      return true;
    }
    if (!text_.empty() && text_.back() == '.') {
      return name.compare(0, text_.size(), text_) == 0;
    }
    return name.size() > text_.size() &&
           name.compare(0, text_.size(), text_) == 0 &&
           name[text_.size()] == '.';
  }

  /// "prefix 'layer1'" or "regex 'bn'", for messages.
  std::string describe() const {
    return (kind_ == Kind::kRegex ? "regex '" : "prefix '") + text_ + "'";
  }

 private:
  enum class Kind { kPrefix, kRegex };
  Kind kind_;
  std::string text_;
  std::regex regex_;
};

/// The distinct parameters of `module` (the module, its holder or a
/// shared_ptr to it, see `ModuleRef`) whose names `selector` selects, in
/// registration order. A `c10::Error` names the selector and a few parameter
/// names when nothing matches.
inline std::vector<torch::Tensor> select_parameters(
    ConstModuleRef module, const ParamSelector& selector) {
  std::vector<torch::Tensor> out;
  const auto named =
      detail::unique_named_parameters(module.get("select_parameters"));
  for (const auto& [name, tensor] : named) {
    if (selector.matches(name)) {
      out.push_back(tensor);
    }
  }
  if (out.empty()) {
    std::string examples;
    for (std::size_t i = 0; i < named.size() && i < 4; ++i) {
      examples += (i ? ", " : "") + named[i].first;
    }
    TORCH_CHECK(
        false,
        "select_parameters: expected the ",
        selector.describe(),
        " to match at least one parameter, but it matches none (",
        named.size(),
        " parameters, e.g. ",
        examples.empty() ? std::string("none") : examples,
        ")");
  }
  return out;
}

// ---------------------------------------------------------------------------
// Freezing
// ---------------------------------------------------------------------------

/// Sets `requires_grad = false` on every tensor; returns how many changed.
/// A frozen parameter gets no gradient, so every torch::optim optimizer skips
/// it (no update, no weight decay, no momentum).
inline int64_t freeze(const std::vector<torch::Tensor>& tensors) {
  return detail::set_requires_grad(tensors, false);
}
/// Sets `requires_grad = true` on every tensor; returns how many changed.
inline int64_t unfreeze(const std::vector<torch::Tensor>& tensors) {
  return detail::set_requires_grad(tensors, true);
}

/// Freezes every parameter of `module` (any submodule works:
/// `freeze(model->layer1)`); returns how many tensors changed. `module` is
/// the module, its holder or a shared_ptr to it (see `ModuleRef`), as for
/// every function here.
///
/// Example:
///   dlcore::freeze(model);
///   dlcore::unfreeze(model, "fc");  // only the head trains
///
/// Differences from PyTorch (Python): PyTorch has no helper; this is the loop
/// `for p in m.parameters(): p.requires_grad = False`, counting changes.
/// Batch-norm running statistics are buffers, not parameters: see
/// `set_batchnorm_policy`.
inline int64_t freeze(ModuleRef module) {
  return freeze(module.get("freeze").parameters(/*recurse=*/true));
}
/// Unfreezes every parameter of `module`; returns how many tensors changed.
inline int64_t unfreeze(ModuleRef module) {
  return unfreeze(module.get("unfreeze").parameters(/*recurse=*/true));
}
/// Freezes the parameters `selector` selects; error when none matches.
inline int64_t freeze(ModuleRef module, const ParamSelector& selector) {
  return freeze(select_parameters(module.get("freeze"), selector));
}
/// Unfreezes the parameters `selector` selects; error when none matches.
inline int64_t unfreeze(ModuleRef module, const ParamSelector& selector) {
  return unfreeze(select_parameters(module.get("unfreeze"), selector));
}

/// Trainable and frozen parameter counts of a module (each shared tensor
/// counted once).
struct ParameterCounts {
  /// Elements in tensors with requires_grad.
  int64_t trainable = 0;
  /// Elements in tensors without requires_grad.
  int64_t frozen = 0;
  /// Tensors with requires_grad.
  int64_t trainable_tensors = 0;
  /// Tensors without requires_grad.
  int64_t frozen_tensors = 0;
  /// All elements.
  int64_t total() const {
    return trainable + frozen;
  }
};

/// Counts trainable and frozen parameters of `module`.
inline ParameterCounts parameter_counts(ConstModuleRef module) {
  ParameterCounts c;
  for (const auto& [name, t] :
       detail::unique_named_parameters(module.get("parameter_counts"))) {
    (void)name;
    if (t.requires_grad()) {
      c.trainable += t.numel();
      ++c.trainable_tensors;
    } else {
      c.frozen += t.numel();
      ++c.frozen_tensors;
    }
  }
  return c;
}

// ---------------------------------------------------------------------------
// Layer groups
// ---------------------------------------------------------------------------

/// An ordered list of layer groups, from the input (index 0) to the head.
using LayerGroups = std::vector<std::vector<torch::Tensor>>;

/// Layer groups from selectors: each parameter goes to the first selector
/// that selects it. A selector that gets no parameter is an error; so is a
/// parameter no selector takes, unless `allow_unassigned`.
///
/// Example:
///   auto groups = dlcore::layer_groups(model,
///       {"conv1", "bn1", "layer1", "layer2", "layer3", "fc"});
inline LayerGroups layer_groups(
    ConstModuleRef model,
    const std::vector<ParamSelector>& selectors,
    bool allow_unassigned = false) {
  TORCH_CHECK(
      !selectors.empty(),
      "layer_groups: expected at least one selector, but got none");
  LayerGroups groups(selectors.size());
  std::vector<std::string> unassigned;
  for (const auto& [name, t] :
       detail::unique_named_parameters(model.get("layer_groups"))) {
    bool taken = false;
    for (std::size_t g = 0; g < selectors.size() && !taken; ++g) {
      if (selectors[g].matches(name)) {
        groups[g].push_back(t);
        taken = true;
      }
    }
    if (!taken) {
      unassigned.push_back(name);
    }
  }
  for (std::size_t g = 0; g < selectors.size(); ++g) {
    TORCH_CHECK(
        !groups[g].empty(),
        "layer_groups: expected group ",
        g,
        " (",
        selectors[g].describe(),
        ") to receive at least one parameter, but it received none");
  }
  if (!allow_unassigned && !unassigned.empty()) {
    std::string names;
    for (std::size_t i = 0; i < unassigned.size() && i < 5; ++i) {
      names += (i ? ", " : "") + unassigned[i];
    }
    TORCH_CHECK(
        false,
        "layer_groups: expected every parameter in a group, but ",
        unassigned.size(),
        " are in none (",
        names,
        unassigned.size() > 5 ? ", ..." : "",
        "); add selectors or pass allow_unassigned = true");
  }
  return groups;
}

/// Layer groups from submodules, one group per module, in the given order.
inline LayerGroups layer_groups(
    const std::vector<std::shared_ptr<torch::nn::Module>>& modules) {
  LayerGroups groups;
  for (std::size_t g = 0; g < modules.size(); ++g) {
    TORCH_CHECK(
        modules[g] != nullptr,
        "layer_groups: expected non-null modules, but module ",
        g,
        " is null");
    groups.push_back(modules[g]->parameters(/*recurse=*/true));
  }
  return groups;
}

/// Freezes groups `[0, n)` and unfreezes groups `[n, G)`; a negative `n`
/// counts from the end (`freeze_to(groups, -1)` leaves only the last group
/// trainable), as fastai's `Learner.freeze_to`. Returns how many tensors
/// changed. `n` must lie in [-G, G].
///
/// Differences from fastai: fastai clamps out-of-range `n`; here it is an
/// error. fastai also keeps batch-norm layers of frozen groups trainable by
/// default (`train_bn=True`); here parameters are frozen exactly as selected,
/// and batch norm follows `set_batchnorm_policy`.
inline int64_t freeze_to(const LayerGroups& groups, int64_t n) {
  const auto count = static_cast<int64_t>(groups.size());
  TORCH_CHECK(
      n >= -count && n <= count,
      "freeze_to: expected n in [-",
      count,
      ", ",
      count,
      "] for ",
      count,
      " layer groups, but got ",
      n);
  const int64_t boundary = n < 0 ? count + n : n;
  int64_t changed = 0;
  for (int64_t g = 0; g < count; ++g) {
    changed += detail::set_requires_grad(
        groups[static_cast<std::size_t>(g)], g >= boundary);
  }
  return changed;
}

} // namespace dlcore
