#!/usr/bin/env bash
# Builds everything and runs every test against an official LibTorch instead
# of Debian's: the one of `python3 -c 'import torch'` (the pip wheel), or the
# folder named by $LIBTORCH (an unpacked LibTorch zip).
#
#   scripts/test-official-libtorch.sh                 the pip wheel's LibTorch
#   LIBTORCH=/opt/libtorch scripts/test-official-libtorch.sh
#
# Catch2, CLI11, fmt and zlib come from the system (Debian: scripts/setup.sh
# installs them) or from CMAKE_PREFIX_PATH. Gloo's headers are not needed:
# without them the multi-rank tests report that they were skipped. Builds in
# build-official/ (or $DLCORE_BUILD_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${LIBTORCH:-}" ]]; then
  torch_prefix=$LIBTORCH
else
  torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)') || {
    echo "test-official-libtorch: python3 cannot import torch; set LIBTORCH to an unpacked LibTorch" >&2
    exit 1
  }
fi
build=${DLCORE_BUILD_DIR:-build-official}
prefix="$torch_prefix${CMAKE_PREFIX_PATH:+;$CMAKE_PREFIX_PATH}"
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" -DDLCORE_BUILD_TESTS=ON \
  -DDLCORE_BUILD_EXAMPLES=ON -DDLCORE_BUILD_BENCHMARKS=ON -DDLCORE_TEST_FILTER=
cmake --build "$build" -j "${DLCORE_JOBS:-$(nproc)}"
export OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
ctest --test-dir "$build" --output-on-failure --no-tests=error \
  -j "${DLCORE_JOBS:-$(nproc)}" --timeout 600
