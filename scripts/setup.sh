#!/usr/bin/env bash
# Installs dlcore's dependencies from Debian 12 packages, idempotently: a
# package already installed is skipped, and apt-get runs only when something is
# missing. Nothing else is downloaded, ever.
#
#   scripts/setup.sh               build, test and example dependencies
#   scripts/setup.sh --benchmarks  also Debian's python3-torch/torchvision, for
#                                  the Python reference of the benchmarks and
#                                  the golden-value generators
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config clang-format git python3
  libtorch-dev libfmt-dev catch2 libcli11-dev libgloo-dev zlib1g-dev
  nlohmann-json3-dev
  libopenblas0-pthread libbenchmark-dev
  dataset-fashion-mnist gnuplot-nox
)
if [[ "${1:-}" == "--benchmarks" ]]; then
  packages+=(python3-torch python3-torchvision)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} Debian packages already installed"
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
