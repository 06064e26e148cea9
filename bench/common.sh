# Shared by the bench/compare_*.sh scripts (sourced): paths, the setup venv's python, and
# helpers to read JSON fields and take medians and ratios.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DCL="$ROOT/target/release/dcl"
PYTHON="$(sed -n 's/^VIRTUAL_ENV = "\(.*\)"$/\1/p' "$ROOT/.cargo/config.toml" 2>/dev/null)/bin/python"
[ -x "$DCL" ] && [ -x "$PYTHON" ] || { echo "run scripts/setup.sh first" >&2; exit 1; }
MPIRUN=$(command -v mpirun.mpich || command -v mpirun || true)
export PYTHONWARNINGS=ignore

# The first number after "NAME": in the JSON on standard input.
field() { sed -n "s/.*\"$1\": *\([0-9.e+-]*\).*/\1/p" | head -1; }
# The median of the numbers on standard input, one per line.
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { echo "$1 / $2" | bc -l; }
