#include <dlcore/nn/checkpoint.h>

#include <dlcore/nn/batch_norm_policy.h>
#include <dlcore/nn/forward_child.h>

#include "golden/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("dlcore_test_checkpoint_" + name))
      .string();
}

/// The names in `dir`, sorted.
std::vector<std::string> files_in(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

struct NetImpl : torch::nn::Module {
  explicit NetImpl(int64_t classes, uint64_t seed = 0) {
    torch::manual_seed(seed);
    register_module("conv", torch::nn::Conv2d(1, 2, 3));
    register_module("bn", torch::nn::BatchNorm2d(2));
    register_module("fc", torch::nn::Linear(2, classes));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = dlcore::forward_child(*this, "conv", x);
    x = dlcore::forward_child(*this, "bn", x).mean({2, 3});
    return dlcore::forward_child(*this, "fc", x);
  }
};
TORCH_MODULE(Net);

bool same_state(const torch::nn::Module& a, const torch::nn::Module& b) {
  const auto sa = dlcore::state_dict(a);
  const auto sb = dlcore::state_dict(b);
  if (sa.size() != sb.size()) {
    return false;
  }
  for (std::size_t i = 0; i < sa.size(); ++i) {
    if (sa[i].first != sb[i].first ||
        !torch::equal(sa[i].second, sb[i].second)) {
      return false;
    }
  }
  return true;
}

} // namespace

TEST_CASE(
    "save_weights and load_weights round-trip parameters and buffers",
    "[checkpoint]") {
  Net a(3, 1);
  {
    torch::NoGradGuard g;
    a->named_buffers()["bn.running_var"].fill_(2.5);
    a->named_buffers()["bn.num_batches_tracked"].fill_(11);
  }
  // A folder of its own, so that a leftover temporary file would show.
  const auto dir = std::filesystem::path(temp_path("roundtrip"));
  std::filesystem::remove_all(dir);
  const auto path = (dir / "roundtrip.pt").string();
  dlcore::save_weights(*a, path);
  CHECK(files_in(dir) == std::vector<std::string>{"roundtrip.pt"});
  Net b(3, 2);
  REQUIRE_FALSE(same_state(*a, *b));
  const auto weight_impl =
      b->named_parameters()["fc.weight"].unsafeGetTensorImpl();
  const auto report = dlcore::load_weights(*b, path);
  CHECK(same_state(*a, *b));
  CHECK(report.loaded.size() == 9);
  CHECK(report.missing.empty());
  CHECK(report.unexpected.empty());
  // Loaded in place: the tensors an optimizer holds stay the model's.
  CHECK(
      b->named_parameters()["fc.weight"].unsafeGetTensorImpl() == weight_impl);
  CHECK(b->named_parameters()["fc.weight"].requires_grad());

  // Overwrite: the file is replaced atomically.
  dlcore::save_weights(*b, path);
  CHECK(dlcore::read_weights(path).size() == 9);
  CHECK(files_in(dir) == std::vector<std::string>{"roundtrip.pt"});

  // A failed write (the target is a folder, so the final rename fails)
  // leaves the target as it was and no temporary file behind.
  const auto blocked = dir / "blocked.pt";
  std::filesystem::create_directories(blocked / "inside");
  try {
    dlcore::save_weights(*a, blocked.string());
    FAIL("expected save_weights to throw");
  } catch (const c10::Error& e) {
    CHECK_THAT(
        e.what_without_backtrace(),
        Catch::Matchers::Contains("save_weights: cannot rename"));
  }
  CHECK(std::filesystem::is_directory(blocked / "inside"));
  CHECK(
      files_in(dir) == std::vector<std::string>{"blocked.pt", "roundtrip.pt"});
  CHECK(dlcore::read_weights(path).size() == 9);
  std::filesystem::remove_all(dir);
}

TEST_CASE(
    "shape mismatches are all reported and nothing is loaded", "[checkpoint]") {
  Net ten(10, 1);
  const auto path = temp_path("shapes.pt");
  dlcore::save_weights(*ten, path);
  Net five(5, 2);
  const auto conv_before = five->named_parameters()["conv.weight"].clone();
  try {
    dlcore::load_weights(*five, path);
    FAIL("no error");
  } catch (const c10::Error& e) {
    const std::string m = e.what_without_backtrace();
    CHECK_THAT(
        m, Catch::Contains("does not match the model (nothing was loaded)"));
    CHECK_THAT(m, Catch::Contains("shape mismatches (2)"));
    CHECK_THAT(m, Catch::Contains("fc.weight: file [10, 2] vs model [5, 2]"));
    CHECK_THAT(m, Catch::Contains("fc.bias: file [10] vs model [5]"));
  }
  CHECK(torch::equal(five->named_parameters()["conv.weight"], conv_before));
  // Non-strict does not excuse shapes (as PyTorch).
  CHECK_THROWS_WITH(
      dlcore::load_weights(
          *five, path, dlcore::LoadWeightsOptions().strict(false)),
      Catch::Contains("shape mismatches (2)"));
  // Ignoring the head loads the backbone.
  const auto report = dlcore::load_weights(
      *five, path, dlcore::LoadWeightsOptions().ignore("^fc\\."));
  CHECK(report.ignored == std::vector<std::string>{"fc.weight", "fc.bias"});
  CHECK(report.loaded.size() == 7);
  CHECK(torch::equal(
      five->named_parameters()["conv.weight"],
      ten->named_parameters()["conv.weight"]));
  CHECK_THROWS_WITH(
      dlcore::load_weights(
          *five, path, dlcore::LoadWeightsOptions().ignore("(")),
      Catch::Contains(
          "expected ignore to be a valid ECMAScript regex, but got '('"));
  std::remove(path.c_str());
}

TEST_CASE(
    "missing and unexpected names are errors only when strict",
    "[checkpoint]") {
  torch::nn::Sequential small(torch::nn::Linear(2, 3));
  torch::nn::Sequential big(torch::nn::Linear(2, 3), torch::nn::Linear(3, 3));
  const auto small_path = temp_path("small.pt");
  const auto big_path = temp_path("big.pt");
  dlcore::save_weights(*small, small_path);
  dlcore::save_weights(*big, big_path);
  try {
    dlcore::load_weights(*big, small_path);
    FAIL("no error");
  } catch (const c10::Error& e) {
    const std::string m = e.what_without_backtrace();
    CHECK_THAT(m, Catch::Contains("missing in the file (2): 1.weight, 1.bias"));
    CHECK_THAT(m, Catch::Contains("strict(false)"));
  }
  CHECK_THROWS_WITH(
      dlcore::load_weights(*small, big_path),
      Catch::Contains("unexpected in the file (2): 1.bias, 1.weight"));
  auto r = dlcore::load_weights(
      *big, small_path, dlcore::LoadWeightsOptions().strict(false));
  CHECK(r.loaded == std::vector<std::string>{"0.weight", "0.bias"});
  CHECK(r.missing == std::vector<std::string>{"1.weight", "1.bias"});
  CHECK(torch::equal(
      big[0]->as<torch::nn::Linear>()->weight,
      small[0]->as<torch::nn::Linear>()->weight));
  r = dlcore::load_weights(
      *small, big_path, dlcore::LoadWeightsOptions().strict(false));
  CHECK(r.unexpected.size() == 2);
  std::remove(small_path.c_str());
  std::remove(big_path.c_str());
}

TEST_CASE("load_weights reads LibTorch torch::save archives", "[checkpoint]") {
  Net a(3, 1);
  const auto path = temp_path("archive.pt");
  torch::save(a, path);
  CHECK(dlcore::read_weights(path).count("bn.running_mean") == 1);
  Net b(3, 2);
  const auto report = dlcore::load_weights(*b, path);
  CHECK(report.loaded.size() == 9);
  CHECK(same_state(*a, *b));
  std::remove(path.c_str());
}

TEST_CASE(
    "load_weights reads Python torch.save(dict(state_dict)) files",
    "[checkpoint]") {
  const auto bytes = golden_checkpoint::python_state_dict();
  const auto path = temp_path("python.pt");
  {
    std::ofstream out(path, std::ios::binary);
    out.write(
        reinterpret_cast<const char*>(bytes.data()),
        static_cast<std::streamsize>(bytes.size()));
  }
  torch::nn::Sequential model(
      torch::nn::Linear(3, 2), torch::nn::BatchNorm1d(2));
  dlcore::load_weights(*model, path);
  const auto w = model[0]->as<torch::nn::Linear>()->weight;
  CHECK(torch::equal(w, torch::arange(6, torch::kFloat).reshape({2, 3}) / 4));
  CHECK(torch::equal(
      model[0]->as<torch::nn::Linear>()->bias, torch::tensor({-1.0f, 0.5f})));
  auto bn = model[1]->as<torch::nn::BatchNorm1d>();
  CHECK(torch::equal(bn->running_mean, torch::tensor({0.25f, -0.25f})));
  CHECK(bn->num_batches_tracked.item<int64_t>() == 7);
  std::remove(path.c_str());
}

TEST_CASE(
    "a frozen-batch-norm model loads a batch-norm checkpoint", "[checkpoint]") {
  Net a(3, 1);
  const auto path = temp_path("frozen.pt");
  dlcore::save_weights(*a, path);
  Net b(3, 2);
  dlcore::convert_frozen_batchnorm(*b);
  const auto report = dlcore::load_weights(*b, path);
  CHECK(report.loaded.size() == 9);
  a->eval();
  const auto x = torch::randn({2, 1, 5, 5});
  CHECK(torch::allclose(a(x), b(x), 1e-5, 1e-6));
  std::remove(path.c_str());
}

TEST_CASE(
    "unreadable weights files are errors naming the file", "[checkpoint]") {
  Net a(3);
  CHECK_THROWS_WITH(
      dlcore::load_weights(*a, temp_path("does_not_exist.pt")),
      Catch::Contains("cannot open") && Catch::Contains("does_not_exist.pt"));
  const auto path = temp_path("garbage.pt");
  {
    std::ofstream out(path, std::ios::binary);
    out << "not a checkpoint";
  }
  CHECK_THROWS_WITH(
      dlcore::load_weights(*a, path),
      Catch::Contains("garbage.pt' is not a valid LibTorch archive"));
  // A folder that cannot exist (its parent is a regular file).
  CHECK_THROWS_WITH(
      dlcore::save_weights(*a, path + "/x.pt"),
      Catch::Contains("save_weights: cannot create the folder '" + path + "'"));
  std::remove(path.c_str());
}
