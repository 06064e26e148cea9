"""PyTorch reference of dcl's Split-MNIST rehearsal run: the same online protocol, written
as a plain PyTorch script. 5 class-incremental tasks of 2 classes, 1 epoch per task,
upstream's mnistnet, SGD (lr 0.01, momentum 0.9, reset per task), batches of 64 fresh
samples plus 64 representatives drawn from a class-balanced reservoir buffer of 500
samples (the buffer of bench/buffer_python.py), from earlier tasks only; evaluation on
every seen task after each task.

    python bench/pytorch_er.py --data data/mnist --seed 0 [--replay all]

With --representatives 0 it is the naive (fine-tuning) twin of `dcl train` without an agent.
"""
import argparse
import json
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from buffer_python import Buffer  # noqa: E402
from pytorch_step import MnistNet  # noqa: E402


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    rank = data[3]
    dims = struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank])
    return torch.frombuffer(bytearray(data[4 + 4 * rank:]), dtype=torch.uint8).reshape(dims)


def load(directory, split):
    images = read_idx(os.path.join(directory, f"{split}-images-idx3-ubyte"))
    labels = read_idx(os.path.join(directory, f"{split}-labels-idx1-ubyte")).long()
    return ((images.float() / 255 - 0.5) / 0.5).unsqueeze(1), labels


def evaluate(model, images, labels, batch_size):
    """Top-1 % and mean cross-entropy."""
    model.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for start in range(0, len(labels), batch_size):
            logits = model(images[start:start + batch_size])
            target = labels[start:start + batch_size]
            correct += (logits.argmax(1) == target).sum().item()
            loss += F.cross_entropy(logits, target, reduction="sum").item()
    model.train()
    return 100.0 * correct / len(labels), loss / len(labels)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="data/mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--representatives", type=int, default=64)
    parser.add_argument("--buffer-size", type=int, default=500)
    parser.add_argument("--replay", choices=["past_tasks", "all"], default="past_tasks")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-samples", type=int, default=None,
                        help="the first N training images only (before the split), as dcl's --train-samples")
    args = parser.parse_args()

    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_x, train_y = load(args.data, "train")
    test_x, test_y = load(args.data, "t10k")
    if args.train_samples is not None:
        train_x, train_y = train_x[:args.train_samples], train_y[:args.train_samples]
    tasks = [(2 * t, 2 * t + 1) for t in range(5)]
    model = MnistNet()
    buffer = Buffer(args.buffer_size, 10, (1, 28, 28), "class_balanced", seed=args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    matrix, losses = [], []
    for t, classes in enumerate(tasks):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        buffer.era = t
        train_idx = torch.nonzero((train_y == classes[0]) | (train_y == classes[1])).squeeze(1)
        order = train_idx[torch.randperm(len(train_idx), generator=generator)]
        for start in range(0, len(order), args.batch_size):
            idx = order[start:start + args.batch_size]
            x, y = train_x[idx], train_y[idx]
            reps_x, reps_y = buffer.sample(args.representatives, t if args.replay == "past_tasks" else None)
            if len(reps_y) > 0:
                x_aug, y_aug = torch.cat([x, reps_x]), torch.cat([y, reps_y])
            else:
                x_aug, y_aug = x, y
            optimizer.zero_grad()
            F.cross_entropy(model(x_aug), y_aug).backward()
            optimizer.step()
            buffer.offer(x, y)
        row, loss_row = [], []
        for seen in tasks[:t + 1]:
            mask = (test_y == seen[0]) | (test_y == seen[1])
            top1, loss = evaluate(model, test_x[mask], test_y[mask], args.batch_size)
            row.append(top1)
            loss_row.append(loss)
        matrix.append(row)
        losses.append(loss_row)
    wall = time.perf_counter() - started
    print(json.dumps({"engine": "pytorch", "seed": args.seed, "replay": args.replay,
                      "final_average_accuracy": sum(matrix[-1]) / len(matrix[-1]),
                      "accuracy_matrix": matrix, "loss_matrix": losses, "wall_time_seconds": wall}))


if __name__ == "__main__":
    main()
