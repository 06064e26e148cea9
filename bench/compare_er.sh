#!/usr/bin/env bash
# Split-MNIST class-IL with rehearsal, dcl against a plain PyTorch script of the same online
# protocol (bench/pytorch_er.py), seeds 0, 1, 2, side by side: final average accuracy and
# whole-process wall time (start-up and data loading included). Also dcl's base agent on
# the same split (catastrophic forgetting).
#
#   bench/compare_er.sh [--seeds "0 1 2"] [--replay past_tasks|all]
set -euo pipefail
SEEDS="0 1 2" REPLAY=past_tasks
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) SEEDS="$2"; shift 2 ;;
    --replay) REPLAY="$2"; shift 2 ;;
    *) echo "usage: $0 [--seeds \"0 1 2\"] [--replay past_tasks|all]" >&2; exit 2 ;;
  esac
done
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
RESULTS="$(mktemp -d)"
trap 'rm -rf "$RESULTS"' EXIT
SPLIT="{'scenario': 'class', 'initial_increment': 2, 'increment': 2}"
now() { date +%s.%N; }
stats() { awk '{s+=$1; q+=$1*$1; n++} END {m=s/n; v=(n>1)?(q-n*m*m)/(n-1):0; if (v<0) v=0; printf "%.2f ± %.2f", m, sqrt(v)}'; }

printf '%-5s %12s %12s %12s %12s %12s\n' seed "dcl er %" "dcl s" "pytorch %" "pytorch s" "dcl base %"
dcl_acc=() dcl_wall=() py_acc=() py_wall=() base_acc=()
for seed in $SEEDS; do
  t0=$(now)
  "$DCL" train --model mnistnet --dataset mnist --dataset-dir "$ROOT/data" --epochs 1 --seed "$seed" --quiet \
    --agent er --agent-config "{'buffer_size': 500, 'num_representatives': 64, 'replay': '$REPLAY'}" \
    --tasksets-config "$SPLIT" --results-dir "$RESULTS/er-$seed" > /dev/null 2>&1
  t1=$(now)
  py=$("$PYTHON" "$ROOT/bench/pytorch_er.py" --data "$ROOT/data/mnist" --seed "$seed" --replay "$REPLAY" 2>/dev/null)
  t2=$(now)
  "$DCL" train --model mnistnet --dataset mnist --dataset-dir "$ROOT/data" --epochs 1 --seed "$seed" --quiet \
    --tasksets-config "$SPLIT" --results-dir "$RESULTS/base-$seed" > /dev/null 2>&1
  a=$(field final_average_accuracy < "$RESULTS/er-$seed/summary.json")
  p=$(field final_average_accuracy <<< "$py")
  b=$(field final_average_accuracy < "$RESULTS/base-$seed/summary.json")
  dw=$(echo "$t1 - $t0" | bc -l); pw=$(echo "$t2 - $t1" | bc -l)
  printf '%-5s %12.2f %12.1f %12.2f %12.1f %12.2f\n' "$seed" "$a" "$dw" "$p" "$pw" "$b"
  dcl_acc+=("$a") dcl_wall+=("$dw") py_acc+=("$p") py_wall+=("$pw") base_acc+=("$b")
done
printf '\nmean ± sd over seeds %s (replay: %s)\n' "$SEEDS" "$REPLAY"
printf '  dcl er:     %s %%, wall %s s\n' "$(printf '%s\n' "${dcl_acc[@]}" | stats)" "$(printf '%s\n' "${dcl_wall[@]}" | stats)"
printf '  pytorch er: %s %%, wall %s s\n' "$(printf '%s\n' "${py_acc[@]}" | stats)" "$(printf '%s\n' "${py_wall[@]}" | stats)"
printf '  dcl base:   %s %%\n' "$(printf '%s\n' "${base_acc[@]}" | stats)"
