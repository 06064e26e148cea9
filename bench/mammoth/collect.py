#!/usr/bin/env python3
"""Collect the Mammoth Seq-MNIST logs of bench/mammoth/seq_mnist.sh.

    python3 bench/mammoth/collect.py [LOGDIR] [--csv PATH]

LOGDIR (default: $OUT, else results/mammoth-seq-mnist) holds <model>-<buffer>-seed<N>.log.
Writes PATH (default: LOGDIR/results.csv) with model,buffer,seed,class_il,task_il,wall_seconds,
one row per completed run (the final "Accuracy for 5 task(s)" line present and
"### EXIT_CODE: 0"), and prints a markdown table: mean ± sample standard deviation over the seeds
per (model, buffer). Logs of runs that are still going or failed are listed on stderr.

buffer is 0 for the methods without a replay buffer (sgd, ewc_on, si, lwf, joint). Accuracies
are Mammoth's printed values: the mean over the 5 tasks of the per-task test accuracy (%, 2 dp)
after the last task, Class-IL (all 10 classes) and Task-IL (the task's 2 classes). wall_seconds
is the whole process (Python start-up, imports and data loading included), 1 thread.
"""
import argparse
import csv
import glob
import os
import re
import statistics as st
import sys
from collections import defaultdict

NAME_RE = re.compile(r"^(?P<model>[a-z_]+)-(?P<buffer>\d+)-seed(?P<seed>\d+)\.log$")
FINAL_RE = re.compile(r"Accuracy for 5 task\(s\):\s*\[Class-IL\]:\s*([\d.]+) %\s*\[Task-IL\]:\s*([\d.]+) %")
WALL_RE = re.compile(r"^### WALL_SECONDS: ([\d.]+)", re.M)
EXIT_RE = re.compile(r"^### EXIT_CODE: (\d+)", re.M)
# The grid's order (bench/mammoth/seq_mnist.sh); other models follow, alphabetically.
ORDER = ["sgd", "ewc_on", "si", "lwf", "joint", "er", "agem", "icarl", "der", "derpp"]
FIELDS = ["model", "buffer", "seed", "class_il", "task_il", "wall_seconds"]


def parse(path):
    """The results of one log, or None if the run is not complete."""
    with open(path, errors="replace") as f:
        txt = f.read()
    finals = FINAL_RE.findall(txt)
    codes = EXIT_RE.findall(txt)
    if not finals or not codes or codes[-1] != "0":
        return None
    cil, til = finals[-1]
    wall = WALL_RE.findall(txt)
    return dict(class_il=float(cil), task_il=float(til),
                wall_seconds=float(wall[-1]) if wall else None)


def mean_sd(xs, fmt="{:.2f}"):
    if not xs:
        return "–"
    if len(xs) == 1:
        return fmt.format(xs[0])
    return f"{fmt.format(st.mean(xs))} ± {fmt.format(st.stdev(xs))}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("logdir", nargs="?", default=os.environ.get("OUT", "results/mammoth-seq-mnist"))
    ap.add_argument("--csv", help="output CSV (default: LOGDIR/results.csv)")
    a = ap.parse_args()
    out_csv = a.csv or os.path.join(a.logdir, "results.csv")

    rows, incomplete = [], []
    for path in sorted(glob.glob(os.path.join(a.logdir, "*.log"))):
        m = NAME_RE.match(os.path.basename(path))
        if not m:
            continue
        r = parse(path)
        if r is None:
            incomplete.append(os.path.basename(path))
            continue
        rows.append(dict(model=m["model"], buffer=int(m["buffer"]), seed=int(m["seed"]), **r))
    rank = lambda mdl: (ORDER.index(mdl), "") if mdl in ORDER else (len(ORDER), mdl)
    rows.sort(key=lambda r: (rank(r["model"]), r["buffer"], r["seed"]))

    with open(out_csv, "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({**r, "wall_seconds": "" if r["wall_seconds"] is None else f"{r['wall_seconds']:.3f}"})
    print(f"{len(rows)} completed runs -> {out_csv}", file=sys.stderr)
    if incomplete:
        print(f"{len(incomplete)} incomplete (running or failed): {', '.join(incomplete)}", file=sys.stderr)

    groups = defaultdict(list)
    for r in rows:
        groups[(r["model"], r["buffer"])].append(r)
    print("| model | buffer | seeds | Class-IL (%) | Task-IL (%) | wall (s) |")
    print("|---|---:|---|---:|---:|---:|")
    for (mdl, buf), rs in groups.items():  # rows are sorted, so groups are in order
        seeds = ",".join(str(r["seed"]) for r in rs)
        walls = [r["wall_seconds"] for r in rs if r["wall_seconds"] is not None]
        print(f"| {mdl} | {buf if buf else '–'} | {seeds} | {mean_sd([r['class_il'] for r in rs])} "
              f"| {mean_sd([r['task_il'] for r in rs])} | {mean_sd(walls, '{:.1f}')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
