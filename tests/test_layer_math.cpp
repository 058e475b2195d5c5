#include <dlcore/nn/layer_math.h>

#include <random>

namespace {

using L = dlcore::LayerSpec;

std::string error_of(
    const std::vector<L>& net,
    const std::vector<int64_t>& in,
    const dlcore::LayerMathOptions& o = {}) {
  try {
    dlcore::analyze_layers(net, in, o);
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "no error";
}

} // namespace

TEST_CASE(
    "a convolution's shape, parameters, MACs and FLOPs follow the formulas",
    "[layer_math]") {
  // AlexNet's first layer: 11x11, stride 4, padding 2 on 224.
  auto s = dlcore::analyze_layers(
      {L::conv2d(3, 64, 11).stride(4).padding(2)}, {3, 224, 224});
  REQUIRE(s.layers.size() == 1);
  const auto& r = s.layers[0];
  CHECK(r.output_shape == std::vector<int64_t>{64, 55, 55});
  CHECK(r.params == 64 * 3 * 121 + 64);
  CHECK(r.macs == int64_t{64} * 55 * 55 * 3 * 121);
  CHECK(r.flops == 2 * r.macs + 64 * 55 * 55);
  CHECK(r.type == "Conv2d");
  CHECK(r.name == "0");
  CHECK(r.activations == 64 * 55 * 55);
  CHECK(r.activation_bytes == 4 * 64 * 55 * 55);
  CHECK(r.receptive_field == std::array<double, 2>{11, 11});
  CHECK(r.jump == std::array<double, 2>{4, 4});
  // start = 0.5 + ((11-1)/2 - 2) * 1 = 3.5
  CHECK(r.start == std::array<double, 2>{3.5, 3.5});
}

TEST_CASE(
    "defaults: batch 1, float32, input counted, stride 1, bias on",
    "[layer_math]") {
  dlcore::LayerMathOptions o;
  CHECK(o.batch_size() == 1);
  CHECK(o.dtype() == torch::kFloat32);
  CHECK(o.count_input());
  auto c = L::conv2d(1, 1, 3);
  CHECK(c.stride()->at(0) == 1);
  CHECK(c.padding()->at(1) == 0);
  CHECK(c.dilation()->at(0) == 1);
  CHECK(c.groups() == 1);
  CHECK(c.bias());
  auto p = L::max_pool2d(3);
  CHECK(p.stride()->at(0) == 3); // PyTorch: stride defaults to the kernel
  CHECK_FALSE(p.ceil_mode());
  CHECK(L::relu().inplace());
  CHECK_FALSE(L::activation("GELU").inplace());
  CHECK(L::activation("GELU").type_name() == "GELU");
}

TEST_CASE(
    "stride, padding, dilation and groups change the convolution's numbers",
    "[layer_math]") {
  SECTION("dilation 2 makes a 3x3 kernel span 5 pixels") {
    auto s = dlcore::analyze_layers(
        {L::conv2d(8, 8, 3).dilation(2).padding(2)}, {8, 32, 32});
    CHECK(s.output_shape == std::vector<int64_t>{8, 32, 32});
    CHECK(s.receptive_field == std::array<double, 2>{5, 5});
    CHECK(s.params == 8 * 8 * 9 + 8);
  }
  SECTION("groups divide the per-output fan-in (depthwise)") {
    auto s = dlcore::analyze_layers(
        {L::conv2d(32, 32, 3).padding(1).groups(32).bias(false)}, {32, 10, 10});
    CHECK(s.params == 32 * 9);
    CHECK(s.macs == 32 * 10 * 10 * 9);
    CHECK(s.flops == 2 * s.macs);
  }
  SECTION("rectangular kernel, stride and padding work per axis") {
    auto s = dlcore::analyze_layers(
        {L::conv2d(1, 2, {3, 5}).stride({1, 2}).padding({1, 0})}, {1, 7, 11});
    // h: (7+2-3)/1+1 = 7; w: (11-5)/2+1 = 4
    CHECK(s.output_shape == std::vector<int64_t>{2, 7, 4});
    CHECK(s.receptive_field == std::array<double, 2>{3, 5});
    CHECK(s.jump == std::array<double, 2>{1, 2});
    CHECK(s.start == std::array<double, 2>{0.5, 2.5});
  }
  SECTION("batch size and dtype scale activations and MACs, not params") {
    auto o = dlcore::LayerMathOptions().batch_size(8).dtype(torch::kFloat64);
    auto s = dlcore::analyze_layers({L::conv2d(3, 4, 3)}, {3, 5, 5}, o);
    CHECK(s.params == 4 * 27 + 4);
    CHECK(s.macs == 8 * 4 * 3 * 3 * 27);
    CHECK(s.layers[0].activation_bytes == 8 * 4 * 9 * 8);
    CHECK(s.input_activations == 8 * 75);
    CHECK(s.param_bytes == 8 * s.params);
  }
}

TEST_CASE(
    "pooling rounds down, or up in ceil mode, like PyTorch", "[layer_math]") {
  // 112 -> 3x3/2: floor((112-3)/2)+1 = 55, ceil -> 56 (GoogLeNet's maxpool1).
  CHECK(
      dlcore::analyze_layers({L::max_pool2d(3).stride(2)}, {4, 112, 112})
          .output_shape == std::vector<int64_t>{4, 55, 55});
  CHECK(
      dlcore::analyze_layers(
          {L::max_pool2d(3).stride(2).ceil_mode(true)}, {4, 112, 112})
          .output_shape == std::vector<int64_t>{4, 56, 56});
  // A last window starting inside the right padding is dropped: in=4, k=2,
  // s=2, p=1: ceil((4+2-2)/2)+1 = 3, and (3-1)*2 = 4 < 4+1 keeps it.
  CHECK(dlcore::conv_output_size(4, 2, 2, 1, 1, true) == 3);
  // in=5, k=2, s=2, p=1: ceil(5/2)+1 = 4, but (4-1)*2 = 6 >= 5+1 drops it.
  CHECK(dlcore::conv_output_size(5, 2, 2, 1, 1, true) == 3);
  CHECK(dlcore::conv_output_size(5, 2, 2, 1, 1, false) == 3);
  // Pool FLOPs: max (window-1) comparisons, average window-size operations.
  auto mx = dlcore::analyze_layers({L::max_pool2d(2)}, {3, 4, 4});
  CHECK(mx.flops == 3 * 2 * 2 * 3);
  auto av = dlcore::analyze_layers({L::avg_pool2d(2)}, {3, 4, 4});
  CHECK(av.flops == 3 * 2 * 2 * 4);
  CHECK(av.params == 0);
}

TEST_CASE(
    "conv_output_size agrees with a real LibTorch module on random cases",
    "[layer_math]") {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int64_t> size(1, 20), k(1, 5), s(1, 3), d(1, 2);
  int checked = 0;
  for (int t = 0; t < 60; ++t) {
    const int64_t in = size(rng), kk = k(rng), ss = s(rng), dd = d(rng);
    const int64_t p = std::uniform_int_distribution<int64_t>(0, kk / 2)(rng);
    const bool ceil = (t % 2) == 1;
    if (in + 2 * p < dd * (kk - 1) + 1) {
      CHECK_THROWS(dlcore::conv_output_size(in, kk, ss, p, dd, ceil));
      continue;
    }
    auto x = torch::zeros({1, 1, in, in});
    auto y = torch::max_pool2d(x, kk, ss, p, dd, ceil);
    CHECK(dlcore::conv_output_size(in, kk, ss, p, dd, ceil) == y.size(2));
    ++checked;
  }
  CHECK(checked > 20);
}

TEST_CASE(
    "receptive field, jump and start follow the standard recurrences",
    "[layer_math]") {
  // Dang-Ha's example: two 3x3/2 p1 convolutions on 5x5.
  auto s = dlcore::analyze_layers(
      {L::conv2d(1, 1, 3).stride(2).padding(1),
       L::conv2d(1, 1, 3).stride(2).padding(1)},
      {1, 5, 5});
  CHECK(s.layers[0].output_shape == std::vector<int64_t>{1, 3, 3});
  CHECK(s.layers[0].receptive_field[0] == 3);
  CHECK(s.layers[0].jump[0] == 2);
  CHECK(s.layers[0].start[0] == 0.5);
  CHECK(s.layers[1].output_shape == std::vector<int64_t>{1, 2, 2});
  CHECK(s.layers[1].receptive_field[0] == 7);
  CHECK(s.layers[1].jump[0] == 4);
  CHECK(s.layers[1].start[0] == 0.5);
  // Activations, dropout and batch norm leave the receptive field alone;
  // flatten covers the whole map.
  auto f = dlcore::analyze_layers(
      {L::conv2d(1, 2, 3),
       L::batch_norm(2),
       L::relu(),
       L::dropout(),
       L::flatten(),
       L::linear(2 * 3 * 3, 4)},
      {1, 5, 5});
  CHECK(f.layers[3].receptive_field[0] == 3);
  CHECK(f.layers[4].receptive_field[0] == 5);
  CHECK(f.receptive_field == std::array<double, 2>{5, 5});
  CHECK(f.start[0] == 2.5); // centred on the image
}

TEST_CASE(
    "adaptive pooling is exact when the output divides the input",
    "[layer_math]") {
  auto s = dlcore::analyze_layers({L::adaptive_avg_pool2d(2)}, {3, 8, 8});
  CHECK(s.output_shape == std::vector<int64_t>{3, 2, 2});
  CHECK(s.receptive_field[0] == 4);
  CHECK(s.jump[0] == 4);
  CHECK(s.flops == 3 * 64);
  // 5 -> 3: bins [0,2) [1,4) [3,5): widest 3, jump 5/3.
  auto t = dlcore::analyze_layers({L::adaptive_max_pool2d({3, 5})}, {2, 5, 5});
  CHECK(t.output_shape == std::vector<int64_t>{2, 3, 5});
  CHECK(t.receptive_field == std::array<double, 2>{3, 1});
  CHECK(t.jump[0] == Approx(5.0 / 3.0));
  // Max: (bin elements - 1) comparisons per output = 2*(7*5) - 2*15.
  CHECK(t.flops == 2 * 7 * 5 - 2 * 15);
  auto real = torch::adaptive_max_pool2d(torch::zeros({1, 2, 5, 5}), {3, 5});
  CHECK(std::get<0>(real).size(2) == 3);
}

TEST_CASE(
    "linear, batch norm, activation, flatten and dropout rows",
    "[layer_math]") {
  auto s = dlcore::analyze_layers(
      {L::batch_norm(4),
       L::relu(false),
       L::flatten(),
       L::dropout(),
       L::linear(4 * 3 * 3, 10),
       L::linear(10, 5).bias(false)},
      {4, 3, 3},
      dlcore::LayerMathOptions().batch_size(2));
  CHECK(s.layers[0].params == 8);
  CHECK(s.layers[0].buffers == 9); // running mean, var, num_batches_tracked
  CHECK(s.layers[0].flops == 2 * 2 * 36);
  CHECK(s.layers[1].activation_bytes == 2 * 36 * 4); // not in place
  CHECK(s.layers[1].flops == 2 * 36);
  CHECK(s.layers[2].output_shape == std::vector<int64_t>{36});
  CHECK(s.layers[2].activation_bytes == 0); // a view
  CHECK(s.layers[3].activation_bytes == 0);
  CHECK(s.layers[4].params == 36 * 10 + 10);
  CHECK(s.layers[4].macs == 2 * 360);
  CHECK(s.layers[4].flops == 2 * 2 * 360 + 2 * 10);
  CHECK(s.layers[5].params == 50);
  CHECK(s.params == 8 + 370 + 50);
  CHECK(s.buffers == 9);
  // Memory: input, BN, ReLU, the two linears (flatten, dropout are free).
  CHECK(s.activations == 2 * (36 + 36 + 36 + 10 + 5));
  CHECK(s.forward_bytes == 4 * s.activations);
  CHECK(s.backward_bytes == 2 * s.forward_bytes);
  auto no_input = dlcore::analyze_layers(
      {L::relu(false)},
      {4, 3, 3},
      dlcore::LayerMathOptions().count_input(false));
  CHECK(no_input.activations == 36);
  CHECK(
      dlcore::analyze_layers({L::relu()}, {4, 3, 3})
          .layers[0]
          .activation_bytes == 0);
}

TEST_CASE(
    "concatenation sums channels, parameters and MACs of its branches",
    "[layer_math]") {
  // Inception (3a) with 1x1 reductions at 28x28x192 (paper: 5x5 branch).
  auto inception = L::concat({
      {L::conv2d(192, 64, 1)},
      {L::conv2d(192, 96, 1), L::conv2d(96, 128, 3).padding(1)},
      {L::conv2d(192, 16, 1), L::conv2d(16, 32, 5).padding(2)},
      {L::max_pool2d(3).stride(1).padding(1), L::conv2d(192, 32, 1)},
  });
  auto s =
      dlcore::analyze_layers({inception.name("inception3a")}, {192, 28, 28});
  CHECK(s.output_shape == std::vector<int64_t>{256, 28, 28});
  CHECK(s.params == 163696);
  CHECK(s.macs == int64_t{784} * 163328);
  REQUIRE(s.layers.size() == 8);
  CHECK(s.layers[0].name == "inception3a.0.0");
  CHECK(s.layers[0].depth == 1);
  CHECK(s.layers[2].name == "inception3a.1.1");
  CHECK(s.layers.back().name == "inception3a");
  CHECK(s.layers.back().type == "Concat");
  CHECK(s.layers.back().depth == 0);
  CHECK(s.layers.back().receptive_field[0] == 5);
  // Naive module: 1x1 64, 3x3 128, 5x5 32 and the pooled input (192).
  auto naive = dlcore::analyze_layers(
      {L::concat({
          {L::conv2d(192, 64, 1)},
          {L::conv2d(192, 128, 3).padding(1)},
          {L::conv2d(192, 32, 5).padding(2)},
          {L::max_pool2d(3).stride(1).padding(1)},
      })},
      {192, 28, 28});
  CHECK(naive.output_shape == std::vector<int64_t>{416, 28, 28});
  CHECK(naive.params == 387296);
  CHECK(naive.macs == int64_t{784} * 387072);
  // An empty concat branch passes the input through (DenseNet style).
  auto dense = dlcore::analyze_layers(
      {L::concat({{}, {L::conv2d(3, 5, 1)}})}, {3, 4, 4});
  CHECK(dense.output_shape == std::vector<int64_t>{8, 4, 4});
}

TEST_CASE("addition with an empty branch is a residual block", "[layer_math]") {
  auto block = L::add({
      {L::conv2d(8, 8, 3).padding(1).bias(false),
       L::batch_norm(8),
       L::relu(),
       L::conv2d(8, 8, 3).padding(1).bias(false),
       L::batch_norm(8)},
      {},
  });
  auto s = dlcore::analyze_layers({block, L::relu()}, {8, 6, 6});
  CHECK(s.output_shape == std::vector<int64_t>{8, 6, 6});
  CHECK(s.params == 2 * 8 * 8 * 9 + 4 * 8);
  const auto& join = s.layers[s.layers.size() - 2];
  CHECK(join.type == "Add");
  CHECK(join.flops == 8 * 36);
  CHECK(join.activation_bytes == 0); // `out += identity`, in place
  CHECK(join.receptive_field[0] == 5);
  auto copy = L::add({{L::conv2d(8, 8, 1)}, {}}).inplace(false);
  CHECK(
      dlcore::analyze_layers({copy}, {8, 6, 6})
          .layers.back()
          .activation_bytes == 8 * 36 * 4);
}

TEST_CASE(
    "subsample_pad is the option-A shortcut: every s-th pixel, zero channels "
    "appended",
    "[layer_math]") {
  // Odd sizes keep ceil(n / s) rows and columns, as x[:, :, ::2, ::2].
  auto s = dlcore::analyze_layers({L::subsample_pad(32, 2)}, {16, 7, 9});
  CHECK(s.output_shape == std::vector<int64_t>{32, 4, 5});
  const auto& row = s.layers[0];
  CHECK(row.type == "SubsamplePad");
  CHECK(row.params == 0);
  CHECK(row.macs == 0);
  CHECK(row.flops == 0);
  CHECK(row.activation_bytes == 32 * 4 * 5 * 4);
  CHECK(row.receptive_field[0] == 1);
  CHECK(row.jump[0] == 2);
  CHECK(row.start[0] == 0.5);
  // In a residual block it matches the strided main path.
  auto block = L::add({
      {L::conv2d(16, 32, 3).stride(2).padding(1).bias(false),
       L::batch_norm(32)},
      {L::subsample_pad(32, 2)},
  });
  CHECK(
      dlcore::analyze_layers({block}, {16, 7, 7}).output_shape ==
      std::vector<int64_t>{32, 4, 4});
  using Catch::Contains;
  CHECK_THAT(
      error_of({L::subsample_pad(8, 2).name("sc")}, {16, 4, 4}),
      Contains("layer 0 (sc, SubsamplePad): out_channels (8) must be at least "
               "the input's 16 channels"));
  CHECK_THAT(
      error_of({L::subsample_pad(16, 0)}, {16, 4, 4}),
      Contains("stride must be >= 1, got (0, 0)"));
  CHECK_THAT(
      error_of({L::flatten(), L::subsample_pad(16, 1)}, {16, 4, 4}),
      Contains("expects a [C, H, W] input"));
}

TEST_CASE(
    "analysis is deterministic and independent of the batch for params",
    "[layer_math]") {
  std::vector<L> net = {
      L::conv2d(3, 16, 3).padding(1),
      L::relu(),
      L::max_pool2d(2),
      L::flatten(),
      L::linear(16 * 8 * 8, 10)};
  auto a = dlcore::analyze_layers(net, {3, 16, 16});
  auto b = dlcore::analyze_layers(net, {3, 16, 16});
  auto c = dlcore::analyze_layers(
      net, {3, 16, 16}, dlcore::LayerMathOptions().batch_size(4));
  CHECK(a.flops == b.flops);
  CHECK(a.forward_bytes == b.forward_bytes);
  CHECK(a.params == c.params);
  CHECK(c.macs == 4 * a.macs);
  CHECK(c.forward_bytes == 4 * a.forward_bytes);
}

TEST_CASE(
    "impossible shapes and options are errors naming the layer",
    "[layer_math]") {
  using Catch::Contains;
  CHECK_THAT(
      error_of(
          {L::conv2d(3, 8, 3), L::conv2d(4, 8, 3).name("conv2")}, {3, 9, 9}),
      Contains("layer 1 (conv2, Conv2d): expects 4 input channels, got 8"));
  CHECK_THAT(
      error_of({L::conv2d(3, 8, 7)}, {3, 5, 5}),
      Contains("layer 0 (Conv2d): kernel 7 (effective 7) is larger than the "
               "padded input 5 (input 5 + 2 x padding 0) along height"));
  CHECK_THAT(
      error_of({L::conv2d(3, 8, 3).dilation(3)}, {3, 6, 6}),
      Contains("kernel 3 (effective 7) is larger than the padded input 6"));
  CHECK_THAT(
      error_of({L::conv2d(3, 8, 3).stride(0)}, {3, 5, 5}),
      Contains("layer 0 (Conv2d): stride must be >= 1, got (0, 0)"));
  CHECK_THAT(
      error_of({L::conv2d(3, 8, 3).padding(-1)}, {3, 5, 5}),
      Contains("padding must be >= 0, got (-1, -1)"));
  CHECK_THAT(
      error_of({L::conv2d(3, 8, 1).groups(2)}, {3, 5, 5}),
      Contains("groups (2) must be positive and divide in_channels (3)"));
  CHECK_THAT(
      error_of({L::conv2d(3, -8, 1)}, {3, 5, 5}),
      Contains("in_channels and out_channels must be positive, got 3 and -8"));
  CHECK_THAT(
      error_of({L::max_pool2d(2).padding(2)}, {3, 5, 5}),
      Contains("padding (2, 2) must be at most half of kernel_size (2, 2)"));
  CHECK_THAT(
      error_of({L::linear(10, 2)}, {2, 5, 1}),
      Contains("layer 0 (Linear): expects a flat input of 10 features, got "
               "shape [2, 5, 1]; add a LayerSpec::flatten() before it"));
  CHECK_THAT(
      error_of({L::flatten(), L::linear(11, 2)}, {2, 5, 1}),
      Contains("layer 1 (Linear): expects 11 input features, got 10"));
  CHECK_THAT(
      error_of({L::flatten(), L::conv2d(1, 1, 1)}, {2, 5, 1}),
      Contains("expects a [C, H, W] input, got shape [10]"));
  CHECK_THAT(
      error_of({L::batch_norm(3)}, {2, 5, 5}),
      Contains("layer 0 (BatchNorm): expects 3 channels, got 2"));
  CHECK_THAT(
      error_of(
          {L::concat({{L::conv2d(2, 2, 1)}, {L::max_pool2d(2)}})}, {2, 4, 4}),
      Contains("layer 0 (Concat): branch 1 gives shape [2, 2, 2], which cannot "
               "be concatenated along channels with branch 0's [2, 4, 4]"));
  CHECK_THAT(
      error_of({L::add({{L::conv2d(2, 3, 1)}, {}})}, {2, 4, 4}),
      Contains("cannot be added to branch 0's [3, 4, 4]"));
  CHECK_THAT(
      error_of({L::concat({})}, {2, 4, 4}),
      Contains("layer 0 (Concat): needs at least one branch"));
  CHECK_THAT(
      error_of({L::concat({{L::relu(), L::conv2d(5, 1, 1)}})}, {2, 4, 4}),
      Contains("layer 0.0.1 (Conv2d): expects 5 input channels, got 2"));
  CHECK_THAT(
      error_of({}, {2, 0, 4}),
      Contains("input_shape sizes must be positive, got [2, 0, 4]"));
  CHECK_THAT(
      error_of({}, {2, 4}),
      Contains("input_shape must be per sample, {C, H, W} or {F}, got [2, 4]"));
  CHECK_THAT(
      error_of({}, {2}, dlcore::LayerMathOptions().batch_size(0)),
      Contains("batch_size must be positive, got 0"));
  CHECK_THAT(
      error_of({L::adaptive_avg_pool2d(0)}, {2, 4, 4}),
      Contains("output_size must be >= 1, got (0, 0)"));
}

TEST_CASE("to_string prints every row and the totals", "[layer_math]") {
  auto s = dlcore::analyze_layers(
      {L::conv2d(3, 8, 3).padding(1).name("conv"),
       L::add({{L::conv2d(8, 8, 1)}, {}}).name("res"),
       L::max_pool2d(2),
       L::flatten(),
       L::linear(8 * 4 * 4, 1000)},
      {3, 8, 8});
  const std::string t = s.to_string();
  CHECK_THAT(t, Catch::Contains("conv (Conv2d)"));
  CHECK_THAT(t, Catch::Contains("  res.0.0 (Conv2d)")); // indented branch
  CHECK_THAT(t, Catch::Contains("res (Add)"));
  CHECK_THAT(t, Catch::Contains("[1000]"));
  CHECK_THAT(t, Catch::Contains("Params: 129,296"));
  CHECK_THAT(t, Catch::Contains("Receptive field 10, jump 8, start 4"));
  CHECK(s.params == 224 + 72 + 128 * 1000 + 1000);
}
