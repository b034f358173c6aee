"""Peer benchmark: airbench94 (Jordan 2024, the `airbench` package from PyPI) and cnnlab's fast route
(configs/fastcnn-cpu.yaml, the same network), back to back in one process, on the same data, precision and threads.

cnnlab's other speed figures are ratios against the course pipeline, a weak peer; airbench is the strongest one
(94.01% on CIFAR-10 in ~3 s on an A100). Both sides get the same tensors: this project's JPEG CIFAR-10 copy read
through cnnlab's data loading, train 45,000 / val 5,000 (data.seed 0), training seed 0. airbench trains with its own
hyperparameters, loader, schedule, Lookahead and TTA, and its per-epoch "test" accuracy is taken on the validation
split. cnnlab trains through its real Trainer into a run folder (runs/peers-fastcnn-cpu), so `cnnlab evaluate` works
on the result afterwards.

airbench is CUDA-only. On a CPU its method runs unchanged except where CUDA forces a change; the changes are made at
run time by wrapping or monkeypatching the installed package (none of its code is copied here) and printed by the
benchmark: no `.half().cuda()` on the network (fp32 weights, forward under bf16 autocast where airbench runs fp16),
images kept in bf16 on the CPU where airbench keeps fp16 on the GPU, CUDA events replaced by a wall clock. With
`--device cuda` only the data are swapped in.

Printed for each: training images/s, training minutes to 85 / 88 / 90% validation accuracy (training time only, for
both: airbench's own clock excludes its evaluations, cnnlab's is the sum of its epochs' training time), final
validation accuracy without and with TTA (flip + translate for both), and the ratios; also the course pipeline's
images/s (PIL + torchvision transforms through a DataLoader, the same fastcnn model) for scale. The CPU's name is in
the first line.

The figures (about 45 minutes on a quiet 2-core machine; the lead runs them):

    cd benchmarks && PYTHONPATH=../src ../.venv/bin/python bench_peers.py --data-root ../../shared/data
    cd benchmarks && PYTHONPATH=../src ../.venv/bin/python bench_peers.py --device cuda   # one GPU (gpu_check.sh)

The wiring only (a few hundred images, one short epoch each; under 2 minutes):

    cd benchmarks && PYTHONPATH=../src ../.venv/bin/python bench_peers.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from cnnlab.training.config import load_config
from cnnlab.training.inference import evaluate_run, load_run
from cnnlab.training.trainer import Trainer

from bench_time_to_accuracy import course_epoch, cpu_name
from bench_train import ROOT

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "fastcnn-cpu.yaml"
TARGETS = (0.85, 0.88, 0.90)  # validation accuracies whose training time is reported (--targets)
QUICK = {"train": 512, "val": 256, "batch": 64}  # --quick: images and batch size of both sides


# -- airbench, adapted at run time -----------------------------------------------------------------------------------
class _WallEvent:
    """torch.cuda.Event's timing interface on a wall clock (airbench times its epochs with CUDA events)."""

    def __init__(self, enable_timing: bool = True):
        self.t = None

    def record(self, stream=None) -> None:
        self.t = time.perf_counter()

    def elapsed_time(self, end: "_WallEvent") -> float:
        return 1e3 * (end.t - self.t)


@contextlib.contextmanager
def _patched(obj, name: str, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def _write_airbench_data(folder: Path, split, classes: List[str], shuffle: bool = False) -> None:
    """A split in airbench's CifarLoader file format: uint8 NHWC images, labels, class names. `shuffle`: in a seeded
    random order, as the official CIFAR-10 files are; this project's image-folder copy is read class by class, and
    airbench computes its whitening layer from the first 5,000 training images (in class order: all airplanes)."""
    order = torch.randperm(len(split.x), generator=torch.Generator().manual_seed(0)) if shuffle else \
        torch.arange(len(split.x))
    torch.save({"images": split.x[order].permute(0, 2, 3, 1).contiguous(), "labels": split.y[order].clone(),
                "classes": list(classes)}, folder / "train.pt")


def run_airbench(ds, device: torch.device, amp: str, quick: bool, targets=TARGETS,
                 epochs: Optional[float] = None) -> dict:
    """airbench94's train() on ds.train / ds.val; returns its per-epoch log, final accuracies and timing."""
    from importlib.metadata import version

    from airbench import lib_airbench94 as a94
    from airbench import utils as au

    adapted: List[str] = ["data: this project's train/val split written in CifarLoader's train.pt/test.pt format "
                          "(the training images in a seeded random order, as the official files are, so that the "
                          "first 5,000, whitened on, hold every class); the 'test' loader train() makes is pointed at "
                          "the validation split"]
    cpu = device.type == "cpu"
    store = {"bf16": torch.bfloat16, "none": torch.float32}.get(amp) if cpu else None
    log: List[Dict] = []
    tmp = tempfile.TemporaryDirectory(prefix="airbench-data-")
    folders = {True: Path(tmp.name) / "train", False: Path(tmp.name) / "val"}
    for is_train, split in ((True, ds.train), (False, ds.val)):
        folders[is_train].mkdir()
        _write_airbench_data(folders[is_train], split, ds.classes, shuffle=is_train)
        if not is_train:  # CifarLoader reads test.pt for train=False
            (folders[False] / "train.pt").rename(folders[False] / "test.pt")
    Real = au.CifarLoader
    where = "cpu" if cpu else (device.index or 0)

    def loader(path, train=True, **kw):
        made = Real(str(folders[bool(train)]), train=train, gpu=where, **kw)
        if store is not None:
            made.images = made.images.to(store)  # fp16 storage on the GPU -> bf16 (or fp32) on the CPU
        return made

    if cpu:
        adapted.append(f"images stored as {str(store).replace('torch.', '')} on the CPU (airbench: float16 on the "
                       "GPU)")

    def make_net():
        if not cpu:
            return a94.make_net94()
        keep = lambda self, *a, **k: self  # noqa: E731
        with _patched(torch.nn.Module, "half", keep), _patched(torch.nn.Module, "cuda", keep):
            net = a94.make_net94()  # fp32 weights on the CPU
        if amp == "bf16":
            plain = net.forward
            def forward(*a, **k):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return plain(*a, **k)
            net.forward = forward
        return net

    if cpu:
        adapted.append("make_net94: .half().cuda() skipped (fp32 weights on the CPU); "
                       + ("forward under torch.autocast('cpu', bfloat16) where airbench runs float16"
                          if amp == "bf16" else "fp32 throughout (--amp none)"))
        adapted.append("torch.cuda.Event / torch.cuda.synchronize: a wall clock (time.perf_counter) / nothing")

    show = au.print_training_details

    def record(variables, is_final_entry):  # airbench's own log line, and its numbers kept for the table
        log.append({k: variables.get(k) for k in ("epoch", "val_acc", "tta_val_acc", "total_time_seconds",
                                                   "current_steps", "train_acc")})
        show(variables, is_final_entry)

    hyp = a94.hyp
    batch = QUICK["batch"] if quick else hyp["opt"]["batch_size"]
    epochs = 1 if quick else (epochs or hyp["opt"]["train_epochs"])
    stack = contextlib.ExitStack()
    with stack, tmp:
        stack.enter_context(_patched(au, "CifarLoader", loader))
        stack.enter_context(_patched(au, "print_training_details", record))
        if cpu:
            stack.enter_context(_patched(torch.cuda, "Event", _WallEvent))
            stack.enter_context(_patched(torch.cuda, "synchronize", lambda *a, **k: None))
        print("airbench94, adapted at run time:\n" + "\n".join(f"  - {a}" for a in adapted))
        train_loader = loader(None, train=True, batch_size=batch, aug=hyp["aug"], altflip=True)
        torch.manual_seed(0)
        t0 = time.perf_counter()
        a94.train94(train_loader, epochs=epochs, make_net=make_net, verbose=True)
        wall = time.perf_counter() - t0
    epochs_log = [r for r in log if isinstance(r["epoch"], int)]
    final = [r for r in log if r["epoch"] == "eval"]
    train_s = epochs_log[-1]["total_time_seconds"] if epochs_log else float("nan")
    steps = epochs_log[-1]["current_steps"] if epochs_log else 0
    hits = {t: next((r["total_time_seconds"] for r in epochs_log if r["val_acc"] >= t), None) for t in targets}
    return {"name": f"airbench94 (airbench {version('airbench')})", "adapted": adapted,
            "images_per_sec": steps * batch / train_s if train_s else 0.0, "train_s": train_s, "wall_s": wall,
            "epochs": epochs, "hits": hits, "acc": epochs_log[-1]["val_acc"] if epochs_log else None,
            "acc_tta": final[-1]["tta_val_acc"] if final else None}


# -- cnnlab ----------------------------------------------------------------------------------------------------------
def cnnlab_trainer(args, device: torch.device) -> Trainer:
    amp = args.amp if device.type == "cpu" else "fp16"  # airbench runs fp16 on CUDA
    over = [f"data.root={args.data_root}", f"out={args.out}", "name=peers-fastcnn-cpu", "train.progress=off",
            "data.val_size=5000", "data.seed=0", "train.seed=0", f"train.threads={args.threads}",
            f"train.amp={amp}", f"train.device={device}", f"train.targets={list(args.targets)}"]
    if args.quick:
        over += [f"data.train_subset={QUICK['train']}", f"data.val_subset={QUICK['val']}", "train.epochs=1",
                 f"batch.size={QUICK['batch']}"]
    return Trainer(load_config(str(args.config), over + args.overrides), overwrite=True, log=lambda s: None)


def run_cnnlab(trainer: Trainer, data_root: str, targets=TARGETS, recipe: str = CONFIG.stem) -> dict:
    t0 = time.perf_counter()
    summary = trainer.fit()
    wall = time.perf_counter() - t0
    rows = trainer.history
    spent = [sum(r["epoch_time"] for r in rows[:k + 1]) for k in range(len(rows))]  # training time only
    hits = {t: next((spent[k] for k, r in enumerate(rows) if (r.get("val_acc") or 0) >= t), None) for t in targets}
    res = evaluate_run(load_run(summary["run"], data_root=data_root, device=str(trainer.device)), "val",
                       tta="flip-translate")
    images = sum(r["images_per_sec"] * r["epoch_time"] for r in rows)
    return {"name": f"cnnlab {recipe} ({trainer.cfg.model.name})", "images_per_sec": images / spent[-1],
            "train_s": spent[-1], "wall_s": wall, "epochs": len(rows), "hits": hits,
            "acc": res["acc_without_tta"], "acc_tta": res["acc"], "run": summary["run"]}


# -- the table -------------------------------------------------------------------------------------------------------
def _minutes(s: Optional[float]) -> str:
    return "-" if s is None else f"{s / 60:.2f}"


def _acc(a: Optional[float]) -> str:
    return "-" if a is None else f"{a:.4f}"


def table(rows: List[dict], course: float, targets=TARGETS) -> str:
    head = ["peer", "img/s", *[f"min to {t:.0%}" for t in targets], "val acc", "val acc TTA", "epochs",
            "train min", "x course"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"], f"{r['images_per_sec']:,.0f}", *[_minutes(r["hits"][t]) for t in targets],
                 _acc(r["acc"]), _acc(r["acc_tta"]), f"{r['epochs']:g}", _minutes(r["train_s"]),
                 f"{r['images_per_sec'] / course:.2f}" if course else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(air: dict, lab: dict, targets=TARGETS) -> str:
    parts = [f"images/s {lab['images_per_sec'] / air['images_per_sec']:.2f}x"]
    for t in targets:
        a, b = air["hits"][t], lab["hits"][t]
        parts.append(f"time to {t:.0%} " + (f"{b / a:.2f}x" if a and b else "- (not reached by both)"))
    return "cnnlab / airbench94: " + ", ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few hundred images, one short epoch each (the wiring)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="intra-op threads of both sides")
    ap.add_argument("--amp", default="bf16", choices=("bf16", "none"),
                    help="CPU precision of both sides (bf16 autocast stands for airbench's fp16); CUDA: fp16")
    ap.add_argument("--config", default=str(CONFIG), help="cnnlab's recipe (default: the fast route)")
    ap.add_argument("--targets", default=",".join(f"{t:g}" for t in TARGETS),
                    help="comma-separated validation accuracies (0-1) whose training time is reported")
    ap.add_argument("--data-root", default=str(ROOT))
    ap.add_argument("--out", default="runs", help="parent folder of cnnlab's run folder")
    ap.add_argument("--scale-images", type=int, default=5000, help="images in the course-pipeline epoch")
    ap.add_argument("--airbench-epochs", type=float, default=None,
                    help="airbench94's training length in epochs (default: its own, 9.9); its schedule is sized to it")
    ap.add_argument("--only", choices=("both", "airbench", "cnnlab"), default="both",
                    help="run one side only (a point of its accuracy-time frontier); the table then has one row")
    ap.add_argument("overrides", nargs="*", help="key=value overrides of cnnlab's recipe")
    args = ap.parse_args()
    try:
        args.targets = tuple(sorted(float(t) for t in args.targets.split(",") if t.strip()))
    except ValueError:
        raise SystemExit(f"bench_peers: --targets must be numbers between 0 and 1 separated by commas, got "
                         f"{args.targets!r}") from None
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_peers: --device cuda, but torch sees no CUDA device")
    try:
        if args.only != "cnnlab":
            import airbench  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"bench_peers: the airbench package is not installed ({e}); pip install -e '.[benchmarks]'")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    trainer = cnnlab_trainer(args, device)  # loads the data once: airbench gets the same tensors
    ds = trainer.ds
    prec = ("bf16 autocast" if args.amp == "bf16" else "fp32") if device.type == "cpu" else "fp16 autocast"
    where = cpu_name() if device.type == "cpu" else f"{torch.cuda.get_device_name(device)} (host CPU: {cpu_name()})"
    print(f"{where}, {args.threads} threads, torch {torch.__version__}, {prec}; data: {ds.source}, "
          f"train {len(ds.train):,} / val {len(ds.val):,} (data.seed 0), seed 0" + (" [--quick]" if args.quick else ""))
    course = course_epoch(trainer, QUICK["train"] if args.quick else args.scale_images, 128)
    print(f"course pipeline (PIL + torchvision transforms, DataLoader, batch 128, fastcnn): {course:,.0f} img/s")

    air = run_airbench(ds, device, args.amp, args.quick, args.targets, args.airbench_epochs) \
        if args.only != "cnnlab" else None
    lab = run_cnnlab(trainer, args.data_root, args.targets, Path(args.config).stem) if args.only != "airbench" \
        else None
    print(table([r for r in (air, lab) if r], course, args.targets))
    if air and lab:
        print(ratios(air, lab, args.targets))
    if lab:
        print(f"cnnlab's run folder: {lab['run']}")


if __name__ == "__main__":
    main()
