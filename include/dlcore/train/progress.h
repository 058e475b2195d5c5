#pragma once

#include <c10/util/Exception.h>
#include <torch/arg.h>

#include <dlcore/detail/format.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <ostream>
#include <string>

namespace dlcore {

/// When a `ProgressLine` writes.
enum class ProgressMode {
  /// Only when the stream is standard error and standard error is a
  /// terminal (`isatty(fileno(stderr))`); a custom stream is always written.
  kAuto,
  /// Always (tests, or a terminal that `isatty` does not recognise).
  kAlways,
  /// Never.
  kNever,
};

/// Where a `ProgressLine` writes (a plain pointer; the stream must outlive
/// the line).
using ProgressStream = std::ostream*;

/// Options of a `ProgressLine`.
struct ProgressOptions {
  /// When to write. Default: ProgressMode::kAuto
  TORCH_ARG(ProgressMode, mode) = ProgressMode::kAuto;
  /// Where to write; nullptr means `std::cerr`. Default: nullptr
  TORCH_ARG(ProgressStream, stream) = nullptr;
  /// Minimum seconds between two redraws (the last batch always redraws).
  /// Default: 0.2
  TORCH_ARG(double, min_interval) = 0.2;

 public:
};

/// A one-line progress display for a loop over `total` batches: label, batch
/// i/n, running loss, running accuracy, learning rate and ETA, rewritten in
/// place with `\r` on a terminal and silent otherwise (so logs and CI output
/// stay clean).
///
/// The line is redrawn at most every `min_interval` seconds: callers ask
/// `due(i)` first and compute the values to show only when it is true, so a
/// training loop pays nothing for the display on steps that do not redraw.
///
/// Example:
///   dlcore::ProgressLine bar("epoch 1", batches.size());
///   for (int64_t i = 1; i <= n; ++i) {
///     ...
///     if (bar.due(i)) bar.update(i, loss, acc, lr);
///   }
///   bar.finish();
///
/// Differences from PyTorch (Python): the homework prints a new line every
/// 100 batches; tqdm-like in-place redraws are used here instead.
class ProgressLine {
 public:
  /// `total` batches (< 0 when unknown: no ETA is shown).
  ProgressLine(std::string label, int64_t total, ProgressOptions options = {})
      : label_(std::move(label)),
        total_(total),
        options_(options),
        start_(Clock::now()),
        last_(start_) {
    TORCH_CHECK(
        options_.min_interval() >= 0.0,
        "ProgressLine: min_interval must be >= 0 seconds, but got ",
        options_.min_interval());
    switch (options_.mode()) {
      case ProgressMode::kNever:
        enabled_ = false;
        break;
      case ProgressMode::kAlways:
        enabled_ = true;
        break;
      case ProgressMode::kAuto:
        enabled_ = options_.stream() != nullptr || ::isatty(::fileno(stderr));
        break;
    }
  }
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;
  ~ProgressLine() {
    finish();
  }

  /// Whether this line writes at all.
  bool enabled() const {
    return enabled_;
  }

  /// True when a redraw for `done` batches would be shown now: enabled, and
  /// either `min_interval` has passed since the last redraw or `done` is the
  /// last batch.
  bool due(int64_t done) const {
    if (!enabled_) {
      return false;
    }
    if (total_ >= 0 && done >= total_) {
      return true;
    }
    double since = seconds_between(last_, Clock::now());
    return !drawn_ || since >= options_.min_interval();
  }

  /// Redraws the line for `done` of `total` batches. `accuracy` is a fraction
  /// (shown as a percentage); pass NaN for a value to leave it out.
  void update(int64_t done, double loss, double accuracy, double lr) {
    if (!enabled_) {
      return;
    }
    auto now = Clock::now();
    last_ = now;
    std::string line = format_line(
        label_, done, total_, loss, accuracy, lr, seconds_between(start_, now));
    std::size_t width = line.size();
    if (width < last_width_) {
      line.append(last_width_ - width, ' ');
    }
    last_width_ = width;
    stream() << '\r' << line << std::flush;
    drawn_ = true;
  }

  /// Ends the line with a newline if anything was drawn (idempotent).
  void finish() {
    if (enabled_ && drawn_) {
      stream() << '\n' << std::flush;
    }
    drawn_ = false;
    last_width_ = 0;
  }

  /// The text of one redraw (without `\r`), e.g.
  /// "epoch 1  120/750  loss 0.5123  acc 81.20%  lr 0.01  2.1s ETA 11s".
  static std::string format_line(
      const std::string& label,
      int64_t done,
      int64_t total,
      double loss,
      double accuracy,
      double lr,
      double elapsed) {
    std::string s = label;
    if (!s.empty()) {
      s += "  ";
    }
    s += total >= 0 ? std::to_string(done) + "/" + std::to_string(total)
                    : std::to_string(done);
    if (!std::isnan(loss)) {
      s += detail::format_printf("  loss %.4f", loss);
    }
    if (!std::isnan(accuracy)) {
      s += detail::format_printf("  acc %.2f%%", 100.0 * accuracy);
    }
    if (!std::isnan(lr)) {
      s += detail::format_printf("  lr %.4g", lr);
    }
    s += detail::format_printf("  %.1fs", elapsed);
    if (total > 0 && done > 0 && done < total) {
      double eta = elapsed / static_cast<double>(done) *
                   static_cast<double>(total - done);
      s += detail::format_printf(" ETA %.0fs", eta);
    }
    return s;
  }

 private:
  using Clock = std::chrono::steady_clock;

  static double seconds_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  }

  std::ostream& stream() {
    return options_.stream() != nullptr ? *options_.stream() : std::cerr;
  }

  std::string label_;
  int64_t total_;
  ProgressOptions options_;
  Clock::time_point start_;
  Clock::time_point last_;
  bool enabled_ = false;
  bool drawn_ = false;
  std::size_t last_width_ = 0;
};

} // namespace dlcore
