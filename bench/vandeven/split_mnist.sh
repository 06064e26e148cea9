#!/usr/bin/env bash
# Reference accuracies from the authors' code of van de Ven, Tuytelaars & Tolias (2022), "Three
# types of incremental learning" (Nature Machine Intelligence 4:1185-1197; GMvandeVen/
# continual-learning @ e6d795a), Split-MNIST, class-incremental, CPU only, 1 thread, one run at a
# time:
#
#   None, Joint, EWC, SI, LwF, ER (budget 100), A-GEM (budget 100), iCaRL (budget 100)
#   x  seeds $SEEDS (default "2 3")
#
# These are the 8 non-generative methods of the paper's class-IL comparison, all_results.sh:33
#   ./compare.py --seed=2 --n-seeds=20 --experiment=splitMNIST --scenario=class
# i.e. seeds 2-21 (seed 1 is the one their hyperparameter search uses, all_results.sh:29). FROMP,
# DGR, BI-R and the Generative Classifier are not run. compare.py runs every method in one process;
# here each method is its own `main.py` command line with the settings compare.py gives it written
# out (the comment above each method below names the lines), so runs can be done one at a time and
# resumed. The protocol: 5 contexts of 2 digits; an MLP 784-400-400-10 with ReLU; Adam, lr 0.001,
# batches of 128, 2,000 iterations per context; at the end, the test accuracy on each context's
# 2 digits (classified among all 10 classes) averaged over the 5 contexts. compare.py reports
# mean ± SEM over the seeds (compare.py:337,347); bench/vandeven/collect.py prints mean ± sample
# standard deviation (and the SEM).
#
# Each run's output goes to $OUT/<method>-seed<N>.log: CMD=, CWD=, START=, the program's output,
# then TIME_ELAPSED_S=... (GNU time, when present), ACC_FILE= (full-precision accuracy from
# $CL/store/results/acc-<stamp>.txt, written only when that file was written by this run), END=,
# WALL_S= (the whole process: Python start-up, imports, data loading included) and EXIT_CODE=.
# A log with the "=> average accuracy over all 5 contexts" line and EXIT_CODE=0 is complete and is
# skipped when the script runs again. bench/vandeven/collect.py turns the logs into a CSV and a
# table. The code also writes its own models and results under $CL/store/{models,results}.
#
# Environment:
#   CL      (required) a checkout of GMvandeVen/continual-learning at commit e6d795a (checked, with
#           a warning only, when it is a git checkout of its own). Its source is not modified; the
#           MNIST files are placed under its store/datasets (see below), and the runs start in $CL.
#   PYTHON  (required) an interpreter with torch, torchvision, numpy, tqdm and matplotlib. One way,
#           over the project's torch venv (torch 2.11.0, torchvision 0.26.0, numpy, tqdm), adding
#           only matplotlib: a venv of the same base Python 3.11 whose .pth file puts the torch
#           venv's site-packages on its path (pip then installs matplotlib 3.11.2 with contourpy,
#           cycler, fonttools, kiwisolver, pyparsing, python-dateutil, and takes numpy, Pillow and
#           packaging from the torch venv):
#             T=~/.cache/dcl/torch-2.11.0 V=~/.cache/dcl/vandeven-venv; "$T/bin/python" -m venv "$V" && echo "$T/lib/python3.11/site-packages" > "$V/lib/python3.11/site-packages/dcl_torch.pth" && "$V/bin/pip" install matplotlib
#           then PYTHON=~/.cache/dcl/vandeven-venv/bin/python. The reference runs' venv was made
#           so, except that its `-m venv` ran the torch venv's base interpreter (pyenv's Python
#           3.11.7) directly; "$T/bin/python" -m venv makes a venv over that same base.
#   DATA    dcl's MNIST IDX directory (default: <repo>/data/mnist, as `dcl data fetch mnist` writes
#           it); the four IDX files, uncompressed or .gz.
#   OUT     log directory (default: results/vandeven-split-mnist, relative to the current directory)
#   SEEDS   default "2 3" (the paper: "$(seq -s ' ' 2 21)")
#
# Usage (from the repository root):
#   CL=/path/to/continual-learning PYTHON=/path/to/python bench/vandeven/split_mnist.sh    # the grid
#   CL=... PYTHON=... bench/vandeven/split_mnist.sh METHOD SEED     # one run (e.g. icarl 2)
#   python3 bench/vandeven/collect.py results/vandeven-split-mnist
# METHOD is one of: none joint ewc si lwf er agem icarl.
#
# Facts about this code that the grid relies on (file:line in the checkout at e6d795a):
#  * main.py:38-39 applies the method options (--ewc, --si, ...: params/param_values.py:4-46) and
#    the per-experiment defaults (param_values.py:49-159; compare.py:34 applies the same defaults);
#    the values that matter are nevertheless given explicitly below (they equal those defaults).
#  * --fc-layers=3 counts the output layer: fcE = MLP(layers=fc_layers-1) (models/classifier.py:56),
#    i.e. two hidden layers of 400 units, plus the 10-unit classifier (stamp F-784x400x400_c10,
#    478,410 parameters, printed in every log).
#  * Class-IL output units: --active-classes (dest neg_samples, params/options.py:147-148) defaults
#    to "all": all 10 output units are active from the first context on, for None, Joint, EWC, SI,
#    LwF, ER and A-GEM (compare.py leaves it at the default for them). compare.py:239 sets
#    neg_samples = "all-so-far" for iCaRL only, hence --active-classes=all-so-far for iCaRL.
#  * Joint: compare.py:108-114 sets iters = contexts x iters = 5 x 2000 = 10000 and trains once on
#    the union of the 5 contexts (train/train_task_based.py:50-57). The command line gives
#    --iters=2000 (common) then --iters=10000; argparse keeps the last.
#  * ER weights its loss by the context: in context t, loss = (1/t) CE(current batch) +
#    (1 - 1/t) CE(replayed batch) (models/classifier.py:283, rnt = 1/context at
#    train/train_task_based.py:307); the replayed batch is min(128, buffer size) samples drawn from
#    the one pooled buffer of all previous classes (train_task_based.py:153), 100 per class, chosen
#    at random (models/cl/memory_buffer.py:135). A-GEM: the same buffer, but its loss only projects
#    the current gradient (classifier.py:272-273, 307-319, eps 1e-7). LwF: loss = CE(current) +
#    distillation (temperature 2) on the current batch, unweighted (main.py:263,
#    classifier.py:281; the (t-1) scaling of classifier.py:212-213 is for task/domain-IL only).
#  * EWC is "offline" EWC: a penalty per past context, diagonal Fisher from all the context's
#    training samples with all labels weighted by the predicted probabilities (param_values.py:6-9;
#    options.py:235-238 defaults; stamp FIdiagNAll-offline).
#  * The digits are assigned to contexts by a permutation drawn from the seed (data/load.py:126),
#    except seed 0, which keeps 0-1, 2-3, ... (main.py:95): different seeds = different splits.
#  * The code reads everything under ./store (params/options.py:6), so the runs start in $CL.
#    data/load.py:26-27 builds torchvision.datasets.MNIST(root=./store/datasets/MNIST,
#    download=True); torchvision (0.26) looks for the raw files in <root>/MNIST/raw and downloads
#    nothing when the four uncompressed IDX files are there (MNIST._check_exists), so they are
#    copied to $CL/store/datasets/MNIST/MNIST/raw.
#  * --no-gpus with CUDA_VISIBLE_DEVICES='': CPU; OMP/MKL/OpenBLAS threads = 1.
#  * Commit e6d795a (2025-11-05) differs from the paper-era commit 6f81a26 (2022-12-22) only in
#    ways that do not change these runs (git diff 6f81a26 e6d795a): compare.py, train/, eval/,
#    data/load.py and utils.py are unchanged; data/manipulate.py reads labels from .targets
#    instead of .train_labels (torchvision's deprecated alias of .targets: the same labels);
#    main.py adds Apple-MPS device selection (CPU here either way) and an eval_s fallback (eval_s is
#    always set); options.py renames --no-gpus' dest and makes --fc-layers/--channels default to
#    None, filled in by param_values.py with the former values (3/16), and adds --reducedResNet (not
#    used); param_values.py adds the reducedResNet defaults and guards a task-IL default;
#    continual_learner.py adds randomize_fisher (off), changes two tests that only matter with
#    --fisher-batch other than 1 or a --fisher-n (neither given) and rewrites the KFAC Fisher (not
#    used); classifier.py changes only the preconditioning branch (NCL, not used); models/fc/nets.py
#    only MLPs of 0 layers; param_stamp.py a trailing comma; visual_plt.py a plot option.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../mnist_raw.sh"

: "${CL:?set CL to a checkout of GMvandeVen/continual-learning at commit e6d795a}"
: "${PYTHON:?set PYTHON to an interpreter with torch, torchvision, numpy, tqdm, matplotlib (see the header of $0)}"
DATA="${DATA:-$(dirname "$0")/../../data/mnist}"
OUT="${OUT:-results/vandeven-split-mnist}"
SEEDS="${SEEDS:-2 3}"
CL_COMMIT=e6d795aa81b9cef742b8de76cb71222d4d1ce00b
METHODS=(none joint ewc si lwf er agem icarl)

usage() { echo "usage: $0 [METHOD SEED]   (METHOD: ${METHODS[*]}; SEED: a non-negative integer)" >&2; exit 2; }
is_seed() { case $1 in ''|*[!0-9]*) return 1 ;; esac; }
if [ $# -eq 2 ]; then
  [[ " ${METHODS[*]} " == *" $1 "* ]] && is_seed "$2" || usage
elif [ $# -eq 0 ]; then
  for seed in $SEEDS; do is_seed "$seed" || { echo "SEEDS must be non-negative integers: '$SEEDS'" >&2; exit 2; }; done
else
  usage
fi

# Absolute paths: the runs start in $CL.
CL="$(cd "$CL" && pwd)" || exit 1
[ -f "$CL/main.py" ] && [ -f "$CL/compare.py" ] || { echo "no main.py/compare.py in CL=$CL" >&2; exit 1; }
case "$PYTHON" in */*) PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")" ;;
                  *) PYTHON="$(command -v "$PYTHON")" ;; esac
[ -x "$PYTHON" ] || { echo "PYTHON is not executable" >&2; exit 1; }
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)" || exit 1

# ---- Checks: the code's commit (warning only) and the interpreter's packages.
if top="$(git -C "$CL" rev-parse --show-toplevel 2>/dev/null)" &&
   [ "$(cd "$top" && pwd -P)" = "$(cd "$CL" && pwd -P)" ]; then  # its own checkout, not an enclosing one
  head="$(git -C "$CL" rev-parse HEAD)"
  [ "$head" = "$CL_COMMIT" ] ||
    echo "[split_mnist] WARNING: $CL is at $head, not $CL_COMMIT (e6d795a); the command lines and line numbers here are for that commit" >&2
else
  echo "[split_mnist] note: $CL is not a git checkout of its own; its commit is not checked (expected $CL_COMMIT)" >&2
fi
"$PYTHON" -c 'import torch, torchvision, numpy, tqdm, matplotlib' ||
  { echo "PYTHON=$PYTHON lacks a package the code needs (see the header of $0)" >&2; exit 1; }

# ---- Data: dcl's IDX files -> $CL/store/datasets/MNIST/MNIST/raw (torchvision then downloads nothing).
place_mnist_raw "$DATA" "$CL/store/datasets/MNIST/MNIST/raw" split_mnist

# ---- The runs.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMEXPR_NUM_THREADS=1
export CUDA_VISIBLE_DEVICES= PYTHONUNBUFFERED=1

# Common to all 8 = the splitMNIST defaults of params/param_values.py (as compare.py:34 sets them):
#   --iters=2000 :64, --batch=128 :66, --lr=0.001 :65, --fc-layers=3 :55, --fc-units=400 :70-72
#   (5 contexts :61-63; Adam, params/options.py:136). --no-gpus: CPU. --time: main.py also writes
#   the training time to store/results/time-<stamp>.txt.
COMMON=(--experiment=splitMNIST --scenario=class --iters=2000 --batch=128 --lr=0.001 --fc-layers=3
        --fc-units=400 --no-gpus --time)

args_for() {  # method -> MARGS, the method's own arguments
  case $1 in
    # None: compare.py:103 (replay "none", no regularisation).
    none)  MARGS=() ;;
    # Joint: compare.py:108-114 (joint = True; iters = contexts x iters = 5 x 2000); --joint
    # options.py:175. argparse keeps the last --iters (10000).
    joint) MARGS=(--joint --iters=10000) ;;
    # EWC: compare.py:141-144 (weight_penalty, importance_weighting 'fisher', offline, reg_strength =
    # ewc_lambda); --ewc sets the same three, param_values.py:6-9; ewc_lambda = 1e9 for splitMNIST
    # class-IL, param_values.py:136-138 (also the --reg-strength default with --ewc, :139-142).
    ewc)   MARGS=(--ewc --reg-strength=1000000000) ;;
    # SI: compare.py:151-153 (weight_penalty, importance_weighting 'si', reg_strength = si_c);
    # --si param_values.py:10-12; si_c = 5000 for splitMNIST class-IL, param_values.py:135;
    # epsilon 0.1, options.py:245.
    si)    MARGS=(--si --reg-strength=5000) ;;
    # LwF: compare.py:164-165 (replay 'current', distill); --lwf param_values.py:26-28;
    # temperature 2, options.py:263.
    lwf)   MARGS=(--lwf) ;;
    # ER: compare.py:211-212 (replay 'buffer', sample_selection 'random'); budget 100 per class,
    # param_values.py:88; 'random' selection is the default without --icarl, param_values.py:90-92.
    er)    MARGS=(--replay=buffer --budget=100) ;;
    # A-GEM: compare.py:219-221 (replay 'buffer', 'random', use_replay 'inequality'); --agem
    # param_values.py:29-31; budget :88; eps_agem 1e-7, options.py:299.
    agem)  MARGS=(--agem --budget=100) ;;
    # iCaRL: compare.py:234-239 (bce, bce_distill, prototypes, add_buffer, herding, neg_samples
    # 'all-so-far'); --icarl sets the first five, param_values.py:41-46; --active-classes is
    # neg_samples, options.py:147-148; budget :88.
    icarl) MARGS=(--icarl --budget=100 --active-classes=all-so-far) ;;
    *) echo "unknown method $1 (one of: ${METHODS[*]})" >&2; return 1 ;;
  esac
}

is_done() {  # complete = final average accuracy printed and EXIT_CODE=0 recorded at the end
  [ -f "$1" ] && grep -aq "=> average accuracy over all 5 contexts" "$1" &&
    tail -n 5 "$1" | grep -aq "^EXIT_CODE=0$"
}

loadavg() { [ -r /proc/loadavg ] && cut -d' ' -f1-3 /proc/loadavg || echo "?"; }

# GNU time, if present, adds user/system CPU time and peak memory to the log.
TIMER=()
if [ -x /usr/bin/time ] && /usr/bin/time -f %e -o /dev/null true 2>/dev/null; then
  TIMER=(/usr/bin/time -f "TIME_ELAPSED_S=%e TIME_USER_S=%U TIME_SYS_S=%S MAXRSS_KB=%M")
fi

FAILED=0
run_one() {  # method seed
  local m=$1 s=$2 log="$OUT/$1-seed$2.log"
  if is_done "$log"; then echo "[split_mnist] skip $m-seed$s (done)"; return 0; fi
  args_for "$m" || return 1
  local cmd=("$PYTHON" main.py "${COMMON[@]}" "${MARGS[@]}" --seed="$s")
  echo "[split_mnist] $(date -Is) start $m-seed$s"
  {
    echo "CMD=cd $CL && OMP_NUM_THREADS=1 CUDA_VISIBLE_DEVICES= ${cmd[*]}"
    echo "CWD=$CL"
    echo "START=$(date -Is) host=$(hostname)"
    echo "LOADAVG_START=$(loadavg)"
  } > "$log"
  local marker="$log.started" timef="$log.time" t0 t1 rc wall stamp accf
  touch "$marker"
  rm -f "$timef"
  t0=$(date +%s.%N)
  if [ ${#TIMER[@]} -gt 0 ]; then
    ( cd "$CL" && exec "${TIMER[@]}" -o "$timef" "${cmd[@]}" ) >> "$log" 2>&1
  else
    ( cd "$CL" && exec "${cmd[@]}" ) >> "$log" 2>&1
  fi
  rc=$?
  t1=$(date +%s.%N)
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  stamp=$(grep -a -m1 -E "^splitMNIST5-" "$log")
  accf="$CL/store/results/acc-$stamp.txt"
  {
    echo
    [ -f "$timef" ] && cat "$timef"
    # only an accuracy file this run wrote (not one left by an earlier run of the same stamp)
    if [ -n "$stamp" ] && [ -f "$accf" ] && [ -n "$(find "$accf" -newer "$marker")" ]; then
      echo "ACC_FILE=$(head -n1 "$accf")"
    fi
    echo "END=$(date -Is)"
    echo "LOADAVG_END=$(loadavg)"
    echo "WALL_S=$wall"
    echo "EXIT_CODE=$rc"
  } >> "$log"
  rm -f "$marker" "$timef"
  echo "[split_mnist] $(date -Is) end   $m-seed$s rc=$rc wall=${wall}s $(grep -a '=> average accuracy' "$log" | tail -n1)"
  [ "$rc" -eq 0 ] || FAILED=$((FAILED + 1))
}

# One grid at a time per checkout (the runs write store/results/acc-<stamp>.txt there; the lock
# sits in that directory, which the checkout's .gitignore ignores).
LOCK="$CL/store/results/.split_mnist.lock"
mkdir -p "$CL/store/results" && exec 9>"$LOCK" || exit 1
if command -v flock >/dev/null; then
  flock -n 9 || { echo "another split_mnist.sh holds $LOCK" >&2; exit 1; }
fi

if [ $# -eq 2 ]; then
  run_one "$1" "$2"
else
  for seed in $SEEDS; do
    for m in "${METHODS[@]}"; do
      run_one "$m" "$seed"
    done
  done
fi
echo "[split_mnist] $(date -Is) done; $FAILED failed run(s); logs in $OUT"
[ "$FAILED" -eq 0 ]
