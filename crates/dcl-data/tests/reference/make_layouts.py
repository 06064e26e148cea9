#!/usr/bin/env python3
"""Writes small data sets in the real on-disk layouts of upstream's image data sets.

    make_layouts.py OUTDIR [--classes N] [--per-class K] [--only NAME,...]

OUTDIR plays the part of `--dataset-dir`; each layout goes where upstream (continuum and
torchvision) looks for it:

  cifar10           CIFAR10/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}
                    CIFAR10/cifar-10-batches-bin/{data_batch_1..5.bin,test_batch.bin,batches.meta.txt}
  cifar100          CIFAR100/cifar-100-python/{train,test,meta}
                    CIFAR100/cifar-100-binary/{train.bin,test.bin,fine_label_names.txt,coarse_label_names.txt}
  tinyimagenet      TinyImageNet/tiny-imagenet-200/{wnids.txt,words.txt,train/<wnid>/images/*.JPEG,
                    train/<wnid>/<wnid>_boxes.txt,val/images/*.JPEG,val/val_annotations.txt,test/images/*.JPEG}
  imagenet          ImageNet/{train,val}/<wnid>/*.JPEG
  imagenet_blurred  ImageNet_blurred/{train,val}/<wnid>/*.JPEG
  imagenet100       ImageNet100/{train,val}/<wnid>/*.JPEG + train_100.txt, val_100.txt
  imagenet100small  ImageNet100-small/{train,val}/<wnid>/*.JPEG + train_100_small.txt, val_100_small.txt

The CIFAR pickles are written as the official ones are: Python 2 cPickle, protocol 2, every
string a Python 2 `str` (opcodes SHORT_BINSTRING/BINSTRING), `data` a numpy uint8 array
reduced through `numpy.core.multiarray._reconstruct`, labels lists of ints. The binary
versions hold records of label byte(s) + 3072 pixel bytes.

Content, so that tests can check every value (N classes, K images per class and split):
  - sample j (0 <= j < N*K) of a split has label j % N;
  - CIFAR: byte (c, y, x) of sample j of split s (train 0, test 1) with label l is
    (67*l + 101*c + x + y + 3*j + 128*s) % 256, planar (R plane, G plane, B plane);
    class names are the real ones' first N (N is capped at 10 and 100); CIFAR-100's coarse
    label is the fine label % 20;
  - wnids are n{1440764 + 7919*i:08d} for class i; Tiny-ImageNet's wnids.txt lists them in
    reverse order (label = line), ImageNet's classes are the sorted folder names;
    Tiny-ImageNet's validation image val_<j>.JPEG has the wnid of label j % N in wnids.txt;
  - ImageNet100 lists (`<split>/<wnid>/<file> <label>`, labels by sorted wnid) name N classes;
    their folders hold one more class that no list names (a subset, as continuum's);
  - JPEGs (quality 90) are one colour per class with a gradient and a little noise, 64x64 for
    Tiny-ImageNet and of varied sizes for ImageNet.
Needs numpy and PIL (the venv of scripts/setup.sh).
"""

import argparse
import colorsys
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_NAMES = "airplane automobile bird cat deer dog frog horse ship truck".split()
CIFAR100_FINE = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()
CIFAR100_COARSE = (
    "aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices "
    "household_furniture insects large_carnivores large_man-made_outdoor_things large_natural_outdoor_scenes "
    "large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people reptiles small_mammals trees "
    "vehicles_1 vehicles_2"
).split()
LAYOUTS = ["cifar10", "cifar100", "tinyimagenet", "imagenet", "imagenet_blurred", "imagenet100", "imagenet100small"]
SPLITS = ("train", "test")


class Py2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle did: strings as `str`, numpy under its Python 2 names."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None):
        module = {"_reconstruct": "numpy.core.multiarray", "ndarray": "numpy", "dtype": "numpy"}[obj.__name__]
        self.write(pickle.GLOBAL + f"{module}\n{obj.__name__}\n".encode("ascii"))
        self.memoize(obj)

    def reducer_override(self, obj):
        if isinstance(obj, np.dtype):
            # numpy 1.x under Python 2 gave the flags as ints.
            return np.dtype, (obj.str[1:], 0, 1), (3, "|", None, None, None, -1, -1, 0)
        return NotImplemented


def py2_pickle(obj, path):
    with open(path, "wb") as f:
        Py2Pickler(f, protocol=2).dump(obj)


def cifar_image(label, j, split):
    c, y, x = np.meshgrid(np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    return ((67 * label + 101 * c + x + y + 3 * j + 128 * split) % 256).astype(np.uint8).reshape(3072)


def cifar_split(n, k, split):
    labels = [j % n for j in range(n * k)]
    return np.stack([cifar_image(label, j, split) for j, label in enumerate(labels)]), labels


def write_cifar10(root, n, k):
    n = min(n, 10)
    names = CIFAR10_NAMES[:n]
    py = root / "CIFAR10" / "cifar-10-batches-py"
    binary = root / "CIFAR10" / "cifar-10-batches-bin"
    py.mkdir(parents=True, exist_ok=True)
    binary.mkdir(parents=True, exist_ok=True)
    py2_pickle({"num_cases_per_batch": 10000, "label_names": names, "num_vis": 3072}, py / "batches.meta")
    (binary / "batches.meta.txt").write_text("".join(name + "\n" for name in names) + "\n")
    for split in range(2):
        data, labels = cifar_split(n, k, split)
        batches = np.array_split(np.arange(len(labels)), 5 if split == 0 else 1)
        for b, rows in enumerate(batches):
            name = f"data_batch_{b + 1}" if split == 0 else "test_batch"
            label = f"training batch {b + 1} of 5" if split == 0 else "testing batch 1 of 1"
            entry = {
                "batch_label": label,
                "labels": [labels[r] for r in rows],
                "data": data[rows],
                "filenames": [f"{names[labels[r]]}_s_{r:06d}.png" for r in rows],
            }
            py2_pickle(entry, py / name)
            records = [bytes([labels[r]]) + data[r].tobytes() for r in rows]
            (binary / f"{name}.bin").write_bytes(b"".join(records))


def write_cifar100(root, n, k):
    n = min(n, 100)
    py = root / "CIFAR100" / "cifar-100-python"
    binary = root / "CIFAR100" / "cifar-100-binary"
    py.mkdir(parents=True, exist_ok=True)
    binary.mkdir(parents=True, exist_ok=True)
    fine, coarse = CIFAR100_FINE[:n], CIFAR100_COARSE[: min(n, 20)]
    py2_pickle({"fine_label_names": fine, "coarse_label_names": coarse}, py / "meta")
    (binary / "fine_label_names.txt").write_text("".join(name + "\n" for name in fine))
    (binary / "coarse_label_names.txt").write_text("".join(name + "\n" for name in coarse))
    for split, name in enumerate(("train", "test")):
        data, labels = cifar_split(n, k, split)
        coarse_labels = [label % 20 for label in labels]
        entry = {
            "filenames": [f"{fine[label]}_s_{j:06d}.png" for j, label in enumerate(labels)],
            "batch_label": f"{'training' if split == 0 else 'testing'} batch 1 of 1",
            "fine_labels": labels,
            "coarse_labels": coarse_labels,
            "data": data,
        }
        py2_pickle(entry, py / name)
        records = [bytes([c, f]) + row.tobytes() for c, f, row in zip(coarse_labels, labels, data)]
        (binary / f"{name}.bin").write_bytes(b"".join(records))


def wnid(i):
    return f"n{1440764 + 7919 * i:08d}"


def jpeg(path, label, n, size, seed):
    """One colour per class, a gradient and a little noise (seeded by the tuple `seed`), as a quality-90 JPEG."""
    width, height = size
    rng = np.random.default_rng(seed)
    r, g, b = colorsys.hsv_to_rgb(label / max(n, 1), 0.8, 0.9)
    base = np.array([r, g, b]) * 200
    ramp = np.linspace(0, 40, width)[None, :, None] + np.linspace(0, 15, height)[:, None, None]
    pixels = base[None, None, :] + ramp + rng.normal(0, 6, (height, width, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)


def write_tinyimagenet(root, n, k):
    base = root / "TinyImageNet" / "tiny-imagenet-200"
    base.mkdir(parents=True, exist_ok=True)
    wnids = [wnid(i) for i in reversed(range(n))]
    (base / "wnids.txt").write_text("".join(w + "\n" for w in wnids))
    (base / "words.txt").write_text("".join(f"{w}\tsynthetic class {w}\n" for w in sorted(wnids)))
    for label, w in enumerate(wnids):
        boxes = []
        for i in range(k):
            name = f"{w}_{i}.JPEG"
            jpeg(base / "train" / w / "images" / name, label, n, (64, 64), seed=(0, label, i))
            boxes.append(f"{name}\t0\t0\t63\t63\n")
        (base / "train" / w / f"{w}_boxes.txt").write_text("".join(boxes))
    annotations = []
    for j in range(n * k):
        name = f"val_{j}.JPEG"
        jpeg(base / "val" / "images" / name, j % n, n, (64, 64), seed=(1, j))
        annotations.append(f"{name}\t{wnids[j % n]}\t0\t0\t63\t63\n")
    (base / "val" / "val_annotations.txt").write_text("".join(annotations))
    for j in range(2):
        jpeg(base / "test" / "images" / f"test_{j}.JPEG", 0, n, (64, 64), seed=(2, j))


SIZES = [(80, 60), (64, 96), (100, 75)]


def write_image_folders(base, n, k):
    """`{train,val}/<wnid>/*.JPEG` for the first n wnids; returns each split's (path, label) pairs."""
    listed = {}
    for s, split in enumerate(("train", "val")):
        listed[split] = []
        for label in range(n):
            w = wnid(label)
            for i in range(k):
                name = f"{w}_{i}.JPEG" if split == "train" else f"ILSVRC2012_val_{label * k + i + 1:08d}.JPEG"
                jpeg(base / split / w / name, label, n, SIZES[(label + i) % len(SIZES)], seed=(s, label, i))
                listed[split].append((f"{split}/{w}/{name}", label))
    return listed


def write_imagenet(root, n, k, folder):
    write_image_folders(root / folder, n, k)


def write_imagenet100(root, n, k, folder, suffix):
    base = root / folder
    # One class more on disk than in the lists: the lists pick a subset of the folders.
    listed = write_image_folders(base, n + 1, k)
    for split, prefix in (("train", "train"), ("val", "val")):
        lines = "".join(f"{path} {label}\n" for path, label in listed[split] if label < n)
        (base / f"{prefix}_100{suffix}.txt").write_text(lines)


WRITERS = {
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
    "tinyimagenet": write_tinyimagenet,
    "imagenet": lambda root, n, k: write_imagenet(root, n, k, "ImageNet"),
    "imagenet_blurred": lambda root, n, k: write_imagenet(root, n, k, "ImageNet_blurred"),
    "imagenet100": lambda root, n, k: write_imagenet100(root, n, k, "ImageNet100", ""),
    "imagenet100small": lambda root, n, k: write_imagenet100(root, n, k, "ImageNet100-small", "_small"),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path, help="the folder to write into (the --dataset-dir of the layouts)")
    parser.add_argument("--classes", type=int, default=3, help="classes per data set (default 3)")
    parser.add_argument("--per-class", type=int, default=2, help="images per class and split (default 2)")
    parser.add_argument("--only", default=",".join(LAYOUTS), help="comma-separated layouts (default: all)")
    args = parser.parse_args()
    if args.classes < 1 or args.per_class < 1:
        parser.error("--classes and --per-class must be at least 1")
    names = [name for name in args.only.split(",") if name]
    unknown = [name for name in names if name not in WRITERS]
    if unknown:
        parser.error(f"unknown layout(s) {', '.join(unknown)}; known: {', '.join(LAYOUTS)}")
    for name in names:
        WRITERS[name](args.outdir, args.classes, args.per_class)
    print(f"wrote {', '.join(names)} ({args.classes} classes, {args.per_class} per class) in {args.outdir}")


if __name__ == "__main__":
    sys.exit(main())
