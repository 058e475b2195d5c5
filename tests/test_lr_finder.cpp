#include <dlcore/study/lr_finder.h>

#include <dlcore/data/batches.h>
#include <dlcore/detail/torch_compat.h>
#include <dlcore/io/files.h>
#include <dlcore/train/train_loop.h>

#include "golden/lr_finder.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using Catch::Matchers::Contains;
using Catch::Matchers::WithinRel;

struct TestBatch {
  torch::Tensor data;
  torch::Tensor targets;
};

/// `n` batches of a 3-class problem with 4 features, seeded.
std::vector<TestBatch> make_batches(int64_t n, int64_t bs, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  std::vector<TestBatch> out;
  for (int64_t i = 0; i < n; ++i) {
    auto x = torch::randn({bs, 4}, gen);
    auto y = torch::randint(0, 3, {bs}, gen, torch::kLong);
    out.push_back({x, y});
  }
  return out;
}

torch::nn::Linear make_linear(uint64_t seed) {
  torch::manual_seed(seed);
  return torch::nn::Linear(4, 3);
}

bool bitwise_equal(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.defined() != b.defined()) {
    return false;
  }
  if (!a.defined()) {
    return true;
  }
  return a.sizes() == b.sizes() && a.dtype() == b.dtype() && torch::equal(a, b);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "(no error)";
}

dlcore::LRFinderResult synthetic(
    const std::vector<double>& lrs, const std::vector<double>& losses) {
  dlcore::LRFinderResult r;
  r.lrs = lrs;
  r.losses = losses;
  r.smoothed_losses = losses;
  return r;
}

} // namespace

TEST_CASE("LRFinderOptions has the documented defaults", "[lr_finder]") {
  dlcore::LRFinderOptions o;
  CHECK(o.start_lr() == 1e-7);
  CHECK(o.end_lr() == 10.0);
  CHECK(o.num_iter() == 100);
  CHECK(o.step_mode() == dlcore::LRStepMode::kExp);
  CHECK(o.smoothing() == dlcore::LRSmoothing::kEma);
  CHECK(o.beta() == 0.98);
  CHECK(o.smooth_f() == 0.05);
  CHECK(o.diverge_th() == 5.0);
  CHECK(o.stop_on_divergence());
  CHECK(o.accumulation_steps() == 1);
  CHECK(o.group_scaling() == dlcore::LRGroupScaling::kSame);
  dlcore::CyclicBoundsOptions b;
  CHECK(b.max_lr_rule() == dlcore::CyclicMaxRule::kMinDiv10);
  CHECK(b.base_div() == 4.0);
  CHECK(b.skip_start() == 10);
  CHECK(b.skip_end() == 5);
  dlcore::LRGridOptions g;
  CHECK(g.lrs().size() == 10);
  CHECK(g.epochs() == 5);
}

TEST_CASE(
    "the exponential sweep is pytorch-lr-finder's, ending exactly at end_lr",
    "[lr_finder]") {
  auto o = dlcore::LRFinderOptions().start_lr(1e-4).end_lr(1.0).num_iter(5);
  CHECK(o.lr_at(0) == 1e-4);
  CHECK_THAT(o.lr_at(4), WithinRel(1.0, 1e-15));
  for (int64_t i = 0; i < 5; ++i) {
    // lr = start * (end / start)^(i / (num_iter - 1)), as Python computes it.
    CHECK(o.lr_at(i) == 1e-4 * std::pow(1.0 / 1e-4, i / 4.0));
  }
  CHECK_THAT(o.lr_at(2), WithinRel(1e-2, 1e-14));
}

TEST_CASE(
    "the linear sweep steps evenly from start_lr to end_lr", "[lr_finder]") {
  auto o = dlcore::LRFinderOptions()
               .start_lr(0.1)
               .end_lr(1.1)
               .num_iter(11)
               .step_mode(dlcore::LRStepMode::kLinear);
  for (int64_t i = 0; i < 11; ++i) {
    CHECK_THAT(o.lr_at(i), WithinRel(0.1 + 0.1 * i, 1e-14));
  }
}

TEST_CASE("invalid LRFinder options are clear errors", "[lr_finder]") {
  auto model = make_linear(0);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  auto make = [&](dlcore::LRFinderOptions o) {
    return error_of([&] { dlcore::LRFinder f(model, sgd, o); });
  };
  using O = dlcore::LRFinderOptions;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  CHECK_THAT(
      make(O().num_iter(1)),
      Contains("LRFinder: num_iter must be >= 2, but got 1"));
  CHECK_THAT(
      make(O().start_lr(0.0)),
      Contains("LRFinder: start_lr must be finite and > 0, but got 0"));
  CHECK_THAT(
      make(O().start_lr(-1.0)),
      Contains("start_lr must be finite and > 0, but got -1"));
  CHECK_THAT(
      make(O().start_lr(nan)),
      Contains("start_lr must be finite and > 0, but got nan"));
  CHECK_THAT(
      make(O().end_lr(inf)),
      Contains("LRFinder: end_lr must be finite, but got inf"));
  CHECK_THAT(
      make(O().start_lr(1.0).end_lr(1.0)),
      Contains("LRFinder: end_lr (1) must be > start_lr (1)"));
  CHECK_THAT(
      make(O().start_lr(2.0).end_lr(1.0)),
      Contains("end_lr (1) must be > start_lr (2)"));
  CHECK_THAT(
      make(O().beta(1.0)),
      Contains("LRFinder: beta must be in [0, 1), but got 1"));
  CHECK_THAT(
      make(O().smooth_f(0.0)),
      Contains("LRFinder: smooth_f must be in (0, 1], but got 0"));
  CHECK_THAT(
      make(O().diverge_th(1.0)),
      Contains("LRFinder: diverge_th must be finite and > 1, but got 1"));
  CHECK_THAT(
      make(O().accumulation_steps(0)),
      Contains("LRFinder: accumulation_steps must be >= 1, but got 0"));

  dlcore::LRFinder ok(model, sgd, O().num_iter(3));
  std::vector<TestBatch> none;
  CHECK_THAT(
      error_of([&] { ok.range_test(none); }),
      Contains("LRFinder: range_test expected at least one batch"));
}

TEST_CASE(
    "the range test records every iteration's LR, raw and smoothed loss",
    "[lr_finder]") {
  auto model = make_linear(1);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  auto opts = dlcore::LRFinderOptions()
                  .start_lr(1e-5)
                  .end_lr(1e-2)
                  .num_iter(20)
                  .smoothing(dlcore::LRSmoothing::kNone);
  dlcore::LRFinder finder(model, sgd, opts);
  auto batches = make_batches(20, 16, 3);
  auto r = finder.range_test(batches);
  REQUIRE(r.iterations() == 20);
  CHECK(r.stop_reason == dlcore::LRFinderStopReason::kCompleted);
  REQUIRE(r.group_lrs.size() == 20);
  for (int64_t i = 0; i < 20; ++i) {
    CHECK(r.lrs[i] == opts.lr_at(i));
    CHECK(r.group_lrs[i] == std::vector<double>{opts.lr_at(i)});
    CHECK(r.smoothed_losses[i] == r.losses[i]);
  }
  const auto best = std::min_element(r.losses.begin(), r.losses.end());
  CHECK(r.best_loss == *best);
  CHECK(r.best_iteration == best - r.losses.begin());
  CHECK(r.best_lr == r.lrs[r.best_iteration]);
  CHECK(std::string(dlcore::to_string(r.stop_reason)) == "completed");
}

TEST_CASE(
    "the range test equals a hand-written loop, step for step", "[lr_finder]") {
  // Brute-force reference: the same model, optimizer and batches driven by a
  // plain loop that sets each LR by hand.
  auto batches = make_batches(7, 8, 11);
  auto opts = dlcore::LRFinderOptions()
                  .start_lr(1e-3)
                  .end_lr(3.0)
                  .num_iter(25)
                  .stop_on_divergence(false);
  auto model = make_linear(5);
  torch::optim::SGD sgd(
      model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  dlcore::LRFinder finder(model, sgd, opts);
  auto r = finder.range_test(batches);

  auto ref = make_linear(5);
  torch::optim::SGD ref_sgd(
      ref->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  std::vector<double> raw;
  for (int64_t i = 0; i < 25; ++i) {
    ref_sgd.param_groups()[0].options().set_lr(opts.lr_at(i));
    ref_sgd.zero_grad();
    const auto& b = batches[i % 7];
    auto loss =
        torch::nn::functional::cross_entropy(ref->forward(b.data), b.targets);
    loss.backward();
    ref_sgd.step();
    raw.push_back(loss.item<double>());
  }
  REQUIRE(r.iterations() == 25);
  CHECK(r.losses == raw);
  // Bias-corrected EMA with beta 0.98, from the raw losses.
  double avg = 0.0;
  for (int64_t i = 0; i < 25; ++i) {
    avg = 0.98 * avg + 0.02 * raw[i];
    CHECK_THAT(
        r.smoothed_losses[i],
        WithinRel(avg / (1.0 - std::pow(0.98, i + 1.0)), 1e-14));
  }
}

TEST_CASE("smooth_f smoothing is pytorch-lr-finder's", "[lr_finder]") {
  auto batches = make_batches(10, 8, 2);
  auto model = make_linear(2);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  dlcore::LRFinder finder(
      model,
      sgd,
      dlcore::LRFinderOptions()
          .num_iter(10)
          .start_lr(1e-3)
          .end_lr(1e-1)
          .smoothing(dlcore::LRSmoothing::kSmoothF)
          .smooth_f(0.2));
  auto r = finder.range_test(batches);
  REQUIRE(r.iterations() == 10);
  CHECK(r.smoothed_losses[0] == r.losses[0]);
  for (std::size_t i = 1; i < 10; ++i) {
    CHECK(
        r.smoothed_losses[i] ==
        0.2 * r.losses[i] + 0.8 * r.smoothed_losses[i - 1]);
  }
}

TEST_CASE(
    "model and SGD state are restored bitwise after the range test",
    "[lr_finder]") {
  torch::manual_seed(7);
  torch::nn::Sequential model(
      torch::nn::Linear(4, 6),
      torch::nn::BatchNorm1d(6),
      torch::nn::ReLU(),
      torch::nn::Linear(6, 3));
  torch::optim::SGD sgd(
      model->parameters(),
      torch::optim::SGDOptions(0.05).momentum(0.9).nesterov(true));
  auto batches = make_batches(5, 16, 9);
  // Some real history: momentum buffers, gradients, BN running stats.
  for (int i = 0; i < 3; ++i) {
    sgd.zero_grad();
    torch::nn::functional::cross_entropy(
        model->forward(batches[i].data), batches[i].targets)
        .backward();
    sgd.step();
  }
  model->train();
  model[1]->eval(); // mixed flags must come back as they were

  std::vector<torch::Tensor> params, grads, buffers, momenta;
  for (const auto& p : model->parameters()) {
    params.push_back(p.clone());
    grads.push_back(p.grad().clone());
    auto& st = static_cast<torch::optim::SGDParamState&>(
        *sgd.state().at(dlcore::detail::optimizer_state_key(p)));
    momenta.push_back(st.momentum_buffer().clone());
  }
  for (const auto& b : model->buffers()) {
    buffers.push_back(b.clone());
  }
  const auto state_size = sgd.state().size();

  dlcore::LRFinder finder(
      model,
      sgd,
      dlcore::LRFinderOptions().num_iter(30).start_lr(1e-3).end_lr(10.0));
  auto r = finder.range_test(batches);
  REQUIRE(r.iterations() >= 2);

  auto ps = model->parameters();
  for (std::size_t i = 0; i < ps.size(); ++i) {
    CHECK(bitwise_equal(ps[i], params[i]));
    CHECK(bitwise_equal(ps[i].grad(), grads[i]));
    auto& st = static_cast<torch::optim::SGDParamState&>(
        *sgd.state().at(dlcore::detail::optimizer_state_key(ps[i])));
    CHECK(bitwise_equal(st.momentum_buffer(), momenta[i]));
  }
  auto bs = model->buffers();
  for (std::size_t i = 0; i < bs.size(); ++i) {
    CHECK(bitwise_equal(bs[i], buffers[i]));
  }
  CHECK(sgd.state().size() == state_size);
  const auto& o =
      static_cast<torch::optim::SGDOptions&>(sgd.param_groups()[0].options());
  CHECK(o.lr() == 0.05);
  CHECK(o.momentum() == 0.9);
  CHECK(o.nesterov());
  CHECK(model->is_training());
  CHECK_FALSE(model[1]->is_training());
  CHECK(model[0]->is_training());
}

TEST_CASE(
    "Adam state is restored and state created by the test is dropped",
    "[lr_finder]") {
  auto batches = make_batches(4, 8, 1);
  SECTION("with earlier steps: moments and step counts come back") {
    auto model = make_linear(3);
    torch::optim::Adam adam(
        model->parameters(),
        torch::optim::AdamOptions(1e-3).betas({0.8, 0.9}).amsgrad(true));
    for (int i = 0; i < 2; ++i) {
      adam.zero_grad();
      torch::nn::functional::cross_entropy(
          model->forward(batches[i].data), batches[i].targets)
          .backward();
      adam.step();
    }
    std::vector<torch::Tensor> m, v, vmax;
    std::vector<int64_t> steps;
    for (const auto& p : model->parameters()) {
      auto& st = static_cast<torch::optim::AdamParamState&>(
          *adam.state().at(dlcore::detail::optimizer_state_key(p)));
      m.push_back(st.exp_avg().clone());
      v.push_back(st.exp_avg_sq().clone());
      vmax.push_back(st.max_exp_avg_sq().clone());
      steps.push_back(st.step());
    }
    dlcore::LRFinder finder(
        model, adam, dlcore::LRFinderOptions().num_iter(12).end_lr(1.0));
    finder.range_test(batches);
    auto ps = model->parameters();
    for (std::size_t i = 0; i < ps.size(); ++i) {
      auto& st = static_cast<torch::optim::AdamParamState&>(
          *adam.state().at(dlcore::detail::optimizer_state_key(ps[i])));
      CHECK(bitwise_equal(st.exp_avg(), m[i]));
      CHECK(bitwise_equal(st.exp_avg_sq(), v[i]));
      CHECK(bitwise_equal(st.max_exp_avg_sq(), vmax[i]));
      CHECK(st.step() == steps[i]);
    }
    const auto& o = static_cast<torch::optim::AdamOptions&>(
        adam.param_groups()[0].options());
    CHECK(o.lr() == 1e-3);
    CHECK(std::get<0>(o.betas()) == 0.8);
    CHECK(std::get<1>(o.betas()) == 0.9);
  }
  SECTION("RMSprop: square averages, momentum and grad averages come back") {
    auto model = make_linear(3);
    torch::optim::RMSprop rms(
        model->parameters(),
        torch::optim::RMSpropOptions(1e-3).momentum(0.5).centered(true));
    for (int i = 0; i < 2; ++i) {
      rms.zero_grad();
      torch::nn::functional::cross_entropy(
          model->forward(batches[i].data), batches[i].targets)
          .backward();
      rms.step();
    }
    std::vector<torch::Tensor> sq, mb, ga;
    for (const auto& p : model->parameters()) {
      auto& st = static_cast<torch::optim::RMSpropParamState&>(
          *rms.state().at(dlcore::detail::optimizer_state_key(p)));
      sq.push_back(st.square_avg().clone());
      mb.push_back(st.momentum_buffer().clone());
      ga.push_back(st.grad_avg().clone());
    }
    dlcore::LRFinder finder(
        model, rms, dlcore::LRFinderOptions().num_iter(12).end_lr(1.0));
    finder.range_test(batches);
    auto ps = model->parameters();
    for (std::size_t i = 0; i < ps.size(); ++i) {
      auto& st = static_cast<torch::optim::RMSpropParamState&>(
          *rms.state().at(dlcore::detail::optimizer_state_key(ps[i])));
      CHECK(bitwise_equal(st.square_avg(), sq[i]));
      CHECK(bitwise_equal(st.momentum_buffer(), mb[i]));
      CHECK(bitwise_equal(st.grad_avg(), ga[i]));
    }
  }
  SECTION("without earlier steps: no state is left behind") {
    auto model = make_linear(3);
    torch::optim::Adam adam(
        model->parameters(), torch::optim::AdamOptions(1e-3));
    dlcore::LRFinder finder(
        model, adam, dlcore::LRFinderOptions().num_iter(5).end_lr(1.0));
    finder.range_test(batches);
    CHECK(adam.state().empty());
    for (const auto& p : model->parameters()) {
      CHECK_FALSE(p.grad().defined());
    }
  }
}

TEST_CASE(
    "two param groups are swept with the same LR or in proportion",
    "[lr_finder]") {
  auto model = make_linear(4);
  auto batches = make_batches(3, 8, 4);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(
      std::vector<torch::Tensor>{model->weight},
      std::make_unique<torch::optim::SGDOptions>(0.1));
  groups.emplace_back(
      std::vector<torch::Tensor>{model->bias},
      std::make_unique<torch::optim::SGDOptions>(0.01));
  torch::optim::SGD sgd(groups, torch::optim::SGDOptions(0.1));
  auto opts = dlcore::LRFinderOptions().num_iter(6).start_lr(1e-3).end_lr(1.0);

  SECTION("kSame") {
    dlcore::LRFinder finder(model, sgd, opts);
    auto r = finder.range_test(batches);
    for (int64_t i = 0; i < r.iterations(); ++i) {
      CHECK(r.group_lrs[i][0] == opts.lr_at(i));
      CHECK(r.group_lrs[i][1] == opts.lr_at(i));
    }
  }
  SECTION("kProportional") {
    opts.group_scaling(dlcore::LRGroupScaling::kProportional);
    dlcore::LRFinder finder(model, sgd, opts);
    auto r = finder.range_test(batches);
    for (int64_t i = 0; i < r.iterations(); ++i) {
      CHECK(r.group_lrs[i][0] == opts.lr_at(i));
      CHECK_THAT(r.group_lrs[i][1], WithinRel(opts.lr_at(i) / 10.0, 1e-14));
    }
  }
  CHECK(sgd.param_groups()[0].options().get_lr() == 0.1);
  CHECK(sgd.param_groups()[1].options().get_lr() == 0.01);
}

TEST_CASE(
    "the test stops when the smoothed loss exceeds diverge_th times the best",
    "[lr_finder]") {
  auto model = make_linear(8);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  auto batches = make_batches(10, 32, 8);
  dlcore::LRFinder finder(
      model,
      sgd,
      dlcore::LRFinderOptions()
          .start_lr(1e-2)
          .end_lr(1e4)
          .num_iter(100)
          .smoothing(dlcore::LRSmoothing::kSmoothF));
  auto r = finder.range_test(batches);
  REQUIRE(r.stop_reason != dlcore::LRFinderStopReason::kCompleted);
  CHECK(r.iterations() < 100);
  if (r.stop_reason == dlcore::LRFinderStopReason::kDiverged) {
    CHECK(r.smoothed_losses.back() > 5.0 * r.best_loss);
    for (int64_t i = 0; i + 1 < r.iterations(); ++i) {
      CHECK(r.smoothed_losses[i] <= 5.0 * r.best_loss);
    }
  }

  SECTION("and keeps going when stop_on_divergence is off") {
    dlcore::LRFinder f2(
        model,
        sgd,
        dlcore::LRFinderOptions()
            .start_lr(1e-2)
            .end_lr(1e4)
            .num_iter(40)
            .stop_on_divergence(false)
            .smoothing(dlcore::LRSmoothing::kSmoothF));
    auto r2 = f2.range_test(batches);
    CHECK(r2.stop_reason != dlcore::LRFinderStopReason::kDiverged);
  }
}

TEST_CASE(
    "a non-finite loss stops the test and the model is still restored",
    "[lr_finder]") {
  auto model = make_linear(9);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  auto w = model->weight.clone();
  auto batches = make_batches(3, 8, 9);
  int calls = 0;
  auto loss_fn = [&](const torch::Tensor& out, const torch::Tensor& y) {
    auto l = torch::nn::functional::cross_entropy(out, y);
    return ++calls == 4 ? l * std::numeric_limits<double>::infinity() : l;
  };
  dlcore::LRFinder finder(model, sgd, dlcore::LRFinderOptions().num_iter(10));
  auto r = finder.range_test(batches, loss_fn);
  CHECK(r.stop_reason == dlcore::LRFinderStopReason::kNonFinite);
  CHECK(r.iterations() == 4);
  CHECK(std::isinf(r.losses.back()));
  CHECK(std::string(dlcore::to_string(r.stop_reason)) == "non-finite");
  CHECK(bitwise_equal(model->weight, w));
}

TEST_CASE(
    "a sweep whose learning rate would not be finite is an error naming the "
    "iteration",
    "[lr_finder]") {
  SECTION("bounds 1e-300 .. 1e300: the ratio overflows, refused eagerly") {
    auto model = make_linear(12);
    torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
    CHECK_THAT(
        error_of([&] {
          dlcore::LRFinder f(
              model,
              sgd,
              dlcore::LRFinderOptions().start_lr(1e-300).end_lr(1e300));
        }),
        Contains("LRFinder: end_lr / start_lr = 1e+300 / 1e-300 is not "
                 "finite, so the exponential sweep's learning rates would "
                 "not be; narrow the range"));
    // The linear sweep over the same bounds has finite learning rates.
    CHECK_NOTHROW(dlcore::LRFinder(
        model,
        sgd,
        dlcore::LRFinderOptions().start_lr(1e-300).end_lr(1e300).step_mode(
            dlcore::LRStepMode::kLinear)));
  }
  SECTION("a proportional group whose learning rate overflows mid-sweep") {
    // Group 1 (lr 1e300, ratio 1e300 to group 0) reaches inf at the last
    // iteration: lr_9 = 1e10, lr_8 = 1e-7 * 1e17^(8/9) ~ 1.3e8. A zero loss
    // keeps the test from stopping earlier.
    auto model = make_linear(13);
    auto extra = torch::zeros({2}, torch::requires_grad());
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(
        model->parameters(),
        std::make_unique<torch::optim::SGDOptions>(
            torch::optim::SGDOptions(1.0)));
    groups.emplace_back(
        std::vector<torch::Tensor>{extra},
        std::make_unique<torch::optim::SGDOptions>(
            torch::optim::SGDOptions(1e300)));
    torch::optim::SGD sgd(groups, torch::optim::SGDOptions(1.0));
    auto w = model->weight.clone();
    dlcore::LRFinder finder(
        model,
        sgd,
        dlcore::LRFinderOptions()
            .start_lr(1e-7)
            .end_lr(1e10)
            .num_iter(10)
            .group_scaling(dlcore::LRGroupScaling::kProportional));
    auto batches = make_batches(2, 8, 13);
    auto zero_loss = [](const torch::Tensor& out, const torch::Tensor&) {
      return out.sum() * 0.0;
    };
    CHECK_THAT(
        error_of([&] { finder.range_test(batches, zero_loss); }),
        Contains("LRFinder: the learning rate of param group 1 at iteration 9 "
                 "would be inf, which is not finite; the test stopped there "
                 "and the model and optimizer were restored"));
    CHECK(bitwise_equal(model->weight, w));
    CHECK(sgd.param_groups()[0].options().get_lr() == 1.0);
    CHECK(sgd.param_groups()[1].options().get_lr() == 1e300);
  }
}

TEST_CASE(
    "an exception inside the test still restores the model", "[lr_finder]") {
  auto model = make_linear(10);
  torch::optim::SGD sgd(
      model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.5));
  auto w = model->weight.clone();
  auto batches = make_batches(3, 8, 10);
  int calls = 0;
  auto loss_fn = [&](const torch::Tensor& out, const torch::Tensor& y) {
    if (++calls == 5) {
      throw std::runtime_error("boom");
    }
    return torch::nn::functional::cross_entropy(out, y);
  };
  dlcore::LRFinder finder(model, sgd, dlcore::LRFinderOptions().num_iter(10));
  CHECK_THROWS_WITH(finder.range_test(batches, loss_fn), "boom");
  CHECK(bitwise_equal(model->weight, w));
  CHECK(sgd.state().empty());
  CHECK(sgd.param_groups()[0].options().get_lr() == 0.1);
}

TEST_CASE(
    "batches are cycled, and accumulation averages several batches per step",
    "[lr_finder]") {
  auto model = make_linear(12);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  auto batches = make_batches(3, 8, 12);
  int64_t calls = 0;
  std::vector<double> per_call;
  auto loss_fn = [&](const torch::Tensor& out, const torch::Tensor& y) {
    ++calls;
    auto l = torch::nn::functional::cross_entropy(out, y);
    per_call.push_back(l.item<double>());
    return l;
  };
  SECTION("cycling") {
    dlcore::LRFinder finder(
        model, sgd, dlcore::LRFinderOptions().num_iter(10).end_lr(1e-3));
    auto r = finder.range_test(batches, loss_fn);
    CHECK(r.iterations() == 10);
    CHECK(calls == 10);
  }
  SECTION("accumulation") {
    dlcore::LRFinder finder(
        model,
        sgd,
        dlcore::LRFinderOptions().num_iter(4).end_lr(1e-3).accumulation_steps(
            2));
    auto r = finder.range_test(batches, loss_fn);
    CHECK(r.iterations() == 4);
    CHECK(calls == 8);
    for (std::size_t i = 0; i < 4; ++i) {
      CHECK_THAT(
          r.losses[i],
          WithinRel((per_call[2 * i] + per_call[2 * i + 1]) / 2.0, 1e-6));
    }
  }
}

TEST_CASE("the range test is deterministic", "[lr_finder]") {
  auto batches = make_batches(6, 8, 13);
  auto run = [&] {
    auto model = make_linear(13);
    torch::optim::SGD sgd(
        model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    dlcore::LRFinder finder(model, sgd, dlcore::LRFinderOptions().num_iter(30));
    return finder.range_test(batches);
  };
  auto a = run();
  auto b = run();
  CHECK(a.losses == b.losses);
  CHECK(a.smoothed_losses == b.smoothed_losses);
  CHECK(a.lrs == b.lrs);
}

TEST_CASE(
    "repeated range tests on one model give the same curve", "[lr_finder]") {
  // Restoration makes the test repeatable: the second run starts from exactly
  // the state the first one started from.
  auto batches = make_batches(6, 8, 14);
  auto model = make_linear(14);
  torch::optim::SGD sgd(
      model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  dlcore::LRFinder finder(model, sgd, dlcore::LRFinderOptions().num_iter(30));
  auto a = finder.range_test(batches);
  auto b = finder.range_test(batches);
  CHECK(a.losses == b.losses);
}

TEST_CASE(
    "suggest_steepest takes the slope against log10 lr, as numpy.gradient",
    "[lr_finder]") {
  const std::vector<double> L = {2.3,  2.31, 2.29, 2.2, 2.25, 2.0,  1.8,
                                 1.85, 1.5,  1.2,  1.0, 0.9,  0.95, 0.8,
                                 0.7,  1.1,  1.6,  3.0, 5.0,  9.0};
  std::vector<double> lrs;
  for (int i = 0; i < 20; ++i) {
    lrs.push_back(1e-3 * std::pow(1.7, i));
  }
  auto r = synthetic(lrs, L);
  // numpy.gradient(L, log10(lrs)).argmin() == 8
  CHECK(dlcore::suggest_steepest(r, 0, 0).index == 8);
  CHECK(dlcore::suggest_steepest(r, 0, 0).lr == lrs[8]);
  CHECK(dlcore::suggest_steepest(r, 0, 0).loss == L[8]);
  // Skipping points moves it (numpy on L[9:15] and L[3:15]: 9 and 8).
  CHECK(dlcore::suggest_steepest(r, 9, 5).index == 9);
  CHECK(dlcore::suggest_steepest(r, 3, 5).index == 8);

  // A linear sweep: against log10(lr) the late small drop is steeper than the
  // early large one (numpy: 16); against the index it would be 2.
  std::vector<double> L2(20, 1.5);
  L2[0] = L2[1] = L2[2] = 2.0;
  L2[17] = L2[18] = L2[19] = 1.2;
  std::vector<double> lin;
  for (int i = 0; i < 20; ++i) {
    lin.push_back(0.01 + (1.0 - 0.01) * i / 19.0);
  }
  CHECK(dlcore::suggest_steepest(synthetic(lin, L2), 0, 0).index == 16);
}

TEST_CASE("suggest_min_div10 and suggest_valley follow fastai", "[lr_finder]") {
  const std::vector<double> L = {2.3,  2.31, 2.29, 2.2, 2.25, 2.0,  1.8,
                                 1.85, 1.5,  1.2,  1.0, 0.9,  0.95, 0.8,
                                 0.7,  1.1,  1.6,  3.0, 5.0,  9.0};
  std::vector<double> lrs;
  for (int i = 0; i < 20; ++i) {
    lrs.push_back(1e-3 * std::pow(1.7, i));
  }
  auto r = synthetic(lrs, L);
  auto m = dlcore::suggest_min_div10(r, 0, 0);
  CHECK(m.index == 14);
  CHECK(m.lr == lrs[14] / 10.0);
  CHECK(m.loss == 0.7);
  // fastai's valley on this curve (computed with its Python code): index 7.
  CHECK(dlcore::suggest_valley(r, 0, 0).index == 7);
  CHECK(dlcore::suggest_valley(r, 0, 0).lr == lrs[7]);
  // A curve that only falls: the valley starts at the first point.
  auto falling = synthetic({1, 2, 3, 4, 5, 6, 7}, {7, 6, 5, 4, 3, 2, 1});
  CHECK(dlcore::suggest_valley(falling, 0, 0).index == 3);
  // One point is enough for min and valley.
  auto one = synthetic({0.5}, {1.0});
  CHECK(dlcore::suggest_min_div10(one, 0, 0).lr == 0.05);
  CHECK(dlcore::suggest_valley(one, 0, 0).index == 0);
}

TEST_CASE(
    "suggestions ignore points after the first non-finite loss",
    "[lr_finder]") {
  const double inf = std::numeric_limits<double>::infinity();
  auto r = synthetic({1, 2, 3, 4, 5}, {3.0, 2.0, 1.0, inf, 0.1});
  CHECK(dlcore::suggest_min_div10(r, 0, 0).index == 2);
  CHECK(dlcore::suggest_steepest(r, 0, 0).index <= 2);
}

TEST_CASE("suggestions with too few points are clear errors", "[lr_finder]") {
  auto r = synthetic({1, 2, 3}, {3.0, 2.0, 1.0});
  CHECK_THAT(
      error_of([&] { dlcore::suggest_steepest(r); }),
      Contains("suggest_steepest: needs at least 2 points after skipping "
               "skip_start (10) and skip_end (5) of 3 finite points"));
  CHECK_THAT(
      error_of([&] { dlcore::suggest_valley(r, 2, 1); }),
      Contains("suggest_valley: needs at least 1 points"));
  CHECK_THAT(
      error_of([&] { dlcore::suggest_min_div10(r, -1, 0); }),
      Contains("skip_start and skip_end must be >= 0, but got -1 and 0"));
  CHECK_THAT(
      error_of([&] { dlcore::suggest_steepest(synthetic({1}, {1.0}), 0, 0); }),
      Contains("needs at least 2 points"));
}

TEST_CASE(
    "suggest_cyclic_bounds puts base_lr a factor base_div below max_lr",
    "[lr_finder]") {
  const std::vector<double> L = {2.3,  2.31, 2.29, 2.2, 2.25, 2.0,  1.8,
                                 1.85, 1.5,  1.2,  1.0, 0.9,  0.95, 0.8,
                                 0.7,  1.1,  1.6,  3.0, 5.0,  9.0};
  std::vector<double> lrs;
  for (int i = 0; i < 20; ++i) {
    lrs.push_back(1e-3 * std::pow(1.7, i));
  }
  auto r = synthetic(lrs, L);
  auto o = dlcore::CyclicBoundsOptions().skip_start(0).skip_end(0);
  auto b = dlcore::suggest_cyclic_bounds(r, o);
  CHECK(b.max_lr == lrs[14] / 10.0);
  CHECK(b.base_lr == b.max_lr / 4.0);
  auto s = dlcore::suggest_cyclic_bounds(
      r, o.max_lr_rule(dlcore::CyclicMaxRule::kSteepest).base_div(3.0));
  CHECK(s.max_lr == lrs[8]);
  CHECK(s.base_lr == lrs[8] / 3.0);
  auto v = dlcore::suggest_cyclic_bounds(
      r, o.max_lr_rule(dlcore::CyclicMaxRule::kValley));
  CHECK(v.max_lr == lrs[7]);
  CHECK_THAT(
      error_of([&] { dlcore::suggest_cyclic_bounds(r, o.base_div(1.0)); }),
      Contains("suggest_cyclic_bounds: base_div must be finite and > 1, but "
               "got 1"));
}

TEST_CASE(
    "a range test on a real problem suggests a usable learning rate",
    "[lr_finder]") {
  // Logistic regression on separable data: the curve falls, bottoms out and
  // diverges; the suggestions land inside the sweep, below the divergence.
  auto gen = at::detail::createCPUGenerator(21);
  auto centers = torch::randn({3, 4}, gen) * 3;
  std::vector<TestBatch> batches;
  for (int i = 0; i < 20; ++i) {
    auto y = torch::randint(0, 3, {32}, gen, torch::kLong);
    auto x = centers.index_select(0, y) + torch::randn({32, 4}, gen);
    batches.push_back({x, y});
  }
  auto model = make_linear(21);
  torch::optim::SGD sgd(
      model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  dlcore::LRFinder finder(
      model, sgd, dlcore::LRFinderOptions().start_lr(1e-5).end_lr(100.0));
  auto r = finder.range_test(batches);
  REQUIRE(r.iterations() >= 40);
  CHECK(r.best_loss < r.smoothed_losses.front());
  auto b = dlcore::suggest_cyclic_bounds(r);
  CHECK(b.max_lr > 1e-5);
  CHECK(b.max_lr < r.lrs.back());
  CHECK(b.base_lr < b.max_lr);
  auto st = dlcore::suggest_steepest(r);
  CHECK(st.lr > 1e-5);
  CHECK(st.lr <= r.best_lr);
}

TEST_CASE("log_grid equals numpy.logspace", "[lr_finder]") {
  // numpy.logspace(log10(1e-9), log10(10), num=10)
  const std::vector<double> expected = {
      9.999999999999999e-10,
      1.2915496650148827e-08,
      1.668100537200059e-07,
      2.154434690031887e-06,
      2.7825594022071256e-05,
      0.00035938136638046257,
      0.0046415888336127815,
      0.059948425031894216,
      0.7742636826811277,
      10.0};
  auto g = dlcore::log_grid(1e-9, 10.0, 10);
  REQUIRE(g.size() == 10);
  for (std::size_t i = 0; i < 10; ++i) {
    CHECK_THAT(g[i], WithinRel(expected[i], 1e-14));
  }
  CHECK(dlcore::log_grid(0.1, 10.0, 1).size() == 1);
  CHECK_THAT(
      error_of([] { dlcore::log_grid(0.0, 1.0, 3); }),
      Contains("log_grid: start and end must be finite and > 0, but got 0"));
  CHECK_THAT(
      error_of([] { dlcore::log_grid(0.1, 1.0, 0); }),
      Contains("log_grid: num must be >= 1, but got 0"));
}

TEST_CASE(
    "lr_grid_search trains every LR from the same initial weights",
    "[lr_finder]") {
  auto batches = make_batches(4, 16, 30);
  uint64_t seed = 100;
  // A different random initialisation on every call: the grid must still
  // start each LR from the first model's weights.
  auto make_model = [&] { return make_linear(seed++); };
  auto make_opt = [](torch::nn::Linear& m, double lr) {
    return torch::optim::SGD(
        m->parameters(), torch::optim::SGDOptions(lr).momentum(0.9));
  };
  std::vector<double> seen;
  auto opts = dlcore::LRGridOptions()
                  .lrs({0.05, 1e-12, 0.05, 1e10})
                  .epochs(3)
                  .on_point([&](const dlcore::LRGridPoint& p) {
                    seen.push_back(p.lr);
                  });
  // Squared error: its gradient grows with the weights, so LR 1e10 overflows
  // to inf and NaN within a few steps.
  auto mse = [](const torch::Tensor& out, const torch::Tensor& y) {
    return torch::mse_loss(out, torch::one_hot(y, 3).to(torch::kFloat));
  };
  auto g = dlcore::lr_grid_search(make_model, make_opt, batches, opts, mse);
  REQUIRE(g.points.size() == 4);
  CHECK(seen == std::vector<double>{0.05, 1e-12, 0.05, 1e10});
  CHECK(g.points[0].final_loss == g.points[2].final_loss);
  CHECK(g.points[0].epoch_losses == g.points[2].epoch_losses);
  CHECK(g.points[0].epoch_losses.size() == 3);
  CHECK(g.points[0].final_loss < g.points[1].final_loss);
  CHECK(g.points[3].diverged);
  CHECK_FALSE(std::isfinite(g.points[3].final_loss));
  CHECK(std::isnan(g.points[0].val_accuracy));

  // The homework's rule and ours; the diverged LR is ignored.
  auto hw = dlcore::suggest_grid_bounds(g, dlcore::GridBoundsRule::kHomework);
  CHECK(hw.max_lr == 0.05);
  CHECK(hw.base_lr == 0.05); // best is index 0: the homework clamps to lrs[0]
  auto ours = dlcore::suggest_grid_bounds(g);
  CHECK(ours.max_lr == 0.05);
  CHECK(ours.base_lr == 0.05 / 4.0);

  auto g2 = dlcore::lr_grid_search(
      make_model,
      make_opt,
      batches,
      dlcore::LRGridOptions().lrs({1e-4, 1e-2, 0.1}).epochs(2));
  auto hw2 = dlcore::suggest_grid_bounds(g2, dlcore::GridBoundsRule::kHomework);
  CHECK(hw2.max_lr == 0.1);
  CHECK(hw2.base_lr == 1e-2);
}

TEST_CASE("lr_grid_search evaluates validation batches", "[lr_finder]") {
  auto train = make_batches(3, 16, 31);
  auto val = make_batches(2, 16, 32);
  auto g = dlcore::lr_grid_search(
      [] { return make_linear(3); },
      [](torch::nn::Linear& m, double lr) {
        return std::make_unique<torch::optim::SGD>(
            m->parameters(), torch::optim::SGDOptions(lr));
      },
      train,
      val,
      dlcore::LRGridOptions().lrs({0.1}).epochs(1));
  REQUIRE(g.points.size() == 1);
  CHECK(g.points[0].val_accuracy >= 0.0);
  CHECK(g.points[0].val_accuracy <= 1.0);
  CHECK(std::isfinite(g.points[0].val_loss));
  CHECK(g.points[0].epoch_accuracies.size() == 1);
}

TEST_CASE(
    "lr_grid_search reads validation Batches through a const reference and "
    "leaves their epoch",
    "[lr_finder]") {
  auto gen = at::detail::createCPUGenerator(33);
  dlcore::TensorDataset data{
      torch::randn({24, 4}, gen),
      torch::randint(0, 3, {24}, gen, torch::kLong)};
  dlcore::Batches train(data, dlcore::BatchesOptions(8).shuffle(true).seed(1));
  dlcore::Batches val_batches(
      data, dlcore::BatchesOptions(8).shuffle(true).seed(2));
  val_batches.set_epoch(5);
  const dlcore::Batches& val = val_batches;
  auto g = dlcore::lr_grid_search(
      [] { return make_linear(3); },
      [](torch::nn::Linear& m, double lr) {
        return torch::optim::SGD(m->parameters(), torch::optim::SGDOptions(lr));
      },
      train,
      val,
      dlcore::LRGridOptions().lrs({0.1, 0.2}).epochs(2));
  REQUIRE(g.points.size() == 2);
  CHECK(val.epoch() == 5);
  CHECK(std::isfinite(g.points[1].val_loss));
  // Training moved the training batches: set_epoch(1), then one pass.
  CHECK(train.epoch() == 2);
}

TEST_CASE("invalid grid searches are clear errors", "[lr_finder]") {
  auto batches = make_batches(1, 4, 1);
  auto mm = [] { return make_linear(0); };
  auto mo = [](torch::nn::Linear& m, double lr) {
    return torch::optim::SGD(m->parameters(), torch::optim::SGDOptions(lr));
  };
  CHECK_THAT(
      error_of([&] {
        dlcore::lr_grid_search(
            mm, mo, batches, dlcore::LRGridOptions().lrs({}));
      }),
      Contains("lr_grid_search: expected at least one learning rate, but got "
               "an empty grid"));
  CHECK_THAT(
      error_of([&] {
        dlcore::lr_grid_search(
            mm, mo, batches, dlcore::LRGridOptions().lrs({0.1, -1.0}));
      }),
      Contains("every learning rate must be finite and > 0, but got -1"));
  CHECK_THAT(
      error_of([&] {
        dlcore::lr_grid_search(
            mm, mo, batches, dlcore::LRGridOptions().lrs({std::nan("")}));
      }),
      Contains("every learning rate must be finite and > 0, but got nan"));
  CHECK_THAT(
      error_of([&] {
        dlcore::lr_grid_search(
            mm, mo, batches, dlcore::LRGridOptions().epochs(0));
      }),
      Contains("lr_grid_search: epochs must be >= 1, but got 0"));
  dlcore::LRGridResult empty;
  CHECK_THAT(
      error_of([&] { dlcore::suggest_grid_bounds(empty); }),
      Contains("suggest_grid_bounds: expected at least one learning rate with "
               "a finite final loss"));
}

TEST_CASE(
    "the range test matches the same test run with real PyTorch",
    "[lr_finder]") {
  // scripts/golden/lr_finder.py: the same data, initial weights, SGD momentum
  // 0.9, schedule, smoothing and divergence rule, run with Python PyTorch.
  namespace g = golden::lr_finder;
  const int64_t n = g::kNumBatches * g::kBatch;
  auto x = torch::tensor(std::vector<float>(g::kX.begin(), g::kX.end()))
               .reshape({n, 4});
  auto y = torch::tensor(g::kY);
  std::vector<TestBatch> batches;
  for (int64_t k = 0; k < g::kNumBatches; ++k) {
    batches.push_back(
        {x.slice(0, k * g::kBatch, (k + 1) * g::kBatch),
         y.slice(0, k * g::kBatch, (k + 1) * g::kBatch)});
  }
  auto run = [&](double start,
                 double end,
                 int64_t num_iter,
                 dlcore::LRSmoothing smoothing) {
    torch::nn::Linear model(4, 3);
    {
      torch::NoGradGuard no_grad;
      model->weight.copy_(
          torch::tensor(
              std::vector<float>(g::kWeight.begin(), g::kWeight.end()))
              .reshape({3, 4}));
      model->bias.copy_(
          torch::tensor(std::vector<float>(g::kBias.begin(), g::kBias.end())));
    }
    torch::optim::SGD sgd(
        model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    dlcore::LRFinder finder(
        model,
        sgd,
        dlcore::LRFinderOptions()
            .start_lr(start)
            .end_lr(end)
            .num_iter(num_iter)
            .smoothing(smoothing));
    return finder.range_test(batches);
  };
  auto compare = [](const dlcore::LRFinderResult& r,
                    const std::vector<double>& lrs,
                    const std::vector<double>& losses,
                    const std::vector<double>& smoothed,
                    const std::string& stop) {
    REQUIRE(r.iterations() == static_cast<int64_t>(lrs.size()));
    CHECK(std::string(dlcore::to_string(r.stop_reason)) == stop);
    for (std::size_t i = 0; i < lrs.size(); ++i) {
      CHECK(r.lrs[i] == lrs[i]); // same pow(), same order of operations
      CHECK_THAT(r.losses[i], WithinRel(losses[i], 1e-6));
      CHECK_THAT(r.smoothed_losses[i], WithinRel(smoothed[i], 1e-6));
    }
  };
  compare(
      run(1e-4, 1.0, 30, dlcore::LRSmoothing::kEma),
      g::kEmaLrs,
      g::kEmaLosses,
      g::kEmaSmoothed,
      g::kEmaStop);
  compare(
      run(1e-4, 1.0, 30, dlcore::LRSmoothing::kSmoothF),
      g::kSmoothFLrs,
      g::kSmoothFLosses,
      g::kSmoothFSmoothed,
      g::kSmoothFStop);
  compare(
      run(1e-2, 1e4, 60, dlcore::LRSmoothing::kSmoothF),
      g::kDivergeLrs,
      g::kDivergeLosses,
      g::kDivergeSmoothed,
      g::kDivergeStop);
}

TEST_CASE(
    "the range test's losses are train_epoch's per-step losses on the same "
    "data and seed",
    "[lr_finder]") {
  // The range test trains through train_epoch: on the same batches (cycled),
  // initial weights and learning rates, train_epoch's StepInfo::loss of each
  // step is the range test's raw loss, bit for bit, with and without
  // gradient accumulation.
  auto batches = make_batches(7, 8, 40);
  for (int64_t acc : {1, 2, 3}) {
    auto opts = dlcore::LRFinderOptions()
                    .start_lr(1e-3)
                    .end_lr(1.0)
                    .num_iter(12)
                    .accumulation_steps(acc)
                    .stop_on_divergence(false);
    auto model = make_linear(40);
    torch::optim::SGD sgd(
        model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    auto r = dlcore::LRFinder(model, sgd, opts).range_test(batches);
    REQUIRE(r.iterations() == 12);

    auto ref = make_linear(40);
    torch::optim::SGD ref_sgd(
        ref->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    std::vector<TestBatch> cycled;
    for (int64_t i = 0; i < 12 * acc; ++i) {
      cycled.push_back(batches[static_cast<std::size_t>(i % 7)]);
    }
    struct Sweep {
      torch::optim::SGD& sgd;
      const dlcore::LRFinderOptions& opts;
      int64_t i = 0;
      void step() {
        sgd.param_groups()[0].options().set_lr(opts.lr_at(++i));
      }
    } sweep{ref_sgd, opts};
    ref_sgd.param_groups()[0].options().set_lr(opts.lr_at(0));
    std::vector<double> losses;
    std::vector<double> lrs;
    dlcore::train_epoch(
        ref,
        cycled,
        ref_sgd,
        sweep,
        dlcore::TrainOptions().accumulation_steps(acc).on_step(
            [&](dlcore::StepInfo& s) {
              losses.push_back(s.loss);
              lrs.push_back(s.lrs.at(0));
            }));
    CHECK(r.losses == losses);
    CHECK(r.lrs == lrs);
  }
}

TEST_CASE(
    "the range test reads a const dlcore::Batches through successive epochs "
    "and leaves its epoch unchanged",
    "[lr_finder]") {
  // 40 samples in batches of 16: 3 batches per epoch, so 7 iterations read
  // the passes over epochs 2, 3 and 4 (a new shuffle each) of batches at
  // epoch 2, which stay at epoch 2.
  auto gen = at::detail::createCPUGenerator(41);
  dlcore::TensorDataset data{
      torch::randn({40, 4}, gen),
      torch::randint(0, 3, {40}, gen, torch::kLong)};
  auto options = dlcore::BatchesOptions(16).shuffle(true).seed(41);
  dlcore::Batches batches(data, options);
  batches.set_epoch(2);
  const dlcore::Batches& read_only = batches;
  auto opts = dlcore::LRFinderOptions()
                  .start_lr(1e-3)
                  .end_lr(1.0)
                  .num_iter(7)
                  .smoothing(dlcore::LRSmoothing::kNone)
                  .stop_on_divergence(false);
  auto model = make_linear(41);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  dlcore::LRFinder finder(model, sgd, opts);
  auto r = finder.range_test(read_only);
  REQUIRE(r.iterations() == 7);
  CHECK(batches.epoch() == 2);
  // A non-const Batches is read the same way, and does not move either.
  auto r2 = finder.range_test(batches);
  CHECK(batches.epoch() == 2);
  CHECK(r2.losses == r.losses);

  // The same 7 batches, taken from epochs 2, 3, 4 by hand, fed to the
  // hand-written loop.
  dlcore::Batches again(data, options);
  again.set_epoch(2);
  std::vector<TestBatch> seen;
  for (int e = 0; e < 3; ++e) {
    for (const auto& b : again) {
      seen.push_back({b.data, b.targets});
    }
  }
  auto ref = make_linear(41);
  torch::optim::SGD ref_sgd(ref->parameters(), torch::optim::SGDOptions(0.1));
  for (int64_t i = 0; i < 7; ++i) {
    ref_sgd.param_groups()[0].options().set_lr(opts.lr_at(i));
    ref_sgd.zero_grad();
    const auto& b = seen[static_cast<std::size_t>(i)];
    auto loss =
        torch::nn::functional::cross_entropy(ref->forward(b.data), b.targets);
    loss.backward();
    ref_sgd.step();
    CHECK(r.losses[static_cast<std::size_t>(i)] == loss.item<double>());
  }
}

TEST_CASE(
    "a NaN loss stops the range test through the step callback, and nothing "
    "is left behind",
    "[lr_finder]") {
  auto batches = make_batches(6, 8, 42);
  batches[4].data[0][0].fill_(std::numeric_limits<double>::quiet_NaN());
  auto model = make_linear(42);
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(1e-3));
  auto w = model->weight.clone();
  int calls = 0;
  auto loss_fn = [&](const torch::Tensor& out, const torch::Tensor& y) {
    ++calls;
    return torch::nn::functional::cross_entropy(out, y);
  };
  dlcore::LRFinder finder(
      model, adam, dlcore::LRFinderOptions().num_iter(20).end_lr(1e-2));
  auto r = finder.range_test(batches, loss_fn);
  CHECK(r.stop_reason == dlcore::LRFinderStopReason::kNonFinite);
  REQUIRE(r.iterations() == 5);
  CHECK(std::isnan(r.losses.back()));
  CHECK(std::isnan(r.smoothed_losses.back()));
  CHECK(calls == 5); // no batch after the stopping one
  CHECK(r.best_iteration < 4);
  CHECK(std::isfinite(r.best_loss));
  CHECK(bitwise_equal(model->weight, w));
  CHECK(adam.state().empty());
  CHECK_FALSE(model->weight.grad().defined());
  CHECK(adam.param_groups()[0].options().get_lr() == 1e-3);
}

TEST_CASE(
    "the range test takes a model held by std::shared_ptr, not a null one",
    "[lr_finder]") {
  auto batches = make_batches(4, 8, 43);
  torch::manual_seed(43);
  auto held = std::make_shared<torch::nn::LinearImpl>(4, 3);
  auto holder = make_linear(43); // the same initial weights
  torch::optim::SGD a(held->parameters(), torch::optim::SGDOptions(0.1));
  torch::optim::SGD b(holder->parameters(), torch::optim::SGDOptions(0.1));
  auto opts = dlcore::LRFinderOptions().num_iter(8).end_lr(1.0);
  auto ra = dlcore::LRFinder(held, a, opts).range_test(batches);
  auto rb = dlcore::LRFinder(holder, b, opts).range_test(batches);
  CHECK(ra.losses == rb.losses);
  std::shared_ptr<torch::nn::LinearImpl> null;
  CHECK_THAT(
      error_of([&] { dlcore::LRFinder f(null, a, opts); }),
      Contains("LRFinder: expected a module, but got a null pointer"));
}

TEST_CASE(
    "lr_grid_search's records are train_epoch's and evaluate's per-batch "
    "numbers",
    "[lr_finder]") {
  // A last partial batch, so that the per-batch mean the grid records
  // differs from train_epoch's default per-sample mean.
  auto train = make_batches(5, 16, 44);
  train.push_back(make_batches(1, 5, 45)[0]);
  auto val = make_batches(2, 12, 46);
  auto make_opt = [](torch::nn::Linear& m, double lr) {
    return torch::optim::SGD(
        m->parameters(), torch::optim::SGDOptions(lr).momentum(0.9));
  };
  auto g = dlcore::lr_grid_search(
      [] { return make_linear(44); },
      make_opt,
      train,
      val,
      dlcore::LRGridOptions().lrs({0.05}).epochs(2));
  REQUIRE(g.points.size() == 1);
  const auto& p = g.points[0];
  REQUIRE(p.epoch_losses.size() == 2);

  auto ref = make_linear(44);
  auto sgd = make_opt(ref, 0.05);
  auto sample_ref = make_linear(44);
  auto sample_sgd = make_opt(sample_ref, 0.05);
  for (std::size_t e = 0; e < 2; ++e) {
    auto m = dlcore::train_epoch(
        ref,
        train,
        sgd,
        dlcore::TrainOptions().loss_average(dlcore::LossAverage::kPerBatch));
    CHECK(p.epoch_losses[e] == m.loss);
    CHECK(p.epoch_accuracies[e] == m.accuracy);
    auto per_sample = dlcore::train_epoch(sample_ref, train, sample_sgd);
    CHECK(per_sample.loss != m.loss);
  }
  CHECK(p.final_loss == p.epoch_losses.back());
  auto v = dlcore::evaluate(
      ref,
      val,
      dlcore::EvaluateOptions().loss_average(dlcore::LossAverage::kPerBatch));
  CHECK(p.val_loss == v.loss);
  CHECK(p.val_accuracy == v.accuracy);

  // Models held by std::shared_ptr train the same.
  auto shared = dlcore::lr_grid_search(
      [] {
        torch::manual_seed(44);
        return std::make_shared<torch::nn::LinearImpl>(4, 3);
      },
      [](std::shared_ptr<torch::nn::LinearImpl>& m, double lr) {
        return std::make_shared<torch::optim::SGD>(
            m->parameters(), torch::optim::SGDOptions(lr).momentum(0.9));
      },
      train,
      dlcore::LRGridOptions().lrs({0.05}).epochs(2));
  CHECK(shared.points[0].epoch_losses == p.epoch_losses);

  CHECK_THAT(
      error_of([&] {
        dlcore::lr_grid_search(
            [] { return make_linear(0); },
            [](torch::nn::Linear&, double) {
              return std::unique_ptr<torch::optim::SGD>();
            },
            train,
            dlcore::LRGridOptions().lrs({0.1}).epochs(1));
      }),
      Contains("make_optimizer: expected an optimizer, but got a null "
               "pointer"));
}

TEST_CASE(
    "lr_grid_search's accuracy is NaN without class targets and the argmax "
    "one for probability targets",
    "[lr_finder]") {
  auto hard = make_batches(3, 16, 47);
  std::vector<TestBatch> soft;
  std::vector<TestBatch> regression;
  for (const auto& b : hard) {
    soft.push_back(
        {b.data,
         0.9 * torch::one_hot(b.targets, 3).to(torch::kFloat) + 0.1 / 3});
    regression.push_back({b.data, b.data.sum(1)});
  }
  auto make_opt = [](torch::nn::Linear& m, double lr) {
    return torch::optim::SGD(m->parameters(), torch::optim::SGDOptions(lr));
  };
  // An LR of 1e-12 leaves the weights unchanged in float, so hard and soft
  // targets see the same predictions.
  auto opts = dlcore::LRGridOptions().lrs({1e-12}).epochs(2);
  auto h = dlcore::lr_grid_search(
      [] { return make_linear(47); }, make_opt, hard, opts);
  auto s = dlcore::lr_grid_search(
      [] { return make_linear(47); }, make_opt, soft, opts);
  CHECK(s.points[0].epoch_accuracies == h.points[0].epoch_accuracies);
  CHECK(h.points[0].epoch_accuracies[0] >= 0.0);

  auto r = dlcore::lr_grid_search(
      [] {
        torch::manual_seed(47);
        return torch::nn::Linear(4, 1);
      },
      make_opt,
      regression,
      regression,
      dlcore::LRGridOptions().lrs({1e-3}).epochs(2),
      [](const torch::Tensor& z, const torch::Tensor& y) {
        return torch::mse_loss(z.squeeze(1), y);
      });
  REQUIRE(r.points[0].epoch_accuracies.size() == 2);
  CHECK(std::isnan(r.points[0].epoch_accuracies[0]));
  CHECK(std::isnan(r.points[0].epoch_accuracies[1]));
  CHECK(std::isfinite(r.points[0].final_loss));
  CHECK(std::isfinite(r.points[0].val_loss));
  CHECK(std::isnan(r.points[0].val_accuracy));
  CHECK_FALSE(r.points[0].diverged);
}

namespace {

namespace fs = std::filesystem;

fs::path fresh_lr_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("dlcore_lr_finder_" + name + "_" +
                                              std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::size_t files_in(const fs::path& dir) {
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    (void)e;
    ++n;
  }
  return n;
}

/// A 40-point curve over 1e-6..1 with a valley, as a range test gives.
dlcore::LRFinderResult valley_curve() {
  std::vector<double> lrs, losses;
  for (int i = 0; i < 40; ++i) {
    const double x = -6.0 + 6.0 * i / 39.0; // log10 lr
    lrs.push_back(std::pow(10.0, x));
    losses.push_back(
        2.3 - 1.5 / (1.0 + std::exp(-2.0 * (x + 3.5))) +
        (x > -1.5 ? 3.0 * (x + 1.5) * (x + 1.5) : 0.0));
  }
  dlcore::LRFinderResult r = synthetic(lrs, losses);
  for (std::size_t i = 0; i < r.losses.size(); ++i) {
    r.losses[i] += (i % 2 == 0 ? 0.05 : -0.05); // raw noise around smoothed
  }
  return r;
}

} // namespace

TEST_CASE(
    "LRFinderResult::write_csv writes iteration, lr, raw and smoothed loss",
    "[lr_finder]") {
  dlcore::LRFinderResult r;
  r.lrs = {1e-07, 0.001, 0.25};
  r.losses = {2.5, 1.75, std::numeric_limits<double>::infinity()};
  r.smoothed_losses = {2.5, 2.125, std::nan("")};
  CHECK(
      r.to_csv().to_string() ==
      "iteration,lr,loss,smoothed_loss\n"
      "0,1e-07,2.5,2.5\n"
      "1,0.001,1.75,2.125\n"
      "2,0.25,inf,nan\n");
  // Several param groups: one column per group after the first.
  r.group_lrs = {
      {1e-07, 1e-08, 2e-07}, {0.001, 0.0001, 0.002}, {0.25, 0.025, 0.5}};
  CHECK(
      r.to_csv().to_string() ==
      "iteration,lr,loss,smoothed_loss,lr_1,lr_2\n"
      "0,1e-07,2.5,2.5,1e-08,2e-07\n"
      "1,0.001,1.75,2.125,0.0001,0.002\n"
      "2,0.25,inf,nan,0.025,0.5\n");
  fs::path dir = fresh_lr_dir("csv");
  const std::string path = (dir / "sub" / "lr_finder.csv").string();
  r.write_csv(path);
  CHECK(dlcore::read_file(path) == r.to_csv().to_string());
  CHECK(files_in(dir / "sub") == 1); // no temporary file left
  fs::remove_all(dir);
}

TEST_CASE(
    "LRFinderResult's CSV round-trips a real range test exactly",
    "[lr_finder]") {
  auto model = make_linear(21);
  torch::optim::SGD sgd(
      model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  dlcore::LRFinder finder(model, sgd, dlcore::LRFinderOptions().num_iter(25));
  auto batches = make_batches(5, 8, 21);
  const dlcore::LRFinderResult r = finder.range_test(batches);
  fs::path dir = fresh_lr_dir("roundtrip");
  const std::string path = (dir / "lr_finder.csv").string();
  r.write_csv(path);
  const dlcore::CsvTable back = dlcore::CsvTable::read(path);
  CHECK(
      back.header() ==
      std::vector<std::string>{"iteration", "lr", "loss", "smoothed_loss"});
  CHECK(back.column("lr") == r.lrs);
  CHECK(back.column("loss") == r.losses);
  CHECK(back.column("smoothed_loss") == r.smoothed_losses);
  const std::vector<double> it = back.column("iteration");
  for (std::size_t i = 0; i < it.size(); ++i) {
    CHECK(it[i] == static_cast<double>(i));
  }
  fs::remove_all(dir);
}

TEST_CASE(
    "LRFinderResult's CSV and plot reject mismatched columns", "[lr_finder]") {
  dlcore::LRFinderResult r = synthetic({0.1, 0.2}, {1.0, 2.0});
  r.smoothed_losses.pop_back();
  CHECK_THAT(
      error_of([&] { (void)r.to_csv(); }),
      Contains("LRFinderResult::to_csv: expected one learning rate, loss and "
               "smoothed loss (and group LR row) per iteration, but got 2 "
               "learning rates, 2 losses, 1 smoothed losses and 0 group LR "
               "rows"));
  CHECK_THAT(
      error_of([&] { (void)r.plot_panel("x.csv"); }),
      Contains("LRFinderResult::plot: expected one learning rate"));
  dlcore::LRFinderResult g = synthetic({0.1, 0.2}, {1.0, 2.0});
  g.group_lrs = {{0.1, 0.01}, {0.2}};
  CHECK_THAT(
      error_of([&] { (void)g.to_csv(); }),
      Contains("expected the same number (>= 1) of group learning rates in "
               "every iteration, but iteration 0 has 2 and iteration 1 has "
               "1"));
  CHECK_THAT(
      error_of([&] { (void)dlcore::LRFinderResult().plot_panel("x.csv"); }),
      Contains("LRFinderResult::plot: expected at least one iteration"));
  CHECK_THAT(
      error_of([&] {
        (void)synthetic({0.1}, {1.0})
            .plot_panel("x.csv", dlcore::LRFinderPlotOptions().skip_end(-1));
      }),
      Contains("skip_start and skip_end must be >= 0, but got 10 and -1"));
}

TEST_CASE(
    "LRFinderResult's plot marks the suggestions on a log axis with readable "
    "ticks",
    "[lr_finder]") {
  const dlcore::LRFinderResult r = valley_curve();
  const auto opts =
      dlcore::LRFinderPlotOptions().skip_start(3).skip_end(2).markers(
          {{0.01, "max_lr"}});
  const dlcore::PlotPanel p = r.plot_panel("curve.csv", opts);
  CHECK(p.log_x());
  CHECK(p.x_format() == dlcore::TickFormat::kScientific);
  REQUIRE(p.series().size() == 2);
  CHECK(p.series()[0].y() == "loss");
  CHECK(p.series()[1].y() == "smoothed_loss");
  CHECK(p.series()[0].x() == "lr");
  CHECK(p.series()[0].csv() == "curve.csv");
  const auto steepest = dlcore::suggest_steepest(r, 3, 2);
  const auto min10 = dlcore::suggest_min_div10(r, 3, 2);
  const auto valley = dlcore::suggest_valley(r, 3, 2);
  REQUIRE(p.markers().size() == 4);
  auto label = [](const char* what, double lr) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%s %.1e", what, lr);
    return std::string(buf);
  };
  CHECK(p.markers()[0].x == steepest.lr);
  CHECK(p.markers()[0].label == label("steepest", steepest.lr));
  CHECK(p.markers()[1].x == min10.lr);
  CHECK(p.markers()[1].label == label("min/10", min10.lr));
  CHECK(p.markers()[2].x == valley.lr);
  CHECK(p.markers()[2].label == label("valley", valley.lr));
  CHECK(p.markers()[3].x == 0.01);
  CHECK(p.markers()[3].label == "max_lr");
  // The y axis ends 10% of the span above the highest smoothed loss before
  // the smoothed minimum, below the rise to divergence.
  std::size_t best = 0;
  for (std::size_t i = 0; i < r.smoothed_losses.size(); ++i) {
    if (r.smoothed_losses[i] < r.smoothed_losses[best]) {
      best = i;
    }
  }
  double lo = 1e300, hi = -1e300;
  for (std::size_t i = 0; i < r.losses.size(); ++i) {
    lo = std::min({lo, r.losses[i], r.smoothed_losses[i]});
    if (i <= best) {
      hi = std::max(hi, r.smoothed_losses[i]);
    }
  }
  CHECK(best > 0);
  CHECK(best + 1 < r.smoothed_losses.size());
  CHECK(std::isnan(p.y_range().min));
  CHECK(p.y_range().max == hi + 0.1 * (hi - lo));
  CHECK(p.y_range().max < r.smoothed_losses.back());
  // Without suggestions, or with too few points for them: no markers.
  auto no_suggestions = opts;
  no_suggestions.suggestions(false);
  CHECK(r.plot_panel("c.csv", no_suggestions).markers().size() == 1);
  CHECK(
      synthetic({0.1, 0.2}, {1.0, 2.0}).plot_panel("c.csv").markers().empty());
}

TEST_CASE(
    "LRFinderResult::plot renders a PNG and leaves no other file",
    "[lr_finder]") {
  const dlcore::LRFinderResult r = valley_curve();
  fs::path dir = fresh_lr_dir("plot");
  const std::string png = (dir / "out" / "lr_finder.png").string();
  SECTION("with gnuplot") {
    if (!dlcore::gnuplot_available()) {
      const char* allow = std::getenv("DLCORE_ALLOW_MISSING_DEPS");
      if (allow != nullptr && std::string(allow) == "1") {
        WARN("gnuplot is not installed; skipped (DLCORE_ALLOW_MISSING_DEPS=1)");
        return;
      }
      FAIL(
          "gnuplot is not installed (not found on PATH): install it, or set "
          "DLCORE_ALLOW_MISSING_DEPS=1 to skip this test");
    }
    const dlcore::PlotResult p =
        r.plot(png, dlcore::LRFinderPlotOptions().skip_start(3).skip_end(2));
    INFO(p.message);
    REQUIRE(p.ok);
    CHECK(p.message.empty()); // no gnuplot warning
    std::ifstream in(png, std::ios::binary);
    char magic[8] = {};
    in.read(magic, 8);
    CHECK(std::string(magic, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
    CHECK(files_in(dir / "out") == 1); // the temporary CSV is gone
    // A diverged curve (inf at the end) still plots.
    dlcore::LRFinderResult d = r;
    d.losses.back() = std::numeric_limits<double>::infinity();
    d.smoothed_losses.back() = std::nan("");
    CHECK(d.plot(png).ok);
    CHECK(files_in(dir / "out") == 1);
  }
  SECTION("without gnuplot") {
    const dlcore::PlotResult p = r.plot(
        png,
        dlcore::LRFinderPlotOptions().plot_options(
            dlcore::PlotOptions().gnuplot("/nonexistent/gnuplot")));
    CHECK(!p.ok);
    CHECK_THAT(p.message, Contains("was not found"));
    CHECK(files_in(dir / "out") == 0);
  }
  fs::remove_all(dir);
}
