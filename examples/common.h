// Shared command-line flags and output helpers of dlcore's example programs.
//
// Every example follows one convention: it writes into --out its CSVs, PNGs
// (rendered by gnuplot from those CSVs), a JSON summary and `summary.md`, a
// Markdown section beginning `## Problem N — title` whose image links are
// relative to the --out folder (`![loss](curves.png)`). The runner
// concatenates the summaries into results/REPORT.md.
#pragma once

#include <dlcore/data/fashion_mnist.h>
#include <dlcore/data/tensor_dataset.h>
#include <dlcore/train/allocator.h>
#include <dlcore/train/report.h>
#include <dlcore/train/threads.h>

#include <torch/cuda.h>
#include <torch/types.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <system_error>
#include <thread>

namespace dlcore::examples {

/// How much work an example does.
enum class Scale {
  /// A CI smoke run of seconds.
  kQuick,
  /// The main job: meaningful results, the whole runner in ~15 minutes on
  /// 2 cores.
  kDefault,
  /// The homework's own scale.
  kFull,
};

/// "quick", "default" or "full".
inline std::string scale_name(Scale s) {
  switch (s) {
    case Scale::kQuick:
      return "quick";
    case Scale::kDefault:
      return "default";
    case Scale::kFull:
      return "full";
  }
  return "?";
}

/// The value for the chosen scale: `by_scale(s, 1, 3, 15)`.
template <typename T>
T by_scale(Scale s, T quick, T default_value, T full) {
  switch (s) {
    case Scale::kQuick:
      return quick;
    case Scale::kDefault:
      return default_value;
    case Scale::kFull:
      return full;
  }
  return default_value;
}

/// The flags every example takes. `add_to` registers them on a CLI11 app;
/// after parsing, the fields hold the values.
struct CommonFlags {
  Scale scale = Scale::kDefault;
  uint64_t seed = 42;
  std::string data_dir = dlcore::default_fashion_mnist_dir();
  std::string out;
  int threads = 0;
  std::string device = "auto";

  /// Adds --scale, --seed, --data-dir, --out (default results/<program>) and
  /// --threads to `app`.
  void add_to(CLI::App& app, const std::string& program) {
    out = "results/" + program;
    const std::map<std::string, Scale> scales = {
        {"quick", Scale::kQuick},
        {"default", Scale::kDefault},
        {"full", Scale::kFull}};
    app.add_option("--scale", scale, "quick | default | full")
        ->transform(CLI::CheckedTransformer(scales, CLI::ignore_case))
        ->capture_default_str();
    app.add_option("--seed", seed, "random seed (split, shuffling, init)")
        ->capture_default_str();
    app.add_option(
           "--data-dir",
           data_dir,
           "folder with the FashionMNIST IDX files "
           "($DLCORE_FASHION_MNIST_DIR overrides the default)")
        ->capture_default_str();
    app.add_option("--out", out, "output folder")->capture_default_str();
    app.add_option("--threads", threads, "LibTorch threads (0: all cores)")
        ->capture_default_str();
    app.add_option(
           "--device",
           device,
           "cpu | cuda | auto (auto: CUDA when LibTorch sees a GPU)")
        ->transform(CLI::IsMember({"cpu", "cuda", "auto"}, CLI::ignore_case))
        ->capture_default_str();
  }

  /// The device the run uses: --device, with auto resolved (CUDA when
  /// available, else the CPU). --device cuda without a GPU is an error.
  torch::Device resolve_device() const {
    const bool cuda = torch::cuda::is_available();
    if (device == "cuda") {
      if (!cuda) {
        throw std::runtime_error(
            "--device cuda: LibTorch sees no CUDA device (a CPU-only "
            "LibTorch, or no GPU); use --device cpu or auto");
      }
      return torch::Device(torch::kCUDA);
    }
    if (device == "auto" && cuda) {
      return torch::Device(torch::kCUDA);
    }
    return torch::Device(torch::kCPU);
  }

  /// Creates the --out folder (and parents) and returns it.
  std::filesystem::path prepare_out() const {
    std::filesystem::path dir(out);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      throw std::runtime_error(
          "cannot create output folder '" + out + "': " + ec.message());
    }
    return dir;
  }

  /// Configures threads (`dlcore::configure_threads(threads)`) and the
  /// allocator (`dlcore::configure_allocator()`), checks --device, and logs
  /// what was done to stdout.
  dlcore::ThreadConfig apply_threads() const {
    const torch::Device dev = resolve_device();
    // More LibTorch threads than cores only oversubscribe them; a huge
    // count would start threads until memory runs out.
    const int cores = static_cast<int>(std::thread::hardware_concurrency());
    const int most = cores > 0 ? cores : 256;
    if (threads > most) {
      throw std::runtime_error(
          "--threads " + std::to_string(threads) + " exceeds this machine's " +
          (cores > 0 ? std::to_string(cores) + " cores"
                     : std::string("limit of 256 threads")) +
          "; use 0 (all cores) or a number up to " + std::to_string(most));
    }
    dlcore::ThreadConfig t = dlcore::configure_threads(threads);
    std::cout << "device: " << dev << "\n";
    std::cout << "threads: " << t.describe() << "\n";
    std::cout << dlcore::configure_allocator().describe() << "\n";
    return t;
  }

  /// A JSON object with the common settings (scale, seed, data_dir,
  /// threads, the --device flag and the device it resolved to).
  dlcore::Json to_json() const {
    dlcore::Json j = dlcore::Json::object();
    j["scale"] = scale_name(scale);
    j["seed"] = static_cast<int64_t>(seed);
    j["data_dir"] = data_dir;
    j["threads"] = threads;
    j["device_flag"] = device;
    j["device"] = resolve_device().str();
    return j;
  }
};

/// `dataset` with both tensors moved to `device` (the same tensors when they
/// are there already).
inline dlcore::TensorDataset on_device(
    const dlcore::TensorDataset& dataset, const torch::Device& device) {
  return {dataset.data.to(device), dataset.targets.to(device)};
}

/// Writes `markdown` to `<out_dir>/summary.md` atomically. It must begin with
/// `## Problem N — title`; image links are relative to `out_dir`.
inline void write_summary_md(
    const std::filesystem::path& out_dir, const std::string& markdown) {
  dlcore::write_file_atomic((out_dir / "summary.md").string(), markdown);
}

/// Seconds since construction.
class Stopwatch {
 public:
  double seconds() const {
    return std::chrono::duration<double>(
               std::chrono::steady_clock::now() - start_)
        .count();
  }

 private:
  std::chrono::steady_clock::time_point start_ =
      std::chrono::steady_clock::now();
};

} // namespace dlcore::examples
