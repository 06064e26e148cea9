#!/usr/bin/env bash
# Side-by-side benchmark of the mnistnet training step: PyTorch (bench/pytorch_step.py,
# the venv's torch 2.11.0) against dcl (`dcl bench step`), same batch, same threads, then
# a full one-epoch `dcl train` against the bare step rate (the data pipeline's overhead).
#
#   bench/compare_step.sh [--batch-size 64] [--threads 2] [--rounds 3]
#
# Rounds alternate the two engines so that machine noise hits both alike.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BATCH=64 THREADS=2 ROUNDS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --batch-size) BATCH="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    *) echo "usage: $0 [--batch-size N] [--threads N] [--rounds N]" >&2; exit 2 ;;
  esac
done
DCL="$ROOT/target/release/dcl"
PYTHON="$(sed -n 's/^VIRTUAL_ENV = "\(.*\)"$/\1/p' "$ROOT/.cargo/config.toml" 2>/dev/null)/bin/python"
[ -x "$DCL" ] && [ -x "$PYTHON" ] || { echo "run scripts/setup.sh first" >&2; exit 1; }
export OMP_WAIT_POLICY=PASSIVE
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
field() { sed -n "s/.*\"$1\": *\([0-9.e+-]*\).*/\1/p"; }

torch_rates=() dcl_rates=()
for round in $(seq "$ROUNDS"); do
  t=$("$PYTHON" "$ROOT/bench/pytorch_step.py" --batch-size "$BATCH" --threads "$THREADS" --json | field images_per_second_median)
  d=$("$DCL" bench step --batch-size "$BATCH" --threads "$THREADS" --json | field images_per_second_median)
  printf 'round %d: pytorch %.0f img/s, dcl %.0f img/s\n' "$round" "$t" "$d"
  torch_rates+=("$t") dcl_rates+=("$d")
done
T=$(printf '%s\n' "${torch_rates[@]}" | median)
D=$(printf '%s\n' "${dcl_rates[@]}" | median)
printf 'step, batch %s, %s threads: pytorch median %.0f img/s, dcl median %.0f img/s, ratio dcl/pytorch %.2fx\n' \
  "$BATCH" "$THREADS" "$T" "$D" "$(echo "$D / $T" | bc -l)"

RESULTS="$(mktemp -d)"
"$DCL" train --model mnistnet --dataset mnist --dataset-dir "$ROOT/data" --epochs 1 --batch-size "$BATCH" \
  --threads "$THREADS" --quiet --results-dir "$RESULTS/run" > /dev/null 2>&1
E=$(field train_images_per_second < "$RESULTS/run/summary.json")
A=$(field final_average_accuracy < "$RESULTS/run/summary.json")
rm -rf "$RESULTS"
printf 'full dcl train epoch (60,000 images, loader + shuffling + step): %.0f img/s = %.3f of the bare step rate; test top-1 %.2f %%\n' \
  "$E" "$(echo "$E / $D" | bc -l)" "$A"
