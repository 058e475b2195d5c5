#include <dlcore/train/report.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>

namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() /
                 ("dlcore_report_" + name + "_" + std::to_string(::getpid()));
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
    "write_file_atomic creates parent folders and replaces the file",
    "[report]") {
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
    "[report]") {
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
    "[report]") {
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
    "[report]") {
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
      Catch::Contains("read_file: cannot open"));
  CHECK(count_files(dir) == 1);
  fs::remove_all(dir);
}

TEST_CASE("format_double prints the shortest round-trip text", "[report]") {
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

TEST_CASE("CsvTable round-trips numbers and text exactly", "[report]") {
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

TEST_CASE("CsvTable writes RFC 4180 text", "[report]") {
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

TEST_CASE("CsvTable rejects malformed input with clear errors", "[report]") {
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

TEST_CASE("Json writes and parses back every kind of value", "[report]") {
  dlcore::Json j = dlcore::Json::object();
  j["int"] = int64_t{-9007199254740993};
  j["double"] = 0.1;
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
    dlcore::Json back = dlcore::Json::parse(j.dump(indent));
    CHECK(back.keys() == j.keys());
    CHECK(back.at("int").as_int() == -9007199254740993);
    CHECK(back.at("double").as_double() == 0.1);
    CHECK(back.at("tiny").as_double() == 5e-324);
    CHECK(back.at("true").as_bool());
    CHECK(!back.at("false").as_bool());
    CHECK(back.at("null").is_null());
    CHECK(back.at("string").as_string() == j.at("string").as_string());
    CHECK(back.at("array").size() == 3);
    CHECK(back.at("array").at(2).as_double() == -3.25);
    CHECK(back.at("nested").size() == 4);
    CHECK(back.at("nested").at(0).is_object());
    CHECK(back.at("nested").at(1).as_string() == "x");
    CHECK(back.at("nested").at(3).is_array());
    CHECK(back.at("object").at("inner").as_int() == 3);
    CHECK(back.dump(indent) == j.dump(indent));
  }
}

TEST_CASE(
    "Json escapes strings and writes non-finite numbers as null", "[report]") {
  CHECK(dlcore::Json::quote("a\"b\\c\n\x1f") == "\"a\\\"b\\\\c\\n\\u001f\"");
  dlcore::Json j = dlcore::Json::object();
  j["nan"] = std::nan("");
  j["inf"] = std::numeric_limits<double>::infinity();
  j["curve"] = std::vector<double>{1.0, std::nan(""), 3.0};
  CHECK(j.dump(-1) == "{\"nan\":null,\"inf\":null,\"curve\":[1,null,3]}");
  CHECK(j.at("nan").is_null());
  CHECK(
      dlcore::Json::parse("\"\\u00e9\\ud83d\\ude00\\/\"").as_string() ==
      "\xc3\xa9\xf0\x9f\x98\x80/");
  CHECK(
      dlcore::Json::parse(" { \"a\" : [ 1 , 2.5e3 , -0 ] } ")
          .at("a")
          .at(1)
          .as_double() == 2500.0);
}

TEST_CASE("Json rejects malformed text and wrong access", "[report]") {
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
        "\"a\nb\""}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH(
        dlcore::Json::parse(bad), Catch::Contains("Json::parse:"));
  }
  dlcore::Json n = 3;
  CHECK_THROWS_WITH(
      n.as_string(),
      Catch::Contains("Json: expected a string, but got an integer"));
  dlcore::Json o = dlcore::Json::object();
  CHECK_THROWS_WITH(o.at("k"), Catch::Contains("Json: no key 'k'"));
  CHECK_THROWS_WITH(o.push_back(1), Catch::Contains("expected an array"));
  CHECK(!o.contains("k"));
}

TEST_CASE("write_json writes atomically and reads back", "[report]") {
  fs::path dir = fresh_dir("json");
  std::string path = (dir / "sub" / "summary.json").string();
  dlcore::Json j = dlcore::Json::object();
  j["val_accuracy"] = 0.8931;
  dlcore::write_json(path, j);
  std::string text = dlcore::read_file(path);
  CHECK(text.back() == '\n');
  CHECK(dlcore::Json::parse(text).at("val_accuracy").as_double() == 0.8931);
  CHECK(count_files(dir / "sub") == 1);
  fs::remove_all(dir);
}

TEST_CASE("format_thousands groups digits by three", "[report]") {
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
    "[report]") {
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
