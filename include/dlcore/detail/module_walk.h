#pragma once

// Walking a module tree for the transfer-learning headers (nn/freeze.h,
// nn/batch_norm_policy.h, nn/forward_child.h, nn/heads.h,
// optim/gradual_unfreezing.h): distinct named parameters, requires_grad
// changes, parent-child edges and submodules by dotted path.

#include <c10/util/Exception.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace dlcore {
namespace detail {

/// Named parameters of `module` (recursive), each tensor once even when a
/// module shares it (the first name wins), in registration order.
inline std::vector<std::pair<std::string, torch::Tensor>>
unique_named_parameters(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  std::unordered_set<const c10::TensorImpl*> seen;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    if (seen.insert(item.value().unsafeGetTensorImpl()).second) {
      out.emplace_back(item.key(), item.value());
    }
  }
  return out;
}

/// Sets `requires_grad` on each distinct tensor; returns how many changed.
inline int64_t set_requires_grad(
    const std::vector<torch::Tensor>& tensors, bool requires_grad) {
  int64_t changed = 0;
  std::unordered_set<const c10::TensorImpl*> seen;
  for (const auto& t : tensors) {
    TORCH_CHECK(
        t.defined(),
        "freeze: expected defined tensors, but got an undefined tensor");
    if (!seen.insert(t.unsafeGetTensorImpl()).second) {
      continue;
    }
    if (t.requires_grad() != requires_grad) {
      // requires_grad_ is const on Tensor: it changes the shared TensorImpl,
      // so the module's own parameter changes too.
      t.requires_grad_(requires_grad);
      ++changed;
    }
  }
  return changed;
}

/// Visits every (parent, child name, child) edge below `root`, depth first,
/// children in registration order. `prefix` is the dotted path of `root`.
/// The visitor may replace the child in the parent's registry; the walk then
/// continues into the replacement.
using ChildEdgeVisitor = std::function<void(
    torch::nn::Module& parent,
    const std::string& child_name,
    const std::string& dotted_name,
    const std::shared_ptr<torch::nn::Module>& child)>;

inline void walk_child_edges(
    torch::nn::Module& root,
    const std::string& prefix,
    const ChildEdgeVisitor& visit) {
  for (const auto& item : root.named_children()) {
    const std::string dotted =
        prefix.empty() ? item.key() : prefix + "." + item.key();
    visit(root, item.key(), dotted, item.value());
    // Re-read: the visitor may have replaced it.
    auto now = root.named_children()[item.key()];
    walk_child_edges(*now, dotted, visit);
  }
}

/// True when `module` is a torch::nn::Sequential, whose forward() runs its
/// own list of modules rather than the registry.
inline bool is_sequential(const torch::nn::Module& module) {
  return dynamic_cast<const torch::nn::SequentialImpl*>(&module) != nullptr;
}

/// Splits "a.b.c" into ("a.b", "c"); ("", "c") for "c".
inline std::pair<std::string, std::string> split_last_name(
    const std::string& dotted) {
  const auto pos = dotted.rfind('.');
  if (pos == std::string::npos) {
    return {"", dotted};
  }
  return {dotted.substr(0, pos), dotted.substr(pos + 1)};
}

/// The submodule at dotted path `path` below `root` (`root` itself for "").
/// `owner` names the caller in the error.
inline torch::nn::Module& find_submodule(
    torch::nn::Module& root,
    const std::string& path,
    const std::string& owner) {
  if (path.empty()) {
    return root;
  }
  torch::nn::Module* current = &root;
  std::string walked;
  std::size_t start = 0;
  while (start <= path.size()) {
    const auto end = path.find('.', start);
    const std::string part = path.substr(
        start, end == std::string::npos ? std::string::npos : end - start);
    auto children = current->named_children();
    const auto* found = children.find(part);
    if (found == nullptr) {
      std::string names;
      for (const auto& c : children) {
        names += (names.empty() ? "" : ", ") + c.key();
      }
      TORCH_CHECK(
          false,
          owner,
          ": expected a submodule named '",
          path,
          "', but '",
          walked.empty() ? std::string("the model") : walked,
          "' has no child '",
          part,
          "' (its children: ",
          names.empty() ? std::string("none") : names,
          ")");
    }
    current = found->get();
    walked = walked.empty() ? part : walked + "." + part;
    if (end == std::string::npos) {
      break;
    }
    start = end + 1;
  }
  return *current;
}

} // namespace detail
} // namespace dlcore
