#!/usr/bin/env bash
# Fails when a C++ file differs from .clang-format's style (skipped, with a
# note, when clang-format is not installed).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v clang-format >/dev/null; then
  echo "check-format: clang-format not installed; skipped"
  exit 0
fi
mapfile -t files < <(git ls-files -co --exclude-standard -- \
  'include/*.h' 'tests/*.cpp' 'tests/*.h' 'examples/*.cpp' 'examples/*.h' \
  'benchmarks/*.cpp' 'benchmarks/*.h' | sort -u)
bad=0
for f in "${files[@]}"; do
  [[ -f "$f" ]] || continue
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
    echo "check-format: $f is not formatted (run: clang-format -i $f)"
    bad=1
  fi
done
if ((bad)); then exit 1; fi
echo "check-format: ${#files[@]} files formatted"
