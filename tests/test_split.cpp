#include <dlcore/data/split.h>

#include "golden/data.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <vector>

namespace {

/// A data set whose sample i has data value i and target i % classes, so
/// the indices a split selected can be read back from its data.
dlcore::TensorDataset ids(int64_t n, int64_t classes = 10) {
  const torch::Tensor i = torch::arange(n, torch::kLong);
  return dlcore::TensorDataset{
      i.to(torch::kFloat).reshape({n, 1}), i.remainder(classes)};
}

std::vector<int64_t> to_vec(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kLong).contiguous().reshape({-1});
  return std::vector<int64_t>(
      c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

std::vector<int64_t> indices_of(const dlcore::TensorDataset& ds) {
  return to_vec(ds.data.to(torch::kLong));
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "(no error)";
}

} // namespace

TEST_CASE(
    "random_split splits 60000 samples 80/20 into disjoint covering parts",
    "[split]") {
  const dlcore::TensorDataset full = ids(60000);
  auto [train, val] = dlcore::random_split(full, 0.8, 0);
  CHECK(train.size() == 48000);
  CHECK(val.size() == 12000);
  train.check("test");
  std::vector<int64_t> all = indices_of(train);
  const std::vector<int64_t> b = indices_of(val);
  all.insert(all.end(), b.begin(), b.end());
  std::sort(all.begin(), all.end());
  CHECK(all == to_vec(torch::arange(60000)));
  // Targets travel with their samples.
  CHECK(torch::equal(
      train.targets, train.data.to(torch::kLong).reshape({-1}).remainder(10)));
}

TEST_CASE(
    "random_split selects the same indices as torch.utils.data.random_split",
    "[split]") {
  for (const auto& c : dlcore_golden::kRandpermCases) {
    INFO("seed " << c.seed << ", n " << c.n);
    const auto [a, b] = dlcore::random_split_indices(c.n, 0.8, c.seed);
    CHECK(a.size(0) == static_cast<int64_t>(0.8 * static_cast<double>(c.n)));
    CHECK(
        to_vec(a.narrow(0, 0, 8)) ==
        std::vector<int64_t>(c.split_first, c.split_first + 8));
    CHECK(
        to_vec(b.narrow(0, 0, 8)) ==
        std::vector<int64_t>(c.split_second, c.split_second + 8));
    CHECK(
        to_vec(torch::cat({a, b}).narrow(0, 0, 16)) ==
        std::vector<int64_t>(c.first, c.first + 16));
    const auto [train, val] = dlcore::random_split(ids(c.n), 0.8, c.seed);
    CHECK(indices_of(train) == to_vec(a));
  }
}

TEST_CASE("random_split is deterministic under its seed", "[split]") {
  const dlcore::TensorDataset full = ids(1000);
  const auto [a1, b1] = dlcore::random_split(full, 0.7, 5);
  const auto [a2, b2] = dlcore::random_split(full, 0.7, 5);
  const auto [a3, b3] = dlcore::random_split(full, 0.7, 6);
  CHECK(torch::equal(a1.data, a2.data));
  CHECK(torch::equal(b1.targets, b2.targets));
  CHECK_FALSE(torch::equal(a1.data, a3.data));
}

TEST_CASE("random_split rounds the first part down", "[split]") {
  struct Case {
    int64_t n;
    double fraction;
    int64_t first;
  };
  for (const Case& c : std::vector<Case>{
           {7, 0.8, 5},
           {10, 0.5, 5},
           {10, 0.99, 9},
           {1, 0.5, 0},
           {1, 0.999, 0},
           {0, 0.8, 0},
           {3, 1.0 / 3.0, 1},
           {60000, 0.8, 48000}}) {
    INFO("n " << c.n << ", fraction " << c.fraction);
    const auto [a, b] = dlcore::random_split(ids(c.n), c.fraction, 1);
    CHECK(a.size() == c.first);
    CHECK(b.size() == c.n - c.first);
  }
}

TEST_CASE("random_split rejects fractions outside (0, 1)", "[split]") {
  const dlcore::TensorDataset full = ids(10);
  for (double f :
       {0.0, 1.0, -0.1, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    INFO("fraction " << f);
    CHECK_THAT(
        error_of([&] { dlcore::random_split(full, f, 0); }),
        Catch::Contains(
            "random_split: expected first_fraction in (0, 1) but got"));
  }
  CHECK_THAT(
      error_of([&] { dlcore::random_split(dlcore::TensorDataset{}, 0.5, 0); }),
      Catch::Contains("random_split: expected a TensorDataset"));
}

TEST_CASE(
    "subset selects rows in the given order, repeats allowed", "[split]") {
  const dlcore::TensorDataset full = ids(10);
  const dlcore::TensorDataset s =
      dlcore::subset(full, torch::tensor({7, 2, 2, 9}, torch::kInt));
  CHECK(indices_of(s) == std::vector<int64_t>{7, 2, 2, 9});
  CHECK(to_vec(s.targets) == std::vector<int64_t>{7, 2, 2, 9});
  CHECK(s.data.is_contiguous());
  const dlcore::TensorDataset empty =
      dlcore::subset(full, torch::empty({0}, torch::kLong));
  CHECK(empty.size() == 0);
  CHECK(empty.data.sizes() == torch::IntArrayRef({0, 1}));

  using Catch::Contains;
  CHECK_THAT(
      error_of([&] {
        dlcore::subset(full, torch::tensor({0, 10}));
      }),
      Contains(
          "subset: expected indices in [0, 10) but got values in [0, 10]"));
  CHECK_THAT(
      error_of([&] {
        dlcore::subset(full, torch::tensor({-1, 3}));
      }),
      Contains("but got values in [-1, 3]"));
  CHECK_THAT(
      error_of([&] {
        dlcore::subset(full, torch::tensor({1.0, 2.0}));
      }),
      Contains(
          "subset: expected 1-D int64 or int32 indices but got Float [2]"));
  CHECK_THAT(
      error_of([&] {
        dlcore::subset(full, torch::zeros({2, 2}, torch::kLong));
      }),
      Contains("but got Long [2, 2]"));
}

TEST_CASE(
    "class_balanced_indices draws per_class distinct samples of every class",
    "[split]") {
  // Unbalanced classes: class c has 10 + 7 * c samples, shuffled.
  std::vector<int64_t> labels;
  for (int64_t c = 0; c < 5; ++c) {
    for (int64_t k = 0; k < 10 + 7 * c; ++k) {
      labels.push_back(c);
    }
  }
  const torch::Tensor targets = torch::tensor(labels).index_select(
      0,
      torch::randperm(
          static_cast<int64_t>(labels.size()),
          at::detail::createCPUGenerator(3)));
  const torch::Tensor idx = dlcore::class_balanced_indices(targets, 10, 42);
  REQUIRE(idx.scalar_type() == torch::kLong);
  REQUIRE(idx.numel() == 50);
  const std::vector<int64_t> v = to_vec(idx);
  CHECK(std::is_sorted(v.begin(), v.end()));
  CHECK(std::set<int64_t>(v.begin(), v.end()).size() == v.size());
  const torch::Tensor hist = torch::bincount(targets.index_select(0, idx));
  CHECK(to_vec(hist) == std::vector<int64_t>{10, 10, 10, 10, 10});

  // Deterministic under the seed; another seed draws another sample.
  CHECK(torch::equal(idx, dlcore::class_balanced_indices(targets, 10, 42)));
  CHECK_FALSE(
      torch::equal(idx, dlcore::class_balanced_indices(targets, 10, 43)));

  // Every sample of a class is reachable: over many seeds each is drawn.
  std::set<int64_t> seen;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    for (int64_t i : to_vec(dlcore::class_balanced_indices(targets, 3, seed))) {
      seen.insert(i);
    }
  }
  CHECK(seen.size() == labels.size());

  // int32 targets and classes that do not start at 0.
  const torch::Tensor sparse = torch::tensor({4, 7, 4, 7, 7}, torch::kInt);
  CHECK(dlcore::class_balanced_indices(sparse, 2, 0).numel() == 4);
}

TEST_CASE("class_balanced_indices rejects impossible requests", "[split]") {
  using Catch::Contains;
  const torch::Tensor t = torch::tensor({0, 0, 1, 1, 1, 2});
  CHECK_THAT(
      error_of([&] { dlcore::class_balanced_indices(t, 2, 0); }),
      Contains(
          "class_balanced_indices: expected at least per_class (2) samples "
          "of every class but class 2 has 1"));
  CHECK_THAT(
      error_of([&] { dlcore::class_balanced_indices(t, 0, 0); }),
      Contains("expected per_class >= 1 but got 0"));
  CHECK_THAT(
      error_of(
          [&] { dlcore::class_balanced_indices(t.to(torch::kFloat), 1, 0); }),
      Contains("class_balanced_indices: expected 1-D integer class targets but "
               "got Float [6]"));
  CHECK_THAT(
      error_of([&] {
        dlcore::class_balanced_indices(torch::tensor({0, -1}), 1, 0);
      }),
      Contains("expected class targets >= 0 but target 1 is -1"));
  // With num_classes, a class without samples is an error too.
  CHECK_THAT(
      error_of([&] { dlcore::class_balanced_indices(t, 1, 0, 4); }),
      Contains("but class 3 has 0"));
  CHECK_THAT(
      error_of([&] { dlcore::class_balanced_indices(t, 1, 0, 2); }),
      Contains(
          "expected class targets below num_classes (2) but target 5 is 2"));
  CHECK(dlcore::class_balanced_indices(t, 1, 0, 3).numel() == 3);
}

TEST_CASE(
    "filter_classes keeps chosen classes and can relabel them", "[split]") {
  const dlcore::TensorDataset full = ids(30);
  const dlcore::TensorDataset kept =
      dlcore::filter_classes(full, {7, 2}, false);
  CHECK(indices_of(kept) == std::vector<int64_t>{2, 7, 12, 17, 22, 27});
  CHECK(to_vec(kept.targets) == std::vector<int64_t>{2, 7, 2, 7, 2, 7});

  const dlcore::TensorDataset relabelled =
      dlcore::filter_classes(full, {7, 2}, true);
  CHECK(indices_of(relabelled) == indices_of(kept));
  CHECK(to_vec(relabelled.targets) == std::vector<int64_t>{1, 0, 1, 0, 1, 0});
  CHECK(relabelled.targets.scalar_type() == torch::kLong);

  // Brute-force reference on random int32 targets.
  const torch::Tensor y = torch::randint(
      0, 6, {500}, at::detail::createCPUGenerator(9), torch::kInt);
  const dlcore::TensorDataset ds{torch::arange(500).to(torch::kFloat), y};
  const dlcore::TensorDataset f = dlcore::filter_classes(ds, {5, 0, 3}, true);
  std::vector<int64_t> want_idx;
  std::vector<int64_t> want_y;
  const std::vector<int64_t> yv = to_vec(y);
  for (int64_t i = 0; i < 500; ++i) {
    const int64_t c = yv[static_cast<size_t>(i)];
    if (c == 5 || c == 0 || c == 3) {
      want_idx.push_back(i);
      want_y.push_back(c == 5 ? 0 : c == 0 ? 1 : 2);
    }
  }
  CHECK(to_vec(f.data) == want_idx);
  CHECK(to_vec(f.targets) == want_y);
  CHECK(f.targets.scalar_type() == torch::kInt);

  CHECK(dlcore::filter_classes(full, {42}, true).size() == 0);

  using Catch::Contains;
  CHECK_THAT(
      error_of([&] { dlcore::filter_classes(full, {}, true); }),
      Contains("filter_classes: expected at least one class but got none"));
  CHECK_THAT(
      error_of([&] {
        dlcore::filter_classes(full, {1, 3, 1}, true);
      }),
      Contains("filter_classes: expected distinct classes but 1 appears more "
               "than once"));
}
