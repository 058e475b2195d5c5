#include <dlcore/train/allocator.h>
#include <dlcore/train/threads.h>

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

  // n <= 0: every core, and never fewer than one thread.
  for (int n : {0, -3}) {
    INFO("requested " << n);
    dlcore::ThreadConfig all = dlcore::configure_threads(n);
    CHECK(all.requested == n);
    CHECK(all.torch_threads >= 1);
    CHECK(at::get_num_threads() == all.torch_threads);
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
