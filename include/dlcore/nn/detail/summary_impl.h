#pragma once

// Definitions of dlcore/nn/summary.h. Include that header, not this one.

#include <dlcore/detail/format.h>

#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace dlcore {
namespace detail {

/// "torch::nn::Conv2dImpl" -> "Conv2d", "dlcore::BasicConv2dImpl" ->
/// "BasicConv2d".
inline std::string summary_type_name(const torch::nn::Module& m) {
  std::string n = m.name();
  const auto pos = n.rfind("::");
  if (pos != std::string::npos) {
    n = n.substr(pos + 2);
  }
  if (n.size() > 4 && n.compare(n.size() - 4, 4, "Impl") == 0) {
    n.resize(n.size() - 4);
  }
  return n;
}

inline void summary_count(
    const torch::nn::Module& m, int64_t& params, int64_t& trainable) {
  params = 0;
  trainable = 0;
  for (const auto& p : m.parameters(/*recurse=*/true)) {
    params += p.numel();
    if (p.requires_grad()) {
      trainable += p.numel();
    }
  }
}

/// MACs of a convolution or linear leaf producing `y`; 0 otherwise.
inline int64_t summary_leaf_macs(
    const torch::nn::Module& m, const torch::Tensor& y) {
  const torch::Tensor* weight = nullptr;
  if (auto* c1 = dynamic_cast<const torch::nn::Conv1dImpl*>(&m)) {
    weight = &c1->weight;
  } else if (auto* c2 = dynamic_cast<const torch::nn::Conv2dImpl*>(&m)) {
    weight = &c2->weight;
  } else if (auto* c3 = dynamic_cast<const torch::nn::Conv3dImpl*>(&m)) {
    weight = &c3->weight;
  } else if (auto* l = dynamic_cast<const torch::nn::LinearImpl*>(&m)) {
    weight = &l->weight;
  }
  if (weight == nullptr || !weight->defined() || weight->size(0) == 0) {
    return 0;
  }
  // Conv weight [Cout, Cin/groups, k...]; linear [out, in]: fan-in per output.
  return y.numel() * (weight->numel() / weight->size(0));
}

inline bool summary_shares_storage(
    const torch::Tensor& x, const torch::Tensor& y) {
  return x.defined() && y.defined() && x.has_storage() && y.has_storage() &&
         x.storage().unsafeGetStorageImpl() ==
             y.storage().unsafeGetStorageImpl();
}

inline std::string summary_fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  return buf;
}

/// Whether `summary()` can follow `module` inside: a Sequential or a
/// SummaryTraceable.
inline bool summary_followable(torch::nn::Module& module) {
  return dynamic_cast<torch::nn::SequentialImpl*>(&module) != nullptr ||
         dynamic_cast<SummaryTraceable*>(&module) != nullptr;
}

/// Runs the children of a Sequential or the steps of a SummaryTraceable
/// `module` (see `summary_followable`), recording them under `tracer`.
inline torch::Tensor summary_trace_inside(
    torch::nn::Module& module, const torch::Tensor& x, SummaryTracer& tracer) {
  if (auto* seq = dynamic_cast<torch::nn::SequentialImpl*>(&module)) {
    torch::Tensor y = x;
    size_t i = 0;
    for (auto& any : *seq) {
      y = tracer.trace(
          std::to_string(i++), any.ptr(), y, [&any](const torch::Tensor& in) {
            return any.forward(in);
          });
    }
    return y;
  }
  auto* traceable = dynamic_cast<SummaryTraceable*>(&module);
  TORCH_INTERNAL_ASSERT(traceable != nullptr);
  return traceable->trace_forward(x, tracer);
}

} // namespace detail

inline torch::Tensor SummaryTracer::functional(
    const std::string& name, const torch::Tensor& x, const torch::Tensor& y) {
  return functional(name, std::vector<torch::Tensor>{x}, y);
}

inline torch::Tensor SummaryTracer::functional(
    const std::string& name,
    const std::vector<torch::Tensor>& xs,
    const torch::Tensor& y) {
  if (!recording()) {
    return y;
  }
  SummaryRow row;
  row.name = path(name);
  row.type = name;
  row.depth = depth_;
  row.is_module = false;
  row.output_shape = y.sizes().vec();
  row.allocates = xs.empty() || !detail::summary_shares_storage(xs[0], y);
  rows_->push_back(std::move(row));
  return y;
}

inline torch::Tensor SummaryTracer::trace(
    const std::string& name,
    const std::shared_ptr<torch::nn::Module>& module,
    const torch::Tensor& x,
    const std::function<torch::Tensor(const torch::Tensor&)>& leaf_forward) {
  TORCH_CHECK(recording(), "SummaryTracer: trace() needs a recording tracer");
  TORCH_CHECK(
      module != nullptr,
      "SummaryTracer: step '",
      path(name),
      "' is an empty module holder");
  if (detail::summary_followable(*module)) {
    return nested(
        name, module, x, [&module](const torch::Tensor& in, SummaryTracer& t) {
          return detail::summary_trace_inside(*module, in, t);
        });
  }
  SummaryRow row;
  row.name = path(name);
  row.type = detail::summary_type_name(*module);
  row.depth = depth_;
  detail::summary_count(*module, row.params, row.trainable_params);
  torch::Tensor y;
  try {
    y = leaf_forward(x);
  } catch (const c10::Error& e) {
    TORCH_CHECK(
        false,
        "summary: step '",
        row.name,
        "' (",
        row.type,
        ") failed on an input of shape ",
        x.sizes(),
        ": ",
        e.what_without_backtrace());
  }
  row.macs = detail::summary_leaf_macs(*module, y);
  row.allocates = !detail::summary_shares_storage(x, y);
  row.output_shape = y.sizes().vec();
  rows_->push_back(std::move(row));
  return y;
}

inline torch::Tensor SummaryTracer::nested(
    const std::string& name,
    const std::shared_ptr<torch::nn::Module>& module,
    const torch::Tensor& x,
    const std::function<torch::Tensor(const torch::Tensor&, SummaryTracer&)>&
        steps) {
  if (!recording()) {
    return steps(x, *this);
  }
  TORCH_CHECK(
      module != nullptr,
      "SummaryTracer: step '",
      path(name),
      "' is an empty module holder");
  SummaryRow row;
  row.name = path(name);
  row.type = detail::summary_type_name(*module);
  row.depth = depth_;
  row.is_leaf = false;
  row.allocates = false;
  detail::summary_count(*module, row.params, row.trainable_params);
  const size_t first = rows_->size();
  SummaryTracer inner(rows_, row.name, depth_ + 1);
  torch::Tensor y = steps(x, inner);
  for (size_t i = first; i < rows_->size(); ++i) {
    if ((*rows_)[i].is_leaf) {
      row.macs += (*rows_)[i].macs;
    }
  }
  row.output_shape = y.sizes().vec();
  rows_->push_back(std::move(row));
  return y;
}

inline std::vector<SummaryRow> ModelSummary::module_leaves() const {
  std::vector<SummaryRow> out;
  for (const auto& r : rows) {
    if (r.is_module && r.is_leaf) {
      out.push_back(r);
    }
  }
  return out;
}

inline std::string ModelSummary::to_string(int64_t max_depth) const {
  struct Cells {
    std::string layer, shape, params, trainable, macs;
  };
  // `rows` is in post-order (a container after its children); print in
  // pre-order: each container collects the rows pending one level deeper.
  std::vector<std::vector<const SummaryRow*>> pending(1);
  for (const auto& r : rows) {
    while (static_cast<int64_t>(pending.size()) <= r.depth + 1) {
      pending.emplace_back();
    }
    std::vector<const SummaryRow*> group;
    if (!r.is_leaf) {
      group = std::move(pending[r.depth + 1]);
      pending[r.depth + 1].clear();
    }
    pending[r.depth].push_back(&r);
    auto& mine = pending[r.depth];
    mine.insert(mine.end(), group.begin(), group.end());
  }
  const std::vector<const SummaryRow*> order = pending[0];
  std::vector<Cells> cells;
  cells.push_back(
      {"Layer (type)", "Output Shape", "Param #", "Trainable", "Mult-Adds"});
  for (const SummaryRow* r : order) {
    if (max_depth >= 0 && r->depth > max_depth) {
      continue;
    }
    Cells c;
    c.layer = std::string(2 * r->depth, ' ') + r->name + " (" + r->type + ")";
    c.shape =
        r->output_shape.empty() ? "--" : detail::format_shape(r->output_shape);
    c.params = r->is_module ? detail::format_thousands(r->params) : "--";
    c.trainable =
        r->params == 0
            ? "--"
            : (r->trainable_params == r->params
                   ? "True"
                   : (r->trainable_params == 0 ? "False" : "Partial"));
    c.macs = r->macs == 0 ? "--" : detail::format_thousands(r->macs);
    cells.push_back(std::move(c));
  }
  size_t w[5] = {0, 0, 0, 0, 0};
  for (const auto& c : cells) {
    w[0] = std::max(w[0], c.layer.size());
    w[1] = std::max(w[1], c.shape.size());
    w[2] = std::max(w[2], c.params.size());
    w[3] = std::max(w[3], c.trainable.size());
    w[4] = std::max(w[4], c.macs.size());
  }
  const size_t total_width = w[0] + w[1] + w[2] + w[3] + w[4] + 8;
  const std::string rule(total_width, '=');
  std::ostringstream os;
  auto pad_right = [](const std::string& s, size_t n) {
    return s + std::string(n > s.size() ? n - s.size() : 0, ' ');
  };
  auto pad_left = [](const std::string& s, size_t n) {
    return std::string(n > s.size() ? n - s.size() : 0, ' ') + s;
  };
  os << rule << "\n";
  for (size_t i = 0; i < cells.size(); ++i) {
    const auto& c = cells[i];
    os << pad_right(c.layer, w[0]) << "  " << pad_right(c.shape, w[1]) << "  "
       << pad_left(c.params, w[2]) << "  " << pad_left(c.trainable, w[3])
       << "  " << pad_left(c.macs, w[4]) << "\n";
    if (i == 0) {
      os << rule << "\n";
    }
  }
  const double mib = 1024.0 * 1024.0;
  os << rule << "\n";
  os << "Total params: " << detail::format_thousands(total_params) << "\n";
  os << "Trainable params: " << detail::format_thousands(trainable_params)
     << "\n";
  os << "Non-trainable params: "
     << detail::format_thousands(non_trainable_params) << "\n";
  // Without a trace, MACs and activations are unknown, not zero.
  const std::string unknown = "-- (not traced)";
  // In G, or in M below 10^9 (LeNet-5's 416,520 read as 0.417 M, not 0.000
  // G), as torchinfo chooses its unit.
  if (!traced) {
    os << "Total mult-adds: " << unknown << "\n";
  } else if (total_macs >= 1e9) {
    os << "Total mult-adds (G): " << detail::summary_fixed(total_macs / 1e9, 3)
       << "\n";
  } else {
    os << "Total mult-adds (M): " << detail::summary_fixed(total_macs / 1e6, 3)
       << "\n";
  }
  os << rule << "\n";
  os << "Input size (MiB): " << detail::summary_fixed(input_bytes / mib, 2)
     << "\n";
  os << "Forward pass size (MiB): "
     << (traced ? detail::summary_fixed(forward_bytes / mib, 2) : unknown)
     << "\n";
  os << "Params size (MiB): " << detail::summary_fixed(param_bytes / mib, 2)
     << "\n";
  os << "Estimated total size (MiB): "
     << (traced ? detail::summary_fixed(
                      (input_bytes + forward_bytes + param_bytes) / mib, 2)
                : unknown)
     << "\n";
  os << rule << "\n";
  if (!traced) {
    os << "Not traced: the module is neither a torch::nn::Sequential nor a\n"
          "dlcore::SummaryTraceable, so output shapes, mult-adds and the\n"
          "forward pass's memory are unknown; only parameters are listed.\n"
          "docs/summary.md shows how a module opts in.\n";
  }
  return os.str();
}

inline ModelSummary summary(
    ModuleRef model,
    const std::vector<int64_t>& input_shape,
    const SummaryOptions& options) {
  torch::nn::Module& module = model.get("summary");
  TORCH_CHECK(
      !input_shape.empty() && std::all_of(
                                  input_shape.begin(),
                                  input_shape.end(),
                                  [](int64_t d) { return d > 0; }),
      "summary: input_shape must be non-empty with positive sizes (batch "
      "included), got ",
      detail::format_shape(input_shape));
  TORCH_CHECK(
      options.dtype() != c10::ScalarType::Undefined &&
          options.dtype() != c10::ScalarType::NumOptions,
      "summary: dtype must be a tensor element type, got ",
      options.dtype());

  ModelSummary s;
  s.input_shape = input_shape;
  torch::Device device(torch::kCPU);
  for (const auto& p : module.parameters()) {
    s.total_params += p.numel();
    s.param_bytes += p.numel() * static_cast<int64_t>(p.element_size());
    if (p.requires_grad()) {
      s.trainable_params += p.numel();
    }
    device = p.device();
  }
  s.non_trainable_params = s.total_params - s.trainable_params;
  for (const auto& b : module.buffers()) {
    s.buffers += b.numel();
  }
  const int64_t elem = static_cast<int64_t>(c10::elementSize(options.dtype()));
  int64_t in_numel = 1;
  for (int64_t d : input_shape) {
    in_numel *= d;
  }
  s.input_bytes = in_numel * elem;

  if (!detail::summary_followable(module)) {
    for (const auto& item : module.named_modules("", /*include_self=*/false)) {
      if (!item.value()->children().empty()) {
        continue;
      }
      SummaryRow row;
      row.name = item.key();
      row.type = detail::summary_type_name(*item.value());
      row.depth = static_cast<int64_t>(
          std::count(row.name.begin(), row.name.end(), '.'));
      detail::summary_count(*item.value(), row.params, row.trainable_params);
      s.rows.push_back(std::move(row));
    }
    return s;
  }

  // The root by reference (modules(include_self) needs it in a shared_ptr),
  // then its descendants in pre-order.
  const bool root_training = module.is_training();
  std::vector<std::pair<std::shared_ptr<torch::nn::Module>, bool>> modes;
  for (const auto& m : module.modules(/*include_self=*/false)) {
    modes.emplace_back(m, m->is_training());
  }
  auto restore = [&module, root_training, &modes] {
    module.train(root_training);
    for (auto& m : modes) { // pre-order: parents first, children override
      m.first->train(m.second);
    }
  };
  module.eval();
  torch::Tensor y;
  try {
    torch::NoGradGuard no_grad;
    const torch::Tensor x = torch::zeros(
        input_shape,
        torch::TensorOptions().dtype(options.dtype()).device(device));
    SummaryTracer tracer(&s.rows, "", 0);
    y = detail::summary_trace_inside(module, x, tracer);
  } catch (...) {
    restore();
    throw;
  }
  restore();
  s.traced = true;
  s.output_shape = y.sizes().vec();
  for (const auto& r : s.rows) {
    if (!r.is_leaf) {
      continue;
    }
    s.total_macs += r.macs;
    if (r.allocates) {
      int64_t n = 1;
      for (int64_t d : r.output_shape) {
        n *= d;
      }
      s.forward_bytes += n * elem;
    }
  }
  return s;
}

} // namespace dlcore
