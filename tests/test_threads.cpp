#include <dlcore/train/allocator.h>
#include <dlcore/train/threads.h>

#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

namespace {

/// Sets (or, with nullptr, unsets) an environment variable for a scope and
/// restores what was there before.
struct ScopedEnv {
  std::string name;
  std::optional<std::string> saved;
  ScopedEnv(std::string n, const char* value) : name(std::move(n)) {
    const char* old = std::getenv(name.c_str());
    if (old != nullptr) {
      saved = old;
    }
    if (value != nullptr) {
      ::setenv(name.c_str(), value, /*overwrite=*/1);
    } else {
      ::unsetenv(name.c_str());
    }
  }
  ~ScopedEnv() {
    if (saved) {
      ::setenv(name.c_str(), saved->c_str(), /*overwrite=*/1);
    } else {
      ::unsetenv(name.c_str());
    }
  }
};

} // namespace

TEST_CASE("configure_threads sets LibTorch's thread count", "[threads]") {
  const int before = at::get_num_threads();
  for (int n : {1, 2, 3}) {
    INFO("requested " << n);
    dlcore::ThreadConfig t = dlcore::configure_threads(n);
    CHECK(t.requested == n);
    CHECK(at::get_num_threads() == n);
    CHECK(t.torch_threads == n);
  }

  CHECK(dlcore::pool_threads() == 3);

  // n <= 0: every core, and never fewer than one thread.
  for (int n : {0, -3}) {
    INFO("requested " << n);
    dlcore::ThreadConfig all = dlcore::configure_threads(n);
    CHECK(all.requested == n);
    CHECK(all.torch_threads >= 1);
    CHECK(at::get_num_threads() == all.torch_threads);
    CHECK(all.pool_threads == dlcore::pool_threads());
    CHECK(all.pool_threads >= 1);
    CHECK(all.hardware_concurrency >= 0);
    if (all.hardware_concurrency > 0) {
      CHECK(all.torch_threads == all.hardware_concurrency);
    }
  }
  at::set_num_threads(before);
}

TEST_CASE(
    "configure_threads keeps OpenBLAS at one thread and says so", "[threads]") {
  const int before = at::get_num_threads();
  dlcore::ThreadConfig t = dlcore::configure_threads(2);
  const char* env = std::getenv("OPENBLAS_NUM_THREADS");
  REQUIRE(env != nullptr);
  CHECK(std::string(env) == "1");
  if (t.openblas_found) {
    CHECK(t.openblas_threads == 1);
    CHECK_THAT(t.describe(), Catch::Contains("OpenBLAS 1"));
  } else {
    CHECK(t.openblas_threads == -1);
    CHECK_THAT(t.describe(), Catch::Contains("OpenBLAS not loaded"));
  }
  CHECK_THAT(t.describe(), Catch::StartsWith("torch threads 2 (of "));
  at::set_num_threads(before);
}

TEST_CASE(
    "configure_threads reports OMP_WAIT_POLICY as the environment has it",
    "[threads]") {
  const int before = at::get_num_threads();
  {
    ScopedEnv policy("OMP_WAIT_POLICY", "ACTIVE");
    dlcore::ThreadConfig t = dlcore::configure_threads(1);
    CHECK(t.omp_wait_policy == "ACTIVE");
    CHECK_THAT(t.describe(), Catch::EndsWith(", OMP_WAIT_POLICY ACTIVE"));
  }
  {
    ScopedEnv policy("OMP_WAIT_POLICY", "PASSIVE");
    dlcore::ThreadConfig t = dlcore::configure_threads(1);
    CHECK(t.omp_wait_policy == "PASSIVE");
    CHECK_THAT(t.describe(), Catch::EndsWith(", OMP_WAIT_POLICY PASSIVE"));
  }
  {
    ScopedEnv policy("OMP_WAIT_POLICY", nullptr);
    dlcore::ThreadConfig t = dlcore::configure_threads(1);
    CHECK(t.omp_wait_policy.empty());
    CHECK_THAT(t.describe(), Catch::EndsWith(", OMP_WAIT_POLICY unset"));
  }
  at::set_num_threads(before);
}

TEST_CASE(
    "configure_allocator raises glibc's thresholds and exports them",
    "[threads]") {
  const dlcore::AllocatorConfig a =
      dlcore::configure_allocator(int64_t{32} << 20, int64_t{128} << 20);
  CHECK(a.mmap_threshold == int64_t{32} << 20);
  CHECK(a.trim_threshold == int64_t{128} << 20);
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
  CHECK(a.applied);
  CHECK(std::string(std::getenv("MALLOC_MMAP_THRESHOLD_")) == "33554432");
  CHECK(std::string(std::getenv("MALLOC_TRIM_THRESHOLD_")) == "134217728");
  CHECK(a.describe() == "malloc: mmap threshold 32 MB, trim threshold 128 MB");
#else
  // Another allocator (AddressSanitizer's replaces glibc's) refuses mallopt:
  // reported, not applied.
  CHECK_FALSE(a.applied);
  CHECK_THAT(a.describe(), Catch::StartsWith("malloc: defaults"));
#endif
  CHECK_THROWS_WITH(
      dlcore::configure_allocator(int64_t{64} << 20),
      Catch::Contains("configure_allocator: expected 0 <= mmap_threshold <= "
                      "33554432 (32 MB), but got 67108864"));
  CHECK_THROWS_WITH(
      dlcore::configure_allocator(0, int64_t{1} << 40),
      Catch::Contains("expected 0 <= trim_threshold <= 2147483647, but got "
                      "1099511627776"));
  // Back to the defaults of this header for the rest of the test run.
  dlcore::configure_allocator();
}

namespace {

long thread_id() {
  return static_cast<long>(::syscall(SYS_gettid));
}

/// The scheduler state letter of one of this process's threads ('R'
/// running, 'S' sleeping, ...), or '?' when it is gone.
char thread_state(long tid) {
  std::ifstream stat("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), {});
  const auto close = text.rfind(')');
  return close == std::string::npos || close + 2 >= text.size()
             ? '?'
             : text[close + 2];
}

/// Restores the pool's size on exit.
struct PoolSizeGuard {
  int saved = dlcore::pool_threads();
  ~PoolSizeGuard() {
    dlcore::set_pool_threads(saved);
  }
};

} // namespace

TEST_CASE(
    "the thread pool runs every task once, on at most pool_threads threads",
    "[threads]") {
  PoolSizeGuard guard;
  for (int size : {1, 2, 3, 8}) {
    dlcore::set_pool_threads(size);
    CHECK(dlcore::pool_threads() == size);
    for (int64_t n : {1, 2, 5, 64}) {
      INFO("pool " << size << ", tasks " << n);
      std::vector<int> runs(static_cast<size_t>(n), 0);
      std::mutex mutex;
      std::set<std::thread::id> threads;
      dlcore::detail::run_tasks(n, [&](int64_t t) {
        ++runs[static_cast<size_t>(t)];
        std::lock_guard<std::mutex> lock(mutex);
        threads.insert(std::this_thread::get_id());
      });
      CHECK(
          std::all_of(runs.begin(), runs.end(), [](int r) { return r == 1; }));
      CHECK(static_cast<int64_t>(threads.size()) <= std::min<int64_t>(n, size));
      if (size == 1) {
        CHECK(*threads.begin() == std::this_thread::get_id());
      }
    }
  }
  dlcore::detail::run_tasks(0, [](int64_t) { FAIL("no task to run"); });
}

TEST_CASE(
    "the thread pool rethrows the first error in task order after all ran",
    "[threads]") {
  PoolSizeGuard guard;
  dlcore::set_pool_threads(4);
  std::atomic<int> done{0};
  try {
    dlcore::detail::run_tasks(16, [&](int64_t t) {
      ++done;
      TORCH_CHECK(t != 5 && t != 11, "task ", t, " failed");
    });
    FAIL("no error was thrown");
  } catch (const c10::Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("task 5 failed"));
  }
  CHECK(done == 16);
}

TEST_CASE("nested pool calls finish, whatever the pool's size", "[threads]") {
  PoolSizeGuard guard;
  for (int size : {1, 2, 4}) {
    INFO("pool " << size);
    dlcore::set_pool_threads(size);
    std::vector<std::atomic<int>> cells(8 * 8);
    dlcore::detail::run_tasks(8, [&](int64_t outer) {
      dlcore::detail::run_tasks(8, [&](int64_t inner) {
        ++cells[static_cast<size_t>(outer * 8 + inner)];
      });
    });
    CHECK(std::all_of(
        cells.begin(), cells.end(), [](const auto& c) { return c == 1; }));
  }
}

TEST_CASE("the thread pool's idle workers sleep", "[threads]") {
  PoolSizeGuard guard;
  dlcore::set_pool_threads(4);
  std::mutex mutex;
  std::set<long> tids;
  const long caller = thread_id();
  dlcore::detail::run_tasks(64, [&](int64_t) {
    // Long enough for the workers to wake and take tasks.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::lock_guard<std::mutex> lock(mutex);
    tids.insert(thread_id());
  });
  tids.erase(caller);
  CHECK(!tids.empty());
  // A worker leaves its last task and goes back to its condition variable;
  // one that spun would be seen running ('R') every time.
  for (long tid : tids) {
    INFO("worker thread " << tid);
    char state = 'R';
    for (int tries = 0; tries < 200 && state == 'R'; ++tries) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      state = thread_state(tid);
    }
    // Sleeping, or already gone (an idle worker leaves after a while).
    CHECK((state == 'S' || state == '?'));
  }
}

TEST_CASE(
    "pool workers run LibTorch with one thread and change no global count",
    "[threads]") {
  PoolSizeGuard guard;
  const int saved = at::get_num_threads();
  at::set_num_threads(2);
  dlcore::set_pool_threads(4);
  std::vector<int> seen(16, -1);
  std::vector<bool> on_caller(16, false);
  const auto caller = std::this_thread::get_id();
  dlcore::detail::run_tasks(16, [&](int64_t t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    seen[static_cast<size_t>(t)] = at::get_num_threads();
    on_caller[static_cast<size_t>(t)] = std::this_thread::get_id() == caller;
  });
  for (size_t t = 0; t < seen.size(); ++t) {
    INFO("task " << t << (on_caller[t] ? " (caller)" : " (worker)"));
    CHECK(seen[t] == (on_caller[t] ? 2 : 1));
  }
  // The caller, and a thread started afterwards, still see LibTorch's count.
  CHECK(at::get_num_threads() == 2);
  int fresh = 0;
  std::thread([&] { fresh = at::get_num_threads(); }).join();
  CHECK(fresh == 2);
  at::set_num_threads(saved);
}

TEST_CASE("a forked child gets a working pool of its own", "[threads]") {
  PoolSizeGuard guard;
  dlcore::set_pool_threads(4);
  std::atomic<int> parent_sum{0};
  dlcore::detail::run_tasks(32, [&](int64_t t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    parent_sum += static_cast<int>(t);
  });
  REQUIRE(parent_sum == 31 * 32 / 2);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::alarm(60); // a hang ends the child with SIGALRM
    std::atomic<int> sum{0};
    dlcore::detail::run_tasks(32, [&](int64_t t) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      sum += static_cast<int>(t);
    });
    ::_exit(sum == 31 * 32 / 2 && dlcore::pool_threads() == 4 ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("idle workers leave, and later calls start new ones", "[threads]") {
  PoolSizeGuard guard;
  dlcore::set_pool_threads(3);
  auto& pool = dlcore::detail::ThreadPool::instance();
  dlcore::detail::run_tasks(32, [](int64_t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  });
  CHECK(pool.started_workers() >= 1);
  for (int tries = 0; tries < 100 && pool.started_workers() > 0; ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(pool.started_workers() == 0);
  std::atomic<int> done{0};
  dlcore::detail::run_tasks(16, [&](int64_t) { ++done; });
  CHECK(done == 16);
}
