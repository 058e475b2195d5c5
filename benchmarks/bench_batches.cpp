// Benchmark of dlcore's data path against LibTorch's own, in one run:
//
//  1. Loading Fashion-MNIST's 60000 training images + labels:
//     dlcore::load_fashion_mnist on Debian's .gz files (inflate + validate +
//     normalize) against the named baseline torch::data::datasets::MNIST
//     (LibTorch's reader; it needs the files decompressed, which is done once
//     into a temporary folder and not timed).
//  2. One shuffled epoch of batch-64 iteration over those 60000 images:
//     dlcore::Batches (one index_select per batch) against the named baseline
//     torch::data::make_data_loader(MNIST.map(Stack<>()), RandomSampler) with
//     no workers, the LibTorch tutorial pipeline (per-sample get + stack).
//
// Prints the median seconds of each and the ratio baseline / dlcore.
// Usage: bench_batches [--data-dir DIR] [--repeats N] [--threads N]
//                      [--batch-size N]

#include <dlcore/data/batches.h>
#include <dlcore/data/fashion_mnist.h>
#include <dlcore/data/idx.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

namespace {

/// Median wall and process-CPU seconds of `repeats` runs of `body`. The CPU
/// time is the honest number on a shared machine (wall time grows with the
/// other processes' load); with several LibTorch threads it sums them.
struct Timing {
  double wall = 0;
  double cpu = 0;
};

Timing median_seconds(int repeats, const std::function<int64_t()>& body) {
  std::vector<double> wall;
  std::vector<double> cpu;
  int64_t sink = 0;
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
    std::cerr << "";
  }
  std::sort(wall.begin(), wall.end());
  std::sort(cpu.begin(), cpu.end());
  return Timing{wall[wall.size() / 2], cpu[cpu.size() / 2]};
}

void report(
    const std::string& what,
    const std::string& baseline,
    Timing base,
    Timing ours) {
  std::cout << std::fixed << std::setprecision(4) << what << "\n"
            << "  baseline (" << baseline << "): wall " << base.wall
            << " s, cpu " << base.cpu << " s\n"
            << "  dlcore: wall " << ours.wall << " s, cpu " << ours.cpu
            << " s\n"
            << "  ratio baseline/dlcore: wall " << std::setprecision(2)
            << base.wall / ours.wall << "x, cpu " << base.cpu / ours.cpu
            << "x\n";
}

} // namespace

int main(int argc, char** argv) try {
  CLI::App app{"dlcore data path vs LibTorch's MNIST reader and DataLoader"};
  std::string data_dir = dlcore::default_fashion_mnist_dir();
  int repeats = 5;
  int threads = 0;
  int64_t batch_size = 64;
  app.add_option("--data-dir", data_dir, "Fashion-MNIST folder (.gz files)");
  app.add_option("--repeats", repeats, "timed repetitions (median reported)")
      ->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "LibTorch threads (0: default)");
  app.add_option("--batch-size", batch_size, "batch size")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  if (threads > 0) {
    torch::set_num_threads(threads);
  }
  std::cout << "threads: " << torch::get_num_threads()
            << ", repeats: " << repeats << ", batch size: " << batch_size
            << "\n";

  // LibTorch's MNIST reader wants plain files with the MNIST names.
  namespace fs = std::filesystem;
  std::string tmpl =
      (fs::temp_directory_path() / "dlcore_bench_XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    throw std::runtime_error("cannot create a temporary folder");
  }
  const fs::path plain = tmpl;
  for (const char* stem :
       {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"}) {
    dlcore::write_idx(
        (plain / stem).string(),
        dlcore::read_idx(data_dir + "/" + stem + ".gz"),
        false);
  }

  // 1. Loading.
  const Timing ours_load = median_seconds(repeats, [&] {
    return dlcore::load_fashion_mnist(data_dir, true).size();
  });
  const Timing ours_load_plain = median_seconds(repeats, [&] {
    return dlcore::load_fashion_mnist(plain.string(), true).size();
  });
  const Timing base_load = median_seconds(repeats, [&] {
    return static_cast<int64_t>(
        *torch::data::datasets::MNIST(plain.string()).size());
  });
  report(
      "load 60000 training images + labels (dlcore from .gz)",
      "torch::data::datasets::MNIST from plain files",
      base_load,
      ours_load);
  report(
      "load 60000 training images + labels (dlcore from plain files)",
      "torch::data::datasets::MNIST from plain files",
      base_load,
      ours_load_plain);

  // 2. One shuffled epoch of batches.
  dlcore::Batches batches(
      dlcore::load_fashion_mnist(data_dir, true),
      dlcore::BatchesOptions(batch_size).shuffle(true).seed(0));
  const Timing ours_epoch = median_seconds(repeats, [&] {
    int64_t n = 0;
    for (const dlcore::Batch& b : batches) {
      n += b.data.size(0);
    }
    return n;
  });
  auto loader =
      torch::data::make_data_loader<torch::data::samplers::RandomSampler>(
          torch::data::datasets::MNIST(plain.string())
              .map(torch::data::transforms::Stack<>()),
          torch::data::DataLoaderOptions(static_cast<size_t>(batch_size))
              .workers(0));
  const Timing base_epoch = median_seconds(repeats, [&] {
    int64_t n = 0;
    for (auto& b : *loader) {
      n += b.data.size(0);
    }
    return n;
  });
  report(
      "one shuffled epoch, 60000 images, batch " + std::to_string(batch_size),
      "torch::data DataLoader, MNIST.map(Stack<>()), RandomSampler, 0 workers",
      base_epoch,
      ours_epoch);

  fs::remove_all(plain);
  return 0;
} catch (const std::exception& e) {
  std::cerr << "bench_batches: " << e.what() << "\n";
  return 1;
}
