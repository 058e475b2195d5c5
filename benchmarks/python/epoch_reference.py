#!/usr/bin/env python3
"""The homework's Problem 1 training epoch in Python: the baseline of
benchmarks/bench_epoch.cpp.

Follows the homework's code path: torchvision's FashionMNIST (read from the
local IDX files, decompressed into a temporary root because torchvision wants
root/FashionMNIST/raw/*-ubyte), ToTensor + Normalize((0.5,), (0.5,)),
random_split 80/20, DataLoader(batch_size=64, shuffle=True, num_workers=2),
LeNet-5, CrossEntropyLoss, SGD(lr=0.01, momentum=0.9), and the homework's
loop (loss.item() and correct counts per batch, a progress print every 100
batches), then the validation pass under torch.no_grad().

Run with Debian's interpreter and OpenBLAS at one thread:

  OPENBLAS_NUM_THREADS=1 /usr/bin/python3 benchmarks/python/epoch_reference.py

Prints one JSON line on stdout: seconds per epoch (train + validation), the
train and validation parts, the CPU seconds of the process and its
DataLoader workers, the metrics and the thread settings. Progress
goes to stderr. Data loading (reading the files) is not timed.
"""

import argparse
import gzip
import json
import os
import resource
import shutil
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
import torchvision.transforms as transforms
from torch.utils.data import DataLoader, random_split
from torchvision.datasets import FashionMNIST


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(-1, 16 * 5 * 5)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


def make_root(data_dir, root):
    raw = os.path.join(root, "FashionMNIST", "raw")
    os.makedirs(raw)
    for name in FILES:
        plain = os.path.join(data_dir, name)
        if os.path.exists(plain):
            os.symlink(os.path.abspath(plain), os.path.join(raw, name))
            continue
        with gzip.open(plain + ".gz", "rb") as src, open(
            os.path.join(raw, name), "wb"
        ) as dst:
            shutil.copyfileobj(src, dst)


def cpu_seconds():
    """CPU time of this process and its reaped children (the DataLoader
    workers, which are joined at the end of each pass)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def run_epoch(model, train_loader, val_loader, criterion, optimizer, epoch, epochs):
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    model.train()
    running_loss, correct, total = 0.0, 0, 0
    for batch_idx, (inputs, targets) in enumerate(train_loader):
        optimizer.zero_grad()
        outputs = model(inputs)
        loss = criterion(outputs, targets)
        loss.backward()
        optimizer.step()
        current_lr = optimizer.param_groups[0]["lr"]
        running_loss += loss.item()
        _, predicted = outputs.max(1)
        total += targets.size(0)
        correct += predicted.eq(targets).sum().item()
        if batch_idx % 100 == 0:
            print(
                f"Epoch: {epoch+1}/{epochs} | Batch: {batch_idx}/{len(train_loader)} | "
                f"Loss: {running_loss/(batch_idx+1):.3f} | "
                f"Acc: {100.*correct/total:.3f}% | LR: {current_lr:.6f}",
                file=sys.stderr,
            )
    train_loss = running_loss / len(train_loader)
    train_acc = correct / total
    t1 = time.perf_counter()
    model.eval()
    val_loss, correct, total = 0.0, 0, 0
    with torch.no_grad():
        for inputs, targets in val_loader:
            outputs = model(inputs)
            val_loss += criterion(outputs, targets).item()
            _, predicted = outputs.max(1)
            total += targets.size(0)
            correct += predicted.eq(targets).sum().item()
    t2 = time.perf_counter()
    c2 = cpu_seconds()
    return {
        "cpu_seconds": c2 - c0,
        "train_seconds": t1 - t0,
        "val_seconds": t2 - t1,
        "seconds": t2 - t0,
        "train_loss": train_loss,
        "train_accuracy": train_acc,
        "val_loss": val_loss / len(val_loader),
        "val_accuracy": correct / total,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get(
        "DLCORE_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="dlcore_epoch_ref_") as root:
        make_root(args.data_dir, root)
        transform = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))]
        )
        train_set = FashionMNIST(root=root, train=True, download=False,
                                 transform=transform)
        train_size = int(0.8 * len(train_set))
        val_size = len(train_set) - train_size
        train_dataset, val_dataset = random_split(train_set, [train_size, val_size])
        train_loader = DataLoader(train_dataset, batch_size=args.batch_size,
                                  shuffle=True, num_workers=args.workers)
        val_loader = DataLoader(val_dataset, batch_size=args.batch_size,
                                shuffle=False, num_workers=args.workers)
        model = LeNet5()
        criterion = nn.CrossEntropyLoss()
        optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
        epochs = [
            run_epoch(model, train_loader, val_loader, criterion, optimizer, e,
                      args.epochs)
            for e in range(args.epochs)
        ]
    best = min(epochs, key=lambda e: e["seconds"])
    print(json.dumps({
        "seconds": best["seconds"],
        "cpu_seconds": best["cpu_seconds"],
        "train_seconds": best["train_seconds"],
        "val_seconds": best["val_seconds"],
        "epochs": epochs,
        "train_samples": train_size,
        "val_samples": val_size,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS", ""),
        "workers": args.workers,
        "batch_size": args.batch_size,
    }))


if __name__ == "__main__":
    main()
