#pragma once

// Tensors and module weights in the safetensors format: an 8-byte header
// length, a JSON header, raw little-endian tensor bytes; no code and no
// pickle, so a file from anywhere can be read without trusting it.

#include <dlcore/detail/atomic_file.h>
#include <dlcore/detail/module_handle.h>
#include <dlcore/nn/checkpoint.h>
#include <dlcore/nn/detail/safetensors_format.h>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/nn/module.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cstdint>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace dlcore {

/// The largest safetensors header the readers accept, in bytes (the bound of
/// the reference implementation).
constexpr uint64_t kSafetensorsMaxHeaderBytes =
    detail::kSafetensorsMaxHeaderBytes;

/// The `__metadata__` key under which dlcore's writer stores the CRC-32s of
/// the header and the data ("header=xxxxxxxx,data=xxxxxxxx"), and which its
/// readers verify when present.
constexpr const char* kSafetensorsChecksumKey = detail::kSafetensorsCrcKey;

/// Everything a safetensors file holds.
struct SafetensorsFile {
  /// Tensors by name: CPU, contiguous, with the file's dtypes and shapes.
  std::map<std::string, torch::Tensor> tensors;
  /// The `__metadata__` entries, including dlcore's checksum entry when the
  /// file has one.
  std::map<std::string, std::string> metadata;
  /// Whether the file held dlcore's checksum entry (it then matched, or the
  /// read would have failed). Files from other writers have none.
  bool checksum_verified = false;
};

/// Writes `tensors` (by name) and `metadata` to `path` in the safetensors
/// format, atomically (a temporary file in the same folder, synced, then a
/// rename: on failure `path` is left as it was). Tensors are written from
/// CPU contiguous copies, laid out as the reference writer does (decreasing
/// dtype alignment, then name), with the header padded with spaces to a
/// multiple of 8 bytes. `__metadata__` holds `metadata` plus dlcore's
/// checksum entry (`kSafetensorsChecksumKey`), which Python's `safetensors`
/// ignores.
///
/// Dtypes: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL. Names must be
/// distinct UTF-8 strings other than "__metadata__"; metadata keys and values
/// UTF-8, and no key equal to (or one byte from) the checksum key.
///
/// Example:
///   dlcore::save_safetensors({{"mean", mean}, {"std", std}},
///   "stats.safetensors",
///                            {{"format", "pt"}});
///
/// Python reads it with `safetensors.torch.load_file(path)`.
inline void save_safetensors(
    const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
    const std::string& path,
    const std::map<std::string, std::string>& metadata = {}) {
  const std::string bytes = detail::serialize_safetensors(
      detail::safetensors_cpu_tensors(
          tensors, metadata, "save_safetensors", path),
      metadata);
  detail::write_file_atomic(path, bytes, "save_safetensors");
}

/// Reads a safetensors file without trusting it: `path` must be a regular
/// file (FIFOs, devices and folders are refused before opening); the header
/// length is checked against the file and `kSafetensorsMaxHeaderBytes`; the
/// header must be a JSON object of the format's schema with no duplicate
/// keys; every dtype must be known, every shape's size must fit int64,
/// every entry's data_offsets must span exactly shape x item size, and the
/// entries must cover the data area exactly (no gap, no overlap, no
/// trailing bytes); BOOL bytes must be 0 or 1. When the file has dlcore's
/// checksum entry, the CRC-32s of header and data must match. Any problem
/// is a `c10::Error` naming the file and the entry.
///
/// Example:
///   auto file = dlcore::read_safetensors_file("stats.safetensors");
///   torch::Tensor mean = file.tensors.at("mean");
inline SafetensorsFile read_safetensors_file(const std::string& path) {
  auto contents = detail::read_safetensors_contents(path, "read_safetensors");
  SafetensorsFile out;
  for (auto& [name, tensor] : contents.tensors) {
    out.tensors.emplace(name, std::move(tensor));
  }
  out.metadata = std::move(contents.metadata);
  out.checksum_verified = contents.checksum_verified;
  return out;
}

/// The tensors of a safetensors file by name (`read_safetensors_file`
/// without the metadata); the same checks.
///
/// Example:
///   auto tensors = dlcore::read_safetensors("model.safetensors");
inline std::map<std::string, torch::Tensor> read_safetensors(
    const std::string& path) {
  return read_safetensors_file(path).tensors;
}

/// Writes `module`'s state (parameters and buffers by dotted name, as
/// `state_dict`) to `path` as safetensors, atomically; see
/// `save_safetensors`. Python loads it with
/// `model.load_state_dict(safetensors.torch.load_file(path))`.
///
/// Example:
///   dlcore::save_weights_safetensors(net, "out/backbone.safetensors");
inline void save_weights_safetensors(
    ConstModuleRef module,
    const std::string& path,
    const std::map<std::string, std::string>& metadata = {}) {
  const std::string bytes = detail::serialize_safetensors(
      detail::safetensors_cpu_tensors(
          state_dict(module.get("save_weights_safetensors")),
          metadata,
          "save_weights_safetensors",
          path),
      metadata);
  detail::write_file_atomic(path, bytes, "save_weights_safetensors");
}

/// Loads the parameters and buffers of `module` from the safetensors file
/// `path` by dotted name, after reading it with every check of
/// `read_safetensors_file` and comparing names, shapes and dtypes: every
/// missing and unexpected name (when `options.strict()`), every shape and
/// every dtype mismatch is reported in one error, and nothing is modified
/// unless all checks pass. Values are copied in place (the module's tensors
/// keep their identity and device, so optimizers holding them stay valid).
///
/// Example:
///   auto report = dlcore::load_weights_safetensors(net,
///       "backbone.safetensors",
///       dlcore::LoadWeightsOptions().ignore("^fc\\."));
///
/// Differences from PyTorch (Python): as `load_state_dict(strict)`, plus the
/// `ignore` pattern, except that a dtype mismatch is an error (PyTorch
/// converts silently): convert the model, or read the file with
/// `read_safetensors` and convert the tensors.
inline LoadWeightsReport load_weights_safetensors(
    ModuleRef module,
    const std::string& path,
    const LoadWeightsOptions& options = {}) {
  const std::string owner = "load_weights_safetensors";
  auto& m = module.get("load_weights_safetensors");
  const auto ignore = detail::weights_ignore_regex(options, owner);
  auto file = detail::read_safetensors_contents(path, owner);
  std::map<std::string, torch::Tensor> tensors;
  for (auto& [name, tensor] : file.tensors) {
    tensors.emplace(name, std::move(tensor));
  }
  // The file's dtypes must match: safetensors names them (F32, BF16, ...).
  auto dtype_name = [](c10::ScalarType type) {
    const auto* d = detail::safetensors_dtype(type);
    return d != nullptr ? std::string(d->name)
                        : std::string(c10::toString(type));
  };
  return detail::load_matching_weights(
      m, tensors, options, ignore, owner, path, dtype_name);
}

} // namespace dlcore
