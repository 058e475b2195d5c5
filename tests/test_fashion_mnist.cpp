#include <dlcore/data/fashion_mnist.h>

#include "golden/data.h"

#include <cstdlib>
#include <filesystem>
#include <string>

namespace {

namespace fs = std::filesystem;

// The real set: $DLCORE_FASHION_MNIST_DIR, else Debian's folder.
const std::string kRealDir = dlcore::default_fashion_mnist_dir();

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl =
        (fs::temp_directory_path() / "dlcore_fmnist_XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string str() const {
    return path.string();
  }
};

std::string load_error(const std::string& dir, bool train) {
  try {
    dlcore::load_fashion_mnist(dir, train);
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "(no error)";
}

/// Writes a tiny Fashion-MNIST-shaped test set into `dir`.
void write_set(
    const std::string& dir,
    const torch::Tensor& images,
    const torch::Tensor& labels,
    bool gzip = true) {
  const std::string ext = gzip ? ".gz" : "";
  dlcore::write_idx(dir + "/t10k-images-idx3-ubyte" + ext, images, gzip);
  dlcore::write_idx(dir + "/t10k-labels-idx1-ubyte" + ext, labels, gzip);
}

void check_against_golden(
    const dlcore::TensorDataset& ds,
    int64_t count,
    const int64_t* first_labels,
    const double* first_sums,
    const int64_t* histogram) {
  CHECK(ds.data.scalar_type() == torch::kFloat);
  CHECK(ds.data.sizes() == torch::IntArrayRef({count, 1, 28, 28}));
  CHECK(ds.targets.scalar_type() == torch::kLong);
  CHECK(ds.targets.sizes() == torch::IntArrayRef({count}));
  CHECK(ds.size() == count);
  CHECK(ds.data.min().item<float>() == -1.0f);
  CHECK(ds.data.max().item<float>() == 1.0f);
  for (int i = 0; i < 16; ++i) {
    INFO("image " << i);
    CHECK(ds.targets[i].item<int64_t>() == first_labels[i]);
    CHECK(
        ds.data[i].to(torch::kDouble).sum().item<double>() ==
        Approx(first_sums[i]).epsilon(1e-12));
  }
  const torch::Tensor hist = torch::bincount(ds.targets, {}, 10);
  for (int c = 0; c < 10; ++c) {
    CHECK(hist[c].item<int64_t>() == histogram[c]);
  }
}

} // namespace

TEST_CASE(
    "load_fashion_mnist loads the real training set as torchvision does",
    "[fashion_mnist]") {
  const dlcore::TensorDataset train =
      dlcore::load_fashion_mnist(kRealDir, true);
  REQUIRE(dlcore_golden::kFashionTrainCount == 60000);
  check_against_golden(
      train,
      dlcore_golden::kFashionTrainCount,
      dlcore_golden::kFashionTrainFirstLabels,
      dlcore_golden::kFashionTrainFirstSums,
      dlcore_golden::kFashionTrainHistogram);
  const torch::Tensor hist = torch::bincount(train.targets, {}, 10);
  CHECK(torch::equal(hist, torch::full({10}, 6000, torch::kLong)));
  train.check("test");
}

TEST_CASE(
    "load_fashion_mnist loads the real test set as torchvision does",
    "[fashion_mnist]") {
  const dlcore::TensorDataset test =
      dlcore::load_fashion_mnist(kRealDir, false);
  check_against_golden(
      test,
      dlcore_golden::kFashionTestCount,
      dlcore_golden::kFashionTestFirstLabels,
      dlcore_golden::kFashionTestFirstSums,
      dlcore_golden::kFashionTestHistogram);
  CHECK(test.size() == 10000);
  CHECK(torch::equal(
      torch::bincount(test.targets, {}, 10),
      torch::full({10}, 1000, torch::kLong)));
}

TEST_CASE(
    "normalize_fashion_mnist equals ToTensor + Normalize bit for bit",
    "[fashion_mnist]") {
  const torch::Tensor ramp =
      torch::arange(256, torch::kInt).to(torch::kByte).reshape({1, 16, 16});
  const torch::Tensor x = dlcore::normalize_fashion_mnist(ramp);
  REQUIRE(x.sizes() == torch::IntArrayRef({1, 1, 16, 16}));
  const float* p = x.data_ptr<float>();
  for (int v = 0; v < 256; ++v) {
    INFO("byte " << v);
    CHECK(p[v] == dlcore_golden::kFashionNormalized[v]);
  }
  CHECK_THROWS_WITH(
      dlcore::normalize_fashion_mnist(torch::zeros({2, 28, 28})),
      Catch::Contains(
          "normalize_fashion_mnist: expected uint8 images [N, H, W] but got "
          "Float [2, 28, 28]"));
}

TEST_CASE(
    "default_fashion_mnist_dir honours DLCORE_FASHION_MNIST_DIR",
    "[fashion_mnist]") {
  const char* old = std::getenv("DLCORE_FASHION_MNIST_DIR");
  const std::string saved = old != nullptr ? old : "";
  ::setenv("DLCORE_FASHION_MNIST_DIR", "/some/where", 1);
  CHECK(dlcore::default_fashion_mnist_dir() == "/some/where");
  const std::string debian = "/usr/share/datasets/fashion-mnist";
  ::setenv("DLCORE_FASHION_MNIST_DIR", "", 1);
  CHECK(dlcore::default_fashion_mnist_dir() == debian);
  ::unsetenv("DLCORE_FASHION_MNIST_DIR");
  CHECK(dlcore::default_fashion_mnist_dir() == debian);
  if (old != nullptr) {
    ::setenv("DLCORE_FASHION_MNIST_DIR", saved.c_str(), 1);
  }
  CHECK(dlcore::fashion_mnist_classes().size() == 10);
  CHECK(dlcore::fashion_mnist_classes()[9] == "Ankle boot");
}

TEST_CASE(
    "load_fashion_mnist reads plain uncompressed files too",
    "[fashion_mnist]") {
  TempDir dir;
  const torch::Tensor images =
      torch::randint(0, 256, {5, 28, 28}, torch::kInt).to(torch::kByte);
  const torch::Tensor labels = torch::tensor({0, 9, 3, 3, 1}, torch::kByte);
  write_set(dir.str(), images, labels, false);
  const dlcore::TensorDataset ds = dlcore::load_fashion_mnist(dir.str(), false);
  CHECK(torch::equal(ds.targets, labels.to(torch::kLong)));
  CHECK(torch::equal(ds.data, dlcore::normalize_fashion_mnist(images)));
  CHECK(torch::allclose(
      ds.data, ((images.to(torch::kFloat) / 255 - 0.5) / 0.5).unsqueeze(1)));
}

TEST_CASE(
    "load_fashion_mnist reports missing files, count mismatches and bad "
    "labels",
    "[fashion_mnist]") {
  using Catch::Contains;
  TempDir dir;
  const std::string d = dir.str();
  CHECK_THAT(
      load_error(d, true),
      Contains(
          "load_fashion_mnist: expected " + d +
          "/train-images-idx3-ubyte.gz or " + d +
          "/train-images-idx3-ubyte but neither exists"));

  const torch::Tensor images = torch::zeros({3, 28, 28}, torch::kByte);
  write_set(d, images, torch::tensor({1, 2, 3, 4}, torch::kByte));
  CHECK_THAT(
      load_error(d, false),
      Contains(
          "t10k-images-idx3-ubyte.gz holds 3 images but " + d +
          "/t10k-labels-idx1-ubyte.gz holds 4 labels; expected the same "
          "count"));

  write_set(d, images, torch::tensor({1, 10, 3}, torch::kByte));
  CHECK_THAT(
      load_error(d, false),
      Contains("t10k-labels-idx1-ubyte.gz: expected labels in 0..9 but label 1 "
               "is 10"));

  write_set(
      d,
      torch::zeros({3, 28, 27}, torch::kByte),
      torch::tensor({1, 2, 3}, torch::kByte));
  CHECK_THAT(
      load_error(d, false),
      Contains("expected uint8 images [N, 28, 28] but got Byte [3, 28, 27]"));

  write_set(d, images, torch::tensor({1, 2, 3}, torch::kInt));
  CHECK_THAT(
      load_error(d, false),
      Contains("expected uint8 labels [N] but got Int [3]"));

  // A corrupt file surfaces read_idx's error, which names the file.
  write_set(d, images, torch::tensor({1, 2, 3}, torch::kByte));
  std::filesystem::resize_file(d + "/t10k-labels-idx1-ubyte.gz", 10);
  CHECK_THAT(
      load_error(d, false),
      Contains("read_idx: " + d + "/t10k-labels-idx1-ubyte.gz: "));
}
