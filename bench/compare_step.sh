#!/usr/bin/env bash
# Side-by-side benchmark of the mnistnet training step (batch 64, SGD with momentum):
#   pytorch       bench/pytorch_step.py, torch 2.11.0 from the setup venv, default layout
#                 (what upstream runs)
#   pytorch-cl    the same script with the model laid out channels-last (what dcl does)
#   dcl           `dcl bench step`
# then a full one-epoch `dcl train` on MNIST against the bare step rate (the data
# pipeline's overhead).
#
#   bench/compare_step.sh [--batch-size 64] [--threads 2] [--rounds 5]
#
# Rounds alternate the engines so that machine noise hits all alike; medians are reported.
set -euo pipefail
BATCH=64 THREADS=2 ROUNDS=5
while [ $# -gt 0 ]; do
  case "$1" in
    --batch-size) BATCH="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    *) echo "usage: $0 [--batch-size N] [--threads N] [--rounds N]" >&2; exit 2 ;;
  esac
done
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

STEP_ARGS=(--batch-size "$BATCH" --threads "$THREADS" --json)

pt=() pc=() dc=()
for round in $(seq "$ROUNDS"); do
  p=$("$PYTHON" "$ROOT/bench/pytorch_step.py" "${STEP_ARGS[@]}" 2>/dev/null | field images_per_second_median)
  c=$("$PYTHON" "$ROOT/bench/pytorch_step.py" "${STEP_ARGS[@]}" --channels-last 2>/dev/null | field images_per_second_median)
  d=$("$DCL" bench step "${STEP_ARGS[@]}" | field images_per_second_median)
  printf 'round %d: pytorch %.0f, pytorch-cl %.0f, dcl %.0f img/s\n' "$round" "$p" "$c" "$d"
  pt+=("$p") pc+=("$c") dc+=("$d")
done
P=$(printf '%s\n' "${pt[@]}" | median)
C=$(printf '%s\n' "${pc[@]}" | median)
D=$(printf '%s\n' "${dc[@]}" | median)
printf '\nmnistnet step, batch %s, %s threads, medians of %s rounds:\n' "$BATCH" "$THREADS" "$ROUNDS"
printf '  pytorch     %6.0f img/s\n  pytorch-cl  %6.0f img/s\n  dcl         %6.0f img/s\n' "$P" "$C" "$D"
printf '  dcl / pytorch = %.2fx, dcl / pytorch-cl = %.2fx\n' "$(ratio "$D" "$P")" "$(ratio "$D" "$C")"

RESULTS="$(mktemp -d)"
trap 'rm -rf "$RESULTS"' EXIT
"$DCL" train --model mnistnet --dataset mnist --dataset-dir "$ROOT/data" --epochs 1 --batch-size "$BATCH" \
  --threads "$THREADS" --quiet --results-dir "$RESULTS/run" > /dev/null 2>&1
E=$(field train_images_per_second < "$RESULTS/run/summary.json")
A=$(field final_average_accuracy < "$RESULTS/run/summary.json")
printf '\nfull dcl train epoch (60,000 MNIST images: loader, shuffling, steps): %.0f img/s = %.2f of the bare step median; test top-1 %.2f %%\n' \
  "$E" "$(ratio "$E" "$D")" "$A"
