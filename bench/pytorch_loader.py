"""PyTorch reference of `dcl bench loader`: torchvision's ImageFolder (photographs:
RandomResizedCrop + horizontal flip) or CIFAR10 (RandomCrop(32, padding=4) + flip), ToTensor
and Normalize with ImageNet's statistics, through a DataLoader with shuffling; images per
second over whole passes (the first, warming up, not counted), median.

    python bench/pytorch_loader.py --dataset imagenet --dataset-dir DIR [--workers 2]
"""
import argparse
import json
import statistics
import time

import torch
import torchvision
import torchvision.transforms as T

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# Generated batches in the real format: the md5s torchvision checks are those of the real files.
torchvision.datasets.cifar.check_integrity = lambda *args, **kwargs: True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", choices=["imagenet", "cifar10"], default="imagenet")
    parser.add_argument("--dataset-dir", required=True)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.dataset == "imagenet":
        transform = T.Compose([T.RandomResizedCrop(args.input_size), T.RandomHorizontalFlip(), T.ToTensor(),
                               T.Normalize(MEAN, STD)])
        data = torchvision.datasets.ImageFolder(f"{args.dataset_dir}/ImageNet/train", transform=transform)
    else:
        transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                               T.Normalize(MEAN, STD)])
        data = torchvision.datasets.CIFAR10(f"{args.dataset_dir}/CIFAR10", train=True, transform=transform)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                                         persistent_workers=args.workers > 0)
    rates = []
    for p in range(args.passes + 1):
        started, images = time.perf_counter(), 0
        for batch, _ in loader:
            images += batch.shape[0]
        if p > 0:
            rates.append(images / (time.perf_counter() - started))
    print(json.dumps({"engine": "pytorch", "dataset": args.dataset, "workers": args.workers,
                      "images_per_second_median": statistics.median(rates), "images_per_second": rates}))


if __name__ == "__main__":
    main()
