#include <dlcore/train/threads.h>

#include <cstdlib>
#include <string>
#include <thread>

TEST_CASE("configure_threads sets LibTorch's thread count", "[threads]") {
  const int before = at::get_num_threads();
  dlcore::ThreadConfig one = dlcore::configure_threads(1);
  CHECK(one.requested == 1);
  CHECK(one.torch_threads == 1);
  CHECK(at::get_num_threads() == 1);

  dlcore::ThreadConfig all = dlcore::configure_threads(0);
  CHECK(all.requested == 0);
  const int hw = static_cast<int>(std::thread::hardware_concurrency());
  CHECK(all.hardware_concurrency == hw);
  if (hw > 0) {
    CHECK(all.torch_threads == hw);
  }
  CHECK(dlcore::configure_threads(-3).torch_threads == all.torch_threads);
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
  CHECK_THAT(t.describe(), Catch::StartsWith("torch threads 2"));
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  CHECK(t.omp_wait_policy == (policy != nullptr ? policy : ""));
  CHECK_THAT(t.describe(), Catch::Contains("OMP_WAIT_POLICY"));
  at::set_num_threads(before);
}
