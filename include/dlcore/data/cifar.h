#pragma once

// Reader (and writer) of the CIFAR-10 / CIFAR-100 binary format.

#include <dlcore/data/detail/dataset_folder.h>
#include <dlcore/data/tensor_dataset.h>
#include <dlcore/detail/atomic_file.h>
#include <dlcore/detail/regular_file.h>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/arg.h>
#include <torch/types.h>

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace dlcore {

/// Which of the two binary layouts a file has.
enum class CifarFormat {
  /// CIFAR-10: per record 1 label byte (0..9), then 3072 pixel bytes.
  kCifar10,
  /// CIFAR-100: per record 1 coarse label byte (0..19), 1 fine label byte
  /// (0..99), then 3072 pixel bytes.
  kCifar100,
};

/// Which CIFAR-100 label becomes `targets`.
enum class CifarLabel {
  /// The 100 fine classes.
  kFine,
  /// The 20 superclasses.
  kCoarse,
};

/// Bytes per record of `format` (3073 or 3074).
inline int64_t cifar_record_bytes(CifarFormat format) {
  return format == CifarFormat::kCifar10 ? 3073 : 3074;
}

/// The raw content of one CIFAR binary file.
struct CifarRecords {
  /// uint8 [N, 3, 32, 32]: channel planes R, G, B, rows top to bottom.
  torch::Tensor images;
  /// int64 [N]: the CIFAR-10 label, or the CIFAR-100 fine label.
  torch::Tensor labels;
  /// int64 [N]: the CIFAR-100 coarse label; undefined for CIFAR-10.
  torch::Tensor coarse_labels;
};

/// Reads one binary file (`data_batch_1.bin`, `test_batch.bin`, `train.bin`,
/// `test.bin`, ...). The file must be a non-empty whole number of records
/// and every label in range; errors name the file, the size or the record.
///
/// Example:
///   auto r = dlcore::read_cifar_file(dir + "/test_batch.bin",
///                                    dlcore::CifarFormat::kCifar10);
inline CifarRecords read_cifar_file(
    const std::string& path, CifarFormat format) {
  auto [fd, size] = detail::open_regular_file(path, "read_cifar_file");
  const int64_t record = cifar_record_bytes(format);
  const char* name = format == CifarFormat::kCifar10 ? "CIFAR-10" : "CIFAR-100";
  TORCH_CHECK(
      size > 0 && size % record == 0,
      "read_cifar_file: expected '",
      path,
      "' to hold whole ",
      name,
      " records of ",
      record,
      " bytes, but its size ",
      size,
      " is not a positive multiple of ",
      record,
      size % 3073 == 0 && record == 3074
          ? " (it looks like CIFAR-10)"
          : (size % 3074 == 0 && record == 3073 ? " (it looks like CIFAR-100)"
                                                : ""));
  const int64_t n = size / record;
  auto raw = torch::empty({n, record}, torch::kUInt8);
  const int64_t got = detail::read_fully(
      fd.get(), raw.data_ptr<uint8_t>(), size, path, "read_cifar_file");
  TORCH_CHECK(
      got == size,
      "read_cifar_file: reading '",
      path,
      "' failed after ",
      got,
      " of ",
      size,
      " bytes");
  const int64_t label_bytes = record - 3072;
  CifarRecords out;
  out.images = raw.slice(1, label_bytes).reshape({n, 3, 32, 32}).contiguous();
  const auto check_labels =
      [&](const torch::Tensor& labels, int64_t classes, const char* what) {
        const auto bad = (labels >= classes).nonzero();
        if (bad.numel() > 0) {
          const auto i = bad[0].item<int64_t>();
          TORCH_CHECK(
              false,
              "read_cifar_file: expected ",
              what,
              " labels in [0, ",
              classes,
              ") in '",
              path,
              "', but record ",
              i,
              " has ",
              labels[i].item<int64_t>());
        }
      };
  if (format == CifarFormat::kCifar10) {
    out.labels = raw.select(1, 0).to(torch::kLong);
    check_labels(out.labels, 10, "CIFAR-10");
  } else {
    out.coarse_labels = raw.select(1, 0).to(torch::kLong);
    out.labels = raw.select(1, 1).to(torch::kLong);
    check_labels(out.coarse_labels, 20, "CIFAR-100 coarse");
    check_labels(out.labels, 100, "CIFAR-100 fine");
  }
  return out;
}

/// Writes records in the binary format, atomically (a temporary file in the
/// same folder, synced, then renamed; on failure `path` is left as it was):
/// `images` uint8 [N, 3, 32, 32], `labels` integer [N], and for
/// CIFAR-100 `coarse_labels` integer [N]. Useful for tests and for
/// exporting subsets.
inline void write_cifar_file(
    const std::string& path,
    CifarFormat format,
    const torch::Tensor& images,
    const torch::Tensor& labels,
    const torch::Tensor& coarse_labels = {}) {
  TORCH_CHECK(
      images.defined() && images.scalar_type() == torch::kUInt8 &&
          images.dim() == 4 && images.size(1) == 3 && images.size(2) == 32 &&
          images.size(3) == 32,
      "write_cifar_file: expected uint8 images [N, 3, 32, 32], but got ",
      images.defined() ? images.sizes() : c10::IntArrayRef{});
  const int64_t n = images.size(0);
  TORCH_CHECK(
      labels.defined() && labels.dim() == 1 && labels.size(0) == n,
      "write_cifar_file: expected labels [",
      n,
      "], but got ",
      labels.defined() ? labels.sizes() : c10::IntArrayRef{});
  const bool hundred = format == CifarFormat::kCifar100;
  TORCH_CHECK(
      !hundred || (coarse_labels.defined() && coarse_labels.dim() == 1 &&
                   coarse_labels.size(0) == n),
      "write_cifar_file: expected coarse_labels [",
      n,
      "] for CIFAR-100, but got ",
      coarse_labels.defined() ? coarse_labels.sizes() : c10::IntArrayRef{});
  const int64_t fine_classes = hundred ? 100 : 10;
  TORCH_CHECK(
      n == 0 || (labels.min().item<int64_t>() >= 0 &&
                 labels.max().item<int64_t>() < fine_classes),
      "write_cifar_file: expected labels in [0, ",
      fine_classes,
      ")");
  TORCH_CHECK(
      !hundred || n == 0 ||
          (coarse_labels.min().item<int64_t>() >= 0 &&
           coarse_labels.max().item<int64_t>() < 20),
      "write_cifar_file: expected coarse_labels in [0, 20)");
  std::vector<torch::Tensor> columns;
  if (hundred) {
    columns.push_back(coarse_labels.to(torch::kUInt8).reshape({n, 1}));
  }
  columns.push_back(labels.to(torch::kUInt8).reshape({n, 1}));
  columns.push_back(images.cpu().reshape({n, 3072}));
  const auto raw = torch::cat(columns, 1).contiguous();
  detail::write_file_atomic(
      path,
      reinterpret_cast<const char*>(raw.data_ptr<uint8_t>()),
      static_cast<std::size_t>(raw.numel()),
      "write_cifar_file");
}

/// Per-channel mean and standard deviation used to normalize CIFAR-10
/// (training-set statistics).
inline std::array<float, 3> cifar10_mean() {
  return {0.4914f, 0.4822f, 0.4465f};
}
/// Per-channel standard deviation of CIFAR-10 (training-set statistics,
/// R, G, B), the companion of `cifar10_mean`.
inline std::array<float, 3> cifar10_std() {
  return {0.2470f, 0.2435f, 0.2616f};
}
/// Per-channel mean and standard deviation for CIFAR-100 (the homework's
/// values).
inline std::array<float, 3> cifar100_mean() {
  return {0.5071f, 0.4867f, 0.4408f};
}
/// Per-channel standard deviation for CIFAR-100 (R, G, B; the homework's
/// values), the companion of `cifar100_mean`.
inline std::array<float, 3> cifar100_std() {
  return {0.2675f, 0.2565f, 0.2761f};
}

/// uint8 [N, 3, H, W] to float32, `(x / 255 - mean[c]) / std[c]` in float32
/// in that order, as torchvision's `ToTensor()` then `Normalize(mean, std)`.
inline torch::Tensor normalize_cifar(
    const torch::Tensor& images,
    const std::array<float, 3>& mean,
    const std::array<float, 3>& std) {
  TORCH_CHECK(
      images.defined() && images.scalar_type() == torch::kUInt8 &&
          images.dim() == 4 && images.size(1) == 3,
      "normalize_cifar: expected uint8 images [N, 3, H, W], but got ",
      images.defined() ? images.sizes() : c10::IntArrayRef{});
  detail::check_has_data(images, "normalize_cifar", "images");
  for (int c = 0; c < 3; ++c) {
    const auto i = static_cast<std::size_t>(c);
    TORCH_CHECK(
        std::isfinite(std[i]) && std[i] > 0.0f,
        "normalize_cifar: expected a finite std > 0, but channel ",
        c,
        " has ",
        std[i]);
    TORCH_CHECK(
        std::isfinite(mean[i]),
        "normalize_cifar: expected a finite mean, but channel ",
        c,
        " has ",
        mean[i]);
  }
  const auto m =
      torch::tensor({mean[0], mean[1], mean[2]}).reshape({1, 3, 1, 1});
  const auto s = torch::tensor({std[0], std[1], std[2]}).reshape({1, 3, 1, 1});
  return (images.to(torch::kFloat).div(255.0f) - m.to(images.device())) /
         s.to(images.device());
}

/// Options of `load_cifar10` and `load_cifar100`.
struct CifarOptions {
  /// Normalize with the data set's mean and std (float32 [N, 3, 32, 32]);
  /// false keeps uint8 pixels. Default: true
  TORCH_ARG(bool, normalize) = true;
  /// CIFAR-100 only: which label becomes targets. Default: CifarLabel::kFine
  TORCH_ARG(CifarLabel, label) = CifarLabel::kFine;

 public:
};

/// CIFAR-10 from the binary distribution (`cifar-10-binary.tar.gz`):
/// `dir` holds data_batch_1.bin..data_batch_5.bin and test_batch.bin, or
/// their folder `cifar-10-batches-bin`. Returns 50000 (train) or 10000
/// images, targets int64 [N] in 0..9.
///
/// Example:
///   auto train = dlcore::load_cifar10("/data/cifar", true);
///
/// Differences from torchvision: torchvision reads the Python-pickle
/// distribution and yields PIL images; this reads the binary one and yields
/// tensors, normalized by default.
inline TensorDataset load_cifar10(
    const std::string& dir, bool train, const CifarOptions& options = {}) {
  std::vector<std::string> files;
  if (train) {
    for (int i = 1; i <= 5; ++i) {
      files.push_back("data_batch_" + std::to_string(i) + ".bin");
    }
  } else {
    files.push_back("test_batch.bin");
  }
  const auto root = detail::resolve_dataset_folder(
      dir, "cifar-10-batches-bin", files[0], "load_cifar10");
  std::vector<torch::Tensor> images;
  std::vector<torch::Tensor> labels;
  for (const auto& f : files) {
    auto r = read_cifar_file(root + "/" + f, CifarFormat::kCifar10);
    images.push_back(r.images);
    labels.push_back(r.labels);
  }
  TensorDataset out;
  out.data = torch::cat(images);
  out.targets = torch::cat(labels);
  if (options.normalize()) {
    out.data = normalize_cifar(out.data, cifar10_mean(), cifar10_std());
  }
  return out;
}

/// CIFAR-100 from the binary distribution (`cifar-100-binary.tar.gz`):
/// `dir` holds train.bin and test.bin, or their folder `cifar-100-binary`.
/// Targets are the fine (0..99) or coarse (0..19) labels.
inline TensorDataset load_cifar100(
    const std::string& dir, bool train, const CifarOptions& options = {}) {
  const std::string file = train ? "train.bin" : "test.bin";
  const auto root = detail::resolve_dataset_folder(
      dir, "cifar-100-binary", file, "load_cifar100");
  auto r = read_cifar_file(root + "/" + file, CifarFormat::kCifar100);
  TensorDataset out;
  out.data = options.normalize()
                 ? normalize_cifar(r.images, cifar100_mean(), cifar100_std())
                 : r.images;
  out.targets =
      options.label() == CifarLabel::kFine ? r.labels : r.coarse_labels;
  return out;
}

} // namespace dlcore
