#!/usr/bin/env bash
# Compiles every translation unit of the project (-fsyntax-only) against the
# official LibTorch 2.x headers, put ahead of Debian's 1.13 on the include
# path: the ODR units (every public header), every test, example, benchmark
# and the consumer program. Proves that the code compiles on both LibTorch
# worlds; it links nothing (the archive holds headers only).
#
#   scripts/check-torch2.sh                  headers from $DLCORE_TORCH2_HEADERS
#   DLCORE_TORCH2_HEADERS=/path/to/archive.tar.xz scripts/check-torch2.sh
#   DLCORE_TORCH2_INCLUDE=/opt/libtorch/include scripts/check-torch2.sh
#
# DLCORE_TORCH2_INCLUDE names an unpacked include folder (of the LibTorch zip
# or of the pip wheel's torch/); otherwise DLCORE_TORCH2_HEADERS names a
# .tar.xz holding include/ (default: ../shared/libtorch/libtorch-2.11.0-headers.tar.xz
# beside the clone). Where neither exists the check says so and skips (exit 0).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

include=${DLCORE_TORCH2_INCLUDE:-}
if [[ -z "$include" ]]; then
  archive=${DLCORE_TORCH2_HEADERS:-$root/../shared/libtorch/libtorch-2.11.0-headers.tar.xz}
  if [[ ! -f "$archive" ]]; then
    echo "check-torch2: SKIPPED - no LibTorch 2.x headers at '$archive'"
    echo "check-torch2: set DLCORE_TORCH2_HEADERS (a .tar.xz with include/) or"
    echo "check-torch2: DLCORE_TORCH2_INCLUDE (an unpacked include folder) to run it"
    exit 0
  fi
  cache=${DLCORE_TORCH2_CACHE:-$root/build-torch2}
  stamp=$cache/.unpacked-$(stat -c '%s-%Y' "$archive")
  if [[ ! -f "$stamp" ]]; then
    rm -rf "$cache/include" "$cache/share" "$cache"/.unpacked-*
    mkdir -p "$cache"
    xz -dc "$archive" | tar -x -C "$cache"
    touch "$stamp"
  fi
  include=$cache/include
fi
[[ -d "$include/torch/csrc/api/include" ]] || {
  echo "check-torch2: '$include' is not a LibTorch include folder" >&2
  exit 1
}
version=$(cat "$include/torch/csrc/api/include/torch/version.h" \
  "$include/torch/headeronly/version.h" 2>/dev/null |
  awk '/#define TORCH_VERSION_(MAJOR|MINOR|PATCH) / { v[$2] = $3 }
       END { if (v["TORCH_VERSION_MAJOR"] != "")
               print v["TORCH_VERSION_MAJOR"] "." v["TORCH_VERSION_MINOR"] "." v["TORCH_VERSION_PATCH"] }' || true)

flags=(-std=c++17 -D_GLIBCXX_USE_CXX11_ABI=1 -Wall -Wextra -Werror
       -DUSE_DISTRIBUTED -DUSE_C10D_GLOO
       -DDLCORE_TEST_DATA_DIR=\""$root/tests/data"\" -DDLCORE_SOURCE_DIR=\""$root"\"
       -I"$root/include" -isystem "$include"
       -isystem "$include/torch/csrc/api/include")

# Two variants, like the two ways users get LibTorch 2.x: without Gloo's
# headers (the official zip and wheel ship none: every unit) and with them
# (the units that include distributed/process_group.h).
gloo_units=(tests/odr/odr_a.cpp tests/odr/odr_b.cpp tests/test_distributed.cpp
            benchmarks/bench_pseudo_label.cpp)

# unit, precompiled header (what CMake force-includes), variant
units=()
for f in tests/test_*.cpp; do units+=("$f:tests/pch.h:nogloo"); done
for f in tests/odr/*.cpp tests/consumers/*/*.cpp; do units+=("$f::nogloo"); done
for f in examples/*.cpp benchmarks/*.cpp; do units+=("$f:cmake/pch.h:nogloo"); done
for f in "${gloo_units[@]}"; do
  case $f in
    tests/test_*) units+=("$f:tests/pch.h:gloo") ;;
    tests/*) units+=("$f::gloo") ;;
    *) units+=("$f:cmake/pch.h:gloo") ;;
  esac
done

jobs=${DLCORE_JOBS:-$(nproc)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export work

# The program of docs/pipeline.md, extracted as the build does.
python3 "$root/scripts/extract-doc-program.py" docs/pipeline.md "$work/pipeline_doc.cpp"
units+=("$work/pipeline_doc.cpp::nogloo")

# The precompiled headers, built once per variant with the units' flags, cut
# the check from minutes per core to seconds per unit.
for variant in nogloo gloo; do
  mkdir -p "$work/$variant"
  for pch in tests/pch.h cmake/pch.h; do
    # A wrapper, as CMake does, so the header is not the main file.
    echo "#include \"$root/$pch\"" >"$work/$variant/$(echo "$pch" | tr / _).hxx"
  done
done
printf '%s\n' nogloo:tests/pch.h nogloo:cmake/pch.h gloo:tests/pch.h gloo:cmake/pch.h |
  xargs -P "$jobs" -I{} bash -c '
    variant=${1%%:*}; pch=${1#*:}; shift
    extra=(); [[ $variant == nogloo ]] && extra=(-DDLCORE_NO_GLOO)
    wrapper=$work/$variant/$(echo "$pch" | tr / _).hxx
    ${CXX:-g++} "$@" "${extra[@]}" -x c++-header "$wrapper" -o "$wrapper.gch" \
      >"$wrapper.err" 2>&1 ||
      { echo "check-torch2: cannot precompile $pch ($variant)"; cat "$wrapper.err"; exit 255; }' \
    _ {} "${flags[@]}"

echo "check-torch2: ${#units[@]} translation units against LibTorch ${version:-?} ($include)"
export work
printf '%s\n' "${units[@]}" | xargs -P "$jobs" -I{} bash -c '
  IFS=: read -r unit pch variant <<<"$1"; shift
  extra=(); [[ $variant == nogloo ]] && extra+=(-DDLCORE_NO_GLOO)
  [[ -n "$pch" ]] && extra+=(-include "$work/$variant/$(echo "$pch" | tr / _).hxx")
  name=$(echo "$unit.$variant" | tr / _)
  if ${CXX:-g++} -fsyntax-only "$@" "${extra[@]}" "$unit" >"$work/$name.err" 2>&1; then
    echo ok >"$work/$name.status"
  else
    echo FAILED >"$work/$name.status"
  fi' _ {} "${flags[@]}"

failed=0
for u in "${units[@]}"; do
  IFS=: read -r unit pch variant <<<"$u"
  name=$(echo "$unit.$variant" | tr / _)
  if [[ "$(cat "$work/$name.status" 2>/dev/null)" != ok ]]; then
    failed=$((failed + 1))
    echo "check-torch2: FAILED $unit ($variant)"
    head -c 6000 "$work/$name.err"
  fi
done
echo "check-torch2: $((${#units[@]} - failed)) of ${#units[@]} translation units compile against LibTorch ${version:-?}"
((failed == 0))
