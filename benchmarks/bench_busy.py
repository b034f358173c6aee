"""Training throughput on a busy machine: the thread default against one thread and against today's fixed default.

Issue #26: on 2 cores, torch's default of one intra-op thread per core gave SimpleNN on 20,000 Fashion-MNIST images
25k img/s on a quiet machine (15k with one thread), but 7k beside one busy process (one thread: 14-15k) and 3.5k
beside two. `train.threads=0` now re-decides the count every epoch by timing (src/cnnlab/training/threads.py). This
script measures, each in a fresh `cnnlab train` process (so torch and OpenMP start from their defaults):

  quiet,  1 thread     train.threads=1
  quiet,  fixed        train.threads=<cores>   (today's default: one per core, never changed)
  quiet,  auto         train.threads=0         (the new default)
  and the same beside 1 and 2 busy processes (`python -c 'while True: pass'`, started and stopped here),

interleaved (every condition once per round, the order rotated each round, so a change in the machine's load
touches all alike), and prints the median images/s of each (the run's own figure: the median over its epochs of
training images per second) and the ratios against the issue's targets:

  auto beside one busy >= 0.9 x quiet one-thread;  auto beside two busy >= 0.5 x quiet one-thread;
  auto quiet >= today's quiet default (no slower; read within the noise of the rounds).

With --omp-passive, the fixed and auto conditions are also run with OMP_WAIT_POLICY=PASSIVE (OpenMP threads sleep
instead of spinning at barriers; it can only be set before the process starts).

Run on a quiet machine (no other jobs); the figures (about 10 minutes):

    cd benchmarks && PYTHONPATH=../src ../.venv/bin/python bench_busy.py --data-root ../../shared/data
A short check of the mechanism (about 3 minutes):

    cd benchmarks && PYTHONPATH=../src ../.venv/bin/python bench_busy.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from bench_time_to_accuracy import cpu_name
from bench_train import ROOT

TARGETS = [("auto, 1 busy", "quiet, 1 thread", 0.9), ("auto, 2 busy", "quiet, 1 thread", 0.5),
           ("auto, quiet", "fixed, quiet", 1.0)]


def conditions(cores: int, passive: bool) -> List[dict]:
    out = []
    for busy in (0, 1, 2):
        where = "quiet" if busy == 0 else f"{busy} busy"
        if busy < 2:
            out.append({"name": f"1 thread, {where}" if busy else "quiet, 1 thread", "busy": busy, "threads": 1})
        out.append({"name": f"fixed, {where}", "busy": busy, "threads": cores})
        out.append({"name": f"auto, {where}", "busy": busy, "threads": 0})
        if passive:
            out += [{"name": f"{c} passive, {where}", "busy": busy, "threads": t, "env": {"OMP_WAIT_POLICY": "PASSIVE"}}
                    for c, t in (("fixed", cores), ("auto", 0))]
    return out


def start_busy(n: int) -> List[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_busy(procs: List[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()


def measure(cond: dict, args, out: Path, k: int) -> dict:
    """One `cnnlab train` of SimpleNN on Fashion-MNIST under `cond`; the run's median images/s and thread counts."""
    name = f"busy-{k}"
    cmd = [sys.executable, "-m", "cnnlab", "train", "--data-root", args.data_root, "--overwrite",
           "data.name=fashion-mnist", f"data.train_subset={args.images}", "data.val_size=1000", "model.name=simplenn",
           "batch.size=128", "optim.lr=0.01", f"train.epochs={args.epochs}", f"train.threads={cond['threads']}",
           "train.checkpoints=false", "train.progress=off", f"out={out}", f"name={name}"]
    env = dict(os.environ, **cond.get("env", {}))
    busy = start_busy(cond["busy"])
    try:
        time.sleep(0.5)  # let the busy processes take their cores
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    finally:
        stop_busy(busy)
    if done.returncode != 0:
        raise SystemExit(f"bench_busy: {' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    summary = json.loads((out / name / "summary.json").read_text())
    rows = [line.split(",") for line in (out / name / "metrics.csv").read_text().splitlines()]
    col = rows[0].index("threads")
    return {"ips": summary["images_per_sec"], "threads": [int(r[col]) for r in rows[1:]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10,000 images, 2 epochs, 1 round: the mechanism only")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--omp-passive", action="store_true", help="also the OMP_WAIT_POLICY=PASSIVE conditions")
    ap.add_argument("--data-root", default=str(ROOT))
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.images, args.epochs = 1, 10000, 2
    cores = os.cpu_count() or 1
    conds = conditions(cores, args.omp_passive)
    print(f"{cpu_name()}, {cores} cores; SimpleNN, Fashion-MNIST {args.images:,} images, batch 128, {args.epochs} "
          f"epochs per run, {args.rounds} round(s) of {len(conds)} conditions, interleaved")
    got: Dict[str, List[float]] = {c["name"]: [] for c in conds}
    counts: Dict[str, List[List[int]]] = {c["name"]: [] for c in conds}
    with tempfile.TemporaryDirectory(prefix="bench-busy-") as tmp:
        for r in range(args.rounds):
            order = conds[r % len(conds):] + conds[:r % len(conds)]
            for k, cond in enumerate(order):
                m = measure(cond, args, Path(tmp), k)
                got[cond["name"]].append(m["ips"])
                counts[cond["name"]].append(m["threads"])
                print(f"  round {r + 1}: {cond['name']:<22} {m['ips']:>9,.0f} img/s  threads per epoch {m['threads']}",
                      flush=True)
    med = {n: statistics.median(v) for n, v in got.items()}
    print("\n| condition | median img/s | runs | threads per epoch (last run) |\n|---|---|---|---|")
    for c in conds:
        print(f"| {c['name']} | {med[c['name']]:,.0f} | {len(got[c['name']])} | {counts[c['name']][-1]} |")
    print("\n| target | ratio | needed | met |\n|---|---|---|---|")
    for a, b, need in TARGETS:
        ratio = med[a] / med[b]
        print(f"| {a} / {b} | {ratio:.2f} | >= {need:g} | {'yes' if ratio >= need else 'no'} |")


if __name__ == "__main__":
    main()
