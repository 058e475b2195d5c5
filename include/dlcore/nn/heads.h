#pragma once

// Replacing a model's head (or any submodule) by dotted path: replace_head and
// replace_linear_head.

#include <dlcore/detail/module_handle.h>
#include <dlcore/detail/module_walk.h>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace dlcore {

/// Replaces the submodule at dotted path `name` (e.g. "fc",
/// "classifier.6") of `model` (the module, its holder or a shared_ptr to it,
/// see `ModuleRef`) by `head` in its parent's registry and returns `head`.
/// An unknown name is an error naming the existing children.
///
/// As with every `replace_module`, a model that calls a typed member holder
/// must reassign it: `model->fc = dlcore::replace_head(model, "fc", h)`;
/// dlcore's models reach their head through the registry and need not.
template <typename ModuleType>
std::shared_ptr<ModuleType> replace_head(
    ModuleRef model,
    const std::string& name,
    std::shared_ptr<ModuleType> head) {
  TORCH_CHECK(
      head != nullptr, "replace_head: expected a module, but got nullptr");
  TORCH_CHECK(
      !name.empty(), "replace_head: expected a submodule name, but got ''");
  const auto [parent_path, child] = detail::split_last_name(name);
  auto& parent = detail::find_submodule(
      model.get("replace_head"), parent_path, "replace_head");
  // Check that the child exists (error lists the children otherwise).
  auto& old = detail::find_submodule(parent, child, "replace_head");
  TORCH_CHECK(
      !detail::is_sequential(parent),
      "replace_head: '",
      name,
      "' is inside a torch::nn::Sequential, whose forward() runs its own "
      "list of modules; rebuild the Sequential instead");
  head->train(old.is_training());
  parent.replace_module(child, head);
  return head;
}

/// Holder overload: `replace_head(model, "fc", torch::nn::Linear(512, 5))`.
template <typename Contained>
torch::nn::ModuleHolder<Contained> replace_head(
    ModuleRef model,
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
///   dlcore::replace_linear_head(model, "fc", 5, /*seed=*/0);
inline torch::nn::Linear replace_linear_head(
    ModuleRef model,
    const std::string& name,
    int64_t num_classes,
    std::optional<uint64_t> seed = std::nullopt) {
  TORCH_CHECK(
      num_classes > 0,
      "replace_linear_head: expected num_classes > 0, but got ",
      num_classes);
  auto& root = model.get("replace_linear_head");
  auto& old = detail::find_submodule(root, name, "replace_linear_head");
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
  replace_head(root, name, head);
  return head;
}

} // namespace dlcore
