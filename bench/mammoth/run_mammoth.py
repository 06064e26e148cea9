#!/usr/bin/env python3
"""Launcher for Mammoth's main.py (the Mammoth source is left unmodified).

The Mammoth checkout is taken from the MAMMOTH environment variable (a checkout of
aimagelab/mammoth at commit e75a491); main.py is run from "$MAMMOTH/main.py". Mammoth resolves
its data and results paths relative to the current directory (./data/), so run this with
cwd = "$MAMMOTH" (bench/mammoth/seq_mnist.sh does).

Two CPU/offline work-arounds, both applied from outside the Mammoth tree:
 1. Mammoth's main.py hard-codes `torch.set_num_threads(2)` at import time; OMP_NUM_THREADS
    alone does not override that, so torch.set_num_threads is wrapped to force
    $TORCH_NUM_THREADS (default: $OMP_NUM_THREADS, default 1).
 2. datasets/__init__.py imports *every* dataset module to register it. Some of them need
    packages/weights unrelated to seq-mnist (seq_dtd/seq_8vision `import open_clip`, and
    seq_8vision downloads CLIP ViT-B-16 weights at class-definition time -> impossible offline).
    A failing import of a top-level `datasets.<name>` module is reported on stderr and skipped,
    exactly as models/__init__.py already does for models.

Usage:  cd "$MAMMOTH" && MAMMOTH="$PWD" python /path/to/bench/mammoth/run_mammoth.py <main.py args...>
"""
import importlib
import os
import runpy
import sys

_mammoth = os.environ.get("MAMMOTH")
if not _mammoth:
    sys.exit("run_mammoth.py: set MAMMOTH to a checkout of aimagelab/mammoth (commit e75a491)")
main_py = os.path.join(os.path.abspath(_mammoth), "main.py")
if not os.path.isfile(main_py):
    sys.exit(f"run_mammoth.py: {main_py} not found (MAMMOTH={_mammoth})")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

# 1. Thread count: every later torch.set_num_threads(n) (main.py's (2) included) sets _n instead.
_orig = torch.set_num_threads
_n = int(os.environ.get("TORCH_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1")))
torch.set_num_threads = lambda n: _orig(_n)
_orig(_n)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:
    pass

# 2. Tolerant dataset-module imports.
_orig_import_module = importlib.import_module


def _tolerant_import_module(name, package=None):
    try:
        return _orig_import_module(name, package)
    except Exception as e:
        if name.startswith("datasets.") and name.count(".") == 1:
            print(f"[run_mammoth] skipped dataset module {name}: {type(e).__name__}: {e}",
                  file=sys.stderr, flush=True)
            return None
        raise


importlib.import_module = _tolerant_import_module

# main.py puts its own folder first on sys.path itself (for utils, models, datasets, backbone).
sys.argv = [main_py] + sys.argv[1:]
print(f"[run_mammoth] torch {torch.__version__}, torch.get_num_threads() forced to {_n}", flush=True)
runpy.run_path(main_py, run_name="__main__")
