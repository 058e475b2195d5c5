#!/usr/bin/env bash
# The sanitizer subset CI runs: the unit tests of the code that reads files
# and untrusted state (the IDX reader; the corruption suite: every loader,
# the archive guard, JSON; the state format), the selector, the resampler,
# label noise and CyclicLR's arithmetic, built with AddressSanitizer and
# UndefinedBehaviorSanitizer in build-sanitize-subset/. Any report fails the
# run.
#
#   scripts/test-sanitize.sh            the subset
#   DLCORE_SANITIZE_FILTER=<regex> scripts/test-sanitize.sh   other test files
#
# The whole suite under the sanitizers: DLCORE_SANITIZE=1 scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

scripts/setup.sh

build=${DLCORE_BUILD_DIR:-build-sanitize-subset}
filter=${DLCORE_SANITIZE_FILTER:-'test_(idx|corruption|pseudo_label|hashtag_resampler|label_noise|cyclic_lr|state)\.cpp'}
jobs=${DLCORE_JOBS:-$(nproc)}

cmake -S "$root" -B "$build" -G Ninja -DDLCORE_WERROR=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDLCORE_SANITIZE=ON \
  -DDLCORE_BUILD_TESTS=ON -DDLCORE_BUILD_EXAMPLES=OFF \
  -DDLCORE_BUILD_BENCHMARKS=OFF "-DDLCORE_TEST_FILTER=$filter"
cmake --build "$build" -j "$jobs" --target dlcore_tests

export OPENBLAS_NUM_THREADS=1
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
# LibTorch's own libraries are not instrumented; their one-off allocations at
# start-up are not ours to report. Any other report aborts the test binary.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cases=$("$build/tests/dlcore_tests" --list-test-names-only | grep -c . || true)
if ((cases < 50)); then
  echo "test-sanitize: only $cases test cases matched '$filter'" >&2
  exit 1
fi
"$build/tests/dlcore_tests"
echo "test-sanitize: $cases test cases clean under ASan + UBSan ($filter)"
