#!/usr/bin/env bash
# Split-MNIST with rehearsal (the README's main command) on 1 rank and on N ranks, seeds 0-4,
# then seed 0 again on N ranks (runs are reproducible: the same accuracy matrix). Final average
# accuracies side by side and their means.
#
#   bench/compare_ranks.sh [--ranks 2] [--seeds "0 1 2 3 4"]
set -euo pipefail
RANKS=2 SEEDS="0 1 2 3 4"
while [ $# -gt 0 ]; do
  case "$1" in
    --ranks) RANKS="$2"; shift 2 ;;
    --seeds) SEEDS="$2"; shift 2 ;;
    *) echo "usage: $0 [--ranks N] [--seeds LIST]" >&2; exit 2 ;;
  esac
done
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
RESULTS="$(mktemp -d)"
trap 'rm -rf "$RESULTS"' EXIT
export OMP_WAIT_POLICY=PASSIVE
ARGS=(train --model mnistnet --dataset mnist --dataset-dir "$ROOT/data" --epochs 1 --quiet --overwrite --agent er
  --agent-config "{'buffer_size': 500, 'num_representatives': 64}"
  --tasksets-config "{'scenario': 'class', 'initial_increment': 2, 'increment': 2}")
acc() { field final_average_accuracy < "$1/summary.json"; }
mean() { awk '{s += $1} END {printf "%.2f", s / NR}'; }
one=() many=()
for seed in $SEEDS; do
  "$DCL" "${ARGS[@]}" --seed "$seed" --threads 2 --results-dir "$RESULTS/one" > /dev/null 2>&1
  "$MPIRUN" -np "$RANKS" "$DCL" "${ARGS[@]}" --seed "$seed" --threads 1 --results-dir "$RESULTS/many" > /dev/null 2>&1
  printf 'seed %s: 1 rank %.2f %%, %d ranks %.2f %%\n' "$seed" "$(acc "$RESULTS/one")" "$RANKS" "$(acc "$RESULTS/many")"
  one+=("$(acc "$RESULTS/one")") many+=("$(acc "$RESULTS/many")")
done
first=${SEEDS%% *}
"$MPIRUN" -np "$RANKS" "$DCL" "${ARGS[@]}" --seed "$first" --threads 1 --results-dir "$RESULTS/again" > /dev/null 2>&1
printf 'seed %s again on %d ranks: %.2f %%\n' "$first" "$RANKS" "$(acc "$RESULTS/again")"
printf 'mean: 1 rank %s %%, %d ranks %s %%\n' "$(printf '%s\n' "${one[@]}" | mean)" "$RANKS" "$(printf '%s\n' "${many[@]}" | mean)"
