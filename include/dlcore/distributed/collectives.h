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

namespace detail {

/// Every rank's leading size `rows` (an all-gather of one int64 per rank), in
/// rank order: what the variable-size gathers pad to.
template <typename Group>
std::vector<int64_t> all_gather_rows(Group& pg, int64_t rows) {
  const int64_t world = pg.getSize();
  std::vector<at::Tensor> in{at::tensor({rows}, at::kLong)};
  std::vector<std::vector<at::Tensor>> out(1);
  for (int64_t r = 0; r < world; ++r) {
    out[0].push_back(at::empty({1}, at::kLong));
  }
  pg.allgather(out, in)->wait();
  std::vector<int64_t> all(static_cast<size_t>(world));
  for (int64_t r = 0; r < world; ++r) {
    all[r] = out[0][r].item<int64_t>();
  }
  return all;
}

} // namespace detail

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
  const std::vector<int64_t> rows = detail::all_gather_rows(pg, t.size(0));
  const int64_t max_rows = *std::max_element(rows.begin(), rows.end());
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
  const std::vector<int64_t> rows = detail::all_gather_rows(pg, t.size(0));
  const int64_t max_rows = *std::max_element(rows.begin(), rows.end());
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
