// The result-file layer: io/files.h, io/number_format.h, io/csv.h, io/json.h.
#include <dlcore/io/csv.h>
#include <dlcore/io/files.h>
#include <dlcore/io/json.h>
#include <dlcore/io/number_format.h>
// The forwarding header at the old path still compiles and forwards.
#include <dlcore/train/report.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() /
                 ("dlcore_io_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::size_t count_files(const fs::path& dir) {
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    (void)e;
    ++n;
  }
  return n;
}

} // namespace

TEST_CASE(
    "write_file_atomic creates parent folders and replaces the file", "[io]") {
  fs::path dir = fresh_dir("atomic");
  std::string path = (dir / "a" / "b" / "out.txt").string();
  dlcore::write_file_atomic(path, "first");
  CHECK(dlcore::read_file(path) == "first");
  dlcore::write_file_atomic(path, "second, longer");
  CHECK(dlcore::read_file(path) == "second, longer");
  dlcore::write_file_atomic(path, "");
  CHECK(dlcore::read_file(path).empty());
  CHECK(count_files(dir / "a" / "b") == 1); // no temporary left
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0644);
  fs::remove_all(dir);
}

TEST_CASE(
    "write_file_atomic leaves an existing file intact when the write fails",
    "[io]") {
  if (::geteuid() == 0) {
    WARN("running as root: permission checks do not apply, skipped");
    return;
  }
  fs::path dir = fresh_dir("readonly");
  std::string path = (dir / "keep.csv").string();
  dlcore::write_file_atomic(path, "precious");
  fs::permissions(dir, fs::perms::owner_read | fs::perms::owner_exec);
  try {
    dlcore::write_file_atomic(path, "overwritten");
    FAIL("expected an error");
  } catch (const c10::Error& e) {
    CHECK_THAT(
        e.what_without_backtrace(),
        Catch::Contains("write_file_atomic: cannot create a temporary file") &&
            Catch::Contains(path));
  }
  fs::permissions(dir, fs::perms::owner_all);
  CHECK(dlcore::read_file(path) == "precious");
  CHECK(count_files(dir) == 1);
  fs::remove_all(dir);
}

TEST_CASE(
    "write_file_atomic leaves the target and no temporary when rename fails",
    "[io]") {
  // Renaming a file over a non-empty folder fails, also for root.
  fs::path dir = fresh_dir("rename");
  fs::path target = dir / "results";
  fs::create_directories(target);
  dlcore::write_file_atomic((target / "inside.txt").string(), "kept");
  try {
    dlcore::write_file_atomic(target.string(), "replacement");
    FAIL("expected an error");
  } catch (const c10::Error& e) {
    CHECK_THAT(
        e.what_without_backtrace(),
        Catch::Contains(
            "write_file_atomic: cannot rename the temporary file to") &&
            Catch::Contains(target.string()));
  }
  CHECK(fs::is_directory(target));
  CHECK(dlcore::read_file((target / "inside.txt").string()) == "kept");
  CHECK(count_files(dir) == 1); // the temporary file was removed
  CHECK_THROWS_WITH(
      dlcore::write_file_atomic("/proc/dlcore_cannot_write.txt", "x"),
      Catch::Contains("write_file_atomic: cannot create a temporary file"));
  fs::remove_all(dir);
}

TEST_CASE(
    "write_file_atomic fails clearly when the parent cannot be a folder",
    "[io]") {
  fs::path dir = fresh_dir("notdir");
  std::string blocker = (dir / "file").string();
  dlcore::write_file_atomic(blocker, "x");
  CHECK_THROWS_WITH(
      dlcore::write_file_atomic(blocker + "/child.txt", "y"),
      Catch::Contains("write_file_atomic: cannot create the folder"));
  CHECK_THROWS_WITH(
      dlcore::write_file_atomic("", "y"),
      Catch::Contains("write_file_atomic: expected a file path"));
  CHECK_THROWS_WITH(
      dlcore::read_file((dir / "missing").string()),
      Catch::Contains("read_file: " + (dir / "missing").string()) &&
          Catch::Contains("cannot open the file"));
  CHECK(count_files(dir) == 1);
  fs::remove_all(dir);
}

TEST_CASE("format_double prints the shortest round-trip text", "[io]") {
  CHECK(dlcore::format_double(0.1) == "0.1");
  CHECK(dlcore::format_double(61706) == "61706");
  CHECK(dlcore::format_double(1e-5) == "1e-05");
  CHECK(dlcore::format_double(std::nan("")) == "nan");
  CHECK(
      dlcore::format_double(std::numeric_limits<double>::infinity()) == "inf");
  CHECK(
      dlcore::format_double(-std::numeric_limits<double>::infinity()) ==
      "-inf");
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> mant(-1.0, 1.0);
  std::uniform_int_distribution<int> expo(-300, 300);
  for (int i = 0; i < 2000; ++i) {
    double v = std::ldexp(mant(rng), expo(rng));
    std::string s = dlcore::format_double(v);
    CHECK(std::strtod(s.c_str(), nullptr) == v);
  }
}

TEST_CASE("CsvTable round-trips numbers and text exactly", "[io]") {
  fs::path dir = fresh_dir("csv");
  dlcore::CsvTable t({"step", "lr", "note"});
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(-1e3, 1e3);
  std::vector<double> lrs;
  for (int i = 0; i < 50; ++i) {
    double lr = u(rng) / 7.0;
    lrs.push_back(lr);
    t.add_row({i, lr, i % 2 == 0 ? "plain" : "a, \"quoted\"\nline"});
  }
  t.add_row({int64_t{50}, std::nan(""), " padded "});
  lrs.push_back(std::nan(""));
  std::string path = (dir / "t.csv").string();
  t.write(path);
  dlcore::CsvTable back = dlcore::CsvTable::read(path);
  CHECK(back.header() == t.header());
  REQUIRE(back.num_rows() == 51);
  CHECK(back.rows() == t.rows());
  std::vector<double> lr_back = back.column("lr");
  for (std::size_t i = 0; i < 50; ++i) {
    CHECK(lr_back[i] == lrs[i]);
  }
  CHECK(std::isnan(lr_back[50]));
  CHECK(back.rows()[1][2] == "a, \"quoted\"\nline");
  CHECK(back.rows()[50][2] == " padded ");
  CHECK(back.column("step")[50] == 50);
  fs::remove_all(dir);
}

TEST_CASE("CsvTable writes RFC 4180 text", "[io]") {
  dlcore::CsvTable t({"a", "b,c"});
  t.add_row({1, true});
  t.add_row({2.5, "say \"hi\""});
  CHECK(t.to_string() == "a,\"b,c\"\n1,1\n2.5,\"say \"\"hi\"\"\"\n");
  CHECK(t.num_columns() == 2);
  dlcore::CsvTable crlf = dlcore::CsvTable::parse("x,y\r\n1,2\r\n3,4");
  CHECK(crlf.column("y") == std::vector<double>{2, 4});
  dlcore::CsvTable empty({"only"});
  CHECK(empty.to_string() == "only\n");
  CHECK(dlcore::CsvTable::parse("only\n").num_rows() == 0);
}

TEST_CASE("CsvTable rejects malformed input with clear errors", "[io]") {
  dlcore::CsvTable t({"a", "b"});
  CHECK_THROWS_WITH(
      t.add_row({1}),
      Catch::Contains(
          "CsvTable: expected a row of 2 cells (one per column), but got 1"));
  CHECK_THROWS_WITH(
      t.column("z"),
      Catch::Contains("CsvTable: no column 'z' (columns: a, b)"));
  t.add_row({"x", 1});
  CHECK_THROWS_WITH(
      t.column("a"),
      Catch::Contains("expected a number in column 'a' row 0, but got 'x'"));
  CHECK_THROWS_WITH(
      dlcore::CsvTable::parse("a,b\n1\n"),
      Catch::Contains("expected 2 fields on line 2, but got 1"));
  CHECK_THROWS_WITH(
      dlcore::CsvTable::parse("a\n\"open\n"),
      Catch::Contains("unterminated quoted field"));
  CHECK_THROWS_WITH(
      dlcore::CsvTable::parse(""), Catch::Contains("expected a header line"));
}

TEST_CASE("Json writes and parses back every kind of value", "[io]") {
  dlcore::Json j = dlcore::Json::object();
  j["int"] = int64_t{-9007199254740993};
  j["uint"] = std::numeric_limits<uint64_t>::max();
  j["double"] = 0.1;
  j["whole_double"] = 61706.0;
  j["tiny"] = 5e-324;
  j["true"] = true;
  j["false"] = false;
  j["null"] = nullptr;
  j["string"] = "line\n\"tab\"\t\\ é \x01";
  j["array"] = std::vector<double>{1.5, 2.0, -3.25};
  j["nested"] = dlcore::Json::array({dlcore::Json::object(), "x", 1});
  j["nested"].push_back(dlcore::Json::array());
  j["object"]["inner"] = 3;
  for (int indent : {-1, 0, 2, 4}) {
    CAPTURE(indent);
    const std::string text = dlcore::dump_json(j, indent);
    CHECK((text.find('\n') == std::string::npos) == (indent < 0));
    dlcore::Json back = dlcore::parse_json(text);
    CHECK(back == j);
    CHECK(dlcore::json_get<int64_t>(back, "int") == -9007199254740993);
    CHECK(
        dlcore::json_get<uint64_t>(back, "uint") ==
        std::numeric_limits<uint64_t>::max());
    CHECK(dlcore::json_get<double>(back, "double") == 0.1);
    // A whole double stays a double ("61706.0"), not an integer.
    CHECK(dlcore::json_at(back, "whole_double").is_number_float());
    CHECK(dlcore::json_get<double>(back, "whole_double") == 61706.0);
    CHECK(dlcore::json_get<double>(back, "tiny") == 5e-324);
    CHECK(dlcore::json_get<bool>(back, "true"));
    CHECK(!dlcore::json_get<bool>(back, "false"));
    CHECK(dlcore::json_at(back, "null").is_null());
    CHECK(
        dlcore::json_get<std::string>(back, "string") ==
        "line\n\"tab\"\t\\ é \x01");
    const dlcore::Json& array = dlcore::json_at(back, "array");
    CHECK(array.size() == 3);
    CHECK(dlcore::json_get<double>(dlcore::json_at(array, 2)) == -3.25);
    const dlcore::Json& nested = dlcore::json_at(back, "nested");
    CHECK(nested.size() == 4);
    CHECK(dlcore::json_at(nested, 0).is_object());
    CHECK(dlcore::json_get<std::string>(dlcore::json_at(nested, 1)) == "x");
    CHECK(dlcore::json_at(nested, 3).is_array());
    CHECK(dlcore::json_get<int>(dlcore::json_at(back, "object"), "inner") == 3);
    CHECK(dlcore::dump_json(back, indent) == text);
  }
  // The default layout: two-space indent, one value per line.
  dlcore::Json small = dlcore::Json::object();
  small["a"] = std::vector<int>{1, 2};
  small["b"] = "x";
  CHECK(
      dlcore::dump_json(small) ==
      "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": \"x\"\n}");
}

TEST_CASE(
    "Json escapes strings and writes non-finite numbers as null", "[io]") {
  CHECK(
      dlcore::dump_json(dlcore::Json("a\"b\\c\n\x1f"), -1) ==
      "\"a\\\"b\\\\c\\n\\u001f\"");
  dlcore::Json j = dlcore::Json::object();
  j["nan"] = std::nan("");
  j["inf"] = std::numeric_limits<double>::infinity();
  j["-inf"] = -std::numeric_limits<double>::infinity();
  j["curve"] = std::vector<double>{1.0, std::nan(""), 3.0};
  const std::string text = dlcore::dump_json(j, -1);
  CHECK(
      text ==
      "{\"nan\":null,\"inf\":null,\"-inf\":null,\"curve\":[1.0,null,3.0]}");
  const dlcore::Json back = dlcore::parse_json(text);
  CHECK(dlcore::json_at(back, "nan").is_null());
  CHECK(dlcore::json_at(back, "-inf").is_null());
  CHECK(dlcore::json_at(dlcore::json_at(back, "curve"), 1).is_null());
  CHECK(
      dlcore::json_get<std::string>(dlcore::parse_json(
          "\"\\u00e9\\ud83d\\ude00\\/\"")) == "\xc3\xa9\xf0\x9f\x98\x80/");
  CHECK(
      dlcore::json_get<double>(dlcore::json_at(
          dlcore::json_at(
              dlcore::parse_json(" { \"a\" : [ 1 , 2.5e3 , -0 ] } "), "a"),
          1)) == 2500.0);
  // Text from the earlier writer (whole doubles without ".0", arrays of
  // scalars on one line) reads the same: the numbers are integers then, and
  // json_get<double> takes them.
  const dlcore::Json old = dlcore::parse_json(
      "{\n  \"val_accuracy\": 0.8931,\n  \"seconds\": 61706,\n"
      "  \"lrs\": [0.1, 0.01, null]\n}");
  CHECK(dlcore::json_get<double>(old, "seconds") == 61706.0);
  CHECK(dlcore::json_at(old, "lrs").size() == 3);
}

TEST_CASE(
    "Json numbers round-trip exactly, also subnormals and extremes", "[io]") {
  std::vector<double> values = {
      0.0,
      -0.0,
      0.1,
      1.0 / 3.0,
      1e-5,
      1e16,
      123456789012345678.0,
      9007199254740993.0, // 2^53 + 1 rounds to 2^53
      std::numeric_limits<double>::max(),
      -std::numeric_limits<double>::max(),
      std::numeric_limits<double>::min(),
      std::numeric_limits<double>::denorm_min(),
      -std::numeric_limits<double>::denorm_min(),
      std::nextafter(std::numeric_limits<double>::min(), 0.0),
      std::numeric_limits<double>::epsilon(),
      std::nextafter(1.0, 2.0),
      std::nextafter(1.0, 0.0)};
  std::mt19937_64 rng(20261204);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int i = 0; i < 20000; ++i) {
    // Any bit pattern: every exponent, subnormals included.
    uint64_t bits = rng();
    double v = 0.0;
    std::memcpy(&v, &bits, sizeof v);
    if (std::isfinite(v)) {
      values.push_back(v);
    }
    // Subnormals specifically: a zero exponent field.
    bits &= 0x800FFFFFFFFFFFFFull;
    std::memcpy(&v, &bits, sizeof v);
    values.push_back(v);
    // Everyday values: metrics and learning rates.
    values.push_back(unit(rng));
    values.push_back(std::pow(10.0, -8.0 * unit(rng)));
  }
  dlcore::Json j = dlcore::Json::object();
  j["values"] = values;
  j["int64_min"] = std::numeric_limits<int64_t>::min();
  j["int64_max"] = std::numeric_limits<int64_t>::max();
  j["uint64_max"] = std::numeric_limits<uint64_t>::max();
  fs::path dir = fresh_dir("numbers");
  const std::string path = (dir / "numbers.json").string();
  dlcore::write_json(path, j);
  for (const dlcore::Json& back :
       {dlcore::read_json(path),
        dlcore::parse_json(dlcore::dump_json(j, -1))}) {
    const dlcore::Json& got = dlcore::json_at(back, "values");
    REQUIRE(got.size() == values.size());
    std::size_t exact = 0;
    for (std::size_t i = 0; i < values.size(); ++i) {
      const double r = dlcore::json_get<double>(dlcore::json_at(got, i));
      exact += std::memcmp(&r, &values[i], sizeof r) == 0 ? 1 : 0;
    }
    CHECK(exact == values.size()); // bit for bit, the sign of -0 included
    CHECK(
        dlcore::json_get<int64_t>(back, "int64_min") ==
        std::numeric_limits<int64_t>::min());
    CHECK(
        dlcore::json_get<int64_t>(back, "int64_max") ==
        std::numeric_limits<int64_t>::max());
    CHECK(
        dlcore::json_get<uint64_t>(back, "uint64_max") ==
        std::numeric_limits<uint64_t>::max());
  }
  fs::remove_all(dir);
}

TEST_CASE("Json keeps the order of keys in files", "[io]") {
  const std::vector<std::string> keys = {
      "zeta", "alpha", "10", "9", "", "Mu", "mu", "\xc3\xa9t\xc3\xa9"};
  dlcore::Json j = dlcore::Json::object();
  for (std::size_t i = 0; i < keys.size(); ++i) {
    j[keys[i]] = static_cast<int64_t>(i);
  }
  j["nested"]["z"] = 1;
  j["nested"]["a"] = 2;
  fs::path dir = fresh_dir("order");
  const std::string path = (dir / "order.json").string();
  dlcore::write_json(path, j);
  const std::string text = dlcore::read_file(path);
  std::size_t last = 0;
  for (const auto& k : keys) {
    const std::size_t at = text.find("\"" + k + "\":");
    REQUIRE(at != std::string::npos);
    CHECK(at >= last);
    last = at;
  }
  const dlcore::Json back = dlcore::read_json(path);
  std::vector<std::string> got;
  for (const auto& item : back.items()) {
    got.push_back(item.key());
  }
  std::vector<std::string> want = keys;
  want.push_back("nested");
  CHECK(got == want);
  CHECK(dlcore::json_at(back, "nested").begin().key() == "z"); // not sorted
  CHECK(dlcore::dump_json(back) == dlcore::dump_json(j));
  fs::remove_all(dir);
}

TEST_CASE("parse_json rejects malformed text, naming its source", "[io]") {
  for (const char* bad :
       {"",
        "{",
        "[1,]",
        "{\"a\" 1}",
        "tru",
        "01",
        "1.",
        "\"abc",
        "[1] x",
        "\"\\q\"",
        "\"\\ud800\"",
        "{1:2}",
        "\"a\nb\"",
        "NaN",
        "[1, // comment\n 2]"}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH(
        dlcore::parse_json(bad),
        Catch::StartsWith("parse_json: cannot parse JSON text: "));
    CHECK_THROWS_WITH(
        dlcore::parse_json(bad, "the Python reference's output"),
        Catch::Contains("cannot parse the Python reference's output"));
  }
  CHECK_THROWS_WITH(
      dlcore::parse_json("[1,\n 2,\n ]"),
      Catch::Contains("line 3, column 2") && Catch::Contains("(byte 10)"));

  fs::path dir = fresh_dir("bad_json");
  const std::string path = (dir / "summary.json").string();
  dlcore::write_file_atomic(path, "{\"a\": [1, 2}\n");
  CHECK_THROWS_WITH(
      dlcore::read_json(path),
      Catch::StartsWith("read_json: cannot parse '" + path + "': ") &&
          Catch::Contains("unexpected '}'"));
  CHECK_THROWS_WITH(
      dlcore::read_json((dir / "missing.json").string()),
      Catch::Contains("read_json: " + (dir / "missing.json").string()) &&
          Catch::Contains("cannot open the file"));
  CHECK_THROWS_WITH(
      dlcore::read_json(dir.string()),
      Catch::Contains("read_json: " + dir.string()) &&
          Catch::Contains("expected a regular file, but it is a folder"));
  const std::string fifo = (dir / "fifo.json").string();
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THROWS_WITH( // refused before it is opened: nothing blocks
      dlcore::read_json(fifo),
      Catch::Contains("expected a regular file, but it is a FIFO"));
  fs::remove_all(dir);
}

TEST_CASE("parse_json limits how deep arrays and objects nest", "[io]") {
  // nlohmann parses iteratively, but copying and writing a value recurse:
  // a file of a million '[' would overflow the stack later.
  auto arrays = [](std::size_t depth) {
    return std::string(depth, '[') + std::string(depth, ']');
  };
  auto objects = [](std::size_t depth) {
    std::string s;
    for (std::size_t i = 0; i < depth; ++i) {
      s += "{\"a\":";
    }
    s += "1";
    s += std::string(depth, '}');
    return s;
  };
  const dlcore::Json deepest = dlcore::parse_json(arrays(512));
  const dlcore::Json copy = deepest; // NOLINT: a copy recurses
  CHECK(dlcore::dump_json(copy, -1) == arrays(512));
  CHECK(dlcore::parse_json(objects(512)).is_object());
  for (const std::string& text :
       {arrays(513),
        objects(513),
        std::string(1000000, '['),
        std::string(1000000, '{') /* stops at the first key */,
        "[" + objects(600) + "]"}) {
    CHECK_THROWS_WITH(
        dlcore::parse_json(text),
        Catch::Contains("nested deeper than 512 levels") ||
            Catch::Contains("expected string literal"));
  }
  CHECK_THROWS_WITH(
      dlcore::parse_json(std::string(1000000, '[')),
      Catch::Contains("arrays and objects nested deeper than 512 levels"));
}

TEST_CASE("Json access is checked and names what was wrong", "[io]") {
  const dlcore::Json j = dlcore::parse_json(
      "{\"n\": 3, \"x\": 2.5, \"s\": \"t\", \"big\": 300, \"neg\": -1,"
      " \"u\": 18446744073709551615, \"a\": [1], \"b\": true}");
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const c10::Error& e) {
      return std::string(e.what_without_backtrace());
    }
    return std::string("no c10::Error");
  };
  CHECK_THAT(
      message([&] { dlcore::json_get<std::string>(j, "n"); }),
      Catch::Equals(
          "Json: expected a string under key 'n', but got an integer"));
  CHECK_THAT(
      message([&] { dlcore::json_get<int64_t>(j, "x"); }),
      Catch::Equals(
          "Json: expected an integer under key 'x', but got a double"));
  CHECK_THAT(
      message([&] { dlcore::json_get<double>(j, "s"); }),
      Catch::Equals("Json: expected a number under key 's', but got a string"));
  CHECK_THAT(
      message([&] { dlcore::json_get<bool>(j, "n"); }),
      Catch::Equals("Json: expected a bool under key 'n', but got an integer"));
  CHECK_THAT(
      message([&] { dlcore::json_get<uint8_t>(j, "big"); }),
      Catch::Equals("Json: the integer 300 under key 'big' does not fit in an "
                    "unsigned 8-bit integer"));
  CHECK_THAT(
      message([&] { dlcore::json_get<uint64_t>(j, "neg"); }),
      Catch::Contains("the integer -1 under key 'neg' does not fit"));
  CHECK_THAT(
      message([&] { dlcore::json_get<int64_t>(j, "u"); }),
      Catch::Contains("does not fit in a signed 64-bit integer"));
  CHECK_THAT(
      message([&] { dlcore::json_get<std::vector<int>>(j, "s"); }),
      Catch::StartsWith("Json: cannot convert the value under key 's': "));
  CHECK_THAT(
      message([&] { dlcore::json_at(j, "missing"); }),
      Catch::Equals("Json: no key 'missing' in the object"));
  CHECK_THAT(
      message([&] { dlcore::json_at(dlcore::json_at(j, "n"), "k"); }),
      Catch::Equals("Json: expected an object to look up key 'k' in, but got "
                    "an integer"));
  CHECK_THAT(
      message([&] { dlcore::json_at(dlcore::json_at(j, "a"), 1); }),
      Catch::Equals("Json: index 1 out of range for an array of 1"));
  CHECK_THAT(
      message([&] { dlcore::json_at(j, 0); }),
      Catch::Equals(
          "Json: expected an array to take element 0 of, but got an object"));
  CHECK(dlcore::json_get<uint64_t>(j, "u") == 18446744073709551615ull);
  CHECK(dlcore::json_get<std::vector<int>>(j, "a") == std::vector<int>{1});
  CHECK(dlcore::json_get<float>(j, "x") == 2.5f);
}

TEST_CASE("write_json writes atomically and reads back", "[io]") {
  fs::path dir = fresh_dir("json");
  std::string path = (dir / "sub" / "summary.json").string();
  dlcore::Json j = dlcore::Json::object();
  j["val_accuracy"] = 0.8931;
  dlcore::write_json(path, j);
  std::string text = dlcore::read_file(path);
  CHECK(text == "{\n  \"val_accuracy\": 0.8931\n}\n");
  CHECK(
      dlcore::json_get<double>(dlcore::read_json(path), "val_accuracy") ==
      0.8931);
  dlcore::write_json(path, j, -1);
  CHECK(dlcore::read_file(path) == "{\"val_accuracy\":0.8931}\n");
  CHECK(count_files(dir / "sub") == 1);
  // A string that is not UTF-8 has no JSON spelling: a clear error naming
  // the file, and the file as it was.
  dlcore::Json bad = dlcore::Json::object();
  bad["label"] = "caf\xe9";
  CHECK_THROWS_WITH(
      dlcore::write_json(path, bad),
      Catch::StartsWith("write_json: cannot write '" + path + "': ") &&
          Catch::Contains("incomplete UTF-8 string; last byte: 0xE9"));
  CHECK_THROWS_WITH(
      dlcore::dump_json(bad),
      Catch::StartsWith("dump_json: cannot write the value: "));
  CHECK(dlcore::read_file(path) == "{\"val_accuracy\":0.8931}\n");
  CHECK(count_files(dir / "sub") == 1);
  fs::remove_all(dir);
}

TEST_CASE("format_thousands groups digits by three", "[io]") {
  CHECK(dlcore::format_thousands(0) == "0");
  CHECK(dlcore::format_thousands(999) == "999");
  CHECK(dlcore::format_thousands(1000) == "1,000");
  CHECK(dlcore::format_thousands(61100840) == "61,100,840");
  CHECK(dlcore::format_thousands(-1234567) == "-1,234,567");
  CHECK(
      dlcore::format_thousands(std::numeric_limits<int64_t>::min()) ==
      "-9,223,372,036,854,775,808");
}

TEST_CASE(
    "write_file_atomic removes the temporary files of killed saves of the "
    "same file, and only those",
    "[io]") {
  const auto dir = fresh_dir("stale_temps");
  const std::string target = (dir / "f.txt").string();
  // A process that has exited: its pid names no process any more.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  const std::string dead = std::to_string(static_cast<long long>(child));
  const std::string alive = std::to_string(static_cast<long long>(::getppid()));
  auto touch = [&](const std::string& name) {
    std::ofstream((dir / name).string()) << "partial";
  };
  touch(".f.txt.tmp." + dead + ".a1b2c3");  // a killed save of f.txt
  touch(".f.txt.tmp." + alive + ".d4e5f6"); // a save still running
  touch(".g.txt.tmp." + dead + ".a1b2c3");  // another file's
  touch(".f.txt.tmp.Qx9Zk2");               // the older form, recent
  dlcore::write_file_atomic(target, "new");
  CHECK_FALSE(fs::exists(dir / (".f.txt.tmp." + dead + ".a1b2c3")));
  CHECK(fs::exists(dir / (".f.txt.tmp." + alive + ".d4e5f6")));
  CHECK(fs::exists(dir / (".g.txt.tmp." + dead + ".a1b2c3")));
  CHECK(fs::exists(dir / ".f.txt.tmp.Qx9Zk2"));
  // The older form is removed once it is more than a day old.
  const auto old_form = (dir / ".f.txt.tmp.Qx9Zk2").string();
  struct timespec times[2];
  times[0].tv_sec = times[1].tv_sec = ::time(nullptr) - 2 * 24 * 3600;
  times[0].tv_nsec = times[1].tv_nsec = 0;
  REQUIRE(::utimensat(AT_FDCWD, old_form.c_str(), times, 0) == 0);
  dlcore::write_file_atomic(target, "newer");
  CHECK_FALSE(fs::exists(old_form));
  std::ifstream in(target);
  std::string got;
  std::getline(in, got);
  CHECK(got == "newer");
  fs::remove_all(dir);
}
