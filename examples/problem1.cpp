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
//   lr_finder.csv      sweep: iteration, lr, log10_lr, loss, smoothed_loss
//   lr_finder.png      smoothed and raw loss vs log10 LR, bounds marked
//   lr_grid.csv/.png   (full scale or --grid) final training loss per grid LR
//   curves.csv         CLR run per epoch: train/val loss and accuracy
//   steps.csv          CLR run per step: loss, accuracy, LR and momentum
//   clr_training.png   loss, accuracy, LR and momentum over training
//   batch_size.csv     study: one row per (batch size, rule)
//   batch_size_wide.csv, batch_size.png  loss and val accuracy vs log2(bs)
//   summary.json       settings, suggestions, bounds, every result, seconds
//   summary.md         "## Problem 1 — ..." section for results/REPORT.md
#include "common.h"

#include <dlcore/data/batches.h>
#include <dlcore/data/fashion_mnist.h>
#include <dlcore/data/split.h>
#include <dlcore/nn/models/lenet5.h>
#include <dlcore/optim/cyclic_lr.h>
#include <dlcore/study/batch_size_study.h>
#include <dlcore/study/lr_finder.h>
#include <dlcore/train/history.h>
#include <dlcore/train/plot.h>
#include <dlcore/train/report.h>
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
  return std::isfinite(fraction) ? fmt::format("{:.2f}%", 100 * fraction)
                                 : std::string("—");
}

std::string num(double v) {
  return std::isfinite(v) ? fmt::format("{:.4f}", v) : std::string("diverged");
}

std::string epochs_text(int64_t n) {
  return fmt::format("{} epoch{}", n, n == 1 ? "" : "s");
}

void warn_plot(const dlcore::PlotResult& r, const std::string& what) {
  if (!r) {
    std::cerr << "problem1: no " << what << " plot: " << r.message << "\n";
  }
}

} // namespace

int main(int argc, char** argv) try {
  CLI::App app{
      "Problem 1: LR range test, CyclicLR and batch-size study, LeNet-5 on "
      "FashionMNIST"};
  ex::CommonFlags flags;
  flags.add_to(app, "problem1");
  int64_t clr_epochs = -1;
  int64_t bs_epochs = -1;
  int64_t sweep_iters = -1;
  int64_t batch_size = 64;
  bool grid = false;
  bool skip_grid = false;
  bool skip_study = false;
  bool no_linear = false;
  int64_t cycles = -1;
  app.add_option(
      "--clr-epochs",
      clr_epochs,
      "CyclicLR training epochs (by scale: quick 1, default 5, full 15)");
  app.add_option(
      "--bs-epochs",
      bs_epochs,
      "epochs per batch size (by scale: quick 1, default 1, full 5)");
  app.add_option(
      "--sweep-iters",
      sweep_iters,
      "LR range test iterations (by scale: quick 40, otherwise 1 epoch of "
      "batches)");
  app.add_option("--batch-size", batch_size, "batch size of sweep and CLR")
      ->capture_default_str();
  app.add_flag(
      "--grid", grid, "also run the homework's 10-LR grid (always at full)");
  app.add_flag(
      "--no-linear", no_linear, "batch-size study without the linear-LR rule");
  app.add_flag("--skip-grid", skip_grid, "skip the LR grid (even at full)");
  app.add_flag("--skip-study", skip_study, "skip the batch-size study");
  app.add_option(
      "--cycles",
      cycles,
      "complete CyclicLR cycles over the run (by scale: quick 1, default 2, "
      "full 3)");
  CLI11_PARSE(app, argc, argv);
  const ex::Scale scale = flags.scale;
  if (clr_epochs < 0) {
    clr_epochs = ex::by_scale<int64_t>(scale, 1, 5, 15);
  }
  if (bs_epochs < 0) {
    bs_epochs = ex::by_scale<int64_t>(scale, 1, 1, 5);
  }
  grid = (grid || scale == ex::Scale::kFull) && !skip_grid;
  if (cycles < 1) {
    cycles = ex::by_scale<int64_t>(scale, 1, 2, 3);
  }
  const int64_t grid_epochs = ex::by_scale<int64_t>(scale, 1, 1, 5);
  const auto out = flags.prepare_out();
  flags.apply_threads();
  ex::Stopwatch total;
  dlcore::Json seconds = dlcore::Json::object();

  // ---- data ----
  dlcore::TensorDataset full = dlcore::load_fashion_mnist(flags.data_dir, true);
  dlcore::TensorDataset test =
      dlcore::load_fashion_mnist(flags.data_dir, false);
  auto [train, val] = dlcore::random_split(full, 0.8, flags.seed);
  if (scale == ex::Scale::kQuick) {
    train = dlcore::subset(train, torch::arange(2000));
    val = dlcore::subset(val, torch::arange(500));
    test = dlcore::subset(test, torch::arange(1000));
  }
  // Everything trains where --device says: the data sets live there, so
  // every loop (range test, grid, CLR run, batch-size study) finds its
  // batches on the model's device.
  const torch::Device device = flags.resolve_device();
  train = ex::on_device(train, device);
  val = ex::on_device(val, device);
  test = ex::on_device(test, device);
  dlcore::Batches train_batches(
      train, dlcore::BatchesOptions(batch_size).shuffle(true).seed(flags.seed));
  dlcore::Batches val_batches(val, dlcore::BatchesOptions(1024));
  dlcore::Batches test_batches(test, dlcore::BatchesOptions(1024));
  const int64_t per_epoch = train_batches.size();
  if (sweep_iters < 0) {
    sweep_iters = ex::by_scale<int64_t>(scale, 40, per_epoch, per_epoch);
  }
  std::cout << fmt::format(
      "problem1: {} train, {} validation, {} test images; batch {} ({} "
      "steps/epoch), scale {}\n",
      train.size(),
      val.size(),
      test.size(),
      batch_size,
      per_epoch,
      ex::scale_name(scale));

  // One initial LeNet-5 for every stage (sweep, grid, CLR, batch sizes).
  torch::manual_seed(flags.seed);
  dlcore::LeNet5 initial;
  auto make_model = [&] {
    dlcore::LeNet5 net;
    net->to(device);
    torch::NoGradGuard no_grad;
    auto src = initial->parameters();
    auto dst = net->parameters();
    for (std::size_t i = 0; i < src.size(); ++i) {
      dst[i].copy_(src[i]);
    }
    return net;
  };

  // ---- 1. LR range test (Smith's sweep) ----
  ex::Stopwatch sw;
  const auto finder_opts =
      dlcore::LRFinderOptions().start_lr(1e-7).end_lr(10.0).num_iter(
          sweep_iters);
  dlcore::LRFinderResult sweep;
  {
    dlcore::LeNet5 net = make_model();
    torch::optim::SGD sgd = make_sgd(net, 1e-3);
    dlcore::LRFinder finder(net, sgd, finder_opts);
    sweep = finder.range_test(train_batches);
  }
  const int64_t skip_start = std::max<int64_t>(1, sweep_iters / 10);
  const int64_t skip_end = 5;
  const auto steepest = dlcore::suggest_steepest(sweep, skip_start, skip_end);
  const auto min10 = dlcore::suggest_min_div10(sweep, skip_start, skip_end);
  const auto valley = dlcore::suggest_valley(sweep, skip_start, skip_end);
  const dlcore::CyclicBounds bounds = dlcore::suggest_cyclic_bounds(
      sweep,
      dlcore::CyclicBoundsOptions().skip_start(skip_start).skip_end(skip_end));
  seconds["lr_sweep"] = sw.seconds();
  std::cout << fmt::format(
      "LR sweep: {} iterations ({}), best smoothed loss {:.4f} at lr {:.3g}; "
      "steepest {:.3g}, min/10 {:.3g}, valley {:.3g} → CLR base_lr {:.3g}, "
      "max_lr {:.3g} ({:.1f}s)\n",
      sweep.iterations(),
      dlcore::to_string(sweep.stop_reason),
      sweep.best_loss,
      sweep.best_lr,
      steepest.lr,
      min10.lr,
      valley.lr,
      bounds.base_lr,
      bounds.max_lr,
      sw.seconds());
  const std::string sweep_csv = (out / "lr_finder.csv").string();
  {
    dlcore::CsvTable t(
        {"iteration", "lr", "log10_lr", "loss", "smoothed_loss"});
    for (int64_t i = 0; i < sweep.iterations(); ++i) {
      t.add_row(
          {i,
           sweep.lrs[i],
           std::log10(sweep.lrs[i]),
           sweep.losses[i],
           sweep.smoothed_losses[i]});
    }
    t.write(sweep_csv);
  }
  {
    dlcore::PlotPanel p;
    p.title("LR range test (loss vs log10 LR)")
        .xlabel("log10(learning rate)")
        .ylabel("training loss")
        .add(dlcore::PlotSeries(sweep_csv, "log10_lr", "loss")
                 .title("raw")
                 .style("lines"))
        .add(dlcore::PlotSeries(sweep_csv, "log10_lr", "smoothed_loss")
                 .title("smoothed (EMA 0.98)")
                 .style("lines"))
        .marker(std::log10(bounds.base_lr), "base_lr")
        .marker(std::log10(bounds.max_lr), "max_lr");
    warn_plot(
        dlcore::plot_png(
            (out / "lr_finder.png").string(),
            {p},
            dlcore::PlotOptions().width(900).height(550)),
        "LR finder");
  }

  // ---- 1b. the homework's grid ----
  dlcore::LRGridResult grid_result;
  dlcore::CyclicBounds grid_bounds{};
  if (grid) {
    sw = ex::Stopwatch();
    grid_result = dlcore::lr_grid_search(
        make_model,
        make_sgd,
        train_batches,
        val_batches,
        dlcore::LRGridOptions()
            .epochs(grid_epochs)
            .on_point([](const dlcore::LRGridPoint& p) {
              std::cout << fmt::format(
                  "  grid lr {:.3g}: final train loss {} val acc {} "
                  "({:.1f}s)\n",
                  p.lr,
                  num(p.final_loss),
                  pct(p.val_accuracy),
                  p.seconds);
            }));
    grid_bounds = dlcore::suggest_grid_bounds(
        grid_result, dlcore::GridBoundsRule::kHomework);
    seconds["lr_grid"] = sw.seconds();
    const std::string grid_csv = (out / "lr_grid.csv").string();
    dlcore::CsvTable t(
        {"lr", "log10_lr", "final_train_loss", "val_accuracy", "diverged"});
    for (const auto& p : grid_result.points) {
      t.add_row(
          {p.lr,
           std::log10(p.lr),
           p.final_loss,
           p.val_accuracy,
           static_cast<int64_t>(p.diverged)});
    }
    t.write(grid_csv);
    dlcore::PlotPanel p;
    p.title(fmt::format(
                "LR grid ({} per LR): final training loss",
                epochs_text(grid_epochs)))
        .xlabel("log10(learning rate)")
        .ylabel("final training loss")
        .key("off")
        .add(dlcore::PlotSeries(grid_csv, "log10_lr", "final_train_loss"))
        .marker(std::log10(grid_bounds.base_lr), "lr_min")
        .marker(std::log10(grid_bounds.max_lr), "lr_max");
    warn_plot(
        dlcore::plot_png(
            (out / "lr_grid.png").string(),
            {p},
            dlcore::PlotOptions().width(900).height(550)),
        "LR grid");
  }

  // ---- 2-3. LeNet-5 with CyclicLR (exp_range, cycled momentum) ----
  sw = ex::Stopwatch();
  // Whole cycles, so the run ends at base_lr (Smith: stop at the end of a
  // cycle); full scale: 3 cycles over 15 epochs, step_size_up 2.5 epochs.
  const int64_t total_steps = clr_epochs * per_epoch;
  const int64_t step_size_up = std::max<int64_t>(1, total_steps / (2 * cycles));
  const double gamma = std::pow(0.5, 1.0 / static_cast<double>(total_steps));
  dlcore::LeNet5 net = make_model();
  torch::optim::SGD sgd = make_sgd(net, bounds.base_lr);
  dlcore::CyclicLR clr(
      sgd,
      dlcore::CyclicLROptions(bounds.base_lr, bounds.max_lr)
          .step_size_up(step_size_up)
          .mode(dlcore::CyclicMode::kExpRange)
          .gamma(gamma)
          .cycle_momentum(true)
          .base_momentum(0.8)
          .max_momentum(0.9));
  std::cout << fmt::format(
      "CyclicLR: base_lr {:.3g}, max_lr {:.3g}, step_size_up {}, exp_range "
      "gamma {:.7f}, momentum 0.9 → 0.8; {} epochs\n",
      bounds.base_lr,
      bounds.max_lr,
      step_size_up,
      gamma,
      clr_epochs);
  dlcore::History history;
  auto train_opts = dlcore::TrainOptions()
                        .on_step(history.step_recorder())
                        .loss_average(dlcore::LossAverage::kPerBatch);
  for (int64_t epoch = 1; epoch <= clr_epochs; ++epoch) {
    train_batches.set_epoch(epoch - 1);
    auto tr = dlcore::train_epoch(
        net,
        train_batches,
        sgd,
        clr,
        train_opts.epoch(epoch).global_step((epoch - 1) * per_epoch));
    auto va = dlcore::evaluate(net, val_batches);
    history.add_epoch(epoch, tr, va);
    std::cout << fmt::format(
        "  epoch {}/{}: train loss {:.4f} acc {} | val loss {:.4f} acc {} | "
        "{:.1f}s\n",
        epoch,
        clr_epochs,
        tr.loss,
        pct(tr.accuracy),
        va.loss,
        pct(va.accuracy),
        tr.seconds + va.seconds);
  }
  auto te = dlcore::evaluate(net, test_batches);
  seconds["clr_training"] = sw.seconds();
  std::cout << fmt::format(
      "CLR: val acc {}, test acc {} ({:.1f}s)\n",
      pct(history.last("val_accuracy")),
      pct(te.accuracy),
      sw.seconds());
  const std::string curves = (out / "curves.csv").string();
  const std::string steps = (out / "steps.csv").string();
  history.epochs_table().write(curves);
  history.steps_table().write(steps);
  {
    dlcore::PlotPanel loss_panel;
    loss_panel.title("Loss")
        .xlabel("epoch")
        .ylabel("cross-entropy")
        .add(dlcore::PlotSeries(curves, "epoch", "train_loss").title("train"))
        .add(dlcore::PlotSeries(curves, "epoch", "val_loss")
                 .title("validation"));
    dlcore::PlotPanel acc_panel;
    acc_panel.title("Accuracy")
        .xlabel("epoch")
        .ylabel("accuracy (fraction)")
        .key("bottom right")
        .add(dlcore::PlotSeries(curves, "epoch", "train_accuracy")
                 .title("train"))
        .add(dlcore::PlotSeries(curves, "epoch", "val_accuracy")
                 .title("validation"));
    dlcore::PlotPanel lr_panel;
    lr_panel.title("Learning rate over training steps")
        .xlabel("step")
        .ylabel("learning rate")
        .key("off")
        .add(dlcore::PlotSeries(steps, "global_step", "lr_0").style("lines"));
    dlcore::PlotPanel mom_panel;
    mom_panel.title("Momentum over training steps")
        .xlabel("step")
        .ylabel("momentum")
        .key("off")
        .add(dlcore::PlotSeries(steps, "global_step", "momentum_0")
                 .style("lines"));
    warn_plot(
        dlcore::plot_png(
            (out / "clr_training.png").string(),
            {loss_panel, acc_panel, lr_panel, mom_panel},
            dlcore::PlotOptions().width(1200).height(900).columns(2).title(
                "Problem 1: LeNet-5 with CyclicLR (exp_range, cycled "
                "momentum)")),
        "CLR training");
  }

  // ---- 4. batch-size study ----
  dlcore::BatchSizeStudyResult study;
  std::vector<int64_t> batch_sizes;
  std::vector<dlcore::BatchLRRule> rules;
  if (!skip_study) {
    sw = ex::Stopwatch();
    batch_sizes =
        scale == ex::Scale::kQuick
            ? std::vector<int64_t>{64, 1024}
            : std::vector<int64_t>{32, 64, 128, 256, 512, 1024, 2048, 4096};
    rules = {dlcore::BatchLRRule::kFixed};
    if (!no_linear) {
      rules.push_back(dlcore::BatchLRRule::kLinear);
    }
    study = dlcore::batch_size_study(
        make_model,
        make_sgd,
        train,
        val,
        dlcore::BatchSizeStudyOptions(bounds.max_lr)
            .batch_sizes(batch_sizes)
            .rules(rules)
            .base_batch_size(batch_size)
            .epochs(bs_epochs)
            .seed(flags.seed)
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
    seconds["batch_size_study"] = sw.seconds();
    const std::string bs_csv = (out / "batch_size.csv").string();
    const std::string bs_wide = (out / "batch_size_wide.csv").string();
    {
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
      for (const auto& r : study.runs) {
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
      for (auto rule : rules) {
        header.push_back(std::string(dlcore::to_string(rule)) + "_train_loss");
        header.push_back(
            std::string(dlcore::to_string(rule)) + "_val_accuracy");
      }
      dlcore::CsvTable w(header);
      for (std::size_t b = 0; b < batch_sizes.size(); ++b) {
        std::vector<dlcore::CsvCell> row = {
            batch_sizes[b], std::log2(static_cast<double>(batch_sizes[b]))};
        for (std::size_t k = 0; k < rules.size(); ++k) {
          const auto& r = study.runs[b * rules.size() + k];
          row.emplace_back(r.final_train_loss);
          row.emplace_back(r.final_val_accuracy);
        }
        w.add_row(row);
      }
      w.write(bs_wide);
      dlcore::PlotPanel loss_panel;
      loss_panel
          .title(
              fmt::format("Final training loss ({})", epochs_text(bs_epochs)))
          .xlabel("log2(batch size)")
          .ylabel("training loss");
      dlcore::PlotPanel acc_panel;
      acc_panel.title("Final validation accuracy")
          .xlabel("log2(batch size)")
          .ylabel("accuracy (fraction)")
          .key("bottom left");
      for (auto rule : rules) {
        const std::string name = dlcore::to_string(rule);
        const std::string label =
            rule == dlcore::BatchLRRule::kFixed
                ? fmt::format("fixed LR {:.3g}", bounds.max_lr)
                : fmt::format("LR x bs/{}", batch_size);
        loss_panel.add(
            dlcore::PlotSeries(bs_wide, "log2_batch_size", name + "_train_loss")
                .title(label));
        acc_panel.add(dlcore::PlotSeries(
                          bs_wide, "log2_batch_size", name + "_val_accuracy")
                          .title(label));
      }
      warn_plot(
          dlcore::plot_png(
              (out / "batch_size.png").string(),
              {loss_panel, acc_panel},
              dlcore::PlotOptions().width(1300).height(500).title(
                  "Problem 1: batch-size study, LeNet-5, SGD momentum 0.9")),
          "batch-size");
    }
  }

  // ---- summary.json ----
  dlcore::Json summary = dlcore::Json::object();
  summary["problem"] = "problem1";
  summary["settings"] = flags.to_json();
  summary["settings"]["batch_size"] = batch_size;
  summary["settings"]["momentum"] = kMomentum;
  summary["settings"]["clr_epochs"] = clr_epochs;
  summary["settings"]["bs_epochs"] = bs_epochs;
  summary["samples"]["train"] = train.size();
  summary["samples"]["validation"] = val.size();
  summary["samples"]["test"] = test.size();
  dlcore::Json& js = summary["lr_sweep"];
  js = dlcore::Json::object();
  js["start_lr"] = finder_opts.start_lr();
  js["end_lr"] = finder_opts.end_lr();
  js["num_iter"] = finder_opts.num_iter();
  js["iterations"] = sweep.iterations();
  js["stop_reason"] = dlcore::to_string(sweep.stop_reason);
  js["best_smoothed_loss"] = sweep.best_loss;
  js["best_lr"] = sweep.best_lr;
  js["suggest_steepest"] = steepest.lr;
  js["suggest_min_div10"] = min10.lr;
  js["suggest_valley"] = valley.lr;
  js["skip_start"] = skip_start;
  js["skip_end"] = skip_end;
  summary["clr_bounds"]["base_lr"] = bounds.base_lr;
  summary["clr_bounds"]["max_lr"] = bounds.max_lr;
  summary["clr_bounds"]["rule"] =
      "max_lr = LR at min smoothed loss / 10; base_lr = max_lr / 4";
  if (grid) {
    dlcore::Json points = dlcore::Json::array();
    for (const auto& p : grid_result.points) {
      dlcore::Json o = dlcore::Json::object();
      o["lr"] = p.lr;
      o["final_train_loss"] = p.final_loss;
      o["val_accuracy"] = p.val_accuracy;
      o["diverged"] = p.diverged;
      points.push_back(o);
    }
    summary["lr_grid"]["epochs"] = grid_epochs;
    summary["lr_grid"]["points"] = points;
    summary["lr_grid"]["homework_bounds"]["lr_min"] = grid_bounds.base_lr;
    summary["lr_grid"]["homework_bounds"]["lr_max"] = grid_bounds.max_lr;
  }
  summary["clr"]["step_size_up"] = step_size_up;
  summary["clr"]["gamma"] = gamma;
  summary["clr"]["history"] = history.to_json();
  summary["clr"]["final_val_accuracy"] = history.last("val_accuracy");
  summary["clr"]["final_train_loss"] = history.last("train_loss");
  summary["clr"]["test_accuracy"] = te.accuracy;
  summary["clr"]["test_loss"] = te.loss;
  dlcore::Json runs = dlcore::Json::array();
  for (const auto& r : study.runs) {
    dlcore::Json o = dlcore::Json::object();
    o["batch_size"] = r.batch_size;
    o["rule"] = dlcore::to_string(r.rule);
    o["lr"] = r.lr;
    o["final_train_loss"] = r.final_train_loss;
    o["final_val_accuracy"] = r.final_val_accuracy;
    o["steps"] = r.steps;
    o["seconds"] = r.seconds;
    o["diverged"] = r.diverged;
    runs.push_back(o);
  }
  if (!skip_study) {
    summary["batch_size_study"]["epochs"] = bs_epochs;
    summary["batch_size_study"]["runs"] = runs;
  }
  summary["seconds"] = seconds;
  summary["seconds"]["total"] = total.seconds();
  dlcore::write_json((out / "summary.json").string(), summary);

  // ---- summary.md ----
  std::string md =
      "## Problem 1 — Learning rate and batch size (LeNet-5, FashionMNIST)\n\n";
  md += fmt::format(
      "Scale `{}`, seed {}: {} training / {} validation / {} test images, "
      "SGD momentum 0.9, batch {}. Total {:.0f} s.\n\n",
      ex::scale_name(scale),
      flags.seed,
      train.size(),
      val.size(),
      test.size(),
      batch_size,
      total.seconds());
  md += "### LR range test\n\n";
  md += fmt::format(
      "Smith's sweep: {} iterations from 1e-7 to 10 (exponential, stopped: "
      "{}), bias-corrected EMA (0.98) of the loss. Best smoothed loss "
      "{:.4f} at LR {:.3g}.\n\n",
      sweep.iterations(),
      dlcore::to_string(sweep.stop_reason),
      sweep.best_loss,
      sweep.best_lr);
  md += "| suggestion | LR |\n|---|---:|\n";
  md += fmt::format("| steepest descent | {:.3g} |\n", steepest.lr);
  md += fmt::format("| minimum / 10 | {:.3g} |\n", min10.lr);
  md += fmt::format("| valley (fastai) | {:.3g} |\n", valley.lr);
  md += fmt::format(
      "| **CyclicLR bounds** (max = min/10, base = max/4) | **{:.3g} … "
      "{:.3g}** |\n\n",
      bounds.base_lr,
      bounds.max_lr);
  md += "![LR range test](lr_finder.png)\n\n";
  if (grid) {
    md += fmt::format(
        "The homework's grid: 10 LRs, {} each from the same initial "
        "weights.\n\n| LR | final train loss | val acc |\n|---:|---:|---:|\n",
        epochs_text(grid_epochs));
    for (const auto& p : grid_result.points) {
      md += fmt::format(
          "| {:.3g} | {} | {} |\n",
          p.lr,
          num(p.final_loss),
          pct(p.val_accuracy));
    }
    md += fmt::format(
        "\nHomework rule (best and one grid step below): lr_min {:.3g}, "
        "lr_max {:.3g}.\n\n![LR grid](lr_grid.png)\n\n",
        grid_bounds.base_lr,
        grid_bounds.max_lr);
  }
  md += "### LeNet-5 with CyclicLR\n\n";
  md += fmt::format(
      "exp_range, base_lr {:.3g}, max_lr {:.3g}, step_size_up {} steps, "
      "gamma {:.7f} per step, momentum cycled 0.9 → 0.8; {} epochs.\n\n",
      bounds.base_lr,
      bounds.max_lr,
      step_size_up,
      gamma,
      clr_epochs);
  md += "| epoch | train loss | train acc | val loss | val acc |\n";
  md += "|---:|---:|---:|---:|---:|\n";
  for (std::size_t i = 0; i < history.num_epochs(); ++i) {
    md += fmt::format(
        "| {} | {:.4f} | {} | {:.4f} | {} |\n",
        static_cast<int64_t>(history.at(i, "epoch")),
        history.at(i, "train_loss"),
        pct(history.at(i, "train_accuracy")),
        history.at(i, "val_loss"),
        pct(history.at(i, "val_accuracy")));
  }
  md += fmt::format(
      "\nValidation accuracy **{}**, test accuracy **{}**.\n\n"
      "![CLR training](clr_training.png)\n\n",
      pct(history.last("val_accuracy")),
      pct(te.accuracy));
  if (!skip_study) {
    md += "### Batch size\n\n";
    md += fmt::format(
        "Same initial weights and shuffles, {} per run; fixed LR {:.3g} "
        "(max_lr, as the homework){}.\n\n",
        epochs_text(bs_epochs),
        bounds.max_lr,
        no_linear ? ""
                  : fmt::format(
                        ", and LR × bs/{} (linear scaling, Goyal et al.)",
                        batch_size));
    md += "| batch | rule | LR | steps | final train loss | val acc | s |\n";
    md += "|---:|---|---:|---:|---:|---:|---:|\n";
    for (const auto& r : study.runs) {
      md += fmt::format(
          "| {} | {}{} | {:.3g} | {} | {} | {} | {:.1f} |\n",
          r.batch_size,
          dlcore::to_string(r.rule),
          r.reused ? " (same LR: run reused)" : "",
          r.lr,
          r.steps,
          num(r.final_train_loss),
          pct(r.final_val_accuracy),
          r.seconds);
    }
    md += "\n![batch size](batch_size.png)\n\n";
  }
  md +=
      "Data: `lr_finder.csv`, `curves.csv`, `steps.csv`, `batch_size.csv`, "
      "`summary.json`.\n";
  ex::write_summary_md(out, md);
  std::cout << fmt::format(
      "problem1: wrote {} in {:.1f}s\n", out.string(), total.seconds());
  return 0;
} catch (const std::exception& e) {
  std::cerr << "problem1: error: " << e.what() << "\n";
  return 1;
}
