#pragma once

// Atomic file writes: a temporary file beside the target, synced, then
// renamed over it. POSIX calls only (see detail/fs.h).

#include <dlcore/detail/fs.h>

#include <c10/util/Exception.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace dlcore {
namespace detail {

/// Removes a temporary file on scope exit unless released.
struct TempFileGuard {
  std::string path;
  bool active = true;
  ~TempFileGuard() {
    if (active && !path.empty()) {
      ::unlink(path.c_str());
    }
  }
};

/// A fresh, unique temporary file next to `target` (same folder, so that the
/// final rename is atomic): returns its path and an open descriptor.
inline std::pair<std::string, int> make_temp_next_to(
    const std::string& target, const std::string& owner) {
  const std::string dir = path_parent(target);
  std::string pattern = dir + "/." + path_filename(target) + ".tmp.XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  int fd = ::mkstemp(buffer.data());
  TORCH_CHECK(
      fd >= 0,
      owner,
      ": cannot create a temporary file in '",
      dir,
      "' to write '",
      target,
      "': ",
      std::strerror(errno));
  return {std::string(buffer.data()), fd};
}

/// Writes the `size` bytes at `data` to `path` atomically: a temporary file in
/// the same folder, flushed and synced, then renamed over `path`. Parent
/// folders are created. On any failure the temporary file is removed, `path` is
/// left as it was, and a `c10::Error` names `owner`, the path and the reason.
inline void write_file_atomic(
    const std::string& path,
    const char* data,
    std::size_t size,
    const std::string& owner) {
  TORCH_CHECK(!path.empty(), owner, ": expected a file path, but got ''");
  const std::string name = path_filename(path);
  TORCH_CHECK(
      !name.empty() && name != "." && name != "..",
      owner,
      ": expected a file path, but got the folder '",
      path,
      "'");
  make_directories(path_parent(path), owner);
  auto [temp, fd] = make_temp_next_to(path, owner);
  TempFileGuard guard{temp};
  std::size_t left = size;
  while (left > 0) {
    ssize_t n = ::write(fd, data, left);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      TORCH_CHECK(
          false, owner, ": cannot write '", path, "': ", std::strerror(err));
    }
    data += n;
    left -= static_cast<std::size_t>(n);
  }
  // mkstemp creates 0600; results are meant to be read by others.
  ::fchmod(fd, 0644);
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int err = errno;
    TORCH_CHECK(
        false, owner, ": cannot write '", path, "': ", std::strerror(err));
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    int err = errno;
    TORCH_CHECK(
        false,
        owner,
        ": cannot rename the temporary file to '",
        path,
        "': ",
        std::strerror(err));
  }
  guard.active = false;
}

/// `write_file_atomic` for the bytes of a string.
inline void write_file_atomic(
    const std::string& path,
    const std::string& contents,
    const std::string& owner) {
  write_file_atomic(path, contents.data(), contents.size(), owner);
}

} // namespace detail
} // namespace dlcore
