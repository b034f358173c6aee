"""Time to accuracy: train a recipe to its `train.targets` and print the wall time and images/s at each, with one
epoch of the classic course pipeline (torchvision transforms on PIL images through a DataLoader, the same model) in
the same process for scale, so figures from different CPUs can be compared.

The recipe runs through the real trainer into a run folder (default runs/bench-<config stem>), so the result is an
ordinary run: `cnnlab evaluate RUN --tta flip-translate` and `cnnlab predict RUN` work on it afterwards. Run it on a
quiet machine: a second busy process on 2 cores halves the figures.

    cd benchmarks && ../.venv/bin/python bench_time_to_accuracy.py -c ../configs/fast65.yaml
    cd benchmarks && ../.venv/bin/python bench_time_to_accuracy.py -c ../configs/fastcnn-cpu.yaml --tta flip-translate
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from cnnlab.models import create_model
from cnnlab.training.config import load_config
from cnnlab.training.inference import evaluate_run, load_run
from cnnlab.training.trainer import Trainer

from bench_train import ROOT, classic_loader, train_epoch, _take


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def course_epoch(trainer: Trainer, images: int, batch: int) -> float:
    """Images/s of the classic pipeline on `images` training images, with the recipe's model and 0 workers."""
    ds = trainer.ds
    split = ds.train.subset(min(images, len(ds.train)))
    c = trainer.cfg
    model = create_model(c.model.name, num_classes=ds.num_classes, in_channels=ds.in_channels,
                         input_size=ds.image_size, **c.model.options)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    n, t = train_epoch(model, opt, _take(classic_loader(split, ds.mean, ds.std, batch, 0), len(split) // batch))
    return n / t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--config", required=True, help="recipe YAML with train.targets")
    ap.add_argument("overrides", nargs="*", help="key=value config overrides")
    ap.add_argument("--data-root", default=str(ROOT))
    ap.add_argument("--out", default="runs", help="parent folder of the run folder")
    ap.add_argument("--scale-images", type=int, default=5000, help="images in the course-pipeline epoch")
    ap.add_argument("--tta", default="none", choices=("none", "flip", "flip-translate"),
                    help="also evaluate the best checkpoint with test-time augmentation")
    args = ap.parse_args()

    name = f"bench-{Path(args.config).stem}"
    cfg = load_config(args.config, [f"data.root={args.data_root}", f"out={args.out}", f"name={name}",
                                    "train.progress=off", *args.overrides])
    if not cfg.train.targets:
        raise SystemExit("bench_time_to_accuracy: the recipe has no train.targets; add e.g. train.targets=[0.9]")
    trainer = Trainer(cfg, overwrite=True, log=lambda s: None)
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}; recipe {args.config}: "
          f"{cfg.model.name} ({trainer.params:,} parameters), {cfg.train.epochs} epochs, amp {trainer.amp_note}")
    scale = course_epoch(trainer, args.scale_images, 128)
    print(f"course pipeline (PIL + torchvision transforms, DataLoader, batch 128, same model): {scale:,.0f} img/s")

    t0 = time.perf_counter()
    summary = trainer.fit()
    process = time.perf_counter() - t0
    print(f"trained: best val acc {summary['best_val_acc']:.4f} at epoch {summary['best_epoch']}, "
          f"{summary['wall_time']:.1f} s of epochs ({process:.1f} s in fit), median {summary['images_per_sec']:,.0f} "
          f"img/s = {summary['images_per_sec'] / scale:.2f}x the course pipeline")
    for target, hit in summary["targets"].items():
        if hit:
            print(f"  {float(target):.0%}: epoch {hit['epoch']}, {hit['time']:.1f} s")
        else:
            print(f"  {float(target):.0%}: not reached")
    if args.tta != "none":
        run = load_run(summary["run"], data_root=args.data_root)
        res = evaluate_run(run, "val", tta=args.tta)
        print(f"best checkpoint, val: {res['acc_without_tta']:.4f} plain, {res['acc']:.4f} with --tta {args.tta} "
              f"({100 * res['tta_gain']:+.2f} points)")

if __name__ == "__main__":
    main()
