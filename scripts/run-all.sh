#!/usr/bin/env bash
# Command 1, the main job: set up, build the example programs, run every
# homework reproduction and write results/REPORT.md with all tables and plots.
#
#   scripts/run-all.sh                       default scale into results/
#   scripts/run-all.sh --scale full          the homework's own scale (far longer)
#   scripts/run-all.sh --scale quick --out /tmp/r    a smoke run of seconds
#
# Any further flags (--seed, --threads, --data-dir) go to every program.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

scale=default
out=results
pass=()
while (($#)); do
  case "$1" in
    --scale) scale=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) pass+=("$1"); shift ;;
  esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)

scripts/setup.sh

# OpenBLAS at one thread (LibTorch parallelizes above it) and idle OpenMP
# threads that sleep rather than spin: see DEVELOPERS.md, Threads.
export OPENBLAS_NUM_THREADS=1
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

build=${DLCORE_BUILD_DIR:-build}
# Only the options this script needs are set; the build folder is shared
# with scripts/test.sh, which sets its own explicitly, in either order.
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DDLCORE_BUILD_EXAMPLES=ON >/dev/null

# The homework problems, in order. Each writes <out>/<program>/summary.md.
programs=(problem1 problem2 problem3 problem4_semi problem4_weak)
available=()
for p in "${programs[@]}"; do
  [[ -f examples/$p.cpp ]] && available+=("$p")
done
cmake --build "$build" -j "$(nproc)" --target "${available[@]}"

# Each program records its run (commit, LibTorch, threads, device, scale)
# in its JSON summary; scripts/assemble-report.py builds the report's header
# and sections from those records.
results=()
status=0
for p in "${available[@]}"; do
  echo "==> $p --scale $scale"
  # A failed run must not leave an earlier run's section in the report.
  rm -f "$out/$p/summary.md" "$out/$p/summary.json" "$out/$p/results.json"
  start=$(date +%s.%N)
  if "$build/examples/$p" --scale "$scale" --out "$out/$p" "${pass[@]}"; then
    result=ok
  else
    result=FAILED
    status=1
  fi
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  results+=("$p:$result:$secs")
done

python3 scripts/assemble-report.py --out "$out" --scale "$scale" "${results[@]}"
exit $status
