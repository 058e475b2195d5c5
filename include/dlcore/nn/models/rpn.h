#pragma once

#include <c10/util/Exception.h>
#include <dlcore/nn/layer_math.h>
#include <dlcore/nn/summary.h>
#include <torch/nn/init.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace dlcore {

/// A Sequential that may sit inside another Sequential (LibTorch's own cannot:
/// its forward is a template), named after torchvision's
/// `Conv2dNormActivation` block (conv, optional norm, activation).
class Conv2dNormActivationImpl : public torch::nn::SequentialImpl {
 public:
  using torch::nn::SequentialImpl::SequentialImpl;
  torch::Tensor forward(const torch::Tensor& x) {
    return torch::nn::SequentialImpl::forward(x);
  }
};

/// Module holder of `Conv2dNormActivationImpl`.
TORCH_MODULE(Conv2dNormActivation);

/// The region proposal network head of Faster R-CNN (Ren et al. 2015), as
/// torchvision's `RPNHead`: a shared 3x3 convolution + ReLU (`conv.0.0`,
/// `conv.0.1`; `conv_depth` of them), then per location `cls_logits` (1x1
/// conv to A objectness logits) and `bbox_pred` (1x1 conv to 4A box deltas).
///
/// Parameters: 9C^2 + C (shared conv) + (C+1)A + (C+1)4A; with C = 256 and
/// A = 3 anchors per location (torchvision's FPN setting): 593,935; with
/// A = 9 (the paper's single-level setting): 601,645.
///
/// Example:
///   dlcore::RPNHead head(256, 3);
///   auto [logits, deltas] = head->forward(torch::randn({1, 256, 50, 38}));
///   // logits [1, 3, 50, 38], deltas [1, 12, 50, 38]
///
/// Differences from PyTorch (Python): `forward` takes one feature map and
/// returns a tuple; `forward_levels` takes the list of FPN levels as
/// torchvision's `forward` does.
class RPNHeadImpl : public torch::nn::Module, public SummaryTraceable {
 public:
  RPNHeadImpl(
      int64_t in_channels = 256,
      int64_t num_anchors = 3,
      int64_t conv_depth = 1) {
    TORCH_CHECK(
        in_channels >= 1 && num_anchors >= 1 && conv_depth >= 1,
        "RPNHead: in_channels, num_anchors and conv_depth must be >= 1, got ",
        in_channels,
        ", ",
        num_anchors,
        ", ",
        conv_depth);
    namespace nn = torch::nn;
    nn::Sequential convs;
    for (int64_t i = 0; i < conv_depth; ++i) {
      convs->push_back(Conv2dNormActivation(
          nn::Conv2d(nn::Conv2dOptions(in_channels, in_channels, 3).padding(1)),
          nn::ReLU(nn::ReLUOptions().inplace(true))));
    }
    conv = register_module("conv", convs);
    cls_logits = register_module(
        "cls_logits",
        nn::Conv2d(nn::Conv2dOptions(in_channels, num_anchors, 1)));
    bbox_pred = register_module(
        "bbox_pred",
        nn::Conv2d(nn::Conv2dOptions(in_channels, 4 * num_anchors, 1)));
    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* c = m->as<nn::Conv2d>()) {
        nn::init::normal_(c->weight, 0, 0.01);
        nn::init::zeros_(c->bias);
      }
    }
  }

  /// Objectness logits [N, A, H, W] and box deltas [N, 4A, H, W] of one map.
  std::tuple<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x) {
    auto t = conv->forward(x);
    return {cls_logits->forward(t), bbox_pred->forward(t)};
  }

  /// torchvision's forward: one (logits, deltas) pair per FPN level.
  std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>>
  forward_levels(const std::vector<torch::Tensor>& features) {
    std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>> out;
    for (const auto& f : features) {
      auto r = forward(f);
      out.first.push_back(std::get<0>(r));
      out.second.push_back(std::get<1>(r));
    }
    return out;
  }

  /// For `summary()`: both heads' outputs concatenated along channels
  /// ([N, 5A, H, W]), the same computation as `forward`.
  torch::Tensor trace_forward(
      const torch::Tensor& x, SummaryTracer& tr) override {
    auto t = tr("conv", conv, x);
    std::vector<torch::Tensor> heads = {
        tr("cls_logits", cls_logits, t), tr("bbox_pred", bbox_pred, t)};
    return tr.functional("cat", heads, torch::cat(heads, 1));
  }

  torch::nn::Sequential conv{nullptr};
  torch::nn::Conv2d cls_logits{nullptr};
  torch::nn::Conv2d bbox_pred{nullptr};
};

/// Module holder of `RPNHeadImpl`.
TORCH_MODULE(RPNHead);

/// The RPN head as layer specs (input {C, H, W}): the shared conv, then a
/// concat of the two 1x1 heads (output 5A channels), named like `RPNHead`.
inline std::vector<LayerSpec> rpn_head_layers(
    int64_t in_channels = 256, int64_t num_anchors = 3) {
  using L = LayerSpec;
  return {
      L::conv2d(in_channels, in_channels, 3).padding(1).name("conv.0.0"),
      L::relu().name("conv.0.1"),
      L::concat(
          {{L::conv2d(in_channels, num_anchors, 1).name("cls_logits")},
           {L::conv2d(in_channels, 4 * num_anchors, 1).name("bbox_pred")}})
          .name("cat")};
}

/// Anchors an RPN places on an image: the sum over feature maps of
/// H × W × anchors per location. `feature_sizes` holds (H, W) per level and
/// `anchors_per_location` one count per level (or one for all levels).
///
/// Example: one 50x38 map (800x600 at stride 16) with 3 scales x 3 ratios:
///   count_anchors({{50, 38}}, {9}) == 17100
inline int64_t count_anchors(
    const std::vector<std::pair<int64_t, int64_t>>& feature_sizes,
    const std::vector<int64_t>& anchors_per_location) {
  TORCH_CHECK(
      anchors_per_location.size() == 1 ||
          anchors_per_location.size() == feature_sizes.size(),
      "count_anchors: anchors_per_location needs 1 or ",
      feature_sizes.size(),
      " entries, got ",
      anchors_per_location.size());
  int64_t total = 0;
  for (size_t i = 0; i < feature_sizes.size(); ++i) {
    const int64_t a = anchors_per_location.size() == 1
                          ? anchors_per_location[0]
                          : anchors_per_location[i];
    TORCH_CHECK(
        feature_sizes[i].first > 0 && feature_sizes[i].second > 0 && a > 0,
        "count_anchors: level ",
        i,
        " needs positive sizes and anchors, got ",
        feature_sizes[i].first,
        "x",
        feature_sizes[i].second,
        " with ",
        a);
    total += feature_sizes[i].first * feature_sizes[i].second * a;
  }
  return total;
}

/// Faster R-CNN's box head, torchvision's `TwoMLPHead` + `FastRCNNPredictor`,
/// as layer specs on the pooled ROI features {C, R, R}: flatten, fc6
/// (C·R²→rep), ReLU, fc7 (rep→rep), ReLU, then a concat of the class scores
/// (rep→num_classes) and box deltas (rep→4·num_classes). With C = 256, R = 7,
/// rep = 1024, 91 classes: 13,895,680 + 466,375 parameters.
inline std::vector<LayerSpec> roi_box_head_layers(
    int64_t in_channels = 256,
    int64_t resolution = 7,
    int64_t representation = 1024,
    int64_t num_classes = 91) {
  using L = LayerSpec;
  const int64_t flat = in_channels * resolution * resolution;
  return {
      L::flatten().name("flatten"),
      L::linear(flat, representation).name("box_head.fc6"),
      L::relu().name("box_head.relu6"),
      L::linear(representation, representation).name("box_head.fc7"),
      L::relu().name("box_head.relu7"),
      L::concat({{L::linear(representation, num_classes)
                      .name("box_predictor.cls_score")},
                 {L::linear(representation, 4 * num_classes)
                      .name("box_predictor.bbox_pred")}})
          .name("box_predictor")};
}

/// Parameters of a feature pyramid network (Lin et al. 2017) as torchvision's
/// `FeaturePyramidNetwork`: one 1x1 lateral conv per input level to
/// `out_channels` and one 3x3 output conv per level, all with bias (the
/// extra max-pool level has none). ResNet-50 levels {256, 512, 1024, 2048}
/// to 256: 3,344,384.
inline int64_t fpn_params(
    const std::vector<int64_t>& in_channels_list, int64_t out_channels = 256) {
  int64_t total = 0;
  for (int64_t c : in_channels_list) {
    TORCH_CHECK(c > 0, "fpn_params: input channels must be positive, got ", c);
    total += c * out_channels + out_channels;                // lateral 1x1
    total += 9 * out_channels * out_channels + out_channels; // output 3x3
  }
  return total;
}

} // namespace dlcore
