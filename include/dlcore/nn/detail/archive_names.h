#pragma once

#include <ATen/core/Tensor.h>
#include <torch/serialize/input-archive.h>

#include <map>
#include <string>

namespace dlcore {
namespace detail {

/// Flattens a (nested) `torch::save(module)` archive into dotted names.
inline void flatten_archive_names(
    torch::serialize::InputArchive& archive,
    const std::string& prefix,
    std::map<std::string, torch::Tensor>& out) {
  for (const auto& key : archive.keys()) {
    const std::string name = prefix.empty() ? key : prefix + "." + key;
    torch::Tensor t;
    if (archive.try_read(key, t, /*is_buffer=*/false) ||
        archive.try_read(key, t, /*is_buffer=*/true)) {
      out[name] = t;
      continue;
    }
    torch::serialize::InputArchive sub;
    if (archive.try_read(key, sub)) {
      flatten_archive_names(sub, name, out);
    }
  }
}

} // namespace detail
} // namespace dlcore
