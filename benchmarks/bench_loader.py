"""Augmented images per second: cnnlab's BatchLoader vs the classic course pipeline, interleaved in one process.

Reference ("classic"): torchvision `RandomCrop(32, padding=4)`, `RandomHorizontalFlip`, `ToTensor`, `Normalize` on
PIL images (one `Image.fromarray` per item, as torchvision.datasets.CIFAR10 serves them) through a `DataLoader`,
batch 128, shuffled, with 0 and with 2 worker processes (persistent, started before timing: the kindest setting for
the reference). cnnlab: `BatchLoader(split, 128, shuffle=True, augment=["crop", "flip"], mean, std)`, the same
augmentation and normalisation as float32 NCHW batches, on the CPU.

Each round times every side for at least --seconds (whole epochs over --images CIFAR-10 training images from
../shared/data) in turn: classic-0, classic-2, cnnlab. Reported: the median images/s of each side and the median over
rounds of cnnlab / the better classic setting of that round. The target (issue 2) is >= 20x on a 2-core machine.

    .venv/bin/python benchmarks/bench_loader.py            # 5 rounds, 20,000 images
    .venv/bin/python benchmarks/bench_loader.py --rounds 3 --images 10000 --seconds 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from cnnlab.data import load_dataset
from cnnlab.data.loader import BatchLoader

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BATCH = 128


class PILDataset(torch.utils.data.Dataset):
    """The course pipeline's dataset: HWC uint8 arrays, one PIL image per item."""

    def __init__(self, x_nhwc: np.ndarray, y: np.ndarray, transform):
        self.x, self.y, self.t = x_nhwc, y, transform

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        from PIL import Image
        return self.t(Image.fromarray(self.x[i])), int(self.y[i])


def classic_loader(split, mean, std, workers: int):
    import torchvision.transforms as T
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
    ds = PILDataset(split.x.permute(0, 2, 3, 1).numpy(), split.y.numpy(), tf)
    return torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=workers,
                                       persistent_workers=workers > 0)


def images_per_second(loader, min_seconds: float, on_epoch=None) -> float:
    """Whole epochs over `loader` until at least `min_seconds` have passed; images yielded per second."""
    n, epoch, start = 0, 0, time.perf_counter()
    while True:
        if on_epoch:
            on_epoch(epoch)
        for x, _ in loader:
            n += len(x)
        epoch += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=str(ROOT))
    ap.add_argument("--images", type=int, default=20000, help="training images per epoch (stratified subset)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0, help="minimum timed seconds per side per round")
    ap.add_argument("--threads", default="default", help="BatchLoader threads: default, none, or a number")
    args = ap.parse_args()

    ds = load_dataset("cifar10", root=args.data_root, train_subset=args.images)
    split = ds.train
    sides = {f"classic-{w}": classic_loader(split, ds.mean, ds.std, w) for w in (0, 2)}
    threads = {} if args.threads == "default" else {"threads": None if args.threads == "none" else int(args.threads)}
    ours = BatchLoader(split, BATCH, shuffle=True, augment=["crop", "flip"], mean=ds.mean, std=ds.std, **threads)
    sides["cnnlab"] = ours
    for loader in sides.values():  # warm-up: start the workers, touch the memory, before any timing
        for i, _ in enumerate(loader):
            if i == 5:
                break
    print(f"{len(split):,} CIFAR-10 images/epoch, batch {BATCH}, crop(4)+flip+normalise; torch {torch.__version__}, "
          f"{torch.get_num_threads()} intra-op threads; BatchLoader threads={ours.threads}; load average "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))

    rates = {k: [] for k in sides}
    ratios = []
    for r in range(args.rounds):
        for name, loader in sides.items():
            rates[name].append(images_per_second(loader, args.seconds, ours.set_epoch if name == "cnnlab" else None))
        ratios.append(rates["cnnlab"][-1] / max(rates["classic-0"][-1], rates["classic-2"][-1]))
        print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:,.0f} img/s" for k, v in rates.items())
              + f"; ratio {ratios[-1]:.1f}x")
    med = {k: statistics.median(v) for k, v in rates.items()}
    print("median img/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in med.items())
          + f"; median ratio cnnlab / better classic {statistics.median(ratios):.1f}x (target >= 20x)")


if __name__ == "__main__":
    main()
