#pragma once

// Internals of dlcore/distributed/: environment variables of a rendezvous.

#include <c10/util/Exception.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace dlcore {
namespace detail {

/// The variable's value, or "" when unset.
inline std::string dist_getenv(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

/// The variable as a non-negative integer; an error naming it otherwise.
inline int64_t dist_env_int(const char* name) {
  const std::string v = dist_getenv(name);
  TORCH_CHECK(
      !v.empty(),
      "init_process_group_from_env: expected the environment variable ",
      name,
      " to be set");
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  TORCH_CHECK(
      errno == 0 && end != v.c_str() && *end == '\0' && x >= 0,
      "init_process_group_from_env: expected ",
      name,
      " to be a non-negative integer, but got '",
      v,
      "'");
  return static_cast<int64_t>(x);
}

/// Whether `addr` names this machine's loopback interface.
inline bool dist_is_loopback(const std::string& addr) {
  return addr == "localhost" || addr == "::1" || addr.rfind("127.", 0) == 0;
}

} // namespace detail
} // namespace dlcore
