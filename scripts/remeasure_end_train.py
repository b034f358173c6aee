"""Measure a finished run's `initial_loss`, `end_train_loss` and `end_train_acc` again, as the trainer now measures
them, and write them into its summary.json and into the report copies of it (results/*/report_runs/<run>/).

Why: until 2026-12-06 both were taken on the training split's *first* images. The JPEG CIFAR-10's train/ is read
class folder by class folder, so those were 4,500 airplanes, 4,500 automobiles and 1,000 birds (end_train, 10,000
images) and airplanes only (the initial-loss batch); Fashion-MNIST's official order is shuffled. The trainer now
takes every class in its share (data.core.representative). This script applies the same code to runs that finished
before: the initial loss on the run's initial weights (a fresh Trainer at the run's own config and train.seed builds
the same weights), then the final weights (last.pt, its EMA where train.ema is set) on the 10,000 images. Nothing
else in a summary changes; a run without last.pt, or one that did not end finished or stopped, is left alone.

    PYTHONPATH=src .venv/bin/python scripts/remeasure_end_train.py --data-root ../shared/data runs/*/cpu/*
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cnnlab.fileio import atomic_write_text
from cnnlab.training import runstate
from cnnlab.training.runfolder import RunFolder
from cnnlab.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
FIELDS = ("initial_loss", "end_train_loss", "end_train_acc", "end_train_images")


def remeasure(path: Path, data_root: str) -> dict:
    """The run's FIELDS, measured again (nothing is written)."""
    folder = RunFolder(path)
    cfg = folder.load_config()
    cfg.data.root = data_root
    t = Trainer(cfg, path, write=False, log=lambda _: None)   # new weights at the run's seed: its initial weights
    try:
        out = {"initial_loss": t.check_initial_loss()}
        t.saver.restore(lambda ckpt, p: runstate.apply_checkpoint(t, ckpt, p), t.device)  # last.pt: final weights
        out.update(t.measure_end_train())
    finally:
        t.close()
    return out


def copies() -> dict:
    """run path -> the report copies of its summary (results/*/report_runs/*/summary.json, by their `run`), read
    once for all the runs a call measures."""
    found: dict = {}
    for f in REPO.glob("results/*/report_runs/*/summary.json"):
        try:
            found.setdefault(json.loads(f.read_text()).get("run"), []).append(f)
        except ValueError:
            continue
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders (config.yaml, last.pt, summary.json)")
    ap.add_argument("--data-root", required=True)
    args = ap.parse_args()
    kept = copies()
    for path in args.runs:
        summary = RunFolder(path).read_summary() if (path / "summary.json").is_file() else None
        if not summary or summary.get("status") not in ("finished", "stopped") or not (path / "last.pt").is_file():
            print(f"{path}: skipped (not finished or stopped, or no last.pt)", flush=True)
            continue
        new = remeasure(path, args.data_root)
        old = {k: summary.get(k) for k in FIELDS}
        targets = [path / "summary.json", *kept.get(summary.get("run") or str(path), [])]
        for f in targets:
            data = json.loads(f.read_text())
            data.update(new)
            atomic_write_text(f, json.dumps(data, indent=2, default=str) + "\n")
        said = ", ".join(f"{k} {old[k]!s:.8} -> {new[k]!s:.8}" for k in FIELDS if k != "end_train_images")
        print(f"{path}: {said} ({len(targets)} file(s))", flush=True)


if __name__ == "__main__":
    sys.exit(main())
