#pragma once

/// \file
/// The library's one thread pool: every piece of dlcore that runs work on
/// several threads (the selector's ingestion and result, `train_epoch` and
/// `evaluate` with `data_parallel`) hands it to this pool. Its size is one
/// setting, `set_pool_threads` (which `configure_threads` also sets); idle
/// workers sleep on a condition variable.

#include <ATen/Parallel.h>

#include <dlfcn.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

namespace dlcore {
namespace detail {

/// A process-wide pool of worker threads that run indexed tasks.
///
/// `run(n, task)` runs `task(t)` for every t in [0, n) and returns when all
/// have finished. The calling thread takes part: it and the workers claim
/// tasks in index order from one counter, so a call never waits for a task
/// that nobody runs. That makes nested calls (a task that itself calls
/// `run`) and a pool smaller than `n - 1` safe: the caller finishes whatever
/// no worker took. Which thread runs which task does not matter to a caller
/// whose tasks write disjoint outputs; results do not depend on the pool's
/// size.
///
/// Workers are started on demand, up to the limit (`set_pool_threads`); each
/// runs LibTorch with one intra-op thread (OpenMP's per-thread setting; no
/// process-wide count is changed) and leaves after 250 ms without work. A
/// worker that cannot start
/// (`std::system_error`, or no memory for its stack) is not an error: the
/// tasks run on the threads that exist. Idle workers sleep on a condition
/// variable. At exit the workers are joined, before LibTorch's static
/// objects are destroyed; the pool object itself is never destroyed. A
/// forked child starts with a fresh pool of its own.
class ThreadPool {
 public:
  /// The pool.
  static ThreadPool& instance() {
    static std::once_flag once;
    std::call_once(once, [] {
      slot() = new ThreadPool();
      ::pthread_atfork(nullptr, nullptr, &ThreadPool::after_fork_in_child);
      std::atexit(&ThreadPool::shut_down_at_exit);
    });
    return *slot();
  }

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /// The most workers the pool keeps besides the calling thread.
  int max_workers() const {
    return max_workers_.load(std::memory_order_relaxed);
  }
  /// Sets the most workers the pool keeps; workers above the limit that
  /// already run stay asleep unless the limit grows again (they take no
  /// task: only `max_workers()` workers are woken per call).
  void set_max_workers(int n) {
    max_workers_.store(std::max(n, 0), std::memory_order_relaxed);
  }
  /// Workers started so far.
  int started_workers() {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<int>(threads_.size());
  }

  /// Runs `task(t)` for every t in [0, n) on the calling thread and at most
  /// min(n - 1, max_workers()) workers; returns when every task finished.
  /// The first exception, in task order, is rethrown after all tasks ran.
  void run(int64_t n, const std::function<void(int64_t)>& task) {
    if (n <= 0) {
      return;
    }
    const int helpers =
        static_cast<int>(std::min<int64_t>(n - 1, max_workers()));
    if (helpers <= 0) {
      run_inline(n, task);
      return;
    }
    auto job = std::make_shared<Job>(n, task, helpers);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      start_workers_locked(helpers);
      jobs_.push_back(job);
    }
    wake_.notify_all();
    work_on(*job);
    {
      std::unique_lock<std::mutex> lock(job->mutex);
      job->finished.wait(lock, [&] { return job->remaining == 0; });
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = std::find(jobs_.begin(), jobs_.end(), job);
      if (it != jobs_.end()) {
        jobs_.erase(it);
      }
    }
    for (auto& e : job->errors) {
      if (e) {
        std::rethrow_exception(e);
      }
    }
  }

 private:
  struct Job {
    Job(int64_t n_, const std::function<void(int64_t)>& task_, int helpers_)
        : n(n_),
          task(task_),
          helpers(helpers_),
          remaining(n_),
          errors(static_cast<size_t>(n_)) {}
    const int64_t n;
    const std::function<void(int64_t)>& task;
    // Workers that may still join this job (the caller always does).
    std::atomic<int> helpers;
    std::atomic<int64_t> next{0};
    std::mutex mutex;
    std::condition_variable finished;
    int64_t remaining; // guarded by mutex
    std::vector<std::exception_ptr> errors;
  };

  ThreadPool() {
    const int cores = static_cast<int>(std::thread::hardware_concurrency());
    max_workers_.store(cores > 1 ? cores - 1 : 0);
  }

  static ThreadPool*& slot() {
    static ThreadPool* pool = nullptr;
    return pool;
  }

  // At exit, before the static objects of LibTorch that the workers' tasks
  // used are destroyed (this handler was registered after they were built),
  // the workers finish what they run, leave, and are joined, so no worker
  // outlives the program's own threads. Later calls run on the caller.
  static void shut_down_at_exit() {
    ThreadPool* pool = slot();
    if (pool == nullptr) {
      return;
    }
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(pool->mutex_);
      pool->quit_ = true;
      pool->max_workers_.store(0);
      threads.swap(pool->threads_);
    }
    pool->wake_.notify_all();
    for (auto& t : threads) {
      if (t.get_id() == std::this_thread::get_id()) {
        t.detach(); // exit() called from a task on this worker
      } else if (t.joinable()) {
        t.join();
      }
    }
  }

  // A forked child has none of the parent's workers, and the pool's mutex
  // and condition variables still record them (glibc's broadcast then waits
  // for waiters that do not exist here). The child gets a fresh pool with
  // the same limit; the old one is never touched again.
  static void after_fork_in_child() {
    ThreadPool* old = slot();
    auto* fresh = new ThreadPool();
    fresh->max_workers_.store(old->max_workers_.load());
    slot() = fresh;
  }

  static void run_inline(int64_t n, const std::function<void(int64_t)>& task) {
    std::exception_ptr first;
    for (int64_t t = 0; t < n; ++t) {
      try {
        task(t);
      } catch (...) {
        if (!first) {
          first = std::current_exception();
        }
      }
    }
    if (first) {
      std::rethrow_exception(first);
    }
  }

  // Claims and runs tasks of `job` until none is left unclaimed.
  static void work_on(Job& job) {
    int64_t done = 0;
    while (true) {
      const int64_t t = job.next.fetch_add(1, std::memory_order_relaxed);
      if (t >= job.n) {
        break;
      }
      try {
        job.task(t);
      } catch (...) {
        job.errors[static_cast<size_t>(t)] = std::current_exception();
      }
      ++done;
    }
    if (done > 0) {
      std::lock_guard<std::mutex> lock(job.mutex);
      job.remaining -= done;
      if (job.remaining == 0) {
        job.finished.notify_all();
      }
    }
  }

  void start_workers_locked(int wanted) {
    while (static_cast<int>(threads_.size()) < wanted) {
      try {
        threads_.emplace_back([this] { worker_loop(); });
      } catch (const std::system_error&) {
        return; // out of threads: the tasks run on those that exist
      } catch (const std::bad_alloc&) {
        return; // no memory for a stack: likewise
      }
    }
  }

  void worker_loop() {
    limit_openmp_to_one_thread();
    while (true) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        const bool woken = wake_.wait_for(lock, kIdleExit, [&] {
          if (quit_) {
            return true;
          }
          for (auto& j : jobs_) {
            if (j->helpers.load(std::memory_order_relaxed) > 0 &&
                j->next.load(std::memory_order_relaxed) < j->n) {
              return true;
            }
          }
          return false;
        });
        if (quit_) {
          return;
        }
        if (!woken) {
          // Idle for kIdleExit: leave, so that a program between bursts of
          // parallel work holds no threads (a later call starts new ones).
          const auto self = std::this_thread::get_id();
          for (auto it = threads_.begin(); it != threads_.end(); ++it) {
            if (it->get_id() == self) {
              it->detach();
              threads_.erase(it);
              break;
            }
          }
          return;
        }
        for (auto& j : jobs_) {
          if (j->next.load(std::memory_order_relaxed) < j->n &&
              j->helpers.fetch_sub(1, std::memory_order_relaxed) > 0) {
            job = j;
            break;
          }
        }
      }
      if (job) {
        work_on(*job);
      }
    }
  }

  // Makes OpenMP regions started from this thread (LibTorch's intra-op
  // parallelism) use one thread, touching no process-wide setting:
  // `at::set_num_threads` would also change LibTorch's global count and its
  // pthreadpool's, which other threads read, and in a forked child it fails.
  // LibTorch first initialises this thread's count from its global one
  // (`at::get_num_threads`), then OpenMP's per-thread setting is lowered
  // through `omp_set_num_threads`, looked up at run time (no link-time
  // dependency on an OpenMP runtime). Never throws.
  static void limit_openmp_to_one_thread() noexcept {
    try {
      (void)at::get_num_threads();
    } catch (...) {
      // LibTorch's own initialisation failed (e.g. in a forked child): the
      // per-thread setting below still applies.
    }
    using SetThreads = void (*)(int);
    static const auto set_threads = reinterpret_cast<SetThreads>(
        ::dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
    if (set_threads != nullptr) {
      set_threads(1);
    }
  }

  // How long a worker waits for work before it leaves.
  static constexpr std::chrono::milliseconds kIdleExit{250};

  std::atomic<int> max_workers_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::thread> threads_; // joined at exit
  bool quit_ = false;                // guarded by mutex_
  std::deque<std::shared_ptr<Job>> jobs_;
};

/// Runs `task(t)` for every t in [0, n) on the library's thread pool (see
/// `ThreadPool::run`).
inline void run_tasks(int64_t n, const std::function<void(int64_t)>& task) {
  ThreadPool::instance().run(n, task);
}

} // namespace detail

/// Sets how many threads dlcore's own parallel work may use, the calling
/// thread included: the selector's ingestion, and `train_epoch`/`evaluate`
/// with `data_parallel`. Asking those for more threads than this still gives
/// the same result (their tasks share the threads there are). `n <= 0`
/// means every core. `configure_threads` sets it too. Default: every core.
inline void set_pool_threads(int n) {
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  const int threads = n > 0 ? n : std::max(cores, 1);
  detail::ThreadPool::instance().set_max_workers(threads - 1);
}

/// The threads dlcore's own parallel work may use, the calling thread
/// included (see `set_pool_threads`).
inline int pool_threads() {
  return detail::ThreadPool::instance().max_workers() + 1;
}

} // namespace dlcore
