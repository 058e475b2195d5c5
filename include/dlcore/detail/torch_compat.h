#pragma once

// Every difference between the LibTorch releases dlcore supports (Debian's
// 1.13 through the official 2.11) lives here, each with the release that
// changed it. No other header branches on a LibTorch version or on how
// LibTorch was packaged.

#include <ATen/core/Tensor.h>
#include <torch/optim/optimizer.h>
#include <torch/version.h>

#include <sstream>
#include <string>
#include <type_traits>
#include <utility>

/// LibTorch's version as one number, major * 100 + minor (1.13 -> 113).
#define DLCORE_TORCH_VERSION (TORCH_VERSION_MAJOR * 100 + TORCH_VERSION_MINOR)

// Gloo's headers. The official LibTorch (zip and pip wheel) is built with
// Gloo but ships none of its headers; Debian's libtorch-dev is paired with
// libgloo-dev. Only the code that creates a Gloo process group needs them
// (distributed/process_group.h); selection and merging take any c10d group.
// Define DLCORE_NO_GLOO to ignore headers that are present but do not match
// the LibTorch in use (for example Debian's with an official LibTorch).
#if !defined(DLCORE_NO_GLOO) && defined(__has_include)
#if __has_include(<gloo/algorithm.h>)
#define DLCORE_HAS_GLOO 1
#endif
#endif
#ifndef DLCORE_HAS_GLOO
#define DLCORE_HAS_GLOO 0
#endif

// c10d's group classes, declared so that the check below needs none of
// c10d's headers. Up to 1.13 a process group such as ProcessGroupGloo
// derives from c10d::ProcessGroup; from 2.0 on a c10d::ProcessGroup
// dispatches to per-device c10d::Backend objects, and ProcessGroupGloo is a
// Backend. (Before 2.0 c10d::Backend is declared here and never defined.)
namespace c10d {
class ProcessGroup;
class Backend;
} // namespace c10d

namespace dlcore {
namespace detail {

/// Whether `Group` is a c10d process group or (2.0 on) a c10d backend.
template <typename Group>
struct is_c10d_group : std::integral_constant<
                           bool,
                           std::is_base_of<c10d::ProcessGroup, Group>::value ||
                               std::is_base_of<c10d::Backend, Group>::value> {};

/// Fails to compile, with a message, unless `Group` is a c10d group.
template <typename Group>
constexpr void check_c10d_group() {
  static_assert(
      is_c10d_group<Group>::value,
      "dlcore: expected a c10d::ProcessGroup (or, with LibTorch 2.x, a "
      "c10d::Backend such as c10d::ProcessGroupGloo)");
}

/// `false` for any `Ts`: a static_assert that fires only when a template is
/// instantiated.
template <typename... Ts>
struct always_false : std::false_type {};

// Optimizer state keys. Up to 2.1 LibTorch keys `Optimizer::state()` by the
// parameter's TensorImpl* printed as a string (c10::guts::to_string); from
// 2.2 on (pytorch/pytorch#108480) by the TensorImpl* itself.
#if DLCORE_TORCH_VERSION >= 202
using OptimizerStateKey = void*;
/// The key under which `Optimizer::state()` holds `param`'s state.
inline OptimizerStateKey optimizer_state_key(const at::Tensor& param) {
  return param.unsafeGetTensorImpl();
}
#else
using OptimizerStateKey = std::string;
/// The key under which `Optimizer::state()` holds `param`'s state.
inline OptimizerStateKey optimizer_state_key(const at::Tensor& param) {
  std::ostringstream key;
  key << param.unsafeGetTensorImpl();
  return key.str();
}
#endif
static_assert(
    std::is_same<
        OptimizerStateKey,
        std::decay_t<decltype(std::declval<torch::optim::Optimizer&>()
                                  .state())>::key_type>::value,
    "dlcore/detail/torch_compat.h: this LibTorch keys optimizer state "
    "differently; update optimizer_state_key for its release");

} // namespace detail
} // namespace dlcore
