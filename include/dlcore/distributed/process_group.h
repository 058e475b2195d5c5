#pragma once

// LibTorch's c10d Gloo process group, set up the way torchrun does it.
// LibTorch's binaries hold c10d and Gloo, but this header also needs Gloo's
// own headers: Debian's libtorch-dev pairs with libgloo-dev, while the
// official LibTorch (zip or pip wheel) ships none. Without them
// (DLCORE_HAS_GLOO is 0, see detail/torch_compat.h) the header still
// compiles, and a call to one of its init_process_group functions fails to
// compile with a message that says what to do instead. Selection and merging
// (distributed/selection.h, distributed/collectives.h) need no Gloo headers
// and take any c10d group the caller has.

#include <dlcore/detail/torch_compat.h>
#include <dlcore/distributed/detail/env.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/arg.h>

#if DLCORE_HAS_GLOO
// torch's CMake target defines USE_C10D_GLOO; defined here too for
// consumers that do not use it.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace dlcore {

/// Options of the rendezvous and of the Gloo process group.
///
/// Example:
///   auto pg = dlcore::init_process_group_from_env(
///       dlcore::ProcessGroupOptions().timeout(std::chrono::seconds(30)));
struct ProcessGroupOptions {
  /// Address the Gloo transport binds to. Empty: the interface named by
  /// $GLOO_SOCKET_IFNAME when set, else 127.0.0.1 when the master address is
  /// local (localhost, 127.x), else this machine's host name. Default: ""
  TORCH_ARG(std::string, hostname) = "";
  /// Timeout of the rendezvous and of every collective. Default: 300 s
  TORCH_ARG(std::chrono::milliseconds, timeout) = std::chrono::seconds(300);

#if DLCORE_HAS_GLOO
 public:
  /// The Gloo device these options select, for a master at `master_addr`.
  std::shared_ptr<::gloo::transport::Device> device(
      const std::string& master_addr) const {
    if (!hostname_.empty()) {
      return c10d::ProcessGroupGloo::createDeviceForHostname(hostname_);
    }
    const std::string ifname = detail::dist_getenv("GLOO_SOCKET_IFNAME");
    if (!ifname.empty()) {
      return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
    }
    if (master_addr.empty() || detail::dist_is_loopback(master_addr)) {
      return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
    }
    return c10d::ProcessGroupGloo::createDefaultDevice();
  }
#endif
};

#if DLCORE_HAS_GLOO
/// A Gloo process group of `world_size` ranks over an existing store.
/// The store must outlive nothing: the group keeps a reference to it.
inline c10::intrusive_ptr<c10d::ProcessGroupGloo> init_process_group(
    const c10::intrusive_ptr<c10d::Store>& store,
    int64_t rank,
    int64_t world_size,
    const ProcessGroupOptions& options = {},
    const std::string& master_addr = "") {
  TORCH_CHECK(
      world_size >= 1,
      "init_process_group: expected world_size >= 1, but got ",
      world_size);
  TORCH_CHECK(
      rank >= 0 && rank < world_size,
      "init_process_group: expected rank in [0, ",
      world_size,
      "), but got ",
      rank);
  store->setTimeout(options.timeout());
  auto opts = c10d::ProcessGroupGloo::Options::create(options.timeout());
  opts->devices.push_back(options.device(master_addr));
  return c10::make_intrusive<c10d::ProcessGroupGloo>(
      store, static_cast<int>(rank), static_cast<int>(world_size), opts);
}

/// Rendezvous through a file every rank can reach (a c10d::FileStore).
/// Use a fresh path per job: the file holds the store's state.
///
/// Example:
///   auto pg = dlcore::init_process_group_file("/tmp/job42.store", rank, 3);
inline c10::intrusive_ptr<c10d::ProcessGroupGloo> init_process_group_file(
    const std::string& path,
    int64_t rank,
    int64_t world_size,
    const ProcessGroupOptions& options = {}) {
  TORCH_CHECK(!path.empty(), "init_process_group_file: expected a store path");
  TORCH_CHECK(
      world_size >= 1,
      "init_process_group_file: expected world_size >= 1, but got ",
      world_size);
  auto store =
      c10::make_intrusive<c10d::FileStore>(path, static_cast<int>(world_size));
  return init_process_group(store, rank, world_size, options);
}

/// Rendezvous through a c10d::TCPStore served by rank 0 at
/// `master_addr:master_port`.
inline c10::intrusive_ptr<c10d::ProcessGroupGloo> init_process_group_tcp(
    const std::string& master_addr,
    int64_t master_port,
    int64_t rank,
    int64_t world_size,
    const ProcessGroupOptions& options = {}) {
  TORCH_CHECK(
      master_port > 0 && master_port < 65536,
      "init_process_group_tcp: expected a port in [1, 65535], but got ",
      master_port);
  TORCH_CHECK(
      world_size >= 1 && rank >= 0 && rank < world_size,
      "init_process_group_tcp: expected 0 <= rank < world_size, but got rank ",
      rank,
      " and world_size ",
      world_size);
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(master_port);
  so.isServer = rank == 0;
  so.numWorkers = static_cast<std::size_t>(world_size);
  so.waitWorkers = true;
  so.timeout = options.timeout();
  auto store = c10::make_intrusive<c10d::TCPStore>(master_addr, so);
  return init_process_group(store, rank, world_size, options, master_addr);
}

/// Rendezvous from the environment variables torchrun (and
/// scripts/launch_local.sh) set: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
/// over a TCPStore; or, when DLCORE_STORE_FILE is set, a FileStore at that
/// path (then MASTER_ADDR and MASTER_PORT are not needed).
///
/// Differences from PyTorch (Python): `torch.distributed.init_process_group`
/// also reads `init_method` URLs; here the file store is chosen by
/// DLCORE_STORE_FILE. A missing or malformed variable is an error naming it.
inline c10::intrusive_ptr<c10d::ProcessGroupGloo> init_process_group_from_env(
    const ProcessGroupOptions& options = {}) {
  const int64_t rank = detail::dist_env_int("RANK");
  const int64_t world = detail::dist_env_int("WORLD_SIZE");
  const std::string file = detail::dist_getenv("DLCORE_STORE_FILE");
  if (!file.empty()) {
    return init_process_group_file(file, rank, world, options);
  }
  const std::string addr = detail::dist_getenv("MASTER_ADDR");
  TORCH_CHECK(
      !addr.empty(),
      "init_process_group_from_env: expected MASTER_ADDR (or "
      "DLCORE_STORE_FILE) to be set");
  const int64_t port = detail::dist_env_int("MASTER_PORT");
  return init_process_group_tcp(addr, port, rank, world, options);
}

#else // !DLCORE_HAS_GLOO

#define DLCORE_NO_GLOO_MESSAGE                                               \
  "dlcore/distributed/process_group.h: creating a Gloo process group needs " \
  "Gloo's headers, which this LibTorch does not ship (the official "         \
  "LibTorch zip and pip wheel have none). Either put the headers of the "    \
  "Gloo that your LibTorch was built with on the include path (for "         \
  "Debian's libtorch-dev: apt-get install libgloo-dev), or create the "      \
  "process group yourself and pass it to dlcore::merge_across_ranks, which " \
  "takes any c10d::ProcessGroup or c10d::Backend."

/// Unavailable without Gloo's headers; see DLCORE_NO_GLOO_MESSAGE.
template <typename... Args>
c10::intrusive_ptr<c10d::ProcessGroup> init_process_group(Args&&...) {
  static_assert(detail::always_false<Args...>::value, DLCORE_NO_GLOO_MESSAGE);
  return {};
}

/// Unavailable without Gloo's headers; see DLCORE_NO_GLOO_MESSAGE.
template <typename... Args>
c10::intrusive_ptr<c10d::ProcessGroup> init_process_group_file(Args&&...) {
  static_assert(detail::always_false<Args...>::value, DLCORE_NO_GLOO_MESSAGE);
  return {};
}

/// Unavailable without Gloo's headers; see DLCORE_NO_GLOO_MESSAGE.
template <typename... Args>
c10::intrusive_ptr<c10d::ProcessGroup> init_process_group_tcp(Args&&...) {
  static_assert(detail::always_false<Args...>::value, DLCORE_NO_GLOO_MESSAGE);
  return {};
}

/// Unavailable without Gloo's headers; see DLCORE_NO_GLOO_MESSAGE.
template <typename... Args>
c10::intrusive_ptr<c10d::ProcessGroup> init_process_group_from_env(Args&&...) {
  static_assert(detail::always_false<Args...>::value, DLCORE_NO_GLOO_MESSAGE);
  return {};
}

#endif // DLCORE_HAS_GLOO

} // namespace dlcore
