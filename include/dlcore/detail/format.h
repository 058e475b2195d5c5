#pragma once

// Number formatting with the standard library only (no compiled formatting
// library, so nothing can clash with the copy of fmt that LibTorch 2.x
// bundles): thousands separators for the layer tables (nn/layer_math.h,
// nn/summary.h) and the result files (io/number_format.h exposes them as
// dlcore::format_thousands and dlcore::format_double), the shortest
// round-trip decimal of a double, and printf-style text.

#include <c10/util/Exception.h>

#include <charconv>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <system_error>
#include <vector>

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

/// The shortest decimal text that reads back (`std::strtod`) to exactly `v`,
/// laid out like Python's `repr` and fmt's "{}": positional notation when the
/// decimal exponent is in [-4, 16), else scientific with a signed exponent of
/// at least two digits; no trailing ".0". 0.1 -> "0.1", 1e-05 -> "1e-05",
/// 0.0001 -> "0.0001", 61706.0 -> "61706", 1e16 -> "1e+16", -0.0 -> "-0".
/// Non-finite values are "nan", "inf" and "-inf".
inline std::string format_shortest(double v) {
  if (std::isnan(v)) {
    return "nan";
  }
  if (std::isinf(v)) {
    return v > 0 ? "inf" : "-inf";
  }
  // The shortest round-trip digits, in scientific form "d.ddde[+-]xx".
  char buf[64];
  const auto res =
      std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  TORCH_INTERNAL_ASSERT(res.ec == std::errc(), "to_chars failed");
  const std::string sci(buf, res.ptr);
  const std::size_t e = sci.find('e');
  TORCH_INTERNAL_ASSERT(e != std::string::npos, "to_chars: no exponent");
  std::string mantissa = sci.substr(0, e);
  const int exponent = std::atoi(sci.c_str() + e + 1);
  std::string sign;
  if (!mantissa.empty() && mantissa[0] == '-') {
    sign = "-";
    mantissa.erase(0, 1);
  }
  std::string digits;
  for (char c : mantissa) {
    if (c != '.') {
      digits += c;
    }
  }
  const int n = static_cast<int>(digits.size());
  std::string out = sign;
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out += "0.";
      out.append(static_cast<std::size_t>(-exponent - 1), '0');
      out += digits;
    } else if (exponent + 1 >= n) {
      out += digits;
      out.append(static_cast<std::size_t>(exponent + 1 - n), '0');
    } else {
      out += digits.substr(0, static_cast<std::size_t>(exponent + 1));
      out += '.';
      out += digits.substr(static_cast<std::size_t>(exponent + 1));
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (n > 1) {
    out += '.';
    out += digits.substr(1);
  }
  const int magnitude = exponent < 0 ? -exponent : exponent;
  out += exponent < 0 ? "e-" : "e+";
  if (magnitude < 10) {
    out += '0';
  }
  out += std::to_string(magnitude);
  return out;
}

/// `std::snprintf` into a std::string, e.g. format_printf("%.4f", loss).
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
inline std::string
format_printf(const char* format, ...) {
  va_list args;
  va_start(args, format);
  va_list copy;
  va_copy(copy, args);
  const int n = std::vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  std::string out;
  if (n > 0) {
    out.resize(static_cast<std::size_t>(n) + 1);
    std::vsnprintf(&out[0], out.size(), format, args);
    out.resize(static_cast<std::size_t>(n));
  }
  va_end(args);
  return out;
}

/// A shape as "[1, 3, 224, 224]" (tables and error messages).
inline std::string format_shape(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    out += (i ? ", " : "") + std::to_string(shape[i]);
  }
  return out + "]";
}

} // namespace detail
} // namespace dlcore
