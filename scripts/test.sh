#!/usr/bin/env bash
# Runs dcl's test suite (after scripts/setup.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -f .cargo/config.toml ] || { echo "test: run scripts/setup.sh first (no .cargo/config.toml)" >&2; exit 1; }
export DCL_DATASET_DIR="${DCL_DATASET_DIR:-$ROOT/data}"
cargo test --workspace --release --locked "$@"
