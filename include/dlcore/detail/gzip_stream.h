#pragma once

// Byte streams over files that may or may not be gzip-compressed: the reader
// detects gzip by its magic bytes (1f 8b), never by the file name, and the
// writer replaces its target atomically through `write_file_atomic`.

#include <dlcore/detail/atomic_file.h>

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
#include <vector>

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

/// The `n` bytes at `bytes` compressed in memory into one gzip stream (zlib
/// level 6, as gzip's default). `owner` and `path` prefix any error.
inline std::string gzip_compress(
    const void* bytes,
    int64_t n,
    const std::string& path,
    const std::string& owner) {
  z_stream zs{};
  int rc = deflateInit2(
      &zs, 6, Z_DEFLATED, /*windowBits=*/15 + 16, 8, Z_DEFAULT_STRATEGY);
  TORCH_CHECK(
      rc == Z_OK,
      owner,
      ": ",
      path,
      ": cannot start gzip compression (zlib error ",
      rc,
      ")");
  std::string out;
  std::vector<unsigned char> buffer(size_t{1} << 18);
  const auto* in = static_cast<const unsigned char*>(bytes);
  int64_t done = 0;
  int flush = Z_NO_FLUSH;
  do {
    if (zs.avail_in == 0 && flush != Z_FINISH) {
      const int64_t chunk = std::min<int64_t>(n - done, int64_t{1} << 30);
      // zlib's next_in is not const unless ZLIB_CONST; it never writes it.
      zs.next_in = const_cast<unsigned char*>(in + done);
      zs.avail_in = static_cast<uInt>(chunk);
      done += chunk;
      flush = done == n ? Z_FINISH : Z_NO_FLUSH;
    }
    zs.next_out = buffer.data();
    zs.avail_out = static_cast<uInt>(buffer.size());
    rc = deflate(&zs, flush);
    if (rc == Z_STREAM_ERROR) {
      deflateEnd(&zs);
      TORCH_CHECK(
          false,
          owner,
          ": ",
          path,
          ": gzip compression failed (zlib error ",
          rc,
          ")");
    }
    out.append(
        reinterpret_cast<const char*>(buffer.data()),
        buffer.size() - zs.avail_out);
  } while (rc != Z_STREAM_END);
  deflateEnd(&zs);
  return out;
}

/// Writes `n` bytes to `path` atomically through `write_file_atomic` (a
/// temporary file in the same folder, synced, then renamed over `path`; on
/// failure `path` is left as it was). With `gzip`, the bytes are compressed
/// in memory first (zlib level 6, as gzip's default).
inline void write_file_atomically(
    const std::string& path,
    const void* bytes,
    int64_t n,
    bool gzip,
    const std::string& owner) {
  TORCH_CHECK(
      n >= 0, owner, ": ", path, ": expected n >= 0 bytes, but got ", n);
  if (gzip) {
    write_file_atomic(path, gzip_compress(bytes, n, path, owner), owner);
  } else {
    write_file_atomic(
        path, static_cast<const char*>(bytes), static_cast<size_t>(n), owner);
  }
}

} // namespace detail
} // namespace dlcore
