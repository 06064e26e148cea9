#!/usr/bin/env bash
# The training step of the image models, dcl against PyTorch 2.11 eager (torchvision / timm from
# the setup venv), same model, input, batch, SGD with momentum, threads; rounds alternate the
# engines; PyTorch runs in its default layout and channels-last and its better median counts.
# Reports the medians, dcl / best PyTorch, and both processes' peak resident memory.
#
#   bench/compare_models.sh [--threads 2] [--rounds 3] [--steps 10]
set -euo pipefail
THREADS=2 ROUNDS=3 STEPS=10
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --steps) STEPS="$2"; shift 2 ;;
    *) echo "usage: $0 [--threads N] [--rounds N] [--steps N]" >&2; exit 2 ;;
  esac
done
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
export OMP_WAIT_POLICY=PASSIVE
# dcl model, dcl model-config, PyTorch model, input, batch (issue 9's protocol)
CASES=(
  "resnet18|{}|resnet18|3x32x32|32"
  "resnet50|{}|resnet50|3x64x64|16"
  "efficientnetv2|{'variant': 's'}|efficientnetv2_s|3x64x64|8"
  "convnext|{'variant': 'tiny'}|convnext_tiny|3x64x64|8"
)
COMMON=(--threads "$THREADS" --warmup 3 --steps "$STEPS" --repeats 3 --json)
printf '%-16s %-9s %6s %11s %11s %11s %7s %9s %9s\n' model input batch "dcl img/s" "pt img/s" "pt-cl img/s" ratio "dcl MB" "pt MB"
for case in "${CASES[@]}"; do
  IFS='|' read -r model config reference input batch <<< "$case"
  d=() p=() c=() dm=() pm=()
  for round in $(seq "$ROUNDS"); do
    out=$("$DCL" bench step --model "$model" --model-config "$config" --input "$input" --batch-size "$batch" "${COMMON[@]}")
    d+=("$(field images_per_second_median <<< "$out")") dm+=("$(field peak_rss_mb <<< "$out")")
    out=$("$PYTHON" "$ROOT/bench/pytorch_step.py" --model "$reference" --input "$input" --batch-size "$batch" "${COMMON[@]}" 2>/dev/null)
    p+=("$(field images_per_second_median <<< "$out")") pm+=("$(field peak_rss_mb <<< "$out")")
    out=$("$PYTHON" "$ROOT/bench/pytorch_step.py" --model "$reference" --input "$input" --batch-size "$batch" --channels-last "${COMMON[@]}" 2>/dev/null)
    c+=("$(field images_per_second_median <<< "$out")")
  done
  D=$(printf '%s\n' "${d[@]}" | median) P=$(printf '%s\n' "${p[@]}" | median) C=$(printf '%s\n' "${c[@]}" | median)
  best=$(printf '%s\n%s\n' "$P" "$C" | sort -g | tail -1)
  printf '%-16s %-9s %6s %11.1f %11.1f %11.1f %6.2fx %9.0f %9.0f\n' "$reference" "$input" "$batch" "$D" "$P" "$C" \
    "$(ratio "$D" "$best")" "$(printf '%s\n' "${dm[@]}" | median)" "$(printf '%s\n' "${pm[@]}" | median)"
done
