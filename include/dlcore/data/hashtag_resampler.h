#pragma once

#include <dlcore/data/detail/alias_table.h>
#include <dlcore/data/tag_lists.h>
#include <dlcore/detail/archive.h>
#include <dlcore/detail/atomic_file.h>
#include <dlcore/detail/huge_pages.h>
#include <dlcore/detail/splitmix.h>
#include <dlcore/detail/state.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/arg.h>
#include <torch/data/samplers/base.h>
#include <torch/serialize/archive.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

namespace dlcore {

/// The three sampling schemes of Mahajan et al. (2018), Section 3.1: tag mass
/// n_h^alpha with alpha = 1 (natural), 1/2 (square root) or 0 (uniform).
enum class SamplingScheme { kNatural, kSquareRoot, kUniform };

/// The exponent alpha of a scheme: 1, 0.5 or 0.
inline double sampling_exponent(SamplingScheme scheme) {
  switch (scheme) {
    case SamplingScheme::kNatural:
      return 1.0;
    case SamplingScheme::kSquareRoot:
      return 0.5;
    case SamplingScheme::kUniform:
      return 0.0;
  }
  TORCH_CHECK(false, "sampling_exponent: unknown SamplingScheme");
}

/// How an epoch is made.
enum class ResamplingMode {
  /// Every position is an independent draw (with replacement): pick a tag by
  /// its mass through an alias table, then an image carrying it uniformly.
  kDraw,
  /// A fixed list: image i appears round(w_i * L) times (largest remainder, so
  /// the list has exactly L entries), shuffled per epoch. Tail images are
  /// repeated, head images thinned; no sampling noise in the counts.
  kReplicate,
};

/// Options of `HashtagResampler`.
///
/// Example:
///   auto opts = dlcore::HashtagResamplerOptions(
///                   dlcore::SamplingScheme::kSquareRoot)
///                   .seed(7)
///                   .epoch_length(1 << 20);
struct HashtagResamplerOptions {
  /* implicit */ HashtagResamplerOptions(double alpha = 1.0) : alpha_(alpha) {}
  /* implicit */ HashtagResamplerOptions(SamplingScheme scheme)
      : alpha_(sampling_exponent(scheme)) {}

  /// Exponent of the tag mass n_h^alpha; any alpha >= 0. Default: 1 (natural)
  TORCH_ARG(double, alpha);
  /// Number of tags T; every tag id must lie in [0, T). Default: -1 (the
  /// largest tag id + 1)
  TORCH_ARG(int64_t, num_tags) = -1;
  /// Draws per epoch L over all ranks. Default: -1 (the number of images N)
  TORCH_ARG(int64_t, epoch_length) = -1;
  /// Seed of every draw; epoch e's stream is a pure function of (seed, e).
  /// Default: 0
  TORCH_ARG(uint64_t, seed) = 0;
  /// This process's rank in [0, world_size). Default: 0
  TORCH_ARG(int64_t, rank) = 0;
  /// Number of ranks sharing one global epoch. Default: 1
  TORCH_ARG(int64_t, world_size) = 1;
  /// With several ranks: true drops the last L mod world_size draws, false
  /// pads by wrapping around to the first draws (DistributedSampler).
  /// Default: false
  TORCH_ARG(bool, drop_last) = false;
  /// Independent draws or a replicated fixed list. Default: kDraw
  TORCH_ARG(ResamplingMode, mode) = ResamplingMode::kDraw;

 public:
  /// Sets alpha from a named scheme.
  HashtagResamplerOptions& scheme(SamplingScheme s) {
    alpha_ = sampling_exponent(s);
    return *this;
  }
};

/// What the resampler found in the data (none of it is an error).
struct HashtagResamplerReport {
  int64_t num_images = 0;
  int64_t num_tags = 0;
  /// (image, tag) pairs.
  int64_t num_pairs = 0;
  /// Images without a tag: never drawn, weight 0.
  int64_t num_untagged_images = 0;
  /// Tags that no image carries: mass 0.
  int64_t num_unused_tags = 0;
  double alpha = 1.0;
};

/// Hashtag resampling of Mahajan et al., "Exploring the Limits of Weakly
/// Supervised Pretraining" (ECCV 2018), as a LibTorch sampler of image
/// indices.
///
/// Rule: tag h carried by n_h images gets mass m_h = n_h^alpha (alpha = 0:
/// every used tag gets 1; a tag no image carries gets 0). A draw picks tag h
/// with probability p_h = m_h / sum_h' m_h', then one of its n_h images
/// uniformly. Image i is therefore drawn with probability
///   w_i = sum_{h in tags(i)} p_h / n_h            (`image_weights()`),
/// and an untagged image never. The tag is drawn from a Walker/Vose alias
/// table built in double precision over the T tags (O(T)); the image from a
/// tag -> images inverted index (O(P) set-up for P image-tag pairs, 4 bytes
/// per pair while N < 2^32); each draw is O(1) and exact up to double
/// rounding of p_h, for any N (far above the 2^24 categories
/// `torch::multinomial` accepts).
///
/// Randomness is counter-based: draw i of epoch e uses outputs 3i, 3i+1, 3i+2
/// of the SplitMix64 stream whose key is the epoch key of (seed, e) in the
/// resampler's stream (`detail/splitmix.h`) (column word, coin, image word;
/// bounded integers by Lemire's unbiased method, the coin with 53 bits). So
/// every rank computes the same global epoch without materializing it, a rank
/// takes positions i = rank, rank + W, rank + 2W, ... (DistributedSampler's
/// interleaving; padded by wrapping around to the first positions, or dropped
/// with `drop_last`), and save/load only stores the position.
///
/// In `kReplicate` mode the epoch is the fixed list described at
/// `ResamplingMode::kReplicate`, materialized (8 bytes per entry) and
/// shuffled by a Fisher-Yates pass with a sequential SplitMix64 started at the
/// same epoch key.
///
/// Like `DistributedSampler`, the epoch's stream only changes through
/// `set_epoch`; `reset()` rewinds the current epoch.
///
/// Thread safety: the const queries (`sample`, `draw`, `image_weights`, ...)
/// only read, so several threads may draw disjoint position ranges of one
/// epoch at once; `next`, `reset`, `set_epoch`, `load` and `epoch_indices`
/// in kReplicate mode mutate and need external synchronization.
///
/// Example:
///   auto tags = dlcore::TagLists::from_labels(train.targets);
///   dlcore::HashtagResampler sampler(
///       tags,
///       dlcore::HashtagResamplerOptions(dlcore::SamplingScheme::kUniform)
///                 .seed(1));
///   for (int64_t epoch = 0; epoch < 10; ++epoch) {
///     sampler.set_epoch(epoch);
///     while (auto idx = sampler.next(128)) {
///       auto i = torch::tensor(std::vector<int64_t>(idx->begin(),
///       idx->end())); auto x = train.data.index_select(0, i);
///     }
///   }
///
/// Differences from PyTorch (Python): `WeightedRandomSampler` takes per-image
/// weights and calls `torch.multinomial`, which refuses more than 2^24
/// categories and samples in float; here the weights come from tag counts,
/// the draw is two-stage and exact in double, and the sampler shards like
/// `DistributedSampler`. LibTorch has no weighted sampler.
class HashtagResampler : public torch::data::samplers::Sampler<> {
 public:
  static constexpr int64_t kVersion = 1;
  /// The largest epoch length L accepted (2^62), far from int64 overflow in
  /// the position arithmetic.
  static constexpr int64_t kMaxEpochLength = int64_t{1} << 62;

  /// Multi-label (or single-label) data as tag lists. The data is indexed
  /// once; the tensors need not outlive the sampler.
  explicit HashtagResampler(
      const TagLists& tags, HashtagResamplerOptions options = {})
      : options_(std::move(options)) {
    tags.check("HashtagResampler");
    check_options();
    // Indexed on the CPU: CUDA tag lists are copied once.
    auto off = tags.offsets.to(torch::kCPU).contiguous();
    auto t = tags.tags.to(torch::kCPU).contiguous();
    if (t.scalar_type() == torch::kLong) {
      build_csr(off.data_ptr<int64_t>(), t.data_ptr<int64_t>(), tags.size());
    } else {
      build_csr(off.data_ptr<int64_t>(), t.data_ptr<int32_t>(), tags.size());
    }
  }

  /// Single-label data: int64 or int32 labels [N], a negative label meaning
  /// "no tag". Uses no offsets, so the memory is 4 bytes per image. Labels on
  /// a GPU are copied to the CPU once.
  explicit HashtagResampler(
      const torch::Tensor& labels, HashtagResamplerOptions options = {})
      : options_(std::move(options)) {
    TORCH_CHECK(
        labels.defined() && labels.dim() == 1 &&
            (labels.scalar_type() == torch::kLong ||
             labels.scalar_type() == torch::kInt),
        "HashtagResampler: expected int64 or int32 labels of shape [N], "
        "but got ",
        labels.defined() ? labels.toString() : std::string("undefined"),
        labels.defined() ? labels.sizes() : torch::IntArrayRef{});
    detail::check_has_data(labels, "HashtagResampler", "labels");
    check_options();
    auto l = labels.to(torch::kCPU).contiguous();
    if (l.scalar_type() == torch::kLong) {
      build_labels(l.data_ptr<int64_t>(), l.numel());
    } else {
      build_labels(l.data_ptr<int32_t>(), l.numel());
    }
  }

  const HashtagResamplerOptions& options() const {
    return options_;
  }

  const HashtagResamplerReport& report() const {
    return report_;
  }

  int64_t num_images() const {
    return report_.num_images;
  }

  int64_t num_tags() const {
    return report_.num_tags;
  }

  /// Draws per epoch over all ranks (L).
  int64_t epoch_length() const {
    return epoch_length_;
  }

  /// Draws this rank yields per epoch: ceil(L / W), or floor with drop_last.
  int64_t local_length() const {
    return local_length_of(epoch_length_);
  }

  int64_t epoch() const {
    return epoch_;
  }

  /// Position in this rank's slice of the current epoch.
  int64_t position() const {
    return position_;
  }

  /// Selects epoch `e` (its own stream) and rewinds to its start.
  void set_epoch(int64_t e) {
    TORCH_CHECK(e >= 0, "HashtagResampler: epoch must be >= 0, but got ", e);
    epoch_ = e;
    position_ = 0;
  }

  /// Rewinds the current epoch; `new_size` sets a new epoch length L.
  void reset(torch::optional<size_t> new_size = torch::nullopt) override {
    if (new_size.has_value()) {
      TORCH_CHECK(
          *new_size <= static_cast<size_t>(kMaxEpochLength),
          "HashtagResampler::reset: expected an epoch length in [0, 2^62], "
          "but got ",
          *new_size);
      check_epoch_length(
          static_cast<int64_t>(*new_size), "HashtagResampler::reset");
      epoch_length_ = static_cast<int64_t>(*new_size);
      replicate_counts_.clear();
      replicate_epoch_ = -1;
    }
    position_ = 0;
  }

  /// The next at most `batch_size` image indices of this rank's slice, or
  /// nullopt once the slice is exhausted.
  torch::optional<std::vector<size_t>> next(size_t batch_size) override {
    const int64_t local = local_length();
    if (position_ >= local) {
      return torch::nullopt;
    }
    const int64_t n =
        std::min<int64_t>(static_cast<int64_t>(batch_size), local - position_);
    std::vector<size_t> out(static_cast<size_t>(n));
    const int64_t w = options_.world_size();
    const int64_t r = options_.rank();
    if (options_.mode() == ResamplingMode::kReplicate) {
      ensure_replicate_epoch(epoch_);
    }
    const uint64_t key = epoch_key(epoch_);
    for (int64_t j = 0; j < n; ++j) {
      int64_t p = r + (position_ + j) * w;
      if (p >= epoch_length_) {
        p %= epoch_length_;
      }
      out[static_cast<size_t>(j)] = static_cast<size_t>(
          options_.mode() == ResamplingMode::kReplicate
              ? replicate_list_[static_cast<size_t>(p)]
              : draw_at(key, static_cast<uint64_t>(p)));
    }
    position_ += n;
    return out;
  }

  /// Global position `p` of epoch `e` in kDraw mode: a pure function of
  /// (seed, e, p), whatever the rank.
  int64_t sample(int64_t e, int64_t p) const {
    TORCH_CHECK(
        options_.mode() == ResamplingMode::kDraw,
        "HashtagResampler::sample: only in kDraw mode");
    return draw_at(epoch_key(e), static_cast<uint64_t>(p));
  }

  /// Fills out[0 .. count) with global positions first .. first + count of
  /// epoch `e` (kDraw mode); the hot path, with no allocation.
  void draw(int64_t e, int64_t first, int64_t count, int64_t* out) const {
    TORCH_CHECK(
        options_.mode() == ResamplingMode::kDraw,
        "HashtagResampler::draw: only in kDraw mode");
    const uint64_t key = epoch_key(e);
    if (ids64_.empty()) {
      draw_loop(key, first, count, out, ids32_.data());
    } else {
      draw_loop(key, first, count, out, ids64_.data());
    }
  }

  /// The whole global epoch `e` (all ranks, L entries), int64 [L].
  torch::Tensor epoch_indices(int64_t e) {
    auto out = torch::empty({epoch_length_}, torch::kLong);
    if (options_.mode() == ResamplingMode::kReplicate) {
      ensure_replicate_epoch(e);
      std::copy(
          replicate_list_.begin(),
          replicate_list_.end(),
          out.data_ptr<int64_t>());
    } else {
      draw(e, 0, epoch_length_, out.data_ptr<int64_t>());
    }
    return out;
  }

  /// n_h: images carrying each tag, int64 [T].
  torch::Tensor tag_counts() const {
    auto out = torch::empty({report_.num_tags}, torch::kLong);
    auto* o = out.data_ptr<int64_t>();
    for (int64_t h = 0; h < report_.num_tags; ++h) {
      o[h] = tag_offsets_[h + 1] - tag_offsets_[h];
    }
    return out;
  }

  /// p_h = n_h^alpha / sum n_h'^alpha, float64 [T].
  torch::Tensor tag_probabilities() const {
    auto out = torch::empty({report_.num_tags}, torch::kDouble);
    std::copy(tag_p_.begin(), tag_p_.end(), out.data_ptr<double>());
    return out;
  }

  /// w_i = sum_{h in tags(i)} p_h / n_h, float64 [N] (0 for untagged images);
  /// computed on demand in O(P).
  torch::Tensor image_weights() const {
    auto out = torch::zeros({report_.num_images}, torch::kDouble);
    double* w = out.data_ptr<double>();
    for (int64_t h = 0; h < report_.num_tags; ++h) {
      const int64_t b = tag_offsets_[h];
      const int64_t e = tag_offsets_[h + 1];
      if (e == b) {
        continue;
      }
      const double share = tag_p_[h] / static_cast<double>(e - b);
      for (int64_t k = b; k < e; ++k) {
        w[image_at(k)] += share;
      }
    }
    return out;
  }

  /// Saves the seed, epoch, position, epoch length and the configuration the
  /// position refers to, in dlcore's state format (detail/state.h,
  /// docs/state.md): type `dlcore.HashtagResampler`, version 1, integer
  /// fields `seed` (the uint64 seed's bits), `epoch`, `position`,
  /// `epoch_length`, `rank`, `world_size`, `num_images`, `num_tags`, `mode`
  /// (0 kDraw, 1 kReplicate) and the float `alpha`.
  void save(torch::serialize::OutputArchive& archive) const override {
    detail::StateWriter(archive, "HashtagResampler", kVersion)
        .put_int("seed", static_cast<int64_t>(options_.seed()))
        .put_int("epoch", epoch_)
        .put_int("position", position_)
        .put_int("epoch_length", epoch_length_)
        .put_int("rank", options_.rank())
        .put_int("world_size", options_.world_size())
        .put_int("num_images", report_.num_images)
        .put_int("num_tags", report_.num_tags)
        .put_int("mode", static_cast<int64_t>(options_.mode()))
        .put_double("alpha", options_.alpha());
  }

  /// Restores what `save` wrote. The sampler must have been built on the same
  /// data (N, T), alpha, mode, rank and world size; the seed is restored.
  /// Every field is checked as the setters would (kinds, version, epoch >= 0,
  /// an epoch length within `check_epoch_length`'s bounds, 0 <= position <=
  /// this rank's share of the epoch) before anything changes: on error the
  /// sampler is left as it was. Archives of the legacy format (one 0-d
  /// buffer per key) load too.
  void load(torch::serialize::InputArchive& archive) override {
    const char* owner = "HashtagResampler::load";
    const SavedState saved =
        !detail::holds_state(archive) &&
                !detail::state_entry(archive, "num_tags").isNone()
            ? read_legacy(archive)
            : read_state(archive);
    auto expect = [&](const char* key, int64_t value, int64_t mine) {
      TORCH_CHECK(
          value == mine,
          owner,
          ": the saved state has ",
          key,
          " = ",
          value,
          ", but this sampler has ",
          mine);
    };
    expect("num_images", saved.num_images, report_.num_images);
    expect("num_tags", saved.num_tags, report_.num_tags);
    expect("rank", saved.rank, options_.rank());
    expect("world_size", saved.world_size, options_.world_size());
    expect("mode", saved.mode, static_cast<int64_t>(options_.mode()));
    TORCH_CHECK(
        saved.alpha == options_.alpha(),
        owner,
        ": the saved state has alpha = ",
        saved.alpha,
        ", but this sampler has ",
        options_.alpha());
    const int64_t length = saved.epoch_length;
    check_epoch_length(length, owner);
    const int64_t epoch = saved.epoch;
    TORCH_CHECK(
        epoch >= 0, owner, ": expected a saved epoch >= 0, but got ", epoch);
    const int64_t position = saved.position;
    const int64_t local = local_length_of(length);
    TORCH_CHECK(
        position >= 0 && position <= local,
        owner,
        ": expected a saved position in [0, ",
        local,
        "] (this rank's draws of an epoch of ",
        length,
        "), but got ",
        position);
    const int64_t seed = saved.seed;
    if (length != epoch_length_) {
      epoch_length_ = length;
      replicate_counts_.clear();
    }
    options_.seed(static_cast<uint64_t>(seed));
    replicate_epoch_ = -1;
    epoch_ = epoch;
    position_ = position;
  }

  /// Saves the state to a file, atomically (a temporary file in the same
  /// folder, synced, then a rename): on failure `path` is left as it was.
  void save(const std::string& path) const {
    detail::save_archive_file(*this, path, "HashtagResampler");
  }

  /// Loads a state written by `save(path)`. Only a regular file is opened,
  /// and the archive is checked (`detail::check_archive`: zip structure,
  /// CRC-32 of every entry, a bounded pickle walk) before LibTorch parses it;
  /// every error is a `c10::Error` naming the file.
  void load(const std::string& path) {
    detail::load_archive_file(*this, path, "HashtagResampler::load");
  }

 private:
  /// A saved state, read from either format.
  struct SavedState {
    int64_t seed = 0, epoch = 0, position = 0, epoch_length = 0, rank = 0,
            world_size = 0, num_images = 0, num_tags = 0, mode = 0;
    double alpha = 0;
  };

  static SavedState read_state(torch::serialize::InputArchive& archive) {
    const detail::StateReader state(
        archive, "HashtagResampler::load", "HashtagResampler", kVersion);
    SavedState s;
    s.seed = state.read_int("seed");
    s.epoch = state.read_int("epoch");
    s.position = state.read_int("position");
    s.epoch_length = state.read_int("epoch_length");
    s.rank = state.read_int("rank");
    s.world_size = state.read_int("world_size");
    s.num_images = state.read_int("num_images");
    s.num_tags = state.read_int("num_tags");
    s.mode = state.read_int("mode");
    s.alpha = state.read_double("alpha");
    return s;
  }

  /// The legacy format: one 0-d buffer per key (int64, alpha float64) and
  /// `version` 1.
  static SavedState read_legacy(torch::serialize::InputArchive& archive) {
    auto get = [&archive](const char* key, torch::ScalarType dtype) {
      torch::Tensor t;
      archive.read(key, t, /*is_buffer=*/true);
      TORCH_CHECK(
          t.defined() && t.scalar_type() == dtype && t.numel() == 1 &&
              t.device().is_cpu(),
          "HashtagResampler::load: expected the saved `",
          key,
          "` to be one CPU ",
          c10::toString(dtype),
          " value, but got ",
          t.defined() ? t.toString() : std::string("undefined"),
          " of shape ",
          t.defined() ? t.sizes() : torch::IntArrayRef{});
      return t;
    };
    auto get_int = [&](const char* key) {
      return get(key, torch::kLong).item<int64_t>();
    };
    const int64_t version = get_int("version");
    TORCH_CHECK(
        version == 1,
        "HashtagResampler::load: expected the legacy state of version 1, but "
        "got ",
        version);
    SavedState s;
    s.seed = get_int("seed");
    s.epoch = get_int("epoch");
    s.position = get_int("position");
    s.epoch_length = get_int("epoch_length");
    s.rank = get_int("rank");
    s.world_size = get_int("world_size");
    s.num_images = get_int("num_images");
    s.num_tags = get_int("num_tags");
    s.mode = get_int("mode");
    s.alpha = get("alpha", torch::kDouble).item<double>();
    return s;
  }

  /// Draws this rank yields of an epoch of `length` draws.
  int64_t local_length_of(int64_t length) const {
    const int64_t w = options_.world_size();
    if (length == 0) {
      return 0;
    }
    // length <= kMaxEpochLength, so length + w - 1 cannot overflow.
    return options_.drop_last() ? length / w : (length + w - 1) / w;
  }

  /// Throws unless `length` is a valid epoch length L: 0 <= L <= 2^62 and,
  /// in kReplicate mode (which materializes the epoch, 8 bytes per draw),
  /// L * 8 bytes no larger than this machine's memory.
  void check_epoch_length(int64_t length, const char* owner) const {
    TORCH_CHECK(
        length >= 0 && length <= kMaxEpochLength,
        owner,
        ": expected an epoch length in [0, 2^62], but got ",
        length);
    if (options_.mode() == ResamplingMode::kReplicate) {
      const long pages = ::sysconf(_SC_PHYS_PAGES);
      const long page = ::sysconf(_SC_PAGE_SIZE);
      const double physical =
          static_cast<double>(pages) * static_cast<double>(page);
      TORCH_CHECK(
          pages <= 0 || page <= 0 ||
              static_cast<double>(length) * 8.0 <= physical,
          owner,
          ": kReplicate materializes the epoch (8 bytes per draw), but an "
          "epoch length of ",
          length,
          " needs ",
          static_cast<double>(length) * 8.0,
          " bytes, more than this machine's memory (",
          physical,
          " bytes)");
    }
  }

  void check_options() {
    TORCH_CHECK(
        std::isfinite(options_.alpha()) && options_.alpha() >= 0.0,
        "HashtagResampler: alpha must be a finite number >= 0, but got ",
        options_.alpha());
    TORCH_CHECK(
        options_.num_tags() == -1 ||
            (options_.num_tags() >= 1 && options_.num_tags() <= UINT32_MAX),
        "HashtagResampler: num_tags must be -1 (infer) or in [1, 2^32), but "
        "got ",
        options_.num_tags());
    TORCH_CHECK(
        options_.epoch_length() >= -1,
        "HashtagResampler: epoch_length must be -1 (N) or >= 0, but got ",
        options_.epoch_length());
    TORCH_CHECK(
        options_.world_size() >= 1,
        "HashtagResampler: world_size must be >= 1, but got ",
        options_.world_size());
    TORCH_CHECK(
        options_.rank() >= 0 && options_.rank() < options_.world_size(),
        "HashtagResampler: rank must be in [0, world_size = ",
        options_.world_size(),
        "), but got ",
        options_.rank());
  }

  // `visit(f)` calls f(image, tag) for every pair, image after image.
  template <typename Visit>
  void build(int64_t n, int64_t num_pairs, int64_t num_untagged, Visit visit) {
    TORCH_CHECK(
        num_pairs > 0,
        "HashtagResampler: the total tag mass is zero: none of the ",
        n,
        " images carries a tag");
    const int64_t t = report_.num_tags;
    report_.num_images = n;
    report_.num_pairs = num_pairs;
    report_.num_untagged_images = num_untagged;
    report_.alpha = options_.alpha();
    // Counts, then the inverted index (images ascending within each tag).
    std::vector<int64_t> count(static_cast<size_t>(t), 0);
    visit([&count](int64_t, int64_t h) { ++count[static_cast<size_t>(h)]; });
    tag_offsets_.assign(static_cast<size_t>(t) + 1, 0);
    int64_t n_max = 0;
    for (int64_t h = 0; h < t; ++h) {
      tag_offsets_[h + 1] = tag_offsets_[h] + count[h];
      n_max = std::max(n_max, count[h]);
      report_.num_unused_tags += count[h] == 0 ? 1 : 0;
    }
    std::vector<int64_t>& cursor = count;
    std::copy(tag_offsets_.begin(), tag_offsets_.end() - 1, cursor.begin());
    if (n <= static_cast<int64_t>(UINT32_MAX)) {
      ids32_.resize(static_cast<size_t>(num_pairs));
      visit([this, &cursor](int64_t i, int64_t h) {
        ids32_[static_cast<size_t>(cursor[h]++)] = static_cast<uint32_t>(i);
      });
    } else {
      ids64_.resize(static_cast<size_t>(num_pairs));
      visit([this, &cursor](int64_t i, int64_t h) {
        ids64_[static_cast<size_t>(cursor[h]++)] = static_cast<uint64_t>(i);
      });
    }
    // Masses (n_h / n_max)^alpha: the same ratios as n_h^alpha, no overflow.
    std::vector<double> mass(static_cast<size_t>(t), 0.0);
    double total = 0.0;
    for (int64_t h = 0; h < t; ++h) {
      const int64_t c = tag_offsets_[h + 1] - tag_offsets_[h];
      if (c > 0) {
        mass[h] = options_.alpha() == 0.0
                      ? 1.0
                      : std::pow(
                            static_cast<double>(c) / static_cast<double>(n_max),
                            options_.alpha());
      }
      total += mass[h];
    }
    TORCH_CHECK(
        total > 0.0 && std::isfinite(total),
        "HashtagResampler: the total tag mass is zero (alpha = ",
        options_.alpha(),
        " underflows every tag's mass)");
    tag_p_.resize(static_cast<size_t>(t));
    for (int64_t h = 0; h < t; ++h) {
      tag_p_[h] = mass[h] / total;
    }
    table_ = detail::AliasTable(mass);
    epoch_length_ = options_.epoch_length() == -1 ? n : options_.epoch_length();
    check_epoch_length(epoch_length_, "HashtagResampler");
  }

  template <typename TagT>
  void build_csr(const int64_t* off, const TagT* tags, int64_t n) {
    const int64_t p = off[n];
    int64_t t = options_.num_tags();
    if (t == -1) {
      int64_t mx = -1;
      for (int64_t k = 0; k < p; ++k) {
        mx = std::max<int64_t>(mx, tags[k]);
      }
      TORCH_CHECK(
          mx < static_cast<int64_t>(UINT32_MAX),
          "HashtagResampler: expected fewer than 2^32 tags, but the largest "
          "tag id is ",
          mx);
      t = std::max<int64_t>(mx + 1, 1);
    }
    report_.num_tags = t;
    int64_t untagged = 0;
    std::vector<int64_t> scratch;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t b = off[i];
      const int64_t e = off[i + 1];
      untagged += e == b ? 1 : 0;
      for (int64_t k = b; k < e; ++k) {
        TORCH_CHECK(
            tags[k] >= 0 && tags[k] < t,
            "HashtagResampler: image ",
            i,
            " has tag id ",
            static_cast<int64_t>(tags[k]),
            ", outside [0, num_tags = ",
            t,
            ")");
      }
      if (e - b >= 2) {
        scratch.assign(tags + b, tags + e);
        std::sort(scratch.begin(), scratch.end());
        auto dup = std::adjacent_find(scratch.begin(), scratch.end());
        TORCH_CHECK(
            dup == scratch.end(),
            "HashtagResampler: image ",
            i,
            " lists tag ",
            dup == scratch.end() ? 0 : *dup,
            " more than once; expected distinct tags per image");
      }
    }
    build(n, p, untagged, [off, tags, n](auto&& f) {
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t k = off[i]; k < off[i + 1]; ++k) {
          f(i, static_cast<int64_t>(tags[k]));
        }
      }
    });
  }

  template <typename TagT>
  void build_labels(const TagT* labels, int64_t n) {
    int64_t t = options_.num_tags();
    int64_t mx = -1;
    int64_t untagged = 0;
    for (int64_t i = 0; i < n; ++i) {
      mx = std::max<int64_t>(mx, labels[i]);
      untagged += labels[i] < 0 ? 1 : 0;
    }
    if (t == -1) {
      TORCH_CHECK(
          mx < static_cast<int64_t>(UINT32_MAX),
          "HashtagResampler: expected fewer than 2^32 tags, but the largest "
          "label is ",
          mx);
      t = std::max<int64_t>(mx + 1, 1);
    } else if (mx >= t) {
      for (int64_t i = 0; i < n; ++i) {
        TORCH_CHECK(
            labels[i] < t,
            "HashtagResampler: image ",
            i,
            " has tag id ",
            static_cast<int64_t>(labels[i]),
            ", outside [0, num_tags = ",
            t,
            ")");
      }
    }
    report_.num_tags = t;
    build(n, n - untagged, untagged, [labels, n](auto&& f) {
      for (int64_t i = 0; i < n; ++i) {
        if (labels[i] >= 0) {
          f(i, static_cast<int64_t>(labels[i]));
        }
      }
    });
  }

  // The key of epoch `e`: the epoch key of the resampler's stream, the one
  // (seed, epoch) derivation of detail/splitmix.h.
  uint64_t epoch_key(int64_t e) const {
    return detail::splitmix_epoch_key(
        options_.seed(),
        static_cast<uint64_t>(e),
        detail::kHashtagResamplerStream);
  }

  int64_t image_at(int64_t k) const {
    return ids64_.empty() ? static_cast<int64_t>(ids32_[k])
                          : static_cast<int64_t>(ids64_[k]);
  }

  // Position p's slot in the inverted index: alias draw of the tag, then a
  // uniform slot among its n_h images.
  int64_t slot_of(uint64_t key, uint64_t p) const {
    const uint64_t base = 3 * p;
    const uint32_t h = table_.sample(
        detail::splitmix_at(key, base),
        detail::uniform53(detail::splitmix_at(key, base + 1)));
    const int64_t b = tag_offsets_[h];
    const uint64_t c = static_cast<uint64_t>(tag_offsets_[h + 1] - b);
    return b + static_cast<int64_t>(
                   detail::bounded_at(detail::splitmix_at(key, base + 2), c));
  }

  int64_t draw_at(uint64_t key, uint64_t p) const {
    return image_at(slot_of(key, p));
  }

  // Two passes over blocks of positions: slots first (prefetching the image
  // ids, a cache miss each when N is large), then the ids, so the misses of a
  // block overlap.
  template <typename Id>
  void draw_loop(
      uint64_t key, int64_t first, int64_t count, int64_t* out, const Id* ids)
      const {
    constexpr int64_t kBlock = 64;
    int64_t slots[kBlock];
    for (int64_t j0 = 0; j0 < count; j0 += kBlock) {
      const int64_t m = std::min(kBlock, count - j0);
      for (int64_t j = 0; j < m; ++j) {
        slots[j] = slot_of(key, static_cast<uint64_t>(first + j0 + j));
        __builtin_prefetch(ids + slots[j]);
      }
      for (int64_t j = 0; j < m; ++j) {
        out[j0 + j] = static_cast<int64_t>(ids[slots[j]]);
      }
    }
  }

  // kReplicate: counts round(w_i L) by largest remainder (ties by index),
  // then a list shuffled for epoch e.
  void ensure_replicate_epoch(int64_t e) {
    if (replicate_epoch_ == e && !replicate_counts_.empty()) {
      return;
    }
    const int64_t n = report_.num_images;
    const int64_t length = epoch_length_;
    if (replicate_counts_.empty() && n > 0) {
      auto w = image_weights();
      const double* wp = w.data_ptr<double>();
      replicate_counts_.assign(static_cast<size_t>(n), 0);
      std::vector<std::pair<double, int64_t>> rem;
      rem.reserve(static_cast<size_t>(n));
      int64_t assigned = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double x = wp[i] * static_cast<double>(length);
        const double f = std::floor(x);
        replicate_counts_[i] = static_cast<int64_t>(f);
        assigned += replicate_counts_[i];
        if (wp[i] > 0.0) {
          rem.emplace_back(x - f, i);
        }
      }
      int64_t left = length - assigned;
      TORCH_INTERNAL_ASSERT(left >= 0);
      auto by_remainder = [](const std::pair<double, int64_t>& a,
                             const std::pair<double, int64_t>& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
      };
      // Rounding of the weights can leave more than N remainders to hand out;
      // go round again in the same order.
      std::sort(rem.begin(), rem.end(), by_remainder);
      while (left > 0 && !rem.empty()) {
        for (size_t k = 0; k < rem.size() && left > 0; ++k, --left) {
          ++replicate_counts_[rem[k].second];
        }
      }
    }
    replicate_list_.resize(static_cast<size_t>(length));
    size_t k = 0;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t c = 0; c < replicate_counts_[i]; ++c) {
        replicate_list_[k++] = i;
      }
    }
    TORCH_INTERNAL_ASSERT(k == static_cast<size_t>(length));
    detail::SplitMix64 rng(epoch_key(e));
    for (size_t i = replicate_list_.size(); i > 1; --i) {
      std::swap(replicate_list_[i - 1], replicate_list_[rng.below(i)]);
    }
    replicate_epoch_ = e;
  }

  HashtagResamplerOptions options_;
  HashtagResamplerReport report_;
  std::vector<int64_t> tag_offsets_;
  std::vector<uint32_t, detail::HugePageAllocator<uint32_t>> ids32_;
  std::vector<uint64_t, detail::HugePageAllocator<uint64_t>> ids64_;
  std::vector<double> tag_p_;
  detail::AliasTable table_;
  int64_t epoch_length_ = 0;
  int64_t epoch_ = 0;
  int64_t position_ = 0;
  std::vector<int64_t> replicate_counts_;
  std::vector<int64_t> replicate_list_;
  int64_t replicate_epoch_ = -1;
};

} // namespace dlcore
