#pragma once

#include <c10/util/Exception.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
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
    const std::filesystem::path& target, const std::string& owner) {
  std::filesystem::path dir = target.parent_path();
  std::string pattern =
      (dir / ("." + target.filename().string() + ".tmp.XXXXXX")).string();
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  int fd = ::mkstemp(buffer.data());
  TORCH_CHECK(
      fd >= 0,
      owner,
      ": cannot create a temporary file in '",
      dir.string(),
      "' to write '",
      target.string(),
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
  std::filesystem::path target(path);
  if (target.filename().empty()) {
    TORCH_CHECK(
        false,
        owner,
        ": expected a file path, but got the folder '",
        path,
        "'");
  }
  if (target.parent_path().empty()) {
    target = std::filesystem::path(".") / target;
  }
  std::error_code ec;
  std::filesystem::create_directories(target.parent_path(), ec);
  TORCH_CHECK(
      !ec,
      owner,
      ": cannot create the folder '",
      target.parent_path().string(),
      "' for '",
      path,
      "': ",
      ec.message());
  auto [temp, fd] = make_temp_next_to(target, owner);
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
  if (std::rename(temp.c_str(), target.c_str()) != 0) {
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
