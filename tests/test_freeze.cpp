#include <dlcore/nn/batch_norm_policy.h>
#include <dlcore/nn/forward_child.h>
#include <dlcore/nn/freeze.h>
#include <dlcore/nn/heads.h>
#include <dlcore/optim/gradual_unfreezing.h>
#include <dlcore/optim/param_groups.h>

#include <random>
#include <sstream>

namespace {

// A small conv net whose forward reaches its layers through the registry, so
// batch-norm conversion and head replacement take effect.
struct TinyNetImpl : torch::nn::Module {
  TinyNetImpl() {
    torch::manual_seed(0);
    register_module(
        "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3)));
    register_module("bn", torch::nn::BatchNorm2d(4));
    register_module(
        "block",
        torch::nn::Sequential(
            torch::nn::Linear(4, 4),
            torch::nn::ReLU(),
            torch::nn::Linear(4, 4)));
    register_module("fc", torch::nn::Linear(4, 3));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = dlcore::forward_child(*this, "conv", x);
    x = dlcore::forward_child(*this, "bn", x);
    x = torch::relu(x).mean({2, 3});
    x = dlcore::forward_child(*this, "block", x);
    return dlcore::forward_child(*this, "fc", x);
  }
};
TORCH_MODULE(TinyNet);

torch::Tensor batch() {
  return torch::randn(
      {8, 1, 6, 6}, at::detail::createCPUGenerator(7), torch::kFloat);
}

void train_steps(TinyNet& net, torch::optim::Optimizer& opt, int steps) {
  const auto x = batch();
  const auto y = torch::arange(8) % 3;
  for (int i = 0; i < steps; ++i) {
    opt.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(net->forward(x), y);
    loss.backward();
    opt.step();
  }
}

bool same_impl(const torch::Tensor& a, const torch::Tensor& b) {
  return a.unsafeGetTensorImpl() == b.unsafeGetTensorImpl();
}

} // namespace

TEST_CASE(
    "freeze and unfreeze a whole module count changed tensors", "[freeze]") {
  TinyNet net;
  const auto n = static_cast<int64_t>(net->parameters().size());
  CHECK(dlcore::freeze(*net) == n);
  CHECK(dlcore::freeze(*net) == 0);
  CHECK(dlcore::parameter_counts(*net).trainable == 0);
  CHECK(dlcore::unfreeze(*net->named_children()["fc"]) == 2);
  const auto counts = dlcore::parameter_counts(*net);
  CHECK(counts.trainable == 4 * 3 + 3);
  CHECK(counts.trainable_tensors == 2);
  CHECK(counts.frozen_tensors == n - 2);
  CHECK(counts.total() == counts.trainable + counts.frozen);
  CHECK(dlcore::unfreeze(*net) == n - 2);
}

TEST_CASE(
    "frozen parameters stay bitwise unchanged under SGD with momentum and "
    "weight decay",
    "[freeze]") {
  TinyNet net;
  dlcore::freeze(*net);
  dlcore::unfreeze(*net, "fc");
  const auto conv_before = net->named_parameters()["conv.weight"].clone();
  const auto fc_before = net->named_parameters()["fc.weight"].clone();
  torch::optim::SGD sgd(
      net->parameters(),
      torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(5e-4));
  train_steps(net, sgd, 5);
  CHECK(torch::equal(net->named_parameters()["conv.weight"], conv_before));
  CHECK_FALSE(net->named_parameters()["conv.weight"].grad().defined());
  CHECK_FALSE(torch::equal(net->named_parameters()["fc.weight"], fc_before));
}

TEST_CASE("prefix selection matches whole name components", "[freeze]") {
  dlcore::ParamSelector p("block");
  CHECK(p.matches("block.0.weight"));
  CHECK(p.matches("block"));
  CHECK_FALSE(p.matches("blocks.0.weight"));
  CHECK_FALSE(p.matches("xblock.0.weight"));
  CHECK(dlcore::ParamSelector("").matches("anything"));
  CHECK(dlcore::ParamSelector("blo.").matches("blo.x"));
  TinyNet net;
  CHECK(dlcore::freeze(*net, "block") == 4);
  CHECK(dlcore::freeze(*net, "block.0") == 0);
  CHECK(dlcore::unfreeze(*net, "block.2") == 2);
}

TEST_CASE(
    "regex selection finds the pattern anywhere in the name", "[freeze]") {
  TinyNet net;
  CHECK(dlcore::freeze(*net, dlcore::ParamSelector::regex("bias$")) == 5);
  for (const auto& p : net->named_parameters()) {
    CHECK(
        p.value().requires_grad() !=
        (p.key().find("bias") != std::string::npos));
  }
  CHECK(
      dlcore::freeze(*net, dlcore::ParamSelector::regex("^(conv|bn)\\.")) == 2);
}

TEST_CASE("selectors that match nothing are errors naming them", "[freeze]") {
  TinyNet net;
  try {
    dlcore::freeze(*net, "layer9");
    FAIL("no error");
  } catch (const c10::Error& e) {
    CHECK_THAT(
        e.what_without_backtrace(),
        Catch::Contains("prefix 'layer9'") && Catch::Contains("matches none") &&
            Catch::Contains("conv.weight"));
  }
  try {
    dlcore::unfreeze(*net, dlcore::ParamSelector::regex("^zz"));
    FAIL("no error");
  } catch (const c10::Error& e) {
    CHECK_THAT(e.what_without_backtrace(), Catch::Contains("regex '^zz'"));
  }
  try {
    dlcore::ParamSelector::regex("(");
    FAIL("no error");
  } catch (const c10::Error& e) {
    CHECK_THAT(
        e.what_without_backtrace(),
        Catch::Contains("expected a valid ECMAScript regex, but got '('"));
  }
}

TEST_CASE(
    "freeze_to follows fastai's convention, negative n included", "[freeze]") {
  TinyNet net;
  auto groups = dlcore::layer_groups(*net, {"conv", "bn", "block", "fc"});
  REQUIRE(groups.size() == 4);
  auto trainable = [&] {
    std::vector<bool> out;
    for (const auto& g : groups) {
      out.push_back(g.front().requires_grad());
    }
    return out;
  };
  CHECK(dlcore::freeze_to(groups, -1) == 8);
  CHECK(trainable() == std::vector<bool>{false, false, false, true});
  CHECK(dlcore::freeze_to(groups, 2) == 4);
  CHECK(trainable() == std::vector<bool>{false, false, true, true});
  dlcore::freeze_to(groups, 0);
  CHECK(trainable() == std::vector<bool>{true, true, true, true});
  dlcore::freeze_to(groups, 4);
  CHECK(trainable() == std::vector<bool>{false, false, false, false});
  dlcore::freeze_to(groups, -4);
  CHECK(trainable() == std::vector<bool>{true, true, true, true});
  try {
    dlcore::freeze_to(groups, 5);
    FAIL("no error");
  } catch (const c10::Error& e) {
    CHECK_THAT(
        e.what_without_backtrace(),
        Catch::Contains("expected n in [-4, 4] for 4 layer groups, but got 5"));
  }
  CHECK_THROWS(dlcore::freeze_to(groups, -5));
}

TEST_CASE(
    "layer_groups rejects empty groups and unassigned parameters", "[freeze]") {
  TinyNet net;
  CHECK_THROWS_WITH(
      dlcore::layer_groups(*net, {"conv", "nothing"}),
      Catch::Contains("group 1 (prefix 'nothing')"));
  CHECK_THROWS_WITH(
      dlcore::layer_groups(*net, {"conv", "fc"}),
      Catch::Contains("6 are in none (bn.weight, bn.bias, block.0.weight"));
  CHECK(dlcore::layer_groups(*net, {"conv", "fc"}, true).size() == 2);
  // First selector wins.
  auto g = dlcore::layer_groups(*net, {"block.0", "block", ""});
  CHECK(g[0].size() == 2);
  CHECK(g[1].size() == 2);
  CHECK(g[2].size() == 6);
  auto by_module = dlcore::layer_groups(
      {net->named_children()["conv"], net->named_children()["fc"]});
  CHECK(same_impl(by_module[1][0], net->named_parameters()["fc.weight"]));
}

TEST_CASE("discriminative learning rates form a geometric ladder", "[freeze]") {
  const auto lrs = dlcore::discriminative_lrs(3, 1e-3, 1e-1);
  REQUIRE(lrs.size() == 3);
  CHECK(lrs[0] == Approx(1e-3).epsilon(1e-12));
  CHECK(lrs[1] == Approx(1e-2).epsilon(1e-12));
  CHECK(lrs[2] == 1e-1);
  CHECK(dlcore::discriminative_lrs(1, 1e-3, 1e-1) == std::vector<double>{0.1});
  CHECK_THROWS_WITH(
      dlcore::discriminative_lrs(2, 0.1, 0.01),
      Catch::Contains("expected 0 < lr_low <= lr_high"));
  CHECK_THROWS_WITH(
      dlcore::discriminative_lrs(0, 0.1, 0.1),
      Catch::Contains("expected num_groups > 0, but got 0"));

  TinyNet net;
  auto groups = dlcore::layer_groups(*net, {"conv", "bn", "block", "fc"});
  const auto base =
      torch::optim::SGDOptions(1.0).momentum(0.9).weight_decay(5e-4);
  torch::optim::SGD sgd(
      dlcore::discriminative_param_groups(groups, 1e-4, 1e-1, base), base);
  REQUIRE(sgd.param_groups().size() == 4);
  for (std::size_t g = 0; g < 4; ++g) {
    const auto& o = static_cast<const torch::optim::SGDOptions&>(
        sgd.param_groups()[g].options());
    CHECK(o.lr() == Approx(1e-4 * std::pow(10.0, static_cast<double>(g))));
    CHECK(o.momentum() == 0.9);
    CHECK(o.weight_decay() == 5e-4);
  }
  train_steps(net, sgd, 2); // runs
}

TEST_CASE(
    "add_trainable_param_group adds exactly the newly trainable tensors by "
    "identity, even when values are equal",
    "[freeze]") {
  // Duplicate values everywhere: zero-initialized.
  torch::nn::Sequential model(
      torch::nn::Linear(3, 3),
      torch::nn::Linear(3, 3),
      torch::nn::Linear(3, 3));
  {
    torch::NoGradGuard g;
    for (auto& p : model->parameters()) {
      p.zero_();
    }
  }
  dlcore::freeze(*model);
  dlcore::unfreeze(*model, "2");
  torch::optim::SGD sgd(
      dlcore::select_parameters(*model, "2"),
      torch::optim::SGDOptions(0.1).momentum(0.9));
  CHECK(dlcore::add_trainable_param_group(sgd, model->parameters()) == 0);
  CHECK(sgd.param_groups().size() == 1);

  dlcore::unfreeze(*model, "1");
  CHECK(dlcore::add_trainable_param_group(sgd, model->parameters(), 0.01) == 2);
  REQUIRE(sgd.param_groups().size() == 2);
  const auto& added = sgd.param_groups()[1];
  CHECK(same_impl(added.params()[0], model->named_parameters()["1.weight"]));
  CHECK(same_impl(added.params()[1], model->named_parameters()["1.bias"]));
  CHECK(added.options().get_lr() == 0.01);
  CHECK(
      static_cast<const torch::optim::SGDOptions&>(added.options())
          .momentum() == 0.9);
  // Nothing twice.
  CHECK(dlcore::add_trainable_param_group(sgd, model->parameters()) == 0);
  dlcore::unfreeze(*model);
  CHECK(dlcore::add_trainable_param_group(sgd, model->parameters()) == 2);
  REQUIRE(sgd.param_groups().size() == 3);
  CHECK(same_impl(
      sgd.param_groups()[2].params()[0],
      model->named_parameters()["0.weight"]));
  CHECK(sgd.param_groups()[2].options().get_lr() == 0.1);
}

TEST_CASE(
    "gradual unfreezing opens one group per epoch from the head", "[freeze]") {
  TinyNet net;
  auto groups = dlcore::layer_groups(*net, {"conv", "bn", "block", "fc"});
  dlcore::GradualUnfreezing schedule(groups, {});
  CHECK(schedule.trainable_groups(0) == 1);
  CHECK(schedule.trainable_groups(1) == 2);
  CHECK(schedule.trainable_groups(3) == 4);
  CHECK(schedule.trainable_groups(10) == 4);
  CHECK(schedule.unfreeze_epoch(3) == 0);
  CHECK(schedule.unfreeze_epoch(2) == 1);
  CHECK(schedule.unfreeze_epoch(0) == 3);

  auto fresh = schedule.apply(0);
  CHECK(fresh.empty()); // fc was trainable already
  CHECK(dlcore::parameter_counts(*net).trainable_tensors == 2);
  torch::optim::SGD sgd(groups.back(), torch::optim::SGDOptions(0.1));
  fresh = schedule.apply(1);
  REQUIRE(fresh.size() == 4);
  CHECK(same_impl(fresh[0], net->named_parameters()["block.0.weight"]));
  CHECK(dlcore::add_trainable_param_group(sgd, fresh) == 4);
  CHECK(schedule.apply(1).empty());
  // Resuming at an earlier epoch restores that epoch's state.
  schedule.apply(0);
  CHECK(dlcore::parameter_counts(*net).trainable_tensors == 2);

  dlcore::GradualUnfreezing slow(
      groups,
      dlcore::GradualUnfreezingOptions()
          .start_epoch(2)
          .epochs_per_group(3)
          .initially_trainable(2));
  CHECK(slow.trainable_groups(1) == 2);
  CHECK(slow.trainable_groups(2) == 3);
  CHECK(slow.trainable_groups(4) == 3);
  CHECK(slow.trainable_groups(5) == 4);
  CHECK(slow.unfreeze_epoch(0) == 5);
  for (int64_t g = 0; g < 4; ++g) {
    // Property: a group is trainable exactly from its unfreeze epoch on.
    for (int64_t e = 0; e < 10; ++e) {
      const bool trainable = g >= 4 - slow.trainable_groups(e);
      CHECK(trainable == (e >= slow.unfreeze_epoch(g)));
    }
  }
  CHECK_THROWS_WITH(
      dlcore::GradualUnfreezing(
          groups, dlcore::GradualUnfreezingOptions().epochs_per_group(0)),
      Catch::Contains("expected epochs_per_group >= 1, but got 0"));
  CHECK_THROWS_WITH(
      dlcore::GradualUnfreezing({}, {}),
      Catch::Contains("at least one layer group"));
}

TEST_CASE("FrozenBatchNorm2d matches BatchNorm2d in eval mode", "[freeze]") {
  torch::manual_seed(3);
  torch::nn::BatchNorm2d bn(5);
  {
    torch::NoGradGuard g;
    bn->weight.uniform_(0.5, 1.5);
    bn->bias.uniform_(-1, 1);
    bn->running_mean.uniform_(-1, 1);
    bn->running_var.uniform_(0.5, 2);
  }
  bn->eval();
  dlcore::FrozenBatchNorm2d frozen(*bn);
  const auto x = torch::randn({4, 5, 3, 3});
  frozen->train();
  CHECK(torch::allclose(frozen(x), bn(x), 1e-5, 1e-6));
  CHECK(frozen->parameters().empty());
  CHECK(frozen->buffers().size() == 5);
  std::ostringstream s;
  frozen->pretty_print(s);
  CHECK(s.str() == "dlcore::FrozenBatchNorm2d(5, eps=1e-05)");
  CHECK_THROWS_WITH(
      frozen(torch::randn({2, 4, 3, 3})),
      Catch::Contains("expected input [N, 5, H, W], but got [2, 4, 3, 3]"));
  CHECK_THROWS_WITH(
      dlcore::FrozenBatchNorm2d(0),
      Catch::Contains("num_features > 0, but got 0"));
  torch::nn::BatchNorm2d untracked(
      torch::nn::BatchNormOptions(3).track_running_stats(false));
  CHECK_THROWS_WITH(
      dlcore::FrozenBatchNorm2d(*untracked),
      Catch::Contains("track_running_stats = false"));
  // Clone keeps the values.
  auto copy =
      std::dynamic_pointer_cast<dlcore::FrozenBatchNorm2dImpl>(frozen->clone());
  REQUIRE(copy);
  CHECK(torch::equal(copy->running_var, frozen->running_var));
}

TEST_CASE(
    "batch-norm running statistics under each policy after train()",
    "[freeze]") {
  for (auto policy :
       {dlcore::BatchNormPolicy::kTrain,
        dlcore::BatchNormPolicy::kEvalSticky,
        dlcore::BatchNormPolicy::kFrozen}) {
    TinyNet net;
    dlcore::set_batchnorm_policy(*net, policy);
    net->train();
    torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.1));
    const auto before = net->named_buffers()["bn.running_mean"].clone();
    const auto bn_weight = net->named_buffers().contains("bn.weight")
                               ? net->named_buffers()["bn.weight"].clone()
                               : net->named_parameters()["bn.weight"].clone();
    train_steps(net, sgd, 3);
    const auto after = net->named_buffers()["bn.running_mean"];
    if (policy == dlcore::BatchNormPolicy::kTrain) {
      CHECK_FALSE(torch::equal(after, before));
    } else {
      CHECK(torch::equal(after, before));
    }
    if (policy == dlcore::BatchNormPolicy::kFrozen) {
      CHECK(torch::equal(net->named_buffers()["bn.weight"], bn_weight));
      CHECK_FALSE(net->named_parameters().contains("bn.weight"));
    }
    if (policy == dlcore::BatchNormPolicy::kEvalSticky) {
      // The affine transform still trains.
      CHECK_FALSE(
          torch::equal(net->named_parameters()["bn.weight"], bn_weight));
    }
  }
}

TEST_CASE(
    "batch-norm conversions round-trip values and keep the forward",
    "[freeze]") {
  TinyNet net;
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.1));
  net->train();
  train_steps(net, sgd, 2); // non-trivial running statistics
  net->eval();
  const auto x = batch();
  const auto reference = net->forward(x);
  const auto stats = net->named_buffers()["bn.running_var"].clone();

  CHECK(dlcore::convert_frozen_batchnorm(*net) == 1);
  CHECK(dlcore::convert_frozen_batchnorm(*net) == 0);
  CHECK(net->named_children()["bn"]->name() == "dlcore::FrozenBatchNorm2dImpl");
  net->train();
  CHECK(torch::allclose(net->forward(x), reference, 1e-5, 1e-6));

  CHECK(
      dlcore::set_batchnorm_policy(
          *net, dlcore::BatchNormPolicy::kEvalSticky) == 1);
  net->train();
  CHECK_FALSE(net->named_children()["bn"]->is_training());
  CHECK(net->named_parameters()["bn.weight"].requires_grad());
  CHECK(torch::allclose(net->forward(x), reference, 1e-5, 1e-6));
  auto cloned = net->named_children()["bn"]->clone();
  CHECK(
      dynamic_cast<dlcore::EvalStickyBatchNorm2dImpl*>(cloned.get()) !=
      nullptr);

  CHECK(dlcore::convert_to_batchnorm(*net) == 1);
  CHECK(dlcore::convert_to_batchnorm(*net) == 0);
  CHECK(torch::equal(net->named_buffers()["bn.running_var"], stats));
  net->eval();
  CHECK(torch::allclose(net->forward(x), reference, 1e-5, 1e-6));
  net->train();
  CHECK(net->named_children()["bn"]->is_training());
}

TEST_CASE(
    "batch norms inside a Sequential are refused, and set_batchnorm_eval "
    "works in place",
    "[freeze]") {
  torch::nn::Sequential seq(
      torch::nn::Conv2d(1, 2, 3), torch::nn::BatchNorm2d(2));
  CHECK_THROWS_WITH(
      dlcore::convert_frozen_batchnorm(*seq),
      Catch::Contains(
          "'1' is a batch norm directly inside a torch::nn::Sequential"));
  seq->train();
  CHECK(dlcore::set_batchnorm_eval(*seq) == 1);
  const auto before =
      seq[1]->as<torch::nn::BatchNorm2d>()->running_mean.clone();
  seq->forward(torch::randn({2, 1, 5, 5}));
  CHECK(
      torch::equal(seq[1]->as<torch::nn::BatchNorm2d>()->running_mean, before));
  CHECK(seq->is_training());
}

TEST_CASE("replace_head swaps the registered head", "[freeze]") {
  TinyNet net;
  auto head = dlcore::replace_linear_head(*net, "fc", 7, /*seed=*/1);
  CHECK(net->forward(batch()).sizes() == torch::IntArrayRef{8, 7});
  CHECK(same_impl(net->named_parameters()["fc.weight"], head->weight));
  CHECK(head->weight.abs().max().item<double>() <= 0.5);
  auto again = dlcore::replace_linear_head(*net, "fc", 7, /*seed=*/1);
  CHECK(torch::equal(again->weight, head->weight));

  auto custom = dlcore::replace_head(*net, "fc", torch::nn::Linear(4, 2));
  CHECK(net->forward(batch()).sizes() == torch::IntArrayRef{8, 2});
  CHECK(same_impl(net->named_parameters()["fc.weight"], custom->weight));

  CHECK_THROWS_WITH(
      dlcore::replace_linear_head(*net, "head", 3),
      Catch::Contains(
          "has no child 'head' (its children: conv, bn, block, fc)"));
  CHECK_THROWS_WITH(
      dlcore::replace_linear_head(*net, "bn", 3),
      Catch::Contains("expected 'bn' to be a torch::nn::Linear"));
  CHECK_THROWS_WITH(
      dlcore::replace_linear_head(*net, "fc", 0),
      Catch::Contains("num_classes > 0, but got 0"));
  CHECK_THROWS_WITH(
      dlcore::replace_head(*net, "block.2", torch::nn::Linear(4, 4)),
      Catch::Contains("inside a torch::nn::Sequential"));
  CHECK(
      dlcore::forward_child(*net, "block", torch::randn({1, 4})).size(1) == 4);
  CHECK_THROWS_WITH(
      dlcore::forward_child(
          *net->named_children()["block"], "1", torch::randn({1, 4})),
      Catch::Contains("expected '1' to be a Linear") &&
          Catch::Contains("but it is torch::nn::ReLU"));
}

TEST_CASE(
    "freeze_to agrees with a brute-force reference for every n", "[freeze]") {
  // Groups of different sizes over independent tensors.
  const std::vector<int64_t> sizes{1, 3, 2, 4, 1};
  std::vector<std::vector<torch::Tensor>> groups;
  for (auto s : sizes) {
    std::vector<torch::Tensor> g;
    for (int64_t i = 0; i < s; ++i) {
      g.push_back(torch::zeros({2}, torch::requires_grad()));
    }
    groups.push_back(g);
  }
  const auto count = static_cast<int64_t>(groups.size());
  auto rng = std::mt19937_64(11);
  std::vector<bool> expected(groups.size(), true);
  for (int trial = 0; trial < 50; ++trial) {
    const int64_t n = static_cast<int64_t>(rng() % (2 * count + 1)) - count;
    const int64_t boundary = n < 0 ? count + n : n;
    int64_t changes = 0;
    for (int64_t g = 0; g < count; ++g) {
      const bool want = g >= boundary;
      if (expected[static_cast<std::size_t>(g)] != want) {
        changes += sizes[static_cast<std::size_t>(g)];
      }
      expected[static_cast<std::size_t>(g)] = want;
    }
    CHECK(dlcore::freeze_to(groups, n) == changes);
    for (int64_t g = 0; g < count; ++g) {
      for (const auto& t : groups[static_cast<std::size_t>(g)]) {
        CHECK(t.requires_grad() == expected[static_cast<std::size_t>(g)]);
      }
    }
  }
}

TEST_CASE(
    "discriminative learning rates have a constant ratio between groups",
    "[freeze]") {
  for (int64_t g = 2; g <= 7; ++g) {
    const auto lrs = dlcore::discriminative_lrs(g, 1e-5, 3e-2);
    CHECK(lrs.front() == Approx(1e-5).epsilon(1e-12));
    CHECK(lrs.back() == 3e-2);
    const double ratio =
        std::pow(3e-2 / 1e-5, 1.0 / static_cast<double>(g - 1));
    for (std::size_t i = 1; i < lrs.size(); ++i) {
      CHECK(lrs[i] / lrs[i - 1] == Approx(ratio).epsilon(1e-9));
    }
  }
}

TEST_CASE(
    "batch-norm conversion keeps double precision and the module's mode",
    "[freeze]") {
  TinyNet net;
  net->to(torch::kDouble);
  {
    torch::NoGradGuard g;
    net->named_buffers()["bn.running_mean"].fill_(1.0 / 3.0);
  }
  net->eval();
  dlcore::convert_frozen_batchnorm(*net);
  const auto mean = net->named_buffers()["bn.running_mean"];
  CHECK(mean.scalar_type() == torch::kDouble);
  CHECK(mean[0].item<double>() == 1.0 / 3.0);
  CHECK_FALSE(net->named_children()["bn"]->is_training());
  dlcore::convert_to_batchnorm(*net);
  CHECK(net->named_buffers()["bn.running_mean"][0].item<double>() == 1.0 / 3.0);
  CHECK(net->named_parameters()["bn.weight"].scalar_type() == torch::kDouble);
  CHECK(
      net->forward(batch().to(torch::kDouble)).scalar_type() == torch::kDouble);
}

namespace {

// A module type forward_child does not know: y = x * factor.
struct ScaleImpl : torch::nn::Cloneable<ScaleImpl> {
  explicit ScaleImpl(double factor = 2.0) : factor(factor) {}
  void reset() override {}
  torch::Tensor forward(const torch::Tensor& x) {
    return x * factor;
  }
  double factor;
};
TORCH_MODULE(Scale);

// A Linear subtype: forward_child calls it as a Linear unless the caller
// names it first.
struct NegatedLinearImpl : torch::nn::LinearImpl {
  NegatedLinearImpl() : torch::nn::LinearImpl(4, 4) {}
  torch::Tensor forward(const torch::Tensor& x) {
    return -torch::nn::LinearImpl::forward(x);
  }
};

} // namespace

TEST_CASE(
    "forward_child calls every built-in type and the caller's extra types",
    "[freeze]") {
  torch::manual_seed(3);
  torch::nn::Module parent;
  auto linear = parent.register_module("linear", torch::nn::Linear(4, 4));
  auto conv = parent.register_module(
      "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 2, 1)));
  auto bn = parent.register_module("bn", torch::nn::BatchNorm2d(2));
  auto frozen = parent.register_module("frozen", dlcore::FrozenBatchNorm2d(2));
  auto sticky =
      parent.register_module("sticky", dlcore::EvalStickyBatchNorm2d(2));
  auto identity = parent.register_module("identity", torch::nn::Identity());
  auto seq = parent.register_module(
      "seq", torch::nn::Sequential(torch::nn::Linear(4, 4)));
  auto scale = parent.register_module("scale", Scale(3.0));
  auto negated =
      parent.register_module("negated", std::make_shared<NegatedLinearImpl>());

  const auto x = torch::randn({3, 4});
  const auto image = torch::randn({3, 2, 2, 2});
  CHECK(torch::equal(
      dlcore::forward_child(parent, "linear", x), linear->forward(x)));
  CHECK(torch::equal(
      dlcore::forward_child(parent, "conv", image), conv->forward(image)));
  bn->eval();
  CHECK(torch::equal(
      dlcore::forward_child(parent, "bn", image), bn->forward(image)));
  CHECK(torch::equal(
      dlcore::forward_child(parent, "frozen", image), frozen->forward(image)));
  CHECK(torch::equal(
      dlcore::forward_child(parent, "sticky", image), sticky->forward(image)));
  CHECK(torch::equal(dlcore::forward_child(parent, "identity", x), x));
  CHECK(torch::equal(dlcore::forward_child(parent, "seq", x), seq->forward(x)));

  // A subtype of a built-in type runs as the built-in type (the
  // dynamic_cast finds it first) unless the caller names it.
  CHECK(torch::equal(
      dlcore::forward_child(parent, "negated", x),
      negated->torch::nn::LinearImpl::forward(x)));
  CHECK(torch::equal(
      dlcore::forward_child<NegatedLinearImpl>(parent, "negated", x),
      negated->forward(x)));

  // An unknown type is an error, unless the caller names it.
  CHECK_THROWS_WITH(
      dlcore::forward_child(parent, "scale", x),
      Catch::Contains(
          "forward_child: expected 'scale' to be a Linear, Conv2d, "
          "BatchNorm2d, EvalStickyBatchNorm2d, FrozenBatchNorm2d, Identity or "
          "Sequential, but it is ") &&
          Catch::Contains("ScaleImpl"));
  CHECK(torch::equal(
      dlcore::forward_child<ScaleImpl>(parent, "scale", x), x * 3.0));
  parent.register_module("relu", torch::nn::ReLU());
  CHECK_THROWS_WITH(
      dlcore::forward_child<ScaleImpl>(parent, "relu", x),
      Catch::Contains(
          "Identity or Sequential or one of the extra types given to "
          "forward_child, but it is torch::nn::ReLU"));
}
