// Cost of one scheduler step() of every dlcore scheduler (CyclicLR,
// OneCycleLR and the family on LRScheduler: LambdaLR, MultiplicativeLR,
// StepLR, MultiStepLR, ExponentialLR, ConstantLR, LinearLR, PolynomialLR,
// CosineAnnealingLR, CosineAnnealingWarmRestarts, SequentialLR,
// ChainedScheduler, ReduceLROnPlateau), for 1 and 8 param groups, against
// two named baselines measured in the same run:
//   * "StepLR": LibTorch's own torch::optim::StepLR::step() (the only
//     scheduler LibTorch 1.13 ships), over the same optimizer;
//   * "write-loop": a bare loop that writes a precomputed LR into every
//     param group through OptimizerOptions::set_lr (the unavoidable work).
// Prints ns per step and per group, and the ratios. Target: < 1 us per group.
//
//   bench_scheduler [--steps 200000] [--repeats 7]

#include <dlcore/optim/cosine_annealing_lr.h>
#include <dlcore/optim/cyclic_lr.h>
#include <dlcore/optim/lambda_lr.h>
#include <dlcore/optim/linear_lr.h>
#include <dlcore/optim/one_cycle_lr.h>
#include <dlcore/optim/reduce_lr_on_plateau.h>
#include <dlcore/optim/sequential_lr.h>
#include <dlcore/optim/step_lr.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace {

std::vector<torch::optim::OptimizerParamGroup> make_groups(int n) {
  std::vector<torch::optim::OptimizerParamGroup> out;
  for (int i = 0; i < n; ++i) {
    out.emplace_back(std::vector<torch::Tensor>{torch::zeros({4})});
  }
  return out;
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(
    const std::string& kind, int groups) {
  if (kind == "SGD") {
    return std::make_unique<torch::optim::SGD>(
        make_groups(groups), torch::optim::SGDOptions(0.1).momentum(0.9));
  }
  return std::make_unique<torch::optim::Adam>(
      make_groups(groups), torch::optim::AdamOptions(0.1));
}

// Median over `repeats` of the mean ns per call of `steps` calls.
double time_ns(const std::function<void()>& step, int64_t steps, int repeats) {
  for (int64_t i = 0; i < steps / 10; ++i) {
    step(); // warm-up
  }
  std::vector<double> samples;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < steps; ++i) {
      step();
    }
    const auto t1 = std::chrono::steady_clock::now();
    samples.push_back(
        std::chrono::duration<double, std::nano>(t1 - t0).count() / steps);
  }
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

} // namespace

int main(int argc, char** argv) try {
  CLI::App app{"dlcore scheduler step() cost against StepLR and a write loop"};
  int64_t steps = 200000;
  int repeats = 7;
  app.add_option("--steps", steps, "step() calls per timing sample");
  app.add_option("--repeats", repeats, "timing samples (median is reported)");
  CLI11_PARSE(app, argc, argv);

  std::printf(
      "%-52s %6s %10s %12s %10s %12s\n",
      "case",
      "groups",
      "ns/step",
      "ns/step/grp",
      "vs StepLR",
      "vs write-loop");
  for (const std::string kind : {"SGD", "Adam"}) {
    for (int groups : {1, 8}) {
      // Baseline 1: LibTorch's StepLR.
      auto opt_step = make_optimizer(kind, groups);
      torch::optim::StepLR step_lr(*opt_step, 1000000, 0.5);
      const double base_steplr =
          time_ns([&] { step_lr.step(); }, steps, repeats);

      // Baseline 2: write a precomputed LR into every group.
      auto opt_write = make_optimizer(kind, groups);
      double lr = 0.1;
      const double base_write = time_ns(
          [&] {
            lr = lr > 1.0 ? 0.1 : lr * 1.0000001;
            for (auto& g : opt_write->param_groups()) {
              g.options().set_lr(lr);
            }
          },
          steps,
          repeats);

      // Every scheduler gets its own optimizer; `make` returns its step.
      struct Case {
        std::string name;
        std::function<std::function<void()>(torch::optim::Optimizer&)> make;
      };
      using dlcore::LRScheduler;
      const std::vector<Case> cases = {
          {"CyclicLR exp_range + momentum",
           [](torch::optim::Optimizer& o) {
             auto s = std::make_shared<dlcore::CyclicLR>(
                 o,
                 dlcore::CyclicLROptions(1e-3, 0.1)
                     .step_size_up(2000)
                     .mode(dlcore::CyclicMode::kExpRange)
                     .gamma(0.99999));
             return std::function<void()>([s] { s->step(); });
           }},
          {"CyclicLR triangular, no momentum",
           [](torch::optim::Optimizer& o) {
             auto s = std::make_shared<dlcore::CyclicLR>(
                 o,
                 dlcore::CyclicLROptions(1e-3, 0.1)
                     .step_size_up(2000)
                     .cycle_momentum(false));
             return std::function<void()>([s] { s->step(); });
           }},
          {"OneCycleLR cos + momentum",
           [](torch::optim::Optimizer& o) {
             // never runs out during the benchmark
             auto s = std::make_shared<dlcore::OneCycleLR>(
                 o,
                 dlcore::OneCycleLROptions(0.1).total_steps(int64_t{1} << 40));
             return std::function<void()>([s] { s->step(); });
           }},
          {"StepLR (dlcore)",
           [](torch::optim::Optimizer& o) {
             auto s = std::make_shared<dlcore::StepLR>(
                 o, dlcore::StepLROptions(1000).gamma(0.999));
             return std::function<void()>([s] { s->step(); });
           }},
          {"MultiStepLR, 4 milestones",
           [](torch::optim::Optimizer& o) {
             auto s = std::make_shared<dlcore::MultiStepLR>(
                 o, dlcore::MultiStepLROptions({10, 100, 1000, 10000}));
             return std::function<void()>([s] { s->step(); });
           }},
          {"ExponentialLR",
           [](torch::optim::Optimizer& o) {
             auto s = std::make_shared<dlcore::ExponentialLR>(
                 o, dlcore::ExponentialLROptions(0.9999999));
             return std::function<void()>([s] { s->step(); });
           }},
          {"LinearLR (in its ramp)",
           [](torch::optim::Optimizer& o) {
             auto s = std::make_shared<dlcore::LinearLR>(
                 o,
                 dlcore::LinearLROptions().start_factor(0.5).total_iters(
                     int64_t{1} << 40));
             return std::function<void()>([s] { s->step(); });
           }},
          {"PolynomialLR (in its decay)",
           [](torch::optim::Optimizer& o) {
             auto s = std::make_shared<dlcore::PolynomialLR>(
                 o,
                 dlcore::PolynomialLROptions()
                     .total_iters(int64_t{1} << 40)
                     .power(0.9));
             return std::function<void()>([s] { s->step(); });
           }},
          {"LambdaLR",
           [](torch::optim::Optimizer& o) {
             auto s = std::make_shared<dlcore::LambdaLR>(
                 o, dlcore::LambdaLROptions([](int64_t e) {
                   return 1.0 / (1.0 + 1e-7 * static_cast<double>(e));
                 }));
             return std::function<void()>([s] { s->step(); });
           }},
          {"CosineAnnealingLR",
           [](torch::optim::Optimizer& o) {
             auto s = std::make_shared<dlcore::CosineAnnealingLR>(
                 o, dlcore::CosineAnnealingLROptions(1000).eta_min(1e-4));
             return std::function<void()>([s] { s->step(); });
           }},
          {"CosineAnnealingWarmRestarts step()",
           [](torch::optim::Optimizer& o) {
             auto s = std::make_shared<dlcore::CosineAnnealingWarmRestarts>(
                 o, dlcore::CosineAnnealingWarmRestartsOptions(1000).t_mult(1));
             return std::function<void()>([s] { s->step(); });
           }},
          {"CosineAnnealingWarmRestarts step(epoch)",
           [](torch::optim::Optimizer& o) {
             auto s = std::make_shared<dlcore::CosineAnnealingWarmRestarts>(
                 o, dlcore::CosineAnnealingWarmRestartsOptions(10).t_mult(2));
             auto i = std::make_shared<int64_t>(0);
             return std::function<void()>([s, i] {
               // 1000 batches per epoch, cycling over 200 epochs
               s->step(static_cast<double>(*i % 200000) / 1000.0);
               ++*i;
             });
           }},
          {"SequentialLR(LinearLR, CosineAnnealingLR)",
           [](torch::optim::Optimizer& o) {
             auto warmup = std::make_shared<dlcore::LinearLR>(
                 o,
                 dlcore::LinearLROptions().start_factor(0.1).total_iters(100));
             auto cosine = std::make_shared<dlcore::CosineAnnealingLR>(
                 o, dlcore::CosineAnnealingLROptions(1000));
             auto s = std::make_shared<dlcore::SequentialLR>(
                 o,
                 std::vector<std::shared_ptr<LRScheduler>>{warmup, cosine},
                 std::vector<int64_t>{100});
             return std::function<void()>([s] { s->step(); });
           }},
          {"ChainedScheduler(ConstantLR, ExponentialLR)",
           [](torch::optim::Optimizer& o) {
             auto constant = std::make_shared<dlcore::ConstantLR>(
                 o, dlcore::ConstantLROptions().factor(0.5).total_iters(10));
             auto decay = std::make_shared<dlcore::ExponentialLR>(
                 o, dlcore::ExponentialLROptions(0.9999999));
             auto s = std::make_shared<dlcore::ChainedScheduler>(
                 std::vector<std::shared_ptr<LRScheduler>>{constant, decay});
             return std::function<void()>([s] { s->step(); });
           }},
          {"ReduceLROnPlateau step(metric)",
           [](torch::optim::Optimizer& o) {
             auto s = std::make_shared<dlcore::ReduceLROnPlateau>(
                 o, dlcore::ReduceLROnPlateauOptions().patience(5));
             auto i = std::make_shared<int64_t>(0);
             return std::function<void()>([s, i] {
               s->step(1.0 / static_cast<double>(1 + (*i)++ % 100));
             });
           }},
      };

      auto row = [&](const std::string& name, double ns) {
        std::printf(
            "%-52s %6d %10.1f %12.1f %10.2f %12.2f\n",
            (kind + " " + name).c_str(),
            groups,
            ns,
            ns / groups,
            ns / base_steplr,
            ns / base_write);
      };
      row("baseline torch::optim::StepLR", base_steplr);
      row("baseline write-loop (set_lr)", base_write);
      for (const auto& c : cases) {
        auto opt = make_optimizer(kind, groups);
        const std::function<void()> step = c.make(*opt);
        row(c.name, time_ns(step, steps, repeats));
      }
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::cerr << "bench_scheduler: " << e.what() << "\n";
  return 1;
}
