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

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

extern char** environ; // NOLINT: POSIX

namespace dlcore {

/// One curve of a plot: column `y` against column `x` of a CSV file with a
/// header line (as `CsvTable` writes).
struct PlotSeries {
  PlotSeries(std::string csv, std::string x, std::string y)
      : csv_(std::move(csv)), x_(std::move(x)), y_(std::move(y)) {}
  /// CSV file holding the data.
  TORCH_ARG(std::string, csv);
  /// Column of the x values.
  TORCH_ARG(std::string, x);
  /// Column of the y values.
  TORCH_ARG(std::string, y);
  /// Legend entry; empty means the y column's name. Default: ""
  TORCH_ARG(std::string, title) = "";
  /// gnuplot `with` style: "lines", "linespoints", "points". Default:
  /// "linespoints"
  TORCH_ARG(std::string, style) = "linespoints";

 public:
};

/// A vertical line at `x` with an optional label (an LR finder's suggested
/// learning rates, a schedule's cycle boundaries).
struct PlotMarker {
  double x = 0.0;
  std::string label;
};

/// One panel (axes) of a figure.
struct PlotPanel {
  /// Panel title. Default: ""
  TORCH_ARG(std::string, title) = "";
  /// x axis label. Default: ""
  TORCH_ARG(std::string, xlabel) = "";
  /// y axis label. Default: ""
  TORCH_ARG(std::string, ylabel) = "";
  /// Logarithmic x axis (base 10). Default: false
  TORCH_ARG(bool, log_x) = false;
  /// Logarithmic y axis (base 10). Default: false
  TORCH_ARG(bool, log_y) = false;
  /// The curves. Default: none
  TORCH_ARG(std::vector<PlotSeries>, series) = {};
  /// Vertical markers. Default: none
  TORCH_ARG(std::vector<PlotMarker>, markers) = {};
  /// Legend position in gnuplot's words ("top right", "bottom left",
  /// "outside"), or "off". Default: "top right"
  TORCH_ARG(std::string, key) = "top right";

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

/// Renders `panels` into the PNG `png_path` with gnuplot, reading the data
/// from the CSV files the series name (columns are looked up by name).
///
/// Uses gnuplot's `pngcairo` terminal when it has one, else `png`. Several
/// panels are laid out with `multiplot` (see `PlotOptions::columns`). The
/// PNG is written atomically (temporary file in the same folder, then
/// renamed). Text is drawn literally (gnuplot's "enhanced" markup is off, so
/// `train_loss` keeps its underscore).
///
/// Library code never prints: when gnuplot is missing or fails, the result
/// is `ok == false` with a message naming the reason (and the CSVs, which
/// are untouched, remain the data of record). Invalid arguments (no panels,
/// a missing CSV file or column) are errors (`c10::Error`).
///
/// Example:
///   dlcore::PlotPanel loss;
///   loss.title("Loss").xlabel("epoch").ylabel("loss")
///       .add(dlcore::PlotSeries(csv, "epoch", "train_loss").title("train"))
///       .add(dlcore::PlotSeries(csv, "epoch",
///       "val_loss").title("validation"));
///   dlcore::PlotResult r = dlcore::plot_png(out + "/loss.png", {loss});
///   if (!r) std::cerr << "no plot: " << r.message << "\n";
///
/// Differences from PyTorch (Python): the homework plots with matplotlib;
/// gnuplot is the Debian-packaged renderer here, driven from the CSVs.
inline PlotResult plot_png(
    const std::string& png_path,
    const std::vector<PlotPanel>& panels,
    const PlotOptions& options = PlotOptions()) {
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

  // Resolve column names to 1-based gnuplot column numbers.
  std::vector<std::vector<std::pair<std::size_t, std::size_t>>> cols;
  for (const auto& panel : panels) {
    TORCH_CHECK(
        !panel.series().empty(),
        "plot_png: expected at least one series in panel '",
        panel.title(),
        "'");
    std::vector<std::pair<std::size_t, std::size_t>> pc;
    for (const auto& s : panel.series()) {
      TORCH_CHECK(
          detail::is_regular_file(s.csv()),
          "plot_png: CSV file '",
          s.csv(),
          "' does not exist");
      CsvTable header = CsvTable::read(s.csv());
      pc.emplace_back(
          header.column_index(s.x()) + 1, header.column_index(s.y()) + 1);
    }
    cols.push_back(std::move(pc));
  }

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

  const int n = static_cast<int>(panels.size());
  int columns = options.columns() > 0 ? options.columns() : std::min(n, 3);
  columns = std::min(columns, n);
  const int rows = (n + columns - 1) / columns;

  std::string gp;
  const std::string canvas =
      std::to_string(options.width()) + "," + std::to_string(options.height());
  gp +=
      "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
      "  set terminal pngcairo noenhanced size " +
      canvas +
      " font 'sans,10'\n"
      "  print 'dlcore-terminal:pngcairo'\n"
      "} else {\n"
      "  set terminal png noenhanced size " +
      canvas +
      "\n"
      "  print 'dlcore-terminal:png'\n"
      "}\n";
  gp += "set output " + detail::gnuplot_quote(png_tmp) + "\n";
  gp += "set datafile separator ','\n";
  gp += "set datafile missing 'nan'\n";
  gp += "set grid\n";
  std::string mp = "set multiplot layout " + std::to_string(rows) + "," +
                   std::to_string(columns);
  if (!options.title().empty()) {
    mp += " title " + detail::gnuplot_quote(options.title());
  }
  gp += mp + "\n";
  for (std::size_t p = 0; p < panels.size(); ++p) {
    const PlotPanel& panel = panels[p];
    gp += "set title " + detail::gnuplot_quote(panel.title()) + "\n";
    gp += "set xlabel " + detail::gnuplot_quote(panel.xlabel()) + "\n";
    gp += "set ylabel " + detail::gnuplot_quote(panel.ylabel()) + "\n";
    gp += panel.log_x() ? "set logscale x 10\n" : "unset logscale x\n";
    gp += panel.log_y() ? "set logscale y 10\n" : "unset logscale y\n";
    gp += panel.key() == "off" ? std::string("unset key\n")
                               : "set key " + panel.key() + "\n";
    gp += "unset arrow\nunset label\n";
    for (const auto& m : panel.markers()) {
      std::string x = format_double(m.x);
      gp += "set arrow from first " + x + ", graph 0 to first " + x +
            ", graph 1 nohead dashtype 2 linecolor rgb '#c0392b'\n";
      if (!m.label.empty()) {
        gp += "set label " + detail::gnuplot_quote(m.label) + " at first " + x +
              ", graph 0.97 offset 0.5,0 textcolor rgb '#c0392b'\n";
      }
    }
    std::string plot = "plot ";
    for (std::size_t s = 0; s < panel.series().size(); ++s) {
      const PlotSeries& series = panel.series()[s];
      if (s > 0) {
        plot += ", \\\n     ";
      }
      std::string title = series.title().empty() ? series.y() : series.title();
      plot += detail::gnuplot_quote(series.csv()) + " skip 1 using " +
              std::to_string(cols[p][s].first) + ":" +
              std::to_string(cols[p][s].second) + " with " + series.style() +
              " title " + detail::gnuplot_quote(title);
    }
    gp += plot + "\n";
  }
  gp += "unset multiplot\nset output\n";
  detail::write_file_atomic(script_tmp, gp, "plot_png");

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

} // namespace dlcore
