#include <dlcore/data/hashtag_resampler.h>
#include <dlcore/train/losses.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <vector>

namespace {

// Zipfian single labels: tag h gets about n0 / (h + 1)^s images (at least 1),
// laid out tag after tag.
torch::Tensor zipf_labels(int64_t num_tags, int64_t n0, double s) {
  std::vector<int64_t> labels;
  for (int64_t h = 0; h < num_tags; ++h) {
    const int64_t c = std::max<int64_t>(
        1, static_cast<int64_t>(std::llround(n0 / std::pow(h + 1.0, s))));
    labels.insert(labels.end(), static_cast<size_t>(c), h);
  }
  return torch::tensor(labels, torch::kLong);
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

std::vector<int64_t> to_vec(const torch::Tensor& t) {
  auto c = t.to(torch::kLong).contiguous();
  return std::vector<int64_t>(
      c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

// Pearson's chi-square of observed counts against probabilities p (bins with
// p = 0 must have no count, else +inf).
double chi_square(
    const std::vector<int64_t>& observed, const std::vector<double>& p) {
  int64_t n = std::accumulate(observed.begin(), observed.end(), int64_t{0});
  double chi = 0.0;
  for (size_t k = 0; k < p.size(); ++k) {
    const double e = p[k] * static_cast<double>(n);
    if (e == 0.0) {
      if (observed[k] != 0) {
        return INFINITY;
      }
      continue;
    }
    const double d = static_cast<double>(observed[k]) - e;
    chi += d * d / e;
  }
  return chi;
}

// Upper critical value of chi-square with df degrees of freedom at tail
// probability 1e-4 (Wilson-Hilferty; z = 3.719).
double chi_square_critical(int64_t df) {
  const double k = static_cast<double>(df);
  const double a = 2.0 / (9.0 * k);
  return k * std::pow(1.0 - a + 3.719 * std::sqrt(a), 3.0);
}

std::vector<double> powered(const std::vector<int64_t>& n, double alpha) {
  std::vector<double> p(n.size(), 0.0);
  double total = 0.0;
  for (size_t h = 0; h < n.size(); ++h) {
    p[h] = n[h] > 0 ? std::pow(static_cast<double>(n[h]), alpha) : 0.0;
    total += p[h];
  }
  for (double& x : p) {
    x /= total;
  }
  return p;
}

std::vector<int64_t> drain(dlcore::HashtagResampler& s, size_t batch) {
  std::vector<int64_t> out;
  while (auto b = s.next(batch)) {
    out.insert(out.end(), b->begin(), b->end());
  }
  return out;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "no error";
}

} // namespace

TEST_CASE(
    "HashtagResampler defaults are natural sampling over N draws",
    "[hashtag_resampler]") {
  dlcore::HashtagResamplerOptions o;
  CHECK(o.alpha() == 1.0);
  CHECK(o.num_tags() == -1);
  CHECK(o.epoch_length() == -1);
  CHECK(o.seed() == 0);
  CHECK(o.rank() == 0);
  CHECK(o.world_size() == 1);
  CHECK_FALSE(o.drop_last());
  CHECK(o.mode() == dlcore::ResamplingMode::kDraw);
  CHECK(
      dlcore::HashtagResamplerOptions(dlcore::SamplingScheme::kSquareRoot)
          .alpha() == 0.5);
  CHECK(
      dlcore::HashtagResamplerOptions()
          .scheme(dlcore::SamplingScheme::kUniform)
          .alpha() == 0.0);

  auto labels = zipf_labels(5, 40, 1.0);
  dlcore::HashtagResampler s(labels);
  CHECK(s.num_images() == labels.numel());
  CHECK(s.num_tags() == 5);
  CHECK(s.epoch_length() == labels.numel());
  CHECK(s.local_length() == labels.numel());
  auto all = drain(s, 7);
  CHECK(static_cast<int64_t>(all.size()) == labels.numel());
  CHECK_FALSE(s.next(7).has_value());
}

TEST_CASE(
    "tag probabilities and image weights follow n_h^alpha exactly",
    "[hashtag_resampler]") {
  // image: tags
  // 0: {0, 1}  1: {0}  2: {0, 2}  3: {}  4: {1}  5: {0}
  dlcore::TagLists t{
      torch::tensor({0, 2, 3, 5, 5, 6, 7}, torch::kLong),
      torch::tensor({0, 1, 0, 0, 2, 1, 0}, torch::kLong)};
  for (double alpha : {0.0, 0.5, 1.0, 2.0, 3.7}) {
    dlcore::HashtagResampler s(
        t, dlcore::HashtagResamplerOptions(alpha).num_tags(4));
    std::vector<int64_t> n = {4, 2, 1, 0};
    CHECK(to_vec(s.tag_counts()) == n);
    auto p = powered(n, alpha);
    auto got = s.tag_probabilities();
    for (int h = 0; h < 4; ++h) {
      CHECK(got[h].item<double>() == Approx(p[h]).epsilon(1e-14));
    }
    // Brute force: w_i = sum over tags of p_h / n_h.
    std::vector<std::vector<int64_t>> lists = {
        {0, 1}, {0}, {0, 2}, {}, {1}, {0}};
    auto w = s.image_weights();
    double total = 0.0;
    for (size_t i = 0; i < lists.size(); ++i) {
      double expect = 0.0;
      for (int64_t h : lists[i]) {
        expect += p[h] / static_cast<double>(n[h]);
      }
      CHECK(
          w[static_cast<int64_t>(i)].item<double>() ==
          Approx(expect).epsilon(1e-14).margin(1e-300));
      total += w[static_cast<int64_t>(i)].item<double>();
    }
    CHECK(total == Approx(1.0).epsilon(1e-14));
    CHECK(s.report().num_untagged_images == 1);
    CHECK(s.report().num_unused_tags == 1);
    CHECK(s.report().num_pairs == 7);
  }
}

TEST_CASE(
    "realized tag marginals pass chi-square for each scheme and a wrong "
    "alpha fails",
    "[hashtag_resampler]") {
  auto labels = zipf_labels(40, 3000, 1.1);
  auto lv = to_vec(labels);
  std::vector<int64_t> n(40, 0);
  for (int64_t l : lv) {
    ++n[l];
  }
  const int64_t draws = 400000;
  const double crit = chi_square_critical(39);
  for (double alpha : {1.0, 0.5, 0.0, 1.5}) {
    dlcore::HashtagResampler s(
        labels,
        dlcore::HashtagResamplerOptions(alpha).seed(11).epoch_length(draws));
    std::vector<int64_t> observed(40, 0);
    for (int64_t i : to_vec(s.epoch_indices(0))) {
      ++observed[lv[i]];
    }
    INFO("alpha " << alpha);
    CHECK(chi_square(observed, powered(n, alpha)) < crit);
    // The same counts tested against a scheme off by 0.1 must fail.
    CHECK(chi_square(observed, powered(n, alpha + 0.1)) > crit);
    if (alpha > 0.0) {
      CHECK(chi_square(observed, powered(n, alpha - 0.1)) > crit);
    }
  }
}

TEST_CASE(
    "multi-label image frequencies pass chi-square against image_weights",
    "[hashtag_resampler]") {
  // 300 images, 12 tags, 0..3 tags each from a seeded generator.
  std::mt19937_64 gen(3);
  std::vector<int64_t> off = {0};
  std::vector<int64_t> tags;
  for (int i = 0; i < 300; ++i) {
    std::set<int64_t> s;
    const int k = static_cast<int>(gen() % 4);
    while (static_cast<int>(s.size()) < k) {
      // Skewed: low tag ids are common.
      const double u = static_cast<double>(gen() >> 11) * 0x1.0p-53;
      s.insert(static_cast<int64_t>(12 * u * u));
    }
    tags.insert(tags.end(), s.begin(), s.end());
    off.push_back(static_cast<int64_t>(tags.size()));
  }
  dlcore::TagLists t{torch::tensor(off), torch::tensor(tags)};
  const int64_t draws = 300000;
  dlcore::HashtagResampler s(
      t,
      dlcore::HashtagResamplerOptions(dlcore::SamplingScheme::kSquareRoot)
          .seed(5)
          .epoch_length(draws));
  std::vector<int64_t> observed(300, 0);
  for (int64_t i : to_vec(s.epoch_indices(2))) {
    ++observed[i];
  }
  auto wt = s.image_weights();
  std::vector<double> w(wt.data_ptr<double>(), wt.data_ptr<double>() + 300);
  int64_t df = -1;
  for (double x : w) {
    df += x > 0.0 ? 1 : 0;
  }
  CHECK(chi_square(observed, w) < chi_square_critical(df));
  // Natural-sampling weights do not fit square-root draws.
  dlcore::HashtagResampler natural(t);
  auto wn = natural.image_weights();
  std::vector<double> w1(wn.data_ptr<double>(), wn.data_ptr<double>() + 300);
  CHECK(chi_square(observed, w1) > chi_square_critical(df));
}

TEST_CASE(
    "draws stay exact beyond 2^24 images where torch::multinomial refuses",
    "[hashtag_resampler]") {
  // N = 2^24 + 2^20 single-label images, image i carries tag i mod 1000;
  // int32 labels keep the footprint at 4 + 4 bytes per image.
  const int64_t n = (int64_t{1} << 24) + (int64_t{1} << 20);
  const int64_t num_tags = 1000;
  auto labels = torch::arange(n, torch::kInt).remainder(num_tags);
  // Tags 0..99 lose most of their images (label -1), so the counts differ
  // and alpha matters.
  auto drop = torch::arange(n, torch::kLong);
  labels.masked_fill_(labels.lt(100).logical_and(drop.remainder(7).ne(0)), -1);
  dlcore::HashtagResampler s(
      labels,
      dlcore::HashtagResamplerOptions(dlcore::SamplingScheme::kSquareRoot)
          .seed(2)
          .epoch_length(2000000));
  CHECK(s.num_images() == n);
  CHECK(s.report().num_untagged_images > 0);
  auto counts = to_vec(s.tag_counts());
  auto idx = s.epoch_indices(0);
  auto lab = labels.to(torch::kLong).index_select(0, idx);
  CHECK(lab.ge(0).all().item<bool>()); // untagged images never drawn
  auto observed = to_vec(torch::bincount(lab, {}, num_tags));
  const double crit = chi_square_critical(num_tags - 1);
  CHECK(chi_square(observed, powered(counts, 0.5)) < crit);
  CHECK(chi_square(observed, powered(counts, 0.6)) > crit);
  // Images above 2^24 are drawn at their share, within 5 standard deviations.
  auto w = s.image_weights();
  const double share = w.slice(0, int64_t{1} << 24).sum().item<double>();
  const double got = idx.ge(int64_t{1} << 24).sum().item<double>() / 2e6;
  CHECK(std::abs(got - share) < 5.0 * std::sqrt(share * (1 - share) / 2e6));
  CHECK(share > 0.05);
  CHECK_THROWS(torch::multinomial(w, 10, true));
}

TEST_CASE(
    "images with no tags are never drawn and are counted",
    "[hashtag_resampler]") {
  auto labels = torch::tensor({-1, 0, -1, 1, 1, -5, 2}, torch::kLong);
  dlcore::HashtagResampler s(
      labels, dlcore::HashtagResamplerOptions(0.0).epoch_length(5000));
  CHECK(s.report().num_untagged_images == 3);
  auto w = s.image_weights();
  CHECK(w[0].item<double>() == 0.0);
  CHECK(w[2].item<double>() == 0.0);
  CHECK(w[5].item<double>() == 0.0);
  std::set<int64_t> seen;
  for (int64_t i : drain(s, 64)) {
    seen.insert(i);
  }
  CHECK(seen == std::set<int64_t>{1, 3, 4, 6});
  auto tl = dlcore::TagLists::from_labels(labels);
  dlcore::HashtagResampler c(tl);
  CHECK(c.report().num_untagged_images == 3);
  CHECK(to_vec(c.image_weights()) == to_vec(s.image_weights()));
}

TEST_CASE(
    "the same seed and epoch give the same draws, and others differ",
    "[hashtag_resampler]") {
  auto labels = zipf_labels(20, 100, 1.0);
  auto make = [&](uint64_t seed) {
    return dlcore::HashtagResampler(
        labels, dlcore::HashtagResamplerOptions(0.5).seed(seed));
  };
  auto a = make(4);
  auto b = make(4);
  auto c = make(5);
  CHECK(drain(a, 10) == drain(b, 10));
  CHECK(a.epoch_indices(0).equal(b.epoch_indices(0)));
  CHECK_FALSE(a.epoch_indices(0).equal(c.epoch_indices(0)));
  CHECK_FALSE(a.epoch_indices(0).equal(a.epoch_indices(1)));
  // set_epoch selects the epoch's stream and rewinds.
  a.set_epoch(3);
  CHECK(a.position() == 0);
  auto e3 = drain(a, 16);
  CHECK(e3 == to_vec(b.epoch_indices(3)));
  // reset rewinds the same epoch (DistributedSampler convention).
  a.reset();
  CHECK(drain(a, 5) == e3);
  // sample(e, p) is the pure per-position function.
  CHECK(a.sample(3, 17) == e3[17]);
}

TEST_CASE(
    "reset with a new size changes the epoch length", "[hashtag_resampler]") {
  auto labels = zipf_labels(4, 10, 1.0);
  dlcore::HashtagResampler s(labels);
  s.reset(3);
  CHECK(s.epoch_length() == 3);
  CHECK(drain(s, 2).size() == 3);
  s.reset(0);
  CHECK_FALSE(s.next(4).has_value());
  s.reset(1000);
  auto b = s.next(0);
  REQUIRE(b.has_value());
  CHECK(b->empty());
  CHECK(drain(s, 333).size() == 1000);
}

TEST_CASE(
    "save and load mid-epoch yield the same remaining sequence",
    "[hashtag_resampler]") {
  auto labels = zipf_labels(30, 200, 1.2);
  for (auto mode :
       {dlcore::ResamplingMode::kDraw, dlcore::ResamplingMode::kReplicate}) {
    auto opts = dlcore::HashtagResamplerOptions(0.5).seed(9).mode(mode);
    dlcore::HashtagResampler a(labels, opts);
    a.set_epoch(2);
    a.next(13);
    a.next(13);
    std::stringstream buf;
    {
      torch::serialize::OutputArchive out;
      a.save(out);
      out.save_to(buf);
    }
    auto rest = drain(a, 13);
    // A sampler with another seed and epoch adopts the saved state.
    dlcore::HashtagResampler b(labels, opts.seed(1234));
    b.next(50);
    torch::serialize::InputArchive in;
    in.load_from(buf);
    b.load(in);
    CHECK(b.epoch() == 2);
    CHECK(b.position() == 26);
    CHECK(b.options().seed() == 9);
    CHECK(drain(b, 13) == rest);
  }
}

TEST_CASE(
    "load refuses a state saved for other data or options",
    "[hashtag_resampler]") {
  auto labels = zipf_labels(30, 200, 1.2);
  dlcore::HashtagResampler a(labels, dlcore::HashtagResamplerOptions(0.5));
  std::stringstream buf;
  torch::serialize::OutputArchive out;
  a.save(out);
  out.save_to(buf);
  dlcore::HashtagResampler b(labels, dlcore::HashtagResamplerOptions(1.0));
  torch::serialize::InputArchive in;
  in.load_from(buf);
  CHECK_THAT(
      message_of([&] { b.load(in); }),
      Catch::Contains("saved state has alpha = 0.5"));
  dlcore::HashtagResampler c(labels.slice(0, 1));
  torch::serialize::InputArchive in2;
  buf.seekg(0);
  in2.load_from(buf);
  CHECK_THAT(
      message_of([&] { c.load(in2); }),
      Catch::Contains("saved state has num_images"));
}

TEST_CASE(
    "rank slices partition the global epoch like DistributedSampler",
    "[hashtag_resampler]") {
  auto labels = zipf_labels(25, 60, 1.0);
  const int64_t length = 1001;
  for (auto mode :
       {dlcore::ResamplingMode::kDraw, dlcore::ResamplingMode::kReplicate}) {
    for (bool drop_last : {false, true}) {
      for (int64_t world : {1, 3, 4}) {
        auto base = dlcore::HashtagResamplerOptions(0.5)
                        .seed(21)
                        .epoch_length(length)
                        .drop_last(drop_last)
                        .world_size(world)
                        .mode(mode);
        dlcore::HashtagResampler single(
            labels,
            dlcore::HashtagResamplerOptions(0.5)
                .seed(21)
                .epoch_length(length)
                .mode(mode));
        auto global = to_vec(single.epoch_indices(5));
        std::vector<std::vector<int64_t>> slices;
        for (int64_t r = 0; r < world; ++r) {
          dlcore::HashtagResampler s(labels, base.rank(r));
          s.set_epoch(5);
          slices.push_back(drain(s, 64));
          CHECK(static_cast<int64_t>(slices.back().size()) == s.local_length());
        }
        // Interleave back: position r + j * W.
        const int64_t local = static_cast<int64_t>(slices[0].size());
        std::vector<int64_t> merged;
        for (int64_t j = 0; j < local; ++j) {
          for (int64_t r = 0; r < world; ++r) {
            merged.push_back(slices[r][j]);
          }
        }
        INFO("world " << world << " drop_last " << drop_last);
        if (drop_last) {
          CHECK(local == length / world);
          CHECK(
              merged == std::vector<int64_t>(
                            global.begin(), global.begin() + local * world));
        } else {
          CHECK(local == (length + world - 1) / world);
          std::vector<int64_t> expect = global;
          for (int64_t p = length; p < local * world; ++p) {
            expect.push_back(global[p - length]); // padded by wrapping around
          }
          CHECK(merged == expect);
        }
      }
    }
  }
}

TEST_CASE(
    "replication mode repeats each image round(w_i L) times, shuffled per "
    "epoch",
    "[hashtag_resampler]") {
  auto labels = zipf_labels(15, 80, 1.3);
  const int64_t length = 777;
  dlcore::HashtagResampler s(
      labels,
      dlcore::HashtagResamplerOptions(dlcore::SamplingScheme::kUniform)
          .mode(dlcore::ResamplingMode::kReplicate)
          .epoch_length(length)
          .seed(3));
  auto e0 = to_vec(s.epoch_indices(0));
  auto e1 = to_vec(s.epoch_indices(1));
  CHECK(static_cast<int64_t>(e0.size()) == length);
  CHECK(e0 != e1);
  auto w = s.image_weights();
  std::vector<int64_t> c0(static_cast<size_t>(labels.numel()), 0);
  std::vector<int64_t> c1 = c0;
  for (int64_t i : e0) {
    ++c0[i];
  }
  for (int64_t i : e1) {
    ++c1[i];
  }
  CHECK(c0 == c1);
  for (int64_t i = 0; i < labels.numel(); ++i) {
    CHECK(std::abs(c0[i] - w[i].item<double>() * length) < 1.0);
  }
  // Tail images (the last tag has 2 images) are repeated, head images thinned.
  CHECK(c0[labels.numel() - 1] >= 20);
  CHECK(c0[0] <= 1);
  CHECK(drain(s, 100) == e0);
  CHECK_THROWS_WITH(s.sample(0, 0), Catch::Contains("only in kDraw mode"));
}

TEST_CASE(
    "soft targets are 1/k rows and soft cross-entropy matches the formula",
    "[hashtag_resampler]") {
  dlcore::TagLists t{
      torch::tensor({0, 2, 2, 5}, torch::kLong),
      torch::tensor({1, 3, 0, 2, 3}, torch::kLong)};
  auto y = dlcore::soft_targets(t, torch::tensor({2, 1, 0, 2}), 4);
  auto expect = torch::tensor(
      {{1 / 3.f, 0.f, 1 / 3.f, 1 / 3.f},
       {0.f, 0.f, 0.f, 0.f},
       {0.f, 0.5f, 0.f, 0.5f},
       {1 / 3.f, 0.f, 1 / 3.f, 1 / 3.f}});
  CHECK(torch::allclose(y, expect));
  torch::manual_seed(0);
  auto x = torch::randn({4, 4}, torch::kDouble);
  auto yd = y.to(torch::kDouble);
  double brute = 0.0;
  for (int b = 0; b < 4; ++b) {
    double lse = std::log(x[b].exp().sum().item<double>());
    for (int c = 0; c < 4; ++c) {
      brute -= yd[b][c].item<double>() * (x[b][c].item<double>() - lse);
    }
  }
  CHECK(
      dlcore::soft_cross_entropy(x, y).item<double>() ==
      Approx(brute / 4).epsilon(1e-12));
  // One-hot rows: the ordinary cross-entropy.
  auto labels = torch::tensor({3, 0, 1, 1});
  auto onehot = torch::one_hot(labels, 4).to(torch::kDouble);
  CHECK(
      dlcore::soft_cross_entropy(x, onehot).item<double>() ==
      Approx(torch::nn::functional::cross_entropy(x, labels).item<double>())
          .epsilon(1e-12));
  CHECK_THROWS_WITH(
      dlcore::soft_targets(t, torch::tensor({3}), 4),
      Catch::Contains("index 3 is outside [0, N = 3)"));
  CHECK_THROWS_WITH(
      dlcore::soft_targets(t, torch::tensor({2}), 3),
      Catch::Contains("has tag id 3, outside [0, num_tags = 3)"));
  CHECK_THROWS_WITH(
      dlcore::soft_cross_entropy(x, y.slice(0, 1)),
      Catch::Contains("targets of the same shape"));
}

TEST_CASE("invalid inputs give clear errors", "[hashtag_resampler]") {
  auto labels = torch::tensor({0, 1, 2}, torch::kLong);
  using O = dlcore::HashtagResamplerOptions;
  CHECK_THAT(
      message_of([&] { dlcore::HashtagResampler(labels, O(-0.5)); }),
      Catch::Contains("alpha must be a finite number >= 0, but got -0.5"));
  CHECK_THAT(
      message_of([&] { dlcore::HashtagResampler(labels, O(NAN)); }),
      Catch::Contains("alpha must be a finite number >= 0"));
  CHECK_THAT(
      message_of([&] { dlcore::HashtagResampler(labels, O().num_tags(2)); }),
      Catch::Contains("image 2 has tag id 2, outside [0, num_tags = 2)"));
  dlcore::TagLists bad{
      torch::tensor({0, 1, 3}, torch::kLong), torch::tensor({0, 4, -1})};
  CHECK_THAT(
      message_of([&] { dlcore::HashtagResampler(bad, O().num_tags(5)); }),
      Catch::Contains("image 1 has tag id -1, outside [0, num_tags = 5)"));
  CHECK_THAT(
      message_of([&] {
        dlcore::HashtagResampler(torch::tensor({-1, -1}, torch::kLong));
      }),
      Catch::Contains("total tag mass is zero"));
  CHECK_THAT(
      message_of([&] { dlcore::HashtagResampler(labels.slice(0, 0, 0)); }),
      Catch::Contains("total tag mass is zero"));
  dlcore::TagLists dup{
      torch::tensor({0, 3}, torch::kLong), torch::tensor({2, 0, 2})};
  CHECK_THAT(
      message_of([&] { dlcore::HashtagResampler{dup}; }),
      Catch::Contains("image 0 lists tag 2 more than once"));
  dlcore::TagLists off{
      torch::tensor({0, 2, 1, 3}, torch::kLong), torch::tensor({2, 0, 2})};
  CHECK_THAT(
      message_of([&] { dlcore::HashtagResampler{off}; }),
      Catch::Contains("non-decreasing offsets"));
  dlcore::TagLists end{
      torch::tensor({0, 2}, torch::kLong), torch::tensor({2, 0, 1})};
  CHECK_THAT(
      message_of([&] { dlcore::HashtagResampler{end}; }),
      Catch::Contains("offsets[N] = number of tags (3)"));
  CHECK_THAT(
      message_of(
          [&] { dlcore::HashtagResampler(labels, O().world_size(2).rank(2)); }),
      Catch::Contains("rank must be in [0, world_size = 2), but got 2"));
  CHECK_THAT(
      message_of([&] { dlcore::HashtagResampler(labels, O().world_size(0)); }),
      Catch::Contains("world_size must be >= 1, but got 0"));
  CHECK_THAT(
      message_of(
          [&] { dlcore::HashtagResampler(labels, O().epoch_length(-2)); }),
      Catch::Contains("epoch_length must be -1 (N) or >= 0, but got -2"));
  CHECK_THAT(
      message_of([&] { dlcore::HashtagResampler(labels.to(torch::kFloat)); }),
      Catch::Contains("expected int64 or int32 labels of shape [N]"));
}

TEST_CASE(
    "the sampler drives a DataLoader and an SGD fit on soft targets",
    "[hashtag_resampler]") {
  // Two Gaussian blobs, tag = blob; the rare blob is up-weighted.
  torch::manual_seed(1);
  const int64_t n_head = 900;
  const int64_t n_tail = 30;
  auto x = torch::cat(
      {torch::randn({n_head, 2}) + 2.0, torch::randn({n_tail, 2}) - 2.0});
  auto y = torch::cat(
      {torch::zeros({n_head}, torch::kLong),
       torch::ones({n_tail}, torch::kLong)});
  auto tags = dlcore::TagLists::from_labels(y);
  dlcore::HashtagResampler sampler(
      y,
      dlcore::HashtagResamplerOptions(dlcore::SamplingScheme::kUniform)
          .seed(1));
  auto dataset = torch::data::datasets::TensorDataset(x).map(
      torch::data::transforms::Stack<torch::data::TensorExample>());
  auto loader = torch::data::make_data_loader(
      std::move(dataset),
      std::move(sampler),
      torch::data::DataLoaderOptions(32));
  int64_t seen = 0;
  for (auto& batch : *loader) {
    seen += batch.data.size(0);
  }
  CHECK(seen == n_head + n_tail);

  dlcore::HashtagResampler s(
      y,
      dlcore::HashtagResamplerOptions(dlcore::SamplingScheme::kUniform)
          .seed(1));
  torch::nn::Linear model(2, 2);
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.1));
  double first = 0.0;
  double last = 0.0;
  int64_t tail_drawn = 0;
  for (int64_t epoch = 0; epoch < 5; ++epoch) {
    s.set_epoch(epoch);
    while (auto idx = s.next(64)) {
      auto i = torch::tensor(std::vector<int64_t>(idx->begin(), idx->end()));
      tail_drawn += i.ge(n_head).sum().item<int64_t>();
      auto loss = dlcore::soft_cross_entropy(
          model->forward(x.index_select(0, i)),
          dlcore::soft_targets(tags, i, 2));
      opt.zero_grad();
      loss.backward();
      opt.step();
      (epoch == 0 && first == 0.0 ? first : last) = loss.item<double>();
    }
  }
  CHECK(last < first);
  // Uniform sampling: about half the draws hit the 30 tail images.
  CHECK(tail_drawn > 5 * (n_head + n_tail) * 2 / 5);
}

TEST_CASE(
    "the alias table reproduces its weights exactly, zeros included",
    "[hashtag_resampler]") {
  std::mt19937_64 gen(17);
  for (int trial = 0; trial < 50; ++trial) {
    const size_t k = 1 + gen() % 300;
    std::vector<double> w(k);
    double total = 0.0;
    for (auto& x : w) {
      const uint64_t r = gen();
      // A mix of zeros, tiny and huge weights.
      x = r % 5 == 0 ? 0.0
                     : std::ldexp(static_cast<double>(r >> 40), -(int)(r % 60));
      total += x;
    }
    if (total == 0.0) {
      w[0] = 1.0;
      total = 1.0;
    }
    dlcore::detail::AliasTable table(w);
    auto p = table.probabilities();
    for (size_t j = 0; j < k; ++j) {
      CHECK(p[j] == Approx(w[j] / total).epsilon(1e-12).margin(1e-15));
      if (w[j] == 0.0) {
        CHECK(p[j] == 0.0);
      }
    }
  }
}

TEST_CASE(
    "draws are the same whether generated at once, in chunks or one by one",
    "[hashtag_resampler]") {
  auto labels = zipf_labels(50, 400, 1.0);
  dlcore::HashtagResampler s(
      labels, dlcore::HashtagResamplerOptions(0.5).seed(8).epoch_length(1000));
  auto all = to_vec(s.epoch_indices(4));
  std::vector<int64_t> chunks(1000);
  s.draw(4, 0, 333, chunks.data());
  s.draw(4, 333, 667, chunks.data() + 333);
  CHECK(chunks == all);
  for (int64_t p : {0, 1, 63, 64, 65, 999}) {
    CHECK(s.sample(4, p) == all[static_cast<size_t>(p)]);
  }
}

TEST_CASE(
    "draws are the counter stream of the resampler's epoch key",
    "[hashtag_resampler][splitmix]") {
  // One tag carried by all 16 images: the tag draw is trivial, and the image
  // of position p is output 3p + 2 of the stream keyed by the epoch key,
  // mapped to [0, 16) by Lemire's method, which for 16 = 2^4 is its top four
  // bits (never a rejection).
  const uint64_t resampler_stream = 0x6A09E667F3BCC909ULL;
  for (uint64_t seed : {uint64_t{0}, uint64_t{5}, ~uint64_t{0}}) {
    dlcore::HashtagResampler s(
        torch::zeros({16}, torch::kLong),
        dlcore::HashtagResamplerOptions().seed(seed).epoch_length(64));
    for (int64_t e : {0, 1, 9}) {
      INFO("seed " << seed << " epoch " << e);
      const uint64_t key =
          reference_epoch_key(seed, static_cast<uint64_t>(e), resampler_stream);
      std::vector<int64_t> expected;
      for (uint64_t p = 0; p < 64; ++p) {
        const uint64_t word =
            reference_mix(key + (3 * p + 3) * 0x9E3779B97F4A7C15ULL);
        expected.push_back(static_cast<int64_t>(word >> 60));
        CHECK(s.sample(e, static_cast<int64_t>(p)) == expected.back());
      }
      CHECK(to_vec(s.epoch_indices(e)) == expected);
      s.set_epoch(e);
      auto first = s.next(64);
      REQUIRE(first.has_value());
      CHECK(std::vector<int64_t>(first->begin(), first->end()) == expected);
    }
  }
}
