#!/usr/bin/env bash
# The loader: decoding and augmenting whole passes of training images, dcl (`dcl bench
# loader`) against torchvision's datasets and DataLoader (bench/pytorch_loader.py), the same
# files, transforms and worker count, alternating rounds; medians.
#   photographs: 1,000 generated 500x375 JPEGs (~105 KB, bench/make_photos.py), RandomResizedCrop(224) + flip
#   CIFAR-10:    20,000 generated images in the pickled format, RandomCrop(32, padding 4) + flip
#
#   bench/compare_loader.sh [--workers 2] [--rounds 3]
set -euo pipefail
WORKERS=2 ROUNDS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) WORKERS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    *) echo "usage: $0 [--workers N] [--rounds N]" >&2; exit 2 ;;
  esac
done
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
DATA="$(mktemp -d)"
trap 'rm -rf "$DATA"' EXIT
"$PYTHON" "$ROOT/bench/make_photos.py" "$DATA" --classes 10 --per-class 100
"$PYTHON" "$ROOT/crates/dcl-data/tests/reference/make_layouts.py" "$DATA" --only cifar10 --classes 10 --per-class 2000
export OMP_WAIT_POLICY=PASSIVE
for case in "imagenet|none" "cifar10|crop_flip"; do
  IFS='|' read -r dataset augment <<< "$case"
  d=() p=()
  for round in $(seq "$ROUNDS"); do
    d+=("$("$DCL" bench loader --dataset "$dataset" --dataset-dir "$DATA" --augment "$augment" --workers "$WORKERS" \
      --passes 2 | field images_per_second_median)")
    p+=("$("$PYTHON" "$ROOT/bench/pytorch_loader.py" --dataset "$dataset" --dataset-dir "$DATA" --workers "$WORKERS" \
      --passes 2 2>/dev/null | field images_per_second_median)")
  done
  D=$(printf '%s\n' "${d[@]}" | median) P=$(printf '%s\n' "${p[@]}" | median)
  printf '%-9s %d workers: dcl %.0f img/s, torchvision %.0f img/s: %.2fx  (dcl %s; torchvision %s)\n' \
    "$dataset" "$WORKERS" "$D" "$P" "$(ratio "$D" "$P")" "${d[*]}" "${p[*]}"
done
