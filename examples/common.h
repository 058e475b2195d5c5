// Shared command-line flags and output helpers of dlcore's example programs.
//
// Every example follows one convention: it writes into --out its CSVs, PNGs
// (rendered by gnuplot from those CSVs), a JSON summary and `summary.md`, a
// Markdown section beginning `## Problem N — title` whose image links are
// relative to the --out folder (`![loss](curves.png)`). The runner
// concatenates the summaries into results/REPORT.md.
//
// Every example has the same shape: `main` registers its flags, parses them,
// checks every flag before any work (`check_flag` and friends, then
// `CommonFlags::validate`: ranges, the input files, a writable --out, the
// device and the thread count; a bad flag ends the program with a message
// naming it and exit status 1), then calls one named step per homework part
// and writes the report through `Output`. Errors reach `report_error`.
#pragma once

#include <dlcore/data/fashion_mnist.h>
#include <dlcore/data/tensor_dataset.h>
#include <dlcore/io/csv.h>
#include <dlcore/io/files.h>
#include <dlcore/io/json.h>
#include <dlcore/io/number_format.h>
#include <dlcore/train/allocator.h>
#include <dlcore/train/plot.h>
#include <dlcore/train/threads.h>
#include <dlcore/train/train_loop.h>
#include <dlcore/version.h>

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/nn/module.h>
#include <torch/types.h>
#include <torch/version.h>
#include <CLI/CLI.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace dlcore::examples {

/// `git describe --always --dirty` of the checkout the program was built
/// from, or "unknown" without git or outside a git checkout. Defined in a
/// source file generated at build time (examples/build_commit.cmake).
const char* build_commit();

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

/// A flag that cannot run: found after parsing, before any work.
class FlagError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Throws `FlagError` with `parts` concatenated unless `ok`.
template <typename... Parts>
void check_flag(bool ok, const Parts&... parts) {
  if (!ok) {
    std::ostringstream s;
    (s << ... << parts);
    throw FlagError(s.str());
  }
}

/// `flag` (an explicit value) must lie in [lo, hi].
inline void check_range(
    const std::string& flag, int64_t value, int64_t lo, int64_t hi) {
  check_flag(
      value >= lo && value <= hi,
      flag,
      " must be in [",
      lo,
      ", ",
      hi,
      "], got ",
      value);
}

/// `flag` must be a finite number in (0, hi].
inline void check_positive(
    const std::string& flag,
    double value,
    double hi = std::numeric_limits<double>::max()) {
  check_flag(
      std::isfinite(value) && value > 0.0 && value <= hi,
      flag,
      " must be a finite number in (0, ",
      hi,
      "], got ",
      value);
}

/// `flag` must be a fraction in [0, 1].
inline void check_fraction(const std::string& flag, double value) {
  check_flag(
      value >= 0.0 && value <= 1.0, flag, " must be in [0, 1], got ", value);
}

/// What a path names, by `stat` (links followed).
enum class PathKind { kMissing, kRegular, kFolder, kOther };

inline PathKind path_kind(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return PathKind::kMissing;
  }
  if (S_ISREG(st.st_mode)) {
    return PathKind::kRegular;
  }
  return S_ISDIR(st.st_mode) ? PathKind::kFolder : PathKind::kOther;
}

/// `flag` must name a regular file this process can read (a FIFO or a
/// folder is refused before anything opens it).
inline void check_readable_file(
    const std::string& flag, const std::string& path) {
  const PathKind kind = path_kind(path);
  check_flag(kind != PathKind::kMissing, flag, " ", path, ": no such file");
  check_flag(
      kind == PathKind::kRegular, flag, " ", path, ": not a regular file");
  check_flag(
      ::access(path.c_str(), R_OK) == 0,
      flag,
      " ",
      path,
      ": not readable (",
      std::strerror(errno),
      ")");
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
    // CLI11 would read "-1" into the unsigned seed as 2^64 - 1, and a seed
    // above 2^63 - 1 would be recorded negative in the JSON summaries.
    app.add_option("--seed", seed, "random seed (split, shuffling, init)")
        ->check(CLI::Validator(
            [](std::string& v) -> std::string {
              uint64_t x = 0;
              std::size_t used = 0;
              try {
                x = std::stoull(v, &used);
              } catch (const std::exception&) {
                used = 0;
              }
              if (v.empty() || v[0] == '-' || v[0] == '+' || used != v.size() ||
                  x > static_cast<uint64_t>(
                          std::numeric_limits<int64_t>::max())) {
                return "must be an integer in [0, 2^63 - 1], got " + v;
              }
              return {};
            },
            "",
            "SEED"))
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
        throw FlagError(
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
    check_flag(
        !ec, "--out ", out, ": cannot create the folder: ", ec.message());
    check_flag(
        path_kind(out) == PathKind::kFolder, "--out ", out, ": not a folder");
    return dir;
  }

  /// Checks the common flags before any work, so that a bad one fails in
  /// milliseconds rather than after a training run: --threads within the
  /// machine's cores, --device available, the FashionMNIST files in
  /// --data-dir (when `reads_data`), and --out created and writable (a file
  /// is created in it and removed). Throws `FlagError` naming the flag.
  void validate(bool reads_data = true) const {
    check_threads();
    resolve_device();
    if (reads_data) {
      check_data_dir();
    }
    check_out_writable();
  }

  /// Configures threads (`dlcore::configure_threads(threads)`) and the
  /// allocator (`dlcore::configure_allocator()`), checks --device, and logs
  /// what was done to stdout.
  dlcore::ThreadConfig apply_threads() const {
    const torch::Device dev = resolve_device();
    check_threads();
    dlcore::ThreadConfig t = dlcore::configure_threads(threads);
    std::cout << "device: " << dev << "\n";
    std::cout << "threads: " << t.describe() << "\n";
    std::cout << dlcore::configure_allocator().describe() << "\n";
    return t;
  }

  /// The facts of the run that results/REPORT.md's header names, recorded
  /// in every example's JSON summary as its `run` object: the program, the
  /// commit it was built from (`git describe --always --dirty`, "unknown"
  /// outside a git checkout or without git), dlcore's and LibTorch's
  /// versions, the scale, the seed, the device, LibTorch's intra-op threads
  /// in use (`at::get_num_threads()`, after `apply_threads`), the --threads
  /// flag and the machine's cores.
  dlcore::Json run_json(const std::string& program) const {
    dlcore::Json j = dlcore::Json::object();
    j["program"] = program;
    j["commit"] = std::string(build_commit());
    j["dlcore_version"] = std::string(dlcore::version());
    j["libtorch_version"] = std::string(TORCH_VERSION);
    j["scale"] = scale_name(scale);
    j["seed"] = static_cast<int64_t>(seed);
    j["device"] = resolve_device().str();
    j["threads"] = static_cast<int64_t>(at::get_num_threads());
    j["threads_flag"] = threads;
    j["cores"] = static_cast<int64_t>(std::thread::hardware_concurrency());
    return j;
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

 private:
  // More LibTorch threads than cores only oversubscribe them; a huge count
  // would start threads until memory runs out.
  void check_threads() const {
    const int cores = static_cast<int>(std::thread::hardware_concurrency());
    const int most = cores > 0 ? cores : 256;
    check_flag(
        threads >= 0,
        "--threads must be 0 (all cores) or a positive count, got ",
        threads);
    check_flag(
        threads <= most,
        "--threads ",
        threads,
        " exceeds this machine's ",
        cores > 0 ? std::to_string(cores) + " cores"
                  : std::string("limit of 256 threads"),
        "; use 0 (all cores) or a number up to ",
        most);
  }

  // The four IDX files, each gzipped or plain, as load_fashion_mnist looks
  // for them.
  void check_data_dir() const {
    const PathKind kind = path_kind(data_dir);
    check_flag(
        kind == PathKind::kFolder,
        "--data-dir ",
        data_dir,
        kind == PathKind::kMissing ? ": no such folder" : ": not a folder",
        " (install Debian's dataset-fashion-mnist, pass the "
        "folder holding the IDX files, or set DLCORE_FASHION_MNIST_DIR)");
    for (const char* stem :
         {"train-images-idx3-ubyte",
          "train-labels-idx1-ubyte",
          "t10k-images-idx3-ubyte",
          "t10k-labels-idx1-ubyte"}) {
      const std::string plain = data_dir + "/" + stem;
      const std::string gz = plain + ".gz";
      const bool has_gz = path_kind(gz) != PathKind::kMissing;
      check_flag(
          has_gz || path_kind(plain) != PathKind::kMissing,
          "--data-dir ",
          data_dir,
          ": expected ",
          stem,
          ".gz or ",
          stem,
          " in it, found neither");
      check_readable_file("--data-dir", has_gz ? gz : plain);
    }
  }

  // Creates --out and a file in it, then removes the file: permissions
  // alone do not tell (a read-only file system, or root).
  void check_out_writable() const {
    const std::filesystem::path dir = prepare_out();
    std::string probe = (dir / ".write-check.XXXXXX").string();
    const int fd = ::mkstemp(probe.data());
    check_flag(
        fd >= 0,
        "--out ",
        out,
        ": the folder is not writable (",
        std::strerror(errno),
        ")");
    ::close(fd);
    ::unlink(probe.c_str());
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

/// The --out folder of one example: file paths in it, and the JSON, plot and
/// Markdown files every example writes there.
class Output {
 public:
  /// `program` prefixes warnings; `dir` must exist (`prepare_out`).
  Output(std::string program, std::filesystem::path dir)
      : program_(std::move(program)), dir_(std::move(dir)) {}

  /// The folder.
  const std::filesystem::path& dir() const {
    return dir_;
  }

  /// `<dir>/<name>`.
  std::string path(const std::string& name) const {
    return (dir_ / name).string();
  }

  /// Writes `json` to `<dir>/<name>` (atomically, as `dlcore::write_json`).
  void write_json(const std::string& name, const dlcore::Json& json) const {
    dlcore::write_json(path(name), json);
  }

  /// Writes `<dir>/summary.md` (see `write_summary_md`).
  void write_summary(const std::string& markdown) const {
    write_summary_md(dir_, markdown);
  }

  /// Renders `panels` into `<dir>/<name>` with gnuplot; when it cannot,
  /// says so on stderr (naming `what`) and returns the failed result: a
  /// missing plot is not an error.
  dlcore::PlotResult plot(
      const std::string& name,
      const std::vector<dlcore::PlotPanel>& panels,
      const dlcore::PlotOptions& options,
      const std::string& what) const {
    dlcore::PlotResult r = dlcore::plot_png(path(name), panels, options);
    if (!r) {
      std::cerr << program_ << ": no " << what << " plot: " << r.message
                << "\n";
    }
    return r;
  }

 private:
  std::string program_;
  std::filesystem::path dir_;
};

/// A panel of columns of `csv` against `x`: one series per (column, title),
/// drawn in `style`.
inline dlcore::PlotPanel csv_panel(
    const std::string& title,
    const std::string& xlabel,
    const std::string& ylabel,
    const std::string& csv,
    const std::string& x,
    const std::vector<std::pair<std::string, std::string>>& series,
    const std::string& style = "linespoints") {
  dlcore::PlotPanel p;
  p.title(title).xlabel(xlabel).ylabel(ylabel);
  for (const auto& [column, name] : series) {
    p.add(dlcore::PlotSeries(csv, x, column).title(name).style(style));
  }
  return p;
}

/// An accuracy (a fraction in [0, 1]) as the reports print it: a
/// percentage with `digits` decimals and a space before the sign,
/// "89.12 %"; "—" when it is NaN (not measured). CSV and JSON files keep the
/// raw fraction.
inline std::string percent(double fraction, int digits = 2) {
  if (!std::isfinite(fraction)) {
    return "—";
  }
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(digits);
  s << 100.0 * fraction << " %";
  return s.str();
}

/// Where a training run diverged: the first optimizer step whose training
/// loss was not finite, or, when every loss was finite, the last step of the
/// first epoch after which a parameter was not finite. Epoch and step are
/// 1-based, as the reports print them (step counts optimizer steps within
/// the epoch).
struct Divergence {
  bool diverged = false;
  int64_t epoch = 0;
  int64_t step = 0;
  /// "training loss nan", "training loss inf" or "a parameter is not finite".
  std::string reason;

  /// "diverged at epoch 1, step 3" ("" when the run did not diverge).
  std::string text() const {
    if (!diverged) {
      return "";
    }
    return "diverged at epoch " + std::to_string(epoch) + ", step " +
           std::to_string(step);
  }

  /// {"diverged": false} or {"diverged": true, "epoch", "step", "reason"}.
  dlcore::Json to_json() const {
    dlcore::Json j = dlcore::Json::object();
    j["diverged"] = diverged;
    if (diverged) {
      j["epoch"] = epoch;
      j["step"] = step;
      j["reason"] = reason;
    }
    return j;
  }
};

/// Watches one training run for divergence. Each epoch's `train_epoch`
/// gets `on_step(epoch)` as its step callback (it reads each step's loss,
/// one host synchronisation per step, and ends the epoch at the first
/// non-finite one), then `diverged_after(model, metrics)` also checks the
/// parameters; training stops when it returns true, and the run is reported
/// with `result().text()` instead of an accuracy.
///
///   ex::DivergenceGuard guard;
///   for (int64_t e = 1; e <= epochs; ++e) {
///     auto m = dlcore::train_epoch(net, batches, opt,
///                                  dlcore::TrainOptions().on_step(
///                                      guard.on_step(e)));
///     if (guard.diverged_after(*net, m)) break;
///   }
class DivergenceGuard {
 public:
  /// The step callback for epoch `epoch` (1-based); `then` (may be empty)
  /// runs first, e.g. `History::step_recorder()`.
  dlcore::StepCallback on_step(
      int64_t epoch, dlcore::StepCallback then = nullptr) {
    epoch_ = epoch;
    return [this, epoch, then = std::move(then)](dlcore::StepInfo& info) {
      if (then) {
        then(info);
      }
      if (!d_.diverged && !std::isfinite(info.loss)) {
        d_.diverged = true;
        d_.epoch = epoch;
        d_.step = info.step + 1;
        d_.reason =
            std::isnan(info.loss) ? "training loss nan" : "training loss inf";
      }
      if (d_.diverged) {
        info.stop = true;
      }
    };
  }

  /// After epoch `on_step`'s epoch: true when the run diverged, seen by the
  /// callback, by a non-finite epoch loss (a run without the callback) or by
  /// a non-finite parameter of `model` (then at the epoch's last step).
  bool diverged_after(
      const torch::nn::Module& model, const dlcore::EpochMetrics& metrics) {
    if (d_.diverged) {
      return true;
    }
    bool finite = metrics.batches == 0 || std::isfinite(metrics.loss);
    if (finite) {
      torch::NoGradGuard no_grad;
      for (const auto& p : model.parameters()) {
        if (!torch::isfinite(p).all().item<bool>()) {
          finite = false;
          break;
        }
      }
      if (!finite) {
        d_.reason = "a parameter is not finite";
      }
    } else {
      d_.reason = "training loss not finite";
    }
    if (!finite) {
      d_.diverged = true;
      d_.epoch = epoch_;
      d_.step = metrics.steps;
    }
    return d_.diverged;
  }

  const Divergence& result() const {
    return d_;
  }

 private:
  Divergence d_;
  int64_t epoch_ = 0;
};

/// Prints what went wrong as `<program>: error: <message>` (a LibTorch
/// error without its C++ backtrace) and returns the exit status, 1.
/// Parses the command line like CLI11_PARSE, but a refused flag exits with
/// status 1, as every other error of an example does (CLI11's own codes are
/// 100 and above). Returns the exit status when the program should stop
/// (0 after --help), nothing when it should run.
inline std::optional<int> parse_flags(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 1;
  }
  return std::nullopt;
}

inline int report_error(const std::string& program, const std::exception& e) {
  const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
  std::cerr << program << ": error: "
            << (torch_error != nullptr ? torch_error->what_without_backtrace()
                                       : e.what())
            << "\n";
  return 1;
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
