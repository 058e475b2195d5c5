#include <dlcore/nn/models/alexnet.h>
#include <dlcore/nn/models/googlenet.h>
#include <dlcore/nn/models/lenet5.h>
#include <dlcore/nn/models/resnet.h>
#include <dlcore/nn/models/rpn.h>
#include <dlcore/nn/models/vgg.h>

#include "golden/models.h"

#include <filesystem>
#include <set>
#include <sstream>

namespace {

namespace g = dlcore_golden;

std::string join(const std::vector<int64_t>& v) {
  std::ostringstream os;
  for (size_t i = 0; i < v.size(); ++i) {
    os << (i ? "," : "") << v[i];
  }
  return os.str();
}

std::vector<int64_t> with_batch(std::vector<int64_t> shape, int64_t batch = 1) {
  shape.insert(shape.begin(), batch);
  return shape;
}

int64_t count_params(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) {
    n += p.numel();
  }
  return n;
}

/// Names and shapes of every parameter, in order, equal torchvision's.
void check_parameters(const torch::nn::Module& m, const g::ModelGolden& gold) {
  INFO(gold.model);
  const auto named = m.named_parameters();
  REQUIRE(named.size() == gold.num_param_rows);
  for (size_t i = 0; i < named.size(); ++i) {
    INFO("parameter " << i);
    CHECK(named[i].key() == gold.param_rows[i].name);
    CHECK(join(named[i].value().sizes().vec()) == gold.param_rows[i].shape);
  }
  CHECK(count_params(m) == gold.params);
}

/// The summary's module leaves (a real forward pass) equal torchvision's
/// forward-hook rows: name, type, output shape, params, MACs.
void check_summary(const dlcore::ModelSummary& s, const g::ModelGolden& gold) {
  INFO(gold.model);
  const auto leaves = s.module_leaves();
  REQUIRE(leaves.size() == gold.num_layers);
  for (size_t i = 0; i < leaves.size(); ++i) {
    const auto& want = gold.layers[i];
    INFO("layer " << i << " " << want.name);
    CHECK(leaves[i].name == want.name);
    CHECK(leaves[i].type == want.type);
    CHECK(join(leaves[i].output_shape) == want.shape);
    CHECK(leaves[i].params == want.params);
    CHECK(leaves[i].macs == want.macs);
  }
  CHECK(s.total_params == gold.params);
  CHECK(s.total_macs == gold.macs);
}

/// layer_math's rows (pure arithmetic) equal torchvision's for every layer
/// with weights or a pooling: name, output shape, params, MACs.
void check_layer_math(
    const std::vector<dlcore::LayerSpec>& layers, const g::ModelGolden& gold) {
  INFO(gold.model);
  const std::set<std::string> kinds = {
      "Conv2d", "Linear", "BatchNorm2d", "MaxPool2d", "AdaptiveAvgPool2d"};
  std::vector<const g::LayerRow*> want;
  for (size_t i = 0; i < gold.num_layers; ++i) {
    if (kinds.count(gold.layers[i].type)) {
      want.push_back(&gold.layers[i]);
    }
  }
  std::vector<int64_t> in;
  std::stringstream ss(gold.input);
  for (std::string part; std::getline(ss, part, ',');) {
    in.push_back(std::stoll(part));
  }
  in.erase(in.begin()); // per sample
  const auto stats = dlcore::analyze_layers(layers, in);
  std::vector<const dlcore::LayerStats*> got;
  for (const auto& r : stats.layers) {
    const std::string type = r.type == "BatchNorm" ? "BatchNorm2d" : r.type;
    if (kinds.count(type)) {
      got.push_back(&r);
    }
  }
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("layer " << i << " " << want[i]->name);
    CHECK(got[i]->name == want[i]->name);
    CHECK(join(with_batch(got[i]->output_shape)) == want[i]->shape);
    CHECK(got[i]->params == want[i]->params);
    CHECK(got[i]->macs == want[i]->macs);
  }
  CHECK(stats.params == gold.params);
  CHECK(stats.macs == gold.macs);
}

/// summary() and analyze_layers() agree row by row on any input size.
void check_summary_matches_layer_math(
    const std::shared_ptr<torch::nn::Module>& m,
    const std::vector<dlcore::LayerSpec>& layers,
    const std::vector<int64_t>& in) {
  const auto s = dlcore::summary(m, with_batch(in));
  const auto a = dlcore::analyze_layers(layers, in);
  std::vector<const dlcore::SummaryRow*> got;
  for (const auto& r : s.rows) {
    if (r.is_leaf && (r.type == "Conv2d" || r.type == "Linear")) {
      got.push_back(&r);
    }
  }
  std::vector<const dlcore::LayerStats*> want;
  for (const auto& r : a.layers) {
    if (r.type == "Conv2d" || r.type == "Linear") {
      want.push_back(&r);
    }
  }
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("layer " << want[i]->name);
    CHECK(got[i]->name == want[i]->name);
    CHECK(got[i]->output_shape == with_batch(want[i]->output_shape));
    CHECK(got[i]->macs == want[i]->macs);
  }
  CHECK(s.output_shape == with_batch(a.output_shape));
  CHECK(s.total_params == a.params);
  CHECK(s.total_macs == a.macs);
  // Both count every output that takes new memory (in-place ReLU, the
  // residual add, flatten and dropout take none).
  const auto no_input = dlcore::analyze_layers(
      layers, in, dlcore::LayerMathOptions().count_input(false));
  CHECK(s.forward_bytes == no_input.forward_bytes);
}

} // namespace

TEST_CASE(
    "AlexNet equals torchvision's: parameters, layers, MACs", "[models]") {
  dlcore::AlexNet net;
  check_parameters(*net, g::alexnet);
  const auto s = dlcore::summary(net, {1, 3, 224, 224});
  check_summary(s, g::alexnet);
  CHECK(s.total_params == 61100840);
  CHECK(s.total_macs / 1e9 == Approx(0.71).margin(0.005));
  check_layer_math(dlcore::alexnet_layers(), g::alexnet);
  check_summary_matches_layer_math(
      net.ptr(), dlcore::alexnet_layers(), {3, 224, 224});
  CHECK(
      net->forward(torch::zeros({2, 3, 224, 224})).sizes() ==
      std::vector<int64_t>{2, 1000});
}

TEST_CASE(
    "VGG-11/16/19 with and without batch norm equal torchvision's",
    "[models]") {
  struct Case {
    int64_t depth;
    bool bn;
    const g::ModelGolden* gold;
    int64_t params; // 0: analytical check only (keeps the test fast)
  };
  const std::vector<Case> cases = {
      {11, false, &g::vgg11, 132863336},
      {11, true, &g::vgg11_bn, 0},
      {16, false, &g::vgg16, 138357544},
      {16, true, &g::vgg16_bn, 0},
      {19, false, &g::vgg19, 143667240},
      {19, true, &g::vgg19_bn, 143678248}};
  for (const auto& c : cases) {
    INFO("VGG-" << c.depth << (c.bn ? "-BN" : ""));
    // Analytical rows at 224 against torchvision's, without a forward pass.
    check_layer_math(dlcore::vgg_layers(c.depth, c.bn), *c.gold);
    if (c.params == 0) {
      continue;
    }
    dlcore::VGG net(c.depth, c.bn);
    check_parameters(*net, *c.gold);
    CHECK(count_params(*net) == c.params);
    // A real forward pass at 32x32 (cheap) follows the same layers.
    check_summary_matches_layer_math(
        net.ptr(), dlcore::vgg_layers(c.depth, c.bn), {3, 32, 32});
    if (c.depth == 19 && !c.bn) {
      // One real forward pass at 224 (19.6 G MACs), layer by layer.
      const auto s = dlcore::summary(net, {1, 3, 224, 224});
      check_summary(s, g::vgg19);
      CHECK(s.total_macs == 19632062464);
    }
  }
  CHECK(g::vgg19.macs / 1e9 == Approx(19.63).margin(0.005));
  // VGG-13 (documented in vgg.h): VGG-11 plus a 64->64 and a 128->128 conv.
  CHECK(
      dlcore::analyze_layers(dlcore::vgg_layers(13), {3, 224, 224}).params ==
      132863336 + 36928 + 147584);
  CHECK(132863336 + 36928 + 147584 == 133047848);
}

TEST_CASE(
    "VGG-16's memory table is the CS231n one plus the adaptive pool",
    "[models]") {
  const auto s = dlcore::analyze_layers(dlcore::vgg_layers(16), {3, 224, 224});
  // CS231n rows: input 150,528, conv/pool outputs, FC 4096, 4096, 1000.
  CHECK(s.activations == 15237608 + 25088);
  CHECK(s.params == 138357544);
  CHECK(s.forward_bytes == 4 * s.activations);
  CHECK(s.backward_bytes == 2 * s.forward_bytes);
  const auto b = dlcore::analyze_layers(
      dlcore::vgg_layers(16),
      {3, 224, 224},
      dlcore::LayerMathOptions().batch_size(32));
  CHECK(b.activations == 32 * s.activations);
  CHECK(b.params == s.params);
}

TEST_CASE("ResNet-18 and ResNet-50 equal torchvision's", "[models]") {
  for (const auto& c :
       {std::make_pair(int64_t{18}, &g::resnet18),
        std::make_pair(int64_t{50}, &g::resnet50)}) {
    dlcore::ResNet net(c.first);
    check_parameters(*net, *c.second);
    check_summary(dlcore::summary(net, {1, 3, 224, 224}), *c.second);
    check_layer_math(dlcore::resnet_layers(c.first), *c.second);
    check_summary_matches_layer_math(
        net.ptr(), dlcore::resnet_layers(c.first), {3, 64, 48});
  }
  CHECK(count_params(*dlcore::ResNet(18)) == 11689512);
  CHECK(count_params(*dlcore::ResNet(50)) == 25557032);
  CHECK(count_params(*dlcore::ResNet(34)) == 21797672);
}

TEST_CASE("GoogLeNet equals torchvision's (aux_logits=False)", "[models]") {
  dlcore::GoogLeNet net;
  check_parameters(*net, g::googlenet);
  CHECK(count_params(*net) == 6624904);
  check_summary(dlcore::summary(net, {1, 3, 224, 224}), g::googlenet);
  check_layer_math(dlcore::googlenet_layers(), g::googlenet);
  check_summary_matches_layer_math(
      net.ptr(), dlcore::googlenet_layers(), {3, 224, 224});
  // The paper's 5x5 kernels: 9 modules × (25 − 9) × ch5x5red × ch5x5 more.
  const auto paper_opts = dlcore::GoogLeNetOptions().branch3_kernel(5);
  dlcore::GoogLeNet paper(paper_opts);
  int64_t extra = 0;
  for (const auto& c : dlcore::googlenet_inception_config()) {
    extra += 16 * c.second.ch5x5red() * c.second.ch5x5();
  }
  CHECK(count_params(*paper) == 6624904 + extra);
  CHECK(count_params(*paper) == 7005832); // documented in googlenet.h
  CHECK(
      dlcore::analyze_layers(
          dlcore::googlenet_layers(paper_opts), {3, 224, 224})
          .params == 6624904 + extra);
  check_summary_matches_layer_math(
      paper.ptr(), dlcore::googlenet_layers(paper_opts), {3, 96, 96});
}

TEST_CASE("the RPN head equals torchvision's RPNHead(256, 3)", "[models]") {
  dlcore::RPNHead head(256, 3);
  check_parameters(*head, g::rpn_head);
  CHECK(count_params(*head) == 593935);
  const auto s = dlcore::summary(head, {1, 256, 50, 38});
  check_summary(s, g::rpn_head);
  CHECK(s.output_shape == std::vector<int64_t>{1, 15, 50, 38});
  auto out = head->forward(torch::zeros({1, 256, 50, 38}));
  CHECK(std::get<0>(out).sizes() == std::vector<int64_t>{1, 3, 50, 38});
  CHECK(std::get<1>(out).sizes() == std::vector<int64_t>{1, 12, 50, 38});
  auto levels = head->forward_levels(
      {torch::zeros({1, 256, 8, 8}), torch::zeros({1, 256, 4, 4})});
  CHECK(levels.first.size() == 2);
  CHECK(levels.second[1].sizes() == std::vector<int64_t>{1, 12, 4, 4});
  const auto a =
      dlcore::analyze_layers(dlcore::rpn_head_layers(256, 3), {256, 50, 38});
  CHECK(a.params == 593935);
  CHECK(a.macs == g::rpn_head.macs);
  CHECK(count_params(*dlcore::RPNHead(256, 9)) == 601645);
}

TEST_CASE(
    "Faster R-CNN parts and anchor counts equal torchvision's", "[models]") {
  const auto& parts = g::faster_rcnn_parts;
  CHECK(
      dlcore::analyze_layers(
          dlcore::resnet_layers(50, 1000, 4, false), {3, 64, 64})
          .params == parts.backbone_body);
  CHECK(dlcore::fpn_params({256, 512, 1024, 2048}, 256) == parts.backbone_fpn);
  CHECK(
      dlcore::analyze_layers(dlcore::rpn_head_layers(256, 3), {256, 8, 8})
          .params == parts.rpn_head);
  const auto roi =
      dlcore::analyze_layers(dlcore::roi_box_head_layers(), {256, 7, 7});
  CHECK(roi.params == parts.roi_box_head + parts.roi_box_predictor);
  CHECK(roi.layers.back().params == 0); // the concat itself
  CHECK(
      roi.params - roi.layers[roi.layers.size() - 2].params -
          roi.layers[roi.layers.size() - 3].params ==
      parts.roi_box_head);
  CHECK(
      parts.backbone_body + parts.backbone_fpn + parts.rpn_head +
          parts.roi_box_head + parts.roi_box_predictor ==
      parts.total);

  // FPN levels on 800x800: the outputs of layer1..layer4 and a stride-2 pool.
  std::vector<std::pair<int64_t, int64_t>> sizes;
  std::ostringstream levels;
  for (int64_t stages = 1; stages <= 4; ++stages) {
    const auto s = dlcore::analyze_layers(
        dlcore::resnet_layers(50, 1000, stages, false), {3, 800, 800});
    sizes.emplace_back(s.output_shape[1], s.output_shape[2]);
  }
  sizes.emplace_back(
      dlcore::conv_output_size(sizes.back().first, 1, 2, 0, 1),
      dlcore::conv_output_size(sizes.back().second, 1, 2, 0, 1));
  for (size_t i = 0; i < sizes.size(); ++i) {
    levels << (i ? ";" : "") << sizes[i].first << "x" << sizes[i].second;
  }
  CHECK(levels.str() == g::fpn_levels_800);
  CHECK(dlcore::count_anchors(sizes, {3}) == g::fpn_anchors_800);

  // Single level at stride 16: 800x600 -> 50x38 (ResNet's rounding), 9
  // anchors per location (3 scales x 3 ratios) = 17,100.
  const auto c4 = dlcore::analyze_layers(
      dlcore::resnet_layers(50, 1000, 3, false), {3, 600, 800});
  CHECK(c4.output_shape == std::vector<int64_t>{1024, 38, 50});
  CHECK(c4.jump[0] == 16);
  CHECK(dlcore::count_anchors({{50, 38}}, {9}) == 17100);
}

TEST_CASE(
    "models train with a real optimizer and restore eval/train flags",
    "[models]") {
  torch::manual_seed(0);
  dlcore::ResNet net(18, 10);
  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.01));
  auto x = torch::randn({4, 3, 32, 32});
  auto y = torch::tensor({0, 1, 2, 3}, torch::kLong);
  net->train();
  const auto before = net->fc->weight.clone();
  const auto running = net->bn1->running_mean.clone();
  auto loss = torch::nn::functional::cross_entropy(net->forward(x), y);
  opt.zero_grad();
  loss.backward();
  opt.step();
  CHECK_FALSE(torch::equal(before, net->fc->weight));
  CHECK_FALSE(torch::equal(running, net->bn1->running_mean));
  // summary() runs in eval mode and leaves the mode and statistics alone.
  const auto stats = net->bn1->running_mean.clone();
  dlcore::summary(net, {1, 3, 32, 32});
  CHECK(net->is_training());
  CHECK(net->layer1->is_training());
  CHECK(torch::equal(stats, net->bn1->running_mean));
}

TEST_CASE("construction is deterministic under a seed", "[models]") {
  torch::manual_seed(3);
  dlcore::GoogLeNet a;
  torch::manual_seed(3);
  dlcore::GoogLeNet b;
  auto pa = a->parameters();
  auto pb = b->parameters();
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    CHECK(torch::equal(pa[i], pb[i]));
  }
  torch::manual_seed(3);
  dlcore::AlexNet c(10);
  auto x = torch::randn({1, 3, 64, 64});
  c->eval();
  CHECK(torch::equal(c->forward(x), c->forward(x)));
}

TEST_CASE("invalid model options are errors", "[models]") {
  using Catch::Contains;
  auto msg = [](const std::function<void()>& f) -> std::string {
    try {
      f();
    } catch (const c10::Error& e) {
      return e.what_without_backtrace();
    }
    return "no error";
  };
  CHECK_THAT(
      msg([] { dlcore::VGG(12); }),
      Contains("VGG: depth must be 11, 13, 16 or 19, got 12"));
  CHECK_THAT(
      msg([] { dlcore::VGG(11, false, 0); }),
      Contains("VGG: num_classes must be >= 1, got 0"));
  CHECK_THAT(
      msg([] { dlcore::ResNet(20); }),
      Contains("ResNet: depth must be 18, 34, 50, 101 or 152, got 20"));
  CHECK_THAT(
      msg([] { dlcore::AlexNet(10, 1.5); }),
      Contains("AlexNet: dropout must be in [0, 1], got 1.5"));
  CHECK_THAT(
      msg([] {
        dlcore::GoogLeNet(dlcore::GoogLeNetOptions().branch3_kernel(4));
      }),
      Contains("Inception: branch3_kernel must be 3 or 5, got 4"));
  CHECK_THAT(
      msg([] { dlcore::RPNHead(256, 0); }),
      Contains(
          "RPNHead: in_channels, num_anchors and conv_depth must be >= 1"));
  CHECK_THAT(
      msg([] {
        dlcore::count_anchors({{2, 2}, {1, 1}}, {3, 3, 3});
      }),
      Contains(
          "count_anchors: anchors_per_location needs 1 or 2 entries, got 3"));
  CHECK_THAT(
      msg([] { dlcore::resnet_layers(18, 10, 5); }),
      Contains("resnet_layers: stages must be in [0, 4], got 5"));
  // Too small an input for AlexNet: the failing step is named.
  CHECK_THAT(
      msg([] {
        dlcore::summary(dlcore::AlexNet(), {1, 3, 32, 32});
      }),
      Contains("summary: step 'features.12' (MaxPool2d) failed"));
  CHECK_THAT(
      msg([] {
        dlcore::analyze_layers(dlcore::alexnet_layers(), {3, 32, 32});
      }),
      Contains("layer 12 (features.12, MaxPool2d): kernel 3 (effective 3) is "
               "larger than the padded input 1"));
}

TEST_CASE(
    "a saved model loads into a fresh one with the same names and values",
    "[models]") {
  const auto dir = std::filesystem::temp_directory_path();
  const auto path = (dir / "dlcore_test_models_googlenet.pt").string();
  torch::manual_seed(5);
  dlcore::GoogLeNet a(dlcore::GoogLeNetOptions().num_classes(10));
  a->train();
  a->forward(torch::randn({2, 3, 64, 64})); // moves BN running statistics
  torch::save(a, path);
  torch::manual_seed(6);
  dlcore::GoogLeNet b(dlcore::GoogLeNetOptions().num_classes(10));
  torch::load(b, path);
  std::filesystem::remove(path);
  const auto pa = a->named_parameters();
  const auto pb = b->named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    CHECK(pa[i].key() == pb[i].key());
    CHECK(torch::equal(pa[i].value(), pb[i].value()));
  }
  const auto ba = a->named_buffers();
  const auto bb = b->named_buffers();
  REQUIRE(ba.size() == bb.size());
  for (size_t i = 0; i < ba.size(); ++i) {
    CHECK(torch::equal(ba[i].value(), bb[i].value()));
  }
  a->eval();
  b->eval();
  const auto x = torch::randn({1, 3, 64, 64});
  CHECK(torch::equal(a->forward(x), b->forward(x)));
}

TEST_CASE(
    "LeNet-5 is traced: 61,706 parameters and 416,520 MACs, row by row as "
    "lenet5_layers",
    "[models]") {
  dlcore::LeNet5 net;
  const auto s = dlcore::summary(net, {1, 1, 28, 28});
  CHECK(s.traced);
  CHECK(s.total_params == 61706);
  CHECK(s.total_macs == 416520);
  CHECK(s.output_shape == std::vector<int64_t>{1, 10});
  check_summary_matches_layer_math(
      net.ptr(), dlcore::lenet5_layers(), {1, 28, 28});
  // Every row, functional steps included: name, shape, params, MACs.
  const auto a = dlcore::analyze_layers(dlcore::lenet5_layers(), {1, 28, 28});
  REQUIRE(s.rows.size() == a.layers.size());
  for (size_t i = 0; i < s.rows.size(); ++i) {
    INFO("row " << i << " " << a.layers[i].name);
    CHECK(s.rows[i].name == a.layers[i].name);
    CHECK(s.rows[i].output_shape == with_batch(a.layers[i].output_shape));
    CHECK(s.rows[i].params == a.layers[i].params);
    CHECK(s.rows[i].macs == a.layers[i].macs);
  }
  // Other class counts, and a trace that leaves forward's result alone.
  CHECK(
      dlcore::analyze_layers(dlcore::lenet5_layers(5), {1, 28, 28}).params ==
      61706 - 84 * 5 - 5);
  net->eval();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({3, 1, 28, 28});
  dlcore::SummaryTracer off;
  CHECK(net->trace_forward(x, off).equal(net->forward(x)));
}
