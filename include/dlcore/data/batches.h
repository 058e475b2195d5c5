#pragma once

#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>
#include <torch/arg.h>
#include <torch/data/samplers/base.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/types.h>

#include <dlcore/data/tensor_dataset.h>
#include <dlcore/detail/archive.h>
#include <dlcore/detail/splitmix.h>
#include <dlcore/detail/state.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace dlcore {

/// Options of `Batches`.
///
/// Example:
///   dlcore::BatchesOptions(64).shuffle(true).seed(42)
struct BatchesOptions {
  /* implicit */ BatchesOptions(int64_t batch_size) : batch_size_(batch_size) {}

  /// Samples per batch (>= 1); the last batch of an epoch may hold fewer
  /// unless `drop_last`. Required.
  TORCH_ARG(int64_t, batch_size);
  /// Visit the samples (or the given indices) in a fresh seeded random order
  /// every epoch. Not with a sampler, which chooses the order itself.
  /// Default: false (data set order, batches are zero-copy views).
  TORCH_ARG(bool, shuffle) = false;
  /// Drop the last batch of an epoch when it holds fewer than `batch_size`
  /// samples. Default: false (the partial batch is kept, as DataLoader does).
  TORCH_ARG(bool, drop_last) = false;
  /// Seed of the shuffling; epoch e's order depends only on (seed, e).
  /// Default: 0
  TORCH_ARG(uint64_t, seed) = 0;

 public:
};

/// One mini-batch: `data` rows and their `targets`, on the data set's device.
struct Batch {
  torch::Tensor data;
  torch::Tensor targets;
};

namespace detail {

/// Seed of the generator that draws epoch `epoch`'s order: the epoch key of
/// the Batches stream (detail/splitmix.h).
inline uint64_t batches_epoch_seed(uint64_t seed, int64_t epoch) {
  return splitmix_epoch_key(seed, static_cast<uint64_t>(epoch), kBatchesStream);
}

/// Whether a sampler has `set_epoch(e)` (`HashtagResampler`,
/// LibTorch's `DistributedSampler`s).
template <typename S, typename = void>
struct SamplerHasSetEpoch : std::false_type {};
template <typename S>
struct SamplerHasSetEpoch<
    S,
    std::void_t<decltype(std::declval<S&>().set_epoch(int64_t{0}))>>
    : std::true_type {};

/// Whether a sampler tells its indices per epoch by `local_length()`
/// (`HashtagResampler`).
template <typename S, typename = void>
struct SamplerHasLocalLength : std::false_type {};
template <typename S>
struct SamplerHasLocalLength<
    S,
    std::void_t<decltype(std::declval<const S&>().local_length())>>
    : std::true_type {};

} // namespace detail

/// In-memory mini-batch iteration over a `TensorDataset`, the fast
/// counterpart of `DataLoader(TensorDataset(x, y), batch_size, shuffle,
/// drop_last)` for data that fits in memory, with the samples of each epoch
/// taken from one of three index sources:
///
/// - the data set itself (`Batches(dataset, options)`): every sample once,
///   in data set order or, with `shuffle`, in a permutation drawn by
///   `torch::randperm` from a CPU generator seeded with a 64-bit mix of
///   (`seed`, e), so it depends on nothing else;
/// - an int64 index tensor (`Batches(dataset, indices, options)`): those
///   samples, in that order or, with `shuffle`, permuted as above (the
///   counterpart of `SubsetRandomSampler`); indices may repeat;
/// - a LibTorch sampler (`Batches(dataset, sampler, options)`), such as
///   `HashtagResampler`, `RandomSampler` or `DistributedRandomSampler`:
///   epoch e's pass calls `sampler->set_epoch(e)` (when the sampler has
///   it), `sampler->reset()`, then `sampler->next(batch_size)` until the
///   sampler is exhausted, and visits exactly those indices in that order.
///
/// `order(e)` is epoch e's sequence of sample indices; batch b holds
/// `order(e)[b*B : (b+1)*B]`. Batches are built without per-sample copies:
/// a batch is one `index_select` of the contiguous data and targets (in data
/// set order, a `narrow` view sharing memory with the data set). The data
/// set's tensors are shared, not copied (made contiguous once if they are
/// not).
///
/// Epochs: `begin()` on a non-const `Batches` starts a pass over the current
/// epoch `epoch()` and moves the counter on, so `for (auto& b : batches)` in
/// a loop reshuffles like a DataLoader; `set_epoch(e)` chooses the epoch of
/// the next such pass (for resuming, or DistributedSampler-style explicit
/// epochs). Reading without moving the counter: `pass(e)` is a pass over
/// epoch e, and `begin()` on a const `Batches` is a pass over `epoch()`;
/// neither changes `epoch()`. So functions that only read batches
/// (`evaluate`, `predict_each`, `LRFinder::range_test`) take a
/// `const Batches&`, and `train_epoch` takes a non-const one and moves it.
///
/// Ownership: the sampler is held by `std::shared_ptr` and shared by copies
/// of the `Batches` (it may be large, and the caller may keep using it, for
/// example to read `HashtagResampler::report()`). A pass draws all of its
/// epoch's indices when it starts, into one int64 tensor (8 bytes per
/// index), so the sampler's own epoch and position change then, also for a
/// pass over a const `Batches`; the `Batches` itself keeps only its epoch
/// counter. Passes that share a sampler must not start concurrently.
///
/// Example:
///   dlcore::Batches train_batches(
///       train, dlcore::BatchesOptions(64).shuffle(true).seed(0));
///   for (int epoch = 0; epoch < 10; ++epoch) {
///     for (const dlcore::Batch& b : train_batches) {
///       auto loss = torch::nll_loss(model->forward(b.data), b.targets);
///     }
///   }
///   // Hashtag resampling (data/hashtag_resampler.h), no copy of the data:
///   auto sampler = std::make_shared<dlcore::HashtagResampler>(tags, opts);
///   dlcore::Batches drawn(train, sampler, 64);
///
/// `save`/`load` keep the epoch across a checkpoint.
///
/// Differences from PyTorch (Python): DataLoader draws each epoch's order
/// from a generator that advances across epochs (and, unseeded, from the
/// global RNG), so an epoch cannot be replayed alone; here epoch e's order is
/// a pure function of (seed, e) (with a sampler: of whatever the sampler's
/// pass depends on). There are no workers, collate function or per-sample
/// transforms: the tensors are already in memory. DataLoader's
/// `sampler.set_epoch` is the user's call; here a pass calls it.
class Batches {
 public:
  /// The samplers a `Batches` draws from.
  using Sampler = torch::data::samplers::Sampler<>;

  /// Input iterator over the batches of one pass; dereferencing gives the
  /// current `Batch`. It holds its pass's order, so it stays valid while
  /// its `Batches` lives, whatever passes start after it.
  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    using pointer = const Batch*;
    using reference = const Batch&;

    Iterator() = default;

    reference operator*() const {
      return current_;
    }
    pointer operator->() const {
      return &current_;
    }
    Iterator& operator++() {
      ++index_;
      load();
      return *this;
    }
    /// Index of the current batch within the epoch.
    int64_t index() const {
      return index_;
    }
    bool operator==(const Iterator& other) const {
      return index_ == other.index_ && owner_ == other.owner_;
    }
    bool operator!=(const Iterator& other) const {
      return !(*this == other);
    }

   private:
    friend class Batches;
    /// Batch `index` of a pass over `samples` samples: `order` rows of the
    /// data set, or its first `samples` rows when `order` is undefined.
    Iterator(
        const Batches* owner,
        torch::Tensor order,
        int64_t samples,
        int64_t batches,
        int64_t index)
        : owner_(owner),
          order_(std::move(order)),
          samples_(samples),
          batches_(batches),
          index_(index) {
      load();
    }
    void load() {
      if (owner_ == nullptr || index_ >= batches_) {
        current_ = Batch{};
        return;
      }
      const int64_t bs = owner_->options_.batch_size();
      const int64_t start = index_ * bs;
      const int64_t len = std::min(bs, samples_ - start);
      const TensorDataset& ds = owner_->dataset_;
      if (order_.defined()) {
        const torch::Tensor idx = order_.narrow(0, start, len);
        current_.data = ds.data.index_select(0, idx);
        current_.targets = ds.targets.index_select(0, idx);
      } else {
        current_.data = ds.data.narrow(0, start, len);
        current_.targets = ds.targets.narrow(0, start, len);
      }
    }

    const Batches* owner_ = nullptr;
    torch::Tensor order_;
    int64_t samples_ = 0;
    int64_t batches_ = 0;
    int64_t index_ = 0;
    Batch current_;
  };

  /// One pass over a chosen epoch, as a range: `for (const Batch& b :
  /// batches.pass(e))`. Its order is fixed when it is made (a sampler is
  /// drawn then), so `begin()` may be called again for the same batches. It
  /// refers to its `Batches`, which must outlive it.
  class Pass {
   public:
    Iterator begin() const {
      return Iterator(owner_, order_, samples_, size(), 0);
    }
    Iterator end() const {
      return Iterator(owner_, torch::Tensor(), samples_, size(), size());
    }
    /// Batches in the pass (`Batches::size()`).
    int64_t size() const {
      return owner_->batches_for(samples_);
    }
    /// The epoch this pass visits.
    int64_t epoch() const {
      return epoch_;
    }

   private:
    friend class Batches;
    Pass(const Batches* owner, int64_t epoch, torch::Tensor order)
        : owner_(owner),
          epoch_(epoch),
          samples_(order.defined() ? order.size(0) : owner->source_size()),
          order_(std::move(order)) {}

    const Batches* owner_;
    int64_t epoch_;
    int64_t samples_;
    torch::Tensor order_;
  };

  /// Batches over every sample of `dataset` (its tensors are shared). Checks
  /// that data and targets are defined, agree on the sample count and live
  /// on one device, and that `batch_size >= 1`.
  Batches(TensorDataset dataset, BatchesOptions options)
      : dataset_(std::move(dataset)), options_(options) {
    init("Batches");
  }

  /// Batches over the samples at `indices` (int64 `[M]`, each in [0, N),
  /// repeats allowed) of `dataset`, in that order or, with `shuffle`,
  /// permuted per epoch. The indices are copied once to the data's device (8
  /// bytes per index; the data is not copied).
  Batches(TensorDataset dataset, torch::Tensor indices, BatchesOptions options)
      : dataset_(std::move(dataset)),
        options_(options),
        source_(Source::kIndices) {
    init("Batches");
    TORCH_CHECK(
        indices.defined(),
        "Batches: expected an int64 index tensor of shape [M] but got an "
        "undefined tensor");
    TORCH_CHECK(
        indices.dim() == 1 && indices.scalar_type() == torch::kLong,
        "Batches: expected an int64 index tensor of shape [M] but got a ",
        indices.toString(),
        " of shape ",
        indices.sizes());
    const int64_t n = dataset_.size();
    if (indices.numel() > 0) {
      const int64_t lo = indices.min().item<int64_t>();
      const int64_t hi = indices.max().item<int64_t>();
      TORCH_CHECK(
          lo >= 0 && hi < n,
          "Batches: expected indices in [0, N = ",
          n,
          ") but got indices from ",
          lo,
          " to ",
          hi);
    }
    indices_ = indices
                   .to(dataset_.data.device(),
                       torch::kLong,
                       /*non_blocking=*/false,
                       /*copy=*/true)
                   .contiguous();
  }

  /// Batches over the indices `sampler` yields (a LibTorch
  /// `Sampler<std::vector<size_t>>`: `HashtagResampler`, `RandomSampler`,
  /// `DistributedRandomSampler`, ...), held by `std::shared_ptr` and
  /// shared with the caller (see the class comment). Every epoch's pass
  /// draws it afresh: `set_epoch(e)` when the sampler has it, `reset()`,
  /// then `next(batch_size)` until it returns nothing; the indices must lie
  /// in [0, N). `shuffle` must be false (the sampler chooses the order).
  ///
  /// `set_epoch` is found on the static type `S` (a
  /// `std::shared_ptr<Sampler>` to a `HashtagResampler` would hide it).
  ///
  /// The number of indices per epoch (and so `size()`) is the sampler's
  /// `local_length()` when it has one (`HashtagResampler`), else it is
  /// counted here by one such pass at the sampler's current epoch (LibTorch's
  /// `Sampler` has no length; for `RandomSampler` this draws one permutation
  /// from the global generator). Every later pass must yield that many.
  template <
      typename S,
      typename = std::enable_if_t<std::is_base_of_v<Sampler, S>>>
  Batches(
      TensorDataset dataset, std::shared_ptr<S> sampler, BatchesOptions options)
      : dataset_(std::move(dataset)),
        options_(options),
        source_(Source::kSampler) {
    init("Batches");
    TORCH_CHECK(
        sampler != nullptr,
        "Batches: expected a sampler but got a null std::shared_ptr");
    TORCH_CHECK(
        !options_.shuffle(),
        "Batches: expected shuffle false with a sampler (the sampler chooses "
        "the order) but got shuffle true");
    if constexpr (detail::SamplerHasSetEpoch<S>::value) {
      // e >= 0 is checked before the call (DistributedSampler's takes a
      // size_t).
      sampler_set_epoch_ = [s = sampler.get()](int64_t e) { s->set_epoch(e); };
    }
    if constexpr (detail::SamplerHasLocalLength<S>::value) {
      sampler_length_ = [s = sampler.get()]() {
        return static_cast<int64_t>(s->local_length());
      };
    }
    sampler_ = std::move(sampler);
    if (!sampler_length_) {
      sampler_count_ = draw_sampler(0, /*counting=*/true).size(0);
    }
  }

  /// Batches per epoch: ceil(M / batch_size), or floor(M / batch_size) with
  /// `drop_last`, for the M samples of an epoch (N, the index count, or the
  /// sampler's indices per epoch).
  int64_t size() const {
    return batches_for(source_size());
  }

  /// Samples visited per epoch: M, or `size() * batch_size` with
  /// `drop_last`.
  int64_t num_samples() const {
    return options_.drop_last() ? size() * options_.batch_size()
                                : source_size();
  }

  /// Chooses the epoch of the next pass of a non-const `begin()` (any value,
  /// also negative; a pass over a sampler with `set_epoch` needs it >= 0).
  void set_epoch(int64_t epoch) {
    epoch_ = epoch;
  }

  /// The epoch the next pass of a non-const `begin()` will use.
  int64_t epoch() const {
    return epoch_;
  }

  /// The sample indices epoch `epoch` visits, in order: int64 on the data's
  /// device, `[M]` (before `drop_last`). Over the data set: a permutation
  /// with `shuffle`, else 0..N-1; over indices: those indices, permuted
  /// with `shuffle`; both pure. Over a sampler: one pass of the sampler
  /// (which changes the sampler's state, see the class comment).
  torch::Tensor order(int64_t epoch) const {
    if (source_ == Source::kDataset && !options_.shuffle()) {
      return at::arange(
          dataset_.size(),
          at::TensorOptions().dtype(at::kLong).device(dataset_.data.device()));
    }
    return pass_order(epoch);
  }

  /// A pass over epoch `epoch`, leaving `epoch()` unchanged: the batches a
  /// non-const `begin()` gives when `epoch()` is `epoch`.
  ///
  /// Example:
  ///   for (const dlcore::Batch& b : batches.pass(3)) { ... }
  Pass pass(int64_t epoch) const {
    return Pass(this, epoch, pass_order(epoch));
  }

  /// Starts a pass over the current epoch and moves on to the next epoch.
  Iterator begin() {
    const int64_t e = epoch_++;
    return pass(e).begin();
  }

  /// Starts a pass over the current epoch without moving on (`pass(epoch())`),
  /// so that a `const Batches&` can be read.
  Iterator begin() const {
    return pass(epoch_).begin();
  }

  /// The past-the-end iterator of a pass.
  Iterator end() const {
    return Iterator(this, torch::Tensor(), 0, size(), size());
  }

  /// The data set iterated over (contiguous).
  const TensorDataset& dataset() const {
    return dataset_;
  }

  /// The index tensor (int64 `[M]`, on the data's device) of a `Batches`
  /// over indices; undefined otherwise.
  const torch::Tensor& indices() const {
    return indices_;
  }

  /// The sampler of a `Batches` over a sampler; null otherwise.
  const std::shared_ptr<Sampler>& sampler() const {
    return sampler_;
  }

  /// Writes the iteration state (the next epoch) and the configuration it
  /// depends on to `archive`, in dlcore's state format (detail/state.h,
  /// docs/state.md): type `dlcore.Batches`, version 2, fields `epoch`,
  /// `seed`, `num_samples` (samples per epoch before `drop_last`: N, the
  /// index count, or the sampler's indices per epoch), `batch_size`,
  /// `shuffle`, `drop_last` and `source` ("dataset", "indices" or
  /// "sampler"). Neither the indices nor the sampler are saved: a pass
  /// starts with the sampler's `set_epoch(e)` and `reset()`, so the epoch
  /// counter is what resumes it; a sampler that reshuffles from a global
  /// generator on `reset()` (`RandomSampler`) resumes its orders only with
  /// that generator restored too. To keep it beside other state, save it
  /// into a nested archive.
  void save(torch::serialize::OutputArchive& archive) const {
    detail::StateWriter(archive, "Batches", kVersion)
        .put_int("epoch", epoch_)
        .put_int("seed", static_cast<int64_t>(options_.seed()))
        .put_int("num_samples", source_size())
        .put_int("batch_size", options_.batch_size())
        .put_bool("shuffle", options_.shuffle())
        .put_bool("drop_last", options_.drop_last())
        .put_string("source", source_name(source_));
  }

  /// Restores the next epoch saved by `save`, so that iteration resumes with
  /// the same orders. The saved source, sample count, batch size, shuffle,
  /// drop_last and seed must equal this object's (else the orders would
  /// differ). Version 1 states (no `source`: over the data set) and archives
  /// of the legacy format (one int64 tensor under `dlcore.Batches`) load
  /// too. Nothing changes when the archive is refused.
  void load(torch::serialize::InputArchive& archive) {
    Saved s;
    torch::Tensor legacy;
    if (!detail::holds_state(archive) && archive.try_read(kLegacyKey, legacy)) {
      s = read_legacy(legacy);
    } else {
      const detail::StateReader state(archive, "Batches", "Batches", kVersion);
      s.epoch = state.read_int("epoch");
      s.seed = state.read_int("seed");
      s.num_samples = state.read_int("num_samples");
      s.batch_size = state.read_int("batch_size");
      s.shuffle = state.read_bool("shuffle");
      s.drop_last = state.read_bool("drop_last");
      if (state.version() >= 2) {
        s.source = state.read_string("source");
      }
    }
    TORCH_CHECK(
        s.source == source_name(source_),
        "Batches: expected saved state of a Batches over the ",
        source_name(source_),
        " but got one over the ",
        s.source);
    TORCH_CHECK(
        s.seed == static_cast<int64_t>(options_.seed()) &&
            s.num_samples == source_size() &&
            s.batch_size == options_.batch_size() &&
            s.shuffle == options_.shuffle() &&
            s.drop_last == options_.drop_last(),
        "Batches: expected saved state for ",
        source_size(),
        " samples, batch_size ",
        options_.batch_size(),
        ", shuffle ",
        options_.shuffle(),
        ", drop_last ",
        options_.drop_last(),
        ", seed ",
        options_.seed(),
        " but got ",
        s.num_samples,
        " samples, batch_size ",
        s.batch_size,
        ", shuffle ",
        s.shuffle,
        ", drop_last ",
        s.drop_last,
        ", seed ",
        static_cast<uint64_t>(s.seed));
    epoch_ = s.epoch;
  }

  /// Writes save()'s archive to `path`, atomically (a temporary file beside
  /// it, then a rename).
  void save(const std::string& path) const {
    detail::save_archive_file(*this, path, "Batches");
  }

  /// Loads a file written by `save(path)`. Only a regular file is opened,
  /// and the archive is checked (`detail::check_archive`) before LibTorch
  /// parses it; every error is a `c10::Error` naming the file.
  void load(const std::string& path) {
    detail::load_archive_file(*this, path, "Batches");
  }

  const BatchesOptions& options() const {
    return options_;
  }

 private:
  /// Version 2 added `source`.
  static constexpr int64_t kVersion = 2;
  /// The key of the legacy format's tensor.
  static constexpr const char* kLegacyKey = "dlcore.Batches";

  /// Where an epoch's sample indices come from.
  enum class Source { kDataset, kIndices, kSampler };

  static const char* source_name(Source s) {
    switch (s) {
      case Source::kDataset:
        return "dataset";
      case Source::kIndices:
        return "indices";
      case Source::kSampler:
        return "sampler";
    }
    TORCH_INTERNAL_ASSERT(false, "unknown Batches source");
  }

  /// A saved state, read from any format.
  struct Saved {
    int64_t epoch = 0;
    int64_t seed = 0;
    int64_t num_samples = 0;
    int64_t batch_size = 0;
    bool shuffle = false;
    bool drop_last = false;
    std::string source = "dataset";
  };

  /// Checks the options and the data set, and makes it contiguous.
  void init(const char* owner) {
    TORCH_CHECK(
        options_.batch_size() >= 1,
        owner,
        ": expected batch_size >= 1 but got ",
        options_.batch_size());
    dataset_.check(owner);
    TORCH_CHECK(
        dataset_.data.device() == dataset_.targets.device(),
        owner,
        ": expected data and targets on one device but got ",
        dataset_.data.device(),
        " and ",
        dataset_.targets.device());
    dataset_.data = dataset_.data.contiguous();
    dataset_.targets = dataset_.targets.contiguous();
  }

  /// Samples per epoch before `drop_last`.
  int64_t source_size() const {
    switch (source_) {
      case Source::kDataset:
        return dataset_.size();
      case Source::kIndices:
        return indices_.size(0);
      case Source::kSampler:
        return sampler_length_ ? sampler_length_() : sampler_count_;
    }
    TORCH_INTERNAL_ASSERT(false, "unknown Batches source");
  }

  int64_t batches_for(int64_t samples) const {
    const int64_t bs = options_.batch_size();
    return options_.drop_last() ? samples / bs : (samples + bs - 1) / bs;
  }

  /// Epoch `epoch`'s order for a pass; undefined for the data set in its
  /// own order (batches are then views).
  torch::Tensor pass_order(int64_t epoch) const {
    if (source_ == Source::kSampler) {
      return draw_sampler(epoch);
    }
    if (!options_.shuffle()) {
      return source_ == Source::kIndices ? indices_ : torch::Tensor();
    }
    const int64_t n = source_size();
    at::Generator gen = at::detail::createCPUGenerator(
        detail::batches_epoch_seed(options_.seed(), epoch));
    torch::Tensor perm =
        at::randperm(n, gen, at::kLong).to(dataset_.data.device());
    return source_ == Source::kIndices ? indices_.index_select(0, perm) : perm;
  }

  /// One pass of the sampler over epoch `epoch` as int64 `[M]` on the data's
  /// device, each index checked; when `counting` (at construction), a pass
  /// over the sampler's current epoch, whatever its length.
  torch::Tensor draw_sampler(int64_t epoch, bool counting = false) const {
    if (!counting && sampler_set_epoch_) {
      TORCH_CHECK(
          epoch >= 0,
          "Batches: expected epoch >= 0 for a pass over a sampler with "
          "set_epoch but got ",
          epoch);
      sampler_set_epoch_(epoch);
    }
    sampler_->reset(torch::nullopt);
    const int64_t n = dataset_.size();
    std::vector<int64_t> all;
    if (!counting) {
      all.reserve(static_cast<std::size_t>(source_size()));
    }
    const auto request = static_cast<std::size_t>(options_.batch_size());
    while (auto idx = sampler_->next(request)) {
      if (idx->empty()) {
        break;
      }
      for (const std::size_t i : *idx) {
        TORCH_CHECK(
            i < static_cast<std::size_t>(n),
            "Batches: expected the sampler's indices in [0, N = ",
            n,
            ") but got ",
            i,
            counting ? std::string(" (counting its epoch at construction)")
                     : " (epoch " + std::to_string(epoch) + ")");
        all.push_back(static_cast<int64_t>(i));
      }
    }
    const auto count = static_cast<int64_t>(all.size());
    TORCH_CHECK(
        counting || count == source_size(),
        "Batches: expected the sampler to yield ",
        source_size(),
        " indices per epoch (",
        sampler_length_ ? "its local_length()" : "counted at construction",
        ") but it yielded ",
        count,
        " in epoch ",
        epoch,
        "; build a new Batches after changing the sampler's length");
    torch::Tensor out = torch::empty({count}, torch::kLong);
    std::copy(all.begin(), all.end(), out.data_ptr<int64_t>());
    return out.to(dataset_.data.device());
  }

  /// The legacy format: int64 [version 1, epoch, seed, samples, batch_size,
  /// shuffle, drop_last].
  static Saved read_legacy(const torch::Tensor& state) {
    TORCH_CHECK(
        state.defined() && state.dim() == 1 && state.numel() == 7 &&
            state.scalar_type() == at::kLong && state.device().is_cpu(),
        "Batches: expected the legacy state to be a CPU int64 tensor of 7 "
        "values but got ",
        state.defined() ? state.toString() : std::string("undefined"),
        " ",
        state.defined() ? state.sizes() : at::IntArrayRef{});
    const torch::Tensor c = state.contiguous();
    const int64_t* v = c.data_ptr<int64_t>();
    TORCH_CHECK(
        v[0] == 1,
        "Batches: expected the legacy state of version 1 but got version ",
        v[0]);
    TORCH_CHECK(
        (v[5] == 0 || v[5] == 1) && (v[6] == 0 || v[6] == 1),
        "Batches: expected the legacy state's shuffle and drop_last to be 0 "
        "or 1 but got ",
        v[5],
        " and ",
        v[6]);
    Saved s;
    s.epoch = v[1];
    s.seed = v[2];
    s.num_samples = v[3];
    s.batch_size = v[4];
    s.shuffle = v[5] != 0;
    s.drop_last = v[6] != 0;
    return s;
  }

  TensorDataset dataset_;
  BatchesOptions options_;
  int64_t epoch_ = 0;
  Source source_ = Source::kDataset;
  /// kIndices: the indices, int64 [M] on the data's device.
  torch::Tensor indices_;
  /// kSampler: the sampler, its set_epoch (empty when it has none) and its
  /// length per epoch (empty when counted at construction).
  std::shared_ptr<Sampler> sampler_;
  std::function<void(int64_t)> sampler_set_epoch_;
  std::function<int64_t()> sampler_length_;
  int64_t sampler_count_ = 0;
};

} // namespace dlcore
