#pragma once

// Whole files: atomic writes and checked reads (POSIX calls only, see
// detail/fs.h).

#include <dlcore/detail/atomic_file.h>
#include <dlcore/detail/regular_file.h>

#include <string>
#include <vector>

namespace dlcore {

/// Writes `contents` to `path` atomically: into a temporary file in the same
/// folder, which is synced and then renamed over `path` (`std::rename`), so a
/// reader sees the old file or the new one, never a partial one. Missing
/// parent folders are created, and temporary files that killed saves of the
/// same `path` left behind are removed first.
///
/// On failure (unwritable folder, full disk, ...) the temporary file is
/// removed, an existing `path` is left intact, and a `c10::Error` names the
/// path and the reason.
///
/// Example:
///   dlcore::write_file_atomic("results/problem1/summary.md", text);
inline void write_file_atomic(
    const std::string& path, const std::string& contents) {
  detail::write_file_atomic(path, contents, "write_file_atomic");
}

/// The whole content of the regular file `path`. A FIFO, device or folder is
/// refused before it is opened (nothing can block); a `c10::Error` names the
/// path and the reason when the file cannot be read.
///
/// Example:
///   std::string text = dlcore::read_file("results/problem1/summary.md");
inline std::string read_file(const std::string& path) {
  const std::vector<char> bytes = detail::read_regular_file(path, "read_file");
  return std::string(bytes.begin(), bytes.end());
}

} // namespace dlcore
