#include <dlcore/data/label_noise.h>

#include <dlcore/data/hashtag_resampler.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace {

/// SplitMix64's finalizer as in Vigna's reference splitmix64.c, written out
/// here independently of detail/splitmix.h.
uint64_t reference_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

using dlcore::LabelNoiseOptions;
using dlcore::NoiseMode;

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "no error";
}

// Pearson's chi-square of counts against probabilities (p = 0 bins must be
// empty), and the 1e-4 upper critical value (Wilson-Hilferty).
double chi_square(
    const std::vector<double>& obs, const std::vector<double>& p) {
  double n = 0.0;
  for (double o : obs) {
    n += o;
  }
  double total = 0.0;
  for (double q : p) {
    total += q;
  }
  double chi = 0.0;
  for (size_t k = 0; k < p.size(); ++k) {
    const double e = p[k] / total * n;
    if (e == 0.0) {
      if (obs[k] != 0.0) {
        return INFINITY;
      }
      continue;
    }
    chi += (obs[k] - e) * (obs[k] - e) / e;
  }
  return chi;
}

double critical(int64_t df) {
  const double k = static_cast<double>(df);
  const double a = 2.0 / (9.0 * k);
  return k * std::pow(1.0 - a + 3.719 * std::sqrt(a), 3.0);
}

// Labels 0..C-1 with class c holding (c + 1) * per entries, shuffled.
torch::Tensor skewed_labels(int64_t c, int64_t per) {
  std::vector<int64_t> v;
  for (int64_t k = 0; k < c; ++k) {
    v.insert(v.end(), static_cast<size_t>((k + 1) * per), k);
  }
  auto t = torch::tensor(v);
  auto g = at::detail::createCPUGenerator(7);
  return t.index_select(0, torch::randperm(t.numel(), g));
}

std::vector<double> row_of(const torch::Tensor& counts, int64_t a) {
  auto r = counts[a].to(torch::kDouble).contiguous();
  return std::vector<double>(
      r.data_ptr<double>(), r.data_ptr<double>() + r.numel());
}

} // namespace

TEST_CASE("LabelNoiseOptions defaults", "[label_noise]") {
  LabelNoiseOptions o(NoiseMode::kSymmetric, 0.2);
  CHECK(o.mode() == NoiseMode::kSymmetric);
  CHECK(o.rate() == 0.2);
  CHECK(o.exact_count());
  CHECK(o.seed() == 0);
  CHECK(o.num_classes() == -1);
  CHECK_FALSE(o.transition_matrix().defined());
  CHECK_FALSE(o.marginal().defined());
}

TEST_CASE(
    "exact-count symmetric noise changes exactly round(rN) labels to other "
    "classes uniformly",
    "[label_noise]") {
  auto clean = skewed_labels(5, 4000); // 60000 labels
  const int64_t n = clean.numel();
  auto res = dlcore::inject_label_noise(
      clean, LabelNoiseOptions(NoiseMode::kSymmetric, 0.3).seed(4));
  CHECK(res.num_selected == std::llround(0.3 * n));
  CHECK(res.num_changed == res.num_selected);
  CHECK(res.realized_rate == Approx(0.3).epsilon(1e-12));
  CHECK(res.changed.equal(res.selected));
  CHECK(res.changed.equal(res.labels.ne(clean)));
  CHECK(res.labels.masked_select(res.changed.logical_not())
            .equal(clean.masked_select(res.changed.logical_not())));
  CHECK(res.transition_counts.sum().item<int64_t>() == n);
  // Each row: the off-diagonal replacements are uniform over the others.
  for (int64_t a = 0; a < 5; ++a) {
    auto obs = row_of(res.transition_counts, a);
    obs[static_cast<size_t>(a)] = 0.0;
    std::vector<double> p(5, 0.25);
    p[static_cast<size_t>(a)] = 0.0;
    CHECK(chi_square(obs, p) < critical(3));
    // Pair-flip's row does not fit.
    std::vector<double> q(5, 0.0);
    q[static_cast<size_t>((a + 1) % 5)] = 1.0;
    CHECK(chi_square(obs, q) > critical(3));
  }
  // The selection is spread evenly across classes (per-class rate ~ 0.3).
  auto tm = res.transition_matrix;
  for (int64_t a = 0; a < 5; ++a) {
    CHECK(tm[a][a].item<double>() == Approx(0.7).margin(0.03));
    CHECK(tm[a].sum().item<double>() == Approx(1.0).epsilon(1e-12));
  }
}

TEST_CASE(
    "uniform noise selects exactly round(rN) and changes about r(C-1)/C",
    "[label_noise]") {
  auto clean = skewed_labels(4, 5000); // 50000
  auto res = dlcore::inject_label_noise(
      clean, LabelNoiseOptions(NoiseMode::kUniform, 0.4).seed(1));
  CHECK(res.num_selected == 20000);
  const double expect = 20000.0 * 3 / 4;
  const double sd = std::sqrt(20000.0 * 0.75 * 0.25);
  CHECK(std::abs(res.num_changed - expect) < 5 * sd);
  // A selected label's new class is uniform over all 4.
  auto sel_noisy = res.labels.masked_select(res.selected);
  auto counts = torch::bincount(sel_noisy, {}, 4).to(torch::kDouble);
  std::vector<double> obs(
      counts.data_ptr<double>(), counts.data_ptr<double>() + 4);
  // Selected clean classes are skewed 1:2:3:4 but the draw ignores them.
  CHECK(chi_square(obs, {0.25, 0.25, 0.25, 0.25}) < critical(3));
  CHECK(chi_square(obs, {0.1, 0.2, 0.3, 0.4}) > critical(3));
}

TEST_CASE(
    "Bernoulli selection picks each label with probability r",
    "[label_noise]") {
  auto clean = skewed_labels(3, 10000); // 60000
  auto res = dlcore::inject_label_noise(
      clean,
      LabelNoiseOptions(NoiseMode::kSymmetric, 0.1).exact_count(false).seed(2));
  const double sd = std::sqrt(60000 * 0.1 * 0.9);
  CHECK(std::abs(res.num_selected - 6000.0) < 5 * sd);
  CHECK(res.num_selected != 6000); // not the exact count (fixed seed)
  CHECK(res.num_changed == res.num_selected);
  auto none = dlcore::inject_label_noise(
      clean, LabelNoiseOptions(NoiseMode::kSymmetric, 0.0).exact_count(false));
  CHECK(none.num_changed == 0);
  CHECK(none.labels.equal(clean));
  auto all = dlcore::inject_label_noise(
      clean, LabelNoiseOptions(NoiseMode::kSymmetric, 1.0).exact_count(false));
  CHECK(all.num_changed == clean.numel());
}

TEST_CASE("pair-flip maps c to c + 1 mod C", "[label_noise]") {
  auto clean = skewed_labels(6, 100);
  auto res = dlcore::inject_label_noise(
      clean, LabelNoiseOptions(NoiseMode::kPairFlip, 0.5).seed(8));
  auto flipped = clean.add(1).remainder(6);
  CHECK(res.labels.masked_select(res.changed)
            .equal(flipped.masked_select(res.changed)));
  CHECK(res.num_changed == std::llround(0.5 * clean.numel()));
}

TEST_CASE(
    "a transition matrix is applied row by row and validated",
    "[label_noise]") {
  auto t = torch::tensor(
      {{0.7, 0.2, 0.1}, {0.0, 1.0, 0.0}, {0.25, 0.25, 0.5}}, torch::kDouble);
  auto clean = skewed_labels(3, 8000); // 48000
  auto res = dlcore::inject_label_noise(
      clean,
      LabelNoiseOptions(NoiseMode::kMatrix, 1.0)
          .exact_count(false)
          .transition_matrix(t)
          .seed(3));
  CHECK(res.num_selected == clean.numel());
  for (int64_t a = 0; a < 3; ++a) {
    auto p = row_of(t, a);
    auto obs = row_of(res.transition_counts, a);
    INFO("row " << a);
    CHECK(chi_square(obs, p) < critical(2));
    CHECK(chi_square(obs, {1.0 / 3, 1.0 / 3, 1.0 / 3}) > critical(2));
  }
  CHECK(torch::allclose(res.transition_matrix, t, 0, 0.02));
  // rate r: effective (1 - r) I + r T.
  auto half = dlcore::inject_label_noise(
      clean,
      LabelNoiseOptions(NoiseMode::kMatrix, 0.5)
          .transition_matrix(t.to(torch::kFloat))
          .seed(3));
  auto eff = 0.5 * torch::eye(3, torch::kDouble) + 0.5 * t;
  CHECK(torch::allclose(half.transition_matrix, eff, 0, 0.02));
  CHECK(half.num_selected == clean.numel() / 2);
  CHECK(half.num_changed < half.num_selected);

  auto bad_sum = t.clone();
  bad_sum[0][0] = 0.6;
  CHECK_THAT(
      message_of([&] {
        dlcore::inject_label_noise(
            clean,
            LabelNoiseOptions(NoiseMode::kMatrix, 1.0)
                .transition_matrix(bad_sum));
      }),
      Catch::Contains("transition_matrix row 0 sums to 0.9") &&
          Catch::Contains("expected 1 within 1e-09"));
  auto off = t.clone();
  off[1][1] = 1.0 + 1e-8;
  CHECK_THAT(
      message_of([&] {
        dlcore::inject_label_noise(
            clean,
            LabelNoiseOptions(NoiseMode::kMatrix, 1.0).transition_matrix(off));
      }),
      Catch::Contains("row 1 sums to"));
  auto negative = t.clone();
  negative[2][0] = -0.25;
  negative[2][2] = 1.0;
  CHECK_THAT(
      message_of([&] {
        dlcore::inject_label_noise(
            clean,
            LabelNoiseOptions(NoiseMode::kMatrix, 1.0)
                .transition_matrix(negative));
      }),
      Catch::Contains("entry (2, 0) is -0.25"));
  CHECK_THAT(
      message_of([&] {
        dlcore::inject_label_noise(
            clean,
            LabelNoiseOptions(NoiseMode::kMatrix, 1.0)
                .transition_matrix(torch::eye(2, torch::kDouble))
                .num_classes(3));
      }),
      Catch::Contains("expected a transition_matrix of shape [3, 3]"));
  CHECK_THAT(
      message_of([&] {
        dlcore::inject_label_noise(
            clean, LabelNoiseOptions(NoiseMode::kMatrix, 1.0));
      }),
      Catch::Contains("kMatrix needs a transition_matrix"));
  CHECK_THAT(
      message_of([&] {
        dlcore::inject_label_noise(
            clean,
            LabelNoiseOptions(NoiseMode::kSymmetric, 1.0).transition_matrix(t));
      }),
      Catch::Contains("transition_matrix is only used by kMatrix"));
}

TEST_CASE(
    "marginal replacement draws from the label marginal excluding the "
    "original",
    "[label_noise]") {
  auto clean = skewed_labels(5, 3000); // 45000, marginal 1:2:3:4:5 / 15
  auto res = dlcore::inject_label_noise(
      clean, LabelNoiseOptions(NoiseMode::kMarginal, 0.5).seed(6));
  CHECK(res.num_changed == res.num_selected);
  CHECK(res.num_selected == std::llround(0.5 * clean.numel()));
  for (int64_t a = 0; a < 5; ++a) {
    auto obs = row_of(res.transition_counts, a);
    obs[static_cast<size_t>(a)] = 0.0;
    std::vector<double> p = {1, 2, 3, 4, 5};
    p[static_cast<size_t>(a)] = 0.0;
    INFO("row " << a);
    CHECK(chi_square(obs, p) < critical(3));
    std::vector<double> flat(5, 1.0);
    flat[static_cast<size_t>(a)] = 0.0;
    CHECK(chi_square(obs, flat) > critical(3));
  }
  // A given marginal replaces the empirical one.
  auto given = torch::tensor({0.0, 0.0, 1.0, 1.0, 0.0}, torch::kDouble);
  auto g = dlcore::inject_label_noise(
      clean, LabelNoiseOptions(NoiseMode::kMarginal, 0.5).marginal(given));
  auto to = g.labels.masked_select(g.changed);
  CHECK(to.eq(2).logical_or(to.eq(3)).all().item<bool>());
  // Class 2's entries can only go to 3; none of 2 or 3 is kept unless
  // selected elsewhere.
  auto from2 = g.transition_counts[2];
  CHECK(from2[3].item<int64_t>() > 0);
  CHECK(from2[0].item<int64_t>() == 0);
  CHECK_THAT(
      message_of([&] {
        dlcore::inject_label_noise(
            clean,
            LabelNoiseOptions(NoiseMode::kMarginal, 0.5)
                .marginal(torch::zeros({5}, torch::kDouble)));
      }),
      Catch::Contains("marginal has zero total mass"));
  CHECK_THAT(
      message_of([&] {
        dlcore::inject_label_noise(
            clean,
            LabelNoiseOptions(NoiseMode::kMarginal, 0.5)
                .num_classes(5)
                .marginal(torch::ones({4}, torch::kDouble)));
      }),
      Catch::Contains("expected a marginal of shape [5]"));
}

TEST_CASE(
    "marginal noise on tag lists never duplicates a tag within an image",
    "[label_noise]") {
  // 2000 images with 1..3 distinct tags out of 6, skewed toward low ids.
  std::mt19937_64 gen(11);
  std::vector<int64_t> off = {0};
  std::vector<int64_t> tags;
  for (int i = 0; i < 2000; ++i) {
    std::set<int64_t> s;
    const int k = 1 + static_cast<int>(gen() % 3);
    while (static_cast<int>(s.size()) < k) {
      const double u = static_cast<double>(gen() >> 11) * 0x1.0p-53;
      s.insert(static_cast<int64_t>(6 * u * u));
    }
    tags.insert(tags.end(), s.begin(), s.end());
    off.push_back(static_cast<int64_t>(tags.size()));
  }
  dlcore::TagLists t{torch::tensor(off), torch::tensor(tags)};
  const int64_t p = static_cast<int64_t>(tags.size());
  auto res = dlcore::inject_label_noise(
      t, LabelNoiseOptions(NoiseMode::kMarginal, 0.25).seed(5));
  CHECK(res.labels.numel() == p);
  CHECK(res.num_selected == std::llround(0.25 * p));
  CHECK(res.realized_rate <= 0.25);
  CHECK(res.realized_rate > 0.2); // few images carry every other tag
  auto z = res.labels.contiguous();
  const int64_t* zp = z.data_ptr<int64_t>();
  for (size_t i = 0; i + 1 < off.size(); ++i) {
    std::set<int64_t> s(zp + off[i], zp + off[i + 1]);
    CHECK(static_cast<int64_t>(s.size()) == off[i + 1] - off[i]);
  }
  // The noisy lists feed the resampler.
  dlcore::HashtagResampler sampler(dlcore::TagLists{t.offsets, res.labels});
  CHECK(sampler.report().num_pairs == p);
}

TEST_CASE("the same seed gives the same noise", "[label_noise]") {
  auto clean = skewed_labels(4, 500);
  auto opts = LabelNoiseOptions(NoiseMode::kMarginal, 0.3).seed(12);
  auto a = dlcore::inject_label_noise(clean, opts);
  auto b = dlcore::inject_label_noise(clean, opts);
  auto c = dlcore::inject_label_noise(clean, opts.seed(13));
  CHECK(a.labels.equal(b.labels));
  CHECK_FALSE(a.labels.equal(c.labels));
  // The input is not modified; int32 labels give int64 results.
  auto i32 = clean.to(torch::kInt);
  auto d = dlcore::inject_label_noise(i32, opts.seed(12));
  CHECK(d.labels.equal(a.labels));
  CHECK(i32.to(torch::kLong).equal(clean));
}

TEST_CASE("edge sizes: no labels and one label", "[label_noise]") {
  auto empty = torch::zeros({0}, torch::kLong);
  auto e = dlcore::inject_label_noise(
      empty, LabelNoiseOptions(NoiseMode::kSymmetric, 0.5).num_classes(3));
  CHECK(e.labels.numel() == 0);
  CHECK(e.realized_rate == 0.0);
  CHECK(e.transition_counts.sum().item<int64_t>() == 0);
  auto one = dlcore::inject_label_noise(
      torch::tensor({1}),
      LabelNoiseOptions(NoiseMode::kSymmetric, 1.0).num_classes(2));
  CHECK(one.labels.item<int64_t>() == 0);
  // round(0.4 * 1) = 0 selected.
  auto none = dlcore::inject_label_noise(
      torch::tensor({1}),
      LabelNoiseOptions(NoiseMode::kSymmetric, 0.4).num_classes(2));
  CHECK(none.num_selected == 0);
}

TEST_CASE("invalid noise options give clear errors", "[label_noise]") {
  auto clean = torch::tensor({0, 1, 2, 1});
  for (double bad : {-0.1, 1.5, static_cast<double>(NAN)}) {
    CHECK_THAT(
        message_of([&] {
          dlcore::inject_label_noise(
              clean, LabelNoiseOptions(NoiseMode::kSymmetric, bad));
        }),
        Catch::Contains("rate must be in [0, 1], but got"));
  }
  CHECK_THAT(
      message_of([&] {
        dlcore::inject_label_noise(
            clean,
            LabelNoiseOptions(NoiseMode::kSymmetric, 0.1).num_classes(2));
      }),
      Catch::Contains("label 2 is outside [0, num_classes = 2)"));
  CHECK_THAT(
      message_of([&] {
        dlcore::inject_label_noise(
            torch::tensor({0, -1}),
            LabelNoiseOptions(NoiseMode::kSymmetric, 0.1));
      }),
      Catch::Contains("labels must be >= 0, but got -1"));
  CHECK_THAT(
      message_of([&] {
        dlcore::inject_label_noise(
            torch::tensor({0, 0}),
            LabelNoiseOptions(NoiseMode::kSymmetric, 0.1));
      }),
      Catch::Contains("needs num_classes in [2, 2^32), but got 1"));
  CHECK_THAT(
      message_of([&] {
        dlcore::inject_label_noise(
            torch::tensor({0.5f}), LabelNoiseOptions(NoiseMode::kUniform, 0.1));
      }),
      Catch::Contains("expected integer labels"));
  CHECK_THAT(
      message_of([&] {
        dlcore::inject_label_noise(
            clean,
            LabelNoiseOptions(NoiseMode::kUniform, 0.1)
                .marginal(torch::ones({3})));
      }),
      Catch::Contains("marginal is only used by kMarginal"));
}

TEST_CASE(
    "selection follows the label-noise stream of the seed",
    "[label_noise][splitmix]") {
  // Without exact_count, entry k is selected when output k of the SplitMix64
  // generator started at the stream seed mix(seed ^ stream), as a 53-bit
  // uniform, is below the rate; kPairFlip's replacement (c + 1) mod C draws
  // nothing, so the selection alone uses the stream.
  const uint64_t label_noise_stream = 0xA54FF53A5F1D36F1ULL;
  const torch::Tensor clean = torch::arange(500, torch::kLong) % 5;
  for (uint64_t seed : {uint64_t{0}, uint64_t{9}, ~uint64_t{0}}) {
    INFO("seed " << seed);
    const auto res = dlcore::inject_label_noise(
        clean,
        LabelNoiseOptions(NoiseMode::kPairFlip, 0.3)
            .exact_count(false)
            .seed(seed));
    const uint64_t state = reference_mix(seed ^ label_noise_stream);
    std::vector<int64_t> expected_labels;
    int64_t expected_selected = 0;
    bool selection_matches = true;
    for (uint64_t k = 0; k < 500; ++k) {
      const uint64_t word =
          reference_mix(state + (k + 1) * 0x9E3779B97F4A7C15ULL);
      const bool sel = static_cast<double>(word >> 11) * 0x1.0p-53 < 0.3;
      selection_matches =
          selection_matches &&
          res.selected[static_cast<int64_t>(k)].item<bool>() == sel;
      expected_selected += sel ? 1 : 0;
      const int64_t y = static_cast<int64_t>(k % 5);
      expected_labels.push_back(sel ? (y + 1) % 5 : y);
    }
    CHECK(selection_matches);
    CHECK(res.num_selected == expected_selected);
    CHECK(torch::equal(res.labels, torch::tensor(expected_labels)));
  }
}
