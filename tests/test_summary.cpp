#include <dlcore/nn/summary.h>

#include <dlcore/nn/layer_math.h>

#include <fstream>
#include <iterator>
#include <random>

namespace {

// [docs/summary.md: opt-in example]
struct MyNetImpl : torch::nn::Module, dlcore::SummaryTraceable {
  MyNetImpl()
      : conv(register_module("conv", torch::nn::Conv2d(1, 4, 3))),
        fc(register_module("fc", torch::nn::Linear(4 * 26 * 26, 10))) {}

  torch::Tensor forward(const torch::Tensor& x) {
    dlcore::SummaryTracer off; // not recording: forward's one code path
    return trace_forward(x, off);
  }
  torch::Tensor trace_forward(
      const torch::Tensor& x, dlcore::SummaryTracer& t) override {
    auto y = t("conv", conv, x); // a child: t(name, child, input)
    y = t.functional("relu", y, torch::relu(y)); // a step: (name, in, out)
    y = t.functional("flatten", y, y.flatten(1));
    return t("fc", fc, y);
  }

  torch::nn::Conv2d conv;
  torch::nn::Linear fc;
};
TORCH_MODULE(MyNet);
// [end of example]

namespace nn = torch::nn;
using L = dlcore::LayerSpec;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "no error";
}

/// A module with functional steps, followed through SummaryTraceable.
struct TwoPathImpl : nn::Module, dlcore::SummaryTraceable {
  TwoPathImpl() {
    left = register_module(
        "left", nn::Conv2d(nn::Conv2dOptions(3, 4, 3).padding(1)));
    right = register_module("right", nn::Conv2d(nn::Conv2dOptions(3, 4, 1)));
    head = register_module("head", nn::Linear(8 * 5 * 5, 2));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    dlcore::SummaryTracer off;
    return trace_forward(x, off);
  }
  torch::Tensor trace_forward(
      const torch::Tensor& x, dlcore::SummaryTracer& t) override {
    std::vector<torch::Tensor> outs = {
        t("left", left, x), t("right", right, x)};
    auto y = t.functional("cat", outs, torch::cat(outs, 1));
    y = t.functional("relu", y, y.relu_());
    y = t.functional("flatten", y, y.flatten(1));
    return t("head", head, y);
  }
  nn::Conv2d left{nullptr}, right{nullptr};
  nn::Linear head{nullptr};
};
TORCH_MODULE(TwoPath);

/// A module without SummaryTraceable: summary() cannot run it generically.
struct OpaqueImpl : nn::Module {
  OpaqueImpl() {
    conv = register_module("conv", nn::Conv2d(3, 2, 3));
    block = register_module(
        "block",
        nn::Sequential(nn::Linear(4, 5), nn::ReLU(), nn::Linear(5, 1)));
  }
  nn::Conv2d conv{nullptr};
  nn::Sequential block{nullptr};
};
TORCH_MODULE(Opaque);

} // namespace

TEST_CASE(
    "a Sequential is followed child by child with shapes, params and MACs",
    "[summary]") {
  nn::Sequential net(
      nn::Conv2d(nn::Conv2dOptions(3, 8, 3).stride(2).padding(1)),
      nn::BatchNorm2d(8),
      nn::ReLU(nn::ReLUOptions().inplace(true)),
      nn::MaxPool2d(nn::MaxPool2dOptions(2)),
      nn::Flatten(),
      nn::Linear(8 * 4 * 4, 10));
  const auto s = dlcore::summary(net, {2, 3, 16, 16});
  CHECK(s.traced);
  REQUIRE(s.rows.size() == 6);
  CHECK(s.rows[0].name == "0");
  CHECK(s.rows[0].type == "Conv2d");
  CHECK(s.rows[0].depth == 0);
  CHECK(s.rows[0].output_shape == std::vector<int64_t>{2, 8, 8, 8});
  CHECK(s.rows[0].params == 8 * 27 + 8);
  CHECK(s.rows[0].macs == 2 * 8 * 8 * 8 * 27);
  CHECK(s.rows[1].type == "BatchNorm2d");
  CHECK(s.rows[1].params == 16);
  CHECK(s.rows[2].type == "ReLU");
  CHECK_FALSE(s.rows[2].allocates); // in place
  CHECK(s.rows[3].output_shape == std::vector<int64_t>{2, 8, 4, 4});
  CHECK_FALSE(s.rows[4].allocates); // flatten is a view
  CHECK(s.rows[5].macs == 2 * 128 * 10);
  CHECK(s.output_shape == std::vector<int64_t>{2, 10});
  CHECK(s.total_params == 224 + 16 + 1290);
  CHECK(s.trainable_params == s.total_params);
  CHECK(s.non_trainable_params == 0);
  CHECK(s.buffers == 8 + 8 + 1);
  CHECK(s.total_macs == s.rows[0].macs + s.rows[5].macs);
  CHECK(s.input_bytes == 2 * 3 * 16 * 16 * 4);
  CHECK(s.param_bytes == 4 * s.total_params);
  // conv, BN, pool, linear outputs; not the in-place ReLU nor the flatten.
  CHECK(s.forward_bytes == 4 * 2 * (512 + 512 + 128 + 10));
  CHECK(s.module_leaves().size() == 6);
}

TEST_CASE(
    "summary agrees with analyze_layers on random convolutional networks",
    "[summary]") {
  std::mt19937_64 rng(42);
  auto pick = [&rng](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  for (int trial = 0; trial < 25; ++trial) {
    INFO("trial " << trial);
    const int64_t c0 = pick(1, 4), h = pick(12, 30), w = pick(12, 30);
    nn::Sequential net;
    std::vector<L> specs;
    int64_t c = c0;
    auto fits = [&](const L& next) {
      auto more = specs;
      more.push_back(next);
      try {
        dlcore::analyze_layers(more, {c0, h, w});
      } catch (const c10::Error&) {
        return false;
      }
      return true;
    };
    const int64_t depth = pick(1, 4);
    for (int64_t d = 0; d < depth; ++d) {
      const int64_t out = pick(1, 6), k = pick(1, 3), s = pick(1, 2);
      const int64_t p = pick(0, k / 2), dil = pick(1, 2);
      const int64_t groups = (c % 2 == 0 && out % 2 == 0) ? 2 : 1;
      const bool bias = pick(0, 1) == 1;
      const auto spec = L::conv2d(c, out, k)
                            .stride(s)
                            .padding(p)
                            .dilation(dil)
                            .groups(groups)
                            .bias(bias);
      if (!fits(spec)) {
        break;
      }
      net->push_back(nn::Conv2d(nn::Conv2dOptions(c, out, k)
                                    .stride(s)
                                    .padding(p)
                                    .dilation(dil)
                                    .groups(groups)
                                    .bias(bias)));
      specs.push_back(spec);
      net->push_back(nn::ReLU(nn::ReLUOptions().inplace(true)));
      specs.push_back(L::relu());
      c = out;
      const bool ceil = pick(0, 1) == 1;
      if (pick(0, 1) == 1 && fits(L::max_pool2d(2).ceil_mode(ceil))) {
        net->push_back(
            nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2).ceil_mode(ceil)));
        specs.push_back(L::max_pool2d(2).ceil_mode(ceil));
      }
    }
    net->push_back(nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(2)));
    specs.push_back(L::adaptive_avg_pool2d(2));
    net->push_back(nn::Flatten());
    specs.push_back(L::flatten());
    net->push_back(nn::Linear(c * 4, 3));
    specs.push_back(L::linear(c * 4, 3));

    const auto s = dlcore::summary(net, {1, c0, h, w});
    const auto a = dlcore::analyze_layers(
        specs, {c0, h, w}, dlcore::LayerMathOptions().count_input(false));
    REQUIRE(s.rows.size() == a.layers.size());
    for (size_t i = 0; i < s.rows.size(); ++i) {
      std::vector<int64_t> shape = a.layers[i].output_shape;
      shape.insert(shape.begin(), 1);
      CHECK(s.rows[i].output_shape == shape);
      CHECK(s.rows[i].params == a.layers[i].params);
      CHECK(s.rows[i].macs == a.layers[i].macs);
      CHECK(s.rows[i].allocates == (a.layers[i].activation_bytes > 0));
    }
    CHECK(s.forward_bytes == a.forward_bytes);
  }
}

TEST_CASE(
    "a SummaryTraceable module reports its functional steps", "[summary]") {
  TwoPath net;
  const auto s = dlcore::summary(net, {1, 3, 5, 5});
  REQUIRE(s.rows.size() == 6);
  CHECK(s.rows[0].name == "left");
  CHECK(s.rows[1].name == "right");
  CHECK(s.rows[2].name == "cat");
  CHECK(s.rows[2].type == "cat");
  CHECK_FALSE(s.rows[2].is_module);
  CHECK(s.rows[2].allocates);
  CHECK(s.rows[2].output_shape == std::vector<int64_t>{1, 8, 5, 5});
  CHECK_FALSE(s.rows[3].allocates); // relu_
  CHECK(s.rows[5].output_shape == std::vector<int64_t>{1, 2});
  CHECK(s.module_leaves().size() == 3);
  // The inactive tracer runs the same computation.
  net->eval();
  torch::NoGradGuard no_grad;
  auto x = torch::randn({2, 3, 5, 5});
  auto manual = net->head->forward(
      torch::cat({net->left->forward(x), net->right->forward(x)}, 1)
          .relu()
          .flatten(1));
  CHECK(torch::allclose(net->forward(x), manual));
}

TEST_CASE(
    "nested containers get their own rows, printed before their children",
    "[summary]") {
  nn::Sequential inner(nn::Linear(4, 4), nn::ReLU());
  struct Outer : nn::Module, dlcore::SummaryTraceable {
    nn::Sequential body{nullptr};
    torch::Tensor trace_forward(
        const torch::Tensor& x, dlcore::SummaryTracer& t) override {
      return t("body", body, x);
    }
  };
  auto outer = std::make_shared<Outer>();
  outer->body = outer->register_module("body", inner);
  const auto s = dlcore::summary(outer, {3, 4});
  REQUIRE(s.rows.size() == 3);
  CHECK(s.rows[0].name == "body.0");
  CHECK(s.rows[0].depth == 1);
  CHECK(s.rows[2].name == "body");
  CHECK_FALSE(s.rows[2].is_leaf);
  CHECK(s.rows[2].params == 20);
  CHECK(s.rows[2].macs == 3 * 16);
  CHECK(s.total_macs == 3 * 16); // containers are not counted twice
  const std::string table = s.to_string();
  CHECK(table.find("body (Sequential)") < table.find("  body.0 (Linear)"));
  CHECK(table.find("Total params: 20") != std::string::npos);
  CHECK(table.find("Mult-Adds") != std::string::npos);
  const std::string shallow = s.to_string(0);
  CHECK(shallow.find("body.0") == std::string::npos);
  std::ostringstream os;
  os << s;
  CHECK(os.str() == table);
}

TEST_CASE("frozen parameters are reported as non-trainable", "[summary]") {
  nn::Sequential net(nn::Linear(3, 4), nn::Linear(4, 2));
  for (auto& p : net[0]->parameters()) {
    p.requires_grad_(false);
  }
  net[1]->as<nn::Linear>()->bias.requires_grad_(false);
  const auto s = dlcore::summary(net, {1, 3});
  CHECK(s.total_params == 16 + 10);
  CHECK(s.trainable_params == 8);
  CHECK(s.non_trainable_params == 18);
  CHECK(s.rows[0].trainable_params == 0);
  CHECK(s.rows[1].trainable_params == 8);
  const std::string table = s.to_string();
  CHECK(table.find("False") != std::string::npos);
  CHECK(table.find("Partial") != std::string::npos);
  CHECK(table.find("Non-trainable params: 18") != std::string::npos);
}

TEST_CASE(
    "a module that cannot be followed lists its leaves with parameters",
    "[summary]") {
  Opaque net;
  const auto s = dlcore::summary(net, {1, 3, 8, 8});
  CHECK_FALSE(s.traced);
  REQUIRE(s.rows.size() == 4);
  CHECK(s.rows[0].name == "conv");
  CHECK(s.rows[0].params == 2 * 27 + 2);
  CHECK(s.rows[0].output_shape.empty());
  CHECK(s.rows[1].name == "block.0");
  CHECK(s.rows[1].depth == 1);
  CHECK(s.rows[3].params == 6);
  CHECK(s.total_params == 56 + 25 + 6);
  CHECK(s.output_shape.empty());
  const std::string table = s.to_string();
  CHECK(table.find("Total mult-adds: -- (not traced)") != std::string::npos);
  CHECK(
      table.find("Forward pass size (MiB): -- (not traced)") !=
      std::string::npos);
  CHECK(table.find("Not traced: the module is neither") != std::string::npos);
  // A traced model's table has no such note.
  CHECK(
      dlcore::summary(torch::nn::Sequential(torch::nn::Linear(3, 2)), {1, 3})
          .to_string()
          .find("not traced") == std::string::npos);
}

TEST_CASE(
    "summary restores training flags and leaves batch-norm statistics alone",
    "[summary]") {
  nn::Sequential net(nn::Conv2d(3, 4, 3), nn::BatchNorm2d(4), nn::Dropout(0.5));
  net->train();
  net[2]->eval(); // mixed flags must come back as they were
  const auto mean = net[1]->as<nn::BatchNorm2d>()->running_mean.clone();
  dlcore::summary(net, {2, 3, 6, 6});
  CHECK(net->is_training());
  CHECK(net[1]->is_training());
  CHECK_FALSE(net[2]->is_training());
  CHECK(torch::equal(mean, net[1]->as<nn::BatchNorm2d>()->running_mean));
  // Also after a failing forward pass.
  CHECK_THROWS(dlcore::summary(net, {1, 5, 6, 6}));
  CHECK(net->is_training());
  CHECK_FALSE(net[2]->is_training());
}

TEST_CASE(
    "the opt-in example of docs/summary.md compiles, is traced and is the "
    "page's code",
    "[summary]") {
  MyNet net;
  const auto s = dlcore::summary(net, {1, 1, 28, 28});
  CHECK(s.traced);
  REQUIRE(s.rows.size() == 4);
  CHECK(s.rows[0].name == "conv");
  CHECK(s.rows[1].name == "relu");
  CHECK(s.rows[2].output_shape == std::vector<int64_t>{1, 4 * 26 * 26});
  CHECK(s.rows[3].name == "fc");
  CHECK(s.output_shape == std::vector<int64_t>{1, 10});
  CHECK(s.total_params == 4 * 9 + 4 + 2704 * 10 + 10);
  CHECK(s.total_macs == 4 * 26 * 26 * 9 + 2704 * 10);
  // The page shows exactly the code compiled above.
  auto read = [](const std::string& path) {
    std::ifstream in(path);
    REQUIRE(in.good());
    return std::string(
        std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  const std::string source =
      read(std::string(DLCORE_SOURCE_DIR) + "/tests/test_summary.cpp");
  const std::string begin = "// [docs/summary.md: opt-in example]\n";
  const auto from = source.find(begin);
  const auto to = source.find("// [end of example]");
  REQUIRE(from != std::string::npos);
  REQUIRE(to != std::string::npos);
  const std::string code =
      source.substr(from + begin.size(), to - from - begin.size());
  const std::string page =
      read(std::string(DLCORE_SOURCE_DIR) + "/docs/summary.md");
  CHECK(page.find("```cpp\n" + code + "```") != std::string::npos);
}

TEST_CASE("the dtype option sets the dummy input's type", "[summary]") {
  nn::Sequential net(nn::Linear(3, 2));
  net->to(torch::kFloat64);
  const auto s = dlcore::summary(
      net, {4, 3}, dlcore::SummaryOptions().dtype(torch::kFloat64));
  CHECK(dlcore::SummaryOptions().dtype() == torch::kFloat32);
  CHECK(s.input_bytes == 4 * 3 * 8);
  CHECK(s.param_bytes == 8 * 8);
  CHECK(s.forward_bytes == 4 * 2 * 8);
}

TEST_CASE("invalid calls are errors naming the problem", "[summary]") {
  using Catch::Contains;
  CHECK_THAT(
      error_of([] { dlcore::summary(std::shared_ptr<nn::Module>(), {1}); }),
      Contains("summary: expected a module, but got a null pointer"));
  nn::Sequential net(nn::Conv2d(3, 4, 3), nn::Linear(5, 2));
  CHECK_THAT(
      error_of([&] {
        dlcore::summary(net, {1, 0, 4});
      }),
      Contains("summary: input_shape must be non-empty with positive sizes "
               "(batch included), got [1, 0, 4]"));
  CHECK_THAT(error_of([&] { dlcore::summary(net, {}); }), Contains("got []"));
  CHECK_THAT(
      error_of([&] {
        dlcore::summary(net, {1, 3, 6, 6});
      }),
      Contains("summary: step '1' (Linear) failed on an input of shape [1, 4, "
               "4, 4]"));
}
