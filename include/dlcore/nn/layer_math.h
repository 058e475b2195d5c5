#pragma once

// Analytical arithmetic of a convolutional network described as a sequence of
// layer specs: output shapes, parameters, activation memory, MACs and FLOPs,
// receptive field, jump and start, layer by layer and in total. No tensor is
// ever allocated, so a VGG-19 at batch 256 is analysed in microseconds.

#include <c10/core/ScalarType.h>
#include <torch/arg.h>
#include <torch/expanding_array.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace dlcore {

/// What a `LayerSpec` describes.
enum class LayerKind {
  /// 2-D convolution with stride, padding, dilation, groups and bias.
  kConv2d,
  /// 2-D max pooling (padding, dilation and ceil mode as in PyTorch).
  kMaxPool2d,
  /// 2-D average pooling (padding and ceil mode as in PyTorch).
  kAvgPool2d,
  /// Adaptive average pooling to a fixed output size.
  kAdaptiveAvgPool2d,
  /// Adaptive max pooling to a fixed output size.
  kAdaptiveMaxPool2d,
  /// Fully connected layer on a flat feature vector.
  kLinear,
  /// Batch normalization over the channel (first per-sample) dimension.
  kBatchNorm,
  /// Elementwise activation (ReLU, GELU, ...).
  kActivation,
  /// Flattens [C, H, W] to [C*H*W].
  kFlatten,
  /// Dropout (identity at inference).
  kDropout,
  /// Parallel branches on the same input, joined by channel concatenation.
  kConcat,
  /// Parallel branches on the same input, joined by elementwise addition (an
  /// empty branch is the identity shortcut of a residual block).
  kAdd,
  /// Spatial subsampling by a stride and zero channels appended: the
  /// parameter-free residual shortcut (option A) of He et al.'s CIFAR
  /// ResNets.
  kSubsamplePad,
};

/// Display name of a kind: PyTorch's class name ("Conv2d", "MaxPool2d", ...),
/// "BatchNorm" for BatchNorm1d/2d, and "Concat" / "Add" for joins.
inline const char* layer_kind_name(LayerKind kind) {
  switch (kind) {
    case LayerKind::kConv2d:
      return "Conv2d";
    case LayerKind::kMaxPool2d:
      return "MaxPool2d";
    case LayerKind::kAvgPool2d:
      return "AvgPool2d";
    case LayerKind::kAdaptiveAvgPool2d:
      return "AdaptiveAvgPool2d";
    case LayerKind::kAdaptiveMaxPool2d:
      return "AdaptiveMaxPool2d";
    case LayerKind::kLinear:
      return "Linear";
    case LayerKind::kBatchNorm:
      return "BatchNorm";
    case LayerKind::kActivation:
      return "Activation";
    case LayerKind::kFlatten:
      return "Flatten";
    case LayerKind::kDropout:
      return "Dropout";
    case LayerKind::kConcat:
      return "Concat";
    case LayerKind::kAdd:
      return "Add";
    case LayerKind::kSubsamplePad:
      return "SubsamplePad";
  }
  return "?";
}

/// One layer of an analytical network description.
///
/// Build one with a static factory named after the PyTorch module and chain
/// the options that differ from PyTorch's defaults; options that a kind does
/// not use are ignored. Nothing is checked here: `analyze_layers()` checks
/// every layer against the shape that reaches it and names the layer in its
/// error.
///
/// Example:
///   using L = dlcore::LayerSpec;
///   std::vector<L> net = {
///       L::conv2d(3, 64, 11).stride(4).padding(2), L::relu(),
///       L::max_pool2d(3).stride(2), L::flatten(), L::linear(64 * 27 * 27,
///       10)};
struct LayerSpec {
  explicit LayerSpec(LayerKind kind) : kind_(kind) {}

  /// `nn.Conv2d(in, out, kernel)`; stride 1, padding 0, dilation 1, groups 1,
  /// bias on, as in PyTorch.
  static LayerSpec conv2d(
      int64_t in_channels,
      int64_t out_channels,
      torch::ExpandingArray<2> kernel_size) {
    return LayerSpec(LayerKind::kConv2d)
        .in_channels(in_channels)
        .out_channels(out_channels)
        .kernel_size(kernel_size);
  }
  /// `nn.MaxPool2d(kernel)`; the stride defaults to the kernel, as in PyTorch.
  static LayerSpec max_pool2d(torch::ExpandingArray<2> kernel_size) {
    return LayerSpec(LayerKind::kMaxPool2d)
        .kernel_size(kernel_size)
        .stride(kernel_size);
  }
  /// `nn.AvgPool2d(kernel)`; the stride defaults to the kernel, as in PyTorch.
  static LayerSpec avg_pool2d(torch::ExpandingArray<2> kernel_size) {
    return LayerSpec(LayerKind::kAvgPool2d)
        .kernel_size(kernel_size)
        .stride(kernel_size);
  }
  /// `nn.AdaptiveAvgPool2d(output_size)`.
  static LayerSpec adaptive_avg_pool2d(torch::ExpandingArray<2> output_size) {
    return LayerSpec(LayerKind::kAdaptiveAvgPool2d).output_size(output_size);
  }
  /// `nn.AdaptiveMaxPool2d(output_size)`.
  static LayerSpec adaptive_max_pool2d(torch::ExpandingArray<2> output_size) {
    return LayerSpec(LayerKind::kAdaptiveMaxPool2d).output_size(output_size);
  }
  /// `nn.Linear(in, out)`, bias on.
  static LayerSpec linear(int64_t in_features, int64_t out_features) {
    return LayerSpec(LayerKind::kLinear)
        .in_features(in_features)
        .out_features(out_features);
  }
  /// `nn.BatchNorm1d/2d(num_features)`, affine with running statistics.
  static LayerSpec batch_norm(int64_t num_features) {
    return LayerSpec(LayerKind::kBatchNorm).num_features(num_features);
  }
  /// `nn.ReLU(inplace)`; in place by default, as torchvision's models use it.
  static LayerSpec relu(bool inplace = true) {
    return LayerSpec(LayerKind::kActivation)
        .activation_type("ReLU")
        .inplace(inplace);
  }
  /// Any elementwise activation, e.g. `activation("GELU", false)`.
  static LayerSpec activation(const std::string& type, bool inplace = false) {
    return LayerSpec(LayerKind::kActivation)
        .activation_type(type)
        .inplace(inplace);
  }
  /// `torch.flatten(x, 1)`.
  static LayerSpec flatten() {
    return LayerSpec(LayerKind::kFlatten);
  }
  /// `nn.Dropout(p)`: identity at inference, so no cost is counted.
  static LayerSpec dropout() {
    return LayerSpec(LayerKind::kDropout);
  }
  /// `torch.cat([branch(x) for branch in branches], 1)` (Inception).
  static LayerSpec concat(std::vector<std::vector<LayerSpec>> branches) {
    return LayerSpec(LayerKind::kConcat).branches(std::move(branches));
  }
  /// `sum(branch(x) for branch in branches)`; an empty branch is the identity
  /// shortcut (ResNet).
  static LayerSpec add(std::vector<std::vector<LayerSpec>> branches) {
    return LayerSpec(LayerKind::kAdd).branches(std::move(branches));
  }
  /// `F.pad(x[:, :, ::s, ::s], (0, 0, 0, 0, 0, out_channels - C))`: every
  /// s-th row and column, then zero channels up to `out_channels` (He et
  /// al.'s option-A shortcut, as in `ResNetCifar`). No parameters, no MACs.
  static LayerSpec subsample_pad(
      int64_t out_channels, torch::ExpandingArray<2> stride) {
    return LayerSpec(LayerKind::kSubsamplePad)
        .out_channels(out_channels)
        .stride(stride);
  }

  /// What the layer is.
  TORCH_ARG(LayerKind, kind);
  /// Display name; empty means the layer's position, e.g. "3" or "5.1.0"
  /// (layer 5, branch 1, layer 0; "inc.1.0" when layer 5 is a join named
  /// "inc"). Default: ""
  TORCH_ARG(std::string, name) = "";
  /// Input channels of a convolution. Default: 0
  TORCH_ARG(int64_t, in_channels) = 0;
  /// Output channels of a convolution or a subsample_pad. Default: 0
  TORCH_ARG(int64_t, out_channels) = 0;
  /// Input features of a linear layer. Default: 0
  TORCH_ARG(int64_t, in_features) = 0;
  /// Output features of a linear layer. Default: 0
  TORCH_ARG(int64_t, out_features) = 0;
  /// Channels of a batch norm. Default: 0
  TORCH_ARG(int64_t, num_features) = 0;
  /// Kernel (height, width) of a convolution or pooling. Default: 1
  TORCH_ARG(torch::ExpandingArray<2>, kernel_size) = 1;
  /// Stride of a convolution, pooling or subsample_pad. Default: 1 (pooling
  /// factories set it to the kernel size, as PyTorch does)
  TORCH_ARG(torch::ExpandingArray<2>, stride) = 1;
  /// Implicit zero (or -inf) padding on both sides. Default: 0
  TORCH_ARG(torch::ExpandingArray<2>, padding) = 0;
  /// Spacing between kernel taps (convolution, max pooling). Default: 1
  TORCH_ARG(torch::ExpandingArray<2>, dilation) = 1;
  /// Output (height, width) of an adaptive pooling. Default: 1
  TORCH_ARG(torch::ExpandingArray<2>, output_size) = 1;
  /// Convolution groups; both channel counts must be divisible. Default: 1
  TORCH_ARG(int64_t, groups) = 1;
  /// Whether a convolution or linear layer has a bias. Default: true
  TORCH_ARG(bool, bias) = true;
  /// Whether a batch norm has a learnable scale and shift. Default: true
  TORCH_ARG(bool, affine) = true;
  /// Whether a batch norm keeps running mean and variance buffers.
  /// Default: true
  TORCH_ARG(bool, track_running_stats) = true;
  /// Pooling output size rounds up instead of down. Default: false
  TORCH_ARG(bool, ceil_mode) = false;
  /// An activation overwrites its input, allocating nothing. Default: true
  /// for `relu()`, false for `activation()`
  TORCH_ARG(bool, inplace) = true;
  /// Type name of an activation, for display. Default: "ReLU"
  TORCH_ARG(std::string, activation_type) = "ReLU";
  /// Branches of a concatenation or addition. Default: {}
  TORCH_ARG(std::vector<std::vector<LayerSpec>>, branches) = {};

 public:
  /// Display type: PyTorch's class name ("Conv2d", ...), or the activation's.
  std::string type_name() const {
    return kind_ == LayerKind::kActivation ? activation_type_
                                           : layer_kind_name(kind_);
  }
};

/// Options of `analyze_layers()`.
struct LayerMathOptions {
  /// Samples per batch; activations and MACs scale with it, parameters do not.
  /// Default: 1
  TORCH_ARG(int64_t, batch_size) = 1;
  /// Element type of activations and parameters, for byte counts.
  /// Default: torch::kFloat32
  TORCH_ARG(c10::ScalarType, dtype) = c10::ScalarType::Float;
  /// Count the input tensor in the forward activation memory (the CS231n
  /// convention). Default: true
  TORCH_ARG(bool, count_input) = true;

 public:
};

/// The analysis of one layer. Shapes are per sample; counts of activations,
/// MACs and FLOPs include the batch.
struct LayerStats {
  /// Position in the flat list of rows (branch layers come before their join).
  int64_t index = 0;
  /// The spec's name, or its position ("3", "5.1.0").
  std::string name;
  /// `LayerSpec::type_name()`.
  std::string type;
  /// 0 for top-level layers, +1 inside every level of branches.
  int64_t depth = 0;
  /// Output shape per sample: {C, H, W} or {F}.
  std::vector<int64_t> output_shape;
  /// Learnable parameters (weights, biases, batch-norm scale and shift).
  int64_t params = 0;
  /// Non-learnable state saved with the model (batch-norm running stats).
  int64_t buffers = 0;
  /// Elements of the output, batch included.
  int64_t activations = 0;
  /// Bytes of new memory the output takes: activations × element size, or 0
  /// for layers that allocate nothing (in-place activation, flatten, dropout
  /// at inference).
  int64_t activation_bytes = 0;
  /// Multiply-accumulates of convolutions and linear layers (bias adds not
  /// included); 0 for every other layer.
  int64_t macs = 0;
  /// Floating-point operations: 2 × MACs plus one add per output element for
  /// a bias; batch norm 2 per element (scale, shift); activation 1 per
  /// element; max pooling (window − 1) comparisons and average pooling
  /// window-size operations per output element; addition (branches − 1) per
  /// element; flatten, dropout, concatenation and subsample_pad 0.
  int64_t flops = 0;
  /// Receptive field (height, width) of one output unit, in input pixels.
  std::array<double, 2> receptive_field{{1, 1}};
  /// Jump (effective stride) between adjacent output units, in input pixels.
  std::array<double, 2> jump{{1, 1}};
  /// Centre of the first output unit's receptive field, in input pixel
  /// coordinates (the input's first pixel is centred at 0.5).
  std::array<double, 2> start{{0.5, 0.5}};
};

/// The analysis of a whole network: one row per layer and the totals.
struct NetworkStats {
  /// One row per layer, branches flattened before their join.
  std::vector<LayerStats> layers;
  /// Per-sample input and output shapes.
  std::vector<int64_t> input_shape;
  std::vector<int64_t> output_shape;
  int64_t batch_size = 1;
  /// Bytes per element of the chosen dtype.
  int64_t element_size = 4;
  /// Sum of the rows' parameters, buffers, MACs and FLOPs.
  int64_t params = 0;
  int64_t buffers = 0;
  int64_t macs = 0;
  int64_t flops = 0;
  /// Elements of the input (batch included).
  int64_t input_activations = 0;
  /// Elements stored by the forward pass: the input (if counted) and every
  /// row whose output allocates memory.
  int64_t activations = 0;
  /// `activations` × element size: memory of one forward pass, all of which
  /// is kept for the backward pass.
  int64_t forward_bytes = 0;
  /// Forward memory plus one gradient of the same size per stored
  /// activation: 2 × forward_bytes (the CS231n "×2 for backward").
  int64_t backward_bytes = 0;
  /// params × element size.
  int64_t param_bytes = 0;
  /// Receptive field, jump and start of the output units.
  std::array<double, 2> receptive_field{{1, 1}};
  std::array<double, 2> jump{{1, 1}};
  std::array<double, 2> start{{0.5, 0.5}};

  /// A table, one line per row (indented by depth): name (type), output
  /// shape, params, activations, MACs, receptive field, jump, start; then
  /// the totals and memory in MiB.
  std::string to_string() const;
};

/// Analyses a network layer by layer from a per-sample input shape ({C, H, W}
/// or {F}).
///
/// Output size of a convolution or pooling, per spatial axis:
///   out = floor((in + 2p - d(k-1) - 1) / s) + 1   (ceil in ceil mode, where a
///   last window starting in the right padding is dropped, as PyTorch does).
/// Receptive field (Dang-Ha 2017), per axis, with k_eff = d(k-1) + 1:
///   j_out = j_in s,  r_out = r_in + (k_eff - 1) j_in,
///   start_out = start_in + ((k_eff - 1)/2 - p) j_in,  from r=1, j=1,
///   start=0.5. Flatten acts as a kernel covering the whole map (so a linear
///   layer after it sees the whole receptive field); adaptive pooling uses
///   k = s = in/out when out divides in, else its widest bin and s = in/out.
///   A join takes the widest receptive field of its branches.
///
/// Throws c10::Error naming the layer (index, name, type) on a channel or
/// feature mismatch, a kernel larger than the padded input, a non-positive
/// size, a rank the layer cannot take, or branches whose outputs cannot be
/// joined.
///
/// Example:
///   using L = dlcore::LayerSpec;
///   auto s = dlcore::analyze_layers(
///       {L::conv2d(3, 64, 3).padding(1), L::relu(), L::max_pool2d(2)},
///       {3, 224, 224});
///   // s.output_shape == {64, 112, 112}, s.params == 1792,
///   // s.macs == 64*224*224*27, s.receptive_field == {4, 4}
///
/// Differences from PyTorch (Python): torchinfo, fvcore and ptflops measure a
/// real forward pass; this is pure arithmetic on the specs, checked against
/// real modules in tests/test_models.cpp.
inline NetworkStats analyze_layers(
    const std::vector<LayerSpec>& layers,
    const std::vector<int64_t>& input_shape,
    const LayerMathOptions& options = {});

/// Output size of a convolution or pooling along one axis (PyTorch's rule,
/// ceil mode included). Throws when the kernel exceeds the padded input.
inline int64_t conv_output_size(
    int64_t in,
    int64_t kernel,
    int64_t stride,
    int64_t padding,
    int64_t dilation,
    bool ceil_mode = false);

} // namespace dlcore

#include <dlcore/nn/detail/layer_math_impl.h>
