// Shared by test_cyclic_lr.cpp and test_one_cycle_lr.cpp: bit-exact
// comparison of what an optimizer holds with a golden row of
// tests/golden/schedulers.h.
#pragma once

#include <dlcore/optim/momentum.h>

#include "golden/schedulers.h"

#include <tuple>

namespace dlcore_test {

/// beta2 of an Adam or AdamW param group.
inline double beta2(const torch::optim::OptimizerParamGroup& g) {
  if (auto* a = dynamic_cast<const torch::optim::AdamOptions*>(&g.options())) {
    return std::get<1>(a->betas());
  }
  return std::get<1>(
      dynamic_cast<const torch::optim::AdamWOptions&>(g.options()).betas());
}

/// Every group's LR and momentum (and beta2 when the row has it) equal the
/// row's exactly: the design contract asks 1e-12 relative; the schedulers keep
/// PyTorch's order of operations and give identical doubles.
inline void check_row(
    const torch::optim::Optimizer& opt, const dlcore_golden::SchedRow& row) {
  INFO("t = " << row.t);
  const auto lrs = dlcore::group_lrs(opt);
  const auto ms = dlcore::group_momenta(opt);
  REQUIRE(lrs.size() == row.lr.size());
  for (std::size_t g = 0; g < lrs.size(); ++g) {
    INFO("group " << g);
    CHECK(lrs[g] == row.lr[g]);
    CHECK(ms[g] == row.momentum[g]);
    if (!row.beta2.empty()) {
      CHECK(beta2(opt.param_groups()[g]) == row.beta2[g]);
    }
  }
}

} // namespace dlcore_test
