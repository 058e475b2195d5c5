#pragma once

#include <dlcore/data/detail/selector/class_buffers.h>
#include <dlcore/data/detail/selector/row_scan.h>
#include <dlcore/data/tensor_dataset.h>
#include <dlcore/detail/archive.h>
#include <dlcore/detail/atomic_file.h>
#include <dlcore/detail/state.h>
#include <dlcore/detail/thread_pool.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/arg.h>
#include <torch/data/datasets/base.h>
#include <torch/data/example.h>
#include <torch/serialize/archive.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <iterator>
#include <limits>
#include <map>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <unistd.h>

namespace dlcore {

/// Options of `TopKTopPSelector`.
///
/// Example:
///   dlcore::TopKTopPSelectorOptions opts(/*num_classes=*/1000, /*k=*/16000,
///                                        /*p=*/10);
///   opts.softmax(true).num_threads(2);
struct TopKTopPSelectorOptions {
  TopKTopPSelectorOptions(int64_t num_classes, int64_t k, int64_t p)
      : num_classes_(num_classes), k_(k), p_(p) {}

  /// Number of classes C: the width of every chunk of scores.
  TORCH_ARG(int64_t, num_classes);
  /// Images kept per class (K, 16000 in Yalniz et al. on ImageNet).
  TORCH_ARG(int64_t, k);
  /// Classes kept per image (P, 10 in Yalniz et al.); 1 <= p <= num_classes.
  TORCH_ARG(int64_t, p);
  /// Treat chunks as logits and apply a softmax per row, in float64, before
  /// selecting; scores in the result are then probabilities. Default: false
  TORCH_ARG(bool, softmax) = false;
  /// Threads that ingest one chunk (row blocks, each thread with its own
  /// per-class buffers, merged exactly when the result is taken) and that
  /// sort the classes in `result()`. They run on the library's thread pool,
  /// at most `pool_threads()` at once; the result is the same for any
  /// value. Default: 1
  TORCH_ARG(int64_t, num_threads) = 1;

 public:
  /// Throws when an option is out of range; `owner` names the caller.
  void check(const std::string& owner) const {
    TORCH_CHECK(
        num_classes_ >= 1,
        owner,
        ": expected num_classes >= 1, but got ",
        num_classes_);
    TORCH_CHECK(k_ >= 1, owner, ": expected k >= 1, but got ", k_);
    TORCH_CHECK(p_ >= 1, owner, ": expected p >= 1, but got ", p_);
    TORCH_CHECK(
        p_ <= num_classes_,
        owner,
        ": expected p <= num_classes (",
        num_classes_,
        "), but got p = ",
        p_);
    TORCH_CHECK(
        num_threads_ >= 1,
        owner,
        ": expected num_threads >= 1, but got ",
        num_threads_);
    // The per-class buffers of one thread: num_classes * capacity(k)
    // entries of 16 bytes in one allocation, whose size must fit in int64.
    int64_t slots = 0;
    int64_t bytes = 0;
    const bool fits =
        k_ <= std::numeric_limits<int64_t>::max() / 2 &&
        !__builtin_mul_overflow(
            num_classes_, detail::topk_capacity(k_), &slots) &&
        !__builtin_mul_overflow(
            slots, static_cast<int64_t>(sizeof(detail::TopKEntry)), &bytes);
    TORCH_CHECK(
        fits,
        owner,
        ": expected num_classes * k small enough that the per-class buffers "
        "(num_classes * 1.5 k entries of 16 bytes) fit in 2^63 bytes, but "
        "got num_classes ",
        num_classes_,
        ", k ",
        k_);
    // One thread's buffers must fit in the machine's memory (reserved at
    // once, touched as entries arrive).
    const long pages = ::sysconf(_SC_PHYS_PAGES);
    const long page = ::sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0) {
      const double physical =
          static_cast<double>(pages) * static_cast<double>(page);
      TORCH_CHECK(
          static_cast<double>(bytes) <= physical,
          owner,
          ": expected per-class buffers (num_classes * 1.5 k entries of 16 "
          "bytes = ",
          bytes,
          " bytes for num_classes ",
          num_classes_,
          ", k ",
          k_,
          ") no larger than this machine's memory (",
          static_cast<int64_t>(physical),
          " bytes)");
    }
  }
};

/// The images selected for every class: D-hat of Yalniz et al. 2019.
///
/// Entry i says that image `indices[i]` gets label `labels[i]` with teacher
/// score `scores[i]`. Entries are sorted by class, then by rank within the
/// class (score descending, index ascending). An image appears once per
/// class that selected it, so at most P times.
struct TopKTopPResult {
  /// Global image index per entry, int64 [M].
  torch::Tensor indices;
  /// Class (pseudo-label) per entry, int64 [M].
  torch::Tensor labels;
  /// Teacher score per entry (the probability when softmax is on), float64
  /// [M].
  torch::Tensor scores;
  /// Entries per class, int64 [C]; at most K.
  torch::Tensor counts;
  /// K minus the count per class, int64 [C]: classes that fewer than K
  /// images had among their top-P classes.
  torch::Tensor shortfalls;
  /// int64 [P + 1]: element j (1 <= j <= P) counts the images selected for
  /// exactly j classes; element 0 counts ingested rows selected for none.
  torch::Tensor labels_per_image;
  int64_t num_classes = 0;
  int64_t k = 0;
  int64_t p = 0;
  /// Rows ingested.
  int64_t rows_seen = 0;

  /// Number of entries M (the size of D-hat).
  int64_t size() const {
    return indices.defined() ? indices.size(0) : 0;
  }

  /// Number of distinct images selected for at least one class.
  int64_t num_images() const {
    return rows_seen - labels_per_image[0].item<int64_t>();
  }

  /// D-hat as an in-memory data set: `images` holds the unlabelled pool with
  /// image i at row i - first_index; images are replicated once per selected
  /// class, as in the paper. Usable directly by `dlcore::Batches`.
  TensorDataset dataset(
      const torch::Tensor& images, int64_t first_index = 0) const {
    check_images(images, first_index);
    auto rows = indices - first_index;
    return TensorDataset{
        images.index_select(0, rows.to(images.device())),
        labels.to(images.device())};
  }

  /// Throws unless every selected index has a row in `images`.
  void check_images(const torch::Tensor& images, int64_t first_index) const {
    TORCH_CHECK(
        images.defined() && images.dim() >= 1,
        "TopKTopPResult: expected images with a leading sample dimension, but "
        "got ",
        images.defined() ? images.sizes() : at::IntArrayRef{});
    if (size() == 0) {
      return;
    }
    const auto lo = indices.min().item<int64_t>();
    const auto hi = indices.max().item<int64_t>();
    TORCH_CHECK(
        lo >= first_index && hi < first_index + images.size(0),
        "TopKTopPResult: expected images to cover indices [",
        lo,
        ", ",
        hi,
        "], but they cover [",
        first_index,
        ", ",
        first_index + images.size(0),
        ")");
  }
};

/// A view of D-hat that yields each selected image once per selected class
/// without copying the pool: example i is (images[indices[i] - first_index],
/// labels[i]). Usable with `torch::data::make_data_loader` and any sampler.
///
/// Example:
///   auto result = selector.result();
///   auto view = dlcore::PseudoLabelDataset(result, pool_images);
///   auto loader = torch::data::make_data_loader(
///       view.map(torch::data::transforms::Stack<>()), 256);
class PseudoLabelDataset
    : public torch::data::datasets::Dataset<PseudoLabelDataset> {
 public:
  PseudoLabelDataset(
      const TopKTopPResult& result,
      torch::Tensor images,
      int64_t first_index = 0)
      : images_(std::move(images)),
        rows_(
            (result.check_images(images_, first_index),
             result.indices - first_index)),
        labels_(result.labels) {}

  torch::data::Example<> get(size_t i) override {
    const auto j = static_cast<int64_t>(i);
    return {images_[rows_[j].item<int64_t>()], labels_[j]};
  }

  c10::optional<size_t> size() const override {
    return static_cast<size_t>(rows_.size(0));
  }

 private:
  torch::Tensor images_;
  torch::Tensor rows_;
  torch::Tensor labels_;
};

/// Top-K/top-P pseudo-label selection over a stream of teacher scores
/// (Yalniz et al. 2019, "Billion-scale semi-supervised learning for image
/// classification", section 3).
///
/// Rule: every image keeps its P highest-scoring classes; every class keeps,
/// among the images that kept it, the K with the highest score for it.
/// Order, everywhere: score descending, then the lower index first (classes
/// inside a row: the lower class id first on ties). The result is therefore
/// unique, whatever the chunking, thread count or rank count.
///
/// Chunks `[B, C]` of probabilities (or logits, with `softmax(true)`) stream
/// through `ingest`; memory stays O(C * K * num_threads) however many rows
/// pass: per class a buffer of about 1.5 K (score, index) pairs, compacted
/// by selection when full (amortized O(1) per candidate). A pair takes 8
/// bytes (float32 score, 32-bit index) while every score is a float32 value
/// and every index is below 2^32, and 16 bytes from the first chunk of
/// float64 scores (or softmax) or with a larger index on. A class
/// with fewer than K candidates keeps all of them and the result reports the
/// shortfall. `merge` combines selectors over disjoint rows into exactly the
/// selector of their union (associative and commutative), which is how
/// threads and c10d ranks (dlcore/distributed/selection.h) combine.
///
/// Chunks are float32, float64, float16 or bfloat16 (the last two are
/// widened to float32, exactly); a non-finite score is an error naming the
/// row. Indices are given by the chunk's first global index (ranges are
/// recorded and an overlap with an earlier chunk is an error) or by an int64
/// index tensor (indices must be distinct across the stream: a repeat inside
/// the chunk or an index inside a recorded range is an error; a repeat of an
/// index given by an earlier index tensor is not checked).
///
/// Example:
///   dlcore::TopKTopPSelector sel({/*C=*/10, /*K=*/5000, /*P=*/2});
///   for (int64_t i = 0; i < n; i += 1024) {
///     sel.ingest(torch::softmax(teacher(pool.slice(0, i, i + 1024)), 1), i);
///   }
///   dlcore::TopKTopPResult dhat = sel.result();
///
/// Differences from the paper and other code: the paper does not say how
/// ties break; the one public re-implementation sorts everything in memory
/// and fails when a class has fewer than K candidates, where this keeps
/// them all and reports the shortfall. A chunk's indices are checked before
/// any state changes. A non-finite score is found while the rows are
/// ingested (a separate pass over the chunk would halve the throughput), so
/// the rows before it are in: the error names the row, and the selector then
/// refuses every further use (ingest, merge, result, candidates, save) until
/// a saved state is loaded. Check `torch::isfinite(scores).all()` first where
/// a bad chunk must be skipped and the pass go on.
/// Threads that the system cannot start leave their share of the work to
/// the calling thread (same result).
class TopKTopPSelector {
 public:
  explicit TopKTopPSelector(const TopKTopPSelectorOptions& options)
      : options_(options) {
    options_.check("TopKTopPSelector");
    guard_alloc(
        [&] { narrow_.emplace_back(options_.num_classes(), options_.k()); });
  }

  TopKTopPSelector(const TopKTopPSelector&) = default;
  TopKTopPSelector(TopKTopPSelector&&) noexcept = default;
  TopKTopPSelector& operator=(TopKTopPSelector&&) noexcept = default;
  ~TopKTopPSelector() = default;
  /// Copies into a temporary first: if the copy throws, this selector is
  /// left as it was.
  TopKTopPSelector& operator=(const TopKTopPSelector& other) {
    if (this != &other) {
      TopKTopPSelector copy(other);
      *this = std::move(copy);
    }
    return *this;
  }

  const TopKTopPSelectorOptions& options() const {
    return options_;
  }

  /// Rows ingested so far (including merged selectors).
  int64_t rows_seen() const {
    return rows_seen_;
  }

  /// Ingests a chunk whose row r is image `first_index + r`. Throws when
  /// [first_index, first_index + B) overlaps a range ingested before.
  void ingest(const torch::Tensor& scores, int64_t first_index) {
    check_whole("ingest");
    check_chunk(scores);
    TORCH_CHECK(
        first_index >= 0,
        "TopKTopPSelector: expected first_index >= 0, but got ",
        first_index);
    const int64_t rows = scores.size(0);
    TORCH_CHECK(
        first_index <= std::numeric_limits<int64_t>::max() - rows,
        "TopKTopPSelector: first_index ",
        first_index,
        " + rows ",
        rows,
        " overflows int64");
    if (rows == 0) {
      return;
    }
    check_no_overlap(first_index, first_index + rows);
    ingest_impl(
        scores,
        [first_index](int64_t r) { return first_index + r; },
        first_index + rows - 1);
    add_range(first_index, first_index + rows);
  }

  /// Ingests a chunk whose row r is image `indices[r]` (int64 [B], >= 0).
  void ingest(const torch::Tensor& scores, const torch::Tensor& indices) {
    check_whole("ingest");
    check_chunk(scores);
    TORCH_CHECK(
        indices.defined() && indices.dim() == 1 &&
            indices.scalar_type() == at::kLong &&
            indices.size(0) == scores.size(0),
        "TopKTopPSelector: expected an int64 index tensor of shape [",
        scores.size(0),
        "], but got ",
        indices.defined() ? indices.toString() : std::string("undefined"),
        " of shape ",
        indices.defined() ? indices.sizes() : at::IntArrayRef{});
    detail::check_has_data(indices, "TopKTopPSelector", "indices");
    if (scores.size(0) == 0) {
      return;
    }
    auto idx = indices.to(at::kCPU).contiguous();
    const auto [lo, hi] = at::aminmax(idx);
    TORCH_CHECK(
        lo.item<int64_t>() >= 0,
        "TopKTopPSelector: expected indices >= 0, but got ",
        lo.item<int64_t>());
    const int64_t* ip = idx.data_ptr<int64_t>();
    check_new_indices(ip, idx.size(0));
    ingest_impl(
        scores, [ip](int64_t r) { return ip[r]; }, hi.item<int64_t>());
  }

  /// Adds the rows of `other` (disjoint from this selector's rows): the
  /// result is exactly that of one selector that ingested both streams.
  /// Throws when C, K or P differ, or when recorded index ranges overlap.
  void merge(const TopKTopPSelector& other) {
    check_whole("merge");
    other.check_whole("merge a selector whose ingest failed");
    TORCH_CHECK(
        &other != this,
        "TopKTopPSelector: merge expected another selector, but got this "
        "selector itself (its rows would count twice)");
    check_compatible(other.options_, "merge");
    for (const auto& r : other.ranges_) {
      check_no_overlap(r.first, r.second);
    }
    if (!other.wide_.empty()) {
      widen();
    }
    // Widened above when `other` is wide: 8-byte entries only ever merge
    // into 8-byte ones.
    if (wide_.empty()) {
      for (const auto& st : other.narrow_) {
        narrow_[0].merge(st);
      }
    } else {
      other.for_each_state([&](const auto& st) { wide_[0].merge(st); });
    }
    for (const auto& r : other.ranges_) {
      add_range(r.first, r.second);
    }
    rows_seen_ += other.rows_seen_;
  }

  /// The selection so far (D-hat), sorted by class then rank. The classes
  /// are sorted on `num_threads` threads (each class by one thread: the
  /// result does not depend on the thread count).
  TopKTopPResult result() const {
    check_whole("give a result");
    const int64_t C = options_.num_classes();
    const int64_t P = options_.p();
    const int64_t K = options_.k();
    // Class c's entries go to [offset[c], offset[c + 1]): the union of its
    // buffers holds distinct indices, so it keeps min(K, held) of them.
    std::vector<int64_t> offset(static_cast<size_t>(C + 1), 0);
    for (int64_t c = 0; c < C; ++c) {
      int64_t held = 0;
      for_each_state([&](const auto& st) { held += st[c].held(); });
      offset[c + 1] = offset[c] + std::min(K, held);
    }
    const int64_t total = offset[C];
    TopKTopPResult out;
    out.num_classes = C;
    out.k = K;
    out.p = P;
    out.rows_seen = rows_seen_;
    out.indices = at::empty({total}, at::kLong);
    out.labels = at::empty({total}, at::kLong);
    out.scores = at::empty({total}, at::kDouble);
    out.counts = at::empty({C}, at::kLong);
    auto* ip = out.indices.data_ptr<int64_t>();
    auto* lp = out.labels.data_ptr<int64_t>();
    auto* sp = out.scores.data_ptr<double>();
    auto* cp = out.counts.data_ptr<int64_t>();
    const int64_t threads =
        std::max<int64_t>(1, std::min<int64_t>(options_.num_threads(), C));
    auto sort_classes = [&](int64_t t) {
      {
        std::vector<detail::TopKEntry> all;
        std::vector<detail::TopKEntry> scratch;
        for (int64_t c = t; c < C; c += threads) {
          class_best(c, /*sorted=*/true, all, scratch);
          int64_t m = offset[c];
          TORCH_INTERNAL_ASSERT(
              static_cast<int64_t>(all.size()) == offset[c + 1] - m);
          cp[c] = static_cast<int64_t>(all.size());
          for (const auto& e : all) {
            ip[m] = e.index;
            lp[m] = c;
            sp[m] = e.score;
            ++m;
          }
        }
      }
    };
    detail::run_tasks(threads, sort_classes);
    out.shortfalls = options_.k() - out.counts;
    // Labels per image: sort the indices and count runs.
    std::vector<int64_t> sorted(ip, ip + total);
    detail::topk_radix_sort(sorted);
    out.labels_per_image = at::zeros({P + 1}, at::kLong);
    auto* hp = out.labels_per_image.data_ptr<int64_t>();
    int64_t distinct = 0;
    for (size_t i = 0; i < sorted.size();) {
      size_t j = i;
      while (j < sorted.size() && sorted[j] == sorted[i]) {
        ++j;
      }
      const auto run = static_cast<int64_t>(j - i);
      TORCH_INTERNAL_ASSERT(run <= P, "an image selected more than P times");
      ++hp[run];
      ++distinct;
      i = j;
    }
    hp[0] = std::max<int64_t>(rows_seen_ - distinct, 0);
    return out;
  }

  /// The best K candidates of every class, unordered: (indices, labels,
  /// scores) tensors of equal length, at most C * K. Cheaper than `result`
  /// (no sorting); what `restore` takes back and what ranks exchange.
  std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> candidates() const {
    check_whole("give its candidates");
    const int64_t C = options_.num_classes();
    std::vector<std::vector<detail::TopKEntry>> per_class(
        static_cast<size_t>(C));
    std::vector<detail::TopKEntry> scratch;
    int64_t total = 0;
    for (int64_t c = 0; c < C; ++c) {
      class_best(c, /*sorted=*/false, per_class[c], scratch);
      total += static_cast<int64_t>(per_class[c].size());
    }
    auto indices = at::empty({total}, at::kLong);
    auto labels = at::empty({total}, at::kLong);
    auto scores = at::empty({total}, at::kDouble);
    auto* ip = indices.data_ptr<int64_t>();
    auto* lp = labels.data_ptr<int64_t>();
    auto* sp = scores.data_ptr<double>();
    int64_t m = 0;
    for (int64_t c = 0; c < C; ++c) {
      for (const auto& e : per_class[c]) {
        ip[m] = e.index;
        lp[m] = c;
        sp[m] = e.score;
        ++m;
      }
    }
    return {indices, labels, scores};
  }

  /// The current best K of class c, sorted by rank (fewer when short).
  std::vector<std::pair<int64_t, double>> class_topk(int64_t c) const {
    check_whole("give a class's best K");
    TORCH_CHECK(
        c >= 0 && c < options_.num_classes(),
        "TopKTopPSelector: expected a class in [0, ",
        options_.num_classes(),
        "), but got ",
        c);
    std::vector<detail::TopKEntry> best;
    std::vector<detail::TopKEntry> scratch;
    class_best(c, /*sorted=*/true, best, scratch);
    std::vector<std::pair<int64_t, double>> out;
    for (const auto& e : best) {
      out.emplace_back(e.index, e.score);
    }
    return out;
  }

  /// Bytes reserved for the per-class buffers: C * 1.5 K * 8 per
  /// ingesting thread (16 once entries are 16 bytes wide). Pages are touched as
  /// entries arrive: 4 KB at a time, or 2 MB at a time where the allocation
  /// gets transparent huge pages.
  int64_t state_bytes() const {
    int64_t b = 0;
    for_each_state([&](const auto& st) { b += st.bytes(); });
    return b;
  }

  /// The recorded [begin, end) index ranges (chunks given by first index),
  /// coalesced and sorted.
  std::vector<std::pair<int64_t, int64_t>> ranges() const {
    return {ranges_.begin(), ranges_.end()};
  }

  /// Writes the state so a long pass can checkpoint and resume, in dlcore's
  /// state format (detail/state.h, docs/state.md): type
  /// `dlcore.TopKTopPSelector`, version 1, fields `num_classes`, `k`, `p`
  /// (the options the candidates depend on), `rows_seen`, `ranges` (int64
  /// [R, 2], the recorded [begin, end) index ranges), and the best K of every
  /// class as `indices`, `labels` (int64 [M]) and `scores` (float64 [M]).
  void save(torch::serialize::OutputArchive& archive) const {
    check_whole("save");
    const auto cand = candidates();
    detail::StateWriter(archive, "TopKTopPSelector", kVersion)
        .put_int("num_classes", options_.num_classes())
        .put_int("k", options_.k())
        .put_int("p", options_.p())
        .put_int("rows_seen", rows_seen_)
        .put_tensor("ranges", ranges_tensor())
        .put_tensor("indices", std::get<0>(cand))
        .put_tensor("labels", std::get<1>(cand))
        .put_tensor("scores", std::get<2>(cand));
  }

  /// Restores a state written by `save`; C, K and P must match this
  /// selector's options (softmax and num_threads may differ). Every field is
  /// checked as `ingest` and `restore` would (dtypes and shapes, rows_seen
  /// >= 0, at most K candidates per class, no image twice in a class nor in
  /// more than P classes, no more images than rows seen, ranges that fit the
  /// row count and, when chunks were only given by first index, every index
  /// inside a recorded range) before anything changes: on error the
  /// selector is left as it was. Archives of the legacy format (tensors with
  /// a `version` tensor and `ckp` = C, K, P) load too.
  void load(torch::serialize::InputArchive& archive) {
    const SavedState s = !detail::holds_state(archive) &&
                                 !detail::state_entry(archive, "ckp").isNone()
                             ? read_legacy(archive)
                             : read_state(archive);
    check_compatible(TopKTopPSelectorOptions(s.c, s.k, s.p), "load");
    check_saved_candidates(s.rows_seen, s.ranges, s.indices, s.labels);
    restore(s.rows_seen, s.ranges, s.indices, s.labels, s.scores);
  }

  /// Saves to a file, atomically (a temporary file in the same folder,
  /// synced, then a rename): on failure `path` is left as it was and no
  /// temporary file remains.
  void save(const std::string& path) const {
    detail::save_archive_file(*this, path, "TopKTopPSelector");
  }

  /// Loads from a file written by `save(path)`. Only a regular file is
  /// opened, and the archive is checked (`detail::check_archive`: zip
  /// structure, CRC-32 of every entry, a bounded pickle walk) before LibTorch
  /// parses it; every error is a `c10::Error` naming the file.
  void load(const std::string& path) {
    detail::load_archive_file(*this, path, "TopKTopPSelector");
  }

  /// Replaces the state by the given candidates (at most K per class are
  /// kept, by the selection order), ranges [M, 2] and row count. Used by
  /// `load` and by the distributed merge.
  void restore(
      int64_t rows_seen,
      const torch::Tensor& ranges,
      const torch::Tensor& indices,
      const torch::Tensor& labels,
      const torch::Tensor& scores) {
    TORCH_CHECK(
        indices.dim() == 1 && labels.sizes() == indices.sizes() &&
            scores.sizes() == indices.sizes() &&
            (ranges.numel() == 0 || (ranges.dim() == 2 && ranges.size(1) == 2)),
        "TopKTopPSelector: expected candidates of equal shape [M] and ranges "
        "[R, 2], but got indices ",
        indices.sizes(),
        ", labels ",
        labels.sizes(),
        ", scores ",
        scores.sizes(),
        ", ranges ",
        ranges.sizes());
    auto ii = indices.to(at::kLong).contiguous();
    auto ll = labels.to(at::kLong).contiguous();
    auto ss = scores.to(at::kDouble).contiguous();
    const int64_t C = options_.num_classes();
    const auto* ip = ii.data_ptr<int64_t>();
    const auto* lp = ll.data_ptr<int64_t>();
    const auto* sp = ss.data_ptr<double>();
    // 8-byte entries when every candidate fits them exactly.
    bool narrow = true;
    for (int64_t i = 0; i < ii.size(0); ++i) {
      TORCH_CHECK(
          lp[i] >= 0 && lp[i] < C && std::isfinite(sp[i]) && ip[i] >= 0,
          "TopKTopPSelector: invalid saved candidate ",
          i,
          " (index ",
          ip[i],
          ", class ",
          lp[i],
          ", score ",
          sp[i],
          ")");
      narrow = narrow && ip[i] <= detail::kTopKIndex32Max &&
               std::fabs(sp[i]) <= std::numeric_limits<float>::max() &&
               static_cast<double>(static_cast<float>(sp[i])) == sp[i];
    }
    // No image twice in a class, nor in more than P classes (what result()
    // relies on).
    {
      std::vector<std::pair<int64_t, int64_t>> pairs(
          static_cast<size_t>(ii.size(0)));
      for (int64_t i = 0; i < ii.size(0); ++i) {
        pairs[static_cast<size_t>(i)] = {ip[i], lp[i]};
      }
      std::sort(pairs.begin(), pairs.end());
      const int64_t P = options_.p();
      int64_t run = 0;
      for (size_t i = 0; i < pairs.size(); ++i) {
        run = i > 0 && pairs[i].first == pairs[i - 1].first ? run + 1 : 1;
        TORCH_CHECK(
            i == 0 || pairs[i] != pairs[i - 1],
            "TopKTopPSelector: expected distinct saved candidates, but image ",
            pairs[i].first,
            " appears twice in class ",
            pairs[i].second);
        TORCH_CHECK(
            run <= P,
            "TopKTopPSelector: expected each image in at most p = ",
            P,
            " classes, but image ",
            pairs[i].first,
            " has more saved candidates");
      }
    }
    std::vector<detail::TopKState<detail::TopKEntry32>> fresh_narrow;
    std::vector<detail::TopKState<detail::TopKEntry>> fresh_wide;
    auto fill = [&](auto& states) {
      guard_alloc([&] { states.emplace_back(C, options_.k()); });
      auto& st = states[0];
      using E = typename std::decay_t<decltype(st)>::Entry;
      for (int64_t i = 0; i < ii.size(0); ++i) {
        st[lp[i]].push(
            E{static_cast<detail::TopKScore<E>>(sp[i]),
              static_cast<decltype(E::index)>(ip[i])});
      }
      for (int64_t c = 0; c < C; ++c) {
        st[c].compact();
      }
    };
    if (narrow) {
      fill(fresh_narrow);
    } else {
      fill(fresh_wide);
    }
    // Ranges: sorted by begin, checked pairwise for overlap, coalesced.
    std::vector<std::pair<int64_t, int64_t>> rv;
    if (ranges.numel() > 0) {
      auto rr = ranges.to(at::kLong).contiguous();
      const auto* rp = rr.data_ptr<int64_t>();
      for (int64_t i = 0; i < rr.size(0); ++i) {
        TORCH_CHECK(
            rp[2 * i] >= 0 && rp[2 * i] < rp[2 * i + 1],
            "TopKTopPSelector: expected ranges with 0 <= begin < end, but got "
            "[",
            rp[2 * i],
            ", ",
            rp[2 * i + 1],
            ")");
        rv.emplace_back(rp[2 * i], rp[2 * i + 1]);
      }
    }
    std::sort(rv.begin(), rv.end());
    std::map<int64_t, int64_t> rs;
    for (size_t i = 0; i < rv.size(); ++i) {
      if (i > 0) {
        TORCH_CHECK(
            rv[i - 1].second <= rv[i].first,
            "TopKTopPSelector: expected a chunk disjoint from earlier ones, "
            "but rows [",
            rv[i].first,
            ", ",
            rv[i].second,
            ") overlap [",
            rv[i - 1].first,
            ", ",
            rv[i - 1].second,
            ")");
      }
      if (!rs.empty() && std::prev(rs.end())->second == rv[i].first) {
        std::prev(rs.end())->second = rv[i].second;
      } else {
        rs[rv[i].first] = rv[i].second;
      }
    }
    TORCH_CHECK(
        rows_seen >= 0,
        "TopKTopPSelector: expected rows_seen >= 0, but got ",
        rows_seen);
    narrow_ = std::move(fresh_narrow);
    wide_ = std::move(fresh_wide);
    ranges_ = std::move(rs);
    rows_seen_ = rows_seen;
    failed_.clear();
  }

  /// The recorded ranges as an int64 [R, 2] tensor.
  torch::Tensor ranges_tensor() const {
    auto t = at::empty({static_cast<int64_t>(ranges_.size()), 2}, at::kLong);
    auto* p = t.data_ptr<int64_t>();
    for (const auto& r : ranges_) {
      *p++ = r.first;
      *p++ = r.second;
    }
    return t;
  }

 private:
  static constexpr int64_t kVersion = 1;

  /// A saved state, read from either format (fields checked for kind,
  /// dtype and shape only).
  struct SavedState {
    int64_t c = 0, k = 0, p = 0, rows_seen = 0;
    at::Tensor ranges, indices, labels, scores;
  };

  static SavedState read_state(torch::serialize::InputArchive& archive) {
    const detail::StateReader state(
        archive, "TopKTopPSelector", "TopKTopPSelector", kVersion);
    SavedState s;
    s.c = state.read_int("num_classes");
    s.k = state.read_int("k");
    s.p = state.read_int("p");
    s.rows_seen = state.read_int("rows_seen");
    state.expect(s.rows_seen >= 0, "rows_seen", "an integer >= 0", s.rows_seen);
    s.ranges = state.read_tensor("ranges", at::kLong, {-1, 2});
    s.indices = state.read_tensor("indices", at::kLong, {-1});
    s.labels = state.read_tensor("labels", at::kLong, {-1});
    s.scores = state.read_tensor("scores", at::kDouble, {-1});
    return s;
  }

  /// The legacy format: int64 tensors `version` ([1]), `ckp` ([C, K, P]),
  /// `rows_seen` ([1]), `ranges` ([R, 2]), `indices` and `labels` ([M]),
  /// and float64 `scores` ([M]).
  static SavedState read_legacy(torch::serialize::InputArchive& archive) {
    SavedState s;
    at::Tensor version, ckp, rows;
    auto read =
        [&](const char* key, at::Tensor& t, at::ScalarType dtype, int64_t dim) {
          archive.read(key, t);
          TORCH_CHECK(
              t.defined() && t.scalar_type() == dtype && t.dim() == dim &&
                  t.device().is_cpu(),
              "TopKTopPSelector: expected the saved `",
              key,
              "` to be a CPU ",
              c10::toString(dtype),
              " tensor with ",
              dim,
              " dimension(s), but got ",
              t.defined() ? t.toString() : std::string("undefined"),
              " of shape ",
              t.defined() ? t.sizes() : at::IntArrayRef{});
          t = t.contiguous();
        };
    read("version", version, at::kLong, 1);
    TORCH_CHECK(
        version.numel() == 1 && version.item<int64_t>() == 1,
        "TopKTopPSelector: expected a saved state of version 1, but got "
        "version ",
        version.numel() == 1 ? version.item<int64_t>() : -1);
    read("ckp", ckp, at::kLong, 1);
    TORCH_CHECK(
        ckp.numel() == 3,
        "TopKTopPSelector: expected the saved `ckp` to hold 3 values (C, K, "
        "P), but got ",
        ckp.numel());
    s.c = ckp[0].item<int64_t>();
    s.k = ckp[1].item<int64_t>();
    s.p = ckp[2].item<int64_t>();
    read("rows_seen", rows, at::kLong, 1);
    TORCH_CHECK(
        rows.numel() == 1 && rows.item<int64_t>() >= 0,
        "TopKTopPSelector: expected the saved rows_seen to be one value >= 0, "
        "but got ",
        rows.numel() == 1 ? std::to_string(rows.item<int64_t>())
                          : std::to_string(rows.numel()) + " values");
    s.rows_seen = rows.item<int64_t>();
    read("ranges", s.ranges, at::kLong, 2);
    TORCH_CHECK(
        s.ranges.size(1) == 2,
        "TopKTopPSelector: expected the saved ranges of shape [R, 2], but got ",
        s.ranges.sizes());
    read("indices", s.indices, at::kLong, 1);
    read("labels", s.labels, at::kLong, 1);
    read("scores", s.scores, at::kDouble, 1);
    return s;
  }

  /// Runs `f`, which allocates per-class buffers, turning an allocation
  /// failure into an error that names the size.
  template <typename F>
  void guard_alloc(const F& f) const {
    try {
      f();
    } catch (const std::bad_alloc&) {
      TORCH_CHECK(
          false,
          "TopKTopPSelector: cannot allocate the per-class buffers of "
          "num_classes ",
          options_.num_classes(),
          " x 1.5 k (k = ",
          options_.k(),
          ") entries: out of memory");
    }
  }

  /// Calls `f` on every per-thread state, whatever its entry type.
  template <typename F>
  void for_each_state(F&& f) const {
    for (const auto& st : narrow_) {
      f(st);
    }
    for (const auto& st : wide_) {
      f(st);
    }
  }

  /// Converts the states to 16-byte entries (exactly; once).
  void widen() {
    if (narrow_.empty()) {
      return;
    }
    TORCH_INTERNAL_ASSERT(wide_.empty(), "a selector with both entry widths");
    // Built aside, so that an allocation failure leaves the state as it was.
    std::vector<detail::TopKState<detail::TopKEntry>> wide;
    wide.reserve(narrow_.size());
    for (const auto& st : narrow_) {
      guard_alloc([&] { wide.emplace_back(st); });
    }
    wide_ = std::move(wide);
    narrow_.clear();
  }

  /// Class c's best K over every thread's buffer into `out` (replacing
  /// its contents), sorted by rank when `sorted`; `scratch` is reused space.
  void class_best(
      int64_t c,
      bool sorted,
      std::vector<detail::TopKEntry>& out,
      std::vector<detail::TopKEntry>& scratch) const {
    out.clear();
    for_each_state([&](const auto& st) { st[c].append_to(out); });
    detail::topk_keep(out, options_.k(), scratch);
    if (sorted) {
      detail::topk_sort_entries(out, scratch);
    }
  }

  void check_compatible(
      const TopKTopPSelectorOptions& o, const char* what) const {
    TORCH_CHECK(
        o.num_classes() == options_.num_classes() && o.k() == options_.k() &&
            o.p() == options_.p(),
        "TopKTopPSelector: ",
        what,
        " expected a selector with num_classes ",
        options_.num_classes(),
        ", k ",
        options_.k(),
        ", p ",
        options_.p(),
        ", but got num_classes ",
        o.num_classes(),
        ", k ",
        o.k(),
        ", p ",
        o.p());
  }

  /// Refuses `what` after an ingest that failed part-way.
  void check_whole(const char* what) const {
    TORCH_CHECK(
        failed_.empty(),
        "TopKTopPSelector: cannot ",
        what,
        ": an earlier ingest failed part-way, so the selector holds an "
        "unknown part of that chunk (",
        failed_,
        "); load() a saved state or start a new selector");
  }

  void check_chunk(const torch::Tensor& scores) const {
    TORCH_CHECK(
        scores.defined() && scores.dim() == 2 &&
            scores.size(1) == options_.num_classes(),
        "TopKTopPSelector: expected a chunk of scores of shape [B, ",
        options_.num_classes(),
        "], but got ",
        scores.defined() ? scores.sizes() : at::IntArrayRef{});
    const auto t = scores.scalar_type();
    TORCH_CHECK(
        t == at::kFloat || t == at::kDouble || t == at::kHalf ||
            t == at::kBFloat16,
        "TopKTopPSelector: expected float32, float64, float16 or bfloat16 "
        "scores, but got ",
        t);
    detail::check_has_data(scores, "TopKTopPSelector", "scores");
  }

  void check_no_overlap(int64_t begin, int64_t end) const {
    // The range starting after `begin`, and the one before it, are the only
    // ones that can overlap [begin, end).
    auto it = ranges_.upper_bound(begin);
    const bool next_overlaps = it != ranges_.end() && it->first < end;
    const bool prev_overlaps = !next_overlaps && it != ranges_.begin() &&
                               std::prev(it)->second > begin;
    if (next_overlaps || prev_overlaps) {
      const auto& other = next_overlaps ? *it : *std::prev(it);
      TORCH_CHECK(
          false,
          "TopKTopPSelector: expected a chunk disjoint from earlier ones, but "
          "rows [",
          begin,
          ", ",
          end,
          ") overlap [",
          other.first,
          ", ",
          other.second,
          ")");
    }
  }

  /// The checks of `load` that `restore` (which also takes the ranks'
  /// combined candidates) cannot make: at most K per class, no more images
  /// than rows, ranges inside the row count, and indices inside the ranges
  /// when the ranges account for every row.
  void check_saved_candidates(
      int64_t rows_seen,
      const at::Tensor& ranges,
      const at::Tensor& indices,
      const at::Tensor& labels) const {
    TORCH_CHECK(
        labels.numel() == indices.numel(),
        "TopKTopPSelector: expected as many saved labels as indices, but got ",
        labels.numel(),
        " and ",
        indices.numel());
    const int64_t C = options_.num_classes();
    const int64_t K = options_.k();
    const auto* ip = indices.data_ptr<int64_t>();
    const auto* lp = labels.data_ptr<int64_t>();
    const int64_t m = indices.numel();
    std::vector<int64_t> per_class(static_cast<size_t>(C), 0);
    for (int64_t i = 0; i < m; ++i) {
      TORCH_CHECK(
          lp[i] >= 0 && lp[i] < C,
          "TopKTopPSelector: invalid saved candidate ",
          i,
          " (class ",
          lp[i],
          ", expected [0, ",
          C,
          "))");
      TORCH_CHECK(
          ++per_class[static_cast<size_t>(lp[i])] <= K,
          "TopKTopPSelector: expected at most k = ",
          K,
          " saved candidates per class, but class ",
          lp[i],
          " has more");
    }
    const auto* rp = ranges.data_ptr<int64_t>();
    const int64_t R = ranges.size(0);
    int64_t covered = 0;
    for (int64_t r = 0; r < R; ++r) {
      const int64_t b = rp[2 * r];
      const int64_t e = rp[2 * r + 1];
      TORCH_CHECK(
          b >= 0 && b < e && !__builtin_add_overflow(covered, e - b, &covered),
          "TopKTopPSelector: expected saved ranges with 0 <= begin < end, "
          "but got [",
          b,
          ", ",
          e,
          ")");
    }
    TORCH_CHECK(
        covered <= rows_seen,
        "TopKTopPSelector: the saved ranges cover ",
        covered,
        " rows, more than the saved rows_seen (",
        rows_seen,
        ")");
    std::vector<int64_t> images(ip, ip + m);
    std::sort(images.begin(), images.end());
    const int64_t distinct = static_cast<int64_t>(
        std::unique(images.begin(), images.end()) - images.begin());
    TORCH_CHECK(
        distinct <= rows_seen,
        "TopKTopPSelector: the saved candidates hold ",
        distinct,
        " images, more than the saved rows_seen (",
        rows_seen,
        ")");
    if (covered == rows_seen && m > 0) {
      // Every row came from a chunk given by first index: every candidate
      // lies in a recorded range.
      std::vector<std::pair<int64_t, int64_t>> rv;
      for (int64_t r = 0; r < R; ++r) {
        rv.emplace_back(rp[2 * r], rp[2 * r + 1]);
      }
      std::sort(rv.begin(), rv.end());
      for (int64_t k = 0; k < distinct; ++k) {
        const int64_t i = images[static_cast<size_t>(k)];
        auto it = std::upper_bound(
            rv.begin(),
            rv.end(),
            std::make_pair(i, std::numeric_limits<int64_t>::max()));
        TORCH_CHECK(
            it != rv.begin() && i < std::prev(it)->second,
            "TopKTopPSelector: saved candidate image ",
            i,
            " lies outside every recorded range");
      }
    }
  }

  /// Throws when an index repeats inside a chunk or lies in a range recorded
  /// before (indices given by index tensors in earlier chunks are not
  /// recorded: that overlap is not checked).
  void check_new_indices(const int64_t* ip, int64_t n) const {
    std::vector<int64_t> sorted(ip, ip + n);
    std::sort(sorted.begin(), sorted.end());
    const auto dup = std::adjacent_find(sorted.begin(), sorted.end());
    TORCH_CHECK(
        dup == sorted.end(),
        "TopKTopPSelector: expected distinct indices in a chunk, but index ",
        dup == sorted.end() ? 0 : *dup,
        " appears more than once");
    if (ranges_.empty()) {
      return;
    }
    for (const int64_t i : sorted) {
      auto it = ranges_.upper_bound(i);
      if (it != ranges_.begin()) {
        --it;
        TORCH_CHECK(
            i >= it->second,
            "TopKTopPSelector: expected indices not ingested before, but "
            "index ",
            i,
            " lies in the ingested rows [",
            it->first,
            ", ",
            it->second,
            ")");
      }
    }
  }

  /// Records [begin, end), coalescing with touching neighbours.
  void add_range(int64_t begin, int64_t end) {
    auto next = ranges_.lower_bound(begin);
    if (next != ranges_.end() && next->first == end) {
      end = next->second;
      next = ranges_.erase(next);
    }
    if (next != ranges_.begin()) {
      auto prev = std::prev(next);
      if (prev->second == begin) {
        prev->second = end;
        return;
      }
    }
    ranges_[begin] = end;
  }

  template <typename IndexOf>
  void ingest_impl(
      const torch::Tensor& scores, const IndexOf& index_of, int64_t max_index) {
    at::Tensor x = scores.to(at::kCPU);
    if (options_.softmax()) {
      x = at::softmax(x.to(at::kDouble), 1);
    } else if (
        x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16) {
      x = x.to(at::kFloat);
    }
    x = x.contiguous();
    // float64 scores or an index from 2^32 on need 16-byte entries, from
    // this chunk on.
    if (x.scalar_type() == at::kDouble || max_index > detail::kTopKIndex32Max) {
      widen();
    }
    // A failure from here on (a non-finite score, found while the rows are
    // ingested; an allocation) leaves part of the chunk in: the selector
    // refuses further use until a saved state is loaded.
    try {
      if (x.scalar_type() == at::kDouble) {
        run_rows(x, x.data_ptr<double>(), index_of, wide_);
      } else if (wide_.empty()) {
        run_rows(x, x.data_ptr<float>(), index_of, narrow_);
      } else {
        run_rows(x, x.data_ptr<float>(), index_of, wide_);
      }
    } catch (const c10::Error& e) {
      failed_ = e.what_without_backtrace();
      throw;
    } catch (const std::exception& e) {
      failed_ = e.what();
      throw;
    }
  }

  template <typename scalar_t, typename IndexOf, typename States>
  void run_rows(
      const at::Tensor& x,
      const scalar_t* data,
      const IndexOf& index_of,
      States& states) {
    const int64_t rows = x.size(0);
    const int64_t C = options_.num_classes();
    const int64_t P = options_.p();
    // At least 256 rows per thread; one thread for small chunks.
    const int64_t threads = ingest_threads(rows);
    while (static_cast<int64_t>(states.size()) < threads) {
      guard_alloc([&] { states.emplace_back(C, options_.k()); });
    }
    std::vector<int64_t> bad(static_cast<size_t>(threads), -1);
    if (threads == 1) {
      bad[0] =
          detail::topk_ingest_rows(data, 0, rows, C, P, index_of, states[0]);
    } else {
      detail::run_tasks(threads, [&](int64_t t) {
        const int64_t r0 = rows * t / threads;
        const int64_t r1 = rows * (t + 1) / threads;
        bad[t] =
            detail::topk_ingest_rows(data, r0, r1, C, P, index_of, states[t]);
      });
    }
    for (int64_t t = 0; t < threads; ++t) {
      if (bad[t] >= 0) {
        report_non_finite(data, bad[t], C, index_of);
      }
    }
    rows_seen_ += rows;
  }

  /// Threads that ingest a chunk of `rows` rows: at least 256 rows each.
  int64_t ingest_threads(int64_t rows) const {
    return std::max<int64_t>(
        1, std::min<int64_t>(options_.num_threads(), rows / 256));
  }

  template <typename scalar_t, typename IndexOf>
  [[noreturn]] void report_non_finite(
      const scalar_t* data,
      int64_t row,
      int64_t C,
      const IndexOf& index_of) const {
    int64_t c = 0;
    while (c < C && std::isfinite(static_cast<double>(data[row * C + c]))) {
      ++c;
    }
    TORCH_CHECK(
        false,
        "TopKTopPSelector: expected finite scores, but row ",
        row,
        " of the chunk (image ",
        index_of(row),
        ") has ",
        c < C ? static_cast<double>(data[row * C + c]) : 0.0,
        " for class ",
        c);
    // Unreachable: TORCH_CHECK(false, ...) throws.
    throw std::logic_error("unreachable");
  }

  TopKTopPSelectorOptions options_;
  /// Per ingesting thread, the class buffers: 8-byte entries while every
  /// score is a float32 value and every index below 2^32, 16-byte entries
  /// from the first chunk that breaks that on (exactly one of the two
  /// vectors is non-empty).
  std::vector<detail::TopKState<detail::TopKEntry32>> narrow_;
  std::vector<detail::TopKState<detail::TopKEntry>> wide_;
  std::map<int64_t, int64_t> ranges_;
  int64_t rows_seen_ = 0;
  /// Why an ingest failed part-way (empty while the state is whole).
  std::string failed_;
};

/// Writes `selector` to an archive; `torch::save(selector, path)` works.
inline torch::serialize::OutputArchive& operator<<(
    torch::serialize::OutputArchive& archive,
    const TopKTopPSelector& selector) {
  selector.save(archive);
  return archive;
}

/// Reads `selector` from an archive; `torch::load(selector, path)` works.
inline torch::serialize::InputArchive& operator>>(
    torch::serialize::InputArchive& archive, TopKTopPSelector& selector) {
  selector.load(archive);
  return archive;
}

} // namespace dlcore
