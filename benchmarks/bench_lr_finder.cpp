// Overhead of dlcore::LRFinder::range_test over a plain training loop on the
// same batches, measured in one run. The named baseline, "plain loop", is the
// loop a user would write by hand for the same sweep: per batch set the LR
// (OptimizerOptions::set_lr), zero_grad, forward, cross-entropy, backward,
// optimizer step and loss.item() (the loss is read either way). The finder
// adds the snapshot of model and optimizer before the test, the smoothing and
// divergence checks, the records, and the bitwise restore afterwards.
//
// Two models: LeNet-5 on 28x28 images (the problem-1 workload) and a single
// Linear(784, 10) layer (the worst case: the least compute per step to hide
// the overhead). Baseline and finder runs alternate; medians are reported.
// Target: overhead < 5 %.
//
//   bench_lr_finder [--iters 100] [--batch 64] [--repeats 7] [--threads 1]

#include <dlcore/nn/models/lenet5.h>
#include <dlcore/study/lr_finder.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <functional>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

namespace {

struct Batch {
  torch::Tensor data;
  torch::Tensor targets;
};

std::vector<Batch> make_batches(int64_t n, int64_t bs, bool images) {
  auto gen = at::detail::createCPUGenerator(1);
  std::vector<Batch> out;
  for (int64_t i = 0; i < n; ++i) {
    auto x = images ? torch::randn({bs, 1, 28, 28}, gen)
                    : torch::randn({bs, 784}, gen);
    out.push_back({x, torch::randint(0, 10, {bs}, gen, torch::kLong)});
  }
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double cpu_now() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) +
         1e-9 * static_cast<double>(ts.tv_nsec);
}

/// Wall-clock and process CPU seconds of one call. On a shared machine the
/// CPU time is the steadier of the two (other processes inflate wall time).
std::pair<double, double> seconds_of(const std::function<void()>& f) {
  const double c0 = cpu_now();
  const auto t0 = std::chrono::steady_clock::now();
  f();
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  return {wall, cpu_now() - c0};
}

template <typename Model>
void bench(
    const std::string& name,
    Model model,
    const std::vector<Batch>& batches,
    int64_t iters,
    int repeats) {
  torch::optim::SGD sgd(
      model->parameters(), torch::optim::SGDOptions(1e-3).momentum(0.9));
  const auto opts = dlcore::LRFinderOptions()
                        .start_lr(1e-5)
                        .end_lr(1e-2)
                        .num_iter(iters)
                        .stop_on_divergence(false);

  auto plain = [&] {
    model->train();
    for (int64_t i = 0; i < iters; ++i) {
      const auto& b = batches[static_cast<std::size_t>(i) % batches.size()];
      for (auto& g : sgd.param_groups()) {
        g.options().set_lr(opts.lr_at(i));
      }
      sgd.zero_grad();
      auto loss = torch::nn::functional::cross_entropy(
          model->forward(b.data), b.targets);
      loss.backward();
      sgd.step();
      volatile double v = loss.template item<double>();
      (void)v;
    }
  };
  int64_t recorded = 0;
  auto finder = [&] {
    dlcore::LRFinder f(model, sgd, opts);
    recorded = f.range_test(batches).iterations();
  };

  plain(); // warm-up (allocations, momentum buffers)
  finder();
  std::vector<double> wp, wf, cp, cf;
  for (int r = 0; r < repeats; ++r) {
    const auto p = seconds_of(plain);
    const auto f = seconds_of(finder);
    wp.push_back(p.first);
    cp.push_back(p.second);
    wf.push_back(f.first);
    cf.push_back(f.second);
  }
  for (int k = 0; k < 2; ++k) {
    const double p = median(k == 0 ? cp : wp);
    const double f = median(k == 0 ? cf : wf);
    std::printf(
        "%-20s %-5s %9.2f ms %9.2f ms   %7.3f   %+6.2f %%   (%lld "
        "iterations)\n",
        name.c_str(),
        k == 0 ? "cpu" : "wall",
        p * 1e3,
        f * 1e3,
        f / p,
        (f / p - 1.0) * 100.0,
        static_cast<long long>(recorded));
  }
}

} // namespace

int main(int argc, char** argv) try {
  CLI::App app{"LRFinder overhead over a plain training loop"};
  int64_t iters = 100;
  int64_t batch = 64;
  int repeats = 7;
  int threads = 1;
  app.add_option("--iters", iters, "iterations per range test");
  app.add_option("--batch", batch, "batch size");
  app.add_option("--repeats", repeats, "timed repetitions (median)");
  app.add_option("--threads", threads, "torch intra-op threads");
  CLI11_PARSE(app, argc, argv);
  torch::set_num_threads(threads);

  std::printf(
      "LRFinder::range_test vs baseline \"plain loop\" (same batches, same LR "
      "schedule)\n%lld iterations, batch %lld, %d threads, median of %d\n\n",
      static_cast<long long>(iters),
      static_cast<long long>(batch),
      threads,
      repeats);
  std::printf(
      "%-20s %-5s %12s %12s   %7s   %8s\n",
      "model",
      "time",
      "plain loop",
      "LRFinder",
      "ratio",
      "overhead");
  torch::manual_seed(0);
  bench(
      "LeNet-5 1x28x28",
      dlcore::LeNet5(),
      make_batches(20, batch, true),
      iters,
      repeats);
  bench(
      "Linear(784, 10)",
      torch::nn::Linear(784, 10),
      make_batches(20, batch, false),
      iters,
      repeats);
  return 0;
} catch (const std::exception& e) {
  std::cerr << "bench_lr_finder: " << e.what() << '\n';
  return 1;
}
