#pragma once

#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>
#include <torch/arg.h>
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
#include <iterator>
#include <string>
#include <utility>

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
  /// Visit the samples in a fresh seeded random order every epoch. Default:
  /// false (data set order, batches are zero-copy views).
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

} // namespace detail

/// In-memory mini-batch iteration over a `TensorDataset`, the fast
/// counterpart of `DataLoader(TensorDataset(x, y), batch_size, shuffle,
/// drop_last)` for data that fits in memory.
///
/// Each pass (`begin()`) visits every sample once, in data set order or, with
/// `shuffle`, in the order `order(e)` of the current epoch e: a permutation
/// drawn by `torch::randperm` from a CPU generator seeded with a 64-bit mix
/// of (`seed`, e), so it depends on nothing else. Every `begin()` moves on to
/// the next epoch, so `for (auto& b : batches)` in a loop reshuffles like a
/// DataLoader; `set_epoch(e)` chooses the epoch of the next pass (for
/// resuming, or DistributedSampler-style explicit epochs).
///
/// Batches are built without per-sample copies: shuffled batches are one
/// `index_select` of the contiguous data and targets, unshuffled ones are
/// `narrow` views sharing memory with the data set. The data set's tensors are
/// shared, not copied (made contiguous once if they are not). `size()` is the
/// number of batches per epoch: ceil(N / batch_size), or floor with
/// `drop_last`.
///
/// Example:
///   dlcore::Batches train_batches(
///       train, dlcore::BatchesOptions(64).shuffle(true).seed(0));
///   for (int epoch = 0; epoch < 10; ++epoch) {
///     for (const dlcore::Batch& b : train_batches) {
///       auto loss = torch::nll_loss(model->forward(b.data), b.targets);
///     }
///   }
///
/// Iterating needs a non-const `Batches`, since each pass advances the epoch.
/// `save`/`load` keep the epoch across a checkpoint.
///
/// Differences from PyTorch (Python): DataLoader draws each epoch's order
/// from a generator that advances across epochs (and, unseeded, from the
/// global RNG), so an epoch cannot be replayed alone; here epoch e's order is
/// a pure function of (seed, e). There are no workers, collate function or
/// per-sample transforms: the tensors are already in memory.
class Batches {
 public:
  /// Input iterator over the batches of one pass; dereferencing gives the
  /// current `Batch`.
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
    Iterator(const Batches* owner, torch::Tensor order, int64_t index)
        : owner_(owner), order_(std::move(order)), index_(index) {
      load();
    }
    void load() {
      if (owner_ == nullptr || index_ >= owner_->size()) {
        current_ = Batch{};
        return;
      }
      const int64_t bs = owner_->options_.batch_size();
      const int64_t start = index_ * bs;
      const int64_t len = std::min(bs, owner_->dataset_.size() - start);
      if (order_.defined()) {
        const torch::Tensor idx = order_.narrow(0, start, len);
        current_.data = owner_->dataset_.data.index_select(0, idx);
        current_.targets = owner_->dataset_.targets.index_select(0, idx);
      } else {
        current_.data = owner_->dataset_.data.narrow(0, start, len);
        current_.targets = owner_->dataset_.targets.narrow(0, start, len);
      }
    }

    const Batches* owner_ = nullptr;
    torch::Tensor order_;
    int64_t index_ = 0;
    Batch current_;
  };

  /// Batches over `dataset` (its tensors are shared). Checks that data and
  /// targets are defined, agree on the sample count and live on one device,
  /// and that `batch_size >= 1`.
  Batches(TensorDataset dataset, BatchesOptions options)
      : dataset_(std::move(dataset)), options_(options) {
    TORCH_CHECK(
        options_.batch_size() >= 1,
        "Batches: expected batch_size >= 1 but got ",
        options_.batch_size());
    dataset_.check("Batches");
    TORCH_CHECK(
        dataset_.data.device() == dataset_.targets.device(),
        "Batches: expected data and targets on one device but got ",
        dataset_.data.device(),
        " and ",
        dataset_.targets.device());
    dataset_.data = dataset_.data.contiguous();
    dataset_.targets = dataset_.targets.contiguous();
  }

  /// Batches per epoch: ceil(N / batch_size), or floor(N / batch_size) with
  /// `drop_last`.
  int64_t size() const {
    const int64_t n = dataset_.size();
    const int64_t bs = options_.batch_size();
    return options_.drop_last() ? n / bs : (n + bs - 1) / bs;
  }

  /// Samples visited per epoch: N, or `size() * batch_size` with
  /// `drop_last`.
  int64_t num_samples() const {
    return options_.drop_last() ? size() * options_.batch_size()
                                : dataset_.size();
  }

  /// Chooses the epoch of the next pass (any value, also negative).
  void set_epoch(int64_t epoch) {
    epoch_ = epoch;
  }

  /// The epoch the next pass (`begin()`) will use.
  int64_t epoch() const {
    return epoch_;
  }

  /// The order in which epoch `epoch` visits the samples: int64 `[N]` on the
  /// data's device, a permutation with `shuffle`, else 0..N-1. Pure.
  torch::Tensor order(int64_t epoch) const {
    const int64_t n = dataset_.size();
    if (!options_.shuffle()) {
      return at::arange(
          n,
          at::TensorOptions().dtype(at::kLong).device(dataset_.data.device()));
    }
    at::Generator gen = at::detail::createCPUGenerator(
        detail::batches_epoch_seed(options_.seed(), epoch));
    return at::randperm(n, gen, at::kLong).to(dataset_.data.device());
  }

  /// Starts a pass over the current epoch and moves on to the next epoch.
  Iterator begin() {
    const int64_t e = epoch_++;
    return Iterator(this, options_.shuffle() ? order(e) : torch::Tensor(), 0);
  }

  /// The past-the-end iterator of a pass.
  Iterator end() const {
    return Iterator(this, torch::Tensor(), size());
  }

  /// The data set iterated over (contiguous).
  const TensorDataset& dataset() const {
    return dataset_;
  }

  /// Writes the iteration state (the next epoch) and the configuration it
  /// depends on (sample count, batch size, shuffle, drop_last, seed) to
  /// `archive`, in dlcore's state format (detail/state.h, docs/state.md):
  /// type `dlcore.Batches`, version 1, fields `epoch`, `seed`,
  /// `num_samples`, `batch_size`, `shuffle`, `drop_last`. To keep it beside
  /// other state, save it into a nested archive.
  void save(torch::serialize::OutputArchive& archive) const {
    detail::StateWriter(archive, "Batches", kVersion)
        .put_int("epoch", epoch_)
        .put_int("seed", static_cast<int64_t>(options_.seed()))
        .put_int("num_samples", dataset_.size())
        .put_int("batch_size", options_.batch_size())
        .put_bool("shuffle", options_.shuffle())
        .put_bool("drop_last", options_.drop_last());
  }

  /// Restores the next epoch saved by `save`, so that iteration resumes with
  /// the same orders. The saved sample count, batch size, shuffle, drop_last
  /// and seed must equal this object's (else the orders would differ).
  /// Archives of the legacy format (one int64 tensor under `dlcore.Batches`)
  /// load too. Nothing changes when the archive is refused.
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
    }
    TORCH_CHECK(
        s.seed == static_cast<int64_t>(options_.seed()) &&
            s.num_samples == dataset_.size() &&
            s.batch_size == options_.batch_size() &&
            s.shuffle == options_.shuffle() &&
            s.drop_last == options_.drop_last(),
        "Batches: expected saved state for ",
        dataset_.size(),
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
  static constexpr int64_t kVersion = 1;
  /// The key of the legacy format's tensor.
  static constexpr const char* kLegacyKey = "dlcore.Batches";

  /// A saved state, read from either format.
  struct Saved {
    int64_t epoch = 0;
    int64_t seed = 0;
    int64_t num_samples = 0;
    int64_t batch_size = 0;
    bool shuffle = false;
    bool drop_last = false;
  };

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
};

} // namespace dlcore
