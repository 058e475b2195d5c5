#include <dlcore/optim/cyclic_lr.h>

#include "golden/schedulers.h"
#include "sched_check.h"

#include <cmath>
#include <sstream>

namespace {

using dlcore::CyclicLR;
using dlcore::CyclicLROptions;
using dlcore::CyclicMode;
using dlcore::ScaleMode;
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
torch::optim::Adam make_adam(int n) {
  return torch::optim::Adam(
      groups(n), torch::optim::AdamOptions(0.5).betas({0.9, 0.999}));
}

double scale_fn(double x) {
  return 1 / (1 + 0.1 * x);
}

using dlcore_test::check_row;

// Steps through the table: construction is t = 0, then one step() per
// batch; rows may be sampled (t increasing).
void check_table(
    torch::optim::Optimizer& opt,
    CyclicLR& sched,
    const std::vector<SchedRow>& table) {
  REQUIRE(table.front().t == sched.last_epoch());
  for (const auto& row : table) {
    while (sched.last_epoch() < row.t) {
      sched.step();
    }
    REQUIRE(sched.last_epoch() == row.t);
    check_row(opt, row);
    CHECK(sched.get_last_lr() == row.lr);
  }
}

// The pure queries agree with the table too.
void check_queries(const CyclicLR& sched, const std::vector<SchedRow>& table) {
  for (const auto& row : table) {
    INFO("t = " << row.t);
    CHECK(sched.lr_at(row.t) == row.lr);
    if (sched.options().cycle_momentum()) {
      CHECK(sched.momentum_at(row.t) == row.momentum);
    }
  }
}

} // namespace

TEST_CASE("CyclicLR options have PyTorch's defaults", "[cyclic_lr]") {
  CyclicLROptions o(1e-3, 0.1);
  CHECK(o.base_lr().values() == std::vector<double>{1e-3});
  CHECK(o.max_lr().values() == std::vector<double>{0.1});
  CHECK(o.step_size_up() == 2000);
  CHECK_FALSE(o.step_size_down().has_value());
  CHECK(o.mode() == CyclicMode::kTriangular);
  CHECK(o.gamma() == 1.0);
  CHECK_FALSE(o.scale_fn());
  CHECK(o.scale_mode() == ScaleMode::kCycle);
  CHECK(o.cycle_momentum());
  CHECK(o.base_momentum().values() == std::vector<double>{0.8});
  CHECK(o.max_momentum().values() == std::vector<double>{0.9});
  CHECK(o.last_epoch() == -1);
}

TEST_CASE(
    "CyclicLR construction writes base_lr and max_momentum like PyTorch",
    "[cyclic_lr]") {
  auto opt = make_sgd(1);
  CyclicLR sched(opt, CyclicLROptions(0.001, 0.1).step_size_up(4));
  CHECK(sched.last_epoch() == 0);
  CHECK(dlcore::group_lrs(opt) == std::vector<double>{0.001});
  CHECK(dlcore::group_momenta(opt) == std::vector<double>{0.9});
  CHECK(sched.get_last_lr() == std::vector<double>{0.001});
  CHECK(sched.get_last_momentum() == std::vector<double>{0.9});
}

TEST_CASE("CyclicLR triangular matches PyTorch bit for bit", "[cyclic_lr]") {
  auto opt = make_sgd(1);
  CyclicLR sched(opt, CyclicLROptions(0.001, 0.1).step_size_up(4));
  check_table(opt, sched, dlcore_golden::kCyclicTriangular);
  check_queries(sched, dlcore_golden::kCyclicTriangular);
}

TEST_CASE(
    "CyclicLR triangular2 with asymmetric steps matches PyTorch",
    "[cyclic_lr]") {
  auto opt = make_sgd(1);
  CyclicLR sched(
      opt,
      CyclicLROptions(0.01, 1.0).step_size_up(3).step_size_down(5).mode(
          CyclicMode::kTriangular2));
  check_table(opt, sched, dlcore_golden::kCyclicTriangular2Asym);
  check_queries(sched, dlcore_golden::kCyclicTriangular2Asym);
}

TEST_CASE(
    "CyclicLR exp_range applies gamma per iteration as PyTorch does",
    "[cyclic_lr]") {
  SECTION("gamma 0.99, short cycles") {
    auto opt = make_sgd(1);
    CyclicLR sched(
        opt,
        CyclicLROptions(0.001, 0.1)
            .step_size_up(5)
            .mode(CyclicMode::kExpRange)
            .gamma(0.99));
    check_table(opt, sched, dlcore_golden::kCyclicExpRange099);
  }
  SECTION("gamma 0.9999 over 12000 batches") {
    auto opt = make_sgd(1);
    CyclicLR sched(
        opt,
        CyclicLROptions(1e-4, 0.05)
            .step_size_up(2000)
            .mode(CyclicMode::kExpRange)
            .gamma(0.9999));
    check_table(opt, sched, dlcore_golden::kCyclicExpRange09999Long);
    check_queries(sched, dlcore_golden::kCyclicExpRange09999Long);
  }
}

TEST_CASE(
    "CyclicLR triangular2 with the default step size matches PyTorch over "
    "20000 batches",
    "[cyclic_lr]") {
  auto opt = make_sgd(1);
  CyclicLR sched(
      opt, CyclicLROptions(0.001, 0.006).mode(CyclicMode::kTriangular2));
  check_table(opt, sched, dlcore_golden::kCyclicTriangular2Long);
}

TEST_CASE(
    "CyclicLR custom scale_fn follows scale_mode cycle or iterations",
    "[cyclic_lr]") {
  // mode is ignored when scale_fn is set, as in PyTorch.
  auto base = CyclicLROptions(0.002, 0.2)
                  .step_size_up(4)
                  .step_size_down(2)
                  .mode(CyclicMode::kExpRange)
                  .gamma(0.5)
                  .scale_fn(scale_fn);
  SECTION("cycle") {
    auto opt = make_sgd(1);
    CyclicLR sched(opt, CyclicLROptions(base).scale_mode(ScaleMode::kCycle));
    check_table(opt, sched, dlcore_golden::kCyclicCustomCycle);
  }
  SECTION("iterations") {
    auto opt = make_sgd(1);
    CyclicLR sched(
        opt, CyclicLROptions(base).scale_mode(ScaleMode::kIterations));
    check_table(opt, sched, dlcore_golden::kCyclicCustomIterations);
  }
}

TEST_CASE(
    "CyclicLR cycles Adam's beta1 and leaves beta2 untouched", "[cyclic_lr]") {
  auto opt = make_adam(1);
  CyclicLR sched(
      opt,
      CyclicLROptions(1e-4, 1e-2)
          .step_size_up(3)
          .base_momentum(0.85)
          .max_momentum(0.95));
  check_table(opt, sched, dlcore_golden::kCyclicAdamBeta1);
}

TEST_CASE(
    "CyclicLR cycles AdamW's beta1 and RMSprop's momentum", "[cyclic_lr]") {
  // Same formula as SGD's momentum: compare with an SGD run.
  auto sgd = make_sgd(1);
  torch::optim::AdamW adamw(
      groups(1), torch::optim::AdamWOptions(0.5).betas({0.9, 0.98}));
  torch::optim::RMSprop rms(groups(1), torch::optim::RMSpropOptions(0.5));
  auto opts = CyclicLROptions(0.01, 0.1).step_size_up(3);
  CyclicLR a(sgd, opts), b(adamw, opts), c(rms, opts);
  for (int t = 0; t < 10; ++t) {
    CHECK(dlcore::group_momenta(adamw) == dlcore::group_momenta(sgd));
    CHECK(dlcore::group_momenta(rms) == dlcore::group_momenta(sgd));
    CHECK(dlcore::group_lrs(rms) == dlcore::group_lrs(sgd));
    CHECK(
        std::get<1>(static_cast<torch::optim::AdamWOptions&>(
                        adamw.param_groups()[0].options())
                        .betas()) == 0.98);
    a.step();
    b.step();
    c.step();
  }
}

TEST_CASE("CyclicLR takes one bound per param group", "[cyclic_lr]") {
  auto opt = make_sgd(2);
  CyclicLR sched(
      opt,
      CyclicLROptions({0.001, 0.01}, {0.1, 0.05})
          .step_size_up(3)
          .mode(CyclicMode::kTriangular2)
          .base_momentum({0.8, 0.7})
          .max_momentum({0.9, 0.95}));
  check_table(opt, sched, dlcore_golden::kCyclicTwoGroups);
  check_queries(sched, dlcore_golden::kCyclicTwoGroups);
}

TEST_CASE(
    "CyclicLR without cycle_momentum leaves momentum alone", "[cyclic_lr]") {
  auto opt = make_sgd(1, 0.5);
  CyclicLR sched(
      opt,
      CyclicLROptions(0.01, 0.1)
          .step_size_up(2)
          .mode(CyclicMode::kExpRange)
          .gamma(0.95)
          .cycle_momentum(false));
  check_table(opt, sched, dlcore_golden::kCyclicNoMomentum);
  CHECK(sched.get_last_momentum().empty());
  CHECK_THROWS_WITH(
      sched.momentum_at(0), Catch::Contains("needs cycle_momentum(true)"));

  // No momentum at all is fine then.
  torch::optim::Adagrad adagrad(groups(1), torch::optim::AdagradOptions(0.5));
  CyclicLR plain(adagrad, CyclicLROptions(0.01, 0.1).cycle_momentum(false));
  CHECK(dlcore::group_lrs(adagrad) == std::vector<double>{0.01});
}

TEST_CASE(
    "CyclicLR keeps writing momentum after a group's options are replaced",
    "[cyclic_lr]") {
  auto opt = make_sgd(1);
  CyclicLR sched(opt, CyclicLROptions(0.001, 0.1).step_size_up(4));
  sched.step();
  sched.step();
  // A new options object (and even a new optimizer type's options) in place
  // of the old one: the scheduler must not write through a stale pointer.
  opt.param_groups()[0].set_options(
      std::make_unique<torch::optim::SGDOptions>(0.7));
  sched.step();
  check_row(opt, dlcore_golden::kCyclicTriangular[3]);
  opt.param_groups()[0].set_options(
      std::make_unique<torch::optim::RMSpropOptions>(0.7));
  sched.step();
  check_row(opt, dlcore_golden::kCyclicTriangular[4]);
}

TEST_CASE("CyclicLR lr_at is pure", "[cyclic_lr]") {
  auto opt = make_sgd(1);
  CyclicLR sched(opt, CyclicLROptions(0.001, 0.1).step_size_up(4));
  sched.step();
  const auto before = dlcore::group_lrs(opt);
  CHECK(sched.lr_at(7) == dlcore_golden::kCyclicTriangular[7].lr);
  CHECK(sched.momentum_at(7) == dlcore_golden::kCyclicTriangular[7].momentum);
  CHECK(dlcore::group_lrs(opt) == before);
  CHECK(sched.last_epoch() == 1);
  CHECK_THROWS_WITH(
      sched.lr_at(-1), Catch::Contains("lr_at expects t >= 0, but got -1"));
}

TEST_CASE(
    "CyclicLR agrees with a brute-force triangle at every batch",
    "[cyclic_lr]") {
  // Property: for integer step sizes, the LR is the piecewise-linear triangle
  // between base_lr and max_lr, and the momentum its mirror image.
  for (int64_t up : {1, 2, 3, 7}) {
    for (int64_t down : {1, 4, 6}) {
      auto opt = make_sgd(1);
      const double lo = 0.01, hi = 0.3;
      CyclicLR sched(
          opt, CyclicLROptions(lo, hi).step_size_up(up).step_size_down(down));
      for (int64_t t = 0; t < 3 * (up + down); ++t) {
        const int64_t pos = t % (up + down);
        const double frac = pos <= up
                                ? static_cast<double>(pos) / up
                                : 1.0 - static_cast<double>(pos - up) / down;
        INFO("up " << up << " down " << down << " t " << t);
        CHECK(
            sched.lr_at(t)[0] == Approx(lo + (hi - lo) * frac).epsilon(1e-12));
        CHECK(
            sched.momentum_at(t)[0] == Approx(0.9 - 0.1 * frac).epsilon(1e-12));
      }
    }
  }
}

TEST_CASE(
    "CyclicLR resumed from an archive continues bit-identically",
    "[cyclic_lr]") {
  const auto& table = dlcore_golden::kCyclicTwoGroups;
  auto opts = CyclicLROptions({0.001, 0.01}, {0.1, 0.05})
                  .step_size_up(3)
                  .mode(CyclicMode::kTriangular2)
                  .base_momentum({0.8, 0.7})
                  .max_momentum({0.9, 0.95});
  std::stringstream stream;
  {
    auto opt = make_sgd(2);
    CyclicLR sched(opt, opts);
    for (int k = 0; k < 8; ++k) {
      sched.step();
    }
    torch::serialize::OutputArchive archive;
    sched.save(archive);
    archive.save_to(stream);
  }
  auto opt = make_sgd(2); // fresh optimizer, constructed at step 0
  CyclicLR sched(opt, opts);
  torch::serialize::InputArchive archive;
  archive.load_from(stream);
  sched.load(archive);
  CHECK(sched.last_epoch() == 8);
  check_row(opt, table[8]);
  check_table(opt, sched, {table.begin() + 8, table.end()});
}

TEST_CASE("CyclicLR resumes Adam's beta1 mid-cycle", "[cyclic_lr]") {
  const auto& table = dlcore_golden::kCyclicAdamBeta1;
  auto opts = CyclicLROptions(1e-4, 1e-2)
                  .step_size_up(3)
                  .base_momentum(0.85)
                  .max_momentum(0.95);
  torch::serialize::OutputArchive out;
  {
    auto opt = make_adam(1);
    CyclicLR sched(opt, opts);
    for (int k = 0; k < 7; ++k) {
      sched.step();
    }
    sched.save(out);
  }
  std::stringstream stream;
  out.save_to(stream);
  torch::serialize::InputArchive in;
  in.load_from(stream);
  auto opt = make_adam(1);
  CyclicLR sched(opt, opts);
  sched.load(in);
  check_table(opt, sched, {table.begin() + 7, table.end()});
}

TEST_CASE(
    "CyclicLR refuses an archive saved with other options", "[cyclic_lr]") {
  std::stringstream stream;
  {
    auto opt = make_sgd(1);
    CyclicLR sched(opt, CyclicLROptions(0.001, 0.1).step_size_up(4));
    torch::serialize::OutputArchive archive;
    sched.save(archive);
    archive.save_to(stream);
  }
  auto load_into = [&](const CyclicLROptions& o) {
    stream.clear();
    stream.seekg(0);
    auto opt = make_sgd(1);
    CyclicLR sched(opt, o);
    torch::serialize::InputArchive archive;
    archive.load_from(stream);
    sched.load(archive);
  };
  auto msg = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const c10::Error& e) {
      return std::string(e.what_without_backtrace());
    }
    return std::string("no error");
  };
  CHECK_NOTHROW(load_into(CyclicLROptions(0.001, 0.1).step_size_up(4)));
  CHECK_THAT(
      msg([&] { load_into(CyclicLROptions(0.002, 0.1).step_size_up(4)); }),
      Catch::Contains("saved with base_lr[0] = 0.001, but this scheduler has "
                      "0.002"));
  CHECK_THAT(
      msg([&] { load_into(CyclicLROptions(0.001, 0.1).step_size_up(5)); }),
      Catch::Contains("total_size"));
  CHECK_THAT(
      msg([&] {
        load_into(CyclicLROptions(0.001, 0.1)
                      .step_size_up(4)
                      .mode(CyclicMode::kTriangular2));
      }),
      Catch::Contains("another mode or scale_fn"));
  CHECK_THAT(
      msg([&] {
        load_into(
            CyclicLROptions(0.001, 0.1).step_size_up(4).cycle_momentum(false));
      }),
      Catch::Contains("cycle_momentum"));

  // An archive of something else.
  torch::serialize::OutputArchive other;
  other.write("type", c10::IValue(std::string("OneCycleLR")));
  other.write("version", c10::IValue(int64_t{1}));
  std::stringstream other_stream;
  other.save_to(other_stream);
  torch::serialize::InputArchive in;
  in.load_from(other_stream);
  auto opt = make_sgd(1);
  CyclicLR sched(opt, CyclicLROptions(0.001, 0.1));
  CHECK_THAT(
      msg([&] { sched.load(in); }),
      Catch::Contains("CyclicLR: expected a dlcore.CyclicLR state, but the "
                      "archive holds a dlcore.OneCycleLR state"));
  CHECK(sched.last_epoch() == 0);
}

TEST_CASE(
    "CyclicLR with last_epoch k continues at k + 1 like PyTorch",
    "[cyclic_lr]") {
  const auto& table = dlcore_golden::kCyclicTriangular;
  auto opt = make_sgd(1);
  CyclicLR sched(
      opt, CyclicLROptions(0.001, 0.1).step_size_up(4).last_epoch(10));
  CHECK(sched.last_epoch() == 11);
  check_table(opt, sched, {table.begin() + 11, table.end()});
}

TEST_CASE("CyclicLR is deterministic", "[cyclic_lr]") {
  auto o = CyclicLROptions(1e-3, 0.1)
               .step_size_up(7)
               .mode(CyclicMode::kExpRange)
               .gamma(0.999);
  auto a_opt = make_sgd(1), b_opt = make_sgd(1);
  CyclicLR a(a_opt, o), b(b_opt, o);
  for (int t = 0; t < 50; ++t) {
    a.step();
    b.step();
    CHECK(a.get_last_lr() == b.get_last_lr());
    CHECK(a.get_last_momentum() == b.get_last_momentum());
  }
}

TEST_CASE("CyclicLR drives a real SGD training loop", "[cyclic_lr]") {
  torch::manual_seed(0);
  auto x = torch::randn({64, 3});
  auto y = x.matmul(torch::tensor({1.0f, -2.0f, 0.5f})).unsqueeze(1);
  torch::nn::Linear model(3, 1);
  torch::optim::SGD opt(
      model->parameters(), torch::optim::SGDOptions(1.0).momentum(0.5));
  CyclicLR sched(opt, CyclicLROptions(0.01, 0.1).step_size_up(5));
  const double first = torch::mse_loss(model->forward(x), y).item<double>();
  for (int t = 0; t < 60; ++t) {
    opt.zero_grad();
    auto loss = torch::mse_loss(model->forward(x), y);
    loss.backward();
    opt.step();
    sched.step();
    CHECK(dlcore::group_lrs(opt) == sched.lr_at(t + 1));
  }
  CHECK(torch::mse_loss(model->forward(x), y).item<double>() < 0.01 * first);
}

TEST_CASE("CyclicLR rejects bad options with clear messages", "[cyclic_lr]") {
  auto msg = [](const CyclicLROptions& o, int n = 1) {
    auto opt = make_sgd(n);
    try {
      CyclicLR sched(opt, o);
    } catch (const c10::Error& e) {
      return std::string(e.what_without_backtrace());
    }
    return std::string("no error");
  };
  const double nan = std::nan("");
  const double inf = INFINITY;
  CHECK_THAT(
      msg(CyclicLROptions(0.0, 0.1)),
      Catch::Contains("CyclicLR: base_lr must be > 0, but got 0"));
  CHECK_THAT(
      msg(CyclicLROptions(-1e-3, 0.1)),
      Catch::Contains("base_lr must be > 0, but got -0.001"));
  CHECK_THAT(
      msg(CyclicLROptions({0.1, 0.0}, 0.2), 2),
      Catch::Contains("base_lr[1] must be > 0, but got 0"));
  CHECK_THAT(
      msg(CyclicLROptions(0.1, 0.01)),
      Catch::Contains("CyclicLR: max_lr (0.01) must be >= base_lr (0.1)"));
  CHECK_THAT(
      msg(CyclicLROptions(0.01, 0.1).step_size_up(0)),
      Catch::Contains("step_size_up must be >= 1, but got 0"));
  CHECK_THAT(
      msg(CyclicLROptions(0.01, 0.1).step_size_down(-3)),
      Catch::Contains("step_size_down must be >= 1, but got -3"));
  CHECK_THAT(
      msg(CyclicLROptions(0.01, 0.1).gamma(0)),
      Catch::Contains("gamma must be finite and > 0, but got 0"));
  CHECK_THAT(
      msg(CyclicLROptions(0.01, 0.1).gamma(-0.5)),
      Catch::Contains("gamma must be finite and > 0, but got -0.5"));
  CHECK_THAT(
      msg(CyclicLROptions(0.01, 0.1).gamma(nan)),
      Catch::Contains("gamma must be finite"));
  CHECK_THAT(
      msg(CyclicLROptions(nan, 0.1)),
      Catch::Contains("base_lr must be finite, but got nan"));
  CHECK_THAT(
      msg(CyclicLROptions(0.01, inf)),
      Catch::Contains("max_lr must be finite, but got inf"));
  CHECK_THAT(
      msg(CyclicLROptions(0.01, 0.1).max_momentum(nan)),
      Catch::Contains("max_momentum must be finite"));
  CHECK_THAT(
      msg(CyclicLROptions(0.01, 0.1).base_momentum(0.95)),
      Catch::Contains("base_momentum (0.95) must be <= max_momentum (0.9)"));
  CHECK_THAT(
      msg(CyclicLROptions(0.01, 0.1).base_momentum({0.8, 0.99}), 2),
      Catch::Contains("base_momentum[1] (0.99) must be <= max_momentum"));
  CHECK_THAT(
      msg(CyclicLROptions(0.01, 0.1).base_momentum(-0.1)),
      Catch::Contains("base_momentum must be >= 0, but got -0.1"));
  CHECK_THAT(
      msg(CyclicLROptions({0.01, 0.02, 0.03}, 0.1), 2),
      Catch::Contains("expected base_lr to have one value per param group (2 "
                      "groups), but got 3 values"));
  CHECK_THAT(
      msg(CyclicLROptions(0.01, std::vector<double>{0.1, 0.2}), 3),
      Catch::Contains("expected max_lr to have one value per param group (3 "
                      "groups), but got 2"));
  CHECK_THAT(
      msg(CyclicLROptions(0.01, 0.1).max_momentum({0.9, 0.9}), 1),
      Catch::Contains("max_momentum"));
  CHECK_THAT(
      msg(CyclicLROptions(0.01, 0.1).last_epoch(-2)),
      Catch::Contains("last_epoch must be >= -1, but got -2"));

  torch::optim::Adagrad adagrad(groups(1), torch::optim::AdagradOptions(0.5));
  try {
    CyclicLR sched(adagrad, CyclicLROptions(0.01, 0.1));
    FAIL("no error");
  } catch (const c10::Error& e) {
    CHECK_THAT(
        e.what_without_backtrace(),
        Catch::Contains("cycle_momentum is true, but param group 0 has "
                        "neither `momentum`"));
  }
}

TEST_CASE(
    "CyclicLR reports a scale_fn returning a non-finite value", "[cyclic_lr]") {
  auto opt = make_sgd(1);
  auto o = CyclicLROptions(0.01, 0.1).scale_fn(
      [](double x) { return x < 2 ? 1.0 : std::nan(""); });
  CyclicLR sched(opt, o);
  CHECK_THROWS_WITH(
      sched.lr_at(4000), Catch::Contains("scale_fn(2) returned nan"));
}
