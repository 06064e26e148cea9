# Sourced by the reference scripts (bench/mammoth/seq_mnist.sh, bench/vandeven/split_mnist.sh):
# place_mnist_raw DATA RAW TAG copies dcl's four MNIST IDX files (uncompressed or .gz) from DATA
# into RAW, where torchvision's MNIST reads them without downloading, skipping files already
# there; exits on a missing file and warns (prefixed [TAG]) when one is not the official file.
place_mnist_raw() {
  local data=$1 raw=$2 tag=$3 f
  mkdir -p "$raw" || exit 1
  local -A md5=(  # the official MD5s of the uncompressed files
    [train-images-idx3-ubyte]=6bbc9ace898e44ae57da46a324031adb
    [train-labels-idx1-ubyte]=a25bea736e30d166cdddb491f175f624
    [t10k-images-idx3-ubyte]=2646ac647ad5339dbf082846283269ea
    [t10k-labels-idx1-ubyte]=27ae3e4e09519cfbb04c329615203637)
  for f in "${!md5[@]}"; do
    if [ -f "$data/$f" ]; then
      cmp -s "$data/$f" "$raw/$f" || cp "$data/$f" "$raw/$f" || exit 1
    elif [ -f "$data/$f.gz" ]; then
      gunzip -c "$data/$f.gz" > "$raw/$f.tmp" && mv "$raw/$f.tmp" "$raw/$f" || exit 1
    else
      echo "no $f(.gz) in DATA=$data (run: target/release/dcl data fetch mnist --dataset-dir data)" >&2; exit 1
    fi
    if command -v md5sum >/dev/null && [ "$(md5sum < "$raw/$f" | cut -d' ' -f1)" != "${md5[$f]}" ]; then
      echo "[$tag] WARNING: $raw/$f is not the official MNIST file (MD5 differs)" >&2
    fi
  done
}
