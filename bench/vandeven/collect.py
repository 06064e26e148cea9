#!/usr/bin/env python3
"""Collect the Split-MNIST class-IL logs of bench/vandeven/split_mnist.sh (van de Ven et al. 2022).

    python3 bench/vandeven/collect.py [LOGDIR] [--csv PATH]

LOGDIR (default: $OUT, else results/vandeven-split-mnist) holds <method>-seed<N>.log, method one
of none, joint, ewc, si, lwf, er, agem, icarl. Writes PATH (default: LOGDIR/results.csv) with
method,seed,accuracy_percent,wall_seconds, one row per completed run (the line "=> average
accuracy over all 5 contexts" present and the last EXIT_CODE= 0), and prints a markdown table:
mean ± sample standard deviation over the seeds per method, the standard error of the mean
(what the authors' compare.py prints, compare.py:337,347), the per-seed values and the mean wall
time. Logs of runs that are still going or failed, and files not named <method>-seed<N>.log, are
listed on stderr.

accuracy_percent = 100 x the final average test accuracy over the 5 contexts (each context's test
digits classified among all 10 classes, then averaged over the contexts), as main.py writes it to
store/results/acc-<stamp>.txt: full precision from the log's ACC_FILE= line when present, else
the 4-decimal "=> average accuracy" line (a warning says so; the two are checked against each
other when both are present). wall_seconds = WALL_S= (the whole process: Python start-up,
imports, data loading, training and evaluation; 1 thread).
"""
import argparse
import csv
import glob
import os
import re
import statistics as st
import sys

# The grid's order (bench/vandeven/split_mnist.sh) and the paper's names.
ORDER = ["none", "joint", "ewc", "si", "lwf", "er", "agem", "icarl"]
NAMES = {"none": "None", "joint": "Joint", "ewc": "EWC", "si": "SI", "lwf": "LwF",
         "er": "ER (b=100)", "agem": "A-GEM (b=100)", "icarl": "iCaRL (b=100)"}
NAME_RE = re.compile(r"^(?P<method>%s)-seed(?P<seed>\d+)\.log$" % "|".join(ORDER))
ACC_LINE_RE = re.compile(r"=> average accuracy over all 5 contexts: ([0-9.]+)")
ACC_FILE_RE = re.compile(r"^ACC_FILE=([0-9.eE+-]+)\s*$", re.M)
EXIT_RE = re.compile(r"^EXIT_CODE=(\d+)\s*$", re.M)
WALL_RE = re.compile(r"^WALL_S=([0-9.]+)\s*$", re.M)
FIELDS = ["method", "seed", "accuracy_percent", "wall_seconds"]


def parse(path):
    """(accuracy in %, wall seconds or None, warning or None) of one log, or None if incomplete."""
    with open(path, errors="replace") as f:
        txt = f.read()
    codes = EXIT_RE.findall(txt)
    lines = ACC_LINE_RE.findall(txt)
    if not codes or codes[-1] != "0" or not lines:
        return None
    printed = float(lines[-1])
    files = ACC_FILE_RE.findall(txt)
    warning = None
    if files:
        acc = float(files[-1])
        if abs(acc - printed) > 0.00005 + 1e-9:  # printed with 4 decimals
            warning = f"ACC_FILE={files[-1]} disagrees with the printed {lines[-1]}; using the printed value"
            acc = printed
    else:
        acc = printed
        warning = "no ACC_FILE= line; accuracy from the 4-decimal printed line"
    wall = WALL_RE.findall(txt)
    return 100.0 * acc, float(wall[-1]) if wall else None, warning


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("logdir", nargs="?", default=os.environ.get("OUT", "results/vandeven-split-mnist"))
    ap.add_argument("--csv", help="output CSV (default: LOGDIR/results.csv)")
    a = ap.parse_args()
    if not os.path.isdir(a.logdir):
        print(f"no directory {a.logdir}", file=sys.stderr)
        return 1
    out_csv = a.csv or os.path.join(a.logdir, "results.csv")

    rows, incomplete, ignored = [], [], []
    for path in sorted(glob.glob(os.path.join(a.logdir, "*.log"))):
        name = os.path.basename(path)
        m = NAME_RE.match(name)
        if not m:
            ignored.append(name)
            continue
        r = parse(path)
        if r is None:
            incomplete.append(name)
            continue
        acc, wall, warning = r
        if warning:
            print(f"{name}: {warning}", file=sys.stderr)
        rows.append(dict(method=m["method"], seed=int(m["seed"]), accuracy_percent=acc, wall_seconds=wall))
    rows.sort(key=lambda r: (ORDER.index(r["method"]), r["seed"]))

    with open(out_csv, "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({**r, "accuracy_percent": f"{r['accuracy_percent']:.4f}",
                        "wall_seconds": "" if r["wall_seconds"] is None else f"{r['wall_seconds']:.3f}"})
    print(f"{len(rows)} completed runs -> {out_csv}", file=sys.stderr)
    if incomplete:
        print(f"{len(incomplete)} incomplete (running or failed): {', '.join(incomplete)}", file=sys.stderr)
    if ignored:
        print(f"ignored (not <method>-seed<N>.log): {', '.join(ignored)}", file=sys.stderr)

    print("| Method | n | seeds | accuracy % (mean ± sample std) | SEM | per seed (%) | wall s (mean) |")
    print("|---|---:|---|---:|---:|---|---:|")
    for method in ORDER:
        rs = [r for r in rows if r["method"] == method]
        if not rs:
            print(f"| {NAMES[method]} | 0 | – | – | – | – | – |")
            continue
        accs = [r["accuracy_percent"] for r in rs]
        walls = [r["wall_seconds"] for r in rs if r["wall_seconds"] is not None]
        if len(accs) > 1:
            sd = st.stdev(accs)
            acc_s, sem_s = f"{st.mean(accs):.2f} ± {sd:.2f}", f"{sd / len(accs) ** 0.5:.2f}"
        else:
            acc_s, sem_s = f"{accs[0]:.2f}", "–"
        print(f"| {NAMES[method]} | {len(rs)} | {','.join(str(r['seed']) for r in rs)} | {acc_s} | {sem_s} "
              f"| {', '.join(f'{x:.2f}' for x in accs)} | {f'{st.mean(walls):.0f}' if walls else '–'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
