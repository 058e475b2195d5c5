#pragma once

#include <c10/util/Exception.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/pooling.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>

namespace dlcore {

/// LeNet-5 as the homework defines it for 28x28 grey images (FashionMNIST):
///
///   conv1 1->6 k5 pad 2, ReLU, max-pool 2      [N,6,14,14]
///   conv2 6->16 k5, ReLU, max-pool 2           [N,16,5,5]
///   flatten, fc1 400->120, ReLU, fc2 120->84, ReLU, fc3 84->num_classes
///
/// 61,706 parameters for 10 classes. The output is raw logits (no softmax).
/// Submodules are named `conv1`, `conv2`, `fc1`, `fc2`, `fc3`, so parameter
/// names (`conv1.weight`, ...) match the Python module's `state_dict` keys.
///
/// Example:
///   dlcore::LeNet5 net;                          // 10 classes
///   torch::Tensor logits = net->forward(torch::randn({64, 1, 28, 28}));
///
/// Differences from PyTorch (Python): the homework flattens with
/// `x.view(-1, 400)`, which silently reshapes wrong-sized inputs into a
/// different batch; here an input that is not `[N, 1, 28, 28]` is an error.
/// Initialisation is LibTorch's default (the same rule as Python's, a
/// different random stream).
class LeNet5Impl : public torch::nn::Module {
 public:
  /// `num_classes` outputs of the last layer (>= 1).
  explicit LeNet5Impl(int64_t num_classes = 10) : num_classes_(num_classes) {
    TORCH_CHECK(
        num_classes >= 1,
        "LeNet5: num_classes must be >= 1, but got ",
        num_classes);
    conv1 = register_module(
        "conv1",
        torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 6, 5).padding(2)));
    conv2 = register_module(
        "conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(6, 16, 5)));
    fc1 = register_module("fc1", torch::nn::Linear(16 * 5 * 5, 120));
    fc2 = register_module("fc2", torch::nn::Linear(120, 84));
    fc3 = register_module("fc3", torch::nn::Linear(84, num_classes));
  }

  /// Logits `[N, num_classes]` for images `[N, 1, 28, 28]`.
  torch::Tensor forward(torch::Tensor x) {
    TORCH_CHECK(
        x.dim() == 4 && x.size(1) == 1 && x.size(2) == 28 && x.size(3) == 28,
        "LeNet5: expected input of shape [N, 1, 28, 28], but got ",
        x.sizes());
    namespace F = torch::nn::functional;
    x = F::max_pool2d(
        torch::relu(conv1->forward(x)), F::MaxPool2dFuncOptions(2));
    x = F::max_pool2d(
        torch::relu(conv2->forward(x)), F::MaxPool2dFuncOptions(2));
    x = x.flatten(1);
    x = torch::relu(fc1->forward(x));
    x = torch::relu(fc2->forward(x));
    return fc3->forward(x);
  }

  /// Number of outputs.
  int64_t num_classes() const {
    return num_classes_;
  }

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::Conv2d conv2{nullptr};
  torch::nn::Linear fc1{nullptr};
  torch::nn::Linear fc2{nullptr};
  torch::nn::Linear fc3{nullptr};

 private:
  int64_t num_classes_;
};

/// Module holder of `LeNet5Impl` (`dlcore::LeNet5 net(10); net->forward(x)`).
TORCH_MODULE(LeNet5);

} // namespace dlcore
