#include <dlcore/data/batches.h>
#include <dlcore/data/pseudo_label.h>
#include <dlcore/train/predict.h>

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

#include <cstdint>
#include <vector>

namespace {

/// A small classifier with dropout and batch norm, whose outputs depend on
/// the training flag.
struct NetImpl : torch::nn::Module {
  NetImpl() {
    fc1 = register_module("fc1", torch::nn::Linear(6, 8));
    bn = register_module("bn", torch::nn::BatchNorm1d(8));
    drop = register_module("drop", torch::nn::Dropout(0.5));
    fc2 = register_module("fc2", torch::nn::Linear(8, 4));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    TORCH_CHECK(x.size(1) == 6, "Net: expected 6 features, got ", x.size(1));
    return fc2(drop(torch::relu(bn(fc1(x)))));
  }
  torch::nn::Linear fc1{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
  torch::nn::Dropout drop{nullptr};
  torch::nn::Linear fc2{nullptr};
};
TORCH_MODULE(Net);

std::vector<bool> flags(torch::nn::Module& m) {
  std::vector<bool> out{m.is_training()};
  for (const auto& c : m.modules(/*include_self=*/false)) {
    out.push_back(c->is_training());
  }
  return out;
}

/// The reference: the whole input in one forward pass, eval mode, no grad.
torch::Tensor reference(Net& net, const torch::Tensor& x) {
  const auto saved = flags(*net);
  net->eval();
  torch::NoGradGuard no_grad;
  auto y = net->forward(x);
  net->train(saved[0]);
  return y;
}

} // namespace

TEST_CASE(
    "predict gives the eval-mode scores in chunks, without autograd",
    "[predict]") {
  torch::manual_seed(3);
  Net net;
  // Make the batch-norm statistics non-trivial.
  for (int i = 0; i < 3; ++i) {
    net->forward(torch::randn({16, 6}));
  }
  const auto x = torch::randn({20, 6});
  const auto want = reference(net, x);
  for (int64_t b : {1, 7, 20, 64}) {
    INFO("batch_size " << b);
    const auto y =
        dlcore::predict(net, x, dlcore::PredictOptions().batch_size(b));
    CHECK_FALSE(y.requires_grad());
    CHECK(y.device().is_cpu());
    CHECK(y.sizes() == want.sizes());
    CHECK(torch::allclose(y, want, 1e-6, 1e-6));
  }
  // The module itself works as well as the holder, and twice gives the same
  // (dropout is off).
  CHECK(dlcore::predict(*net, x).equal(dlcore::predict(net, x)));
  // Softmax rows are distributions, in the same order.
  const auto p =
      dlcore::predict(net, x, dlcore::PredictOptions().softmax(true));
  CHECK(torch::allclose(p.sum(1), torch::ones({20}), 1e-5, 1e-6));
  CHECK(p.argmax(1).equal(want.argmax(1)));
  // A temporary input.
  CHECK(dlcore::predict(net, x.clone()).sizes() == want.sizes());
}

TEST_CASE(
    "predict restores every submodule's own training flag, also on errors",
    "[predict]") {
  Net net;
  net->train();
  net->bn->eval(); // a frozen batch norm inside a training model
  const auto before = flags(*net);
  REQUIRE(before == std::vector<bool>{true, true, false, true, true});
  dlcore::predict(net, torch::randn({5, 6}));
  CHECK(flags(*net) == before);
  CHECK_THROWS_WITH(
      dlcore::predict(net, torch::randn({5, 3})),
      Catch::Contains("Net: expected 6 features, got 3"));
  CHECK(flags(*net) == before);
  CHECK(torch::GradMode::is_enabled());
  // An eval model stays in eval mode.
  net->eval();
  dlcore::predict(net, torch::randn({5, 6}));
  CHECK(flags(*net) == std::vector<bool>(5, false));
}

TEST_CASE(
    "predict over Batches equals predict over the tensor and keeps the epoch",
    "[predict]") {
  Net net;
  const auto x = torch::randn({23, 6});
  dlcore::Batches batches(
      dlcore::TensorDataset{x, torch::zeros({23}, torch::kLong)},
      dlcore::BatchesOptions(5));
  batches.set_epoch(4);
  const auto y = dlcore::predict(net, batches);
  CHECK(batches.epoch() == 4);
  CHECK(torch::allclose(y, dlcore::predict(net, x), 1e-6, 1e-6));
  // A const Batches is read the same way.
  const dlcore::Batches& read_only = batches;
  CHECK(torch::equal(dlcore::predict(net, read_only), y));
  CHECK(read_only.epoch() == 4);
  // A range of tensors works too.
  std::vector<torch::Tensor> chunks = x.split(10);
  CHECK(torch::allclose(dlcore::predict(net, chunks), y, 1e-6, 1e-6));
}

TEST_CASE(
    "predict_each streams chunks in row order into the selector", "[predict]") {
  Net net;
  const auto x = torch::randn({50, 6});
  std::vector<int64_t> firsts;
  dlcore::TopKTopPSelector streamed({4, 5, 1});
  dlcore::predict_each(
      net,
      x,
      [&](const torch::Tensor& scores, int64_t first) {
        CHECK(scores.size(0) == std::min<int64_t>(16, 50 - first));
        firsts.push_back(first);
        streamed.ingest(scores, first);
      },
      dlcore::PredictOptions().batch_size(16).softmax(true));
  CHECK(firsts == std::vector<int64_t>{0, 16, 32, 48});
  dlcore::TopKTopPSelector whole({4, 5, 1});
  whole.ingest(
      dlcore::predict(net, x, dlcore::PredictOptions().softmax(true)), 0);
  const auto a = streamed.result();
  const auto b = whole.result();
  CHECK(a.indices.equal(b.indices));
  CHECK(a.labels.equal(b.labels));
}

TEST_CASE("predict rejects bad options and empty inputs", "[predict]") {
  Net net;
  CHECK_THROWS_WITH(
      dlcore::predict(
          net, torch::randn({4, 6}), dlcore::PredictOptions().batch_size(0)),
      Catch::Contains("predict: batch_size must be >= 1, but got 0"));
  CHECK_THROWS_WITH(
      dlcore::predict(net, torch::randn({0, 6})),
      Catch::Contains("predict: the input has no rows"));
  CHECK_THROWS_WITH(
      dlcore::predict(net, torch::Tensor()),
      Catch::Contains("predict: expected inputs [N, ...]"));
}
