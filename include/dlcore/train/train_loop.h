#pragma once

#include <dlcore/detail/thread_pool.h>
#include <dlcore/optim/momentum.h>
#include <dlcore/train/losses.h>
#include <dlcore/train/progress.h>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>
#include <torch/arg.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/optim/optimizer.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace dlcore {

/// What one pass over a data set measured.
///
/// `loss` is the mean loss per sample (or per batch, see `LossAverage`);
/// `accuracy` is a fraction in [0, 1] (not a percentage); both are NaN when
/// the pass saw no samples.
struct EpochMetrics {
  /// Mean loss of the pass over its batches' mean losses, per sample
  /// (default) or per batch (see `LossAverage`), independent of
  /// `TrainOptions::accumulation_steps`; NaN when no samples were seen, and
  /// not finite when a batch's loss was not.
  double loss = std::numeric_limits<double>::quiet_NaN();
  /// Fraction of samples classified correctly, in [0, 1]; NaN when no
  /// samples were seen or a batch had no class targets (see
  /// `detail::count_correct`).
  double accuracy = std::numeric_limits<double>::quiet_NaN();
  /// Samples seen in the pass.
  int64_t samples = 0;
  /// Optimizer steps taken (`train_epoch`: one per `accumulation_steps`
  /// batches, so `batches` by default), or batches (`evaluate`).
  int64_t steps = 0;
  /// Wall-clock duration of the pass, in seconds.
  double seconds = 0.0;
  /// Batches processed in the pass.
  int64_t batches = 0;
};

/// What a per-step callback of `train_epoch` sees after each optimizer step.
struct StepInfo {
  /// The epoch (`TrainOptions::epoch`).
  int64_t epoch = 0;
  /// 0-based optimizer step within the epoch (the batch index when
  /// `accumulation_steps` is 1).
  int64_t step = 0;
  /// 0-based step counted over all epochs (`TrainOptions::global_step` +
  /// `step`).
  int64_t global_step = 0;
  /// Optimizer steps in the epoch (its batches, divided by
  /// `accumulation_steps` and rounded up), or -1 when the batch range has no
  /// `size()`.
  int64_t steps_in_epoch = -1;
  /// This step's loss (computed before the optimizer step): the batch's mean
  /// loss; with `accumulation_steps` k > 1, the sum over the step's batches
  /// of (batch mean loss / k) (summed in double), their mean when the step
  /// has k batches.
  double loss = 0.0;
  /// This step's accuracy over its samples, a fraction in [0, 1]; NaN when a
  /// batch of the step had no class targets.
  double accuracy = 0.0;
  /// Samples in this step (its batches together).
  int64_t batch_size = 0;
  /// Every param group's learning rate used by this step, i.e. read before
  /// the scheduler's `step()`.
  std::vector<double> lrs;
  /// Every param group's momentum (SGD, RMSprop) or beta1 (Adam, AdamW) used
  /// by this step; NaN for a group without one.
  std::vector<double> momenta;
  /// Set to true in the callback to end the epoch after this step (the LR
  /// range test stops on divergence, and the studies on a non-finite loss,
  /// this way).
  bool stop = false;
};

/// How the epoch loss averages batch losses.
enum class LossAverage {
  /// Sum over batches of (batch mean loss x batch size) / samples: the mean
  /// loss per sample, independent of how the last partial batch falls.
  kPerSample,
  /// Sum of batch mean losses / batches, as the homework's Python code does
  /// (`running_loss / len(loader)`); weighs a last partial batch like a full
  /// one.
  kPerBatch,
};

/// A loss of logits `[N, C]` and targets, reduced to a scalar mean over the
/// batch.
using LossFunction =
    std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>;

/// A per-step callback of `train_epoch`.
using StepCallback = std::function<void(StepInfo&)>;

/// Options of `train_epoch`.
struct TrainOptions {
  /// Epoch number reported to the callback and the progress line.
  /// Default: 0
  TORCH_ARG(int64_t, epoch) = 0;
  /// Global step of this epoch's first batch (callbacks see
  /// `global_step + step`). Default: 0
  TORCH_ARG(int64_t, global_step) = 0;
  /// Loss of logits and targets; empty means `default_loss`
  /// (cross-entropy). Default: empty
  TORCH_ARG(LossFunction, loss_fn) = nullptr;
  /// How the epoch loss averages batches. Default: LossAverage::kPerSample
  TORCH_ARG(LossAverage, loss_average) = LossAverage::kPerSample;
  /// Called after every optimizer (and scheduler) step; reading per-step
  /// values costs a synchronisation per batch, so leave it empty when not
  /// needed. Default: empty
  TORCH_ARG(StepCallback, on_step) = nullptr;
  /// Stop after this many optimizer steps (< 0: the whole range).
  /// Default: -1
  TORCH_ARG(int64_t, max_steps) = -1;
  /// Gradient accumulation: batches per optimizer step (>= 1). Each batch's
  /// loss is divided by k before its backward, gradients add up over k
  /// batches, then the optimizer (and scheduler) steps once and the callback
  /// runs once. A last group of fewer than k batches at the end of the range
  /// still steps (its gradients also divided by k). Gradients are cleared
  /// before each step's first batch. Default: 1
  TORCH_ARG(int64_t, accumulation_steps) = 1;
  /// Count correct predictions (an argmax per batch, see `EpochMetrics`).
  /// false skips that work, and the accuracies are NaN (the LR range test
  /// reads only losses). Default: true
  TORCH_ARG(bool, accuracy) = true;
  /// Move each batch to this device when set (non-blocking). Default: unset
  TORCH_ARG(std::optional<torch::Device>, device) = std::nullopt;
  /// Show a progress line (only on a terminal, see `ProgressLine`).
  /// Default: false
  TORCH_ARG(bool, progress) = false;
  /// Options of that progress line. Default: ProgressOptions()
  TORCH_ARG(ProgressOptions, progress_options) = ProgressOptions();
  /// Clear gradients by resetting them to undefined (Python's
  /// `zero_grad(set_to_none=True)`, the default since PyTorch 2.0) instead of
  /// `optimizer.zero_grad()` filling them with zeros; backward then stores
  /// each new gradient without an addition. Only for optimizers derived from
  /// `torch::optim::Optimizer` (others always get `zero_grad()`).
  /// Default: true
  TORCH_ARG(bool, set_to_none) = true;
  /// Split each batch into this many chunks, run forward and backward of the
  /// chunks on the library's thread pool, up to this many at once (each
  /// thread with one intra-op thread, the calling thread's count restored
  /// afterwards; see `set_pool_threads`), and sum the chunks' gradients in a
  /// fixed order, each chunk's loss weighted by its share of the batch. The
  /// update equals the whole-batch one up to float rounding for a model that
  /// treats samples independently (not for BatchNorm in training mode), and
  /// is deterministic. An alternative to LibTorch's OpenMP threads where
  /// those contend (see docs/training.md). Default: 1
  TORCH_ARG(int, data_parallel) = 1;

 public:
};

/// Options of `evaluate`.
struct EvaluateOptions {
  /// Loss of logits and targets; empty means `default_loss`. Default: empty
  TORCH_ARG(LossFunction, loss_fn) = nullptr;
  /// How the loss averages batches. Default: LossAverage::kPerSample
  TORCH_ARG(LossAverage, loss_average) = LossAverage::kPerSample;
  /// Count correct predictions; false skips the argmax and the accuracy is
  /// NaN. Default: true
  TORCH_ARG(bool, accuracy) = true;
  /// Move each batch to this device when set (non-blocking). Default: unset
  TORCH_ARG(std::optional<torch::Device>, device) = std::nullopt;
  /// Show a progress line (only on a terminal). Default: false
  TORCH_ARG(bool, progress) = false;
  /// Options of that progress line. Default: ProgressOptions()
  TORCH_ARG(ProgressOptions, progress_options) = ProgressOptions();
  /// Split each batch into this many chunks evaluated on as many threads
  /// (see `TrainOptions::data_parallel`). Default: 1
  TORCH_ARG(int, data_parallel) = 1;

 public:
};

namespace detail {

template <typename T, typename = void>
struct IsPointerLike : std::false_type {};
template <typename T>
struct IsPointerLike<
    T,
    std::void_t<
        decltype(*std::declval<T&>()),
        decltype(std::declval<T&>() == nullptr)>> : std::true_type {};

/// The object behind a handle: `*handle` for a `ModuleHolder` (`LeNet5`) or
/// a pointer (`std::shared_ptr`, `std::unique_ptr`, raw), checked non-empty,
/// else `handle` itself. `owner` and `expected` ("a module") word the error.
template <typename T>
decltype(auto) pointee(T& handle, const char* owner, const char* expected) {
  if constexpr (std::is_base_of_v<torch::detail::ModuleHolderIndicator, T>) {
    TORCH_CHECK(
        !handle.is_empty(),
        owner,
        ": expected ",
        expected,
        ", but got an empty ModuleHolder");
    return *handle;
  } else if constexpr (IsPointerLike<T>::value) {
    TORCH_CHECK(
        handle != nullptr,
        owner,
        ": expected ",
        expected,
        ", but got a null pointer");
    return *handle;
  } else {
    return (handle);
  }
}

/// The module behind a `ModuleHolder` (`LeNet5`) or a pointer to a module
/// (`std::shared_ptr<Module>`), or the module itself.
template <typename Model>
decltype(auto) module_of(Model& model, const char* owner = "dlcore") {
  return pointee(model, owner, "a module");
}

template <typename T, typename = void>
struct HasConstBegin : std::false_type {};
template <typename T>
struct HasConstBegin<T, std::void_t<decltype(std::declval<const T&>().begin())>>
    : std::true_type {};

/// `range` to be read: as a const reference when it can be iterated so (a
/// `dlcore::Batches` then visits its current epoch without moving on), else
/// as it is (a LibTorch DataLoader's `begin()` is not const).
template <typename Range>
decltype(auto) read_only(Range& range) {
  if constexpr (HasConstBegin<Range>::value) {
    return std::as_const(range);
  } else {
    return (range);
  }
}

/// Whether a range has epochs that can be read without moving its epoch
/// counter: `epoch()` and `pass(e)` (`dlcore::Batches`).
template <typename T, typename = void>
struct HasEpochPasses : std::false_type {};
template <typename T>
struct HasEpochPasses<
    T,
    std::void_t<
        decltype(std::declval<const T&>().epoch()),
        decltype(std::declval<const T&>().pass(int64_t{0}))>> : std::true_type {
};

/// Refuses a const range with epochs (a `const Batches&`) where a pass must
/// move the epoch on: `train_epoch` would otherwise train on one epoch
/// again and again.
template <typename BatchRange>
constexpr void check_movable_epoch() {
  using Range = std::remove_reference_t<BatchRange>;
  static_assert(
      !(std::is_const_v<Range> &&
        HasEpochPasses<std::remove_const_t<Range>>::value),
      "train_epoch: expected a non-const Batches, since a pass moves its "
      "epoch on; to train on a chosen epoch without moving it, pass "
      "batches.pass(e)");
}

template <typename T, typename = void>
struct HasTargets : std::false_type {};
template <typename T>
struct HasTargets<T, std::void_t<decltype(std::declval<T&>().targets)>>
    : std::true_type {};

/// `batch.targets` (dlcore::Batch) or `batch.target`
/// (`torch::data::Example<>`).
template <typename Batch>
const torch::Tensor& batch_targets(const Batch& batch) {
  if constexpr (HasTargets<Batch>::value) {
    return batch.targets;
  } else {
    return batch.target;
  }
}

template <typename T, typename = void>
struct HasSize : std::false_type {};
template <typename T>
struct HasSize<T, std::void_t<decltype(std::declval<const T&>().size())>>
    : std::true_type {};

template <typename Range>
int64_t range_size(const Range& range) {
  if constexpr (HasSize<Range>::value) {
    return static_cast<int64_t>(range.size());
  } else {
    return -1;
  }
}

/// `optimizer.zero_grad()`, or every parameter's gradient reset to undefined
/// when `set_to_none` and the optimizer is a `torch::optim::Optimizer`.
template <typename Optimizer>
void clear_grads(Optimizer& optimizer, bool set_to_none) {
  if constexpr (std::is_base_of_v<torch::optim::Optimizer, Optimizer>) {
    if (set_to_none) {
      for (auto& group : optimizer.param_groups()) {
        for (auto& p : group.params()) {
          p.mutable_grad().reset();
        }
      }
      return;
    }
  }
  optimizer.zero_grad();
}

template <typename Optimizer>
void read_groups(
    const Optimizer& optimizer,
    std::vector<double>& lrs,
    std::vector<double>& momenta) {
  if constexpr (std::is_base_of_v<torch::optim::Optimizer, Optimizer>) {
    lrs = group_lrs(optimizer);
    momenta = group_momenta(optimizer);
  } else {
    lrs.clear();
    momenta.clear();
  }
}

/// Number of correct predictions, as a 0-dim int64 tensor (no sync): the
/// argmax of logits `[N, C]` against integer class targets `[N]`, or against
/// the argmax of float (probability) targets `[N, C]`. Any other pair (a
/// regression target, logits that are not `[N, C]`) has no class targets:
/// the result is then an undefined tensor, and the accuracy NaN.
inline torch::Tensor count_correct(
    const torch::Tensor& logits, const torch::Tensor& targets) {
  if (logits.dim() != 2) {
    return torch::Tensor();
  }
  if (targets.is_floating_point()) {
    if (targets.sizes() != logits.sizes()) {
      return torch::Tensor();
    }
    return logits.argmax(1).eq(targets.argmax(1)).sum();
  }
  if (targets.dim() != 1 || targets.size(0) != logits.size(0) ||
      !at::isIntegralType(targets.scalar_type(), /*includeBool=*/false)) {
    return torch::Tensor();
  }
  return logits.argmax(1).eq(targets).sum();
}

/// `correct / samples`, or NaN without samples or without class targets.
inline double fraction_correct(int64_t correct, int64_t samples, bool classes) {
  if (samples == 0 || !classes) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  return static_cast<double>(correct) / static_cast<double>(samples);
}

/// Running sums of one pass, kept so that no batch synchronises: as tensors,
/// or, for losses and counts on the CPU (where reading one costs no
/// synchronisation), as host numbers, which saves an operator call per
/// batch and gives the same sums bit for bit (see `add`).
struct Accumulator {
  /// The loss sum: on the host while every loss so far was a float CPU
  /// scalar (`host_loss`), else a double tensor.
  double host_loss_sum = 0.0;
  bool host_loss = true;
  torch::Tensor loss_sum;
  /// Correct predictions: CPU counts on the host, others in a tensor.
  int64_t host_correct = 0;
  torch::Tensor correct;
  int64_t samples = 0;
  int64_t batches = 0;
  /// False once a batch had no class targets (accuracy NaN).
  bool classes = true;

  /// Adds one batch: its mean loss, its correct count (undefined: no class
  /// targets) and its size.
  ///
  /// The sum is sum_b (weight_b * loss_b) in double, in batch order, where
  /// weight_b is the batch size (kPerSample) or 1. For a float loss and a
  /// weight below 2^29 the product is exact in double, so the host's
  /// `sum + weight * loss` and the tensor `sum.add_(loss, weight)` round
  /// once, identically (with or without a fused multiply-add).
  void add(
      const torch::Tensor& loss,
      const torch::Tensor& correct_in_batch,
      int64_t batch_size,
      LossAverage average) {
    const double weight = average == LossAverage::kPerSample
                              ? static_cast<double>(batch_size)
                              : 1.0;
    if (host_loss && loss.device().is_cpu() &&
        loss.scalar_type() == torch::kFloat && loss.numel() == 1 &&
        batch_size < (int64_t{1} << 29)) {
      const double term = weight * static_cast<double>(*loss.data_ptr<float>());
      host_loss_sum = batches == 0 ? term : host_loss_sum + term;
    } else {
      torch::NoGradGuard no_grad; // cheaper than a detach() per batch
      if (host_loss) {
        host_loss = false;
        loss_sum = batches == 0 ? loss.to(torch::kDouble) * weight
                                : at::scalar_tensor(
                                      host_loss_sum,
                                      loss.options().dtype(torch::kDouble))
                                      .add_(loss, weight);
      } else {
        loss_sum.add_(loss, weight);
      }
    }
    if (!correct_in_batch.defined()) {
      classes = false;
    } else if (classes) {
      if (correct_in_batch.device().is_cpu() &&
          correct_in_batch.scalar_type() == torch::kLong &&
          correct_in_batch.numel() == 1) {
        host_correct += *correct_in_batch.data_ptr<int64_t>();
      } else if (!correct.defined()) {
        correct = correct_in_batch.to(torch::kLong);
      } else {
        correct.add_(correct_in_batch);
      }
    }
    samples += batch_size;
    batches += 1;
  }

  double loss(LossAverage average) const {
    if (batches == 0 || samples == 0) {
      return std::numeric_limits<double>::quiet_NaN();
    }
    double denominator = average == LossAverage::kPerSample
                             ? static_cast<double>(samples)
                             : static_cast<double>(batches);
    const double sum = host_loss ? host_loss_sum : loss_sum.item<double>();
    return sum / denominator;
  }

  double accuracy() const {
    const bool read = classes && samples > 0 && correct.defined();
    return fraction_correct(
        host_correct + (read ? correct.item<int64_t>() : 0), samples, classes);
  }
};

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

/// Restores the calling thread's LibTorch intra-op thread count on exit.
struct IntraOpThreadsGuard {
  int saved = at::get_num_threads();
  ~IntraOpThreadsGuard() {
    at::set_num_threads(saved);
  }
};

/// The chunks of each batch of a pass (see `TrainOptions::data_parallel`)
/// run on the library's thread pool, with the calling thread's intra-op
/// thread count set to 1 for the pass and restored afterwards (the pool's
/// workers always run with 1).
struct ChunkedPass {
  IntraOpThreadsGuard guard;
  int64_t chunks;
  explicit ChunkedPass(int threads)
      : chunks((at::set_num_threads(1), threads)) {}
};

/// A batch split into at most `pass.chunks` chunks on the thread pool: forward
/// and loss per chunk, each chunk's loss weighted by its share of the batch;
/// returns (logits, batch mean loss), detached. With `params` (training), also
/// backward per chunk, and every parameter's gradient set to the chunks' sum
/// (fixed order); without (evaluation), no gradients at all.
template <typename Module>
std::pair<torch::Tensor, torch::Tensor> chunked_step(
    const ChunkedPass& pass,
    Module& module,
    const std::vector<torch::Tensor>* params,
    const torch::Tensor& data,
    const torch::Tensor& targets,
    const LossFunction& loss_fn) {
  const int64_t k = std::min<int64_t>(pass.chunks, data.size(0));
  std::vector<torch::Tensor> xs = data.chunk(k);
  std::vector<torch::Tensor> ys = targets.chunk(k);
  const int64_t chunks = static_cast<int64_t>(xs.size());
  const double n = static_cast<double>(data.size(0));
  std::vector<torch::Tensor> logits(chunks);
  std::vector<torch::Tensor> losses(chunks);
  std::vector<std::vector<torch::Tensor>> grads(chunks);
  run_tasks(chunks, [&](int64_t i) {
    torch::AutoGradMode grad_mode(params != nullptr);
    torch::Tensor z = module.forward(xs[i]);
    torch::Tensor l = loss_fn ? loss_fn(z, ys[i]) : default_loss(z, ys[i]);
    l = l * (static_cast<double>(xs[i].size(0)) / n);
    if (params != nullptr) {
      grads[i] = torch::autograd::grad(
          {l},
          *params,
          /*grad_outputs=*/{},
          /*retain_graph=*/false,
          /*create_graph=*/false,
          /*allow_unused=*/true);
    }
    logits[i] = z.detach();
    losses[i] = l.detach();
  });
  torch::NoGradGuard no_grad;
  if (params != nullptr) {
    for (std::size_t j = 0; j < params->size(); ++j) {
      torch::Tensor g = grads[0][j];
      for (int64_t i = 1; i < chunks; ++i) {
        const torch::Tensor& gi = grads[i][j];
        if (gi.defined()) {
          g = g.defined() ? g.add_(gi) : gi;
        }
      }
      (*params)[j].mutable_grad() = g;
    }
  }
  torch::Tensor loss = losses[0];
  for (int64_t i = 1; i < chunks; ++i) {
    loss = loss + losses[i];
  }
  return {torch::cat(logits), loss};
}

struct NoScheduler {
  void step() {}
};

/// The loss, correct count and samples of the batches of one optimizer step,
/// kept only when a callback reads them.
struct StepSums {
  torch::Tensor loss;
  torch::Tensor correct;
  int64_t samples = 0;
  bool classes = true;

  /// Adds one batch: `scaled_loss` is its mean loss divided by the
  /// accumulation steps k (the mean loss itself when k is 1).
  void add(
      const torch::Tensor& scaled_loss,
      const torch::Tensor& correct_in_batch,
      int64_t batch_size,
      bool accumulating) {
    if (!accumulating) {
      loss = scaled_loss; // only read by item()
    } else {
      // Summed in double, as a host-side running sum of the batches' values
      // would be.
      torch::NoGradGuard no_grad;
      loss =
          loss.defined() ? loss + scaled_loss : scaled_loss.to(torch::kDouble);
    }
    if (!correct_in_batch.defined()) {
      classes = false;
    } else if (classes) {
      correct =
          correct.defined() ? correct + correct_in_batch : correct_in_batch;
    }
    samples += batch_size;
  }

  double accuracy() const {
    const bool read = classes && samples > 0 && correct.defined();
    return fraction_correct(
        read ? correct.item<int64_t>() : 0, samples, classes);
  }
};

template <
    typename Model,
    typename BatchRange,
    typename Optimizer,
    typename Scheduler>
EpochMetrics train_epoch_impl(
    Model& model,
    BatchRange& batches,
    Optimizer& optimizer,
    Scheduler* scheduler,
    const TrainOptions& options) {
  auto& module = module_of(model, "train_epoch");
  TORCH_CHECK(
      options.data_parallel() >= 1,
      "train_epoch: data_parallel must be >= 1, but got ",
      options.data_parallel());
  TORCH_CHECK(
      options.accumulation_steps() >= 1,
      "train_epoch: accumulation_steps must be >= 1, but got ",
      options.accumulation_steps());
  module.train(true);
  const LossFunction& loss_fn = options.loss_fn();
  const int64_t k = options.accumulation_steps();
  std::optional<ChunkedPass> chunked;
  std::vector<torch::Tensor> params;
  if (options.data_parallel() > 1) {
    chunked.emplace(options.data_parallel());
    for (const auto& p : module.parameters()) {
      if (p.requires_grad()) {
        params.push_back(p);
      }
    }
  }
  const int64_t total_batches = range_size(batches);
  const int64_t total = total_batches < 0 ? -1 : (total_batches + k - 1) / k;
  const bool callback = static_cast<bool>(options.on_step());
  std::optional<ProgressLine> bar;
  if (options.progress()) {
    bar.emplace(
        "epoch " + std::to_string(options.epoch()),
        options.max_steps() >= 0 && total >= 0
            ? std::min(total, options.max_steps())
            : (options.max_steps() >= 0 ? options.max_steps() : total),
        options.progress_options());
  }
  Accumulator acc;
  StepInfo info;
  info.epoch = options.epoch();
  info.steps_in_epoch = total;
  int64_t steps = 0;   // optimizer steps taken
  int64_t pending = 0; // batches whose gradients await the next step
  StepSums sums;
  // The optimizer (and scheduler) step that ends a group of batches, the
  // callback and the progress line; true when the callback asks to stop.
  auto finish_step = [&]() {
    const bool show = bar.has_value() && bar->due(steps + 1);
    if (callback || show) {
      read_groups(optimizer, info.lrs, info.momenta);
    }
    optimizer.step();
    if (scheduler != nullptr) {
      scheduler->step();
    }
    steps += 1;
    pending = 0;
    if (callback) {
      info.step = steps - 1;
      info.global_step = options.global_step() + info.step;
      info.loss = sums.loss.item<double>();
      info.accuracy = sums.accuracy();
      info.batch_size = sums.samples;
      info.stop = false;
      sums = StepSums();
      options.on_step()(info);
    }
    if (show) {
      bar->update(
          steps,
          acc.loss(options.loss_average()),
          acc.accuracy(),
          info.lrs.empty() ? std::numeric_limits<double>::quiet_NaN()
                           : info.lrs[0]);
    }
    return callback && info.stop;
  };
  auto start = std::chrono::steady_clock::now();
  for (auto&& batch : batches) {
    if (pending == 0 && options.max_steps() >= 0 &&
        steps >= options.max_steps()) {
      break;
    }
    torch::Tensor data = batch.data;
    torch::Tensor targets = batch_targets(batch);
    if (options.device().has_value()) {
      data = data.to(*options.device(), /*non_blocking=*/true);
      targets = targets.to(*options.device(), /*non_blocking=*/true);
    }
    const int64_t n = data.size(0);
    torch::Tensor logits;
    torch::Tensor loss;
    torch::Tensor scaled;
    if (chunked.has_value() && n >= 2) {
      // chunked_step sets each gradient to this batch's; with accumulation,
      // scale it by 1/k and add the step's earlier batches back.
      std::vector<torch::Tensor> carried;
      if (pending > 0) {
        for (const auto& p : params) {
          carried.push_back(p.grad());
        }
      }
      std::tie(logits, loss) = detail::chunked_step(
          *chunked, module, &params, data, targets, loss_fn);
      scaled = loss;
      if (k > 1) {
        torch::NoGradGuard no_grad;
        scaled = loss / static_cast<double>(k);
        for (std::size_t j = 0; j < params.size(); ++j) {
          torch::Tensor& g = params[j].mutable_grad();
          if (g.defined()) {
            g.div_(static_cast<double>(k));
          }
          if (!carried.empty() && carried[j].defined()) {
            g = g.defined() ? g.add_(carried[j]) : carried[j];
          }
        }
      }
    } else {
      if (pending == 0) {
        clear_grads(optimizer, options.set_to_none());
      }
      logits = module.forward(data);
      loss = loss_fn ? loss_fn(logits, targets) : default_loss(logits, targets);
      scaled = k > 1 ? loss / static_cast<double>(k) : loss;
      scaled.backward();
    }
    torch::Tensor correct; // undefined: no accuracy
    if (options.accuracy()) {
      torch::NoGradGuard no_grad;
      correct = count_correct(logits.detach(), targets);
    }
    acc.add(loss, correct, n, options.loss_average());
    if (callback) {
      sums.add(scaled, correct, n, k > 1);
    }
    pending += 1;
    if (pending == k && finish_step()) {
      break;
    }
  }
  if (pending > 0) {
    finish_step(); // the last, partial group of an accumulating pass
  }
  EpochMetrics m;
  m.loss = acc.loss(options.loss_average());
  m.accuracy = acc.accuracy();
  m.samples = acc.samples;
  m.steps = steps;
  m.batches = acc.batches;
  m.seconds = seconds_since(start);
  return m;
}

template <typename T, typename = void>
struct HasStep : std::false_type {};
template <typename T>
struct HasStep<T, std::void_t<decltype(std::declval<T&>().step())>>
    : std::true_type {};

} // namespace detail

/// Trains `model` for one pass over `batches`: for every batch, in the order
/// PyTorch's canonical loop uses,
///
///   optimizer.zero_grad(set_to_none); loss = loss_fn(model(x), y);
///   loss.backward(); optimizer.step();
///
/// and returns the epoch's mean loss and accuracy (see `EpochMetrics`).
/// `model` is a `ModuleHolder` (`LeNet5`), a pointer to a module
/// (`std::shared_ptr<M>`, checked non-null) or a module with
/// `forward(Tensor)`; it is put in training mode. `batches` is any range
/// whose elements have `.data` and `.targets` (`dlcore::Batches`) or
/// `.target` (`torch::data::Example<>`). `optimizer` has `zero_grad()` and
/// `step()`. With `accumulation_steps(k)`, k > 1, gradients of k batches
/// (each loss divided by k) add up before each optimizer step.
///
/// The pass moves a `Batches` on: it visits epoch `batches.epoch()` and
/// leaves the counter one further, as `for (auto& b : batches)` does; so a
/// `Batches` must be non-const (a `const Batches&` does not compile). To
/// train on a chosen epoch without moving the counter, pass
/// `batches.pass(e)`.
///
/// The LR range test and the studies (`study/`) train through this loop:
/// the range test with a scheduler that writes each iteration's LR and a
/// callback that stops on divergence, the studies with
/// `LossAverage::kPerBatch` and a callback that stops on a non-finite loss.
///
/// Running sums stay tensors and are read once per epoch, so a batch costs
/// no `.item()` unless a callback or a progress redraw needs its values.
///
/// Example:
///   dlcore::LeNet5 net;
///   torch::optim::SGD sgd(net->parameters(),
///                         torch::optim::SGDOptions(0.01).momentum(0.9));
///   dlcore::Batches train(train_set,
///   dlcore::BatchesOptions(64).shuffle(true)); for (int64_t e = 0; e < 3; ++e)
///   {
///     train.set_epoch(e);
///     auto m = dlcore::train_epoch(net, train, sgd,
///                                  dlcore::TrainOptions().epoch(e));
///   }
///
/// Differences from PyTorch (Python): the homework averages the epoch loss
/// per batch and reports accuracy in percent; here the loss is per sample by
/// default (`LossAverage::kPerBatch` gives the homework's number) and the
/// accuracy is a fraction.
template <typename Model, typename BatchRange, typename Optimizer>
EpochMetrics train_epoch(
    Model& model,
    BatchRange&& batches,
    Optimizer& optimizer,
    const TrainOptions& options = TrainOptions()) {
  detail::check_movable_epoch<BatchRange>();
  return detail::train_epoch_impl(
      model,
      batches,
      optimizer,
      static_cast<detail::NoScheduler*>(nullptr),
      options);
}

/// As above, with a per-batch scheduler (anything with `step()`: CyclicLR,
/// OneCycleLR, `torch::optim::StepLR`, ...), stepped after every
/// `optimizer.step()` exactly like a per-batch scheduler in PyTorch. The
/// callback's `StepInfo::lrs` and `momenta` are those used by the step, read
/// before the scheduler moves them. `scheduler` must outlive the call.
template <
    typename Model,
    typename BatchRange,
    typename Optimizer,
    typename Scheduler,
    typename = std::enable_if_t<detail::HasStep<Scheduler>::value>>
EpochMetrics train_epoch(
    Model& model,
    BatchRange&& batches,
    Optimizer& optimizer,
    Scheduler& scheduler,
    const TrainOptions& options = TrainOptions()) {
  detail::check_movable_epoch<BatchRange>();
  return detail::train_epoch_impl(
      model, batches, optimizer, &scheduler, options);
}

/// Mean loss and accuracy of `model` over `batches` without training: the
/// model (a `ModuleHolder`, a pointer to a module or a module, as for
/// `train_epoch`) is put in evaluation mode under `torch::NoGradGuard`, and
/// its previous training mode is restored on return (also on error).
///
/// `batches` is only read: a range that can be iterated as const is read so.
/// A `Batches` (which may be a `const Batches&`) is evaluated on its pass over
/// `epoch()`, and its epoch counter does not move.
///
/// Example:
///   auto val = dlcore::evaluate(net, val_batches);
///   std::cout << val.loss << " " << 100 * val.accuracy << "%\n";
///
/// Differences from PyTorch (Python): the homework leaves the model in eval
/// mode after validation; here the previous mode is restored.
template <typename Model, typename BatchRange>
EpochMetrics evaluate(
    Model& model,
    BatchRange&& batches,
    const EvaluateOptions& options = EvaluateOptions()) {
  auto& module = detail::module_of(model, "evaluate");
  const bool was_training = module.is_training();
  struct RestoreMode {
    torch::nn::Module& m;
    bool training;
    ~RestoreMode() {
      m.train(training);
    }
  } restore{module, was_training};
  TORCH_CHECK(
      options.data_parallel() >= 1,
      "evaluate: data_parallel must be >= 1, but got ",
      options.data_parallel());
  module.eval();
  torch::NoGradGuard no_grad;
  const LossFunction& loss_fn = options.loss_fn();
  std::optional<detail::ChunkedPass> chunked;
  if (options.data_parallel() > 1) {
    chunked.emplace(options.data_parallel());
  }
  std::optional<ProgressLine> bar;
  if (options.progress()) {
    bar.emplace(
        "eval", detail::range_size(batches), options.progress_options());
  }
  detail::Accumulator acc;
  auto start = std::chrono::steady_clock::now();
  for (auto&& batch : detail::read_only(batches)) {
    torch::Tensor data = batch.data;
    torch::Tensor targets = detail::batch_targets(batch);
    if (options.device().has_value()) {
      data = data.to(*options.device(), /*non_blocking=*/true);
      targets = targets.to(*options.device(), /*non_blocking=*/true);
    }
    torch::Tensor logits;
    torch::Tensor loss;
    if (chunked.has_value() && data.size(0) >= 2) {
      std::tie(logits, loss) = detail::chunked_step(
          *chunked, module, nullptr, data, targets, loss_fn);
    } else {
      logits = module.forward(data);
      loss = loss_fn ? loss_fn(logits, targets) : default_loss(logits, targets);
    }
    acc.add(
        loss,
        options.accuracy() ? detail::count_correct(logits, targets)
                           : torch::Tensor(),
        data.size(0),
        options.loss_average());
    if (bar.has_value() && bar->due(acc.batches)) {
      bar->update(
          acc.batches,
          acc.loss(options.loss_average()),
          acc.accuracy(),
          std::numeric_limits<double>::quiet_NaN());
    }
  }
  EpochMetrics m;
  m.loss = acc.loss(options.loss_average());
  m.accuracy = acc.accuracy();
  m.samples = acc.samples;
  m.steps = acc.batches;
  m.batches = acc.batches;
  m.seconds = detail::seconds_since(start);
  return m;
}

} // namespace dlcore
