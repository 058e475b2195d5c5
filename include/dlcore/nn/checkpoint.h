#pragma once

// Saving and loading module weights by name, with every name and shape
// mismatch reported before anything is loaded.

#include <dlcore/detail/archive.h>
#include <dlcore/detail/atomic_file.h>
#include <dlcore/detail/module_handle.h>
#include <dlcore/detail/regular_file.h>
#include <dlcore/nn/detail/archive_names.h>

#include <ATen/core/Dict.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>
#include <c10/util/Exception.h>
#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/serialize.h>
#include <torch/serialize/input-archive.h>
#include <torch/utils.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace dlcore {

/// A module's state: every parameter and buffer by dotted name (as
/// `named_parameters()` / `named_buffers()`), parameters first, in
/// registration order — the order and names of PyTorch's `state_dict()`
/// up to the interleaving of parameters and buffers.
inline std::vector<std::pair<std::string, torch::Tensor>> state_dict(
    ConstModuleRef module) {
  const torch::nn::Module& m = module.get("state_dict");
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : m.named_parameters(/*recurse=*/true)) {
    out.emplace_back(p.key(), p.value());
  }
  for (const auto& b : m.named_buffers(/*recurse=*/true)) {
    out.emplace_back(b.key(), b.value());
  }
  return out;
}

/// Writes `module`'s state (parameters and buffers by dotted name) to
/// `path` as a pickled dict of tensors, atomically (a temporary file in the
/// same folder, synced, then a rename): on failure `path` is left as it
/// was and no temporary file remains. Python reads it with `torch.load(path)`
/// and `model.load_state_dict(...)`.
///
/// Example:
///   dlcore::save_weights(net, "out/backbone.pt");
///
/// Differences from LibTorch: `torch::save(module, path)` writes a nested
/// TorchScript archive that Python's `load_state_dict` cannot use directly;
/// `load_weights` reads both.
inline void save_weights(ConstModuleRef module, const std::string& path) {
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& [name, tensor] : state_dict(module.get("save_weights"))) {
    dict.insert(name, tensor.detach().cpu());
  }
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
  detail::write_file_atomic(path, bytes.data(), bytes.size(), "save_weights");
}

namespace detail {

// read_weights, with `kOwner` naming the public function in every error.
inline std::map<std::string, torch::Tensor> read_weights_as(
    const std::string& path, const char* kOwner) {
  const std::vector<char> bytes = detail::read_regular_file(path, kOwner);
  detail::check_archive(bytes.data(), bytes.size(), path, kOwner);
  std::map<std::string, torch::Tensor> out;
  std::string pickle_error;
  try {
    const auto value = detail::archive_errors_named(
        path, kOwner, [&] { return torch::pickle_load(bytes); });
    if (value.isGenericDict()) {
      bool all_tensors = true;
      for (const auto& item : value.toGenericDict()) {
        if (!item.key().isString() || !item.value().isTensor()) {
          all_tensors = false;
          break;
        }
        out[item.key().toStringRef()] = item.value().toTensor();
      }
      if (all_tensors) {
        return out;
      }
      pickle_error = "a dict whose entries are not all string -> tensor";
    } else {
      pickle_error = "a " + value.tagKind() + ", not a dict";
    }
  } catch (const c10::Error& e) {
    pickle_error = e.what_without_backtrace();
  }
  out.clear();
  try {
    detail::archive_errors_named(path, kOwner, [&] {
      torch::serialize::InputArchive archive;
      archive.load_from(bytes.data(), bytes.size());
      detail::flatten_archive_names(archive, "", out);
    });
    return out;
  } catch (const c10::Error& e) {
    TORCH_CHECK(
        false,
        kOwner,
        ": expected '",
        path,
        "' to hold a pickled dict of tensors (save_weights, Python's "
        "torch.save(dict(model.state_dict())) -- LibTorch cannot read an "
        "OrderedDict) or a torch::save(module) archive, but it is neither "
        "(as a pickle: ",
        pickle_error.substr(0, 200),
        "; as an archive: ",
        std::string(e.what_without_backtrace()).substr(0, 200),
        ")");
  }
  return out;
}

} // namespace detail

/// Reads the tensors of a weights file by dotted name. Accepts a pickled
/// dict of tensors (`save_weights`, or Python's
/// `torch.save(dict(model.state_dict()), path)`) and LibTorch's
/// `torch::save(module, path)` archives. A file that is neither is an error
/// naming it.
///
/// Before LibTorch parses the file, only a regular file is opened (a FIFO,
/// device or directory is refused), and the archive is checked by
/// `detail::check_archive` (zip structure, CRC-32 of every entry, a bounded
/// walk of the pickles): a damaged file is an error naming it and what is
/// wrong. Files that pass are still trusted input (see docs/reliability.md).
///
/// Differences from PyTorch (Python): LibTorch 1.13's unpickler cannot
/// rebuild a `collections.OrderedDict`, which `state_dict()` returns, so a
/// Python checkpoint must be saved as a plain `dict(...)`.
inline std::map<std::string, torch::Tensor> read_weights(
    const std::string& path) {
  return detail::read_weights_as(path, "read_weights");
}

/// Options of `load_weights`.
struct LoadWeightsOptions {
  /// Whether names in the model but not the file (missing) or in the file
  /// but not the model (unexpected) are errors. Shape mismatches are errors
  /// either way. Default: true
  TORCH_ARG(bool, strict) = true;
  /// ECMAScript regex; names in which it is found (either side) are
  /// neither loaded nor reported, e.g. "^fc\\." to keep a new head.
  /// Default: "" (nothing ignored)
  TORCH_ARG(std::string, ignore) = "";

 public:
};

/// What `load_weights` did, by dotted name.
struct LoadWeightsReport {
  /// Copied into the model.
  std::vector<std::string> loaded;
  /// In the model, not in the file (left as they were).
  std::vector<std::string> missing;
  /// In the file, not in the model (not used).
  std::vector<std::string> unexpected;
  /// Skipped by the `ignore` pattern.
  std::vector<std::string> ignored;
};

namespace detail {

/// `options.ignore()` compiled, or nullopt when empty; a bad pattern is an
/// error naming `owner`.
inline std::optional<std::regex> weights_ignore_regex(
    const LoadWeightsOptions& options, const std::string& owner) {
  if (options.ignore().empty()) {
    return std::nullopt;
  }
  try {
    return std::regex(options.ignore(), std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    TORCH_CHECK(
        false,
        owner,
        ": expected ignore to be a valid ECMAScript regex, but got '",
        options.ignore(),
        "' (",
        e.what(),
        ")");
  }
  return std::nullopt;
}

/// The format-independent part of loading weights: matches the tensors read
/// from `path` against `module`'s parameters and buffers by dotted name,
/// reports every missing and unexpected name (when strict), every shape
/// mismatch and, when `dtype_name` is given, every dtype mismatch (named by
/// it) in one error naming `owner`, and copies only when all checks pass.
inline LoadWeightsReport load_matching_weights(
    torch::nn::Module& module,
    const std::map<std::string, torch::Tensor>& file,
    const LoadWeightsOptions& options,
    const std::optional<std::regex>& ignore,
    const std::string& owner,
    const std::string& path,
    const std::function<std::string(c10::ScalarType)>& dtype_name = {}) {
  auto ignored = [&](const std::string& name) {
    return ignore.has_value() && std::regex_search(name, *ignore);
  };
  LoadWeightsReport report;
  std::vector<std::string> shape_errors;
  std::vector<std::string> dtype_errors;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
  std::set<std::string> seen;
  for (const auto& [name, target] : state_dict(module)) {
    seen.insert(name);
    if (ignored(name)) {
      report.ignored.push_back(name);
      continue;
    }
    const auto it = file.find(name);
    if (it == file.end()) {
      report.missing.push_back(name);
      continue;
    }
    if (!target.defined() || it->second.sizes() != target.sizes()) {
      std::ostringstream s;
      s << name << ": file " << it->second.sizes() << " vs model ";
      if (target.defined()) {
        s << target.sizes();
      } else {
        s << "undefined";
      }
      shape_errors.push_back(s.str());
      continue;
    }
    if (dtype_name && it->second.scalar_type() != target.scalar_type()) {
      dtype_errors.push_back(
          name + ": file " + dtype_name(it->second.scalar_type()) +
          " vs model " + dtype_name(target.scalar_type()));
      continue;
    }
    report.loaded.push_back(name);
    copies.emplace_back(target, it->second);
  }
  for (const auto& entry : file) {
    if (seen.count(entry.first)) {
      continue;
    }
    if (ignored(entry.first)) {
      report.ignored.push_back(entry.first);
    } else {
      report.unexpected.push_back(entry.first);
    }
  }
  auto section = [](const std::string& title,
                    const std::vector<std::string>& items) {
    std::string s =
        "\n  " + title + " (" + std::to_string(items.size()) + "): ";
    for (std::size_t i = 0; i < items.size(); ++i) {
      s += (i == 0 ? "" : ", ") + items[i];
    }
    return s;
  };
  const bool name_errors = options.strict() && (!report.missing.empty() ||
                                                !report.unexpected.empty());
  if (!shape_errors.empty() || !dtype_errors.empty() || name_errors) {
    std::string message = owner + ": '" + path +
                          "' does not match the model (nothing was loaded):";
    if (!shape_errors.empty()) {
      message += section("shape mismatches", shape_errors);
    }
    if (!dtype_errors.empty()) {
      message += section("dtype mismatches", dtype_errors);
    }
    if (options.strict() && !report.missing.empty()) {
      message += section("missing in the file", report.missing);
    }
    if (options.strict() && !report.unexpected.empty()) {
      message += section("unexpected in the file", report.unexpected);
    }
    if (name_errors) {
      message +=
          "\n  (pass LoadWeightsOptions().strict(false) to load the "
          "matching names, or ignore(regex) to skip some)";
    }
    TORCH_CHECK(false, message);
  }
  torch::NoGradGuard no_grad;
  for (auto& [target, source] : copies) {
    target.copy_(source);
  }
  return report;
}

} // namespace detail

/// Loads the parameters and buffers of `module` from `path` by dotted name,
/// after comparing names and shapes: every missing and unexpected name (when
/// `strict`) and every shape mismatch is reported in one error, and nothing
/// is modified unless all checks pass. Values are copied in place (the
/// module's tensors keep their identity, device and dtype, so optimizers
/// holding them stay valid).
///
/// Example:
///   auto report = dlcore::load_weights(net, "backbone.pt",
///       dlcore::LoadWeightsOptions().ignore("^fc\\."));
///
/// Differences from PyTorch (Python): as `load_state_dict(strict)`, plus the
/// `ignore` pattern; PyTorch also reports all problems at once. Differences
/// from LibTorch: `torch::load(module, path)` stops at the first problem
/// with a message that does not name the shapes.
inline LoadWeightsReport load_weights(
    ModuleRef module,
    const std::string& path,
    const LoadWeightsOptions& options = {}) {
  auto& m = module.get("load_weights");
  const auto ignore = detail::weights_ignore_regex(options, "load_weights");
  return detail::load_matching_weights(
      m,
      detail::read_weights_as(path, "load_weights"),
      options,
      ignore,
      "load_weights",
      path);
}

} // namespace dlcore
