#pragma once

// Atomic file writes: a temporary file beside the target, synced, then
// renamed over it. POSIX calls only (see detail/fs.h).

#include <dlcore/detail/fs.h>

#include <c10/util/Exception.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
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

/// The prefix of `target`'s temporary files: ".<name>.tmp.".
inline std::string temp_prefix(const std::string& target) {
  return "." + path_filename(target) + ".tmp.";
}

/// A fresh, unique temporary file next to `target` (same folder, so that the
/// final rename is atomic), named ".<name>.tmp.<pid>.XXXXXX": returns its
/// path and an open descriptor.
inline std::pair<std::string, int> make_temp_next_to(
    const std::string& target, const std::string& owner) {
  const std::string dir = path_parent(target);
  std::string pattern = dir + "/" + temp_prefix(target) +
                        std::to_string(static_cast<long long>(::getpid())) +
                        ".XXXXXX";
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

/// Removes the temporary files that earlier saves of `target` left behind
/// when they were killed: those named ".<name>.tmp.<pid>.*" whose process no
/// longer exists on this machine, and those of the older ".<name>.tmp.*"
/// form, without a process id, that are more than a day old. A temporary
/// file of a save still running is left alone. Best effort: a file that
/// cannot be removed stays.
inline void remove_stale_temps(const std::string& target) {
  const std::string dir = path_parent(target);
  const std::string prefix = temp_prefix(target);
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return;
  }
  std::vector<std::string> stale;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.compare(0, prefix.size(), prefix) != 0) {
      continue;
    }
    const std::string rest = name.substr(prefix.size());
    const std::size_t dot = rest.find('.');
    const std::string pid_text = rest.substr(0, dot);
    const bool has_pid =
        dot != std::string::npos && !pid_text.empty() && pid_text.size() <= 9 &&
        pid_text.find_first_not_of("0123456789") == std::string::npos;
    const std::string full = dir + "/" + name;
    if (has_pid) {
      const long long pid = std::atoll(pid_text.c_str());
      if (pid > 0 && pid != static_cast<long long>(::getpid()) &&
          ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
        stale.push_back(full);
      }
    } else {
      struct stat st {};
      if (::lstat(full.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
          std::difftime(std::time(nullptr), st.st_mtime) > 24 * 3600.0) {
        stale.push_back(full);
      }
    }
  }
  ::closedir(d);
  for (const auto& f : stale) {
    ::unlink(f.c_str());
  }
}

/// Writes the `size` bytes at `data` to `path` atomically: a temporary file in
/// the same folder, flushed and synced, then renamed over `path`. Parent
/// folders are created, and temporary files of earlier saves of `path` that
/// were killed are removed first (`remove_stale_temps`). On any failure the
/// temporary file is removed, `path` is left as it was, and a `c10::Error`
/// names `owner`, the path and the reason.
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
  remove_stale_temps(path);
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
