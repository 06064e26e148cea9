#!/usr/bin/env bash
# GPU checks and benchmarks in one go, for a machine with an NVIDIA GPU and PyTorch 2.11 (its
# libtorch) but maybe no Rust: a dcl binary built elsewhere runs against that PyTorch's
# torch/lib. Prints a summary; the details go to $LOG.
#
#   DCL=path/to/dcl DATA=path/to/data scripts/gpu-check.sh
#
# DATA holds mnist/ (raw or .gz IDX files). Checks:
#   1. --device cuda trains Split-MNIST class-IL with er and matches the CPU run within 2 points;
#   2. the training step of resnet18 (3x32x32) and resnet50 (3x224x224, channels-last on both
#      sides), batch 128, fp32: dcl against PyTorch eager (torchvision), alternating rounds.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DCL="${DCL:-$ROOT/target/release/dcl}"
DATA="${DATA:-$ROOT/data}"
LOG="${LOG:-/tmp/gpu-check.log}"
PYTHON="${PYTHON:-python3}"
ROUNDS="${ROUNDS:-3}"
TORCH_LIB="$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OMP_WAIT_POLICY=PASSIVE PYTHONWARNINGS=ignore
: > "$LOG"
say() { echo "$*" | tee -a "$LOG"; }
field() { sed -n "s/.*\"$1\": *\([0-9.e+-]*\).*/\1/p" | head -1; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

say "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$LOG"
"$PYTHON" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)' 2>&1 | tee -a "$LOG"

# Raw IDX files where only .gz ones were carried.
WORK="$(mktemp -d)"
mkdir -p "$WORK/data/mnist"
for f in "$DATA"/mnist/*; do
  case "$f" in
    *.gz) gunzip -c "$f" > "$WORK/data/mnist/$(basename "$f" .gz)" ;;
    *) cp "$f" "$WORK/data/mnist/" ;;
  esac
done

say "== 1. Split-MNIST, er, cuda against cpu"
SPLIT=(train --model mnistnet --dataset mnist --dataset-dir "$WORK/data" --epochs 1 --quiet --seed 0 --agent er
  --agent-config "{'buffer_size': 500, 'num_representatives': 64}"
  --tasksets-config "{'scenario': 'class', 'initial_increment': 2, 'increment': 2}")
accuracy() { "$PYTHON" -c "import json,sys; s=json.load(open(sys.argv[1])); print('%.2f %s %.0f' % (s['final_average_accuracy'], s['status'], s['train_images_per_second']))" "$1/summary.json"; }
for device in cuda cpu; do
  start=$(date +%s)
  if "$DCL" "${SPLIT[@]}" --device "$device" --results-dir "$WORK/split-$device" >> "$LOG" 2>&1; then
    read -r acc status rate <<< "$(accuracy "$WORK/split-$device")"
    say "$device: final average accuracy $acc % ($status), $rate img/s, $(( $(date +%s) - start )) s"
  else
    say "$device: FAILED (see $LOG)"
  fi
done

say "== 2. training step, batch 128, fp32: dcl vs PyTorch eager (img/s, median of $ROUNDS rounds)"
for case in "resnet18 3x32x32" "resnet50 3x224x224"; do
  read -r model input <<< "$case"
  d=() p=()
  for round in $(seq "$ROUNDS"); do
    out=$("$DCL" bench step --device cuda --model "$model" --input "$input" --classes 1000 --batch-size 128 \
      --warmup 10 --steps 30 --repeats 3 --json 2>> "$LOG")
    echo "$out" >> "$LOG"; d+=("$(field images_per_second_median <<< "$out")")
    out=$("$PYTHON" "$ROOT/bench/pytorch_step.py" --device cuda --channels-last --model "$model" --input "$input" \
      --classes 1000 --batch-size 128 --warmup 10 --steps 30 --repeats 3 --json 2>> "$LOG")
    echo "$out" >> "$LOG"; p+=("$(field images_per_second_median <<< "$out")")
  done
  D=$(printf '%s\n' "${d[@]}" | median) P=$(printf '%s\n' "${p[@]}" | median)
  say "$model $input: dcl $D, pytorch $P, ratio $(awk -v d="$D" -v p="$P" 'BEGIN {printf "%.3f", (p > 0) ? d / p : 0}')  (rounds: dcl ${d[*]}; pytorch ${p[*]})"
done
rm -rf "$WORK"
