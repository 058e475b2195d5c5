// Problem 2: CNN architecture analysis — parameters, activation memory,
// MACs/FLOPs and receptive fields, computed analytically (nn/layer_math.h)
// and checked against real LibTorch modules (nn/summary.h, nn/models/).
//
// Reproduces the homework's five analyses:
//   1. AlexNet: output shape and parameters per layer, and the totals.
//   2. VGG-19: activation memory and parameters per layer, the memory per
//      image for a forward pass and with the backward pass, total parameters
//      (the classic CS231n table, which shows VGG-16; here VGG-19).
//   3. Receptive field, jump and start after every layer of AlexNet and VGG-19.
//   4. Inception (3a) at 28x28x192: naive module versus 1x1 reductions (MACs,
//      parameters, saving factor).
//   5. Faster R-CNN: RPN head parameters, anchors per image, parameters of the
//      backbone / FPN / RPN / ROI-head parts.
// --scale quick: analytical tables plus the cheap real modules (AlexNet, RPN
// head, Inception); default adds VGG-19, ResNet-18/50 and GoogLeNet with a
// real forward pass each; full adds VGG-11, VGG-16 and VGG-19-BN.
//
// Writes into --out:
//   alexnet_layers.csv     per layer: type, output shape, params, MACs
//   vgg19_layers.csv       per layer: shape, activations, memory, params
//   vgg19_analysis.txt     analyze_layers table of VGG-19 (all quantities)
//   receptive_fields.csv   per layer of AlexNet and VGG-19: r, jump, start
//   inception.csv          naive vs reduced Inception (3a)
//   faster_rcnn.csv        RPN head, anchors, part parameter counts
//   models.csv             analytical vs real-module params and MACs
//   alexnet_summary.txt    torchinfo-style summary of the real AlexNet
//   summary.json           settings and headline numbers
//   summary.md             "## Problem 2 — ..." section for REPORT.md
//
// Shape: main() parses and checks every flag before any work, then calls one
// step per analysis (alexnet_table, vgg19_memory, receptive_fields,
// inception, faster_rcnn, check_real_modules); each writes its CSV and its
// section of summary.md.
#include "common.h"

#include <dlcore/io/csv.h>
#include <dlcore/io/files.h>
#include <dlcore/io/json.h>
#include <dlcore/io/number_format.h>
#include <dlcore/nn/layer_math.h>
#include <dlcore/nn/models/alexnet.h>
#include <dlcore/nn/models/googlenet.h>
#include <dlcore/nn/models/resnet.h>
#include <dlcore/nn/models/rpn.h>
#include <dlcore/nn/models/vgg.h>
#include <dlcore/nn/summary.h>

#include <fmt/format.h>

#include <functional>
#include <iostream>
#include <limits>
#include <sstream>

namespace ex = dlcore::examples;
using L = dlcore::LayerSpec;

namespace {

/// {64, 55, 55} -> "64x55x55".
std::string shape_str(const std::vector<int64_t>& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    out += (i ? "x" : "") + std::to_string(s[i]);
  }
  return out;
}

std::string num(double v) {
  return fmt::format("{:g}", v);
}

double mib(int64_t bytes) {
  return static_cast<double>(bytes) / (1024.0 * 1024.0);
}

/// Layers shown in the homework's tables: those with weights or pooling.
bool table_layer(const dlcore::LayerStats& r) {
  return r.depth == 0 && r.type != "ReLU" && r.type != "Dropout" &&
         r.type != "Flatten";
}

struct Settings {
  ex::CommonFlags flags;
  int64_t image = 224;
  int64_t batch = 1;
  int64_t rpn_h = 50, rpn_w = 38, anchors_per_location = 9;
};

void add_flags(CLI::App& app, Settings& s) {
  s.flags.add_to(app, "problem2");
  app.add_option("--image-size", s.image, "input height and width")
      ->capture_default_str();
  app.add_option("--batch-size", s.batch, "images per batch (memory tables)")
      ->capture_default_str();
  app.add_option("--rpn-height", s.rpn_h, "RPN feature-map height")
      ->capture_default_str();
  app.add_option("--rpn-width", s.rpn_w, "RPN feature-map width")
      ->capture_default_str();
  app.add_option(
         "--anchors",
         s.anchors_per_location,
         "anchors per location (scales x ratios)")
      ->capture_default_str();
}

void check_flags(const Settings& s) {
  // AlexNet's first layers need 63 pixels to leave its last pooling a 3x3
  // map; the real modules' forward passes grow with the square of the size.
  ex::check_range("--image-size", s.image, 63, 1024);
  ex::check_range("--batch-size", s.batch, 1, 256);
  ex::check_range("--rpn-height", s.rpn_h, 1, 10000);
  ex::check_range("--rpn-width", s.rpn_w, 1, 10000);
  ex::check_range("--anchors", s.anchors_per_location, 1, 1000);
}

// What every analysis step needs: the input, the options, where it writes.
struct Context {
  const Settings& s;
  std::vector<int64_t> in; // {3, image, image}
  dlcore::LayerMathOptions opts;
  torch::Device device;
  const ex::Output& out;
  std::ostringstream& md;
};

// ---- 1. AlexNet -------------------------------------------------------

dlcore::NetworkStats alexnet_table(Context& c) {
  const auto alex =
      dlcore::analyze_layers(dlcore::alexnet_layers(), c.in, c.opts);
  dlcore::CsvTable alex_csv(
      {"layer", "type", "output_shape", "params", "macs", "flops"});
  c.md << "### 1. AlexNet (torchvision): output shape and parameters\n\n"
       << "| layer | type | output | params |\n|---|---|---|---:|\n";
  for (const auto& r : alex.layers) {
    alex_csv.add_row(
        {r.name, r.type, shape_str(r.output_shape), r.params, r.macs, r.flops});
    if (table_layer(r)) {
      c.md << "| " << r.name << " | " << r.type << " | "
           << shape_str(r.output_shape) << " | "
           << dlcore::format_thousands(r.params) << " |\n";
    }
  }
  alex_csv.write(c.out.path("alexnet_layers.csv"));
  int64_t alex_conv = 0;
  for (const auto& r : alex.layers) {
    alex_conv += r.type == "Conv2d" ? r.params : 0;
  }
  c.md << "| **total** | | | **" << dlcore::format_thousands(alex.params)
       << "** |\n\n"
       << "Convolutions hold " << dlcore::format_thousands(alex_conv)
       << " parameters ("
       << fmt::format("{:.1f}", 100.0 * alex_conv / alex.params)
       << "%), the three linear layers the rest; "
       << fmt::format("{:.3f}", alex.macs / 1e9) << " G MACs per image.\n\n";
  return alex;
}

// ---- 2. VGG-19 memory and parameters ----------------------------------

dlcore::NetworkStats vgg19_memory(Context& c) {
  const auto vgg = dlcore::analyze_layers(dlcore::vgg_layers(19), c.in, c.opts);
  dlcore::CsvTable vgg_csv(
      {"layer", "type", "output_shape", "activations", "bytes", "params"});
  c.md << "### 2. VGG-19: memory and parameters per layer\n\n"
       << "Memory = elements of the layer's output (ReLU is in place and "
          "shares it, as in the course table).\n\n"
       << "| layer | type | output | activations | memory (KiB) | params |\n"
       << "|---|---|---|---:|---:|---:|\n"
       << "| input | | " << shape_str(c.in) << " | "
       << dlcore::format_thousands(vgg.input_activations) << " | "
       << fmt::format("{:.0f}", vgg.input_activations * 4 / 1024.0)
       << " | 0 |\n";
  for (const auto& r : vgg.layers) {
    vgg_csv.add_row(
        {r.name,
         r.type,
         shape_str(r.output_shape),
         r.activations,
         r.activation_bytes,
         r.params});
    if (table_layer(r) && r.type != "AdaptiveAvgPool2d") {
      c.md << "| " << r.name << " | " << r.type << " | "
           << shape_str(r.output_shape) << " | "
           << dlcore::format_thousands(r.activations) << " | "
           << fmt::format("{:.0f}", r.activation_bytes / 1024.0) << " | "
           << dlcore::format_thousands(r.params) << " |\n";
    }
  }
  vgg_csv.write(c.out.path("vgg19_layers.csv"));
  dlcore::write_file_atomic(c.out.path("vgg19_analysis.txt"), vgg.to_string());
  int64_t avgpool_acts = 0;
  for (const auto& r : vgg.layers) {
    avgpool_acts += r.name == "avgpool" ? r.activations : 0;
  }
  c.md << "| **total** | | | **" << dlcore::format_thousands(vgg.activations)
       << "** | **" << fmt::format("{:.0f}", vgg.forward_bytes / 1024.0)
       << "** | **" << dlcore::format_thousands(vgg.params) << "** |\n\n"
       << "- Activations per forward pass: "
       << dlcore::format_thousands(vgg.activations)
       << " values = " << fmt::format("{:.1f}", mib(vgg.forward_bytes))
       << " MiB per batch of " << c.s.batch << " (input included; the adaptive "
       << "pool, an identity at 224, is counted once more: "
       << dlcore::format_thousands(avgpool_acts) << ").\n"
       << "- With the backward pass (a gradient per stored activation): "
       << fmt::format("{:.1f}", mib(vgg.backward_bytes)) << " MiB.\n"
       << "- Parameters: " << dlcore::format_thousands(vgg.params) << " = "
       << fmt::format("{:.1f}", mib(vgg.param_bytes))
       << " MiB (x2 with gradients, x3 with SGD momentum).\n"
       << "- MACs: " << fmt::format("{:.2f}", vgg.macs / 1e9)
       << " G per image (torchvision: 19.63 G).\n\n";
  return vgg;
}

// ---- 3. Receptive fields ----------------------------------------------

void receptive_fields(
    Context& c,
    const dlcore::NetworkStats& alex,
    const dlcore::NetworkStats& vgg) {
  dlcore::CsvTable rf_csv(
      {"model",
       "layer",
       "type",
       "output_shape",
       "receptive_field",
       "jump",
       "start"});
  c.md << "### 3. Receptive field, jump and start\n\n"
       << "r_out = r_in + (k_eff - 1) j_in, j_out = j_in s, start_out = "
          "start_in + ((k_eff - 1)/2 - p) j_in, from r = 1, j = 1, start = "
          "0.5 (pixel centres); flatten acts as a kernel over the whole map. "
          "ReLU and dropout rows (unchanged) are left out here; "
          "receptive_fields.csv has every layer.\n\n";
  for (const auto& [name, stats] :
       {std::make_pair(std::string("AlexNet"), &alex),
        std::make_pair(std::string("VGG-19"), &vgg)}) {
    c.md << "**" << name
         << "**\n\n| layer | type | output | r | jump | start |\n"
         << "|---|---|---|---:|---:|---:|\n";
    for (const auto& r : stats->layers) {
      rf_csv.add_row(
          {name,
           r.name,
           r.type,
           shape_str(r.output_shape),
           r.receptive_field[0],
           r.jump[0],
           r.start[0]});
      if (table_layer(r) && r.type != "Linear") {
        c.md << "| " << r.name << " | " << r.type << " | "
             << shape_str(r.output_shape) << " | " << num(r.receptive_field[0])
             << " | " << num(r.jump[0]) << " | " << num(r.start[0]) << " |\n";
      }
    }
    c.md << "\n";
  }
  rf_csv.write(c.out.path("receptive_fields.csv"));
}

// ---- 4. Inception (3a) --------------------------------------------------

struct InceptionResult {
  int64_t naive_macs = 0;
  int64_t reduced_macs = 0;
  double mac_saving = 0;
};

InceptionResult inception(Context& c) {
  const std::vector<int64_t> inc_in = {192, 28, 28};
  const int64_t batch = c.s.batch;
  const auto naive = dlcore::analyze_layers(
      {L::concat(
          {{L::conv2d(192, 64, 1)},
           {L::conv2d(192, 128, 3).padding(1)},
           {L::conv2d(192, 32, 5).padding(2)},
           {L::max_pool2d(3).stride(1).padding(1)}})},
      inc_in,
      c.opts);
  const auto reduced = dlcore::analyze_layers(
      {L::concat(
          {{L::conv2d(192, 64, 1)},
           {L::conv2d(192, 96, 1), L::conv2d(96, 128, 3).padding(1)},
           {L::conv2d(192, 16, 1), L::conv2d(16, 32, 5).padding(2)},
           {L::max_pool2d(3).stride(1).padding(1), L::conv2d(192, 32, 1)}})},
      inc_in,
      c.opts);
  // The real torchvision-style module (BasicConv2d: no bias, batch norm).
  dlcore::Inception inception_paper(
      dlcore::InceptionOptions(192, 64, 96, 128, 16, 32, 32).branch3_kernel(5));
  dlcore::Inception inception_tv(
      dlcore::InceptionOptions(192, 64, 96, 128, 16, 32, 32));
  inception_paper->to(c.device);
  inception_tv->to(c.device);
  const auto real_paper =
      dlcore::summary(inception_paper, {batch, 192, 28, 28});
  const auto real_tv = dlcore::summary(inception_tv, {batch, 192, 28, 28});
  dlcore::CsvTable inc_csv(
      {"module", "output_shape", "params", "macs", "flops", "activations"});
  struct IncRow {
    std::string name;
    std::vector<int64_t> shape;
    int64_t params, macs, flops, acts;
  };
  const std::vector<IncRow> inc_rows = {
      {"naive (paper, bias)",
       naive.output_shape,
       naive.params,
       naive.macs,
       naive.flops,
       naive.activations},
      {"1x1 reductions (paper, bias)",
       reduced.output_shape,
       reduced.params,
       reduced.macs,
       reduced.flops,
       reduced.activations},
      {"dlcore::Inception, 5x5 (BN, no bias; real module)",
       std::vector<int64_t>(
           real_paper.output_shape.begin() + 1, real_paper.output_shape.end()),
       real_paper.total_params,
       real_paper.total_macs,
       -1,
       -1},
      {"torchvision Inception, 3x3 quirk (real module)",
       std::vector<int64_t>(
           real_tv.output_shape.begin() + 1, real_tv.output_shape.end()),
       real_tv.total_params,
       real_tv.total_macs,
       -1,
       -1}};
  c.md << "### 4. Inception (3a) at 28x28x192: naive vs 1x1 reductions\n\n"
       << "| module | output | params | MACs |\n|---|---|---:|---:|\n";
  for (const auto& r : inc_rows) {
    // Real modules: FLOPs and activations are analytical only (NaN = n/a).
    const auto maybe = [](int64_t v) -> dlcore::CsvCell {
      return v < 0 ? dlcore::CsvCell(std::numeric_limits<double>::quiet_NaN())
                   : dlcore::CsvCell(v);
    };
    inc_csv.add_row(
        {r.name,
         shape_str(r.shape),
         r.params,
         r.macs,
         maybe(r.flops),
         maybe(r.acts)});
    c.md << "| " << r.name << " | " << shape_str(r.shape) << " | "
         << dlcore::format_thousands(r.params) << " | "
         << dlcore::format_thousands(r.macs) << " |\n";
  }
  inc_csv.write(c.out.path("inception.csv"));
  const double mac_saving = static_cast<double>(naive.macs) / reduced.macs;
  const double param_saving =
      static_cast<double>(naive.params) / reduced.params;
  c.md << "\nSaving factor of the reductions: "
       << fmt::format("{:.2f}", mac_saving) << "x fewer MACs, "
       << fmt::format("{:.2f}", param_saving)
       << "x fewer parameters; the naive module's output also grows to "
       << naive.output_shape[0]
       << " channels (the pooled input passes through), which is what the "
          "projection prevents from compounding over stacked modules.\n\n";
  return {naive.macs, reduced.macs, mac_saving};
}

// ---- 5. Faster R-CNN ----------------------------------------------------

struct FasterRcnnResult {
  int64_t rpn_params = 0;
  int64_t total_params = 0;
};

int64_t count_params(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) {
    n += p.numel();
  }
  return n;
}

// Feature-map sizes of a ResNet-50-FPN on an 800x800 image (P2..P6).
std::vector<std::pair<int64_t, int64_t>> fpn_sizes_800() {
  std::vector<std::pair<int64_t, int64_t>> sizes;
  for (int64_t stages = 1; stages <= 4; ++stages) {
    const auto s = dlcore::analyze_layers(
        dlcore::resnet_layers(50, 1000, stages, false), {3, 800, 800});
    sizes.emplace_back(s.output_shape[1], s.output_shape[2]);
  }
  sizes.emplace_back(
      dlcore::conv_output_size(sizes.back().first, 1, 2, 0, 1),
      dlcore::conv_output_size(sizes.back().second, 1, 2, 0, 1));
  return sizes;
}

FasterRcnnResult faster_rcnn(Context& c) {
  const int64_t rpn_h = c.s.rpn_h, rpn_w = c.s.rpn_w;
  const int64_t anchors_per_location = c.s.anchors_per_location;
  dlcore::RPNHead rpn3(256, 3), rpn9(256, anchors_per_location);
  const auto c4 = dlcore::analyze_layers(
      dlcore::resnet_layers(50, 1000, 3, false), {3, 600, 800});
  const auto vgg_c5 = [&] {
    auto layers = dlcore::vgg_layers(16);
    layers.erase(layers.end() - 10, layers.end()); // up to conv5_3 + ReLU
    return dlcore::analyze_layers(layers, {3, 600, 800});
  }();
  const auto fpn_sizes = fpn_sizes_800();
  std::string fpn_levels;
  for (const auto& s : fpn_sizes) {
    fpn_levels += (fpn_levels.empty() ? "" : ", ") + std::to_string(s.first) +
                  "x" + std::to_string(s.second);
  }
  const auto body = dlcore::analyze_layers(
      dlcore::resnet_layers(50, 1000, 4, false), {3, 64, 64});
  int64_t body_bn = 0;
  for (const auto& r : body.layers) {
    if (r.type == "BatchNorm") {
      body_bn += r.params;
    }
  }
  const int64_t fpn = dlcore::fpn_params({256, 512, 1024, 2048}, 256);
  const auto roi =
      dlcore::analyze_layers(dlcore::roi_box_head_layers(), {256, 7, 7});
  const int64_t predictor = roi.layers[roi.layers.size() - 2].params +
                            roi.layers[roi.layers.size() - 3].params;
  const int64_t box_head = roi.params - predictor;
  const int64_t rpn_params = count_params(*rpn3);
  const int64_t frcnn_total = body.params + fpn + rpn_params + roi.params;
  dlcore::CsvTable frcnn_csv({"item", "value"});
  const std::vector<std::pair<std::string, int64_t>> frcnn_items = {
      {"rpn_head_params_A3", rpn_params},
      {"rpn_head_params_A" + std::to_string(anchors_per_location),
       count_params(*rpn9)},
      {"anchors_single_level",
       dlcore::count_anchors({{rpn_h, rpn_w}}, {anchors_per_location})},
      {"anchors_resnet50_c4_800x600",
       dlcore::count_anchors(
           {{c4.output_shape[1], c4.output_shape[2]}}, {anchors_per_location})},
      {"anchors_vgg16_conv5_800x600",
       dlcore::count_anchors(
           {{vgg_c5.output_shape[1], vgg_c5.output_shape[2]}},
           {anchors_per_location})},
      {"anchors_fpn_800x800", dlcore::count_anchors(fpn_sizes, {3})},
      {"backbone_body_resnet50", body.params},
      {"backbone_body_frozen_bn_buffers", body_bn},
      {"backbone_fpn", fpn},
      {"rpn_head", rpn_params},
      {"roi_box_head_two_mlp", box_head},
      {"roi_box_predictor_91", predictor},
      {"total", frcnn_total},
      {"total_with_frozen_bn", frcnn_total - body_bn}};
  for (const auto& [k, v] : frcnn_items) {
    frcnn_csv.add_row({k, v});
  }
  frcnn_csv.write(c.out.path("faster_rcnn.csv"));
  c.md << "### 5. Faster R-CNN\n\n"
       << "- RPN head (3x3 conv 256->256, objectness 1x1 -> A, box deltas 1x1 "
          "-> 4A): "
       << dlcore::format_thousands(rpn_params)
       << " parameters with A = 3 (torchvision, one size "
       << "x 3 ratios per FPN level), "
       << dlcore::format_thousands(count_params(*rpn9))
       << " with A = " << anchors_per_location
       << " (the paper: 3 scales x 3 ratios). "
       << "Real modules.\n"
       << "- Anchors on one " << rpn_h << "x" << rpn_w << " map x "
       << anchors_per_location << " = "
       << dlcore::format_thousands(
              dlcore::count_anchors({{rpn_h, rpn_w}}, {anchors_per_location}))
       << ". An 800x600 image gives " << c4.output_shape[2] << "x"
       << c4.output_shape[1] << " at stride " << num(c4.jump[0])
       << " through ResNet-50's C4 (rounding up) and " << vgg_c5.output_shape[2]
       << "x" << vgg_c5.output_shape[1]
       << " through VGG-16's conv5_3 (pools round down): "
       << dlcore::format_thousands(frcnn_items[3].second) << " and "
       << dlcore::format_thousands(frcnn_items[4].second) << " anchors.\n"
       << "- FPN on 800x800: levels " << fpn_levels << " with 3 anchors each = "
       << dlcore::format_thousands(frcnn_items[5].second) << " anchors.\n\n"
       << "| part (ResNet-50-FPN, 91 classes) | params |\n|---|---:|\n"
       << "| backbone body (ResNet-50 without avgpool/fc) | "
       << dlcore::format_thousands(body.params) << " |\n"
       << "| FPN (1x1 laterals + 3x3 outputs) | "
       << dlcore::format_thousands(fpn) << " |\n"
       << "| RPN head | " << dlcore::format_thousands(rpn_params) << " |\n"
       << "| ROI box head (TwoMLPHead 12544->1024->1024) | "
       << dlcore::format_thousands(box_head) << " |\n"
       << "| ROI box predictor (1024->91, 1024->364) | "
       << dlcore::format_thousands(predictor) << " |\n"
       << "| **total** | **" << dlcore::format_thousands(frcnn_total)
       << "** |\n\n"
       << "With torchvision's pretrained backbone the batch norms are "
          "FrozenBatchNorm2d, whose "
       << dlcore::format_thousands(body_bn)
       << " scales and shifts are buffers: "
       << dlcore::format_thousands(frcnn_total - body_bn)
       << " parameters, torchvision's published count.\n\n";
  return {rpn_params, frcnn_total};
}

// ---- Analytical vs real modules ---------------------------------------

struct ModelCheck {
  std::string model;
  int64_t analytical_params;
  int64_t analytical_macs;
  int64_t real_params;
  int64_t real_macs;
  int64_t torchvision_params;
};

// The real modules of the scale, each traced once (dlcore::summary).
std::vector<ModelCheck> trace_real_modules(Context& c) {
  const int64_t image = c.s.image;
  std::vector<ModelCheck> checks;
  auto check = [&](const std::string& name,
                   const std::shared_ptr<torch::nn::Module>& m,
                   const std::vector<L>& layers,
                   int64_t tv_params) {
    const auto a = dlcore::analyze_layers(layers, c.in);
    m->to(c.device);
    const auto s = dlcore::summary(m, {1, 3, image, image});
    checks.push_back(
        {name, a.params, a.macs, s.total_params, s.total_macs, tv_params});
    std::cout << name << ": params " << dlcore::format_thousands(s.total_params)
              << ", MACs " << fmt::format("{:.3f}", s.total_macs / 1e9)
              << " G\n";
  };
  {
    dlcore::AlexNet net;
    check("AlexNet", net.ptr(), dlcore::alexnet_layers(), 61100840);
    dlcore::write_file_atomic(
        c.out.path("alexnet_summary.txt"),
        dlcore::summary(net, {1, 3, image, image}).to_string());
  }
  const ex::Scale scale = c.s.flags.scale;
  if (scale != ex::Scale::kQuick) {
    {
      dlcore::VGG net(19);
      check("VGG-19", net.ptr(), dlcore::vgg_layers(19), 143667240);
    }
    check(
        "ResNet-18",
        dlcore::ResNet(18).ptr(),
        dlcore::resnet_layers(18),
        11689512);
    check(
        "ResNet-50",
        dlcore::ResNet(50).ptr(),
        dlcore::resnet_layers(50),
        25557032);
    check(
        "GoogLeNet",
        dlcore::GoogLeNet().ptr(),
        dlcore::googlenet_layers(),
        6624904);
  }
  if (scale == ex::Scale::kFull) {
    for (const auto& [depth, bn, tv] :
         {std::make_tuple(11, false, int64_t{132863336}),
          std::make_tuple(16, false, int64_t{138357544}),
          std::make_tuple(19, true, int64_t{143678248})}) {
      dlcore::VGG net(depth, bn);
      check(
          fmt::format("VGG-{}{}", depth, bn ? "-BN" : ""),
          net.ptr(),
          dlcore::vgg_layers(depth, bn),
          tv);
    }
  }
  return checks;
}

// Returns whether every analytical count matches the real module's.
bool check_real_modules(Context& c) {
  const int64_t image = c.s.image;
  const std::vector<ModelCheck> checks = trace_real_modules(c);
  dlcore::CsvTable models_csv(
      {"model",
       "analytical_params",
       "analytical_macs",
       "real_params",
       "real_macs",
       "torchvision_params",
       "match"});
  c.md << "### Analytical vs real modules (" << image << "x" << image << ")\n\n"
       << "| model | params (analytical) | params (real module) | torchvision "
          "| G MACs (analytical) | G MACs (real forward) |\n"
       << "|---|---:|---:|---:|---:|---:|\n";
  bool all_match = true;
  for (const auto& m : checks) {
    const bool match = m.analytical_params == m.real_params &&
                       m.real_params == m.torchvision_params &&
                       m.analytical_macs == m.real_macs;
    all_match = all_match && match;
    models_csv.add_row(
        {m.model,
         m.analytical_params,
         m.analytical_macs,
         m.real_params,
         m.real_macs,
         m.torchvision_params,
         match});
    c.md << "| " << m.model << " | "
         << dlcore::format_thousands(m.analytical_params) << " | "
         << dlcore::format_thousands(m.real_params) << " | "
         << dlcore::format_thousands(m.torchvision_params) << " | "
         << fmt::format("{:.3f}", m.analytical_macs / 1e9) << " | "
         << fmt::format("{:.3f}", m.real_macs / 1e9) << " |\n";
  }
  models_csv.write(c.out.path("models.csv"));
  c.md << "\nAll numbers agree: " << (all_match ? "yes" : "**NO**")
       << ". Files: `alexnet_layers.csv`, `vgg19_layers.csv`, "
          "`receptive_fields.csv`, `inception.csv`, `faster_rcnn.csv`, "
          "`models.csv`, `alexnet_summary.txt`, `vgg19_analysis.txt`.\n";
  return all_match;
}

std::string intro_md(const Settings& s) {
  std::ostringstream md;
  md << "## Problem 2 — CNN architectures: parameters, memory, receptive "
        "fields\n\n"
     << "Analytical numbers from `dlcore::analyze_layers` (pure arithmetic on "
        "layer specs), checked against real LibTorch modules built to match "
        "torchvision (`dlcore::summary` runs a forward pass). Input "
     << s.image << "x" << s.image << "x3, batch " << s.batch
     << ", float32. MACs count convolution and linear multiply-accumulates "
        "(torchvision's \"GFLOPS\" figure); FLOPs = 2 x MACs + bias adds + "
        "batch-norm, activation and pooling operations.\n\n";
  return md.str();
}

} // namespace

int main(int argc, char** argv) try {
  CLI::App app{"Problem 2: CNN architecture analysis"};
  Settings s;
  add_flags(app, s);
  if (const auto rc = ex::parse_flags(app, argc, argv)) {
    return *rc;
  }
  // Every flag is checked before any work; no data set is read.
  check_flags(s);
  s.flags.validate(/*reads_data=*/false);
  const ex::Output out("problem2", s.flags.prepare_out());
  s.flags.apply_threads();
  // The real modules are traced (dlcore::summary) on --device; the
  // analytical tables are arithmetic and need no device.
  const torch::Device device = s.flags.resolve_device();
  torch::manual_seed(s.flags.seed);
  ex::Stopwatch total;
  std::ostringstream md;
  md << intro_md(s);
  Context c{
      s,
      {3, s.image, s.image},
      dlcore::LayerMathOptions().batch_size(s.batch),
      device,
      out,
      md};

  const auto alex = alexnet_table(c);            // 1
  const auto vgg = vgg19_memory(c);              // 2
  receptive_fields(c, alex, vgg);                // 3
  const InceptionResult inc = inception(c);      // 4
  const FasterRcnnResult frcnn = faster_rcnn(c); // 5
  const bool all_match = check_real_modules(c);

  dlcore::Json j = s.flags.to_json();
  j["run"] = s.flags.run_json("problem2");
  j["image_size"] = s.image;
  j["batch_size"] = s.batch;
  j["alexnet_params"] = alex.params;
  j["alexnet_macs"] = alex.macs;
  j["vgg19_params"] = vgg.params;
  j["vgg19_macs"] = vgg.macs;
  j["vgg19_forward_bytes"] = vgg.forward_bytes;
  j["vgg19_backward_bytes"] = vgg.backward_bytes;
  j["inception_naive_macs"] = inc.naive_macs;
  j["inception_reduced_macs"] = inc.reduced_macs;
  j["inception_mac_saving"] = inc.mac_saving;
  j["rpn_head_params"] = frcnn.rpn_params;
  j["faster_rcnn_total_params"] = frcnn.total_params;
  j["all_match"] = all_match;
  j["seconds"] = total.seconds();
  out.write_json("summary.json", j);
  out.write_summary(md.str());
  std::cout << md.str() << "\nwrote " << out.dir().string() << " in "
            << fmt::format("{:.1f}", total.seconds()) << " s\n";
  return all_match ? 0 : 1;
} catch (const std::exception& e) {
  return ex::report_error("problem2", e);
}
