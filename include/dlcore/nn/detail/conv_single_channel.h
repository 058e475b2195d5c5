#pragma once

// Internals of dlcore::LeNet5: a direct convolution + ReLU for one input
// channel (LeNet-5's first layer), with AVX-512 kernels chosen at run time.
// LibTorch 1.13's oneDNN path is slow for a single input channel (about
// 15 GMAC/s forward and backward on [64, 1, 28, 28] here against 60 GMAC/s
// for the second layer), so both passes are computed here: forward vectorised
// over output columns with the taps of all output channels sharing each
// input load, backward (weight and bias gradients, ReLU mask fused) with the
// K*K taps of one output channel in registers.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/constant_pad_nd.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cstdint>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define DLCORE_CONV1_X86 1
#else
#define DLCORE_CONV1_X86 0
#endif

namespace dlcore {
namespace detail {

/// Whether the AVX-512 kernels below can run on this CPU (checked once).
inline bool conv1ch_supported() {
#if DLCORE_CONV1_X86
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return ok;
#else
  return false;
#endif
}

/// Shape of one call: images `[n, 1, h, w]` zero-padded by `pad` into rows
/// of `wp` floats (`hp` rows per image), `co` output channels of `k x k`
/// taps, output `[n, co, ho, wo]`.
struct Conv1chShape {
  int64_t n, h, w, pad, k, co, ho, wo, hp, wp;
};

inline Conv1chShape conv1ch_shape(
    const at::Tensor& x, const at::Tensor& weight, int64_t pad) {
  Conv1chShape s{};
  s.n = x.size(0);
  s.h = x.size(2);
  s.w = x.size(3);
  s.pad = pad;
  s.k = weight.size(2);
  s.co = weight.size(0);
  s.ho = s.h + 2 * pad - s.k + 1;
  s.wo = s.w + 2 * pad - s.k + 1;
  s.hp = s.h + 2 * pad;
  // Whole 16-lane groups of outputs plus the k - 1 columns they reach.
  s.wp = std::max<int64_t>((s.wo + 15) / 16 * 16 + s.k - 1, s.w + 2 * pad);
  return s;
}

#if DLCORE_CONV1_X86

/// The sum of the 16 lanes of `v`, in lane order.
__attribute__((target("avx512f"))) inline float conv1ch_lane_sum(__m512 v) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  float sum = 0;
  for (float x : lanes) {
    sum += x;
  }
  return sum;
}

/// Forward of images [n0, n1): y = relu(bias + sum of taps), `kK` taps per
/// side, output channels in groups of up to 8 accumulating together.
template <int kK>
__attribute__((target("avx512f"))) void conv1ch_forward_avx512(
    const Conv1chShape& s,
    const float* xp,
    const float* wt,
    const float* bias,
    float* yp,
    int64_t n0,
    int64_t n1) {
  constexpr int kGroup = 8;
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t n = n0; n < n1; ++n) {
    const float* img = xp + n * s.hp * s.wp;
    for (int64_t c0 = 0; c0 < s.co; c0 += kGroup) {
      const int g = static_cast<int>(std::min<int64_t>(kGroup, s.co - c0));
      for (int64_t i = 0; i < s.ho; ++i) {
        for (int64_t j = 0; j < s.wo; j += 16) {
          const __mmask16 m =
              s.wo - j >= 16 ? static_cast<__mmask16>(0xffff)
                             : static_cast<__mmask16>((1u << (s.wo - j)) - 1u);
          __m512 acc[kGroup];
          for (int c = 0; c < kGroup; ++c) {
            acc[c] = c < g ? _mm512_set1_ps(bias[c0 + c]) : zero;
          }
          for (int ki = 0; ki < kK; ++ki) {
            const float* row = img + (i + ki) * s.wp + j;
            for (int kj = 0; kj < kK; ++kj) {
              const __m512 xv = _mm512_loadu_ps(row + kj);
              const float* wk = wt + c0 * kK * kK + ki * kK + kj;
              for (int c = 0; c < kGroup; ++c) {
                if (c < g) {
                  acc[c] = _mm512_fmadd_ps(
                      _mm512_set1_ps(wk[c * kK * kK]), xv, acc[c]);
                }
              }
            }
          }
          for (int c = 0; c < g; ++c) {
            float* out = yp + ((n * s.co + c0 + c) * s.ho + i) * s.wo + j;
            // ReLU as clamp_min: keeps NaN, maps everything <= 0 to +0.
            const __mmask16 pos = _mm512_cmp_ps_mask(acc[c], zero, _CMP_NLE_UQ);
            _mm512_mask_storeu_ps(out, m, _mm512_maskz_mov_ps(pos, acc[c]));
          }
        }
      }
    }
  }
}

/// Weight and bias gradients of output channels [c0, c1): the ReLU mask
/// (y > 0) applied to `gy` on the fly, the `kK * kK` tap sums of a channel in
/// registers over all images, rows and columns (a fixed order: the result
/// does not depend on how channels are split over threads).
template <int kK>
__attribute__((target("avx512f"))) void conv1ch_backward_avx512(
    const Conv1chShape& s,
    const float* xp,
    const float* yp,
    const float* gp,
    float* gw,
    float* gb,
    int64_t c0,
    int64_t c1) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t c = c0; c < c1; ++c) {
    __m512 acc[kK * kK];
    for (int t = 0; t < kK * kK; ++t) {
      acc[t] = zero;
    }
    __m512 bacc = zero;
    for (int64_t n = 0; n < s.n; ++n) {
      const float* img = xp + n * s.hp * s.wp;
      const int64_t plane = (n * s.co + c) * s.ho * s.wo;
      for (int64_t i = 0; i < s.ho; ++i) {
        for (int64_t j = 0; j < s.wo; j += 16) {
          const __mmask16 m =
              s.wo - j >= 16 ? static_cast<__mmask16>(0xffff)
                             : static_cast<__mmask16>((1u << (s.wo - j)) - 1u);
          const int64_t at = plane + i * s.wo + j;
          const __m512 yv = _mm512_maskz_loadu_ps(m, yp + at);
          const __mmask16 live =
              _mm512_mask_cmp_ps_mask(m, yv, zero, _CMP_GT_OQ);
          const __m512 g = _mm512_maskz_loadu_ps(live, gp + at);
          bacc = _mm512_add_ps(bacc, g);
          for (int ki = 0; ki < kK; ++ki) {
            const float* row = img + (i + ki) * s.wp + j;
            for (int kj = 0; kj < kK; ++kj) {
              acc[ki * kK + kj] = _mm512_fmadd_ps(
                  g, _mm512_loadu_ps(row + kj), acc[ki * kK + kj]);
            }
          }
        }
      }
    }
    for (int t = 0; t < kK * kK; ++t) {
      gw[c * kK * kK + t] = conv1ch_lane_sum(acc[t]);
    }
    gb[c] = conv1ch_lane_sum(bacc);
  }
}

#endif // DLCORE_CONV1_X86

/// Whether `conv1ch_relu` handles this call: float CPU tensors, x
/// `[N, 1, H, W]` not requiring a gradient, a square 5x5 kernel with one
/// input channel, stride 1, no dilation, and an AVX-512 CPU.
inline bool conv1ch_applies(
    const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return conv1ch_supported() && x.dim() == 4 && x.size(1) == 1 &&
         x.size(0) > 0 && x.scalar_type() == at::kFloat && x.is_cpu() &&
         !x.requires_grad() && weight.dim() == 4 && weight.size(1) == 1 &&
         weight.size(2) == 5 && weight.size(3) == 5 &&
         weight.scalar_type() == at::kFloat && weight.is_cpu() &&
         bias.defined() && bias.dim() == 1 && bias.size(0) == weight.size(0) &&
         bias.scalar_type() == at::kFloat && bias.is_cpu();
}

/// relu(conv2d(x, weight, bias, stride 1, padding `pad`)) for the calls
/// `conv1ch_applies` accepts, differentiable in weight and bias.
struct Conv1chReluFunction
    : public torch::autograd::Function<Conv1chReluFunction> {
  static at::Tensor forward(
      torch::autograd::AutogradContext* ctx,
      const at::Tensor& x,
      const at::Tensor& weight,
      const at::Tensor& bias,
      int64_t pad) {
#if DLCORE_CONV1_X86
    const Conv1chShape s = conv1ch_shape(x, weight, pad);
    // Zero-padded copy with rows of s.wp floats (and room on the right for
    // whole vectors).
    at::Tensor xpad = at::constant_pad_nd(
        x.reshape({s.n, s.h, s.w}), {pad, s.wp - s.w - pad, pad, pad}, 0.0);
    const at::Tensor w = weight.contiguous();
    const at::Tensor b = bias.contiguous();
    at::Tensor y = at::empty({s.n, s.co, s.ho, s.wo}, x.options());
    const float* xp = xpad.data_ptr<float>();
    const float* wp = w.data_ptr<float>();
    const float* bp = b.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    at::parallel_for(0, s.n, 4, [&](int64_t n0, int64_t n1) {
      conv1ch_forward_avx512<5>(s, xp, wp, bp, yp, n0, n1);
    });
    ctx->save_for_backward({xpad, y});
    return y;
#else
    (void)ctx;
    (void)x;
    (void)weight;
    (void)bias;
    (void)pad;
    TORCH_CHECK(false, "conv1ch_relu: no AVX-512 kernel on this platform");
#endif
  }

  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* ctx,
      torch::autograd::variable_list grad) {
#if DLCORE_CONV1_X86
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& xpad = saved[0];
    const at::Tensor& y = saved[1];
    // Everything the backward kernel reads follows from the saved tensors
    // (h, w and the padding are only needed to build xpad).
    Conv1chShape s{};
    s.n = y.size(0);
    s.k = 5;
    s.co = y.size(1);
    s.ho = y.size(2);
    s.wo = y.size(3);
    s.hp = xpad.size(1);
    s.wp = xpad.size(2);
    const at::Tensor g = grad[0].contiguous();
    at::Tensor gw = at::empty({s.co, 1, s.k, s.k}, y.options());
    at::Tensor gb = at::empty({s.co}, y.options());
    const float* xp = xpad.data_ptr<float>();
    const float* yp = y.data_ptr<float>();
    const float* gp = g.data_ptr<float>();
    float* gwp = gw.data_ptr<float>();
    float* gbp = gb.data_ptr<float>();
    at::parallel_for(0, s.co, 1, [&](int64_t c0, int64_t c1) {
      conv1ch_backward_avx512<5>(s, xp, yp, gp, gwp, gbp, c0, c1);
    });
    return {at::Tensor(), gw, gb, at::Tensor()};
#else
    (void)ctx;
    (void)grad;
    return {};
#endif
  }
};

} // namespace detail
} // namespace dlcore
