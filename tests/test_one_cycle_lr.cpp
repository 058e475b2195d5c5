#include <dlcore/optim/one_cycle_lr.h>

#include <dlcore/data/batches.h>
#include <dlcore/train/train_loop.h>

#include "golden/schedulers.h"
#include "sched_check.h"

#include <cmath>
#include <functional>
#include <sstream>

namespace {

using dlcore::AnnealStrategy;
using dlcore::OneCycleLR;
using dlcore::OneCycleLROptions;
using dlcore_golden::SchedRow;

std::vector<torch::optim::OptimizerParamGroup> groups(int n) {
  std::vector<torch::optim::OptimizerParamGroup> out;
  for (int i = 0; i < n; ++i) {
    out.emplace_back(
        std::vector<torch::Tensor>{torch::zeros({2}, torch::requires_grad())});
  }
  return out;
}

// The golden generator's optimizers (scripts/golden/schedulers.py).
torch::optim::SGD make_sgd(int n, double momentum = 0.3) {
  return torch::optim::SGD(
      groups(n), torch::optim::SGDOptions(0.5).momentum(momentum));
}

using dlcore_test::check_row;

// Steps through the table from the scheduler's current batch; rows may be
// sampled (t increasing).
void check_table(
    torch::optim::Optimizer& opt,
    OneCycleLR& sched,
    const std::vector<SchedRow>& table) {
  REQUIRE(table.front().t == sched.last_epoch());
  for (const auto& row : table) {
    while (sched.last_epoch() < row.t) {
      sched.step();
    }
    REQUIRE(sched.last_epoch() == row.t);
    check_row(opt, row);
    CHECK(sched.get_last_lr() == row.lr);
    if (sched.options().cycle_momentum()) {
      CHECK(sched.lr_at(row.t) == row.lr);
      CHECK(sched.momentum_at(row.t) == row.momentum);
    }
  }
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "no error";
}

} // namespace

TEST_CASE("OneCycleLR options have PyTorch's defaults", "[one_cycle_lr]") {
  OneCycleLROptions o(0.1);
  CHECK(o.max_lr().values() == std::vector<double>{0.1});
  CHECK_FALSE(o.total_steps());
  CHECK_FALSE(o.epochs());
  CHECK_FALSE(o.steps_per_epoch());
  CHECK(o.pct_start() == 0.3);
  CHECK(o.anneal_strategy() == AnnealStrategy::kCos);
  CHECK(o.cycle_momentum());
  CHECK(o.base_momentum().values() == std::vector<double>{0.85});
  CHECK(o.max_momentum().values() == std::vector<double>{0.95});
  CHECK(o.div_factor() == 25.0);
  CHECK(o.final_div_factor() == 1e4);
  CHECK_FALSE(o.three_phase());
  CHECK(o.last_epoch() == -1);
}

TEST_CASE(
    "OneCycleLR construction writes initial_lr and max_momentum",
    "[one_cycle_lr]") {
  auto opt = make_sgd(1);
  OneCycleLR sched(opt, OneCycleLROptions(0.1).total_steps(20));
  CHECK(sched.last_epoch() == 0);
  CHECK(sched.total_steps() == 20);
  CHECK(dlcore::group_lrs(opt)[0] == Approx(0.1 / 25).epsilon(1e-15));
  CHECK(dlcore::group_momenta(opt)[0] == Approx(0.95).epsilon(1e-15));
  check_row(opt, dlcore_golden::kOneCycleCos[0]);
}

TEST_CASE("OneCycleLR cos matches PyTorch bit for bit", "[one_cycle_lr]") {
  auto opt = make_sgd(1);
  OneCycleLR sched(opt, OneCycleLROptions(0.1).total_steps(20));
  check_table(opt, sched, dlcore_golden::kOneCycleCos);
}

TEST_CASE("OneCycleLR linear matches PyTorch", "[one_cycle_lr]") {
  auto opt = make_sgd(1);
  OneCycleLR sched(
      opt,
      OneCycleLROptions(0.1).total_steps(20).anneal_strategy(
          AnnealStrategy::kLinear));
  check_table(opt, sched, dlcore_golden::kOneCycleLinear);
}

TEST_CASE("OneCycleLR three_phase matches PyTorch", "[one_cycle_lr]") {
  SECTION("cos, pct_start 0.25") {
    auto opt = make_sgd(1);
    OneCycleLR sched(
        opt,
        OneCycleLROptions(0.5).total_steps(25).pct_start(0.25).three_phase(
            true));
    check_table(opt, sched, dlcore_golden::kOneCycleThreePhaseCos);
  }
  SECTION("linear, pct_start 0.4, div_factor 10, final_div_factor 100") {
    auto opt = make_sgd(1);
    OneCycleLR sched(
        opt,
        OneCycleLROptions(0.05)
            .total_steps(30)
            .pct_start(0.4)
            .div_factor(10)
            .final_div_factor(100)
            .three_phase(true)
            .anneal_strategy(AnnealStrategy::kLinear));
    check_table(opt, sched, dlcore_golden::kOneCycleThreePhaseLinear);
  }
}

TEST_CASE(
    "OneCycleLR with epochs and steps_per_epoch cycles Adam's beta1",
    "[one_cycle_lr]") {
  torch::optim::Adam opt(
      groups(1), torch::optim::AdamOptions(0.5).betas({0.9, 0.999}));
  OneCycleLR sched(
      opt, OneCycleLROptions(0.01).epochs(3).steps_per_epoch(7).pct_start(0.5));
  CHECK(sched.total_steps() == 21);
  check_table(opt, sched, dlcore_golden::kOneCycleEpochsAdam);
}

TEST_CASE(
    "OneCycleLR takes one value per param group (AdamW, three phases)",
    "[one_cycle_lr]") {
  torch::optim::AdamW opt(
      groups(2), torch::optim::AdamWOptions(0.5).betas({0.9, 0.98}));
  OneCycleLR sched(
      opt,
      OneCycleLROptions({0.1, 0.02})
          .total_steps(16)
          .three_phase(true)
          .base_momentum({0.8, 0.85})
          .max_momentum({0.9, 0.99})
          .div_factor(5)
          .final_div_factor(50));
  check_table(opt, sched, dlcore_golden::kOneCycleTwoGroupsAdamW);
}

TEST_CASE(
    "OneCycleLR without cycle_momentum leaves momentum alone",
    "[one_cycle_lr]") {
  auto opt = make_sgd(1, 0.5);
  OneCycleLR sched(
      opt, OneCycleLROptions(0.2).total_steps(12).cycle_momentum(false));
  check_table(opt, sched, dlcore_golden::kOneCycleNoMomentum);
  CHECK(sched.get_last_momentum().empty());
  CHECK_THAT(
      error_of([&] { sched.momentum_at(0); }),
      Catch::Contains("needs cycle_momentum(true)"));
  torch::optim::Adagrad adagrad(groups(1), torch::optim::AdagradOptions(0.5));
  CHECK_NOTHROW(OneCycleLR(
      adagrad, OneCycleLROptions(0.2).total_steps(12).cycle_momentum(false)));
}

TEST_CASE("OneCycleLR edge values of pct_start", "[one_cycle_lr]") {
  SECTION("0: no warm-up phase") {
    auto opt = make_sgd(1);
    OneCycleLR sched(opt, OneCycleLROptions(0.1).total_steps(10).pct_start(0));
    check_table(opt, sched, dlcore_golden::kOneCyclePctZero);
  }
  SECTION("1: warm-up only; batch total_steps divides by zero") {
    auto opt = make_sgd(1);
    OneCycleLR sched(opt, OneCycleLROptions(0.1).total_steps(10).pct_start(1));
    check_table(opt, sched, dlcore_golden::kOneCyclePctOne);
    const auto before = dlcore::group_lrs(opt);
    CHECK_THAT(
        error_of([&] { sched.step(); }),
        Catch::Contains("batch 10 falls in a phase of zero length"));
    CHECK(sched.last_epoch() == 9);
    CHECK(dlcore::group_lrs(opt) == before);
  }
  SECTION("pct_start * total_steps == 1: first batch divides by zero") {
    auto opt = make_sgd(1);
    CHECK_THAT(
        error_of([&] {
          OneCycleLR(
              opt, OneCycleLROptions(0.1).total_steps(4).pct_start(0.25));
        }),
        Catch::Contains("batch 0 falls in a phase of zero length"));
  }
}

TEST_CASE(
    "OneCycleLR over 15 epochs of 469 batches matches PyTorch",
    "[one_cycle_lr]") {
  auto opt = make_sgd(1);
  OneCycleLR sched(opt, OneCycleLROptions(0.3).epochs(15).steps_per_epoch(469));
  check_table(opt, sched, dlcore_golden::kOneCycleLong);
}

TEST_CASE(
    "OneCycleLR stepped past the end fails with PyTorch's count",
    "[one_cycle_lr]") {
  auto opt = make_sgd(1);
  OneCycleLR sched(opt, OneCycleLROptions(0.1).total_steps(4));
  for (int k = 0; k < 4; ++k) {
    sched.step(); // batch 4 == total_steps is still allowed, as in PyTorch
  }
  CHECK(sched.last_epoch() == 4);
  const auto before = dlcore::group_lrs(opt);
  const std::string message = error_of([&] { sched.step(); });
  CHECK_THAT(message, Catch::Contains(dlcore_golden::kOneCycleSteppedPast));
  CHECK_THAT(message, Catch::StartsWith("OneCycleLR: Tried to step 6 times"));
  // Unlike PyTorch, a failed step changes nothing.
  CHECK(sched.last_epoch() == 4);
  CHECK(dlcore::group_lrs(opt) == before);
  CHECK_THAT(
      error_of([&] { sched.step(); }),
      Catch::Contains("Tried to step 6 times"));
  CHECK_THAT(
      error_of([&] { sched.lr_at(5); }),
      Catch::Contains("batch index 5 is outside the schedule [0, 4]"));
  CHECK_THAT(
      error_of([&] { sched.lr_at(-1); }),
      Catch::Contains("batch index -1 is outside"));
}

TEST_CASE("OneCycleLR agrees with a brute-force reference", "[one_cycle_lr]") {
  // Property: the LR at batch t follows the phase formulas, written here
  // independently (and with another order of operations, hence Approx).
  const double pi = std::acos(-1.0);
  for (int64_t total : {3, 10, 37, 100}) {
    for (double pct : {0.1, 0.3, 0.45, 0.8}) {
      for (bool three : {false, true}) {
        auto opt = make_sgd(1);
        const double max_lr = 0.2, div = 25, final_div = 1e4;
        if (std::abs(pct * total - 1) < 1e-9) {
          continue; // a zero-length phase: tested separately
        }
        OneCycleLR sched(
            opt,
            OneCycleLROptions(max_lr)
                .total_steps(total)
                .pct_start(pct)
                .three_phase(three));
        const double init = max_lr / div, min_lr = init / final_div;
        const double e1 = pct * total - 1;
        const double e2 = three ? 2 * pct * total - 2 : total - 1.0;
        auto cosine = [&](double a, double b, double p) {
          return b + (a - b) / 2 * (std::cos(pi * p) + 1);
        };
        for (int64_t t = 0; t < total; ++t) {
          double want;
          if (t <= e1) {
            want = cosine(init, max_lr, t / e1);
          } else if (!three || t <= e2) {
            want = cosine(max_lr, three ? init : min_lr, (t - e1) / (e2 - e1));
          } else {
            want = cosine(init, min_lr, (t - e2) / (total - 1 - e2));
          }
          INFO(
              "T " << total << " pct " << pct << " three " << three << " t "
                   << t);
          CHECK(sched.lr_at(t)[0] == Approx(want).epsilon(1e-12).margin(1e-15));
        }
      }
    }
  }
}

TEST_CASE(
    "OneCycleLR resumed from an archive continues bit-identically",
    "[one_cycle_lr]") {
  auto make = [] {
    return torch::optim::AdamW(
        groups(2), torch::optim::AdamWOptions(0.5).betas({0.9, 0.98}));
  };
  auto opts = OneCycleLROptions({0.1, 0.02})
                  .total_steps(16)
                  .three_phase(true)
                  .base_momentum({0.8, 0.85})
                  .max_momentum({0.9, 0.99})
                  .div_factor(5)
                  .final_div_factor(50);
  std::stringstream stream;
  {
    auto opt = make();
    OneCycleLR sched(opt, opts);
    for (int k = 0; k < 5; ++k) {
      sched.step();
    }
    torch::serialize::OutputArchive archive;
    sched.save(archive);
    archive.save_to(stream);
  }
  auto opt = make();
  OneCycleLR sched(opt, opts);
  torch::serialize::InputArchive archive;
  archive.load_from(stream);
  sched.load(archive);
  CHECK(sched.last_epoch() == 5);
  const auto& table = dlcore_golden::kOneCycleTwoGroupsAdamW;
  check_table(opt, sched, {table.begin() + 5, table.end()});
}

TEST_CASE(
    "OneCycleLR refuses an archive saved with other options",
    "[one_cycle_lr]") {
  std::stringstream stream;
  {
    auto opt = make_sgd(1);
    OneCycleLR sched(opt, OneCycleLROptions(0.1).total_steps(20));
    sched.step();
    torch::serialize::OutputArchive archive;
    sched.save(archive);
    archive.save_to(stream);
  }
  auto load_into = [&](const OneCycleLROptions& o) {
    stream.clear();
    stream.seekg(0);
    auto opt = make_sgd(1);
    OneCycleLR sched(opt, o);
    torch::serialize::InputArchive archive;
    archive.load_from(stream);
    sched.load(archive);
    return sched.last_epoch();
  };
  CHECK(load_into(OneCycleLROptions(0.1).total_steps(20)) == 1);
  CHECK_THAT(
      error_of([&] { load_into(OneCycleLROptions(0.1).total_steps(21)); }),
      Catch::Contains(
          "saved with total_steps = 20, but this scheduler has 21"));
  CHECK_THAT(
      error_of([&] { load_into(OneCycleLROptions(0.2).total_steps(20)); }),
      Catch::Contains("saved with initial_lr[0]"));
  CHECK_THAT(
      error_of([&] {
        load_into(OneCycleLROptions(0.1).total_steps(20).pct_start(0.5));
      }),
      Catch::Contains("phase_ends"));
  CHECK_THAT(
      error_of([&] {
        load_into(OneCycleLROptions(0.1).total_steps(20).anneal_strategy(
            AnnealStrategy::kLinear));
      }),
      Catch::Contains("another anneal_strategy"));
}

TEST_CASE(
    "OneCycleLR with last_epoch k continues at k + 1 like PyTorch",
    "[one_cycle_lr]") {
  const auto& table = dlcore_golden::kOneCycleCos;
  auto opt = make_sgd(1);
  OneCycleLR sched(opt, OneCycleLROptions(0.1).total_steps(20).last_epoch(8));
  CHECK(sched.last_epoch() == 9);
  check_table(opt, sched, {table.begin() + 9, table.end()});
}

TEST_CASE("OneCycleLR drives a real SGD training loop", "[one_cycle_lr]") {
  torch::manual_seed(0);
  auto x = torch::randn({64, 3});
  auto y = x.matmul(torch::tensor({1.0f, -2.0f, 0.5f})).unsqueeze(1);
  torch::nn::Linear model(3, 1);
  torch::optim::SGD opt(
      model->parameters(), torch::optim::SGDOptions(1.0).momentum(0.9));
  OneCycleLR sched(opt, OneCycleLROptions(0.1).total_steps(100));
  const double first = torch::mse_loss(model->forward(x), y).item<double>();
  for (int t = 0; t < 100; ++t) {
    opt.zero_grad();
    torch::mse_loss(model->forward(x), y).backward();
    opt.step();
    sched.step();
    CHECK(dlcore::group_lrs(opt) == sched.lr_at(t + 1));
  }
  CHECK(torch::mse_loss(model->forward(x), y).item<double>() < 0.01 * first);
}

TEST_CASE(
    "OneCycleLR runs a whole epochs x steps_per_epoch schedule through "
    "train_epoch",
    "[one_cycle_lr]") {
  torch::manual_seed(0);
  auto x = torch::randn({100, 4});
  auto y = (x.select(1, 0) > 0).to(torch::kLong);
  dlcore::Batches batches(
      dlcore::TensorDataset{x, y},
      dlcore::BatchesOptions(16).shuffle(true).seed(3));
  torch::nn::Linear model(4, 2);
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(1e-3));
  const int64_t epochs = 3;
  OneCycleLR sched(
      opt,
      OneCycleLROptions(0.05).epochs(epochs).steps_per_epoch(batches.size()));
  std::vector<std::vector<double>> lrs, momenta;
  int64_t global = 0;
  for (int64_t e = 0; e < epochs; ++e) {
    batches.set_epoch(e);
    dlcore::train_epoch(
        model,
        batches,
        opt,
        sched,
        dlcore::TrainOptions().epoch(e).global_step(global).on_step(
            [&](dlcore::StepInfo& info) {
              lrs.push_back(info.lrs);
              momenta.push_back(info.momenta);
            }));
    global += batches.size();
  }
  // Every batch trained with the schedule's value; the last step() reaches
  // batch total_steps, which PyTorch (and dlcore) still allow.
  REQUIRE(static_cast<int64_t>(lrs.size()) == sched.total_steps());
  for (int64_t t = 0; t < sched.total_steps(); ++t) {
    CHECK(lrs[t] == sched.lr_at(t));
    CHECK(momenta[t] == sched.momentum_at(t));
  }
  CHECK(sched.last_epoch() == sched.total_steps());
  CHECK_THROWS_WITH(sched.step(), Catch::Contains("Tried to step"));
}

TEST_CASE(
    "OneCycleLR rejects bad options with clear messages", "[one_cycle_lr]") {
  auto msg = [](const OneCycleLROptions& o, int n = 1) {
    auto opt = make_sgd(n);
    return error_of([&] { OneCycleLR sched(opt, o); });
  };
  const double nan = std::nan("");
  const OneCycleLROptions ok = OneCycleLROptions(0.1).total_steps(10);
  CHECK(msg(ok) == "no error");
  CHECK_THAT(
      msg(OneCycleLROptions(0.1)),
      Catch::Contains("OneCycleLR: you must define either total_steps or "
                      "(epochs and steps_per_epoch); got epochs = none, "
                      "steps_per_epoch = none"));
  CHECK_THAT(
      msg(OneCycleLROptions(0.1).epochs(3)),
      Catch::Contains("got epochs = 3, steps_per_epoch = none"));
  CHECK_THAT(
      msg(OneCycleLROptions(0.1).total_steps(0)),
      Catch::Contains("total_steps must be >= 1, but got 0"));
  CHECK_THAT(
      msg(OneCycleLROptions(0.1).epochs(0).steps_per_epoch(3)),
      Catch::Contains("epochs must be >= 1, but got 0"));
  CHECK_THAT(
      msg(OneCycleLROptions(0.1).epochs(2).steps_per_epoch(-1)),
      Catch::Contains("steps_per_epoch must be >= 1, but got -1"));
  CHECK_THAT(
      msg(OneCycleLROptions(0.1)
              .epochs(int64_t{1} << 40)
              .steps_per_epoch(int64_t{1} << 40)),
      Catch::Contains("epochs * steps_per_epoch overflows"));
  CHECK_THAT(
      msg(OneCycleLROptions(ok).pct_start(1.5)),
      Catch::Contains("pct_start must be in [0, 1], but got 1.5"));
  CHECK_THAT(
      msg(OneCycleLROptions(ok).pct_start(-0.1)),
      Catch::Contains("pct_start must be in [0, 1], but got -0.1"));
  CHECK_THAT(
      msg(OneCycleLROptions(ok).pct_start(nan)),
      Catch::Contains("pct_start must be in [0, 1], but got nan"));
  CHECK_THAT(
      msg(OneCycleLROptions(ok).div_factor(0)),
      Catch::Contains("div_factor must be finite and > 0, but got 0"));
  CHECK_THAT(
      msg(OneCycleLROptions(ok).final_div_factor(INFINITY)),
      Catch::Contains("final_div_factor must be finite and > 0, but got inf"));
  CHECK_THAT(
      msg(OneCycleLROptions(ok).max_lr(0.0)),
      Catch::Contains("max_lr must be > 0, but got 0"));
  CHECK_THAT(
      msg(OneCycleLROptions(ok).max_lr({0.1, -1.0}), 2),
      Catch::Contains("max_lr[1] must be > 0, but got -1"));
  CHECK_THAT(
      msg(OneCycleLROptions(ok).max_lr(nan)),
      Catch::Contains("max_lr must be finite, but got nan"));
  CHECK_THAT(
      msg(OneCycleLROptions(ok).max_lr({0.1, 0.2, 0.3}), 2),
      Catch::Contains("expected max_lr to have one value per param group (2 "
                      "groups), but got 3 values"));
  CHECK_THAT(
      msg(OneCycleLROptions(ok).base_momentum(0.96)),
      Catch::Contains("base_momentum (0.96) must be <= max_momentum (0.95)"));
  CHECK_THAT(
      msg(OneCycleLROptions(ok).base_momentum(-0.5)),
      Catch::Contains("base_momentum must be >= 0, but got -0.5"));
  CHECK_THAT(
      msg(OneCycleLROptions(ok).max_momentum({0.9, nan}), 2),
      Catch::Contains("max_momentum[1] must be finite, but got nan"));
  CHECK_THAT(
      msg(OneCycleLROptions(ok).last_epoch(-5)),
      Catch::Contains("last_epoch must be >= -1, but got -5"));
  CHECK_THAT(
      msg(OneCycleLROptions(ok).last_epoch(11)),
      Catch::Contains("Tried to step 13 times"));

  torch::optim::Adagrad adagrad(groups(1), torch::optim::AdagradOptions(0.5));
  CHECK_THAT(
      error_of([&] { OneCycleLR sched(adagrad, ok); }),
      Catch::Contains("cycle_momentum is true, but param group 0 has neither"));
}
