#!/usr/bin/env bash
# Runs dcl's whole test suite (after scripts/setup.sh; every test binary, even after a failure)
# and ends with one line of totals.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -f .cargo/config.toml ] || { echo "test: run scripts/setup.sh first (no .cargo/config.toml)" >&2; exit 1; }
export DCL_DATASET_DIR="${DCL_DATASET_DIR:-$ROOT/data}"
# libtorch's portable code path on every CPU with AVX2 (results independent of AVX-512; the
# end-to-end tests set it themselves: crates/dcl/tests/common).
if grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
  export ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --release --locked --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
