#pragma once

#include <c10/util/Exception.h>
#include <dlcore/nn/layer_math.h>
#include <dlcore/nn/summary.h>
#include <torch/arg.h>
#include <torch/nn/init.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace dlcore {

/// GoogLeNet's convolution unit, as torchvision's `BasicConv2d`: conv
/// (no bias), batch norm (eps 0.001), in-place ReLU.
class BasicConv2dImpl : public torch::nn::Module, public SummaryTraceable {
 public:
  BasicConv2dImpl(
      int64_t in_channels,
      int64_t out_channels,
      int64_t kernel_size,
      int64_t stride = 1,
      int64_t padding = 0) {
    namespace nn = torch::nn;
    conv = register_module(
        "conv",
        nn::Conv2d(nn::Conv2dOptions(in_channels, out_channels, kernel_size)
                       .stride(stride)
                       .padding(padding)
                       .bias(false)));
    bn = register_module(
        "bn", nn::BatchNorm2d(nn::BatchNorm2dOptions(out_channels).eps(0.001)));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    SummaryTracer off;
    return trace_forward(x, off);
  }

  torch::Tensor trace_forward(
      const torch::Tensor& x, SummaryTracer& t) override {
    auto y = t("conv", conv, x);
    y = t("bn", bn, y);
    return t.functional("relu", y, y.relu_());
  }

  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};
TORCH_MODULE(BasicConv2d);

/// Widths of one Inception module (Szegedy et al. 2015, Table 1).
struct InceptionOptions {
  InceptionOptions(
      int64_t in_channels,
      int64_t ch1x1,
      int64_t ch3x3red,
      int64_t ch3x3,
      int64_t ch5x5red,
      int64_t ch5x5,
      int64_t pool_proj)
      : in_channels_(in_channels),
        ch1x1_(ch1x1),
        ch3x3red_(ch3x3red),
        ch3x3_(ch3x3),
        ch5x5red_(ch5x5red),
        ch5x5_(ch5x5),
        pool_proj_(pool_proj) {}
  /// Input channels of the module. Required.
  TORCH_ARG(int64_t, in_channels);
  /// Output channels of the 1x1 branch. Required.
  TORCH_ARG(int64_t, ch1x1);
  /// Channels of the 1x1 reduction before the 3x3 branch. Required.
  TORCH_ARG(int64_t, ch3x3red);
  /// Output channels of the 3x3 branch. Required.
  TORCH_ARG(int64_t, ch3x3);
  /// Channels of the 1x1 reduction before the "5x5" branch. Required.
  TORCH_ARG(int64_t, ch5x5red);
  /// Output channels of the "5x5" branch. Required.
  TORCH_ARG(int64_t, ch5x5);
  /// Output channels of the 1x1 projection after the 3x3 max pool. Required.
  TORCH_ARG(int64_t, pool_proj);
  /// Kernel of the "5x5" branch: 3 as torchvision builds it (a known quirk
  /// kept for weight compatibility), 5 as the paper. Default: 3
  TORCH_ARG(int64_t, branch3_kernel) = 3;

 public:
  /// Output channels: ch1x1 + ch3x3 + ch5x5 + pool_proj.
  int64_t out_channels() const {
    return ch1x1_ + ch3x3_ + ch5x5_ + pool_proj_;
  }
};

/// One Inception module with 1x1 reductions, as torchvision's `Inception`:
/// branch1 1x1; branch2 1x1 reduce then 3x3; branch3 1x1 reduce then 3x3 (or
/// the paper's 5x5); branch4 3x3/1 max pool (ceil mode) then 1x1 projection;
/// outputs concatenated along channels.
class InceptionImpl : public torch::nn::Module, public SummaryTraceable {
 public:
  explicit InceptionImpl(const InceptionOptions& o) {
    namespace nn = torch::nn;
    const int64_t k3 = o.branch3_kernel();
    TORCH_CHECK(
        k3 == 3 || k3 == 5,
        "Inception: branch3_kernel must be 3 or 5, got ",
        k3);
    const std::pair<const char*, int64_t> widths[] = {
        {"in_channels", o.in_channels()},
        {"ch1x1", o.ch1x1()},
        {"ch3x3red", o.ch3x3red()},
        {"ch3x3", o.ch3x3()},
        {"ch5x5red", o.ch5x5red()},
        {"ch5x5", o.ch5x5()},
        {"pool_proj", o.pool_proj()}};
    for (const auto& [name, width] : widths) {
      TORCH_CHECK(
          width >= 1, "Inception: ", name, " must be >= 1, got ", width);
    }
    branch1 =
        register_module("branch1", BasicConv2d(o.in_channels(), o.ch1x1(), 1));
    branch2 = register_module(
        "branch2",
        nn::Sequential(
            BasicConv2d(o.in_channels(), o.ch3x3red(), 1),
            BasicConv2d(o.ch3x3red(), o.ch3x3(), 3, 1, 1)));
    branch3 = register_module(
        "branch3",
        nn::Sequential(
            BasicConv2d(o.in_channels(), o.ch5x5red(), 1),
            BasicConv2d(o.ch5x5red(), o.ch5x5(), k3, 1, k3 / 2)));
    branch4 = register_module(
        "branch4",
        nn::Sequential(
            nn::MaxPool2d(
                nn::MaxPool2dOptions(3).stride(1).padding(1).ceil_mode(true)),
            BasicConv2d(o.in_channels(), o.pool_proj(), 1)));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    SummaryTracer off;
    return trace_forward(x, off);
  }

  torch::Tensor trace_forward(
      const torch::Tensor& x, SummaryTracer& t) override {
    std::vector<torch::Tensor> outs = {
        t("branch1", branch1, x),
        t("branch2", branch2, x),
        t("branch3", branch3, x),
        t("branch4", branch4, x)};
    return t.functional("cat", outs, torch::cat(outs, 1));
  }

  BasicConv2d branch1{nullptr};
  torch::nn::Sequential branch2{nullptr}, branch3{nullptr}, branch4{nullptr};
};
TORCH_MODULE(Inception);

/// Options of `GoogLeNet`.
struct GoogLeNetOptions {
  /// Outputs of the classifier. Default: 1000
  TORCH_ARG(int64_t, num_classes) = 1000;
  /// Dropout before the classifier. Default: 0.2
  TORCH_ARG(double, dropout) = 0.2;
  /// Kernel of every Inception module's "5x5" branch: 3 as torchvision, 5 as
  /// the paper. Default: 3
  TORCH_ARG(int64_t, branch3_kernel) = 3;

 public:
};

/// The Inception configurations of GoogLeNet in order 3a, 3b, 4a-4e, 5a, 5b.
inline std::vector<std::pair<std::string, InceptionOptions>>
googlenet_inception_config(int64_t branch3_kernel = 3) {
  std::vector<std::pair<std::string, InceptionOptions>> c = {
      {"inception3a", InceptionOptions(192, 64, 96, 128, 16, 32, 32)},
      {"inception3b", InceptionOptions(256, 128, 128, 192, 32, 96, 64)},
      {"inception4a", InceptionOptions(480, 192, 96, 208, 16, 48, 64)},
      {"inception4b", InceptionOptions(512, 160, 112, 224, 24, 64, 64)},
      {"inception4c", InceptionOptions(512, 128, 128, 256, 24, 64, 64)},
      {"inception4d", InceptionOptions(512, 112, 144, 288, 32, 64, 64)},
      {"inception4e", InceptionOptions(528, 256, 160, 320, 32, 128, 128)},
      {"inception5a", InceptionOptions(832, 256, 160, 320, 32, 128, 128)},
      {"inception5b", InceptionOptions(832, 384, 192, 384, 48, 128, 128)}};
  for (auto& e : c) {
    e.second.branch3_kernel(branch3_kernel);
  }
  return c;
}

/// GoogLeNet (Inception v1) exactly as torchvision builds it with
/// `aux_logits=False` (`torchvision.models.googlenet(aux_logits=False)`):
/// conv1 7x7/2, maxpool1, conv2 1x1, conv3 3x3, maxpool2, inception 3a-3b,
/// maxpool3, 4a-4e, maxpool4, 5a-5b, adaptive average pool, dropout, fc; all
/// max pools in ceil mode.
///
/// 6,624,904 parameters for 1000 classes and 1.50 G MACs at 224x224 (with the
/// paper's 5x5 kernels: 7,005,832 parameters). Module and parameter names
/// equal torchvision's.
///
/// Example:
///   dlcore::GoogLeNet net;                      // torchvision's GoogLeNet
///   dlcore::GoogLeNet paper(dlcore::GoogLeNetOptions().branch3_kernel(5));
///
/// Differences from PyTorch (Python): no auxiliary classifiers and no
/// `transform_input` (torchvision's pretrained-weights input conversion).
/// Weights are drawn from N(0, 0.01) (torchvision truncates at ±2, i.e. 200
/// standard deviations: the same distribution), batch norm scale 1, shift 0.
class GoogLeNetImpl : public torch::nn::Module, public SummaryTraceable {
 public:
  explicit GoogLeNetImpl(const GoogLeNetOptions& options = {}) {
    TORCH_CHECK(
        options.num_classes() >= 1,
        "GoogLeNet: num_classes must be >= 1, got ",
        options.num_classes());
    TORCH_CHECK(
        options.dropout() >= 0 && options.dropout() <= 1,
        "GoogLeNet: dropout must be in [0, 1], got ",
        options.dropout());
    namespace nn = torch::nn;
    auto pool = [](int64_t k) {
      return nn::MaxPool2d(nn::MaxPool2dOptions(k).stride(2).ceil_mode(true));
    };
    conv1 = register_module("conv1", BasicConv2d(3, 64, 7, 2, 3));
    maxpool1 = register_module("maxpool1", pool(3));
    conv2 = register_module("conv2", BasicConv2d(64, 64, 1));
    conv3 = register_module("conv3", BasicConv2d(64, 192, 3, 1, 1));
    maxpool2 = register_module("maxpool2", pool(3));
    const auto cfg = googlenet_inception_config(options.branch3_kernel());
    Inception* slots[9] = {
        &inception3a,
        &inception3b,
        &inception4a,
        &inception4b,
        &inception4c,
        &inception4d,
        &inception4e,
        &inception5a,
        &inception5b};
    for (size_t i = 0; i < cfg.size(); ++i) {
      *slots[i] = Inception(cfg[i].second);
      if (i == 2) {
        maxpool3 = register_module("maxpool3", pool(3));
      } else if (i == 7) {
        maxpool4 = register_module("maxpool4", pool(2));
      }
      register_module(cfg[i].first, *slots[i]);
    }
    avgpool = register_module(
        "avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)));
    dropout = register_module("dropout", nn::Dropout(options.dropout()));
    fc = register_module("fc", nn::Linear(1024, options.num_classes()));

    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* c = m->as<nn::Conv2d>()) {
        nn::init::normal_(c->weight, 0, 0.01);
      } else if (auto* l = m->as<nn::Linear>()) {
        nn::init::normal_(l->weight, 0, 0.01);
      } else if (auto* b = m->as<nn::BatchNorm2d>()) {
        nn::init::ones_(b->weight);
        nn::init::zeros_(b->bias);
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
    y = t("maxpool1", maxpool1, y);
    y = t("conv2", conv2, y);
    y = t("conv3", conv3, y);
    y = t("maxpool2", maxpool2, y);
    y = t("inception3a", inception3a, y);
    y = t("inception3b", inception3b, y);
    y = t("maxpool3", maxpool3, y);
    y = t("inception4a", inception4a, y);
    y = t("inception4b", inception4b, y);
    y = t("inception4c", inception4c, y);
    y = t("inception4d", inception4d, y);
    y = t("inception4e", inception4e, y);
    y = t("maxpool4", maxpool4, y);
    y = t("inception5a", inception5a, y);
    y = t("inception5b", inception5b, y);
    y = t("avgpool", avgpool, y);
    y = t.functional("flatten", y, y.flatten(1));
    y = t("dropout", dropout, y);
    return t("fc", fc, y);
  }

  BasicConv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::MaxPool2d maxpool1{nullptr}, maxpool2{nullptr}, maxpool3{nullptr},
      maxpool4{nullptr};
  Inception inception3a{nullptr}, inception3b{nullptr}, inception4a{nullptr},
      inception4b{nullptr}, inception4c{nullptr}, inception4d{nullptr},
      inception4e{nullptr}, inception5a{nullptr}, inception5b{nullptr};
  torch::nn::AdaptiveAvgPool2d avgpool{nullptr};
  torch::nn::Dropout dropout{nullptr};
  torch::nn::Linear fc{nullptr};
};

/// Module holder of `GoogLeNetImpl`.
TORCH_MODULE(GoogLeNet);

/// A BasicConv2d as layer specs: conv (no bias), batch norm, ReLU.
inline std::vector<LayerSpec> basic_conv2d_layers(
    const std::string& name,
    int64_t in,
    int64_t out,
    int64_t k,
    int64_t stride = 1,
    int64_t padding = 0) {
  using L = LayerSpec;
  return {
      L::conv2d(in, out, k)
          .stride(stride)
          .padding(padding)
          .bias(false)
          .name(name + ".conv"),
      L::batch_norm(out).name(name + ".bn"),
      L::relu().name(name + ".relu")};
}

/// One Inception module as a `concat` spec named `name`.
inline LayerSpec inception_layers(
    const std::string& name, const InceptionOptions& o) {
  using L = LayerSpec;
  auto seq = [](std::vector<LayerSpec> a, const std::vector<LayerSpec>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  const int64_t k3 = o.branch3_kernel();
  return L::concat(
             {basic_conv2d_layers(
                  name + ".branch1", o.in_channels(), o.ch1x1(), 1),
              seq(basic_conv2d_layers(
                      name + ".branch2.0", o.in_channels(), o.ch3x3red(), 1),
                  basic_conv2d_layers(
                      name + ".branch2.1", o.ch3x3red(), o.ch3x3(), 3, 1, 1)),
              seq(basic_conv2d_layers(
                      name + ".branch3.0", o.in_channels(), o.ch5x5red(), 1),
                  basic_conv2d_layers(
                      name + ".branch3.1",
                      o.ch5x5red(),
                      o.ch5x5(),
                      k3,
                      1,
                      k3 / 2)),
              seq({L::max_pool2d(3).stride(1).padding(1).ceil_mode(true).name(
                      name + ".branch4.0")},
                  basic_conv2d_layers(
                      name + ".branch4.1", o.in_channels(), o.pool_proj(), 1))})
      .name(name);
}

/// GoogLeNet as layer specs for `analyze_layers()` (input {3, H, W}), layer
/// for layer the same as `GoogLeNet(options)` and named alike.
inline std::vector<LayerSpec> googlenet_layers(
    const GoogLeNetOptions& options = {}) {
  using L = LayerSpec;
  auto pool = [](int64_t k, const std::string& name) {
    return L::max_pool2d(k).stride(2).ceil_mode(true).name(name);
  };
  std::vector<L> layers;
  auto append = [&layers](const std::vector<L>& more) {
    layers.insert(layers.end(), more.begin(), more.end());
  };
  append(basic_conv2d_layers("conv1", 3, 64, 7, 2, 3));
  layers.push_back(pool(3, "maxpool1"));
  append(basic_conv2d_layers("conv2", 64, 64, 1));
  append(basic_conv2d_layers("conv3", 64, 192, 3, 1, 1));
  layers.push_back(pool(3, "maxpool2"));
  const auto cfg = googlenet_inception_config(options.branch3_kernel());
  for (size_t i = 0; i < cfg.size(); ++i) {
    layers.push_back(inception_layers(cfg[i].first, cfg[i].second));
    if (i == 1) {
      layers.push_back(pool(3, "maxpool3"));
    } else if (i == 6) {
      layers.push_back(pool(2, "maxpool4"));
    }
  }
  layers.push_back(L::adaptive_avg_pool2d(1).name("avgpool"));
  layers.push_back(L::flatten().name("flatten"));
  layers.push_back(L::dropout().name("dropout"));
  layers.push_back(L::linear(1024, options.num_classes()).name("fc"));
  return layers;
}

} // namespace dlcore
