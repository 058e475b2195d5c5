#include <dlcore/optim/momentum.h>

namespace {
std::vector<torch::Tensor> params() {
  return {torch::zeros({2}, torch::requires_grad())};
}
} // namespace

TEST_CASE(
    "SGD and RMSprop expose momentum, Adam and AdamW beta1", "[momentum]") {
  torch::optim::SGD sgd(params(), torch::optim::SGDOptions(0.1).momentum(0.9));
  torch::optim::RMSprop rms(params(), torch::optim::RMSpropOptions(0.1));
  torch::optim::Adam adam(params(), torch::optim::AdamOptions(0.1));
  torch::optim::AdamW adamw(params(), torch::optim::AdamWOptions(0.1));
  torch::optim::Adagrad adagrad(params(), torch::optim::AdagradOptions(0.1));

  CHECK(
      dlcore::momentum_kind(sgd.param_groups()[0].options()) ==
      dlcore::MomentumKind::kMomentum);
  CHECK(
      dlcore::momentum_kind(rms.param_groups()[0].options()) ==
      dlcore::MomentumKind::kMomentum);
  CHECK(
      dlcore::momentum_kind(adam.param_groups()[0].options()) ==
      dlcore::MomentumKind::kBeta1);
  CHECK(
      dlcore::momentum_kind(adamw.param_groups()[0].options()) ==
      dlcore::MomentumKind::kBeta1);
  CHECK(
      dlcore::momentum_kind(adagrad.param_groups()[0].options()) ==
      dlcore::MomentumKind::kNone);

  CHECK(dlcore::group_momenta(sgd) == std::vector<double>{0.9});
  CHECK(dlcore::group_lrs(adam) == std::vector<double>{0.1});
  CHECK(std::isnan(dlcore::group_momenta(adagrad)[0]));
}

TEST_CASE("set_momentum writes beta1 and leaves beta2 alone", "[momentum]") {
  torch::optim::Adam adam(
      params(), torch::optim::AdamOptions(0.1).betas({0.9, 0.95}));
  auto& o = adam.param_groups()[0].options();
  REQUIRE(dlcore::set_momentum(o, 0.85));
  const auto& a = static_cast<torch::optim::AdamOptions&>(o);
  CHECK(std::get<0>(a.betas()) == 0.85);
  CHECK(std::get<1>(a.betas()) == 0.95);
}

TEST_CASE("set_momentum refuses an optimizer without momentum", "[momentum]") {
  torch::optim::Adagrad adagrad(params(), torch::optim::AdagradOptions(0.1));
  CHECK_FALSE(dlcore::set_momentum(adagrad.param_groups()[0].options(), 0.9));
  CHECK_FALSE(dlcore::get_momentum(adagrad.param_groups()[0].options()));
}
