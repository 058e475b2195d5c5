#pragma once

// Running a fixed set of independent tasks on threads without ever
// terminating the process: a thread that cannot be started (the system is
// out of threads or memory) leaves its task to the calling thread, and
// every started thread is joined, also while an exception unwinds.

#include <cstdint>
#include <exception>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

namespace dlcore {
namespace detail {

/// Runs `task(t)` for every t in [0, n): task 0 on the calling thread, the
/// others on their own threads. A thread that fails to start (std::thread
/// throws `std::system_error`, or allocation fails) is not an error: its
/// task, and those after it, run on the calling thread instead, so the
/// result is the same whatever the system allows. Every started thread is
/// joined before this returns or throws. The first exception thrown by a
/// task (in task order) is rethrown after all tasks finished.
template <typename Task>
void run_tasks(int64_t n, const Task& task) {
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  auto guarded = [&](int64_t t) {
    try {
      task(t);
    } catch (...) {
      errors[static_cast<size_t>(t)] = std::current_exception();
    }
  };
  struct Joiner {
    std::vector<std::thread> threads;
    ~Joiner() {
      for (auto& th : threads) {
        if (th.joinable()) {
          th.join();
        }
      }
    }
  } pool;
  int64_t started_up_to = 1;
  try {
    pool.threads.reserve(static_cast<size_t>(n > 1 ? n - 1 : 0));
    for (int64_t t = 1; t < n; ++t) {
      pool.threads.emplace_back(guarded, t);
      started_up_to = t + 1;
    }
  } catch (const std::system_error&) {
    // Out of threads: the remaining tasks run below.
  } catch (const std::bad_alloc&) {
    // Out of memory for a thread's stack or bookkeeping: likewise.
  }
  if (n >= 1) {
    guarded(0);
  }
  for (int64_t t = started_up_to; t < n; ++t) {
    guarded(t);
  }
  for (auto& th : pool.threads) {
    th.join();
  }
  for (auto& e : errors) {
    if (e) {
      std::rethrow_exception(e);
    }
  }
}

} // namespace detail
} // namespace dlcore
