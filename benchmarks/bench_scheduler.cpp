// Cost of one scheduler step() of dlcore::CyclicLR and dlcore::OneCycleLR,
// for 1 and 8 param groups, against two named baselines measured in the same
// run:
//   * "StepLR": LibTorch's own torch::optim::StepLR::step() (the only
//     scheduler LibTorch ships), over the same optimizer;
//   * "write-loop": a bare loop that writes a precomputed LR into every
//     param group through OptimizerOptions::set_lr (the unavoidable work).
// Prints ns per step and per group, and the ratios. Target: < 1 us per group.
//
//   bench_scheduler [--steps 200000] [--repeats 7]

#include <dlcore/optim/cyclic_lr.h>
#include <dlcore/optim/one_cycle_lr.h>

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
      "%-36s %6s %10s %12s %10s %12s\n",
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

      auto opt_cyc = make_optimizer(kind, groups);
      dlcore::CyclicLR cyclic(
          *opt_cyc,
          dlcore::CyclicLROptions(1e-3, 0.1)
              .step_size_up(2000)
              .mode(dlcore::CyclicMode::kExpRange)
              .gamma(0.99999));
      const double t_cyc = time_ns([&] { cyclic.step(); }, steps, repeats);

      auto opt_cyc_nm = make_optimizer(kind, groups);
      dlcore::CyclicLR cyclic_nm(
          *opt_cyc_nm,
          dlcore::CyclicLROptions(1e-3, 0.1).step_size_up(2000).cycle_momentum(
              false));
      const double t_cyc_nm =
          time_ns([&] { cyclic_nm.step(); }, steps, repeats);

      auto opt_one = make_optimizer(kind, groups);
      dlcore::OneCycleLR one(
          *opt_one,
          dlcore::OneCycleLROptions(0.1).total_steps(
              int64_t{1} << 40)); // never runs out during the benchmark
      const double t_one = time_ns([&] { one.step(); }, steps, repeats);

      auto row = [&](const std::string& name, double ns) {
        std::printf(
            "%-36s %6d %10.1f %12.1f %10.2f %12.2f\n",
            (kind + " " + name).c_str(),
            groups,
            ns,
            ns / groups,
            ns / base_steplr,
            ns / base_write);
      };
      row("baseline torch::optim::StepLR", base_steplr);
      row("baseline write-loop (set_lr)", base_write);
      row("CyclicLR exp_range + momentum", t_cyc);
      row("CyclicLR triangular, no momentum", t_cyc_nm);
      row("OneCycleLR cos + momentum", t_one);
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::cerr << "bench_scheduler: " << e.what() << "\n";
  return 1;
}
