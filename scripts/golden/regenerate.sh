#!/usr/bin/env bash
# Regenerates every table in tests/golden/ from real PyTorch (Debian's
# python3-torch and python3-torchvision, run with /usr/bin/python3; install
# them with `scripts/setup.sh --benchmarks`). Each output is written to a
# temporary file first and moved into place only when its generator succeeded.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=/usr/bin/python3
"$py" -c 'import torch, torchvision' || {
  echo "regenerate: $py cannot import torch/torchvision (scripts/setup.sh --benchmarks)" >&2
  exit 1
}

# Generators that print the header on standard output.
for name in data models schedulers lr_schedulers; do
  tmp=$(mktemp "tests/golden/.$name.h.XXXXXX")
  if "$py" "scripts/golden/$name.py" >"$tmp"; then
    mv -f "$tmp" "tests/golden/$name.h"
  else
    rm -f "$tmp"
    echo "regenerate: scripts/golden/$name.py failed" >&2
    exit 1
  fi
done
# Generators that write tests/golden/<name>.h themselves.
for name in checkpoint lr_finder resnet_cifar safetensors; do
  "$py" "scripts/golden/$name.py"
done
clang-format -i tests/golden/*.h
git status --short tests/golden
