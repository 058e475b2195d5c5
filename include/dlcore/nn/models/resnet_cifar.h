#pragma once

// Residual networks for small images (CIFAR-style): ResNet-8/20/32/56/110 of
// He et al. 2016, §4.2, and ResNet-18 with a 3x3 stem and no max-pool.

#include <dlcore/nn/forward_child.h>
#include <dlcore/nn/freeze.h>
#include <dlcore/nn/layer_math.h>
#include <dlcore/nn/summary.h>

#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>
#include <torch/arg.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/padding.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dlcore {

/// How a residual block matches its shortcut to a change of width or
/// resolution (He et al. 2016, §3.3 and §4.2).
enum class ResNetShortcut {
  /// Option A: identity on a stride-2 subsample, extra channels zero-padded
  /// (no parameters). The paper's choice for its CIFAR networks.
  kA,
  /// Option B: a 1x1 convolution + batch norm projection where the shape
  /// changes, identity elsewhere. torchvision's choice (`downsample`).
  kB,
};

/// Options of `ResNetCifar`.
///
/// Example:
///   dlcore::ResNetCifar net(dlcore::ResNetCifarOptions::depth(20)
///                               .in_channels(1).num_classes(5));
struct ResNetCifarOptions {
  /// Residual blocks per stage. Default: {3, 3, 3} (ResNet-20)
  TORCH_ARG(std::vector<int64_t>, blocks) = {3, 3, 3};
  /// Channels per stage; the stem has widths[0]. Default: {16, 32, 64}
  TORCH_ARG(std::vector<int64_t>, widths) = {16, 32, 64};
  /// Input channels (1 for FashionMNIST). Default: 3
  TORCH_ARG(int64_t, in_channels) = 3;
  /// Outputs of the head `fc`. Default: 10
  TORCH_ARG(int64_t, num_classes) = 10;
  /// Shortcut type. Default: ResNetShortcut::kA
  TORCH_ARG(ResNetShortcut, shortcut) = ResNetShortcut::kA;
  /// Seed of the weight initialization. Default: 0
  TORCH_ARG(uint64_t, seed) = 0;

 public:
  /// The paper's 6n+2-layer network (§4.2): n blocks in each of three
  /// stages of 16/32/64 channels, option A. depth 20, 32, 44, 56, 110 are
  /// the paper's; 8 (n = 1) is a small variant.
  static ResNetCifarOptions depth(int64_t depth) {
    TORCH_CHECK(
        depth >= 8 && (depth - 2) % 6 == 0,
        "ResNetCifarOptions: expected a depth of the form 6n + 2 with n >= 1 "
        "(8, 20, 32, 44, 56, 110), but got ",
        depth);
    const int64_t n = (depth - 2) / 6;
    return ResNetCifarOptions().blocks({n, n, n});
  }
  /// ResNet-18 for small images: torchvision's ResNet-18 (2 blocks in each of
  /// four stages of 64/128/256/512 channels, option B) with a 3x3 stride-1
  /// stem and no max-pool.
  static ResNetCifarOptions resnet18() {
    return ResNetCifarOptions()
        .blocks({2, 2, 2, 2})
        .widths({64, 128, 256, 512})
        .shortcut(ResNetShortcut::kB);
  }
};

namespace detail {
/// Checks `o` for `ResNetCifar` and `resnet_cifar_layers` (`owner`).
inline void resnet_cifar_check(const ResNetCifarOptions& o, const char* owner) {
  TORCH_CHECK(
      !o.blocks().empty() && o.blocks().size() == o.widths().size(),
      owner,
      ": expected as many widths as stages (at least one), but got ",
      o.blocks().size(),
      " stages and ",
      o.widths().size(),
      " widths");
  for (std::size_t s = 0; s < o.blocks().size(); ++s) {
    TORCH_CHECK(
        o.blocks()[s] >= 1 && o.widths()[s] >= 1,
        owner,
        ": expected blocks and widths >= 1, but stage ",
        s,
        " has ",
        o.blocks()[s],
        " blocks of width ",
        o.widths()[s]);
    TORCH_CHECK(
        o.shortcut() == ResNetShortcut::kB || s == 0 ||
            o.widths()[s] >= o.widths()[s - 1],
        owner,
        ": option A shortcuts need non-decreasing widths, but got ",
        c10::IntArrayRef(o.widths()));
  }
  TORCH_CHECK(
      o.in_channels() >= 1,
      owner,
      ": expected in_channels >= 1, but got ",
      o.in_channels());
  TORCH_CHECK(
      o.num_classes() >= 1,
      owner,
      ": expected num_classes >= 1, but got ",
      o.num_classes());
}
} // namespace detail

/// Option-B shortcut: 1x1 convolution ("0") and batch norm ("1"), the
/// parameter names of torchvision's `downsample` Sequential; the batch norm is
/// reached through the registry, so `set_batchnorm_policy` applies to it.
class ResNetCifarProjectionImpl
    : public torch::nn::Cloneable<ResNetCifarProjectionImpl>,
      public SummaryTraceable {
 public:
  ResNetCifarProjectionImpl(int64_t in, int64_t out, int64_t stride)
      : in_(in), out_(out), stride_(stride) {
    reset();
  }
  void reset() override {
    conv = register_module(
        "0",
        torch::nn::Conv2d(torch::nn::Conv2dOptions(in_, out_, 1)
                              .stride(stride_)
                              .bias(false)));
    register_module("1", torch::nn::BatchNorm2d(out_));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    SummaryTracer off;
    return trace_forward(x, off);
  }
  /// `forward`, step by step (see `summary()`): "0", then "1".
  torch::Tensor trace_forward(
      const torch::Tensor& x, SummaryTracer& t) override {
    return forward_child(*this, "1", t("0", conv, x), t);
  }
  torch::nn::Conv2d conv{nullptr};

 private:
  int64_t in_;
  int64_t out_;
  int64_t stride_;
};
TORCH_MODULE(ResNetCifarProjection);

/// The basic residual block: conv3x3-bn-relu-conv3x3-bn, plus the
/// shortcut, then relu. Children: conv1, bn1, conv2, bn2 and, for option B
/// where the shape changes, downsample. In `summary()` the steps are conv1,
/// bn1, relu1, conv2, bn2, the shortcut (downsample, or the option-A
/// `shortcut`, or nothing for the identity), add, relu2.
class ResNetCifarBlockImpl : public torch::nn::Cloneable<ResNetCifarBlockImpl>,
                             public SummaryTraceable {
 public:
  ResNetCifarBlockImpl(
      int64_t in, int64_t out, int64_t stride, ResNetShortcut shortcut)
      : in_(in), out_(out), stride_(stride), shortcut_(shortcut) {
    reset();
  }
  void reset() override {
    conv1 = register_module(
        "conv1",
        torch::nn::Conv2d(torch::nn::Conv2dOptions(in_, out_, 3)
                              .stride(stride_)
                              .padding(1)
                              .bias(false)));
    register_module("bn1", torch::nn::BatchNorm2d(out_));
    conv2 = register_module(
        "conv2",
        torch::nn::Conv2d(
            torch::nn::Conv2dOptions(out_, out_, 3).padding(1).bias(false)));
    register_module("bn2", torch::nn::BatchNorm2d(out_));
    projection_ =
        (stride_ != 1 || in_ != out_) && shortcut_ == ResNetShortcut::kB;
    if (projection_) {
      register_module("downsample", ResNetCifarProjection(in_, out_, stride_));
    }
  }
  torch::Tensor forward(const torch::Tensor& x) {
    SummaryTracer off;
    return trace_forward(x, off);
  }
  /// `forward`, step by step (see `summary()`).
  torch::Tensor trace_forward(
      const torch::Tensor& x, SummaryTracer& t) override {
    auto y = t("conv1", conv1, x);
    y = forward_child(*this, "bn1", y, t);
    y = t.functional("relu1", y, torch::relu(y));
    y = t("conv2", conv2, y);
    y = forward_child(*this, "bn2", y, t);
    const auto s = shortcut(x, t);
    y = t.functional("add", y, y + s);
    return t.functional("relu2", y, torch::relu(y));
  }
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::Conv2d conv2{nullptr};

 private:
  torch::Tensor shortcut(const torch::Tensor& x, SummaryTracer& t) {
    if (projection_) {
      return forward_child<ResNetCifarProjectionImpl>(
          *this, "downsample", x, t);
    }
    if (stride_ == 1 && in_ == out_) {
      return x;
    }
    // Option A: subsample, then zero-pad the new channels at the end.
    auto y = x;
    if (stride_ != 1) {
      y = y.slice(2, 0, c10::nullopt, stride_)
              .slice(3, 0, c10::nullopt, stride_);
    }
    TORCH_CHECK(
        out_ >= in_,
        "ResNetCifar: option A needs out >= in channels, but got ",
        in_,
        " -> ",
        out_);
    return t.functional(
        "shortcut",
        x,
        torch::nn::functional::pad(
            y,
            torch::nn::functional::PadFuncOptions(
                {0, 0, 0, 0, 0, out_ - in_})));
  }

  int64_t in_;
  int64_t out_;
  int64_t stride_;
  ResNetShortcut shortcut_;
  bool projection_ = false;
};
TORCH_MODULE(ResNetCifarBlock);

/// A residual network for small images (He et al. 2016, "Deep Residual
/// Learning for Image Recognition", §4.2), input [N, in_channels, H, W] of any
/// H, W >= 8 (32x32 CIFAR, 28x28 FashionMNIST).
///
/// stem:   conv1 (3x3, stride 1) - bn1 - relu
/// stages: layer1..layerS, each `blocks[s]` basic blocks of `widths[s]`
///         channels, the first block of every stage but the first with
///         stride 2
/// head:   global average pool (avgpool, flatten) - `fc` (Linear)
///
/// Parameter names follow torchvision's ResNet (conv1, bn1,
/// layer1.0.conv1.weight, ..., layer2.0.downsample.0.weight, fc.weight), so
/// `replace_linear_head(net, "fc", k)` and `layer_groups()` work, and the
/// forward reaches every batch norm and the head through the registry, so
/// `set_batchnorm_policy` and `replace_head` take effect, in `summary()`
/// too (the model is `SummaryTraceable`; `resnet_cifar_layers` describes
/// the same rows for `analyze_layers`).
/// Initialization (seeded): convolutions Kaiming normal (fan_out, relu),
/// batch norm weight 1 and bias 0, fc U(-1/sqrt(in), 1/sqrt(in)).
///
/// Example:
///   auto net = dlcore::ResNetCifar(dlcore::ResNetCifarOptions::depth(20));
///   auto logits = net(torch::randn({8, 3, 32, 32}));  // [8, 10]
///   auto feats = net->features(torch::randn({8, 3, 32, 32}));  // [8, 64]
///
/// Differences from the paper and other libraries: option A pads the new
/// channels after the old ones (akamaster/pytorch_resnet_cifar10 pads both
/// sides; the parameter count, 0.27M for ResNet-20, is the same). ResNet-18
/// matches torchvision's `resnet18` with `conv1 = Conv2d(3, 64, 3, 1, 1)` and
/// `maxpool = Identity()` (11,173,962 parameters for 10 classes).
class ResNetCifarImpl : public torch::nn::Cloneable<ResNetCifarImpl>,
                        public SummaryTraceable {
 public:
  explicit ResNetCifarImpl(ResNetCifarOptions options = {})
      : options(std::move(options)) {
    reset();
  }

  void reset() override {
    const auto& o = options;
    detail::resnet_cifar_check(o, "ResNetCifar");

    stages_.clear();
    conv1 = register_module(
        "conv1",
        torch::nn::Conv2d(
            torch::nn::Conv2dOptions(o.in_channels(), o.widths()[0], 3)
                .padding(1)
                .bias(false)));
    register_module("bn1", torch::nn::BatchNorm2d(o.widths()[0]));
    int64_t in = o.widths()[0];
    for (std::size_t s = 0; s < o.blocks().size(); ++s) {
      torch::nn::ModuleList stage;
      for (int64_t b = 0; b < o.blocks()[s]; ++b) {
        const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
        stage->push_back(
            ResNetCifarBlock(in, o.widths()[s], stride, o.shortcut()));
        in = o.widths()[s];
      }
      stages_.push_back(
          register_module("layer" + std::to_string(s + 1), stage));
    }
    register_module(
        "fc", torch::nn::Linear(o.widths().back(), o.num_classes()));
    initialize();
  }

  /// The pooled features [N, feature_dim()] fed to the head.
  torch::Tensor features(const torch::Tensor& x) {
    SummaryTracer off;
    return features(x, off);
  }

  /// Logits [N, num_classes] (those of whatever module `fc` now is).
  torch::Tensor forward(const torch::Tensor& x) {
    SummaryTracer off;
    return trace_forward(x, off);
  }

  /// `forward`, step by step (see `summary()`): conv1, bn1, relu, each stage
  /// (a ModuleList row holding its blocks' rows), avgpool, flatten, fc.
  torch::Tensor trace_forward(
      const torch::Tensor& x, SummaryTracer& t) override {
    return forward_child(*this, "fc", features(x, t), t);
  }

  /// Channels of the pooled features.
  int64_t feature_dim() const {
    return options.widths().back();
  }

  /// Ordered layer groups for `freeze_to` and discriminative LRs: the stem
  /// (conv1, bn1), each stage, the head (fc).
  LayerGroups layer_groups() const {
    // The stem as one selector, so that it keeps conv1 when bn1 has no
    // parameters (FrozenBatchNorm2d).
    std::vector<ParamSelector> selectors{
        ParamSelector::regex("^(conv1|bn1)\\.")};
    for (std::size_t s = 0; s < stages_.size(); ++s) {
      selectors.emplace_back("layer" + std::to_string(s + 1));
    }
    selectors.emplace_back("fc");
    return dlcore::layer_groups(*this, selectors);
  }

  ResNetCifarOptions options;
  torch::nn::Conv2d conv1{nullptr};

 private:
  torch::Tensor features(const torch::Tensor& x, SummaryTracer& t) {
    TORCH_CHECK(
        x.dim() == 4 && x.size(1) == options.in_channels(),
        "ResNetCifar: expected input [N, ",
        options.in_channels(),
        ", H, W], but got ",
        x.sizes());
    auto y = t("conv1", conv1, x);
    y = forward_child(*this, "bn1", y, t);
    y = t.functional("relu", y, torch::relu(y));
    // Through the registry, so that replaced blocks are honoured.
    for (std::size_t s = 0; s < stages_.size(); ++s) {
      const std::string name = "layer" + std::to_string(s + 1);
      const auto stage = named_children()[name];
      y = t.nested(
          name,
          stage,
          y,
          [&stage](const torch::Tensor& in, SummaryTracer& inner) {
            torch::Tensor z = in;
            for (const auto& block : stage->named_children()) {
              z = forward_child<ResNetCifarBlockImpl>(
                  *stage, block.key(), z, inner);
            }
            return z;
          });
    }
    // Global average pooling as [N, C, 1, 1] and a view to [N, C].
    y = t.functional("avgpool", y, y.mean({2, 3}, /*keepdim=*/true));
    return t.functional("flatten", y, y.flatten(1));
  }

  void initialize() {
    auto gen = at::detail::createCPUGenerator(options.seed());
    torch::NoGradGuard no_grad;
    for (const auto& m : modules(/*include_self=*/false)) {
      if (auto* conv = m->as<torch::nn::Conv2dImpl>()) {
        // Kaiming normal, mode fan_out, relu gain.
        const auto& w = conv->weight;
        const double fan_out =
            static_cast<double>(w.size(0) * w.size(2) * w.size(3));
        w.normal_(0.0, std::sqrt(2.0 / fan_out), gen);
      } else if (auto* bn = m->as<torch::nn::BatchNorm2dImpl>()) {
        bn->weight.fill_(1.0);
        bn->bias.zero_();
      } else if (auto* fc = m->as<torch::nn::LinearImpl>()) {
        const double bound =
            1.0 / std::sqrt(static_cast<double>(fc->weight.size(1)));
        fc->weight.uniform_(-bound, bound, gen);
        fc->bias.uniform_(-bound, bound, gen);
      }
    }
  }

  std::vector<torch::nn::ModuleList> stages_;
};
TORCH_MODULE(ResNetCifar);

/// ResNet-20 (0.27M parameters for 10 classes), option A.
inline ResNetCifar resnet20_cifar(
    int64_t num_classes = 10, int64_t in_channels = 3) {
  return ResNetCifar(ResNetCifarOptions::depth(20)
                         .num_classes(num_classes)
                         .in_channels(in_channels));
}
/// ResNet-32 (0.46M parameters for 10 classes), option A.
inline ResNetCifar resnet32_cifar(
    int64_t num_classes = 10, int64_t in_channels = 3) {
  return ResNetCifar(ResNetCifarOptions::depth(32)
                         .num_classes(num_classes)
                         .in_channels(in_channels));
}
/// ResNet-56 (0.85M parameters for 10 classes), option A.
inline ResNetCifar resnet56_cifar(
    int64_t num_classes = 10, int64_t in_channels = 3) {
  return ResNetCifar(ResNetCifarOptions::depth(56)
                         .num_classes(num_classes)
                         .in_channels(in_channels));
}
/// ResNet-18 with a CIFAR stem (11.17M parameters for 10 classes), option B.
inline ResNetCifar resnet18_cifar(
    int64_t num_classes = 10, int64_t in_channels = 3) {
  return ResNetCifar(ResNetCifarOptions::resnet18()
                         .num_classes(num_classes)
                         .in_channels(in_channels));
}

/// `ResNetCifar(options)` as layer specs for `analyze_layers()` (input
/// {in_channels, H, W}), row for row the same as the model's `summary()`
/// leaf rows, with the same names: conv1, bn1, relu; per block
/// `layerS.B.` conv1, bn1, relu1, conv2, bn2, the shortcut (downsample.0
/// and downsample.1 for option B, `shortcut` — a `subsample_pad` — for
/// option A, nothing for the identity), add, relu2; avgpool, flatten, fc.
///
/// Example:
///   auto s = dlcore::analyze_layers(
///       dlcore::resnet_cifar_layers(dlcore::ResNetCifarOptions::depth(20)),
///       {3, 32, 32});
///   // s.params == 269722 (as resnet20_cifar()), s.output_shape == {10}
inline std::vector<LayerSpec> resnet_cifar_layers(
    const ResNetCifarOptions& options = {}) {
  using L = LayerSpec;
  const auto& o = options;
  detail::resnet_cifar_check(o, "resnet_cifar_layers");
  int64_t in = o.widths()[0];
  std::vector<L> layers = {
      L::conv2d(o.in_channels(), in, 3).padding(1).bias(false).name("conv1"),
      L::batch_norm(in).name("bn1"),
      L::relu(/*inplace=*/false).name("relu")};
  for (std::size_t s = 0; s < o.blocks().size(); ++s) {
    const int64_t w = o.widths()[s];
    for (int64_t b = 0; b < o.blocks()[s]; ++b) {
      const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
      const std::string p =
          "layer" + std::to_string(s + 1) + "." + std::to_string(b) + ".";
      std::vector<L> main = {
          L::conv2d(in, w, 3).stride(stride).padding(1).bias(false).name(
              p + "conv1"),
          L::batch_norm(w).name(p + "bn1"),
          L::relu(/*inplace=*/false).name(p + "relu1"),
          L::conv2d(w, w, 3).padding(1).bias(false).name(p + "conv2"),
          L::batch_norm(w).name(p + "bn2")};
      std::vector<L> shortcut;
      if (stride != 1 || in != w) {
        if (o.shortcut() == ResNetShortcut::kB) {
          shortcut = {
              L::conv2d(in, w, 1).stride(stride).bias(false).name(
                  p + "downsample.0"),
              L::batch_norm(w).name(p + "downsample.1")};
        } else {
          shortcut = {L::subsample_pad(w, stride).name(p + "shortcut")};
        }
      }
      layers.push_back(L::add({main, shortcut}).inplace(false).name(p + "add"));
      layers.push_back(L::relu(/*inplace=*/false).name(p + "relu2"));
      in = w;
    }
  }
  layers.push_back(L::adaptive_avg_pool2d(1).name("avgpool"));
  layers.push_back(L::flatten().name("flatten"));
  layers.push_back(L::linear(in, o.num_classes()).name("fc"));
  return layers;
}

} // namespace dlcore
