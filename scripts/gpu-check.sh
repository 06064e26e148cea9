#!/usr/bin/env bash
# GPU checks and benchmarks in one go, for a machine with an NVIDIA GPU and PyTorch 2.11 (its
# libtorch) but maybe no Rust: a dcl binary built elsewhere runs against that PyTorch's
# torch/lib. Prints a summary; the details go to $LOG.
#
#   DCL=path/to/dcl DATA=path/to/data scripts/gpu-check.sh
#
# DATA holds mnist/ (raw or .gz IDX files) and, for check 6, CIFAR10/ in the pickled format.
# SECTIONS picks checks (default: all):
#   1. --device cuda trains Split-MNIST class-IL with er and matches the CPU run within 2 points;
#   2. the training step of resnet18 (3x32x32) and resnet50 (3x224x224, channels-last on both
#      sides), batch 128, fp32: dcl against PyTorch eager (torchvision), alternating rounds;
#   3. the same with mixed precision (--amp bf16 / fp16 against torch.autocast + GradScaler);
#   4. er against base, step time on the GPU (buffer sampling on, batches pinned and copied
#      asynchronously);
#   5. Split-MNIST class-IL with er and --amp bf16 on the GPU against the CPU run of check 1;
#   6. resnet18 (CIFAR stem) on CIFAR-10 files with --amp fp16, er with raw storage.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DCL="${DCL:-$ROOT/target/release/dcl}"
DATA="${DATA:-$ROOT/data}"
LOG="${LOG:-/tmp/gpu-check.log}"
PYTHON="${PYTHON:-python3}"
ROUNDS="${ROUNDS:-3}"
SECTIONS="${SECTIONS:-1 2 3 4 5 6}"
wanted() { [[ " $SECTIONS " == *" $1 "* ]]; }
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

SPLIT=(train --model mnistnet --dataset mnist --dataset-dir "$WORK/data" --epochs 1 --quiet --seed 0 --agent er
  --agent-config "{'buffer_size': 500, 'num_representatives': 64}"
  --tasksets-config "{'scenario': 'class', 'initial_increment': 2, 'increment': 2}")
accuracy() { "$PYTHON" -c "import json,sys; s=json.load(open(sys.argv[1])); print('%.2f %s %.0f' % (s['final_average_accuracy'], s['status'], s['train_images_per_second']))" "$1/summary.json"; }
# run NAME DEVICE [FLAGS...]: a run of $SPLIT, reported as accuracy, status, img/s, seconds.
split_run() {
  local name="$1" device="$2"; shift 2
  local start=$(date +%s)
  if "$DCL" "${SPLIT[@]}" --device "$device" --results-dir "$WORK/$name" "$@" >> "$LOG" 2>&1; then
    read -r acc status rate <<< "$(accuracy "$WORK/$name")"
    say "$name: final average accuracy $acc % ($status), $rate img/s, $(( $(date +%s) - start )) s"
  else
    say "$name: FAILED (see $LOG)"
  fi
}

# steps TITLE DCL_FLAGS PYTORCH_FLAGS CASE...: dcl bench step against bench/pytorch_step.py.
steps() {
  local title="$1" dflags="$2" pflags="$3"; shift 3
  say "== $title: dcl vs PyTorch eager, batch 128 (img/s, median of $ROUNDS rounds)"
  for case in "$@"; do
    read -r model input <<< "$case"
    local d=() p=()
    for round in $(seq "$ROUNDS"); do
      out=$("$DCL" bench step --device cuda --model "$model" --input "$input" --classes 1000 --batch-size 128 \
        --warmup 10 --steps 30 --repeats 3 --json $dflags 2>> "$LOG")
      echo "$out" >> "$LOG"; d+=("$(field images_per_second_median <<< "$out")")
      out=$("$PYTHON" "$ROOT/bench/pytorch_step.py" --device cuda --channels-last --model "$model" --input "$input" \
        --classes 1000 --batch-size 128 --warmup 10 --steps 30 --repeats 3 --json $pflags 2>> "$LOG")
      echo "$out" >> "$LOG"; p+=("$(field images_per_second_median <<< "$out")")
    done
    D=$(printf '%s\n' "${d[@]}" | median) P=$(printf '%s\n' "${p[@]}" | median)
    say "$model $input $dflags: dcl $D, pytorch $P, ratio $(awk -v d="$D" -v p="$P" 'BEGIN {printf "%.3f", (p > 0) ? d / p : 0}')  (rounds: dcl ${d[*]}; pytorch ${p[*]})"
  done
}

if wanted 1; then
  say "== 1. Split-MNIST, er, cuda against cpu"
  split_run split-cuda cuda
  split_run split-cpu cpu
fi
wanted 2 && steps "2. training step, fp32" "" "" "resnet18 3x32x32" "resnet50 3x224x224"
if wanted 3; then
  steps "3a. training step, bf16 autocast" "--amp bf16" "--amp bf16" "resnet18 3x32x32" "resnet50 3x224x224"
  steps "3b. training step, fp16 autocast + loss scaling" "--amp fp16" "--amp fp16" "resnet18 3x32x32"
fi
if wanted 4; then
  say "== 4. er against base on the GPU (mnistnet, B 64 + R 64 against a plain batch of 128)"
  for mode in standard flyweight; do
    "$DCL" bench rehearsal --device cuda --mode "$mode" --dataset-dir "$WORK/data" --rounds 2 --steps 150 2>&1 | tee -a "$LOG" | tail -1
  done
fi
if wanted 5; then
  say "== 5. Split-MNIST, er, --amp bf16 on cuda (compare with split-cpu of check 1)"
  split_run split-cuda-bf16 cuda --amp bf16
fi
if wanted 6; then
  say "== 6. resnet18 on CIFAR-10 files, --amp fp16, er with raw storage"
  if [ -d "$DATA/CIFAR10" ]; then
    cp -r "$DATA/CIFAR10" "$WORK/data/"
    start=$(date +%s)
    if "$DCL" train --model resnet18 --model-config "{'stem': 'cifar'}" --dataset cifar10 --dataset-dir "$WORK/data" \
        --device cuda --amp fp16 --epochs 3 --batch-size 64 --augment crop_flip --quiet --agent er \
        --agent-config "{'buffer_size': 200, 'num_representatives': 32, 'store': 'raw'}" \
        --tasksets-config "{'scenario': 'class', 'initial_increment': 2, 'increment': 2}" \
        --results-dir "$WORK/cifar-fp16" >> "$LOG" 2>&1; then
      read -r acc status rate <<< "$(accuracy "$WORK/cifar-fp16")"
      say "cifar-fp16: final average accuracy $acc % ($status), $rate img/s, $(( $(date +%s) - start )) s"
    else
      say "cifar-fp16: FAILED (see $LOG)"
    fi
  else
    say "skipped: no $DATA/CIFAR10"
  fi
fi
rm -rf "$WORK"
