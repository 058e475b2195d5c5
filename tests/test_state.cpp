// State files: the files of tests/data/state/ (one per format and component,
// tests/data/state/README.md), written by the `[.generate]` test below from
// fixed scenarios; the tests load each with this build and compare the
// restored state with the same scenario run here.

#include <dlcore/data/batches.h>
#include <dlcore/data/hashtag_resampler.h>
#include <dlcore/data/pseudo_label.h>
#include <dlcore/optim/cosine_annealing_lr.h>
#include <dlcore/optim/linear_lr.h>
#include <dlcore/optim/reduce_lr_on_plateau.h>
#include <dlcore/optim/sequential_lr.h>
#include <dlcore/optim/step_lr.h>

#include <torch/optim/sgd.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <catch2/catch.hpp>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace {

// ------------------------------------------------------------- scenarios
// Each builds a component and brings it into a fixed state; the generator
// saves that state, the tests compare a loaded copy with it.

torch::optim::SGD two_group_sgd() {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (double lr : {0.1, 0.05}) {
    groups.emplace_back(
        std::vector<torch::Tensor>{torch::zeros({2}, torch::requires_grad())},
        std::make_unique<torch::optim::SGDOptions>(
            torch::optim::SGDOptions(lr).momentum(0.9)));
  }
  return torch::optim::SGD(groups, torch::optim::SGDOptions(0.1));
}

dlcore::StepLROptions step_lr_options() {
  return dlcore::StepLROptions(3).gamma(0.5);
}
constexpr int kStepLRSteps = 4;

dlcore::CosineAnnealingWarmRestartsOptions warm_restarts_options() {
  return dlcore::CosineAnnealingWarmRestartsOptions(3).t_mult(2).eta_min(1e-3);
}
constexpr int kWarmRestartsSteps = 5;

dlcore::ReduceLROnPlateauOptions plateau_options() {
  return dlcore::ReduceLROnPlateauOptions().factor(0.5).patience(1);
}
const std::vector<double> kPlateauMetrics = {1.0, 0.9, 0.95, 0.97, 0.99};

/// LinearLR warm-up for 3 steps, then cosine decay; `opt` must outlive it.
std::unique_ptr<dlcore::SequentialLR> sequential(torch::optim::SGD& opt) {
  auto warmup = std::make_shared<dlcore::LinearLR>(
      opt, dlcore::LinearLROptions().start_factor(0.25).total_iters(3));
  auto cosine = std::make_shared<dlcore::CosineAnnealingLR>(
      opt, dlcore::CosineAnnealingLROptions(10).eta_min(1e-3));
  return std::make_unique<dlcore::SequentialLR>(
      opt,
      std::vector<std::shared_ptr<dlcore::LRScheduler>>{warmup, cosine},
      std::vector<int64_t>{3});
}
constexpr int kSequentialSteps = 5;

dlcore::TopKTopPSelectorOptions selector_options() {
  return dlcore::TopKTopPSelectorOptions(4, 3, 2);
}

/// Two chunks with a gap between them (rows 0..9 and 20..25).
void fill_selector(dlcore::TopKTopPSelector& s) {
  torch::manual_seed(1);
  s.ingest(torch::rand({10, 4}), 0);
  s.ingest(torch::rand({6, 4}), 20);
}

dlcore::HashtagResampler make_resampler() {
  return dlcore::HashtagResampler(
      torch::tensor({0, 1, 1, 2, 0, 2, 2, 1}, torch::kLong),
      dlcore::HashtagResamplerOptions(dlcore::SamplingScheme::kSquareRoot)
          .seed(5));
}
constexpr int64_t kResamplerEpoch = 3;
constexpr int64_t kResamplerDraws = 2;

dlcore::Batches make_batches() {
  dlcore::TensorDataset ds{
      torch::arange(20, torch::kFloat).view({10, 2}),
      torch::arange(10, torch::kLong)};
  return dlcore::Batches(ds, dlcore::BatchesOptions(3).shuffle(true).seed(7));
}
constexpr int kBatchesPasses = 2;

void save_archive(
    const std::function<void(torch::serialize::OutputArchive&)>& save,
    const std::string& path) {
  torch::serialize::OutputArchive a;
  save(a);
  a.save_to(path);
}

} // namespace

// ------------------------------------------------------------- generator

TEST_CASE(
    "writes one state file of each component into $DLCORE_STATE_OUT",
    "[.generate]") {
  const char* out_env = std::getenv("DLCORE_STATE_OUT");
  REQUIRE(out_env != nullptr);
  const std::string out = out_env;
  {
    auto opt = two_group_sgd();
    dlcore::StepLR s(opt, step_lr_options());
    for (int i = 0; i < kStepLRSteps; ++i) {
      s.step();
    }
    s.save(out + "/step_lr.pt");
  }
  {
    auto opt = two_group_sgd();
    dlcore::CosineAnnealingWarmRestarts s(opt, warm_restarts_options());
    for (int i = 0; i < kWarmRestartsSteps; ++i) {
      s.step();
    }
    s.save(out + "/cosine_annealing_warm_restarts.pt");
  }
  {
    auto opt = two_group_sgd();
    dlcore::ReduceLROnPlateau s(opt, plateau_options());
    for (double m : kPlateauMetrics) {
      s.step(m);
    }
    s.save(out + "/reduce_lr_on_plateau.pt");
  }
  {
    auto opt = two_group_sgd();
    auto s = sequential(opt);
    for (int i = 0; i < kSequentialSteps; ++i) {
      s->step();
    }
    s->save(out + "/sequential_lr.pt");
  }
  {
    dlcore::TopKTopPSelector s(selector_options());
    fill_selector(s);
    s.save(out + "/top_k_top_p_selector.pt");
  }
  {
    auto r = make_resampler();
    r.set_epoch(kResamplerEpoch);
    r.next(kResamplerDraws);
    r.save(out + "/hashtag_resampler.pt");
  }
  {
    auto b = make_batches();
    for (int pass = 0; pass < kBatchesPasses; ++pass) {
      for (const auto& batch : b) {
        (void)batch;
      }
    }
    save_archive([&](auto& a) { b.save(a); }, out + "/batches.pt");
  }
}
