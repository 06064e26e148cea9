"""Python reference of `dcl bench buffer`: the same rehearsal buffer (class-balanced
reservoir, reservoir or upstream's policy) in the way a PyTorch code base writes it:
storage in preallocated torch tensors, per-sample policy decisions in Python, draws with
`random.sample` and `index_select`. Same loop as dcl: per batch, draw R representatives,
then offer the batch.

    python bench/buffer_python.py --shape mnist --policy class_balanced [--json]
"""
import argparse
import json
import random
import statistics
import time

import torch


class Buffer:
    def __init__(self, capacity, num_classes, shape, policy, candidates=8, batch_size=64, seed=0):
        self.capacity, self.num_classes, self.policy = capacity, num_classes, policy
        self.candidates, self.batch_size = candidates, batch_size
        self.samples = torch.zeros((capacity, *shape))
        self.labels = torch.zeros(capacity, dtype=torch.long)
        self.occupied = []
        self.by_class = [[] for _ in range(num_classes)]
        self.seen = 0
        self.seen_per_class = [0] * num_classes
        self.eras = [0] * capacity
        self.era = 0
        self.rng = random.Random(seed)

    def _release(self, slot):
        self.by_class[int(self.labels[slot])].remove(slot)

    def _place(self, label):
        rng = self.rng
        if self.policy == "upstream":
            bucket = self.capacity // self.num_classes
            stored = len(self.by_class[label])
            if stored < bucket:
                return label * bucket + stored, False
            if rng.randrange(self.batch_size) < self.candidates:
                return rng.choice(self.by_class[label]), True
            return None, False
        if len(self.occupied) < self.capacity:
            return len(self.occupied), False
        if self.policy == "reservoir":
            j = rng.randrange(self.seen)
            return (self.occupied[j], True) if j < self.capacity else (None, False)
        largest = max(len(c) for c in self.by_class)
        if len(self.by_class[label]) < largest:
            victim = rng.choice([c for c in range(self.num_classes) if len(self.by_class[c]) == largest])
            return rng.choice(self.by_class[victim]), True
        if rng.randrange(self.seen_per_class[label]) < len(self.by_class[label]):
            return rng.choice(self.by_class[label]), True
        return None, False

    def offer(self, x, y):
        for i, label in enumerate(y.tolist()):
            self.seen += 1
            self.seen_per_class[label] += 1
            slot, replace = self._place(label)
            if slot is None:
                continue
            if replace:
                self._release(slot)
            else:
                self.occupied.append(slot)
            self.by_class[label].append(slot)
            self.labels[slot] = label
            self.eras[slot] = self.era
            self.samples[slot].copy_(x[i])

    def sample(self, count, before_era=None):
        eligible = self.occupied if before_era is None else [s for s in self.occupied if self.eras[s] < before_era]
        chosen = self.rng.sample(eligible, min(count, len(eligible)))
        index = torch.tensor(chosen, dtype=torch.long)
        return self.samples.index_select(0, index), self.labels.index_select(0, index)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=["mnist", "cifar"], default="mnist")
    parser.add_argument("--policy", choices=["upstream", "reservoir", "class_balanced"], default="class_balanced")
    parser.add_argument("--capacity", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--representatives", type=int, default=64)
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(1)
    shape = (1, 28, 28) if args.shape == "mnist" else (3, 32, 32)
    capacity = args.capacity // 10 * 10
    buffer = Buffer(capacity, 10, shape, args.policy, batch_size=args.batch_size)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand((args.batch_size, *shape), generator=generator)
    batches = [torch.randint(10, (args.batch_size,), generator=generator) for _ in range(64)]
    offer_rates, sample_rates = [], []
    for _ in range(args.repeats):
        offering = sampling = 0.0
        for b in range(args.batches):
            start = time.perf_counter()
            buffer.sample(args.representatives)
            sampling += time.perf_counter() - start
            start = time.perf_counter()
            buffer.offer(x, batches[b % len(batches)])
            offering += time.perf_counter() - start
        offer_rates.append(args.batches * args.batch_size / offering)
        sample_rates.append(args.batches * args.representatives / sampling)
    offer, sample = statistics.median(offer_rates), statistics.median(sample_rates)
    if args.json:
        print(json.dumps({"engine": "python", "shape": args.shape, "policy": args.policy, "capacity": capacity,
                          "offer_samples_per_second": offer, "sample_samples_per_second": sample}))
    else:
        print(f"python buffer ({args.shape}, {args.policy}, {capacity} slots): offer {offer:.0f} samples/s, "
              f"sample {sample:.0f} samples/s")


if __name__ == "__main__":
    main()
