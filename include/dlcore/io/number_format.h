#pragma once

// Numbers as text for result files and tables.

#include <dlcore/detail/format.h>

#include <cstdint>
#include <string>

namespace dlcore {

/// 61100840 -> "61,100,840": integers with thousands separators, as the
/// layer tables print them.
using detail::format_thousands;

/// The shortest decimal text that reads back (`std::strtod`) to exactly `v`:
/// "0.1", "1e-05", "61706"; non-finite values are "nan", "inf", "-inf".
/// `CsvCell` writes numbers this way.
inline std::string format_double(double v) {
  return detail::format_shortest(v);
}

} // namespace dlcore
