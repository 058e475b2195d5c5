#pragma once

// Byte streams over files that may or may not be gzip-compressed: the reader
// detects gzip by its magic bytes (1f 8b), never by the file name, and the
// writer replaces its target atomically (temporary file, then rename).

#include <c10/util/Exception.h>

#include <zlib.h>

#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

namespace dlcore {
namespace detail {

/// The largest factor by which deflate can shrink data (zlib's technical
/// report: 1032:1). A gzip file of `c` bytes never inflates to more than
/// `kGzipMaxRatio * c` bytes, which bounds what a header may claim before any
/// memory is allocated.
inline constexpr int64_t kGzipMaxRatio = 1032;

/// Reads a file front to back, inflating it when it starts with the gzip
/// magic 1f 8b and reading it as is otherwise. `owner` and the path prefix
/// every error.
class GzipReader {
 public:
  GzipReader(std::string path, std::string owner)
      : path_(std::move(path)), owner_(std::move(owner)) {
    std::FILE* f = std::fopen(path_.c_str(), "rb");
    TORCH_CHECK(
        f != nullptr,
        owner_,
        ": ",
        path_,
        ": cannot open the file (",
        std::strerror(errno),
        ")");
    struct stat st {};
    if (::fstat(::fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
      std::fclose(f);
      TORCH_CHECK(false, owner_, ": ", path_, ": expected a regular file");
    }
    file_bytes_ = static_cast<int64_t>(st.st_size);
    unsigned char magic[2] = {0, 0};
    const size_t got = std::fread(magic, 1, 2, f);
    gzip_ = got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    if (!gzip_) {
      std::rewind(f);
      file_ = f;
      return;
    }
    std::fclose(f);
    gz_ = gzopen(path_.c_str(), "rb");
    TORCH_CHECK(
        gz_ != nullptr,
        owner_,
        ": ",
        path_,
        ": cannot open the gzip file (",
        std::strerror(errno),
        ")");
    gzbuffer(gz_, 1 << 18);
  }

  GzipReader(const GzipReader&) = delete;
  GzipReader& operator=(const GzipReader&) = delete;

  ~GzipReader() {
    if (file_ != nullptr) {
      std::fclose(file_);
    }
    if (gz_ != nullptr) {
      gzclose(gz_);
    }
  }

  /// Whether the file is gzip-compressed.
  bool gzip() const {
    return gzip_;
  }

  /// Size of the file on disk (compressed size for gzip files).
  int64_t file_bytes() const {
    return file_bytes_;
  }

  /// Reads up to `n` bytes into `dst`; returns how many were read, fewer
  /// only at the end of the data. A corrupt gzip stream (bad deflate data,
  /// wrong CRC or length) is an error.
  int64_t read(void* dst, int64_t n) {
    auto* out = static_cast<unsigned char*>(dst);
    int64_t total = 0;
    while (total < n) {
      const int64_t want = std::min<int64_t>(n - total, int64_t{1} << 30);
      int64_t got = 0;
      if (gzip_) {
        const int r = gzread(gz_, out + total, static_cast<unsigned>(want));
        if (r < 0) {
          int code = 0;
          const char* msg = gzerror(gz_, &code);
          std::string why = msg != nullptr ? msg : "unknown zlib error";
          // zlib prefixes its message with the path; we name it already.
          if (why.rfind(path_ + ": ", 0) == 0) {
            why.erase(0, path_.size() + 2);
          }
          TORCH_CHECK(
              false, owner_, ": ", path_, ": corrupt gzip data (", why, ")");
        }
        got = r;
      } else {
        got = static_cast<int64_t>(
            std::fread(out + total, 1, static_cast<size_t>(want), file_));
        TORCH_CHECK(
            !std::ferror(file_),
            owner_,
            ": ",
            path_,
            ": read error (",
            std::strerror(errno),
            ")");
      }
      total += got;
      if (got < want) {
        break;
      }
    }
    return total;
  }

 private:
  std::string path_;
  std::string owner_;
  std::FILE* file_ = nullptr;
  gzFile gz_ = nullptr;
  bool gzip_ = false;
  int64_t file_bytes_ = 0;
};

/// Writes `n` bytes to `path` atomically: into a temporary file in the same
/// folder, which is then renamed over `path`. With `gzip`, the bytes are
/// compressed (zlib level 6, as gzip's default).
inline void write_file_atomically(
    const std::string& path,
    const void* bytes,
    int64_t n,
    bool gzip,
    const std::string& owner) {
  const std::string tmp =
      path + ".tmp." + std::to_string(static_cast<long long>(::getpid()));
  bool ok = true;
  std::string why;
  if (gzip) {
    gzFile gz = gzopen(tmp.c_str(), "wb6");
    TORCH_CHECK(
        gz != nullptr,
        owner,
        ": ",
        path,
        ": cannot create the temporary file ",
        tmp,
        " (",
        std::strerror(errno),
        ")");
    const auto* in = static_cast<const unsigned char*>(bytes);
    int64_t done = 0;
    while (ok && done < n) {
      const int64_t chunk = std::min<int64_t>(n - done, int64_t{1} << 30);
      const int w = gzwrite(gz, in + done, static_cast<unsigned>(chunk));
      if (w != static_cast<int>(chunk)) {
        int code = 0;
        const char* msg = gzerror(gz, &code);
        why = msg != nullptr ? msg : "gzwrite failed";
        ok = false;
      }
      done += chunk;
    }
    if (gzclose(gz) != Z_OK && ok) {
      why = "gzclose failed";
      ok = false;
    }
  } else {
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    TORCH_CHECK(
        f != nullptr,
        owner,
        ": ",
        path,
        ": cannot create the temporary file ",
        tmp,
        " (",
        std::strerror(errno),
        ")");
    if (n > 0 && std::fwrite(bytes, 1, static_cast<size_t>(n), f) !=
                     static_cast<size_t>(n)) {
      why = std::strerror(errno);
      ok = false;
    }
    if (std::fclose(f) != 0 && ok) {
      why = std::strerror(errno);
      ok = false;
    }
  }
  if (ok && std::rename(tmp.c_str(), path.c_str()) != 0) {
    why = std::string("rename failed: ") + std::strerror(errno);
    ok = false;
  }
  if (!ok) {
    std::remove(tmp.c_str());
    TORCH_CHECK(
        false, owner, ": ", path, ": cannot write the file (", why, ")");
  }
}

} // namespace detail
} // namespace dlcore
