// CUDA paths of the components a user would hand GPU tensors or a GPU model.
// Each case runs where LibTorch sees a CUDA device and says that it skipped
// where none is present (CI has none; the official LibTorch check on a GPU
// machine runs them).
#include <dlcore/data/batches.h>
#include <dlcore/data/hashtag_resampler.h>
#include <dlcore/data/label_noise.h>
#include <dlcore/data/pseudo_label.h>
#include <dlcore/nn/batch_norm_policy.h>
#include <dlcore/nn/freeze.h>
#include <dlcore/nn/heads.h>
#include <dlcore/nn/models/lenet5.h>
#include <dlcore/nn/models/resnet_cifar.h>
#include <dlcore/study/lr_finder.h>
#include <dlcore/train/train_loop.h>

#include <torch/cuda.h>

#include <vector>

namespace {

/// Whether a CUDA device is present; warns (a visible skip) when not.
bool have_cuda() {
  if (torch::cuda::is_available()) {
    return true;
  }
  WARN("SKIPPED: no CUDA device (torch::cuda::is_available() is false)");
  return false;
}

/// A small separable data set: class = sign pattern of two pixels.
dlcore::TensorDataset blobs(int64_t n, const torch::Device& device) {
  auto gen = at::detail::createCPUGenerator(5);
  torch::Tensor x = torch::randn({n, 1, 28, 28}, gen);
  torch::Tensor y = (x.select(2, 3).select(2, 3).gt(0).to(torch::kLong) +
                     2 * x.select(2, 20).select(2, 20).gt(0).to(torch::kLong))
                        .view({n});
  return {x.to(device), y.to(device)};
}

} // namespace

TEST_CASE("train_epoch and evaluate train LeNet5 on a CUDA device", "[cuda]") {
  if (!have_cuda()) {
    return;
  }
  const torch::Device cuda(torch::kCUDA);
  torch::manual_seed(3);
  dlcore::LeNet5 net(4);
  net->to(cuda);
  torch::optim::SGD sgd(
      net->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  // Batches on the CPU moved per batch by TrainOptions::device ...
  dlcore::Batches host(blobs(512, torch::kCPU), dlcore::BatchesOptions(64));
  const auto first = dlcore::train_epoch(
      net, host, sgd, dlcore::TrainOptions().epoch(0).device(cuda));
  // ... and batches resident on the GPU.
  dlcore::Batches resident(blobs(512, cuda), dlcore::BatchesOptions(64));
  dlcore::EpochMetrics last;
  for (int64_t e = 1; e < 6; ++e) {
    last = dlcore::train_epoch(
        net, resident, sgd, dlcore::TrainOptions().epoch(e));
  }
  const auto val = dlcore::evaluate(net, resident);
  CHECK(std::isfinite(first.loss));
  CHECK(last.loss < first.loss);
  CHECK(val.accuracy > 0.5);
  for (const auto& p : net->parameters()) {
    CHECK(p.device().is_cuda());
  }
}

TEST_CASE(
    "The LR range test restores a CUDA model and its optimizer exactly",
    "[cuda]") {
  if (!have_cuda()) {
    return;
  }
  const torch::Device cuda(torch::kCUDA);
  torch::manual_seed(4);
  dlcore::LeNet5 net(4);
  net->to(cuda);
  torch::optim::SGD sgd(
      net->parameters(), torch::optim::SGDOptions(1e-3).momentum(0.9));
  dlcore::Batches batches(blobs(256, cuda), dlcore::BatchesOptions(32));
  // One real step first, so that momentum buffers exist on the GPU.
  dlcore::train_epoch(net, batches, sgd, dlcore::TrainOptions().epoch(0));
  std::vector<torch::Tensor> before;
  for (const auto& p : net->parameters()) {
    before.push_back(p.detach().clone());
  }
  dlcore::LRFinder finder(net, sgd, dlcore::LRFinderOptions().num_iter(20));
  const auto r = finder.range_test(batches);
  CHECK(r.iterations() > 0);
  const auto after = net->parameters();
  REQUIRE(after.size() == before.size());
  for (std::size_t i = 0; i < before.size(); ++i) {
    CHECK(after[i].device().is_cuda());
    CHECK(torch::equal(after[i], before[i]));
  }
  CHECK(sgd.param_groups()[0].options().get_lr() == 1e-3);
}

TEST_CASE(
    "The selector gives the same result for CUDA scores as for CPU scores",
    "[cuda]") {
  if (!have_cuda()) {
    return;
  }
  auto gen = at::detail::createCPUGenerator(6);
  const torch::Tensor scores = torch::rand({2000, 10}, gen).softmax(1);
  dlcore::TopKTopPSelector cpu({10, 50, 2});
  dlcore::TopKTopPSelector gpu({10, 50, 2});
  cpu.ingest(scores, 0);
  gpu.ingest(scores.to(torch::kCUDA), 0);
  const auto a = cpu.result();
  const auto b = gpu.result();
  CHECK(torch::equal(a.indices, b.indices.cpu()));
  CHECK(torch::equal(a.labels, b.labels.cpu()));
  CHECK(torch::equal(a.scores, b.scores.cpu()));
}

TEST_CASE(
    "The resampler and label noise take CUDA labels and draw as on the CPU",
    "[cuda]") {
  if (!have_cuda()) {
    return;
  }
  auto gen = at::detail::createCPUGenerator(7);
  const torch::Tensor labels = torch::randint(0, 12, {3000}, gen);
  dlcore::HashtagResampler cpu(
      labels, dlcore::HashtagResamplerOptions().seed(9));
  dlcore::HashtagResampler gpu(
      labels.to(torch::kCUDA), dlcore::HashtagResamplerOptions().seed(9));
  CHECK(torch::equal(cpu.epoch_indices(0), gpu.epoch_indices(0)));
  const auto tags = dlcore::TagLists::from_labels(labels.to(torch::kCUDA));
  dlcore::HashtagResampler from_tags(
      tags, dlcore::HashtagResamplerOptions().seed(9));
  CHECK(torch::equal(from_tags.epoch_indices(0), cpu.epoch_indices(0)));

  const dlcore::LabelNoiseOptions noise(dlcore::NoiseMode::kSymmetric, 0.3);
  const auto on_cpu = dlcore::inject_label_noise(labels, noise);
  const auto on_gpu =
      dlcore::inject_label_noise(labels.to(torch::kCUDA), noise);
  CHECK(on_gpu.labels.device().is_cuda());
  CHECK(torch::equal(on_cpu.labels, on_gpu.labels.cpu()));
  CHECK(torch::equal(on_cpu.changed, on_gpu.changed.cpu()));
}

TEST_CASE(
    "Freezing, batch-norm policies and a new head work on a CUDA model",
    "[cuda]") {
  if (!have_cuda()) {
    return;
  }
  const torch::Device cuda(torch::kCUDA);
  torch::manual_seed(8);
  auto net = dlcore::ResNetCifar(dlcore::ResNetCifarOptions::depth(20));
  net->to(cuda);
  const int64_t frozen = dlcore::freeze(*net);
  CHECK(frozen > 0);
  CHECK(dlcore::parameter_counts(*net).trainable == 0);
  CHECK(
      dlcore::set_batchnorm_policy(*net, dlcore::BatchNormPolicy::kFrozen) > 0);
  auto head = dlcore::replace_linear_head(*net, "fc", 7, /*seed=*/1);
  CHECK(head->weight.device().is_cuda());
  CHECK(head->weight.requires_grad());
  net->train();
  const torch::Tensor out =
      net->forward(torch::randn({4, 3, 32, 32}, torch::Device(torch::kCUDA)));
  CHECK(out.sizes() == torch::IntArrayRef({4, 7}));
  CHECK(out.device().is_cuda());
  for (const auto& b : net->buffers()) {
    CHECK(b.device().is_cuda());
  }
}
