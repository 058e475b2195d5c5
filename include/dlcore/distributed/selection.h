#pragma once

// Sharded top-K/top-P selection over c10d: every rank ingests its shard,
// then the per-class candidates are combined so that every rank (or one
// root) holds exactly the selector of all ranks' rows.

#include <dlcore/data/pseudo_label.h>
#include <dlcore/distributed/collectives.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <tuple>
#include <utility>
#include <vector>

namespace dlcore {

/// Combines the selectors of all ranks of `pg`: afterwards `selector` on
/// every rank (root = -1, an all-gather) or on rank `root` only (a gather;
/// the other ranks keep their own) is exactly the selector that one process
/// would hold after ingesting every rank's rows. Collective: every rank
/// calls it with the same `root`.
///
/// Each rank sends its best K per class (indices, labels, scores: 24 bytes
/// per candidate, at most C * K of them), its recorded index ranges and row
/// count; the receiver merges them with `TopKTopPSelector::merge`, which is
/// associative and commutative, so the result does not depend on the number
/// of ranks or on how rows were sharded. Ranks with different C, K or P, or
/// with overlapping recorded index ranges, raise the same error on every
/// receiving rank.
///
/// Example:
///   auto pg = dlcore::init_process_group_from_env();
///   dlcore::TopKTopPSelector sel({1000, 16000, 10});
///   for (const auto& [first, scores] : my_shard) sel.ingest(scores, first);
///   dlcore::merge_across_ranks(sel, *pg);  // every rank: the global D-hat
///
/// Differences from other code: torch.distributed has no top-K merge; this
/// is all_gather_object of the candidates followed by an exact merge, with
/// tensors (variable sizes padded) instead of pickled objects.
template <typename Group>
void merge_across_ranks(
    TopKTopPSelector& selector, Group& pg, int64_t root = -1) {
  detail::check_c10d_group<Group>();
  const int64_t world = pg.getSize();
  TORCH_CHECK(
      root >= -1 && root < world,
      "merge_across_ranks: expected root -1 (all ranks) or a rank in [0, ",
      world,
      "), but got ",
      root);
  const auto& o = selector.options();
  const auto mine = selector.candidates();
  const auto meta = at::tensor(
      {o.num_classes(), o.k(), o.p(), selector.rows_seen()}, at::kLong);
  const auto ranges = selector.ranges_tensor().reshape({-1});
  auto gather = [&](const at::Tensor& t) {
    return root < 0 ? all_gather_variable(pg, t) : gather_variable(pg, t, root);
  };
  const std::vector<at::Tensor> metas = gather(meta);
  const std::vector<at::Tensor> all_ranges = gather(ranges);
  const std::vector<at::Tensor> all_indices = gather(std::get<0>(mine));
  const std::vector<at::Tensor> all_labels = gather(std::get<1>(mine));
  const std::vector<at::Tensor> all_scores = gather(std::get<2>(mine));
  if (metas.empty()) {
    return; // not the root
  }
  // Everyone is checked against rank 0, so every receiver raises the same
  // error.
  const auto* m0 = metas[0].data_ptr<int64_t>();
  for (int64_t r = 0; r < world; ++r) {
    const auto* m = metas[r].data_ptr<int64_t>();
    TORCH_CHECK(
        m[0] == m0[0] && m[1] == m0[1] && m[2] == m0[2],
        "merge_across_ranks: expected every rank to select with rank 0's "
        "num_classes ",
        m0[0],
        ", k ",
        m0[1],
        ", p ",
        m0[2],
        ", but rank ",
        r,
        " has num_classes ",
        m[0],
        ", k ",
        m[1],
        ", p ",
        m[2]);
  }
  // One restore over every rank's candidates: restore keeps the best K per
  // class (exactly the merge) and checks the ranks' ranges for overlap.
  int64_t rows = 0;
  for (int64_t r = 0; r < world; ++r) {
    rows += metas[r].data_ptr<int64_t>()[3];
  }
  TopKTopPSelector combined(o);
  combined.restore(
      rows,
      at::cat(all_ranges).reshape({-1, 2}),
      at::cat(all_indices),
      at::cat(all_labels),
      at::cat(all_scores));
  selector = std::move(combined);
}

} // namespace dlcore
