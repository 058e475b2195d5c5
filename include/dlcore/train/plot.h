#pragma once

#include <dlcore/detail/atomic_file.h>
#include <dlcore/io/csv.h>

#include <c10/util/Exception.h>
#include <torch/arg.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

extern char** environ; // NOLINT: POSIX

namespace dlcore {

/// How an axis labels its ticks.
enum class TickFormat {
  /// gnuplot's own choice.
  kAuto,
  /// Whole numbers at a whole-number step of 1, 2 or 5 times a power of ten
  /// (at most about 10 ticks), e.g. epochs 1..15 ticked 0, 2, 4, ..., 16; on
  /// a log axis, its ticks without decimals.
  kInteger,
  /// The axis's values are fractions drawn as percentages: 0.25 is drawn
  /// and labelled "25%" (ranges are still given as fractions). An automatic
  /// end on a linear axis is the data's, 5% of their span further out, but
  /// not past 0% or 100% when the data stay within them.
  kPercent,
  /// Mantissa and exponent: "1e-07", "1e-05" on a log axis (its ticks are
  /// powers of ten), "2.5e-03" on a linear one.
  kScientific,
};

/// A range of an axis in data units (fractions on a `kPercent` axis); a NaN
/// end is chosen by gnuplot from the data.
struct PlotRange {
  double min = std::numeric_limits<double>::quiet_NaN();
  double max = std::numeric_limits<double>::quiet_NaN();
};

/// One curve of a plot: column `y` against column `x` of a CSV file with a
/// header line (as `CsvTable` writes).
struct PlotSeries {
  PlotSeries(std::string csv, std::string x, std::string y)
      : csv_(std::move(csv)), x_(std::move(x)), y_(std::move(y)) {}
  /// CSV file holding the data.
  TORCH_ARG(std::string, csv);
  /// Column of the x values (in a grouped bar chart, the column of the
  /// groups' names).
  TORCH_ARG(std::string, x);
  /// Column of the y values.
  TORCH_ARG(std::string, y);
  /// Legend entry; empty means the y column's name. Default: ""
  TORCH_ARG(std::string, title) = "";
  /// gnuplot `with` style: "lines", "linespoints", "points" (ignored in a
  /// grouped bar chart). Default: "linespoints"
  TORCH_ARG(std::string, style) = "linespoints";
  /// Drawn against the second (right) y axis. Default: false
  TORCH_ARG(bool, y2) = false;
  /// Line width (> 0). Default: 2
  TORCH_ARG(double, line_width) = 2.0;

 public:
};

/// A vertical line at `x` with an optional label (an LR finder's suggested
/// learning rates, a schedule's cycle boundaries).
struct PlotMarker {
  double x = 0.0;
  std::string label;
};

/// One panel (axes) of a figure: curves of CSV columns, or a grouped bar
/// chart (`grouped_bars`).
///
/// Axes: x along the bottom, y on the left, and y2 on the right for the
/// series marked `y2(true)`; each has a label, a log scale, a `TickFormat`
/// and a `PlotRange`.
struct PlotPanel {
  /// Panel title. Default: ""
  TORCH_ARG(std::string, title) = "";
  /// x axis label. Default: ""
  TORCH_ARG(std::string, xlabel) = "";
  /// y axis label. Default: ""
  TORCH_ARG(std::string, ylabel) = "";
  /// Right-hand y axis label (shown when a series is on y2). Default: ""
  TORCH_ARG(std::string, y2label) = "";
  /// Logarithmic x axis (base 10). Default: false
  TORCH_ARG(bool, log_x) = false;
  /// Logarithmic y axis (base 10). Default: false
  TORCH_ARG(bool, log_y) = false;
  /// Logarithmic y2 axis (base 10). Default: false
  TORCH_ARG(bool, log_y2) = false;
  /// Tick labels of the x axis. Default: TickFormat::kAuto
  TORCH_ARG(TickFormat, x_format) = TickFormat::kAuto;
  /// Tick labels of the y axis. Default: TickFormat::kAuto
  TORCH_ARG(TickFormat, y_format) = TickFormat::kAuto;
  /// Tick labels of the y2 axis. Default: TickFormat::kAuto
  TORCH_ARG(TickFormat, y2_format) = TickFormat::kAuto;
  /// Range of the x axis. Default: from the data
  TORCH_ARG(PlotRange, x_range) = {};
  /// Range of the y axis. Default: from the data (from 0 in a bar chart)
  TORCH_ARG(PlotRange, y_range) = {};
  /// Range of the y2 axis. Default: from the data
  TORCH_ARG(PlotRange, y2_range) = {};
  /// The curves (or the bars of each group). Default: none
  TORCH_ARG(std::vector<PlotSeries>, series) = {};
  /// Vertical markers. Default: none
  TORCH_ARG(std::vector<PlotMarker>, markers) = {};
  /// Legend position: "below" (under the plot area, in columns), "right"
  /// (outside, right of the plot area, and of the y2 axis), "off", or a
  /// position inside the plot area in gnuplot's words ("top left",
  /// "bottom right"), which may cover data. Default: "below"
  TORCH_ARG(std::string, key) = "below";
  /// Draws a grouped bar chart instead of curves: one group per CSV row,
  /// named by the text of the x column, with one bar per series (its y
  /// column), all series from one CSV and one x column. The x axis is
  /// categorical (no log scale, range, format or markers) and there is no
  /// y2 axis. Default: false
  TORCH_ARG(bool, grouped_bars) = false;

 public:
  /// Appends a curve.
  PlotPanel& add(PlotSeries s) {
    series_.push_back(std::move(s));
    return *this;
  }
  /// Appends a vertical marker at `x`.
  PlotPanel& marker(double x, std::string label = "") {
    markers_.push_back({x, std::move(label)});
    return *this;
  }
};

/// Options of `plot_png`.
struct PlotOptions {
  /// The gnuplot executable: a name searched on PATH, or a path.
  /// Default: "gnuplot"
  TORCH_ARG(std::string, gnuplot) = "gnuplot";
  /// Image width in pixels. Default: 900
  TORCH_ARG(int, width) = 900;
  /// Image height in pixels. Default: 600
  TORCH_ARG(int, height) = 600;
  /// Panels per row; 0 means one row of up to 3 panels, then more rows.
  /// Default: 0
  TORCH_ARG(int, columns) = 0;
  /// Title over the whole figure. Default: ""
  TORCH_ARG(std::string, title) = "";

 public:
};

/// What `plot_png` did: `ok` is true when the PNG was written; otherwise
/// `message` says why (gnuplot missing, a gnuplot error, a missing column).
/// On success `message` holds gnuplot's warnings, if any.
struct PlotResult {
  bool ok = false;
  std::string message;
  /// "pngcairo" or "png" (the terminal gnuplot used), empty on failure.
  std::string terminal;

  explicit operator bool() const {
    return ok;
  }
};

/// The colours of series 1, 2, ... (then again from the first), as
/// "#rrggbb": distinct hues (Okabe and Ito's colour-blind-safe set, less its
/// yellow, orange and sky blue, with darker additions), each with a contrast
/// ratio of at least 3:1 against the white background (WCAG 2.1's minimum
/// for graphics), so no curve or bar is near-invisible.
inline std::vector<std::string> plot_palette() {
  return {
      "#0072b2", // blue
      "#d55e00", // vermillion
      "#009e73", // bluish green
      "#c51b7d", // magenta
      "#8c564b", // brown
      "#4d4d4d", // dark grey
      "#7570b3", // slate violet
      "#b8860b", // dark goldenrod
  };
}

namespace detail {

/// The gnuplot single-quoted literal of `s` ('' doubles a quote).
inline std::string gnuplot_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += '\'';
    }
    out += c;
  }
  out += '\'';
  return out;
}

/// Full path of an executable: `name` itself when it holds a '/', else the
/// first match on PATH; empty when none is found.
inline std::string find_executable(const std::string& name) {
  auto executable = [](const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
           ::access(p.c_str(), X_OK) == 0;
  };
  if (name.empty()) {
    return "";
  }
  if (name.find('/') != std::string::npos) {
    return executable(name) ? name : "";
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    std::size_t end = dirs.find(':', start);
    if (end == std::string::npos) {
      end = dirs.size();
    }
    std::string dir = dirs.substr(start, end - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (executable(candidate)) {
      return candidate;
    }
    start = end + 1;
  }
  return "";
}

/// Runs `exe script`, stdout and stderr into `log`; returns the exit status
/// (-1 when it could not start, 128+signal when killed).
inline int run_program(
    const std::string& exe, const std::string& script, const std::string& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(
      &actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> argv = {
      const_cast<char*>(exe.c_str()),
      const_cast<char*>(script.c_str()),
      nullptr};
  pid_t pid = 0;
  int rc =
      ::posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return -1;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return -1;
    }
  }
  if (WIFEXITED(status)) {
    return WEXITSTATUS(status);
  }
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
}

} // namespace detail

/// True when `gnuplot` (a name on PATH or a path) can be run.
inline bool gnuplot_available(const std::string& gnuplot = "gnuplot") {
  return !detail::find_executable(gnuplot).empty();
}

namespace detail {

/// One axis of a panel as the script writer sees it.
struct PlotAxisSpec {
  const char* name; // "x", "y", "y2"
  std::string label;
  bool log;
  TickFormat format;
  PlotRange range;
};

/// Multiplies an axis's data for `kPercent`.
inline double axis_scale(TickFormat f) {
  return f == TickFormat::kPercent ? 100.0 : 1.0;
}

/// gnuplot's `using` term for 1-based column `col`, scaled for the axis.
inline std::string using_term(std::size_t col, TickFormat f) {
  const std::string c = std::to_string(col);
  return f == TickFormat::kPercent ? "($" + c + "*100)" : c;
}

/// The whole-number tick step of `kInteger` for data spanning `span`: the
/// smallest of 1, 2, 5, 10, 20, 50, ... giving at most 10 intervals.
inline double integer_tick_step(double span) {
  double step = 1.0;
  while (span / step > 10.0 && step < 1e300) {
    if (span / (2.0 * step) <= 10.0) {
      return 2.0 * step;
    }
    if (span / (5.0 * step) <= 10.0) {
      return 5.0 * step;
    }
    step *= 10.0;
  }
  return step;
}

/// Checks `range` of axis `name` (finite or NaN ends, min < max, > 0 on a
/// log axis).
inline void check_plot_range(
    const PlotRange& r, const char* name, bool log, const std::string& panel) {
  const auto ok_end = [](double v) {
    return std::isnan(v) || std::isfinite(v);
  };
  TORCH_CHECK(
      ok_end(r.min) && ok_end(r.max),
      "plot_png: the ",
      name,
      " range of panel '",
      panel,
      "' must have finite (or NaN: automatic) ends, but got [",
      r.min,
      ", ",
      r.max,
      "]");
  TORCH_CHECK(
      std::isnan(r.min) || std::isnan(r.max) || r.min < r.max,
      "plot_png: the ",
      name,
      " range of panel '",
      panel,
      "' must have min < max, but got [",
      r.min,
      ", ",
      r.max,
      "]");
  TORCH_CHECK(
      !log || ((std::isnan(r.min) || r.min > 0.0) &&
               (std::isnan(r.max) || r.max > 0.0)),
      "plot_png: the ",
      name,
      " range of panel '",
      panel,
      "' is on a log axis and must be > 0, but got [",
      r.min,
      ", ",
      r.max,
      "]");
}

/// Whether every character of `s` is one of `allowed` or a letter or digit
/// (words passed to gnuplot unquoted cannot start another command).
inline bool plain_words(const std::string& s, const char* allowed) {
  for (char c : s) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                       (c >= '0' && c <= '9');
    if (!alnum && std::strchr(allowed, c) == nullptr) {
      return false;
    }
  }
  return true;
}

/// The gnuplot commands that set up `axis` of a panel; `values` are the
/// data on it (read only for `kInteger` on a linear axis, whose range is
/// the data's, extended to whole tick steps, unless one is given).
inline std::string axis_commands(
    const PlotAxisSpec& axis, const std::vector<double>& values) {
  const std::string a = axis.name;
  std::string gp;
  gp += "set " + a + "label " + gnuplot_quote(axis.label) + "\n";
  gp += axis.log ? "set logscale " + a + " 10\n" : "unset logscale " + a + "\n";
  PlotRange range = axis.range;
  std::string tics;
  if (axis.format == TickFormat::kInteger && !axis.log) {
    double lo = std::numeric_limits<double>::infinity();
    double hi = -lo;
    for (double v : values) {
      if (std::isfinite(v)) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
    }
    lo = std::isnan(range.min) ? lo : range.min;
    hi = std::isnan(range.max) ? hi : range.max;
    if (lo <= hi) {
      const double step = lo < hi ? integer_tick_step(hi - lo) : 1.0;
      double lo_tick = std::floor(lo / step) * step;
      double hi_tick = std::ceil(hi / step) * step;
      if (lo_tick == hi_tick) {
        lo_tick -= step;
        hi_tick += step;
      }
      range.min = std::isnan(range.min) ? lo_tick : range.min;
      range.max = std::isnan(range.max) ? hi_tick : range.max;
      tics = "set " + a + "tics " + format_double(lo_tick) + ", " +
             format_double(step) + "\n";
    }
  }
  if (axis.format == TickFormat::kPercent && !axis.log) {
    // The data's range, 5% of it added at each automatic end, no further
    // than 0% or 100% when the data stay within them, in whole tenths of a
    // percent.
    double lo = std::numeric_limits<double>::infinity();
    double hi = -lo;
    for (double v : values) {
      if (std::isfinite(v)) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
    }
    lo = std::isnan(range.min) ? lo : range.min;
    hi = std::isnan(range.max) ? hi : range.max;
    if (lo <= hi) {
      const double span = hi > lo ? hi - lo : std::max(std::fabs(hi), 0.01);
      if (std::isnan(range.min)) {
        const double padded = lo - 0.05 * span;
        range.min = std::floor(padded * 1000.0) / 1000.0;
        if (lo >= 0.0) {
          range.min = std::max(range.min, 0.0);
        }
      }
      if (std::isnan(range.max)) {
        const double padded = hi + 0.05 * span;
        range.max = std::ceil(padded * 1000.0) / 1000.0;
        if (hi <= 1.0) {
          range.max = std::min(range.max, 1.0);
        }
      }
    }
  }
  const double scale = axis_scale(axis.format);
  const auto end = [&](double v) {
    if (std::isnan(v)) {
      return std::string("*");
    }
    // Percent ends to 1e-4 of a percent: 0.127 is "12.7", not 12.700...01.
    return scale == 1.0 ? format_double(v)
                        : format_double(std::round(v * scale * 1e4) / 1e4);
  };
  gp += "set " + a + "range [" + end(range.min) + ":" + end(range.max) + "]\n";
  gp += tics;
  switch (axis.format) {
    case TickFormat::kAuto:
      gp += "set format " + a + "\n";
      break;
    case TickFormat::kInteger:
      gp += "set format " + a + " '%.0f'\n";
      break;
    case TickFormat::kPercent:
      gp += "set format " + a + " '%g%%'\n";
      break;
    case TickFormat::kScientific:
      gp += "set format " + a + (axis.log ? " '%.0e'\n" : " '%.1e'\n");
      break;
  }
  return gp;
}

/// The commands of `gnuplot_script` after `set output`: the palette, the
/// layout and every panel. Checks every argument.
inline std::string plot_commands(
    const std::vector<PlotPanel>& panels, const PlotOptions& options) {
  TORCH_CHECK(!panels.empty(), "plot_png: expected at least one panel");
  TORCH_CHECK(
      options.width() > 0 && options.height() > 0,
      "plot_png: expected a positive width and height, but got ",
      options.width(),
      "x",
      options.height());
  TORCH_CHECK(
      options.columns() >= 0,
      "plot_png: expected columns >= 0, but got ",
      options.columns());

  const int n = static_cast<int>(panels.size());
  int columns = options.columns() > 0 ? options.columns() : std::min(n, 3);
  columns = std::min(columns, n);
  const int rows = (n + columns - 1) / columns;

  std::string gp;
  gp += "set datafile separator ','\n";
  gp += "set datafile missing 'nan'\n";
  const std::vector<std::string> palette = plot_palette();
  for (std::size_t i = 0; i < palette.size(); ++i) {
    gp += "set linetype " + std::to_string(i + 1) + " linecolor rgb '" +
          palette[i] + "' pointtype " + std::to_string(i + 1) + "\n";
  }
  gp += "set linetype cycle " + std::to_string(palette.size()) + "\n";
  std::string mp = "set multiplot layout " + std::to_string(rows) + "," +
                   std::to_string(columns);
  if (!options.title().empty()) {
    mp += " title " + detail::gnuplot_quote(options.title());
  }
  gp += mp + "\n";

  for (const PlotPanel& panel : panels) {
    const std::string& name = panel.title();
    TORCH_CHECK(
        !panel.series().empty(),
        "plot_png: expected at least one series in panel '",
        name,
        "'");
    TORCH_CHECK(
        detail::plain_words(panel.key(), " ,."),
        "plot_png: the key of panel '",
        name,
        "' must be \"below\", \"right\", \"off\" or gnuplot's words for a "
        "position (letters, digits, spaces), but got '",
        panel.key(),
        "'");
    detail::check_plot_range(panel.x_range(), "x", panel.log_x(), name);
    detail::check_plot_range(panel.y_range(), "y", panel.log_y(), name);
    detail::check_plot_range(panel.y2_range(), "y2", panel.log_y2(), name);
    const bool bars = panel.grouped_bars();
    if (bars) {
      TORCH_CHECK(
          !panel.log_x() && panel.x_format() == TickFormat::kAuto &&
              std::isnan(panel.x_range().min) &&
              std::isnan(panel.x_range().max) && panel.markers().empty(),
          "plot_png: panel '",
          name,
          "' is a grouped bar chart, whose x axis names the groups: it takes "
          "no log_x, x_format, x_range or markers");
    }

    // Columns by name, and the values on axes that need them.
    struct Resolved {
      std::size_t x, y;
    };
    std::vector<Resolved> cols;
    std::vector<double> xs, ys, y2s;
    bool any_y2 = false;
    for (const auto& s : panel.series()) {
      TORCH_CHECK(
          detail::is_regular_file(s.csv()),
          "plot_png: CSV file '",
          s.csv(),
          "' does not exist");
      TORCH_CHECK(
          !s.style().empty() && detail::plain_words(s.style(), ""),
          "plot_png: the style of series '",
          s.y(),
          "' in panel '",
          name,
          "' must be a gnuplot style name such as \"lines\", but got '",
          s.style(),
          "'");
      TORCH_CHECK(
          std::isfinite(s.line_width()) && s.line_width() > 0.0,
          "plot_png: the line width of series '",
          s.y(),
          "' in panel '",
          name,
          "' must be finite and > 0, but got ",
          s.line_width());
      if (bars) {
        const PlotSeries& first = panel.series().front();
        TORCH_CHECK(
            s.csv() == first.csv() && s.x() == first.x() && !s.y2(),
            "plot_png: the series of grouped bar chart '",
            name,
            "' must share one CSV and one x column and lie on the y axis, "
            "but series '",
            s.y(),
            "' has CSV '",
            s.csv(),
            "', x column '",
            s.x(),
            "'",
            s.y2() ? " and is on y2" : "");
      }
      CsvTable table = CsvTable::read(s.csv());
      cols.push_back(
          {table.column_index(s.x()) + 1, table.column_index(s.y()) + 1});
      any_y2 = any_y2 || s.y2();
      auto append = [](std::vector<double>& to, const std::vector<double>& v) {
        to.insert(to.end(), v.begin(), v.end());
      };
      if (!bars && panel.x_format() == TickFormat::kInteger && !panel.log_x()) {
        append(xs, table.column(s.x()));
      }
      const TickFormat yf = s.y2() ? panel.y2_format() : panel.y_format();
      const bool ylog = s.y2() ? panel.log_y2() : panel.log_y();
      if ((yf == TickFormat::kInteger || yf == TickFormat::kPercent) && !ylog) {
        append(s.y2() ? y2s : ys, table.column(s.y()));
      }
    }

    gp += "set title " + detail::gnuplot_quote(name) + "\n";
    gp +=
        "unset arrow\nunset label\nset xtics autofreq norotate\n"
        "set ytics autofreq\n";
    if (bars) {
      gp +=
          "set style data histograms\n"
          "set style histogram clustered gap 1\n"
          "set style fill solid 1.0 border rgb '#333333'\n"
          "set boxwidth 0.9 relative\n"
          "set grid noxtics ytics\n"
          "set xtics scale 0\n"
          "set xlabel " +
          detail::gnuplot_quote(panel.xlabel()) +
          "\nunset logscale x\nset xrange [*:*]\nset format x\n";
    } else {
      gp +=
          "set style data lines\nset grid xtics ytics\nset xtics scale "
          "default\n";
      gp += detail::axis_commands(
          {"x",
           panel.xlabel(),
           panel.log_x(),
           panel.x_format(),
           panel.x_range()},
          xs);
    }
    PlotRange y_range = panel.y_range();
    if (bars && std::isnan(y_range.min) && !panel.log_y()) {
      y_range.min = 0.0; // bars rise from 0
    }
    gp += detail::axis_commands(
        {"y", panel.ylabel(), panel.log_y(), panel.y_format(), y_range}, ys);
    if (any_y2) {
      gp += "set ytics nomirror\nset y2tics\n";
      gp += detail::axis_commands(
          {"y2",
           panel.y2label(),
           panel.log_y2(),
           panel.y2_format(),
           panel.y2_range()},
          y2s);
    } else {
      gp +=
          "set ytics mirror\nunset y2tics\nunset y2label\n"
          "unset logscale y2\n";
    }
    gp += "set key default\n";
    if (panel.key() == "off") {
      gp += "unset key\n";
    } else if (panel.key() == "below") {
      gp += "set key below center horizontal noopaque nobox\n";
    } else if (panel.key() == "right") {
      gp += "set key outside right top vertical noopaque nobox\n";
    } else {
      gp += "set key " + panel.key() + " noopaque nobox\n";
    }
    const double x_scale = detail::axis_scale(panel.x_format());
    for (const auto& m : panel.markers()) {
      TORCH_CHECK(
          std::isfinite(m.x) && (!panel.log_x() || m.x > 0.0),
          "plot_png: a marker of panel '",
          name,
          "' must be at a finite x",
          panel.log_x() ? " > 0 (log axis)" : "",
          ", but got ",
          m.x);
      const std::string x = format_double(m.x * x_scale);
      gp += "set arrow from first " + x + ", graph 0 to first " + x +
            ", graph 1 nohead dashtype 2 linewidth 1.5 linecolor rgb "
            "'#333333'\n";
      if (!m.label.empty()) {
        // Along the line, reading upwards from near the top, so that the
        // labels of neighbouring markers do not overlap.
        gp += "set label " + detail::gnuplot_quote(m.label) + " at first " + x +
              ", graph 0.98 right rotate by 90 offset -1,0 textcolor rgb "
              "'#333333'\n";
      }
    }
    std::string plot = "plot ";
    for (std::size_t s = 0; s < panel.series().size(); ++s) {
      const PlotSeries& series = panel.series()[s];
      if (s > 0) {
        plot += ", \\\n     ";
      }
      const std::string title =
          series.title().empty() ? series.y() : series.title();
      const std::string lt = " linetype " + std::to_string(s + 1);
      const std::string lw = " linewidth " + format_double(series.line_width());
      plot += detail::gnuplot_quote(series.csv()) + " skip 1 using ";
      if (bars) {
        plot += detail::using_term(cols[s].y, panel.y_format()) + ":xtic(" +
                std::to_string(cols[s].x) + ") with histograms" + lt +
                " title " + detail::gnuplot_quote(title);
      } else {
        const TickFormat yf =
            series.y2() ? panel.y2_format() : panel.y_format();
        plot += detail::using_term(cols[s].x, panel.x_format()) + ":" +
                detail::using_term(cols[s].y, yf) +
                (series.y2() ? " axes x1y2" : " axes x1y1") + " with " +
                series.style() + lt + lw + " title " +
                detail::gnuplot_quote(title);
      }
    }
    gp += plot + "\n";
  }
  gp += "unset multiplot\nset output\n";
  return gp;
}

/// The first lines of `gnuplot_script`: the terminal and the output file.
inline std::string plot_head(
    const std::string& output_path, const PlotOptions& options) {
  const std::string canvas =
      std::to_string(options.width()) + "," + std::to_string(options.height());
  return "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
         "  set terminal pngcairo noenhanced size " +
         canvas +
         " font 'sans,10'\n"
         "  print 'dlcore-terminal:pngcairo'\n"
         "} else {\n"
         "  set terminal png noenhanced size " +
         canvas +
         "\n"
         "  print 'dlcore-terminal:png'\n"
         "}\n"
         "set output " +
         gnuplot_quote(output_path) + "\n";
}

} // namespace detail

/// The gnuplot script that `plot_png` runs to draw `panels` into the PNG
/// `output_path` (the file gnuplot writes: `plot_png` passes a temporary
/// file next to the PNG). Useful to inspect or test what a figure will show
/// without rendering it. Reads the CSV files the series name, and checks
/// every argument as `plot_png` does.
///
/// The script picks `pngcairo` when gnuplot has it (else `png`), sets the
/// colours of `plot_palette()` and draws each panel with `multiplot`.
inline std::string gnuplot_script(
    const std::string& output_path,
    const std::vector<PlotPanel>& panels,
    const PlotOptions& options = PlotOptions()) {
  std::string body = detail::plot_commands(panels, options);
  return detail::plot_head(output_path, options) + body;
}

/// Renders `panels` into the PNG `png_path` with gnuplot, reading the data
/// from the CSV files the series name (columns are looked up by name).
///
/// Uses gnuplot's `pngcairo` terminal when it has one, else `png`. Several
/// panels are laid out with `multiplot` (see `PlotOptions::columns`). The
/// PNG is written atomically (temporary file in the same folder, then
/// renamed). Text is drawn literally (gnuplot's "enhanced" markup is off, so
/// `train_loss` keeps its underscore). Series take the colours of
/// `plot_palette()` in order; legends sit below the plot area unless a
/// panel's `key` says otherwise. `gnuplot_script` gives the script without
/// running it.
///
/// Library code never prints: when gnuplot is missing or fails, the result
/// is `ok == false` with a message naming the reason (and the CSVs, which
/// are untouched, remain the data of record). Invalid arguments (no panels,
/// a missing CSV file or column, a bad range, style or key) are errors
/// (`c10::Error`).
///
/// Example:
///   dlcore::PlotPanel loss;
///   loss.title("Loss").xlabel("epoch").ylabel("loss")
///       .x_format(dlcore::TickFormat::kInteger)
///       .add(dlcore::PlotSeries(csv, "epoch", "train_loss").title("train"))
///       .add(dlcore::PlotSeries(csv, "epoch", "val_accuracy")
///                .title("validation accuracy").y2(true))
///       .y2label("accuracy").y2_format(dlcore::TickFormat::kPercent);
///   dlcore::PlotResult r = dlcore::plot_png(out + "/loss.png", {loss});
///   if (!r) std::cerr << "no plot: " << r.message << "\n";
///
/// Differences from PyTorch (Python): the homework plots with matplotlib;
/// gnuplot is the Debian-packaged renderer here, driven from the CSVs.
inline PlotResult plot_png(
    const std::string& png_path,
    const std::vector<PlotPanel>& panels,
    const PlotOptions& options = PlotOptions()) {
  // Checks every argument before anything is created.
  const std::string commands = detail::plot_commands(panels, options);

  PlotResult result;
  std::string exe = detail::find_executable(options.gnuplot());
  if (exe.empty()) {
    result.message =
        "gnuplot ('" + options.gnuplot() + "') was not found on PATH, so '" +
        png_path +
        "' was not rendered; install Debian's gnuplot-nox package (the CSV "
        "data is unaffected)";
    return result;
  }

  const std::string target = png_path;
  detail::make_directories(detail::path_parent(target), "plot_png");
  auto [png_tmp, png_fd] = detail::make_temp_next_to(target, "plot_png");
  ::close(png_fd);
  detail::TempFileGuard png_guard{png_tmp};
  const std::string script_target = target + ".gp";
  auto [script_tmp, script_fd] =
      detail::make_temp_next_to(script_target, "plot_png");
  ::close(script_fd);
  detail::TempFileGuard script_guard{script_tmp};
  const std::string log_target = target + ".log";
  auto [log_tmp, log_fd] = detail::make_temp_next_to(log_target, "plot_png");
  ::close(log_fd);
  detail::TempFileGuard log_guard{log_tmp};

  detail::write_file_atomic(
      script_tmp, detail::plot_head(png_tmp, options) + commands, "plot_png");

  int rc = detail::run_program(exe, script_tmp, log_tmp);
  std::string log;
  try {
    log = read_file(log_tmp);
  } catch (const c10::Error&) {
  }
  std::string warnings;
  std::size_t start = 0;
  while (start < log.size()) {
    std::size_t end = log.find('\n', start);
    if (end == std::string::npos) {
      end = log.size();
    }
    std::string line = log.substr(start, end - start);
    if (line.rfind("dlcore-terminal:", 0) == 0) {
      result.terminal = line.substr(16);
    } else if (!line.empty()) {
      warnings += (warnings.empty() ? "" : "\n") + line;
    }
    start = end + 1;
  }
  const int64_t size = detail::regular_file_size(png_tmp);
  if (rc != 0 || size <= 0) {
    result.terminal.clear();
    result.message = "gnuplot (" + exe + ") failed" +
                     (rc < 0 ? std::string(" to start")
                             : " with exit status " + std::to_string(rc)) +
                     " rendering '" + png_path + "'" +
                     (warnings.empty() ? "" : ": " + warnings);
    return result;
  }
  ::chmod(png_tmp.c_str(), 0644);
  if (std::rename(png_tmp.c_str(), target.c_str()) != 0) {
    result.terminal.clear();
    result.message = "plot_png: cannot rename the temporary PNG to '" +
                     png_path + "': " + std::strerror(errno);
    return result;
  }
  png_guard.active = false;
  result.ok = true;
  result.message = warnings;
  return result;
}

/// One-panel form of `plot_png`.
inline PlotResult plot_png(
    const std::string& png_path,
    const PlotPanel& panel,
    const PlotOptions& options = PlotOptions()) {
  return plot_png(png_path, std::vector<PlotPanel>{panel}, options);
}

/// One-panel form of `gnuplot_script`.
inline std::string gnuplot_script(
    const std::string& output_path,
    const PlotPanel& panel,
    const PlotOptions& options = PlotOptions()) {
  return gnuplot_script(output_path, std::vector<PlotPanel>{panel}, options);
}

} // namespace dlcore
