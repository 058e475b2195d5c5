#pragma once

// Calling a child module through its parent's registry (`forward_child`), so
// that a later `replace_module` (`set_batchnorm_policy`, `replace_head`) takes
// effect in a model's forward(), and `summary()` can follow the call.

#include <dlcore/detail/module_handle.h>
#include <dlcore/detail/module_walk.h>
#include <dlcore/nn/batch_norm_policy.h>
#include <dlcore/nn/summary.h>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <memory>
#include <string>

namespace dlcore {
namespace detail {

/// Calls `child` as a `ModuleImpl` when it is one (`dynamic_cast`), writing
/// the result to `out`; false when it is not.
template <typename ModuleImpl>
bool forward_child_as(
    torch::nn::Module& child, const torch::Tensor& input, torch::Tensor& out) {
  auto* typed = dynamic_cast<ModuleImpl*>(&child);
  if (typed == nullptr) {
    return false;
  }
  out = typed->forward(input);
  return true;
}

/// Calls `child` as the first of `ModuleImpls...` (in order) that it is;
/// false when it is none of them.
template <typename... ModuleImpls>
bool forward_child_as_first_of(
    torch::nn::Module& child, const torch::Tensor& input, torch::Tensor& out) {
  return (forward_child_as<ModuleImpls>(child, input, out) || ...);
}

} // namespace detail

/// Calls the child registered in `parent` under `name` on `input`, looking
/// it up in the registry at each call, so that a later `replace_module`
/// (`set_batchnorm_policy`, `replace_head`) takes effect. Supported child
/// types, tried in this order: BatchNorm2d, FrozenBatchNorm2d,
/// EvalStickyBatchNorm2d, Linear, Conv2d, Identity and Sequential, after any
/// `ExtraImpls...` (module implementation types with a
/// `Tensor forward(const Tensor&)`) the caller names; others are an error.
///
/// Example (in a model's forward):
///   x = dlcore::forward_child(*this, "bn1", x);
///   x = dlcore::forward_child<MyBlockImpl>(*this, "block", x);
///
/// Why a list of types and not a registry or `torch::nn::AnyModule`:
/// `torch::nn::Module` has no virtual `forward` (each module type declares
/// its own, with its own signature), so a module known only as `Module&`
/// can be called only once its concrete type is found. `AnyModule` erases
/// the type but must be built from the concrete type, which the parent's
/// registry (`shared_ptr<Module>`) no longer carries; a run-time registry of
/// types would be mutable global state. The caller's `ExtraImpls` extend the
/// list instead, at compile time.
template <typename... ExtraImpls>
torch::Tensor forward_child(
    ModuleRef parent, const std::string& name, const torch::Tensor& input) {
  auto& child = detail::find_submodule(
      parent.get("forward_child"), name, "forward_child");
  torch::Tensor out;
  if (detail::forward_child_as_first_of<
          ExtraImpls...,
          torch::nn::BatchNorm2dImpl,
          FrozenBatchNorm2dImpl,
          EvalStickyBatchNorm2dImpl,
          torch::nn::LinearImpl,
          torch::nn::Conv2dImpl,
          torch::nn::IdentityImpl,
          torch::nn::SequentialImpl>(child, input, out)) {
    return out;
  }
  TORCH_CHECK(
      false,
      "forward_child: expected '",
      name,
      "' to be a Linear, Conv2d, BatchNorm2d, EvalStickyBatchNorm2d, "
      "FrozenBatchNorm2d, Identity or Sequential",
      sizeof...(ExtraImpls) == 0 ? ""
                                 : " or one of the extra types given to "
                                   "forward_child",
      ", but it is ",
      child.name());
  return torch::Tensor();
}

/// Same, as step `name` of `tracer` (see `summary()`): a recording tracer
/// records the child's row (and follows it inside when it is a Sequential
/// or a `SummaryTraceable`); an inactive one costs nothing more than the
/// call above. A model whose forward reaches its children through the
/// registry writes its `trace_forward` with this overload.
///
/// Example (in a model's trace_forward):
///   x = dlcore::forward_child(*this, "bn1", x, tracer);
template <typename... ExtraImpls>
torch::Tensor forward_child(
    ModuleRef parent,
    const std::string& name,
    const torch::Tensor& input,
    SummaryTracer& tracer) {
  if (!tracer.recording()) {
    return forward_child<ExtraImpls...>(parent, name, input);
  }
  auto& owner = parent.get("forward_child");
  // The child is held by its parent's registry in a shared_ptr.
  const std::shared_ptr<torch::nn::Module> child =
      detail::find_submodule(owner, name, "forward_child").shared_from_this();
  return tracer.trace(name, child, input, [&](const torch::Tensor& in) {
    return forward_child<ExtraImpls...>(owner, name, in);
  });
}

} // namespace dlcore
