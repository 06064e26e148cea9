#!/usr/bin/env bash
# How often does a naive Split-MNIST run collapse (a task's accuracy right after learning it
# at chance, 50 % for 2 classes: every image predicted as one class)? dcl against the PyTorch
# twin of the same protocol (bench/pytorch_er.py --representatives 0), over many seeds, with
# oneDNN/MKL/ATen capped to AVX2 (the portable code path of the tests) unless --native.
#
#   bench/collapse.sh [--seeds "0 1 … 19"] [--batch-size 64] [--train-samples N] [--native]
set -euo pipefail
SEEDS="$(seq -s ' ' 0 19)" BATCH=64 SAMPLES="" NATIVE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) SEEDS="$2"; shift 2 ;;
    --batch-size) BATCH="$2"; shift 2 ;;
    --train-samples) SAMPLES="$2"; shift 2 ;;
    --native) NATIVE=1; shift ;;
    *) echo "usage: $0 [--seeds LIST] [--batch-size N] [--train-samples N] [--native]" >&2; exit 2 ;;
  esac
done
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
DCL="${DCL_BIN:-$DCL}"
[ "$NATIVE" = 1 ] || export ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=AVX2 ATEN_CPU_CAPABILITY=avx2
RESULTS="$(mktemp -d)"
trap 'rm -rf "$RESULTS"' EXIT
SPLIT="{'scenario': 'class', 'initial_increment': 2, 'increment': 2}"
dcl_samples=() py_samples=()
[ -n "$SAMPLES" ] && dcl_samples=(--train-samples "$SAMPLES") && py_samples=(--train-samples "$SAMPLES")
# The diagonal of the accuracy matrix (each task right after learning it), from JSON on stdin.
diagonal() { "$PYTHON" -c 'import json,sys; m=json.load(sys.stdin)["accuracy_matrix"]; print(" ".join("%.1f" % m[i][i] for i in range(len(m))))'; }
collapsed() { awk '{c=0; for (i=1;i<=NF;i++) if ($i < 60) c++; print c}'; }

printf '%-5s %-32s %-32s\n' seed "dcl diagonal" "pytorch diagonal"
dcl_runs=0 py_runs=0
for seed in $SEEDS; do
  "$DCL" train --model mnistnet --dataset mnist --dataset-dir "$ROOT/data" --epochs 1 --seed "$seed" --quiet \
    --threads 2 --batch-size "$BATCH" "${dcl_samples[@]}" --tasksets-config "$SPLIT" \
    --results-dir "$RESULTS/$seed" > /dev/null 2>&1
  d=$(diagonal < "$RESULTS/$seed/summary.json")
  p=$("$PYTHON" "$ROOT/bench/pytorch_er.py" --data "$ROOT/data/mnist" --seed "$seed" --representatives 0 \
    --batch-size "$BATCH" "${py_samples[@]}" 2>/dev/null | diagonal)
  printf '%-5s %-32s %-32s\n' "$seed" "$d" "$p"
  [ "$(collapsed <<< "$d")" -gt 0 ] && dcl_runs=$((dcl_runs + 1))
  [ "$(collapsed <<< "$p")" -gt 0 ] && py_runs=$((py_runs + 1))
done
n=$(wc -w <<< "$SEEDS")
printf '\nruns with a collapsed task (diagonal < 60 %%): dcl %d of %d, pytorch %d of %d\n' "$dcl_runs" "$n" "$py_runs" "$n"
