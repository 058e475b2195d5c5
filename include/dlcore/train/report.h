#pragma once

#include <dlcore/detail/atomic_file.h>
#include <dlcore/detail/format.h>
#include <dlcore/detail/json_parse.h>

#include <c10/util/Exception.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

// Result files: atomic writes, CSV tables and JSON values.

namespace dlcore {

/// Writes `contents` to `path` atomically: into a temporary file in the same
/// folder, which is synced and then renamed over `path` (`std::rename`), so a
/// reader sees the old file or the new one, never a partial one. Missing
/// parent folders are created.
///
/// On failure (unwritable folder, full disk, ...) the temporary file is
/// removed, an existing `path` is left intact, and a `c10::Error` names the
/// path and the reason.
///
/// Example:
///   dlcore::write_file_atomic("results/problem1/summary.md", text);
inline void write_file_atomic(
    const std::string& path, const std::string& contents) {
  detail::write_file_atomic(path, contents, "write_file_atomic");
}

/// The whole content of a file; a `c10::Error` names the path when it cannot
/// be read.
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in.good(), "read_file: cannot open '", path, "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// 61100840 -> "61,100,840": integers with thousands separators, as the
/// layer tables print them.
using detail::format_thousands;

/// The shortest decimal text that reads back (`std::strtod`) to exactly `v`:
/// "0.1", "1e-05", "61706"; non-finite values are "nan", "inf", "-inf".
inline std::string format_double(double v) {
  if (std::isnan(v)) {
    return "nan";
  }
  if (std::isinf(v)) {
    return v > 0 ? "inf" : "-inf";
  }
  return detail::format_shortest(v);
}

/// A JSON value (null, bool, number, string, array, object) that keeps object
/// keys in insertion order, with a writer and a strict parser. Enough for
/// result summaries; not a general-purpose JSON library.
///
/// Integers are kept exactly (int64); other numbers are doubles, written in
/// the shortest form that reads back to the same double. Non-finite doubles
/// (NaN, +-inf) have no JSON spelling: a `Json` built from one is `null`.
///
/// Example:
///   dlcore::Json j = dlcore::Json::object();
///   j["problem"] = 1;
///   j["val_accuracy"] = 0.8931;
///   j["lrs"] = dlcore::Json::array({0.1, 0.01});
///   std::string text = j.dump();          // pretty, 2-space indent
///   dlcore::Json back = dlcore::Json::parse(text);
class Json {
 public:
  enum class Type { kNull, kBool, kInteger, kDouble, kString, kArray, kObject };

  Json() = default;
  Json(std::nullptr_t) {}
  Json(bool b) : type_(Type::kBool), bool_(b) {}
  template <
      typename T,
      std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> =
          0>
  Json(T v) : type_(Type::kInteger), int_(static_cast<int64_t>(v)) {}
  template <typename T, std::enable_if_t<std::is_floating_point_v<T>, int> = 0>
  Json(T v) : double_(static_cast<double>(v)) {
    type_ = std::isfinite(double_) ? Type::kDouble : Type::kNull;
  }
  Json(const char* s) : type_(Type::kString), string_(s) {}
  Json(std::string s) : type_(Type::kString), string_(std::move(s)) {}
  /// An array of numbers (or strings, ...), e.g. a curve.
  template <typename T>
  Json(const std::vector<T>& values) : type_(Type::kArray) {
    for (const auto& v : values) {
      array_.emplace_back(v);
    }
  }

  /// An array of the given values.
  static Json array(std::initializer_list<Json> values = {}) {
    Json j;
    j.type_ = Type::kArray;
    j.array_.assign(values.begin(), values.end());
    return j;
  }
  /// An empty object.
  static Json object() {
    Json j;
    j.type_ = Type::kObject;
    return j;
  }

  /// The kind of value held.
  Type type() const {
    return type_;
  }
  /// Whether this is null.
  bool is_null() const {
    return type_ == Type::kNull;
  }
  /// Whether this is a number (an integer or a double).
  bool is_number() const {
    return type_ == Type::kInteger || type_ == Type::kDouble;
  }
  /// Whether this is a string.
  bool is_string() const {
    return type_ == Type::kString;
  }
  /// Whether this is an array.
  bool is_array() const {
    return type_ == Type::kArray;
  }
  /// Whether this is an object.
  bool is_object() const {
    return type_ == Type::kObject;
  }

  /// The bool held; any other type is an error naming it.
  bool as_bool() const {
    expect(Type::kBool, "a bool");
    return bool_;
  }
  /// The number as a double (an integer converts).
  double as_double() const {
    TORCH_CHECK(
        is_number(), "Json: expected a number, but got ", type_name(type_));
    return type_ == Type::kInteger ? static_cast<double>(int_) : double_;
  }
  /// The integer held (a double does not convert); any other type is an
  /// error naming it.
  int64_t as_int() const {
    expect(Type::kInteger, "an integer");
    return int_;
  }
  /// The string held; any other type is an error naming it.
  const std::string& as_string() const {
    expect(Type::kString, "a string");
    return string_;
  }

  /// Elements of an array or values of an object.
  std::size_t size() const {
    if (type_ == Type::kArray) {
      return array_.size();
    }
    if (type_ == Type::kObject) {
      return values_.size();
    }
    return 0;
  }

  /// Appends to an array (a null value becomes an empty array first).
  Json& push_back(Json value) {
    if (type_ == Type::kNull) {
      type_ = Type::kArray;
    }
    expect(Type::kArray, "an array");
    array_.push_back(std::move(value));
    return array_.back();
  }
  const Json& at(std::size_t i) const {
    expect(Type::kArray, "an array");
    TORCH_CHECK(
        i < array_.size(),
        "Json: index ",
        i,
        " out of range for an array of ",
        array_.size());
    return array_[i];
  }

  /// The value under `key`, inserted as null when missing (a null value
  /// becomes an empty object first).
  Json& operator[](const std::string& key) {
    if (type_ == Type::kNull) {
      type_ = Type::kObject;
    }
    expect(Type::kObject, "an object");
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      if (keys_[i] == key) {
        return values_[i];
      }
    }
    keys_.push_back(key);
    values_.emplace_back();
    return values_.back();
  }
  bool contains(const std::string& key) const {
    if (type_ != Type::kObject) {
      return false;
    }
    for (const auto& k : keys_) {
      if (k == key) {
        return true;
      }
    }
    return false;
  }
  const Json& at(const std::string& key) const {
    expect(Type::kObject, "an object");
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      if (keys_[i] == key) {
        return values_[i];
      }
    }
    TORCH_CHECK(false, "Json: no key '", key, "' in the object");
  }
  /// Keys of an object, in insertion order.
  const std::vector<std::string>& keys() const {
    expect(Type::kObject, "an object");
    return keys_;
  }

  /// The text: `indent < 0` gives one line; otherwise nested values are
  /// indented by `indent` spaces (arrays of scalars stay on one line).
  std::string dump(int indent = 2) const {
    std::string out;
    dump_to(out, indent, 0);
    return out;
  }

  /// Parses JSON text (RFC 8259; `\u` escapes become UTF-8). A syntax error
  /// names the byte offset.
  static Json parse(const std::string& text);

  /// A JSON string literal for `s` (quotes included): `"`, `\` and control
  /// characters are escaped; other bytes (UTF-8) are kept.
  static std::string quote(const std::string& s) {
    std::string out = "\"";
    for (char ch : s) {
      unsigned char c = static_cast<unsigned char>(ch);
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        default:
          if (c < 0x20) {
            out += detail::format_printf("\\u%04x", static_cast<unsigned>(c));
          } else {
            out += ch;
          }
      }
    }
    out += '"';
    return out;
  }

  /// The shortest decimal text that reads back to `v`; "null" when `v` is
  /// not finite.
  static std::string number(double v) {
    if (!std::isfinite(v)) {
      return "null";
    }
    return detail::format_shortest(v);
  }

 private:
  static const char* type_name(Type t) {
    switch (t) {
      case Type::kNull:
        return "null";
      case Type::kBool:
        return "a bool";
      case Type::kInteger:
        return "an integer";
      case Type::kDouble:
        return "a double";
      case Type::kString:
        return "a string";
      case Type::kArray:
        return "an array";
      case Type::kObject:
        return "an object";
    }
    return "?";
  }

  void expect(Type t, const char* what) const {
    TORCH_CHECK(
        type_ == t, "Json: expected ", what, ", but got ", type_name(type_));
  }

  bool is_scalar() const {
    return type_ != Type::kArray && type_ != Type::kObject;
  }

  void dump_to(std::string& out, int indent, int depth) const {
    switch (type_) {
      case Type::kNull:
        out += "null";
        return;
      case Type::kBool:
        out += bool_ ? "true" : "false";
        return;
      case Type::kInteger:
        out += std::to_string(int_);
        return;
      case Type::kDouble:
        out += number(double_);
        return;
      case Type::kString:
        out += quote(string_);
        return;
      case Type::kArray: {
        bool flat = indent < 0;
        bool scalars = true;
        for (const auto& v : array_) {
          scalars = scalars && v.is_scalar();
        }
        if (array_.empty()) {
          out += "[]";
          return;
        }
        out += '[';
        for (std::size_t i = 0; i < array_.size(); ++i) {
          if (i > 0) {
            out += (flat || scalars) && indent >= 0 ? ", " : ",";
          }
          if (!flat && !scalars) {
            newline(out, indent, depth + 1);
          }
          array_[i].dump_to(out, indent, depth + 1);
        }
        if (!flat && !scalars) {
          newline(out, indent, depth);
        }
        out += ']';
        return;
      }
      case Type::kObject: {
        if (keys_.empty()) {
          out += "{}";
          return;
        }
        out += '{';
        for (std::size_t i = 0; i < keys_.size(); ++i) {
          if (i > 0) {
            out += ',';
          }
          if (indent >= 0) {
            newline(out, indent, depth + 1);
          }
          out += quote(keys_[i]);
          out += indent >= 0 ? ": " : ":";
          values_[i].dump_to(out, indent, depth + 1);
        }
        if (indent >= 0) {
          newline(out, indent, depth);
        }
        out += '}';
        return;
      }
    }
  }

  static void newline(std::string& out, int indent, int depth) {
    out += '\n';
    out.append(static_cast<std::size_t>(indent * depth), ' ');
  }

  Type type_ = Type::kNull;
  bool bool_ = false;
  int64_t int_ = 0;
  double double_ = 0.0;
  std::string string_;
  std::vector<Json> array_;
  std::vector<std::string> keys_;
  std::vector<Json> values_;
};

inline Json Json::parse(const std::string& text) {
  return detail::JsonParser<Json>(text).parse_document();
}

/// Writes `value.dump(indent)` and a final newline to `path` atomically (see
/// `write_file_atomic`).
inline void write_json(
    const std::string& path, const Json& value, int indent = 2) {
  detail::write_file_atomic(path, value.dump(indent) + "\n", "write_json");
}

/// One CSV field: numbers are formatted to round-trip (`format_double`),
/// integers exactly, bools as 0/1; text is kept as given.
class CsvCell {
 public:
  template <typename T, std::enable_if_t<std::is_arithmetic_v<T>, int> = 0>
  CsvCell(T v) {
    if constexpr (std::is_same_v<T, bool>) {
      text_ = v ? "1" : "0";
    } else if constexpr (std::is_integral_v<T>) {
      text_ = std::to_string(v);
    } else {
      text_ = format_double(static_cast<double>(v));
    }
  }
  CsvCell(const char* s) : text_(s) {}
  CsvCell(std::string s) : text_(std::move(s)) {}

  const std::string& text() const {
    return text_;
  }

 private:
  std::string text_;
};

/// A CSV table: a header and rows of the same width, written as RFC 4180
/// (comma-separated; a field holding a comma, quote, newline or leading or
/// trailing space is quoted, quotes doubled), one `\n`-terminated line per
/// row. Numbers are written to round-trip exactly (`format_double`); missing
/// values are NaN and written "nan", which gnuplot, pandas and `std::strtod`
/// all read.
///
/// Example:
///   dlcore::CsvTable t({"epoch", "train_loss", "val_loss"});
///   t.add_row({1, 0.71, 0.52});
///   t.write("results/problem1/curves.csv");
///   dlcore::CsvTable back =
///   dlcore::CsvTable::read("results/problem1/curves.csv"); std::vector<double>
///   val = back.column("val_loss");
class CsvTable {
 public:
  CsvTable() = default;
  /// A table with these column names and no rows.
  explicit CsvTable(std::vector<std::string> header)
      : header_(std::move(header)) {}

  /// Appends a row; it must have one cell per column.
  CsvTable& add_row(const std::vector<CsvCell>& cells) {
    TORCH_CHECK(
        cells.size() == header_.size(),
        "CsvTable: expected a row of ",
        header_.size(),
        " cells (one per column), but got ",
        cells.size());
    std::vector<std::string> row;
    row.reserve(cells.size());
    for (const auto& c : cells) {
      row.push_back(c.text());
    }
    rows_.push_back(std::move(row));
    return *this;
  }

  const std::vector<std::string>& header() const {
    return header_;
  }
  /// Rows as text, as they are written.
  const std::vector<std::vector<std::string>>& rows() const {
    return rows_;
  }
  std::size_t num_rows() const {
    return rows_.size();
  }
  std::size_t num_columns() const {
    return header_.size();
  }

  /// Index of the column named `name`; a `c10::Error` lists the columns when
  /// there is none.
  std::size_t column_index(const std::string& name) const {
    for (std::size_t i = 0; i < header_.size(); ++i) {
      if (header_[i] == name) {
        return i;
      }
    }
    std::string all;
    for (const auto& h : header_) {
      all += (all.empty() ? "" : ", ") + h;
    }
    TORCH_CHECK(false, "CsvTable: no column '", name, "' (columns: ", all, ")");
  }

  /// The column named `name` parsed as doubles ("nan" and "" read as NaN); a
  /// field that is not a number is an error naming row and column.
  std::vector<double> column(const std::string& name) const {
    std::size_t c = column_index(name);
    std::vector<double> out;
    out.reserve(rows_.size());
    for (std::size_t r = 0; r < rows_.size(); ++r) {
      const std::string& s = rows_[r][c];
      if (s.empty()) {
        out.push_back(std::numeric_limits<double>::quiet_NaN());
        continue;
      }
      char* end = nullptr;
      double v = std::strtod(s.c_str(), &end);
      TORCH_CHECK(
          end == s.c_str() + s.size(),
          "CsvTable: expected a number in column '",
          name,
          "' row ",
          r,
          ", but got '",
          s,
          "'");
      out.push_back(v);
    }
    return out;
  }

  /// The CSV text.
  std::string to_string() const {
    std::string out;
    append_line(out, header_);
    for (const auto& row : rows_) {
      append_line(out, row);
    }
    return out;
  }

  /// Writes the table to `path` atomically (see `write_file_atomic`).
  void write(const std::string& path) const {
    detail::write_file_atomic(path, to_string(), "CsvTable::write");
  }

  /// Parses CSV text (RFC 4180, `\n` or `\r\n` line ends); the first line
  /// is the header, and every row must have as many fields.
  static CsvTable parse(const std::string& text) {
    std::vector<std::vector<std::string>> lines;
    std::vector<std::string> fields;
    std::string field;
    bool quoted = false;
    bool any = false;
    std::size_t i = 0;
    while (i < text.size()) {
      char c = text[i];
      if (quoted) {
        if (c == '"') {
          if (i + 1 < text.size() && text[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          quoted = false;
        } else {
          field += c;
        }
        ++i;
        continue;
      }
      if (c == '"') {
        quoted = true;
        any = true;
      } else if (c == ',') {
        fields.push_back(std::move(field));
        field.clear();
        any = true;
      } else if (c == '\n' || c == '\r') {
        if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
          ++i;
        }
        fields.push_back(std::move(field));
        field.clear();
        lines.push_back(std::move(fields));
        fields.clear();
        any = false;
      } else {
        field += c;
        any = true;
      }
      ++i;
    }
    TORCH_CHECK(!quoted, "CsvTable::parse: unterminated quoted field");
    if (any || !field.empty()) {
      fields.push_back(std::move(field));
      lines.push_back(std::move(fields));
    }
    TORCH_CHECK(!lines.empty(), "CsvTable::parse: expected a header line");
    CsvTable t(lines[0]);
    for (std::size_t r = 1; r < lines.size(); ++r) {
      TORCH_CHECK(
          lines[r].size() == t.header_.size(),
          "CsvTable::parse: expected ",
          t.header_.size(),
          " fields on line ",
          r + 1,
          ", but got ",
          lines[r].size());
      t.rows_.push_back(std::move(lines[r]));
    }
    return t;
  }

  /// Reads and parses the CSV file at `path`.
  static CsvTable read(const std::string& path) {
    return parse(read_file(path));
  }

 private:
  static void append_field(std::string& out, const std::string& f) {
    bool quote = f.find_first_of(",\"\n\r") != std::string::npos ||
                 (!f.empty() && (f.front() == ' ' || f.back() == ' '));
    if (!quote) {
      out += f;
      return;
    }
    out += '"';
    for (char c : f) {
      if (c == '"') {
        out += '"';
      }
      out += c;
    }
    out += '"';
  }
  static void append_line(std::string& out, const std::vector<std::string>& f) {
    for (std::size_t i = 0; i < f.size(); ++i) {
      if (i > 0) {
        out += ',';
      }
      append_field(out, f[i]);
    }
    out += '\n';
  }

  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

} // namespace dlcore
