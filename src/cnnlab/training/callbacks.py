"""What a run does around its epochs besides training: the rules that stop it (a tuner's pruner, a time limit, early
stopping), the accuracy targets it records, and the trackers (TensorBoard, MLflow) it feeds.

Each is a `Callback` with the hooks it needs; the Trainer calls every callback at each hook, in list order. A new rule
is one class here and one entry in `default_callbacks`, not a branch inside the training loop (STYLE lesson 14).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, List, Optional

from cnnlab.training.tracking import Trackers


def percent(fraction: float, digits: int = 2) -> str:
    """An accuracy (a fraction) as the terminal and the reports write it: 0.6543 -> '65.43%'."""
    return f"{100 * fraction:.{digits}f}%"


def show_metric(name: str, value: float) -> str:
    """A metrics.csv value as the terminal shows it: an accuracy (`*_acc`) in %, a loss with 4 decimals."""
    return percent(value) if name.endswith("_acc") else f"{value:.4f}"


class Callback:
    """The hooks; each defaults to doing nothing. `t` is the Trainer, `row` the epoch's metrics.csv row."""

    def stop_reason(self, t, row: dict) -> Optional[str]:
        """After an epoch: why the run should stop now, if it should (the first callback to say so wins)."""
        return None

    def epoch_note(self, t, row: dict) -> Optional[str]:
        """After an epoch: something to add to its line on the terminal."""
        return None

    def on_step(self, t, loss_sum, images: int, lr: float) -> None:
        """After each optimizer step; `loss_sum` is the batch's summed loss, still on the device."""

    def on_epoch_written(self, t, row: dict) -> None:
        """After the epoch's row is in metrics.csv (the run folder is being written)."""

    def on_end(self, t, summary: dict) -> None:
        """When the run ends, however it ends (summary['status'] says how)."""


class Pruning(Callback):
    """The caller's `epoch_hook(trainer, row)` (the tuner's pruner): a reason to stop, or None."""

    def __init__(self, hook: Callable):
        self.hook = hook

    def stop_reason(self, t, row):
        return self.hook(t, row) or None


class TimeLimit(Callback):
    """train.max_time: stop once the run has trained that many seconds (checked after each epoch)."""

    def stop_reason(self, t, row):
        limit = t.cfg.train.max_time
        return f"train.max_time={limit:g}s reached" if limit and t.time >= limit else None


class EarlyStopping(Callback):
    """train.patience on train.monitor, computed from the history, so a resumed run decides as an uninterrupted one
    would; a NaN epoch counts as no improvement."""

    def stop_reason(self, t, row):
        c = t.cfg.train
        if not c.patience or t.val_loader is None:
            return None
        sign = 1 if c.monitor == "val_acc" else -1
        values = [sign * r[c.monitor] if isinstance(r.get(c.monitor), (int, float)) and math.isfinite(r[c.monitor])
                  else -math.inf for r in t.history]
        if not values:
            return None
        best = max(range(len(values)), key=lambda i: (values[i], -i))  # the first epoch at the best value
        if len(values) - 1 - best < c.patience:
            return None
        return (f"early stopping: {c.monitor} has not improved for {c.patience} epochs (best "
                f"{show_metric(c.monitor, sign * values[best])} at epoch {best + 1})")


class Targets(Callback):
    """train.targets: the first epoch (and wall time) at which validation accuracy reaches each target, kept in the
    run's state (`t.targets`, checkpointed) and said on the epoch's line."""

    def epoch_note(self, t, row):
        val_acc, reached = row.get("val_acc"), []
        for key in t.targets:
            if t.targets[key] is None and val_acc is not None and val_acc >= float(key):
                t.targets[key] = {"epoch": row["epoch"], "time": row["time"]}
                reached.append(f"{float(key):.1%}")
        return f"reached {' and '.join(reached)} validation accuracy" if reached else None


class Tracking(Callback):
    """train.tensorboard / train.mlflow: opened by `open` when a run that writes its folder starts training."""

    def __init__(self):
        self.trackers: Optional[Trackers] = None

    def open(self, cfg, folder: Path) -> None:
        self.trackers = Trackers(cfg, folder)

    def on_step(self, t, loss_sum, images, lr):
        every = t.cfg.train.log_every
        if self.trackers is not None and every and t.step % every == 0:
            self.trackers.step(t.step, loss_sum.item() / images, lr)

    def on_epoch_written(self, t, row):
        if self.trackers is not None:
            self.trackers.epoch(row)

    def on_end(self, t, summary):
        if self.trackers is not None:
            self.trackers.end(summary)


def default_callbacks(epoch_hook: Optional[Callable] = None) -> List[Callback]:
    """The callbacks of every run, in the order their stop reasons are asked: the caller's hook first."""
    return ([Pruning(epoch_hook)] if epoch_hook is not None else []) + [TimeLimit(), EarlyStopping(), Targets(),
                                                                         Tracking()]
