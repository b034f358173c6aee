"""Shared machinery of the analyses: driving the Trainer step by step, saving and restoring its state, output files.

`run_steps` takes an exact number of the Trainer's own optimizer steps (`Trainer.steps`: batches, augmentation, L1,
micro-batching and AMP are those of `cnnlab train`), with the learning rate of every step chosen by the caller, and
`preserved` puts the trainer back afterwards through `Trainer.state` / `Trainer.load_state`. Nothing here touches a
Trainer attribute that it does not document as public.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence

import torch

from cnnlab import plotting
from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_write_text
from cnnlab.models import MODELS
from cnnlab.models.registry import default_args
from cnnlab.training.config import config_from_dict, merge
from cnnlab.training.trainer import Trainer


# ----------------------------------------------------------------------------------------------------------------------
# Trainer state and steps, through the Trainer's public interface only

def snapshot(trainer) -> dict:
    """A copy of everything an analysis may disturb in a Trainer (its `state()`, GradScaler and batch included)."""
    return trainer.state(copy_tensors=True)


@contextlib.contextmanager
def preserved(trainer) -> Iterator[dict]:
    """Run a block that trains `trainer`, then put the model, optimizer, schedule, scaler, batch settings and RNG
    back as they were."""
    snap = snapshot(trainer)
    try:
        yield snap
    finally:
        trainer.load_state(snap)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)  # a group at a multiple of the lr (optim.bias_lr_scale) keeps it


def run_steps(trainer, steps: int, lr_at: Optional[Callable[[int], float]] = None,
              on_step: Optional[Callable[[object, int, float], None]] = None,
              stop: Optional[Callable[[List[float]], bool]] = None) -> List[float]:
    """Train `trainer` for `steps` optimizer steps (`Trainer.steps`); return the loss of every step's batch.

    lr_at(i) sets the learning rate of step i (None: the trainer's own schedule); on_step(trainer, i, loss) runs
    after step i, with its gradients still on the parameters; stop(losses) -> True ends the run early (e.g. on
    divergence). The run also ends when the trainer's own divergence check fires. Epochs are numbered from 0, so
    every call sees the same batch order.
    """
    if len(trainer.train_loader) == 0:
        raise CnnlabError(f"no full training batch: batch.size={trainer.cfg.batch.size} is larger than the "
                          f"{len(trainer.ds.train):,} training images; lower batch.size or raise data.train_subset")
    losses: List[float] = []
    if lr_at is not None:
        set_lr(trainer.optimizer, lr_at(0))
    for i, loss in enumerate(trainer.steps(steps)):
        losses.append(loss)
        if on_step is not None:
            on_step(trainer, i, loss)
        if stop is not None and stop(losses):
            break
        if lr_at is not None and i + 1 < steps:
            set_lr(trainer.optimizer, lr_at(i + 1))
    return losses


def analysis_trainer(cfg, log: Optional[Callable[[str], None]] = None):
    """A Trainer that writes nothing and shows no progress bar (analyses print their own summary lines): its own
    lines go to `log`, or at DEBUG level to the `cnnlab.analysis.trainer` logger, hidden unless asked for."""
    cfg = config_from_dict(merge(cfg.to_dict(), {"train": {"progress": "off", "checkpoints": False}}))
    return Trainer(cfg, write=False, log=log or logging.getLogger("cnnlab.analysis.trainer").debug)


def trainable(model: torch.nn.Module) -> List[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


# ----------------------------------------------------------------------------------------------------------------------
# Cost lines and suggestions

def cost_line(what: str, passes: int, kind: str = "forward+backward") -> str:
    """One line announcing an analysis' cost in image passes, printed before it starts."""
    return f"{what}: expected cost {passes:,} {kind} image passes"


def finite(xs: Sequence[float]) -> bool:
    return all(math.isfinite(x) for x in xs)


# ----------------------------------------------------------------------------------------------------------------------
# Output files

def write_csv(path, rows: List[dict], columns: Optional[List[str]] = None) -> Path:
    """Rows of numbers as CSV, written atomically; floats with 6 significant digits."""
    path = Path(path)
    if columns is None:
        columns = list(rows[0]) if rows else []
        for r in rows[1:]:
            columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items() if k in columns})
    atomic_write_text(path, buf.getvalue())
    return path


def new_figure(nrows: int = 1, ncols: int = 1, size=(6.0, 4.0), **kw):
    """(Figure, 2-D axes) with `size` inches per panel, in cnnlab's style (cnnlab.plotting)."""
    return plotting.new_figure(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), **kw)


def save_figure(fig, path, title: Optional[str] = None) -> Path:
    if title:
        fig.suptitle(title)
    return plotting.save_figure(fig, path)


# ----------------------------------------------------------------------------------------------------------------------
# Configurations compared by the BN analyses

def bn_variants(cfg) -> List[tuple]:
    """[(label, cfg without BN), (label, cfg with BN)] for the configured model: a `<name>`/`<name>_bn` pair in the
    model registry (vgg_a / vgg_a_bn), else the model's `batch_norm` option switched off and on."""
    name = cfg.model.name.lower()
    base = name[:-3] if name.endswith("_bn") else name
    if base + "_bn" in MODELS and base in MODELS:
        patches = [{"model": {"name": base}}, {"model": {"name": base + "_bn"}}]
        labels = [base, base + "_bn"]
    elif "batch_norm" in default_args(name):
        patches = [{"model": {"options": {"batch_norm": v}}} for v in (False, True)]
        labels = [f"{name} without BN", f"{name} with BN"]
    else:
        raise CnnlabError(f"model {cfg.model.name!r} has no batch-norm variant (no {base}_bn model, no batch_norm "
                          "option); name the runs to compare with --variant LABEL key=value ...")
    return [(label, config_from_dict(merge(cfg.to_dict(), p))) for label, p in zip(labels, patches)]
