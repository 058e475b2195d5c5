#pragma once

// JSON result files: nlohmann::ordered_json as the value, with checked
// reading, writing and access that report problems as c10::Error.

#include <dlcore/detail/atomic_file.h>
#include <dlcore/detail/regular_file.h>
#include <dlcore/io/detail/json_builder.h>

#include <c10/util/Exception.h>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace dlcore {

/// A JSON value: nlohmann/json's `ordered_json` (Debian's
/// `nlohmann-json3-dev`, 3.11), whose objects keep their keys in insertion
/// order, so files list them in the order the program wrote them.
///
/// Build values with nlohmann's API (`Json::object()`, `j["key"] = value`,
/// `Json::array({...})`, `push_back`; vectors and maps convert). Read and
/// write them with the functions below rather than `Json::parse`,
/// `Json::at`, `get` or `dump`, which throw nlohmann's exceptions and (for
/// `Json::parse`) accept duplicate keys, any nesting depth, and take
/// quadratic time on large objects; nlohmann's `dump()` without an argument
/// writes one line:
///
///   * `parse_json`, `read_json`: strict RFC 8259 with checks for untrusted
///     input (below);
///   * `dump_json`, `write_json`: text, two-space indent by default;
///   * `json_at`, `json_get`: checked access.
///
/// Numbers: integers are kept exactly (int64, or uint64 above INT64_MAX);
/// other numbers are doubles, written in a short form that reads back to
/// exactly the same double ("0.1", "1e-05", "61706.0", "5e-324"). A
/// non-finite double (NaN, +-inf) has no JSON spelling: it is written as
/// `null` and reads back as null. In memory a `Json` assigned NaN is still a
/// number; assign `nullptr` to get null there too.
///
/// Every problem is a `c10::Error` naming the operation, the file or key,
/// and what was wrong; no nlohmann exception escapes these functions.
///
/// Example:
///   dlcore::Json j = dlcore::Json::object();
///   j["problem"] = 1;
///   j["val_accuracy"] = 0.8931;
///   j["lrs"] = std::vector<double>{0.1, 0.01};
///   dlcore::write_json("results/summary.json", j);
///   dlcore::Json back = dlcore::read_json("results/summary.json");
///   double acc = dlcore::json_get<double>(back, "val_accuracy");
using Json = nlohmann::ordered_json;

namespace detail {

/// What `j` holds, in words, for error messages.
inline const char* json_kind(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return "a bool";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "an integer";
    case Json::value_t::number_float:
      return "a double";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::object:
      return "an object";
    default:
      return "a binary value";
  }
}

/// " under key 'k'" when `key` is not empty, for error messages.
inline std::string json_under(const std::string& key) {
  return key.empty() ? std::string() : " under key '" + key + "'";
}

/// Parses `text`; errors begin with `owner` and name `source`.
inline Json parse_json_text(
    const std::string& text,
    const std::string& owner,
    const std::string& source) {
  Json root;
  JsonBuilder<Json> builder(root);
  bool ok = false;
  std::string problem;
  try {
    ok = Json::sax_parse(text, &builder);
    problem = builder.error();
  } catch (const std::exception& e) {
    problem = json_exception_text(e);
  }
  TORCH_CHECK(
      ok && problem.empty(),
      owner,
      ": cannot parse ",
      source,
      ": ",
      problem.empty() ? std::string("invalid JSON") : problem);
  return root;
}

/// `j` as text; errors begin with `owner` and name `target`.
inline std::string dump_json_text(
    const Json& j,
    int indent,
    const std::string& owner,
    const std::string& target) {
  try {
    return j.dump(indent);
  } catch (const std::exception& e) {
    TORCH_CHECK(
        false,
        owner,
        ": cannot write ",
        target,
        ": ",
        json_exception_text(e),
        " (JSON strings must be UTF-8)");
  }
}

} // namespace detail

/// Parses JSON text (RFC 8259) into a `Json`, keeping the order of keys.
/// Stricter than the RFC requires, for input from anywhere: arrays and
/// objects may nest at most 512 levels deep, an object may not repeat a key,
/// strings must be valid UTF-8 (with `\u` escapes in valid surrogate pairs),
/// and a number beyond the range of a double (`1e999`) is an error. Time and
/// memory are linear in the text's length.
///
/// A `c10::Error` says "parse_json: cannot parse <source>: " and the
/// problem; a syntax error names its line, column and byte (counted from 1).
inline Json parse_json(
    const std::string& text, const std::string& source = "JSON text") {
  return detail::parse_json_text(text, "parse_json", source);
}

/// Reads and parses the JSON file at `path` (see `parse_json`). A FIFO,
/// device or folder is refused before it is opened; every error names the
/// path.
///
/// Example:
///   dlcore::Json summary = dlcore::read_json("results/problem1/summary.json");
inline Json read_json(const std::string& path) {
  const std::vector<char> bytes = detail::read_regular_file(path, "read_json");
  return detail::parse_json_text(
      std::string(bytes.begin(), bytes.end()), "read_json", "'" + path + "'");
}

/// The JSON text of `value`: `indent < 0` gives one line; otherwise nested
/// values go on their own lines, indented by `indent` spaces per level.
/// Non-finite doubles are written as `null`. A string that is not valid
/// UTF-8 is a `c10::Error`.
inline std::string dump_json(const Json& value, int indent = 2) {
  return detail::dump_json_text(value, indent, "dump_json", "the value");
}

/// Writes `dump_json(value, indent)` and a final newline to `path`
/// atomically (see `write_file_atomic`); errors name the path.
inline void write_json(
    const std::string& path, const Json& value, int indent = 2) {
  detail::write_file_atomic(
      path,
      detail::dump_json_text(value, indent, "write_json", "'" + path + "'") +
          "\n",
      "write_json");
}

/// The member `key` of the object `j`; a `c10::Error` when `j` is not an
/// object or has no such key.
inline const Json& json_at(const Json& j, const std::string& key) {
  TORCH_CHECK(
      j.is_object(),
      "Json: expected an object to look up key '",
      key,
      "' in, but got ",
      detail::json_kind(j));
  const auto it = j.find(key);
  TORCH_CHECK(it != j.end(), "Json: no key '", key, "' in the object");
  return *it;
}

/// Element `index` of the array `j`; a `c10::Error` when `j` is not an array
/// or is too short.
inline const Json& json_at(const Json& j, std::size_t index) {
  TORCH_CHECK(
      j.is_array(),
      "Json: expected an array to take element ",
      index,
      " of, but got ",
      detail::json_kind(j));
  TORCH_CHECK(
      index < j.size(),
      "Json: index ",
      index,
      " out of range for an array of ",
      j.size());
  return j[index];
}

namespace detail {

template <typename T>
T json_convert(const Json& j, const std::string& key) {
  if constexpr (std::is_same_v<T, bool>) {
    TORCH_CHECK(
        j.is_boolean(),
        "Json: expected a bool",
        json_under(key),
        ", but got ",
        json_kind(j));
    return j.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    TORCH_CHECK(
        j.is_number_integer(),
        "Json: expected an integer",
        json_under(key),
        ", but got ",
        json_kind(j));
    bool fits = false;
    if (j.is_number_unsigned()) {
      const uint64_t v = j.get<uint64_t>();
      fits = v <= static_cast<uint64_t>(std::numeric_limits<T>::max());
    } else {
      const int64_t v = j.get<int64_t>();
      if constexpr (std::is_signed_v<T>) {
        fits = v >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
               v <= static_cast<int64_t>(std::numeric_limits<T>::max());
      } else {
        fits =
            v >= 0 && static_cast<uint64_t>(v) <=
                          static_cast<uint64_t>(std::numeric_limits<T>::max());
      }
    }
    TORCH_CHECK(
        fits,
        "Json: the integer ",
        j.dump(),
        json_under(key),
        " does not fit in ",
        std::is_signed_v<T> ? "a signed " : "an unsigned ",
        8 * sizeof(T),
        "-bit integer");
    return j.get<T>();
  } else if constexpr (std::is_floating_point_v<T>) {
    TORCH_CHECK(
        j.is_number(),
        "Json: expected a number",
        json_under(key),
        ", but got ",
        json_kind(j));
    return j.get<T>();
  } else if constexpr (std::is_same_v<T, std::string>) {
    TORCH_CHECK(
        j.is_string(),
        "Json: expected a string",
        json_under(key),
        ", but got ",
        json_kind(j));
    return j.get<std::string>();
  } else {
    try {
      return j.get<T>();
    } catch (const std::exception& e) {
      TORCH_CHECK(
          false,
          "Json: cannot convert the value",
          json_under(key),
          ": ",
          json_exception_text(e));
    }
  }
}

} // namespace detail

/// The value of `j` as a `T`, checked: `bool` needs a bool; an integer type
/// an integer that fits in it (a double does not convert); `double`/`float`
/// any number; `std::string` a string; any other type nlohmann's
/// conversion. A mismatch is a `c10::Error` naming what was expected and
/// what was there.
///
/// Example:
///   int64_t threads = dlcore::json_get<int64_t>(dlcore::json_at(j,
///   "threads"));
template <typename T>
T json_get(const Json& j) {
  return detail::json_convert<T>(j, "");
}

/// The member `key` of the object `j` as a `T` (see `json_get(j)`); errors
/// name the key.
///
/// Example:
///   double seconds = dlcore::json_get<double>(summary, "seconds");
template <typename T>
T json_get(const Json& j, const std::string& key) {
  return detail::json_convert<T>(json_at(j, key), key);
}

} // namespace dlcore
