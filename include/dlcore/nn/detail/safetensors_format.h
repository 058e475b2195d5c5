#pragma once

// The safetensors format: the dtype table, a header parser that checks every
// field as it reads it (a SAX handler, so that memory stays proportional to
// the header), the layout rules, dlcore's CRC-32 entry, and the writer. The
// public API is in nn/safetensors.h; docs/safetensors.md describes the format.
//
// Layout of a file:
//   8 bytes    N, the header's length, unsigned little-endian
//   N bytes    a UTF-8 JSON object:
//                {"__metadata__": {string: string, ...},          (optional)
//                 name: {"dtype": "F32", "shape": [2, 3],
//                        "data_offsets": [begin, end]}, ...}
//              padded with spaces (the reference writer pads N to a
//              multiple of 8, so that the data area starts aligned)
//   the rest   the data area: every tensor's bytes, row-major, little-endian;
//              data_offsets are relative to its start, and the tensors cover
//              it exactly, without gaps or overlaps.

#include <dlcore/detail/regular_file.h>

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>
#include <torch/types.h>

#include <zlib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
static_assert(
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
    "dlcore's safetensors reader and writer copy tensor bytes as they are in "
    "memory, which matches the format only on a little-endian machine");
#endif

namespace dlcore {
namespace detail {

/// The largest header a reader accepts, in bytes (the reference
/// implementation's bound: a real header is a few hundred kilobytes).
constexpr uint64_t kSafetensorsMaxHeaderBytes = 100000000;
/// The most dimensions a tensor entry may have.
constexpr std::size_t kSafetensorsMaxDims = 64;
/// The `__metadata__` key of dlcore's checksums.
constexpr const char* kSafetensorsCrcKey = "dlcore.crc32";

/// A safetensors dtype that LibTorch holds.
struct SafetensorsDtype {
  /// The name in the header.
  const char* name;
  c10::ScalarType type;
  uint64_t itemsize;
  /// The position in the reference implementation's dtype order (by
  /// increasing alignment); its writer stores larger ones first.
  int order;
};

inline constexpr std::array<SafetensorsDtype, 10> kSafetensorsDtypes{{
    {"BOOL", c10::ScalarType::Bool, 1, 0},
    {"U8", c10::ScalarType::Byte, 1, 1},
    {"I8", c10::ScalarType::Char, 1, 2},
    {"I16", c10::ScalarType::Short, 2, 3},
    {"F16", c10::ScalarType::Half, 2, 4},
    {"BF16", c10::ScalarType::BFloat16, 2, 5},
    {"I32", c10::ScalarType::Int, 4, 6},
    {"F32", c10::ScalarType::Float, 4, 7},
    {"F64", c10::ScalarType::Double, 8, 8},
    {"I64", c10::ScalarType::Long, 8, 9},
}};

/// Safetensors dtypes without a LibTorch type that dlcore reads.
inline constexpr std::array<const char*, 10> kSafetensorsUnsupportedDtypes{{
    "U16",
    "U32",
    "U64",
    "F8_E5M2",
    "F8_E4M3",
    "F8_E8M0",
    "F4",
    "F6_E2M3",
    "F6_E3M2",
    "C64",
}};

inline const SafetensorsDtype* safetensors_dtype(const std::string& name) {
  for (const auto& d : kSafetensorsDtypes) {
    if (name == d.name) {
      return &d;
    }
  }
  return nullptr;
}

inline const SafetensorsDtype* safetensors_dtype(c10::ScalarType type) {
  for (const auto& d : kSafetensorsDtypes) {
    if (type == d.type) {
      return &d;
    }
  }
  return nullptr;
}

inline std::string safetensors_dtype_list() {
  std::string s;
  for (const auto& d : kSafetensorsDtypes) {
    s += (s.empty() ? "" : ", ") + std::string(d.name);
  }
  return s;
}

/// One tensor entry of a header.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

/// A parsed header.
struct SafetensorsHeader {
  /// In header order until `check_safetensors_layout` sorts them by offset.
  std::vector<SafetensorsEntry> entries;
  std::map<std::string, std::string> metadata;
};

/// `[2, 3]` for error messages.
inline std::string safetensors_shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    s += (i ? ", " : "") + std::to_string(shape[i]);
  }
  return s + "]";
}

/// A string as JSON writes it (quoted and escaped), for error messages;
/// bytes that are not UTF-8 are shown as U+FFFD.
inline std::string safetensors_quoted(const std::string& s) {
  return nlohmann::json(s).dump(
      -1, ' ', false, nlohmann::json::error_handler_t::replace);
}

/// SAX handler that builds a `SafetensorsHeader` and stops at the first
/// value that does not fit the format's schema, with a message naming the
/// entry. Nesting deeper than the schema stops it at once, so memory stays
/// proportional to the header.
class SafetensorsHeaderSax : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit SafetensorsHeaderSax(SafetensorsHeader& out) : out_(out) {}

  /// The first problem found; empty if the header was accepted.
  const std::string& error() const {
    return error_;
  }

  bool null() override {
    if (state_ == State::kMetadataValue) {
      state_ = State::kTop;
      return true;
    }
    return unexpected("null");
  }
  bool boolean(bool) override {
    return unexpected("a boolean");
  }
  bool number_integer(number_integer_t value) override {
    if (state_ == State::kShape) {
      return fail(
          entry() + ": shape has a negative dimension (" +
          std::to_string(value) + ")");
    }
    if (state_ == State::kOffsets) {
      return fail(
          entry() + ": data_offsets has a negative offset (" +
          std::to_string(value) + ")");
    }
    return unexpected("a number");
  }
  bool number_unsigned(number_unsigned_t value) override {
    if (state_ == State::kShape) {
      if (entry_.shape.size() == kSafetensorsMaxDims) {
        return fail(
            entry() + ": shape has more than " +
            std::to_string(kSafetensorsMaxDims) + " dimensions");
      }
      if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return fail(
            entry() + ": shape dimension " + std::to_string(value) +
            " exceeds int64");
      }
      entry_.shape.push_back(static_cast<int64_t>(value));
      return true;
    }
    if (state_ == State::kOffsets) {
      if (offsets_ == 2) {
        return fail(entry() + ": data_offsets has more than 2 numbers");
      }
      (offsets_ == 0 ? entry_.begin : entry_.end) = value;
      ++offsets_;
      return true;
    }
    return unexpected("a number");
  }
  bool number_float(number_float_t, const string_t& text) override {
    if (state_ == State::kShape || state_ == State::kOffsets) {
      return fail(
          entry() + ": " +
          (state_ == State::kShape ? "shape" : "data_offsets") +
          " must hold non-negative integers, but has " + text);
    }
    return unexpected("a number");
  }
  bool string(string_t& value) override {
    if (state_ == State::kMetadataString) {
      out_.metadata[key_] = value;
      state_ = State::kMetadata;
      return true;
    }
    if (state_ == State::kDtype) {
      entry_.dtype = value;
      state_ = State::kEntry;
      return true;
    }
    return unexpected("a string");
  }
  bool binary(binary_t&) override {
    return unexpected("binary data");
  }
  bool start_object(std::size_t) override {
    switch (state_) {
      case State::kRoot:
        state_ = State::kTop;
        return true;
      case State::kMetadataValue:
        state_ = State::kMetadata;
        return true;
      case State::kEntryValue:
        state_ = State::kEntry;
        fields_.clear();
        return true;
      default:
        return unexpected("an object");
    }
  }
  bool key(string_t& key) override {
    if (state_ == State::kTop) {
      if (!top_keys_.insert(key).second) {
        return fail(
            "the header has the key " + safetensors_quoted(key) +
            " twice (duplicate keys are not allowed)");
      }
      if (key == "__metadata__") {
        state_ = State::kMetadataValue;
      } else {
        entry_ = SafetensorsEntry{};
        entry_.name = key;
        offsets_ = 0;
        state_ = State::kEntryValue;
      }
      return true;
    }
    if (state_ == State::kMetadata) {
      if (out_.metadata.count(key)) {
        return fail(
            "__metadata__ has the key " + safetensors_quoted(key) +
            " twice (duplicate keys are not allowed)");
      }
      key_ = key;
      state_ = State::kMetadataString;
      return true;
    }
    if (state_ == State::kEntry) {
      if (!fields_.insert(key).second) {
        return fail(
            entry() + ": the field " + safetensors_quoted(key) +
            " appears twice");
      }
      if (key == "dtype") {
        state_ = State::kDtype;
      } else if (key == "shape") {
        state_ = State::kShapeValue;
      } else if (key == "data_offsets") {
        state_ = State::kOffsetsValue;
      } else {
        return fail(
            entry() + ": unknown field " + safetensors_quoted(key) +
            " (expected dtype, shape and data_offsets)");
      }
      return true;
    }
    return unexpected("a key");
  }
  bool end_object() override {
    if (state_ == State::kTop) {
      state_ = State::kDone;
      return true;
    }
    if (state_ == State::kMetadata) {
      state_ = State::kTop;
      return true;
    }
    if (state_ == State::kEntry) {
      for (const char* field : {"dtype", "shape", "data_offsets"}) {
        if (!fields_.count(field)) {
          return fail(entry() + ": the field \"" + field + "\" is missing");
        }
      }
      out_.entries.push_back(std::move(entry_));
      state_ = State::kTop;
      return true;
    }
    return unexpected("the end of an object");
  }
  bool start_array(std::size_t) override {
    if (state_ == State::kShapeValue) {
      state_ = State::kShape;
      return true;
    }
    if (state_ == State::kOffsetsValue) {
      state_ = State::kOffsets;
      return true;
    }
    return unexpected("an array");
  }
  bool end_array() override {
    if (state_ == State::kShape) {
      state_ = State::kEntry;
      return true;
    }
    if (state_ == State::kOffsets) {
      if (offsets_ != 2) {
        return fail(
            entry() +
            ": data_offsets must hold 2 numbers [begin, end], but "
            "has " +
            std::to_string(offsets_));
      }
      state_ = State::kEntry;
      return true;
    }
    return unexpected("the end of an array");
  }
  bool parse_error(
      std::size_t position,
      const std::string&,
      const nlohmann::detail::exception& e) override {
    return fail(
        "the header is not valid JSON (at byte " + std::to_string(position) +
        " of the header: " + e.what() + ")");
  }

 private:
  enum class State {
    kRoot,
    kTop,
    kMetadataValue,
    kMetadata,
    kMetadataString,
    kEntryValue,
    kEntry,
    kDtype,
    kShapeValue,
    kShape,
    kOffsetsValue,
    kOffsets,
    kDone,
  };

  std::string entry() const {
    return "entry " + safetensors_quoted(entry_.name);
  }

  bool fail(const std::string& message) {
    if (error_.empty()) {
      error_ = message;
    }
    return false;
  }

  /// `got` where the schema expects something else.
  bool unexpected(const std::string& got) {
    switch (state_) {
      case State::kRoot:
        return fail("the header must be a JSON object, but is " + got);
      case State::kMetadataValue:
        return fail("__metadata__ must be an object of strings, but is " + got);
      case State::kMetadataString:
        return fail(
            "__metadata__ value of " + safetensors_quoted(key_) +
            " must be a string, but is " + got);
      case State::kEntryValue:
        return fail(
            entry() +
            " must be an object {dtype, shape, data_offsets}, but "
            "is " +
            got);
      case State::kDtype:
        return fail(entry() + ": dtype must be a string, but is " + got);
      case State::kShapeValue:
      case State::kShape:
        return fail(
            entry() +
            ": shape must be an array of non-negative integers, but has " +
            got);
      case State::kOffsetsValue:
      case State::kOffsets:
        return fail(
            entry() +
            ": data_offsets must be an array of 2 non-negative integers, but "
            "has " +
            got);
      default:
        return fail("unexpected " + got + " in the header");
    }
  }

  SafetensorsHeader& out_;
  State state_ = State::kRoot;
  std::set<std::string> top_keys_;
  std::set<std::string> fields_;
  SafetensorsEntry entry_;
  std::size_t offsets_ = 0;
  std::string key_;
  std::string error_;
};

/// Parses the `size` header bytes at `data`; a `c10::Error` prefixed with
/// `where` names the first problem.
inline SafetensorsHeader parse_safetensors_header(
    const char* data, std::size_t size, const std::string& where) {
  // nlohmann/json's lexer takes a NUL byte for the end of the input, which
  // would let anything after it pass; JSON has no place for one.
  const void* nul = std::memchr(data, 0, size);
  TORCH_CHECK(
      nul == nullptr,
      where,
      ": the header is not valid JSON (a NUL byte at byte ",
      static_cast<const char*>(nul) - data,
      " of the header)");
  SafetensorsHeader header;
  SafetensorsHeaderSax sax(header);
  bool ok = false;
  std::string thrown;
  try {
    ok = nlohmann::json::sax_parse(data, data + size, &sax);
  } catch (const nlohmann::json::exception& e) {
    thrown = e.what();
  }
  TORCH_CHECK(
      thrown.empty(), where, ": the header is not valid JSON (", thrown, ")");
  TORCH_CHECK(
      ok && sax.error().empty(),
      where,
      ": ",
      sax.error().empty() ? std::string("the header is not valid JSON")
                          : sax.error());
  return header;
}

/// `a * b`, or false on uint64 overflow.
inline bool safetensors_mul_u64(uint64_t a, uint64_t b, uint64_t& out) {
  return !__builtin_mul_overflow(a, b, &out);
}

/// Checks every entry against the format (known dtype, a shape whose size
/// and strides fit int64, data_offsets that match shape times item size)
/// and the entries together against the data area of `data_size` bytes
/// (covered exactly, in offset order, with no gap and no overlap); then
/// sorts the entries by offset.
inline void check_safetensors_layout(
    SafetensorsHeader& header, uint64_t data_size, const std::string& where) {
  for (const auto& e : header.entries) {
    const std::string entry = "entry " + safetensors_quoted(e.name);
    const SafetensorsDtype* dtype = safetensors_dtype(e.dtype);
    if (dtype == nullptr) {
      const bool known = std::find_if(
                             kSafetensorsUnsupportedDtypes.begin(),
                             kSafetensorsUnsupportedDtypes.end(),
                             [&](const char* n) { return e.dtype == n; }) !=
                         kSafetensorsUnsupportedDtypes.end();
      TORCH_CHECK(
          false,
          where,
          ": ",
          entry,
          ": dtype ",
          safetensors_quoted(e.dtype),
          known ? " has no LibTorch type that dlcore reads"
                : " is not a safetensors dtype",
          " (expected one of ",
          safetensors_dtype_list(),
          ")");
    }
    // numel, and the largest stride LibTorch will compute (sizes of 0
    // count as 1 there), must both fit int64.
    uint64_t numel = 1;
    uint64_t span = 1;
    bool fits = true;
    for (const int64_t d : e.shape) {
      const uint64_t u = static_cast<uint64_t>(d);
      fits = fits && safetensors_mul_u64(numel, u, numel) &&
             safetensors_mul_u64(span, std::max<uint64_t>(u, 1), span);
    }
    uint64_t bytes = 0;
    fits = fits &&
           span <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
           safetensors_mul_u64(numel, dtype->itemsize, bytes);
    TORCH_CHECK(
        fits,
        where,
        ": ",
        entry,
        ": shape ",
        safetensors_shape_string(e.shape),
        " is too large (its size overflows int64)");
    TORCH_CHECK(
        e.begin <= e.end,
        where,
        ": ",
        entry,
        ": data_offsets [",
        e.begin,
        ", ",
        e.end,
        "] end before they begin");
    TORCH_CHECK(
        e.end - e.begin == bytes,
        where,
        ": ",
        entry,
        ": data_offsets [",
        e.begin,
        ", ",
        e.end,
        "] span ",
        e.end - e.begin,
        " bytes, but shape ",
        safetensors_shape_string(e.shape),
        " of ",
        e.dtype,
        " needs ",
        bytes);
    TORCH_CHECK(
        e.end <= data_size,
        where,
        ": ",
        entry,
        ": data_offsets [",
        e.begin,
        ", ",
        e.end,
        "] end beyond the data area (",
        data_size,
        " bytes)");
  }
  std::sort(
      header.entries.begin(),
      header.entries.end(),
      [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
        if (a.begin != b.begin) {
          return a.begin < b.begin;
        }
        if (a.end != b.end) {
          return a.end < b.end;
        }
        return a.name < b.name;
      });
  uint64_t covered = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const auto& e : header.entries) {
    if (e.begin < covered) {
      TORCH_CHECK(
          false,
          where,
          ": entry ",
          safetensors_quoted(e.name),
          ": data_offsets [",
          e.begin,
          ", ",
          e.end,
          "] overlap entry ",
          safetensors_quoted(previous->name),
          " [",
          previous->begin,
          ", ",
          previous->end,
          "]");
    }
    TORCH_CHECK(
        e.begin == covered,
        where,
        ": entry ",
        safetensors_quoted(e.name),
        ": data_offsets [",
        e.begin,
        ", ",
        e.end,
        "] leave a gap of ",
        e.begin - covered,
        " bytes after offset ",
        covered,
        " (the tensors must cover the data area without gaps)");
    covered = e.end;
    previous = &e;
  }
  TORCH_CHECK(
      covered == data_size,
      where,
      ": the data area has ",
      data_size,
      " bytes, but the tensors cover only ",
      covered,
      " (trailing bytes after the last tensor)");
}

/// CRC-32 (zlib) of `n` bytes, continuing from `crc`.
inline uint32_t safetensors_crc32(uint32_t crc, const void* data, uint64_t n) {
  const auto* p = static_cast<const Bytef*>(data);
  while (n > 0) {
    const uInt chunk = static_cast<uInt>(std::min<uint64_t>(n, 1u << 30));
    crc = static_cast<uint32_t>(::crc32(crc, p, chunk));
    p += chunk;
    n -= chunk;
  }
  return crc;
}

inline void safetensors_append_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
}

inline void safetensors_append_str(std::string& out, const std::string& s) {
  safetensors_append_u64(out, s.size());
  out += s;
}

/// CRC-32 of the header's content without dlcore's checksum entry, in a
/// canonical form that does not depend on JSON spelling or whitespace
/// (every integer is 8 bytes little-endian; a string is its byte length,
/// then its UTF-8 bytes):
///   the number of metadata entries other than "dlcore.crc32", then each as
///   key, value in increasing byte order of keys;
///   the number of tensors, then for each in data_offsets order (ties by
///   end, then name): name, dtype, number of dimensions, each dimension,
///   begin, end.
/// `entries` must be in that order (`check_safetensors_layout` sorts them).
inline uint32_t safetensors_header_crc(
    const std::vector<SafetensorsEntry>& entries,
    const std::map<std::string, std::string>& metadata) {
  std::string canon;
  const uint64_t meta_count =
      metadata.size() -
      static_cast<uint64_t>(metadata.count(kSafetensorsCrcKey));
  safetensors_append_u64(canon, meta_count);
  for (const auto& [key, value] : metadata) {
    if (key != kSafetensorsCrcKey) {
      safetensors_append_str(canon, key);
      safetensors_append_str(canon, value);
    }
  }
  safetensors_append_u64(canon, entries.size());
  for (const auto& e : entries) {
    safetensors_append_str(canon, e.name);
    safetensors_append_str(canon, e.dtype);
    safetensors_append_u64(canon, e.shape.size());
    for (const int64_t d : e.shape) {
      safetensors_append_u64(canon, static_cast<uint64_t>(d));
    }
    safetensors_append_u64(canon, e.begin);
    safetensors_append_u64(canon, e.end);
  }
  return safetensors_crc32(0, canon.data(), canon.size());
}

/// The value of dlcore's checksum entry: "header=%08x,data=%08x".
inline std::string safetensors_crc_value(uint32_t header, uint32_t data) {
  char buffer[32];
  std::snprintf(
      buffer,
      sizeof(buffer),
      "header=%08x,data=%08x",
      static_cast<unsigned>(header),
      static_cast<unsigned>(data));
  return buffer;
}

/// Parses a checksum entry's value; false if it is not exactly of the form
/// `safetensors_crc_value` writes.
inline bool parse_safetensors_crc_value(
    const std::string& value, uint32_t& header, uint32_t& data) {
  const std::string a = "header=";
  const std::string b = ",data=";
  if (value.size() != a.size() + 8 + b.size() + 8 ||
      value.compare(0, a.size(), a) != 0 ||
      value.compare(a.size() + 8, b.size(), b) != 0) {
    return false;
  }
  auto hex8 = [&](std::size_t at, uint32_t& out) {
    out = 0;
    for (std::size_t i = at; i < at + 8; ++i) {
      const char c = value[i];
      uint32_t digit = 0;
      if (c >= '0' && c <= '9') {
        digit = static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        digit = static_cast<uint32_t>(c - 'a' + 10);
      } else {
        return false;
      }
      out = (out << 4) | digit;
    }
    return true;
  };
  return hex8(a.size(), header) && hex8(a.size() + 8 + b.size(), data);
}

/// Whether `key` differs from dlcore's checksum key in exactly one byte: a
/// checksum key damaged by one changed byte must not turn a dlcore file
/// into an unchecked one.
inline bool near_safetensors_crc_key(const std::string& key) {
  const std::string crc_key = kSafetensorsCrcKey;
  if (key.size() != crc_key.size()) {
    return false;
  }
  std::size_t differ = 0;
  for (std::size_t i = 0; i < key.size(); ++i) {
    differ += key[i] != crc_key[i];
  }
  return differ == 1;
}

/// What a safetensors file holds.
struct SafetensorsContents {
  /// In data_offsets order.
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  std::map<std::string, std::string> metadata;
  bool checksum_verified = false;
};

/// Reads and checks the safetensors file at `path`; errors are `c10::Error`s
/// naming `owner` and the file.
inline SafetensorsContents read_safetensors_contents(
    const std::string& path, const std::string& owner) {
  RegularFileReader file(path, owner);
  const std::string where = owner + ": '" + path + "'";
  TORCH_CHECK(
      file.size() >= 8,
      where,
      " is not a safetensors file: it has ",
      file.size(),
      " bytes, fewer than the 8 of the header length");
  unsigned char length_bytes[8];
  file.read_exact(0, length_bytes, 8, "the header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) {
    n = (n << 8) | length_bytes[i];
  }
  TORCH_CHECK(
      n <= kSafetensorsMaxHeaderBytes,
      where,
      ": the header length ",
      n,
      " exceeds the bound of ",
      kSafetensorsMaxHeaderBytes,
      " bytes (not a safetensors file, or a damaged one)");
  TORCH_CHECK(
      n <= file.size() - 8,
      where,
      ": the header length ",
      n,
      " exceeds the ",
      file.size() - 8,
      " bytes after the length field (a truncated or damaged file)");
  std::string text(static_cast<std::size_t>(n), '\0');
  file.read_exact(8, text.data(), n, "the header");
  SafetensorsHeader header = parse_safetensors_header(text.data(), n, where);
  const uint64_t data_start = 8 + n;
  const uint64_t data_size = file.size() - data_start;
  check_safetensors_layout(header, data_size, where);

  SafetensorsContents out;
  uint32_t stored_header_crc = 0;
  uint32_t stored_data_crc = 0;
  const auto crc_entry = header.metadata.find(kSafetensorsCrcKey);
  const bool has_crc = crc_entry != header.metadata.end();
  for (const auto& [key, value] : header.metadata) {
    (void)value;
    TORCH_CHECK(
        !near_safetensors_crc_key(key),
        where,
        ": the __metadata__ key ",
        safetensors_quoted(key),
        " differs from dlcore's checksum key \"",
        kSafetensorsCrcKey,
        "\" in one byte: the file is damaged");
  }
  if (has_crc) {
    TORCH_CHECK(
        parse_safetensors_crc_value(
            crc_entry->second, stored_header_crc, stored_data_crc),
        where,
        ": the checksum entry \"",
        kSafetensorsCrcKey,
        "\" is ",
        safetensors_quoted(crc_entry->second),
        ", not of the form \"header=xxxxxxxx,data=xxxxxxxx\": the file is "
        "damaged");
    const uint32_t header_crc =
        safetensors_header_crc(header.entries, header.metadata);
    TORCH_CHECK(
        header_crc == stored_header_crc,
        where,
        ": the header's CRC-32 is ",
        safetensors_crc_value(header_crc, 0).substr(7, 8),
        " but the file records ",
        crc_entry->second.substr(7, 8),
        ": the header is damaged");
  }

  uint32_t data_crc = 0;
  for (const auto& e : header.entries) {
    const SafetensorsDtype* dtype = safetensors_dtype(e.dtype);
    at::Tensor t = torch::empty(e.shape, torch::TensorOptions(dtype->type));
    const uint64_t bytes = e.end - e.begin;
    if (bytes > 0) {
      file.read_exact(
          data_start + e.begin,
          t.data_ptr(),
          bytes,
          "the data of entry " + safetensors_quoted(e.name));
      data_crc = safetensors_crc32(data_crc, t.data_ptr(), bytes);
    }
    if (dtype->type == c10::ScalarType::Bool) {
      // A bool that is neither 0 nor 1 is undefined behaviour in C++.
      const auto* p = static_cast<const unsigned char*>(t.data_ptr());
      for (uint64_t i = 0; i < bytes; ++i) {
        TORCH_CHECK(
            p[i] <= 1,
            where,
            ": entry ",
            safetensors_quoted(e.name),
            ": BOOL element ",
            i,
            " is the byte ",
            static_cast<int>(p[i]),
            " (expected 0 or 1)");
      }
    }
    out.tensors.emplace_back(e.name, std::move(t));
  }
  if (has_crc) {
    TORCH_CHECK(
        data_crc == stored_data_crc,
        where,
        ": the data's CRC-32 is ",
        safetensors_crc_value(0, data_crc).substr(21, 8),
        " but the file records ",
        crc_entry->second.substr(21, 8),
        ": the tensor data is damaged");
  }
  out.metadata = std::move(header.metadata);
  out.checksum_verified = has_crc;
  return out;
}

/// Checks and converts what `save_safetensors` is given; errors name `owner`.
inline std::vector<std::pair<std::string, at::Tensor>> safetensors_cpu_tensors(
    const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
    const std::map<std::string, std::string>& metadata,
    const std::string& owner,
    const std::string& path) {
  auto check_utf8 = [&](const std::string& s, const std::string& what) {
    try {
      (void)nlohmann::json(s).dump();
    } catch (const nlohmann::json::exception&) {
      TORCH_CHECK(
          false,
          owner,
          ": expected UTF-8 text, but ",
          what,
          " is not (writing '",
          path,
          "')");
    }
  };
  for (const auto& [key, value] : metadata) {
    TORCH_CHECK(
        key != kSafetensorsCrcKey && !near_safetensors_crc_key(key),
        owner,
        ": the metadata key ",
        safetensors_quoted(key),
        " is reserved for dlcore's checksum (writing '",
        path,
        "')");
    check_utf8(key, "the metadata key " + safetensors_quoted(key));
    check_utf8(
        value, "the value of the metadata key " + safetensors_quoted(key));
  }
  std::set<std::string> names;
  std::vector<std::pair<std::string, at::Tensor>> out;
  out.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) {
    TORCH_CHECK(
        name != "__metadata__",
        owner,
        ": the tensor name \"__metadata__\" is reserved by the format "
        "(writing '",
        path,
        "')");
    TORCH_CHECK(
        names.insert(name).second,
        owner,
        ": expected distinct tensor names, but ",
        safetensors_quoted(name),
        " appears twice (writing '",
        path,
        "')");
    check_utf8(name, "the tensor name " + safetensors_quoted(name));
    TORCH_CHECK(
        tensor.defined(),
        owner,
        ": tensor ",
        safetensors_quoted(name),
        " is undefined (writing '",
        path,
        "')");
    TORCH_CHECK(
        tensor.layout() == torch::kStrided,
        owner,
        ": expected dense (strided) tensors, but ",
        safetensors_quoted(name),
        " has layout ",
        tensor.layout(),
        " (writing '",
        path,
        "')");
    TORCH_CHECK(
        safetensors_dtype(tensor.scalar_type()) != nullptr,
        owner,
        ": tensor ",
        safetensors_quoted(name),
        " has dtype ",
        tensor.scalar_type(),
        ", which dlcore does not write as safetensors (supported: ",
        safetensors_dtype_list(),
        "; writing '",
        path,
        "')");
    out.emplace_back(
        name,
        tensor.detach()
            .to(torch::kCPU)
            .resolve_conj()
            .resolve_neg()
            .contiguous());
  }
  return out;
}

/// The bytes of a safetensors file holding `tensors` (CPU, contiguous,
/// dtypes of `kSafetensorsDtypes`, distinct names; checked by the caller)
/// and `metadata` plus dlcore's checksum entry. Tensors are laid out as the
/// reference writer does: by decreasing dtype alignment, then by name.
inline std::string serialize_safetensors(
    std::vector<std::pair<std::string, at::Tensor>> tensors,
    std::map<std::string, std::string> metadata) {
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) {
    const int oa = safetensors_dtype(a.second.scalar_type())->order;
    const int ob = safetensors_dtype(b.second.scalar_type())->order;
    if (oa != ob) {
      return oa > ob;
    }
    return a.first < b.first;
  });
  std::vector<SafetensorsEntry> entries;
  uint64_t offset = 0;
  uint32_t data_crc = 0;
  for (const auto& [name, t] : tensors) {
    SafetensorsEntry e;
    e.name = name;
    e.dtype = safetensors_dtype(t.scalar_type())->name;
    e.shape = t.sizes().vec();
    const uint64_t bytes = static_cast<uint64_t>(t.nbytes());
    e.begin = offset;
    e.end = offset + bytes;
    offset = e.end;
    data_crc = safetensors_crc32(data_crc, t.data_ptr(), bytes);
    entries.push_back(std::move(e));
  }
  // The canonical order of the checksum is data_offsets order with ties
  // (empty tensors) by name: sort a copy that way.
  std::vector<SafetensorsEntry> canonical = entries;
  std::stable_sort(
      canonical.begin(),
      canonical.end(),
      [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
        if (a.begin != b.begin) {
          return a.begin < b.begin;
        }
        if (a.end != b.end) {
          return a.end < b.end;
        }
        return a.name < b.name;
      });
  metadata[kSafetensorsCrcKey] = safetensors_crc_value(
      safetensors_header_crc(canonical, metadata), data_crc);

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  for (const auto& [key, value] : metadata) {
    meta[key] = value;
  }
  header["__metadata__"] = std::move(meta);
  for (const auto& e : entries) {
    nlohmann::ordered_json info = nlohmann::ordered_json::object();
    info["dtype"] = e.dtype;
    nlohmann::ordered_json shape = nlohmann::ordered_json::array();
    for (const int64_t d : e.shape) {
      shape.push_back(static_cast<uint64_t>(d));
    }
    info["shape"] = std::move(shape);
    info["data_offsets"] = {e.begin, e.end};
    header[e.name] = std::move(info);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');

  std::string out;
  out.reserve(8 + text.size() + offset);
  safetensors_append_u64(out, text.size());
  out += text;
  for (const auto& [name, t] : tensors) {
    (void)name;
    if (t.nbytes() > 0) {
      out.append(static_cast<const char*>(t.data_ptr()), t.nbytes());
    }
  }
  return out;
}

} // namespace detail
} // namespace dlcore
