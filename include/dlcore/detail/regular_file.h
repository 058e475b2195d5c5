#pragma once

// Reading a file that is known to be a regular file, with POSIX calls only:
// FIFOs, devices, sockets and folders are refused before they are opened (an
// open FIFO would block the reader), and every read is checked against the
// file's size. `RegularFileReader` reads at offsets; `open_regular_file` and
// `read_regular_file` give a descriptor to read front to back, or the whole
// file, with errors of the form "owner: path: what".

#include <c10/util/Exception.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

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

/// An open file descriptor, closed on scope exit.
class FileDescriptor {
 public:
  FileDescriptor() = default;
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  FileDescriptor(FileDescriptor&& other) noexcept
      : fd_(std::exchange(other.fd_, -1)) {}
  FileDescriptor& operator=(FileDescriptor&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~FileDescriptor() {
    reset();
  }

  int get() const {
    return fd_;
  }

  void reset() {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

 private:
  int fd_ = -1;
};

/// The error of a file that cannot be opened: names `owner`, the path and
/// the system's reason.
[[noreturn]] inline void cannot_open(
    const std::string& path, const std::string& owner, int err) {
  TORCH_CHECK(
      false,
      owner,
      ": ",
      path,
      ": cannot open the file (",
      std::strerror(err),
      ")");
  std::abort(); // unreachable: TORCH_CHECK(false, ...) throws
}

/// Opens `path` for reading after checking that it is a regular file: `stat`
/// first (a FIFO, device, directory or socket is refused before it is
/// opened), then `open` with O_NONBLOCK (so that a FIFO swapped in meanwhile
/// cannot block the open) and `fstat` of what was opened; blocking reads are
/// restored afterwards. Errors name `owner`, the path and the reason. Returns
/// the descriptor and the file's size in bytes.
inline std::pair<FileDescriptor, int64_t> open_regular_file(
    const std::string& path, const std::string& owner) {
  struct stat before {};
  if (::stat(path.c_str(), &before) != 0) {
    cannot_open(path, owner, errno);
  }
  TORCH_CHECK(
      S_ISREG(before.st_mode),
      owner,
      ": ",
      path,
      ": expected a regular file, but it is ",
      regular_file_kind(before.st_mode));
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) {
    cannot_open(path, owner, errno);
  }
  struct stat st {};
  TORCH_CHECK(
      ::fstat(fd.get(), &st) == 0,
      owner,
      ": cannot stat '",
      path,
      "' after opening it: ",
      std::strerror(errno));
  TORCH_CHECK(
      S_ISREG(st.st_mode),
      owner,
      ": ",
      path,
      ": expected a regular file, but it is ",
      regular_file_kind(st.st_mode));
  const int flags = ::fcntl(fd.get(), F_GETFL);
  TORCH_CHECK(
      flags >= 0 && ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) == 0,
      owner,
      ": cannot configure the descriptor of '",
      path,
      "': ",
      std::strerror(errno));
  return {std::move(fd), static_cast<int64_t>(st.st_size)};
}

/// Reads up to `n` bytes at the descriptor's position (retrying on EINTR and
/// short reads); returns how many were read (less than `n` only at the end
/// of the file).
inline int64_t read_fully(
    int fd,
    void* dst,
    int64_t n,
    const std::string& path,
    const std::string& owner) {
  auto* out = static_cast<char*>(dst);
  int64_t total = 0;
  while (total < n) {
    const int64_t want = std::min<int64_t>(n - total, int64_t{1} << 30);
    const ssize_t got = ::read(fd, out + total, static_cast<size_t>(want));
    if (got < 0) {
      if (errno == EINTR) {
        continue;
      }
      const int err = errno;
      TORCH_CHECK(
          false,
          owner,
          ": read error in '",
          path,
          "' after ",
          total,
          " bytes: ",
          std::strerror(err));
    }
    if (got == 0) {
      break;
    }
    total += got;
  }
  return total;
}

/// The whole content of the regular file `path` (see `open_regular_file`).
/// A file larger than `max_bytes` (when >= 0) is an error before anything is
/// allocated; a file that changes size while it is read is an error.
inline std::vector<char> read_regular_file(
    const std::string& path, const std::string& owner, int64_t max_bytes = -1) {
  auto [fd, size] = open_regular_file(path, owner);
  TORCH_CHECK(
      max_bytes < 0 || size <= max_bytes,
      owner,
      ": '",
      path,
      "' has ",
      size,
      " bytes, more than the ",
      max_bytes,
      " this reader accepts");
  std::vector<char> bytes(static_cast<size_t>(size));
  const int64_t got = read_fully(fd.get(), bytes.data(), size, path, owner);
  char extra = 0;
  TORCH_CHECK(
      got == size && read_fully(fd.get(), &extra, 1, path, owner) == 0,
      owner,
      ": '",
      path,
      "' changed size while it was read (expected ",
      size,
      " bytes)");
  return bytes;
}

} // namespace detail
} // namespace dlcore
