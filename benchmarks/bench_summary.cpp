// Benchmark of the architecture-analysis tools, in one run, per model
// (AlexNet, ResNet-18, ResNet-50, GoogLeNet; VGG-19 with --vgg):
//
//  1. dlcore::analyze_layers on the model's layer specs (pure arithmetic,
//     building the specs included) against the named baseline "measure with a
//     real forward pass" = dlcore::summary(model, {1, 3, 224, 224}) — what
//     torchinfo/fvcore do in Python.
//  2. The cost of tracing: dlcore::summary against the named baseline
//     "plain forward" = model->forward(x) in eval mode under NoGradGuard.
//
// Prints median wall and process-CPU seconds and the ratios.
// Usage: bench_summary [--repeats N] [--threads N] [--vgg]

#include <dlcore/nn/layer_math.h>
#include <dlcore/nn/models/alexnet.h>
#include <dlcore/nn/models/googlenet.h>
#include <dlcore/nn/models/resnet.h>
#include <dlcore/nn/models/vgg.h>
#include <dlcore/nn/summary.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <functional>
#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

namespace {

struct Timing {
  double wall = 0;
  double cpu = 0;
};

/// Median wall and process-CPU seconds of `repeats` runs of `body` (after
/// one untimed warm-up run).
Timing median_seconds(int repeats, const std::function<int64_t()>& body) {
  std::vector<double> wall, cpu;
  int64_t sink = body();
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::clock_t c0 = std::clock();
    sink += body();
    const std::clock_t c1 = std::clock();
    const auto t1 = std::chrono::steady_clock::now();
    wall.push_back(std::chrono::duration<double>(t1 - t0).count());
    cpu.push_back(static_cast<double>(c1 - c0) / CLOCKS_PER_SEC);
  }
  if (sink == 42) {
    std::cout << "";
  }
  std::sort(wall.begin(), wall.end());
  std::sort(cpu.begin(), cpu.end());
  return {wall[wall.size() / 2], cpu[cpu.size() / 2]};
}

void report(
    const std::string& what,
    const std::string& baseline,
    const Timing& base,
    const std::string& candidate,
    const Timing& cand) {
  std::cout << std::fixed << std::setprecision(6) << "  " << what << ": "
            << baseline << " " << base.wall << " s wall (" << base.cpu
            << " s CPU), " << candidate << " " << cand.wall << " s wall ("
            << cand.cpu << " s CPU); ratio baseline/candidate "
            << std::setprecision(2) << base.wall / cand.wall << "x wall, "
            << base.cpu / std::max(cand.cpu, 1e-9) << "x CPU\n";
}

} // namespace

int main(int argc, char** argv) try {
  CLI::App app{"analyze_layers vs summary vs plain forward"};
  int repeats = 5;
  int threads = 0;
  bool vgg = false;
  app.add_option("--repeats", repeats, "timed repetitions (median)")
      ->capture_default_str();
  app.add_option("--threads", threads, "LibTorch threads (0: default)")
      ->capture_default_str();
  app.add_flag("--vgg", vgg, "also VGG-19 (slow to build)");
  CLI11_PARSE(app, argc, argv);
  if (threads > 0) {
    torch::set_num_threads(threads);
  }
  std::cout << "threads: " << torch::get_num_threads() << ", repeats "
            << repeats << "\n";
  torch::manual_seed(0);

  struct Model {
    std::string name;
    std::shared_ptr<torch::nn::Module> module;
    std::function<torch::Tensor(const torch::Tensor&)> forward;
    std::function<std::vector<dlcore::LayerSpec>()> layers;
  };
  std::vector<Model> models;
  {
    dlcore::AlexNet m;
    models.push_back(
        {"AlexNet",
         m.ptr(),
         [m](const torch::Tensor& x) mutable { return m->forward(x); },
         [] { return dlcore::alexnet_layers(); }});
  }
  for (int64_t depth : {18, 50}) {
    dlcore::ResNet m(depth);
    models.push_back(
        {"ResNet-" + std::to_string(depth),
         m.ptr(),
         [m](const torch::Tensor& x) mutable { return m->forward(x); },
         [depth] { return dlcore::resnet_layers(depth); }});
  }
  {
    dlcore::GoogLeNet m;
    models.push_back(
        {"GoogLeNet",
         m.ptr(),
         [m](const torch::Tensor& x) mutable { return m->forward(x); },
         [] { return dlcore::googlenet_layers(); }});
  }
  if (vgg) {
    dlcore::VGG m(19);
    models.push_back(
        {"VGG-19",
         m.ptr(),
         [m](const torch::Tensor& x) mutable { return m->forward(x); },
         [] { return dlcore::vgg_layers(19); }});
  }

  const std::vector<int64_t> shape = {1, 3, 224, 224};
  for (auto& m : models) {
    std::cout << m.name << "\n";
    m.module->eval();
    const auto x = torch::zeros(shape);
    const Timing analytic = median_seconds(std::max(repeats, 50), [&] {
      return dlcore::analyze_layers(m.layers(), {3, 224, 224}).macs;
    });
    const Timing traced = median_seconds(
        repeats, [&] { return dlcore::summary(m.module, shape).total_macs; });
    const Timing plain = median_seconds(repeats, [&] {
      torch::NoGradGuard no_grad;
      return m.forward(x).numel();
    });
    report(
        "analysis",
        "summary (real forward)",
        traced,
        "analyze_layers",
        analytic);
    report("tracing", "plain forward", plain, "summary", traced);
  }
  return 0;
} catch (const std::exception& e) {
  std::cerr << "bench_summary: " << e.what() << "\n";
  return 1;
}
