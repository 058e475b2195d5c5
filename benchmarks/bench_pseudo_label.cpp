// Throughput of dlcore::TopKTopPSelector (top-K/top-P pseudo-label
// selection, Yalniz et al. 2019) against two named baselines, in one run:
//   read pass: torch::sum over the same chunk (a lower bound on the cost of
//              touching every score once), single thread;
//   naive:     per chunk torch::topk(P) over classes, keep every candidate,
//              then per class torch::topk(K) at the end (what one writes with
//              LibTorch alone), single thread.
// First, per thread count, one selector over all rows: rows/s, result() time
// and peak RSS (getrusage) after half of the rows and after all of them (no
// growth with N). Then the ratios, 1 thread: the selector, the read pass and
// the naive streaming phase run in `--rounds` interleaved rounds (each round
// a slice of each, in rotating order), so that a change in the machine's
// load during the run weighs on all three alike; rates are totals over the
// rounds, and the spread of the per-round ratios is printed beside them.
// Last, an extrapolation to 1 billion rows.
//
// With RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set (scripts/launch_local.sh)
// every rank streams rows/WORLD_SIZE and the candidates are merged across
// ranks with dlcore::merge_across_ranks; rank 0 prints the timing.
//
// Usage: bench_pseudo_label [--rows 10000000] [--chunk 25000] [--classes 1000]
//        [--k 16000] [--p 10] [--distinct 4] [--naive-rows 1000000]
//        [--rounds 10] [--threads 1,2]
#include <dlcore/data/pseudo_label.h>
#include <dlcore/distributed/process_group.h>
#include <dlcore/distributed/selection.h>

#include <CLI/CLI.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <string>
#include <vector>

namespace {

double now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double cpu_now() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) +
         1e-9 * static_cast<double>(ts.tv_nsec);
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

struct Timing {
  double wall = 0;
  double cpu = 0;
};

struct Clock {
  double w0 = now();
  double c0 = cpu_now();
  Timing elapsed() const {
    return {now() - w0, cpu_now() - c0};
  }
};

struct Config {
  int64_t rows = 10'000'000;
  int64_t chunk = 25'000;
  int64_t classes = 1000;
  int64_t k = 16000;
  int64_t p = 10;
  int64_t distinct = 4;
  int64_t naive_rows = 1'000'000;
  int64_t rounds = 10;
  uint64_t seed = 0;
  std::string threads = "1,2";
};

// Streams `rows` rows (the distinct chunks in turn, indices shifted).
Timing run_selector(
    const std::vector<torch::Tensor>& chunks,
    int64_t first,
    int64_t rows,
    dlcore::TopKTopPSelector& sel,
    double* rss_half) {
  Clock clock;
  int64_t done = 0;
  int64_t i = 0;
  while (done < rows) {
    const auto& x = chunks[i % chunks.size()];
    const int64_t b = std::min<int64_t>(x.size(0), rows - done);
    sel.ingest(b == x.size(0) ? x : x.slice(0, 0, b), first + done);
    done += b;
    ++i;
    if (rss_half != nullptr && done - b < rows / 2 && done >= rows / 2) {
      *rss_half = peak_rss_mb();
    }
  }
  return clock.elapsed();
}

// Sums whole chunks until at least `rows` rows are read; `*read` gets how
// many were.
Timing run_read_pass(
    const std::vector<torch::Tensor>& chunks, int64_t rows, int64_t* read) {
  Clock clock;
  int64_t done = 0;
  int64_t i = 0;
  double sink = 0;
  while (done < rows) {
    const auto& x = chunks[i % chunks.size()];
    sink += x.sum().item<double>();
    done += x.size(0);
    ++i;
  }
  const Timing dt = clock.elapsed();
  if (sink == 42.0) {
    std::cout << "";
  }
  *read = done;
  return dt;
}

// Naive LibTorch: per chunk topk over classes, keep all candidates, per-class
// topk at the end (candidates grouped by a stable sort on the class).
struct Naive {
  std::vector<torch::Tensor> vals, cls, idx;
  int64_t done = 0;

  // Streams `rows` more rows (the distinct chunks in turn).
  Timing stream(
      const Config& cfg,
      const std::vector<torch::Tensor>& chunks,
      int64_t rows) {
    Clock clock;
    int64_t streamed = 0;
    int64_t i = 0;
    while (streamed < rows) {
      const auto& x0 = chunks[i % chunks.size()];
      const int64_t b = std::min<int64_t>(x0.size(0), rows - streamed);
      auto x = x0.slice(0, 0, b);
      auto top = torch::topk(x, cfg.p, 1);
      vals.push_back(std::get<0>(top).reshape({-1}));
      cls.push_back(std::get<1>(top).reshape({-1}));
      idx.push_back(
          (torch::arange(b, torch::kLong) + done).repeat_interleave(cfg.p));
      done += b;
      streamed += b;
      ++i;
    }
    return clock.elapsed();
  }

  // The per-class topk over every candidate kept.
  Timing finish(const Config& cfg) {
    Clock clock;
    auto v = torch::cat(vals);
    auto c = torch::cat(cls);
    auto n = torch::cat(idx);
    auto sorted = torch::sort(c, /*stable=*/true, 0, false);
    auto order = std::get<1>(sorted);
    v = v.index_select(0, order);
    n = n.index_select(0, order);
    auto counts = torch::bincount(std::get<0>(sorted), {}, cfg.classes);
    int64_t start = 0;
    int64_t kept = 0;
    const auto* cp = counts.data_ptr<int64_t>();
    for (int64_t j = 0; j < cfg.classes; ++j) {
      auto vj = v.narrow(0, start, cp[j]);
      auto top = torch::topk(vj, std::min<int64_t>(cfg.k, cp[j]));
      auto chosen = n.narrow(0, start, cp[j]).index_select(0, std::get<1>(top));
      kept += chosen.size(0);
      start += cp[j];
    }
    const Timing dt = clock.elapsed();
    if (kept < 0) {
      std::cout << "";
    }
    return dt;
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0
                : (n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

} // namespace

int main(int argc, char** argv) try {
  Config cfg;
  CLI::App app{"TopKTopPSelector throughput against named baselines"};
  app.add_option("--rows", cfg.rows, "rows streamed through the selector")
      ->check(CLI::PositiveNumber);
  app.add_option("--chunk", cfg.chunk, "rows per chunk")
      ->check(CLI::PositiveNumber);
  app.add_option("--classes", cfg.classes, "classes C")
      ->check(CLI::PositiveNumber);
  app.add_option("--k", cfg.k, "images per class K")
      ->check(CLI::PositiveNumber);
  app.add_option("--p", cfg.p, "classes per image P")
      ->check(CLI::PositiveNumber);
  app.add_option("--distinct", cfg.distinct, "distinct random chunks")
      ->check(CLI::PositiveNumber);
  app.add_option("--naive-rows", cfg.naive_rows, "rows for the naive baseline")
      ->check(CLI::NonNegativeNumber);
  app.add_option(
         "--rounds", cfg.rounds, "interleaved rounds of the ratio measurement")
      ->check(CLI::PositiveNumber);
  app.add_option("--threads", cfg.threads, "comma-separated thread counts");
  app.add_option("--seed", cfg.seed, "seed of the random scores");
  CLI11_PARSE(app, argc, argv);
  at::set_num_threads(1);

  const bool distributed = std::getenv("WORLD_SIZE") != nullptr;
  std::vector<torch::Tensor> chunks;
  for (int64_t i = 0; i < cfg.distinct; ++i) {
    auto gen = at::detail::createCPUGenerator(cfg.seed + i);
    chunks.push_back(torch::rand({cfg.chunk, cfg.classes}, gen));
  }
  const double rss_data = peak_rss_mb();

  if (distributed) {
#if DLCORE_HAS_GLOO
    auto pg = dlcore::init_process_group_from_env();
    const int64_t rank = pg->getRank();
    const int64_t world = pg->getSize();
    const int64_t first = cfg.rows * rank / world;
    const int64_t last = cfg.rows * (rank + 1) / world;
    dlcore::TopKTopPSelector sel({cfg.classes, cfg.k, cfg.p});
    pg->barrier()->wait();
    const double t0 = now();
    run_selector(chunks, first, last - first, sel, nullptr);
    const double t_ingest = now() - t0;
    pg->barrier()->wait();
    const double t1 = now();
    dlcore::merge_across_ranks(sel, *pg, 0);
    const double t_merge = now() - t1;
    const double total = now() - t0;
    if (rank == 0) {
      std::printf(
          "ranks %lld: rows %lld, ingest %.2f s (rank 0), merge to rank 0 "
          "%.2f s, total %.2f s, %.0f rows/s overall, peak RSS rank 0 %.0f "
          "MB\n",
          static_cast<long long>(world),
          static_cast<long long>(cfg.rows),
          t_ingest,
          t_merge,
          total,
          static_cast<double>(cfg.rows) / total,
          peak_rss_mb());
    }
    return 0;
#else
    std::fprintf(stderr, "%s\n", DLCORE_NO_GLOO_MESSAGE);
    return 1;
#endif
  }

  std::printf(
      "C = %lld, K = %lld, P = %lld, %lld rows in chunks of %lld (%lld "
      "distinct uniform random chunks), scores float32\n",
      static_cast<long long>(cfg.classes),
      static_cast<long long>(cfg.k),
      static_cast<long long>(cfg.p),
      static_cast<long long>(cfg.rows),
      static_cast<long long>(cfg.chunk),
      static_cast<long long>(cfg.distinct));
  std::printf("peak RSS after generating the chunks: %.0f MB\n", rss_data);

  // Per thread count: rate, result() and peak RSS, before anything else
  // grows the process (the naive baseline keeps every candidate).
  double w_one = 0;
  std::vector<int64_t> thread_counts;
  for (size_t s = 0; s < cfg.threads.size();) {
    size_t e = cfg.threads.find(',', s);
    if (e == std::string::npos) {
      e = cfg.threads.size();
    }
    thread_counts.push_back(std::stoll(cfg.threads.substr(s, e - s)));
    s = e + 1;
  }
  for (int64_t t : thread_counts) {
    dlcore::TopKTopPSelector sel(
        dlcore::TopKTopPSelectorOptions(cfg.classes, cfg.k, cfg.p)
            .num_threads(t));
    double rss_half = 0;
    const Timing dt = run_selector(chunks, 0, cfg.rows, sel, &rss_half);
    const double rss_end = peak_rss_mb();
    const double rate = static_cast<double>(cfg.rows) / dt.cpu;
    const double wall = static_cast<double>(cfg.rows) / dt.wall;
    if (t == 1) {
      w_one = wall;
    }
    Clock rc;
    auto res = sel.result();
    const Timing t_res = rc.elapsed();
    std::printf(
        "TopKTopPSelector, %lld thread(s): %.0f rows/s per CPU second, %.0f "
        "rows/s wall (%.2fx the 1-thread wall rate); CPU %.2f s, wall %.2f s; "
        "result() CPU %.2f s; state %.0f MB; peak RSS after %lld rows %.0f "
        "MB, after %lld rows %.0f MB; shortfall %lld\n",
        static_cast<long long>(t),
        rate,
        wall,
        w_one > 0 ? wall / w_one : 1.0,
        dt.cpu,
        dt.wall,
        t_res.cpu,
        static_cast<double>(sel.state_bytes()) / 1e6,
        static_cast<long long>(cfg.rows / 2),
        rss_half,
        static_cast<long long>(cfg.rows),
        rss_end,
        static_cast<long long>(res.shortfalls.sum().item<int64_t>()));
  }

  // The ratios, 1 thread, interleaved rounds.
  const int64_t rounds = std::min<int64_t>(cfg.rounds, cfg.rows);
  const int64_t read_rows = std::min<int64_t>(cfg.rows, 2'000'000);
  dlcore::TopKTopPSelector sel({cfg.classes, cfg.k, cfg.p});
  Naive naive;
  double cpu_sel = 0;
  double cpu_read = 0;
  double cpu_naive = 0;
  int64_t read_total = 0;
  std::vector<double> vs_read;
  std::vector<double> vs_naive;
  for (int64_t i = 0; i < rounds; ++i) {
    auto slice = [i, rounds](int64_t n) {
      return n * (i + 1) / rounds - n * i / rounds;
    };
    const int64_t s_rows = slice(cfg.rows);
    int64_t r_rows = 0;
    const int64_t n_rows = slice(cfg.naive_rows);
    double t_sel = 0;
    double t_read = 0;
    double t_naive = 0;
    for (int64_t j = 0; j < 3; ++j) {
      switch ((i + j) % 3) {
        case 0:
          t_sel =
              run_selector(chunks, cfg.rows * i / rounds, s_rows, sel, nullptr)
                  .cpu;
          break;
        case 1:
          t_read = run_read_pass(
                       chunks, std::max<int64_t>(slice(read_rows), 1), &r_rows)
                       .cpu;
          break;
        default:
          if (n_rows > 0) {
            t_naive = naive.stream(cfg, chunks, n_rows).cpu;
          }
          break;
      }
    }
    cpu_sel += t_sel;
    cpu_read += t_read;
    read_total += r_rows;
    cpu_naive += t_naive;
    const double r_sel = static_cast<double>(s_rows) / t_sel;
    const double r_rd = static_cast<double>(r_rows) / t_read;
    const double r_nv = n_rows > 0 ? static_cast<double>(n_rows) / t_naive : 0;
    vs_read.push_back(r_sel / r_rd);
    if (n_rows > 0) {
      vs_naive.push_back(r_sel / r_nv);
    }
    std::printf(
        "  round %lld: read pass %.0f, selector %.0f (rows %lld-%lld), naive "
        "streaming %.0f rows/s\n",
        static_cast<long long>(i + 1),
        r_rd,
        r_sel,
        static_cast<long long>(cfg.rows * i / rounds),
        static_cast<long long>(cfg.rows * i / rounds + s_rows),
        r_nv);
  }
  const double r_one = static_cast<double>(cfg.rows) / cpu_sel;
  const double r_read = static_cast<double>(read_total) / cpu_read;
  Clock rc;
  auto res = sel.result();
  const double cpu_res = rc.elapsed().cpu;
  std::printf(
      "interleaved, %lld rounds, 1 thread, rows/s per CPU second:\n"
      "  baseline read pass (torch::sum per chunk): %.0f\n"
      "  TopKTopPSelector: %.0f (%.2fx the read pass; per round %.2f-%.2fx, "
      "median %.2fx); result() CPU %.2f s\n",
      static_cast<long long>(rounds),
      r_read,
      r_one,
      r_one / r_read,
      *std::min_element(vs_read.begin(), vs_read.end()),
      *std::max_element(vs_read.begin(), vs_read.end()),
      median(vs_read),
      cpu_res);
  if (cfg.naive_rows > 0) {
    const Timing t_final = naive.finish(cfg);
    const double n_rows = static_cast<double>(cfg.naive_rows);
    const double r_stream = n_rows / cpu_naive;
    const double r_total = n_rows / (cpu_naive + t_final.cpu);
    std::printf(
        "  baseline naive LibTorch (topk per chunk, keep all, per-class "
        "topk; %lld rows): streaming %.0f, final per-class topk %.2f s, end "
        "to end %.0f; peak RSS now %.0f MB\n"
        "  TopKTopPSelector against naive: streaming %.1fx (per round "
        "%.1f-%.1fx, median %.1fx); naive end to end (streaming + final) "
        "%.1fx\n",
        static_cast<long long>(cfg.naive_rows),
        r_stream,
        t_final.cpu,
        r_total,
        peak_rss_mb(),
        r_one / r_stream,
        *std::min_element(vs_naive.begin(), vs_naive.end()),
        *std::max_element(vs_naive.begin(), vs_naive.end()),
        median(vs_naive),
        r_one / r_total);
    if (cfg.naive_rows == cfg.rows) {
      const double r_ours = static_cast<double>(cfg.rows) / (cpu_sel + cpu_res);
      std::printf(
          "  end to end at the same N (ingest + result() against streaming + "
          "final): selector %.0f rows/s, %.1fx naive\n",
          r_ours,
          r_ours / r_total);
    }
  }
  const double state_gb = static_cast<double>(sel.state_bytes()) / 1e9;
  std::printf(
      "extrapolation to 1e9 rows x %lld classes, K = %lld, P = %lld: %.1f h "
      "of CPU on 1 thread, per-thread state %.2f GB (+ one chunk)\n",
      static_cast<long long>(cfg.classes),
      static_cast<long long>(cfg.k),
      static_cast<long long>(cfg.p),
      1e9 / r_one / 3600.0,
      state_gb);
  return 0;
} catch (const std::exception& e) {
  std::cerr << "bench_pseudo_label: " << e.what() << "\n";
  return 1;
}
