#pragma once

// Byte streams over files that may or may not be gzip-compressed: the reader
// detects gzip by its magic bytes (1f 8b), never by the file name, and the
// writer replaces its target atomically through `write_file_atomic`.

#include <dlcore/detail/atomic_file.h>
#include <dlcore/detail/regular_file.h>

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
/// every error. Only a regular file is opened (see `open_regular_file`).
/// Concatenated gzip members are read as one stream (as `gzip -d` does);
/// anything else after the last member is an error ("trailing data").
class GzipReader {
 public:
  GzipReader(std::string path, std::string owner)
      : path_(std::move(path)), owner_(std::move(owner)) {
    auto opened = open_regular_file(path_, owner_);
    fd_ = std::move(opened.first);
    file_bytes_ = opened.second;
    unsigned char magic[2] = {0, 0};
    const int64_t got = read_fully(fd_.get(), magic, 2, path_, owner_);
    gzip_ = got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    if (!gzip_) {
      TORCH_CHECK(
          ::lseek(fd_.get(), 0, SEEK_SET) == 0,
          owner_,
          ": ",
          path_,
          ": cannot rewind the file (",
          std::strerror(errno),
          ")");
      return;
    }
    buffer_.resize(size_t{1} << 18);
    buffer_[0] = magic[0];
    buffer_[1] = magic[1];
    zs_.next_in = buffer_.data();
    zs_.avail_in = 2;
    // 16 + 15: a gzip wrapper (header, CRC-32 and length checked), 32 KB
    // window.
    TORCH_CHECK(
        inflateInit2(&zs_, 16 + 15) == Z_OK,
        owner_,
        ": ",
        path_,
        ": cannot start gzip decompression");
    inflating_ = true;
  }

  GzipReader(const GzipReader&) = delete;
  GzipReader& operator=(const GzipReader&) = delete;

  ~GzipReader() {
    if (inflating_) {
      inflateEnd(&zs_);
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
  /// wrong CRC or length, a truncated member) and bytes after the last gzip
  /// member that are not another member are errors.
  int64_t read(void* dst, int64_t n) {
    if (!gzip_) {
      return read_fully(fd_.get(), dst, n, path_, owner_);
    }
    auto* out = static_cast<unsigned char*>(dst);
    int64_t total = 0;
    while (total < n && !finished_) {
      if (zs_.avail_in == 0 && !refill()) {
        TORCH_CHECK(
            false,
            owner_,
            ": ",
            path_,
            ": truncated gzip data (the file ends inside the compressed "
            "stream)");
      }
      const int64_t want = std::min<int64_t>(n - total, int64_t{1} << 30);
      zs_.next_out = out + total;
      zs_.avail_out = static_cast<uInt>(want);
      const int rc = inflate(&zs_, Z_NO_FLUSH);
      total += want - static_cast<int64_t>(zs_.avail_out);
      if (rc == Z_STREAM_END) {
        next_member();
      } else if (rc != Z_OK && !(rc == Z_BUF_ERROR && zs_.avail_in == 0)) {
        TORCH_CHECK(
            false,
            owner_,
            ": ",
            path_,
            ": corrupt gzip data (",
            zs_.msg != nullptr ? zs_.msg : "zlib error",
            ")");
      }
    }
    return total;
  }

 private:
  /// Moves the unread input to the front of the buffer and reads more after
  /// it; false at the end of the file with nothing new read.
  bool refill() {
    const size_t keep = zs_.avail_in;
    if (keep > 0 && zs_.next_in != buffer_.data()) {
      std::memmove(buffer_.data(), zs_.next_in, keep);
    }
    const int64_t got = read_fully(
        fd_.get(),
        buffer_.data() + keep,
        static_cast<int64_t>(buffer_.size() - keep),
        path_,
        owner_);
    zs_.next_in = buffer_.data();
    zs_.avail_in = static_cast<uInt>(keep + static_cast<size_t>(got));
    return got > 0;
  }

  /// After a member's end: the end of the file, another member, or an error.
  void next_member() {
    while (zs_.avail_in < 2 && refill()) {
    }
    if (zs_.avail_in == 0) {
      finished_ = true;
      return;
    }
    TORCH_CHECK(
        zs_.avail_in >= 2 && zs_.next_in[0] == 0x1f && zs_.next_in[1] == 0x8b,
        owner_,
        ": ",
        path_,
        ": trailing data: bytes after the end of the gzip stream are not "
        "another gzip member");
    TORCH_CHECK(
        inflateReset(&zs_) == Z_OK,
        owner_,
        ": ",
        path_,
        ": cannot restart gzip decompression");
  }

  std::string path_;
  std::string owner_;
  FileDescriptor fd_;
  z_stream zs_{};
  std::vector<unsigned char> buffer_;
  bool gzip_ = false;
  bool inflating_ = false;
  bool finished_ = false;
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
