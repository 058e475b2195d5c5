// Problem 1 (skeleton): LeNet-5 on FashionMNIST with SGD, momentum 0.9.
//
// Reproduces the homework's baseline training run (`train_model` in Problem
// 1): the 60k training images split 80/20 at random (seeded) into 48k train
// and 12k validation, batches of 64 shuffled every epoch, LeNet-5, SGD with
// momentum 0.9 and a constant learning rate, then the test accuracy.
// --scale quick trains 1 epoch on a 2k-sample subset; default 3 epochs;
// full the homework's 15.
//
// Writes into --out:
//   curves.csv     per epoch: train/validation loss and accuracy, seconds
//   steps.csv      per step: loss, accuracy, learning rate and momentum
//   curves.png     loss, accuracy (per epoch) and learning rate (per step)
//   summary.json   settings and final metrics
//   summary.md     "## Problem 1 — ..." section for results/REPORT.md
#include "common.h"

#include <dlcore/data/batches.h>
#include <dlcore/data/fashion_mnist.h>
#include <dlcore/data/split.h>
#include <dlcore/nn/models/lenet5.h>
#include <dlcore/train/history.h>
#include <dlcore/train/plot.h>
#include <dlcore/train/report.h>
#include <dlcore/train/train_loop.h>

#include <fmt/format.h>

#include <iostream>

namespace ex = dlcore::examples;

int main(int argc, char** argv) try {
  CLI::App app{"Problem 1: LeNet-5 on FashionMNIST, SGD momentum 0.9"};
  ex::CommonFlags flags;
  flags.add_to(app, "problem1");
  int64_t epochs = -1;
  double lr = 0.01;
  int64_t batch_size = 64;
  app.add_option(
      "--epochs",
      epochs,
      "epochs (default by scale: quick 1, default 3, full 15)");
  app.add_option("--lr", lr, "learning rate")->capture_default_str();
  app.add_option("--batch-size", batch_size, "batch size")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (epochs < 0) {
    epochs = ex::by_scale<int64_t>(flags.scale, 1, 3, 15);
  }
  const auto out = flags.prepare_out();
  flags.apply_threads();
  ex::Stopwatch total;

  dlcore::TensorDataset full = dlcore::load_fashion_mnist(flags.data_dir, true);
  dlcore::TensorDataset test =
      dlcore::load_fashion_mnist(flags.data_dir, false);
  auto [train, val] = dlcore::random_split(full, 0.8, flags.seed);
  if (flags.scale == ex::Scale::kQuick) {
    train = dlcore::subset(train, torch::arange(2000));
    val = dlcore::subset(val, torch::arange(500));
    test = dlcore::subset(test, torch::arange(1000));
  }
  std::cout << fmt::format(
      "problem1: {} train, {} validation, {} test images; {} epochs, lr {}, "
      "batch {}\n",
      train.size(),
      val.size(),
      test.size(),
      epochs,
      lr,
      batch_size);

  dlcore::Batches train_batches(
      train, dlcore::BatchesOptions(batch_size).shuffle(true).seed(flags.seed));
  dlcore::Batches val_batches(val, dlcore::BatchesOptions(batch_size));
  dlcore::Batches test_batches(test, dlcore::BatchesOptions(batch_size));

  torch::manual_seed(flags.seed);
  dlcore::LeNet5 net;
  torch::optim::SGD sgd(
      net->parameters(), torch::optim::SGDOptions(lr).momentum(0.9));

  dlcore::History history;
  auto options =
      dlcore::TrainOptions().on_step(history.step_recorder()).progress(true);
  for (int64_t epoch = 1; epoch <= epochs; ++epoch) {
    train_batches.set_epoch(epoch - 1);
    auto tr = dlcore::train_epoch(
        net,
        train_batches,
        sgd,
        options.epoch(epoch).global_step((epoch - 1) * train_batches.size()));
    auto va = dlcore::evaluate(net, val_batches);
    history.add_epoch(epoch, tr, va);
    std::cout << fmt::format(
        "epoch {}/{}: train loss {:.4f} acc {:.2f}% | val loss {:.4f} acc "
        "{:.2f}% | {:.1f}s\n",
        epoch,
        epochs,
        tr.loss,
        100 * tr.accuracy,
        va.loss,
        100 * va.accuracy,
        tr.seconds + va.seconds);
  }
  auto te = dlcore::evaluate(net, test_batches);
  std::cout << fmt::format(
      "test: loss {:.4f} acc {:.2f}%\n", te.loss, 100 * te.accuracy);

  const std::string curves = (out / "curves.csv").string();
  const std::string steps = (out / "steps.csv").string();
  history.epochs_table().write(curves);
  history.steps_table().write(steps);

  dlcore::PlotPanel loss_panel;
  loss_panel.title("Loss")
      .xlabel("epoch")
      .ylabel("cross-entropy")
      .add(dlcore::PlotSeries(curves, "epoch", "train_loss").title("train"))
      .add(dlcore::PlotSeries(curves, "epoch", "val_loss").title("validation"));
  dlcore::PlotPanel acc_panel;
  acc_panel.title("Accuracy")
      .xlabel("epoch")
      .ylabel("accuracy (fraction)")
      .key("bottom right")
      .add(dlcore::PlotSeries(curves, "epoch", "train_accuracy").title("train"))
      .add(dlcore::PlotSeries(curves, "epoch", "val_accuracy")
               .title("validation"));
  dlcore::PlotPanel lr_panel;
  lr_panel.title("Learning rate over training steps")
      .xlabel("step")
      .ylabel("learning rate")
      .key("off")
      .add(dlcore::PlotSeries(steps, "global_step", "lr_0").style("lines"));
  dlcore::PlotResult plot = dlcore::plot_png(
      (out / "curves.png").string(),
      {loss_panel, acc_panel, lr_panel},
      dlcore::PlotOptions().width(1500).height(450).title(
          "Problem 1: LeNet-5, SGD momentum 0.9"));
  if (!plot) {
    std::cerr << "problem1: no plot: " << plot.message << "\n";
  }

  dlcore::Json summary = dlcore::Json::object();
  summary["problem"] = "problem1";
  summary["settings"] = flags.to_json();
  summary["settings"]["epochs"] = epochs;
  summary["settings"]["lr"] = lr;
  summary["settings"]["batch_size"] = batch_size;
  summary["settings"]["momentum"] = 0.9;
  summary["samples"]["train"] = train.size();
  summary["samples"]["validation"] = val.size();
  summary["samples"]["test"] = test.size();
  summary["history"] = history.to_json();
  summary["final"]["train_loss"] = history.last("train_loss");
  summary["final"]["train_accuracy"] = history.last("train_accuracy");
  summary["final"]["val_loss"] = history.last("val_loss");
  summary["final"]["val_accuracy"] = history.last("val_accuracy");
  summary["final"]["test_loss"] = te.loss;
  summary["final"]["test_accuracy"] = te.accuracy;
  summary["plot"] =
      plot.ok ? dlcore::Json("curves.png") : dlcore::Json(plot.message);
  summary["seconds"] = total.seconds();
  dlcore::write_json((out / "summary.json").string(), summary);

  std::string md =
      "## Problem 1 — LeNet-5 on FashionMNIST (SGD, momentum 0.9)\n\n";
  md += fmt::format(
      "Scale `{}`: {} epochs on {} training images (validation {}, test {}), "
      "batch {}, constant LR {}, seed {}.\n\n",
      ex::scale_name(flags.scale),
      epochs,
      train.size(),
      val.size(),
      test.size(),
      batch_size,
      lr,
      flags.seed);
  md += "| epoch | train loss | train acc | val loss | val acc |\n";
  md += "|---:|---:|---:|---:|---:|\n";
  for (std::size_t i = 0; i < history.num_epochs(); ++i) {
    md += fmt::format(
        "| {} | {:.4f} | {:.2f}% | {:.4f} | {:.2f}% |\n",
        static_cast<int64_t>(history.at(i, "epoch")),
        history.at(i, "train_loss"),
        100 * history.at(i, "train_accuracy"),
        history.at(i, "val_loss"),
        100 * history.at(i, "val_accuracy"));
  }
  md += fmt::format(
      "\nTest accuracy: **{:.2f}%** (loss {:.4f}).\n\n",
      100 * te.accuracy,
      te.loss);
  md += plot.ok ? "![curves](curves.png)\n"
                : "(plot not rendered: " + plot.message + ")\n";
  md += "\nData: `curves.csv`, `steps.csv`, `summary.json`.\n";
  ex::write_summary_md(out, md);
  std::cout << fmt::format(
      "problem1: wrote {} in {:.1f}s\n", out.string(), total.seconds());
  return 0;
} catch (const std::exception& e) {
  std::cerr << "problem1: error: " << e.what() << "\n";
  return 1;
}
