// Tests of dlcore/distributed/process_group.h and distributed/selection.h.
// Multi-process tests re-run this test binary as W worker processes (the
// hidden test case "distributed worker", selected by name, configured by
// environment variables) and compare what every rank wrote with the result
// of one process.
#include <dlcore/distributed/collectives.h>
#include <dlcore/distributed/process_group.h>
#include <dlcore/distributed/selection.h>

#if DLCORE_HAS_GLOO

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

namespace fs = std::filesystem;

constexpr int64_t kRows = 3000;
constexpr int64_t kClasses = 23;
constexpr int64_t kK = 70;
constexpr int64_t kP = 3;

// The scores every rank (and the single process) sees: many ties.
torch::Tensor shared_scores() {
  auto gen = at::detail::createCPUGenerator(2024);
  return torch::randint(6, {kRows, kClasses}, gen, torch::kFloat) / 6;
}

dlcore::TopKTopPResult single_process_result() {
  dlcore::TopKTopPSelector s({kClasses, kK, kP});
  s.ingest(shared_scores(), 0);
  return s.result();
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v == nullptr ? fallback : std::string(v);
}

fs::path fresh_dir(const std::string& name) {
  auto dir = fs::temp_directory_path() /
             ("dlcore_dist_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string self_exe() {
  return fs::read_symlink("/proc/self/exe").string();
}

// Starts `world` copies of this binary running the worker test case with
// RANK and WORLD_SIZE plus `env`; returns how many exited non-zero (a
// worker still running after 60 s is killed and counts as failed).
int run_workers(
    int world,
    const std::map<std::string, std::string>& env,
    const fs::path& dir) {
  const std::string exe = self_exe();
  std::vector<pid_t> pids;
  for (int rank = 0; rank < world; ++rank) {
    std::map<std::string, std::string> vars;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string kv(*e);
      const auto eq = kv.find('=');
      vars[kv.substr(0, eq)] = eq == std::string::npos ? "" : kv.substr(eq + 1);
    }
    for (const auto& kv : env) {
      vars[kv.first] = kv.second;
    }
    vars["RANK"] = std::to_string(rank);
    vars["WORLD_SIZE"] = std::to_string(world);
    vars["OMP_NUM_THREADS"] = "1";
    std::vector<std::string> strings;
    for (const auto& kv : vars) {
      strings.push_back(kv.first + "=" + kv.second);
    }
    std::vector<char*> envp;
    for (auto& s : strings) {
      envp.push_back(s.data());
    }
    envp.push_back(nullptr);
    std::string name = "distributed worker";
    std::vector<char*> argv{
        const_cast<char*>(exe.c_str()), name.data(), nullptr};
    const std::string log = (dir / ("log" + std::to_string(rank))).string();
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(
        &fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid = 0;
    const int rc =
        posix_spawn(&pid, exe.c_str(), &fa, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    REQUIRE(rc == 0);
    pids.push_back(pid);
  }
  int failed = 0;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (pid_t pid : pids) {
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        status = 1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
      ++failed;
    }
  }
  return failed;
}

struct RankOutput {
  torch::Tensor indices, labels, scores, counts, rows_seen, gathered;
};

RankOutput read_rank(const fs::path& dir, int rank) {
  torch::serialize::InputArchive a;
  a.load_from((dir / ("rank" + std::to_string(rank) + ".pt")).string());
  RankOutput o;
  a.read("indices", o.indices);
  a.read("labels", o.labels);
  a.read("scores", o.scores);
  a.read("counts", o.counts);
  a.read("rows_seen", o.rows_seen);
  a.read("gathered", o.gathered);
  return o;
}

bool same_result(const RankOutput& o, const dlcore::TopKTopPResult& r) {
  return o.indices.equal(r.indices) && o.labels.equal(r.labels) &&
         o.scores.equal(r.scores) && o.counts.equal(r.counts) &&
         o.rows_seen.item<int64_t>() == r.rows_seen;
}

std::string log_of(const fs::path& dir, int rank) {
  std::ifstream in(dir / ("log" + std::to_string(rank)));
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// What every rank's all_gather_variable must return: rank r sent
// arange(2 r) + 100 r (rank 0 sends nothing).
torch::Tensor expected_gathered(int world) {
  std::vector<torch::Tensor> parts;
  for (int r = 0; r < world; ++r) {
    parts.push_back(torch::arange(2 * r, torch::kLong) + 100 * r);
  }
  return torch::cat(parts);
}

} // namespace

// The worker: run only by name from run_workers (hidden from normal runs).
TEST_CASE("distributed worker", "[.dist_worker]") {
  const std::string out = env_or("DLCORE_TEST_DIST_OUT", "");
  if (out.empty()) {
    return;
  }
  const int64_t k =
      env_or("RANK", "") == "1"
          ? std::stoll(env_or("DLCORE_TEST_DIST_K1", std::to_string(kK)))
          : kK;
  const int64_t threads = std::stoll(env_or("DLCORE_TEST_DIST_THREADS", "1"));
  const int64_t root = std::stoll(env_or("DLCORE_TEST_DIST_ROOT", "-1"));
  auto pg = dlcore::init_process_group_from_env(
      dlcore::ProcessGroupOptions().timeout(std::chrono::seconds(30)));
  const int64_t rank = pg->getRank();
  const int64_t world = pg->getSize();

  auto mine = torch::arange(2 * rank, torch::kLong) + 100 * rank;
  auto gathered = torch::cat(dlcore::all_gather_variable(*pg, mine));

  // Uneven contiguous shards, streamed in chunks by first index.
  auto x = shared_scores();
  const int64_t begin = kRows * rank * rank / (world * world);
  const int64_t end = kRows * (rank + 1) * (rank + 1) / (world * world);
  dlcore::TopKTopPSelector sel(
      dlcore::TopKTopPSelectorOptions(kClasses, k, kP).num_threads(threads));
  for (int64_t i = begin; i < end; i += 400) {
    sel.ingest(x.slice(0, i, std::min(end, i + 400)), i);
  }
  try {
    dlcore::merge_across_ranks(sel, *pg, root);
  } catch (const c10::Error& e) {
    std::ofstream(fs::path(out) / ("error" + std::to_string(rank)))
        << e.what_without_backtrace();
    return;
  }
  auto r = sel.result();
  torch::serialize::OutputArchive a;
  a.write("indices", r.indices);
  a.write("labels", r.labels);
  a.write("scores", r.scores);
  a.write("counts", r.counts);
  a.write("rows_seen", torch::tensor({r.rows_seen}, torch::kLong));
  a.write("gathered", gathered);
  a.save_to((fs::path(out) / ("rank" + std::to_string(rank) + ".pt")).string());
}

TEST_CASE(
    "Two ranks over a FileStore select exactly what one process selects",
    "[distributed]") {
  const auto dir = fresh_dir("file2");
  const int failed = run_workers(
      2,
      {{"DLCORE_TEST_DIST_OUT", dir.string()},
       {"DLCORE_STORE_FILE", (dir / "store").string()}},
      dir);
  INFO(log_of(dir, 0) << log_of(dir, 1));
  REQUIRE(failed == 0);
  const auto want = single_process_result();
  for (int r = 0; r < 2; ++r) {
    const auto o = read_rank(dir, r);
    CHECK(same_result(o, want));
    CHECK(o.gathered.equal(expected_gathered(2)));
  }
  fs::remove_all(dir);
}

TEST_CASE(
    "Three ranks over a TCPStore on 127.0.0.1 with two threads each select "
    "exactly what one process selects",
    "[distributed]") {
  const auto dir = fresh_dir("tcp3");
  const int failed = run_workers(
      3,
      {{"DLCORE_TEST_DIST_OUT", dir.string()},
       {"DLCORE_TEST_DIST_THREADS", "2"},
       {"MASTER_ADDR", "127.0.0.1"},
       {"MASTER_PORT", std::to_string(free_port())}},
      dir);
  INFO(log_of(dir, 0) << log_of(dir, 1) << log_of(dir, 2));
  REQUIRE(failed == 0);
  const auto want = single_process_result();
  for (int r = 0; r < 3; ++r) {
    const auto o = read_rank(dir, r);
    CHECK(same_result(o, want));
    CHECK(o.gathered.equal(expected_gathered(3)));
  }
  fs::remove_all(dir);
}

TEST_CASE(
    "Gathering to a root leaves the global result on the root only",
    "[distributed]") {
  const auto dir = fresh_dir("root3");
  const int failed = run_workers(
      3,
      {{"DLCORE_TEST_DIST_OUT", dir.string()},
       {"DLCORE_TEST_DIST_ROOT", "1"},
       {"DLCORE_STORE_FILE", (dir / "store").string()}},
      dir);
  INFO(log_of(dir, 0) << log_of(dir, 1) << log_of(dir, 2));
  REQUIRE(failed == 0);
  const auto want = single_process_result();
  CHECK(same_result(read_rank(dir, 1), want));
  // Rank 0 holds rows [0, 333) only.
  const auto o0 = read_rank(dir, 0);
  CHECK(o0.rows_seen.item<int64_t>() == kRows / 9);
  CHECK_FALSE(same_result(o0, want));
  fs::remove_all(dir);
}

TEST_CASE(
    "Ranks selecting with different K fail with the same error on every rank",
    "[distributed]") {
  const auto dir = fresh_dir("mismatch");
  const int failed = run_workers(
      2,
      {{"DLCORE_TEST_DIST_OUT", dir.string()},
       {"DLCORE_TEST_DIST_K1", "50"},
       {"DLCORE_STORE_FILE", (dir / "store").string()}},
      dir);
  INFO(log_of(dir, 0) << log_of(dir, 1));
  REQUIRE(failed == 0);
  for (int r = 0; r < 2; ++r) {
    std::ifstream in(dir / ("error" + std::to_string(r)));
    const std::string msg{
        std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    CHECK_THAT(
        msg,
        Catch::Contains("merge_across_ranks: expected every rank to select "
                        "with rank 0's num_classes 23, k 70, p 3, but rank 1 "
                        "has num_classes 23, k 50, p 3"));
  }
  fs::remove_all(dir);
}

TEST_CASE(
    "init_process_group_from_env names a missing or malformed variable",
    "[distributed]") {
  using Catch::Contains;
  auto message = [] {
    try {
      dlcore::init_process_group_from_env();
    } catch (const c10::Error& e) {
      return std::string(e.what_without_backtrace());
    }
    return std::string("no error");
  };
  std::map<std::string, std::string> saved;
  for (const char* v :
       {"RANK",
        "WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
        "DLCORE_STORE_FILE"}) {
    saved[v] = env_or(v, "\x01");
    ::unsetenv(v);
  }
  CHECK_THAT(message(), Contains("expected the environment variable RANK"));
  ::setenv("RANK", "1", 1);
  ::setenv("WORLD_SIZE", "two", 1);
  CHECK_THAT(
      message(),
      Contains("expected WORLD_SIZE to be a non-negative integer, but got "
               "'two'"));
  ::setenv("WORLD_SIZE", "2", 1);
  CHECK_THAT(
      message(), Contains("expected MASTER_ADDR (or DLCORE_STORE_FILE)"));
  ::setenv("MASTER_ADDR", "127.0.0.1", 1);
  ::setenv("MASTER_PORT", "70000", 1);
  CHECK_THAT(
      message(), Contains("expected a port in [1, 65535], but got 70000"));
  ::setenv("RANK", "2", 1);
  ::setenv("MASTER_PORT", "29500", 1);
  CHECK_THAT(
      message(),
      Contains("expected 0 <= rank < world_size, but got rank 2 and "
               "world_size 2"));
  for (const auto& kv : saved) {
    if (kv.second == "\x01") {
      ::unsetenv(kv.first.c_str());
    } else {
      ::setenv(kv.first.c_str(), kv.second.c_str(), 1);
    }
  }
}

TEST_CASE(
    "A single-rank process group gathers and merges to itself",
    "[distributed]") {
  const auto dir = fresh_dir("single");
  auto pg = dlcore::init_process_group_file((dir / "store").string(), 0, 1);
  auto parts = dlcore::all_gather_variable(*pg, torch::arange(5));
  REQUIRE(parts.size() == 1);
  CHECK(parts[0].equal(torch::arange(5)));
  auto empty = dlcore::all_gather_variable(*pg, torch::zeros({0, 3}));
  CHECK(empty[0].sizes() == torch::IntArrayRef{0, 3});
  dlcore::TopKTopPSelector sel({kClasses, kK, kP});
  sel.ingest(shared_scores(), 0);
  dlcore::merge_across_ranks(sel, *pg);
  auto r = sel.result();
  const auto want = single_process_result();
  CHECK(r.indices.equal(want.indices));
  CHECK(r.scores.equal(want.scores));
  CHECK_THROWS_WITH(
      dlcore::merge_across_ranks(sel, *pg, 1),
      Catch::Contains("expected root -1 (all ranks) or a rank in [0, 1), but "
                      "got 1"));
  fs::remove_all(dir);
}

TEST_CASE(
    "scripts/launch_local.sh starts W ranks that rendezvous by environment",
    "[distributed]") {
  const auto dir = fresh_dir("launcher");
  const std::string cmd =
      std::string("DLCORE_TEST_DIST_OUT=") + dir.string() + " bash " +
      DLCORE_SOURCE_DIR + "/scripts/launch_local.sh -n 2 --port " +
      std::to_string(free_port()) + " -- " + self_exe() +
      " 'distributed worker' > " + (dir / "launcher.log").string() + " 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream in(dir / "launcher.log");
  INFO(std::string(
      std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()));
  REQUIRE(rc == 0);
  const auto want = single_process_result();
  for (int r = 0; r < 2; ++r) {
    CHECK(same_result(read_rank(dir, r), want));
  }
  fs::remove_all(dir);
}

TEST_CASE(
    "The gathers and the merge take the Gloo group that init_process_group "
    "returns",
    "[distributed]") {
  // Up to LibTorch 1.13 a c10d::ProcessGroup, from 2.0 a c10d::Backend.
  STATIC_REQUIRE(dlcore::detail::is_c10d_group<c10d::ProcessGroupGloo>::value);
  STATIC_REQUIRE(dlcore::detail::is_c10d_group<c10d::ProcessGroup>::value);
  STATIC_REQUIRE_FALSE(dlcore::detail::is_c10d_group<at::Tensor>::value);
}

#else // !DLCORE_HAS_GLOO

// Without Gloo's headers (the official LibTorch ships none) no process group
// can be created here, so the multi-rank tests are not built. What still
// compiles, and is checked: the collectives and the merge take any c10d group
// type, and the Gloo constructors are declared (calling one fails to compile
// with DLCORE_NO_GLOO_MESSAGE).
TEST_CASE(
    "Without Gloo's headers the multi-rank tests are skipped",
    "[distributed]") {
  STATIC_REQUIRE(dlcore::detail::is_c10d_group<c10d::ProcessGroup>::value);
  STATIC_REQUIRE_FALSE(dlcore::detail::is_c10d_group<at::Tensor>::value);
  WARN(
      "SKIPPED: the multi-rank tests need Gloo's headers to create a process "
      "group: " DLCORE_NO_GLOO_MESSAGE);
}

#endif // DLCORE_HAS_GLOO
