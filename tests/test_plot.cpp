#include <dlcore/train/plot.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

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

namespace {

/// The lines of `text`.
std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) {
      end = text.size();
    }
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

/// Whether `text` has a line equal to `line`.
bool has_line(const std::string& text, const std::string& line) {
  for (const auto& l : lines_of(text)) {
    if (l == line) {
      return true;
    }
  }
  return false;
}

/// The lines of panel `p` (0-based) of a script: from its `set title` line
/// to the end of its `plot` command.
std::string panel_text(const std::string& script, int p) {
  std::string out;
  int seen = -1;
  for (const auto& l : lines_of(script)) {
    if (l.rfind("set title ", 0) == 0) {
      ++seen;
    }
    if (seen == p) {
      out += l + "\n";
    }
  }
  return out;
}

/// WCAG 2.1 contrast ratio of "#rrggbb" against white.
double contrast_with_white(const std::string& hex) {
  double lum = 0.0;
  const double weights[3] = {0.2126, 0.7152, 0.0722};
  for (int c = 0; c < 3; ++c) {
    const double v =
        std::stoi(
            hex.substr(1 + 2 * static_cast<std::size_t>(c), 2), nullptr, 16) /
        255.0;
    const double linear =
        v <= 0.03928 ? v / 12.92 : std::pow((v + 0.055) / 1.055, 2.4);
    lum += weights[c] * linear;
  }
  return 1.05 / (lum + 0.05);
}

/// Per-class results for the bar chart tests: a text column of names.
std::string write_classes(const fs::path& dir) {
  dlcore::CsvTable t({"class", "name", "natural", "uniform", "images"});
  const char* names[] = {"T-shirt/top", "Trouser", "Ankle boot"};
  for (int c = 0; c < 3; ++c) {
    t.add_row({c, names[c], 0.5 + 0.1 * c, 0.6 + 0.05 * c, 100 * (c + 1)});
  }
  std::string path = (dir / "classes.csv").string();
  t.write(path);
  return path;
}

} // namespace

TEST_CASE(
    "integer ticks step by whole numbers over the data's range", "[plot]") {
  fs::path dir = fresh_dir("integer");
  std::string csv = write_curves(dir); // epochs 1..6
  dlcore::PlotPanel p;
  p.title("loss")
      .x_format(dlcore::TickFormat::kInteger)
      .add(dlcore::PlotSeries(csv, "epoch", "train_loss"));
  std::string gp = dlcore::gnuplot_script("out.png", p);
  CHECK(has_line(gp, "set format x '%.0f'"));
  CHECK(has_line(gp, "set xtics 1, 1"));
  CHECK(has_line(gp, "set xrange [1:6]"));
  CHECK(has_line(gp, "set format y")); // y stays gnuplot's own
  // 1..15 epochs: a step of 2, the range out to whole steps.
  dlcore::CsvTable long_run({"epoch", "loss"});
  for (int e = 1; e <= 15; ++e) {
    long_run.add_row({e, 1.0 / e});
  }
  const std::string long_csv = (dir / "long.csv").string();
  long_run.write(long_csv);
  dlcore::PlotPanel q;
  q.title("long")
      .x_format(dlcore::TickFormat::kInteger)
      .add(dlcore::PlotSeries(long_csv, "epoch", "loss"));
  gp = dlcore::gnuplot_script("out.png", q);
  CHECK(has_line(gp, "set xtics 0, 2"));
  CHECK(has_line(gp, "set xrange [0:16]"));
  // A given end is kept; a single epoch gets a range around it.
  q.x_range({1.0, std::nan("")});
  gp = dlcore::gnuplot_script("out.png", q);
  CHECK(has_line(gp, "set xrange [1:16]"));
  dlcore::CsvTable one({"epoch", "loss"});
  one.add_row({1, 0.5});
  const std::string one_csv = (dir / "one.csv").string();
  one.write(one_csv);
  dlcore::PlotPanel r;
  r.x_format(dlcore::TickFormat::kInteger)
      .add(dlcore::PlotSeries(one_csv, "epoch", "loss"));
  gp = dlcore::gnuplot_script("out.png", r);
  CHECK(has_line(gp, "set xrange [0:2]"));
  CHECK(has_line(gp, "set xtics 0, 1"));
  fs::remove_all(dir);
}

TEST_CASE(
    "the integer tick step is the smallest 1, 2 or 5 times ten to the k "
    "giving at most 10 intervals",
    "[plot]") {
  for (double span :
       {0.0,
        0.5,
        1.0,
        9.0,
        10.0,
        11.0,
        14.0,
        20.0,
        21.0,
        49.0,
        50.0,
        51.0,
        99.0,
        100.0,
        101.0,
        999.0,
        12345.0,
        3e6}) {
    std::vector<double> candidates;
    for (double p = 1.0; p <= 1e7; p *= 10.0) {
      for (double m : {1.0, 2.0, 5.0}) {
        candidates.push_back(m * p);
      }
    }
    double expected = 0.0;
    for (double c : candidates) { // ascending
      if (span / c <= 10.0) {
        expected = c;
        break;
      }
    }
    INFO("span " << span);
    CHECK(dlcore::detail::integer_tick_step(span) == expected);
  }
}

TEST_CASE(
    "percent axes scale fractions by 100 and log axes print 1e-07", "[plot]") {
  fs::path dir = fresh_dir("formats");
  std::string csv = write_curves(dir);
  dlcore::PlotPanel p;
  p.title("acc")
      .y_format(dlcore::TickFormat::kPercent)
      .y_range({0.0, 1.0})
      .add(dlcore::PlotSeries(csv, "epoch", "val_loss"));
  dlcore::PlotPanel lr;
  lr.title("lr")
      .log_x(true)
      .x_format(dlcore::TickFormat::kScientific)
      .add(dlcore::PlotSeries(csv, "lr", "train_loss"))
      .marker(1e-3, "a");
  dlcore::PlotPanel lin;
  lin.title("lin")
      .x_format(dlcore::TickFormat::kScientific)
      .add(dlcore::PlotSeries(csv, "lr", "train_loss"));
  std::string gp = dlcore::gnuplot_script("out.png", {p, lr, lin});
  const std::string acc = panel_text(gp, 0);
  CHECK(has_line(acc, "set format y '%g%%'"));
  CHECK(has_line(acc, "set yrange [0:100]"));
  // Automatic percent ends: the data's (0.2 .. 1) plus 5% of the span, not
  // past 100% since the data stay within it.
  dlcore::PlotPanel automatic;
  automatic.y_format(dlcore::TickFormat::kPercent)
      .add(dlcore::PlotSeries(csv, "epoch", "train_loss"));
  CHECK(has_line(
      dlcore::gnuplot_script("out.png", automatic), "set yrange [16:100]"));
  CHECK_THAT(acc, Catch::Contains("using 1:($3*100) axes x1y1"));
  const std::string log = panel_text(gp, 1);
  CHECK(has_line(log, "set logscale x 10"));
  CHECK(has_line(log, "set format x '%.0e'"));
  CHECK_THAT(log, Catch::Contains("using 4:2 axes x1y1"));
  CHECK_THAT(log, Catch::Contains("set arrow from first 0.001, graph 0"));
  const std::string linear = panel_text(gp, 2);
  CHECK(has_line(linear, "unset logscale x"));
  CHECK(has_line(linear, "set format x '%.1e'"));
  fs::remove_all(dir);
}

TEST_CASE(
    "series on y2 get the right-hand axis with its own label, range and "
    "format",
    "[plot]") {
  fs::path dir = fresh_dir("y2");
  std::string csv = write_curves(dir);
  dlcore::PlotPanel both;
  both.title("lr and loss")
      .ylabel("loss")
      .y2label("learning rate")
      .log_y2(true)
      .y2_format(dlcore::TickFormat::kScientific)
      .y2_range({1e-5, 1e3})
      .add(dlcore::PlotSeries(csv, "epoch", "train_loss"))
      .add(dlcore::PlotSeries(csv, "epoch", "lr").y2(true));
  dlcore::PlotPanel plain;
  plain.title("plain").add(dlcore::PlotSeries(csv, "epoch", "val_loss"));
  std::string gp = dlcore::gnuplot_script("out.png", {both, plain});
  const std::string first = panel_text(gp, 0);
  CHECK(has_line(first, "set ytics nomirror"));
  CHECK(has_line(first, "set y2tics"));
  CHECK(has_line(first, "set y2label 'learning rate'"));
  CHECK(has_line(first, "set logscale y2 10"));
  CHECK(has_line(first, "set y2range [1e-05:1000]"));
  CHECK(has_line(first, "set format y2 '%.0e'"));
  CHECK_THAT(first, Catch::Contains("using 1:2 axes x1y1"));
  CHECK_THAT(first, Catch::Contains("using 1:4 axes x1y2"));
  // The next panel has no y2 axis left over from the first.
  const std::string second = panel_text(gp, 1);
  CHECK(has_line(second, "unset y2tics"));
  CHECK(has_line(second, "unset y2label"));
  CHECK(has_line(second, "set ytics mirror"));
  CHECK_THAT(second, !Catch::Contains("x1y2"));
  fs::remove_all(dir);
}

TEST_CASE(
    "a grouped bar chart draws one cluster per row named by its text",
    "[plot]") {
  fs::path dir = fresh_dir("bars");
  std::string csv = write_classes(dir);
  dlcore::PlotPanel bars;
  bars.title("per class")
      .grouped_bars(true)
      .y_format(dlcore::TickFormat::kPercent)
      .add(dlcore::PlotSeries(csv, "name", "natural"))
      .add(dlcore::PlotSeries(csv, "name", "uniform").title("uniform draws"));
  std::string gp = dlcore::gnuplot_script("out.png", bars);
  CHECK(has_line(gp, "set style histogram clustered gap 1"));
  // Bars rise from 0; the top is the highest bar (70%) plus 5% of the span,
  // rounded up to a tenth of a percent.
  CHECK(has_line(gp, "set yrange [0:73.5]"));
  CHECK_THAT(
      gp,
      Catch::Contains("using ($3*100):xtic(2) with histograms linetype 1 title "
                      "'natural'"));
  CHECK_THAT(
      gp,
      Catch::Contains(
          "using ($4*100):xtic(2) with histograms linetype 2 title 'uniform "
          "draws'"));
  // A curve panel after a bar chart is drawn as curves again.
  dlcore::PlotPanel curve;
  curve.title("curve").add(dlcore::PlotSeries(csv, "class", "natural"));
  gp = dlcore::gnuplot_script("out.png", {bars, curve});
  const std::string second = panel_text(gp, 1);
  CHECK(has_line(second, "set xtics scale default"));
  CHECK(has_line(second, "set grid xtics ytics"));
  CHECK(has_line(second, "set yrange [*:*]"));
  CHECK_THAT(second, Catch::Contains("with linespoints"));

  dlcore::PlotPanel mixed = bars;
  mixed.add(dlcore::PlotSeries(write_curves(dir), "epoch", "train_loss"));
  CHECK_THROWS_WITH(
      dlcore::gnuplot_script("out.png", mixed),
      Catch::Contains("grouped bar chart 'per class' must share one CSV and "
                      "one x column") &&
          Catch::Contains("series 'train_loss'"));
  dlcore::PlotPanel on_y2 = bars;
  on_y2.add(dlcore::PlotSeries(csv, "name", "images").y2(true));
  CHECK_THROWS_WITH(
      dlcore::gnuplot_script("out.png", on_y2),
      Catch::Contains("and is on y2"));
  dlcore::PlotPanel log_bars = bars;
  log_bars.log_x(true);
  CHECK_THROWS_WITH(
      dlcore::gnuplot_script("out.png", log_bars),
      Catch::Contains("panel 'per class' is a grouped bar chart") &&
          Catch::Contains("no log_x, x_format, x_range or markers"));
  dlcore::PlotPanel marked = bars;
  marked.marker(1.0);
  CHECK_THROWS_WITH(
      dlcore::gnuplot_script("out.png", marked),
      Catch::Contains("is a grouped bar chart"));
  fs::remove_all(dir);
}

TEST_CASE("legends sit outside the data unless asked otherwise", "[plot]") {
  fs::path dir = fresh_dir("key");
  std::string csv = write_curves(dir);
  dlcore::PlotPanel p;
  p.add(dlcore::PlotSeries(csv, "epoch", "train_loss"));
  CHECK(p.key() == "below");
  CHECK(has_line(
      dlcore::gnuplot_script("out.png", p),
      "set key below center horizontal noopaque nobox"));
  CHECK(has_line(
      dlcore::gnuplot_script("out.png", p.key("right")),
      "set key outside right top vertical noopaque nobox"));
  CHECK(has_line(dlcore::gnuplot_script("out.png", p.key("off")), "unset key"));
  CHECK(has_line(
      dlcore::gnuplot_script("out.png", p.key("bottom right")),
      "set key bottom right noopaque nobox"));
  for (const char* bad : {"top; system 'x'", "top\nplot 1", "'x'"}) {
    CHECK_THROWS_WITH(
        dlcore::gnuplot_script("out.png", p.key(bad)),
        Catch::Contains("plot_png: the key of panel") &&
            Catch::Contains("must be \"below\", \"right\", \"off\""));
  }
  fs::remove_all(dir);
}

TEST_CASE(
    "the palette has 8 distinct colours, each at least 3:1 against white",
    "[plot]") {
  const std::vector<std::string> palette = dlcore::plot_palette();
  REQUIRE(palette.size() == 8);
  for (std::size_t i = 0; i < palette.size(); ++i) {
    INFO(palette[i]);
    REQUIRE(palette[i].size() == 7);
    CHECK(palette[i][0] == '#');
    CHECK(contrast_with_white(palette[i]) >= 3.0);
    for (std::size_t j = 0; j < i; ++j) {
      CHECK(palette[i] != palette[j]);
    }
  }
  // gnuplot's own fifth colour, a yellow, fails the same check.
  CHECK(contrast_with_white("#f0e442") < 3.0);
  fs::path dir = fresh_dir("palette");
  dlcore::PlotPanel p;
  p.add(dlcore::PlotSeries(write_curves(dir), "epoch", "train_loss"));
  const std::string gp = dlcore::gnuplot_script("out.png", p);
  for (std::size_t i = 0; i < palette.size(); ++i) {
    CHECK(has_line(
        gp,
        "set linetype " + std::to_string(i + 1) + " linecolor rgb '" +
            palette[i] + "' pointtype " + std::to_string(i + 1)));
  }
  CHECK(has_line(gp, "set linetype cycle 8"));
  fs::remove_all(dir);
}

TEST_CASE(
    "plot_png renders y2 axes, formats and a grouped bar chart without "
    "warnings",
    "[plot]") {
  if (!dlcore::gnuplot_available()) {
    if (allow_missing_deps()) {
      WARN("gnuplot is not installed; skipped (DLCORE_ALLOW_MISSING_DEPS=1)");
      return;
    }
    FAIL(
        "gnuplot is not installed (not found on PATH): install it, or set "
        "DLCORE_ALLOW_MISSING_DEPS=1 to skip this test");
  }
  fs::path dir = fresh_dir("render_new");
  std::string csv = write_curves(dir);
  std::string classes = write_classes(dir);
  dlcore::PlotPanel sched;
  sched.title("schedule")
      .x_format(dlcore::TickFormat::kInteger)
      .ylabel("loss")
      .y2label("lr")
      .log_y2(true)
      .y2_format(dlcore::TickFormat::kScientific)
      .key("right")
      .add(dlcore::PlotSeries(csv, "epoch", "train_loss"))
      .add(dlcore::PlotSeries(csv, "epoch", "lr").y2(true).style("lines"));
  dlcore::PlotPanel bars;
  bars.title("per class")
      .grouped_bars(true)
      .y_format(dlcore::TickFormat::kPercent)
      .add(dlcore::PlotSeries(classes, "name", "natural"))
      .add(dlcore::PlotSeries(classes, "name", "uniform"));
  std::string png = (dir / "out" / "fig.png").string();
  dlcore::PlotResult r = dlcore::plot_png(png, {sched, bars});
  INFO(r.message);
  REQUIRE(r.ok);
  CHECK(r.message.empty()); // gnuplot printed no warning
  CHECK(is_png(png));
  CHECK(count_files(dir / "out") == 1);
  fs::remove_all(dir);
}

TEST_CASE("invalid ranges, styles and markers are clear errors", "[plot]") {
  fs::path dir = fresh_dir("invalid_new");
  std::string csv = write_curves(dir);
  const double nan = std::nan("");
  const double inf = std::numeric_limits<double>::infinity();
  auto panel = [&] {
    dlcore::PlotPanel p;
    p.title("p").add(dlcore::PlotSeries(csv, "epoch", "train_loss"));
    return p;
  };
  CHECK_THROWS_WITH(
      dlcore::gnuplot_script("o.png", panel().y_range({1.0, 1.0})),
      Catch::Contains(
          "plot_png: the y range of panel 'p' must have min < max, but got "
          "[1, 1]"));
  CHECK_THROWS_WITH(
      dlcore::gnuplot_script("o.png", panel().x_range({nan, inf})),
      Catch::Contains("the x range of panel 'p' must have finite (or NaN: "
                      "automatic) ends, but got [nan, inf]"));
  CHECK_THROWS_WITH(
      dlcore::gnuplot_script(
          "o.png", panel().log_y2(true).y2_range({0.0, nan})),
      Catch::Contains("the y2 range of panel 'p' is on a log axis and must be "
                      "> 0, but got [0, nan]"));
  dlcore::PlotPanel styled;
  styled.title("p").add(
      dlcore::PlotSeries(csv, "epoch", "val_loss").style("lines; !rm"));
  CHECK_THROWS_WITH(
      dlcore::gnuplot_script("o.png", styled),
      Catch::Contains("the style of series 'val_loss' in panel 'p' must be a "
                      "gnuplot style name"));
  dlcore::PlotPanel thin;
  thin.title("p").add(
      dlcore::PlotSeries(csv, "epoch", "val_loss").line_width(0.0));
  CHECK_THROWS_WITH(
      dlcore::gnuplot_script("o.png", thin),
      Catch::Contains("the line width of series 'val_loss' in panel 'p' must "
                      "be finite and > 0, but got 0"));
  CHECK_THROWS_WITH(
      dlcore::gnuplot_script("o.png", panel().log_x(true).marker(0.0)),
      Catch::Contains("a marker of panel 'p' must be at a finite x > 0 (log "
                      "axis), but got 0"));
  CHECK_THROWS_WITH(
      dlcore::gnuplot_script("o.png", panel().marker(nan)),
      Catch::Contains("must be at a finite x, but got nan"));
  // Checked before anything is written, also when gnuplot is missing.
  CHECK_THROWS_WITH(
      dlcore::plot_png(
          (dir / "x.png").string(),
          panel().y_range({2.0, 1.0}),
          dlcore::PlotOptions().gnuplot("/nonexistent/gnuplot")),
      Catch::Contains("min < max"));
  CHECK(count_files(dir) == 1);
  fs::remove_all(dir);
}
