#pragma once

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/types.h>

#include <dlcore/data/idx.h>
#include <dlcore/data/tensor_dataset.h>

#include <sys/stat.h>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace dlcore {

/// Folder holding the four Fashion-MNIST IDX files: `$DLCORE_FASHION_MNIST_DIR`
/// when set and non-empty, else `/usr/share/datasets/fashion-mnist` (where
/// Debian's `dataset-fashion-mnist` package installs them).
inline std::string default_fashion_mnist_dir() {
  const char* env = std::getenv("DLCORE_FASHION_MNIST_DIR");
  if (env != nullptr && env[0] != '\0') {
    return env;
  }
  return "/usr/share/datasets/fashion-mnist";
}

/// The ten Fashion-MNIST class names, indexed by label (as torchvision's
/// `FashionMNIST.classes`).
inline std::vector<std::string> fashion_mnist_classes() {
  return {
      "T-shirt/top",
      "Trouser",
      "Pullover",
      "Dress",
      "Coat",
      "Sandal",
      "Shirt",
      "Sneaker",
      "Bag",
      "Ankle boot"};
}

/// Turns uint8 images `[N, H, W]` into float32 `[N, 1, H, W]` normalized as
/// the homework's `transforms.Compose([ToTensor(), Normalize((0.5,),
/// (0.5,))])`: `(x / 255 - 0.5) / 0.5`, in [-1, 1], computed in float32 in
/// that order, so the values equal torchvision's bit for bit.
///
/// Example:
///   torch::Tensor x = dlcore::normalize_fashion_mnist(
///       dlcore::read_idx(dir + "/t10k-images-idx3-ubyte.gz"));
inline torch::Tensor normalize_fashion_mnist(const torch::Tensor& images) {
  TORCH_CHECK(
      images.defined() && images.scalar_type() == at::kByte &&
          images.dim() == 3,
      "normalize_fashion_mnist: expected uint8 images [N, H, W] but got ",
      images.defined() ? c10::toString(images.scalar_type()) : "undefined",
      " ",
      images.defined() ? images.sizes() : c10::IntArrayRef{});
  detail::check_has_data(images, "normalize_fashion_mnist", "images");
  float lut[256];
  for (int v = 0; v < 256; ++v) {
    // Same float32 operations, in the same order, as ToTensor + Normalize.
    const float x = static_cast<float>(v) / 255.0f;
    lut[v] = (x - 0.5f) / 0.5f;
  }
  const torch::Tensor src = images.to(at::kCPU).contiguous();
  torch::Tensor out = at::empty(
      {src.size(0), 1, src.size(1), src.size(2)},
      at::TensorOptions().dtype(at::kFloat));
  const uint8_t* in = src.data_ptr<uint8_t>();
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, src.numel(), 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      dst[i] = lut[in[i]];
    }
  });
  return out.to(images.device());
}

namespace detail {

/// `<dir>/<stem>.gz` when it exists, else `<dir>/<stem>` when that exists,
/// else an error naming both.
inline std::string fashion_mnist_file(
    const std::string& dir, const std::string& stem) {
  const std::string gz = dir + "/" + stem + ".gz";
  const std::string plain = dir + "/" + stem;
  struct stat st {};
  if (::stat(gz.c_str(), &st) == 0) {
    return gz;
  }
  if (::stat(plain.c_str(), &st) == 0) {
    return plain;
  }
  TORCH_CHECK(
      false,
      "load_fashion_mnist: expected ",
      gz,
      " or ",
      plain,
      " but neither exists (install Debian's dataset-fashion-mnist, or pass "
      "the folder holding the IDX files, or set DLCORE_FASHION_MNIST_DIR)");
  return {};
}

} // namespace detail

/// Loads Fashion-MNIST's training set (`train`, 60000 images) or test set
/// (10000 images) from the IDX files in `dir`: `train-images-idx3-ubyte.gz`
/// and `train-labels-idx1-ubyte.gz`, or `t10k-*`; each may also be the plain
/// uncompressed file without `.gz`.
///
/// Returns `data` float32 `[N, 1, 28, 28]` normalized as the homework does,
/// `(x / 255 - 0.5) / 0.5` (see `normalize_fashion_mnist`), and `targets`
/// int64 `[N]` in 0..9. Errors (each a `c10::Error` naming the file): a
/// missing file, anything `read_idx` rejects, images that are not uint8
/// `[N, 28, 28]`, labels that are not uint8 `[N]`, image and label counts
/// that differ, a label outside 0..9.
///
/// Example:
///   dlcore::TensorDataset train = dlcore::load_fashion_mnist(
///       dlcore::default_fashion_mnist_dir(), true);
///   train.data.sizes();  // [60000, 1, 28, 28]
///
/// Differences from PyTorch (Python): torchvision's `FashionMNIST` keeps uint8
/// images and applies the transform per sample in `__getitem__`; here the
/// whole set is normalized once, up front (188 MB of float32 for the training
/// set), which is what makes in-memory batching fast. Nothing is downloaded.
inline TensorDataset load_fashion_mnist(const std::string& dir, bool train) {
  const std::string prefix = train ? "train" : "t10k";
  const std::string images_path =
      detail::fashion_mnist_file(dir, prefix + "-images-idx3-ubyte");
  const std::string labels_path =
      detail::fashion_mnist_file(dir, prefix + "-labels-idx1-ubyte");
  const torch::Tensor images = read_idx(images_path);
  const torch::Tensor labels = read_idx(labels_path);
  TORCH_CHECK(
      images.scalar_type() == at::kByte && images.dim() == 3 &&
          images.size(1) == 28 && images.size(2) == 28,
      "load_fashion_mnist: ",
      images_path,
      ": expected uint8 images [N, 28, 28] but got ",
      images.scalar_type(),
      " ",
      images.sizes());
  TORCH_CHECK(
      labels.scalar_type() == at::kByte && labels.dim() == 1,
      "load_fashion_mnist: ",
      labels_path,
      ": expected uint8 labels [N] but got ",
      labels.scalar_type(),
      " ",
      labels.sizes());
  TORCH_CHECK(
      images.size(0) == labels.size(0),
      "load_fashion_mnist: ",
      images_path,
      " holds ",
      images.size(0),
      " images but ",
      labels_path,
      " holds ",
      labels.size(0),
      " labels; expected the same count");
  const uint8_t* l = labels.data_ptr<uint8_t>();
  for (int64_t i = 0; i < labels.numel(); ++i) {
    TORCH_CHECK(
        l[i] <= 9,
        "load_fashion_mnist: ",
        labels_path,
        ": expected labels in 0..9 but label ",
        i,
        " is ",
        static_cast<int>(l[i]));
  }
  return TensorDataset{normalize_fashion_mnist(images), labels.to(at::kLong)};
}

} // namespace dlcore
