// Every option of every public component against bad values: out of range,
// non-finite (NaN, +-inf), empty, the wrong dtype and the wrong device. Each
// row of the table builds or uses one component with one bad value, and must
// raise a c10::Error whose message names the component or the option. No
// error, another exception type or a message that names neither fails the
// row. Without a GPU, the wrong device is the `meta` device (tensors without
// data) where the code reads a tensor's values on the CPU.

#include <dlcore/data/batches.h>
#include <dlcore/data/cifar.h>
#include <dlcore/data/fashion_mnist.h>
#include <dlcore/data/hashtag_resampler.h>
#include <dlcore/data/idx.h>
#include <dlcore/data/label_noise.h>
#include <dlcore/data/pseudo_label.h>
#include <dlcore/data/split.h>
#include <dlcore/data/tag_lists.h>
#include <dlcore/nn/checkpoint.h>
#include <dlcore/nn/freeze.h>
#include <dlcore/nn/heads.h>
#include <dlcore/nn/layer_math.h>
#include <dlcore/nn/models/googlenet.h>
#include <dlcore/nn/models/resnet_cifar.h>
#include <dlcore/nn/summary.h>
#include <dlcore/optim/cosine_annealing_lr.h>
#include <dlcore/optim/cyclic_lr.h>
#include <dlcore/optim/gradual_unfreezing.h>
#include <dlcore/optim/lambda_lr.h>
#include <dlcore/optim/linear_lr.h>
#include <dlcore/optim/one_cycle_lr.h>
#include <dlcore/optim/param_groups.h>
#include <dlcore/optim/reduce_lr_on_plateau.h>
#include <dlcore/optim/sequential_lr.h>
#include <dlcore/optim/step_lr.h>
#include <dlcore/study/batch_size_study.h>
#include <dlcore/study/lr_finder.h>
#include <dlcore/train/losses.h>
#include <dlcore/train/plot.h>
#include <dlcore/train/predict.h>
#include <dlcore/train/progress.h>
#include <dlcore/train/train_loop.h>

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();

// One bad input: `call` builds or uses `component` with `option` = `value`.
struct Row {
  std::string component;
  std::string option;
  std::string value;
  std::function<void()> call;
};

// The outcome of one row: empty when it raised a c10::Error naming the
// component or the option, else what happened instead.
std::string outcome(const Row& row) {
  try {
    row.call();
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    if (msg.find(row.component) != std::string::npos ||
        msg.find(row.option) != std::string::npos) {
      return "";
    }
    return "a c10::Error naming neither: " + msg;
  } catch (const std::exception& e) {
    return std::string("another exception type: ") + e.what();
  } catch (...) {
    return "a non-standard exception";
  }
  return "no error";
}

// A small module and an SGD optimizer with momentum over its parameters.
struct Fixture {
  torch::nn::Linear net{torch::nn::LinearOptions(4, 3)};
  torch::optim::SGD sgd{
      net->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9)};
  dlcore::TensorDataset data{
      torch::linspace(-1, 1, 32).reshape({8, 4}),
      torch::arange(8, torch::kLong).remainder(3)};
};

// A value as the table prints it.
template <typename T>
std::string num(T v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

torch::Tensor meta(std::vector<int64_t> shape, torch::Dtype dtype) {
  return torch::empty(shape, torch::TensorOptions(dtype).device(torch::kMeta));
}

std::vector<Row> scheduler_rows(Fixture& f) {
  using namespace dlcore;
  auto& sgd = f.sgd;
  std::vector<Row> rows;
  auto add = [&rows](
                 const char* c,
                 const char* o,
                 const std::string& v,
                 std::function<void()> fn) {
    rows.push_back({c, o, v, std::move(fn)});
  };
  // StepLR, MultiStepLR, ExponentialLR.
  for (int64_t s : {int64_t{0}, int64_t{-1}}) {
    add("StepLR", "step_size", num(s), [&sgd, s] { StepLR(sgd, s); });
  }
  for (double g : {kNaN, kInf, -kInf, 0.0, -1.0}) {
    add("StepLR", "gamma", num(g), [&sgd, g] {
      StepLR(sgd, StepLROptions(1).gamma(g));
    });
    add("MultiStepLR", "gamma", num(g), [&sgd, g] {
      MultiStepLR(sgd, MultiStepLROptions({1}).gamma(g));
    });
    add("ExponentialLR", "gamma", num(g), [&sgd, g] {
      ExponentialLR(sgd, ExponentialLROptions(g));
    });
  }
  add("MultiStepLR", "milestones", "-1", [&sgd] {
    MultiStepLR(sgd, MultiStepLROptions({2, -1}));
  });
  // ConstantLR, LinearLR, PolynomialLR.
  for (double v : {kNaN, kInf, -kInf, 0.0, -1.0, 1.5}) {
    add("ConstantLR", "factor", num(v), [&sgd, v] {
      ConstantLR(sgd, ConstantLROptions().factor(v));
    });
    add("LinearLR", "start_factor", num(v), [&sgd, v] {
      LinearLR(sgd, LinearLROptions().start_factor(v));
    });
  }
  for (double v : {kNaN, kInf, -kInf, -1.0, 1.5}) {
    add("LinearLR", "end_factor", num(v), [&sgd, v] {
      LinearLR(sgd, LinearLROptions().end_factor(v));
    });
  }
  for (int64_t t : {int64_t{0}, int64_t{-1}}) {
    add("ConstantLR", "total_iters", num(t), [&sgd, t] {
      ConstantLR(sgd, ConstantLROptions().total_iters(t));
    });
    add("LinearLR", "total_iters", num(t), [&sgd, t] {
      LinearLR(sgd, LinearLROptions().total_iters(t));
    });
    add("PolynomialLR", "total_iters", num(t), [&sgd, t] {
      PolynomialLR(sgd, PolynomialLROptions().total_iters(t));
    });
  }
  for (double p : {kNaN, kInf, -kInf, -1.0}) {
    add("PolynomialLR", "power", num(p), [&sgd, p] {
      PolynomialLR(sgd, PolynomialLROptions().power(p));
    });
  }
  // LambdaLR, MultiplicativeLR: empty functions, a count per group that
  // does not match, and functions whose value is not finite.
  add("LambdaLR", "lr_lambda", "empty std::function", [&sgd] {
    LambdaLR(sgd, LambdaLROptions(LRLambda()));
  });
  add("LambdaLR", "lr_lambda", "2 functions for 1 group", [&sgd] {
    LRLambda one = [](int64_t) { return 1.0; };
    LambdaLR(sgd, LambdaLROptions(std::vector<LRLambda>{one, one}));
  });
  for (double v : {kNaN, kInf, -1.0}) {
    add("LambdaLR", "lr_lambda", "returns " + num(v), [&sgd, v] {
      LambdaLR(sgd, LambdaLROptions([v](int64_t) { return v; }));
    });
    add("MultiplicativeLR", "lr_lambda", "returns " + num(v), [&sgd, v] {
      MultiplicativeLR s(
          sgd, MultiplicativeLROptions([v](int64_t) { return v; }));
      s.step();
    });
  }
  add("MultiplicativeLR", "lr_lambda", "empty std::function", [&sgd] {
    MultiplicativeLR(sgd, MultiplicativeLROptions(LRLambda()));
  });
  // CosineAnnealingLR, CosineAnnealingWarmRestarts.
  for (int64_t t : {int64_t{0}, int64_t{-1}}) {
    add("CosineAnnealingLR", "t_max", num(t), [&sgd, t] {
      CosineAnnealingLR(sgd, CosineAnnealingLROptions(t));
    });
    add("CosineAnnealingWarmRestarts", "t_0", num(t), [&sgd, t] {
      CosineAnnealingWarmRestarts(sgd, CosineAnnealingWarmRestartsOptions(t));
    });
    add("CosineAnnealingWarmRestarts", "t_mult", num(t), [&sgd, t] {
      CosineAnnealingWarmRestarts(
          sgd, CosineAnnealingWarmRestartsOptions(2).t_mult(t));
    });
  }
  for (double e : {kNaN, kInf, -kInf, -1.0}) {
    add("CosineAnnealingLR", "eta_min", num(e), [&sgd, e] {
      CosineAnnealingLR(sgd, CosineAnnealingLROptions(5).eta_min(e));
    });
    add("CosineAnnealingWarmRestarts", "eta_min", num(e), [&sgd, e] {
      CosineAnnealingWarmRestarts(
          sgd, CosineAnnealingWarmRestartsOptions(5).eta_min(e));
    });
  }
  // ReduceLROnPlateau.
  for (double v : {kNaN, kInf, -kInf, -0.5, 1.0}) {
    add("ReduceLROnPlateau", "factor", num(v), [&sgd, v] {
      ReduceLROnPlateau(sgd, ReduceLROnPlateauOptions().factor(v));
    });
  }
  for (double v : {kNaN, kInf, -kInf, -1.0}) {
    add("ReduceLROnPlateau", "threshold", num(v), [&sgd, v] {
      ReduceLROnPlateau(sgd, ReduceLROnPlateauOptions().threshold(v));
    });
    add("ReduceLROnPlateau", "min_lr", num(v), [&sgd, v] {
      ReduceLROnPlateau(sgd, ReduceLROnPlateauOptions().min_lr(v));
    });
    add("ReduceLROnPlateau", "eps", num(v), [&sgd, v] {
      ReduceLROnPlateau(sgd, ReduceLROnPlateauOptions().eps(v));
    });
  }
  add("ReduceLROnPlateau", "patience", "-1", [&sgd] {
    ReduceLROnPlateau(sgd, ReduceLROnPlateauOptions().patience(-1));
  });
  add("ReduceLROnPlateau", "cooldown", "-1", [&sgd] {
    ReduceLROnPlateau(sgd, ReduceLROnPlateauOptions().cooldown(-1));
  });
  add("ReduceLROnPlateau", "min_lr", "2 values for 1 group", [&sgd] {
    ReduceLROnPlateau(
        sgd, ReduceLROnPlateauOptions().min_lr(std::vector<double>{0, 0}));
  });
  // CyclicLR.
  for (double v : {kNaN, kInf, -kInf, 0.0, -1.0}) {
    add("CyclicLR", "base_lr", num(v), [&sgd, v] {
      CyclicLR(sgd, CyclicLROptions(v, 0.1));
    });
    add("CyclicLR", "gamma", num(v), [&sgd, v] {
      CyclicLR(
          sgd, CyclicLROptions(1e-3, 0.1).mode(CyclicMode::kExpRange).gamma(v));
    });
  }
  for (double v : {kNaN, kInf, -kInf, -1.0, 0.99}) {
    add("CyclicLR", "base_momentum", num(v), [&sgd, v] {
      CyclicLR(sgd, CyclicLROptions(1e-3, 0.1).base_momentum(v));
    });
    add("OneCycleLR", "base_momentum", num(v), [&sgd, v] {
      OneCycleLR(sgd, OneCycleLROptions(0.1).total_steps(10).base_momentum(v));
    });
  }
  for (double v : {kNaN, kInf, -kInf, -1.0, 0.5}) {
    add("CyclicLR", "max_momentum", num(v), [&sgd, v] {
      CyclicLR(sgd, CyclicLROptions(1e-3, 0.1).max_momentum(v));
    });
    add("OneCycleLR", "max_momentum", num(v), [&sgd, v] {
      OneCycleLR(sgd, OneCycleLROptions(0.1).total_steps(10).max_momentum(v));
    });
  }
  for (double v : {kNaN, kInf, -kInf, 1e-4}) {
    add("CyclicLR", "max_lr", num(v), [&sgd, v] {
      CyclicLR(sgd, CyclicLROptions(1e-3, v));
    });
  }
  add("CyclicLR", "max_lr", "2 values for 1 group", [&sgd] {
    CyclicLR(sgd, CyclicLROptions(1e-3, std::vector<double>{0.1, 0.2}));
  });
  add("CyclicLR", "base_lr", "no values for 1 group", [&sgd] {
    CyclicLR(sgd, CyclicLROptions(std::vector<double>{}, 0.1));
  });
  for (int64_t s : {int64_t{0}, int64_t{-1}}) {
    add("CyclicLR", "step_size_up", num(s), [&sgd, s] {
      CyclicLR(sgd, CyclicLROptions(1e-3, 0.1).step_size_up(s));
    });
    add("CyclicLR", "step_size_down", num(s), [&sgd, s] {
      CyclicLR(sgd, CyclicLROptions(1e-3, 0.1).step_size_down(s));
    });
  }
  add("CyclicLR", "last_epoch", "-2", [&sgd] {
    CyclicLR(sgd, CyclicLROptions(1e-3, 0.1).last_epoch(-2));
  });
  add("CyclicLR", "last_epoch", "INT64_MAX", [&sgd] {
    CyclicLR(sgd, CyclicLROptions(1e-3, 0.1).last_epoch(kI64Max));
  });
  add("CyclicLR", "scale_fn", "returns NaN", [&sgd] {
    CyclicLR(
        sgd, CyclicLROptions(1e-3, 0.1).scale_fn([](double) { return kNaN; }));
  });
  // OneCycleLR.
  for (double v : {kNaN, kInf, -kInf, 0.0, -1.0}) {
    add("OneCycleLR", "max_lr", num(v), [&sgd, v] {
      OneCycleLR(sgd, OneCycleLROptions(v).total_steps(10));
    });
    add("OneCycleLR", "div_factor", num(v), [&sgd, v] {
      OneCycleLR(sgd, OneCycleLROptions(0.1).total_steps(10).div_factor(v));
    });
    add("OneCycleLR", "final_div_factor", num(v), [&sgd, v] {
      OneCycleLR(
          sgd, OneCycleLROptions(0.1).total_steps(10).final_div_factor(v));
    });
  }
  for (double v : {kNaN, kInf, -kInf, -0.1, 1.1}) {
    add("OneCycleLR", "pct_start", num(v), [&sgd, v] {
      OneCycleLR(sgd, OneCycleLROptions(0.1).total_steps(10).pct_start(v));
    });
  }
  for (int64_t v : {int64_t{0}, int64_t{-1}}) {
    add("OneCycleLR", "total_steps", num(v), [&sgd, v] {
      OneCycleLR(sgd, OneCycleLROptions(0.1).total_steps(v));
    });
    add("OneCycleLR", "epochs", num(v), [&sgd, v] {
      OneCycleLR(sgd, OneCycleLROptions(0.1).epochs(v).steps_per_epoch(5));
    });
    add("OneCycleLR", "steps_per_epoch", num(v), [&sgd, v] {
      OneCycleLR(sgd, OneCycleLROptions(0.1).epochs(5).steps_per_epoch(v));
    });
  }
  add("OneCycleLR", "total_steps", "none given", [&sgd] {
    OneCycleLR(sgd, OneCycleLROptions(0.1));
  });
  add("OneCycleLR", "epochs", "epochs * steps_per_epoch overflows", [&sgd] {
    OneCycleLR(sgd, OneCycleLROptions(0.1).epochs(kI64Max).steps_per_epoch(2));
  });
  add("OneCycleLR", "last_epoch", "-2", [&sgd] {
    OneCycleLR(sgd, OneCycleLROptions(0.1).total_steps(10).last_epoch(-2));
  });
  add("OneCycleLR", "last_epoch", "past total_steps", [&sgd] {
    OneCycleLR(sgd, OneCycleLROptions(0.1).total_steps(10).last_epoch(20));
  });
  add("OneCycleLR", "max_lr", "2 values for 1 group", [&sgd] {
    OneCycleLR(
        sgd, OneCycleLROptions(std::vector<double>{0.1, 0.2}).total_steps(10));
  });
  // SequentialLR.
  add("SequentialLR", "milestones", "0", [&sgd] {
    auto a = std::make_shared<ConstantLR>(sgd, ConstantLROptions());
    auto b = std::make_shared<ConstantLR>(sgd, ConstantLROptions());
    SequentialLR(sgd, {a, b}, {0});
  });
  add("SequentialLR", "milestones", "one too many", [&sgd] {
    auto a = std::make_shared<ConstantLR>(sgd, ConstantLROptions());
    SequentialLR(sgd, {a}, {3});
  });
  add("SequentialLR", "schedulers", "empty", [&sgd] {
    SequentialLR(sgd, {}, {});
  });
  add("SequentialLR", "schedulers", "a null scheduler", [&sgd] {
    auto a = std::make_shared<ConstantLR>(sgd, ConstantLROptions());
    SequentialLR(sgd, {a, nullptr}, {3});
  });
  add("ChainedScheduler", "schedulers", "empty", [] {
    ChainedScheduler(std::vector<std::shared_ptr<LRScheduler>>{});
  });
  // Param groups and gradual unfreezing.
  add("discriminative_lrs", "num_groups", "0", [] {
    discriminative_lrs(0, 1e-3, 1e-1);
  });
  for (double v : {kNaN, kInf, -kInf, 0.0, -1.0}) {
    add("discriminative_lrs", "lr_low", num(v), [v] {
      discriminative_lrs(3, v, 1e-1);
    });
  }
  for (double v : {kNaN, kInf, -kInf, 1e-4}) {
    add("discriminative_lrs", "lr_high", num(v), [v] {
      discriminative_lrs(3, 1e-3, v);
    });
  }
  for (double v : {kNaN, kInf, -kInf, -1.0}) {
    add("add_trainable_param_group", "lr", num(v), [&sgd, v] {
      torch::Tensor p = torch::zeros({2}, torch::requires_grad());
      add_trainable_param_group(sgd, {p}, v);
    });
  }
  auto& net = f.net;
  for (int64_t v : {int64_t{-1}}) {
    add("GradualUnfreezing", "initially_trainable", "-1", [&net, v] {
      GradualUnfreezing(
          layer_groups(*net, {"weight", "bias"}),
          GradualUnfreezingOptions().initially_trainable(v));
    });
    add("GradualUnfreezing", "start_epoch", "-1", [&net, v] {
      GradualUnfreezing(
          layer_groups(*net, {"weight", "bias"}),
          GradualUnfreezingOptions().start_epoch(v));
    });
  }
  add("GradualUnfreezing", "epochs_per_group", "0", [&net] {
    GradualUnfreezing(
        layer_groups(*net, {"weight", "bias"}),
        GradualUnfreezingOptions().epochs_per_group(0));
  });
  add("GradualUnfreezing", "groups", "empty", [] {
    GradualUnfreezing(LayerGroups{}, GradualUnfreezingOptions());
  });
  add("layer_groups", "selectors", "empty", [&net] { layer_groups(*net, {}); });
  add("layer_groups", "selectors", "a name that matches nothing", [&net] {
    layer_groups(*net, {"no_such_layer"});
  });
  add("freeze_to", "n", "-3 (2 groups)", [&net] {
    freeze_to(layer_groups(*net, {"weight", "bias"}), -3);
  });
  add("freeze_to", "n", "past the groups", [&net] {
    freeze_to(layer_groups(*net, {"weight", "bias"}), 3);
  });
  return rows;
}

std::vector<Row> data_rows(Fixture& f) {
  using namespace dlcore;
  std::vector<Row> rows;
  auto add = [&rows](
                 const char* c,
                 const char* o,
                 const std::string& v,
                 std::function<void()> fn) {
    rows.push_back({c, o, v, std::move(fn)});
  };
  const TensorDataset ds = f.data;
  // Batches.
  for (int64_t b : {int64_t{0}, int64_t{-1}}) {
    add("Batches", "batch_size", num(b), [ds, b] { Batches(ds, b); });
  }
  add("Batches", "dataset", "undefined data", [ds] {
    Batches(TensorDataset{torch::Tensor(), ds.targets}, 2);
  });
  add("Batches", "dataset", "targets of another length", [ds] {
    Batches(TensorDataset{ds.data, ds.targets.narrow(0, 0, 3)}, 2);
  });
  add("Batches", "dataset", "0-dim data", [] {
    Batches(TensorDataset{torch::zeros({}), torch::zeros({})}, 2);
  });
  add("Batches", "dataset", "data on meta, targets on the CPU", [ds] {
    Batches(TensorDataset{meta({8, 4}, torch::kFloat), ds.targets}, 2);
  });
  // split.h.
  add("random_split", "n", "-1", [] { random_split_indices(-1, 0.5, 0); });
  for (double v : {kNaN, kInf, -kInf, 0.0, 1.0, -0.5}) {
    add("random_split", "first_fraction", num(v), [v] {
      random_split_indices(10, v, 0);
    });
    add("random_split", "first_fraction", num(v), [ds, v] {
      random_split(ds, v, 0);
    });
  }
  add("random_split", "dataset", "undefined", [] {
    random_split(TensorDataset{}, 0.5, 0);
  });
  add("subset", "indices", "float", [ds] {
    subset(ds, torch::zeros({2}, torch::kFloat));
  });
  add("subset", "indices", "2-D", [ds] {
    subset(ds, torch::zeros({2, 1}, torch::kLong));
  });
  add("subset", "indices", "out of range", [ds] {
    subset(ds, torch::tensor({0, 8}, torch::kLong));
  });
  add("subset", "indices", "negative", [ds] {
    subset(ds, torch::tensor({-1}, torch::kLong));
  });
  add("subset", "indices", "undefined", [ds] { subset(ds, torch::Tensor()); });
  add("subset", "indices", "meta", [ds] {
    subset(ds, meta({2}, torch::kLong));
  });
  for (int64_t v : {int64_t{0}, int64_t{-1}}) {
    add("class_balanced_indices", "per_class", num(v), [ds, v] {
      class_balanced_indices(ds.targets, v, 0);
    });
  }
  add("class_balanced_indices", "targets", "float", [] {
    class_balanced_indices(torch::zeros({4}), 1, 0);
  });
  add("class_balanced_indices", "targets", "2-D", [] {
    class_balanced_indices(torch::zeros({4, 1}, torch::kLong), 1, 0);
  });
  add("class_balanced_indices", "targets", "meta", [] {
    class_balanced_indices(meta({4}, torch::kLong), 1, 0);
  });
  add("class_balanced_indices", "targets", "negative label", [] {
    class_balanced_indices(torch::tensor({0, -1}, torch::kLong), 1, 0);
  });
  add("class_balanced_indices", "num_classes", "-2", [ds] {
    class_balanced_indices(ds.targets, 1, 0, -2);
  });
  add("class_balanced_indices", "num_classes", "0", [ds] {
    class_balanced_indices(ds.targets, 1, 0, 0);
  });
  add("class_balanced_indices", "num_classes", "INT64_MAX", [ds] {
    class_balanced_indices(ds.targets, 1, 0, kI64Max);
  });
  add("class_balanced_indices", "num_classes", "below the largest label", [ds] {
    class_balanced_indices(ds.targets, 1, 0, 2);
  });
  add("class_balanced_indices", "per_class", "more than a class holds", [ds] {
    class_balanced_indices(ds.targets, 100, 0);
  });
  add("filter_classes", "classes", "empty", [ds] {
    filter_classes(ds, {}, true);
  });
  add("filter_classes", "classes", "repeated", [ds] {
    filter_classes(ds, {1, 1}, true);
  });
  add("filter_classes", "targets", "float", [ds] {
    filter_classes(TensorDataset{ds.data, torch::zeros({8})}, {1}, true);
  });
  add("filter_classes", "targets", "meta", [ds] {
    filter_classes(TensorDataset{ds.data, meta({8}, torch::kLong)}, {1}, true);
  });
  // Label noise.
  const torch::Tensor labels = torch::tensor({0, 1, 2, 0, 1, 2}, torch::kLong);
  auto noise = [labels](LabelNoiseOptions o) {
    return [labels, o] { inject_label_noise(labels, o); };
  };
  for (double v : {kNaN, kInf, -kInf, -0.1, 1.1}) {
    add("inject_label_noise",
        "rate",
        num(v),
        noise(LabelNoiseOptions(NoiseMode::kSymmetric, v)));
  }
  add("inject_label_noise",
      "num_classes",
      "-2",
      noise(LabelNoiseOptions(NoiseMode::kSymmetric, 0.5).num_classes(-2)));
  add("inject_label_noise",
      "num_classes",
      "0",
      noise(LabelNoiseOptions(NoiseMode::kSymmetric, 0.5).num_classes(0)));
  add("inject_label_noise",
      "num_classes",
      "below the largest label",
      noise(LabelNoiseOptions(NoiseMode::kSymmetric, 0.5).num_classes(2)));
  add("inject_label_noise",
      "num_classes",
      "20000 for 6 labels",
      noise(LabelNoiseOptions(NoiseMode::kSymmetric, 0.5).num_classes(20000)));
  add("inject_label_noise",
      "num_classes",
      "INT64_MAX",
      noise(
          LabelNoiseOptions(NoiseMode::kSymmetric, 0.5).num_classes(kI64Max)));
  add("inject_label_noise",
      "transition_matrix",
      "missing in kMatrix",
      noise(LabelNoiseOptions(NoiseMode::kMatrix, 0.5)));
  add("inject_label_noise",
      "transition_matrix",
      "given in kSymmetric",
      noise(LabelNoiseOptions(NoiseMode::kSymmetric, 0.5)
                .transition_matrix(torch::eye(3, torch::kDouble))));
  auto matrix = [&](const char* v, torch::Tensor m) {
    add("inject_label_noise",
        "transition_matrix",
        v,
        noise(LabelNoiseOptions(NoiseMode::kMatrix, 0.5).transition_matrix(m)));
  };
  matrix("int64", torch::eye(3, torch::kLong));
  matrix("[3]", torch::full({3}, 1.0 / 3, torch::kDouble));
  matrix("[2, 2] for 3 classes", torch::eye(2, torch::kDouble));
  matrix("[3, 2]", torch::full({3, 2}, 0.5, torch::kDouble));
  matrix("empty [0, 0]", torch::zeros({0, 0}, torch::kDouble));
  matrix("a NaN entry", torch::eye(3, torch::kDouble).index_put_({0, 0}, kNaN));
  matrix(
      "an inf entry", torch::eye(3, torch::kDouble).index_put_({0, 0}, kInf));
  matrix("a negative entry", [] {
    auto m = torch::eye(3, torch::kDouble);
    m.index_put_({0, 0}, -1.0);
    m.index_put_({0, 1}, 2.0);
    return m;
  }());
  matrix("rows not summing to 1", torch::full({3, 3}, 0.5, torch::kDouble));
  matrix("meta", meta({3, 3}, torch::kDouble));
  add("inject_label_noise",
      "marginal",
      "given in kSymmetric",
      noise(LabelNoiseOptions(NoiseMode::kSymmetric, 0.5)
                .marginal(torch::ones({3}, torch::kDouble))));
  auto marginal = [&](const char* v, torch::Tensor m) {
    add("inject_label_noise",
        "marginal",
        v,
        noise(LabelNoiseOptions(NoiseMode::kMarginal, 0.5).marginal(m)));
  };
  marginal("int64", torch::ones({3}, torch::kLong));
  marginal("[3, 1]", torch::ones({3, 1}, torch::kDouble));
  marginal("[2] for 3 classes", torch::ones({2}, torch::kDouble));
  marginal("empty", torch::zeros({0}, torch::kDouble));
  marginal("a NaN entry", torch::tensor({1.0, kNaN, 1.0}, torch::kDouble));
  marginal("an inf entry", torch::tensor({1.0, kInf, 1.0}, torch::kDouble));
  marginal("a negative entry", torch::tensor({1.0, -1.0, 1.0}, torch::kDouble));
  marginal("all zero", torch::zeros({3}, torch::kDouble));
  marginal("meta", meta({3}, torch::kDouble));
  add("inject_label_noise", "labels", "float", [] {
    inject_label_noise(
        torch::zeros({3}), LabelNoiseOptions(NoiseMode::kSymmetric, 0.5));
  });
  add("inject_label_noise", "labels", "bool", [] {
    inject_label_noise(
        torch::zeros({3}, torch::kBool),
        LabelNoiseOptions(NoiseMode::kSymmetric, 0.5));
  });
  add("inject_label_noise", "labels", "undefined", [] {
    inject_label_noise(
        torch::Tensor(), LabelNoiseOptions(NoiseMode::kSymmetric, 0.5));
  });
  add("inject_label_noise", "labels", "negative", [] {
    inject_label_noise(
        torch::tensor({0, -1, 1}, torch::kLong),
        LabelNoiseOptions(NoiseMode::kSymmetric, 0.5));
  });
  add("inject_label_noise", "labels", "INT64_MAX", [] {
    inject_label_noise(
        torch::tensor(std::vector<int64_t>{0, kI64Max}),
        LabelNoiseOptions(NoiseMode::kSymmetric, 0.5));
  });
  add("inject_label_noise", "labels", "meta", [] {
    inject_label_noise(
        meta({3}, torch::kLong), LabelNoiseOptions(NoiseMode::kSymmetric, 0.5));
  });
  add("inject_label_noise", "tags", "offsets not ending at the tag count", [] {
    TagLists t{
        torch::tensor({0, 1, 5}, torch::kLong),
        torch::tensor({0, 1}, torch::kLong)};
    inject_label_noise(t, LabelNoiseOptions(NoiseMode::kSymmetric, 0.5));
  });
  // Tag lists and soft targets.
  const TagLists tags =
      TagLists::from_labels(torch::tensor({0, 1, 2, -1}, torch::kLong));
  add("TagLists::from_labels", "labels", "float", [] {
    TagLists::from_labels(torch::zeros({3}));
  });
  add("TagLists::from_labels", "labels", "meta", [] {
    TagLists::from_labels(meta({3}, torch::kLong));
  });
  add("soft_targets", "num_tags", "0", [tags] {
    soft_targets(tags, torch::tensor({0}, torch::kLong), 0);
  });
  add("soft_targets", "num_tags", "below a tag id", [tags] {
    soft_targets(tags, torch::tensor({2}, torch::kLong), 2);
  });
  add("soft_targets", "indices", "float", [tags] {
    soft_targets(tags, torch::zeros({1}), 3);
  });
  add("soft_targets", "indices", "out of range", [tags] {
    soft_targets(tags, torch::tensor({4}, torch::kLong), 3);
  });
  add("soft_targets", "indices", "negative", [tags] {
    soft_targets(tags, torch::tensor({-1}, torch::kLong), 3);
  });
  add("soft_targets", "indices", "meta", [tags] {
    soft_targets(tags, meta({1}, torch::kLong), 3);
  });
  add("soft_targets", "tags", "offsets on meta", [tags] {
    soft_targets(
        TagLists{meta({5}, torch::kLong), tags.tags},
        torch::tensor({0}, torch::kLong),
        3);
  });
  // HashtagResampler.
  auto resampler = [tags](HashtagResamplerOptions o) {
    return [tags, o] { HashtagResampler(tags, o); };
  };
  for (double v : {kNaN, kInf, -kInf, -1.0}) {
    add("HashtagResampler",
        "alpha",
        num(v),
        resampler(HashtagResamplerOptions(v)));
  }
  for (int64_t v : {int64_t{0}, int64_t{-2}, int64_t{1} << 32}) {
    add("HashtagResampler",
        "num_tags",
        num(v),
        resampler(HashtagResamplerOptions().num_tags(v)));
  }
  add("HashtagResampler",
      "num_tags",
      "below a tag id",
      resampler(HashtagResamplerOptions().num_tags(2)));
  for (int64_t v : {int64_t{-2}, (int64_t{1} << 62) + 1, kI64Max}) {
    add("HashtagResampler",
        "epoch_length",
        num(v),
        resampler(HashtagResamplerOptions().epoch_length(v)));
  }
  add("HashtagResampler",
      "epoch_length",
      "2^40 in kReplicate",
      resampler(HashtagResamplerOptions()
                    .epoch_length(int64_t{1} << 40)
                    .mode(ResamplingMode::kReplicate)));
  for (int64_t v : {int64_t{0}, int64_t{-1}}) {
    add("HashtagResampler",
        "world_size",
        num(v),
        resampler(HashtagResamplerOptions().world_size(v)));
  }
  add("HashtagResampler",
      "rank",
      "-1",
      resampler(HashtagResamplerOptions().rank(-1)));
  add("HashtagResampler",
      "rank",
      "= world_size",
      resampler(HashtagResamplerOptions().world_size(2).rank(2)));
  add("HashtagResampler", "labels", "float", [] {
    HashtagResampler(torch::zeros({3}));
  });
  add("HashtagResampler", "labels", "2-D", [] {
    HashtagResampler(torch::zeros({3, 1}, torch::kLong));
  });
  add("HashtagResampler", "labels", "meta", [] {
    HashtagResampler(meta({3}, torch::kLong));
  });
  add("HashtagResampler", "labels", "INT64_MAX", [] {
    HashtagResampler(torch::tensor(std::vector<int64_t>{0, kI64Max}));
  });
  add("HashtagResampler", "tags", "on meta", [tags] {
    HashtagResampler(TagLists{tags.offsets, meta({3}, torch::kLong)});
  });
  add("HashtagResampler", "tags", "offsets decreasing", [] {
    HashtagResampler(TagLists{
        torch::tensor({0, 2, 1, 3}, torch::kLong),
        torch::tensor({0, 1, 2}, torch::kLong)});
  });
  add("HashtagResampler", "tags", "float tags", [] {
    HashtagResampler(
        TagLists{torch::tensor({0, 1}, torch::kLong), torch::zeros({1})});
  });
  add("HashtagResampler", "set_epoch", "-1", [tags] {
    HashtagResampler r(tags);
    r.set_epoch(-1);
  });
  // TopKTopPSelector.
  auto selector = [](int64_t c, int64_t k, int64_t p, int64_t threads = 1) {
    return [c, k, p, threads] {
      TopKTopPSelector(TopKTopPSelectorOptions(c, k, p).num_threads(threads));
    };
  };
  for (int64_t v : {int64_t{0}, int64_t{-1}}) {
    add("TopKTopPSelector", "num_classes", num(v), selector(v, 2, 1));
    add("TopKTopPSelector", "k", num(v), selector(3, v, 1));
    add("TopKTopPSelector", "p", num(v), selector(3, 2, v));
    add("TopKTopPSelector", "num_threads", num(v), selector(3, 2, 1, v));
  }
  add("TopKTopPSelector", "p", "> num_classes", selector(3, 2, 4));
  add("TopKTopPSelector", "k", "INT64_MAX", selector(3, kI64Max, 1));
  add("TopKTopPSelector",
      "num_classes",
      "2^40 (buffers beyond memory)",
      selector(int64_t{1} << 40, 1 << 20, 1));
  auto ingest = [](torch::Tensor scores, int64_t first) {
    return [scores, first] {
      TopKTopPSelector s(TopKTopPSelectorOptions(3, 2, 1));
      s.ingest(scores, first);
    };
  };
  add("TopKTopPSelector",
      "scores",
      "int64",
      ingest(torch::zeros({2, 3}, torch::kLong), 0));
  add("TopKTopPSelector", "scores", "1-D", ingest(torch::zeros({3}), 0));
  add("TopKTopPSelector",
      "scores",
      "[2, 4] for 3 classes",
      ingest(torch::zeros({2, 4}), 0));
  add("TopKTopPSelector", "scores", "undefined", ingest(torch::Tensor(), 0));
  add("TopKTopPSelector",
      "scores",
      "meta",
      ingest(meta({2, 3}, torch::kFloat), 0));
  add("TopKTopPSelector",
      "scores",
      "NaN",
      ingest(torch::full({2, 3}, kNaN), 0));
  add("TopKTopPSelector",
      "scores",
      "inf",
      ingest(torch::full({2, 3}, kInf), 0));
  add("TopKTopPSelector",
      "first_index",
      "-1",
      ingest(torch::zeros({2, 3}), -1));
  add("TopKTopPSelector",
      "first_index",
      "INT64_MAX",
      ingest(torch::zeros({2, 3}), kI64Max));
  auto ingest_idx = [](torch::Tensor indices) {
    return [indices] {
      TopKTopPSelector s(TopKTopPSelectorOptions(3, 2, 1));
      s.ingest(torch::zeros({2, 3}), indices);
    };
  };
  add("TopKTopPSelector", "indices", "float", ingest_idx(torch::zeros({2})));
  add("TopKTopPSelector",
      "indices",
      "wrong length",
      ingest_idx(torch::zeros({3}, torch::kLong)));
  add("TopKTopPSelector",
      "indices",
      "negative",
      ingest_idx(torch::tensor({0, -1}, torch::kLong)));
  add("TopKTopPSelector",
      "indices",
      "repeated",
      ingest_idx(torch::tensor({1, 1}, torch::kLong)));
  add("TopKTopPSelector",
      "indices",
      "meta",
      ingest_idx(meta({2}, torch::kLong)));
  add("TopKTopPSelector", "merge", "other options", [] {
    TopKTopPSelector a(TopKTopPSelectorOptions(3, 2, 1));
    TopKTopPSelector b(TopKTopPSelectorOptions(4, 2, 1));
    a.merge(b);
  });
  // Readers and writers.
  add("read_idx", "path", "missing", [] { read_idx("/no/such/file-idx"); });
  add("read_idx", "path", "a folder", [] { read_idx("/tmp"); });
  add("read_idx", "path", "empty", [] { read_idx(""); });
  add("write_idx", "tensor", "int64", [] {
    write_idx("/tmp/never-written-idx", torch::zeros({2}, torch::kLong));
  });
  add("write_idx", "tensor", "undefined", [] {
    write_idx("/tmp/never-written-idx", torch::Tensor());
  });
  add("write_idx", "tensor", "meta", [] {
    write_idx("/tmp/never-written-idx", meta({2}, torch::kByte));
  });
  add("write_idx", "path", "under a device file", [] {
    write_idx("/dev/null/x-idx", torch::zeros({2}, torch::kByte));
  });
  add("read_cifar_file", "path", "missing", [] {
    read_cifar_file("/no/such/file.bin", CifarFormat::kCifar10);
  });
  add("read_cifar_file", "path", "a folder", [] {
    read_cifar_file("/tmp", CifarFormat::kCifar10);
  });
  add("load_cifar10", "dir", "missing", [] {
    load_cifar10("/no/such/cifar", true);
  });
  add("normalize_cifar", "images", "float", [] {
    normalize_cifar(torch::zeros({1, 3, 2, 2}), cifar10_mean(), cifar10_std());
  });
  add("normalize_cifar", "images", "[1, 1, 2, 2]", [] {
    normalize_cifar(
        torch::zeros({1, 1, 2, 2}, torch::kByte),
        cifar10_mean(),
        cifar10_std());
  });
  add("normalize_cifar", "images", "meta", [] {
    normalize_cifar(
        meta({1, 3, 2, 2}, torch::kByte), cifar10_mean(), cifar10_std());
  });
  add("normalize_cifar", "std", "0", [] {
    normalize_cifar(
        torch::zeros({1, 3, 2, 2}, torch::kByte),
        cifar10_mean(),
        {0.0f, 1.0f, 1.0f});
  });
  add("normalize_cifar", "std", "inf", [] {
    normalize_cifar(
        torch::zeros({1, 3, 2, 2}, torch::kByte),
        cifar10_mean(),
        {static_cast<float>(kInf), 1.0f, 1.0f});
  });
  add("normalize_cifar", "mean", "NaN", [] {
    normalize_cifar(
        torch::zeros({1, 3, 2, 2}, torch::kByte),
        {static_cast<float>(kNaN), 0.0f, 0.0f},
        cifar10_std());
  });
  add("normalize_fashion_mnist", "images", "float", [] {
    normalize_fashion_mnist(torch::zeros({1, 28, 28}));
  });
  add("normalize_fashion_mnist", "images", "meta", [] {
    normalize_fashion_mnist(meta({1, 28, 28}, torch::kByte));
  });
  add("load_fashion_mnist", "dir", "missing", [] {
    load_fashion_mnist("/no/such/fashion", true);
  });
  return rows;
}

std::vector<Row> model_and_train_rows(Fixture& f) {
  using namespace dlcore;
  std::vector<Row> rows;
  auto add = [&rows](
                 const char* c,
                 const char* o,
                 const std::string& v,
                 std::function<void()> fn) {
    rows.push_back({c, o, v, std::move(fn)});
  };
  auto& net = f.net;
  auto& sgd = f.sgd;
  const TensorDataset ds = f.data;
  // Layer arithmetic and summary.
  const std::vector<LayerSpec> conv = {LayerSpec::conv2d(1, 2, 3).padding(1)};
  add("analyze_layers", "batch_size", "0", [conv] {
    analyze_layers(conv, {1, 8, 8}, LayerMathOptions().batch_size(0));
  });
  add("analyze_layers", "batch_size", "-1", [conv] {
    analyze_layers(conv, {1, 8, 8}, LayerMathOptions().batch_size(-1));
  });
  add("analyze_layers", "dtype", "Undefined", [conv] {
    analyze_layers(
        conv, {1, 8, 8}, LayerMathOptions().dtype(c10::ScalarType::Undefined));
  });
  add("analyze_layers", "input_shape", "empty", [conv] {
    analyze_layers(conv, {});
  });
  add("analyze_layers", "input_shape", "a negative size", [conv] {
    analyze_layers(conv, {1, -8, 8});
  });
  add("analyze_layers", "input_shape", "channels not matching", [conv] {
    analyze_layers(conv, {3, 8, 8});
  });
  add("conv_output_size", "in", "-1", [] { conv_output_size(-1, 3, 1, 0, 1); });
  add("conv_output_size", "kernel", "0", [] {
    conv_output_size(8, 0, 1, 0, 1);
  });
  add("conv_output_size", "stride", "0", [] {
    conv_output_size(8, 3, 0, 0, 1);
  });
  add("conv_output_size", "padding", "-1", [] {
    conv_output_size(8, 3, 1, -1, 1);
  });
  add("conv_output_size", "dilation", "0", [] {
    conv_output_size(8, 3, 1, 0, 0);
  });
  add("conv_output_size", "kernel", "larger than the input", [] {
    conv_output_size(2, 5, 1, 0, 1);
  });
  add("summary", "input_shape", "empty", [] { summary(resnet20_cifar(), {}); });
  add("summary", "input_shape", "a zero size", [] {
    summary(resnet20_cifar(), {1, 3, 0, 32});
  });
  add("summary", "input_shape", "a negative size", [] {
    summary(resnet20_cifar(), {1, 3, -32, 32});
  });
  add("summary", "dtype", "Undefined", [] {
    summary(
        resnet20_cifar(),
        {1, 3, 32, 32},
        SummaryOptions().dtype(c10::ScalarType::Undefined));
  });
  add("summary", "module", "null", [] {
    summary(std::shared_ptr<torch::nn::Module>(), {1, 3, 32, 32});
  });
  // Models.
  auto resnet = [](ResNetCifarOptions o) { return [o] { ResNetCifar m(o); }; };
  add("ResNetCifar",
      "blocks",
      "empty",
      resnet(ResNetCifarOptions().blocks({})));
  add("ResNetCifar",
      "blocks",
      "a zero count",
      resnet(ResNetCifarOptions().blocks({3, 0, 3})));
  add("ResNetCifar",
      "blocks",
      "a negative count",
      resnet(ResNetCifarOptions().blocks({3, -1, 3})));
  add("ResNetCifar",
      "widths",
      "fewer than blocks",
      resnet(ResNetCifarOptions().widths({16, 32})));
  add("ResNetCifar",
      "widths",
      "a zero width",
      resnet(ResNetCifarOptions().widths({16, 0, 64})));
  add("ResNetCifar",
      "in_channels",
      "0",
      resnet(ResNetCifarOptions().in_channels(0)));
  add("ResNetCifar",
      "num_classes",
      "0",
      resnet(ResNetCifarOptions().num_classes(0)));
  add("ResNetCifar",
      "num_classes",
      "-1",
      resnet(ResNetCifarOptions().num_classes(-1)));
  auto googlenet = [](GoogLeNetOptions o) { return [o] { GoogLeNet m(o); }; };
  add("GoogLeNet",
      "num_classes",
      "0",
      googlenet(GoogLeNetOptions().num_classes(0)));
  for (double v : {kNaN, kInf, -0.1, 1.5}) {
    add("GoogLeNet",
        "dropout",
        num(v),
        googlenet(GoogLeNetOptions().dropout(v)));
  }
  for (int64_t v : {int64_t{0}, int64_t{4}, int64_t{-3}}) {
    add("GoogLeNet",
        "branch3_kernel",
        num(v),
        googlenet(GoogLeNetOptions().branch3_kernel(v)));
  }
  add("Inception", "ch1x1", "0", [] {
    Inception m(InceptionOptions(192, 0, 96, 128, 16, 32, 32));
  });
  add("Inception", "in_channels", "-1", [] {
    Inception m(InceptionOptions(-1, 64, 96, 128, 16, 32, 32));
  });
  // Heads.
  add("replace_head", "head", "nullptr", [&net] {
    replace_head(*net, "fc", std::shared_ptr<torch::nn::LinearImpl>());
  });
  add("replace_head", "name", "empty", [] {
    auto m = resnet20_cifar();
    replace_head(*m, "", torch::nn::Linear(64, 2));
  });
  add("replace_head", "name", "missing", [] {
    auto m = resnet20_cifar();
    replace_head(*m, "no_such_head", torch::nn::Linear(64, 2));
  });
  for (int64_t v : {int64_t{0}, int64_t{-1}}) {
    add("replace_linear_head", "num_classes", num(v), [v] {
      auto m = resnet20_cifar();
      replace_linear_head(*m, "fc", v);
    });
  }
  add("replace_linear_head", "name", "not a Linear", [] {
    auto m = resnet20_cifar();
    replace_linear_head(*m, "conv1", 2);
  });
  // Checkpoints.
  add("load_weights", "ignore", "an invalid regex '('", [&net] {
    load_weights(*net, "/no/such/weights.pt", LoadWeightsOptions().ignore("("));
  });
  add("load_weights", "path", "missing", [&net] {
    load_weights(*net, "/no/such/weights.pt");
  });
  add("load_weights", "path", "a folder", [&net] {
    load_weights(*net, "/tmp");
  });
  add("read_weights", "path", "empty", [] { read_weights(""); });
  // predict.
  for (int64_t v : {int64_t{0}, int64_t{-1}}) {
    add("predict", "batch_size", num(v), [&net, v] {
      predict(net, torch::zeros({2, 4}), PredictOptions().batch_size(v));
    });
  }
  add("predict", "inputs", "undefined", [&net] {
    predict(net, torch::Tensor());
  });
  add("predict", "inputs", "0-dim", [&net] { predict(net, torch::zeros({})); });
  add("predict", "inputs", "no rows", [&net] {
    predict(net, torch::zeros({0, 4}));
  });
  add("predict", "inputs", "meta", [&net] {
    predict(net, meta({2, 4}, torch::kFloat));
  });
  add("predict", "device", "meta", [&net] {
    predict(net, torch::zeros({2, 4}), PredictOptions().device(torch::kMeta));
  });
  // train_epoch and evaluate.
  auto train = [&net, &sgd, ds](TrainOptions o) {
    return [&net, &sgd, ds, o] {
      Batches b(ds, 4);
      train_epoch(net, b, sgd, o);
    };
  };
  for (int64_t v : {int64_t{0}, int64_t{-1}}) {
    add("train_epoch",
        "accumulation_steps",
        num(v),
        train(TrainOptions().accumulation_steps(v)));
    add("train_epoch",
        "data_parallel",
        num(v),
        train(TrainOptions().data_parallel(static_cast<int>(v))));
    add("evaluate", "data_parallel", num(v), [&net, ds, v] {
      Batches b(ds, 4);
      evaluate(net, b, EvaluateOptions().data_parallel(static_cast<int>(v)));
    });
  }
  add("train_epoch",
      "device",
      "meta",
      train(TrainOptions().device(torch::Device(torch::kMeta))));
  add("evaluate", "device", "meta", [&net, ds] {
    Batches b(ds, 4);
    evaluate(net, b, EvaluateOptions().device(torch::Device(torch::kMeta)));
  });
  for (double v : {kNaN, -kInf, -1.0}) {
    add("train_epoch",
        "min_interval",
        num(v),
        train(TrainOptions().progress(true).progress_options(
            ProgressOptions().min_interval(v))));
    add("ProgressLine", "min_interval", num(v), [v] {
      ProgressLine("x", 10, ProgressOptions().min_interval(v));
    });
  }
  add("train_epoch", "targets", "float for a classifier", [&net, &sgd, ds] {
    Batches b(TensorDataset{ds.data, torch::zeros({8})}, 4);
    train_epoch(net, b, sgd);
  });
  add("soft_target_cross_entropy", "targets", "another shape", [] {
    soft_target_cross_entropy(torch::zeros({2, 3}), torch::zeros({2, 4}));
  });
  add("soft_target_cross_entropy", "logits", "1-D", [] {
    soft_target_cross_entropy(torch::zeros({3}), torch::zeros({3}));
  });
  add("soft_target_cross_entropy", "logits", "undefined", [] {
    soft_target_cross_entropy(torch::Tensor(), torch::zeros({2, 3}));
  });
  add("soft_target_cross_entropy", "targets", "int64", [] {
    soft_target_cross_entropy(
        torch::zeros({2, 3}), torch::zeros({2, 3}, torch::kLong));
  });
  // Plots (refused before gnuplot runs).
  const PlotPanel panel =
      PlotPanel().add(PlotSeries("/no/such.csv", "epoch", "loss"));
  for (int v : {0, -1}) {
    add("plot_png", "width", num(v), [panel, v] {
      plot_png("/tmp/never.png", panel, PlotOptions().width(v));
    });
    add("plot_png", "height", num(v), [panel, v] {
      plot_png("/tmp/never.png", panel, PlotOptions().height(v));
    });
  }
  add("plot_png", "columns", "-1", [panel] {
    plot_png("/tmp/never.png", panel, PlotOptions().columns(-1));
  });
  add("plot_png", "width", "100000", [panel] {
    plot_png("/tmp/never.png", panel, PlotOptions().width(100000));
  });
  add("plot_png", "panels", "empty", [] {
    plot_png("/tmp/never.png", std::vector<PlotPanel>{});
  });
  // LR finder, LR grid, batch-size study.
  auto finder = [&net, &sgd](LRFinderOptions o) {
    return [&net, &sgd, o] { LRFinder<torch::nn::Linear> lf(net, sgd, o); };
  };
  for (double v : {kNaN, kInf, -kInf, 0.0, -1.0}) {
    add("LRFinder", "start_lr", num(v), finder(LRFinderOptions().start_lr(v)));
  }
  for (double v : {kNaN, kInf, -kInf, 1e-8}) {
    add("LRFinder", "end_lr", num(v), finder(LRFinderOptions().end_lr(v)));
  }
  add("LRFinder",
      "end_lr",
      "1e300 from 1e-300",
      finder(LRFinderOptions().start_lr(1e-300).end_lr(1e300)));
  for (int64_t v : {int64_t{0}, int64_t{1}, int64_t{-1}}) {
    add("LRFinder", "num_iter", num(v), finder(LRFinderOptions().num_iter(v)));
  }
  for (double v : {kNaN, kInf, -0.1, 1.0}) {
    add("LRFinder", "beta", num(v), finder(LRFinderOptions().beta(v)));
  }
  for (double v : {kNaN, kInf, 0.0, 1.5}) {
    add("LRFinder", "smooth_f", num(v), finder(LRFinderOptions().smooth_f(v)));
  }
  for (double v : {kNaN, kInf, 1.0, -1.0}) {
    add("LRFinder",
        "diverge_th",
        num(v),
        finder(LRFinderOptions().diverge_th(v)));
  }
  add("LRFinder",
      "accumulation_steps",
      "0",
      finder(LRFinderOptions().accumulation_steps(0)));
  add("LRFinder", "batches", "none", [&net, &sgd] {
    LRFinder<torch::nn::Linear> lf(net, sgd);
    std::vector<Batch> none;
    lf.range_test(none);
  });
  for (double v : {kNaN, kInf, 0.0, -1.0}) {
    add("log_grid", "start", num(v), [v] { log_grid(v, 1.0, 3); });
    add("log_grid", "end", num(v), [v] { log_grid(1e-3, v, 3); });
  }
  add("log_grid", "num", "0", [] { log_grid(1e-3, 1.0, 0); });
  add("log_grid", "num", "INT64_MAX", [] { log_grid(1e-3, 1.0, kI64Max); });
  {
    LRFinderResult r;
    for (int i = 0; i < 30; ++i) {
      r.lrs.push_back(std::pow(10.0, -5 + 0.2 * i));
      r.losses.push_back(1.0 / (1 + i));
      r.smoothed_losses.push_back(1.0 / (1 + i));
    }
    for (double v : {kNaN, kInf, 1.0, 0.5}) {
      add("suggest_cyclic_bounds", "base_div", num(v), [r, v] {
        suggest_cyclic_bounds(r, CyclicBoundsOptions().base_div(v));
      });
    }
    add("suggest_cyclic_bounds", "skip_start", "-1", [r] {
      suggest_cyclic_bounds(r, CyclicBoundsOptions().skip_start(-1));
    });
    add("suggest_cyclic_bounds", "skip_end", "-1", [r] {
      suggest_cyclic_bounds(r, CyclicBoundsOptions().skip_end(-1));
    });
    add("suggest_cyclic_bounds", "result", "empty", [] {
      suggest_cyclic_bounds(LRFinderResult());
    });
  }
  auto make_model = [] { return torch::nn::Linear(4, 3); };
  auto make_sgd = [](torch::nn::Linear& m, double lr) {
    return torch::optim::SGD(m->parameters(), lr);
  };
  auto grid = [ds, make_model, make_sgd](LRGridOptions o) {
    return [ds, make_model, make_sgd, o] {
      Batches b(ds, 4);
      lr_grid_search(make_model, make_sgd, b, o);
    };
  };
  add("lr_grid_search", "lrs", "empty", grid(LRGridOptions().lrs({})));
  for (double v : {kNaN, kInf, -kInf, 0.0, -1.0}) {
    add("lr_grid_search", "lrs", num(v), grid(LRGridOptions().lrs({1e-3, v})));
  }
  for (int64_t v : {int64_t{0}, int64_t{-1}}) {
    add("lr_grid_search", "epochs", num(v), grid(LRGridOptions().epochs(v)));
  }
  auto study = [ds, make_model, make_sgd](BatchSizeStudyOptions o) {
    return [ds, make_model, make_sgd, o] {
      batch_size_study(make_model, make_sgd, ds, ds, o);
    };
  };
  for (double v : {kNaN, kInf, -kInf, 0.0, -1.0}) {
    add("batch_size_study", "lr", num(v), study(BatchSizeStudyOptions(v)));
  }
  add("batch_size_study",
      "batch_sizes",
      "empty",
      study(BatchSizeStudyOptions(0.1).batch_sizes({})));
  for (int64_t v : {int64_t{0}, int64_t{-1}}) {
    add("batch_size_study",
        "batch_sizes",
        num(v),
        study(BatchSizeStudyOptions(0.1).batch_sizes({4, v})));
    add("batch_size_study",
        "base_batch_size",
        num(v),
        study(BatchSizeStudyOptions(0.1).base_batch_size(v)));
    add("batch_size_study",
        "epochs",
        num(v),
        study(BatchSizeStudyOptions(0.1).epochs(v)));
    add("batch_size_study",
        "eval_batch_size",
        num(v),
        study(BatchSizeStudyOptions(0.1).eval_batch_size(v)));
  }
  add("batch_size_study",
      "rules",
      "empty",
      study(BatchSizeStudyOptions(0.1).rules({})));
  add("batch_size_study",
      "lr",
      "1e308 scaled past a double by kLinear",
      study(BatchSizeStudyOptions(1e308)
                .batch_sizes({4096})
                .base_batch_size(1)
                .rules({BatchLRRule::kLinear})));
  add("batch_size_study", "train", "empty", [make_model, make_sgd] {
    TensorDataset empty{torch::zeros({0, 4}), torch::zeros({0}, torch::kLong)};
    batch_size_study(
        make_model, make_sgd, empty, empty, BatchSizeStudyOptions(0.1));
  });
  return rows;
}

} // namespace

TEST_CASE(
    "options: every bad value of every option is a c10::Error naming the "
    "component or the option",
    "[options]") {
  Fixture f;
  std::vector<Row> rows = scheduler_rows(f);
  for (auto&& part : {data_rows(f), model_and_train_rows(f)}) {
    rows.insert(rows.end(), part.begin(), part.end());
  }
  int64_t clean = 0;
  std::vector<std::string> failures;
  for (const Row& row : rows) {
    const std::string got = outcome(row);
    if (got.empty()) {
      ++clean;
    } else {
      failures.push_back(
          row.component + " " + row.option + " = " + row.value + ": " + got);
    }
  }
  std::ostringstream summary;
  summary << "options sweep: " << rows.size() << " inputs tried, " << clean
          << " clean errors";
  WARN(summary.str());
  for (const auto& failure : failures) {
    UNSCOPED_INFO(failure);
  }
  CHECK(failures.empty());
  CHECK(rows.size() > 300);
}
