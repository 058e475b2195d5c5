#pragma once

// A model as a function argument, in every form a LibTorch user holds one:
// the module (`*net`), a module holder (`net`, a `ModuleHolder<T>`) or a
// `std::shared_ptr<M>`. `ModuleRef` is what functions that need only
// `torch::nn::Module` take (nn/, optim/); `detail::module_of` is what
// templates that call the concrete `forward` use (train/, study/).

#include <c10/util/Exception.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <type_traits>
#include <utility>

namespace dlcore {
namespace detail {

template <typename T, typename = void>
struct IsPointerLike : std::false_type {};
template <typename T>
struct IsPointerLike<
    T,
    std::void_t<
        decltype(*std::declval<T&>()),
        decltype(std::declval<T&>() == nullptr)>> : std::true_type {};

/// The object behind a handle: `*handle` for a `ModuleHolder` (`LeNet5`) or
/// a pointer (`std::shared_ptr`, `std::unique_ptr`, raw), checked non-empty,
/// else `handle` itself. `owner` and `expected` ("a module") word the error.
template <typename T>
decltype(auto) pointee(T& handle, const char* owner, const char* expected) {
  if constexpr (std::is_base_of_v<torch::detail::ModuleHolderIndicator, T>) {
    TORCH_CHECK(
        !handle.is_empty(),
        owner,
        ": expected ",
        expected,
        ", but got an empty ModuleHolder");
    return *handle;
  } else if constexpr (IsPointerLike<T>::value) {
    TORCH_CHECK(
        handle != nullptr,
        owner,
        ": expected ",
        expected,
        ", but got a null pointer");
    return *handle;
  } else {
    return (handle);
  }
}

/// The module behind a `ModuleHolder` (`LeNet5`) or a pointer to a module
/// (`std::shared_ptr<Module>`), or the module itself, with its concrete type
/// (so that its `forward` can be called).
template <typename Model>
decltype(auto) module_of(Model& model, const char* owner = "dlcore") {
  return pointee(model, owner, "a module");
}

} // namespace detail

/// A reference to a model given in any of the forms LibTorch code holds one:
/// the module itself (`*net`, `net.get()` dereferenced), a module holder
/// (`dlcore::LeNet5 net`, any `torch::nn::ModuleHolder<T>`) or a
/// `std::shared_ptr<M>` with M derived from `torch::nn::Module`. Every dlcore
/// function that takes a model for what `torch::nn::Module` offers
/// (parameters, children, buffers) takes a `ModuleRef` (or a
/// `ConstModuleRef`), so `freeze(net)`, `freeze(*net)` and
/// `freeze(net.ptr())` are the same call.
///
/// An empty holder or a null pointer converts without error; the function
/// receiving it reports it, under its own name, when it calls `get`.
///
/// Example (a function of one's own that takes any form):
///   int64_t count(dlcore::ConstModuleRef model) {
///     return static_cast<int64_t>(model.get("count").parameters().size());
///   }
template <typename M>
class BasicModuleRef {
  static_assert(
      std::is_same_v<std::remove_const_t<M>, torch::nn::Module>,
      "BasicModuleRef: M is torch::nn::Module or const torch::nn::Module");

 public:
  /// The module itself (any type derived from `torch::nn::Module`).
  BasicModuleRef(M& module) : module_(&module) {}

  /// A module holder (`dlcore::LeNet5`, `torch::nn::Linear`, ...).
  template <typename Contained>
  BasicModuleRef(const torch::nn::ModuleHolder<Contained>& holder)
      : module_(holder.is_empty() ? nullptr : holder.ptr().get()),
        empty_("an empty ModuleHolder") {}

  /// A shared pointer to a module.
  template <
      typename T,
      typename = std::enable_if_t<std::is_convertible_v<T*, M*>>>
  BasicModuleRef(const std::shared_ptr<T>& module)
      : module_(module.get()), empty_("a null pointer") {}

  /// The module; `owner` (the calling function's name) words the error for
  /// an empty holder or a null pointer.
  M& get(const char* owner) const {
    TORCH_CHECK(
        module_ != nullptr, owner, ": expected a module, but got ", empty_);
    return *module_;
  }

 private:
  M* module_;
  const char* empty_ = "a null module";
};

/// A model whose parameters, buffers or children a function changes.
using ModuleRef = BasicModuleRef<torch::nn::Module>;
/// A model a function only reads (a const module converts to it too).
using ConstModuleRef = BasicModuleRef<const torch::nn::Module>;

} // namespace dlcore
