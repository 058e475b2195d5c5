#pragma once

#include <dlcore/detail/thread_pool.h>

#include <ATen/Parallel.h>

#include <dlfcn.h>

#include <cstdlib>
#include <string>
#include <thread>

namespace dlcore {

/// What `configure_threads` did, so that a program can log it.
struct ThreadConfig {
  /// The value passed in (<= 0 means "all cores").
  int requested = 0;
  /// `std::thread::hardware_concurrency()` (0 when unknown).
  int hardware_concurrency = 0;
  /// LibTorch's intra-op thread count after the call
  /// (`at::get_num_threads()`).
  int torch_threads = 0;
  /// Threads of dlcore's own pool after the call (`pool_threads()`).
  int pool_threads = 0;
  /// True when OpenBLAS was found in the process and set to one thread.
  bool openblas_found = false;
  /// OpenBLAS's thread count after the call (-1 when OpenBLAS is not loaded).
  int openblas_threads = -1;
  /// `$OMP_WAIT_POLICY` as the process started ("" when unset). libgomp
  /// reads it only at load time; with more than one thread on a busy machine,
  /// PASSIVE avoids idle threads spinning against preempted partners.
  std::string omp_wait_policy;

  /// One line for a log, e.g. "torch threads 2 (of 2 cores), OpenBLAS 1".
  std::string describe() const {
    std::string s = "torch threads " + std::to_string(torch_threads) + " (of " +
                    std::to_string(hardware_concurrency) + " cores), OpenBLAS ";
    s += openblas_found ? std::to_string(openblas_threads) : "not loaded";
    s += ", OMP_WAIT_POLICY " +
         (omp_wait_policy.empty() ? std::string("unset") : omp_wait_policy);
    return s;
  }
};

/// Sets LibTorch's intra-op thread count and dlcore's own thread pool
/// (`set_pool_threads`) to the same number, and keeps OpenBLAS
/// single-threaded.
///
/// `num_threads <= 0` means every core (`std::thread::hardware_concurrency`,
/// or LibTorch's current count when that is unknown). LibTorch's own thread
/// pool then parallelises convolutions and GEMMs; OpenBLAS, when LibTorch
/// calls into it, would start its own pool on the same cores and
/// oversubscribe them, so it is set to one thread through
/// `openblas_set_num_threads` (looked up with `dlsym`, so no link-time
/// dependency), and `OPENBLAS_NUM_THREADS=1` is exported for child processes.
///
/// Example:
///   dlcore::ThreadConfig t = dlcore::configure_threads(0);
///   std::cout << t.describe() << "\n";
///
/// On a machine shared with other work, more than one OpenMP thread can be
/// much slower than one (an idle thread spins while its partner is
/// preempted; see docs/training.md): there, pass 1, or start the process with
/// `OMP_WAIT_POLICY=PASSIVE`, which libgomp reads before `main`.
///
/// Differences from PyTorch (Python): `torch.set_num_threads` alone leaves
/// OpenBLAS's pool as the environment configured it.
inline ThreadConfig configure_threads(int num_threads) {
  ThreadConfig config;
  config.requested = num_threads;
  config.hardware_concurrency =
      static_cast<int>(std::thread::hardware_concurrency());
  int n = num_threads;
  if (n <= 0) {
    n = config.hardware_concurrency > 0 ? config.hardware_concurrency
                                        : at::get_num_threads();
  }
  at::set_num_threads(n);
  config.torch_threads = at::get_num_threads();
  set_pool_threads(n);
  config.pool_threads = pool_threads();
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  config.omp_wait_policy = policy != nullptr ? policy : "";

  ::setenv("OPENBLAS_NUM_THREADS", "1", /*overwrite=*/1);
  using SetThreads = void (*)(int);
  using GetThreads = int (*)();
  void* set_sym = ::dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
  if (set_sym != nullptr) {
    reinterpret_cast<SetThreads>(set_sym)(1);
    config.openblas_found = true;
    void* get_sym = ::dlsym(RTLD_DEFAULT, "openblas_get_num_threads");
    config.openblas_threads =
        get_sym != nullptr ? reinterpret_cast<GetThreads>(get_sym)() : 1;
  }
  return config;
}

} // namespace dlcore
