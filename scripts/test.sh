#!/usr/bin/env bash
# Command 2: set up, configure, build and run every test.
#
#   scripts/test.sh                 Release build in build/, then ctest
#   DLCORE_SANITIZE=1 scripts/test.sh   ASan+UBSan build in build-sanitize/
#
# Runs the unit tests, the ODR and consumer-project checks, the formatting
# check and every example at --scale quick.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

scripts/setup.sh

jobs=${DLCORE_JOBS:-$(nproc)}
if [[ "${DLCORE_SANITIZE:-0}" == 1 ]]; then
  build=${DLCORE_BUILD_DIR:-build-sanitize}
  extra=(-DDLCORE_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
         -DDLCORE_BUILD_BENCHMARKS=OFF)
else
  build=${DLCORE_BUILD_DIR:-build}
  extra=(-DCMAKE_BUILD_TYPE=Release)
fi

scripts/check-format.sh

cmake -S "$root" -B "$build" -G Ninja -DDLCORE_WERROR=ON "${extra[@]}"
cmake --build "$build" -j "$jobs"

export OPENBLAS_NUM_THREADS=1
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
if [[ "${DLCORE_SANITIZE:-0}" == 1 ]]; then
  # LibTorch's own libraries are not instrumented; their one-off allocations at
  # start-up are not ours to report.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
fi
ctest --test-dir "$build" --output-on-failure -j "$jobs"
