// Seconds per epoch of dlcore's training loop against the homework's Python
// code, measured in the same run.
//
// Hot path: one epoch of LeNet-5 on FashionMNIST as Problem 1 runs it: 48k
// training images (80/20 seeded split of the 60k) in shuffled in-memory
// batches of 64 (dlcore::Batches), SGD momentum 0.9, dlcore::train_epoch,
// then dlcore::evaluate on the 12k validation images; threads as
// configure_threads(--threads) (default: all cores, OpenBLAS at one), and
// TrainOptions::data_parallel(--data-parallel) (default: that many threads,
// each computing a chunk of every batch with one intra-op thread), and
// dlcore::configure_allocator() (glibc keeps freed tensors for reuse; the
// Python child inherits the same MALLOC_* settings; --default-malloc skips
// it on both sides).
//
// Named baseline: benchmarks/python/epoch_reference.py, the homework's code
// path (torchvision FashionMNIST, DataLoader(batch_size=64, shuffle=True,
// num_workers=2), the same net and optimizer), run as a subprocess with
// `OPENBLAS_NUM_THREADS=1 /usr/bin/python3` when that interpreter has torch.
//
// Prints both times (best of the epochs run), the ratio dlcore / Python
// (target <= 0.33), the CPU seconds of each side (process + DataLoader
// workers; less sensitive to other load on the machine than wall time) and
// their ratio, and one JSON line. Data loading is not timed on either side.
//
//   build/benchmarks/bench_epoch [--epochs 3] [--python-epochs 1]
//                                [--threads 0] [--no-python]
//                                [--default-malloc]
#include <dlcore/data/batches.h>
#include <dlcore/data/fashion_mnist.h>
#include <dlcore/data/split.h>
#include <dlcore/io/json.h>
#include <dlcore/nn/models/lenet5.h>
#include <dlcore/train/allocator.h>
#include <dlcore/train/threads.h>
#include <dlcore/train/train_loop.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <string>

namespace {

// Runs `command` through the shell and returns its stdout (empty on failure).
std::string capture(const std::string& command, int& status) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) {
    status = -1;
    return out;
  }
  char buffer[4096];
  std::size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    out.append(buffer, n);
  }
  status = ::pclose(pipe);
  return out;
}

// CPU seconds (user + system) of this process, all threads.
double cpu_seconds() {
  rusage r{};
  ::getrusage(RUSAGE_SELF, &r);
  return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  }
  return out + "'";
}

} // namespace

int main(int argc, char** argv) try {
  CLI::App app{"Seconds per LeNet-5 epoch: dlcore vs the homework's Python"};
  std::string data_dir = dlcore::default_fashion_mnist_dir();
  int epochs = 3;
  int python_epochs = 1;
  int threads = 0;
  int workers = 2;
  int data_parallel = 0;
  bool no_python = false;
  std::string python = "/usr/bin/python3";
  std::string script = (std::filesystem::path(__FILE__).parent_path() /
                        "python" / "epoch_reference.py")
                           .string();
  uint64_t seed = 42;
  app.add_option("--data-dir", data_dir, "FashionMNIST folder")
      ->capture_default_str();
  app.add_option("--epochs", epochs, "dlcore epochs (best one reported)")
      ->capture_default_str();
  app.add_option("--python-epochs", python_epochs, "Python epochs")
      ->capture_default_str();
  app.add_option("--threads", threads, "LibTorch threads (0: all cores)")
      ->capture_default_str();
  app.add_option(
         "--data-parallel",
         data_parallel,
         "TrainOptions::data_parallel: batch chunks on as many threads "
         "(0: the thread count configure_threads chose)")
      ->capture_default_str();
  app.add_option("--workers", workers, "Python DataLoader workers")
      ->capture_default_str();
  app.add_option("--python", python, "Python interpreter with torch")
      ->capture_default_str();
  app.add_option("--script", script, "the Python reference")
      ->capture_default_str();
  app.add_option("--seed", seed, "seed")->capture_default_str();
  app.add_flag("--no-python", no_python, "skip the Python baseline");
  bool default_malloc = false;
  app.add_flag(
      "--default-malloc",
      default_malloc,
      "keep glibc's malloc defaults (no dlcore::configure_allocator)");
  CLI11_PARSE(app, argc, argv);

  dlcore::ThreadConfig tc = dlcore::configure_threads(threads);
  if (data_parallel <= 0) {
    data_parallel = tc.torch_threads;
  }
  std::cout << "threads: " << tc.describe() << "; data_parallel "
            << data_parallel << "\n";
  // Exports the same malloc policy to the Python child process.
  if (!default_malloc) {
    std::cout << dlcore::configure_allocator().describe()
              << " (Python baseline too)\n";
  }

  // Baseline first, so that both sides find the files in the page cache.
  double py_seconds = std::numeric_limits<double>::quiet_NaN();
  dlcore::Json py_json;
  if (!no_python) {
    int status = 0;
    std::string probe = capture(
        shell_quote(python) +
            " -c 'import torch, torchvision' 2>/dev/null && "
            "echo ok",
        status);
    if (probe.find("ok") == std::string::npos) {
      std::cout << "python: " << python
                << " has no torch/torchvision; baseline skipped\n";
    } else {
      std::string cmd = "OPENBLAS_NUM_THREADS=1 " + shell_quote(python) + " " +
                        shell_quote(script) + " --data-dir " +
                        shell_quote(data_dir) + " --epochs " +
                        std::to_string(python_epochs) + " --workers " +
                        std::to_string(workers) + " --seed " +
                        std::to_string(seed) + " 2>/dev/null";
      std::cout << "python: " << cmd << "\n" << std::flush;
      std::string text = capture(cmd, status);
      std::size_t brace = text.rfind("\n{");
      std::string line =
          brace == std::string::npos ? text : text.substr(brace + 1);
      if (status != 0 || line.empty()) {
        std::cout << "python: failed (status " << status << ")\n";
      } else {
        py_json = dlcore::parse_json(line, "the Python reference's output");
        py_seconds = dlcore::json_get<double>(py_json, "seconds");
        std::cout << fmt::format(
            "python (torchvision DataLoader, {} workers, torch threads {}): "
            "{:.3f} s/epoch (train {:.3f} + validation {:.3f}), CPU {:.3f} s\n",
            workers,
            dlcore::json_get<int64_t>(py_json, "torch_threads"),
            py_seconds,
            dlcore::json_get<double>(py_json, "train_seconds"),
            dlcore::json_get<double>(py_json, "val_seconds"),
            dlcore::json_get<double>(py_json, "cpu_seconds"));
      }
    }
  }

  dlcore::TensorDataset full = dlcore::load_fashion_mnist(data_dir, true);
  auto [train, val] = dlcore::random_split(full, 0.8, seed);
  dlcore::Batches train_batches(
      train, dlcore::BatchesOptions(64).shuffle(true).seed(seed));
  dlcore::Batches val_batches(val, dlcore::BatchesOptions(64));
  torch::manual_seed(seed);
  dlcore::LeNet5 net;
  torch::optim::SGD sgd(
      net->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  double best = std::numeric_limits<double>::infinity();
  double best_train = 0.0;
  double best_val = 0.0;
  double best_cpu = std::numeric_limits<double>::infinity();
  dlcore::Json per_epoch = dlcore::Json::array();
  for (int e = 0; e < epochs; ++e) {
    train_batches.set_epoch(e);
    double c0 = cpu_seconds();
    auto tr = dlcore::train_epoch(
        net,
        train_batches,
        sgd,
        dlcore::TrainOptions().epoch(e + 1).data_parallel(data_parallel));
    auto va = dlcore::evaluate(
        net,
        val_batches,
        dlcore::EvaluateOptions().data_parallel(data_parallel));
    double s = tr.seconds + va.seconds;
    double cpu = cpu_seconds() - c0;
    best_cpu = std::min(best_cpu, cpu);
    std::cout << fmt::format(
        "dlcore epoch {}: {:.3f} s (train {:.3f} + validation {:.3f}), CPU "
        "{:.3f} s; train loss {:.4f} acc {:.2f}%, val acc {:.2f}%\n",
        e + 1,
        s,
        tr.seconds,
        va.seconds,
        cpu,
        tr.loss,
        100 * tr.accuracy,
        100 * va.accuracy);
    per_epoch.push_back(s);
    if (s < best) {
      best = s;
      best_train = tr.seconds;
      best_val = va.seconds;
    }
  }
  std::cout << fmt::format(
      "dlcore (train_epoch + evaluate, Batches): {:.3f} s/epoch best of {} "
      "(train {:.3f} + validation {:.3f}), CPU {:.3f} s best\n",
      best,
      epochs,
      best_train,
      best_val,
      best_cpu);
  double ratio = best / py_seconds;
  if (!std::isnan(py_seconds)) {
    std::cout << fmt::format(
        "ratio dlcore / python: {:.3f} (target <= 0.33; python is {:.1f}x "
        "slower)\n",
        ratio,
        py_seconds / best);
    std::cout << fmt::format(
        "CPU-time ratio dlcore / python: {:.3f} (robust to other load)\n",
        best_cpu / dlcore::json_get<double>(py_json, "cpu_seconds"));
  }
  dlcore::Json j = dlcore::Json::object();
  j["dlcore_seconds"] = best;
  j["dlcore_epochs"] = per_epoch;
  j["dlcore_cpu_seconds"] = best_cpu;
  j["python_seconds"] = py_seconds;
  j["python_cpu_seconds"] = py_json.is_object()
                                ? dlcore::json_at(py_json, "cpu_seconds")
                                : dlcore::Json();
  j["ratio"] = ratio;
  j["torch_threads"] = tc.torch_threads;
  j["data_parallel"] = data_parallel;
  std::cout << dlcore::dump_json(j, -1) << "\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << "bench_epoch: error: " << e.what() << "\n";
  return 1;
}
