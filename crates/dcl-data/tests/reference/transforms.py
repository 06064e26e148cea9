"""Reference outputs for crates/dcl-data/tests/transforms.rs: PIL's decoding and
torchvision's resizes and crops of generated images.

    python transforms.py OUT_DIR

Writes OUT_DIR/manifest.json and the files it names: encoded images (.jpg, .png) and raw
planar uint8 pixels (.u8, channels then rows). Every case of the manifest has an "op", its
parameters, an "input" file and its "input_shape", and the reference's "output" file and
"output_shape"; resize cases also name PIL's result of the same resize ("pil").
"""

import json
import os
import sys

import numpy as np
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as F
from PIL import Image, ImageDraw, ImageFilter

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(0)
cases = []


def natural(height, width):
    """Smooth gradients, filled shapes, a slight blur and noise: a photograph's statistics,
    roughly (500x375 gives a JPEG of about 110 KB at quality 90)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = np.zeros((height, width, 3), np.float32)
    for c in range(3):
        a, b, f = rng.uniform(-1, 1, 3)
        pixels[..., c] = 128 + 60 * np.sin(a * x / 40 + b * y / 50 + f * 6) + 40 * np.cos((x * b - y * a) / 90)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(25):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(10, 150)), y0 + int(rng.integers(10, 150))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.integers(0, 2) else draw.rectangle)([x0, y0, x1, y1], fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(0.7))
    noisy = np.asarray(image).astype(np.float32) + rng.normal(0, 24, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def planar(image):
    """A PIL image's pixels as planar uint8 (channels, height, width)."""
    array = np.asarray(image.convert("RGB"))
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def save_raw(name, array):
    array = np.ascontiguousarray(array, dtype=np.uint8)
    array.tofile(os.path.join(OUT, name))
    return name, list(array.shape)


def add(op, input_name, input_array, output_array, **params):
    name = f"{op}-{len(cases)}"
    output, output_shape = save_raw(f"{name}.u8", output_array)
    cases.append(
        dict(op=op, input=input_name, input_shape=list(input_array.shape), output=output, output_shape=output_shape, **params)
    )


# Decoding: the file as written, PIL's convert('RGB') as the reference.
photo = natural(375, 500)
small = natural(37, 53)
encodings = {
    "baseline.jpg": (photo, dict(quality=90)),
    "progressive.jpg": (photo, dict(quality=90, progressive=True)),
    "full-chroma.jpg": (small, dict(quality=95, subsampling=0)),
    "pixel.jpg": (small.crop((0, 0, 1, 1)), dict(quality=90)),
    "gray.jpg": (photo.convert("L"), dict(quality=90)),
    "cmyk.jpg": (photo.convert("CMYK"), dict(quality=90)),
    "rgb.png": (small, {}),
    "rgba.png": (small.convert("RGBA"), {}),
    "gray.png": (small.convert("L"), {}),
    "gray-alpha.png": (small.convert("LA"), {}),
    "palette.png": (small.convert("P", palette=Image.Palette.ADAPTIVE, colors=37), {}),
}
for name, (image, options) in encodings.items():
    image.save(os.path.join(OUT, name), **options)
    decoded = planar(Image.open(os.path.join(OUT, name)))
    add("decode", name, decoded, decoded)

# Decoding at 1/2, 1/4, 1/8 in the DCT domain: PIL's draft mode uses libjpeg's scaling too.
for name in ["baseline.jpg", "progressive.jpg", "gray.jpg"]:
    for reduction in [2, 4, 8]:
        image = Image.open(os.path.join(OUT, name))
        width, height = image.size
        image.draft("RGB", (width // reduction, height // reduction))
        assert image.size == (-(-width // reduction), -(-height // reduction)), (name, image.size)
        add("decode_scaled", name, np.zeros((3, height, width)), planar(image), reduction=reduction)

# Resizing: torchvision's v2 resize of a uint8 tensor, and PIL's of the same pixels.
images = {"photo": planar(photo), "small": planar(small), "strip": planar(natural(6, 300))}
for name, array in images.items():
    save_raw(f"{name}.u8", array)
resizes = {
    "photo": [(224, 224), (256, 341), (17, 29), (375, 250), (500, 600), (2, 3)],
    "small": [(100, 80), (74, 20), (37, 53), (5, 5)],
    "strip": [(30, 30), (2, 299)],
}
for name, sizes in resizes.items():
    array = images[name]
    for size in sizes:
        tensor = torch.from_numpy(array)
        reference = F.resize(tensor, list(size), interpolation=T.InterpolationMode.BILINEAR, antialias=True)
        pil = Image.fromarray(array.transpose(1, 2, 0)).resize(size[::-1], Image.BILINEAR)
        pil_name, _ = save_raw(f"pil-{len(cases)}.u8", planar(pil))
        add("resize", f"{name}.u8", array, reference.numpy(), size=list(size), pil=pil_name)

# RandomResizedCrop's geometry with given parameters: resized_crop, then a flip.
crops = [((10, 20, 300, 400), 224, False), ((0, 0, 375, 500), 224, True), ((100, 7, 61, 93), 224, False),
         ((200, 300, 150, 120), 64, True), ((3, 5, 30, 44), 16, False)]
for (top, left, height, width), size, flip in crops:
    tensor = torch.from_numpy(images["photo"])
    reference = F.resized_crop(tensor, top, left, height, width, [size, size], antialias=True)
    if flip:
        reference = F.horizontal_flip(reference)
    add("resized_crop", "photo.u8", images["photo"], reference.numpy(), window=[top, left, height, width], size=size, flip=flip)

# The evaluation transform: Resize(resize) of the shorter side, then CenterCrop(size).
portrait = np.ascontiguousarray(images["photo"].transpose(0, 2, 1))
save_raw("portrait.u8", portrait)
for name, array, resize, size in [("photo", images["photo"], 256, 224), ("portrait.u8", portrait, 256, 224),
                                  ("small", images["small"], 73, 64), ("small", images["small"], 20, 24)]:
    transform = T.Compose([T.Resize(resize, antialias=True), T.CenterCrop(size)])
    reference = transform(torch.from_numpy(array))
    input_name = name if name.endswith(".u8") else f"{name}.u8"
    add("resize_center_crop", input_name, array, reference.numpy(), resize=resize, size=size)

with open(os.path.join(OUT, "manifest.json"), "w") as f:
    json.dump(cases, f, indent=1)
