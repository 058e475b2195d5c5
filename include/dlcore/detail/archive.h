#pragma once

// A guard run before LibTorch parses an archive (.pt file). LibTorch's reader
// (1.13) checks neither the zip CRCs nor the pickle it runs: one flipped byte
// can crash the process, allocate gigabytes, or load silently different
// values. `check_archive` accepts only what LibTorch itself writes (and
// Python's torch.save writes for a dict of tensors):
//
// - the zip: the end-of-central-directory records (zip64 included), every
//   central-directory entry and its local header, stored (uncompressed)
//   entries only, sizes and offsets inside the file, entries that tile the
//   file from offset 0 to the central directory with nothing between them,
//   data descriptors that match, unique names under one top-level folder,
//   and the CRC-32 of every entry (zlib's crc32);
// - every pickle (data.pkl, constants.pkl, *.debug_pkl): a bounded walk that
//   simulates LibTorch's unpickler on abstract values, so that only the
//   opcodes and globals it supports pass, with every argument inside the
//   entry, every stack, mark and memo access in range (memo indices at most
//   the number of memo puts so far), container mutations that cannot build
//   cycles, a bounded nesting depth, and every tensor's storage matching its
//   record's size and holding the tensor's extent;
// - the `version` record (digits) and TorchScript sources (text).
//
// What passes is still trusted input beyond these checks: a file crafted to
// pass them can make LibTorch compile arbitrary TorchScript class
// definitions from its code/ folder.

#include <dlcore/detail/atomic_file.h>
#include <dlcore/detail/regular_file.h>

#include <c10/util/Exception.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <new>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace dlcore {
namespace detail {

/// Largest pickle entry the walk accepts, and largest deflated entry (64
/// MiB): far above any state or weights file dlcore writes (about 200 bytes
/// per tensor).
inline constexpr uint64_t kArchiveMaxPickleBytes = uint64_t{1} << 26;
/// Most values one pickle may create (each costs about 150 bytes while the
/// walk runs): about 16 per tensor in a weights file.
inline constexpr int64_t kArchiveMaxPickleValues = int64_t{1} << 23;
/// Deepest nesting of containers (tuples, lists, dicts, objects) accepted.
inline constexpr int kArchiveMaxDepth = 200;
/// Most dimensions of a tensor accepted.
inline constexpr int64_t kArchiveMaxDims = 64;

/// One entry of a checked zip archive.
struct ArchiveEntry {
  std::string name;
  uint64_t header_offset = 0;
  uint64_t data_offset = 0;
  /// Bytes in the file (compressed size).
  uint64_t stored_size = 0;
  /// Bytes of content (uncompressed size).
  uint64_t size = 0;
  /// 0 (stored) or 8 (deflate).
  uint16_t method = 0;
  uint16_t version_needed = 0;
  uint32_t crc = 0;
  uint16_t flags = 0;
  uint16_t time = 0;
  uint16_t date = 0;
};

/// The checker; use `check_archive`.
class ArchiveChecker {
 public:
  ArchiveChecker(
      const unsigned char* data,
      uint64_t size,
      std::string path,
      std::string owner)
      : p_(data), n_(size), path_(std::move(path)), owner_(std::move(owner)) {}

  void run() {
    read_zip();
    check_names();
    for (const auto& e : entries_) {
      const uint32_t crc = crc_of(e);
      if (crc != e.crc) {
        fail(
            "entry '",
            e.name,
            "' has CRC-32 ",
            hex(crc),
            " but the central directory records ",
            hex(e.crc));
      }
    }
    for (const auto& e : entries_) {
      const std::string rel = e.name.substr(prefix_.size());
      if (rel == "data.pkl") {
        walk_pickle(e, prefix_ + "data/");
      } else if (rel == "constants.pkl") {
        walk_pickle(e, prefix_ + "constants/");
      } else if (ends_with(rel, ".pkl") || ends_with(rel, "_pkl")) {
        walk_pickle(e, "");
      } else if (rel == "version" || rel == ".data/version") {
        check_version(e);
      } else if (ends_with(rel, ".py")) {
        check_source(e);
      }
    }
  }

 private:
  // ---------------------------------------------------------------- errors

  template <typename... Args>
  [[noreturn]] void fail(const Args&... args) const {
    TORCH_CHECK(
        false,
        owner_,
        ": '",
        path_,
        "' is not a valid LibTorch archive: ",
        args...,
        " (the file is damaged or truncated, or was not written by "
        "torch::save / torch.save)");
    throw std::logic_error("unreachable");
  }

  static std::string hex(uint64_t v) {
    static const char* digits = "0123456789abcdef";
    std::string s;
    do {
      s.insert(s.begin(), digits[v & 15]);
      v >>= 4;
    } while (v != 0);
    return "0x" + s;
  }

  static bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  }

  // ------------------------------------------------------------------ zip

  uint16_t u16(uint64_t at) const {
    return static_cast<uint16_t>(p_[at] | (p_[at + 1] << 8));
  }
  uint32_t u32(uint64_t at) const {
    return static_cast<uint32_t>(u16(at)) |
           (static_cast<uint32_t>(u16(at + 2)) << 16);
  }
  uint64_t u64(uint64_t at) const {
    return static_cast<uint64_t>(u32(at)) |
           (static_cast<uint64_t>(u32(at + 4)) << 32);
  }
  /// Fails unless [at, at + len) lies inside the file.
  void need(uint64_t at, uint64_t len, const char* what) const {
    if (at > n_ || len > n_ - at) {
      fail(
          what,
          " at offset ",
          at,
          " (",
          len,
          " bytes) ends past the file's ",
          n_,
          " bytes");
    }
  }

  void read_zip() {
    constexpr uint64_t kEocd = 22;
    if (n_ < kEocd) {
      fail("the file has ", n_, " bytes, fewer than a zip's end record (22)");
    }
    // The end record: the last one whose comment runs exactly to the end.
    uint64_t eocd = n_;
    const uint64_t lowest = n_ - kEocd > 65535 ? n_ - kEocd - 65535 : 0;
    for (uint64_t at = n_ - kEocd + 1; at-- > lowest;) {
      if (u32(at) == 0x06054b50 && at + kEocd + u16(at + 20) == n_) {
        eocd = at;
        break;
      }
    }
    if (eocd == n_) {
      fail("no zip end-of-central-directory record at the end of the file");
    }
    if (u16(eocd + 4) != 0 || u16(eocd + 6) != 0) {
      fail(
          "the zip end record names another disk (multi-part archives are "
          "not supported)");
    }
    uint64_t count = u16(eocd + 10);
    uint64_t cd_size = u32(eocd + 12);
    uint64_t cd_offset = u32(eocd + 16);
    if (u16(eocd + 8) != count) {
      fail(
          "the zip end record counts ",
          u16(eocd + 8),
          " entries on this "
          "disk but ",
          count,
          " in all");
    }
    uint64_t cd_end_limit = eocd;
    // Zip64: a locator right before the end record, pointing at a zip64 end
    // record that ends right before the locator.
    if (eocd >= 20 && u32(eocd - 20) == 0x07064b50) {
      const uint64_t loc = eocd - 20;
      const uint64_t z = u64(loc + 8);
      if (u32(loc + 4) != 0 || u32(loc + 16) != 1) {
        fail("the zip64 locator names another disk");
      }
      if (z > loc || loc - z < 56) {
        fail(
            "the zip64 locator points at offset ",
            z,
            ", where no zip64 end record fits before the locator at ",
            loc);
      }
      if (u32(z) != 0x06064b50) {
        fail("no zip64 end record at offset ", z);
      }
      if (u64(z + 4) != loc - z - 12) {
        fail(
            "the zip64 end record at ",
            z,
            " declares ",
            u64(z + 4),
            " bytes, but ",
            loc - z - 12,
            " lie before the locator");
      }
      if (u32(z + 16) != 0 || u32(z + 20) != 0) {
        fail("the zip64 end record names another disk");
      }
      const uint64_t count64 = u64(z + 32);
      if (u64(z + 24) != count64) {
        fail(
            "the zip64 end record counts ",
            u64(z + 24),
            " entries on this disk but ",
            count64,
            " in all");
      }
      const uint64_t size64 = u64(z + 40);
      const uint64_t offset64 = u64(z + 48);
      if ((count != 0xFFFF && count != count64) ||
          (cd_size != 0xFFFFFFFF && cd_size != size64) ||
          (cd_offset != 0xFFFFFFFF && cd_offset != offset64)) {
        fail(
            "the zip end record (",
            count,
            " entries, ",
            cd_size,
            " bytes at ",
            cd_offset,
            ") disagrees with the zip64 end record (",
            count64,
            " entries, ",
            size64,
            " bytes at ",
            offset64,
            ")");
      }
      count = count64;
      cd_size = size64;
      cd_offset = offset64;
      cd_end_limit = z;
    } else if (
        count == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {
      fail(
          "the zip end record needs a zip64 end record, but none precedes "
          "it");
    }
    if (cd_offset > cd_end_limit || cd_size != cd_end_limit - cd_offset) {
      fail(
          "the central directory (",
          cd_size,
          " bytes at offset ",
          cd_offset,
          ") does not end where the end records begin (offset ",
          cd_end_limit,
          ")");
    }
    if (count == 0 || count > cd_size / 46) {
      fail(
          "the zip end record counts ",
          count,
          " entries, which a central directory of ",
          cd_size,
          " bytes cannot hold");
    }
    // The central directory.
    uint64_t at = cd_offset;
    entries_.reserve(static_cast<size_t>(count));
    for (uint64_t i = 0; i < count; ++i) {
      need(at, 46, "a central directory entry");
      if (at + 46 > cd_end_limit || u32(at) != 0x02014b50) {
        fail(
            "central directory entry ",
            i,
            " at offset ",
            at,
            " has no valid signature");
      }
      ArchiveEntry e;
      e.version_needed = u16(at + 6);
      e.flags = u16(at + 8);
      const uint16_t method = u16(at + 10);
      e.time = u16(at + 12);
      e.date = u16(at + 14);
      e.crc = u32(at + 16);
      uint64_t csize = u32(at + 20);
      uint64_t usize = u32(at + 24);
      const uint64_t nlen = u16(at + 28);
      const uint64_t xlen = u16(at + 30);
      const uint64_t clen = u16(at + 32);
      uint64_t disk = u16(at + 34);
      uint64_t offset = u32(at + 42);
      if (at + 46 + nlen + xlen + clen > cd_end_limit) {
        fail("central directory entry ", i, " runs past the directory");
      }
      e.name.assign(reinterpret_cast<const char*>(p_ + at + 46), nlen);
      // Extra fields: (id, length) records that fill the field exactly; the
      // zip64 record supplies the values saturated in the fixed fields.
      uint64_t x = at + 46 + nlen;
      const uint64_t xend = x + xlen;
      while (x < xend) {
        if (xend - x < 4 || u16(x + 2) > xend - x - 4) {
          fail("entry '", e.name, "' has a malformed extra field");
        }
        const uint64_t id = u16(x);
        const uint64_t len = u16(x + 2);
        if (id == 0x0001) {
          uint64_t y = x + 4;
          const uint64_t yend = y + len;
          auto take = [&](uint64_t& field) {
            if (yend - y < 8) {
              fail("entry '", e.name, "' has a short zip64 extra field");
            }
            field = u64(y);
            y += 8;
          };
          if (usize == 0xFFFFFFFF) {
            take(usize);
          }
          if (csize == 0xFFFFFFFF) {
            take(csize);
          }
          if (offset == 0xFFFFFFFF) {
            take(offset);
          }
          if (disk == 0xFFFF) {
            if (yend - y < 4) {
              fail("entry '", e.name, "' has a short zip64 extra field");
            }
            disk = u32(y);
          }
        }
        x += 4 + len;
      }
      // miniz (LibTorch's zip reader) reads an entry with the DOS directory
      // attribute as an empty folder: its tensor would load as zeros.
      const uint32_t external = u32(at + 38);
      if ((external & 0x10) != 0 || ((external >> 16) & 0170000) == 0040000) {
        fail("entry '", e.name, "' is marked as a directory");
      }
      if (disk != 0) {
        fail("entry '", e.name, "' starts on another disk");
      }
      if ((e.flags & ~uint16_t{0x0808}) != 0) {
        fail(
            "entry '",
            e.name,
            "' has unsupported flags ",
            hex(e.flags),
            " (encryption or a compression option)");
      }
      if (method != 0 && method != 8) {
        fail(
            "entry '",
            e.name,
            "' uses compression method ",
            method,
            "; LibTorch archives store entries or deflate them");
      }
      if (method == 0 && csize != usize) {
        fail(
            "entry '",
            e.name,
            "' is stored but its compressed size ",
            csize,
            " differs from its size ",
            usize);
      }
      // Deflate shrinks data at most 1032:1 (zlib's technical report).
      if (method == 8 && (csize > n_ || usize > 1032 * csize + 64)) {
        fail(
            "entry '",
            e.name,
            "' claims ",
            usize,
            " bytes deflated into ",
            csize,
            ", more than deflate can compress");
      }
      // LibTorch deflates only small text entries (TorchScript sources);
      // tensors are stored.
      if (method == 8 && usize > kArchiveMaxPickleBytes) {
        fail(
            "deflated entry '",
            e.name,
            "' claims ",
            usize,
            " bytes, more than the ",
            kArchiveMaxPickleBytes,
            " accepted");
      }
      e.method = method;
      e.stored_size = csize;
      e.size = usize;
      e.header_offset = offset;
      entries_.push_back(std::move(e));
      at += 46 + nlen + xlen + clen;
    }
    if (at != cd_end_limit) {
      fail(
          "the central directory holds ",
          cd_end_limit - at,
          " bytes after its last entry");
    }
    // Local headers: sorted by offset, each entry followed directly by the
    // next, the last one by the central directory.
    std::vector<size_t> order(entries_.size());
    for (size_t i = 0; i < order.size(); ++i) {
      order[i] = i;
    }
    std::sort(order.begin(), order.end(), [this](size_t a, size_t b) {
      return entries_[a].header_offset < entries_[b].header_offset;
    });
    uint64_t expected = 0;
    for (size_t k = 0; k < order.size(); ++k) {
      ArchiveEntry& e = entries_[order[k]];
      if (e.header_offset != expected) {
        fail(
            "entry '",
            e.name,
            "' starts at offset ",
            e.header_offset,
            ", but the previous entry ends at ",
            expected);
      }
      const uint64_t h = e.header_offset;
      need(h, 30, "a local header");
      if (u32(h) != 0x04034b50) {
        fail("entry '", e.name, "' has no local header at offset ", h);
      }
      const uint64_t nlen = u16(h + 26);
      const uint64_t xlen = u16(h + 28);
      need(h, 30 + nlen + xlen, "a local header");
      if (u16(h + 4) != e.version_needed || u16(h + 6) != e.flags ||
          u16(h + 8) != e.method || u16(h + 10) != e.time ||
          u16(h + 12) != e.date) {
        fail(
            "the local header of entry '",
            e.name,
            "' disagrees with the central directory (flags, method or "
            "time)");
      }
      if (nlen != e.name.size() ||
          std::memcmp(p_ + h + 30, e.name.data(), e.name.size()) != 0) {
        fail(
            "the local header at offset ",
            h,
            " names another entry than the central directory ('",
            e.name,
            "')");
      }
      const bool descriptor = (e.flags & 0x0008) != 0;
      const uint32_t lcrc = u32(h + 14);
      const uint64_t lcsize = u32(h + 18);
      const uint64_t lusize = u32(h + 22);
      auto size_ok = [&](uint64_t v, uint64_t expected) {
        return v == expected || v == 0xFFFFFFFF || (descriptor && v == 0);
      };
      if (!(lcrc == e.crc || (descriptor && lcrc == 0)) ||
          !size_ok(lcsize, e.stored_size) || !size_ok(lusize, e.size)) {
        fail(
            "the local header of entry '",
            e.name,
            "' disagrees with the central directory (CRC or sizes)");
      }
      uint64_t x = h + 30 + nlen;
      const uint64_t xend = x + xlen;
      while (x < xend) {
        if (xend - x < 4 || u16(x + 2) > xend - x - 4) {
          fail("entry '", e.name, "' has a malformed local extra field");
        }
        // LibTorch's alignment padding ("FB") is all 'Z'.
        if (u16(x) == 0x4246) {
          for (uint64_t q = x + 4; q < x + 4 + u16(x + 2); ++q) {
            if (p_[q] != 'Z') {
              fail("entry '", e.name, "' has damaged alignment padding");
            }
          }
        }
        x += 4 + u16(x + 2);
      }
      e.data_offset = xend;
      if (e.data_offset > cd_offset ||
          e.stored_size > cd_offset - e.data_offset) {
        fail(
            "entry '",
            e.name,
            "' (",
            e.stored_size,
            " bytes at offset ",
            e.data_offset,
            ") runs into the central directory at ",
            cd_offset);
      }
      const uint64_t end = e.data_offset + e.stored_size;
      const uint64_t next = k + 1 < order.size()
                                ? entries_[order[k + 1]].header_offset
                                : cd_offset;
      if (next < end) {
        fail("entry '", e.name, "' overlaps the next entry at offset ", next);
      }
      check_descriptor(e, end, next - end, descriptor);
      expected = next;
    }
    if (expected != cd_offset) {
      fail(
          "the entries end at offset ",
          expected,
          " but the central directory starts at ",
          cd_offset);
    }
  }

  /// The `gap` bytes after an entry's data: nothing, or (with flag 3) a data
  /// descriptor that repeats the CRC and sizes (with or without its
  /// signature, with 32- or 64-bit sizes).
  void check_descriptor(
      const ArchiveEntry& e, uint64_t at, uint64_t gap, bool descriptor) {
    if (!descriptor) {
      if (gap != 0) {
        fail(gap, " unexplained bytes follow entry '", e.name, "'");
      }
      return;
    }
    uint64_t q = at;
    uint64_t len = gap;
    if (len == 16 || len == 24) {
      if (u32(q) != 0x08074b50) {
        fail("the data descriptor of entry '", e.name, "' has no signature");
      }
      q += 4;
      len -= 4;
    }
    bool ok = false;
    if (len == 12) {
      ok = u32(q) == e.crc && u32(q + 4) == e.stored_size &&
           u32(q + 8) == e.size;
    } else if (len == 20) {
      ok = u32(q) == e.crc && u64(q + 4) == e.stored_size &&
           u64(q + 12) == e.size;
    } else {
      fail(
          gap,
          " bytes follow entry '",
          e.name,
          "', which is not the size of a data descriptor");
    }
    if (!ok) {
      fail(
          "the data descriptor of entry '",
          e.name,
          "' disagrees with the central directory (CRC or sizes)");
    }
  }

  void check_names() {
    const std::string& first = entries_.front().name;
    const size_t slash = first.find('/');
    if (slash == std::string::npos || slash == 0) {
      fail("entry '", first, "' is not inside a folder");
    }
    prefix_ = first.substr(0, slash + 1);
    std::map<std::string, size_t> seen;
    for (size_t i = 0; i < entries_.size(); ++i) {
      const std::string& name = entries_[i].name;
      if (name.size() <= prefix_.size() ||
          name.compare(0, prefix_.size(), prefix_) != 0 || name.back() == '/' ||
          name.find('\0') != std::string::npos ||
          name.find("..") != std::string::npos) {
        fail(
            "entry '",
            name,
            "' is not a file inside '",
            prefix_,
            "' like the other entries");
      }
      if (!seen.emplace(name, i).second) {
        fail("entry '", name, "' appears twice");
      }
    }
    by_name_ = std::move(seen);
    if (by_name_.count(prefix_ + "data.pkl") == 0) {
      fail("no '", prefix_, "data.pkl' entry");
    }
  }

  /// An entry's content: its bytes in the file, or for a deflated entry
  /// its inflated bytes (kept until the check ends).
  const unsigned char* content(const ArchiveEntry& e) {
    if (e.method == 0) {
      return p_ + e.data_offset;
    }
    auto found = inflated_.find(e.name);
    if (found != inflated_.end()) {
      return found->second.data();
    }
    std::vector<unsigned char> out(static_cast<size_t>(e.size) + 1);
    z_stream zs{};
    if (inflateInit2(&zs, -15) != Z_OK) {
      fail("cannot start inflating entry '", e.name, "'");
    }
    uint64_t in_done = 0;
    uint64_t out_done = 0;
    int rc = Z_OK;
    while (rc == Z_OK) {
      const uint64_t in_chunk =
          std::min<uint64_t>(e.stored_size - in_done, 1u << 30);
      const uint64_t out_chunk =
          std::min<uint64_t>(out.size() - out_done, 1u << 30);
      zs.next_in = const_cast<unsigned char*>(p_ + e.data_offset + in_done);
      zs.avail_in = static_cast<uInt>(in_chunk);
      zs.next_out = out.data() + out_done;
      zs.avail_out = static_cast<uInt>(out_chunk);
      rc = inflate(&zs, Z_NO_FLUSH);
      in_done += in_chunk - zs.avail_in;
      out_done += out_chunk - zs.avail_out;
      if (rc == Z_BUF_ERROR || (rc == Z_OK && out_done == out.size())) {
        break;
      }
    }
    inflateEnd(&zs);
    if (rc != Z_STREAM_END || in_done != e.stored_size || out_done != e.size) {
      fail("entry '", e.name, "' does not inflate to its ", e.size, " bytes");
    }
    return inflated_.emplace(e.name, std::move(out)).first->second.data();
  }

  uint32_t crc_of(const ArchiveEntry& e) {
    const unsigned char* d = content(e);
    uLong crc = crc32(0L, Z_NULL, 0);
    uint64_t done = 0;
    while (done < e.size) {
      const uint64_t chunk = std::min<uint64_t>(e.size - done, 1u << 30);
      crc = crc32(crc, d + done, static_cast<uInt>(chunk));
      done += chunk;
    }
    return static_cast<uint32_t>(crc);
  }

  void check_version(const ArchiveEntry& e) {
    const unsigned char* d = content(e);
    uint64_t digits = e.size;
    if (digits > 0 && d[digits - 1] == '\n') {
      --digits;
    }
    bool ok = digits >= 1 && digits <= 18;
    for (uint64_t i = 0; ok && i < digits; ++i) {
      ok = d[i] >= '0' && d[i] <= '9';
    }
    if (!ok) {
      fail("entry '", e.name, "' is not a version number");
    }
  }

  void check_source(const ArchiveEntry& e) {
    const unsigned char* d = content(e);
    for (uint64_t i = 0; i < e.size; ++i) {
      const unsigned char c = d[i];
      if (c < 0x20 && c != '\n' && c != '\r' && c != '\t') {
        fail(
            "entry '",
            e.name,
            "' is not text (byte ",
            hex(c),
            " at offset ",
            i,
            ")");
      }
    }
  }

  // --------------------------------------------------------------- pickle

  enum class Kind {
    kNone,
    kBool,
    kInt,
    kFloat,
    kStr,
    kTuple,
    kList,
    kDict,
    kStorage,
    kTensor,
    kDevice,
    kObject,
    kGlobal,
    kScalarType,
  };
  enum class Global {
    kRebuildTensor,
    kRestoreTypeTag,
    kIntList,
    kDoubleList,
    kBoolList,
    kTensorList,
    kOrderedDict,
    kDevice,
    kClass,
  };
  static uint32_t bit(Kind k) {
    return 1u << static_cast<int>(k);
  }
  static bool is_container(Kind k) {
    return k == Kind::kTuple || k == Kind::kList || k == Kind::kDict ||
           k == Kind::kObject;
  }

  struct Value;
  using Ref = std::shared_ptr<Value>;
  struct Value {
    Kind kind = Kind::kNone;
    int64_t i = 0; // int; global kind; scalar type item size; storage numel
    int64_t itemsize = 0;     // storage
    std::string s;            // str
    std::vector<Ref> items;   // tuple
    uint32_t key_kinds = 0;   // dict keys, list elements
    uint32_t value_kinds = 0; // dict values
    int depth = 0;
    bool has_parent = false;
  };

  struct Walk {
    const ArchiveEntry* entry = nullptr;
    const unsigned char* data = nullptr;
    std::string storage_dir;
    std::vector<Ref> stack;
    std::vector<size_t> marks;
    std::vector<Ref> memo;
    uint64_t pos = 0;
    uint64_t op_at = 0;
    int64_t values = 0;
  };

  template <typename... Args>
  [[noreturn]] void pfail(const Walk& w, const Args&... args) const {
    fail("pickle '", w.entry->name, "' at offset ", w.op_at, ": ", args...);
  }

  Ref make(Walk& w, Kind k) const {
    if (++w.values > kArchiveMaxPickleValues) {
      pfail(w, "more than ", kArchiveMaxPickleValues, " values");
    }
    auto v = std::make_shared<Value>();
    v->kind = k;
    return v;
  }

  const unsigned char* pbytes(Walk& w, uint64_t len) const {
    if (len > w.entry->size - w.pos) {
      pfail(w, "an argument of ", len, " bytes runs past the end of the entry");
    }
    const unsigned char* d = w.data + w.pos;
    w.pos += len;
    return d;
  }

  /// A GLOBAL's module or name: up to the newline, at most 256 characters of
  /// [A-Za-z0-9_.].
  std::string pline(Walk& w) const {
    std::string out;
    while (true) {
      const unsigned char c = *pbytes(w, 1);
      if (c == '\n') {
        break;
      }
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9') || c == '_' || c == '.';
      if (!ok || out.size() >= 256) {
        pfail(w, "a GLOBAL name that is not an identifier");
      }
      out.push_back(static_cast<char>(c));
    }
    if (out.empty()) {
      pfail(w, "an empty GLOBAL name");
    }
    return out;
  }

  Ref pop(Walk& w) const {
    if (w.stack.empty()) {
      pfail(w, "the stack is empty");
    }
    if (!w.marks.empty() && w.marks.back() > w.stack.size() - 1) {
      pfail(w, "an item below the last MARK is consumed");
    }
    Ref v = std::move(w.stack.back());
    w.stack.pop_back();
    return v;
  }

  size_t pop_mark(Walk& w) const {
    if (w.marks.empty()) {
      pfail(w, "no MARK to close");
    }
    const size_t start = w.marks.back();
    w.marks.pop_back();
    if (start > w.stack.size()) {
      pfail(w, "a MARK above the top of the stack");
    }
    return start;
  }

  /// Records that `child` now lives inside `parent` (which must still be
  /// open for changes): a container cannot change once placed, so no cycle
  /// can form, and the nesting depth recorded is exact.
  void adopt(Walk& w, Value& parent, const Ref& child) const {
    if (child.get() == &parent) {
      pfail(w, "a container placed inside itself");
    }
    if (is_container(child->kind)) {
      // Closed from now on; it may still be shared (memo), which cannot
      // form a cycle since no container with a parent changes again.
      child->has_parent = true;
    }
    parent.depth = std::max(parent.depth, child->depth + 1);
    if (parent.depth > kArchiveMaxDepth) {
      pfail(w, "containers nested deeper than ", kArchiveMaxDepth);
    }
  }

  static bool hashable(Kind k) {
    return k == Kind::kStr || k == Kind::kInt || k == Kind::kBool ||
           k == Kind::kFloat;
  }

  void walk_pickle(const ArchiveEntry& e, const std::string& storage_dir) {
    if (e.size > kArchiveMaxPickleBytes) {
      fail(
          "pickle '",
          e.name,
          "' has ",
          e.size,
          " bytes, more than the ",
          kArchiveMaxPickleBytes,
          " accepted");
    }
    Walk w;
    w.entry = &e;
    w.data = content(e);
    w.storage_dir = storage_dir;
    const unsigned char* proto = pbytes(w, 2);
    if (proto[0] != 0x80 || proto[1] != 2) {
      pfail(w, "expected PROTO 2 at the start");
    }
    while (true) {
      w.op_at = w.pos;
      const unsigned char op = *pbytes(w, 1);
      if (op == '.') { // STOP
        if (w.pos != e.size) {
          pfail(w, "STOP before the end of the entry");
        }
        if (w.stack.size() != 1 || !w.marks.empty()) {
          pfail(
              w,
              "STOP with ",
              w.stack.size(),
              " items and ",
              w.marks.size(),
              " marks left (expected 1 and 0)");
        }
        return;
      }
      step(w, op);
    }
  }

  void push_int(Walk& w, int64_t v) const {
    auto r = make(w, Kind::kInt);
    r->i = v;
    w.stack.push_back(std::move(r));
  }

  void step(Walk& w, unsigned char op) const {
    switch (op) {
      case '(': // MARK
        w.marks.push_back(w.stack.size());
        return;
      case ']': // EMPTY_LIST
        w.stack.push_back(make(w, Kind::kList));
        return;
      case ')': // EMPTY_TUPLE
        w.stack.push_back(make(w, Kind::kTuple));
        return;
      case '}': // EMPTY_DICT
        w.stack.push_back(make(w, Kind::kDict));
        return;
      case 'N': // NONE
        w.stack.push_back(make(w, Kind::kNone));
        return;
      case 0x88:   // NEWTRUE
      case 0x89: { // NEWFALSE
        auto r = make(w, Kind::kBool);
        r->i = op == 0x88 ? 1 : 0;
        w.stack.push_back(std::move(r));
        return;
      }
      case 'K': // BININT1
        push_int(w, *pbytes(w, 1));
        return;
      case 'M': { // BININT2
        const unsigned char* d = pbytes(w, 2);
        push_int(w, d[0] | (d[1] << 8));
        return;
      }
      case 'J': { // BININT
        const unsigned char* d = pbytes(w, 4);
        uint32_t v = 0;
        for (int k = 3; k >= 0; --k) {
          v = (v << 8) | d[k];
        }
        push_int(w, static_cast<int32_t>(v));
        return;
      }
      case 0x8a: { // LONG1: LibTorch reads only 8-byte longs
        if (*pbytes(w, 1) != 8) {
          pfail(w, "a LONG1 that is not 8 bytes long");
        }
        const unsigned char* d = pbytes(w, 8);
        uint64_t v = 0;
        for (int k = 7; k >= 0; --k) {
          v = (v << 8) | d[k];
        }
        push_int(w, static_cast<int64_t>(v));
        return;
      }
      case 'G': // BINFLOAT
        pbytes(w, 8);
        w.stack.push_back(make(w, Kind::kFloat));
        return;
      case 'X': { // BINUNICODE
        const unsigned char* d = pbytes(w, 4);
        const uint64_t len = static_cast<uint64_t>(d[0]) | (d[1] << 8) |
                             (d[2] << 16) | (static_cast<uint64_t>(d[3]) << 24);
        const unsigned char* s = pbytes(w, len);
        auto r = make(w, Kind::kStr);
        r->s.assign(reinterpret_cast<const char*>(s), len);
        w.stack.push_back(std::move(r));
        return;
      }
      case 'q':   // BINPUT
      case 'r': { // LONG_BINPUT
        uint64_t id = 0;
        if (op == 'q') {
          id = *pbytes(w, 1);
        } else {
          const unsigned char* d = pbytes(w, 4);
          id = static_cast<uint64_t>(d[0]) | (d[1] << 8) | (d[2] << 16) |
               (static_cast<uint64_t>(d[3]) << 24);
        }
        if (w.stack.empty()) {
          pfail(w, "a memo put with an empty stack");
        }
        if (id > w.memo.size()) {
          pfail(
              w,
              "memo index ",
              id,
              " skips past the ",
              w.memo.size(),
              " memo entries put so far");
        }
        if (id == w.memo.size()) {
          w.memo.push_back(w.stack.back());
        } else {
          w.memo[id] = w.stack.back();
        }
        return;
      }
      case 'h':   // BINGET
      case 'j': { // LONG_BINGET
        uint64_t id = 0;
        if (op == 'h') {
          id = *pbytes(w, 1);
        } else {
          const unsigned char* d = pbytes(w, 4);
          id = static_cast<uint64_t>(d[0]) | (d[1] << 8) | (d[2] << 16) |
               (static_cast<uint64_t>(d[3]) << 24);
        }
        if (id >= w.memo.size()) {
          pfail(
              w,
              "memo index ",
              id,
              " but only ",
              w.memo.size(),
              " memo entries were put");
        }
        w.stack.push_back(w.memo[id]);
        return;
      }
      case 't': { // TUPLE
        const size_t start = pop_mark(w);
        auto r = make(w, Kind::kTuple);
        for (size_t k = start; k < w.stack.size(); ++k) {
          adopt(w, *r, w.stack[k]);
          r->items.push_back(w.stack[k]);
        }
        w.stack.resize(start);
        w.stack.push_back(std::move(r));
        return;
      }
      case 0x85:   // TUPLE1
      case 0x86:   // TUPLE2
      case 0x87: { // TUPLE3
        const size_t k = static_cast<size_t>(op - 0x84);
        if (w.stack.size() < k ||
            (!w.marks.empty() && w.marks.back() > w.stack.size() - k)) {
          pfail(w, "TUPLE", k, " needs ", k, " items above the last MARK");
        }
        auto r = make(w, Kind::kTuple);
        for (size_t q = w.stack.size() - k; q < w.stack.size(); ++q) {
          adopt(w, *r, w.stack[q]);
          r->items.push_back(w.stack[q]);
        }
        w.stack.resize(w.stack.size() - k);
        w.stack.push_back(std::move(r));
        return;
      }
      case 'e': { // APPENDS
        const size_t start = pop_mark(w);
        if (start == 0 || w.stack[start - 1]->kind != Kind::kList ||
            w.stack[start - 1]->has_parent) {
          pfail(w, "APPENDS without an open list below the MARK");
        }
        Value& list = *w.stack[start - 1];
        for (size_t k = start; k < w.stack.size(); ++k) {
          adopt(w, list, w.stack[k]);
          list.key_kinds |= bit(w.stack[k]->kind);
        }
        w.stack.resize(start);
        return;
      }
      case 'u': { // SETITEMS
        const size_t start = pop_mark(w);
        if (start == 0 || w.stack[start - 1]->kind != Kind::kDict ||
            w.stack[start - 1]->has_parent) {
          pfail(w, "SETITEMS without an open dict below the MARK");
        }
        if ((w.stack.size() - start) % 2 != 0) {
          pfail(w, "SETITEMS with an odd number of items");
        }
        Value& dict = *w.stack[start - 1];
        for (size_t k = start; k < w.stack.size(); k += 2) {
          set_item(w, dict, w.stack[k], w.stack[k + 1]);
        }
        w.stack.resize(start);
        return;
      }
      case 's': { // SETITEM
        const size_t size = w.stack.size();
        if (size < 3 || w.stack[size - 3]->kind != Kind::kDict ||
            w.stack[size - 3]->has_parent ||
            (!w.marks.empty() && w.marks.back() > size - 2)) {
          pfail(w, "SETITEM without an open dict, a key and a value");
        }
        set_item(w, *w.stack[size - 3], w.stack[size - 2], w.stack[size - 1]);
        w.stack.resize(size - 2);
        return;
      }
      case 'c': { // GLOBAL
        const std::string module = pline(w);
        const std::string name = pline(w);
        global(w, module, name);
        return;
      }
      case 0x81: { // NEWOBJ: LibTorch drops the arguments
        Ref args = pop(w);
        if (args->kind != Kind::kTuple || w.stack.empty() ||
            w.stack.back()->kind != Kind::kGlobal ||
            static_cast<Global>(w.stack.back()->i) != Global::kClass) {
          pfail(w, "NEWOBJ without a class and an argument tuple");
        }
        return;
      }
      case 'R':   // REDUCE
      case 'b': { // BUILD
        Ref arg = pop(w);
        Ref fn = pop(w);
        if (fn->kind != Kind::kGlobal) {
          pfail(
              w,
              op == 'R' ? "REDUCE" : "BUILD",
              " applied to something that is not a supported global");
        }
        w.stack.push_back(apply(w, static_cast<Global>(fn->i), arg));
        return;
      }
      case 'Q': { // BINPERSID
        w.stack.push_back(persistent(w, pop(w)));
        return;
      }
      default:
        pfail(
            w,
            "opcode ",
            hex(op),
            " is not one that LibTorch's unpickler supports");
    }
  }

  void set_item(Walk& w, Value& dict, const Ref& key, const Ref& value) const {
    if (!hashable(key->kind)) {
      pfail(w, "a dict key that is not a string, number or bool");
    }
    adopt(w, dict, key);
    adopt(w, dict, value);
    dict.key_kinds |= bit(key->kind);
    dict.value_kinds |= bit(value->kind);
  }

  void global(
      Walk& w, const std::string& module, const std::string& name) const {
    auto g = make(w, Kind::kGlobal);
    auto set = [&](Global k) { g->i = static_cast<int64_t>(k); };
    if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
      set(Global::kRebuildTensor);
    } else if (module == "torch.jit._pickle" && name == "restore_type_tag") {
      set(Global::kRestoreTypeTag);
    } else if (module == "torch.jit._pickle" && name == "build_intlist") {
      set(Global::kIntList);
    } else if (module == "torch.jit._pickle" && name == "build_doublelist") {
      set(Global::kDoubleList);
    } else if (module == "torch.jit._pickle" && name == "build_boollist") {
      set(Global::kBoolList);
    } else if (module == "torch.jit._pickle" && name == "build_tensorlist") {
      set(Global::kTensorList);
    } else if (module == "collections" && name == "OrderedDict") {
      set(Global::kOrderedDict);
    } else if (module == "torch" && name == "device") {
      set(Global::kDevice);
    } else if (module == "torch") {
      static const std::pair<const char*, int64_t> kStorages[] = {
          {"ByteStorage", 1},
          {"CharStorage", 1},
          {"ShortStorage", 2},
          {"IntStorage", 4},
          {"LongStorage", 8},
          {"HalfStorage", 2},
          {"FloatStorage", 4},
          {"DoubleStorage", 8},
          {"ComplexFloatStorage", 8},
          {"ComplexDoubleStorage", 16},
          {"BoolStorage", 1},
          {"BFloat16Storage", 2},
      };
      for (const auto& [storage, size] : kStorages) {
        if (name == storage) {
          auto t = make(w, Kind::kScalarType);
          t->i = size;
          w.stack.push_back(std::move(t));
          return;
        }
      }
      pfail(w, "unsupported global 'torch.", name, "'");
    } else if (module == "__torch__" || module.rfind("__torch__.", 0) == 0) {
      set(Global::kClass);
    } else {
      pfail(w, "unsupported global '", module, ".", name, "'");
    }
    w.stack.push_back(std::move(g));
  }

  /// The element kinds a type name allows ("int" -> Int), or 0 when the name
  /// is not a simple type.
  static uint32_t kinds_of(const std::string& t) {
    if (t == "int") {
      return bit(Kind::kInt);
    }
    if (t == "float") {
      return bit(Kind::kFloat);
    }
    if (t == "bool") {
      return bit(Kind::kBool);
    }
    if (t == "str") {
      return bit(Kind::kStr);
    }
    if (t == "Tensor") {
      return bit(Kind::kTensor);
    }
    return 0;
  }

  void check_type_tag(Walk& w, const Value& v, const std::string& t) const {
    int depth = 0;
    for (const char c : t) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9') || c == '_' || c == '.' ||
                      c == ',' || c == ' ' || c == '[' || c == ']';
      depth += c == '[' ? 1 : (c == ']' ? -1 : 0);
      if (!ok || depth < 0 || t.size() > 1024) {
        pfail(w, "a malformed type tag");
      }
    }
    if (depth != 0) {
      pfail(w, "a malformed type tag");
    }
    auto mismatch = [&] { pfail(w, "a ", t, " type tag on other content"); };
    if (t.rfind("Dict[", 0) == 0) {
      if (v.kind != Kind::kDict) {
        mismatch();
      }
      const std::string inner = t.substr(5, t.size() - 6);
      const size_t comma = inner.find(", ");
      if (comma != std::string::npos) {
        const uint32_t k = kinds_of(inner.substr(0, comma));
        const uint32_t val = kinds_of(inner.substr(comma + 2));
        if ((k != 0 && (v.key_kinds & ~k) != 0) ||
            (val != 0 && (v.value_kinds & ~val) != 0)) {
          mismatch();
        }
      }
    } else if (t.rfind("List[", 0) == 0) {
      if (v.kind != Kind::kList) {
        mismatch();
      }
      const uint32_t e = kinds_of(t.substr(5, t.size() - 6));
      if (e != 0 && (v.key_kinds & ~e) != 0) {
        mismatch();
      }
    } else {
      pfail(
          w,
          "a type tag '",
          t,
          "' on something that is not a list or "
          "dict");
    }
  }

  Ref apply(Walk& w, Global g, const Ref& arg) const {
    const auto& items = arg->items;
    switch (g) {
      case Global::kRebuildTensor:
        return rebuild_tensor(w, *arg);
      case Global::kRestoreTypeTag: {
        if (arg->kind != Kind::kTuple || items.size() != 2 ||
            items[1]->kind != Kind::kStr) {
          pfail(w, "restore_type_tag expects (value, type name)");
        }
        check_type_tag(w, *items[0], items[1]->s);
        return items[0];
      }
      case Global::kIntList:
      case Global::kDoubleList:
      case Global::kBoolList:
      case Global::kTensorList: {
        if (arg->kind != Kind::kTuple || items.size() != 1 ||
            items[0]->kind != Kind::kList) {
          pfail(w, "a typed list global expects (list,)");
        }
        const uint32_t allowed = g == Global::kIntList      ? bit(Kind::kInt)
                                 : g == Global::kDoubleList ? bit(Kind::kFloat)
                                 : g == Global::kBoolList   ? bit(Kind::kBool)
                                                          : bit(Kind::kTensor);
        if ((items[0]->key_kinds & ~allowed) != 0) {
          pfail(w, "a typed list whose elements have another type");
        }
        return items[0];
      }
      case Global::kOrderedDict:
        return make(w, Kind::kNone);
      case Global::kDevice: {
        if (arg->kind != Kind::kTuple || items.size() != 1 ||
            items[0]->kind != Kind::kStr || items[0]->s.empty() ||
            items[0]->s.size() > 32) {
          pfail(w, "torch.device expects (name,)");
        }
        for (const char c : items[0]->s) {
          if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == ':')) {
            pfail(w, "a malformed device name");
          }
        }
        return make(w, Kind::kDevice);
      }
      case Global::kClass: {
        if (arg->kind != Kind::kDict ||
            (arg->key_kinds & ~bit(Kind::kStr)) != 0) {
          pfail(
              w,
              "an object whose state is not a dict of named "
              "attributes");
        }
        auto obj = make(w, Kind::kObject);
        adopt(w, *obj, arg);
        return obj;
      }
    }
    pfail(w, "an unknown global");
  }

  /// The non-negative ints of a tuple (a tensor's sizes or strides).
  std::vector<int64_t> int_tuple(
      Walk& w, const Ref& t, const char* what) const {
    if (t->kind != Kind::kTuple ||
        static_cast<int64_t>(t->items.size()) > kArchiveMaxDims) {
      pfail(
          w,
          "a tensor's ",
          what,
          " are not a tuple of at most ",
          kArchiveMaxDims,
          " ints");
    }
    std::vector<int64_t> out;
    for (const auto& v : t->items) {
      if (v->kind != Kind::kInt || v->i < 0) {
        pfail(w, "a tensor's ", what, " are not all ints >= 0");
      }
      out.push_back(v->i);
    }
    return out;
  }

  Ref rebuild_tensor(Walk& w, const Value& arg) const {
    const auto& it = arg.items;
    if (arg.kind != Kind::kTuple || it.size() < 6 || it.size() > 7 ||
        it[0]->kind != Kind::kStorage || it[1]->kind != Kind::kInt ||
        it[4]->kind != Kind::kBool) {
      pfail(
          w,
          "_rebuild_tensor_v2 expects (storage, offset, sizes, "
          "strides, requires_grad, hooks)");
    }
    const int64_t offset = it[1]->i;
    const std::vector<int64_t> sizes = int_tuple(w, it[2], "sizes");
    const std::vector<int64_t> strides = int_tuple(w, it[3], "strides");
    if (offset < 0 || sizes.size() != strides.size()) {
      pfail(
          w,
          "a tensor with offset ",
          offset,
          ", ",
          sizes.size(),
          " sizes and ",
          strides.size(),
          " strides");
    }
    // The last element the view touches must lie in its storage.
    bool empty = false;
    for (const int64_t s : sizes) {
      empty = empty || s == 0;
    }
    const int64_t numel = it[0]->i;
    if (!empty) {
      uint64_t last = static_cast<uint64_t>(offset);
      for (size_t d = 0; d < sizes.size(); ++d) {
        uint64_t span = 0;
        if (__builtin_mul_overflow(
                static_cast<uint64_t>(sizes[d] - 1),
                static_cast<uint64_t>(strides[d]),
                &span) ||
            __builtin_add_overflow(last, span, &last)) {
          pfail(w, "a tensor whose extent overflows");
        }
      }
      if (last >= static_cast<uint64_t>(numel)) {
        pfail(
            w,
            "a tensor that reaches element ",
            last,
            " of a storage of ",
            numel,
            " elements");
      }
    } else if (offset > numel) {
      pfail(
          w,
          "a tensor with offset ",
          offset,
          " past its storage of ",
          numel,
          " elements");
    }
    return make(w, Kind::kTensor);
  }

  Ref persistent(Walk& w, const Ref& id) const {
    if (w.storage_dir.empty()) {
      pfail(w, "a persistent id in a pickle that holds no tensors");
    }
    const auto& it = id->items;
    if (id->kind != Kind::kTuple || it.size() != 5 ||
        it[0]->kind != Kind::kStr || it[0]->s != "storage" ||
        it[1]->kind != Kind::kScalarType || it[2]->kind != Kind::kStr ||
        it[3]->kind != Kind::kStr || it[4]->kind != Kind::kInt ||
        it[4]->i < 0) {
      pfail(
          w,
          "a persistent id that is not ('storage', type, key, device, "
          "numel >= 0)");
    }
    for (const char c : it[3]->s) {
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == ':')) {
        pfail(w, "a malformed device name");
      }
    }
    if (it[3]->s.empty() || it[3]->s.size() > 32) {
      pfail(w, "a malformed device name");
    }
    const std::string& key = it[2]->s;
    for (const char c : key) {
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || c == '_')) {
        pfail(w, "a malformed storage key");
      }
    }
    const auto found = by_name_.find(w.storage_dir + key);
    if (key.empty() || found == by_name_.end()) {
      pfail(
          w,
          "a tensor stored in '",
          w.storage_dir,
          key,
          "', which the archive does not hold");
    }
    const ArchiveEntry& record = entries_[found->second];
    const int64_t itemsize = it[1]->i;
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(
            static_cast<uint64_t>(it[4]->i),
            static_cast<uint64_t>(itemsize),
            &bytes) ||
        bytes != record.size) {
      pfail(
          w,
          "a storage of ",
          it[4]->i,
          " elements of ",
          itemsize,
          " bytes in '",
          record.name,
          "', which holds ",
          record.size,
          " bytes");
    }
    auto r = make(w, Kind::kStorage);
    r->i = it[4]->i;
    r->itemsize = itemsize;
    return r;
  }

  const unsigned char* p_;
  uint64_t n_;
  std::string path_;
  std::string owner_;
  std::vector<ArchiveEntry> entries_;
  std::map<std::string, size_t> by_name_;
  std::map<std::string, std::vector<unsigned char>> inflated_;
  std::string prefix_;
};

/// Checks the `size` bytes of an archive read from `path` (see the top of
/// this file); a failure is a `c10::Error` naming `owner`, the path and what
/// is wrong.
inline void check_archive(
    const char* data,
    size_t size,
    const std::string& path,
    const std::string& owner) {
  ArchiveChecker(
      reinterpret_cast<const unsigned char*>(data), size, path, owner)
      .run();
}

/// Runs `f` (which parses an archive read from `path`) and turns whatever
/// escapes LibTorch's deserializer (`std::out_of_range`, `ErrorReport`,
/// `std::runtime_error`, `std::bad_alloc`, ...) into a `c10::Error` naming
/// `owner` and the path.
template <typename F>
auto archive_errors_named(
    const std::string& path, const std::string& owner, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const c10::Error& e) {
    TORCH_CHECK(
        false,
        owner,
        ": cannot load '",
        path,
        "': ",
        e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    TORCH_CHECK(
        false,
        owner,
        ": cannot load '",
        path,
        "': out of memory while reading it");
  } catch (const std::exception& e) {
    TORCH_CHECK(false, owner, ": cannot load '", path, "': ", e.what());
  }
  throw std::logic_error("unreachable");
}

/// Reads the archive at `path` (a regular file only), checks it with
/// `check_archive` and loads it into `archive`; every failure is a
/// `c10::Error` naming `owner` and the path.
inline void load_checked_archive(
    torch::serialize::InputArchive& archive,
    const std::string& path,
    const std::string& owner) {
  const std::vector<char> bytes = read_regular_file(path, owner);
  check_archive(bytes.data(), bytes.size(), path, owner);
  archive_errors_named(
      path, owner, [&] { archive.load_from(bytes.data(), bytes.size()); });
}

/// Writes `object.save(archive)` to `path` atomically: what every
/// component's `save(path)` does.
template <typename T>
void save_archive_file(
    const T& object, const std::string& path, const std::string& owner) {
  torch::serialize::OutputArchive archive;
  object.save(archive);
  std::ostringstream bytes;
  archive.save_to(bytes);
  write_file_atomic(path, bytes.str(), owner);
}

/// Loads `object` from the archive at `path` after `load_checked_archive`;
/// errors of `object.load(archive)` name the path: what every component's
/// `load(path)` does.
template <typename T>
void load_archive_file(
    T& object, const std::string& path, const std::string& owner) {
  torch::serialize::InputArchive archive;
  load_checked_archive(archive, path, owner);
  archive_errors_named(path, owner, [&] { object.load(archive); });
}

} // namespace detail
} // namespace dlcore
