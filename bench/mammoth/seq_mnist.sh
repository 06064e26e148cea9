#!/usr/bin/env bash
# Reference accuracies from Mammoth (aimagelab/mammoth @ e75a491) on Seq-MNIST (5 tasks of 2
# classes, Mammoth's MNIST MLP, Mammoth's own best args), CPU only, 1 thread, one run at a time:
#
#   sgd, ewc_on, si, lwf, joint                      (no buffer)
#   er, agem, icarl, der, derpp  x  buffer 200, 500
#   x  seeds $SEEDS (default "0 1 2 3 4")
#
# Every run: --dataset seq-mnist --load_best_args --seed N --num_workers 0 --non_verbose 1, through
# bench/mammoth/run_mammoth.py (forces 1 torch thread, skips dataset modules that cannot be
# imported offline; see its docstring). Each run's output goes to $OUT/<model>-<buffer>-seed<N>.log,
# ending with ### WALL_SECONDS (the whole process, start-up and data loading included) and
# ### EXIT_CODE; a log that has the final "Accuracy for 5 task(s)" line and exit code 0 is
# complete and is skipped when the script is run again. bench/mammoth/collect.py turns the logs
# into a CSV and a table. Mammoth also appends its own records under $MAMMOTH/data/results/.
#
# Environment:
#   MAMMOTH  (required) a checkout of aimagelab/mammoth at commit e75a491 (checked, with a warning
#            only, when it is a git checkout). Its source is not modified; the MNIST files are
#            placed under its data path ($MAMMOTH/data/MNIST/, see below).
#   PYTHON   (required) an interpreter with torch, torchvision, kornia, onedrivedownloader, ftfy,
#            regex, pyyaml, tqdm. One way, over the project's torch venv (torch 2.11.0, torchvision
#            0.26.0, numpy, Pillow, PyYAML, tqdm), installing only the four missing packages:
#              T=~/.cache/dcl/torch-2.11.0 V=~/.cache/dcl/mammoth-venv; "$T/bin/python" -m venv "$V" && echo "$T/lib/python3.11/site-packages" > "$V/lib/python3.11/site-packages/dcl_torch.pth" && "$V/bin/pip" install kornia onedrivedownloader ftfy regex
#            then PYTHON=~/.cache/dcl/mammoth-venv/bin/python
#   DATA     dcl's MNIST IDX directory (default: <repo>/data/mnist, as `dcl data fetch mnist` writes
#            it); the four IDX files, uncompressed or .gz.
#   OUT      log directory (default: results/mammoth-seq-mnist, relative to the current directory)
#   SEEDS    default "0 1 2 3 4"
#
# Usage (from the repository root):
#   MAMMOTH=/path/to/mammoth PYTHON=/path/to/python bench/mammoth/seq_mnist.sh              # the grid
#   MAMMOTH=... PYTHON=... bench/mammoth/seq_mnist.sh MODEL BUFFER SEED    # one run (e.g. der 200 0)
#   python3 bench/mammoth/collect.py results/mammoth-seq-mnist
#
# Facts about this Mammoth version that the grid works around or that shape its numbers:
#  * --load_best_args still parses the CLI once *before* appending the best args, so every argument
#    marked required (--lr, and model args --alpha/--beta/--c/--xi) must be given on the CLI.
#    Placeholders "0" are passed; best args are appended after them by main.py and win (argparse:
#    last wins). The final values are printed in each log's argument table.
#  * ewc_on: --load_best_args crashes (KeyError 'ewc-on': the model name is normalised to 'ewc-on'
#    but the best_args key is 'ewc_on'), so its seq-mnist best args are passed explicitly
#    (identical values: lr 0.03, e_lambda 90, gamma 1.0, batch_size 10, n_epochs 1).
#  * joint: main.py maps --model joint --load_best_args to best_args['seq-mnist']['sgd']
#    (lr 0.03, batch_size 10, n_epochs 1).
#  * minibatch_size (the replay batch) is overridden by batch_size: main.py:431-436 sets
#    args.minibatch_size = args.batch_size whenever batch_size is given, and the best args always
#    give it. So every replay method here replays 10 samples per step (A-GEM's best-args
#    minibatch_size 128 never takes effect).
#  * A-GEM's buffer holds only batch_size samples per task: models/agem.py end_task stores one
#    batch of the task's train loader (10 samples), whatever --buffer_size is; agem 200 and
#    agem 500 are therefore the same run.
#  * --device cpu is refused (the flag expects GPU indices); with CUDA_VISIBLE_DEVICES='' Mammoth
#    uses the CPU.
#  * there is no --nowand flag: wandb is disabled automatically because wandb_entity/project are
#    unset (WANDB_ENTITY/WANDB_PROJECT are unset here).
#  * Mammoth reads its data from ./data/ (utils/conf.py base_path), so runs start in $MAMMOTH.
#    Seq-MNIST builds torchvision MNIST(root=./data/MNIST) for the test set and its subclass
#    MyMNIST for the train set; torchvision looks for the raw files in <root>/<class name>/raw, so
#    the four uncompressed IDX files go to data/MNIST/MNIST/raw and data/MNIST/MyMNIST is a
#    symlink to MNIST. With the files present, download=True downloads nothing.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../mnist_raw.sh"
: "${MAMMOTH:?set MAMMOTH to a checkout of aimagelab/mammoth at commit e75a491}"
: "${PYTHON:?set PYTHON to an interpreter with torch, torchvision, kornia, onedrivedownloader, ftfy, regex, pyyaml, tqdm (see the header of $0)}"
DATA="${DATA:-$(dirname "$0")/../../data/mnist}"
OUT="${OUT:-results/mammoth-seq-mnist}"
SEEDS="${SEEDS:-0 1 2 3 4}"
MAMMOTH_COMMIT=e75a491c69fd729edeb01431afb753d9157d9a81

# Absolute paths: the runs start in $MAMMOTH.
MAMMOTH="$(cd "$MAMMOTH" && pwd)" || exit 1
[ -f "$MAMMOTH/main.py" ] || { echo "no main.py in MAMMOTH=$MAMMOTH" >&2; exit 1; }
case "$PYTHON" in */*) PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")" ;;
                  *) PYTHON="$(command -v "$PYTHON")" ;; esac
[ -x "$PYTHON" ] || { echo "PYTHON is not executable" >&2; exit 1; }
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)" || exit 1
export MAMMOTH

# ---- Checks: Mammoth's commit (warning only) and the interpreter's packages.
if top="$(git -C "$MAMMOTH" rev-parse --show-toplevel 2>/dev/null)" &&
   [ "$(cd "$top" && pwd -P)" = "$(cd "$MAMMOTH" && pwd -P)" ]; then  # its own checkout, not an enclosing one
  head="$(git -C "$MAMMOTH" rev-parse HEAD)"
  [ "$head" = "$MAMMOTH_COMMIT" ] ||
    echo "[seq_mnist] WARNING: $MAMMOTH is at $head, not $MAMMOTH_COMMIT; the work-arounds and numbers here are for that commit" >&2
else
  echo "[seq_mnist] note: $MAMMOTH is not a git checkout; its commit is not checked (expected $MAMMOTH_COMMIT)" >&2
fi
"$PYTHON" -c 'import torch, torchvision, kornia, onedrivedownloader, ftfy, regex, yaml, tqdm' ||
  { echo "PYTHON=$PYTHON lacks a package Mammoth needs (see the header of $0)" >&2; exit 1; }

# ---- Data: dcl's IDX files -> $MAMMOTH/data/MNIST/MNIST/raw, MyMNIST -> MNIST (no download).
place_mnist_raw "$DATA" "$MAMMOTH/data/MNIST/MNIST/raw" seq_mnist
MY="$MAMMOTH/data/MNIST/MyMNIST"
if [ -L "$MY" ] || [ ! -e "$MY" ]; then
  ln -sfn MNIST "$MY"
else
  echo "$MY exists and is not a symlink to MNIST; remove it (it must be: MyMNIST -> MNIST)" >&2; exit 1
fi

# ---- The runs.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 TORCH_NUM_THREADS=1
export CUDA_VISIBLE_DEVICES= HF_HUB_OFFLINE=1 WANDB_MODE=disabled PYTHONUNBUFFERED=1
unset WANDB_ENTITY WANDB_PROJECT

COMMON=(--dataset seq-mnist --num_workers 0 --non_verbose 1)
CONFIGS=(sgd:0 ewc_on:0 si:0 lwf:0 joint:0
         er:200 er:500 agem:200 agem:500 icarl:200 icarl:500
         der:200 der:500 derpp:200 derpp:500)

args_for() {  # model buffer -> MARGS, the model-specific arguments ("0" = required-arg placeholder)
  local m=$1 b=$2
  case $m in
    sgd|joint)     MARGS=(--model "$m" --load_best_args --lr 0) ;;
    si)            MARGS=(--model si --load_best_args --lr 0 --c 0 --xi 0) ;;
    lwf)           MARGS=(--model lwf --load_best_args --lr 0) ;;
    # --load_best_args raises KeyError 'ewc-on': its seq-mnist best args, given explicitly.
    ewc_on)        MARGS=(--model ewc_on --lr 0.03 --e_lambda 90 --gamma 1.0 --batch_size 10 --n_epochs 1) ;;
    er|agem|icarl) MARGS=(--model "$m" --buffer_size "$b" --load_best_args --lr 0) ;;
    der)           MARGS=(--model der --buffer_size "$b" --load_best_args --lr 0 --alpha 0) ;;
    derpp)         MARGS=(--model derpp --buffer_size "$b" --load_best_args --lr 0 --alpha 0 --beta 0) ;;
    *) echo "unknown model $m" >&2; return 1 ;;
  esac
}

is_done() {  # complete = final 5-task accuracy printed and exit code 0 recorded
  [ -f "$1" ] && grep -q 'Accuracy for 5 task(s)' "$1" && grep -q '^### EXIT_CODE: 0$' "$1"
}

FAILED=0
run_one() {  # model buffer seed
  local m=$1 b=$2 s=$3 log="$OUT/$1-$2-seed$3.log"
  if is_done "$log"; then echo "[seq_mnist] skip $m-$b-seed$s (done)"; return 0; fi
  args_for "$m" "$b" || return 1
  local cmd=("$PYTHON" "$HERE/run_mammoth.py" "${COMMON[@]}" "${MARGS[@]}" --seed "$s")
  echo "[seq_mnist] $(date -Is) start $m-$b-seed$s"
  {
    echo "### CMD: cd $MAMMOTH && MAMMOTH=$MAMMOTH OMP_NUM_THREADS=1 CUDA_VISIBLE_DEVICES= ${cmd[*]}"
    echo "### START: $(date -Is) host=$(hostname)"
  } > "$log"
  local t0 t1 rc wall
  t0=$(date +%s.%N)
  ( cd "$MAMMOTH" && exec "${cmd[@]}" ) >> "$log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  {
    echo "### END: $(date -Is)"
    echo "### WALL_SECONDS: $wall"
    echo "### EXIT_CODE: $rc"
  } >> "$log"
  echo "[seq_mnist] $(date -Is) end   $m-$b-seed$s rc=$rc wall=${wall}s"
  [ "$rc" -eq 0 ] || FAILED=$((FAILED + 1))
}

# One grid at a time per output directory.
exec 9>"$OUT/.lock"
flock -n 9 || { echo "another seq_mnist.sh holds $OUT/.lock" >&2; exit 1; }

if [ $# -eq 3 ]; then
  run_one "$1" "$2" "$3"
elif [ $# -eq 0 ]; then
  for seed in $SEEDS; do
    for c in "${CONFIGS[@]}"; do
      run_one "${c%%:*}" "${c##*:}" "$seed"
    done
  done
else
  echo "usage: $0 [MODEL BUFFER SEED]" >&2; exit 2
fi
echo "[seq_mnist] $(date -Is) done; $FAILED failed run(s); logs in $OUT"
[ "$FAILED" -eq 0 ]
