#pragma once

// Checks of tensors at the API boundary that several rooms share.

#include <c10/util/Exception.h>
#include <torch/types.h>

namespace dlcore {
namespace detail {

/// Checks that `t`, when defined, holds values that can be read: a tensor on
/// the `meta` device has a shape and a dtype but no data, so reading it on
/// the CPU would fail inside LibTorch without naming the caller, or read
/// through a null pointer. `owner` and `name` name the caller and the
/// argument in the error.
inline void check_has_data(
    const torch::Tensor& t, const char* owner, const char* name) {
  TORCH_CHECK(
      !t.defined() || !t.is_meta(),
      owner,
      ": expected ",
      name,
      " with data (on the CPU or a GPU), but got a tensor on the ",
      t.device(),
      " device");
}

} // namespace detail
} // namespace dlcore
