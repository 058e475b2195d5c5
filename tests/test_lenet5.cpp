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
  CHECK(torch::allclose(net->forward(x), h));
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
