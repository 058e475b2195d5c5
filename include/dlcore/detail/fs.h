#pragma once

// File-system helpers on POSIX calls. The library's headers never call
// std::filesystem: the official LibTorch binaries export their own,
// statically linked copy of its symbols (pytorch/pytorch#133437), and a
// program that links libtorch before libstdc++ then crashes inside them.

#include <c10/util/Exception.h>

#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

namespace dlcore {
namespace detail {

/// The folder part of `path` ("a/b/c.csv" -> "a/b", "c.csv" -> ".",
/// "/c.csv" -> "/"), ignoring trailing slashes.
inline std::string path_parent(const std::string& path) {
  std::size_t end = path.size();
  while (end > 1 && path[end - 1] == '/') {
    --end;
  }
  const std::size_t slash = path.rfind('/', end == 0 ? 0 : end - 1);
  if (slash == std::string::npos) {
    return ".";
  }
  if (slash == 0) {
    return "/";
  }
  return path.substr(0, slash);
}

/// The last component of `path` ("a/b/c.csv" -> "c.csv"); "" when `path`
/// ends in a slash (it names a folder).
inline std::string path_filename(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

/// Whether `path` names an existing regular file (following symlinks).
inline bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

/// Whether `path` names an existing folder (following symlinks).
inline bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

/// The size of the regular file at `path`, or -1 when it is not one.
inline int64_t regular_file_size(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return -1;
  }
  return static_cast<int64_t>(st.st_size);
}

/// Creates `dir` and its missing parents (like `mkdir -p`); a folder that
/// exists already is fine. A `c10::Error` names `owner`, the folder and the
/// reason.
inline void make_directories(const std::string& dir, const std::string& owner) {
  if (dir.empty() || is_directory(dir)) {
    return;
  }
  std::string partial;
  std::size_t pos = 0;
  while (pos <= dir.size()) {
    std::size_t next = dir.find('/', pos);
    if (next == std::string::npos) {
      next = dir.size();
    }
    partial = dir.substr(0, next);
    pos = next + 1;
    if (partial.empty() || partial == "." || partial == "..") {
      continue;
    }
    if (::mkdir(partial.c_str(), 0777) != 0 && errno != EEXIST) {
      const int err = errno;
      TORCH_CHECK(
          false,
          owner,
          ": cannot create the folder '",
          partial,
          "' (for '",
          dir,
          "'): ",
          std::strerror(err));
    }
  }
  TORCH_CHECK(
      is_directory(dir),
      owner,
      ": cannot create the folder '",
      dir,
      "': a file of that name is in the way");
}

} // namespace detail
} // namespace dlcore
