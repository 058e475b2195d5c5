#pragma once

// Integer formatting with thousands separators, shared by the layer tables
// (nn/layer_math.h, nn/summary.h) and the report writers (train/report.h,
// which exposes it as dlcore::format_thousands).

#include <cstdint>
#include <string>

namespace dlcore {
namespace detail {

/// 61100840 -> "61,100,840"; -1234 -> "-1,234".
inline std::string format_thousands(int64_t v) {
  // Negating INT64_MIN would overflow: take the digits of the unsigned value.
  const uint64_t magnitude =
      v < 0 ? uint64_t{0} - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  const std::string digits = std::to_string(magnitude);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) {
      out += ',';
    }
    out += digits[i];
  }
  return v < 0 ? "-" + out : out;
}

} // namespace detail
} // namespace dlcore
