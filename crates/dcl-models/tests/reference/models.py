"""Reference outputs of dcl's image models, from torchvision and timm (tests only).

Usage: models.py OUTDIR

For each case, writes to OUTDIR
  CASE.weights.safetensors  the reference model's state_dict(), 1-D parameters perturbed and
                            BatchNorm statistics taken from random batches;
  CASE.io.safetensors       `input` (batch of 2), `eval` (eval-mode output), `train` (train-mode
                            output of the next forward) and `stats.NAME` (every BatchNorm
                            running_mean / running_var after that train-mode forward);
and cases.json (each case's dcl model, model-config and data shape) and counts.json (parameter
counts of every reference variant, built on the meta device).
"""

import json
import os
import sys

import safetensors.torch
import timm
import torch
import torchvision

NUM_CLASSES = 10


def resnet_cifar(channels):
    """torchvision's resnet18 with the CIFAR stem: 3x3 stride-1 first convolution, no max-pool."""
    model = torchvision.models.resnet18(num_classes=NUM_CLASSES)
    model.conv1 = torch.nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = torch.nn.Identity()
    return model


# case: (reference constructor, dcl model, dcl model-config, input channels, size)
CASES = {
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=NUM_CLASSES), "resnet18", {}, 3, 64),
    "resnet50": (lambda: torchvision.models.resnet50(num_classes=NUM_CLASSES), "resnet50", {}, 3, 64),
    "resnet18_cifar_1ch": (lambda: resnet_cifar(1), "resnet18", {"stem": "cifar"}, 1, 32),
    "efficientnetv2_s": (
        lambda: timm.create_model("efficientnetv2_s", num_classes=NUM_CLASSES),
        "efficientnetv2",
        {"variant": "s"},
        3,
        64,
    ),
    "convnext_tiny": (
        lambda: timm.create_model("convnext_tiny", num_classes=NUM_CLASSES),
        "convnext",
        {"variant": "tiny", "drop_rate": 0.0},
        3,
        64,
    ),
}

# (reference constructor, dcl model, dcl model-config, classes, input channels)
COUNTS = [
    *[(getattr(torchvision.models, f"resnet{d}"), f"resnet{d}", {}, 1000, 3) for d in (18, 34, 50, 101, 152)],
    *[(lambda v=v, **kw: timm.create_model(f"efficientnetv2_{v}", **kw), "efficientnetv2", {"variant": v}, 1000, 3)
      for v in "sml"],
    *[(lambda v=v, **kw: timm.create_model(f"convnext_{v}", **kw), "convnext", {"variant": v}, 1000, 3)
      for v in ("tiny", "small", "base", "large")],
    (lambda **kw: timm.create_model("efficientnetv2_s", in_chans=1, **kw), "efficientnetv2", {"variant": "s"}, 7, 1),
    (lambda **kw: timm.create_model("convnext_tiny", in_chans=1, **kw), "convnext", {"variant": "tiny"}, 7, 1),
]


def perturb(model, channels, size):
    """Makes the 1-D parameters and the BatchNorm statistics non-trivial (the initial ones are
    constants: a test with them would not see a swapped weight and bias, mean and variance, or
    ConvNeXt's blocks behind their 1e-6 layer scale). The statistics are those of two random
    batches rather than random values: random ones make the eval-mode network chaotic (outputs
    of 1e5 that change by half when the input changes by 1e-7), where no layout or kernel
    difference could be judged."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() <= 1:
                base = 1.0 if name.endswith(("weight", "gamma")) else 0.0
                p.copy_(base + 0.2 * torch.randn_like(p))
        norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        model.train()
        for _ in range(2):
            model(torch.randn(8, channels, size, size))
        for m in norms:
            m.momentum = 0.1


def write_case(outdir, case, make, channels, size):
    torch.manual_seed(0)
    model = make()
    perturb(model, channels, size)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(state, os.path.join(outdir, f"{case}.weights.safetensors"))
    x = torch.randn(2, channels, size, size)
    with torch.no_grad():
        model.eval()
        eval_out = model(x)
        model.train()
        train_out = model(x)
    io = {"input": x, "eval": eval_out, "train": train_out}
    for name, b in model.named_buffers():
        if name.endswith(("running_mean", "running_var")):
            io[f"stats.{name}"] = b.clone()
    safetensors.torch.save_file(io, os.path.join(outdir, f"{case}.io.safetensors"))


def count(make, classes):
    with torch.device("meta"):
        model = make(num_classes=classes)
    return sum(p.numel() for p in model.parameters())


def main():
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(2)
    cases = {}
    for case, (make, model, config, channels, size) in CASES.items():
        write_case(outdir, case, make, channels, size)
        cases[case] = {"model": model, "config": config, "input": [channels, size, size], "classes": NUM_CLASSES}
    counts = [
        {"model": model, "config": config, "input": [channels, 224, 224], "classes": classes,
         "count": count(make, classes)}
        for make, model, config, classes, channels in COUNTS
    ]
    with open(os.path.join(outdir, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
    with open(os.path.join(outdir, "counts.json"), "w") as f:
        json.dump(counts, f, indent=1)


if __name__ == "__main__":
    main()
