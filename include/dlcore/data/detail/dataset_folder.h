#pragma once

#include <dlcore/detail/fs.h>

#include <c10/util/Exception.h>

#include <string>

namespace dlcore {
namespace detail {
// `dir` itself, or its subfolder `sub` (the archives' folder name), whichever
// holds `probe`.
inline std::string resolve_dataset_folder(
    const std::string& dir,
    const std::string& sub,
    const std::string& probe,
    const char* owner) {
  if (is_regular_file(dir + "/" + probe)) {
    return dir;
  }
  if (is_regular_file(dir + "/" + sub + "/" + probe)) {
    return dir + "/" + sub;
  }
  TORCH_CHECK(
      false,
      owner,
      ": expected '",
      probe,
      "' in '",
      dir,
      "' or '",
      dir,
      "/",
      sub,
      "', but found it in neither");
  return dir;
}
} // namespace detail
} // namespace dlcore
