// Benchmark of dlcore::HashtagResampler against torch::multinomial.
//
// Hot path: HashtagResampler::draw (alias table over tags + uniform image of
// the tag, counter-based SplitMix64), single thread. Baseline, named and run in
// the same process on the same per-image weights: torch::multinomial(weights,
// n, /*replacement=*/true), which is what PyTorch's WeightedRandomSampler
// calls. Prints draws/s of both and the ratio at N = 1M and N = 2^24, shows
// that torch::multinomial refuses N = 2^24 + 1, then reports ours alone at
// N >= 50M with its set-up time and memory per image.
//
// Data: single-label images, tag of image i = floor(T * u_i^3) for uniform
// u_i (a long tail over T = 10000 tags), int32 labels, square-root sampling.
//
// Usage: bench_hashtag_resampler [--draws 20000000] [--large 50000000]
//                                [--threads 1] [--repeats 3]

#include <dlcore/data/hashtag_resampler.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

torch::Tensor make_labels(int64_t n, int64_t num_tags, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto u = torch::rand({n}, gen, torch::kFloat);
  return u.pow_(3)
      .mul_(static_cast<double>(num_tags))
      .floor_()
      .clamp_max_(static_cast<double>(num_tags - 1))
      .to(torch::kInt);
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) +
         1e-9 * static_cast<double>(ts.tv_nsec);
}

// Best of `repeats` rates in draws per second: by wall clock, and by this
// thread's CPU time (robust when other processes share the cores; meaningful
// because both paths run single-threaded).
struct Rate {
  double wall = 0.0;
  double cpu = 0.0;
};

template <typename F>
Rate best_rate(int repeats, int64_t draws, F&& f) {
  Rate best;
  for (int r = 0; r < repeats; ++r) {
    auto t0 = Clock::now();
    const double c0 = thread_cpu_seconds();
    f();
    const double cpu = thread_cpu_seconds() - c0;
    best.wall =
        std::max(best.wall, static_cast<double>(draws) / seconds_since(t0));
    best.cpu = std::max(best.cpu, static_cast<double>(draws) / cpu);
  }
  return best;
}

struct Row {
  int64_t n;
  double setup_s;
  Rate ours;
  Rate theirs; // 0: refused
  double bytes_per_image;
  double chi_square; // realized tag counts vs n_h^(1/2), df = T' - 1
  int64_t df;
  double chi_wrong; // the same counts vs n_h^(0.55)
};

// Pearson's chi-square of the tags of `draws` against mass n_h^alpha.
double tag_chi_square(
    const torch::Tensor& labels,
    const std::vector<int64_t>& draws,
    const torch::Tensor& counts,
    double alpha,
    int64_t* df) {
  auto idx = torch::from_blob(
      const_cast<int64_t*>(draws.data()),
      {static_cast<int64_t>(draws.size())},
      torch::kLong);
  auto tags = labels.index_select(0, idx).to(torch::kLong);
  auto obs = torch::bincount(tags, {}, counts.numel()).to(torch::kDouble);
  auto n = counts.to(torch::kDouble);
  auto used = n.gt(0);
  auto mass = n.pow(alpha).mul_(used);
  auto expect = mass / mass.sum() * static_cast<double>(draws.size());
  auto chi = (obs - expect).pow(2).div(expect.clamp_min(1e-300)).mul_(used);
  *df = used.sum().item<int64_t>() - 1;
  return chi.sum().item<double>();
}

Row run_size(int64_t n, int64_t draws, int repeats, bool with_torch) {
  const int64_t num_tags = 10000;
  auto labels = make_labels(n, num_tags, 1);
  auto t0 = Clock::now();
  dlcore::HashtagResampler s(
      labels,
      dlcore::HashtagResamplerOptions(dlcore::SamplingScheme::kSquareRoot)
          .seed(3));
  const double setup = seconds_since(t0);
  std::vector<int64_t> out(static_cast<size_t>(draws));
  int64_t epoch = 0;
  const Rate ours =
      best_rate(repeats, draws, [&] { s.draw(epoch++, 0, draws, out.data()); });
  // Sink so the draws are not optimized away.
  int64_t sink = 0;
  for (size_t k = 0; k < out.size(); k += 4096) {
    sink ^= out[k];
  }
  Rate theirs;
  if (with_torch) {
    auto w = s.image_weights();
    theirs = best_rate(repeats, draws, [&] {
      auto r = torch::multinomial(w, draws, /*replacement=*/true);
      sink ^= r[0].item<int64_t>();
    });
  }
  // Goodness of fit of the last epoch's draws (square-root scheme).
  int64_t df = 0;
  const double chi = tag_chi_square(labels, out, s.tag_counts(), 0.5, &df);
  const double chi_wrong =
      tag_chi_square(labels, out, s.tag_counts(), 0.55, &df);
  if (sink == 42) {
    std::cout << "";
  }
  // Resident bytes per image of the sampler: 4-byte image ids per pair plus
  // the per-tag tables (offsets 8 B, alias 16 B, probability 8 B).
  const double bytes =
      (4.0 * static_cast<double>(n) + 32.0 * static_cast<double>(num_tags)) /
      static_cast<double>(n);
  return Row{n, setup, ours, theirs, bytes, chi, df, chi_wrong};
}

} // namespace

int main(int argc, char** argv) try {
  CLI::App app{"HashtagResampler vs torch::multinomial"};
  int64_t draws = 20000000;
  int64_t large = 50000000;
  int threads = 1;
  int repeats = 3;
  app.add_option("--draws", draws, "draws per timing");
  app.add_option("--large", large, "N for the ours-only run (0 skips)");
  app.add_option("--threads", threads, "torch intra-op threads");
  app.add_option("--repeats", repeats, "timings per measurement (best kept)");
  CLI11_PARSE(app, argc, argv);
  torch::set_num_threads(threads);

  std::vector<Row> rows;
  rows.push_back(run_size(1000000, draws, repeats, true));
  rows.push_back(run_size(int64_t{1} << 24, draws, repeats, true));

  // torch::multinomial's limit.
  std::string refusal = "accepted";
  try {
    torch::multinomial(
        torch::ones({(int64_t{1} << 24) + 1}, torch::kDouble), 1, true);
  } catch (const c10::Error& e) {
    refusal = e.what_without_backtrace();
    refusal = refusal.substr(0, refusal.find('\n'));
  }
  if (large > 0) {
    rows.push_back(run_size(large, draws, repeats, false));
  }

  std::cout << std::fixed << std::setprecision(3);
  std::cout << "threads: " << threads << ", draws per timing: " << draws
            << ", best of " << repeats << "\n\n";
  std::cout << "Mdraws/s as wall / thread-CPU time; ratio by CPU time\n\n";
  std::cout << "| N | set-up s | set-up s per 10M | ours Mdraws/s | "
               "torch::multinomial Mdraws/s | ratio | sampler bytes/image |\n"
            << "|---|---|---|---|---|---|---|\n";
  for (const auto& r : rows) {
    std::cout << "| " << r.n << " | " << r.setup_s << " | "
              << r.setup_s * 1e7 / static_cast<double>(r.n) << " | "
              << r.ours.wall / 1e6 << " / " << r.ours.cpu / 1e6 << " | ";
    if (r.theirs.cpu > 0) {
      std::cout << r.theirs.wall / 1e6 << " / " << r.theirs.cpu / 1e6 << " | "
                << r.ours.cpu / r.theirs.cpu << "x | ";
    } else {
      std::cout << "refused | - | ";
    }
    std::cout << r.bytes_per_image << " |\n";
  }
  std::cout << "\ntorch::multinomial at N = 2^24 + 1: " << refusal << "\n";
  // Wilson-Hilferty upper 1e-4 critical value.
  auto critical = [](int64_t df) {
    const double k = static_cast<double>(df);
    const double a = 2.0 / (9.0 * k);
    return k * std::pow(1.0 - a + 3.719 * std::sqrt(a), 3.0);
  };
  std::cout << "\nGoodness of fit of the last " << draws
            << " draws' tags (chi-square, critical value at p = 1e-4):\n";
  bool ok = true;
  for (const auto& r : rows) {
    const double c = critical(r.df);
    const bool pass = r.chi_square < c && r.chi_wrong > c;
    ok = ok && pass;
    std::cout << "N = " << r.n << ": alpha 0.5 chi2 = " << r.chi_square
              << ", alpha 0.55 chi2 = " << r.chi_wrong << ", df = " << r.df
              << ", critical " << c << (pass ? " -> ok" : " -> FAIL") << "\n";
  }
  if (!ok) {
    return 2;
  }
  return 0;
} catch (const std::exception& e) {
  std::cerr << "bench_hashtag_resampler: " << e.what() << "\n";
  return 1;
}
