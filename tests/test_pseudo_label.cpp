#include <dlcore/data/pseudo_label.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

namespace {

using dlcore::TopKTopPResult;
using dlcore::TopKTopPSelector;
using dlcore::TopKTopPSelectorOptions;

struct Triple {
  int64_t index;
  int64_t label;
  double score;
  bool operator==(const Triple& o) const {
    return index == o.index && label == o.label && score == o.score;
  }
};

std::ostream& operator<<(std::ostream& os, const Triple& t) {
  return os << "(" << t.index << ", " << t.label << ", " << t.score << ")";
}

std::vector<Triple> triples(const TopKTopPResult& r) {
  std::vector<Triple> out;
  for (int64_t i = 0; i < r.size(); ++i) {
    out.push_back(
        {r.indices[i].item<int64_t>(),
         r.labels[i].item<int64_t>(),
         r.scores[i].item<double>()});
  }
  return out;
}

// Brute force: full sort per row, then full sort per class.
std::vector<Triple> reference(
    const torch::Tensor& scores,
    const std::vector<int64_t>& index,
    int64_t k,
    int64_t p) {
  auto s = scores.to(torch::kDouble).contiguous();
  const int64_t n = s.size(0);
  const int64_t c = s.size(1);
  const double* d = s.data_ptr<double>();
  std::vector<std::vector<std::pair<double, int64_t>>> per_class(c);
  for (int64_t r = 0; r < n; ++r) {
    std::vector<int64_t> cls(c);
    for (int64_t j = 0; j < c; ++j) {
      cls[j] = j;
    }
    std::sort(cls.begin(), cls.end(), [&](int64_t a, int64_t b) {
      const double va = d[r * c + a];
      const double vb = d[r * c + b];
      return va > vb || (va == vb && a < b);
    });
    for (int64_t j = 0; j < p; ++j) {
      per_class[cls[j]].emplace_back(d[r * c + cls[j]], index[r]);
    }
  }
  std::vector<Triple> out;
  for (int64_t j = 0; j < c; ++j) {
    auto& v = per_class[j];
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    for (size_t i = 0; i < v.size() && static_cast<int64_t>(i) < k; ++i) {
      out.push_back({v[i].second, j, v[i].first});
    }
  }
  return out;
}

// Scores drawn from few distinct values, so ties are everywhere.
torch::Tensor tied_scores(int64_t n, int64_t c, int64_t levels, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::randint(levels, {n, c}, gen, torch::kFloat) / levels;
}

std::vector<int64_t> iota(int64_t n, int64_t from = 0) {
  std::vector<int64_t> v(n);
  for (int64_t i = 0; i < n; ++i) {
    v[i] = from + i;
  }
  return v;
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
    "TopKTopPSelectorOptions default to probabilities and one thread",
    "[pseudo_label]") {
  TopKTopPSelectorOptions o(10, 100, 2);
  CHECK(o.num_classes() == 10);
  CHECK(o.k() == 100);
  CHECK(o.p() == 2);
  CHECK_FALSE(o.softmax());
  CHECK(o.num_threads() == 1);
  TopKTopPSelector sel(o);
  CHECK(sel.rows_seen() == 0);
  auto r = sel.result();
  CHECK(r.size() == 0);
  CHECK(r.counts.sum().item<int64_t>() == 0);
  CHECK(r.shortfalls.eq(100).all().item<bool>());
  CHECK(r.labels_per_image.sizes() == torch::IntArrayRef{3});
}

TEST_CASE("TopKTopPSelector rejects invalid options", "[pseudo_label]") {
  using Catch::Contains;
  CHECK_THAT(
      message_of([] {
        TopKTopPSelector s({10, 0, 2});
      }),
      Contains("TopKTopPSelector: expected k >= 1, but got 0"));
  CHECK_THAT(
      message_of([] {
        TopKTopPSelector s({10, 5, 0});
      }),
      Contains("TopKTopPSelector: expected p >= 1, but got 0"));
  CHECK_THAT(
      message_of([] {
        TopKTopPSelector s({10, 5, 11});
      }),
      Contains("expected p <= num_classes (10), but got p = 11"));
  CHECK_THAT(
      message_of([] {
        TopKTopPSelector s({0, 5, 1});
      }),
      Contains("expected num_classes >= 1, but got 0"));
  CHECK_THAT(
      message_of([] {
        TopKTopPSelector s(TopKTopPSelectorOptions(10, 5, 1).num_threads(0));
      }),
      Contains("expected num_threads >= 1, but got 0"));
  // The buffers' size would overflow int64 (and wrap to a tiny allocation).
  CHECK_THAT(
      message_of([] {
        TopKTopPSelector s({1, int64_t{768614336404564651}, 1});
      }),
      Contains("fit in 2^63 bytes, but got num_classes 1, k "
               "768614336404564651"));
  CHECK_THAT(
      message_of([] {
        TopKTopPSelector s(
            {int64_t{1} << 40, int64_t{1} << 20, 1}); // 2^40 * 1.5 * 2^24
      }),
      Contains("fit in 2^63 bytes"));
}

TEST_CASE(
    "TopKTopPSelector rejects chunks of the wrong rank, width or dtype",
    "[pseudo_label]") {
  using Catch::Contains;
  TopKTopPSelector s({4, 5, 2});
  CHECK_THAT(
      message_of([&] {
        s.ingest(torch::rand({3, 5}), 0);
      }),
      Contains("expected a chunk of scores of shape [B, 4], but got [3, 5]"));
  CHECK_THAT(
      message_of([&] { s.ingest(torch::rand({12}), 0); }),
      Contains("expected a chunk of scores of shape [B, 4], but got [12]"));
  CHECK_THAT(
      message_of([&] {
        s.ingest(torch::ones({3, 4}, torch::kLong), 0);
      }),
      Contains("expected float32, float64, float16 or bfloat16 scores, but "
               "got Long"));
  CHECK_THAT(
      message_of([&] {
        s.ingest(torch::rand({3, 4}), -1);
      }),
      Contains("expected first_index >= 0, but got -1"));
  CHECK_THAT(
      message_of([&] {
        s.ingest(torch::rand({3, 4}), torch::arange(2));
      }),
      Contains("expected an int64 index tensor of shape [3]"));
  CHECK_THAT(
      message_of([&] {
        s.ingest(torch::rand({2, 4}), torch::tensor({0, -3}, torch::kLong));
      }),
      Contains("expected indices >= 0, but got -3"));
  CHECK(s.rows_seen() == 0);
}

TEST_CASE(
    "TopKTopPSelector detects a chunk overlapping an earlier one",
    "[pseudo_label]") {
  using Catch::Contains;
  TopKTopPSelector s({4, 5, 2});
  s.ingest(torch::rand({10, 4}), 100);
  s.ingest(torch::rand({10, 4}), 120);
  CHECK_THAT(
      message_of([&] {
        s.ingest(torch::rand({5, 4}), 105);
      }),
      Contains("but rows [105, 110) overlap [100, 110)"));
  CHECK_THAT(
      message_of([&] {
        s.ingest(torch::rand({15, 4}), 90);
      }),
      Contains("but rows [90, 105) overlap [100, 110)"));
  CHECK_THAT(
      message_of([&] {
        s.ingest(torch::rand({11, 4}), 110);
      }),
      Contains("but rows [110, 121) overlap [120, 130)"));
  s.ingest(torch::rand({10, 4}), 110); // fills the gap exactly
  s.ingest(torch::rand({3, 4}), 0);    // earlier indices are fine
  CHECK(
      s.ranges() ==
      std::vector<std::pair<int64_t, int64_t>>{{0, 3}, {100, 130}});
  CHECK(s.rows_seen() == 33);
}

TEST_CASE(
    "TopKTopPSelector names the row of a non-finite score", "[pseudo_label]") {
  using Catch::Contains;
  for (auto dtype : {torch::kFloat, torch::kDouble, torch::kHalf}) {
    for (double bad : std::vector<double>{std::nan(""), INFINITY, -INFINITY}) {
      TopKTopPSelector s({40, 5, 2});
      auto x = torch::rand({300, 40}, torch::kDouble);
      x[123][37] = bad;
      x[200][3] = bad;
      CHECK_THAT(
          message_of([&] { s.ingest(x.to(dtype), 1000); }),
          Contains("expected finite scores, but row 123 of the chunk (image "
                   "1123) has") &&
              Contains("for class 37"));
      CHECK(s.ranges().empty());
    }
  }
  TopKTopPSelector s(TopKTopPSelectorOptions(40, 5, 2).num_threads(2));
  auto x = torch::rand({2000, 40});
  x[1500][1] = std::nan("");
  x[1700][1] = std::nan("");
  CHECK_THAT(
      message_of([&] { s.ingest(x, 0); }),
      Contains("but row 1500 of the chunk (image 1500)"));
}

TEST_CASE(
    "TopKTopPSelector equals a brute-force full sort on tied random scores",
    "[pseudo_label]") {
  struct Case {
    int64_t n, c, k, p, levels, chunk;
  };
  // C crosses the 16-class block size; K above and below the candidates.
  const std::vector<Case> cases = {
      {500, 10, 30, 2, 5, 64},
      {700, 37, 20, 3, 4, 100},
      {400, 16, 1, 1, 3, 33},
      {300, 50, 500, 5, 7, 1000},
      {600, 100, 40, 10, 2, 77},
      {200, 5, 60, 5, 3, 17},
      {256, 1, 300, 1, 2, 50},
      {900, 64, 25, 17, 6, 128},
  };
  uint64_t seed = 1;
  for (const auto& cs : cases) {
    for (auto dtype : {torch::kFloat, torch::kDouble}) {
      auto x = tied_scores(cs.n, cs.c, cs.levels, seed++).to(dtype);
      TopKTopPSelector s({cs.c, cs.k, cs.p});
      for (int64_t i = 0; i < cs.n; i += cs.chunk) {
        s.ingest(x.slice(0, i, std::min(cs.n, i + cs.chunk)), i);
      }
      const auto want = reference(x, iota(cs.n), cs.k, cs.p);
      INFO("n=" << cs.n << " c=" << cs.c << " k=" << cs.k << " p=" << cs.p);
      CHECK(triples(s.result()) == want);
      CHECK(s.rows_seen() == cs.n);
    }
  }
}

TEST_CASE(
    "TopKTopPSelector accepts index tensors in any order", "[pseudo_label]") {
  const int64_t n = 800, c = 20, k = 30, p = 3;
  auto x = tied_scores(n, c, 4, 7);
  auto perm = torch::randperm(n, at::detail::createCPUGenerator(3));
  auto ids = perm * 7 + 5; // sparse, shuffled global indices
  std::vector<int64_t> idv(
      ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + n);
  TopKTopPSelector s({c, k, p});
  for (int64_t i = 0; i < n; i += 90) {
    const int64_t e = std::min(n, i + 90);
    s.ingest(x.slice(0, i, e), ids.slice(0, i, e));
  }
  CHECK(triples(s.result()) == reference(x, idv, k, p));
  CHECK(s.ranges().empty());
}

TEST_CASE(
    "TopKTopPSelector gives the same result for any thread count and chunking",
    "[pseudo_label]") {
  const int64_t n = 6000, c = 33, k = 50, p = 4;
  auto x = tied_scores(n, c, 5, 11);
  const auto want = reference(x, iota(n), k, p);
  for (int64_t threads : {1, 2, 3, 8}) {
    for (int64_t chunk : {6000, 1000, 777}) {
      TopKTopPSelector s(TopKTopPSelectorOptions(c, k, p).num_threads(threads));
      for (int64_t i = 0; i < n; i += chunk) {
        s.ingest(x.slice(0, i, std::min(n, i + chunk)), i);
      }
      INFO("threads=" << threads << " chunk=" << chunk);
      CHECK(triples(s.result()) == want);
    }
  }
}

TEST_CASE(
    "TopKTopPSelector merges disjoint selectors exactly, in any order",
    "[pseudo_label]") {
  const int64_t n = 1500, c = 12, k = 40, p = 3;
  auto x = tied_scores(n, c, 6, 21);
  auto part = [&](int64_t b, int64_t e) {
    TopKTopPSelector s({c, k, p});
    s.ingest(x.slice(0, b, e), b);
    return s;
  };
  const auto want = reference(x, iota(n), k, p);
  auto a = part(0, 400), b = part(400, 1100), d = part(1100, 1500);
  TopKTopPSelector ab = a;
  ab.merge(b);
  ab.merge(d);
  TopKTopPSelector db = d;
  db.merge(b);
  TopKTopPSelector a_db = a;
  a_db.merge(db);
  TopKTopPSelector bda = b;
  bda.merge(d);
  bda.merge(a);
  CHECK(triples(ab.result()) == want);
  CHECK(triples(a_db.result()) == want);
  CHECK(triples(bda.result()) == want);
  // Copies are deep: merging into the copies left `a` as it was, and a
  // copy-assigned selector holds the same state.
  const auto want_a = reference(x.slice(0, 0, 400), iota(400), k, p);
  CHECK(triples(a.result()) == want_a);
  TopKTopPSelector a2({c, k, p});
  a2.ingest(x.slice(0, 1100, 1500), 1100);
  a2 = a;
  CHECK(triples(a2.result()) == want_a);
  a2.merge(b);
  CHECK(triples(a.result()) == want_a);
  CHECK(bda.rows_seen() == n);
  CHECK(bda.ranges() == std::vector<std::pair<int64_t, int64_t>>{{0, n}});
}

TEST_CASE(
    "TopKTopPSelector refuses to merge incompatible or overlapping "
    "selectors",
    "[pseudo_label]") {
  using Catch::Contains;
  TopKTopPSelector a({10, 5, 2});
  TopKTopPSelector b({11, 5, 2});
  CHECK_THAT(
      message_of([&] { a.merge(b); }),
      Contains("merge expected a selector with num_classes 10, k 5, p 2, but "
               "got num_classes 11, k 5, p 2"));
  TopKTopPSelector d({10, 6, 2});
  CHECK_THAT(
      message_of([&] { a.merge(d); }), Contains("but got num_classes 10, k 6"));
  a.ingest(torch::rand({10, 10}), 0);
  TopKTopPSelector e({10, 5, 2});
  e.ingest(torch::rand({10, 10}), 5);
  CHECK_THAT(
      message_of([&] { a.merge(e); }),
      Contains("rows [5, 15) overlap [0, 10)"));
  // Chunks given by an index tensor record no range: merging a selector
  // into itself is refused on its own.
  TopKTopPSelector f({10, 5, 2});
  f.ingest(torch::rand({10, 10}), torch::arange(10));
  CHECK_THAT(
      message_of([&] { f.merge(f); }),
      Contains("merge expected another selector, but got this selector"));
  CHECK(f.rows_seen() == 10);
}

TEST_CASE(
    "TopKTopPSelector reports counts, shortfalls and labels per image",
    "[pseudo_label]") {
  // 3 classes, P = 2, K = 2. Rows (index: scores):
  //   0: .5 .3 .2 -> classes 0, 1
  //   1: .1 .6 .3 -> classes 1, 2
  //   2: .4 .4 .2 -> classes 0, 1 (tie: lower class first)
  //   3: .2 .2 .6 -> classes 2, 0 (tie between 0 and 1: class 0)
  auto x = torch::tensor(
      {{.5, .3, .2}, {.1, .6, .3}, {.4, .4, .2}, {.2, .2, .6}}, torch::kDouble);
  TopKTopPSelector s({3, 2, 2});
  s.ingest(x, 0);
  auto r = s.result();
  // class 0: (0,.5) (2,.4) [(3,.2) dropped]; class 1: (1,.6) (2,.4)
  // [(0,.3) dropped]; class 2: (3,.6) (1,.3).
  const std::vector<Triple> want = {
      {0, 0, .5}, {2, 0, .4}, {1, 1, .6}, {2, 1, .4}, {3, 2, .6}, {1, 2, .3}};
  CHECK(triples(r) == want);
  CHECK(r.counts.equal(torch::tensor({2, 2, 2}, torch::kLong)));
  CHECK(r.shortfalls.equal(torch::tensor({0, 0, 0}, torch::kLong)));
  // image 0: 1 label, 1: 2 labels, 2: 2 labels, 3: 1 label.
  CHECK(r.labels_per_image.equal(torch::tensor({0, 2, 2}, torch::kLong)));
  CHECK(r.num_images() == 4);
  CHECK(r.rows_seen == 4);

  TopKTopPSelector big({3, 10, 1});
  big.ingest(x, 0);
  auto rb = big.result();
  CHECK(rb.counts.equal(torch::tensor({2, 1, 1}, torch::kLong)));
  CHECK(rb.shortfalls.equal(torch::tensor({8, 9, 9}, torch::kLong)));
  CHECK(rb.labels_per_image.equal(torch::tensor({0, 4}, torch::kLong)));
}

TEST_CASE(
    "TopKTopPSelector widens float16 and bfloat16 exactly", "[pseudo_label]") {
  auto x = torch::rand({500, 24}, at::detail::createCPUGenerator(5));
  for (auto dtype : {torch::kHalf, torch::kBFloat16}) {
    auto xl = x.to(dtype);
    TopKTopPSelector a({24, 20, 3}), b({24, 20, 3});
    a.ingest(xl, 0);
    b.ingest(xl.to(torch::kFloat), 0);
    CHECK(triples(a.result()) == triples(b.result()));
    CHECK(triples(a.result()) == reference(xl, iota(500), 20, 3));
  }
}

TEST_CASE(
    "TopKTopPSelector applies a float64 softmax per row, independent of "
    "chunking",
    "[pseudo_label]") {
  auto logits = torch::randn({700, 15}, at::detail::createCPUGenerator(9)) * 3;
  auto probs = torch::softmax(logits.to(torch::kDouble), 1);
  TopKTopPSelector whole(TopKTopPSelectorOptions(15, 25, 2).softmax(true));
  whole.ingest(logits, 0);
  TopKTopPSelector pieces(
      TopKTopPSelectorOptions(15, 25, 2).softmax(true).num_threads(2));
  for (int64_t i = 0; i < 700; i += 64) {
    pieces.ingest(logits.slice(0, i, std::min<int64_t>(700, i + 64)), i);
  }
  const auto want = reference(probs, iota(700), 25, 2);
  CHECK(triples(whole.result()) == want);
  CHECK(triples(pieces.result()) == want);
  auto r = whole.result();
  CHECK(r.scores.le(1.0).all().item<bool>());
  CHECK(r.scores.gt(0.0).all().item<bool>());
}

TEST_CASE(
    "TopKTopPSelector resumes from a checkpoint mid-stream", "[pseudo_label]") {
  const int64_t n = 3000, c = 20, k = 60, p = 3;
  auto x = tied_scores(n, c, 8, 31);
  TopKTopPSelector first(TopKTopPSelectorOptions(c, k, p).num_threads(2));
  first.ingest(x.slice(0, 0, 1400), 0);
  const std::string path = "test_pseudo_label_ckpt.pt";
  first.save(path);
  TopKTopPSelector resumed({c, k, p});
  resumed.load(path);
  std::remove(path.c_str());
  CHECK(resumed.rows_seen() == 1400);
  CHECK(
      resumed.ranges() == std::vector<std::pair<int64_t, int64_t>>{{0, 1400}});
  CHECK_THROWS(resumed.ingest(x.slice(0, 1000, 1500), 1000));
  resumed.ingest(x.slice(0, 1400, n), 1400);
  CHECK(triples(resumed.result()) == reference(x, iota(n), k, p));

  // Through torch::save / torch::load archives too.
  std::stringstream stream;
  torch::save(first, stream);
  TopKTopPSelector other({c, k, p});
  torch::load(other, stream);
  CHECK(triples(other.result()) == triples(first.result()));

  TopKTopPSelector wrong({c, k + 1, p});
  first.save(path);
  CHECK_THAT(
      message_of([&] { wrong.load(path); }),
      Catch::Contains("load expected a selector with num_classes 20, k 61"));
  std::remove(path.c_str());
}

TEST_CASE(
    "TopKTopPSelector widens its entries exactly when float64 scores or "
    "indices from 2^32 arrive",
    "[pseudo_label]") {
  const int64_t n = 3000, c = 7, k = 60, p = 2;
  const int64_t cap = k + k / 2;
  const int64_t narrow_bytes = c * cap * 8, wide_bytes = c * cap * 16;
  // Rows [1000, 2000) hold float64 values that no float32 holds; the others
  // are float32 values (tied).
  auto xd = tied_scores(n, c, 6, 41).to(torch::kDouble);
  xd.slice(0, 1000, 2000) +=
      1e-12 * torch::rand({1000, c}, at::detail::createCPUGenerator(42))
                  .to(torch::kDouble);
  const auto want = reference(xd, iota(n), k, p);

  TopKTopPSelector s({c, k, p});
  CHECK(s.state_bytes() == narrow_bytes);
  s.ingest(xd.slice(0, 0, 1000).to(torch::kFloat), 0);
  CHECK(s.state_bytes() == narrow_bytes);
  s.ingest(xd.slice(0, 1000, 2000), 1000); // float64: widens
  CHECK(s.state_bytes() == wide_bytes);
  s.ingest(xd.slice(0, 2000, n).to(torch::kFloat), 2000);
  CHECK(triples(s.result()) == want);

  // Merging a narrow selector with a wide one, both ways.
  auto part = [&](int64_t b, int64_t e, bool dbl) {
    TopKTopPSelector t({c, k, p});
    t.ingest(dbl ? xd.slice(0, b, e) : xd.slice(0, b, e).to(torch::kFloat), b);
    return t;
  };
  auto narrow_part = part(0, 1000, false);
  auto wide_part = part(1000, 2000, true);
  auto tail = part(2000, n, false);
  CHECK(narrow_part.state_bytes() == narrow_bytes);
  CHECK(wide_part.state_bytes() == wide_bytes);
  TopKTopPSelector nw = narrow_part;
  nw.merge(wide_part);
  nw.merge(tail);
  TopKTopPSelector wn = wide_part;
  wn.merge(tail);
  wn.merge(narrow_part);
  CHECK(triples(nw.result()) == want);
  CHECK(triples(wn.result()) == want);

  // A checkpoint restores 8-byte entries when every candidate fits them.
  const std::string path = "test_pseudo_label_widen.pt";
  narrow_part.save(path);
  TopKTopPSelector back({c, k, p});
  back.load(path);
  CHECK(back.state_bytes() == narrow_bytes);
  wn.save(path);
  back.load(path);
  CHECK(back.state_bytes() == wide_bytes);
  CHECK(triples(back.result()) == want);
  std::remove(path.c_str());

  // Indices from 2^32 on, by first index and by index tensor. Those rows
  // score higher, so that the large indices are the ones selected.
  const int64_t big = int64_t{1} << 32;
  auto x = tied_scores(2000, c, 6, 43);
  x.slice(0, 1000, 2000) += 1;
  x.slice(0, 1500, 2000) += 1; // indices 2^32 and up
  std::vector<int64_t> index = iota(1000);
  for (int64_t i = 0; i < 1000; ++i) {
    index.push_back(big - 500 + i);
  }
  const auto want_big = reference(x, index, k, p);
  CHECK(std::any_of(want_big.begin(), want_big.end(), [&](const Triple& t) {
    return t.index >= big;
  }));
  TopKTopPSelector by_first({c, k, p});
  by_first.ingest(x.slice(0, 0, 1000), 0);
  CHECK(by_first.state_bytes() == narrow_bytes);
  by_first.ingest(x.slice(0, 1000, 2000), big - 500);
  CHECK(by_first.state_bytes() == wide_bytes);
  CHECK(triples(by_first.result()) == want_big);
  TopKTopPSelector by_tensor({c, k, p});
  by_tensor.ingest(x.slice(0, 0, 1000), torch::arange(1000));
  CHECK(by_tensor.state_bytes() == narrow_bytes);
  by_tensor.ingest(x.slice(0, 1000, 2000), torch::tensor(index).slice(0, 1000));
  CHECK(by_tensor.state_bytes() == wide_bytes);
  CHECK(triples(by_tensor.result()) == want_big);
  // Up to 2^32 - 1 the entries stay narrow, and 2^32 - 1 itself is kept:
  // the last row scores highest.
  auto xe = x.slice(0, 0, 1000).clone();
  xe[999] += 2;
  TopKTopPSelector edge({c, k, p});
  edge.ingest(xe, big - 1000);
  CHECK(edge.state_bytes() == narrow_bytes);
  const auto edge_result = triples(edge.result());
  CHECK(edge_result == reference(xe, iota(1000, big - 1000), k, p));
  CHECK(
      std::any_of(edge_result.begin(), edge_result.end(), [&](const Triple& t) {
        return t.index == big - 1;
      }));

  // Every thread's state widens: 3 threads, float32 then float64 chunks.
  TopKTopPSelector threaded(TopKTopPSelectorOptions(c, k, p).num_threads(3));
  threaded.ingest(xd.slice(0, 0, 1000).to(torch::kFloat), 0);
  CHECK(threaded.state_bytes() == 3 * narrow_bytes);
  threaded.ingest(xd.slice(0, 1000, 2000), 1000);
  CHECK(threaded.state_bytes() == 3 * wide_bytes);
  threaded.ingest(xd.slice(0, 2000, n).to(torch::kFloat), 2000);
  CHECK(triples(threaded.result()) == want);
}

TEST_CASE(
    "TopKTopPSelector reserves C * 1.5 K entries per thread, 2 MB-aligned "
    "from 2 MB",
    "[pseudo_label]") {
  // C * 1.5 K * 8 bytes = 2.4 MB: the slots take the 2 MB-aligned
  // allocation that is advised to use huge pages; below 2 MB they do not.
  const int64_t c = 400, k = 500, p = 5, n = 20000;
  // 8-byte entries for float32 scores and indices below 2^32.
  const dlcore::detail::TopKState<dlcore::detail::TopKEntry32> big(c, k);
  CHECK(big.bytes() == c * (k + k / 2) * 8);
  CHECK(reinterpret_cast<std::uintptr_t>(big.slots()) % (2 << 20) == 0);
  const dlcore::detail::TopKState<dlcore::detail::TopKEntry> small(10, 50);
  CHECK(small.bytes() == 10 * (50 + 25) * 16);
  CHECK(reinterpret_cast<std::uintptr_t>(small.slots()) % 16 == 0);

  TopKTopPSelector s(TopKTopPSelectorOptions(c, k, p).num_threads(2));
  auto x = torch::rand({n, c}, at::detail::createCPUGenerator(5));
  for (int64_t i = 0; i < n; i += 1000) {
    s.ingest(x.slice(0, i, i + 1000), i);
  }
  // Two ingesting threads, two states; nothing else grows with N.
  CHECK(s.state_bytes() == 2 * big.bytes());
  CHECK(triples(s.result()) == reference(x, iota(n), k, p));
}

TEST_CASE(
    "TopKTopPResult builds D-hat as a data set that trains a model",
    "[pseudo_label]") {
  // Pool of 600 points in 2-D, 3 well separated clusters; the "teacher"
  // scores are a softmax of negative distances to the centres.
  auto gen = at::detail::createCPUGenerator(17);
  auto centres = torch::tensor({{4.0, 0.0}, {-4.0, 0.0}, {0.0, 4.0}});
  auto truth = torch::randint(3, {600}, gen, torch::kLong);
  auto pool = centres.index_select(0, truth) + torch::randn({600, 2}, gen);
  auto logits = -torch::cdist(pool, centres);
  TopKTopPSelector s(TopKTopPSelectorOptions(3, 150, 1).softmax(true));
  s.ingest(logits, 1000); // pool row i is image 1000 + i
  auto r = s.result();
  CHECK(r.size() == 450);
  auto d = r.dataset(pool, 1000);
  CHECK(d.size() == 450);
  CHECK(d.data.sizes() == torch::IntArrayRef{450, 2});
  CHECK(d.targets.equal(r.labels));
  // The selected labels are the true ones (clusters are well separated).
  auto true_sel = truth.index_select(0, r.indices - 1000);
  CHECK(true_sel.eq(r.labels).to(torch::kDouble).mean().item<double>() > 0.99);

  dlcore::PseudoLabelDataset view(r, pool, 1000);
  CHECK(view.size().value() == 450);
  auto ex = view.get(7);
  CHECK(ex.data.equal(d.data[7]));
  CHECK(ex.target.equal(d.targets[7]));
  CHECK_THROWS_WITH(
      r.dataset(pool, 1001),
      Catch::Contains("expected images to cover indices"));

  torch::manual_seed(0);
  torch::nn::Linear model(2, 3);
  torch::optim::SGD opt(model->parameters(), 0.1);
  double first = 0, last = 0;
  for (int step = 0; step < 50; ++step) {
    opt.zero_grad();
    auto loss = torch::cross_entropy_loss(model(d.data), d.targets);
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  CHECK(last < first * 0.5);
  auto pred = model(pool).argmax(1);
  CHECK(pred.eq(truth).to(torch::kDouble).mean().item<double>() > 0.95);
}

TEST_CASE(
    "TopKTopPSelector stays exact when row scales jump (guessed thresholds "
    "fail)",
    "[pseudo_label]") {
  // Rows alternate between large and tiny (and negative) scores in runs, so
  // the threshold guessed from recent rows is sometimes far too high.
  const int64_t n = 2000, c = 70, k = 25, p = 6;
  auto gen = at::detail::createCPUGenerator(77);
  auto x = torch::randint(9, {n, c}, gen, torch::kFloat);
  auto scale = torch::ones({n, 1});
  for (int64_t i = 0; i < n; ++i) {
    const int64_t run = (i / 37) % 3;
    scale[i][0] = run == 0 ? 1.0 : (run == 1 ? 1e-3 : -5.0);
  }
  x = x * scale;
  for (int64_t threads : {1, 2}) {
    TopKTopPSelector s(TopKTopPSelectorOptions(c, k, p).num_threads(threads));
    for (int64_t i = 0; i < n; i += 500) {
      s.ingest(x.slice(0, i, i + 500), i);
    }
    CHECK(triples(s.result()) == reference(x, iota(n), k, p));
  }
}

TEST_CASE(
    "TopKTopPSelector restores from candidates and rejects overlapping "
    "ranges",
    "[pseudo_label]") {
  const int64_t n = 900, c = 9, k = 20, p = 2;
  auto x = tied_scores(n, c, 5, 99);
  TopKTopPSelector a(TopKTopPSelectorOptions(c, k, p).num_threads(2));
  a.ingest(x, 0);
  auto [ind, lab, sco] = a.candidates();
  CHECK(ind.size(0) == c * k);
  TopKTopPSelector b({c, k, p});
  b.restore(a.rows_seen(), a.ranges_tensor(), ind, lab, sco);
  CHECK(triples(b.result()) == triples(a.result()));
  CHECK_THAT(
      message_of([&] {
        b.restore(
            10,
            torch::tensor({0, 10, 5, 12}, torch::kLong).reshape({2, 2}),
            ind,
            lab,
            sco);
      }),
      Catch::Contains("rows [5, 12) overlap [0, 10)"));
  CHECK_THAT(
      message_of([&] {
        b.restore(0, torch::zeros({0, 2}, torch::kLong), ind, lab + 100, sco);
      }),
      Catch::Contains("invalid saved candidate 0"));
  // Touching ranges coalesce.
  b.restore(
      10,
      torch::tensor({5, 12, 0, 5}, torch::kLong).reshape({2, 2}),
      ind,
      lab,
      sco);
  CHECK(b.ranges() == std::vector<std::pair<int64_t, int64_t>>{{0, 12}});
}

namespace {

// Pins the row scan to one instruction set for the lifetime of the guard.
struct IsaCap {
  explicit IsaCap(dlcore::detail::TopKIsa isa) {
    dlcore::detail::topk_isa_cap() = static_cast<int>(isa);
  }
  ~IsaCap() {
    dlcore::detail::topk_isa_cap() = -1;
  }
};

// Every row-scan path this machine runs: the block method, SSE2, AVX2 and
// AVX-512 (the wider ones only where the CPU has them).
std::vector<dlcore::detail::TopKIsa> isa_paths() {
  using dlcore::detail::TopKIsa;
  std::vector<TopKIsa> out;
  for (auto isa :
       {TopKIsa::kScalar, TopKIsa::kSse2, TopKIsa::kAvx2, TopKIsa::kAvx512}) {
    if (static_cast<int>(isa) <=
        static_cast<int>(dlcore::detail::topk_isa_supported())) {
      out.push_back(isa);
    }
  }
  return out;
}

} // namespace

TEST_CASE(
    "TopKTopPSelector gives the brute-force result on every row-scan path",
    "[pseudo_label]") {
  struct Case {
    int64_t n, c, k, p, levels;
    bool jumps;
  };
  // C below, at and across the 16- and 32-lane widths; ties (few levels),
  // continuous scores (levels 0) and row scales that defeat the guess.
  const std::vector<Case> cases = {
      {3000, 7, 40, 3, 0, false},
      {3000, 33, 60, 10, 0, true},
      {2000, 100, 30, 5, 4, false},
      {2000, 1000, 5, 10, 0, true},
      {1500, 48, 25, 17, 3, true},
      {1200, 31, 80, 31, 0, false},
  };
  uint64_t seed = 500;
  for (auto isa : isa_paths()) {
    IsaCap cap(isa);
    for (const auto& cs : cases) {
      auto gen = at::detail::createCPUGenerator(seed++);
      auto x = cs.levels > 0 ? tied_scores(cs.n, cs.c, cs.levels, seed++)
                             : torch::rand({cs.n, cs.c}, gen);
      if (cs.jumps) {
        auto scale = torch::ones({cs.n, 1});
        for (int64_t i = 0; i < cs.n; ++i) {
          const int64_t run = (i / 23) % 4;
          scale[i][0] =
              run == 0 ? 1.0 : (run == 1 ? 1e-4 : (run == 2 ? -3.0 : 0.5));
        }
        x = x * scale;
      }
      TopKTopPSelector s({cs.c, cs.k, cs.p});
      for (int64_t i = 0; i < cs.n; i += 250) {
        s.ingest(x.slice(0, i, std::min(cs.n, i + 250)), i);
      }
      INFO(
          "isa=" << static_cast<int>(isa) << " n=" << cs.n << " c=" << cs.c
                 << " p=" << cs.p << " levels=" << cs.levels);
      CHECK(dlcore::detail::topk_isa() == isa);
      CHECK(triples(s.result()) == reference(x, iota(cs.n), cs.k, cs.p));
    }
    // A non-finite score is found on every path, wherever it sits.
    for (int64_t col : {0, 15, 16, 31, 32, 40}) {
      auto x = torch::rand({40, 41}, at::detail::createCPUGenerator(seed++));
      x[30][col] = std::numeric_limits<float>::infinity();
      TopKTopPSelector s({41, 5, 2});
      const auto msg = message_of([&] { s.ingest(x, 0); });
      INFO("isa=" << static_cast<int>(isa) << " col=" << col << ": " << msg);
      CHECK(
          msg.find(
              "row 30 of the chunk (image 30) has inf for class " +
              std::to_string(col)) != std::string::npos);
    }
    // Rows wide enough for the AVX-512 loop to scan them in two pieces,
    // the bad value in the first, a middle or the last row: the error names
    // it, no rows are counted, and the selector refuses to give a result
    // built from part of the chunk.
    for (int64_t row : {0, 17, 39}) {
      for (int64_t col : {0, 31, 49, 50, 63, 64, 99}) {
        auto x = torch::rand({40, 100}, at::detail::createCPUGenerator(seed++));
        x[row][col] = -std::numeric_limits<float>::infinity();
        TopKTopPSelector s({100, 5, 3});
        const auto msg = message_of([&] { s.ingest(x, 0); });
        INFO(
            "isa=" << static_cast<int>(isa) << " row=" << row << " col=" << col
                   << ": " << msg);
        CHECK(
            msg.find(
                "row " + std::to_string(row) + " of the chunk (image " +
                std::to_string(row) + ") has -inf for class " +
                std::to_string(col)) != std::string::npos);
        CHECK(s.rows_seen() == 0);
        CHECK(s.ranges().empty());
        CHECK(
            message_of([&] {
              s.result();
            }).find("an earlier ingest failed part-way") != std::string::npos);
      }
    }
  }
}

TEST_CASE(
    "TopKTopPSelector compacts large class buffers exactly", "[pseudo_label]") {
  // K = 3000 per class with 4 classes and 40k rows: every class buffer is
  // compacted many times at 4500 entries, on the sampled selection with
  // score buckets (distinct scores) and with its fallbacks (few distinct
  // scores: an empty bracket), on every instruction-set path.
  const int64_t n = 40000, c = 4, k = 3000, p = 2;
  for (auto isa : isa_paths()) {
    IsaCap cap(isa);
    for (int64_t levels : {0, 3, 50}) {
      auto gen = at::detail::createCPUGenerator(1000 + levels);
      auto x = levels > 0 ? tied_scores(n, c, levels, 2000 + levels)
                          : torch::rand({n, c}, gen);
      TopKTopPSelector s({c, k, p});
      for (int64_t i = 0; i < n; i += 4000) {
        s.ingest(x.slice(0, i, i + 4000), i);
      }
      INFO("isa=" << static_cast<int>(isa) << " levels=" << levels);
      CHECK(triples(s.result()) == reference(x, iota(n), k, p));
    }
  }
}

TEST_CASE(
    "topk_sort_entries orders as std::sort with topk_better",
    "[pseudo_label]") {
  using dlcore::detail::TopKEntry;
  std::mt19937_64 rng(7);
  std::vector<TopKEntry> tmp;
  for (size_t n : {5u, 511u, 512u, 3000u, 20000u}) {
    // levels 0: continuous doubles; 1: every score equal; 3: heavy ties;
    // -1: float-valued scores of both signs, with -0.0 and +0.0.
    for (int levels : {0, 1, 3, -1}) {
      std::vector<TopKEntry> v(n);
      for (size_t i = 0; i < n; ++i) {
        const double u = std::uniform_real_distribution<double>(-1, 1)(rng);
        double score = u;
        if (levels > 0) {
          score = std::floor((u + 1) / 2 * levels);
        } else if (levels < 0) {
          score = i % 7 == 0 ? (i % 2 == 0 ? -0.0 : 0.0)
                             : static_cast<double>(static_cast<float>(u));
        }
        v[i] = {score, static_cast<int64_t>((i * 7919) % 1000003) - 500};
      }
      auto want = v;
      std::sort(want.begin(), want.end(), dlcore::detail::TopKBetter{});
      dlcore::detail::topk_sort_entries(v, tmp);
      INFO("n=" << n << " levels=" << levels);
      REQUIRE(v.size() == n);
      bool same = true;
      for (size_t i = 0; i < n; ++i) {
        same &= v[i].index == want[i].index && v[i].score == want[i].score;
      }
      CHECK(same);
    }
  }
}

namespace {

// topk_keep_best against std::nth_element on entries of type E, on the
// current instruction-set path.
template <typename E>
void check_keep_best(std::mt19937_64& rng) {
  using S = dlcore::detail::TopKScore<E>;
  std::vector<E> scratch;
  // levels 0: continuous in [0, 1); > 0: that many tied values; -1:
  // continuous in [-1, 1] with every 7th score -0.0 or +0.0. `miss` puts a
  // score above all others at every sampled position, so the sample's
  // bracket misses the k-th best (k > 512) and the fallback runs.
  for (size_t n : {10u, 4095u, 4096u, 4100u, 6000u, 24000u, 24003u}) {
    for (int levels : {0, 2, 40, -1}) {
      for (double frac : {0.01, 0.5, 0.66, 0.99}) {
        for (bool miss : {false, true}) {
          const auto k = std::max<size_t>(1, static_cast<size_t>(frac * n));
          if (k >= n || (miss && (n < 4096 || k <= 512))) {
            continue;
          }
          std::vector<E> v(n);
          for (size_t i = 0; i < n; ++i) {
            const double u = std::uniform_real_distribution<double>(0, 1)(rng);
            double x = levels > 0 ? std::floor(u * levels) : u;
            if (levels < 0) {
              x = i % 7 == 0 ? (i % 2 == 0 ? -0.0 : 0.0) : 2 * u - 1;
            }
            v[i].score = static_cast<S>(x);
            v[i].index = static_cast<decltype(E::index)>(i * 7919 % 100003);
          }
          if (miss) {
            for (size_t i = 0; i < 512; ++i) {
              v[i * n / 512].score = static_cast<S>(1000);
            }
          }
          auto want = v;
          std::nth_element(
              want.begin(),
              want.begin() + static_cast<std::ptrdiff_t>(k - 1),
              want.end(),
              dlcore::detail::TopKBetter{});
          const E want_kth = want[k - 1];
          want.resize(k);
          const E kth = dlcore::detail::topk_keep_best(v.data(), n, k, scratch);
          v.resize(k);
          auto by_index = [](const E& a, const E& b) {
            return a.index < b.index;
          };
          std::sort(want.begin(), want.end(), by_index);
          std::sort(v.begin(), v.end(), by_index);
          INFO(
              "entry bytes=" << sizeof(E) << " n=" << n << " k=" << k
                             << " levels=" << levels << " miss=" << miss);
          CHECK(kth.score == want_kth.score);
          CHECK(kth.index == want_kth.index);
          REQUIRE(v.size() == k);
          bool same = true;
          for (size_t i = 0; i < k; ++i) {
            same &= v[i].index == want[i].index && v[i].score == want[i].score;
          }
          CHECK(same);
        }
      }
    }
  }
}

} // namespace

TEST_CASE(
    "topk_keep_best keeps what std::nth_element keeps", "[pseudo_label]") {
  // 8-byte entries take the AVX-512 partition where the CPU has it, so
  // every instruction-set path is run.
  std::mt19937_64 rng(42);
  for (auto isa : isa_paths()) {
    IsaCap cap(isa);
    INFO("isa=" << static_cast<int>(isa));
    check_keep_best<dlcore::detail::TopKEntry>(rng);
    check_keep_best<dlcore::detail::TopKEntry32>(rng);
  }
}

TEST_CASE(
    "topk_select_bracket selects like std::nth_element, whatever the bracket",
    "[pseudo_label]") {
  using dlcore::detail::TopKEntry32;
  const float inf = std::numeric_limits<float>::infinity();
  const float big = std::numeric_limits<float>::max();
  const float tiny = std::numeric_limits<float>::denorm_min();
  struct Case {
    float lo, hi;
    int levels; // 0: continuous scores in [lo, hi]
  };
  // Ordinary, tied, open on either side, zero width, a width that
  // overflows, and a width whose bucket scale overflows.
  const std::vector<Case> cases = {
      {0.25f, 0.75f, 0},
      {0.25f, 0.75f, 3},
      {-inf, 0.5f, 0},
      {0.5f, inf, 0},
      {0.5f, 0.5f, 1},
      {-big, big, 0},
      {tiny, 2 * tiny, 2},
      {-1e-30f, 1e-30f, 0},
      {-1e-36f, 1e-36f, 0},
  };
  std::mt19937_64 rng(5);
  for (const auto& cs : cases) {
    for (size_t m : {1u, 2u, 7u, 300u, 3000u}) {
      for (size_t r : {size_t{0}, m / 2, m - 1}) {
        std::vector<TopKEntry32> w(m);
        const float a = std::isfinite(cs.lo) ? cs.lo : -1.0f;
        const float b = std::isfinite(cs.hi) ? cs.hi : 1.0f;
        for (size_t i = 0; i < m; ++i) {
          const double u = std::uniform_real_distribution<double>(0, 1)(rng);
          // levels > 1: that many values from a to b, equally spaced.
          const int q = static_cast<int>(u * cs.levels);
          float x =
              cs.levels > 0
                  ? (cs.levels == 1 ? a
                                    : static_cast<float>(
                                          a + (static_cast<double>(b) - a) * q /
                                                  (cs.levels - 1)))
                  : static_cast<float>(a + u * (static_cast<double>(b) - a));
          x = std::min(std::max(x, a), b);
          w[i] = {x, static_cast<uint32_t>(i * 7919 % 10007)};
        }
        auto want = w;
        std::nth_element(
            want.begin(),
            want.begin() + static_cast<std::ptrdiff_t>(r),
            want.end(),
            dlcore::detail::TopKBetter{});
        const TopKEntry32 want_kth = want[r];
        want.resize(r + 1);
        std::vector<TopKEntry32> out(r + 1);
        const TopKEntry32 kth = dlcore::detail::topk_select_bracket(
            w.data(), m, r, cs.hi, cs.lo, out.data());
        auto by_index = [](const TopKEntry32& x, const TopKEntry32& y) {
          return x.index < y.index;
        };
        std::sort(want.begin(), want.end(), by_index);
        std::sort(out.begin(), out.end(), by_index);
        INFO(
            "lo=" << cs.lo << " hi=" << cs.hi << " levels=" << cs.levels
                  << " m=" << m << " r=" << r);
        CHECK(kth.score == want_kth.score);
        CHECK(kth.index == want_kth.index);
        bool same = true;
        for (size_t i = 0; i <= r; ++i) {
          same &=
              out[i].index == want[i].index && out[i].score == want[i].score;
        }
        CHECK(same);
      }
    }
  }
}

TEST_CASE("topk_radix_sort sorts like std::sort", "[pseudo_label]") {
  std::mt19937_64 rng(9);
  for (size_t n : {0u, 1u, 100u, 4096u, 50000u}) {
    for (int64_t top :
         {int64_t{1},
          int64_t{5000},
          int64_t{1} << 40,
          std::numeric_limits<int64_t>::max()}) {
      std::vector<int64_t> v(n);
      for (auto& x : v) {
        x = static_cast<int64_t>(rng() % static_cast<uint64_t>(top));
      }
      if (n > 2) {
        v[n / 2] = top - 1; // the largest value sets the number of passes
        v[n / 3] = 0;
      }
      auto want = v;
      std::sort(want.begin(), want.end());
      dlcore::detail::topk_radix_sort(v);
      INFO("n=" << n << " top=" << top);
      CHECK(v == want);
    }
  }
}
