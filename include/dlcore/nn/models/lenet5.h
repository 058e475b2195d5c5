#pragma once

#include <dlcore/nn/detail/conv_single_channel.h>
#include <dlcore/nn/layer_math.h>
#include <dlcore/nn/summary.h>

#include <ATen/Parallel.h>
#include <ATen/ops/max_pool2d_with_indices_backward.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/pooling.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace dlcore {
namespace detail {

/// One output of the 2x2 window whose top-left input is `r0[0]` (second row
/// `r1`): PyTorch's rule `val > max || isnan(val)` over the window in
/// row-major order; `*off` gets the winner's offset (0, 1, w or w + 1).
inline float max_pool2x2_one(
    const float* r0, const float* r1, int64_t w, int64_t* off) {
  float m = r0[0];
  int64_t o = 0;
  const float cand[3] = {r0[1], r1[0], r1[1]};
  const int64_t offs[3] = {1, w, w + 1};
  for (int i = 0; i < 3; ++i) {
    if (cand[i] > m || std::isnan(cand[i])) {
      m = cand[i];
      o = offs[i];
    }
  }
  *off = o;
  return m;
}

/// Kernel of `max_pool2x2_with_indices` for planes [begin, end) of a
/// contiguous float tensor with planes of h x w (even). With SSE2, four
/// outputs of a row at a time, branch-free (comparison masks select values
/// and offsets; the last group of a row overlaps the previous one when the
/// row is not a multiple of 4); rows narrower than 4 outputs one by one.
template <bool kWithIndices>
void max_pool2x2_planes(
    const float* xp,
    float* yp,
    int64_t* ip,
    int64_t begin,
    int64_t end,
    int64_t h,
    int64_t w) {
  const int64_t ho = h / 2;
  const int64_t wo = w / 2;
  for (int64_t p = begin; p < end; ++p) {
    const float* plane = xp + p * h * w;
    for (int64_t oh = 0; oh < ho; ++oh) {
      const float* r0 = plane + 2 * oh * w;
      const float* r1 = r0 + w;
      float* yrow = yp + (p * ho + oh) * wo;
      int64_t* irow = kWithIndices ? ip + (p * ho + oh) * wo : nullptr;
      const int64_t row_base = 2 * oh * w;
#if defined(__SSE2__)
      if (wo >= 4 && h * w <= std::numeric_limits<int32_t>::max()) {
        const __m128i off_b = _mm_set1_epi32(1);
        const __m128i off_c = _mm_set1_epi32(static_cast<int32_t>(w));
        const __m128i off_d = _mm_set1_epi32(static_cast<int32_t>(w + 1));
        for (int64_t ow = 0;; ow += 4) {
          if (ow > wo - 4) {
            ow = wo - 4;
          }
          const __m128 lo0 = _mm_loadu_ps(r0 + 2 * ow);
          const __m128 hi0 = _mm_loadu_ps(r0 + 2 * ow + 4);
          const __m128 lo1 = _mm_loadu_ps(r1 + 2 * ow);
          const __m128 hi1 = _mm_loadu_ps(r1 + 2 * ow + 4);
          const __m128 a = _mm_shuffle_ps(lo0, hi0, _MM_SHUFFLE(2, 0, 2, 0));
          const __m128 b = _mm_shuffle_ps(lo0, hi0, _MM_SHUFFLE(3, 1, 3, 1));
          const __m128 c = _mm_shuffle_ps(lo1, hi1, _MM_SHUFFLE(2, 0, 2, 0));
          const __m128 d = _mm_shuffle_ps(lo1, hi1, _MM_SHUFFLE(3, 1, 3, 1));
          __m128 m = a;
          __m128i off = _mm_setzero_si128();
          auto step = [&](__m128 v, __m128i o) {
            const __m128 take =
                _mm_or_ps(_mm_cmpgt_ps(v, m), _mm_cmpunord_ps(v, v));
            m = _mm_or_ps(_mm_and_ps(take, v), _mm_andnot_ps(take, m));
            const __m128i t = _mm_castps_si128(take);
            off = _mm_or_si128(_mm_and_si128(t, o), _mm_andnot_si128(t, off));
          };
          step(b, off_b);
          step(c, off_c);
          step(d, off_d);
          _mm_storeu_ps(yrow + ow, m);
          if constexpr (kWithIndices) {
            const __m128i base = _mm_add_epi32(
                _mm_set1_epi32(static_cast<int32_t>(row_base + 2 * ow)),
                _mm_setr_epi32(0, 2, 4, 6));
            const __m128i idx = _mm_add_epi32(base, off);
            const __m128i zero = _mm_setzero_si128();
            _mm_storeu_si128(
                reinterpret_cast<__m128i*>(irow + ow),
                _mm_unpacklo_epi32(idx, zero));
            _mm_storeu_si128(
                reinterpret_cast<__m128i*>(irow + ow + 2),
                _mm_unpackhi_epi32(idx, zero));
          }
          if (ow == wo - 4) {
            break;
          }
        }
        continue;
      }
#endif
      for (int64_t ow = 0; ow < wo; ++ow) {
        int64_t off = 0;
        yrow[ow] = max_pool2x2_one(r0 + 2 * ow, r1 + 2 * ow, w, &off);
        if constexpr (kWithIndices) {
          irow[ow] = row_base + 2 * ow + off;
        }
      }
    }
  }
}

/// 2x2, stride-2 max pooling of a contiguous float `x` `[N, C, H, W]` in one
/// pass: the same values as `max_pool2d(x, 2)` and (when `with_indices`) the
/// same indices, i.e. the flat `h * W + w` of the first maximum in row-major
/// window order, a NaN winning as in PyTorch's CPU kernel
/// (`val > max || isnan(val)`). Planes are split over LibTorch's intra-op
/// threads. Several times faster than LibTorch 1.13's CPU `max_pool2d` for
/// LeNet-5's shapes.
inline std::pair<torch::Tensor, torch::Tensor> max_pool2x2_with_indices(
    const torch::Tensor& input, bool with_indices) {
  TORCH_INTERNAL_ASSERT(
      input.dim() == 4 && input.scalar_type() == torch::kFloat &&
      input.device().is_cpu());
  const torch::Tensor x = input.contiguous();
  const int64_t planes = x.size(0) * x.size(1);
  const int64_t h = x.size(2);
  const int64_t w = x.size(3);
  const int64_t ho = h / 2;
  const int64_t wo = w / 2;
  torch::Tensor y = torch::empty({x.size(0), x.size(1), ho, wo}, x.options());
  torch::Tensor idx;
  if (with_indices) {
    idx = torch::empty(y.sizes(), x.options().dtype(torch::kLong));
  }
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  int64_t* ip = with_indices ? idx.data_ptr<int64_t>() : nullptr;
  at::parallel_for(0, planes, 8, [&](int64_t begin, int64_t end) {
    if (ip != nullptr) {
      max_pool2x2_planes<true>(xp, yp, ip, begin, end, h, w);
    } else {
      max_pool2x2_planes<false>(xp, yp, nullptr, begin, end, h, w);
    }
  });
  return {y, idx};
}

/// Autograd function of `max_pool2x2_with_indices`: the backward pass is
/// LibTorch's own `max_pool2d_with_indices_backward`.
struct MaxPool2x2Function
    : public torch::autograd::Function<MaxPool2x2Function> {
  static torch::Tensor forward(
      torch::autograd::AutogradContext* ctx, const torch::Tensor& x) {
    auto [y, idx] = max_pool2x2_with_indices(x, /*with_indices=*/true);
    ctx->save_for_backward({x, idx});
    return y;
  }
  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* ctx,
      torch::autograd::variable_list grad) {
    auto saved = ctx->get_saved_variables();
    return {at::max_pool2d_with_indices_backward(
        grad[0].contiguous(),
        saved[0],
        {2, 2},
        {2, 2},
        {0, 0},
        {1, 1},
        /*ceil_mode=*/false,
        saved[1])};
  }
};

/// `max_pool2d(x, 2)` for contiguous CPU float `[N, C, H, W]` with even H, W
/// through the fast path above; anything else through `max_pool2d`.
inline torch::Tensor max_pool2x2(const torch::Tensor& x) {
  namespace F = torch::nn::functional;
  if (x.dim() != 4 || x.size(2) % 2 != 0 || x.size(3) % 2 != 0 ||
      !x.device().is_cpu() || x.scalar_type() != torch::kFloat ||
      x.numel() == 0) {
    return F::max_pool2d(x, F::MaxPool2dFuncOptions(2));
  }
  if (torch::GradMode::is_enabled() && x.requires_grad()) {
    return MaxPool2x2Function::apply(x);
  }
  return max_pool2x2_with_indices(x, /*with_indices=*/false).first;
}

} // namespace detail

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
/// Speed: LibTorch 1.13's CPU `max_pool2d` is the slowest layer of this net
/// (slower than either convolution); the 2x2 pooling here is a one-pass
/// kernel with the same values and the same argmax indices, and its gradient
/// is LibTorch's `max_pool2d_with_indices_backward`, so outputs and gradients
/// equal the plain `max_pool2d` formulation bit for bit.
///
/// Differences from PyTorch (Python): the homework flattens with
/// `x.view(-1, 400)`, which silently reshapes wrong-sized inputs into a
/// different batch; here an input that is not `[N, 1, 28, 28]` is an error.
/// Initialisation is LibTorch's default (the same rule as Python's, a
/// different random stream).
class LeNet5Impl : public torch::nn::Module, public SummaryTraceable {
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
    check_input(x);
    if (detail::conv1ch_applies(x, conv1->weight, conv1->bias)) {
      // The same function through a direct kernel (see
      // detail/conv_single_channel.h); equal up to float rounding order.
      x = detail::max_pool2x2(detail::Conv1chReluFunction::apply(
          x.contiguous(), conv1->weight, conv1->bias, int64_t{2}));
    } else {
      x = detail::max_pool2x2(torch::relu(conv1->forward(x)));
    }
    x = detail::max_pool2x2(torch::relu(conv2->forward(x)));
    x = x.flatten(1);
    x = torch::relu(fc1->forward(x));
    x = torch::relu(fc2->forward(x));
    return fc3->forward(x);
  }

  /// `forward`, step by step (see `summary()`): the same layers, with
  /// conv1 through `torch::nn::Conv2d` and the pooling and activations as
  /// functional steps named `relu1`, `pool1`, `relu2`, `pool2`, `flatten`,
  /// `relu3`, `relu4`. An inactive tracer runs `forward` itself.
  torch::Tensor trace_forward(
      const torch::Tensor& input, SummaryTracer& t) override {
    if (!t.recording()) {
      return forward(input);
    }
    check_input(input);
    auto x = t("conv1", conv1, input);
    x = t.functional("relu1", x, torch::relu(x));
    x = t.functional("pool1", x, detail::max_pool2x2(x));
    x = t("conv2", conv2, x);
    x = t.functional("relu2", x, torch::relu(x));
    x = t.functional("pool2", x, detail::max_pool2x2(x));
    x = t.functional("flatten", x, x.flatten(1));
    x = t("fc1", fc1, x);
    x = t.functional("relu3", x, torch::relu(x));
    x = t("fc2", fc2, x);
    x = t.functional("relu4", x, torch::relu(x));
    return t("fc3", fc3, x);
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
  static void check_input(const torch::Tensor& x) {
    TORCH_CHECK(
        x.dim() == 4 && x.size(1) == 1 && x.size(2) == 28 && x.size(3) == 28,
        "LeNet5: expected input of shape [N, 1, 28, 28], but got ",
        x.sizes());
  }

  int64_t num_classes_;
};

/// Module holder of `LeNet5Impl` (`dlcore::LeNet5 net(10); net->forward(x)`).
TORCH_MODULE(LeNet5);

/// LeNet-5 as layer specs for `analyze_layers()` (input {1, 28, 28}), layer
/// for layer the same as `LeNet5`'s `summary()` rows, with the same names.
///
/// Example:
///   auto stats = dlcore::analyze_layers(dlcore::lenet5_layers(), {1, 28, 28});
///   // stats.params == 61706, stats.macs == 416520
inline std::vector<LayerSpec> lenet5_layers(int64_t num_classes = 10) {
  using L = LayerSpec;
  return {
      L::conv2d(1, 6, 5).padding(2).name("conv1"),
      L::relu(/*inplace=*/false).name("relu1"),
      L::max_pool2d(2).name("pool1"),
      L::conv2d(6, 16, 5).name("conv2"),
      L::relu(/*inplace=*/false).name("relu2"),
      L::max_pool2d(2).name("pool2"),
      L::flatten().name("flatten"),
      L::linear(16 * 5 * 5, 120).name("fc1"),
      L::relu(/*inplace=*/false).name("relu3"),
      L::linear(120, 84).name("fc2"),
      L::relu(/*inplace=*/false).name("relu4"),
      L::linear(84, num_classes).name("fc3"),
  };
}

} // namespace dlcore
