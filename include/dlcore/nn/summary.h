#pragma once

// A torchinfo-style model summary for LibTorch modules: one real forward pass
// on a dummy input, followed layer by layer, with output shapes, parameters,
// MACs and activation memory per layer.

#include <dlcore/detail/module_handle.h>

#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>
#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

namespace dlcore {

/// One row of a `ModelSummary`.
struct SummaryRow {
  /// Dotted path of the module ("features.0", "layer1.0.conv1"), or of a
  /// functional step inside its parent ("flatten", "layer1.0.add").
  std::string name;
  /// Module class without namespace and `Impl` ("Conv2d", "BasicConv2d"), or
  /// the functional step's name ("flatten", "cat", "add", "relu").
  std::string type;
  /// Nesting depth: 0 for the root's children.
  int64_t depth = 0;
  /// Whether the row is a module (false: a functional step such as flatten).
  bool is_module = true;
  /// Whether the row is a leaf (a module run as a whole, or a functional
  /// step); false for containers whose children have rows of their own.
  bool is_leaf = true;
  /// Output shape, batch included.
  std::vector<int64_t> output_shape;
  /// Parameters of the module and its descendants (0 for functional steps).
  int64_t params = 0;
  /// Of those, the ones with requires_grad.
  int64_t trainable_params = 0;
  /// Multiply-accumulates of a Conv1d/2d/3d (numel(out) × weight fan-in) or
  /// Linear (numel(out) × in_features) leaf; 0 for everything else. For a
  /// container, the sum over its leaves.
  int64_t macs = 0;
  /// Whether the output took new memory: false when it shares storage with
  /// the input (in-place activation, view, dropout at inference).
  bool allocates = true;
};

/// What `summary()` returns: the rows and the totals. Print it with `<<` or
/// `to_string()`.
struct ModelSummary {
  /// Rows in call order; a container's row follows its children's.
  std::vector<SummaryRow> rows;
  /// Input and output shapes, batch included (output empty if not traced).
  std::vector<int64_t> input_shape;
  std::vector<int64_t> output_shape;
  /// Whether the forward pass was followed layer by layer (the module is a
  /// Sequential or implements `SummaryTraceable`). If not, rows list the leaf
  /// modules in registration order with parameters only.
  bool traced = false;
  /// All parameters of the module (each counted once).
  int64_t total_params = 0;
  int64_t trainable_params = 0;
  int64_t non_trainable_params = 0;
  /// Elements of all buffers (batch-norm running statistics, ...).
  int64_t buffers = 0;
  /// Sum of the leaf rows' MACs.
  int64_t total_macs = 0;
  /// Bytes of the input, of the leaf outputs that allocate (the forward
  /// activations), and of the parameters.
  int64_t input_bytes = 0;
  int64_t forward_bytes = 0;
  int64_t param_bytes = 0;

  /// The leaf rows that are modules, in call order (what forward hooks would
  /// see in Python).
  std::vector<SummaryRow> module_leaves() const;
  /// A torchinfo-style table; rows deeper than `max_depth` are hidden (-1:
  /// all).
  std::string to_string(int64_t max_depth = -1) const;
};

/// Writes `s.to_string()` (the full table, every depth) to `os`.
inline std::ostream& operator<<(std::ostream& os, const ModelSummary& s) {
  return os << s.to_string();
}

/// Follows a forward pass step by step. A default-constructed tracer records
/// nothing, so a module can implement `forward` as
/// `trace_forward(x, tracer)` with an inactive tracer and keep one code path.
///
/// Example (a module's trace_forward):
///   x = tracer("features", features, x);
///   x = tracer.functional("flatten", torch::flatten(x, 1));
///   return tracer("classifier", classifier, x);
class SummaryTracer {
 public:
  SummaryTracer() = default;

  /// Whether rows are being recorded.
  bool recording() const {
    return rows_ != nullptr;
  }

  /// Runs `child` (a module holder such as `torch::nn::Conv2d`, or a
  /// shared_ptr to a module) on `x` as step `name` and returns its output.
  template <typename Holder>
  torch::Tensor operator()(
      const std::string& name, Holder& child, const torch::Tensor& x) {
    if (!recording()) {
      return child->forward(x);
    }
    std::shared_ptr<torch::nn::Module> ptr = child.ptr();
    return trace(name, ptr, x, [&](const torch::Tensor& in) {
      return child->forward(in);
    });
  }

  /// Records the output `y` of a functional step (flatten, cat, add, relu)
  /// computed from `x`, and returns `y`.
  torch::Tensor functional(
      const std::string& name, const torch::Tensor& x, const torch::Tensor& y);

  /// Same, for a step with several inputs (cat): `y` allocates unless it
  /// shares storage with the first input.
  torch::Tensor functional(
      const std::string& name,
      const std::vector<torch::Tensor>& xs,
      const torch::Tensor& y);

  /// Starts a recording tracer appending to `rows` (used by `summary()`).
  SummaryTracer(
      std::vector<SummaryRow>* rows, std::string prefix, int64_t depth)
      : rows_(rows), prefix_(std::move(prefix)), depth_(depth) {}

  /// Runs `module` on `x` as step `name`: Sequentials and SummaryTraceable
  /// modules are followed inside; anything else runs as a leaf through
  /// `leaf_forward`.
  torch::Tensor trace(
      const std::string& name,
      const std::shared_ptr<torch::nn::Module>& module,
      const torch::Tensor& x,
      const std::function<torch::Tensor(const torch::Tensor&)>& leaf_forward);

  /// Runs `steps` on `x` as the inside of step `name`, a container `module`
  /// whose children the caller runs itself (e.g. a `torch::nn::ModuleList`
  /// of blocks applied one after another): `steps` records its children
  /// through the tracer it receives, nested under `name`, and the container's
  /// row sums their MACs. An inactive tracer just runs `steps`.
  ///
  /// Example (a stage held in a ModuleList, in a trace_forward):
  ///   x = tracer.nested("layer1", stage.ptr(), x,
  ///       [&](const torch::Tensor& in, dlcore::SummaryTracer& inner) {
  ///         auto y = in;
  ///         for (auto& block : *stage) y = inner(..., y);
  ///         return y;
  ///       });
  torch::Tensor nested(
      const std::string& name,
      const std::shared_ptr<torch::nn::Module>& module,
      const torch::Tensor& x,
      const std::function<torch::Tensor(const torch::Tensor&, SummaryTracer&)>&
          steps);

 private:
  std::string path(const std::string& name) const {
    return prefix_.empty() ? name : prefix_ + "." + name;
  }

  std::vector<SummaryRow>* rows_ = nullptr;
  std::string prefix_;
  int64_t depth_ = 0;
};

/// A module whose forward pass `summary()` can follow step by step, because
/// `torch::nn::Module` has no forward hooks. Implement `trace_forward` by
/// running every child through the tracer, and functional steps through
/// `tracer.functional`; let `forward` call it with an inactive tracer.
class SummaryTraceable {
 public:
  virtual ~SummaryTraceable() = default;
  /// The module's forward pass on `x`, reported step by step to `tracer`.
  virtual torch::Tensor trace_forward(
      const torch::Tensor& x, SummaryTracer& tracer) = 0;
};

/// Options of `summary()`.
struct SummaryOptions {
  /// Element type of the dummy input. Default: torch::kFloat32
  TORCH_ARG(c10::ScalarType, dtype) = c10::ScalarType::Float;

 public:
};

/// Summarises `module` on a zero input of `input_shape` (batch included,
/// e.g. {1, 3, 224, 224}), torchinfo style.
///
/// The forward pass runs under NoGradGuard in eval mode (so batch norm uses
/// its running statistics and never updates them, and dropout is the
/// identity); every module's training flag is restored afterwards. A
/// `torch::nn::Sequential` is followed child by child; a module implementing
/// `SummaryTraceable` (all of dlcore's models) step by step through its
/// `trace_forward`; any other module met inside them runs as one leaf.
/// A root that is neither cannot be run generically (LibTorch modules have
/// no virtual forward): its rows then list the leaf modules with their
/// parameters, `traced` is false, shapes are empty, and the printed table
/// shows mult-adds and memory as "-- (not traced)" with a note saying why,
/// never as zeros. `module` is the module, its holder or a shared_ptr to it
/// (see `ModuleRef`).
///
/// Example:
///   dlcore::AlexNet net;
///   std::cout << dlcore::summary(net, {1, 3, 224, 224});
///
/// Differences from PyTorch (Python): torchinfo uses forward hooks; LibTorch
/// has none, hence SummaryTraceable. MACs count Conv and Linear layers only
/// (torchvision's "GFLOPS" convention), without bias adds.
inline ModelSummary summary(
    ModuleRef module,
    const std::vector<int64_t>& input_shape,
    const SummaryOptions& options = {});

} // namespace dlcore

#include <dlcore/nn/detail/summary_impl.h>
