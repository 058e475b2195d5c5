#pragma once

/// \file
/// Inference: a model's scores for a tensor or for a range of batches, in
/// chunks, in eval mode without autograd, with the model's mode restored.

#include <dlcore/train/train_loop.h>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/util/Exception.h>
#include <torch/arg.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

namespace dlcore {

/// Options of `predict` and `predict_each`.
struct PredictOptions {
  /// Rows per forward pass when the input is one tensor (a range of batches
  /// keeps its own batches). Default: 1024
  TORCH_ARG(int64_t, batch_size) = 1024;
  /// Move each chunk to this device before the forward pass (non-blocking).
  /// Default: unset (the chunk stays where it is)
  TORCH_ARG(std::optional<torch::Device>, device) = std::nullopt;
  /// Apply a softmax over dimension 1 to the model's output. Default: false
  TORCH_ARG(bool, softmax) = false;
  /// Keep the scores on the device they were computed on instead of moving
  /// them to the CPU. Default: false
  TORCH_ARG(bool, keep_on_device) = false;
};

/// Called by `predict_each` with one chunk's scores `[B, ...]` and the index
/// of its first row in the whole input.
using PredictCallback =
    std::function<void(const torch::Tensor& scores, int64_t first_row)>;

namespace detail {

template <typename T, typename = void>
struct HasData : std::false_type {};
template <typename T>
struct HasData<T, std::void_t<decltype(std::declval<const T&>().data)>>
    : std::is_convertible<
          decltype(std::declval<const T&>().data),
          torch::Tensor> {};

/// The input of one element of a batch range: a batch's `data`, or a
/// tensor itself.
template <typename Batch>
const torch::Tensor& predict_input(const Batch& batch) {
  if constexpr (std::is_convertible_v<const Batch&, const torch::Tensor&>) {
    return batch;
  } else {
    static_assert(
        HasData<Batch>::value,
        "dlcore::predict: a batch must be a torch::Tensor or have a tensor "
        "member `data` (like dlcore::Batch)");
    return batch.data;
  }
}

/// Eval mode and no autograd for a scope; the training flag of the module
/// and of every descendant is restored afterwards, also on an error.
class PredictScope {
 public:
  explicit PredictScope(torch::nn::Module& module) : module_(module) {
    flags_.push_back(module.is_training());
    for (const auto& m : module.modules(/*include_self=*/false)) {
      flags_.push_back(m->is_training());
    }
    module.eval();
  }
  PredictScope(const PredictScope&) = delete;
  PredictScope& operator=(const PredictScope&) = delete;
  ~PredictScope() {
    size_t i = 0;
    // Module::train(bool) recurses; modules() is in pre-order, so each
    // module's own flag is set after its parent's call overwrote it.
    module_.train(flags_[i++]);
    for (const auto& m : module_.modules(/*include_self=*/false)) {
      if (i < flags_.size()) {
        m->train(flags_[i++]);
      }
    }
  }

 private:
  torch::nn::Module& module_;
  std::vector<bool> flags_;
  torch::NoGradGuard no_grad_;
};

template <typename Module>
torch::Tensor predict_chunk(
    Module& module, torch::Tensor x, const PredictOptions& options) {
  if (options.device() && x.device() != *options.device()) {
    x = x.to(*options.device(), /*non_blocking=*/true);
  }
  torch::Tensor y = module.forward(x);
  TORCH_CHECK(
      y.defined() && y.dim() >= 1 && y.size(0) == x.size(0),
      "predict: expected the model to return one row per input row, but got "
      "an output of shape ",
      y.defined() ? y.sizes() : at::IntArrayRef{},
      " for an input of shape ",
      x.sizes());
  if (options.softmax()) {
    TORCH_CHECK(
        y.dim() >= 2,
        "predict: softmax needs outputs [N, C, ...], but got shape ",
        y.sizes());
    y = torch::softmax(y, 1);
  }
  if (!options.keep_on_device() && !y.device().is_cpu()) {
    y = y.to(torch::kCPU);
  }
  return y;
}

template <typename T, typename = void>
struct HasEpoch : std::false_type {};
template <typename T>
struct HasEpoch<
    T,
    std::void_t<
        decltype(std::declval<T&>().epoch()),
        decltype(std::declval<T&>().set_epoch(int64_t{0}))>> : std::true_type {
};

/// Puts a range's epoch back on exit (ranges without one: nothing).
template <typename Range, bool = HasEpoch<Range>::value>
struct EpochRestorer {
  explicit EpochRestorer(Range&) {}
};
template <typename Range>
struct EpochRestorer<Range, true> {
  explicit EpochRestorer(Range& r) : range(r), epoch(r.epoch()) {}
  EpochRestorer(const EpochRestorer&) = delete;
  EpochRestorer& operator=(const EpochRestorer&) = delete;
  ~EpochRestorer() {
    range.set_epoch(epoch);
  }
  Range& range;
  int64_t epoch;
};

inline void check_predict_options(const PredictOptions& options) {
  TORCH_CHECK(
      options.batch_size() >= 1,
      "predict: batch_size must be >= 1, but got ",
      options.batch_size());
}

} // namespace detail

/// Feeds the model's scores for `inputs` `[N, ...]`, `options.batch_size()`
/// rows at a time, to `callback(scores, first_row)`, in row order. The
/// forward passes run in eval mode under `NoGradGuard`; the training flag of
/// every submodule is restored afterwards (also when the model or the
/// callback throws). Nothing but the current chunk's scores is held, so the
/// callback can stream them into a `TopKTopPSelector` or to disk.
///
/// Example:
///   dlcore::TopKTopPSelector selector({10, 16000, 1});
///   dlcore::predict_each(teacher, pool,
///       [&](const torch::Tensor& s, int64_t first) {
///         selector.ingest(s, first);
///       },
///       dlcore::PredictOptions().softmax(true));
template <typename Model>
void predict_each(
    Model& model,
    const torch::Tensor& inputs,
    const PredictCallback& callback,
    const PredictOptions& options = {}) {
  detail::check_predict_options(options);
  TORCH_CHECK(
      inputs.defined() && inputs.dim() >= 1,
      "predict: expected inputs [N, ...], but got ",
      inputs.defined() ? inputs.toString()
                       : std::string("an undefined tensor"));
  auto& module = detail::module_of(model);
  detail::PredictScope scope(module);
  const int64_t n = inputs.size(0);
  for (int64_t first = 0; first < n; first += options.batch_size()) {
    const int64_t rows = std::min(options.batch_size(), n - first);
    callback(
        detail::predict_chunk(module, inputs.narrow(0, first, rows), options),
        first);
  }
}

/// Same, for a range of batches (a `dlcore::Batches`, or any range whose
/// elements are tensors or have a tensor `data`), one forward pass per
/// batch; `first_row` counts the rows of the batches before. Scoring does
/// not move a training schedule on: a range that can be iterated as const (a
/// `Batches`, which may be a `const Batches&`) is read so, which visits its
/// current epoch and leaves `epoch()` as it is; any other range with
/// `epoch()` and `set_epoch()` has its epoch restored afterwards.
template <
    typename Model,
    typename BatchRange,
    std::enable_if_t<
        !std::is_convertible_v<const BatchRange&, const torch::Tensor&>,
        int> = 0>
void predict_each(
    Model& model,
    BatchRange& batches,
    const PredictCallback& callback,
    const PredictOptions& options = {}) {
  detail::check_predict_options(options);
  auto& module = detail::module_of(model);
  detail::PredictScope scope(module);
  detail::EpochRestorer<BatchRange> restore_epoch(batches);
  int64_t first = 0;
  for (const auto& batch : detail::read_only(batches)) {
    const torch::Tensor& x = detail::predict_input(batch);
    torch::Tensor scores = detail::predict_chunk(module, x, options);
    callback(scores, first);
    first += x.size(0);
  }
}

/// The model's scores for `inputs` `[N, ...]` (or for every batch of a
/// range), concatenated in row order: `[N, ...]`, on the CPU unless
/// `keep_on_device`. See `predict_each` for the chunks and the mode.
///
/// Example:
///   torch::Tensor probs = dlcore::predict(net, test.data,
///       dlcore::PredictOptions().softmax(true).batch_size(512));
///
/// Differences from PyTorch (Python): the equivalent of
/// `model.eval(); with torch.no_grad(): torch.cat([model(x) for x in
/// chunks])` followed by restoring `model.train(was_training)`, with each
/// submodule's own flag restored (Python restores one flag for all).
template <typename Model, typename Input>
torch::Tensor predict(
    Model& model, Input&& inputs, const PredictOptions& options = {}) {
  std::vector<torch::Tensor> parts;
  predict_each(
      model,
      inputs,
      [&](const torch::Tensor& scores, int64_t) { parts.push_back(scores); },
      options);
  TORCH_CHECK(!parts.empty(), "predict: the input has no rows");
  return parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
}

} // namespace dlcore
