#!/usr/bin/env bash
# The rehearsal pipeline's overhead: one epoch of MNIST (one task) with agent er, batches of
# B fresh samples + R representatives, against agent base on batches of B+R, both through
# `dcl train`. Reports the median time per training step of each and their ratio (target:
# er <= 1.03x base: the background thread hides the buffer work).
#
#   bench/compare_rehearsal.sh [--batch-size 64] [--representatives 64] [--rounds 3] [--threads 2]
set -euo pipefail
B=64 R=64 ROUNDS=3 THREADS=2
while [ $# -gt 0 ]; do
  case "$1" in
    --batch-size) B="$2"; shift 2 ;;
    --representatives) R="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    *) echo "usage: $0 [--batch-size N] [--representatives N] [--rounds N] [--threads N]" >&2; exit 2 ;;
  esac
done
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
RESULTS="$(mktemp -d)"
trap 'rm -rf "$RESULTS"' EXIT
# Milliseconds per step of a run: training time / number of steps.
ms_per_step() { local t; t=$(field train_time_seconds < "$1/summary.json"); echo "$t * 1000 / ((60000 + $2 - 1) / $2)" | bc -l; }
COMMON=(train --model mnistnet --dataset mnist --dataset-dir "$ROOT/data" --epochs 1 --threads "$THREADS" --quiet --overwrite)

er=() base=()
for round in $(seq "$ROUNDS"); do
  "$DCL" "${COMMON[@]}" --batch-size "$B" --agent er --results-dir "$RESULTS/er" \
    --agent-config "{'buffer_size': 500, 'num_representatives': $R, 'replay': 'all'}" > /dev/null 2>&1
  "$DCL" "${COMMON[@]}" --batch-size $((B + R)) --results-dir "$RESULTS/base" > /dev/null 2>&1
  e=$(ms_per_step "$RESULTS/er" "$B")
  b=$(ms_per_step "$RESULTS/base" $((B + R)))
  printf 'round %d: er %.3f ms/step, base %.3f ms/step\n' "$round" "$e" "$b"
  er+=("$e") base+=("$b")
done
E=$(printf '%s\n' "${er[@]}" | median)
BASE=$(printf '%s\n' "${base[@]}" | median)
printf '\nstep of %d fresh + %d representatives (er) vs a step of %d (base), medians of %d rounds:\n' "$B" "$R" $((B + R)) "$ROUNDS"
printf '  er %.3f ms, base %.3f ms: er / base = %.3fx\n' "$E" "$BASE" "$(echo "$E / $BASE" | bc -l)"
grep -A6 '"timing_ms_per_step"' "$RESULTS/er/summary.json" | sed 's/^/  /'
