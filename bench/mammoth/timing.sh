#!/usr/bin/env bash
# The wall time of one whole Seq-MNIST run (process start to exit: start-up, data loading,
# training, evaluation), dcl against Mammoth, in alternating rounds on one core each: SGD, ER
# (buffer 200) and DER++ (buffer 200), seed 0, the settings of `dcl reproduce seq-mnist` and of
# bench/mammoth/seq_mnist.sh. Prints every round and the medians.
#
#   MAMMOTH=... PYTHON=... bench/mammoth/timing.sh          # as bench/mammoth/seq_mnist.sh
#   ROUNDS=5 DCL=target/release/dcl OUT=results/mammoth-timing bench/mammoth/timing.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DCL="${DCL:-$HERE/../../target/release/dcl}"
ROUNDS="${ROUNDS:-3}"
OUT="${OUT:-results/mammoth-timing}"
rm -rf "$OUT" && mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"

seconds_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }

echo "round method dcl_s mammoth_s" > "$OUT/times.txt"
for round in $(seq 1 "$ROUNDS"); do
  for pair in SGD:sgd:0 ER:er:200 DER++:derpp:200; do
    IFS=: read -r method model buffer <<< "$pair"
    start=$(date +%s.%N)
    OMP_WAIT_POLICY=PASSIVE "$DCL" reproduce seq-mnist --methods "$method" --buffers 200 --seeds 1 \
      --results-dir "$OUT/dcl-$round" > /dev/null 2>&1
    dcl_s=$(seconds_since "$start")
    OUT="$OUT/mammoth-$round" "$HERE/seq_mnist.sh" "$model" "$buffer" 0 > /dev/null 2>&1
    mammoth_s=$(awk '/^### WALL_SECONDS:/ { printf "%.2f", $3 }' "$OUT/mammoth-$round/$model-$buffer-seed0.log")
    echo "$round $method $dcl_s $mammoth_s" | tee -a "$OUT/times.txt"
  done
done
python3 - "$OUT/times.txt" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]).read().splitlines()[1:]]
print("| run | dcl (s) | Mammoth (s) | Mammoth / dcl |")
print("|---|---|---|---|")
for method in dict.fromkeys(r[1] for r in rows):
    dcl = statistics.median(float(r[2]) for r in rows if r[1] == method)
    mammoth = statistics.median(float(r[3]) for r in rows if r[1] == method)
    print(f"| {method} | {dcl:.2f} | {mammoth:.2f} | {mammoth / dcl:.1f}x |")
EOF
