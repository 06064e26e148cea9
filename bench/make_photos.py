"""Writes a folder of photograph-like JPEGs in ImageNet's layout for the loader benchmarks:
OUTDIR/ImageNet/{train,val}/<wnid>/*.JPEG, 500x375 pixels, quality 90, about 110 KB each
(smooth colour fields, shapes and sensor-like noise, so that the JPEG size and the decoding
work are those of real photographs, not of flat test images).

    python bench/make_photos.py OUTDIR [--classes 10] [--per-class 100]
"""
import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def photo(rng, size=(500, 375)):
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        fx, fy, phase = rng.uniform(0.002, 0.02, 2).tolist() + [rng.uniform(0, 6.3)]
        image[..., c] = 128 + 90 * np.sin(fx * x + phase) * np.cos(fy * y + phase / 2)
    canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(12):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(20, 200), y0 + rng.integers(20, 200)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
    pixels = np.asarray(canvas).astype(np.float32) + rng.normal(0, 24, (h, w, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    sizes = []
    for split, count in (("train", args.per_class), ("val", max(1, args.per_class // 10))):
        for c in range(args.classes):
            folder = args.outdir / "ImageNet" / split / f"n{1440764 + 7919 * c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                path = folder / f"{split}_{c}_{i}.JPEG"
                photo(rng).save(path, quality=90)
                sizes.append(path.stat().st_size)
    print(f"{len(sizes)} JPEGs, mean {np.mean(sizes) / 1024:.0f} KB")


if __name__ == "__main__":
    main()
