// Problem 1: learning rate and batch size — LeNet-5 on FashionMNIST.
//
// Reproduces Problem 1 of the homework end to end:
//   1. LR range test. Smith's single-run sweep (dlcore::LRFinder: LR grows
//      exponentially per batch from 1e-7 to 10 over 1 epoch of batches; a
//      longer sweep trains more per LR and moves the minimum, and with it
//      the bounds, lower) and, at full scale, also the homework's variant
//      (dlcore::lr_grid_search: 10 LRs log-spaced 1e-9 … 10, 5 epochs each
//      from the same initial weights).
//   2. CyclicLR bounds from the sweep (dlcore::suggest_cyclic_bounds:
//      max_lr = LR at the smoothed-loss minimum / 10, base_lr = max_lr / 4;
//      the homework's grid rule is reported next to it).
//   3. LeNet-5 trained with dlcore::CyclicLR, mode exp_range, momentum cycled
//      0.9 → 0.8 inversely to the LR (SGD), whole cycles so the run ends at
//      base_lr (quick 1, default 2, full 3: step_size_up 2.5 epochs), gamma
//      so the amplitude halves over the run (0.5^(1/total_steps); ≈ 0.99994
//      at full scale).
//   4. Batch-size study (dlcore::batch_size_study): the same initial LeNet-5
//      at batch sizes 32 … 4096 with the fixed LR max_lr (the homework's), and
//      with the LR scaled linearly from batch 64 (Goyal et al.).
// Data: the 60k training images split 80/20 (seeded) into train/validation,
// the 10k test images for the final test accuracy.
//
// Scales: quick (CI smoke, a 2k-image subset, seconds), default (the main
// job, ≤ 5 minutes on 2 cores: 1-epoch sweep, 5 CLR epochs, 8 batch sizes × 1
// epoch × 2 rules), full (the homework's: grid 10 × 5 epochs, 1-epoch
// sweep, 15 CLR epochs, 8 batch sizes × 5 epochs × 2 rules).
//
// Writes into --out:
//   lr_finder.csv      sweep: iteration, lr, loss, smoothed_loss
//   lr_finder.png      raw and smoothed loss vs LR (log axis), the
//                      suggestions and CLR base_lr marked
//   lr_grid.csv/.png   (full scale or --grid) final training loss per grid LR
//   curves.csv         CLR run per epoch: train/val loss and accuracy
//   steps.csv          CLR run per step: loss, accuracy, LR and momentum
//   clr_training.png   loss, accuracy, and LR (left axis) with momentum
//                      (right axis) over training
//   batch_size.csv     study: one row per (batch size, rule)
//   batch_size_wide.csv, batch_size.png  loss and val accuracy vs log2(bs)
//   summary.json       settings, suggestions, bounds, every result, seconds
//   summary.md         "## Problem 1 — ..." section for results/REPORT.md
//
// Shape: main() parses and checks every flag before any work, loads the data,
// then calls one step per homework part (lr_range_test, lr_grid,
// train_with_clr, study_batch_sizes); each step writes its CSVs and plot, and
// summary_json / summary_md write the report.
#include "common.h"

#include <dlcore/data/batches.h>
#include <dlcore/data/fashion_mnist.h>
#include <dlcore/data/split.h>
#include <dlcore/io/csv.h>
#include <dlcore/io/files.h>
#include <dlcore/io/json.h>
#include <dlcore/io/number_format.h>
#include <dlcore/nn/models/lenet5.h>
#include <dlcore/optim/cyclic_lr.h>
#include <dlcore/study/batch_size_study.h>
#include <dlcore/study/lr_finder.h>
#include <dlcore/train/history.h>
#include <dlcore/train/plot.h>
#include <dlcore/train/train_loop.h>

#include <fmt/format.h>

#include <cmath>
#include <iostream>
#include <string>
#include <vector>

namespace ex = dlcore::examples;

namespace {

constexpr double kMomentum = 0.9;

torch::optim::SGD make_sgd(dlcore::LeNet5& net, double lr) {
  return torch::optim::SGD(
      net->parameters(), torch::optim::SGDOptions(lr).momentum(kMomentum));
}

std::string pct(double fraction) {
  return ex::percent(fraction);
}

std::string num(double v) {
  return std::isfinite(v) ? fmt::format("{:.4f}", v) : std::string("diverged");
}

// Where a study run stopped on divergence: the study stops at the first
// non-finite batch loss (stop_on_non_finite, that batch counted) after
// whole epochs of ceil(train / batch) steps (no drop_last).
ex::Divergence study_divergence(const dlcore::BatchSizeRun& r, int64_t train) {
  ex::Divergence d;
  if (r.diverged) {
    const int64_t per_epoch = (train + r.batch_size - 1) / r.batch_size;
    d.diverged = true;
    d.epoch = static_cast<int64_t>(r.train_loss.size());
    d.step = r.steps - (d.epoch - 1) * per_epoch;
    d.reason = "training loss not finite";
  }
  return d;
}

// Where a grid point stopped on divergence, likewise (epochs of `per_epoch`
// steps).
ex::Divergence grid_divergence(const dlcore::LRGridPoint& p) {
  ex::Divergence d;
  if (p.diverged) {
    d.diverged = true;
    d.epoch = static_cast<int64_t>(p.epoch_losses.size());
    d.reason = "training loss not finite";
  }
  return d;
}

std::string epochs_text(int64_t n) {
  return fmt::format("{} epoch{}", n, n == 1 ? "" : "s");
}

// ---- settings: the flags, then the values the run uses ----

struct Settings {
  ex::CommonFlags flags;
  int64_t clr_epochs = -1; // -1: by scale
  int64_t bs_epochs = -1;
  int64_t sweep_iters = -1; // -1: by scale, once the data is loaded
  int64_t batch_size = 64;
  bool grid = false;
  bool skip_grid = false;
  bool skip_study = false;
  bool no_linear = false;
  int64_t cycles = -1;
  int64_t grid_epochs = 0;
};

void add_flags(CLI::App& app, Settings& s) {
  s.flags.add_to(app, "problem1");
  app.add_option(
      "--clr-epochs",
      s.clr_epochs,
      "CyclicLR training epochs (by scale: quick 1, default 5, full 15)");
  app.add_option(
      "--bs-epochs",
      s.bs_epochs,
      "epochs per batch size (by scale: quick 1, default 1, full 5)");
  app.add_option(
      "--sweep-iters",
      s.sweep_iters,
      "LR range test iterations (by scale: quick 40, otherwise 1 epoch of "
      "batches)");
  app.add_option("--batch-size", s.batch_size, "batch size of sweep and CLR")
      ->capture_default_str();
  auto* grid = app.add_flag(
      "--grid", s.grid, "also run the homework's 10-LR grid (always at full)");
  auto* no_linear = app.add_flag(
      "--no-linear",
      s.no_linear,
      "batch-size study without the linear-LR rule");
  app.add_flag("--skip-grid", s.skip_grid, "skip the LR grid (even at full)")
      ->excludes(grid);
  app.add_flag("--skip-study", s.skip_study, "skip the batch-size study")
      ->excludes(no_linear);
  app.add_option(
      "--cycles",
      s.cycles,
      "complete CyclicLR cycles over the run (by scale: quick 1, default 2, "
      "full 3)");
}

// Checks every flag given and fills in the by-scale values of the others.
void finish_settings(const CLI::App& app, Settings& s) {
  const ex::Scale scale = s.flags.scale;
  const auto given = [&](const char* flag) { return app.count(flag) > 0; };
  if (given("--clr-epochs")) {
    ex::check_range("--clr-epochs", s.clr_epochs, 1, 10000);
  } else {
    s.clr_epochs = ex::by_scale<int64_t>(scale, 1, 5, 15);
  }
  if (given("--bs-epochs")) {
    ex::check_range("--bs-epochs", s.bs_epochs, 1, 10000);
  } else {
    s.bs_epochs = ex::by_scale<int64_t>(scale, 1, 1, 5);
  }
  if (given("--sweep-iters")) {
    // The suggestions skip max(1, n/10) points at the start and 5 at the
    // end, and need a few left.
    ex::check_range("--sweep-iters", s.sweep_iters, 20, 1000000);
  }
  // The training split holds 48000 images.
  ex::check_range("--batch-size", s.batch_size, 1, 48000);
  if (given("--cycles")) {
    ex::check_range("--cycles", s.cycles, 1, 10000);
  } else {
    s.cycles = ex::by_scale<int64_t>(scale, 1, 2, 3);
  }
  s.grid = (s.grid || scale == ex::Scale::kFull) && !s.skip_grid;
  s.grid_epochs = ex::by_scale<int64_t>(scale, 1, 1, 5);
}

// ---- data: the 80/20 split of the training images, and the test set ----

struct Data {
  dlcore::TensorDataset train, val, test;
  dlcore::Batches train_batches, val_batches, test_batches;
  int64_t per_epoch; // training steps per epoch
};

Data load_data(const Settings& s, const torch::Device& device) {
  const ex::CommonFlags& flags = s.flags;
  dlcore::TensorDataset full = dlcore::load_fashion_mnist(flags.data_dir, true);
  dlcore::TensorDataset test =
      dlcore::load_fashion_mnist(flags.data_dir, false);
  auto [train, val] = dlcore::random_split(full, 0.8, flags.seed);
  if (flags.scale == ex::Scale::kQuick) {
    train = dlcore::subset(train, torch::arange(2000));
    val = dlcore::subset(val, torch::arange(500));
    test = dlcore::subset(test, torch::arange(1000));
  }
  // Everything trains where --device says: the data sets live there, so
  // every loop (range test, grid, CLR run, batch-size study) finds its
  // batches on the model's device.
  train = ex::on_device(train, device);
  val = ex::on_device(val, device);
  test = ex::on_device(test, device);
  dlcore::Batches train_batches(
      train,
      dlcore::BatchesOptions(s.batch_size).shuffle(true).seed(flags.seed));
  const int64_t per_epoch = train_batches.size();
  return {
      train,
      val,
      test,
      std::move(train_batches),
      dlcore::Batches(val, dlcore::BatchesOptions(1024)),
      dlcore::Batches(test, dlcore::BatchesOptions(1024)),
      per_epoch};
}

// One initial LeNet-5 for every stage (sweep, grid, CLR, batch sizes): each
// call returns a copy of it on the device.
struct SameStart {
  dlcore::LeNet5 initial;
  torch::Device device;

  dlcore::LeNet5 operator()() const {
    dlcore::LeNet5 net;
    net->to(device);
    torch::NoGradGuard no_grad;
    auto src = initial->parameters();
    auto dst = net->parameters();
    for (std::size_t i = 0; i < src.size(); ++i) {
      dst[i].copy_(src[i]);
    }
    return net;
  }
};

// ---- 1. LR range test (Smith's sweep) ----

struct Sweep {
  dlcore::LRFinderOptions options;
  dlcore::LRFinderResult result;
  int64_t skip_start = 1;
  int64_t skip_end = 5;
  dlcore::LRSuggestion steepest, min10, valley;
  dlcore::CyclicBounds bounds;
  double seconds = 0;
};

Sweep lr_range_test(
    const Settings& s,
    Data& data,
    const SameStart& make_model,
    const ex::Output& out) {
  ex::Stopwatch sw;
  Sweep w;
  w.options = dlcore::LRFinderOptions().start_lr(1e-7).end_lr(10.0).num_iter(
      s.sweep_iters);
  {
    dlcore::LeNet5 net = make_model();
    torch::optim::SGD sgd = make_sgd(net, 1e-3);
    dlcore::LRFinder finder(net, sgd, w.options);
    w.result = finder.range_test(data.train_batches);
  }
  const auto& sweep = w.result;
  w.skip_start = std::max<int64_t>(1, s.sweep_iters / 10);
  w.steepest = dlcore::suggest_steepest(sweep, w.skip_start, w.skip_end);
  w.min10 = dlcore::suggest_min_div10(sweep, w.skip_start, w.skip_end);
  w.valley = dlcore::suggest_valley(sweep, w.skip_start, w.skip_end);
  w.bounds = dlcore::suggest_cyclic_bounds(
      sweep,
      dlcore::CyclicBoundsOptions()
          .skip_start(w.skip_start)
          .skip_end(w.skip_end));
  w.seconds = sw.seconds();
  std::cout << fmt::format(
      "LR sweep: {} iterations ({}), best smoothed loss {:.4f} at lr {:.3g}; "
      "steepest {:.3g}, min/10 {:.3g}, valley {:.3g} → CLR base_lr {:.3g}, "
      "max_lr {:.3g} ({:.1f}s)\n",
      sweep.iterations(),
      dlcore::to_string(sweep.stop_reason),
      sweep.best_loss,
      sweep.best_lr,
      w.steepest.lr,
      w.min10.lr,
      w.valley.lr,
      w.bounds.base_lr,
      w.bounds.max_lr,
      sw.seconds());
  const std::string csv = out.path("lr_finder.csv");
  sweep.write_csv(csv);
  // The suggestions are marked; CLR's max_lr is the min/10 one.
  const auto plot = dlcore::LRFinderPlotOptions()
                        .title("LR range test (CLR max_lr = min/10)")
                        .skip_start(w.skip_start)
                        .skip_end(w.skip_end)
                        .markers({{w.bounds.base_lr, "CLR base_lr"}});
  out.plot(
      "lr_finder.png",
      {sweep.plot_panel(csv, plot)},
      plot.plot_options(),
      "LR finder");
  return w;
}

// ---- 1b. the homework's grid: 10 LRs, each from the same weights ----

struct Grid {
  dlcore::LRGridResult result;
  dlcore::CyclicBounds bounds{};
  double seconds = 0;
};

Grid lr_grid(
    const Settings& s,
    Data& data,
    const SameStart& make_model,
    const ex::Output& out) {
  ex::Stopwatch sw;
  Grid g;
  g.result = dlcore::lr_grid_search(
      make_model,
      make_sgd,
      data.train_batches,
      data.val_batches,
      dlcore::LRGridOptions()
          .epochs(s.grid_epochs)
          .on_point([](const dlcore::LRGridPoint& p) {
            std::cout << fmt::format(
                "  grid lr {:.3g}: final train loss {} val acc {} "
                "({:.1f}s)\n",
                p.lr,
                num(p.final_loss),
                pct(p.val_accuracy),
                p.seconds);
          }));
  g.bounds =
      dlcore::suggest_grid_bounds(g.result, dlcore::GridBoundsRule::kHomework);
  g.seconds = sw.seconds();
  const std::string csv = out.path("lr_grid.csv");
  dlcore::CsvTable t(
      {"lr", "log10_lr", "final_train_loss", "val_accuracy", "diverged"});
  for (const auto& p : g.result.points) {
    t.add_row(
        {p.lr,
         std::log10(p.lr),
         p.final_loss,
         p.val_accuracy,
         static_cast<int64_t>(p.diverged)});
  }
  t.write(csv);
  dlcore::PlotPanel p = ex::csv_panel(
      fmt::format(
          "LR grid ({} per LR): final training loss",
          epochs_text(s.grid_epochs)),
      "learning rate (log scale)",
      "final training loss",
      csv,
      "lr",
      {{"final_train_loss", ""}});
  p.key("off")
      .log_x(true)
      .x_format(dlcore::TickFormat::kScientific)
      .marker(g.bounds.base_lr, "lr_min")
      .marker(g.bounds.max_lr, "lr_max");
  out.plot(
      "lr_grid.png",
      {p},
      dlcore::PlotOptions().width(900).height(550),
      "LR grid");
  return g;
}

// ---- 2-3. LeNet-5 with CyclicLR (exp_range, cycled momentum) ----

struct ClrRun {
  int64_t step_size_up = 0;
  double gamma = 0;
  dlcore::History history;
  dlcore::EpochMetrics test;
  /// Set when training diverged: the run then stops, and is reported so
  /// instead of with an accuracy (`test` stays unmeasured).
  ex::Divergence divergence;
  double seconds = 0;
};

ClrRun train_with_clr(
    const Settings& s,
    Data& data,
    const SameStart& make_model,
    const dlcore::CyclicBounds& bounds,
    const ex::Output& out) {
  ex::Stopwatch sw;
  ClrRun c;
  // Whole cycles, so the run ends at base_lr (Smith: stop at the end of a
  // cycle); full scale: 3 cycles over 15 epochs, step_size_up 2.5 epochs.
  const int64_t total_steps = s.clr_epochs * data.per_epoch;
  c.step_size_up = std::max<int64_t>(1, total_steps / (2 * s.cycles));
  c.gamma = std::pow(0.5, 1.0 / static_cast<double>(total_steps));
  dlcore::LeNet5 net = make_model();
  torch::optim::SGD sgd = make_sgd(net, bounds.base_lr);
  dlcore::CyclicLR clr(
      sgd,
      dlcore::CyclicLROptions(bounds.base_lr, bounds.max_lr)
          .step_size_up(c.step_size_up)
          .mode(dlcore::CyclicMode::kExpRange)
          .gamma(c.gamma)
          .cycle_momentum(true)
          .base_momentum(0.8)
          .max_momentum(0.9));
  std::cout << fmt::format(
      "CyclicLR: base_lr {:.3g}, max_lr {:.3g}, step_size_up {}, exp_range "
      "gamma {:.7f}, momentum 0.9 → 0.8; {} epochs\n",
      bounds.base_lr,
      bounds.max_lr,
      c.step_size_up,
      c.gamma,
      s.clr_epochs);
  dlcore::History& history = c.history;
  ex::DivergenceGuard guard;
  auto train_opts =
      dlcore::TrainOptions().loss_average(dlcore::LossAverage::kPerBatch);
  for (int64_t epoch = 1; epoch <= s.clr_epochs; ++epoch) {
    data.train_batches.set_epoch(epoch - 1);
    auto tr = dlcore::train_epoch(
        net,
        data.train_batches,
        sgd,
        clr,
        train_opts.epoch(epoch)
            .global_step((epoch - 1) * data.per_epoch)
            .on_step(guard.on_step(epoch, history.step_recorder())));
    if (guard.diverged_after(*net, tr)) {
      c.divergence = guard.result();
      std::cout << fmt::format(
          "  epoch {}/{}: {} ({})\n",
          epoch,
          s.clr_epochs,
          c.divergence.text(),
          c.divergence.reason);
      break;
    }
    auto va = dlcore::evaluate(net, data.val_batches);
    history.add_epoch(epoch, tr, va);
    std::cout << fmt::format(
        "  epoch {}/{}: train loss {:.4f} acc {} | val loss {:.4f} acc {} | "
        "{:.1f}s\n",
        epoch,
        s.clr_epochs,
        tr.loss,
        pct(tr.accuracy),
        va.loss,
        pct(va.accuracy),
        tr.seconds + va.seconds);
  }
  if (!c.divergence.diverged) {
    c.test = dlcore::evaluate(net, data.test_batches);
  }
  c.seconds = sw.seconds();
  std::cout << fmt::format(
      "CLR: {} ({:.1f}s)\n",
      c.divergence.diverged ? c.divergence.text()
                            : fmt::format(
                                  "val acc {}, test acc {}",
                                  pct(history.last("val_accuracy")),
                                  pct(c.test.accuracy)),
      sw.seconds());
  const std::string curves = out.path("curves.csv");
  const std::string steps = out.path("steps.csv");
  history.epochs_table().write(curves);
  history.steps_table().write(steps);
  auto loss_panel = ex::csv_panel(
      "Loss",
      "epoch",
      "cross-entropy",
      curves,
      "epoch",
      {{"train_loss", "train"}, {"val_loss", "validation"}});
  loss_panel.x_format(dlcore::TickFormat::kInteger);
  auto acc_panel = ex::csv_panel(
      "Accuracy",
      "epoch",
      "accuracy",
      curves,
      "epoch",
      {{"train_accuracy", "train"}, {"val_accuracy", "validation"}});
  acc_panel.x_format(dlcore::TickFormat::kInteger)
      .y_format(dlcore::TickFormat::kPercent);
  // LR on the left axis, momentum on the right, against the same steps.
  dlcore::PlotPanel schedule;
  schedule.title("Learning rate and momentum over training steps")
      .xlabel("step")
      .ylabel("learning rate")
      .y2label("momentum")
      .x_format(dlcore::TickFormat::kInteger)
      .add(dlcore::PlotSeries(steps, "global_step", "lr_0")
               .title("LR (left axis)")
               .style("lines"))
      .add(dlcore::PlotSeries(steps, "global_step", "momentum_0")
               .title("momentum (right axis)")
               .style("lines")
               .y2(true));
  out.plot(
      "clr_training.png",
      {loss_panel, acc_panel, schedule},
      dlcore::PlotOptions().width(1500).height(520).columns(3).title(
          "Problem 1: LeNet-5 with CyclicLR (exp_range, cycled momentum)"),
      "CLR training");
  return c;
}

// ---- 4. batch-size study ----

struct Study {
  dlcore::BatchSizeStudyResult result;
  std::vector<int64_t> batch_sizes;
  std::vector<dlcore::BatchLRRule> rules;
  double seconds = 0;
};

void write_study_files(
    const Settings& s, const Study& st, double max_lr, const ex::Output& out) {
  const std::string bs_csv = out.path("batch_size.csv");
  const std::string bs_wide = out.path("batch_size_wide.csv");
  dlcore::CsvTable t(
      {"batch_size",
       "log2_batch_size",
       "rule",
       "lr",
       "final_train_loss",
       "final_val_loss",
       "final_val_accuracy",
       "steps",
       "seconds",
       "diverged",
       "reused"});
  for (const auto& r : st.result.runs) {
    t.add_row(
        {r.batch_size,
         std::log2(static_cast<double>(r.batch_size)),
         std::string(dlcore::to_string(r.rule)),
         r.lr,
         r.final_train_loss,
         r.final_val_loss,
         r.final_val_accuracy,
         r.steps,
         r.seconds,
         static_cast<int64_t>(r.diverged),
         static_cast<int64_t>(r.reused)});
  }
  t.write(bs_csv);
  std::vector<std::string> header = {"batch_size", "log2_batch_size"};
  for (auto rule : st.rules) {
    header.push_back(std::string(dlcore::to_string(rule)) + "_train_loss");
    header.push_back(std::string(dlcore::to_string(rule)) + "_val_accuracy");
  }
  dlcore::CsvTable w(header);
  for (std::size_t b = 0; b < st.batch_sizes.size(); ++b) {
    std::vector<dlcore::CsvCell> row = {
        st.batch_sizes[b], std::log2(static_cast<double>(st.batch_sizes[b]))};
    for (std::size_t k = 0; k < st.rules.size(); ++k) {
      const auto& r = st.result.runs[b * st.rules.size() + k];
      row.emplace_back(r.final_train_loss);
      row.emplace_back(r.final_val_accuracy);
    }
    w.add_row(row);
  }
  w.write(bs_wide);
  std::vector<std::pair<std::string, std::string>> losses, accuracies;
  for (auto rule : st.rules) {
    const std::string name = dlcore::to_string(rule);
    const std::string label = rule == dlcore::BatchLRRule::kFixed
                                  ? fmt::format("fixed LR {:.3g}", max_lr)
                                  : fmt::format("LR x bs/{}", s.batch_size);
    losses.emplace_back(name + "_train_loss", label);
    accuracies.emplace_back(name + "_val_accuracy", label);
  }
  auto loss_panel = ex::csv_panel(
      fmt::format("Final training loss ({})", epochs_text(s.bs_epochs)),
      "log2(batch size)",
      "training loss",
      bs_wide,
      "log2_batch_size",
      losses);
  loss_panel.x_format(dlcore::TickFormat::kInteger);
  auto acc_panel = ex::csv_panel(
      "Final validation accuracy",
      "log2(batch size)",
      "accuracy",
      bs_wide,
      "log2_batch_size",
      accuracies);
  acc_panel.x_format(dlcore::TickFormat::kInteger)
      .y_format(dlcore::TickFormat::kPercent);
  out.plot(
      "batch_size.png",
      {loss_panel, acc_panel},
      dlcore::PlotOptions().width(1300).height(500).title(
          "Problem 1: batch-size study, LeNet-5, SGD momentum 0.9"),
      "batch-size");
}

Study study_batch_sizes(
    const Settings& s,
    const Data& data,
    const SameStart& make_model,
    double max_lr,
    const ex::Output& out) {
  ex::Stopwatch sw;
  Study st;
  st.batch_sizes =
      s.flags.scale == ex::Scale::kQuick
          ? std::vector<int64_t>{64, 1024}
          : std::vector<int64_t>{32, 64, 128, 256, 512, 1024, 2048, 4096};
  st.rules = {dlcore::BatchLRRule::kFixed};
  if (!s.no_linear) {
    st.rules.push_back(dlcore::BatchLRRule::kLinear);
  }
  st.result = dlcore::batch_size_study(
      make_model,
      make_sgd,
      data.train,
      data.val,
      dlcore::BatchSizeStudyOptions(max_lr)
          .batch_sizes(st.batch_sizes)
          .rules(st.rules)
          .base_batch_size(s.batch_size)
          .epochs(s.bs_epochs)
          .seed(s.flags.seed)
          .on_run([](const dlcore::BatchSizeRun& r) {
            std::cout << fmt::format(
                "  batch {:5d} {:6s} lr {:.3g}: train loss {} val acc {} "
                "({} steps, {:.1f}s)\n",
                r.batch_size,
                dlcore::to_string(r.rule),
                r.lr,
                num(r.final_train_loss),
                pct(r.final_val_accuracy),
                r.steps,
                r.seconds);
          }));
  st.seconds = sw.seconds();
  write_study_files(s, st, max_lr, out);
  return st;
}

// ---- the report ----

struct Results {
  Sweep sweep;
  Grid grid;
  ClrRun clr;
  Study study;
};

dlcore::Json summary_json(
    const Settings& s,
    const Data& data,
    const Results& r,
    double total_seconds) {
  dlcore::Json summary = dlcore::Json::object();
  summary["problem"] = "problem1";
  summary["run"] = s.flags.run_json("problem1");
  summary["settings"] = s.flags.to_json();
  summary["settings"]["batch_size"] = s.batch_size;
  summary["settings"]["momentum"] = kMomentum;
  summary["settings"]["clr_epochs"] = s.clr_epochs;
  summary["settings"]["bs_epochs"] = s.bs_epochs;
  summary["samples"]["train"] = data.train.size();
  summary["samples"]["validation"] = data.val.size();
  summary["samples"]["test"] = data.test.size();
  const Sweep& w = r.sweep;
  dlcore::Json& js = summary["lr_sweep"];
  js = dlcore::Json::object();
  js["start_lr"] = w.options.start_lr();
  js["end_lr"] = w.options.end_lr();
  js["num_iter"] = w.options.num_iter();
  js["iterations"] = w.result.iterations();
  js["stop_reason"] = dlcore::to_string(w.result.stop_reason);
  js["best_smoothed_loss"] = w.result.best_loss;
  js["best_lr"] = w.result.best_lr;
  js["suggest_steepest"] = w.steepest.lr;
  js["suggest_min_div10"] = w.min10.lr;
  js["suggest_valley"] = w.valley.lr;
  js["skip_start"] = w.skip_start;
  js["skip_end"] = w.skip_end;
  summary["clr_bounds"]["base_lr"] = w.bounds.base_lr;
  summary["clr_bounds"]["max_lr"] = w.bounds.max_lr;
  summary["clr_bounds"]["rule"] =
      "max_lr = LR at min smoothed loss / 10; base_lr = max_lr / 4";
  if (s.grid) {
    dlcore::Json points = dlcore::Json::array();
    for (const auto& p : r.grid.result.points) {
      dlcore::Json o = dlcore::Json::object();
      o["lr"] = p.lr;
      o["final_train_loss"] = p.final_loss;
      o["val_accuracy"] = p.val_accuracy;
      o["diverged"] = p.diverged;
      if (p.diverged) {
        o["diverged_in_epoch"] = grid_divergence(p).epoch;
      }
      points.push_back(o);
    }
    summary["lr_grid"]["epochs"] = s.grid_epochs;
    summary["lr_grid"]["points"] = points;
    summary["lr_grid"]["homework_bounds"]["lr_min"] = r.grid.bounds.base_lr;
    summary["lr_grid"]["homework_bounds"]["lr_max"] = r.grid.bounds.max_lr;
  }
  summary["clr"]["step_size_up"] = r.clr.step_size_up;
  summary["clr"]["gamma"] = r.clr.gamma;
  summary["clr"]["history"] = r.clr.history.to_json();
  summary["clr"]["final_val_accuracy"] = r.clr.history.last("val_accuracy");
  summary["clr"]["final_train_loss"] = r.clr.history.last("train_loss");
  summary["clr"]["test_accuracy"] = r.clr.test.accuracy;
  summary["clr"]["test_loss"] = r.clr.test.loss;
  summary["clr"]["divergence"] = r.clr.divergence.to_json();
  if (!s.skip_study) {
    dlcore::Json runs = dlcore::Json::array();
    for (const auto& run : r.study.result.runs) {
      dlcore::Json o = dlcore::Json::object();
      o["batch_size"] = run.batch_size;
      o["rule"] = dlcore::to_string(run.rule);
      o["lr"] = run.lr;
      o["final_train_loss"] = run.final_train_loss;
      o["final_val_accuracy"] = run.final_val_accuracy;
      o["steps"] = run.steps;
      o["seconds"] = run.seconds;
      o["diverged"] = run.diverged;
      o["divergence"] = study_divergence(run, data.train.size()).to_json();
      runs.push_back(o);
    }
    summary["batch_size_study"]["epochs"] = s.bs_epochs;
    summary["batch_size_study"]["runs"] = runs;
  }
  dlcore::Json seconds = dlcore::Json::object();
  seconds["lr_sweep"] = w.seconds;
  if (s.grid) {
    seconds["lr_grid"] = r.grid.seconds;
  }
  seconds["clr_training"] = r.clr.seconds;
  if (!s.skip_study) {
    seconds["batch_size_study"] = r.study.seconds;
  }
  summary["seconds"] = seconds;
  summary["seconds"]["total"] = total_seconds;
  return summary;
}

std::string sweep_md(const Sweep& w) {
  std::string md = "### LR range test\n\n";
  md += fmt::format(
      "Smith's sweep: {} iterations from 1e-7 to 10 (exponential, stopped: "
      "{}), bias-corrected EMA (0.98) of the loss. Best smoothed loss "
      "{:.4f} at LR {:.3g}.\n\n",
      w.result.iterations(),
      dlcore::to_string(w.result.stop_reason),
      w.result.best_loss,
      w.result.best_lr);
  md += "| suggestion | LR |\n|---|---:|\n";
  md += fmt::format("| steepest descent | {:.3g} |\n", w.steepest.lr);
  md += fmt::format("| minimum / 10 | {:.3g} |\n", w.min10.lr);
  md += fmt::format("| valley (fastai) | {:.3g} |\n", w.valley.lr);
  md += fmt::format(
      "| **CyclicLR bounds** (max = min/10, base = max/4) | **{:.3g} … "
      "{:.3g}** |\n\n",
      w.bounds.base_lr,
      w.bounds.max_lr);
  return md + "![LR range test](lr_finder.png)\n\n";
}

std::string grid_md(const Settings& s, const Grid& g) {
  std::string md = fmt::format(
      "The homework's grid: 10 LRs, {} each from the same initial "
      "weights.\n\n| LR | final train loss | val acc |\n|---:|---:|---:|\n",
      epochs_text(s.grid_epochs));
  for (const auto& p : g.result.points) {
    const ex::Divergence d = grid_divergence(p);
    md += d.diverged
              ? fmt::format(
                    "| {:.3g} | diverged in epoch {} | — |\n", p.lr, d.epoch)
              : fmt::format(
                    "| {:.3g} | {} | {} |\n",
                    p.lr,
                    num(p.final_loss),
                    pct(p.val_accuracy));
  }
  return md + fmt::format(
                  "\nHomework rule (best and one grid step below): lr_min "
                  "{:.3g}, lr_max {:.3g}.\n\n![LR grid](lr_grid.png)\n\n",
                  g.bounds.base_lr,
                  g.bounds.max_lr);
}

std::string clr_md(
    const Settings& s, const dlcore::CyclicBounds& bounds, const ClrRun& c) {
  std::string md = "### LeNet-5 with CyclicLR\n\n";
  md += fmt::format(
      "exp_range, base_lr {:.3g}, max_lr {:.3g}, step_size_up {} steps, "
      "gamma {:.7f} per step, momentum cycled 0.9 → 0.8; {} epochs.\n\n",
      bounds.base_lr,
      bounds.max_lr,
      c.step_size_up,
      c.gamma,
      s.clr_epochs);
  md += "| epoch | train loss | train acc | val loss | val acc |\n";
  md += "|---:|---:|---:|---:|---:|\n";
  const dlcore::History& h = c.history;
  for (std::size_t i = 0; i < h.num_epochs(); ++i) {
    md += fmt::format(
        "| {} | {:.4f} | {} | {:.4f} | {} |\n",
        static_cast<int64_t>(h.at(i, "epoch")),
        h.at(i, "train_loss"),
        pct(h.at(i, "train_accuracy")),
        h.at(i, "val_loss"),
        pct(h.at(i, "val_accuracy")));
  }
  if (c.divergence.diverged) {
    md += fmt::format(
        "| {} | **{}** ({}) | — | — | — |\n",
        c.divergence.epoch,
        c.divergence.text(),
        c.divergence.reason);
    return md + fmt::format(
                    "\nTraining **{}**; no accuracy is reported for a "
                    "diverged run.\n\n![CLR training](clr_training.png)\n\n",
                    c.divergence.text());
  }
  return md + fmt::format(
                  "\nValidation accuracy **{}**, test accuracy **{}**.\n\n"
                  "![CLR training](clr_training.png)\n\n",
                  pct(h.last("val_accuracy")),
                  pct(c.test.accuracy));
}

std::string study_md(
    const Settings& s, double max_lr, const Study& st, int64_t train) {
  std::string md = "### Batch size\n\n";
  md += fmt::format(
      "Same initial weights and shuffles, {} per run; fixed LR {:.3g} "
      "(max_lr, as the homework){}.\n\n",
      epochs_text(s.bs_epochs),
      max_lr,
      s.no_linear ? ""
                  : fmt::format(
                        ", and LR × bs/{} (linear scaling, Goyal et al.)",
                        s.batch_size));
  md += "| batch | rule | LR | steps | final train loss | val acc | s |\n";
  md += "|---:|---|---:|---:|---:|---:|---:|\n";
  for (const auto& r : st.result.runs) {
    const ex::Divergence d = study_divergence(r, train);
    md += fmt::format(
        "| {} | {}{} | {:.3g} | {} | {} | {} | {:.1f} |\n",
        r.batch_size,
        dlcore::to_string(r.rule),
        r.reused ? " (same LR: run reused)" : "",
        r.lr,
        r.steps,
        d.diverged ? "**" + d.text() + "**" : num(r.final_train_loss),
        d.diverged ? std::string("—") : pct(r.final_val_accuracy),
        r.seconds);
  }
  return md + "\n![batch size](batch_size.png)\n\n";
}

std::string summary_md(
    const Settings& s,
    const Data& data,
    const Results& r,
    double total_seconds) {
  std::string md =
      "## Problem 1 — Learning rate and batch size (LeNet-5, FashionMNIST)\n\n";
  md += fmt::format(
      "Scale `{}`, seed {}: {} training / {} validation / {} test images, "
      "SGD momentum 0.9, batch {}. Total {:.0f} s.\n\n",
      ex::scale_name(s.flags.scale),
      s.flags.seed,
      data.train.size(),
      data.val.size(),
      data.test.size(),
      s.batch_size,
      total_seconds);
  md += sweep_md(r.sweep);
  if (s.grid) {
    md += grid_md(s, r.grid);
  }
  md += clr_md(s, r.sweep.bounds, r.clr);
  if (!s.skip_study) {
    md += study_md(s, r.sweep.bounds.max_lr, r.study, data.train.size());
  }
  return md +
         "Data: `lr_finder.csv`, `curves.csv`, `steps.csv`, `batch_size.csv`, "
         "`summary.json`.\n";
}

} // namespace

int main(int argc, char** argv) try {
  CLI::App app{
      "Problem 1: LR range test, CyclicLR and batch-size study, LeNet-5 on "
      "FashionMNIST"};
  Settings s;
  add_flags(app, s);
  if (const auto rc = ex::parse_flags(app, argc, argv)) {
    return *rc;
  }
  // Every flag is checked before any work.
  finish_settings(app, s);
  s.flags.validate();
  const ex::Output out("problem1", s.flags.prepare_out());
  s.flags.apply_threads();
  ex::Stopwatch total;

  const torch::Device device = s.flags.resolve_device();
  Data data = load_data(s, device);
  if (s.sweep_iters < 0) {
    s.sweep_iters = ex::by_scale<int64_t>(
        s.flags.scale, 40, data.per_epoch, data.per_epoch);
  }
  std::cout << fmt::format(
      "problem1: {} train, {} validation, {} test images; batch {} ({} "
      "steps/epoch), scale {}\n",
      data.train.size(),
      data.val.size(),
      data.test.size(),
      s.batch_size,
      data.per_epoch,
      ex::scale_name(s.flags.scale));
  torch::manual_seed(s.flags.seed);
  const SameStart make_model{dlcore::LeNet5(), device};

  Results r;
  r.sweep = lr_range_test(s, data, make_model, out); // part 1
  if (s.grid) {
    r.grid = lr_grid(s, data, make_model, out); // part 1, the homework's way
  }
  r.clr = train_with_clr(s, data, make_model, r.sweep.bounds, out); // 2-3
  if (!s.skip_study) {
    r.study = study_batch_sizes(
        s, data, make_model, r.sweep.bounds.max_lr, out); // part 4
  }

  out.write_json("summary.json", summary_json(s, data, r, total.seconds()));
  out.write_summary(summary_md(s, data, r, total.seconds()));
  std::cout << fmt::format(
      "problem1: wrote {} in {:.1f}s\n", out.dir().string(), total.seconds());
  return 0;
} catch (const std::exception& e) {
  return ex::report_error("problem1", e);
}
