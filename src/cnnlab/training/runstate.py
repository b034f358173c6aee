"""What a run's state is: one definition, read by `Trainer.state()` / `load_state()`, by resume (which checks a
checkpoint against `RESUME_KEYS` before applying any of it) and by every analysis snapshot.

A run's state has two halves: the objects training changes (weights, optimizer, schedule, GradScaler, RNG, and where
configured the weight average, the thread tuner and the batch settings), and `RunState`, the counters and outcome of
the run (epochs and steps done, time, best epoch, targets reached, status). A new counter is one field of `RunState`;
it then travels in checkpoints, snapshots and resume without a second list to keep in step (STYLE lesson 13).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from cnnlab.errors import CnnlabError
from cnnlab.training.checkpoint import MODEL_KEYS, apply_model_state, rng_state, set_rng_state, unwrap


def _counter(default: Any, required: Any = None):
    """A RunState field; `required`: the type a checkpoint must hold it as (checkpoints written before the field
    existed lack an optional one, which then takes its default)."""
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"required": required})
    return field(default=default, metadata={"required": required})


@dataclass
class RunState:
    """The counters and outcome of a run, as they stand after its last completed epoch."""
    epoch: int = _counter(0, int)                     # epochs completed
    step: int = _counter(0, int)                      # optimizer steps taken
    time: float = _counter(0.0, (int, float))         # wall seconds spent in completed epochs (training + validation)
    best: dict = _counter({"val_acc": -1.0, "epoch": None}, dict)  # best validation accuracy and its epoch
    targets: dict = _counter({}, dict)                # "0.9" -> {epoch, time} of the first epoch at that accuracy
    initial_loss: Optional[float] = _counter(None)    # loss of the untrained model on one batch
    status: str = _counter("running")                 # running, finished, stopped, diverged, interrupted
    stop_reason: Optional[str] = _counter(None)       # why a stopped run stopped

    def to_dict(self) -> Dict[str, Any]:
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), dict) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, s: Dict[str, Any]) -> "RunState":
        """From a `state()` or a checkpoint; the dicts are copied, so the source can be loaded again."""
        kw = {f.name: s[f.name] for f in dataclasses.fields(cls) if f.name in s}
        state = cls(**{k: dict(v) if isinstance(v, dict) else v for k, v in kw.items()})
        state.time = float(state.time)
        return state

    def check(self, path: Path, epochs: int) -> None:
        """A checkpoint's counters must be possible for a run of `epochs` epochs."""
        if not 0 <= self.epoch <= epochs or self.step < 0:
            raise CnnlabError(f"checkpoint {str(path)!r} is damaged: epoch {self.epoch}, step {self.step} (the run "
                              f"has {epochs} epochs)")
        if not (isinstance(self.best.get("val_acc"), (int, float)) and "epoch" in self.best
                and all(v is None or isinstance(v, dict) and "epoch" in v for v in self.targets.values())):
            raise CnnlabError(f"checkpoint {str(path)!r} is damaged: its 'best' or 'targets' entry is malformed")

    def reopen_if_extended(self, epochs: int, reopen: bool) -> None:
        """A finished or stopped run with epochs left to go runs on: it was extended (train.epochs=N), or a resume
        changed the rule that stopped it (`reopen`)."""
        if self.status in ("finished", "stopped") and self.epoch < epochs and (reopen or self.stop_reason is None):
            self.status, self.stop_reason = "running", None


# What a checkpoint must hold to be resumed, with the type of each entry: a damaged or foreign file is refused by name
# before any of it is applied (and, for last.pt, the previous checkpoint is tried instead).
OBJECT_KEYS = {"optimizer": dict, "scheduler": dict, "scaler": dict, "rng": dict}
RESUME_KEYS = {**MODEL_KEYS, **OBJECT_KEYS,
               **{f.name: f.metadata["required"] for f in dataclasses.fields(RunState) if f.metadata["required"]}}


def capture(t, copy_tensors: bool = False) -> dict:
    """Trainer `t`'s state: the objects training changes, the run's counters, the batch settings and the thread
    count. With `copy_tensors`, a snapshot that later training does not alter (state_dict tensors alias the live
    parameters and optimizer buffers)."""
    s = {"model": unwrap(t.model).state_dict(), "optimizer": t.optimizer.state_dict(),
         "scheduler": t.scheduler.state_dict(), "scaler": t.scaler.state_dict(), "rng": rng_state(),
         **t.run.to_dict(), "batch": dataclasses.asdict(t.cfg.batch), "threads": torch.get_num_threads()}
    if t.ema is not None:
        s["ema"] = t.ema.state_dict()
    if t.thread_tuner is not None:
        s["thread_tuner"] = t.thread_tuner.state_dict()
    return copy.deepcopy(s) if copy_tensors else s


def restore(t, s: dict) -> None:
    """Put back a `capture()` (a snapshot or a checkpoint's) into trainer `t`; `s` is left as it was."""
    unwrap(t.model).load_state_dict(s["model"])
    _load_objects(t, s)
    t.run = RunState.from_dict(s)
    if "batch" in s:  # checkpoints before the batch settings were part of the state lack it
        t.cfg.batch = type(t.cfg.batch)(**s["batch"])


def _load_objects(t, s: dict) -> None:
    # load_state_dict copies the tensors in, but optimizers keep references to non-tensor state: copy it first
    t.optimizer.load_state_dict(copy.deepcopy(s["optimizer"]))
    if t.ema is not None:
        if "ema" not in s:
            raise KeyError("ema: the checkpoint has no weight average, but train.ema is set")
        t.ema.load_state_dict(s["ema"])
    t.scheduler.load_state_dict(copy.deepcopy(s["scheduler"]))
    t.scaler.load_state_dict(s["scaler"])
    set_rng_state(s["rng"])
    if t.thread_tuner is not None and isinstance(s.get("thread_tuner"), dict):
        t.thread_tuner.load_state_dict(s["thread_tuner"])  # the count the run had chosen, its probe schedule


def apply_checkpoint(t, ckpt: dict, path: Path) -> None:
    """Every piece of a checkpoint into trainer `t`, or a CnnlabError naming `path` (all pieces are set again by
    whichever checkpoint is applied next, so a half-applied one leaves nothing behind)."""
    apply_model_state(unwrap(t.model), ckpt["model"], path)
    try:
        _load_objects(t, ckpt)
        _check_optimizer_shapes(t.optimizer)
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError) as e:
        raise CnnlabError(f"checkpoint {str(path)!r} does not fit this run ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:160] if str(e) else 'bad entry'})") from None
    run = RunState.from_dict(ckpt)
    run.check(path, t.cfg.train.epochs)
    t.run = run
    if t.cfg.train.amp == "auto" and ckpt.get("amp") in ("none", "bf16", "fp16") and ckpt["amp"] != t.amp:
        # a resumed run goes on in the precision it started in, whatever a new timing would say
        t.amp, t.amp_note = ckpt["amp"], f"auto -> {ckpt['amp']} (as the run started)"
        t.scaler = torch.amp.GradScaler("cuda", enabled=t.amp == "fp16")
        t.scaler.load_state_dict(ckpt["scaler"])
    run.reopen_if_extended(t.cfg.train.epochs, t.reopen)


def _check_optimizer_shapes(optimizer) -> None:
    """Optimizer state tensors (momentum, Adam moments) must have their parameter's shape; load_state_dict does not
    check, and a mismatch would only fail at the next step."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            for name, v in optimizer.state.get(p, {}).items():
                if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape != p.shape:
                    raise ValueError(f"optimizer state {name!r} has shape {tuple(v.shape)}, its parameter "
                                     f"{tuple(p.shape)}")
