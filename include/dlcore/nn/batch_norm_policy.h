#pragma once

// Batch norm while the rest of a model trains: FrozenBatchNorm2d (statistics
// and affine as buffers), EvalStickyBatchNorm2d (eval mode whatever train()
// says), and BatchNormPolicy with set_batchnorm_policy, which converts every
// 2-d batch norm of a model to one of them or back.

#include <dlcore/detail/module_handle.h>
#include <dlcore/detail/module_walk.h>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <utility>

namespace dlcore {

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

namespace detail {
/// The parameters and running statistics of a batch-norm module of any of
/// the three types.
struct BatchNormTensors {
  torch::Tensor weight;
  torch::Tensor bias;
  torch::Tensor mean;
  torch::Tensor var;
  torch::Tensor count;
};
} // namespace detail

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
///   dlcore::set_batchnorm_policy(model, dlcore::BatchNormPolicy::kFrozen);
///   model->train();  // batch norms still use and keep their statistics
inline int64_t set_batchnorm_policy(ModuleRef model, BatchNormPolicy policy) {
  int64_t replaced = 0;
  detail::walk_child_edges(
      model.get("set_batchnorm_policy"),
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
            !detail::is_sequential(parent),
            "set_batchnorm_policy: '",
            dotted,
            "' is a batch norm directly inside a torch::nn::Sequential, whose "
            "forward() runs its own list of modules, so it cannot be replaced; "
            "build the Sequential with the wanted batch-norm type, or call "
            "dlcore::set_batchnorm_eval(model) after each train()");
        // The source's options and state, whatever its type.
        const auto state_of = [](auto* m) {
          return detail::BatchNormTensors{
              m->weight,
              m->bias,
              m->running_mean,
              m->running_var,
              m->num_batches_tracked};
        };
        torch::nn::BatchNormOptions options(1);
        detail::BatchNormTensors src;
        bool trainable = true;
        if (bn != nullptr) {
          options = bn->options;
          TORCH_CHECK(
              options.track_running_stats(),
              "set_batchnorm_policy: '",
              dotted,
              "' has track_running_stats = false, so there are no running "
              "statistics to keep");
          src = state_of(bn);
        } else if (sticky != nullptr) {
          options = sticky->options;
          src = state_of(sticky);
        } else {
          options = torch::nn::BatchNormOptions(frozen->num_features)
                        .eps(frozen->eps);
          src = state_of(frozen);
        }
        if (frozen == nullptr && src.weight.defined()) {
          trainable = src.weight.requires_grad();
        }
        std::shared_ptr<torch::nn::Module> replacement;
        detail::BatchNormTensors dst;
        if (policy == BatchNormPolicy::kFrozen) {
          auto m = std::make_shared<FrozenBatchNorm2dImpl>(
              options.num_features(), options.eps());
          replacement = m;
          dst = state_of(m.get());
        } else if (policy == BatchNormPolicy::kEvalSticky) {
          auto m = std::make_shared<EvalStickyBatchNorm2dImpl>(options);
          replacement = m;
          dst = state_of(m.get());
        } else {
          auto m = std::make_shared<torch::nn::BatchNorm2dImpl>(options);
          replacement = m;
          dst = state_of(m.get());
        }
        // Device and dtype first (in place: the members stay valid), values
        // after, so no precision is lost on the way.
        replacement->to(src.mean.device(), src.mean.scalar_type());
        {
          torch::NoGradGuard no_grad;
          if (dst.weight.defined() && src.weight.defined()) {
            dst.weight.copy_(src.weight);
            dst.bias.copy_(src.bias);
          }
          dst.mean.copy_(src.mean);
          dst.var.copy_(src.var);
          if (dst.count.defined() && src.count.defined()) {
            dst.count.copy_(src.count);
          }
        }
        if (policy != BatchNormPolicy::kFrozen && dst.weight.defined()) {
          dst.weight.requires_grad_(trainable);
          dst.bias.requires_grad_(trainable);
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
inline int64_t convert_frozen_batchnorm(ModuleRef model) {
  return set_batchnorm_policy(
      model.get("convert_frozen_batchnorm"), BatchNormPolicy::kFrozen);
}

/// Replaces every FrozenBatchNorm2d / EvalStickyBatchNorm2d below `model` by
/// a plain BatchNorm2d; returns how many were replaced. Same as
/// `set_batchnorm_policy(model, BatchNormPolicy::kTrain)`.
inline int64_t convert_to_batchnorm(ModuleRef model) {
  return set_batchnorm_policy(
      model.get("convert_to_batchnorm"), BatchNormPolicy::kTrain);
}

/// Puts every batch norm (1-d, 2-d, 3-d) below and including `model` in eval
/// mode in place, for models whose layers cannot be replaced; returns how
/// many. The effect lasts until the next `train()`, so call it after each.
inline int64_t set_batchnorm_eval(ModuleRef model) {
  auto& root = model.get("set_batchnorm_eval");
  int64_t count = 0;
  auto visit = [&count](torch::nn::Module& m) {
    if (dynamic_cast<torch::nn::BatchNorm1dImpl*>(&m) ||
        dynamic_cast<torch::nn::BatchNorm2dImpl*>(&m) ||
        dynamic_cast<torch::nn::BatchNorm3dImpl*>(&m)) {
      m.eval();
      ++count;
    }
  };
  // The root by reference: modules(include_self) needs it in a shared_ptr.
  visit(root);
  for (const auto& m : root.modules(/*include_self=*/false)) {
    visit(*m);
  }
  return count;
}

} // namespace dlcore
