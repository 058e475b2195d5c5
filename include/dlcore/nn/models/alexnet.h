#pragma once

#include <c10/util/Exception.h>
#include <dlcore/nn/layer_math.h>
#include <dlcore/nn/summary.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <vector>

namespace dlcore {

/// AlexNet exactly as torchvision builds it (`torchvision.models.alexnet`, the
/// "one weird trick" single-tower variant of Krizhevsky 2014):
///
///   features: conv 3->64 k11 s4 p2, ReLU, maxpool 3/2, conv 64->192 k5 p2,
///             ReLU, maxpool 3/2, conv 192->384 k3 p1, ReLU, conv 384->256 k3
///             p1, ReLU, conv 256->256 k3 p1, ReLU, maxpool 3/2
///   avgpool:  adaptive average pool to 6x6
///   classifier: dropout, linear 9216->4096, ReLU, dropout, linear
///             4096->4096, ReLU, linear 4096->num_classes
///
/// 61,100,840 parameters for 1000 classes, 0.714 G MACs at 224x224. Module
/// and parameter names equal torchvision's (`features.0.weight`, ...), so a
/// converted state_dict loads one to one.
///
/// Example:
///   dlcore::AlexNet net;                       // 1000 classes
///   auto logits = net->forward(torch::randn({2, 3, 224, 224}));
///   std::cout << dlcore::summary(net, {1, 3, 224, 224});
///
/// Differences from PyTorch (Python): initialisation is LibTorch's default
/// (torchvision's AlexNet also keeps PyTorch's default initialisation, with a
/// different random stream).
class AlexNetImpl : public torch::nn::Module, public SummaryTraceable {
 public:
  /// `num_classes` outputs (>= 1) and the classifier's dropout probability
  /// (in [0, 1]).
  explicit AlexNetImpl(int64_t num_classes = 1000, double dropout = 0.5) {
    TORCH_CHECK(
        num_classes >= 1,
        "AlexNet: num_classes must be >= 1, got ",
        num_classes);
    TORCH_CHECK(
        dropout >= 0 && dropout <= 1,
        "AlexNet: dropout must be in [0, 1], got ",
        dropout);
    namespace nn = torch::nn;
    auto relu = [] { return nn::ReLU(nn::ReLUOptions().inplace(true)); };
    auto pool = [] { return nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2)); };
    features = register_module(
        "features",
        nn::Sequential(
            nn::Conv2d(nn::Conv2dOptions(3, 64, 11).stride(4).padding(2)),
            relu(),
            pool(),
            nn::Conv2d(nn::Conv2dOptions(64, 192, 5).padding(2)),
            relu(),
            pool(),
            nn::Conv2d(nn::Conv2dOptions(192, 384, 3).padding(1)),
            relu(),
            nn::Conv2d(nn::Conv2dOptions(384, 256, 3).padding(1)),
            relu(),
            nn::Conv2d(nn::Conv2dOptions(256, 256, 3).padding(1)),
            relu(),
            pool()));
    avgpool = register_module(
        "avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(6)));
    classifier = register_module(
        "classifier",
        nn::Sequential(
            nn::Dropout(dropout),
            nn::Linear(256 * 6 * 6, 4096),
            relu(),
            nn::Dropout(dropout),
            nn::Linear(4096, 4096),
            relu(),
            nn::Linear(4096, num_classes)));
  }

  /// Logits [N, num_classes] for images [N, 3, H, W] (H, W >= 63).
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

/// Module holder of `AlexNetImpl`.
TORCH_MODULE(AlexNet);

/// AlexNet as layer specs for `analyze_layers()` (input {3, H, W}), layer for
/// layer the same as `AlexNet`, with names `features.0`, ..., `classifier.6`.
inline std::vector<LayerSpec> alexnet_layers(int64_t num_classes = 1000) {
  using L = LayerSpec;
  return {
      L::conv2d(3, 64, 11).stride(4).padding(2).name("features.0"),
      L::relu().name("features.1"),
      L::max_pool2d(3).stride(2).name("features.2"),
      L::conv2d(64, 192, 5).padding(2).name("features.3"),
      L::relu().name("features.4"),
      L::max_pool2d(3).stride(2).name("features.5"),
      L::conv2d(192, 384, 3).padding(1).name("features.6"),
      L::relu().name("features.7"),
      L::conv2d(384, 256, 3).padding(1).name("features.8"),
      L::relu().name("features.9"),
      L::conv2d(256, 256, 3).padding(1).name("features.10"),
      L::relu().name("features.11"),
      L::max_pool2d(3).stride(2).name("features.12"),
      L::adaptive_avg_pool2d(6).name("avgpool"),
      L::flatten().name("flatten"),
      L::dropout().name("classifier.0"),
      L::linear(256 * 6 * 6, 4096).name("classifier.1"),
      L::relu().name("classifier.2"),
      L::dropout().name("classifier.3"),
      L::linear(4096, 4096).name("classifier.4"),
      L::relu().name("classifier.5"),
      L::linear(4096, num_classes).name("classifier.6"),
  };
}

} // namespace dlcore
