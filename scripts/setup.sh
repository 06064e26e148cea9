#!/usr/bin/env bash
# Sets up dcl on this machine: system packages, libtorch (from the PyPI wheel, in a cached
# venv), the release build, and the MNIST data. Idempotent: re-running it only redoes
# what is missing.
#
#   scripts/setup.sh            # everything
#   DCL_CACHE_DIR=/big/disk scripts/setup.sh
#
# The venv lives outside the checkout, in $DCL_CACHE_DIR (default ~/.cache/dcl), keyed by
# the torch version, so fresh clones reuse it.
set -euo pipefail

TORCH_VERSION=2.11.0
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${DCL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dcl}"
VENV="$CACHE_DIR/torch-$TORCH_VERSION"

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

step "System packages"
# command -> Debian package providing it
declare -A NEEDED=(
  [g++]=g++ [pkg-config]=pkg-config [npm]=npm [python3]=python3
)
missing=()
for cmd in "${!NEEDED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEEDED[$cmd]}")
done
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
# Fashion-MNIST's offline source (gzip IDX files under /usr/share/datasets/fashion-mnist).
[ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}"
else
  echo "all present"
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs) first"

step "libtorch $TORCH_VERSION (PyPI wheel torch==$TORCH_VERSION in $VENV)"
torch_ok() {
  "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" \
    >/dev/null 2>&1
}
if torch_ok; then
  echo "present"
else
  rm -rf "$VENV"
  mkdir -p "$CACHE_DIR"
  python3 -m venv "$VENV"
  echo "downloading torch==$TORCH_VERSION (about 4 GB with its CUDA libraries; a minute or two)"
  if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"; then
    rm -rf "$VENV"
    die "pip install torch==$TORCH_VERSION failed"
  fi
  torch_ok || { rm -rf "$VENV"; die "torch $TORCH_VERSION does not import after installation"; }
fi
TORCH_LIB="$("$VENV/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)"

step "Cargo configuration (.cargo/config.toml, machine-specific, not tracked)"
# torch-sys finds libtorch through the venv's python (LIBTORCH_USE_PYTORCH); the rpath lets
# every binary and test find libtorch at run time without LD_LIBRARY_PATH.
mkdir -p "$ROOT/.cargo"
cat > "$ROOT/.cargo/config.toml" <<TOML
# Written by scripts/setup.sh for this machine; not tracked. Re-run setup to refresh.
[env]
LIBTORCH_USE_PYTORCH = "1"
VIRTUAL_ENV = "$VENV"
PATH = { value = "$VENV/bin:$PATH", force = true }

[build]
rustflags = ["-C", "link-arg=-Wl,-rpath,$TORCH_LIB"]
TOML
echo "written"

step "Release build (first time: about 3 minutes)"
(cd "$ROOT" && cargo build --release --locked)

step "Data sets"
for dataset in mnist fashion-mnist; do
  (cd "$ROOT" && ./target/release/dcl data fetch "$dataset" --dataset-dir "$ROOT/data")
done

cat <<DONE

dcl is ready: $ROOT/target/release/dcl
  run the tests:  scripts/test.sh
  train:          target/release/dcl train --model mnistnet --dataset mnist --epochs 1
DONE
