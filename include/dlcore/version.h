#pragma once

/// dlcore's version. This header is the single source of truth: CMake reads
/// the three numbers below when it configures the package.
#define DLCORE_VERSION_MAJOR 0
#define DLCORE_VERSION_MINOR 1
#define DLCORE_VERSION_PATCH 0

#define DLCORE_STRINGIFY_IMPL(x) #x
#define DLCORE_STRINGIFY(x) DLCORE_STRINGIFY_IMPL(x)
#define DLCORE_VERSION_STRING                                      \
  DLCORE_STRINGIFY(DLCORE_VERSION_MAJOR)                           \
  "." DLCORE_STRINGIFY(DLCORE_VERSION_MINOR) "." DLCORE_STRINGIFY( \
      DLCORE_VERSION_PATCH)

namespace dlcore {

/// The version as "major.minor.patch".
inline constexpr const char* version() {
  return DLCORE_VERSION_STRING;
}

} // namespace dlcore
