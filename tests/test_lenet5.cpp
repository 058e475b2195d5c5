#include <dlcore/nn/models/lenet5.h>

TEST_CASE(
    "LeNet5 has the homework's 61,706 parameters in named layers", "[lenet5]") {
  dlcore::LeNet5 net;
  int64_t total = 0;
  for (const auto& p : net->parameters()) {
    total += p.numel();
  }
  CHECK(total == 61706);
  auto named = net->named_parameters();
  CHECK(named["conv1.weight"].sizes() == torch::IntArrayRef({6, 1, 5, 5}));
  CHECK(named["conv2.weight"].sizes() == torch::IntArrayRef({16, 6, 5, 5}));
  CHECK(named["fc1.weight"].sizes() == torch::IntArrayRef({120, 400}));
  CHECK(named["fc2.weight"].sizes() == torch::IntArrayRef({84, 120}));
  CHECK(named["fc3.weight"].sizes() == torch::IntArrayRef({10, 84}));
  CHECK(named.size() == 10);
}

TEST_CASE("LeNet5 maps [N,1,28,28] images to [N,classes] logits", "[lenet5]") {
  dlcore::LeNet5 net(3);
  CHECK(net->num_classes() == 3);
  CHECK(
      net->forward(torch::randn({5, 1, 28, 28})).sizes() ==
      torch::IntArrayRef({5, 3}));
  CHECK(
      net->forward(torch::randn({1, 1, 28, 28})).sizes() ==
      torch::IntArrayRef({1, 3}));
  CHECK(
      net->forward(torch::randn({0, 1, 28, 28})).sizes() ==
      torch::IntArrayRef({0, 3}));
}

TEST_CASE("LeNet5 computes the homework's layer sequence", "[lenet5]") {
  torch::manual_seed(3);
  dlcore::LeNet5 net;
  torch::Tensor x = torch::randn({4, 1, 28, 28});
  namespace F = torch::nn::functional;
  torch::Tensor h = F::max_pool2d(
      torch::relu(F::conv2d(
          x,
          net->conv1->weight,
          F::Conv2dFuncOptions().bias(net->conv1->bias).padding(2))),
      F::MaxPool2dFuncOptions(2));
  h = F::max_pool2d(
      torch::relu(F::conv2d(
          h,
          net->conv2->weight,
          F::Conv2dFuncOptions().bias(net->conv2->bias))),
      F::MaxPool2dFuncOptions(2));
  h = h.view({-1, 16 * 5 * 5});
  h = torch::relu(F::linear(h, net->fc1->weight, net->fc1->bias));
  h = torch::relu(F::linear(h, net->fc2->weight, net->fc2->bias));
  h = F::linear(h, net->fc3->weight, net->fc3->bias);
  // Bit-identical with LibTorch's conv1; with the direct single-channel
  // kernel (AVX-512 CPUs) equal up to the order of float additions.
  if (dlcore::detail::conv1ch_supported()) {
    CHECK(torch::allclose(net->forward(x), h, 1e-5, 1e-6));
  } else {
    CHECK(torch::equal(net->forward(x), h));
  }
  CHECK(torch::equal(net->forward(x.clone().requires_grad_()), h));
}

TEST_CASE(
    "LeNet5's fast 2x2 max pooling equals max_pool2d in values, indices and "
    "gradients",
    "[lenet5]") {
  namespace F = torch::nn::functional;
  torch::manual_seed(4);
  for (auto shape :
       {std::vector<int64_t>{3, 6, 28, 28},
        std::vector<int64_t>{2, 16, 10, 10},
        std::vector<int64_t>{1, 1, 2, 2}}) {
    torch::Tensor x = torch::randn(shape);
    // Ties: a window of equal values and zero-clamped windows.
    x.view({-1}).slice(0, 0, 4).fill_(0.5);
    x = torch::relu(x);
    auto ref = F::max_pool2d_with_indices(x, F::MaxPool2dFuncOptions(2));
    auto fast = dlcore::detail::max_pool2x2_with_indices(x, true);
    CHECK(torch::equal(fast.first, std::get<0>(ref)));
    CHECK(torch::equal(fast.second, std::get<1>(ref)));
    CHECK(torch::equal(
        dlcore::detail::max_pool2x2_with_indices(x, false).first,
        std::get<0>(ref)));

    torch::Tensor a = x.clone().requires_grad_(true);
    torch::Tensor b = x.clone().requires_grad_(true);
    torch::Tensor g = torch::randn(std::get<0>(ref).sizes());
    (dlcore::detail::max_pool2x2(a) * g).sum().backward();
    (F::max_pool2d(b, F::MaxPool2dFuncOptions(2)) * g).sum().backward();
    CHECK(torch::equal(a.grad(), b.grad()));
  }
  // NaN wins like in PyTorch's kernel; non-contiguous input is handled.
  torch::Tensor nan = torch::randn({2, 3, 6, 8});
  nan.index_put_({0, 1, 2, 3}, std::nan(""));
  nan.index_put_({1, 2, 5, 5}, std::nan(""));
  auto nan_ref = F::max_pool2d_with_indices(nan, F::MaxPool2dFuncOptions(2));
  auto nan_fast = dlcore::detail::max_pool2x2_with_indices(nan, true);
  CHECK(torch::equal(nan_fast.second, std::get<1>(nan_ref)));
  CHECK(torch::allclose(
      nan_fast.first, std::get<0>(nan_ref), 0, 0, /*equal_nan=*/true));
  // Many NaNs (any window position, several per window, a NaN followed by
  // larger values) at every row width: vector groups, the overlapping last
  // group and rows of fewer than 4 outputs.
  for (int64_t w : {2, 4, 6, 8, 10, 14, 28}) {
    torch::Tensor x = torch::randn({2, 3, 6, w});
    x.masked_fill_(torch::rand(x.sizes()) < 0.15, std::nan(""));
    auto want = F::max_pool2d_with_indices(x, F::MaxPool2dFuncOptions(2));
    auto got = dlcore::detail::max_pool2x2_with_indices(x, true);
    INFO("w=" << w);
    CHECK(torch::equal(got.second, std::get<1>(want)));
    CHECK(torch::allclose(
        got.first, std::get<0>(want), 0, 0, /*equal_nan=*/true));
  }
  torch::Tensor strided = torch::randn({4, 2, 8, 8}).transpose(0, 1);
  CHECK(torch::equal(
      dlcore::detail::max_pool2x2(strided),
      F::max_pool2d(strided, F::MaxPool2dFuncOptions(2))));
  // Odd sizes and other dtypes fall back to max_pool2d.
  torch::Tensor odd = torch::randn({1, 2, 5, 7});
  CHECK(torch::equal(
      dlcore::detail::max_pool2x2(odd),
      F::max_pool2d(odd, F::MaxPool2dFuncOptions(2))));
}

TEST_CASE(
    "LeNet5's gradients equal those of the plain max_pool2d formulation",
    "[lenet5]") {
  namespace F = torch::nn::functional;
  torch::manual_seed(6);
  dlcore::LeNet5 net;
  torch::Tensor x = torch::randn({8, 1, 28, 28});
  torch::Tensor y = torch::randint(10, {8}, torch::kLong);
  F::cross_entropy(net->forward(x), y).backward();
  std::vector<torch::Tensor> fast;
  for (const auto& p : net->parameters()) {
    fast.push_back(p.grad().clone());
    p.mutable_grad() = torch::Tensor();
  }
  torch::Tensor h = F::max_pool2d(
      torch::relu(net->conv1->forward(x)), F::MaxPool2dFuncOptions(2));
  h = F::max_pool2d(
      torch::relu(net->conv2->forward(h)), F::MaxPool2dFuncOptions(2));
  h = net->fc3->forward(torch::relu(
      net->fc2->forward(torch::relu(net->fc1->forward(h.view({-1, 400}))))));
  F::cross_entropy(h, y).backward();
  auto params = net->parameters();
  const bool direct_conv1 = dlcore::detail::conv1ch_supported();
  for (std::size_t i = 0; i < params.size(); ++i) {
    // Bit-identical with LibTorch's conv1; with the direct single-channel
    // kernel equal up to the order of float additions.
    if (direct_conv1) {
      CHECK(torch::allclose(params[i].grad(), fast[i], 1e-4, 1e-6));
    } else {
      CHECK(torch::equal(params[i].grad(), fast[i]));
    }
  }
}

TEST_CASE(
    "LeNet5 rejects bad inputs and options with clear errors", "[lenet5]") {
  dlcore::LeNet5 net;
  try {
    net->forward(torch::randn({2, 3, 28, 28}));
    FAIL("expected an error");
  } catch (const c10::Error& e) {
    CHECK_THAT(
        e.what_without_backtrace(),
        Catch::Contains("LeNet5: expected input of shape [N, 1, 28, 28]") &&
            Catch::Contains("[2, 3, 28, 28]"));
  }
  CHECK_THROWS_WITH(
      net->forward(torch::randn({784})),
      Catch::Contains("LeNet5: expected input of shape"));
  try {
    dlcore::LeNet5 bad(0);
    FAIL("expected an error");
  } catch (const c10::Error& e) {
    CHECK_THAT(
        e.what_without_backtrace(),
        Catch::Contains("LeNet5: num_classes must be >= 1, but got 0"));
  }
}

TEST_CASE("LeNet5 state survives a save/load round trip", "[lenet5]") {
  dlcore::LeNet5 a;
  dlcore::LeNet5 b;
  std::stringstream ss;
  torch::save(a, ss);
  torch::load(b, ss);
  torch::Tensor x = torch::randn({2, 1, 28, 28});
  CHECK(torch::equal(a->forward(x), b->forward(x)));
}

namespace {

struct ConvCase {
  int64_t n, co, h, w, pad;
};

// Output widths below, at and across 16 lanes; channel counts across the
// group of 8 accumulators.
const ConvCase kConvCases[] = {
    {64, 6, 28, 28, 2},
    {3, 1, 5, 5, 0},
    {2, 8, 9, 7, 1},
    {5, 9, 20, 33, 2},
    {1, 16, 12, 40, 0}};

struct ConvRun {
  torch::Tensor y, dw, db;
};

// conv + ReLU, forward and backward against the upstream gradient `g`,
// through dlcore's kernel (fast) or conv2d + relu (LibTorch's reference).
ConvRun run_conv(
    bool fast,
    const torch::Tensor& x,
    const torch::Tensor& w,
    const torch::Tensor& b,
    const torch::Tensor& g,
    int64_t pad) {
  namespace F = torch::nn::functional;
  torch::Tensor wr = w.detach().clone().requires_grad_();
  torch::Tensor br = b.detach().clone().requires_grad_();
  torch::Tensor y =
      fast ? dlcore::detail::Conv1chReluFunction::apply(x, wr, br, pad)
           : torch::relu(F::conv2d(
                 x, wr, F::Conv2dFuncOptions().bias(br).padding(pad)));
  (y * g).sum().backward();
  return {y.detach(), wr.grad(), br.grad()};
}

} // namespace

TEST_CASE(
    "The single-channel conv + ReLU kernel equals conv2d + relu exactly where "
    "every sum is exact",
    "[lenet5]") {
  if (!dlcore::detail::conv1ch_supported()) {
    WARN("SKIPPED: no AVX-512 here; LeNet5 keeps LibTorch's convolution");
    return;
  }
  // Inputs on small dyadic grids: every product and every partial sum of the
  // forward pass (25 taps + bias) and of the weight and bias gradients (up to
  // 64 * 28 * 28 = 50,176 terms of at most 4 * 2 = 8, so below 2^19 in steps
  // of 1/8) is exactly representable in float32, so the result does not
  // depend on the order of summation. Any kernel (ours, oneDNN's, any
  // version's) must then give identical bits; a difference is a bug, not
  // rounding. The bias is an odd multiple of 1/16 while the taps sum to
  // multiples of 1/8, so no output is exactly 0, where ReLU's gradient is a
  // convention.
  auto gen = at::detail::createCPUGenerator(11);
  for (const ConvCase& c : kConvCases) {
    INFO("n=" << c.n << " co=" << c.co << " h=" << c.h << " w=" << c.w);
    torch::Tensor x =
        torch::randint(-4, 5, {c.n, 1, c.h, c.w}, gen).to(torch::kFloat);
    torch::Tensor w =
        torch::randint(-8, 9, {c.co, 1, 5, 5}, gen).to(torch::kFloat) / 8;
    torch::Tensor b =
        (2 * torch::randint(-8, 8, {c.co}, gen).to(torch::kFloat) + 1) / 16;
    REQUIRE(dlcore::detail::conv1ch_applies(x, w, b));
    const int64_t oh = c.h + 2 * c.pad - 4;
    const int64_t ow = c.w + 2 * c.pad - 4;
    torch::Tensor g =
        torch::randint(-2, 3, {c.n, c.co, oh, ow}, gen).to(torch::kFloat);
    const ConvRun fast = run_conv(true, x, w, b, g, c.pad);
    const ConvRun ref = run_conv(false, x, w, b, g, c.pad);
    REQUIRE(fast.y.sizes() == ref.y.sizes());
    CHECK(torch::equal(fast.y, ref.y));
    CHECK(torch::equal(fast.dw, ref.dw));
    CHECK(torch::equal(fast.db, ref.db));
  }
}

TEST_CASE(
    "The single-channel conv + ReLU kernel stays within float32's summation "
    "bound of the exact result on random data",
    "[lenet5]") {
  if (!dlcore::detail::conv1ch_supported()) {
    WARN("SKIPPED: no AVX-512 here; LeNet5 keeps LibTorch's convolution");
    return;
  }
  // Each result is a sum of T terms (forward: 25 taps + bias; weight
  // gradient: N * OH * OW products; bias gradient: N * OH * OW terms),
  // accumulated in float32 in an order each implementation picks. For any
  // order, |fl(sum) - sum| <= gamma(T) * sum |term|, gamma(T) = T u / (1 - T
  // u), u = 2^-24 (Higham, Accuracy and Stability of Numerical Algorithms,
  // 2nd ed., eq. 4.4); products add one more rounding, within T + 1. Both
  // the kernel and conv2d are checked against the float64 result with that
  // bound, computed per element from the same sums over |terms|. LibTorch
  // 2.11's oneDNN on AVX-512 sums the 50,176 weight-gradient terms in
  // another order than 1.13's, and the two float32 results differ by more
  // than a fixed 1e-4; both are within this bound.
  auto gen = at::detail::createCPUGenerator(12);
  constexpr double u = 1.0 / 16777216.0;
  auto gamma = [&](double terms) {
    return (terms + 1) * u / (1 - (terms + 1) * u);
  };
  auto within = [](const torch::Tensor& got,
                   const torch::Tensor& exact,
                   const torch::Tensor& bound) {
    return (got.to(torch::kDouble) - exact).abs().le(bound).all().item<bool>();
  };
  for (const ConvCase& c : kConvCases) {
    INFO("n=" << c.n << " co=" << c.co << " h=" << c.h << " w=" << c.w);
    torch::Tensor x = torch::randn({c.n, 1, c.h, c.w}, gen);
    torch::Tensor w = 0.3 * torch::randn({c.co, 1, 5, 5}, gen);
    torch::Tensor b = 0.1 * torch::randn({c.co}, gen);
    REQUIRE(dlcore::detail::conv1ch_applies(x, w, b));
    const int64_t oh = c.h + 2 * c.pad - 4;
    const int64_t ow = c.w + 2 * c.pad - 4;
    torch::Tensor g = torch::randn({c.n, c.co, oh, ow}, gen);
    const ConvRun fast = run_conv(true, x, w, b, g, c.pad);
    const ConvRun ref = run_conv(false, x, w, b, g, c.pad);
    const ConvRun exact = run_conv(
        false,
        x.to(torch::kDouble),
        w.to(torch::kDouble),
        b.to(torch::kDouble),
        g.to(torch::kDouble),
        c.pad);
    // Sums over |terms|: the same convolution on absolute values. ReLU is
    // 1-Lipschitz, so the pre-activation's bound holds for the output. The
    // gradients take the exact result's ReLU mask; an output whose float32
    // pre-activation lands on the other side of 0 moves a gradient by one
    // term, far inside the bound (which is why the exact test above is the
    // one that catches a wrong term).
    namespace F = torch::nn::functional;
    const torch::Tensor mask = exact.y.gt(0).to(torch::kDouble);
    const torch::Tensor y_abs = F::conv2d(
        x.to(torch::kDouble).abs(),
        w.to(torch::kDouble).abs(),
        F::Conv2dFuncOptions().bias(b.to(torch::kDouble).abs()).padding(c.pad));
    const ConvRun abs_terms = run_conv(
        false,
        x.to(torch::kDouble).abs(),
        torch::zeros({c.co, 1, 5, 5}, torch::kDouble),
        torch::full({c.co}, 1.0, torch::kDouble),
        g.to(torch::kDouble).abs() * mask,
        c.pad);
    const double grad_terms = static_cast<double>(c.n * oh * ow);
    const torch::Tensor y_bound = gamma(26) * y_abs;
    CHECK(within(fast.y, exact.y, y_bound));
    CHECK(within(ref.y, exact.y, y_bound));
    const torch::Tensor dw_bound = gamma(grad_terms) * abs_terms.dw;
    const torch::Tensor db_bound = gamma(grad_terms) * abs_terms.db;
    CHECK(within(fast.dw, exact.dw, dw_bound));
    CHECK(within(ref.dw, exact.dw, dw_bound));
    CHECK(within(fast.db, exact.db, db_bound));
    CHECK(within(ref.db, exact.db, db_bound));
  }
}

TEST_CASE(
    "The single-channel conv kernel is taken only where it applies",
    "[lenet5]") {
  if (!dlcore::detail::conv1ch_supported()) {
    // No AVX-512: LeNet5 keeps LibTorch's convolution.
    torch::Tensor x = torch::randn({2, 1, 28, 28});
    torch::Tensor wt = torch::randn({6, 1, 5, 5});
    CHECK_FALSE(dlcore::detail::conv1ch_applies(x, wt, torch::randn({6})));
    return;
  }
  // Inputs that need a gradient, other dtypes or kernel sizes are not
  // taken (LeNet5 then uses conv2d).
  torch::Tensor wt = torch::randn({6, 1, 5, 5});
  torch::Tensor bs = torch::randn({6});
  CHECK_FALSE(dlcore::detail::conv1ch_applies(
      torch::randn({2, 1, 8, 8}).requires_grad_(), wt, bs));
  CHECK_FALSE(dlcore::detail::conv1ch_applies(
      torch::randn({2, 1, 8, 8}, torch::kDouble), wt, bs));
  CHECK_FALSE(dlcore::detail::conv1ch_applies(
      torch::randn({2, 1, 8, 8}), torch::randn({6, 1, 3, 3}), bs));
  // LeNet5 gives the same logits and gradients on either path.
  dlcore::LeNet5 net;
  torch::Tensor img = torch::randn({7, 1, 28, 28});
  torch::Tensor fast = net->forward(img);
  torch::Tensor slow = net->forward(img.clone().requires_grad_());
  CHECK(torch::allclose(fast, slow, 1e-5, 1e-5));
}
