#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/types.h>

#include <dlcore/detail/tensor_check.h>

#include <cstdint>
#include <string>

namespace dlcore {

/// A labelled data set held in memory as two tensors, the C++ counterpart of
/// `torch.utils.data.TensorDataset` with torchvision's field names.
///
/// `data` holds the samples along dimension 0 (images are float `[N, C, H,
/// W]`); `targets` holds one int64 class index per sample (`[N]`), or a float
/// `[N, C]` matrix of soft targets.
///
/// Example:
///   dlcore::TensorDataset train = dlcore::load_fashion_mnist(dir, true);
///   train.size();  // 60000
struct TensorDataset {
  torch::Tensor data;
  torch::Tensor targets;

  /// Number of samples.
  int64_t size() const {
    return data.defined() ? data.size(0) : 0;
  }

  /// Checks that both tensors are defined and agree on the number of samples;
  /// `owner` names the caller in the error.
  void check(const std::string& owner) const {
    TORCH_CHECK(
        data.defined() && targets.defined(),
        owner,
        ": expected a TensorDataset with data and targets, but got an "
        "undefined tensor");
    detail::check_has_data(data, owner.c_str(), "data");
    detail::check_has_data(targets, owner.c_str(), "targets");
    TORCH_CHECK(
        data.dim() >= 1 && targets.dim() >= 1 &&
            data.size(0) == targets.size(0),
        owner,
        ": expected data and targets with the same number of samples, but "
        "got data ",
        data.sizes(),
        " and targets ",
        targets.sizes());
  }
};

} // namespace dlcore
