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
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace dlcore {

namespace detail {
/// torchvision's `downsample` shortcut: a strided 1x1 convolution and a
/// batch norm, for a block whose input and output shapes differ.
inline torch::nn::Sequential resnet_downsample(
    int64_t in_channels, int64_t out_channels, int64_t stride) {
  namespace nn = torch::nn;
  return nn::Sequential(
      nn::Conv2d(nn::Conv2dOptions(in_channels, out_channels, 1)
                     .stride(stride)
                     .bias(false)),
      nn::BatchNorm2d(out_channels));
}
} // namespace detail

/// ResNet's basic block (two 3x3 convolutions), as torchvision's
/// `BasicBlock`: conv1 (3x3, stride), bn1, relu, conv2 (3x3), bn2, plus the
/// shortcut (identity, or `downsample` = 1x1 conv with stride + batch norm),
/// then relu. Convolutions have no bias.
class ResNetBasicBlockImpl : public torch::nn::Module, public SummaryTraceable {
 public:
  /// Output channels = planes × expansion.
  static constexpr int64_t expansion = 1;

  ResNetBasicBlockImpl(int64_t inplanes, int64_t planes, int64_t stride = 1) {
    namespace nn = torch::nn;
    conv1 = register_module(
        "conv1",
        nn::Conv2d(nn::Conv2dOptions(inplanes, planes, 3)
                       .stride(stride)
                       .padding(1)
                       .bias(false)));
    bn1 = register_module("bn1", nn::BatchNorm2d(planes));
    relu = register_module("relu", nn::ReLU(nn::ReLUOptions().inplace(true)));
    conv2 = register_module(
        "conv2",
        nn::Conv2d(
            nn::Conv2dOptions(planes, planes, 3).padding(1).bias(false)));
    bn2 = register_module("bn2", nn::BatchNorm2d(planes));
    if (stride != 1 || inplanes != planes * expansion) {
      downsample = register_module(
          "downsample",
          detail::resnet_downsample(inplanes, planes * expansion, stride));
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    SummaryTracer off;
    return trace_forward(x, off);
  }

  torch::Tensor trace_forward(
      const torch::Tensor& x, SummaryTracer& t) override {
    auto out = t("conv1", conv1, x);
    out = t("bn1", bn1, out);
    out = t("relu", relu, out);
    out = t("conv2", conv2, out);
    out = t("bn2", bn2, out);
    const auto identity = downsample ? t("downsample", downsample, x) : x;
    out = t.functional("add", out, out.add_(identity));
    return t("relu", relu, out);
  }

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::ReLU relu{nullptr};
  /// Empty when the shortcut is the identity.
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(ResNetBasicBlock);

/// ResNet's bottleneck block, as torchvision's `Bottleneck` (ResNet v1.5: the
/// stride sits on the 3x3 convolution): conv1 1x1, bn1, relu, conv2 3x3
/// (stride), bn2, relu, conv3 1x1 to planes × 4, bn3, shortcut, relu.
class ResNetBottleneckImpl : public torch::nn::Module, public SummaryTraceable {
 public:
  /// Output channels = planes × expansion.
  static constexpr int64_t expansion = 4;

  ResNetBottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride = 1) {
    namespace nn = torch::nn;
    conv1 = register_module(
        "conv1",
        nn::Conv2d(nn::Conv2dOptions(inplanes, planes, 1).bias(false)));
    bn1 = register_module("bn1", nn::BatchNorm2d(planes));
    conv2 = register_module(
        "conv2",
        nn::Conv2d(nn::Conv2dOptions(planes, planes, 3)
                       .stride(stride)
                       .padding(1)
                       .bias(false)));
    bn2 = register_module("bn2", nn::BatchNorm2d(planes));
    conv3 = register_module(
        "conv3",
        nn::Conv2d(
            nn::Conv2dOptions(planes, planes * expansion, 1).bias(false)));
    bn3 = register_module("bn3", nn::BatchNorm2d(planes * expansion));
    relu = register_module("relu", nn::ReLU(nn::ReLUOptions().inplace(true)));
    if (stride != 1 || inplanes != planes * expansion) {
      downsample = register_module(
          "downsample",
          detail::resnet_downsample(inplanes, planes * expansion, stride));
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    SummaryTracer off;
    return trace_forward(x, off);
  }

  torch::Tensor trace_forward(
      const torch::Tensor& x, SummaryTracer& t) override {
    auto out = t("conv1", conv1, x);
    out = t("bn1", bn1, out);
    out = t("relu", relu, out);
    out = t("conv2", conv2, out);
    out = t("bn2", bn2, out);
    out = t("relu", relu, out);
    out = t("conv3", conv3, out);
    out = t("bn3", bn3, out);
    const auto identity = downsample ? t("downsample", downsample, x) : x;
    out = t.functional("add", out, out.add_(identity));
    return t("relu", relu, out);
  }

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::ReLU relu{nullptr};
  /// Empty when the shortcut is the identity.
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(ResNetBottleneck);

/// Blocks per stage of the ImageNet ResNets (He et al. 2016, Table 1).
inline std::array<int64_t, 4> resnet_stage_blocks(int64_t depth) {
  switch (depth) {
    case 18:
      return {{2, 2, 2, 2}};
    case 34:
      return {{3, 4, 6, 3}};
    case 50:
      return {{3, 4, 6, 3}};
    case 101:
      return {{3, 4, 23, 3}};
    case 152:
      return {{3, 8, 36, 3}};
    default:
      TORCH_CHECK(
          false, "ResNet: depth must be 18, 34, 50, 101 or 152, got ", depth);
  }
  return {};
}

/// ImageNet-size ResNet exactly as torchvision builds it
/// (`torchvision.models.resnet18`, ..., `resnet152`): conv1 7x7/2 (no bias),
/// bn1, relu, maxpool 3x3/2 p1, layer1..layer4 (basic blocks for depth 18 and
/// 34, bottlenecks with the stride on the 3x3 convolution — v1.5 — for 50 and
/// deeper), adaptive average pool to 1x1, fc.
///
/// Parameters for 1000 classes: ResNet-18 11,689,512; ResNet-34 21,797,672;
/// ResNet-50 25,557,032. MACs at 224x224: ResNet-18 1.81 G, ResNet-50 4.09 G.
/// Module and parameter names equal torchvision's (`layer1.0.conv1.weight`).
/// For the CIFAR-size ResNets see nn/models/resnet_cifar.h.
///
/// Example:
///   dlcore::ResNet net(50);                     // ResNet-50, 1000 classes
///   auto logits = net->forward(torch::randn({1, 3, 224, 224}));
///
/// Differences from PyTorch (Python): the depth is a constructor argument
/// instead of one factory per depth; groups/width (ResNeXt, wide ResNets) and
/// dilation are not offered. Initialisation follows torchvision (Kaiming
/// normal fan-out for convolutions, unit batch-norm scales, zero shifts;
/// `zero_init_residual` zeroes each block's last batch-norm scale).
class ResNetImpl : public torch::nn::Module, public SummaryTraceable {
 public:
  explicit ResNetImpl(
      int64_t depth = 18,
      int64_t num_classes = 1000,
      bool zero_init_residual = false)
      : depth_(depth) {
    TORCH_CHECK(
        num_classes >= 1,
        "ResNet: num_classes must be >= 1, got ",
        num_classes);
    const auto blocks = resnet_stage_blocks(depth);
    namespace nn = torch::nn;
    conv1 = register_module(
        "conv1",
        nn::Conv2d(
            nn::Conv2dOptions(3, 64, 7).stride(2).padding(3).bias(false)));
    bn1 = register_module("bn1", nn::BatchNorm2d(64));
    relu = register_module("relu", nn::ReLU(nn::ReLUOptions().inplace(true)));
    maxpool = register_module(
        "maxpool", nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1)));
    const bool bottleneck = depth >= 50;
    const int64_t expansion = bottleneck ? ResNetBottleneckImpl::expansion
                                         : ResNetBasicBlockImpl::expansion;
    int64_t inplanes = 64;
    nn::Sequential* stages[4] = {&layer1, &layer2, &layer3, &layer4};
    for (int s = 0; s < 4; ++s) {
      const int64_t planes = int64_t{64} << s;
      nn::Sequential stage;
      for (int64_t b = 0; b < blocks[s]; ++b) {
        const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
        if (bottleneck) {
          stage->push_back(ResNetBottleneck(inplanes, planes, stride));
        } else {
          stage->push_back(ResNetBasicBlock(inplanes, planes, stride));
        }
        inplanes = planes * expansion;
      }
      *stages[s] = register_module("layer" + std::to_string(s + 1), stage);
    }
    avgpool = register_module(
        "avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)));
    fc = register_module("fc", nn::Linear(512 * expansion, num_classes));

    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* c = m->as<nn::Conv2d>()) {
        nn::init::kaiming_normal_(c->weight, 0, torch::kFanOut, torch::kReLU);
      } else if (auto* bn = m->as<nn::BatchNorm2d>()) {
        nn::init::ones_(bn->weight);
        nn::init::zeros_(bn->bias);
      }
    }
    if (zero_init_residual) {
      for (auto& m : modules(/*include_self=*/false)) {
        if (auto* b = m->as<ResNetBottleneck>()) {
          nn::init::zeros_(b->bn3->weight);
        } else if (auto* bb = m->as<ResNetBasicBlock>()) {
          nn::init::zeros_(bb->bn2->weight);
        }
      }
    }
  }

  /// Logits [N, num_classes] for images [N, 3, H, W].
  torch::Tensor forward(const torch::Tensor& x) {
    SummaryTracer off;
    return trace_forward(x, off);
  }

  /// `forward`, step by step (see `summary()`).
  torch::Tensor trace_forward(
      const torch::Tensor& x, SummaryTracer& t) override {
    auto y = t("conv1", conv1, x);
    y = t("bn1", bn1, y);
    y = t("relu", relu, y);
    y = t("maxpool", maxpool, y);
    y = t("layer1", layer1, y);
    y = t("layer2", layer2, y);
    y = t("layer3", layer3, y);
    y = t("layer4", layer4, y);
    y = t("avgpool", avgpool, y);
    y = t.functional("flatten", y, y.flatten(1));
    return t("fc", fc, y);
  }

  /// 18, 34, 50, 101 or 152.
  int64_t depth() const {
    return depth_;
  }

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::ReLU relu{nullptr};
  torch::nn::MaxPool2d maxpool{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr},
      layer4{nullptr};
  torch::nn::AdaptiveAvgPool2d avgpool{nullptr};
  torch::nn::Linear fc{nullptr};

 private:
  int64_t depth_;
};

/// Module holder of `ResNetImpl`.
TORCH_MODULE(ResNet);

/// ResNet as layer specs for `analyze_layers()` (input {3, H, W}), layer for
/// layer the same as `ResNet(depth, num_classes)` and named alike; each block
/// is an `add` of its main path and its shortcut, followed by its relu.
/// `stages` < 4 stops after that many stages and `head` = false leaves out
/// avgpool, flatten and fc (a detection backbone).
inline std::vector<LayerSpec> resnet_layers(
    int64_t depth,
    int64_t num_classes = 1000,
    int64_t stages = 4,
    bool head = true) {
  using L = LayerSpec;
  const auto blocks = resnet_stage_blocks(depth);
  TORCH_CHECK(
      stages >= 0 && stages <= 4,
      "resnet_layers: stages must be in [0, 4], got ",
      stages);
  std::vector<L> layers = {
      L::conv2d(3, 64, 7).stride(2).padding(3).bias(false).name("conv1"),
      L::batch_norm(64).name("bn1"),
      L::relu().name("relu"),
      L::max_pool2d(3).stride(2).padding(1).name("maxpool")};
  const bool bottleneck = depth >= 50;
  const int64_t expansion = bottleneck ? 4 : 1;
  int64_t inplanes = 64;
  for (int64_t s = 0; s < stages; ++s) {
    const int64_t planes = int64_t{64} << s;
    for (int64_t b = 0; b < blocks[s]; ++b) {
      const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
      const std::string p =
          "layer" + std::to_string(s + 1) + "." + std::to_string(b) + ".";
      std::vector<L> main;
      if (bottleneck) {
        main = {
            L::conv2d(inplanes, planes, 1).bias(false).name(p + "conv1"),
            L::batch_norm(planes).name(p + "bn1"),
            L::relu().name(p + "relu"),
            L::conv2d(planes, planes, 3)
                .stride(stride)
                .padding(1)
                .bias(false)
                .name(p + "conv2"),
            L::batch_norm(planes).name(p + "bn2"),
            L::relu().name(p + "relu"),
            L::conv2d(planes, planes * 4, 1).bias(false).name(p + "conv3"),
            L::batch_norm(planes * 4).name(p + "bn3")};
      } else {
        main = {
            L::conv2d(inplanes, planes, 3)
                .stride(stride)
                .padding(1)
                .bias(false)
                .name(p + "conv1"),
            L::batch_norm(planes).name(p + "bn1"),
            L::relu().name(p + "relu"),
            L::conv2d(planes, planes, 3)
                .padding(1)
                .bias(false)
                .name(p + "conv2"),
            L::batch_norm(planes).name(p + "bn2")};
      }
      std::vector<L> shortcut;
      if (stride != 1 || inplanes != planes * expansion) {
        shortcut = {
            L::conv2d(inplanes, planes * expansion, 1)
                .stride(stride)
                .bias(false)
                .name(p + "downsample.0"),
            L::batch_norm(planes * expansion).name(p + "downsample.1")};
      }
      layers.push_back(L::add({main, shortcut}).name(p + "add"));
      layers.push_back(L::relu().name(p + "relu"));
      inplanes = planes * expansion;
    }
  }
  if (head) {
    layers.push_back(L::adaptive_avg_pool2d(1).name("avgpool"));
    layers.push_back(L::flatten().name("flatten"));
    layers.push_back(L::linear(inplanes, num_classes).name("fc"));
  }
  return layers;
}

} // namespace dlcore
