#include <dlcore/nn/models/resnet_cifar.h>

#include "golden/resnet_cifar.h"

#include <map>

namespace {

int64_t count(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) {
    n += p.numel();
  }
  return n;
}

} // namespace

TEST_CASE(
    "CIFAR ResNets have the parameter counts of PyTorch references",
    "[resnet_cifar]") {
  namespace g = golden_resnet_cifar;
  CHECK(count(*dlcore::resnet20_cifar()) == g::kResNet20AParams3x10);
  CHECK(count(*dlcore::resnet20_cifar(5, 1)) == g::kResNet20AParams1x5);
  CHECK(count(*dlcore::resnet32_cifar()) == g::kResNet32AParams3x10);
  CHECK(count(*dlcore::resnet56_cifar()) == g::kResNet56AParams3x10);
  CHECK(
      count(*dlcore::ResNetCifar(dlcore::ResNetCifarOptions::depth(8))) ==
      g::kResNet8AParams3x10);
  CHECK(count(*dlcore::resnet18_cifar()) == g::kResNet18SmallParams3x10);
  CHECK(count(*dlcore::resnet18_cifar(5, 1)) == g::kResNet18SmallParams1x5);
}

TEST_CASE(
    "CIFAR ResNet-18 has torchvision's state names and shapes",
    "[resnet_cifar]") {
  auto net = dlcore::resnet18_cifar();
  std::map<std::string, std::vector<int64_t>> ours;
  for (const auto& p : net->named_parameters()) {
    ours[p.key()] = p.value().sizes().vec();
  }
  for (const auto& b : net->named_buffers()) {
    ours[b.key()] = b.value().sizes().vec();
  }
  std::map<std::string, std::vector<int64_t>> theirs;
  std::vector<std::string> their_param_order;
  for (const auto& e : golden_resnet_cifar::resnet18_small_state()) {
    theirs[e.name] = e.shape;
    if (ours.count(e.name) && net->named_parameters().contains(e.name)) {
      their_param_order.emplace_back(e.name);
    }
  }
  CHECK(ours == theirs);
  std::vector<std::string> our_param_order;
  for (const auto& p : net->named_parameters()) {
    our_param_order.push_back(p.key());
  }
  CHECK(our_param_order == their_param_order);
}

TEST_CASE(
    "CIFAR ResNets map images to logits and pooled features",
    "[resnet_cifar]") {
  auto net = dlcore::resnet20_cifar(5, 1);
  net->eval();
  const auto x = torch::randn({3, 1, 28, 28});
  CHECK(net(x).sizes() == torch::IntArrayRef{3, 5});
  CHECK(net->features(x).sizes() == torch::IntArrayRef{3, 64});
  CHECK(net->feature_dim() == 64);
  auto r18 = dlcore::resnet18_cifar(100);
  r18->eval();
  CHECK(
      r18(torch::randn({1, 3, 32, 32})).sizes() == torch::IntArrayRef{1, 100});
  CHECK(r18->feature_dim() == 512);
  // Edge: batch of one in train mode with spatial size > 1 still works.
  net->train();
  CHECK(net(torch::randn({1, 1, 8, 8})).sizes() == torch::IntArrayRef{1, 5});
  CHECK_THROWS_WITH(
      net(torch::randn({2, 3, 28, 28})),
      Catch::Contains("expected input [N, 1, H, W], but got [2, 3, 28, 28]"));
}

TEST_CASE(
    "option A shortcuts are parameter-free zero-padded identities",
    "[resnet_cifar]") {
  dlcore::ResNetCifarBlock block(2, 4, 2, dlcore::ResNetShortcut::kA);
  block->eval();
  {
    torch::NoGradGuard g;
    // Zero the residual branch: the output is relu(shortcut(x)).
    block->named_parameters()["bn2.weight"].zero_();
  }
  const auto x = torch::rand({1, 2, 4, 4});
  const auto y = block(x);
  CHECK(y.sizes() == torch::IntArrayRef{1, 4, 2, 2});
  using torch::indexing::Slice;
  CHECK(torch::equal(
      y.index({Slice(), Slice(0, 2)}),
      x.index({Slice(), Slice(), Slice(0, 4, 2), Slice(0, 4, 2)})));
  CHECK(torch::equal(
      y.index({Slice(), Slice(2, 4)}), torch::zeros({1, 2, 2, 2})));
  CHECK_FALSE(block->named_children().contains("downsample"));
  dlcore::ResNetCifarBlock b_block(2, 4, 2, dlcore::ResNetShortcut::kB);
  CHECK(b_block->named_parameters().contains("downsample.0.weight"));
  CHECK(b_block->named_parameters().contains("downsample.1.weight"));
}

TEST_CASE("CIFAR ResNet options are validated", "[resnet_cifar]") {
  CHECK_THROWS_WITH(
      dlcore::ResNetCifarOptions::depth(21),
      Catch::Contains("depth of the form 6n + 2 with n >= 1") &&
          Catch::Contains("but got 21"));
  CHECK_THROWS_WITH(
      dlcore::ResNetCifar(dlcore::ResNetCifarOptions().widths({16, 32})),
      Catch::Contains("got 3 stages and 2 widths"));
  CHECK_THROWS_WITH(
      dlcore::ResNetCifar(dlcore::ResNetCifarOptions().num_classes(0)),
      Catch::Contains("num_classes >= 1, but got 0"));
  CHECK_THROWS_WITH(
      dlcore::ResNetCifar(dlcore::ResNetCifarOptions().in_channels(0)),
      Catch::Contains("in_channels >= 1, but got 0"));
  CHECK_THROWS_WITH(
      dlcore::ResNetCifar(dlcore::ResNetCifarOptions().widths({32, 16, 8})),
      Catch::Contains("non-decreasing widths, but got [32, 16, 8]"));
  CHECK_THROWS_WITH(
      dlcore::ResNetCifar(dlcore::ResNetCifarOptions().blocks({3, 0, 3})),
      Catch::Contains("stage 1 has 0 blocks"));
}

TEST_CASE(
    "CIFAR ResNet initialization is deterministic under its seed",
    "[resnet_cifar]") {
  torch::manual_seed(1);
  auto a = dlcore::ResNetCifar(dlcore::ResNetCifarOptions::depth(8).seed(3));
  torch::manual_seed(2);
  auto b = dlcore::ResNetCifar(dlcore::ResNetCifarOptions::depth(8).seed(3));
  auto c = dlcore::ResNetCifar(dlcore::ResNetCifarOptions::depth(8).seed(4));
  const auto pa = a->parameters();
  const auto pb = b->parameters();
  const auto pc = c->parameters();
  bool all_equal = true;
  bool any_diff = false;
  for (std::size_t i = 0; i < pa.size(); ++i) {
    all_equal = all_equal && torch::equal(pa[i], pb[i]);
    any_diff = any_diff || !torch::equal(pa[i], pc[i]);
  }
  CHECK(all_equal);
  CHECK(any_diff);
  // Kaiming fan_out std for layer1's 3x3x16 convolutions: sqrt(2 / 144).
  const auto w = a->named_parameters()["layer1.0.conv1.weight"];
  CHECK(w.std().item<double>() == Approx(std::sqrt(2.0 / 144.0)).epsilon(0.1));
}

TEST_CASE(
    "CIFAR ResNet works with head replacement, layer groups and frozen "
    "batch norm",
    "[resnet_cifar]") {
  auto net = dlcore::resnet20_cifar(10, 1);
  const auto groups = net->layer_groups();
  REQUIRE(groups.size() == 5); // stem, 3 stages, fc
  CHECK(groups[0].size() == 3);
  CHECK(groups[4].size() == 2);

  dlcore::replace_linear_head(*net, "fc", 5, /*seed=*/0);
  CHECK(net(torch::randn({2, 1, 28, 28})).sizes() == torch::IntArrayRef{2, 5});
  CHECK(dlcore::convert_frozen_batchnorm(*net) == 19);
  // Layer groups still cover the stem without bn1's parameters.
  CHECK(net->layer_groups().size() == 5);
  CHECK(net->layer_groups()[0].size() == 1);
  dlcore::freeze(*net);
  dlcore::unfreeze(*net, "fc");
  CHECK(dlcore::parameter_counts(*net).trainable == 64 * 5 + 5);

  // A few SGD steps in train mode change the head only; statistics stay.
  const auto buffers_before =
      net->named_buffers()["layer2.0.bn1.running_mean"].clone();
  const auto conv_before =
      net->named_parameters()["layer3.2.conv2.weight"].clone();
  torch::optim::SGD sgd(
      net->parameters(),
      torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(5e-4));
  net->train();
  const auto x = torch::randn({8, 1, 28, 28});
  const auto y = torch::arange(8) % 5;
  for (int i = 0; i < 3; ++i) {
    sgd.zero_grad();
    torch::nn::functional::cross_entropy(net(x), y).backward();
    sgd.step();
  }
  CHECK(torch::equal(
      net->named_buffers()["layer2.0.bn1.running_mean"], buffers_before));
  CHECK(torch::equal(
      net->named_parameters()["layer3.2.conv2.weight"], conv_before));

  auto r18 = dlcore::resnet18_cifar(10, 3);
  CHECK(dlcore::convert_frozen_batchnorm(*r18) == 20); // 17 + 3 downsample
  CHECK(dlcore::convert_to_batchnorm(*r18) == 20);
}

namespace {

std::vector<int64_t> with_batch(std::vector<int64_t> shape, int64_t batch) {
  shape.insert(shape.begin(), batch);
  return shape;
}

/// summary(net) on the golden table's input equals PyTorch's forward hooks
/// (every Conv2d, BatchNorm2d and Linear call: name, type, output shape,
/// own parameters, MACs), a brute-force parameter count, and
/// analyze_layers(resnet_cifar_layers(options)) row by row (every leaf row,
/// functional steps included: name, output shape, parameters, MACs), and the
/// forward memory of both.
void check_traced(
    const dlcore::ResNetCifar& net,
    const golden_resnet_cifar::LayerTable& gold) {
  const auto s = dlcore::summary(net, gold.input);
  REQUIRE(s.traced);
  CHECK(s.output_shape == gold.output);
  CHECK(s.total_params == gold.params);
  CHECK(s.total_params == count(*net));
  CHECK(s.total_macs == gold.macs);
  const auto leaves = s.module_leaves();
  REQUIRE(leaves.size() == gold.rows.size());
  for (std::size_t i = 0; i < leaves.size(); ++i) {
    const auto& want = gold.rows[i];
    INFO("module " << i << " " << want.name);
    CHECK(leaves[i].name == want.name);
    CHECK(leaves[i].type == want.type);
    CHECK(leaves[i].output_shape == want.shape);
    CHECK(leaves[i].params == want.params);
    CHECK(leaves[i].macs == want.macs);
  }

  const int64_t batch = gold.input[0];
  const std::vector<int64_t> per_sample(
      gold.input.begin() + 1, gold.input.end());
  const auto layers = dlcore::resnet_cifar_layers(net->options);
  const auto a = dlcore::analyze_layers(
      layers, per_sample, dlcore::LayerMathOptions().batch_size(batch));
  std::vector<const dlcore::SummaryRow*> rows;
  for (const auto& r : s.rows) {
    if (r.is_leaf) {
      rows.push_back(&r);
    }
  }
  REQUIRE(rows.size() == a.layers.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    INFO("row " << i << " " << a.layers[i].name);
    CHECK(rows[i]->name == a.layers[i].name);
    CHECK(rows[i]->output_shape == with_batch(a.layers[i].output_shape, batch));
    CHECK(rows[i]->params == a.layers[i].params);
    CHECK(rows[i]->macs == a.layers[i].macs);
  }
  CHECK(a.params == gold.params);
  CHECK(a.macs == gold.macs);
  CHECK(with_batch(a.output_shape, batch) == gold.output);
  const auto no_input = dlcore::analyze_layers(
      layers,
      per_sample,
      dlcore::LayerMathOptions().batch_size(batch).count_input(false));
  CHECK(s.forward_bytes == no_input.forward_bytes);
}

} // namespace

TEST_CASE(
    "CIFAR ResNets are traced: summary equals PyTorch's layers and "
    "resnet_cifar_layers row by row",
    "[resnet_cifar]") {
  namespace g = golden_resnet_cifar;
  SECTION("ResNet-20, option A, 3x32x32") {
    check_traced(dlcore::resnet20_cifar(), g::resnet20_a_3x10_32());
  }
  SECTION("ResNet-20, option A, batch 2 of 1x28x28, 5 classes") {
    check_traced(dlcore::resnet20_cifar(5, 1), g::resnet20_a_1x5_28());
  }
  SECTION("ResNet-18, option B, 3x32x32") {
    check_traced(dlcore::resnet18_cifar(), g::resnet18_small_3x10_32());
  }
  SECTION("option-A shortcuts and blocks appear as rows") {
    const auto s = dlcore::summary(dlcore::resnet20_cifar(), {1, 3, 32, 32});
    std::map<std::string, const dlcore::SummaryRow*> by_name;
    for (const auto& r : s.rows) {
      by_name[r.name] = &r;
    }
    REQUIRE(by_name.count("layer2.0.shortcut"));
    CHECK(
        by_name["layer2.0.shortcut"]->output_shape ==
        std::vector<int64_t>{1, 32, 16, 16});
    CHECK_FALSE(by_name.count("layer1.0.shortcut")); // identity: no step
    REQUIRE(by_name.count("layer3"));
    CHECK(by_name["layer3"]->type == "ModuleList");
    CHECK_FALSE(by_name["layer3"]->is_leaf);
    CHECK(by_name["layer3.2"]->type == "ResNetCifarBlock");
    CHECK(by_name["flatten"]->output_shape == std::vector<int64_t>{1, 64});
  }
}

TEST_CASE(
    "a CIFAR ResNet's trace follows replaced layers and leaves forward alone",
    "[resnet_cifar]") {
  auto net = dlcore::resnet20_cifar(10, 1);
  net->eval();
  const auto x = torch::randn({2, 1, 28, 28});
  {
    torch::NoGradGuard no_grad;
    dlcore::SummaryTracer off;
    CHECK(net->trace_forward(x, off).equal(net->forward(x)));
    CHECK(net->features(x).sizes() == torch::IntArrayRef{2, 64});
  }
  const auto before = dlcore::summary(net, {1, 1, 28, 28});
  dlcore::replace_linear_head(net, "fc", 4, /*seed=*/0);
  CHECK(dlcore::convert_frozen_batchnorm(net) == 19);
  const auto after = dlcore::summary(net, {1, 1, 28, 28});
  CHECK(after.traced);
  CHECK(after.output_shape == std::vector<int64_t>{1, 4});
  // Frozen batch norms hold buffers, not parameters: 19 x 2C fewer.
  int64_t bn_params = 0;
  for (const auto& r : before.module_leaves()) {
    if (r.type == "BatchNorm2d") {
      bn_params += r.params;
    }
  }
  CHECK(after.total_params == before.total_params - bn_params - 6 * 64 - 6);
  int64_t frozen_rows = 0;
  for (const auto& r : after.module_leaves()) {
    frozen_rows += r.type == "FrozenBatchNorm2d";
  }
  CHECK(frozen_rows == 19);
  CHECK(after.total_macs == before.total_macs - 6 * 64);
}
