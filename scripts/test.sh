#!/usr/bin/env bash
# Command 2: set up, configure, build and run every test.
#
#   scripts/test.sh                 Release build in build/, then ctest
#   DLCORE_SANITIZE=1 scripts/test.sh   ASan+UBSan build in build-sanitize/
#
# Runs the unit tests, the ODR, link-order, consumer-project, CLI and layer
# checks, the formatting check, every example at --scale quick, and the
# compile check of every translation unit against LibTorch 2.x's headers
# (scripts/check-torch2.sh; it says so when it has no headers to use).
#
# Every CMake option the suite depends on is set here explicitly, so a build
# folder configured by scripts/run-all.sh (examples only) cannot hide tests.
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
  extra=(-DCMAKE_BUILD_TYPE=Release -DDLCORE_BUILD_BENCHMARKS=ON)
fi

scripts/check-format.sh

cmake -S "$root" -B "$build" -G Ninja -DDLCORE_WERROR=ON \
  -DDLCORE_BUILD_TESTS=ON -DDLCORE_BUILD_EXAMPLES=ON -DDLCORE_TEST_FILTER= \
  "${extra[@]}"
cmake --build "$build" -j "$jobs"

if [[ "${DLCORE_SANITIZE:-0}" != 1 ]]; then
  scripts/check-torch2.sh
fi

export OPENBLAS_NUM_THREADS=1
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
if [[ "${DLCORE_SANITIZE:-0}" == 1 ]]; then
  # LibTorch's own libraries are not instrumented; their one-off allocations at
  # start-up are not ours to report.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
ctest --test-dir "$build" --output-on-failure --no-tests=error -j "$jobs" \
  2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if ((rc != 0)); then
  exit "$rc"
fi

# The suite that must have run: every (non-hidden) unit test case the test
# binary holds, one smoke run per example, and the fixed checks; exactly
# those (a test name that CMake split in two would add a test that runs
# nothing).
units=$("$build/tests/dlcore_tests" --list-test-names-only | grep -c . || true)
examples=$(ls examples/*.cpp | wc -l)
fixed=$(ctest --test-dir "$build" -N -R '^(odr|consumer|link|cli|layers|docs)\.' |
  sed -n 's/^Total Tests: //p')
expected=$((units + examples + fixed))
ran=$(sed -n 's/.* tests passed, [0-9]* tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -1)
if [[ -z "$ran" || "$ran" -ne "$expected" || "$units" -lt 100 ]]; then
  echo "test.sh: FAILED - ctest ran ${ran:-no} tests, but the suite defines $expected" \
    "($units unit test cases, $examples examples, $fixed checks)" >&2
  exit 1
fi
echo "test.sh: all $ran tests ran ($units unit test cases, $examples examples, $fixed checks)"
