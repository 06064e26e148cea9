#!/usr/bin/env python3
"""dcl's Seq-MNIST table beside Mammoth's, method by method.

    python3 bench/mammoth/compare.py DCL_CSV MAMMOTH_CSV

DCL_CSV is the seq-mnist.csv of `dcl reproduce seq-mnist` (per row: method, buffer, seeds,
means and stds, the class-IL accuracy of every seed); MAMMOTH_CSV the results.csv of
bench/mammoth/collect.py (one row per run). Prints a markdown table: class-IL and task-IL mean ±
sample standard deviation of each, over the seeds each has, and their difference in class-IL.
"""
import csv
import statistics as st
import sys
from collections import defaultdict

# dcl's method names -> Mammoth's models (GDumb and offline EWC: no Mammoth run).
MAMMOTH_NAME = {
    "SGD": "sgd",
    "Joint": "joint",
    "oEWC": "ewc_on",
    "SI": "si",
    "LwF": "lwf",
    "ER": "er",
    "A-GEM": "agem",
    "DER": "der",
    "DER++": "derpp",
    "iCaRL": "icarl",
}


def mean_std(values):
    if len(values) > 1:
        return st.mean(values), st.stdev(values)
    return values[0], 0.0


def cell(values):
    mean, std = mean_std(values)
    return f"{mean:.2f} ± {std:.2f}"


def main(dcl_csv, mammoth_csv):
    mammoth = defaultdict(lambda: ([], []))
    with open(mammoth_csv) as f:
        for row in csv.DictReader(f):
            class_il, task_il = mammoth[(row["model"], int(row["buffer"]))]
            class_il.append(float(row["class_il"]))
            task_il.append(float(row["task_il"]))
    print("| Method | Buffer | dcl class-IL | Mammoth class-IL | difference | dcl task-IL | Mammoth task-IL | seeds (dcl, Mammoth) |")
    print("|---|---|---|---|---|---|---|---|")
    with open(dcl_csv) as f:
        for row in csv.DictReader(f):
            buffer = 0 if row["buffer"] == "-" else int(row["buffer"])
            dcl_class = f"{float(row['class_il_mean']):.2f} ± {float(row['class_il_std']):.2f}"
            dcl_task = f"{float(row['task_il_mean']):.2f} ± {float(row['task_il_std']):.2f}"
            ref = mammoth.get((MAMMOTH_NAME.get(row["method"], ""), buffer))
            if ref:
                difference = float(row["class_il_mean"]) - mean_std(ref[0])[0]
                ref_class, ref_task, ref_seeds = cell(ref[0]), cell(ref[1]), len(ref[0])
                difference = f"{difference:+.2f}"
            else:
                ref_class = ref_task = difference = "–"
                ref_seeds = 0
            print(
                f"| {row['method']} | {row['buffer']} | {dcl_class} | {ref_class} | {difference} | "
                f"{dcl_task} | {ref_task} | {row['seeds']}, {ref_seeds} |"
            )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
