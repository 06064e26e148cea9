"""PyTorch reference of `dcl bench step`: upstream's mnistnet, one SGD step per batch on
synthetic MNIST-shaped data, timed the same way (warm-up, repeats of N steps, median).

    python bench/pytorch_step.py --batch-size 64 --threads 2 [--json]
"""
import argparse
import json
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--channels-last", action="store_true",
                        help="lay the model out channels-last, as dcl does (not what upstream does)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MnistNet().train()
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(args.batch_size, 1, 28, 28)
    labels = torch.randint(10, (args.batch_size,))

    def step():
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        rates.append(args.steps * args.batch_size / (time.perf_counter() - start))
    rates.sort()
    median = statistics.median(rates)
    if args.json:
        print(json.dumps({"engine": "pytorch", "torch": torch.__version__, "batch_size": args.batch_size,
                          "threads": args.threads, "channels_last": args.channels_last, "images_per_second_median": median,
                          "images_per_second": rates}))
    else:
        layout = "channels-last" if args.channels_last else "default layout"
        print(f"pytorch {torch.__version__} mnistnet step ({layout}), batch {args.batch_size}, {args.threads} threads: "
              f"median {median:.0f} img/s (min {rates[0]:.0f}, max {rates[-1]:.0f})")


if __name__ == "__main__":
    main()
