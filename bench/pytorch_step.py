"""PyTorch reference of `dcl bench step`: one SGD step per batch of a model on synthetic data,
timed the same way (warm-up, repeats of N steps, median), with the process's peak resident
memory. Models: upstream's mnistnet (default), torchvision's resnet18/resnet50, timm's
efficientnetv2_s/_m and convnext_tiny/_base (dcl's `--model-config` variants).

    python bench/pytorch_step.py --batch-size 64 --threads 2 [--json]
    python bench/pytorch_step.py --model resnet18 --input 3x32x32 --batch-size 32 [--channels-last]
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class MnistNet(nn.Module):
    """Upstream's mnistnet (distributed-continual-learning, models/mnistnet.py)."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(1600, 50)
        self.fc2 = nn.Linear(50, num_classes)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        return self.fc2(x)


def build(name, channels, classes):
    """The reference model called `name` (dcl's name, or dcl's name with its variant)."""
    if name == "mnistnet":
        return MnistNet(classes)
    if name.startswith("resnet"):
        import torchvision
        model = getattr(torchvision.models, name)(num_classes=classes)
        if channels != 3:
            model.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        return model
    import timm
    timm_names = {"efficientnetv2_s": "efficientnetv2_s", "efficientnetv2_m": "efficientnetv2_m",
                  "convnext_tiny": "convnext_tiny", "convnext_base": "convnext_base"}
    extra = {"drop_rate": 0.5} if name.startswith("convnext") else {}
    return timm.create_model(timm_names[name], num_classes=classes, in_chans=channels, **extra)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="mnistnet",
                        help="mnistnet, resnet18, resnet50, efficientnetv2_s, efficientnetv2_m, convnext_tiny, convnext_base")
    parser.add_argument("--input", default="1x28x28", help="CxHxW")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--channels-last", action="store_true",
                        help="lay the model out channels-last, as dcl does (not what upstream does)")
    parser.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off",
                        help="autocast the forward pass (fp16 with torch.amp.GradScaler), as dcl's --amp")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    c, h, w = (int(d) for d in args.input.split("x"))
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model = build(args.model, c, args.classes).train().to(device)
    images = torch.randn(args.batch_size, c, h, w, device=device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    labels = torch.randint(args.classes, (args.batch_size,), device=device)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")

    def step():
        optimizer.zero_grad()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(images), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for _ in range(args.warmup):
        step()
    synchronize()
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        synchronize()
        rates.append(args.steps * args.batch_size / (time.perf_counter() - start))
    rates.sort()
    median = statistics.median(rates)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json:
        print(json.dumps({"engine": "pytorch", "torch": torch.__version__, "model": args.model, "input": args.input,
                          "device": args.device, "batch_size": args.batch_size, "threads": args.threads, "channels_last": args.channels_last,
                          "amp": args.amp,
                          "images_per_second_median": median, "images_per_second": rates, "peak_rss_mb": peak_mb}))
    else:
        layout = "channels-last" if args.channels_last else "default layout"
        print(f"pytorch {torch.__version__} {args.model} step ({layout}), batch {args.batch_size}, {args.threads} "
              f"threads: median {median:.0f} img/s (min {rates[0]:.0f}, max {rates[-1]:.0f}), peak {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
