// Problem 4 (semi-supervised) reproduced at FashionMNIST scale: the
// teacher -> top-K/top-P selection -> student pipeline of Yalniz et al. 2019
// ("Billion-scale semi-supervised learning for image classification").
//
// D: a class-balanced 10% of FashionMNIST's training set (600 images per
// class at default scale) with labels; U: the other 90% with labels hidden;
// test: the 10k test set. A teacher (a wider CNN than the student: two 5x5
// convolutions with 20 and 50 channels, a 256-unit hidden layer, dropout) is
// trained on D and scores U. dlcore::TopKTopPSelector keeps every image's P
// best classes and, per class, the K images with the highest score: D-hat,
// an image replicated once per class that selected it. The student
// (LeNet-5) is pretrained on D-hat, then fine-tuned on D; the baseline is
// the same student trained on D alone. Sweeps: K at P = 2 (past the ~5.4k
// images per class that U holds, so the precision of D-hat falls), and
// P = 1, 2, 3 at a fixed K. The precision of D-hat is measured against the
// hidden labels of U.
//
// Writes into --out: k_sweep.csv and p_sweep.csv (K or P, |D-hat|, distinct
// images, label precision, shortfall, accuracy after pretraining only and
// after fine-tuning, baseline), k_sweep.png and p_sweep.png, results.json and
// summary.md.
//
// Shape: main() parses and checks every flag before any work, then calls one
// step per part of the pipeline (load_data, train_teacher, train_baseline,
// the K and P sweeps through Points), and write_results / summary_md write
// the report.
#include <dlcore/data/batches.h>
#include <dlcore/data/fashion_mnist.h>
#include <dlcore/data/pseudo_label.h>
#include <dlcore/data/split.h>
#include <dlcore/io/csv.h>
#include <dlcore/io/json.h>
#include <dlcore/nn/models/lenet5.h>
#include <dlcore/train/plot.h>
#include <dlcore/train/train_loop.h>

#include "common.h"

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace ex = dlcore::examples;

namespace {

using dlcore::examples::by_scale;
using dlcore::examples::Scale;

constexpr int64_t kClasses = 10;

// The teacher: about 5x the multiply-adds of LeNet-5 (2.1 M vs 0.42 M).
struct TeacherNetImpl : torch::nn::Module {
  TeacherNetImpl()
      : conv1(register_module("conv1", torch::nn::Conv2d(1, 20, 5))),
        conv2(register_module("conv2", torch::nn::Conv2d(20, 50, 5))),
        fc1(register_module("fc1", torch::nn::Linear(800, 256))),
        fc2(register_module("fc2", torch::nn::Linear(256, kClasses))) {}

  torch::Tensor forward(torch::Tensor x) {
    x = torch::max_pool2d(torch::relu(conv1->forward(x)), 2);
    x = torch::max_pool2d(torch::relu(conv2->forward(x)), 2);
    x = torch::relu(fc1->forward(x.flatten(1)));
    x = torch::dropout(x, 0.3, is_training());
    return fc2->forward(x);
  }

  torch::nn::Conv2d conv1;
  torch::nn::Conv2d conv2;
  torch::nn::Linear fc1;
  torch::nn::Linear fc2;
};
TORCH_MODULE(TeacherNet);

struct Settings {
  Scale scale = Scale::kDefault;
  int64_t per_class = 0;   // labelled images per class in D
  int64_t unlabelled = 0;  // images of U used (0: all)
  int64_t test_images = 0; // test images used (0: all)
  int64_t teacher_epochs = 0;
  int64_t student_epochs = 0;  // baseline on D
  int64_t pretrain_epochs = 0; // on D-hat
  int64_t finetune_epochs = 0; // on D after pretraining
  std::vector<int64_t> k_sweep;
  std::vector<int64_t> p_sweep;
  int64_t k_fixed = 0; // K of the P sweep (past the supply: P matters)
  int64_t k_main = 0;  // K of the semi-supervised student in the table
  int64_t p_fixed = 2; // P of the K sweep
  int64_t batch_size = 64;
  double lr = 0.01;
  double finetune_lr = 0.005;
};

std::string pct(double v) {
  return ex::percent(v);
}

// A difference of two accuracies in percentage points, signed.
std::string signed_pct(double v) {
  if (!std::isfinite(v)) {
    return "—"; // a diverged run has no accuracy
  }
  std::ostringstream s;
  s << std::fixed << std::setprecision(2) << std::showpos << 100.0 * v;
  return s.str();
}

// An accuracy cell: the percentage, or where the training before it
// diverged.
std::string acc_cell(double acc, const ex::Divergence& d) {
  return d.diverged ? "**" + d.text() + "**" : pct(acc);
}

// Trains `net`; stops at divergence and says where (see
// ex::DivergenceGuard).
template <typename Net>
ex::Divergence train(
    Net& net,
    const dlcore::TensorDataset& data,
    int64_t epochs,
    double lr,
    int64_t batch_size,
    uint64_t seed) {
  torch::optim::SGD opt(
      net->parameters(), torch::optim::SGDOptions(lr).momentum(0.9));
  dlcore::Batches batches(
      data, dlcore::BatchesOptions(batch_size).shuffle(true).seed(seed));
  ex::DivergenceGuard guard;
  for (int64_t e = 0; e < epochs; ++e) {
    batches.set_epoch(e);
    const auto m = dlcore::train_epoch(
        net,
        batches,
        opt,
        dlcore::TrainOptions().epoch(e).on_step(guard.on_step(e + 1)));
    if (guard.diverged_after(*net, m)) {
      break;
    }
  }
  return guard.result();
}

template <typename Net>
double test_accuracy(Net& net, const dlcore::TensorDataset& test) {
  return dlcore::evaluate(
             net, dlcore::Batches(test, dlcore::BatchesOptions(1000)))
      .accuracy;
}

struct Point {
  int64_t k = 0;
  int64_t p = 0;
  int64_t size = 0;        // |D-hat|
  int64_t images = 0;      // distinct images
  int64_t shortfall = 0;   // sum over classes of K - count
  double precision = 0;    // pseudo-label == hidden label
  double pretrain_acc = 0; // student after pretraining on D-hat only
  double final_acc = 0;    // after fine-tuning on D
  double seconds = 0;
  /// Where pretraining on D-hat, or fine-tuning on D, diverged (the
  /// accuracies after it are then NaN).
  ex::Divergence pretrain_divergence, finetune_divergence;
};

void add_flags(CLI::App& app, ex::CommonFlags& flags, Settings& s) {
  // Small convolutions on a shared 2-core machine ran 4-10x faster on one
  // LibTorch thread than on two (OpenMP workers spin when oversubscribed).
  flags.threads = 1;
  flags.add_to(app, "problem4_semi");
  app.add_option("--lr", s.lr, "SGD learning rate (teacher, student)")
      ->capture_default_str();
  app.add_option("--batch-size", s.batch_size, "batch size")
      ->capture_default_str();
}

// Checks the flags and fills in the values of the scale.
void finish_settings(const ex::CommonFlags& flags, Settings& s) {
  ex::check_positive("--lr", s.lr, 10.0);
  ex::check_range("--batch-size", s.batch_size, 1, 4096);
  s.scale = flags.scale;
  s.per_class = by_scale<int64_t>(s.scale, 100, 600, 600);
  s.unlabelled = by_scale<int64_t>(s.scale, 4000, 0, 0);
  s.test_images = by_scale<int64_t>(s.scale, 2000, 0, 0);
  s.teacher_epochs = by_scale<int64_t>(s.scale, 2, 8, 20);
  s.student_epochs = by_scale<int64_t>(s.scale, 2, 8, 20);
  s.pretrain_epochs = by_scale<int64_t>(s.scale, 1, 1, 3);
  s.finetune_epochs = by_scale<int64_t>(s.scale, 1, 3, 10);
  s.k_sweep = by_scale<std::vector<int64_t>>(
      s.scale,
      {100, 400},
      {500, 2000, 4000, 6000, 8000},
      {500, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000});
  s.p_sweep =
      by_scale<std::vector<int64_t>>(s.scale, {1, 2}, {1, 2, 3}, {1, 2, 3, 4});
  s.k_fixed = by_scale<int64_t>(s.scale, 400, 8000, 8000);
  s.k_main = by_scale<int64_t>(s.scale, 400, 4000, 4000);
}

// D (labelled), U (labels hidden: its targets are only for measuring) and
// the test set, on the device.
struct Data {
  dlcore::TensorDataset d, u, test;
};

Data load_data(
    const ex::CommonFlags& flags, const Settings& s, torch::Device device) {
  auto train_set = dlcore::load_fashion_mnist(flags.data_dir, true);
  auto test = dlcore::load_fashion_mnist(flags.data_dir, false);
  if (s.test_images > 0 && s.test_images < test.size()) {
    test = dlcore::subset(test, torch::arange(s.test_images));
  }
  // D: class-balanced labelled subset; U: every other training image.
  const auto d_idx = dlcore::class_balanced_indices(
      train_set.targets, s.per_class, flags.seed);
  auto in_d = torch::zeros({train_set.size()}, torch::kBool);
  in_d.index_fill_(0, d_idx, true);
  auto u_idx = torch::nonzero(in_d.logical_not()).flatten();
  if (s.unlabelled > 0 && s.unlabelled < u_idx.size(0)) {
    u_idx = u_idx.slice(0, 0, s.unlabelled);
  }
  // Models train and score where --device says; D, U and the test set live
  // there. The selector takes the scores from any device.
  Data data{
      ex::on_device(dlcore::subset(train_set, d_idx), device),
      ex::on_device(dlcore::subset(train_set, u_idx), device),
      ex::on_device(test, device)};
  std::cout << "D " << data.d.size() << " labelled, U " << data.u.size()
            << " unlabelled, test " << data.test.size() << "\n";
  return data;
}

// ---- The teacher: trained on D, then scores every image of U ----

struct Teacher {
  double test_accuracy = 0;
  torch::Tensor u_logits; // undefined when the teacher diverged
  double u_accuracy = 0;  // top-1 on U against the hidden labels
  /// A diverged teacher scores nothing: no pseudo-labels, no student.
  ex::Divergence divergence;
};

Teacher train_teacher(
    const ex::CommonFlags& flags,
    const Settings& s,
    const Data& data,
    torch::Device device) {
  ex::Stopwatch watch;
  torch::manual_seed(flags.seed);
  TeacherNet teacher;
  teacher->to(device);
  Teacher t;
  t.divergence =
      train(teacher, data.d, s.teacher_epochs, s.lr, s.batch_size, flags.seed);
  if (t.divergence.diverged) {
    t.test_accuracy = t.u_accuracy = std::nan("");
    std::cout << "teacher: " << t.divergence.text() << " ("
              << t.divergence.reason << "); no pseudo-labels\n";
    return t;
  }
  t.test_accuracy = test_accuracy(teacher, data.test);
  std::cout << "teacher: test " << pct(t.test_accuracy) << " ("
            << std::setprecision(3) << watch.seconds() << " s)\n";
  watch = {};
  const auto& u = data.u;
  {
    torch::NoGradGuard no_grad;
    teacher->eval();
    std::vector<torch::Tensor> parts;
    for (int64_t i = 0; i < u.size(); i += 1000) {
      parts.push_back(
          teacher->forward(u.data.slice(0, i, std::min(u.size(), i + 1000))));
    }
    t.u_logits = torch::cat(parts);
  }
  t.u_accuracy = t.u_logits.argmax(1)
                     .eq(u.targets)
                     .to(torch::kDouble)
                     .mean()
                     .item<double>();
  std::cout << "teacher scored U in " << std::setprecision(3) << watch.seconds()
            << " s (top-1 on U " << pct(t.u_accuracy) << ")\n";
  return t;
}

// ---- The supervised student: LeNet-5 on D alone ----

struct Baseline {
  double accuracy = 0; // NaN when it diverged
  ex::Divergence divergence;
};

Baseline train_baseline(
    const ex::CommonFlags& flags,
    const Settings& s,
    const Data& data,
    torch::Device device) {
  ex::Stopwatch watch;
  torch::manual_seed(flags.seed + 1);
  dlcore::LeNet5 baseline(kClasses);
  baseline->to(device);
  Baseline b;
  b.divergence = train(
      baseline, data.d, s.student_epochs, s.lr, s.batch_size, flags.seed + 1);
  b.accuracy =
      b.divergence.diverged ? std::nan("") : test_accuracy(baseline, data.test);
  std::cout << "supervised student: "
            << (b.divergence.diverged ? b.divergence.text()
                                      : "test " + pct(b.accuracy))
            << " (" << std::setprecision(3) << watch.seconds() << " s)\n";
  return b;
}

// ---- The semi-supervised student at (K, P): select D-hat, pretrain on it,
// fine-tune on D. Each point runs once, however many sweeps ask for it. ----

class Points {
 public:
  Points(
      const ex::CommonFlags& flags,
      const Settings& s,
      const Data& data,
      const torch::Tensor& u_logits,
      torch::Device device)
      : flags_(flags),
        s_(s),
        data_(data),
        u_logits_(u_logits),
        device_(device) {}

  Point at(int64_t k, int64_t p) {
    auto it = done_.find({k, p});
    if (it == done_.end()) {
      it = done_.emplace(std::make_pair(k, p), run(k, p)).first;
    }
    return it->second;
  }

  /// Rows of U per second through the selector, in the last point run.
  double select_rows_per_s() const {
    return select_rows_per_s_;
  }

 private:
  Point run(int64_t k, int64_t p) {
    const auto& u = data_.u;
    ex::Stopwatch pw;
    Point pt;
    pt.k = k;
    pt.p = p;
    dlcore::TopKTopPSelector sel(
        dlcore::TopKTopPSelectorOptions(kClasses, k, p).softmax(true));
    ex::Stopwatch sw;
    for (int64_t i = 0; i < u.size(); i += 4096) {
      sel.ingest(u_logits_.slice(0, i, std::min(u.size(), i + 4096)), i);
    }
    const auto r = sel.result();
    select_rows_per_s_ = static_cast<double>(u.size()) / sw.seconds();
    pt.size = r.size();
    pt.images = r.num_images();
    pt.shortfall = r.shortfalls.sum().item<int64_t>();
    pt.precision =
        r.size() == 0 ? 0.0
                      : r.labels
                            .eq(u.targets.index_select(0, r.indices.to(device_))
                                    .to(torch::kCPU))
                            .to(torch::kDouble)
                            .mean()
                            .item<double>();
    const auto dhat = r.dataset(u.data);
    torch::manual_seed(flags_.seed + 1);
    dlcore::LeNet5 student(kClasses);
    student->to(device_);
    pt.pretrain_divergence = train(
        student,
        dhat,
        s_.pretrain_epochs,
        s_.lr,
        s_.batch_size,
        flags_.seed + 2);
    pt.pretrain_acc = std::nan("");
    pt.final_acc = std::nan("");
    if (!pt.pretrain_divergence.diverged) {
      pt.pretrain_acc = test_accuracy(student, data_.test);
      pt.finetune_divergence = train(
          student,
          data_.d,
          s_.finetune_epochs,
          s_.finetune_lr,
          s_.batch_size,
          flags_.seed + 3);
      if (!pt.finetune_divergence.diverged) {
        pt.final_acc = test_accuracy(student, data_.test);
      }
    }
    pt.seconds = pw.seconds();
    std::cout << "K " << k << " P " << p << ": |D-hat| " << pt.size << " ("
              << pt.images << " images), precision " << pct(pt.precision)
              << ", pretrained "
              << acc_cell(pt.pretrain_acc, pt.pretrain_divergence)
              << ", fine-tuned "
              << acc_cell(pt.final_acc, pt.finetune_divergence) << " ("
              << std::setprecision(3) << pt.seconds << " s)\n";
    return pt;
  }

  const ex::CommonFlags& flags_;
  const Settings& s_;
  const Data& data_;
  torch::Tensor u_logits_;
  torch::Device device_;
  std::map<std::pair<int64_t, int64_t>, Point> done_;
  double select_rows_per_s_ = 0;
};

struct Results {
  Teacher teacher;
  double baseline_acc = 0;
  ex::Divergence baseline_divergence;
  std::vector<Point> k_points, p_points;
  Point main_pt;
  double select_rows_per_s = 0;
};

// ---- The report ----

void write_sweep_csv(
    const std::vector<Point>& pts, const Results& r, const std::string& path) {
  dlcore::CsvTable t(
      {"K",
       "P",
       "dhat_size",
       "distinct_images",
       "shortfall",
       "precision",
       "pretrain_accuracy",
       "final_accuracy",
       "baseline_accuracy",
       "teacher_accuracy",
       "seconds"});
  for (const auto& pt : pts) {
    t.add_row(
        {pt.k,
         pt.p,
         pt.size,
         pt.images,
         pt.shortfall,
         pt.precision,
         pt.pretrain_acc,
         pt.final_acc,
         r.baseline_acc,
         r.teacher.test_accuracy,
         pt.seconds});
  }
  t.write(path);
}

// Accuracy and precision panels of a sweep CSV against `x` ("K" or "P").
std::vector<dlcore::PlotPanel> sweep_panels(
    const std::string& csv, const std::string& x, int64_t u_size) {
  dlcore::PlotPanel acc;
  acc.title("Test accuracy vs " + x)
      .xlabel(x)
      .ylabel("test accuracy")
      .y_format(dlcore::TickFormat::kPercent)
      .add(dlcore::PlotSeries(csv, x, "final_accuracy")
               .title("student: D-hat, then D"))
      .add(dlcore::PlotSeries(csv, x, "pretrain_accuracy")
               .title("student: D-hat only"))
      .add(dlcore::PlotSeries(csv, x, "baseline_accuracy")
               .title("student: D only")
               .style("lines"))
      .add(dlcore::PlotSeries(csv, x, "teacher_accuracy")
               .title("teacher (D)")
               .style("lines"));
  dlcore::PlotPanel prec = ex::csv_panel(
      "Label precision of D-hat vs " + x,
      x,
      "precision (hidden labels)",
      csv,
      x,
      {{"precision", "precision"}});
  prec.key("off").y_format(dlcore::TickFormat::kPercent);
  // K and P are counts: whole-number ticks.
  acc.x_format(dlcore::TickFormat::kInteger);
  prec.x_format(dlcore::TickFormat::kInteger);
  if (x == "K") {
    prec.marker(
        static_cast<double>(u_size) / kClasses, "images per class in U");
  }
  return {acc, prec};
}

dlcore::Json point_json(const Point& pt) {
  dlcore::Json j = dlcore::Json::object();
  j["K"] = pt.k;
  j["P"] = pt.p;
  j["dhat_size"] = pt.size;
  j["distinct_images"] = pt.images;
  j["shortfall"] = pt.shortfall;
  j["precision"] = pt.precision;
  j["pretrain_accuracy"] = pt.pretrain_acc;
  j["final_accuracy"] = pt.final_acc;
  j["pretrain_divergence"] = pt.pretrain_divergence.to_json();
  j["finetune_divergence"] = pt.finetune_divergence.to_json();
  return j;
}

dlcore::Json results_json(
    const ex::CommonFlags& flags,
    const Data& data,
    const Results& r,
    double seconds) {
  dlcore::Json js = flags.to_json();
  js["run"] = flags.run_json("problem4_semi");
  js["labelled"] = data.d.size();
  js["unlabelled"] = data.u.size();
  js["test"] = data.test.size();
  js["teacher_accuracy"] = r.teacher.test_accuracy;
  js["teacher_top1_on_U"] = r.teacher.u_accuracy;
  js["teacher_divergence"] = r.teacher.divergence.to_json();
  js["supervised_student_accuracy"] = r.baseline_acc;
  js["supervised_student_divergence"] = r.baseline_divergence.to_json();
  if (!r.teacher.divergence.diverged) {
    js["semi_supervised_student"] = point_json(r.main_pt);
  }
  dlcore::Json ks = dlcore::Json::array();
  for (const auto& pt : r.k_points) {
    ks.push_back(point_json(pt));
  }
  js["k_sweep"] = ks;
  dlcore::Json ps = dlcore::Json::array();
  for (const auto& pt : r.p_points) {
    ps.push_back(point_json(pt));
  }
  js["p_sweep"] = ps;
  js["selection_rows_per_second"] = r.select_rows_per_s;
  js["seconds"] = seconds;
  return js;
}

std::string sweep_table(const std::vector<Point>& pts, const char* first) {
  std::ostringstream md;
  md << "| " << first
     << " | D-hat | images | shortfall | precision | D-hat only | "
        "fine-tuned |\n|---|---|---|---|---|---|---|\n";
  for (const auto& pt : pts) {
    md << "| " << (first[0] == 'K' ? pt.k : pt.p) << " | " << pt.size << " | "
       << pt.images << " | " << pt.shortfall << " | " << pct(pt.precision)
       << " | " << acc_cell(pt.pretrain_acc, pt.pretrain_divergence) << " | "
       << (pt.pretrain_divergence.diverged
               ? std::string("—")
               : acc_cell(pt.final_acc, pt.finetune_divergence))
       << " |\n";
  }
  return md.str();
}

std::string summary_md(
    const Settings& s,
    const Data& data,
    const Results& r,
    bool k_plot,
    bool p_plot,
    double seconds) {
  const auto& d = data.d;
  const auto& u = data.u;
  const Point& main_pt = r.main_pt;
  const double teacher_acc = r.teacher.test_accuracy;
  const double baseline_acc = r.baseline_acc;
  std::ostringstream md;
  md << "## Problem 4 — Semi-supervised: teacher, top-K/top-P pseudo-labels, "
        "student (Yalniz et al. 2019)\n\n";
  if (r.teacher.divergence.diverged) {
    md << "Scale `" << ex::scale_name(s.scale) << "`, SGD momentum 0.9, lr "
       << s.lr << ", batch " << s.batch_size << ".\n\n"
       << "| model | test accuracy |\n|---|---|\n"
       << "| teacher (D) | " << acc_cell(teacher_acc, r.teacher.divergence)
       << " |\n"
       << "| supervised student (D) | "
       << acc_cell(baseline_acc, r.baseline_divergence) << " |\n\n"
       << "The teacher's training " << r.teacher.divergence.text() << " ("
       << r.teacher.divergence.reason
       << "), so it labels nothing: no pseudo-labels, no semi-supervised "
          "student, no sweeps. Run time "
       << std::setprecision(3) << seconds << " s.\n";
    return md.str();
  }
  // The best point of the K sweep by final accuracy (a diverged point, NaN,
  // never).
  const auto best = *std::max_element(
      r.k_points.begin(), r.k_points.end(), [](const Point& a, const Point& b) {
        return std::isnan(a.final_acc) ||
               (!std::isnan(b.final_acc) && a.final_acc < b.final_acc);
      });
  const bool any_diverged = r.baseline_divergence.diverged ||
                            std::isnan(main_pt.final_acc) ||
                            std::isnan(best.final_acc);
  md << "Scale `" << ex::scale_name(s.scale) << "`. D = " << d.size()
     << " labelled FashionMNIST training images (" << s.per_class
     << " per class), U = " << u.size() << " training images with labels "
     << "hidden, test = " << data.test.size() << " images. Teacher: CNN "
     << "conv5x5(20)-pool-conv5x5(50)-pool-fc256-dropout-fc10 (~2.1 M MACs), "
     << s.teacher_epochs << " epochs on D. Student: LeNet-5 (~0.42 M MACs). "
     << "SGD momentum 0.9, lr " << s.lr << ", batch " << s.batch_size
     << ". Semi-supervised student: " << s.pretrain_epochs
     << " epoch(s) on D-hat, then " << s.finetune_epochs
     << " epochs on D at lr " << s.finetune_lr
     << "; supervised student: " << s.student_epochs
     << " epochs on D. D-hat from "
     << "`dlcore::TopKTopPSelector` over softmax(teacher logits) of U.\n\n"
     << "| model | test accuracy |\n|---|---|\n"
     << "| teacher (D) | " << pct(teacher_acc) << " |\n"
     << "| supervised student (D) | "
     << acc_cell(baseline_acc, r.baseline_divergence) << " |\n"
     << "| semi-supervised student (K = " << main_pt.k << ", P = " << main_pt.p
     << ") | "
     << (main_pt.pretrain_divergence.diverged
             ? acc_cell(0, main_pt.pretrain_divergence) + " (pretraining)"
             : acc_cell(main_pt.final_acc, main_pt.finetune_divergence))
     << " |\n"
     << "| best of the K sweep (K = " << best.k << ", P = " << best.p << ") | "
     << pct(best.final_acc) << " |\n\n"
     << "**K sweep (P = " << s.p_fixed << ").** U holds about "
     << u.size() / kClasses << " images per class.\n\n"
     << sweep_table(r.k_points, "K") << "\n"
     << (k_plot ? "![K sweep](k_sweep.png)\n\n"
                : "(gnuplot unavailable: no plot)\n\n")
     << "**P sweep (K = " << s.k_fixed
     << ").** P matters only when K exceeds what the top-1 labels supply: "
        "below that, a class's K best candidates are all images whose best "
        "class it is.\n\n"
     << sweep_table(r.p_points, "P") << "\n"
     << (p_plot ? "![P sweep](p_sweep.png)\n\n" : "")
     << (any_diverged ? "Training diverged in the runs marked so above; "
                        "they are no evidence either way, and the "
                        "comparisons below that involve them do not hold.\n\n"
                      : "")
     << "**Reading.** The semi-supervised student "
     << (std::isnan(main_pt.final_acc) || std::isnan(baseline_acc)
             ? "cannot be compared with"
         : main_pt.final_acc > baseline_acc ? "beats"
                                            : "does not beat")
     << " the supervised one at K = " << main_pt.k << ", P = " << main_pt.p
     << " (" << signed_pct(main_pt.final_acc - baseline_acc)
     << " points; best K of the sweep: "
     << signed_pct(best.final_acc - baseline_acc) << " points at K = " << best.k
     << ")"
     << (best.final_acc > teacher_acc ? ", and at its best it exceeds its "
                                        "teacher, as in the paper"
                                      : "")
     << ". The teacher's top-1 accuracy on U is " << pct(r.teacher.u_accuracy)
     << ", the precision of D-hat at P = 1 when K covers U. Precision falls "
        "as K grows past the images per class that U holds (a class must "
        "then take images whose best class is another) and as P grows (more "
        "second-choice labels): that is the mechanism of the paper's "
        "Figure 5 (accuracy rises with K while more correctly labelled "
        "images enter, then falls as noise does). At small K the "
        "semi-supervised student can lose to the supervised one here: its "
        "supervised schedule is shorter ("
     << s.finetune_epochs << " fine-tuning epochs at lr " << s.finetune_lr
     << " against " << s.student_epochs
     << " epochs), so a small D-hat does not make up for it. One seed: "
        "differences under about half a point are within run-to-run noise. "
        "Run time "
     << std::setprecision(3) << seconds << " s.\n";
  return md.str();
}

} // namespace

int main(int argc, char** argv) try {
  CLI::App app{
      "Problem 4 (semi-supervised): teacher, top-K/top-P pseudo-labels, "
      "student (Yalniz et al. 2019) on FashionMNIST"};
  ex::CommonFlags flags;
  Settings s;
  add_flags(app, flags, s);
  if (const auto rc = ex::parse_flags(app, argc, argv)) {
    return *rc;
  }
  // Every flag is checked before any work.
  finish_settings(flags, s);
  flags.validate();

  ex::Stopwatch total;
  const ex::Output out("problem4_semi", flags.prepare_out());
  flags.apply_threads();
  const torch::Device device = flags.resolve_device();
  const Data data = load_data(flags, s, device);

  Results r;
  r.teacher = train_teacher(flags, s, data, device);
  const Baseline baseline = train_baseline(flags, s, data, device);
  r.baseline_acc = baseline.accuracy;
  r.baseline_divergence = baseline.divergence;
  if (!r.teacher.divergence.diverged) {
    Points points(flags, s, data, r.teacher.u_logits, device);
    for (int64_t k : s.k_sweep) {
      r.k_points.push_back(points.at(k, s.p_fixed));
    }
    for (int64_t p : s.p_sweep) {
      r.p_points.push_back(points.at(s.k_fixed, p));
    }
    r.main_pt = points.at(s.k_main, s.p_fixed);
    r.select_rows_per_s = points.select_rows_per_s();
  }

  const std::string k_csv = out.path("k_sweep.csv");
  const std::string p_csv = out.path("p_sweep.csv");
  write_sweep_csv(r.k_points, r, k_csv);
  write_sweep_csv(r.p_points, r, p_csv);
  const auto plot_options = dlcore::PlotOptions().width(1200).height(500);
  const bool k_plot = static_cast<bool>(out.plot(
      "k_sweep.png",
      sweep_panels(k_csv, "K", data.u.size()),
      plot_options,
      "K sweep"));
  const bool p_plot = static_cast<bool>(out.plot(
      "p_sweep.png",
      sweep_panels(p_csv, "P", data.u.size()),
      plot_options,
      "P sweep"));

  out.write_json("results.json", results_json(flags, data, r, total.seconds()));
  out.write_summary(summary_md(s, data, r, k_plot, p_plot, total.seconds()));
  std::cout << "wrote " << out.dir().string() << " (" << std::setprecision(3)
            << total.seconds() << " s)\n";
  return 0;
} catch (const std::exception& e) {
  return ex::report_error("problem4_semi", e);
}
