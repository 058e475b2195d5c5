#!/usr/bin/env bash
# Starts W local processes of one program as ranks 0..W-1 of a c10d job, the
# way torchrun does on one machine: each gets RANK, LOCAL_RANK, WORLD_SIZE,
# LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT (rendezvous over rank 0's
# TCPStore; see dlcore::init_process_group_from_env). Waits for all of them;
# if one fails, the others are stopped. Exit status: 0 when every rank
# succeeded, else the first non-zero status.
#
# Usage: scripts/launch_local.sh -n W [--port P] [--addr A] [--log-dir D] -- program [args...]
#   -n W        number of ranks (default 2)
#   --port P    MASTER_PORT (default 29500)
#   --addr A    MASTER_ADDR (default 127.0.0.1)
#   --log-dir D write rank r's output to D/rank<r>.log instead of the terminal
set -euo pipefail

world=2
port=29500
addr=127.0.0.1
log_dir=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -n) world="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --addr) addr="$2"; shift 2 ;;
    --log-dir) log_dir="$2"; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "launch_local.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [[ $# -eq 0 ]]; then
  echo "launch_local.sh: expected a program after --" >&2
  exit 2
fi
if ! [[ "$world" =~ ^[1-9][0-9]*$ ]]; then
  echo "launch_local.sh: expected -n to be a positive integer, but got '$world'" >&2
  exit 2
fi
[[ -n "$log_dir" ]] && mkdir -p "$log_dir"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup INT TERM

for ((r = 0; r < world; r++)); do
  if [[ -n "$log_dir" ]]; then
    RANK=$r LOCAL_RANK=$r WORLD_SIZE=$world LOCAL_WORLD_SIZE=$world \
      MASTER_ADDR=$addr MASTER_PORT=$port "$@" >"$log_dir/rank$r.log" 2>&1 &
  else
    RANK=$r LOCAL_RANK=$r WORLD_SIZE=$world LOCAL_WORLD_SIZE=$world \
      MASTER_ADDR=$addr MASTER_PORT=$port "$@" &
  fi
  pids+=($!)
done

status=0
remaining=${#pids[@]}
declare -A done_pid=()
while [[ $remaining -gt 0 ]]; do
  for i in "${!pids[@]}"; do
    p=${pids[$i]}
    [[ -n "${done_pid[$p]:-}" ]] && continue
    if ! kill -0 "$p" 2>/dev/null; then
      rc=0
      wait "$p" || rc=$?
      done_pid[$p]=1
      remaining=$((remaining - 1))
      if [[ $rc -ne 0 && $status -eq 0 ]]; then
        status=$rc
        echo "launch_local.sh: rank $i exited with status $rc; stopping the others" >&2
        cleanup
      fi
    fi
  done
  sleep 0.05
done
exit $status
