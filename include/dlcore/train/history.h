#pragma once

#include <dlcore/io/csv.h>
#include <dlcore/io/json.h>
#include <dlcore/train/train_loop.h>

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace dlcore {

/// One row of per-step metrics (see `StepInfo`).
struct StepRecord {
  /// The epoch the step belongs to (`StepInfo::epoch`).
  int64_t epoch = 0;
  /// 0-based batch index within the epoch.
  int64_t step = 0;
  /// 0-based step counted over all epochs.
  int64_t global_step = 0;
  /// The batch's mean loss (before the optimizer step).
  double loss = 0.0;
  /// The batch's accuracy, a fraction in [0, 1].
  double accuracy = 0.0;
  /// Samples in the batch.
  int64_t batch_size = 0;
  /// Every param group's LR used by the step.
  std::vector<double> lrs;
  /// Every param group's momentum or beta1 used by the step (NaN: none).
  std::vector<double> momenta;
};

/// Training history: one row per epoch with named columns, and optionally
/// one row per optimizer step (loss, accuracy, every group's LR and
/// momentum), exported as CSV or JSON.
///
/// Epoch columns appear in the order they are first given; a row that lacks
/// a column holds NaN there. `add_epoch(epoch, train, validation)` records the
/// usual columns `epoch, train_loss, train_accuracy, val_loss,
/// val_accuracy, seconds` (accuracies as fractions).
///
/// Example:
///   dlcore::History history;
///   auto opts = dlcore::TrainOptions().on_step(history.step_recorder());
///   for (int64_t e = 1; e <= epochs; ++e) {
///     auto train = dlcore::train_epoch(net, batches, sgd, opts.epoch(e));
///     auto val = dlcore::evaluate(net, val_batches);
///     history.add_epoch(e, train, val);
///   }
///   history.epochs_table().write(out + "/curves.csv");
///   history.steps_table().write(out + "/steps.csv");
///
/// Differences from PyTorch (Python): the homework keeps a dict of lists
/// and records only group 0's LR once per epoch; every group's LR and
/// momentum per step are recorded here.
class History {
 public:
  /// Appends an epoch row of (column, value) pairs.
  void add_epoch(const std::vector<std::pair<std::string, double>>& values) {
    std::vector<double> row(columns_.size(), nan());
    for (const auto& [name, value] : values) {
      std::size_t c = find_or_add_column(name);
      if (c >= row.size()) {
        row.resize(c + 1, nan());
      }
      row[c] = value;
    }
    rows_.push_back(std::move(row));
  }

  /// Appends the usual row for epoch `epoch`: train and validation loss and
  /// accuracy, and the epoch's seconds (training plus validation), followed
  /// by any `extra` columns (e.g. `{{"lr", lr}}`).
  void add_epoch(
      int64_t epoch,
      const EpochMetrics& train,
      const EpochMetrics& validation,
      const std::vector<std::pair<std::string, double>>& extra = {}) {
    std::vector<std::pair<std::string, double>> row = {
        {"epoch", static_cast<double>(epoch)},
        {"train_loss", train.loss},
        {"train_accuracy", train.accuracy},
        {"val_loss", validation.loss},
        {"val_accuracy", validation.accuracy},
        {"seconds", train.seconds + validation.seconds}};
    row.insert(row.end(), extra.begin(), extra.end());
    add_epoch(row);
  }

  /// Appends a step row.
  void add_step(const StepInfo& info) {
    StepRecord r;
    r.epoch = info.epoch;
    r.step = info.step;
    r.global_step = info.global_step;
    r.loss = info.loss;
    r.accuracy = info.accuracy;
    r.batch_size = info.batch_size;
    r.lrs = info.lrs;
    r.momenta = info.momenta;
    steps_.push_back(std::move(r));
  }

  /// A `TrainOptions::on_step` callback that appends every step here. The
  /// History must outlive the training calls that use it.
  StepCallback step_recorder() {
    return [this](StepInfo& info) { add_step(info); };
  }

  /// Epoch column names, in first-seen order.
  const std::vector<std::string>& epoch_columns() const {
    return columns_;
  }
  std::size_t num_epochs() const {
    return rows_.size();
  }
  /// Values of an epoch column (NaN where a row lacks it).
  std::vector<double> column(const std::string& name) const {
    std::size_t c = column_index(name);
    std::vector<double> out;
    out.reserve(rows_.size());
    for (const auto& row : rows_) {
      out.push_back(c < row.size() ? row[c] : nan());
    }
    return out;
  }
  /// Value of `name` in epoch row `row`.
  double at(std::size_t row, const std::string& name) const {
    TORCH_CHECK(
        row < rows_.size(),
        "History: epoch row ",
        row,
        " out of range (",
        rows_.size(),
        " rows)");
    std::size_t c = column_index(name);
    return c < rows_[row].size() ? rows_[row][c] : nan();
  }
  /// The last value of an epoch column (NaN when there are no rows).
  double last(const std::string& name) const {
    return rows_.empty() ? nan() : at(rows_.size() - 1, name);
  }
  const std::vector<StepRecord>& steps() const {
    return steps_;
  }
  /// Largest number of param groups seen in a step row.
  std::size_t num_groups() const {
    std::size_t g = 0;
    for (const auto& s : steps_) {
      g = std::max(g, std::max(s.lrs.size(), s.momenta.size()));
    }
    return g;
  }

  /// Epoch rows as a table with the epoch columns.
  CsvTable epochs_table() const {
    CsvTable t(columns_);
    for (const auto& row : rows_) {
      std::vector<CsvCell> cells;
      for (std::size_t c = 0; c < columns_.size(); ++c) {
        cells.emplace_back(c < row.size() ? row[c] : nan());
      }
      t.add_row(cells);
    }
    return t;
  }

  /// Step rows as a table: `epoch, step, global_step, loss, accuracy,
  /// batch_size, lr_0 .. lr_{G-1}, momentum_0 .. momentum_{G-1}`.
  CsvTable steps_table() const {
    std::size_t groups = num_groups();
    std::vector<std::string> header = {
        "epoch", "step", "global_step", "loss", "accuracy", "batch_size"};
    for (std::size_t g = 0; g < groups; ++g) {
      header.push_back("lr_" + std::to_string(g));
    }
    for (std::size_t g = 0; g < groups; ++g) {
      header.push_back("momentum_" + std::to_string(g));
    }
    CsvTable t(header);
    for (const auto& s : steps_) {
      std::vector<CsvCell> cells = {
          s.epoch, s.step, s.global_step, s.loss, s.accuracy, s.batch_size};
      for (std::size_t g = 0; g < groups; ++g) {
        cells.emplace_back(g < s.lrs.size() ? s.lrs[g] : nan());
      }
      for (std::size_t g = 0; g < groups; ++g) {
        cells.emplace_back(g < s.momenta.size() ? s.momenta[g] : nan());
      }
      t.add_row(cells);
    }
    return t;
  }

  /// `{"epochs": {column: [values...]}, "steps": n}`; per-step rows are left
  /// to the CSV. A missing value (NaN) or an infinity is `null`, in memory as
  /// in the file.
  Json to_json() const {
    Json epochs = Json::object();
    for (const auto& name : columns_) {
      Json values = Json::array();
      for (double v : column(name)) {
        values.push_back(std::isfinite(v) ? Json(v) : Json(nullptr));
      }
      epochs[name] = std::move(values);
    }
    Json j = Json::object();
    j["epochs"] = std::move(epochs);
    j["steps"] = static_cast<int64_t>(steps_.size());
    return j;
  }

 private:
  static double nan() {
    return std::numeric_limits<double>::quiet_NaN();
  }
  std::size_t column_index(const std::string& name) const {
    for (std::size_t i = 0; i < columns_.size(); ++i) {
      if (columns_[i] == name) {
        return i;
      }
    }
    TORCH_CHECK(false, "History: no epoch column '", name, "'");
  }
  std::size_t find_or_add_column(const std::string& name) {
    for (std::size_t i = 0; i < columns_.size(); ++i) {
      if (columns_[i] == name) {
        return i;
      }
    }
    columns_.push_back(name);
    return columns_.size() - 1;
  }

  std::vector<std::string> columns_;
  std::vector<std::vector<double>> rows_;
  std::vector<StepRecord> steps_;
};

} // namespace dlcore
