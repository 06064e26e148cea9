#!/usr/bin/env bash
# Data-parallel step time: N ranks x 1 thread against 1 rank x 1 thread at the same per-rank
# batch and the same number of steps (one epoch of mnistnet over N x 30,000 / 1 x 30,000
# MNIST images), alternating rounds; median training time per step (target for 2 ranks:
# <= 1.15x). Then the all-reduce of a ResNet-18-sized gradient against bare MPI.
#
#   bench/compare_dist.sh [--ranks 2] [--rounds 3]
set -euo pipefail
RANKS=2 ROUNDS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --ranks) RANKS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    *) echo "usage: $0 [--ranks N] [--rounds N]" >&2; exit 2 ;;
  esac
done
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
RESULTS="$(mktemp -d)"
trap 'rm -rf "$RESULTS"' EXIT
export OMP_WAIT_POLICY=PASSIVE
STEPS=$(( (30000 + 63) / 64 ))
COMMON=(train --model mnistnet --dataset mnist --dataset-dir "$ROOT/data" --epochs 1 --threads 1 --quiet --overwrite --batch-size 64)
one=() many=()
for round in $(seq "$ROUNDS"); do
  "$DCL" "${COMMON[@]}" --train-samples 30000 --results-dir "$RESULTS/one" > /dev/null 2>&1
  "$MPIRUN" -np "$RANKS" "$DCL" "${COMMON[@]}" --train-samples $((30000 * RANKS)) --results-dir "$RESULTS/many" > /dev/null 2>&1
  o=$(echo "$(field train_time_seconds < "$RESULTS/one/summary.json") * 1000 / $STEPS" | bc -l)
  m=$(echo "$(field train_time_seconds < "$RESULTS/many/summary.json") * 1000 / $STEPS" | bc -l)
  printf 'round %d: 1 rank %.2f ms/step, %d ranks %.2f ms/step\n' "$round" "$o" "$RANKS" "$m"
  one+=("$o") many+=("$m")
done
O=$(printf '%s\n' "${one[@]}" | median)
M=$(printf '%s\n' "${many[@]}" | median)
printf '\nstep, batch 64 per rank, 1 thread per rank: 1 rank %.2f ms, %d ranks %.2f ms: %.3fx\n' "$O" "$RANKS" "$M" "$(echo "$M / $O" | bc -l)"
"$MPIRUN" -np "$RANKS" "$DCL" bench allreduce
