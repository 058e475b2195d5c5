// State files: the files of tests/data/state/ (one per format and component,
// tests/data/state/README.md), written by the `[.generate]` test below from
// fixed scenarios; the tests load each with this build and compare the
// restored state with the same scenario run here.

#include <dlcore/data/batches.h>
#include <dlcore/data/hashtag_resampler.h>
#include <dlcore/data/pseudo_label.h>
#include <dlcore/detail/state.h>
#include <dlcore/optim/cosine_annealing_lr.h>
#include <dlcore/optim/linear_lr.h>
#include <dlcore/optim/reduce_lr_on_plateau.h>
#include <dlcore/optim/sequential_lr.h>
#include <dlcore/optim/step_lr.h>

#include <torch/optim/sgd.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <unistd.h>
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

// ------------------------------------------------------------- scenarios
// Each builds a component and brings it into a fixed state; the generator
// saves that state, the tests compare a loaded copy with it.

torch::optim::SGD two_group_sgd() {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (double lr : {0.1, 0.05}) {
    groups.emplace_back(
        std::vector<torch::Tensor>{torch::zeros({2}, torch::requires_grad())},
        std::make_unique<torch::optim::SGDOptions>(
            torch::optim::SGDOptions(lr).momentum(0.9)));
  }
  return torch::optim::SGD(groups, torch::optim::SGDOptions(0.1));
}

dlcore::StepLROptions step_lr_options() {
  return dlcore::StepLROptions(3).gamma(0.5);
}
constexpr int kStepLRSteps = 4;

dlcore::CosineAnnealingWarmRestartsOptions warm_restarts_options() {
  return dlcore::CosineAnnealingWarmRestartsOptions(3).t_mult(2).eta_min(1e-3);
}
constexpr int kWarmRestartsSteps = 5;

dlcore::ReduceLROnPlateauOptions plateau_options() {
  return dlcore::ReduceLROnPlateauOptions().factor(0.5).patience(1);
}
const std::vector<double> kPlateauMetrics = {1.0, 0.9, 0.95, 0.97, 0.99};

/// LinearLR warm-up for 3 steps, then cosine decay; `opt` must outlive it.
std::unique_ptr<dlcore::SequentialLR> sequential(torch::optim::SGD& opt) {
  auto warmup = std::make_shared<dlcore::LinearLR>(
      opt, dlcore::LinearLROptions().start_factor(0.25).total_iters(3));
  auto cosine = std::make_shared<dlcore::CosineAnnealingLR>(
      opt, dlcore::CosineAnnealingLROptions(10).eta_min(1e-3));
  return std::make_unique<dlcore::SequentialLR>(
      opt,
      std::vector<std::shared_ptr<dlcore::LRScheduler>>{warmup, cosine},
      std::vector<int64_t>{3});
}
constexpr int kSequentialSteps = 5;

dlcore::TopKTopPSelectorOptions selector_options() {
  return dlcore::TopKTopPSelectorOptions(4, 3, 2);
}

/// Two chunks with a gap between them (rows 0..9 and 20..25).
void fill_selector(dlcore::TopKTopPSelector& s) {
  torch::manual_seed(1);
  s.ingest(torch::rand({10, 4}), 0);
  s.ingest(torch::rand({6, 4}), 20);
}

dlcore::HashtagResampler make_resampler() {
  return dlcore::HashtagResampler(
      torch::tensor({0, 1, 1, 2, 0, 2, 2, 1}, torch::kLong),
      dlcore::HashtagResamplerOptions(dlcore::SamplingScheme::kSquareRoot)
          .seed(5));
}
constexpr int64_t kResamplerEpoch = 3;
constexpr int64_t kResamplerDraws = 2;

dlcore::Batches make_batches() {
  dlcore::TensorDataset ds{
      torch::arange(20, torch::kFloat).view({10, 2}),
      torch::arange(10, torch::kLong)};
  return dlcore::Batches(ds, dlcore::BatchesOptions(3).shuffle(true).seed(7));
}
constexpr int kBatchesPasses = 2;

void save_archive(
    const std::function<void(torch::serialize::OutputArchive&)>& save,
    const std::string& path) {
  torch::serialize::OutputArchive a;
  save(a);
  a.save_to(path);
}

} // namespace

// ------------------------------------------------------------- generator

TEST_CASE(
    "writes one state file of each component into $DLCORE_STATE_OUT",
    "[.generate]") {
  const char* out_env = std::getenv("DLCORE_STATE_OUT");
  REQUIRE(out_env != nullptr);
  const std::string out = out_env;
  {
    auto opt = two_group_sgd();
    dlcore::StepLR s(opt, step_lr_options());
    for (int i = 0; i < kStepLRSteps; ++i) {
      s.step();
    }
    s.save(out + "/step_lr.pt");
  }
  {
    auto opt = two_group_sgd();
    dlcore::CosineAnnealingWarmRestarts s(opt, warm_restarts_options());
    for (int i = 0; i < kWarmRestartsSteps; ++i) {
      s.step();
    }
    s.save(out + "/cosine_annealing_warm_restarts.pt");
  }
  {
    auto opt = two_group_sgd();
    dlcore::ReduceLROnPlateau s(opt, plateau_options());
    for (double m : kPlateauMetrics) {
      s.step(m);
    }
    s.save(out + "/reduce_lr_on_plateau.pt");
  }
  {
    auto opt = two_group_sgd();
    auto s = sequential(opt);
    for (int i = 0; i < kSequentialSteps; ++i) {
      s->step();
    }
    s->save(out + "/sequential_lr.pt");
  }
  {
    dlcore::TopKTopPSelector s(selector_options());
    fill_selector(s);
    s.save(out + "/top_k_top_p_selector.pt");
  }
  {
    auto r = make_resampler();
    r.set_epoch(kResamplerEpoch);
    r.next(kResamplerDraws);
    r.save(out + "/hashtag_resampler.pt");
  }
  {
    auto b = make_batches();
    for (int pass = 0; pass < kBatchesPasses; ++pass) {
      for (const auto& batch : b) {
        (void)batch;
      }
    }
    save_archive([&](auto& a) { b.save(a); }, out + "/batches.pt");
  }
}

// ------------------------------------------------------------- loading

namespace {

const std::string kStateDir = std::string(DLCORE_TEST_DATA_DIR) + "/state/";

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  } catch (const std::exception& e) {
    return std::string("NOT A c10::Error: ") + e.what();
  }
  return "no error";
}

std::vector<double> group_lrs(const torch::optim::Optimizer& opt) {
  std::vector<double> out;
  for (const auto& g : opt.param_groups()) {
    out.push_back(g.options().get_lr());
  }
  return out;
}

/// Loads `folder`'s file of every component into a fresh component and
/// checks that it equals the scenario's state and continues like it.
void check_folder_loads(const std::string& folder) {
  const std::string dir = kStateDir + folder + "/";
  SECTION("StepLR") {
    auto ref_opt = two_group_sgd();
    dlcore::StepLR ref(ref_opt, step_lr_options());
    for (int i = 0; i < kStepLRSteps; ++i) {
      ref.step();
    }
    auto opt = two_group_sgd();
    dlcore::StepLR s(opt, step_lr_options());
    s.load(dir + "step_lr.pt");
    CHECK(s.last_epoch() == kStepLRSteps);
    for (int i = 0; i < 6; ++i) {
      CHECK(s.get_last_lr() == ref.get_last_lr());
      CHECK(group_lrs(opt) == group_lrs(ref_opt));
      s.step();
      ref.step();
    }
  }
  SECTION("CosineAnnealingWarmRestarts") {
    auto ref_opt = two_group_sgd();
    dlcore::CosineAnnealingWarmRestarts ref(ref_opt, warm_restarts_options());
    for (int i = 0; i < kWarmRestartsSteps; ++i) {
      ref.step();
    }
    auto opt = two_group_sgd();
    dlcore::CosineAnnealingWarmRestarts s(opt, warm_restarts_options());
    s.load(dir + "cosine_annealing_warm_restarts.pt");
    CHECK(s.last_epoch() == kWarmRestartsSteps);
    for (int i = 0; i < 8; ++i) {
      CHECK(s.get_last_lr() == ref.get_last_lr());
      CHECK(group_lrs(opt) == group_lrs(ref_opt));
      s.step();
      ref.step();
    }
  }
  SECTION("ReduceLROnPlateau") {
    auto ref_opt = two_group_sgd();
    dlcore::ReduceLROnPlateau ref(ref_opt, plateau_options());
    for (double m : kPlateauMetrics) {
      ref.step(m);
    }
    auto opt = two_group_sgd();
    dlcore::ReduceLROnPlateau s(opt, plateau_options());
    s.load(dir + "reduce_lr_on_plateau.pt");
    CHECK(s.last_epoch() == ref.last_epoch());
    CHECK(s.best() == ref.best());
    CHECK(s.num_bad_epochs() == ref.num_bad_epochs());
    for (double m : {1.5, 1.5, 0.5, 1.5, 1.5}) {
      CHECK(s.get_last_lr() == ref.get_last_lr());
      CHECK(group_lrs(opt) == group_lrs(ref_opt));
      s.step(m);
      ref.step(m);
    }
    CHECK(s.get_last_lr() == ref.get_last_lr());
  }
  SECTION("SequentialLR") {
    auto ref_opt = two_group_sgd();
    auto ref = sequential(ref_opt);
    for (int i = 0; i < kSequentialSteps; ++i) {
      ref->step();
    }
    auto opt = two_group_sgd();
    auto s = sequential(opt);
    s->load(dir + "sequential_lr.pt");
    CHECK(s->last_epoch() == kSequentialSteps);
    for (int i = 0; i < 8; ++i) {
      CHECK(s->get_last_lr() == ref->get_last_lr());
      CHECK(group_lrs(opt) == group_lrs(ref_opt));
      s->step();
      ref->step();
    }
  }
  SECTION("TopKTopPSelector") {
    dlcore::TopKTopPSelector ref(selector_options());
    fill_selector(ref);
    dlcore::TopKTopPSelector s(selector_options());
    s.load(dir + "top_k_top_p_selector.pt");
    CHECK(s.rows_seen() == ref.rows_seen());
    CHECK(s.ranges() == ref.ranges());
    const auto a = s.candidates();
    const auto b = ref.candidates();
    CHECK(std::get<0>(a).equal(std::get<0>(b)));
    CHECK(std::get<1>(a).equal(std::get<1>(b)));
    CHECK(std::get<2>(a).equal(std::get<2>(b)));
    const auto ra = s.result();
    const auto rb = ref.result();
    CHECK(ra.indices.equal(rb.indices));
    CHECK(ra.labels.equal(rb.labels));
  }
  SECTION("HashtagResampler") {
    auto ref = make_resampler();
    ref.set_epoch(kResamplerEpoch);
    ref.next(kResamplerDraws);
    auto r = make_resampler();
    r.load(dir + "hashtag_resampler.pt");
    CHECK(r.epoch() == ref.epoch());
    CHECK(r.position() == ref.position());
    CHECK(r.epoch_length() == ref.epoch_length());
    CHECK(r.options().seed() == ref.options().seed());
    CHECK(r.next(5) == ref.next(5));
  }
  SECTION("Batches") {
    auto ref = make_batches();
    auto b = make_batches();
    b.load(dir + "batches.pt");
    CHECK(b.epoch() == kBatchesPasses);
    ref.set_epoch(kBatchesPasses);
    auto i = b.begin();
    for (const auto& batch : ref) {
      REQUIRE(i != b.end());
      CHECK(i->targets.equal(batch.targets));
      ++i;
    }
  }
}

/// The archive `save` writes, with fields replaced (a value) or removed
/// (nullopt); nested archives are not copied.
std::string edited(
    const std::function<void(torch::serialize::OutputArchive&)>& save,
    const std::map<std::string, std::optional<c10::IValue>>& edits) {
  torch::serialize::OutputArchive original;
  save(original);
  std::stringstream bytes;
  original.save_to(bytes);
  torch::serialize::InputArchive in;
  in.load_from(bytes);
  torch::serialize::OutputArchive out;
  for (const std::string& key : in.keys()) {
    if (key == "training" || edits.count(key) > 0) {
      continue;
    }
    c10::IValue v;
    REQUIRE(in.try_read(key, v));
    if (v.isTensor()) {
      out.write(key, v.toTensor(), /*is_buffer=*/true);
    } else {
      out.write(key, v);
    }
  }
  for (const auto& [key, v] : edits) {
    if (v.has_value()) {
      if (v->isTensor()) {
        out.write(key, v->toTensor(), /*is_buffer=*/true);
      } else {
        out.write(key, *v);
      }
    }
  }
  std::ostringstream result;
  out.save_to(result);
  return result.str();
}

template <typename T>
std::string load_error(T& component, const std::string& bytes) {
  return error_of([&] {
    std::istringstream stream(bytes);
    torch::serialize::InputArchive in;
    in.load_from(stream);
    component.load(in);
  });
}

} // namespace

TEST_CASE(
    "state files of the legacy formats load and equal the saved state",
    "[state]") {
  check_folder_loads("format1");
}

TEST_CASE(
    "state files of the one state format load and equal the saved state",
    "[state]") {
  check_folder_loads("format2");
}

TEST_CASE("every component writes type, version and named fields", "[state]") {
  auto check_header =
      [](const std::function<void(torch::serialize::OutputArchive&)>& save,
         const std::string& type,
         const std::vector<std::string>& fields,
         int64_t version = 1) {
        torch::serialize::OutputArchive out;
        save(out);
        std::stringstream bytes;
        out.save_to(bytes);
        torch::serialize::InputArchive in;
        in.load_from(bytes);
        CHECK(dlcore::detail::describe_state(in) == "a " + type + " state");
        c10::IValue v;
        REQUIRE(in.try_read("version", v));
        CHECK(v.isInt());
        CHECK(v.toInt() == version);
        for (const auto& f : fields) {
          INFO(type << " field " << f);
          CHECK(in.try_read(f, v));
        }
      };
  auto opt = two_group_sgd();
  dlcore::StepLR step(opt, step_lr_options());
  check_header(
      [&](auto& a) { step.save(a); },
      "dlcore.StepLR",
      {"last_epoch", "step_size", "gamma", "base_lrs", "last_lr"});
  dlcore::TopKTopPSelector sel(selector_options());
  fill_selector(sel);
  check_header(
      [&](auto& a) { sel.save(a); },
      "dlcore.TopKTopPSelector",
      {"num_classes",
       "k",
       "p",
       "rows_seen",
       "ranges",
       "indices",
       "labels",
       "scores"});
  auto r = make_resampler();
  check_header(
      [&](auto& a) { r.save(a); },
      "dlcore.HashtagResampler",
      {"seed",
       "epoch",
       "position",
       "epoch_length",
       "rank",
       "world_size",
       "num_images",
       "num_tags",
       "mode",
       "alpha"});
  auto b = make_batches();
  check_header(
      [&](auto& a) { b.save(a); },
      "dlcore.Batches",
      {"epoch",
       "seed",
       "num_samples",
       "batch_size",
       "shuffle",
       "drop_last",
       "source"},
      2);
}

TEST_CASE(
    "a load names a wrong type, a newer version, a missing field and a "
    "field of the wrong kind or shape",
    "[state]") {
  using Catch::Contains;
  auto opt = two_group_sgd();
  dlcore::StepLR step(opt, step_lr_options());
  step.step();
  auto sel = dlcore::TopKTopPSelector(selector_options());
  fill_selector(sel);
  auto res = make_resampler();
  res.next(1);
  auto bat = make_batches();
  const auto save_step = [&](auto& a) { step.save(a); };
  const auto save_sel = [&](auto& a) { sel.save(a); };
  const auto save_res = [&](auto& a) { res.save(a); };
  const auto save_bat = [&](auto& a) { bat.save(a); };

  SECTION("a wrong type") {
    auto target_opt = two_group_sgd();
    dlcore::StepLR target(target_opt, step_lr_options());
    CHECK(
        load_error(target, edited(save_res, {})) ==
        "StepLR: expected a dlcore.StepLR state, but the archive holds a "
        "dlcore.HashtagResampler state");
    CHECK_THAT(
        error_of([&] { target.load(kStateDir + "format2/batches.pt"); }),
        Contains("StepLR: cannot load '" + kStateDir + "format2/batches.pt") &&
            Contains("StepLR: expected a dlcore.StepLR state, but the archive "
                     "holds a dlcore.Batches state"));
    // Legacy files are named too.
    CHECK_THAT(
        error_of([&] { target.load(kStateDir + "format1/batches.pt"); }),
        Contains("the archive holds a dlcore.Batches state of the legacy "
                 "format"));
    auto r = make_resampler();
    CHECK_THAT(
        error_of(
            [&] { r.load(kStateDir + "format1/top_k_top_p_selector.pt"); }),
        Contains("HashtagResampler::load: expected a "
                 "dlcore.HashtagResampler state, but the archive holds a "
                 "dlcore.TopKTopPSelector state of the legacy format"));
    dlcore::TopKTopPSelector s(selector_options());
    CHECK_THAT(
        error_of([&] { s.load(kStateDir + "format1/step_lr.pt"); }),
        Contains("TopKTopPSelector: expected a dlcore.TopKTopPSelector "
                 "state, but the archive holds a dlcore.StepLR state"));
    auto b = make_batches();
    CHECK_THAT(
        error_of([&] { b.load(kStateDir + "format1/hashtag_resampler.pt"); }),
        Contains("Batches: expected a dlcore.Batches state, but the archive "
                 "holds a dlcore.HashtagResampler state of the legacy "
                 "format"));
    torch::serialize::OutputArchive empty;
    empty.write("x", c10::IValue(int64_t{1}));
    std::ostringstream bytes;
    empty.save_to(bytes);
    CHECK(
        load_error(b, bytes.str()) ==
        "Batches: expected a dlcore.Batches state, but the archive holds no "
        "`type` entry (not a dlcore state)");
    CHECK(
        load_error(b, edited(save_bat, {{"type", c10::IValue(int64_t{3})}})) ==
        "Batches: expected a dlcore.Batches state, but the archive holds a "
        "`type` entry that is an integer (3)");
  }
  SECTION("a newer or invalid version") {
    auto target_opt = two_group_sgd();
    dlcore::StepLR target(target_opt, step_lr_options());
    CHECK(
        load_error(
            target,
            edited(save_step, {{"version", c10::IValue(int64_t{2})}})) ==
        "StepLR: the dlcore.StepLR state has version 2, but this build reads "
        "versions 1 to 1 (it was written by a newer dlcore)");
    dlcore::TopKTopPSelector s(selector_options());
    CHECK(
        load_error(
            s, edited(save_sel, {{"version", c10::IValue(int64_t{7})}})) ==
        "TopKTopPSelector: the dlcore.TopKTopPSelector state has version "
        "7, but this build reads versions 1 to 1 (it was written by a "
        "newer dlcore)");
    auto r = make_resampler();
    CHECK_THAT(
        load_error(r, edited(save_res, {{"version", c10::IValue(int64_t{0})}})),
        Contains("HashtagResampler::load: the dlcore.HashtagResampler state "
                 "has version 0, but versions start at 1"));
    auto b = make_batches();
    CHECK(
        load_error(b, edited(save_bat, {{"version", c10::IValue(2.0)}})) ==
        "Batches: the dlcore.Batches state's `version` must be an integer, "
        "but it is a float (2)");
    CHECK(
        load_error(b, edited(save_bat, {{"version", std::nullopt}})) ==
        "Batches: the dlcore.Batches state's `version` must be an integer, "
        "but it is nothing");
  }
  SECTION("a missing field") {
    auto target_opt = two_group_sgd();
    dlcore::StepLR target(target_opt, step_lr_options());
    CHECK(
        load_error(target, edited(save_step, {{"gamma", std::nullopt}})) ==
        "StepLR: the dlcore.StepLR state (version 1) has no field `gamma`");
    dlcore::TopKTopPSelector s(selector_options());
    CHECK(
        load_error(s, edited(save_sel, {{"scores", std::nullopt}})) ==
        "TopKTopPSelector: the dlcore.TopKTopPSelector state (version 1) has "
        "no field `scores`");
    auto r = make_resampler();
    CHECK(
        load_error(r, edited(save_res, {{"position", std::nullopt}})) ==
        "HashtagResampler::load: the dlcore.HashtagResampler state (version "
        "1) has no field `position`");
    auto b = make_batches();
    CHECK(
        load_error(b, edited(save_bat, {{"drop_last", std::nullopt}})) ==
        "Batches: the dlcore.Batches state (version 2) has no field "
        "`drop_last`");
  }
  SECTION("a field of the wrong kind or shape") {
    auto target_opt = two_group_sgd();
    dlcore::StepLR target(target_opt, step_lr_options());
    CHECK(
        load_error(
            target,
            edited(
                save_step, {{"step_size", c10::IValue(std::string("3"))}})) ==
        "StepLR: field `step_size` of the dlcore.StepLR state must be an "
        "integer, but it is a string (\"3\")");
    CHECK(
        load_error(target, edited(save_step, {{"gamma", c10::IValue(0.5)}})) ==
        "StepLR: field `gamma` of the dlcore.StepLR state must be a list of "
        "floats, but it is a float (0.5)");
    dlcore::TopKTopPSelector s(selector_options());
    CHECK(
        load_error(
            s,
            edited(
                save_sel,
                {{"ranges", c10::IValue(torch::zeros({3}, torch::kLong))}})) ==
        "TopKTopPSelector: field `ranges` of the dlcore.TopKTopPSelector "
        "state must be a CPU Long tensor of shape [*, 2], but it is a Long "
        "tensor of shape [3]");
    CHECK(
        load_error(
            s,
            edited(
                save_sel,
                {{"scores", c10::IValue(torch::zeros({2}, torch::kFloat))}})) ==
        "TopKTopPSelector: field `scores` of the dlcore.TopKTopPSelector "
        "state must be a CPU Double tensor of shape [*], but it is a Float "
        "tensor of shape [2]");
    CHECK(
        load_error(
            s, edited(save_sel, {{"rows_seen", c10::IValue(int64_t{-4})}})) ==
        "TopKTopPSelector: field `rows_seen` of the dlcore.TopKTopPSelector "
        "state must be an integer >= 0, but it is an integer (-4)");
    auto r = make_resampler();
    CHECK(
        load_error(r, edited(save_res, {{"alpha", c10::IValue(int64_t{1})}})) ==
        "HashtagResampler::load: field `alpha` of the "
        "dlcore.HashtagResampler state must be a float, but it is an integer "
        "(1)");
    auto b = make_batches();
    CHECK(
        load_error(
            b, edited(save_bat, {{"shuffle", c10::IValue(int64_t{1})}})) ==
        "Batches: field `shuffle` of the dlcore.Batches state must be a "
        "bool, but it is an integer (1)");
  }
  SECTION("the unchanged archives load") {
    auto target_opt = two_group_sgd();
    dlcore::StepLR target(target_opt, step_lr_options());
    CHECK(load_error(target, edited(save_step, {})) == "no error");
    CHECK(target.last_epoch() == 1);
    dlcore::TopKTopPSelector s(selector_options());
    CHECK(load_error(s, edited(save_sel, {})) == "no error");
    CHECK(s.rows_seen() == sel.rows_seen());
    auto r = make_resampler();
    CHECK(load_error(r, edited(save_res, {})) == "no error");
    CHECK(r.position() == 1);
    auto b = make_batches();
    CHECK(load_error(b, edited(save_bat, {})) == "no error");
  }
}

TEST_CASE(
    "Batches saves to and loads from a checked file", "[state][batches]") {
  char tmpl[] = "/tmp/dlcore_state_XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  const std::string path = std::string(tmpl) + "/batches.pt";
  auto a = make_batches();
  for (const auto& batch : a) {
    (void)batch;
  }
  a.save(path);
  auto b = make_batches();
  b.load(path);
  CHECK(b.epoch() == 1);
  CHECK(b.order(1).equal(a.order(1)));
  // A damaged file is refused by the archive guard, naming the file.
  {
    std::FILE* f = std::fopen(path.c_str(), "r+b");
    REQUIRE(f != nullptr);
    std::fseek(f, 60, SEEK_SET);
    const int c = std::fgetc(f);
    std::fseek(f, 60, SEEK_SET);
    std::fputc(c ^ 0x20, f);
    std::fclose(f);
  }
  auto c = make_batches();
  c.set_epoch(5);
  CHECK_THAT(
      error_of([&] { c.load(path); }),
      Catch::Contains("Batches: '" + path + "'") ||
          Catch::Contains("Batches: cannot load '" + path + "'"));
  CHECK(c.epoch() == 5);
  std::remove(path.c_str());
  ::rmdir(tmpl);
}
