#include <dlcore/study/batch_size_study.h>

#include <dlcore/data/batches.h>
#include <dlcore/train/train_loop.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace {

using Catch::Matchers::Contains;

/// Three Gaussian blobs in 4-D, seeded: easy to separate.
dlcore::TensorDataset blobs(int64_t n, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto centers = torch::tensor(
      {{3.0f, 0.0f, 0.0f, 0.0f},
       {0.0f, 3.0f, 0.0f, 0.0f},
       {0.0f, 0.0f, 3.0f, 0.0f}});
  auto y = torch::randint(0, 3, {n}, gen, torch::kLong);
  auto x = centers.index_select(0, y) + torch::randn({n, 4}, gen);
  return {x, y};
}

auto make_model_from(uint64_t seed) {
  return [seed]() mutable {
    torch::manual_seed(seed++);
    return torch::nn::Linear(4, 3);
  };
}

auto make_sgd = [](torch::nn::Linear& m, double lr) {
  return torch::optim::SGD(
      m->parameters(), torch::optim::SGDOptions(lr).momentum(0.9));
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "(no error)";
}

} // namespace

TEST_CASE(
    "BatchSizeStudyOptions has the documented defaults", "[batch_size_study]") {
  dlcore::BatchSizeStudyOptions o(0.01);
  CHECK(o.lr() == 0.01);
  CHECK(
      o.batch_sizes() ==
      std::vector<int64_t>{32, 64, 128, 256, 512, 1024, 2048, 4096});
  REQUIRE(o.rules().size() == 1);
  CHECK(o.rules()[0] == dlcore::BatchLRRule::kFixed);
  CHECK(o.base_batch_size() == 32);
  CHECK(o.epochs() == 5);
  CHECK(o.shuffle());
  CHECK(o.seed() == 0);
  CHECK_FALSE(o.drop_last());
  CHECK(o.eval_batch_size() == 1024);
  CHECK(o.stop_on_non_finite());
  CHECK(
      std::string(dlcore::to_string(dlcore::BatchLRRule::kLinear)) == "linear");
}

TEST_CASE(
    "the linear rule scales the LR with the batch size (Goyal et al.)",
    "[batch_size_study]") {
  auto o = dlcore::BatchSizeStudyOptions(0.1).base_batch_size(64);
  CHECK(o.lr_for(256, dlcore::BatchLRRule::kFixed) == 0.1);
  CHECK(o.lr_for(256, dlcore::BatchLRRule::kLinear) == 0.4);
  CHECK(o.lr_for(32, dlcore::BatchLRRule::kLinear) == 0.05);
}

TEST_CASE("invalid batch-size studies are clear errors", "[batch_size_study]") {
  auto train = blobs(40, 1);
  auto val = blobs(20, 2);
  auto run = [&](dlcore::BatchSizeStudyOptions o) {
    return error_of([&] {
      dlcore::batch_size_study(make_model_from(0), make_sgd, train, val, o);
    });
  };
  using O = dlcore::BatchSizeStudyOptions;
  CHECK_THAT(
      run(O(0.0)),
      Contains("batch_size_study: lr must be finite and > 0, but got 0"));
  CHECK_THAT(
      run(O(std::nan(""))),
      Contains("batch_size_study: lr must be finite and > 0, but got nan"));
  CHECK_THAT(
      run(O(0.1).batch_sizes({})),
      Contains("batch_size_study: expected at least one batch size"));
  CHECK_THAT(
      run(O(0.1).batch_sizes({8, 0})),
      Contains("batch_size_study: batch sizes must be >= 1, but got 0"));
  CHECK_THAT(
      run(O(0.1).batch_sizes({-4})),
      Contains("batch sizes must be >= 1, but got -4"));
  CHECK_THAT(
      run(O(0.1).rules({})),
      Contains("batch_size_study: expected at least one LR rule"));
  CHECK_THAT(
      run(O(0.1).base_batch_size(0)),
      Contains("batch_size_study: base_batch_size must be >= 1, but got 0"));
  CHECK_THAT(
      run(O(0.1).epochs(0)),
      Contains("batch_size_study: epochs must be >= 1, but got 0"));
  CHECK_THAT(
      run(O(0.1).eval_batch_size(0)),
      Contains("batch_size_study: eval_batch_size must be >= 1, but got 0"));
  CHECK_THAT(
      run(O(0.1).batch_sizes({64}).drop_last(true).epochs(1)),
      Contains("batch_size_study: batch size 64 with drop_last leaves no "
               "batch of the 40 training samples"));

  dlcore::TensorDataset empty{
      torch::zeros({0, 4}), torch::zeros({0}, torch::kLong)};
  CHECK_THAT(
      error_of([&] {
        dlcore::batch_size_study(
            make_model_from(0), make_sgd, empty, val, O(0.1).epochs(1));
      }),
      Contains("batch_size_study: expected non-empty train and val sets, but "
               "got 0 and 20 samples"));
  dlcore::TensorDataset bad{
      torch::zeros({5, 4}), torch::zeros({4}, torch::kLong)};
  CHECK_THAT(
      error_of([&] {
        dlcore::batch_size_study(
            make_model_from(0), make_sgd, bad, val, O(0.1).epochs(1));
      }),
      Contains("batch_size_study (train): expected data and targets with the "
               "same number of samples"));
}

TEST_CASE(
    "every batch size and rule is one run with per-epoch records",
    "[batch_size_study]") {
  auto train = blobs(100, 3);
  auto val = blobs(30, 4);
  int calls = 0;
  auto o =
      dlcore::BatchSizeStudyOptions(0.02)
          .batch_sizes({8, 32, 256})
          .rules({dlcore::BatchLRRule::kFixed, dlcore::BatchLRRule::kLinear})
          .base_batch_size(8)
          .epochs(3)
          .on_run([&](const dlcore::BatchSizeRun&) { ++calls; });
  auto s =
      dlcore::batch_size_study(make_model_from(0), make_sgd, train, val, o);
  REQUIRE(s.runs.size() == 6);
  CHECK(calls == 6);
  const std::vector<int64_t> steps_per_epoch = {13, 4, 1};
  for (std::size_t i = 0; i < 6; ++i) {
    const auto& r = s.runs[i];
    CHECK(r.batch_size == o.batch_sizes()[i / 2]);
    CHECK(r.rule == o.rules()[i % 2]);
    CHECK(r.lr == o.lr_for(r.batch_size, r.rule));
    CHECK(r.steps == 3 * steps_per_epoch[i / 2]); // last partial batch kept
    CHECK(r.train_loss.size() == 3);
    CHECK(r.val_accuracy.size() == 3);
    CHECK(r.final_train_loss == r.train_loss.back());
    CHECK(r.final_val_accuracy == r.val_accuracy.back());
    CHECK(r.final_val_loss == r.val_loss.back());
    CHECK(r.final_val_accuracy >= 0.0);
    CHECK(r.final_val_accuracy <= 1.0);
    CHECK(r.seconds >= 0.0);
    CHECK_FALSE(r.diverged);
  }
  // At bs 8 both rules use the same LR: the second record reuses the first
  // (training again would repeat it exactly).
  CHECK(s.runs[0].train_loss == s.runs[1].train_loss);
  CHECK_FALSE(s.runs[0].reused);
  CHECK(s.runs[1].reused);
  CHECK(s.runs[1].rule == dlcore::BatchLRRule::kLinear);
  CHECK_FALSE(s.runs[3].reused);
  CHECK(s.runs[2].lr == 0.02);
  CHECK(s.runs[3].lr == 0.08);
}

TEST_CASE(
    "runs start from the same weights and order, so only the batch size "
    "differs",
    "[batch_size_study]") {
  auto train = blobs(64, 5);
  auto val = blobs(16, 6);
  // make_model gives a new random initialisation per call.
  auto o = dlcore::BatchSizeStudyOptions(0.05).batch_sizes({16, 16}).epochs(2);
  auto s =
      dlcore::batch_size_study(make_model_from(11), make_sgd, train, val, o);
  REQUIRE(s.runs.size() == 2);
  CHECK(s.runs[0].train_loss == s.runs[1].train_loss);
  CHECK(s.runs[0].val_accuracy == s.runs[1].val_accuracy);
  // Two different rules at the base size reuse; and two runs that were both
  // trained (fixed, one size listed twice) agree bitwise, which is what makes
  // the reuse exact.
  auto twice = dlcore::batch_size_study(
      make_model_from(11),
      make_sgd,
      train,
      val,
      dlcore::BatchSizeStudyOptions(o)
          .batch_sizes({16})
          .base_batch_size(16)
          .rules({dlcore::BatchLRRule::kFixed, dlcore::BatchLRRule::kLinear}));
  CHECK(twice.runs[1].reused);
  CHECK(twice.runs[1].train_loss == s.runs[0].train_loss);

  auto again =
      dlcore::batch_size_study(make_model_from(11), make_sgd, train, val, o);
  CHECK(again.runs[0].train_loss == s.runs[0].train_loss);
  auto other = dlcore::batch_size_study(
      make_model_from(11), make_sgd, train, val, o.seed(99));
  CHECK(other.runs[0].train_loss != s.runs[0].train_loss);
}

TEST_CASE(
    "edge batch sizes: 1, the whole set and larger", "[batch_size_study]") {
  auto train = blobs(10, 7);
  auto val = blobs(5, 8);
  auto o =
      dlcore::BatchSizeStudyOptions(0.01).batch_sizes({1, 10, 1000}).epochs(2);
  auto s =
      dlcore::batch_size_study(make_model_from(0), make_sgd, train, val, o);
  REQUIRE(s.runs.size() == 3);
  CHECK(s.runs[0].steps == 20);
  CHECK(s.runs[1].steps == 2);
  CHECK(s.runs[2].steps == 2);
  CHECK(s.runs[1].train_loss == s.runs[2].train_loss);
  auto d = dlcore::batch_size_study(
      make_model_from(0),
      make_sgd,
      train,
      val,
      o.batch_sizes({3}).drop_last(true));
  CHECK(d.runs[0].steps == 6);
}

TEST_CASE(
    "a diverging run is marked and stops without validation",
    "[batch_size_study]") {
  auto train = blobs(32, 9);
  auto val = blobs(8, 10);
  auto s = dlcore::batch_size_study(
      make_model_from(0),
      make_sgd,
      train,
      val,
      dlcore::BatchSizeStudyOptions(1e10).batch_sizes({4}).epochs(3),
      [](const torch::Tensor& out, const torch::Tensor& y) {
        // Squared error: its gradient grows with the weights, so a huge LR
        // overflows to inf and NaN within a few steps.
        return torch::mse_loss(out, torch::one_hot(y, 3).to(torch::kFloat));
      });
  REQUIRE(s.runs.size() == 1);
  CHECK(s.runs[0].diverged);
  CHECK(std::isnan(s.runs[0].final_val_accuracy));
  CHECK_FALSE(std::isfinite(s.runs[0].final_train_loss));
  CHECK(s.runs[0].train_loss.size() == 1);
}

TEST_CASE(
    "the study trains a real classifier to high validation accuracy",
    "[batch_size_study]") {
  auto train = blobs(600, 12);
  auto val = blobs(200, 13);
  auto s = dlcore::batch_size_study(
      make_model_from(1),
      [](torch::nn::Linear& m, double lr) {
        return std::make_shared<torch::optim::Adam>(
            m->parameters(), torch::optim::AdamOptions(lr));
      },
      train,
      val,
      dlcore::BatchSizeStudyOptions(0.05).batch_sizes({16, 600}).epochs(4));
  REQUIRE(s.runs.size() == 2);
  CHECK(s.runs[0].final_val_accuracy > 0.9);
  // More steps per epoch at the small batch size: lower training loss.
  CHECK(s.runs[0].final_train_loss < s.runs[1].final_train_loss);
}

TEST_CASE(
    "a run's records are train_epoch's and evaluate's per-batch numbers",
    "[batch_size_study]") {
  // 90 samples in batches of 16: the last batch has 10, so the per-batch
  // mean the study records differs from train_epoch's per-sample default.
  auto train = blobs(90, 14);
  auto val = blobs(25, 15);
  auto o = dlcore::BatchSizeStudyOptions(0.05)
               .batch_sizes({16})
               .epochs(2)
               .seed(7)
               .eval_batch_size(10);
  auto s =
      dlcore::batch_size_study(make_model_from(3), make_sgd, train, val, o);
  REQUIRE(s.runs.size() == 1);
  const auto& r = s.runs[0];
  CHECK(r.steps == 12);

  torch::manual_seed(3); // make_model_from(3)'s first model
  torch::nn::Linear ref(4, 3);
  auto sgd = make_sgd(ref, 0.05);
  dlcore::Batches tb(train, dlcore::BatchesOptions(16).shuffle(true).seed(7));
  dlcore::Batches vb(val, dlcore::BatchesOptions(10));
  for (int64_t e = 0; e < 2; ++e) {
    tb.set_epoch(e);
    auto m = dlcore::train_epoch(
        ref,
        tb,
        sgd,
        dlcore::TrainOptions().loss_average(dlcore::LossAverage::kPerBatch));
    CHECK(r.train_loss[e] == m.loss);
    CHECK(r.train_accuracy[e] == m.accuracy);
    auto v = dlcore::evaluate(
        ref,
        vb,
        dlcore::EvaluateOptions().loss_average(dlcore::LossAverage::kPerBatch));
    CHECK(r.val_loss[e] == v.loss);
    CHECK(r.val_accuracy[e] == v.accuracy);
    auto per_sample = dlcore::evaluate(ref, vb);
    CHECK(per_sample.loss != v.loss);
  }
}

TEST_CASE(
    "without stop_on_non_finite a diverging run trains every epoch",
    "[batch_size_study]") {
  auto train = blobs(32, 9);
  auto val = blobs(8, 10);
  auto s = dlcore::batch_size_study(
      make_model_from(0),
      make_sgd,
      train,
      val,
      dlcore::BatchSizeStudyOptions(1e10)
          .batch_sizes({4})
          .epochs(2)
          .stop_on_non_finite(false),
      [](const torch::Tensor& out, const torch::Tensor& y) {
        return torch::mse_loss(out, torch::one_hot(y, 3).to(torch::kFloat));
      });
  REQUIRE(s.runs.size() == 1);
  const auto& r = s.runs[0];
  CHECK(r.diverged);
  CHECK(r.steps == 16);
  REQUIRE(r.train_loss.size() == 2);
  REQUIRE(r.val_accuracy.size() == 2);
  CHECK_FALSE(std::isfinite(r.train_loss[0]));
  CHECK(std::isnan(r.train_accuracy[0])); // a non-finite epoch has no accuracy
  CHECK(std::isnan(r.train_accuracy[1]));
  CHECK(r.final_val_accuracy == r.val_accuracy.back());
}
