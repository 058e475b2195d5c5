#pragma once

// Reading a file that is known to be a regular file, with POSIX calls only:
// FIFOs, devices, sockets and folders are refused before they are opened (an
// open FIFO would block the reader), and every read is checked against the
// file's size.

#include <c10/util/Exception.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

namespace dlcore {
namespace detail {

/// What `mode` is, in words, for error messages.
inline const char* regular_file_kind(mode_t mode) {
  if (S_ISDIR(mode)) {
    return "a folder";
  }
  if (S_ISFIFO(mode)) {
    return "a FIFO";
  }
  if (S_ISCHR(mode)) {
    return "a character device";
  }
  if (S_ISBLK(mode)) {
    return "a block device";
  }
  if (S_ISSOCK(mode)) {
    return "a socket";
  }
  return "not a regular file";
}

/// A regular file open for reading. The constructor `stat`s `path` and
/// refuses anything but a regular file before opening it; it then opens it
/// non-blocking (so that a FIFO swapped in between cannot block) and checks
/// the open descriptor again. Errors are `c10::Error`s naming `owner` and the
/// path.
class RegularFileReader {
 public:
  RegularFileReader(std::string path, std::string owner)
      : path_(std::move(path)), owner_(std::move(owner)) {
    struct stat before {};
    if (::stat(path_.c_str(), &before) != 0) {
      const int err = errno;
      TORCH_CHECK(
          false,
          owner_,
          ": expected a readable file, but cannot open '",
          path_,
          "': ",
          std::strerror(err));
    }
    TORCH_CHECK(
        S_ISREG(before.st_mode),
        owner_,
        ": expected a regular file, but '",
        path_,
        "' is ",
        regular_file_kind(before.st_mode));
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd_ < 0) {
      const int err = errno;
      TORCH_CHECK(
          false,
          owner_,
          ": expected a readable file, but cannot open '",
          path_,
          "': ",
          std::strerror(err));
    }
    struct stat after {};
    if (::fstat(fd_, &after) != 0 || !S_ISREG(after.st_mode)) {
      const int err = errno;
      ::close(fd_);
      fd_ = -1;
      TORCH_CHECK(
          false,
          owner_,
          ": expected a regular file, but '",
          path_,
          "' changed into something else while being opened (",
          std::strerror(err),
          ")");
    }
    TORCH_CHECK(
        after.st_size >= 0, owner_, ": '", path_, "' reports a negative size");
    size_ = static_cast<uint64_t>(after.st_size);
  }

  RegularFileReader(const RegularFileReader&) = delete;
  RegularFileReader& operator=(const RegularFileReader&) = delete;

  ~RegularFileReader() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }

  /// The file's size in bytes when it was opened.
  uint64_t size() const {
    return size_;
  }

  const std::string& path() const {
    return path_;
  }

  /// Reads exactly `n` bytes at `offset` into `out`; a file that ends early
  /// (truncated while being read) or a read error is a `c10::Error` naming
  /// `what` (the part of the file being read).
  void read_exact(
      uint64_t offset, void* out, uint64_t n, const std::string& what) const {
    char* dst = static_cast<char*>(out);
    while (n > 0) {
      const std::size_t chunk =
          static_cast<std::size_t>(n < (uint64_t(1) << 30) ? n : (1u << 30));
      const ssize_t got = ::pread(fd_, dst, chunk, static_cast<off_t>(offset));
      if (got < 0 && errno == EINTR) {
        continue;
      }
      if (got < 0) {
        const int err = errno;
        TORCH_CHECK(
            false,
            owner_,
            ": cannot read ",
            what,
            " of '",
            path_,
            "': ",
            std::strerror(err));
      }
      TORCH_CHECK(
          got > 0,
          owner_,
          ": '",
          path_,
          "' ended at byte ",
          offset,
          " while reading ",
          what,
          " (it was ",
          size_,
          " bytes when opened: changed while being read?)");
      dst += got;
      offset += static_cast<uint64_t>(got);
      n -= static_cast<uint64_t>(got);
    }
  }

 private:
  std::string path_;
  std::string owner_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

} // namespace detail
} // namespace dlcore
