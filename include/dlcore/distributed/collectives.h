#pragma once

// Collectives of variable-sized tensors over any c10d process group: a
// c10d::ProcessGroup (every LibTorch release; what torch.distributed
// creates), or, from LibTorch 2.0 on, one of its c10d::Backend objects such
// as c10d::ProcessGroupGloo. No Gloo headers are needed here.

#include <dlcore/detail/torch_compat.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace dlcore {

/// Every rank's `tensor` (any leading size, same trailing shape and dtype on
/// all ranks), one per rank in rank order. Sizes are gathered first, then
/// the tensors, padded to the largest.
template <typename Group>
std::vector<at::Tensor> all_gather_variable(
    Group& pg, const at::Tensor& tensor) {
  detail::check_c10d_group<Group>();
  TORCH_CHECK(
      tensor.defined() && tensor.dim() >= 1,
      "all_gather_variable: expected a tensor with a leading dimension, but "
      "got ",
      tensor.defined() ? tensor.sizes() : at::IntArrayRef{});
  const int64_t world = pg.getSize();
  auto t = tensor.to(at::kCPU).contiguous();
  std::vector<at::Tensor> size_in{at::tensor({t.size(0)}, at::kLong)};
  std::vector<std::vector<at::Tensor>> size_out(1);
  for (int64_t r = 0; r < world; ++r) {
    size_out[0].push_back(at::empty({1}, at::kLong));
  }
  pg.allgather(size_out, size_in)->wait();
  int64_t max_rows = 0;
  std::vector<int64_t> rows(static_cast<size_t>(world));
  for (int64_t r = 0; r < world; ++r) {
    rows[r] = size_out[0][r].item<int64_t>();
    max_rows = std::max(max_rows, rows[r]);
  }
  std::vector<int64_t> shape = t.sizes().vec();
  std::vector<at::Tensor> out;
  if (max_rows == 0) {
    for (int64_t r = 0; r < world; ++r) {
      out.push_back(t.clone());
    }
    return out;
  }
  shape[0] = max_rows;
  auto padded = at::zeros(shape, t.options());
  padded.narrow(0, 0, t.size(0)).copy_(t);
  std::vector<at::Tensor> in{padded};
  std::vector<std::vector<at::Tensor>> gathered(1);
  for (int64_t r = 0; r < world; ++r) {
    gathered[0].push_back(at::empty(shape, t.options()));
  }
  pg.allgather(gathered, in)->wait();
  for (int64_t r = 0; r < world; ++r) {
    out.push_back(gathered[0][r].narrow(0, 0, rows[r]));
  }
  return out;
}

/// Like `all_gather_variable`, but only `root` receives (the others get an
/// empty vector): memory and traffic on one rank only.
template <typename Group>
std::vector<at::Tensor> gather_variable(
    Group& pg, const at::Tensor& tensor, int64_t root) {
  detail::check_c10d_group<Group>();
  const int64_t world = pg.getSize();
  TORCH_CHECK(
      root >= 0 && root < world,
      "gather_variable: expected a root rank in [0, ",
      world,
      "), but got ",
      root);
  TORCH_CHECK(
      tensor.defined() && tensor.dim() >= 1,
      "gather_variable: expected a tensor with a leading dimension, but got ",
      tensor.defined() ? tensor.sizes() : at::IntArrayRef{});
  auto t = tensor.to(at::kCPU).contiguous();
  // Sizes go to everyone (tiny), so all ranks agree on the padded shape.
  std::vector<at::Tensor> size_in{at::tensor({t.size(0)}, at::kLong)};
  std::vector<std::vector<at::Tensor>> size_out(1);
  for (int64_t r = 0; r < world; ++r) {
    size_out[0].push_back(at::empty({1}, at::kLong));
  }
  pg.allgather(size_out, size_in)->wait();
  int64_t max_rows = 0;
  std::vector<int64_t> rows(static_cast<size_t>(world));
  for (int64_t r = 0; r < world; ++r) {
    rows[r] = size_out[0][r].item<int64_t>();
    max_rows = std::max(max_rows, rows[r]);
  }
  const bool is_root = pg.getRank() == root;
  std::vector<at::Tensor> out;
  if (max_rows == 0) {
    if (is_root) {
      for (int64_t r = 0; r < world; ++r) {
        out.push_back(t.clone());
      }
    }
    return out;
  }
  std::vector<int64_t> shape = t.sizes().vec();
  shape[0] = max_rows;
  auto padded = at::zeros(shape, t.options());
  padded.narrow(0, 0, t.size(0)).copy_(t);
  std::vector<at::Tensor> in{padded};
  std::vector<std::vector<at::Tensor>> gathered;
  if (is_root) {
    gathered.emplace_back();
    for (int64_t r = 0; r < world; ++r) {
      gathered[0].push_back(at::empty(shape, t.options()));
    }
  }
  c10d::GatherOptions go;
  go.rootRank = root;
  pg.gather(gathered, in, go)->wait();
  if (is_root) {
    for (int64_t r = 0; r < world; ++r) {
      out.push_back(gathered[0][r].narrow(0, 0, rows[r]));
    }
  }
  return out;
}

} // namespace dlcore
