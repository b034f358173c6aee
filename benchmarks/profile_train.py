"""Where a training epoch's time goes: torch.profiler over one epoch of the real `Trainer.train_one_epoch` (after a
warm-up epoch), operators sorted by their own CPU time. The throughput targets of the README are judged from this
table, not from guesses.

    cd benchmarks && ../.venv/bin/python profile_train.py --model resnet20 --images 3840
    cd benchmarks && ../.venv/bin/python profile_train.py --model simplenn --images 44800 --amp none
"""

from __future__ import annotations

import argparse

from torch.profiler import ProfilerActivity, profile

from cnnlab.training.config import load_config
from cnnlab.training.trainer import Trainer

from bench_train import ROOT


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--images", type=int, default=3840, help="training images per profiled epoch")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--amp", default="none", choices=("auto", "none", "bf16"))
    ap.add_argument("--rows", type=int, default=14)
    ap.add_argument("--data-root", default=str(ROOT))
    args = ap.parse_args()
    cfg = load_config(None, [f"data.root={args.data_root}", f"model.name={args.model}",
                             f"data.train_subset={args.images}", "data.val_subset=100", f"batch.size={args.batch}",
                             "augment.crop=4", "augment.flip=0.5", f"train.amp={args.amp}", "train.progress=off",
                             "train.epochs=3"])
    trainer = Trainer(cfg, write=False, log=lambda s: None)
    trainer.train_one_epoch(0)  # warm-up: oneDNN primitive caches, allocator
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        row = trainer.train_one_epoch(1)
    print(f"{args.model}, {args.images:,} images, batch {args.batch}, amp {trainer.amp}: "
          f"{row['images_per_sec']:,.0f} img/s under the profiler")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=48))


if __name__ == "__main__":
    main()
