#pragma once

// The IDX file format (LeCun's MNIST format): a 4-byte magic number
// 00 00 <dtype code> <number of dimensions>, one big-endian uint32 per
// dimension, then the elements in row-major order, big-endian.

#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace dlcore {
namespace detail {

/// Most dimensions an IDX header may declare (the format allows 255; no data
/// set uses more than a handful, so more is treated as corruption).
inline constexpr int kIdxMaxDims = 16;

/// "0x0b": a byte in the notation of the IDX specification.
inline std::string idx_hex(uint8_t b) {
  const char* digits = "0123456789abcdef";
  std::string s = "0x";
  s += digits[b >> 4];
  s += digits[b & 0xf];
  return s;
}

/// The tensor dtype for an IDX dtype code, or `ScalarType::Undefined` for a
/// code the format does not define.
inline c10::ScalarType idx_dtype_from_code(uint8_t code) {
  switch (code) {
    case 0x08:
      return c10::ScalarType::Byte;
    case 0x09:
      return c10::ScalarType::Char;
    case 0x0B:
      return c10::ScalarType::Short;
    case 0x0C:
      return c10::ScalarType::Int;
    case 0x0D:
      return c10::ScalarType::Float;
    case 0x0E:
      return c10::ScalarType::Double;
    default:
      return c10::ScalarType::Undefined;
  }
}

/// The IDX dtype code for a tensor dtype, or 0 when IDX cannot store it.
inline uint8_t idx_code_from_dtype(c10::ScalarType t) {
  switch (t) {
    case c10::ScalarType::Byte:
      return 0x08;
    case c10::ScalarType::Char:
      return 0x09;
    case c10::ScalarType::Short:
      return 0x0B;
    case c10::ScalarType::Int:
      return 0x0C;
    case c10::ScalarType::Float:
      return 0x0D;
    case c10::ScalarType::Double:
      return 0x0E;
    default:
      return 0;
  }
}

/// Reads a big-endian uint32.
inline uint32_t idx_load_be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
         (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

/// Writes a big-endian uint32.
inline void idx_store_be32(unsigned char* p, uint32_t v) {
  p[0] = static_cast<unsigned char>(v >> 24);
  p[1] = static_cast<unsigned char>(v >> 16);
  p[2] = static_cast<unsigned char>(v >> 8);
  p[3] = static_cast<unsigned char>(v);
}

/// Whether this machine stores multi-byte numbers little-endian, so that IDX
/// payloads need their bytes reversed.
constexpr bool idx_host_is_little_endian() {
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
  return __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
#else
#error "dlcore: unknown byte order"
#endif
}

/// Reverses the bytes of each of the `n` elements of `elem_size` bytes at
/// `data` (big-endian <-> host order on a little-endian host).
inline void idx_swap_bytes(void* data, int64_t n, int elem_size) {
  auto* p = static_cast<unsigned char*>(data);
  switch (elem_size) {
    case 2:
      for (int64_t i = 0; i < n; ++i, p += 2) {
        uint16_t v;
        std::memcpy(&v, p, 2);
        v = __builtin_bswap16(v);
        std::memcpy(p, &v, 2);
      }
      break;
    case 4:
      for (int64_t i = 0; i < n; ++i, p += 4) {
        uint32_t v;
        std::memcpy(&v, p, 4);
        v = __builtin_bswap32(v);
        std::memcpy(p, &v, 4);
      }
      break;
    case 8:
      for (int64_t i = 0; i < n; ++i, p += 8) {
        uint64_t v;
        std::memcpy(&v, p, 8);
        v = __builtin_bswap64(v);
        std::memcpy(p, &v, 8);
      }
      break;
    default:
      break;
  }
}

} // namespace detail
} // namespace dlcore
