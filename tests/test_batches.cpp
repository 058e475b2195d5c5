#include <dlcore/data/batches.h>
#include <dlcore/data/hashtag_resampler.h>
#include <dlcore/detail/splitmix.h>
#include <dlcore/detail/state.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/data/samplers/distributed.h>
#include <torch/data/samplers/random.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

/// Sample i has data row [i, -i] and target 3 * i, so a batch tells which
/// samples it holds and whether data and targets stayed aligned.
dlcore::TensorDataset ids(int64_t n) {
  const torch::Tensor i = torch::arange(n, torch::kLong);
  return dlcore::TensorDataset{
      torch::stack({i, -i}, 1).to(torch::kFloat), i * 3};
}

std::vector<int64_t> to_vec(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kLong).contiguous().reshape({-1});
  return std::vector<int64_t>(
      c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

/// One pass: the sample indices of each batch, checking alignment.
std::vector<std::vector<int64_t>> pass(dlcore::Batches& batches) {
  std::vector<std::vector<int64_t>> out;
  for (const dlcore::Batch& b : batches) {
    const std::vector<int64_t> idx = to_vec(b.data.select(1, 0));
    CHECK(to_vec(b.targets) == to_vec(torch::tensor(idx) * 3));
    CHECK(torch::equal(b.data.select(1, 1), -b.data.select(1, 0)));
    out.push_back(idx);
  }
  return out;
}

std::vector<int64_t> flat(const std::vector<std::vector<int64_t>>& batches) {
  std::vector<int64_t> all;
  for (const auto& b : batches) {
    all.insert(all.end(), b.begin(), b.end());
  }
  return all;
}

/// SplitMix64's finalizer as in Vigna's reference splitmix64.c, written out
/// here independently of detail/splitmix.h.
uint64_t reference_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/// The documented epoch key: mix(mix(seed ^ stream) ^ (epoch * gamma + c)).
uint64_t reference_epoch_key(uint64_t seed, uint64_t epoch, uint64_t stream) {
  return reference_mix(
      reference_mix(seed ^ stream) ^
      (epoch * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL));
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "(no error)";
}

} // namespace

TEST_CASE(
    "BatchesOptions defaults keep order and the partial batch", "[batches]") {
  const dlcore::BatchesOptions o(32);
  CHECK(o.batch_size() == 32);
  CHECK_FALSE(o.shuffle());
  CHECK_FALSE(o.drop_last());
  CHECK(o.seed() == 0);

  dlcore::Batches batches(ids(10), dlcore::BatchesOptions(4));
  CHECK(batches.size() == 3);
  CHECK(batches.num_samples() == 10);
  const auto got = pass(batches);
  CHECK(
      got ==
      std::vector<std::vector<int64_t>>{{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9}});
}

TEST_CASE("unshuffled batches are zero-copy views of the data", "[batches]") {
  const dlcore::TensorDataset ds = ids(10);
  dlcore::Batches batches(ds, dlcore::BatchesOptions(4));
  int64_t k = 0;
  for (const dlcore::Batch& b : batches) {
    CHECK(b.data.data_ptr<float>() == ds.data.data_ptr<float>() + 2 * 4 * k);
    CHECK(
        b.targets.data_ptr<int64_t>() ==
        ds.targets.data_ptr<int64_t>() + 4 * k);
    ++k;
  }
  CHECK(k == 3);
}

TEST_CASE(
    "batch counts and sizes match a brute-force reference for every edge",
    "[batches]") {
  for (int64_t n : {0, 1, 2, 5, 63, 64, 65, 130}) {
    for (int64_t bs : {1, 3, 64, 200}) {
      for (bool drop_last : {false, true}) {
        for (bool shuffle : {false, true}) {
          INFO(
              "n " << n << ", batch " << bs << ", drop_last " << drop_last
                   << ", shuffle " << shuffle);
          dlcore::Batches batches(
              ids(n),
              dlcore::BatchesOptions(bs).drop_last(drop_last).shuffle(shuffle));
          std::vector<int64_t> want_sizes;
          for (int64_t start = 0; start < n; start += bs) {
            const int64_t len = std::min(bs, n - start);
            if (len == bs || !drop_last) {
              want_sizes.push_back(len);
            }
          }
          const auto got = pass(batches);
          std::vector<int64_t> sizes;
          int64_t total = 0;
          for (const auto& b : got) {
            sizes.push_back(static_cast<int64_t>(b.size()));
            total += static_cast<int64_t>(b.size());
          }
          CHECK(sizes == want_sizes);
          CHECK(batches.size() == static_cast<int64_t>(want_sizes.size()));
          CHECK(batches.num_samples() == total);
          std::vector<int64_t> all = flat(got);
          std::sort(all.begin(), all.end());
          CHECK(std::adjacent_find(all.begin(), all.end()) == all.end());
          if (!drop_last) {
            CHECK(all == to_vec(torch::arange(n)));
          }
        }
      }
    }
  }
}

TEST_CASE(
    "shuffled epochs visit every sample exactly once, each epoch anew",
    "[batches]") {
  dlcore::Batches batches(
      ids(1000), dlcore::BatchesOptions(64).shuffle(true).seed(7));
  CHECK(batches.size() == 16);
  std::set<std::vector<int64_t>> orders;
  for (int epoch = 0; epoch < 4; ++epoch) {
    CHECK(batches.epoch() == epoch);
    const std::vector<int64_t> order = flat(pass(batches));
    std::vector<int64_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    CHECK(sorted == to_vec(torch::arange(1000)));
    CHECK(order == to_vec(batches.order(epoch)));
    orders.insert(order);
  }
  CHECK(orders.size() == 4); // Different epochs differ.
  CHECK(orders.count(to_vec(torch::arange(1000))) == 0);
}

TEST_CASE(
    "shuffling is deterministic under the seed and replayable by epoch",
    "[batches]") {
  const dlcore::TensorDataset ds = ids(300);
  const auto opts = dlcore::BatchesOptions(50).shuffle(true).seed(11);
  dlcore::Batches a(ds, opts);
  dlcore::Batches b(ds, opts);
  const auto a0 = pass(a);
  const auto a1 = pass(a);
  CHECK(a0 == pass(b));
  CHECK(a1 == pass(b));
  CHECK(a0 != a1);

  // set_epoch replays an epoch; order(e) is pure.
  b.set_epoch(1);
  CHECK(pass(b) == a1);
  CHECK(b.epoch() == 2);
  CHECK(torch::equal(b.order(5), b.order(5)));

  // Another seed, another order.
  dlcore::Batches c(ds, dlcore::BatchesOptions(50).shuffle(true).seed(12));
  CHECK(pass(c) != a0);
}

TEST_CASE("drop_last with shuffling drops a random remainder", "[batches]") {
  dlcore::Batches batches(
      ids(10), dlcore::BatchesOptions(4).shuffle(true).drop_last(true));
  CHECK(batches.size() == 2);
  CHECK(batches.num_samples() == 8);
  std::set<int64_t> dropped_any;
  for (int epoch = 0; epoch < 20; ++epoch) {
    std::vector<int64_t> seen = flat(pass(batches));
    REQUIRE(seen.size() == 8);
    for (int64_t i = 0; i < 10; ++i) {
      if (std::find(seen.begin(), seen.end(), i) == seen.end()) {
        dropped_any.insert(i);
      }
    }
  }
  CHECK(dropped_any.size() > 2);
}

TEST_CASE("empty, single-sample and oversized-batch data sets", "[batches]") {
  dlcore::Batches empty(ids(0), dlcore::BatchesOptions(8).shuffle(true));
  CHECK(empty.size() == 0);
  CHECK(empty.begin() == empty.end());

  dlcore::Batches one(ids(1), dlcore::BatchesOptions(8).shuffle(true));
  CHECK(one.size() == 1);
  const auto got = pass(one);
  CHECK(got == std::vector<std::vector<int64_t>>{{0}});

  dlcore::Batches big(ids(5), dlcore::BatchesOptions(100));
  auto it = big.begin();
  CHECK(it->data.sizes() == torch::IntArrayRef({5, 2}));
  CHECK(it.index() == 0);
  ++it;
  CHECK(it == big.end());
  dlcore::Batches big_drop(ids(5), dlcore::BatchesOptions(100).drop_last(true));
  CHECK(big_drop.size() == 0);
  CHECK(big_drop.begin() == big_drop.end());
}

TEST_CASE("Batches makes non-contiguous data contiguous once", "[batches]") {
  const torch::Tensor base = torch::arange(20, torch::kFloat).reshape({2, 10});
  dlcore::TensorDataset ds{base.t(), torch::arange(10)};
  REQUIRE_FALSE(ds.data.is_contiguous());
  dlcore::Batches batches(ds, dlcore::BatchesOptions(3).shuffle(true));
  CHECK(batches.dataset().data.is_contiguous());
  for (const dlcore::Batch& b : batches) {
    CHECK(torch::equal(b.data.select(1, 0), b.targets.to(torch::kFloat)));
    CHECK(torch::equal(b.data.select(1, 1), b.targets.to(torch::kFloat) + 10));
  }
}

TEST_CASE("Batches rejects bad options and data sets", "[batches]") {
  using Catch::Contains;
  for (int64_t bs : {0, -1}) {
    CHECK_THAT(
        error_of([&] { dlcore::Batches(ids(4), dlcore::BatchesOptions(bs)); }),
        Contains(
            "Batches: expected batch_size >= 1 but got " + std::to_string(bs)));
  }
  CHECK_THAT(
      error_of([] {
        dlcore::Batches(dlcore::TensorDataset{}, dlcore::BatchesOptions(2));
      }),
      Contains("Batches: expected a TensorDataset with data and targets"));
  CHECK_THAT(
      error_of([] {
        dlcore::Batches(
            dlcore::TensorDataset{torch::zeros({4, 2}), torch::zeros({3})},
            dlcore::BatchesOptions(2));
      }),
      Contains("Batches: expected data and targets with the same number of "
               "samples, but got data [4, 2] and targets [3]"));
}

TEST_CASE("Batches feeds a real optimizer that lowers the loss", "[batches]") {
  torch::manual_seed(0);
  // Two separable Gaussian blobs.
  const int64_t n = 512;
  const torch::Tensor y = torch::arange(n) % 2;
  const torch::Tensor x =
      torch::randn({n, 2}) + (y.to(torch::kFloat) * 4 - 2).unsqueeze(1);
  dlcore::Batches batches(
      dlcore::TensorDataset{x, y},
      dlcore::BatchesOptions(32).shuffle(true).seed(1));
  torch::nn::Linear model(2, 2);
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.1));
  auto epoch_loss = [&](bool train) {
    double total = 0;
    for (const dlcore::Batch& b : batches) {
      const torch::Tensor loss =
          torch::cross_entropy_loss(model->forward(b.data), b.targets);
      if (train) {
        opt.zero_grad();
        loss.backward();
        opt.step();
      }
      total += loss.item<double>() * static_cast<double>(b.data.size(0));
    }
    return total / static_cast<double>(n);
  };
  const double before = epoch_loss(false);
  for (int e = 0; e < 3; ++e) {
    epoch_loss(true);
  }
  const double after = epoch_loss(false);
  CHECK(after < 0.5 * before);
}

TEST_CASE("save and load resume shuffling at the saved epoch", "[batches]") {
  const dlcore::TensorDataset ds = ids(200);
  const auto opts = dlcore::BatchesOptions(16).shuffle(true).seed(3);
  dlcore::Batches a(ds, opts);
  pass(a);
  pass(a);
  std::stringstream stream;
  {
    torch::serialize::OutputArchive archive;
    a.save(archive);
    archive.save_to(stream);
  }
  const auto third = pass(a);

  dlcore::Batches b(ds, opts);
  torch::serialize::InputArchive archive;
  archive.load_from(stream);
  b.load(archive);
  CHECK(b.epoch() == 2);
  CHECK(pass(b) == third);

  // A different configuration would not replay the same orders.
  dlcore::Batches other(ds, dlcore::BatchesOptions(16).shuffle(true).seed(4));
  CHECK_THAT(
      error_of([&] { other.load(archive); }),
      Catch::Contains(
          "Batches: expected saved state for 200 samples, batch_size 16, "
          "shuffle 1, drop_last 0, seed 4 but got 200 samples, batch_size 16, "
          "shuffle 1, drop_last 0, seed 3"));
}

TEST_CASE(
    "SplitMix64 reproduces the reference generator's first outputs",
    "[batches][splitmix]") {
  // Vigna's splitmix64.c seeded with 1234567.
  const std::vector<uint64_t> expected = {
      6457827717110365317ULL,
      3203168211198807973ULL,
      9817491932198370423ULL,
      4593380528125082431ULL,
      16408922859458223821ULL};
  dlcore::detail::SplitMix64 rng(1234567);
  for (uint64_t j = 0; j < expected.size(); ++j) {
    CHECK(rng.next() == expected[j]);
    CHECK(dlcore::detail::splitmix_at(1234567, j) == expected[j]);
  }
  for (uint64_t z :
       {uint64_t{0}, uint64_t{1}, ~uint64_t{0}, uint64_t{1} << 63}) {
    CHECK(dlcore::detail::splitmix_finalize(z) == reference_mix(z));
  }
}

TEST_CASE(
    "stream seeds and epoch keys follow the one documented derivation",
    "[batches][splitmix]") {
  using namespace dlcore::detail;
  CHECK(kBatchesStream == 0);
  for (uint64_t seed : {uint64_t{0}, uint64_t{1}, uint64_t{42}, ~uint64_t{0}}) {
    for (uint64_t stream :
         {kBatchesStream, kHashtagResamplerStream, kLabelNoiseStream}) {
      CHECK(splitmix_stream_seed(seed, stream) == reference_mix(seed ^ stream));
      for (uint64_t epoch :
           {uint64_t{0}, uint64_t{1}, uint64_t{7}, ~uint64_t{0}}) {
        INFO("seed " << seed << " stream " << stream << " epoch " << epoch);
        CHECK(
            splitmix_epoch_key(seed, epoch, stream) ==
            reference_epoch_key(seed, epoch, stream));
      }
    }
  }
}

TEST_CASE(
    "epoch keys differ across seeds, epochs and streams",
    "[batches][splitmix]") {
  using namespace dlcore::detail;
  std::set<uint64_t> keys;
  std::set<uint64_t> stream_seeds;
  for (uint64_t seed = 0; seed < 64; ++seed) {
    for (uint64_t stream :
         {kBatchesStream, kHashtagResamplerStream, kLabelNoiseStream}) {
      stream_seeds.insert(splitmix_stream_seed(seed, stream));
      for (uint64_t epoch = 0; epoch < 16; ++epoch) {
        keys.insert(splitmix_epoch_key(seed, epoch, stream));
      }
    }
  }
  CHECK(stream_seeds.size() == 64 * 3);
  CHECK(keys.size() == 64 * 3 * 16);
}

TEST_CASE(
    "a shuffled epoch is torch::randperm under the epoch key of the Batches "
    "stream",
    "[batches][splitmix]") {
  // The derivation with stream 0, mix(mix(seed) ^ (epoch * gamma + c)), is
  // the one Batches has always used: its orders did not change.
  for (uint64_t seed : {uint64_t{0}, uint64_t{7}, (uint64_t{1} << 63) + 5}) {
    dlcore::Batches b(
        ids(257), dlcore::BatchesOptions(10).shuffle(true).seed(seed));
    for (int64_t epoch : {int64_t{-2}, int64_t{0}, int64_t{1}, int64_t{5}}) {
      INFO("seed " << seed << " epoch " << epoch);
      const uint64_t key = reference_mix(
          reference_mix(seed) ^
          (static_cast<uint64_t>(epoch) * 0x9E3779B97F4A7C15ULL +
           0x632BE59BD9B4E019ULL));
      const torch::Tensor expected = torch::randperm(
          257, at::detail::createCPUGenerator(key), torch::kLong);
      CHECK(torch::equal(b.order(epoch), expected));
    }
  }
}

// ---- Index sources: an index tensor and LibTorch samplers ----------------

namespace {

/// A sampler's indices for one epoch, batch by batch, drawn as a loop over
/// it would: `reset()`, then `next(batch_size)` until it is exhausted.
template <typename S>
std::vector<std::vector<int64_t>> drawn(S& sampler, size_t batch_size) {
  std::vector<std::vector<int64_t>> out;
  sampler.reset(torch::nullopt);
  while (auto idx = sampler.next(batch_size)) {
    out.emplace_back(idx->begin(), idx->end());
  }
  return out;
}

/// One pass over a const Batches (or a Pass), checking alignment.
template <typename Range>
std::vector<std::vector<int64_t>> read(const Range& range) {
  std::vector<std::vector<int64_t>> out;
  for (const dlcore::Batch& b : range) {
    const std::vector<int64_t> idx = to_vec(b.data.select(1, 0));
    CHECK(to_vec(b.targets) == to_vec(torch::tensor(idx) * 3));
    out.push_back(idx);
  }
  return out;
}

/// A sampler that yields the indices it is given, once per epoch.
class ListSampler : public torch::data::samplers::Sampler<> {
 public:
  explicit ListSampler(std::vector<size_t> list) : list_(std::move(list)) {}
  void reset(torch::optional<size_t> /*new_size*/) override {
    done_ = false;
  }
  torch::optional<std::vector<size_t>> next(size_t /*batch_size*/) override {
    if (done_) {
      return torch::nullopt;
    }
    done_ = true;
    return list_;
  }
  void save(torch::serialize::OutputArchive& /*archive*/) const override {}
  void load(torch::serialize::InputArchive& /*archive*/) override {}

 private:
  std::vector<size_t> list_;
  bool done_ = false;
};

} // namespace

TEST_CASE(
    "Batches over an index tensor visits those indices in order, batch by "
    "batch",
    "[batches][indices]") {
  torch::Tensor idx = torch::tensor(std::vector<int64_t>{7, 2, 2, 9, 0});
  dlcore::Batches b(ids(10), idx, dlcore::BatchesOptions(2));
  CHECK(b.size() == 3);
  CHECK(b.num_samples() == 5);
  const std::vector<std::vector<int64_t>> expected = {{7, 2}, {2, 9}, {0}};
  CHECK(pass(b) == expected);
  CHECK(pass(b) == expected);
  CHECK(b.epoch() == 2);
  // The indices were copied: changing the caller's tensor changes nothing.
  idx.fill_(1);
  CHECK(pass(b) == expected);
  CHECK(to_vec(b.indices()) == std::vector<int64_t>{7, 2, 2, 9, 0});

  dlcore::Batches dropped(
      ids(10),
      torch::tensor(std::vector<int64_t>{7, 2, 2, 9, 0}),
      dlcore::BatchesOptions(2).drop_last(true));
  CHECK(dropped.size() == 2);
  CHECK(dropped.num_samples() == 4);
  CHECK(pass(dropped) == std::vector<std::vector<int64_t>>{{7, 2}, {2, 9}});

  // With shuffle, epoch e visits indices[randperm(M)] under the epoch key.
  const torch::Tensor sub =
      torch::tensor(std::vector<int64_t>{3, 5, 8, 13, 21, 1});
  dlcore::Batches shuffled(
      ids(30), sub, dlcore::BatchesOptions(4).shuffle(true).seed(9));
  for (int64_t e : {0, 1, 4}) {
    const torch::Tensor perm = torch::randperm(
        6,
        at::detail::createCPUGenerator(
            reference_epoch_key(9, static_cast<uint64_t>(e), 0)),
        torch::kLong);
    const std::vector<int64_t> order = to_vec(sub.index_select(0, perm));
    CHECK(to_vec(shuffled.order(e)) == order);
    shuffled.set_epoch(e);
    const auto batches = pass(shuffled);
    REQUIRE(batches.size() == 2);
    CHECK(batches[0] == std::vector<int64_t>(order.begin(), order.begin() + 4));
    CHECK(batches[1] == std::vector<int64_t>(order.begin() + 4, order.end()));
  }
  CHECK(to_vec(shuffled.order(0)) != to_vec(shuffled.order(1)));
}

TEST_CASE(
    "Batches over a HashtagResampler yields its draws in order, and a pass "
    "sets the sampler's epoch",
    "[batches][sampler]") {
  const torch::Tensor labels = torch::arange(40, torch::kLong) % 4;
  for (int64_t world : {1, 3}) {
    INFO("world_size " << world);
    auto opts =
        dlcore::HashtagResamplerOptions(dlcore::SamplingScheme::kUniform)
            .epoch_length(50)
            .seed(11)
            .world_size(world)
            .rank(world - 1);
    auto sampler = std::make_shared<dlcore::HashtagResampler>(labels, opts);
    dlcore::HashtagResampler ref(labels, opts);
    dlcore::Batches b(ids(40), sampler, dlcore::BatchesOptions(8));
    CHECK(b.num_samples() == ref.local_length());
    CHECK(b.size() == (ref.local_length() + 7) / 8);
    std::vector<std::vector<std::vector<int64_t>>> epochs;
    for (int64_t e = 0; e < 3; ++e) {
      const auto got = pass(b); // moves b to the next epoch
      CHECK(sampler->epoch() == e);
      ref.set_epoch(e);
      CHECK(got == drawn(ref, 8));
      epochs.push_back(got);
    }
    CHECK(epochs[0] != epochs[1]);
    CHECK(epochs[1] != epochs[2]);
    // An explicit epoch, and a pass of a chosen epoch, as set_epoch says.
    b.set_epoch(7);
    ref.set_epoch(7);
    const auto seven = drawn(ref, 8);
    CHECK(read(b.pass(7)) == seven);
    CHECK(b.epoch() == 7);
    CHECK(pass(b) == seven);
    CHECK(b.epoch() == 8);
  }
}

TEST_CASE(
    "Batches over a RandomSampler yields its permutations in order",
    "[batches][sampler]") {
  using torch::data::samplers::RandomSampler;
  torch::manual_seed(123);
  auto sampler = std::make_shared<RandomSampler>(23);
  // The constructor counts one pass (RandomSampler has no length).
  dlcore::Batches b(ids(23), sampler, dlcore::BatchesOptions(5));
  CHECK(b.size() == 5);
  CHECK(b.num_samples() == 23);
  const auto first = pass(b);
  const auto second = pass(b);

  // The same global generator, the same calls: one permutation at
  // construction, one counting, one per pass.
  torch::manual_seed(123);
  RandomSampler ref(23);
  ref.reset(torch::nullopt);
  CHECK(first == drawn(ref, 5));
  CHECK(second == drawn(ref, 5));
  CHECK(first != second);
  std::vector<int64_t> all = flat(first);
  std::sort(all.begin(), all.end());
  CHECK(all == to_vec(torch::arange(23)));
}

TEST_CASE(
    "Batches over a DistributedRandomSampler yields its shard of each epoch",
    "[batches][sampler]") {
  using torch::data::samplers::DistributedRandomSampler;
  for (size_t rank : {size_t{0}, size_t{1}}) {
    INFO("rank " << rank);
    auto sampler = std::make_shared<DistributedRandomSampler>(21, 2, rank);
    DistributedRandomSampler ref(21, 2, rank);
    dlcore::Batches b(ids(21), sampler, dlcore::BatchesOptions(4));
    CHECK(b.num_samples() == 11); // ceil(21 / 2)
    CHECK(b.size() == 3);
    std::vector<std::vector<std::vector<int64_t>>> epochs;
    for (size_t e = 0; e < 3; ++e) {
      const auto got = pass(b);
      CHECK(sampler->epoch() == e);
      ref.set_epoch(e);
      CHECK(got == drawn(ref, 4));
      epochs.push_back(got);
    }
    CHECK(epochs[0] != epochs[1]);
    CHECK(epochs[1] != epochs[2]);
  }
}

TEST_CASE(
    "a const Batches is read at its epoch, and pass(e) reads any epoch, "
    "without moving the epoch",
    "[batches]") {
  dlcore::Batches b(ids(19), dlcore::BatchesOptions(4).shuffle(true).seed(2));
  b.set_epoch(5);
  const dlcore::Batches& cb = b;
  const auto first = read(cb);
  CHECK(read(cb) == first);
  CHECK(cb.epoch() == 5);
  CHECK(read(cb.pass(5)) == first);
  const auto six = read(cb.pass(6));
  CHECK(six != first);
  CHECK(cb.epoch() == 5);
  // The non-const pass visits the same batches and moves on.
  CHECK(pass(b) == first);
  CHECK(pass(b) == six);
  CHECK(b.epoch() == 7);
  // A pass can be walked twice; its size is the batches per epoch.
  const dlcore::Batches::Pass p = cb.pass(3);
  CHECK(p.size() == 5);
  CHECK(p.epoch() == 3);
  CHECK(read(p) == read(p));
}

TEST_CASE("Batches rejects bad index sources", "[batches][sampler]") {
  using Catch::Contains;
  using torch::data::samplers::RandomSampler;
  const dlcore::TensorDataset ds = ids(6);
  CHECK_THAT(
      error_of([&] {
        dlcore::Batches(ds, torch::Tensor(), dlcore::BatchesOptions(2));
      }),
      Contains("Batches: expected an int64 index tensor of shape [M] but got "
               "an undefined tensor"));
  CHECK_THAT(
      error_of([&] {
        dlcore::Batches(ds, torch::zeros({3}), dlcore::BatchesOptions(2));
      }),
      Contains("Batches: expected an int64 index tensor of shape [M] but got "
               "a CPUFloatType of shape [3]"));
  CHECK_THAT(
      error_of([&] {
        dlcore::Batches(
            ds, torch::zeros({2, 2}, torch::kLong), dlcore::BatchesOptions(2));
      }),
      Contains("Batches: expected an int64 index tensor of shape [M] but got "
               "a CPULongType of shape [2, 2]"));
  for (int64_t bad : {-1, 6}) {
    CHECK_THAT(
        error_of([&] {
          dlcore::Batches(
              ds,
              torch::tensor(std::vector<int64_t>{0, bad, 3}),
              dlcore::BatchesOptions(2));
        }),
        Contains(
            "Batches: expected indices in [0, N = 6) but got indices "
            "from " +
            std::to_string(std::min<int64_t>(0, bad)) + " to " +
            std::to_string(std::max<int64_t>(3, bad))));
  }
  CHECK_THAT(
      error_of([&] {
        dlcore::Batches(
            ds, std::shared_ptr<RandomSampler>(), dlcore::BatchesOptions(2));
      }),
      Contains("Batches: expected a sampler but got a null std::shared_ptr"));
  CHECK_THAT(
      error_of([&] {
        dlcore::Batches(
            ds,
            std::make_shared<RandomSampler>(6),
            dlcore::BatchesOptions(2).shuffle(true));
      }),
      Contains("Batches: expected shuffle false with a sampler (the sampler "
               "chooses the order) but got shuffle true"));
  CHECK_THAT(
      error_of([&] {
        dlcore::Batches(
            ds,
            std::make_shared<ListSampler>(std::vector<size_t>{1, 6}),
            dlcore::BatchesOptions(2));
      }),
      Contains("Batches: expected the sampler's indices in [0, N = 6) but got "
               "6 (counting its epoch at construction)"));
  // A sampler whose length changes after construction.
  auto shrinking = std::make_shared<RandomSampler>(6);
  dlcore::Batches b(ds, shrinking, dlcore::BatchesOptions(4));
  shrinking->reset(5);
  CHECK_THAT(
      error_of([&] { pass(b); }),
      Contains("Batches: expected the sampler to yield 6 indices per epoch "
               "(counted at construction) but it yielded 5 in epoch 0"));
  // Epochs of a sampler with set_epoch are >= 0.
  auto hashtag = std::make_shared<dlcore::HashtagResampler>(
      torch::arange(6, torch::kLong) % 2);
  dlcore::Batches h(ds, hashtag, dlcore::BatchesOptions(4));
  CHECK_THAT(
      error_of([&] { h.pass(-1); }),
      Contains("Batches: expected epoch >= 0 for a pass over a sampler with "
               "set_epoch but got -1"));
}

TEST_CASE(
    "a Batches over a sampler saves its epoch and its source",
    "[batches][sampler]") {
  const torch::Tensor labels = torch::arange(30, torch::kLong) % 3;
  auto opts = dlcore::HashtagResamplerOptions(0.5).seed(4);
  auto sampler = std::make_shared<dlcore::HashtagResampler>(labels, opts);
  dlcore::Batches a(ids(30), sampler, dlcore::BatchesOptions(7));
  pass(a);
  pass(a);
  std::stringstream stream;
  {
    torch::serialize::OutputArchive archive;
    a.save(archive);
    archive.save_to(stream);
  }
  const auto third = pass(a);
  torch::serialize::InputArchive archive;
  archive.load_from(stream);

  // A new sampler of the same options: the saved epoch replays the pass.
  dlcore::Batches b(
      ids(30),
      std::make_shared<dlcore::HashtagResampler>(labels, opts),
      dlcore::BatchesOptions(7));
  b.load(archive);
  CHECK(b.epoch() == 2);
  CHECK(pass(b) == third);

  // Over the data set, with as many samples: refused, naming the sources.
  dlcore::Batches plain(ids(30), dlcore::BatchesOptions(7));
  CHECK_THAT(
      error_of([&] { plain.load(archive); }),
      Catch::Contains("Batches: expected saved state of a Batches over the "
                      "dataset but got one over the sampler"));
  CHECK(plain.epoch() == 0);

  // A version 1 state (no `source`) is a Batches over the data set.
  std::ostringstream v1;
  {
    torch::serialize::OutputArchive out;
    dlcore::detail::StateWriter(out, "Batches", 1)
        .put_int("epoch", 4)
        .put_int("seed", 0)
        .put_int("num_samples", 30)
        .put_int("batch_size", 7)
        .put_bool("shuffle", false)
        .put_bool("drop_last", false);
    out.save_to(v1);
  }
  std::istringstream v1_in(v1.str());
  torch::serialize::InputArchive in;
  in.load_from(v1_in);
  plain.load(in);
  CHECK(plain.epoch() == 4);
  std::istringstream v1_again(v1.str());
  torch::serialize::InputArchive in_again;
  in_again.load_from(v1_again);
  CHECK_THAT(
      error_of([&] { b.load(in_again); }),
      Catch::Contains("Batches: expected saved state of a Batches over the "
                      "sampler but got one over the dataset"));
}
