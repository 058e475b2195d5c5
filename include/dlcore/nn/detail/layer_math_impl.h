#pragma once

// Definitions of dlcore/nn/layer_math.h. Include that header, not this one.

#include <dlcore/detail/format.h>

#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace dlcore {
namespace detail {

/// What flows from one layer to the next during the analysis.
struct LayerFlow {
  std::vector<int64_t> shape;
  std::array<double, 2> r{{1, 1}};
  std::array<double, 2> j{{1, 1}};
  std::array<double, 2> start{{0.5, 0.5}};
};

struct LayerMathContext {
  int64_t batch = 1;
  int64_t element_size = 4;
  std::vector<LayerStats>* rows = nullptr;
};

inline int64_t layer_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    n *= d;
  }
  return n;
}

/// "analyze_layers: layer 5.1.0 (b2.conv, Conv2d)".
inline std::string layer_label(const LayerSpec& spec, const std::string& path) {
  std::string label = "analyze_layers: layer " + path + " (";
  if (!spec.name().empty()) {
    label += spec.name() + ", ";
  }
  return label + spec.type_name() + ")";
}

inline int64_t layer_output_size(
    const std::string& label,
    const char* axis,
    int64_t in,
    int64_t k,
    int64_t s,
    int64_t p,
    int64_t d,
    bool ceil_mode) {
  const int64_t k_eff = d * (k - 1) + 1;
  const int64_t span = in + 2 * p - k_eff;
  TORCH_CHECK(
      span >= 0,
      label,
      ": kernel ",
      k,
      " (effective ",
      k_eff,
      ") is larger than the padded input ",
      in + 2 * p,
      " (input ",
      in,
      " + 2 x padding ",
      p,
      ") along ",
      axis);
  int64_t out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
  if (ceil_mode && (out - 1) * s >= in + p) {
    --out; // PyTorch drops a last window that starts in the right padding.
  }
  return out;
}

inline void layer_check_positive(
    const std::string& label,
    const char* what,
    const torch::ExpandingArray<2>& v,
    int64_t min_value) {
  for (int a = 0; a < 2; ++a) {
    TORCH_CHECK(
        (*v)[a] >= min_value,
        label,
        ": ",
        what,
        " must be >= ",
        min_value,
        ", got (",
        (*v)[0],
        ", ",
        (*v)[1],
        ")");
  }
}

inline void layer_check_rank3(
    const std::string& label, const std::vector<int64_t>& shape) {
  TORCH_CHECK(
      shape.size() == 3,
      label,
      ": expects a [C, H, W] input, got shape ",
      format_shape(shape));
}

/// Receptive-field recurrence of a sliding window along both axes.
inline void layer_slide(
    LayerFlow& f,
    const std::array<double, 2>& k_eff,
    const std::array<double, 2>& k_first,
    const std::array<double, 2>& stride,
    const std::array<double, 2>& pad) {
  for (int a = 0; a < 2; ++a) {
    const double j_in = f.j[a];
    f.r[a] += (k_eff[a] - 1) * j_in;
    f.start[a] += ((k_first[a] - 1) / 2 - pad[a]) * j_in;
    f.j[a] = j_in * stride[a];
  }
}

inline LayerFlow layer_sequence(
    const std::vector<LayerSpec>& layers,
    LayerFlow flow,
    const std::string& prefix,
    int64_t depth,
    LayerMathContext& ctx);

inline LayerFlow layer_one(
    const LayerSpec& spec,
    const LayerFlow& in,
    const std::string& path,
    int64_t depth,
    LayerMathContext& ctx) {
  const std::string label = layer_label(spec, path);
  LayerFlow out = in;
  LayerStats row;
  row.name = spec.name().empty() ? path : spec.name();
  row.type = spec.type_name();
  row.depth = depth;
  bool allocates = true;
  const int64_t batch = ctx.batch;

  switch (spec.kind()) {
    case LayerKind::kConv2d:
    case LayerKind::kMaxPool2d:
    case LayerKind::kAvgPool2d: {
      layer_check_rank3(label, in.shape);
      const bool conv = spec.kind() == LayerKind::kConv2d;
      layer_check_positive(label, "kernel_size", spec.kernel_size(), 1);
      layer_check_positive(label, "stride", spec.stride(), 1);
      layer_check_positive(label, "padding", spec.padding(), 0);
      layer_check_positive(label, "dilation", spec.dilation(), 1);
      const std::array<int64_t, 2> k = *spec.kernel_size();
      const std::array<int64_t, 2> s = *spec.stride();
      const std::array<int64_t, 2> p = *spec.padding();
      const std::array<int64_t, 2> d = spec.kind() == LayerKind::kAvgPool2d
                                           ? std::array<int64_t, 2>{{1, 1}}
                                           : *spec.dilation();
      int64_t c_out = in.shape[0];
      if (conv) {
        TORCH_CHECK(
            spec.in_channels() > 0 && spec.out_channels() > 0,
            label,
            ": in_channels and out_channels must be positive, got ",
            spec.in_channels(),
            " and ",
            spec.out_channels());
        TORCH_CHECK(
            spec.groups() > 0 && spec.in_channels() % spec.groups() == 0 &&
                spec.out_channels() % spec.groups() == 0,
            label,
            ": groups (",
            spec.groups(),
            ") must be positive and divide in_channels (",
            spec.in_channels(),
            ") and out_channels (",
            spec.out_channels(),
            ")");
        TORCH_CHECK(
            in.shape[0] == spec.in_channels(),
            label,
            ": expects ",
            spec.in_channels(),
            " input channels, got ",
            in.shape[0],
            " (input shape ",
            format_shape(in.shape),
            ")");
        c_out = spec.out_channels();
      } else {
        for (int a = 0; a < 2; ++a) {
          TORCH_CHECK(
              2 * p[a] <= k[a],
              label,
              ": padding (",
              p[0],
              ", ",
              p[1],
              ") must be at most half of kernel_size (",
              k[0],
              ", ",
              k[1],
              ")");
        }
      }
      const bool ceil_mode = conv ? false : spec.ceil_mode();
      const int64_t h = layer_output_size(
          label, "height", in.shape[1], k[0], s[0], p[0], d[0], ceil_mode);
      const int64_t w = layer_output_size(
          label, "width", in.shape[2], k[1], s[1], p[1], d[1], ceil_mode);
      out.shape = {c_out, h, w};
      const int64_t out_elems = batch * c_out * h * w;
      if (conv) {
        const int64_t per_out =
            (spec.in_channels() / spec.groups()) * k[0] * k[1];
        row.params = c_out * per_out + (spec.bias() ? c_out : 0);
        row.macs = out_elems * per_out;
        row.flops = 2 * row.macs + (spec.bias() ? out_elems : 0);
      } else if (spec.kind() == LayerKind::kMaxPool2d) {
        row.flops = out_elems * (k[0] * k[1] - 1);
      } else {
        row.flops = out_elems * k[0] * k[1];
      }
      std::array<double, 2> k_eff{};
      for (int a = 0; a < 2; ++a) {
        k_eff[a] = static_cast<double>(d[a] * (k[a] - 1) + 1);
      }
      const std::array<double, 2> sd{
          {static_cast<double>(s[0]), static_cast<double>(s[1])}};
      const std::array<double, 2> pd{
          {static_cast<double>(p[0]), static_cast<double>(p[1])}};
      layer_slide(out, k_eff, k_eff, sd, pd);
      break;
    }
    case LayerKind::kAdaptiveAvgPool2d:
    case LayerKind::kAdaptiveMaxPool2d: {
      layer_check_rank3(label, in.shape);
      layer_check_positive(label, "output_size", spec.output_size(), 1);
      const std::array<int64_t, 2> o = *spec.output_size();
      out.shape = {in.shape[0], o[0], o[1]};
      std::array<double, 2> k_max{}, k_first{}, stride{};
      std::array<int64_t, 2> window_sum{};
      for (int a = 0; a < 2; ++a) {
        const int64_t n = in.shape[1 + a];
        int64_t widest = 0;
        for (int64_t i = 0; i < o[a]; ++i) {
          const int64_t lo = (i * n) / o[a];
          const int64_t hi = ((i + 1) * n + o[a] - 1) / o[a];
          widest = std::max(widest, hi - lo);
          window_sum[a] += hi - lo;
          if (i == 0) {
            k_first[a] = static_cast<double>(hi - lo);
          }
        }
        k_max[a] = static_cast<double>(widest);
        stride[a] = static_cast<double>(n) / static_cast<double>(o[a]);
      }
      const int64_t windows =
          batch * in.shape[0] * window_sum[0] * window_sum[1];
      row.flops = spec.kind() == LayerKind::kAdaptiveAvgPool2d
                      ? windows
                      : windows - batch * in.shape[0] * o[0] * o[1];
      layer_slide(out, k_max, k_first, stride, {{0.0, 0.0}});
      break;
    }
    case LayerKind::kLinear: {
      TORCH_CHECK(
          spec.in_features() > 0 && spec.out_features() > 0,
          label,
          ": in_features and out_features must be positive, got ",
          spec.in_features(),
          " and ",
          spec.out_features());
      TORCH_CHECK(
          in.shape.size() == 1,
          label,
          ": expects a flat input of ",
          spec.in_features(),
          " features, got shape ",
          format_shape(in.shape),
          "; add a LayerSpec::flatten() before it");
      TORCH_CHECK(
          in.shape[0] == spec.in_features(),
          label,
          ": expects ",
          spec.in_features(),
          " input features, got ",
          in.shape[0]);
      out.shape = {spec.out_features()};
      row.params = spec.in_features() * spec.out_features() +
                   (spec.bias() ? spec.out_features() : 0);
      row.macs = batch * spec.in_features() * spec.out_features();
      row.flops =
          2 * row.macs + (spec.bias() ? batch * spec.out_features() : 0);
      break;
    }
    case LayerKind::kBatchNorm: {
      TORCH_CHECK(
          spec.num_features() > 0,
          label,
          ": num_features must be positive, got ",
          spec.num_features());
      TORCH_CHECK(
          in.shape[0] == spec.num_features(),
          label,
          ": expects ",
          spec.num_features(),
          " channels, got ",
          in.shape[0],
          " (input shape ",
          format_shape(in.shape),
          ")");
      row.params = spec.affine() ? 2 * spec.num_features() : 0;
      row.buffers =
          spec.track_running_stats() ? 2 * spec.num_features() + 1 : 0;
      row.flops = 2 * batch * layer_numel(in.shape);
      break;
    }
    case LayerKind::kActivation:
      allocates = !spec.inplace();
      row.flops = batch * layer_numel(in.shape);
      break;
    case LayerKind::kDropout:
      allocates = false;
      break;
    case LayerKind::kFlatten: {
      allocates = false;
      if (in.shape.size() == 3) {
        const double hw[2] = {
            static_cast<double>(in.shape[1]), static_cast<double>(in.shape[2])};
        layer_slide(
            out, {hw[0], hw[1]}, {hw[0], hw[1]}, {hw[0], hw[1]}, {0, 0});
      }
      out.shape = {layer_numel(in.shape)};
      break;
    }
    case LayerKind::kConcat:
    case LayerKind::kAdd: {
      const bool cat = spec.kind() == LayerKind::kConcat;
      const auto& branches = spec.branches();
      TORCH_CHECK(
          !branches.empty(), label, ": needs at least one branch, got none");
      // Unnamed branch layers are named after the join: "<join>.<b>.<i>".
      const std::string base = spec.name().empty() ? path : spec.name();
      std::vector<LayerFlow> outs;
      for (size_t b = 0; b < branches.size(); ++b) {
        outs.push_back(layer_sequence(
            branches[b], in, base + "." + std::to_string(b), depth + 1, ctx));
      }
      out = outs[0];
      for (size_t b = 1; b < outs.size(); ++b) {
        const auto& sb = outs[b].shape;
        bool ok = sb.size() == out.shape.size();
        for (size_t i = cat ? 1 : 0; ok && i < sb.size(); ++i) {
          ok = sb[i] == outs[0].shape[i];
        }
        TORCH_CHECK(
            ok,
            label,
            ": branch ",
            b,
            " gives shape ",
            format_shape(sb),
            ", which cannot be ",
            cat ? "concatenated along channels with" : "added to",
            " branch 0's ",
            format_shape(outs[0].shape));
        if (cat) {
          out.shape[0] += sb[0];
        }
        for (int a = 0; a < 2; ++a) {
          if (outs[b].r[a] > out.r[a]) {
            out.r[a] = outs[b].r[a];
            out.j[a] = outs[b].j[a];
            out.start[a] = outs[b].start[a];
          }
        }
      }
      if (cat) {
        allocates = true;
      } else {
        allocates = !spec.inplace();
        row.flops = static_cast<int64_t>(branches.size() - 1) * batch *
                    layer_numel(out.shape);
      }
      break;
    }
    case LayerKind::kSubsamplePad: {
      layer_check_rank3(label, in.shape);
      layer_check_positive(label, "stride", spec.stride(), 1);
      TORCH_CHECK(
          spec.out_channels() >= in.shape[0],
          label,
          ": out_channels (",
          spec.out_channels(),
          ") must be at least the input's ",
          in.shape[0],
          " channels (input shape ",
          format_shape(in.shape),
          ")");
      const std::array<int64_t, 2> s = *spec.stride();
      // x[:, :, ::s, ::s] keeps ceil(n / s) rows and columns.
      out.shape = {
          spec.out_channels(),
          (in.shape[1] - 1) / s[0] + 1,
          (in.shape[2] - 1) / s[1] + 1};
      layer_slide(
          out,
          {{1.0, 1.0}},
          {{1.0, 1.0}},
          {{static_cast<double>(s[0]), static_cast<double>(s[1])}},
          {{0.0, 0.0}});
      break;
    }
  }

  row.index = static_cast<int64_t>(ctx.rows->size());
  row.output_shape = out.shape;
  row.activations = batch * layer_numel(out.shape);
  row.activation_bytes = allocates ? row.activations * ctx.element_size : 0;
  row.receptive_field = out.r;
  row.jump = out.j;
  row.start = out.start;
  ctx.rows->push_back(std::move(row));
  return out;
}

inline LayerFlow layer_sequence(
    const std::vector<LayerSpec>& layers,
    LayerFlow flow,
    const std::string& prefix,
    int64_t depth,
    LayerMathContext& ctx) {
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string path =
        prefix.empty() ? std::to_string(i) : prefix + "." + std::to_string(i);
    flow = layer_one(layers[i], flow, path, depth, ctx);
  }
  return flow;
}

/// 3 -> "3", 1.5 -> "1.5", (3, 5) -> "3x5".
inline std::string layer_pair(const std::array<double, 2>& v) {
  auto one = [](double x) {
    std::ostringstream os;
    os << x;
    return os.str();
  };
  return v[0] == v[1] ? one(v[0]) : one(v[0]) + "x" + one(v[1]);
}

} // namespace detail

inline std::string NetworkStats::to_string() const {
  std::vector<std::array<std::string, 8>> cells;
  cells.push_back(
      {"Layer (type)",
       "Output",
       "Params",
       "Activations",
       "MACs",
       "RF",
       "Jump",
       "Start"});
  for (const auto& r : layers) {
    cells.push_back(
        {std::string(2 * r.depth, ' ') + r.name + " (" + r.type + ")",
         detail::format_shape(r.output_shape),
         detail::format_thousands(r.params),
         detail::format_thousands(r.activations),
         detail::format_thousands(r.macs),
         detail::layer_pair(r.receptive_field),
         detail::layer_pair(r.jump),
         detail::layer_pair(r.start)});
  }
  std::array<size_t, 8> w{};
  for (const auto& c : cells) {
    for (size_t i = 0; i < c.size(); ++i) {
      w[i] = std::max(w[i], c[i].size());
    }
  }
  size_t width = 2 * (w.size() - 1);
  for (size_t x : w) {
    width += x;
  }
  const std::string rule(width, '=');
  std::ostringstream os;
  os << rule << "\n";
  for (size_t k = 0; k < cells.size(); ++k) {
    for (size_t i = 0; i < cells[k].size(); ++i) {
      const auto& t = cells[k][i];
      const std::string pad(w[i] - t.size(), ' ');
      os << (i ? "  " : "") << (i < 2 ? t + pad : pad + t);
    }
    os << "\n";
    if (k == 0) {
      os << rule << "\n";
    }
  }
  const double mib = 1024.0 * 1024.0;
  char buf[256];
  os << rule << "\n";
  os << "Input " << detail::format_shape(input_shape) << " x batch "
     << batch_size << ", output " << detail::format_shape(output_shape) << "\n";
  os << "Params: " << detail::format_thousands(params)
     << "  buffers: " << detail::format_thousands(buffers) << "\n";
  std::snprintf(
      buf,
      sizeof(buf),
      "MACs: %.3f G  FLOPs: %.3f G\n",
      macs / 1e9,
      flops / 1e9);
  os << buf;
  std::snprintf(
      buf,
      sizeof(buf),
      "Activations: %s (%.2f MiB forward, %.2f MiB with backward)\n"
      "Params size: %.2f MiB\n",
      detail::format_thousands(activations).c_str(),
      forward_bytes / mib,
      backward_bytes / mib,
      param_bytes / mib);
  os << buf;
  os << "Receptive field " << detail::layer_pair(receptive_field) << ", jump "
     << detail::layer_pair(jump) << ", start " << detail::layer_pair(start)
     << "\n"
     << rule << "\n";
  return os.str();
}

inline int64_t conv_output_size(
    int64_t in,
    int64_t kernel,
    int64_t stride,
    int64_t padding,
    int64_t dilation,
    bool ceil_mode) {
  TORCH_CHECK(
      in > 0 && kernel > 0 && stride > 0 && padding >= 0 && dilation > 0,
      "conv_output_size: expects in, kernel, stride, dilation > 0 and "
      "padding >= 0, got in=",
      in,
      " kernel=",
      kernel,
      " stride=",
      stride,
      " padding=",
      padding,
      " dilation=",
      dilation);
  return detail::layer_output_size(
      "conv_output_size",
      "the axis",
      in,
      kernel,
      stride,
      padding,
      dilation,
      ceil_mode);
}

inline NetworkStats analyze_layers(
    const std::vector<LayerSpec>& layers,
    const std::vector<int64_t>& input_shape,
    const LayerMathOptions& options) {
  TORCH_CHECK(
      input_shape.size() == 1 || input_shape.size() == 3,
      "analyze_layers: input_shape must be per sample, {C, H, W} or {F}, got ",
      detail::format_shape(input_shape));
  for (int64_t d : input_shape) {
    TORCH_CHECK(
        d > 0,
        "analyze_layers: input_shape sizes must be positive, got ",
        detail::format_shape(input_shape));
  }
  TORCH_CHECK(
      options.batch_size() > 0,
      "analyze_layers: batch_size must be positive, got ",
      options.batch_size());
  TORCH_CHECK(
      options.dtype() != c10::ScalarType::Undefined &&
          options.dtype() != c10::ScalarType::NumOptions,
      "analyze_layers: dtype must be a tensor element type, got ",
      options.dtype());

  NetworkStats stats;
  detail::LayerMathContext ctx;
  ctx.batch = options.batch_size();
  ctx.element_size = static_cast<int64_t>(c10::elementSize(options.dtype()));
  ctx.rows = &stats.layers;

  detail::LayerFlow flow;
  flow.shape = input_shape;
  flow = detail::layer_sequence(layers, flow, "", 0, ctx);

  stats.input_shape = input_shape;
  stats.output_shape = flow.shape;
  stats.batch_size = ctx.batch;
  stats.element_size = ctx.element_size;
  stats.input_activations = ctx.batch * detail::layer_numel(input_shape);
  stats.activations = options.count_input() ? stats.input_activations : 0;
  for (const auto& row : stats.layers) {
    stats.params += row.params;
    stats.buffers += row.buffers;
    stats.macs += row.macs;
    stats.flops += row.flops;
    if (row.activation_bytes > 0) {
      stats.activations += row.activations;
    }
  }
  stats.forward_bytes = stats.activations * ctx.element_size;
  stats.backward_bytes = 2 * stats.forward_bytes;
  stats.param_bytes = stats.params * ctx.element_size;
  stats.receptive_field = flow.r;
  stats.jump = flow.j;
  stats.start = flow.start;
  return stats;
}

} // namespace dlcore
