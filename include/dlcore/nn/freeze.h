#pragma once

// Freezing and unfreezing parameters, batch-norm policies, head replacement
// and optimizer integration for transfer learning.

#include <dlcore/nn/detail/module_walk.h>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/optim/optimizer.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <regex>
#include <string>
#include <unordered_set>
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
///   dlcore::freeze(*model, "layer1");                          // prefix
///   dlcore::freeze(*model, dlcore::ParamSelector::regex("bn"));  // regex
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

/// The distinct parameters of `module` whose names `selector` selects, in
/// registration order. A `c10::Error` names the selector and a few parameter
/// names when nothing matches.
inline std::vector<torch::Tensor> select_parameters(
    const torch::nn::Module& module, const ParamSelector& selector) {
  std::vector<torch::Tensor> out;
  const auto named = detail::freeze_unique_named_parameters(module);
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
  return detail::freeze_set_requires_grad(tensors, false);
}
/// Sets `requires_grad = true` on every tensor; returns how many changed.
inline int64_t unfreeze(const std::vector<torch::Tensor>& tensors) {
  return detail::freeze_set_requires_grad(tensors, true);
}

/// Freezes every parameter of `module` (any submodule works:
/// `freeze(*model->layer1)`); returns how many tensors changed.
///
/// Example:
///   dlcore::freeze(*model);
///   dlcore::unfreeze(*model, "fc");  // only the head trains
///
/// Differences from PyTorch (Python): PyTorch has no helper; this is the loop
/// `for p in m.parameters(): p.requires_grad = False`, counting changes.
/// Batch-norm running statistics are buffers, not parameters: see
/// `set_batchnorm_policy`.
inline int64_t freeze(torch::nn::Module& module) {
  return freeze(module.parameters(/*recurse=*/true));
}
/// Unfreezes every parameter of `module`; returns how many tensors changed.
inline int64_t unfreeze(torch::nn::Module& module) {
  return unfreeze(module.parameters(/*recurse=*/true));
}
/// Freezes the parameters `selector` selects; error when none matches.
inline int64_t freeze(
    torch::nn::Module& module, const ParamSelector& selector) {
  return freeze(select_parameters(module, selector));
}
/// Unfreezes the parameters `selector` selects; error when none matches.
inline int64_t unfreeze(
    torch::nn::Module& module, const ParamSelector& selector) {
  return unfreeze(select_parameters(module, selector));
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
inline ParameterCounts parameter_counts(const torch::nn::Module& module) {
  ParameterCounts c;
  for (const auto& [name, t] : detail::freeze_unique_named_parameters(module)) {
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
///   auto groups = dlcore::layer_groups(*model,
///       {"conv1", "bn1", "layer1", "layer2", "layer3", "fc"});
inline LayerGroups layer_groups(
    const torch::nn::Module& model,
    const std::vector<ParamSelector>& selectors,
    bool allow_unassigned = false) {
  TORCH_CHECK(
      !selectors.empty(),
      "layer_groups: expected at least one selector, but got none");
  LayerGroups groups(selectors.size());
  std::vector<std::string> unassigned;
  for (const auto& [name, t] : detail::freeze_unique_named_parameters(model)) {
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
    changed += detail::freeze_set_requires_grad(
        groups[static_cast<std::size_t>(g)], g >= boundary);
  }
  return changed;
}

// ---------------------------------------------------------------------------
// Batch norm
// ---------------------------------------------------------------------------

/// A 2-d batch norm whose statistics and affine transform are buffers: it
/// always normalizes with the stored running statistics, in train and eval
/// mode alike, and has no parameters.
///
/// y = (x - running_mean) / sqrt(running_var + eps) * weight + bias,
/// computed as x * scale + shift per channel.
///
/// Example:
///   dlcore::FrozenBatchNorm2d bn(64);
///   auto y = bn(torch::randn({8, 64, 4, 4}));
///
/// Differences from PyTorch (Python): torchvision.ops.FrozenBatchNorm2d
/// drops `num_batches_tracked`; this module keeps it as a buffer (never
/// updated) so that its state has exactly BatchNorm2d's names and
/// checkpoints move between the two.
class FrozenBatchNorm2dImpl
    : public torch::nn::Cloneable<FrozenBatchNorm2dImpl> {
 public:
  explicit FrozenBatchNorm2dImpl(int64_t num_features, double eps = 1e-5)
      : num_features(num_features), eps(eps) {
    TORCH_CHECK(
        num_features > 0,
        "FrozenBatchNorm2d: expected num_features > 0, but got ",
        num_features);
    TORCH_CHECK(
        eps >= 0.0, "FrozenBatchNorm2d: expected eps >= 0, but got ", eps);
    reset();
  }

  /// Copies the statistics and affine transform of `bn` (ones and zeros for
  /// a batch norm without affine). `bn` must track running statistics.
  explicit FrozenBatchNorm2dImpl(const torch::nn::BatchNorm2dImpl& bn)
      : FrozenBatchNorm2dImpl(bn.options.num_features(), bn.options.eps()) {
    TORCH_CHECK(
        bn.options.track_running_stats() && bn.running_mean.defined(),
        "FrozenBatchNorm2d: expected a BatchNorm2d that tracks running "
        "statistics, but got one with track_running_stats = false");
    to(bn.running_mean.device(), bn.running_mean.scalar_type());
    torch::NoGradGuard no_grad;
    if (bn.weight.defined()) {
      weight.copy_(bn.weight);
      bias.copy_(bn.bias);
    }
    running_mean.copy_(bn.running_mean);
    running_var.copy_(bn.running_var);
    if (bn.num_batches_tracked.defined()) {
      num_batches_tracked.copy_(bn.num_batches_tracked);
    }
  }

  void reset() override {
    weight = register_buffer("weight", torch::ones({num_features}));
    bias = register_buffer("bias", torch::zeros({num_features}));
    running_mean =
        register_buffer("running_mean", torch::zeros({num_features}));
    running_var = register_buffer("running_var", torch::ones({num_features}));
    num_batches_tracked =
        register_buffer("num_batches_tracked", torch::zeros({}, torch::kLong));
  }

  torch::Tensor forward(const torch::Tensor& input) {
    TORCH_CHECK(
        input.dim() == 4 && input.size(1) == num_features,
        "FrozenBatchNorm2d: expected input [N, ",
        num_features,
        ", H, W], but got ",
        input.sizes());
    const auto scale = weight * (running_var + eps).rsqrt();
    const auto shift = bias - running_mean * scale;
    return input * scale.reshape({1, -1, 1, 1}) + shift.reshape({1, -1, 1, 1});
  }

  void pretty_print(std::ostream& stream) const override {
    stream << "dlcore::FrozenBatchNorm2d(" << num_features << ", eps=" << eps
           << ")";
  }

  int64_t num_features;
  double eps;
  torch::Tensor weight;
  torch::Tensor bias;
  torch::Tensor running_mean;
  torch::Tensor running_var;
  torch::Tensor num_batches_tracked;
};
TORCH_MODULE(FrozenBatchNorm2d);

/// A 2-d batch norm that always behaves as BatchNorm2d in eval mode: it
/// normalizes with its running statistics and never updates them, even after
/// `model->train()`; its affine `weight` and `bias` stay parameters
/// (trainable unless frozen). Its state has BatchNorm2d's names.
///
/// y = (x - running_mean) / sqrt(running_var + eps) * weight + bias
///
/// Example:
///   dlcore::EvalStickyBatchNorm2d bn(torch::nn::BatchNormOptions(64));
///   bn->train();  // still uses and keeps the running statistics
///
/// Differences from PyTorch (Python): Python recipes re-call `bn.eval()`
/// after each `model.train()`; here the module type carries the policy.
class EvalStickyBatchNorm2dImpl
    : public torch::nn::Cloneable<EvalStickyBatchNorm2dImpl> {
 public:
  explicit EvalStickyBatchNorm2dImpl(torch::nn::BatchNormOptions options)
      : options(std::move(options)) {
    TORCH_CHECK(
        this->options.num_features() > 0,
        "EvalStickyBatchNorm2d: expected num_features > 0, but got ",
        this->options.num_features());
    TORCH_CHECK(
        this->options.track_running_stats(),
        "EvalStickyBatchNorm2d: expected track_running_stats = true, but "
        "got false (there are no running statistics to keep)");
    reset();
  }
  explicit EvalStickyBatchNorm2dImpl(int64_t num_features)
      : EvalStickyBatchNorm2dImpl(torch::nn::BatchNormOptions(num_features)) {}

  void reset() override {
    const auto n = options.num_features();
    if (options.affine()) {
      weight = register_parameter("weight", torch::ones({n}));
      bias = register_parameter("bias", torch::zeros({n}));
    }
    running_mean = register_buffer("running_mean", torch::zeros({n}));
    running_var = register_buffer("running_var", torch::ones({n}));
    num_batches_tracked =
        register_buffer("num_batches_tracked", torch::zeros({}, torch::kLong));
  }

  torch::Tensor forward(const torch::Tensor& input) {
    TORCH_CHECK(
        input.dim() == 4 && input.size(1) == options.num_features(),
        "EvalStickyBatchNorm2d: expected input [N, ",
        options.num_features(),
        ", H, W], but got ",
        input.sizes());
    return at::batch_norm(
        input,
        weight,
        bias,
        running_mean,
        running_var,
        /*training=*/false,
        /*momentum=*/0.0,
        options.eps(),
        /*cudnn_enabled=*/true);
  }

  /// Always false: the module behaves as in eval mode whatever `train()`
  /// set.
  bool is_training() const noexcept override {
    return false;
  }

  void pretty_print(std::ostream& stream) const override {
    stream << "dlcore::EvalStickyBatchNorm2d(" << options.num_features()
           << ", eps=" << options.eps() << ")";
  }

  torch::nn::BatchNormOptions options;
  torch::Tensor weight;
  torch::Tensor bias;
  torch::Tensor running_mean;
  torch::Tensor running_var;
  torch::Tensor num_batches_tracked;
};
TORCH_MODULE(EvalStickyBatchNorm2d);

/// What batch-norm layers do while the rest of a model trains.
enum class BatchNormPolicy {
  /// Plain BatchNorm2d: batch statistics in train mode, running statistics
  /// updated, affine trainable.
  kTrain,
  /// EvalStickyBatchNorm2d: running statistics used and kept, even after
  /// `train()`; affine parameters keep training unless frozen.
  kEvalSticky,
  /// FrozenBatchNorm2d: statistics and affine are buffers; nothing changes.
  kFrozen,
};

/// Replaces every 2-d batch norm below `model` (BatchNorm2d,
/// EvalStickyBatchNorm2d, FrozenBatchNorm2d) by the type of `policy`,
/// carrying over statistics, affine values and device; returns how many
/// modules were replaced (those already of the target type are left alone).
/// Converting to kTrain or kEvalSticky makes the affine parameters
/// trainable when they come from a FrozenBatchNorm2d, and keeps their
/// `requires_grad` otherwise. Optimizers built before the call still hold the
/// old tensors: build them, or add groups, afterwards.
///
/// The replacement happens in the parents' module registries
/// (`replace_module`). It takes effect for models whose forward() reaches the
/// layer through the registry, as dlcore's models do
/// (`ResNetCifar`); a model that calls a typed member holder (`bn1(x)` with
/// `torch::nn::BatchNorm2d bn1`) keeps calling the old module. A batch norm
/// directly inside a torch::nn::Sequential is an error, because Sequential
/// runs its own list. For such models use `set_batchnorm_eval` after each
/// `train()`.
///
/// Example:
///   dlcore::set_batchnorm_policy(*model, dlcore::BatchNormPolicy::kFrozen);
///   model->train();  // batch norms still use and keep their statistics
inline int64_t set_batchnorm_policy(
    torch::nn::Module& model, BatchNormPolicy policy) {
  int64_t replaced = 0;
  detail::freeze_walk_edges(
      model,
      "",
      [&](torch::nn::Module& parent,
          const std::string& child_name,
          const std::string& dotted,
          const std::shared_ptr<torch::nn::Module>& child) {
        auto* frozen = dynamic_cast<FrozenBatchNorm2dImpl*>(child.get());
        auto* sticky = dynamic_cast<EvalStickyBatchNorm2dImpl*>(child.get());
        auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(child.get());
        if ((frozen == nullptr && sticky == nullptr && bn == nullptr) ||
            (policy == BatchNormPolicy::kFrozen && frozen != nullptr) ||
            (policy == BatchNormPolicy::kEvalSticky && sticky != nullptr) ||
            (policy == BatchNormPolicy::kTrain && bn != nullptr)) {
          return;
        }
        TORCH_CHECK(
            !detail::freeze_is_sequential(parent),
            "set_batchnorm_policy: '",
            dotted,
            "' is a batch norm directly inside a torch::nn::Sequential, whose "
            "forward() runs its own list of modules, so it cannot be replaced; "
            "build the Sequential with the wanted batch-norm type, or call "
            "dlcore::set_batchnorm_eval(model) after each train()");
        // The source's options and state, whatever its type.
        torch::nn::BatchNormOptions options(1);
        torch::Tensor w, b, mean, var, count;
        bool trainable = true;
        if (bn != nullptr) {
          options = bn->options;
          TORCH_CHECK(
              options.track_running_stats(),
              "set_batchnorm_policy: '",
              dotted,
              "' has track_running_stats = false, so there are no running "
              "statistics to keep");
          w = bn->weight;
          b = bn->bias;
          mean = bn->running_mean;
          var = bn->running_var;
          count = bn->num_batches_tracked;
        } else if (sticky != nullptr) {
          options = sticky->options;
          w = sticky->weight;
          b = sticky->bias;
          mean = sticky->running_mean;
          var = sticky->running_var;
          count = sticky->num_batches_tracked;
        } else {
          options = torch::nn::BatchNormOptions(frozen->num_features)
                        .eps(frozen->eps);
          w = frozen->weight;
          b = frozen->bias;
          mean = frozen->running_mean;
          var = frozen->running_var;
          count = frozen->num_batches_tracked;
        }
        if (frozen == nullptr && w.defined()) {
          trainable = w.requires_grad();
        }
        std::shared_ptr<torch::nn::Module> replacement;
        torch::Tensor nw, nb, nmean, nvar, ncount;
        if (policy == BatchNormPolicy::kFrozen) {
          auto m = std::make_shared<FrozenBatchNorm2dImpl>(
              options.num_features(), options.eps());
          replacement = m;
          nw = m->weight;
          nb = m->bias;
          nmean = m->running_mean;
          nvar = m->running_var;
          ncount = m->num_batches_tracked;
        } else if (policy == BatchNormPolicy::kEvalSticky) {
          auto m = std::make_shared<EvalStickyBatchNorm2dImpl>(options);
          replacement = m;
          nw = m->weight;
          nb = m->bias;
          nmean = m->running_mean;
          nvar = m->running_var;
          ncount = m->num_batches_tracked;
        } else {
          auto m = std::make_shared<torch::nn::BatchNorm2dImpl>(options);
          replacement = m;
          nw = m->weight;
          nb = m->bias;
          nmean = m->running_mean;
          nvar = m->running_var;
          ncount = m->num_batches_tracked;
        }
        // Device and dtype first (in place: the members stay valid), values
        // after, so no precision is lost on the way.
        replacement->to(mean.device(), mean.scalar_type());
        {
          torch::NoGradGuard no_grad;
          if (nw.defined() && w.defined()) {
            nw.copy_(w);
            nb.copy_(b);
          }
          nmean.copy_(mean);
          nvar.copy_(var);
          if (ncount.defined() && count.defined()) {
            ncount.copy_(count);
          }
        }
        if (policy != BatchNormPolicy::kFrozen && nw.defined()) {
          nw.requires_grad_(trainable);
          nb.requires_grad_(trainable);
        }
        replacement->train(parent.is_training());
        parent.replace_module(child_name, replacement);
        ++replaced;
      });
  return replaced;
}

/// Replaces every batch norm below `model` by a FrozenBatchNorm2d; returns
/// how many were replaced. Same as
/// `set_batchnorm_policy(model, BatchNormPolicy::kFrozen)`.
inline int64_t convert_frozen_batchnorm(torch::nn::Module& model) {
  return set_batchnorm_policy(model, BatchNormPolicy::kFrozen);
}

/// Replaces every FrozenBatchNorm2d / EvalStickyBatchNorm2d below `model` by
/// a plain BatchNorm2d; returns how many were replaced. Same as
/// `set_batchnorm_policy(model, BatchNormPolicy::kTrain)`.
inline int64_t convert_to_batchnorm(torch::nn::Module& model) {
  return set_batchnorm_policy(model, BatchNormPolicy::kTrain);
}

/// Puts every batch norm (1-d, 2-d, 3-d) below and including `model` in eval
/// mode in place, for models whose layers cannot be replaced; returns how
/// many. The effect lasts until the next `train()`, so call it after each.
inline int64_t set_batchnorm_eval(torch::nn::Module& model) {
  int64_t count = 0;
  for (const auto& m : model.modules(/*include_self=*/true)) {
    if (dynamic_cast<torch::nn::BatchNorm1dImpl*>(m.get()) ||
        dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get()) ||
        dynamic_cast<torch::nn::BatchNorm3dImpl*>(m.get())) {
      m->eval();
      ++count;
    }
  }
  return count;
}

/// Calls the child registered in `parent` under `name` on `input`, looking
/// it up in the registry at each call, so that a later `replace_module`
/// (`set_batchnorm_policy`, `replace_head`) takes effect. Supported child
/// types: Linear, Conv2d, BatchNorm2d, EvalStickyBatchNorm2d,
/// FrozenBatchNorm2d, Identity and Sequential; others are an error.
///
/// Example (in a model's forward):
///   x = dlcore::forward_child(*this, "bn1", x);
inline torch::Tensor forward_child(
    torch::nn::Module& parent,
    const std::string& name,
    const torch::Tensor& input) {
  auto& child = detail::freeze_find_module(parent, name, "forward_child");
  if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(&child)) {
    return bn->forward(input);
  }
  if (auto* frozen = dynamic_cast<FrozenBatchNorm2dImpl*>(&child)) {
    return frozen->forward(input);
  }
  if (auto* sticky = dynamic_cast<EvalStickyBatchNorm2dImpl*>(&child)) {
    return sticky->forward(input);
  }
  if (auto* linear = dynamic_cast<torch::nn::LinearImpl*>(&child)) {
    return linear->forward(input);
  }
  if (auto* conv = dynamic_cast<torch::nn::Conv2dImpl*>(&child)) {
    return conv->forward(input);
  }
  if (auto* identity = dynamic_cast<torch::nn::IdentityImpl*>(&child)) {
    return identity->forward(input);
  }
  if (auto* seq = dynamic_cast<torch::nn::SequentialImpl*>(&child)) {
    return seq->forward(input);
  }
  TORCH_CHECK(
      false,
      "forward_child: expected '",
      name,
      "' to be a Linear, Conv2d, BatchNorm2d, EvalStickyBatchNorm2d, "
      "FrozenBatchNorm2d, Identity or Sequential, but it is ",
      child.name());
  return torch::Tensor();
}

// ---------------------------------------------------------------------------
// Heads
// ---------------------------------------------------------------------------

/// Replaces the submodule at dotted path `name` (e.g. "fc",
/// "classifier.6") by `head` in its parent's registry and returns `head`.
/// An unknown name is an error naming the existing children.
///
/// As with every `replace_module`, a model that calls a typed member holder
/// must reassign it: `model->fc = dlcore::replace_head(*model, "fc", h)`;
/// dlcore's models reach their head through the registry and need not.
template <typename ModuleType>
std::shared_ptr<ModuleType> replace_head(
    torch::nn::Module& model,
    const std::string& name,
    std::shared_ptr<ModuleType> head) {
  TORCH_CHECK(
      head != nullptr, "replace_head: expected a module, but got nullptr");
  TORCH_CHECK(
      !name.empty(), "replace_head: expected a submodule name, but got ''");
  const auto [parent_path, child] = detail::freeze_split_last(name);
  auto& parent = detail::freeze_find_module(model, parent_path, "replace_head");
  // Check that the child exists (error lists the children otherwise).
  auto& old = detail::freeze_find_module(parent, child, "replace_head");
  TORCH_CHECK(
      !detail::freeze_is_sequential(parent),
      "replace_head: '",
      name,
      "' is inside a torch::nn::Sequential, whose forward() runs its own "
      "list of modules; rebuild the Sequential instead");
  head->train(old.is_training());
  parent.replace_module(child, head);
  return head;
}

/// Holder overload: `replace_head(*model, "fc", torch::nn::Linear(512, 5))`.
template <typename Contained>
torch::nn::ModuleHolder<Contained> replace_head(
    torch::nn::Module& model,
    const std::string& name,
    torch::nn::ModuleHolder<Contained> head) {
  replace_head(model, name, head.ptr());
  return head;
}

/// Replaces the Linear at `name` by a new Linear with the same input size and
/// `num_classes` outputs, on the old one's device and dtype; returns it.
/// With a `seed`, weight and bias are drawn from U(-1/sqrt(in), 1/sqrt(in))
/// with a generator of that seed (the bounds LibTorch's default init uses);
/// without, LibTorch's default init with the global generator.
///
/// Example:
///   dlcore::replace_linear_head(*model, "fc", 5, /*seed=*/0);
inline torch::nn::Linear replace_linear_head(
    torch::nn::Module& model,
    const std::string& name,
    int64_t num_classes,
    std::optional<uint64_t> seed = std::nullopt) {
  TORCH_CHECK(
      num_classes > 0,
      "replace_linear_head: expected num_classes > 0, but got ",
      num_classes);
  auto& old = detail::freeze_find_module(model, name, "replace_linear_head");
  auto* linear = dynamic_cast<torch::nn::LinearImpl*>(&old);
  TORCH_CHECK(
      linear != nullptr,
      "replace_linear_head: expected '",
      name,
      "' to be a torch::nn::Linear, but it is ",
      old.name());
  const auto in = linear->options.in_features();
  torch::nn::Linear head(
      torch::nn::LinearOptions(in, num_classes).bias(linear->options.bias()));
  if (seed) {
    auto gen = at::detail::createCPUGenerator(*seed);
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    torch::NoGradGuard no_grad;
    head->weight.uniform_(-bound, bound, gen);
    if (head->bias.defined()) {
      head->bias.uniform_(-bound, bound, gen);
    }
  }
  head->to(linear->weight.device(), linear->weight.scalar_type());
  replace_head(model, name, head);
  return head;
}

// ---------------------------------------------------------------------------
// Optimizer integration
// ---------------------------------------------------------------------------

/// The geometric ladder of `num_groups` learning rates from `lr_low` (group
/// 0, nearest the input) to `lr_high` (the last group, the head):
/// lr_i = lr_low * (lr_high / lr_low)^(i / (G - 1)); one group gets lr_high.
///
/// Differences from fastai: fastai's `slice(lo, hi)` builds the same
/// geometric ladder (`even_mults`).
inline std::vector<double> discriminative_lrs(
    int64_t num_groups, double lr_low, double lr_high) {
  TORCH_CHECK(
      num_groups > 0,
      "discriminative_lrs: expected num_groups > 0, but got ",
      num_groups);
  TORCH_CHECK(
      lr_low > 0.0 && lr_high >= lr_low,
      "discriminative_lrs: expected 0 < lr_low <= lr_high, but got lr_low = ",
      lr_low,
      " and lr_high = ",
      lr_high);
  std::vector<double> lrs(static_cast<std::size_t>(num_groups), lr_high);
  if (num_groups > 1) {
    const double ratio = lr_high / lr_low;
    for (int64_t i = 0; i < num_groups; ++i) {
      lrs[static_cast<std::size_t>(i)] =
          lr_low *
          std::pow(
              ratio,
              static_cast<double>(i) / static_cast<double>(num_groups - 1));
    }
    lrs.back() = lr_high;
  }
  return lrs;
}

/// One optimizer param group per layer group, with the learning rates of
/// `discriminative_lrs` and the other options cloned from `base` (e.g.
/// `torch::optim::SGDOptions(0.1).momentum(0.9)`; its lr is overwritten).
///
/// Example:
///   auto groups = dlcore::layer_groups(*model, {"conv1", "layer1", "fc"});
///   torch::optim::SGD sgd(
///       dlcore::discriminative_param_groups(groups, 1e-3, 1e-1,
///           torch::optim::SGDOptions(0.1).momentum(0.9)),
///       torch::optim::SGDOptions(0.1).momentum(0.9));
inline std::vector<torch::optim::OptimizerParamGroup>
discriminative_param_groups(
    const LayerGroups& groups,
    double lr_low,
    double lr_high,
    const torch::optim::OptimizerOptions& base) {
  const auto lrs =
      discriminative_lrs(static_cast<int64_t>(groups.size()), lr_low, lr_high);
  std::vector<torch::optim::OptimizerParamGroup> out;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    auto options = base.clone();
    options->set_lr(lrs[g]);
    out.emplace_back(groups[g], std::move(options));
  }
  return out;
}

/// Adds, as one new param group, exactly those `candidates` that require
/// grad and are not yet in any of the optimizer's groups, matched by tensor
/// identity (`TensorImpl`), never by value; returns how many tensors were
/// added (no group is added when 0). The group's options are the
/// optimizer's defaults, with `lr` when given.
///
/// Example:
///   dlcore::unfreeze(*model, "layer3");
///   dlcore::add_trainable_param_group(sgd, model->parameters(), 0.01);
///
/// Differences from PyTorch Lightning: `BaseFinetuning` filters parameters
/// already in the optimizer by comparing values in some versions; two layers
/// with equal values (e.g. freshly zero-initialized biases) are then
/// confused. Identity cannot be.
inline int64_t add_trainable_param_group(
    torch::optim::Optimizer& optimizer,
    const std::vector<torch::Tensor>& candidates,
    std::optional<double> lr = std::nullopt) {
  std::unordered_set<const c10::TensorImpl*> present;
  for (const auto& group : optimizer.param_groups()) {
    for (const auto& p : group.params()) {
      present.insert(p.unsafeGetTensorImpl());
    }
  }
  std::vector<torch::Tensor> fresh;
  for (const auto& t : candidates) {
    if (t.defined() && t.requires_grad() &&
        present.insert(t.unsafeGetTensorImpl()).second) {
      fresh.push_back(t);
    }
  }
  if (fresh.empty()) {
    return 0;
  }
  auto options = optimizer.defaults().clone();
  if (lr) {
    TORCH_CHECK(
        *lr >= 0.0,
        "add_trainable_param_group: expected lr >= 0, but got ",
        *lr);
    options->set_lr(*lr);
  }
  const auto added = static_cast<int64_t>(fresh.size());
  optimizer.add_param_group(
      torch::optim::OptimizerParamGroup(std::move(fresh), std::move(options)));
  return added;
}

// ---------------------------------------------------------------------------
// Gradual unfreezing
// ---------------------------------------------------------------------------

/// Options of `GradualUnfreezing`.
struct GradualUnfreezingOptions {
  /// Layer groups trainable from the start, counted from the head.
  /// Default: 1
  TORCH_ARG(int64_t, initially_trainable) = 1;
  /// First epoch at which one more group unfreezes. Default: 1
  TORCH_ARG(int64_t, start_epoch) = 1;
  /// Epochs between two unfreezings. Default: 1
  TORCH_ARG(int64_t, epochs_per_group) = 1;

 public:
};

/// Gradual unfreezing (Howard & Ruder 2018, ULMFiT): the last
/// `initially_trainable` groups train from epoch 0, then one more group from
/// the head down unfreezes at `start_epoch`, `start_epoch + epochs_per_group`,
/// and so on.
///
/// trainable_groups(e) = min(G, k0) for e < start_epoch, else
///                       min(G, k0 + 1 + (e - start_epoch) / epochs_per_group)
///
/// The schedule is a pure function of the epoch, so `apply(e)` at any epoch
/// (also after a restart) gives the same state; there is nothing to save.
/// The groups' tensors are shared with the model, which must outlive this.
///
/// Example:
///   dlcore::GradualUnfreezing schedule(groups, {});
///   for (int64_t e = 0; e < epochs; ++e) {
///     auto fresh = schedule.apply(e);
///     dlcore::add_trainable_param_group(sgd, fresh);
///     ...
///   }
class GradualUnfreezing {
 public:
  GradualUnfreezing(LayerGroups groups, GradualUnfreezingOptions options)
      : groups_(std::move(groups)), options_(options) {
    TORCH_CHECK(
        !groups_.empty(),
        "GradualUnfreezing: expected at least one layer group, but got none");
    TORCH_CHECK(
        options_.initially_trainable() >= 0,
        "GradualUnfreezing: expected initially_trainable >= 0, but got ",
        options_.initially_trainable());
    TORCH_CHECK(
        options_.start_epoch() >= 0,
        "GradualUnfreezing: expected start_epoch >= 0, but got ",
        options_.start_epoch());
    TORCH_CHECK(
        options_.epochs_per_group() >= 1,
        "GradualUnfreezing: expected epochs_per_group >= 1, but got ",
        options_.epochs_per_group());
  }

  /// Number of layer groups.
  int64_t num_groups() const {
    return static_cast<int64_t>(groups_.size());
  }

  /// How many groups (from the head) are trainable at `epoch`.
  int64_t trainable_groups(int64_t epoch) const {
    int64_t k = options_.initially_trainable();
    if (epoch >= options_.start_epoch()) {
      k += 1 + (epoch - options_.start_epoch()) / options_.epochs_per_group();
    }
    return std::min(k, num_groups());
  }

  /// The first epoch at which `group` (0 = nearest the input) is trainable.
  int64_t unfreeze_epoch(int64_t group) const {
    TORCH_CHECK(
        group >= 0 && group < num_groups(),
        "GradualUnfreezing: expected group in [0, ",
        num_groups(),
        "), but got ",
        group);
    const int64_t needed = num_groups() - group; // groups trainable from top
    if (needed <= options_.initially_trainable()) {
      return 0;
    }
    return options_.start_epoch() +
           (needed - options_.initially_trainable() - 1) *
               options_.epochs_per_group();
  }

  /// Sets the trainable state of every group for `epoch` and returns the
  /// tensors that became trainable (to add to the optimizer).
  std::vector<torch::Tensor> apply(int64_t epoch) {
    TORCH_CHECK(
        epoch >= 0, "GradualUnfreezing: expected epoch >= 0, but got ", epoch);
    const int64_t boundary = num_groups() - trainable_groups(epoch);
    std::vector<torch::Tensor> fresh;
    for (int64_t g = 0; g < num_groups(); ++g) {
      const auto& group = groups_[static_cast<std::size_t>(g)];
      if (g >= boundary) {
        for (const auto& t : group) {
          if (!t.requires_grad()) {
            fresh.push_back(t);
          }
        }
        detail::freeze_set_requires_grad(group, true);
      } else {
        detail::freeze_set_requires_grad(group, false);
      }
    }
    return fresh;
  }

  /// The layer groups.
  const LayerGroups& groups() const {
    return groups_;
  }

 private:
  LayerGroups groups_;
  GradualUnfreezingOptions options_;
};

} // namespace dlcore
