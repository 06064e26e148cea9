#!/usr/bin/env bash
# Side-by-side benchmark of the rehearsal buffer: dcl (`dcl bench buffer`) against the
# same algorithm written the PyTorch way (bench/buffer_python.py, torch 2.11.0 from the
# setup venv, one thread), for MNIST- and CIFAR-shaped samples and each policy. Per batch of
# 64: draw 64 representatives, then offer the 64 samples (5,000 slots).
#
#   bench/compare_buffer.sh [--batches 2000] [--repeats 5]
set -euo pipefail
BATCHES=2000 REPEATS=5
while [ $# -gt 0 ]; do
  case "$1" in
    --batches) BATCHES="$2"; shift 2 ;;
    --repeats) REPEATS="$2"; shift 2 ;;
    *) echo "usage: $0 [--batches N] [--repeats N]" >&2; exit 2 ;;
  esac
done
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# Time per batch (offer 64 + draw 64), in microseconds, from the two rates.
per_batch() { echo "64 / $1 * 1000000 + 64 / $2 * 1000000" | bc -l; }

printf '%-7s %-15s %14s %14s %8s %14s %14s %8s %9s\n' shape policy "py offer/s" "dcl offer/s" ratio "py draw/s" "dcl draw/s" ratio "per batch"
for shape in mnist cifar; do
  for policy in upstream reservoir class_balanced; do
    args=(--shape "$shape" --policy "$policy" --batches "$BATCHES" --repeats "$REPEATS" --json)
    py=$("$PYTHON" "$ROOT/bench/buffer_python.py" "${args[@]}" 2>/dev/null)
    rs=$("$DCL" bench buffer "${args[@]}")
    po=$(field offer_samples_per_second <<< "$py"); ps=$(field sample_samples_per_second <<< "$py")
    ro=$(field offer_samples_per_second <<< "$rs"); rs_=$(field sample_samples_per_second <<< "$rs")
    printf '%-7s %-15s %14.0f %14.0f %7.0fx %14.0f %14.0f %7.1fx %8.1fx\n' "$shape" "$policy" "$po" "$ro" "$(ratio "$ro" "$po")" \
      "$ps" "$rs_" "$(ratio "$rs_" "$ps")" "$(ratio "$(per_batch "$po" "$ps")" "$(per_batch "$ro" "$rs_")")"
  done
done
