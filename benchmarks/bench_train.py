"""Training throughput: cnnlab's trainer loop vs the classic course pipeline, side by side in one process.

Reference ("classic"): torchvision transforms on PIL images (RandomCrop(32, padding=4), RandomHorizontalFlip,
ToTensor, Normalize) through a DataLoader (0 or 2 workers, whichever is faster, measured first), batch 128, the same
model, SGD with momentum, the same number of images. cnnlab: the same model, optimizer, batch size and augmentation
through the real `Trainer.train_one_epoch` (uint8 data in memory, batched augmentation, its optimizer step).

The two sides are interleaved (classic, cnnlab, classic, cnnlab, ...) and the median images/s of each is reported,
with the median ratio, because this machine is noisy. Also reported: training FLOP/s (3 x forward MACs x 2 per image,
the usual backward = 2 x forward estimate) as a share of the measured fp32 matrix-multiply rate.

    cd benchmarks && ../.venv/bin/python bench_train.py --model simplenn --repeats 3
    cd benchmarks && ../.venv/bin/python bench_train.py --model resnet20 --images 5000 --repeats 3 [--amp auto|none|bf16]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as Fn

from cnnlab.models import create_model
from cnnlab.models.summary import summarize
from cnnlab.training.config import load_config
from cnnlab.training.trainer import Trainer

from bench_loader import PILDataset  # the same reference dataset as the loader benchmark (run from benchmarks/)

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def matmul_rate(n: int = 2048, reps: int = 10) -> float:
    """Measured fp32 matrix-multiply FLOP/s of this machine (best of `reps`)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def classic_loader(split, mean, std, batch, workers):
    import torchvision.transforms as T
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
    ds = PILDataset(split.x.permute(0, 2, 3, 1).numpy(), split.y.numpy(), tf)
    return torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                                       persistent_workers=workers > 0)


def train_epoch(model, opt, batches) -> tuple:
    """One pass over `batches`; returns (images, seconds)."""
    model.train()
    n, t = 0, time.perf_counter()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        Fn.cross_entropy(model(x), y).backward()
        opt.step()
        n += len(y)
    return n, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="simplenn")
    ap.add_argument("--images", type=int, default=None, help="images per epoch (default: the whole train split)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3, help="epochs per side, interleaved")
    ap.add_argument("--data-root", default=str(ROOT))
    ap.add_argument("--amp", default="auto", choices=("auto", "none", "bf16"), help="cnnlab side: train.amp")
    ap.add_argument("--contiguous", action="store_true", help="cnnlab side: train.channels_last=false")
    args = ap.parse_args()

    # cnnlab's side is the real trainer (its loader, optimizer step, divergence checks), not a copy of its loop
    cfg = load_config(None, [f"data.root={args.data_root}", f"model.name={args.model}", f"batch.size={args.batch}",
                             "augment.crop=4", "augment.flip=0.5", "optim.lr=0.01", "optim.momentum=0.9",
                             "train.progress=off", f"train.epochs={args.repeats}", f"train.amp={args.amp}",
                             f"train.channels_last={not args.contiguous}"]
                      + ([f"data.train_subset={args.images}"] if args.images else []))
    trainer = Trainer(cfg, write=False, log=lambda s: None)
    ds, split = trainer.ds, trainer.ds.train
    make = lambda: create_model(args.model, num_classes=10, in_channels=3, input_size=32)  # noqa: E731
    macs = summarize(make(), (3, 32, 32)).totals.macs
    peak = matmul_rate()
    print(f"{args.model}: {macs / 1e6:.2f} M MACs/image forward; {len(split):,} images/epoch; batch {args.batch}; "
          f"fp32 matmul rate {peak / 1e9:.1f} GFLOP/s; {torch.get_num_threads()} threads; cnnlab side: amp "
          f"{args.amp}, {'contiguous' if args.contiguous else 'channels_last'}")

    # the better of the two reference settings, measured on a short run of each
    probe = {}
    for w in (0, 2):
        model = make()
        probe[w] = train_epoch(model, torch.optim.SGD(model.parameters(), lr=0.01),
                               _take(classic_loader(split, ds.mean, ds.std, args.batch, w), 40))
    workers = max(probe, key=lambda w: probe[w][0] / probe[w][1])
    print("reference probe img/s: " + ", ".join(f"{w} workers {n / t:,.0f}" for w, (n, t) in probe.items())
          + f" -> using {workers} workers")

    classic = classic_loader(split, ds.mean, ds.std, args.batch, workers)
    rates = {"classic": [], "cnnlab": []}
    for r in range(args.repeats):
        torch.manual_seed(r)
        model = make()
        n, t = train_epoch(model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), classic)
        rates["classic"].append(n / t)
        rates["cnnlab"].append(trainer.train_one_epoch(r)["images_per_sec"])
        print(f"  round {r + 1}: classic {rates['classic'][-1]:9,.0f} img/s, cnnlab {rates['cnnlab'][-1]:9,.0f} img/s")
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratios = [b / a for a, b in zip(rates["classic"], rates["cnnlab"])]
    flops = 3 * 2 * macs * med["cnnlab"]
    print(f"median img/s: classic {med['classic']:,.0f}, cnnlab {med['cnnlab']:,.0f}; "
          f"median ratio {statistics.median(ratios):.2f}x")
    print(f"cnnlab training compute {flops / 1e9:.2f} GFLOP/s = {100 * flops / peak:.1f}% of the fp32 matmul rate")


def _take(loader, n):
    for i, b in enumerate(loader):
        if i == n:
            return
        yield b


if __name__ == "__main__":
    main()
