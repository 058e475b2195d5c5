#pragma once

// CSV tables (RFC 4180) for result files: written atomically, with numbers
// that read back exactly.

#include <dlcore/io/files.h>
#include <dlcore/io/number_format.h>

#include <c10/util/Exception.h>

#include <cstddef>
#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace dlcore {

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

  /// Reads and parses the CSV file at `path` (a regular file; errors name
  /// the path).
  static CsvTable read(const std::string& path) {
    const std::vector<char> bytes =
        detail::read_regular_file(path, "CsvTable::read");
    return parse(std::string(bytes.begin(), bytes.end()));
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
