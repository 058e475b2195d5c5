#!/usr/bin/env bash
# Checks that each program given loads libstdc++ ahead of LibTorch: its
# dynamic section lists libstdc++.so before the first libtorch*/libc10*
# library. The official LibTorch binaries export a statically linked copy of
# std::filesystem's symbols (pytorch/pytorch#133437); a program that loads
# libtorch first resolves std::filesystem calls into that copy and crashes.
# dlcore::dlcore puts libstdc++ first on the link line; this keeps it so.
set -euo pipefail
status=0
for program in "$@"; do
  needed=$(readelf -d "$program" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p')
  stdcxx=$(grep -n '^libstdc++\.so' <<<"$needed" | head -1 | cut -d: -f1 || true)
  torch=$(grep -nE '^lib(torch|c10)' <<<"$needed" | head -1 | cut -d: -f1 || true)
  if [[ -z "$torch" ]]; then
    echo "$program: links no LibTorch library directly"
  elif [[ -z "$stdcxx" || "$stdcxx" -gt "$torch" ]]; then
    echo "FAILED: $program loads LibTorch before libstdc++:" $needed
    status=1
  else
    echo "ok: $program (libstdc++ at $stdcxx, LibTorch from $torch)"
  fi
done
exit $status
