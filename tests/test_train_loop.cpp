#include <dlcore/train/train_loop.h>

#include <dlcore/data/batches.h>
#include <dlcore/data/fashion_mnist.h>
#include <dlcore/data/hashtag_resampler.h>
#include <dlcore/data/split.h>
#include <dlcore/nn/models/lenet5.h>

#include <torch/optim/schedulers/step_lr.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

namespace {

struct TestBatch {
  torch::Tensor data;
  torch::Tensor targets;
};

// Two Gaussian blobs per class in 8 dimensions, separable by a linear model.
std::vector<TestBatch> blobs(
    int64_t n, int64_t batch, int64_t classes, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  torch::Tensor centers = 3.0 * torch::randn({classes, 8}, gen);
  torch::Tensor y = torch::randint(classes, {n}, gen, torch::kLong);
  torch::Tensor x = centers.index_select(0, y) + torch::randn({n, 8}, gen);
  std::vector<TestBatch> out;
  for (int64_t s = 0; s < n; s += batch) {
    int64_t e = std::min(n, s + batch);
    out.push_back({x.slice(0, s, e), y.slice(0, s, e)});
  }
  return out;
}

torch::nn::Linear linear_model(int64_t classes, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::nn::Linear(8, classes);
}

struct CountingScheduler {
  int64_t steps = 0;
  void step() {
    ++steps;
  }
};

/// Whether a test whose dependency is missing may skip (with a warning)
/// instead of failing: only when DLCORE_ALLOW_MISSING_DEPS=1.
bool allow_missing_deps() {
  const char* v = std::getenv("DLCORE_ALLOW_MISSING_DEPS");
  return v != nullptr && std::string(v) == "1";
}

} // namespace

TEST_CASE("train_epoch lowers the loss on separable data", "[train_loop]") {
  auto batches = blobs(512, 32, 4, 1);
  auto model = linear_model(4, 1);
  torch::optim::SGD sgd(
      model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  auto before = dlcore::evaluate(model, batches);
  dlcore::EpochMetrics last;
  for (int64_t e = 0; e < 3; ++e) {
    last = dlcore::train_epoch(model, batches, sgd);
  }
  auto after = dlcore::evaluate(model, batches);
  CHECK(last.samples == 512);
  CHECK(last.steps == 16);
  CHECK(last.seconds >= 0.0);
  CHECK(after.loss < 0.5 * before.loss);
  CHECK(after.accuracy > 0.9);
  CHECK(after.accuracy <= 1.0);
}

TEST_CASE(
    "train_epoch reports per-sample or per-batch mean loss and accuracy "
    "like a brute-force loop",
    "[train_loop]") {
  // 100 samples in batches of 32: the last batch has 4, so the two
  // averages differ. lr 0 keeps the model fixed so losses can be recomputed.
  auto batches = blobs(100, 32, 3, 2);
  auto model = linear_model(3, 2);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.0));
  double sum_sample = 0.0;
  double sum_batch = 0.0;
  int64_t correct = 0;
  {
    torch::NoGradGuard g;
    for (const auto& b : batches) {
      auto logits = model->forward(b.data);
      double l = torch::nn::functional::cross_entropy(logits, b.targets)
                     .item<double>();
      sum_sample += l * static_cast<double>(b.data.size(0));
      sum_batch += l;
      correct += logits.argmax(1).eq(b.targets).sum().item<int64_t>();
    }
  }
  auto per_sample = dlcore::train_epoch(model, batches, sgd);
  auto per_batch = dlcore::train_epoch(
      model,
      batches,
      sgd,
      dlcore::TrainOptions().loss_average(dlcore::LossAverage::kPerBatch));
  CHECK(per_sample.loss == Approx(sum_sample / 100.0).epsilon(1e-6));
  CHECK(per_batch.loss == Approx(sum_batch / 4.0).epsilon(1e-6));
  CHECK(per_sample.loss != Approx(per_batch.loss).epsilon(1e-9));
  CHECK(per_sample.accuracy == Approx(correct / 100.0));
  auto eval = dlcore::evaluate(model, batches);
  CHECK(eval.loss == Approx(sum_sample / 100.0).epsilon(1e-6));
  CHECK(eval.accuracy == Approx(correct / 100.0));
  CHECK(eval.steps == 4);
  CHECK(eval.samples == 100);
  auto eval_batch = dlcore::evaluate(
      model,
      batches,
      dlcore::EvaluateOptions().loss_average(dlcore::LossAverage::kPerBatch));
  CHECK(eval_batch.loss == Approx(sum_batch / 4.0).epsilon(1e-6));
}

TEST_CASE(
    "train_epoch steps a per-batch scheduler once per batch", "[train_loop]") {
  auto batches = blobs(100, 32, 3, 3);
  auto model = linear_model(3, 3);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  CountingScheduler scheduler;
  auto m = dlcore::train_epoch(model, batches, sgd, scheduler);
  CHECK(scheduler.steps == 4);
  CHECK(m.steps == 4);
  dlcore::train_epoch(
      model, batches, sgd, scheduler, dlcore::TrainOptions().max_steps(2));
  CHECK(scheduler.steps == 6);
}

TEST_CASE(
    "train_epoch's callback sees the LR and momentum used by each step, "
    "read before the scheduler steps",
    "[train_loop]") {
  auto batches = blobs(160, 32, 3, 4);
  auto model = linear_model(3, 4);
  torch::optim::SGD sgd(
      model->parameters(), torch::optim::SGDOptions(0.8).momentum(0.9));
  torch::optim::StepLR scheduler(sgd, /*step_size=*/1, /*gamma=*/0.5);
  std::vector<dlcore::StepInfo> seen;
  auto opts = dlcore::TrainOptions().epoch(7).global_step(100).on_step(
      [&](dlcore::StepInfo& s) { seen.push_back(s); });
  dlcore::train_epoch(model, batches, sgd, scheduler, opts);
  REQUIRE(seen.size() == 5);
  for (std::size_t i = 0; i < seen.size(); ++i) {
    CHECK(seen[i].epoch == 7);
    CHECK(seen[i].step == static_cast<int64_t>(i));
    CHECK(seen[i].global_step == 100 + static_cast<int64_t>(i));
    CHECK(seen[i].steps_in_epoch == 5);
    CHECK(seen[i].batch_size == 32);
    REQUIRE(seen[i].lrs.size() == 1);
    // LibTorch's StepLR leaves the LR alone on its first step() (Python's
    // constructor takes that step), so the LR halves from the third step on.
    CHECK(seen[i].lrs[0] == Approx(0.8 * std::pow(0.5, i == 0 ? 0 : i - 1)));
    REQUIRE(seen[i].momenta.size() == 1);
    CHECK(seen[i].momenta[0] == 0.9);
    CHECK(std::isfinite(seen[i].loss));
    CHECK(seen[i].accuracy >= 0.0);
    CHECK(seen[i].accuracy <= 1.0);
  }
  // After the epoch the optimizer holds the LR for the next step.
  CHECK(sgd.param_groups()[0].options().get_lr() == Approx(0.8 / 16));
}

TEST_CASE(
    "train_epoch reports every param group to the callback", "[train_loop]") {
  auto batches = blobs(64, 32, 3, 5);
  auto model = linear_model(3, 5);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(
      std::vector<torch::Tensor>{model->weight},
      std::make_unique<torch::optim::SGDOptions>(
          torch::optim::SGDOptions(0.1).momentum(0.5)));
  groups.emplace_back(
      std::vector<torch::Tensor>{model->bias},
      std::make_unique<torch::optim::SGDOptions>(
          torch::optim::SGDOptions(0.01)));
  torch::optim::SGD sgd(groups, torch::optim::SGDOptions(0.1));
  std::vector<dlcore::StepInfo> seen;
  dlcore::train_epoch(
      model,
      batches,
      sgd,
      dlcore::TrainOptions().on_step(
          [&](const dlcore::StepInfo& s) { seen.push_back(s); }));
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].lrs == std::vector<double>{0.1, 0.01});
  CHECK(seen[0].momenta == std::vector<double>{0.5, 0.0});
}

TEST_CASE("train_epoch stops when the callback sets stop", "[train_loop]") {
  auto batches = blobs(160, 32, 3, 6);
  auto model = linear_model(3, 6);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  CountingScheduler scheduler;
  auto m = dlcore::train_epoch(
      model,
      batches,
      sgd,
      scheduler,
      dlcore::TrainOptions().on_step(
          [](dlcore::StepInfo& s) { s.stop = s.step == 1; }));
  CHECK(m.steps == 2);
  CHECK(m.samples == 64);
  CHECK(scheduler.steps == 2);
}

TEST_CASE(
    "evaluate leaves parameters, grad mode and training mode as they were",
    "[train_loop]") {
  auto batches = blobs(64, 16, 3, 7);
  auto model = linear_model(3, 7);
  auto before = model->weight.clone();
  CHECK(model->is_training());
  REQUIRE(torch::GradMode::is_enabled());
  auto m = dlcore::evaluate(model, batches);
  CHECK(torch::equal(model->weight, before));
  CHECK(!model->weight.grad().defined());
  CHECK(torch::GradMode::is_enabled());
  CHECK(model->is_training());
  model->eval();
  dlcore::evaluate(model, batches);
  CHECK(!model->is_training());
  CHECK(m.samples == 64);
}

TEST_CASE("train_epoch puts the model in training mode", "[train_loop]") {
  auto batches = blobs(32, 16, 3, 8);
  auto model = linear_model(3, 8);
  model->eval();
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  dlcore::train_epoch(model, batches, sgd);
  CHECK(model->is_training());
}

TEST_CASE("train_epoch is deterministic under a seed", "[train_loop]") {
  auto run = [] {
    auto batches = blobs(96, 32, 3, 9);
    auto model = linear_model(3, 9);
    torch::optim::SGD sgd(
        model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    auto m = dlcore::train_epoch(model, batches, sgd);
    return std::make_pair(m.loss, model->weight.clone());
  };
  auto a = run();
  auto b = run();
  CHECK(a.first == b.first);
  CHECK(torch::equal(a.second, b.second));
}

TEST_CASE(
    "train_epoch and evaluate on an empty range report NaN and zero counts",
    "[train_loop]") {
  std::vector<TestBatch> none;
  auto model = linear_model(3, 10);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  auto m = dlcore::train_epoch(model, none, sgd);
  CHECK(std::isnan(m.loss));
  CHECK(std::isnan(m.accuracy));
  CHECK(m.samples == 0);
  CHECK(m.steps == 0);
  auto e = dlcore::evaluate(model, none);
  CHECK(std::isnan(e.loss));
  CHECK(e.steps == 0);
}

TEST_CASE(
    "train_epoch accepts soft targets and a custom loss", "[train_loop]") {
  auto hard = blobs(64, 32, 3, 11);
  std::vector<TestBatch> soft;
  for (const auto& b : hard) {
    soft.push_back(
        {b.data,
         0.9 * torch::one_hot(b.targets, 3).to(torch::kFloat) + 0.1 / 3});
  }
  auto model = linear_model(3, 11);
  torch::Tensor logits = model->forward(soft[0].data);
  torch::Tensor expected =
      torch::nn::functional::cross_entropy(logits, soft[0].targets);
  CHECK(
      dlcore::soft_target_cross_entropy(logits, soft[0].targets)
          .item<double>() == Approx(expected.item<double>()).epsilon(1e-6));
  CHECK(
      dlcore::default_loss(logits, soft[0].targets).item<double>() ==
      Approx(expected.item<double>()).epsilon(1e-6));

  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.0));
  auto m = dlcore::train_epoch(model, soft, sgd);
  CHECK(std::isfinite(m.loss));
  auto h = dlcore::evaluate(model, hard);
  CHECK(m.accuracy == Approx(h.accuracy)); // argmax of soft == hard label

  int calls = 0;
  auto custom = dlcore::TrainOptions().loss_fn(
      [&](const torch::Tensor& z, const torch::Tensor& y) {
        ++calls;
        return torch::nn::functional::cross_entropy(z, y) * 0.0 + 2.0;
      });
  auto c = dlcore::train_epoch(model, hard, sgd, custom);
  CHECK(calls == 2);
  CHECK(c.loss == Approx(2.0));
}

TEST_CASE("train_epoch rejects targets of the wrong shape", "[train_loop]") {
  std::vector<TestBatch> bad = {
      {torch::randn({4, 8}), torch::zeros({4, 2}, torch::kLong)}};
  auto model = linear_model(3, 12);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  try {
    dlcore::train_epoch(model, bad, sgd);
    FAIL("expected an error");
  } catch (const c10::Error& e) {
    CHECK_THAT(
        e.what_without_backtrace(),
        Catch::Contains("default_loss: expected int64 targets [N]") &&
            Catch::Contains("[4, 2]"));
  }
  CHECK_THROWS_WITH(
      dlcore::soft_target_cross_entropy(
          torch::randn({4, 3}), torch::rand({4, 2})),
      Catch::Contains("soft_target_cross_entropy: expected logits [N, C]"));
}

TEST_CASE(
    "train_epoch takes a plain module and torch::data::Example batches",
    "[train_loop]") {
  auto batches = blobs(64, 32, 3, 13);
  std::vector<torch::data::Example<>> examples;
  for (const auto& b : batches) {
    examples.emplace_back(b.data, b.targets);
  }
  torch::manual_seed(13);
  torch::nn::LinearImpl plain(8, 3);
  torch::optim::SGD sgd(plain.parameters(), torch::optim::SGDOptions(0.1));
  auto m = dlcore::train_epoch(plain, examples, sgd);
  CHECK(m.samples == 64);
  auto e = dlcore::evaluate(plain, examples);
  CHECK(e.samples == 64);

  torch::nn::Sequential seq(torch::nn::Linear(8, 3));
  torch::optim::SGD sgd2(seq->parameters(), torch::optim::SGDOptions(0.1));
  CHECK(dlcore::train_epoch(seq, batches, sgd2).steps == 2);
}

TEST_CASE(
    "train_epoch shows a progress line only when asked and allowed",
    "[train_loop]") {
  auto batches = blobs(64, 16, 3, 14);
  auto model = linear_model(3, 14);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  std::ostringstream out;
  dlcore::train_epoch(
      model,
      batches,
      sgd,
      dlcore::TrainOptions().epoch(2).progress(true).progress_options(
          dlcore::ProgressOptions()
              .mode(dlcore::ProgressMode::kAlways)
              .stream(&out)
              .min_interval(0.0)));
  std::string text = out.str();
  CHECK_THAT(text, Catch::Contains("\repoch 2  4/4  loss "));
  CHECK_THAT(text, Catch::Contains("lr 0.1"));
  CHECK(text.back() == '\n');
  std::ostringstream quiet;
  dlcore::train_epoch(
      model,
      batches,
      sgd,
      dlcore::TrainOptions().progress(true).progress_options(
          dlcore::ProgressOptions()
              .mode(dlcore::ProgressMode::kNever)
              .stream(&quiet)));
  CHECK(quiet.str().empty());
}

TEST_CASE(
    "train_epoch trains LeNet5 with SGD momentum on image-shaped data",
    "[train_loop]") {
  // Synthetic 28x28 images whose class is the quadrant holding a bright
  // square: a real convolutional training run in well under a second.
  auto gen = at::detail::createCPUGenerator(15);
  const int64_t n = 256;
  torch::Tensor y = torch::randint(4, {n}, gen, torch::kLong);
  torch::Tensor x = 0.3 * torch::randn({n, 1, 28, 28}, gen);
  auto ya = y.accessor<int64_t, 1>();
  for (int64_t i = 0; i < n; ++i) {
    int64_t r = (ya[i] / 2) * 14;
    int64_t c = (ya[i] % 2) * 14;
    x[i].slice(1, r + 3, r + 11).slice(2, c + 3, c + 11) += 1.5;
  }
  std::vector<TestBatch> batches;
  for (int64_t s = 0; s < n; s += 32) {
    batches.push_back({x.slice(0, s, s + 32), y.slice(0, s, s + 32)});
  }
  torch::manual_seed(15);
  dlcore::LeNet5 net(4);
  torch::optim::SGD sgd(
      net->parameters(), torch::optim::SGDOptions(0.02).momentum(0.9));
  auto before = dlcore::evaluate(net, batches);
  for (int64_t e = 0; e < 4; ++e) {
    dlcore::train_epoch(net, batches, sgd);
  }
  auto after = dlcore::evaluate(net, batches);
  CHECK(after.loss < 0.5 * before.loss);
}

TEST_CASE(
    "train_epoch lowers the loss of LeNet5 on real FashionMNIST images",
    "[train_loop]") {
  const std::string dir = dlcore::default_fashion_mnist_dir();
  if (!std::filesystem::exists(dir + "/t10k-images-idx3-ubyte.gz")) {
    if (allow_missing_deps()) {
      WARN(
          "FashionMNIST not installed in "
          << dir << "; test skipped (DLCORE_ALLOW_MISSING_DEPS=1)");
      return;
    }
    FAIL(
        "FashionMNIST not installed in "
        << dir
        << " (no t10k-images-idx3-ubyte.gz): install it, point "
           "DLCORE_FASHION_MNIST_DIR at it, or set DLCORE_ALLOW_MISSING_DEPS=1 "
           "to skip this test");
  }
  dlcore::TensorDataset test = dlcore::load_fashion_mnist(dir, false);
  auto [train, held_out] = dlcore::random_split(
      dlcore::subset(test, torch::arange(640)), 0.8, /*seed=*/5);
  dlcore::Batches batches(
      train, dlcore::BatchesOptions(32).shuffle(true).seed(5));
  dlcore::Batches val(held_out, dlcore::BatchesOptions(64));
  torch::manual_seed(5);
  dlcore::LeNet5 net;
  torch::optim::SGD sgd(
      net->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  CountingScheduler scheduler;
  std::vector<double> losses;
  auto before = dlcore::evaluate(net, val);
  for (int64_t e = 0; e < 4; ++e) {
    batches.set_epoch(e);
    auto m = dlcore::train_epoch(
        net, batches, sgd, scheduler, dlcore::TrainOptions().epoch(e));
    CHECK(m.samples == 512);
    CHECK(m.steps == 16);
    losses.push_back(m.loss);
  }
  auto after = dlcore::evaluate(net, val);
  CHECK(scheduler.steps == 4 * batches.size());
  CHECK(losses.back() < 0.7 * losses.front());
  CHECK(after.loss < before.loss);
  CHECK(after.accuracy > 0.5);
  CHECK(after.samples == 128);
}

TEST_CASE(
    "ProgressLine formats batches, loss, accuracy, LR and ETA",
    "[train_loop]") {
  CHECK(
      dlcore::ProgressLine::format_line(
          "epoch 1", 10, 40, 0.51234, 0.8125, 0.01, 2.0) ==
      "epoch 1  10/40  loss 0.5123  acc 81.25%  lr 0.01  2.0s ETA 6s");
  CHECK(
      dlcore::ProgressLine::format_line(
          "", 40, 40, std::nan(""), std::nan(""), std::nan(""), 8.0) ==
      "40/40  8.0s");
  CHECK(
      dlcore::ProgressLine::format_line(
          "eval", 3, -1, 1.0, std::nan(""), std::nan(""), 1.0) ==
      "eval  3  loss 1.0000  1.0s");
}

TEST_CASE(
    "ProgressLine redraws in place and throttles redraws", "[train_loop]") {
  std::ostringstream out;
  {
    dlcore::ProgressLine bar(
        "x",
        3,
        dlcore::ProgressOptions()
            .mode(dlcore::ProgressMode::kAlways)
            .stream(&out)
            .min_interval(3600.0));
    CHECK(bar.enabled());
    CHECK(bar.due(1)); // nothing drawn yet
    bar.update(1, 2.0, 0.5, 0.1);
    CHECK(!bar.due(2)); // throttled
    CHECK(bar.due(3));  // the last batch always redraws
    bar.update(3, 1.0, 0.75, 0.1);
  } // the destructor ends the line
  std::string text = out.str();
  CHECK(text.rfind("\rx  1/3", 0) == 0);
  CHECK_THAT(text, Catch::Contains("\rx  3/3  loss 1.0000  acc 75.00%"));
  CHECK(text.back() == '\n');
  CHECK(std::count(text.begin(), text.end(), '\n') == 1);

  std::ostringstream never;
  dlcore::ProgressLine off(
      "x",
      3,
      dlcore::ProgressOptions()
          .mode(dlcore::ProgressMode::kNever)
          .stream(&never));
  CHECK(!off.enabled());
  CHECK(!off.due(3));
  off.update(3, 1.0, 1.0, 1.0);
  off.finish();
  CHECK(never.str().empty());
}

TEST_CASE(
    "train_epoch gives the same training with gradients set to none or "
    "zeroed",
    "[train_loop]") {
  auto run = [](bool set_to_none) {
    auto batches = blobs(96, 32, 3, 16);
    auto model = linear_model(3, 16);
    torch::optim::SGD sgd(
        model->parameters(),
        torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(1e-3));
    auto m = dlcore::train_epoch(
        model, batches, sgd, dlcore::TrainOptions().set_to_none(set_to_none));
    CHECK(model->weight.grad().defined()); // the last step's gradient
    return std::make_pair(m.loss, model->weight.clone());
  };
  auto none = run(true);
  auto zeroed = run(false);
  CHECK(none.first == zeroed.first);
  CHECK(torch::equal(none.second, zeroed.second));

  // A custom optimizer without param groups gets zero_grad().
  struct Plain {
    int zeroed = 0;
    int stepped = 0;
    void zero_grad() {
      ++zeroed;
    }
    void step() {
      ++stepped;
    }
  } plain;
  auto batches = blobs(64, 32, 3, 17);
  auto model = linear_model(3, 17);
  auto m = dlcore::train_epoch(model, batches, plain);
  CHECK(plain.zeroed == 2);
  CHECK(plain.stepped == 2);
  CHECK(m.steps == 2);
}

TEST_CASE(
    "train_epoch with data_parallel matches the whole-batch update and is "
    "deterministic",
    "[train_loop]") {
  auto gen = at::detail::createCPUGenerator(18);
  std::vector<TestBatch> batches;
  for (int i = 0; i < 4; ++i) {
    batches.push_back(
        {torch::randn({33, 1, 28, 28}, gen),
         torch::randint(10, {33}, gen, torch::kLong)});
  }
  batches.push_back(
      {torch::randn({1, 1, 28, 28}, gen), torch::zeros({1}, torch::kLong)});
  auto run = [&](int chunks) {
    torch::manual_seed(18);
    dlcore::LeNet5 net;
    torch::optim::SGD sgd(
        net->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
    std::vector<double> lrs;
    auto m = dlcore::train_epoch(
        net,
        batches,
        sgd,
        dlcore::TrainOptions().data_parallel(chunks).on_step(
            [&](dlcore::StepInfo& s) { lrs.push_back(s.lrs.at(0)); }));
    CHECK(m.steps == 5);
    CHECK(m.samples == 133);
    CHECK(lrs.size() == 5);
    std::vector<torch::Tensor> params;
    for (const auto& p : net->parameters()) {
      params.push_back(p.detach().clone());
    }
    return std::make_pair(m, params);
  };
  const int threads = at::get_num_threads();
  auto one = run(1);
  auto two = run(2);
  auto two_again = run(2);
  auto three = run(3);
  CHECK(at::get_num_threads() == threads);
  CHECK(two.first.loss == Approx(one.first.loss).epsilon(1e-5));
  CHECK(three.first.loss == Approx(one.first.loss).epsilon(1e-5));
  CHECK(two.first.accuracy == one.first.accuracy);
  for (std::size_t i = 0; i < one.second.size(); ++i) {
    CHECK(torch::allclose(two.second[i], one.second[i], 1e-4, 1e-5));
    CHECK(torch::allclose(three.second[i], one.second[i], 1e-4, 1e-5));
    CHECK(torch::equal(two.second[i], two_again.second[i]));
  }
  CHECK(two.first.loss == two_again.first.loss);

  torch::manual_seed(19);
  dlcore::LeNet5 eval_net;
  auto e1 = dlcore::evaluate(eval_net, batches);
  auto e2 = dlcore::evaluate(
      eval_net, batches, dlcore::EvaluateOptions().data_parallel(2));
  CHECK(e2.loss == Approx(e1.loss).epsilon(1e-6));
  CHECK(e2.accuracy == e1.accuracy);
  CHECK(e2.samples == 133);
  CHECK(at::get_num_threads() == threads);
  CHECK_THROWS_WITH(
      dlcore::evaluate(
          eval_net, batches, dlcore::EvaluateOptions().data_parallel(-1)),
      Catch::Contains("evaluate: data_parallel must be >= 1, but got -1"));

  auto model = linear_model(3, 18);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  CHECK_THROWS_WITH(
      dlcore::train_epoch(
          model,
          blobs(32, 16, 3, 18),
          sgd,
          dlcore::TrainOptions().data_parallel(0)),
      Catch::Contains("train_epoch: data_parallel must be >= 1, but got 0"));
  // An error inside a worker's chunk reaches the caller.
  std::vector<TestBatch> bad = {
      {torch::randn({4, 8}), torch::zeros({4, 2}, torch::kLong)}};
  CHECK_THROWS_WITH(
      dlcore::train_epoch(
          model, bad, sgd, dlcore::TrainOptions().data_parallel(2)),
      Catch::Contains("default_loss: expected int64 targets"));
  CHECK(at::get_num_threads() == threads);
}

TEST_CASE(
    "train_epoch with accumulation_steps equals a hand-written accumulating "
    "loop",
    "[train_loop]") {
  // 5 batches, k = 2: steps after batches 2 and 4, and a last step of one
  // batch; each loss divided by k before backward.
  auto batches = blobs(150, 32, 3, 20);
  REQUIRE(batches.size() == 5);
  const int64_t k = 2;
  auto model = linear_model(3, 20);
  torch::optim::SGD sgd(
      model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  CountingScheduler scheduler;
  std::vector<dlcore::StepInfo> seen;
  auto m = dlcore::train_epoch(
      model,
      batches,
      sgd,
      scheduler,
      dlcore::TrainOptions().accumulation_steps(k).on_step(
          [&](dlcore::StepInfo& s) { seen.push_back(s); }));

  auto ref = linear_model(3, 20);
  torch::optim::SGD ref_sgd(
      ref->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  std::vector<double> step_losses;
  double step_loss = 0.0;
  double sample_sum = 0.0;
  for (std::size_t i = 0; i < batches.size(); ++i) {
    if (i % k == 0) {
      ref_sgd.zero_grad();
      step_loss = 0.0;
    }
    auto loss = torch::nn::functional::cross_entropy(
        ref->forward(batches[i].data), batches[i].targets);
    sample_sum += loss.item<double>() * batches[i].data.size(0);
    auto scaled = loss / static_cast<double>(k);
    scaled.backward();
    step_loss += scaled.item<double>();
    if (i % k == k - 1 || i + 1 == batches.size()) {
      ref_sgd.step();
      step_losses.push_back(step_loss);
    }
  }
  CHECK(torch::equal(model->weight, ref->weight));
  CHECK(torch::equal(model->bias, ref->bias));
  CHECK(m.steps == 3);
  CHECK(m.batches == 5);
  CHECK(m.samples == 150);
  CHECK(scheduler.steps == 3);
  CHECK(m.loss == Approx(sample_sum / 150.0).epsilon(1e-6));
  REQUIRE(seen.size() == 3);
  for (std::size_t s = 0; s < 3; ++s) {
    CHECK(seen[s].step == static_cast<int64_t>(s));
    CHECK(seen[s].steps_in_epoch == 3);
    CHECK(seen[s].loss == step_losses[s]); // summed in double, in order
    CHECK(seen[s].batch_size == (s < 2 ? 64 : 22));
    CHECK(seen[s].accuracy >= 0.0);
    CHECK(seen[s].accuracy <= 1.0);
  }

  SECTION("max_steps counts optimizer steps") {
    auto two = dlcore::train_epoch(
        model,
        batches,
        sgd,
        dlcore::TrainOptions().accumulation_steps(2).max_steps(2));
    CHECK(two.steps == 2);
    CHECK(two.batches == 4);
  }
  SECTION("k = 1 is the plain loop; k < 1 is an error") {
    auto one = dlcore::train_epoch(
        model, batches, sgd, dlcore::TrainOptions().accumulation_steps(1));
    CHECK(one.steps == 5);
    CHECK(one.batches == 5);
    CHECK_THROWS_WITH(
        dlcore::train_epoch(
            model, batches, sgd, dlcore::TrainOptions().accumulation_steps(0)),
        Catch::Contains(
            "train_epoch: accumulation_steps must be >= 1, but got 0"));
  }
}

TEST_CASE(
    "accumulation with data_parallel matches accumulation on one thread",
    "[train_loop]") {
  auto batches = blobs(130, 32, 3, 21);
  auto run = [&](int chunks) {
    auto model = linear_model(3, 21);
    torch::optim::SGD sgd(
        model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    std::vector<double> losses;
    auto m = dlcore::train_epoch(
        model,
        batches,
        sgd,
        dlcore::TrainOptions()
            .accumulation_steps(3)
            .data_parallel(chunks)
            .on_step([&](dlcore::StepInfo& s) { losses.push_back(s.loss); }));
    CHECK(m.steps == 2);
    return std::make_tuple(m, losses, model->weight.detach().clone());
  };
  auto [m1, l1, w1] = run(1);
  auto [m2, l2, w2] = run(2);
  CHECK(m2.loss == Approx(m1.loss).epsilon(1e-6));
  REQUIRE(l2.size() == l1.size());
  for (std::size_t i = 0; i < l1.size(); ++i) {
    CHECK(l2[i] == Approx(l1[i]).epsilon(1e-6));
  }
  CHECK(torch::allclose(w2, w1, 1e-4, 1e-6));
}

TEST_CASE("accuracy is NaN for batches without class targets", "[train_loop]") {
  // A regression: logits [N, 1] against float targets [N] under MSE.
  auto gen = at::detail::createCPUGenerator(22);
  std::vector<TestBatch> reg;
  for (int i = 0; i < 3; ++i) {
    auto x = torch::randn({16, 8}, gen);
    reg.push_back({x, x.sum(1)});
  }
  torch::manual_seed(22);
  torch::nn::Linear model(8, 1);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.01));
  auto mse = [](const torch::Tensor& z, const torch::Tensor& y) {
    return torch::mse_loss(z.squeeze(1), y);
  };
  std::vector<double> step_acc;
  auto m = dlcore::train_epoch(
      model,
      reg,
      sgd,
      dlcore::TrainOptions().loss_fn(mse).on_step(
          [&](dlcore::StepInfo& s) { step_acc.push_back(s.accuracy); }));
  CHECK(std::isfinite(m.loss));
  CHECK(std::isnan(m.accuracy));
  REQUIRE(step_acc.size() == 3);
  for (double a : step_acc) {
    CHECK(std::isnan(a));
  }
  auto e = dlcore::evaluate(model, reg, dlcore::EvaluateOptions().loss_fn(mse));
  CHECK(std::isfinite(e.loss));
  CHECK(std::isnan(e.accuracy));

  // One batch without class targets makes the epoch's accuracy NaN.
  auto mixed = blobs(64, 32, 3, 22);
  mixed[1].targets = mixed[1].targets.to(torch::kFloat); // [N] float
  auto cls = linear_model(3, 22);
  torch::optim::SGD sgd2(cls->parameters(), torch::optim::SGDOptions(0.0));
  auto any_loss = [](const torch::Tensor& z, const torch::Tensor&) {
    return z.pow(2).mean();
  };
  auto mm = dlcore::train_epoch(
      cls, mixed, sgd2, dlcore::TrainOptions().loss_fn(any_loss));
  CHECK(std::isnan(mm.accuracy));
  CHECK(mm.samples == 64);
  // Integer class targets of another integer type still count.
  auto ints = blobs(64, 32, 3, 23);
  for (auto& b : ints) {
    b.targets = b.targets.to(torch::kInt);
  }
  auto mi = dlcore::train_epoch(
      cls, ints, sgd2, dlcore::TrainOptions().loss_fn(any_loss));
  CHECK(mi.accuracy >= 0.0);
  CHECK(mi.accuracy <= 1.0);
}

TEST_CASE(
    "train_epoch and evaluate take a model held by std::shared_ptr",
    "[train_loop]") {
  auto batches = blobs(96, 32, 3, 24);
  torch::manual_seed(24);
  auto held = std::make_shared<torch::nn::LinearImpl>(8, 3);
  auto holder = linear_model(3, 24); // the same initial weights
  torch::optim::SGD a(held->parameters(), torch::optim::SGDOptions(0.1));
  torch::optim::SGD b(holder->parameters(), torch::optim::SGDOptions(0.1));
  auto ma = dlcore::train_epoch(held, batches, a);
  auto mb = dlcore::train_epoch(holder, batches, b);
  CHECK(ma.loss == mb.loss);
  CHECK(torch::equal(held->weight, holder->weight));
  CHECK(
      dlcore::evaluate(held, batches).loss ==
      dlcore::evaluate(holder, batches).loss);

  std::shared_ptr<torch::nn::LinearImpl> null;
  CHECK_THROWS_WITH(
      dlcore::train_epoch(null, batches, a),
      Catch::Contains(
          "train_epoch: expected a module, but got a null pointer"));
  CHECK_THROWS_WITH(
      dlcore::evaluate(null, batches),
      Catch::Contains("evaluate: expected a module, but got a null pointer"));
  torch::nn::Linear empty(nullptr);
  CHECK_THROWS_WITH(
      dlcore::train_epoch(empty, batches, a),
      Catch::Contains(
          "train_epoch: expected a module, but got an empty ModuleHolder"));
}

TEST_CASE(
    "a callback that stops on a non-finite loss ends the epoch there",
    "[train_loop]") {
  // The LR studies' stop: the batch with the non-finite loss is counted,
  // and the epoch's loss is then not finite either.
  auto batches = blobs(160, 32, 3, 25);
  auto model = linear_model(3, 25);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  int calls = 0;
  auto loss_fn = [&](const torch::Tensor& z, const torch::Tensor& y) {
    auto l = torch::nn::functional::cross_entropy(z, y);
    return ++calls == 3 ? l * std::numeric_limits<double>::infinity() : l;
  };
  auto m = dlcore::train_epoch(
      model,
      batches,
      sgd,
      dlcore::TrainOptions()
          .loss_fn(loss_fn)
          .loss_average(dlcore::LossAverage::kPerBatch)
          .on_step(
              [](dlcore::StepInfo& s) { s.stop = !std::isfinite(s.loss); }));
  CHECK(calls == 3);
  CHECK(m.steps == 3);
  CHECK(m.samples == 96);
  CHECK(std::isinf(m.loss));
}

TEST_CASE(
    "accuracy(false) skips the argmax and reports NaN accuracies",
    "[train_loop]") {
  auto batches = blobs(96, 32, 3, 26);
  auto run = [&](bool accuracy) {
    auto model = linear_model(3, 26);
    torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
    std::vector<double> step_acc;
    std::vector<double> step_loss;
    auto m = dlcore::train_epoch(
        model,
        batches,
        sgd,
        dlcore::TrainOptions().accuracy(accuracy).on_step(
            [&](dlcore::StepInfo& s) {
              step_acc.push_back(s.accuracy);
              step_loss.push_back(s.loss);
            }));
    auto e = dlcore::evaluate(
        model, batches, dlcore::EvaluateOptions().accuracy(accuracy));
    return std::make_tuple(m, e, step_acc, step_loss);
  };
  auto [m_on, e_on, acc_on, loss_on] = run(true);
  auto [m_off, e_off, acc_off, loss_off] = run(false);
  CHECK(dlcore::TrainOptions().accuracy());
  CHECK(dlcore::EvaluateOptions().accuracy());
  CHECK(m_on.accuracy >= 0.0);
  CHECK(e_on.accuracy >= 0.0);
  CHECK(std::isnan(m_off.accuracy));
  CHECK(std::isnan(e_off.accuracy));
  REQUIRE(acc_off.size() == 3);
  for (double a : acc_off) {
    CHECK(std::isnan(a));
  }
  // The losses do not depend on it.
  CHECK(m_off.loss == m_on.loss);
  CHECK(e_off.loss == e_on.loss);
  CHECK(loss_off == loss_on);
}

TEST_CASE(
    "the epoch loss is the in-order double sum of the batch losses, also "
    "when the loss type changes mid-epoch",
    "[train_loop]") {
  // 100 samples in batches of 32 (the last has 4); lr 0 keeps the model
  // fixed. Each product batch_size * float loss is exact in double, so the
  // sum is the host's in-order one, bit for bit.
  auto batches = blobs(100, 32, 3, 27);
  auto model = linear_model(3, 27);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.0));
  std::vector<double> losses;
  auto m = dlcore::train_epoch(
      model, batches, sgd, dlcore::TrainOptions().on_step([&](auto& s) {
        losses.push_back(s.loss);
      }));
  REQUIRE(losses.size() == 4);
  double per_sample = 0.0;
  double per_batch = 0.0;
  for (std::size_t i = 0; i < 4; ++i) {
    per_sample += static_cast<double>(batches[i].data.size(0)) * losses[i];
    per_batch += losses[i];
  }
  CHECK(m.loss == per_sample / 100.0);
  auto b = dlcore::train_epoch(
      model,
      batches,
      sgd,
      dlcore::TrainOptions().loss_average(dlcore::LossAverage::kPerBatch));
  CHECK(b.loss == per_batch / 4.0);

  // A double loss from the third batch on: the sum continues in a tensor
  // from the first two batches' sum.
  int calls = 0;
  auto mixed = dlcore::train_epoch(
      model,
      batches,
      sgd,
      dlcore::TrainOptions().loss_fn(
          [&](const torch::Tensor& z, const torch::Tensor& y) {
            auto l = torch::nn::functional::cross_entropy(z, y);
            return ++calls >= 3 ? l.to(torch::kDouble) : l;
          }));
  CHECK(calls == 4);
  CHECK(mixed.loss == Approx(per_sample / 100.0).epsilon(1e-12));
  CHECK(mixed.accuracy == m.accuracy);
}

TEST_CASE(
    "evaluate reads a const Batches at its epoch and does not move it",
    "[train_loop][batches]") {
  auto gen = at::detail::createCPUGenerator(17);
  const dlcore::TensorDataset ds{
      torch::randn({45, 8}, gen), torch::randint(3, {45}, gen, torch::kLong)};
  dlcore::Batches batches(ds, dlcore::BatchesOptions(10).shuffle(true).seed(3));
  batches.set_epoch(4);
  auto net = linear_model(3, 17);
  const dlcore::Batches& read_only = batches;
  const auto m = dlcore::evaluate(net, read_only);
  CHECK(read_only.epoch() == 4);
  CHECK(m.samples == 45);
  CHECK(m.batches == 5);
  // A non-const Batches is read the same way, as is its pass over epoch 4.
  CHECK(dlcore::evaluate(net, batches).loss == m.loss);
  CHECK(batches.epoch() == 4);
  CHECK(dlcore::evaluate(net, batches.pass(4)).loss == m.loss);
}

TEST_CASE(
    "train_epoch over a Batches drawn from a sampler trains on the sampler's "
    "indices and moves the epoch on",
    "[train_loop][batches]") {
  auto gen = at::detail::createCPUGenerator(23);
  const dlcore::TensorDataset ds{
      torch::randn({30, 8}, gen), torch::randint(3, {30}, gen, torch::kLong)};
  const auto opts =
      dlcore::HashtagResamplerOptions(0.5).epoch_length(40).seed(23);
  auto sampler = std::make_shared<dlcore::HashtagResampler>(ds.targets, opts);
  dlcore::Batches drawn(ds, sampler, dlcore::BatchesOptions(8));
  dlcore::HashtagResampler ref(ds.targets, opts);

  auto a = linear_model(3, 23);
  auto b = linear_model(3, 23);
  torch::optim::SGD sgd_a(a->parameters(), torch::optim::SGDOptions(0.1));
  torch::optim::SGD sgd_b(b->parameters(), torch::optim::SGDOptions(0.1));
  for (int64_t e = 0; e < 2; ++e) {
    const auto ma = dlcore::train_epoch(a, drawn, sgd_a);
    CHECK(drawn.epoch() == e + 1);
    CHECK(ma.samples == 40);
    // The reference: the same draws as an index tensor.
    dlcore::Batches by_index(
        ds, ref.epoch_indices(e), dlcore::BatchesOptions(8));
    const auto mb = dlcore::train_epoch(b, by_index, sgd_b);
    CHECK(ma.loss == mb.loss);
  }
  CHECK(torch::equal(a->weight, b->weight));
  CHECK(torch::equal(a->bias, b->bias));
  // A chosen epoch, without moving the counter.
  dlcore::train_epoch(a, drawn.pass(0), sgd_a);
  CHECK(drawn.epoch() == 2);
}
