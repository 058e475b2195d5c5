#pragma once

#include <c10/util/Exception.h>
#include <dlcore/nn/layer_math.h>
#include <dlcore/nn/summary.h>
#include <torch/nn/init.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <vector>

namespace dlcore {

/// The convolution widths of VGG-11/13/16/19 (Simonyan & Zisserman 2015,
/// configurations A, B, D, E); 0 stands for a 2x2 max pool.
inline std::vector<int64_t> vgg_config(int64_t depth) {
  switch (depth) {
    case 11:
      return {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};
    case 13:
      return {64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};
    case 16:
      return {
          64,
          64,
          0,
          128,
          128,
          0,
          256,
          256,
          256,
          0,
          512,
          512,
          512,
          0,
          512,
          512,
          512,
          0};
    case 19:
      return {64,  64,  0,   128, 128, 0,   256, 256, 256, 256, 0,
              512, 512, 512, 512, 0,   512, 512, 512, 512, 0};
    default:
      TORCH_CHECK(false, "VGG: depth must be 11, 13, 16 or 19, got ", depth);
  }
  return {};
}

/// VGG exactly as torchvision builds it (`torchvision.models.vgg11`, ...,
/// `vgg19_bn`): `features` (3x3 convolutions with padding 1, each followed by
/// batch norm if asked and an in-place ReLU; 2x2 max pools), `avgpool`
/// (adaptive average pool to 7x7) and `classifier` (linear 25088->4096, ReLU,
/// dropout, linear 4096->4096, ReLU, dropout, linear 4096->num_classes).
///
/// Parameters for 1000 classes: VGG-11 132,863,336; VGG-13 133,047,848;
/// VGG-16 138,357,544; VGG-19 143,667,240; with batch norm VGG-11 132,868,840,
/// VGG-16 138,365,992, VGG-19 143,678,248. MACs at 224x224: VGG-16 15.47 G,
/// VGG-19 19.63 G. Module and parameter names equal torchvision's.
///
/// Example:
///   dlcore::VGG vgg19(19);                      // VGG-19, 1000 classes
///   dlcore::VGG vgg16_bn(16, /*batch_norm=*/true, /*num_classes=*/10);
///
/// Differences from PyTorch (Python): the depth is a constructor argument
/// instead of one factory per depth. Initialisation follows torchvision
/// (Kaiming normal fan-out for convolutions, N(0, 0.01) for linear layers,
/// zero biases, unit batch-norm scales), drawn from LibTorch's generator.
class VGGImpl : public torch::nn::Module, public SummaryTraceable {
 public:
  /// `depth` 11, 13, 16 or 19; `num_classes` >= 1; `dropout` in [0, 1].
  explicit VGGImpl(
      int64_t depth = 16,
      bool batch_norm = false,
      int64_t num_classes = 1000,
      double dropout = 0.5) {
    TORCH_CHECK(
        num_classes >= 1, "VGG: num_classes must be >= 1, got ", num_classes);
    TORCH_CHECK(
        dropout >= 0 && dropout <= 1,
        "VGG: dropout must be in [0, 1], got ",
        dropout);
    namespace nn = torch::nn;
    nn::Sequential f;
    int64_t in = 3;
    for (int64_t v : vgg_config(depth)) {
      if (v == 0) {
        f->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2)));
        continue;
      }
      f->push_back(nn::Conv2d(nn::Conv2dOptions(in, v, 3).padding(1)));
      if (batch_norm) {
        f->push_back(nn::BatchNorm2d(v));
      }
      f->push_back(nn::ReLU(nn::ReLUOptions().inplace(true)));
      in = v;
    }
    features = register_module("features", f);
    avgpool = register_module(
        "avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(7)));
    classifier = register_module(
        "classifier",
        nn::Sequential(
            nn::Linear(512 * 7 * 7, 4096),
            nn::ReLU(nn::ReLUOptions().inplace(true)),
            nn::Dropout(dropout),
            nn::Linear(4096, 4096),
            nn::ReLU(nn::ReLUOptions().inplace(true)),
            nn::Dropout(dropout),
            nn::Linear(4096, num_classes)));
    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* c = m->as<nn::Conv2d>()) {
        nn::init::kaiming_normal_(c->weight, 0, torch::kFanOut, torch::kReLU);
        nn::init::zeros_(c->bias);
      } else if (auto* b = m->as<nn::BatchNorm2d>()) {
        nn::init::ones_(b->weight);
        nn::init::zeros_(b->bias);
      } else if (auto* l = m->as<nn::Linear>()) {
        nn::init::normal_(l->weight, 0, 0.01);
        nn::init::zeros_(l->bias);
      }
    }
  }

  /// Logits [N, num_classes] for images [N, 3, H, W] (H, W >= 32).
  torch::Tensor forward(const torch::Tensor& x) {
    SummaryTracer off;
    return trace_forward(x, off);
  }

  /// `forward`, step by step (see `summary()`).
  torch::Tensor trace_forward(
      const torch::Tensor& x, SummaryTracer& t) override {
    auto y = t("features", features, x);
    y = t("avgpool", avgpool, y);
    y = t.functional("flatten", y, y.flatten(1));
    return t("classifier", classifier, y);
  }

  torch::nn::Sequential features{nullptr};
  torch::nn::AdaptiveAvgPool2d avgpool{nullptr};
  torch::nn::Sequential classifier{nullptr};
};

/// Module holder of `VGGImpl`.
TORCH_MODULE(VGG);

/// VGG as layer specs for `analyze_layers()` (input {3, H, W}), layer for
/// layer the same as `VGG(depth, batch_norm, num_classes)` and named alike.
inline std::vector<LayerSpec> vgg_layers(
    int64_t depth, bool batch_norm = false, int64_t num_classes = 1000) {
  using L = LayerSpec;
  std::vector<L> layers;
  int64_t in = 3;
  auto next = [&layers](const std::string& prefix) {
    return prefix + "." + std::to_string(layers.size());
  };
  for (int64_t v : vgg_config(depth)) {
    if (v == 0) {
      layers.push_back(L::max_pool2d(2).stride(2).name(next("features")));
      continue;
    }
    layers.push_back(L::conv2d(in, v, 3).padding(1).name(next("features")));
    if (batch_norm) {
      layers.push_back(L::batch_norm(v).name(next("features")));
    }
    layers.push_back(L::relu().name(next("features")));
    in = v;
  }
  layers.push_back(L::adaptive_avg_pool2d(7).name("avgpool"));
  layers.push_back(L::flatten().name("flatten"));
  const std::vector<L> head = {
      L::linear(512 * 7 * 7, 4096),
      L::relu(),
      L::dropout(),
      L::linear(4096, 4096),
      L::relu(),
      L::dropout(),
      L::linear(4096, num_classes)};
  for (size_t i = 0; i < head.size(); ++i) {
    layers.push_back(L(head[i]).name("classifier." + std::to_string(i)));
  }
  return layers;
}

} // namespace dlcore
