#include <dlcore/train/plot.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() /
                 ("dlcore_plot_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string write_curves(const fs::path& dir) {
  dlcore::CsvTable t({"epoch", "train_loss", "val_loss", "lr"});
  for (int e = 1; e <= 5; ++e) {
    t.add_row({e, 1.0 / e, 1.2 / e, 1e-4 * std::pow(10.0, e)});
  }
  t.add_row({6, std::nan(""), 0.2, 1e2});
  std::string path = (dir / "curves.csv").string();
  t.write(path);
  return path;
}

bool is_png(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[8] = {};
  in.read(magic, 8);
  return in.gcount() == 8 &&
         std::string(magic, 8) == std::string("\x89PNG\r\n\x1a\n", 8);
}

std::size_t count_files(const fs::path& dir) {
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    (void)e;
    ++n;
  }
  return n;
}

// Sets PATH for the scope of a test, restoring it afterwards.
struct ScopedPath {
  std::string saved;
  bool had;
  explicit ScopedPath(const std::string& value) {
    const char* p = std::getenv("PATH");
    had = p != nullptr;
    saved = had ? p : "";
    ::setenv("PATH", value.c_str(), 1);
  }
  ~ScopedPath() {
    if (had) {
      ::setenv("PATH", saved.c_str(), 1);
    } else {
      ::unsetenv("PATH");
    }
  }
};

/// Whether a test whose dependency is missing may skip (with a warning)
/// instead of failing: only when DLCORE_ALLOW_MISSING_DEPS=1.
bool allow_missing_deps() {
  const char* v = std::getenv("DLCORE_ALLOW_MISSING_DEPS");
  return v != nullptr && std::string(v) == "1";
}

} // namespace

TEST_CASE(
    "plot_png renders several panels, log axes and markers to a PNG",
    "[plot]") {
  if (!dlcore::gnuplot_available()) {
    if (allow_missing_deps()) {
      WARN(
          "gnuplot is not installed; the rendering test is skipped "
          "(DLCORE_ALLOW_MISSING_DEPS=1)");
      return;
    }
    FAIL(
        "gnuplot is not installed (not found on PATH): install it, or set "
        "DLCORE_ALLOW_MISSING_DEPS=1 to skip this test");
  }
  fs::path dir = fresh_dir("render");
  std::string csv = write_curves(dir);
  dlcore::PlotPanel loss;
  loss.title("Loss")
      .xlabel("epoch")
      .ylabel("loss")
      .add(dlcore::PlotSeries(csv, "epoch", "train_loss").title("train"))
      .add(dlcore::PlotSeries(csv, "epoch", "val_loss").style("lines"));
  dlcore::PlotPanel lr;
  lr.title("it's the LR")
      .xlabel("lr")
      .ylabel("loss")
      .log_x(true)
      .key("bottom left")
      .add(dlcore::PlotSeries(csv, "lr", "val_loss"))
      .marker(1e-2, "min/10")
      .marker(0.5);
  std::string png = (dir / "out" / "curves.png").string();
  dlcore::PlotResult r = dlcore::plot_png(
      png, {loss, lr}, dlcore::PlotOptions().title("Problem 1").width(800));
  INFO(r.message);
  REQUIRE(r.ok);
  CHECK(static_cast<bool>(r));
  CHECK((r.terminal == "pngcairo" || r.terminal == "png"));
  CHECK(is_png(png));
  CHECK(count_files(dir / "out") == 1); // no script, log or temp left
  dlcore::PlotResult single = dlcore::plot_png(png, loss);
  CHECK(single.ok);
  CHECK(is_png(png));
  fs::remove_all(dir);
}

TEST_CASE(
    "plot_png reports a missing gnuplot without throwing or writing",
    "[plot]") {
  fs::path dir = fresh_dir("missing");
  std::string csv = write_curves(dir);
  dlcore::PlotPanel p;
  p.add(dlcore::PlotSeries(csv, "epoch", "train_loss"));
  std::string png = (dir / "curves.png").string();
  dlcore::PlotResult by_option = dlcore::plot_png(
      png, p, dlcore::PlotOptions().gnuplot("/nonexistent/gnuplot"));
  CHECK(!by_option.ok);
  CHECK_THAT(
      by_option.message,
      Catch::Contains("gnuplot ('/nonexistent/gnuplot') was not found") &&
          Catch::Contains("curves.png"));
  CHECK(by_option.terminal.empty());
  {
    fs::path empty_bin = dir / "empty_bin";
    fs::create_directories(empty_bin);
    ScopedPath path(empty_bin.string());
    CHECK(!dlcore::gnuplot_available());
    dlcore::PlotResult by_path = dlcore::plot_png(png, p);
    CHECK(!by_path.ok);
    CHECK_THAT(by_path.message, Catch::Contains("was not found on PATH"));
  }
  CHECK(!fs::exists(png));
  CHECK(fs::exists(csv));
  fs::remove_all(dir);
}

TEST_CASE("plot_png reports a failing gnuplot with its exit status", "[plot]") {
  fs::path dir = fresh_dir("failing");
  std::string csv = write_curves(dir);
  dlcore::PlotPanel p;
  p.add(dlcore::PlotSeries(csv, "epoch", "train_loss"));
  std::string png = (dir / "curves.png").string();
  dlcore::PlotResult r =
      dlcore::plot_png(png, p, dlcore::PlotOptions().gnuplot("/bin/false"));
  CHECK(!r.ok);
  CHECK_THAT(r.message, Catch::Contains("failed with exit status 1"));
  CHECK(!fs::exists(png));
  CHECK(count_files(dir) == 1); // only the CSV
  fs::remove_all(dir);
}

TEST_CASE("plot_png rejects invalid arguments with clear errors", "[plot]") {
  fs::path dir = fresh_dir("invalid");
  std::string csv = write_curves(dir);
  std::string png = (dir / "x.png").string();
  CHECK_THROWS_WITH(
      dlcore::plot_png(png, std::vector<dlcore::PlotPanel>{}),
      Catch::Contains("plot_png: expected at least one panel"));
  CHECK_THROWS_WITH(
      dlcore::plot_png(png, dlcore::PlotPanel().title("empty")),
      Catch::Contains("expected at least one series in panel 'empty'"));
  dlcore::PlotPanel missing_col;
  missing_col.add(dlcore::PlotSeries(csv, "epoch", "accuracy"));
  CHECK_THROWS_WITH(
      dlcore::plot_png(png, missing_col),
      Catch::Contains("CsvTable: no column 'accuracy'"));
  dlcore::PlotPanel missing_file;
  missing_file.add(
      dlcore::PlotSeries((dir / "nope.csv").string(), "epoch", "loss"));
  CHECK_THROWS_WITH(
      dlcore::plot_png(png, missing_file),
      Catch::Contains("plot_png: CSV file") &&
          Catch::Contains("does not exist"));
  dlcore::PlotPanel ok;
  ok.add(dlcore::PlotSeries(csv, "epoch", "val_loss"));
  CHECK_THROWS_WITH(
      dlcore::plot_png(png, ok, dlcore::PlotOptions().width(0)),
      Catch::Contains("plot_png: expected a positive width and height"));
  CHECK_THROWS_WITH(
      dlcore::plot_png(png, ok, dlcore::PlotOptions().columns(-1)),
      Catch::Contains("plot_png: expected columns >= 0, but got -1"));
  fs::remove_all(dir);
}
