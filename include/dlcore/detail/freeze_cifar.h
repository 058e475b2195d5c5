#pragma once

#include <c10/util/Exception.h>

#include <sys/stat.h>
#include <string>

namespace dlcore {
namespace detail {
inline bool freeze_cifar_is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
// `dir` itself, or its subfolder `sub` (the archives' folder name), whichever
// holds `probe`.
inline std::string freeze_cifar_resolve(
    const std::string& dir,
    const std::string& sub,
    const std::string& probe,
    const char* owner) {
  if (freeze_cifar_is_file(dir + "/" + probe)) {
    return dir;
  }
  if (freeze_cifar_is_file(dir + "/" + sub + "/" + probe)) {
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
