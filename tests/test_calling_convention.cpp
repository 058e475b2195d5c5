// One calling convention: every dlcore function that takes a model accepts
// the module holder (`net`), the module (`*net`) and a shared_ptr
// (`net.ptr()`, also as `std::shared_ptr<torch::nn::Module>`), and gives the
// same result for each.

#include <dlcore/data/batches.h>
#include <dlcore/nn/batch_norm_policy.h>
#include <dlcore/nn/checkpoint.h>
#include <dlcore/nn/forward_child.h>
#include <dlcore/nn/freeze.h>
#include <dlcore/nn/heads.h>
#include <dlcore/nn/models/lenet5.h>
#include <dlcore/nn/models/resnet_cifar.h>
#include <dlcore/nn/safetensors.h>
#include <dlcore/nn/summary.h>
#include <dlcore/study/lr_finder.h>
#include <dlcore/train/predict.h>
#include <dlcore/train/train_loop.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>

namespace {

/// A small ResNet with batch norms, a projection shortcut and a head "fc".
dlcore::ResNetCifar make_resnet() {
  return dlcore::ResNetCifar(dlcore::ResNetCifarOptions::depth(8)
                                 .shortcut(dlcore::ResNetShortcut::kB)
                                 .in_channels(1)
                                 .num_classes(3)
                                 .seed(7));
}

/// Everything a function can change in a model: module types by name,
/// parameter names, shapes, requires_grad and values, buffers, modes.
std::string fingerprint(const torch::nn::Module& m) {
  std::ostringstream os;
  os << m.is_training();
  for (const auto& c : m.named_modules("", /*include_self=*/false)) {
    os << "|" << c.key() << ":" << c.value()->name() << ":"
       << c.value()->is_training();
  }
  for (const auto& p : m.named_parameters()) {
    os << "|" << p.key() << p.value().sizes() << p.value().requires_grad()
       << ":" << p.value().to(torch::kDouble).sum().item<double>();
  }
  for (const auto& b : m.named_buffers()) {
    os << "|" << b.key() << ":"
       << b.value().to(torch::kDouble).sum().item<double>();
  }
  return os.str();
}

std::string describe(const std::vector<torch::Tensor>& ts) {
  std::ostringstream os;
  for (const auto& t : ts) {
    os << t.sizes() << ":" << t.to(torch::kDouble).sum().item<double>() << ";";
  }
  return os.str();
}

std::string describe(const dlcore::LayerGroups& groups) {
  std::string s;
  for (const auto& g : groups) {
    s += describe(g) + "/";
  }
  return s;
}

std::string describe(const dlcore::ParameterCounts& c) {
  std::ostringstream os;
  os << c.trainable << "," << c.frozen << "," << c.trainable_tensors << ","
     << c.frozen_tensors;
  return os.str();
}

std::string describe(int64_t v) {
  return std::to_string(v);
}

std::string describe(const std::string& s) {
  return s;
}

std::string describe(const torch::Tensor& t) {
  return describe(std::vector<torch::Tensor>{t});
}

/// Calls `f` on identical models (`make()`), one in each form: the holder,
/// the module, a shared_ptr to the module type and, `kWithBase`, a
/// shared_ptr<torch::nn::Module> (which functions that call the concrete
/// `forward` cannot take). Checks that the results and the models afterwards
/// are identical, and returns the first result's description.
template <bool kWithBase, typename Make, typename F>
std::string same_result(Make make, F f) {
  auto holder = make();
  auto module = make();
  auto typed = make();
  const std::string r0 = describe(f(holder));
  CHECK(describe(f(*module)) == r0);
  CHECK(describe(f(typed.ptr())) == r0);
  const std::string m0 = fingerprint(*holder);
  CHECK(fingerprint(*module) == m0);
  CHECK(fingerprint(*typed) == m0);
  if constexpr (kWithBase) {
    auto base = make();
    std::shared_ptr<torch::nn::Module> base_ptr = base.ptr();
    CHECK(describe(f(base_ptr)) == r0);
    CHECK(fingerprint(*base) == m0);
  }
  CHECK_FALSE(r0.empty());
  return r0;
}

template <typename Make, typename F>
std::string same_for_every_form(Make make, F f) {
  return same_result<true>(make, f);
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / name).string();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "no error";
}

} // namespace

TEST_CASE(
    "freeze, unfreeze, parameter_counts, select_parameters and layer_groups "
    "take the holder, the module and a shared_ptr alike",
    "[calling_convention]") {
  // 29 parameter tensors: stem 3, layer1 6, layer2 and layer3 9 each, fc 2.
  const auto total = same_for_every_form(
      make_resnet, [](auto&& m) { return dlcore::freeze(m); });
  CHECK(total == "29");
  same_for_every_form(make_resnet, [](auto&& m) {
    dlcore::freeze(m);
    return dlcore::unfreeze(m);
  });
  const auto head = same_for_every_form(
      make_resnet, [](auto&& m) { return dlcore::freeze(m, "layer1"); });
  CHECK(head == "6");
  same_for_every_form(make_resnet, [](auto&& m) {
    dlcore::freeze(m);
    return dlcore::unfreeze(m, dlcore::ParamSelector::regex("^fc\\."));
  });
  const auto counts = same_for_every_form(make_resnet, [](auto&& m) {
    dlcore::freeze(m, "fc");
    return dlcore::parameter_counts(m);
  });
  const int64_t all = dlcore::parameter_counts(make_resnet()).total();
  CHECK(counts == describe(dlcore::ParameterCounts{all - 195, 195, 27, 2}));
  same_for_every_form(make_resnet, [](auto&& m) {
    return dlcore::select_parameters(m, "layer2.0.downsample");
  });
  same_for_every_form(make_resnet, [](auto&& m) {
    return dlcore::layer_groups(
        m, {"conv1", "bn1", "layer1", "layer2", "layer3", "fc"});
  });
  // A const model: the functions that only read take it too.
  const auto net = make_resnet();
  const dlcore::ResNetCifar& cnet = net;
  CHECK(
      dlcore::parameter_counts(cnet).total() ==
      dlcore::parameter_counts(*cnet).total());
  CHECK(
      dlcore::select_parameters(cnet, "fc").size() ==
      dlcore::select_parameters(*cnet, "fc").size());
  CHECK(
      dlcore::layer_groups(cnet, {""}).size() ==
      dlcore::layer_groups(*cnet, {""}).size());
}

TEST_CASE(
    "replace_head, replace_linear_head and the batch-norm policies take the "
    "holder, the module and a shared_ptr alike",
    "[calling_convention]") {
  same_for_every_form(make_resnet, [](auto&& m) {
    return dlcore::replace_linear_head(m, "fc", 5, /*seed=*/3)->weight;
  });
  same_for_every_form(make_resnet, [](auto&& m) {
    torch::manual_seed(4);
    return dlcore::replace_head(m, "fc", torch::nn::Linear(64, 2))->weight;
  });
  same_for_every_form(make_resnet, [](auto&& m) {
    torch::manual_seed(4);
    return dlcore::replace_head(
               m, "fc", std::make_shared<torch::nn::LinearImpl>(64, 2))
        ->weight;
  });
  CHECK(same_for_every_form(make_resnet, [](auto&& m) {
          return dlcore::convert_frozen_batchnorm(m);
        }) == "9"); // bn1, two per block, two downsample.1
  same_for_every_form(make_resnet, [](auto&& m) {
    dlcore::convert_frozen_batchnorm(m);
    return dlcore::convert_to_batchnorm(m);
  });
  same_for_every_form(make_resnet, [](auto&& m) {
    return dlcore::set_batchnorm_policy(
        m, dlcore::BatchNormPolicy::kEvalSticky);
  });
  CHECK(same_for_every_form(make_resnet, [](auto&& m) {
          return dlcore::set_batchnorm_eval(m);
        }) == "9");
}

TEST_CASE(
    "state_dict, save/load_weights and their safetensors forms take the "
    "holder, the module and a shared_ptr alike",
    "[calling_convention]") {
  const auto pt = temp_path("dlcore_calling_convention.pt");
  const auto st = temp_path("dlcore_calling_convention.safetensors");
  {
    auto source = make_resnet();
    torch::NoGradGuard no_grad;
    for (auto& p : source->parameters()) {
      p.add_(1.0);
    }
    dlcore::save_weights(source, pt);
    dlcore::save_weights_safetensors(*source, st);
  }
  same_for_every_form(make_resnet, [&](auto&& m) {
    return describe(static_cast<int64_t>(dlcore::state_dict(m).size())) +
           describe(
               static_cast<int64_t>(dlcore::load_weights(m, pt).loaded.size()));
  });
  same_for_every_form(make_resnet, [&](auto&& m) {
    return describe(static_cast<int64_t>(
        dlcore::load_weights_safetensors(m, st).loaded.size()));
  });
  // Saving from each form writes the same file.
  auto net = make_resnet();
  std::vector<std::string> bytes;
  auto save_each = [&](auto&& m) {
    dlcore::save_weights_safetensors(m, st);
    std::ifstream in(st, std::ios::binary);
    bytes.emplace_back(
        std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  save_each(net);
  save_each(*net);
  save_each(net.ptr());
  CHECK(bytes[1] == bytes[0]);
  CHECK(bytes[2] == bytes[0]);
  std::filesystem::remove(pt);
  std::filesystem::remove(st);
}

TEST_CASE(
    "forward_child and summary take the holder, the module and a shared_ptr "
    "alike",
    "[calling_convention]") {
  const auto x = torch::randn({2, 1, 12, 12});
  same_for_every_form(make_resnet, [&](auto&& m) {
    dlcore::detail::module_of(m).eval();
    return dlcore::forward_child(m, "fc", torch::ones({2, 64}));
  });
  same_for_every_form(make_resnet, [&](auto&& m) {
    const auto s = dlcore::summary(m, {1, 1, 12, 12});
    std::ostringstream os;
    os << s.traced << s.rows.size() << ":" << s.total_params << ":"
       << s.total_macs;
    return os.str();
  });
}

TEST_CASE(
    "train_epoch, evaluate, predict and LRFinder take the module as well as "
    "the holder",
    "[calling_convention]") {
  auto make = [] {
    torch::manual_seed(11);
    return dlcore::LeNet5(4);
  };
  torch::manual_seed(12);
  std::vector<dlcore::Batch> batches;
  for (int i = 0; i < 3; ++i) {
    batches.push_back(
        {torch::randn({8, 1, 28, 28}),
         torch::randint(0, 4, {8}, torch::kLong)});
  }
  same_result<false>(make, [&](auto&& m) {
    torch::optim::SGD sgd(
        dlcore::detail::module_of(m).parameters(),
        torch::optim::SGDOptions(0.05));
    const auto e = dlcore::train_epoch(m, batches, sgd);
    const auto v = dlcore::evaluate(m, batches);
    std::ostringstream os;
    os << e.loss << "," << e.accuracy << "," << v.loss << "," << v.accuracy;
    return os.str();
  });
  same_result<false>(make, [&](auto&& m) {
    return dlcore::predict(
        m, batches[0].data, dlcore::PredictOptions().batch_size(3));
  });
  same_result<false>(make, [&](auto&& m) {
    torch::optim::SGD sgd(
        dlcore::detail::module_of(m).parameters(),
        torch::optim::SGDOptions(1e-3));
    dlcore::LRFinder finder(
        m, sgd, dlcore::LRFinderOptions().num_iter(4).end_lr(1.0));
    const auto r = finder.range_test(batches);
    return torch::tensor(r.losses, torch::kDouble);
  });
}

TEST_CASE(
    "an empty holder or a null pointer is an error naming the function",
    "[calling_convention]") {
  using Catch::Contains;
  dlcore::LeNet5 empty{nullptr};
  std::shared_ptr<dlcore::LeNet5Impl> null;
  CHECK_THAT(
      error_of([&] { dlcore::freeze(empty); }),
      Contains("freeze: expected a module, but got an empty ModuleHolder"));
  CHECK_THAT(
      error_of([&] { dlcore::parameter_counts(null); }),
      Contains("parameter_counts: expected a module, but got a null pointer"));
  CHECK_THAT(
      error_of([&] { dlcore::replace_linear_head(null, "fc3", 2); }),
      Contains("replace_linear_head: expected a module, but got a null "
               "pointer"));
  CHECK_THAT(
      error_of([&] {
        dlcore::summary(empty, {1, 1, 28, 28});
      }),
      Contains("summary: expected a module, but got an empty ModuleHolder"));
  CHECK_THAT(
      error_of([&] { dlcore::set_batchnorm_eval(null); }),
      Contains("set_batchnorm_eval: expected a module, but got a null "
               "pointer"));
}

TEST_CASE(
    "a module not held by a shared_ptr works where the root is only read",
    "[calling_convention]") {
  // modules(include_self=true) needs the root in a shared_ptr; summary and
  // set_batchnorm_eval take the root by reference instead.
  torch::manual_seed(3);
  dlcore::LeNet5Impl on_stack(4);
  const auto s = dlcore::summary(on_stack, {1, 1, 28, 28});
  CHECK(s.traced);
  CHECK(s.output_shape == std::vector<int64_t>{1, 4});
  torch::nn::BatchNorm2dImpl bn(3);
  bn.train();
  CHECK(dlcore::set_batchnorm_eval(bn) == 1);
  CHECK_FALSE(bn.is_training());
  CHECK(dlcore::freeze(on_stack) == 10);
  CHECK(dlcore::parameter_counts(on_stack).trainable == 0);
}
