"""Ablation of the fast CPU route (issue #26): configs/fastcnn-cpu.yaml with each part of Jordan 2024 (airbench94,
arXiv:2404.00498) that its recipe leaves out, one variant at a time and all together, as `cnnlab train` runs back to
back in a folder of their own, then one table.

Why: on a 2-core AMD EPYC the 17-epoch fast route needed 1.64x airbench94's time to reach its TTA accuracy
(docs/guide/performance.md, "Against airbench"), at the same speed per image, so the race is in the accuracy an
epoch buys, and in what an epoch costs. Each part is measured before it is adopted; this script makes that one command.

Each variant is a list of key=value overrides of the recipe (VARIANTS), on top of `train.epochs=17` (the recipe's
length on that CPU, --epochs) and whatever overrides the command line gives every variant. Runs go to
<out>/<variant> through the real CLI, one after the other. Resumable: a variant whose run finished (or stopped) is
not trained again, one that was interrupted is continued with --resume, one killed before its first epoch is
started again; only the table is recomputed every time. Each run is then evaluated on the validation split with
flip-translate TTA (its best.pt, as `cnnlab evaluate --tta flip-translate` does).

The table, per variant: training images/s (from metrics.csv: images over epoch time), minutes to 85 / 88 / 90 / 91%
validation accuracy (metrics.csv `time`: the run's epochs, training and per-epoch validation, the first epoch at or
past the target), final validation accuracy without and with TTA, epochs and minutes; the CPU's name heads it. It is
also written to <out>/ablation.md.

Second round: `airbench` (airbench94's whole method in cnnlab's keys, 10 epochs), `airbench-resize` (the same, the
first 4 epochs on 24x24 images: configs/fastcnn-cpu-short.yaml), `airbench-progressive` (16x16 for 3 epochs, 24x24
for 3), `resize` (the recipe at 10 epochs, 4 of them at 24x24). Measured: docs/guide/performance.md, "Ablation".

    cd benchmarks && PYTHONPATH=../src ../.venv/bin/python ablate_fast.py --data-root ../../shared/data train.amp=bf16
        # ~12 min a variant on a quiet 2-core AMD EPYC (6-9 for the 10-epoch ones), plus ~2.5 min of TTA evaluation
    cd benchmarks && PYTHONPATH=../src ../.venv/bin/python ablate_fast.py --quick --variants baseline,bias-lr
        # the wiring: 512 images, one epoch a variant, about a minute each on a busy machine
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from cnnlab.fileio import atomic_write_text
from cnnlab.training.inference import evaluate_run, load_run

from bench_time_to_accuracy import cpu_name
from bench_train import ROOT

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "fastcnn-cpu.yaml"
TARGETS = (0.85, 0.88, 0.90, 0.91)

# Jordan 2024's values where a part has one (airbench94's hyp dict); the comment says what each variant tests.
BIAS_LR = ["optim.bias_lr_scale=64"]                                       # BN biases at 64x the lr (§3.4)
LOOKAHEAD = ["optim.lookahead_k=5", "optim.lookahead_alpha=0.226", "optim.lookahead_ramp=cubic"]  # 1 - 0.95^5
WHITEN_BIAS = ["model.options.whiten_bias_epochs=3"]                       # the whitening bias trains 3 epochs (§3.2)
BATCH_1024 = ["batch.size=1024", "optim.lr=1.0"]                           # the same lr per 1024 examples (11.0)
FEWER_EPOCHS = ["train.epochs=10"]                                         # airbench94's ~10 epochs
NARROW = ["model.options.widths=[64,128,256]"]                             # configs/fastcnn-cpu-narrow.yaml's widths
# airbench94's whole method in cnnlab's keys (lib_airbench94.hyp; the conversion is in configs/fastcnn-cpu.yaml):
# L 11.5 and W 0.0153 per 1024 examples at momentum 0.85, BN biases 64x, Lookahead, whitening bias 3 epochs, identity
# init, BN momentum 0.6 (PyTorch's 0.4), the triangle schedule (0.2 -> 1 at 23% -> 0.07; onecycle's curve is a
# cosine, airbench's straight lines), batch 1024, 10 epochs (airbench: 9.9), no weight average (airbench has none)
AIRBENCH = BIAS_LR + LOOKAHEAD + WHITEN_BIAS + FEWER_EPOCHS + [
    "batch.size=1024", "optim.lr=1.5", "optim.momentum=0.85", "optim.weight_decay=1.33e-3", "optim.decay_bias_norm=true",
    "schedule.pct_start=0.23", "schedule.div_factor=5", "schedule.final_div_factor=2.857", "train.ema=0",
    "model.options.identity_init=true", "model.options.bn_momentum=0.4"]


def _resized(*stages: str) -> List[str]:
    """The recipe's augmentation (2-pixel reflect crops, alternating flips) with resize stages after it."""
    return ["augment.pipeline=[{name: crop, padding: 2, mode: reflect}, {name: flip, mode: alternate}, "
            + ", ".join(stages) + "]"]


# progressive resizing (a CPU idea: fastcnn pools globally, so a 24x24 image costs ~(24/32)^2 of a 32x32 one)
RESIZE = _resized("{name: resize, size: 24, epochs: 4}")
# three sizes: 16 px for 3 epochs, 24 px for the next 3, then full size (about 0.66x the full-size time of 10 epochs)
PROGRESSIVE = _resized("{name: resize, size: 16, epochs: 3}", "{name: resize, size: 24, epochs: 6}")
VARIANTS: Dict[str, List[str]] = {
    "baseline": [],
    "bias-lr": BIAS_LR,
    "lookahead": LOOKAHEAD,
    "whiten-bias": WHITEN_BIAS,
    "batch-1024": BATCH_1024,
    "fewer-epochs": FEWER_EPOCHS,
    "narrow": NARROW,
    "all": BIAS_LR + LOOKAHEAD + WHITEN_BIAS + BATCH_1024 + FEWER_EPOCHS + NARROW,
    "airbench": AIRBENCH,
    "airbench-resize": AIRBENCH + RESIZE,
    "resize": FEWER_EPOCHS + RESIZE,
    "airbench-progressive": AIRBENCH + PROGRESSIVE,
}
# --quick: the wiring on a few images (after the variant's overrides, so batch-1024 still has a full batch)
QUICK = ["data.train_subset=512", "data.val_subset=256", "train.epochs=1", "batch.size=128"]
DONE = ("finished", "stopped", "diverged")  # a run in one of these states is not trained again


def train_command(variant: str, args) -> Optional[List[str]]:
    """The `cnnlab train` command that brings variant's run to its end, or None when it is already there."""
    folder = Path(args.out) / variant
    base = [sys.executable, "-m", "cnnlab", "train", "--data-root", str(args.data_root)]
    status = _status(folder)
    if status in DONE:
        return None
    if (folder / "last.pt").is_file():  # interrupted (or killed) after at least one epoch: go on from there
        return base + ["--resume", str(folder)]
    over = [f"train.epochs={args.epochs}", *VARIANTS[variant], *args.overrides, *(QUICK if args.quick else []),
            f"name={variant}", "train.progress=off"]
    return base + ["-c", str(args.config), "--out", str(args.out), "--overwrite", *over]


def _status(folder: Path) -> Optional[str]:
    try:
        return json.loads((folder / "summary.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def train(variant: str, args) -> None:
    cmd = train_command(variant, args)
    if cmd is None:
        print(f"{variant}: already trained ({_status(Path(args.out) / variant)}), skipped", flush=True)
        return
    log = Path(args.out) / f"{variant}.log"
    print(f"{variant}: {'resuming' if '--resume' in cmd else 'training'} (log: {log})", flush=True)
    t0 = time.perf_counter()
    with open(log, "a", encoding="utf-8") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"ablate_fast: variant {variant!r} failed (exit {done.returncode}); see {log}, then run "
                         "this again to go on")
    print(f"{variant}: done in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)


def read_metrics(folder: Path) -> List[Dict[str, float]]:
    with open(folder / "metrics.csv", newline="", encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def row_of(variant: str, args) -> dict:
    """One table row, every number read from the variant's run folder (metrics.csv) and its evaluation."""
    folder = Path(args.out) / variant
    rows = read_metrics(folder)
    train_s = sum(r["epoch_time"] for r in rows)
    images = sum(r["images_per_sec"] * r["epoch_time"] for r in rows)
    hits = {t: next((r["time"] for r in rows if r.get("val_acc", 0) >= t), None) for t in TARGETS}
    res = evaluate_run(load_run(folder, data_root=str(args.data_root), device="auto"), "val", tta="flip-translate")
    return {"variant": variant, "images_per_sec": images / train_s, "hits": hits, "acc": res["acc_without_tta"],
            "acc_tta": res["acc"], "epochs": len(rows), "minutes": rows[-1]["time"] / 60}


def table(rows: List[dict]) -> str:
    head = ["variant", "img/s", *[f"min to {t:.0%}" for t in TARGETS], "val acc", "val acc TTA", "epochs", "min"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["variant"], f"{r['images_per_sec']:,.0f}",
                 *["-" if r["hits"][t] is None else f"{r['hits'][t] / 60:.2f}" for t in TARGETS],
                 f"{r['acc']:.4f}", f"{r['acc_tta']:.4f}", str(r["epochs"]), f"{r['minutes']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"comma-separated, in order (default all: {', '.join(VARIANTS)})")
    ap.add_argument("--epochs", type=int, default=17, help="train.epochs of every variant that does not set it")
    ap.add_argument("--config", default=str(CONFIG), help="the recipe the variants change")
    ap.add_argument("--data-root", default=str(ROOT))
    ap.add_argument("--out", default="runs/ablate-fast", help="the ablation's folder: one run folder per variant")
    ap.add_argument("--quick", action="store_true", help="the wiring: 512 images, one epoch a variant")
    ap.add_argument("overrides", nargs="*", help="key=value overrides for every variant (e.g. train.amp=bf16)")
    args = ap.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise SystemExit(f"ablate_fast: unknown variant(s) {', '.join(unknown) or '(none given)'}; use some of "
                         f"{', '.join(VARIANTS)}")
    args.out = Path(args.out).resolve()
    args.data_root = Path(args.data_root).resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    for v in variants:
        train(v, args)
    rows = [row_of(v, args) for v in variants]
    length = "[--quick: 512 images, 1 epoch]" if args.quick else f"train.epochs={args.epochs}"
    header = (f"{cpu_name()}, {os.cpu_count()} cores; {Path(args.config).name} + {length}"
              + (f" + {' '.join(args.overrides)}" if args.overrides else "")
              + "; minutes from metrics.csv `time` (training and per-epoch validation); TTA flip-translate")
    text = header + "\n\n" + table(rows) + "\n"
    atomic_write_text(args.out / "ablation.md", text)
    print(text, end="")


if __name__ == "__main__":
    main()
