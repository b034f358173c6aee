"""The trainer: turns a RunConfig into a trained model and a run folder.

`Trainer` is the small class that wires a run's parts, each with one job and its own module (STYLE lesson 14):
- setup.py: builds the parts from the config (device, data, model, optimizer, loss, loaders, schedule, precision,
  the DDP and torch.compile wrappers);
- engine.py: the step/epoch engine (`optimizer_step`, `epoch_steps`, `train_one_epoch`, `steps`, `evaluate`), after
  torchvision's references; `steps(n)` is the one loop that analyses share with `fit`;
- runstate.py: what a run's state is (`RunState`, the counters and outcome; `capture` / `restore`, behind `state()` /
  `load_state()`; `RESUME_KEYS`): checkpoints, resume and every analysis snapshot use it;
- saver.py: the checkpoint saver (best.pt, last.pt and last.prev.pt; resuming; a failed write), after timm's
  `CheckpointSaver`;
- callbacks.py: what happens around epochs: the tuner's pruning hook, train.max_time, early stopping, accuracy
  targets, trackers.
The data stay on the device as uint8 and are augmented in batches (cnnlab.data.loader.BatchLoader); batch order and
augmentation are pure functions of (seed, epoch), and the checkpoint holds the model, optimizer, scheduler and global
RNG state (dropout), so a resumed run reproduces an uninterrupted one exactly on the CPU.

Progress lines go to the `cnnlab.training.trainer` logger (the CLI shows them on stdout, cnnlab.logs), or to the
`log` callable a caller passes (a sweep prefixes each line with its worker and run).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import fields
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Union

import torch

from cnnlab import arguments as A
from cnnlab.arguments import checked
from cnnlab.data.core import END_TRAIN, representative
from cnnlab.data.loader import BatchLoader
from cnnlab.errors import CnnlabError
from cnnlab.fileio import path_problem
from cnnlab.models.sanity import initial_loss_check
from cnnlab.training import engine, runstate, runtime, setup
from cnnlab.training.callbacks import Tracking, default_callbacks, percent, show_metric  # noqa: F401 (re-exported)
from cnnlab.training.config import (LENGTH_PLANNED, RESUME_KEYS_CHANGEABLE, RunConfig,  # noqa: F401 (re-exported)
                                    config_from_dict, parse_override, set_dotted)
from cnnlab.training.distributed import DistInfo, broadcast_object, init_from_env
from cnnlab.training.engine import CHECK_EVERY, evaluate, predict_logits  # noqa: F401 (re-exported)
from cnnlab.training.losses import describe as describe_loss
from cnnlab.training.metrics import BEST_EPOCH, BEST_VAL_ACC, END_TRAIN_IMAGES, WALL_TIME
from cnnlab.training.plots import save_curves
from cnnlab.training.runfolder import CLI, RunFolder, Spelling, default_run_name
from cnnlab.training.runstate import RunState
from cnnlab.training.saver import CheckpointSaver, check_against_checkpoint

logger = logging.getLogger(__name__)


def _silent(message: str) -> None:
    """Where the messages of a DDP rank other than 0 go."""


def _counter(name: str) -> property:
    """A Trainer attribute that is the RunState field `name` (t.epoch is t.run.epoch)."""
    return property(lambda self: getattr(self.run, name), lambda self, v: setattr(self.run, name, v),
                    doc=f"RunState.{name}")


class Trainer:
    """Wires one run's parts; `fit()` trains, validates, logs and checkpoints epoch by epoch.

    Public (what analyses, experiments and notebooks may read): `cfg`, `ds` (the Dataset), `model` (plain, not
    DDP-wrapped), `optimizer`, `scheduler`, `criterion`, `train_loader`, `val_loader`, `params` (parameter count),
    `device`, `amp`, `history` (metrics rows), `run` (the RunState) and its fields `epoch`, `step`, `status`, ...,
    `folder`, `saver`, `callbacks`; methods `fit`, `train_one_epoch`, `steps`, `state`, `load_state`, `use_batch`,
    `check_initial_loss`, `checkpoint`, `summary`, `measure_end_train`.
    Everything starting with `_` is internal."""

    epoch, step, time = _counter("epoch"), _counter("step"), _counter("time")
    best, targets, initial_loss = _counter("best"), _counter("targets"), _counter("initial_loss")
    status, stop_reason = _counter("status"), _counter("stop_reason")

    @checked(cfg=A.instance(RunConfig, "a RunConfig (api.config(dict_or_yaml_path, overrides))"),
             run_dir=A.either(A.path(), A.instance(RunFolder, "a RunFolder")).or_none(), resume=A.flag(),
             overwrite=A.flag(), log=A.function().or_none(),
             epoch_hook=A.function().or_none(), write=A.flag(), dist=A.instance(DistInfo, "a DistInfo").or_none(),
             reopen=A.flag(), spelling=A.instance(Spelling, "a Spelling (runfolder.CLI or runfolder.API)"))
    def __init__(self, cfg: RunConfig, run_dir: Optional[Union[Path, RunFolder]] = None, *,
                 resume: bool = False,
                 overwrite: bool = False, log: Optional[Callable[[str], None]] = None,
                 epoch_hook: Optional[Callable] = None, write: bool = True,
                 dist: Optional[DistInfo] = None, reopen: bool = False, spelling: Spelling = CLI):
        self.dist = dist or init_from_env()
        self.spelling = spelling  # how messages say --overwrite / --resume: as `cnnlab train` or as the Python API
        self.rank, self.world_size = self.dist.rank, self.dist.world_size
        self.cfg, self.epoch_hook = cfg, epoch_hook
        self.reopen = reopen  # resume a finished or stopped run under a changed length or stop rule
        self.log = (log or logger.info) if self.rank == 0 else _silent
        self.write = write and self.rank == 0  # only rank 0 writes the run folder (DDP)
        self.run = RunState(targets={f"{t:g}": None for t in cfg.train.targets})
        self._build(new_weights=not resume)
        self.history: List[dict] = []
        self.end_train: Dict[str, float] = {}  # end_train_loss/_acc/_images, measured by finish() (not checkpointed)
        self.callbacks = default_callbacks(epoch_hook)
        self.tracking = next(cb for cb in self.callbacks if isinstance(cb, Tracking))
        # a RunFolder may come already owned (a sweep decides where a run goes while holding the folder)
        self.folder = run_dir if isinstance(run_dir, RunFolder) else RunFolder(
            run_dir or Path(cfg.out) / (cfg.name or broadcast_object(default_run_name(cfg))))
        self.saver = CheckpointSaver(self.folder, spelling, enabled=cfg.train.checkpoints)
        if self.write:
            need = 3 * 4 * self.params * 3 + (1 << 20)  # best+last+prev, fp32 weights + ~2 optimizer slots, +1 MiB
            self.folder.prepare(resume=resume, overwrite=overwrite, need_bytes=need, spelling=spelling)  # we own it
        try:
            if self.write:
                self.folder.write_config(cfg)
            if resume:
                self._restore()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Give up ownership of the run folder; fit() does it when the run ends, however it ends (a later fit() of
        the same trainer takes it again). The thread count the run started with is put back."""
        self.folder.release()
        if self.thread_tuner is not None:
            self.thread_tuner.restore()

    # -- parts (setup.py builds them) ---------------------------------------------------------------------------
    def _build(self, new_weights: bool) -> None:
        """The run's parts (setup.build_parts), each the trainer's attribute of the same name (self.model, ...)."""
        parts = setup.build_parts(self.cfg, self.dist, self.log, new_weights)
        for f in fields(parts):
            setattr(self, f.name, getattr(parts, f.name))

    def _loader(self, split, batch_size, train: bool) -> BatchLoader:
        return setup.make_loader(self.cfg, self.ds, split, batch_size, train, self.device, self.dist)

    def _first_batch(self):
        """The first batch.size training images, unaugmented, on the device (the initial-loss check)."""
        return self._first_images(self.cfg.batch.size)

    def _first_images(self, n: int):
        """(x, y) of n training images in their classes' shares, unaugmented and normalised, on the device."""
        return setup.first_images(self.cfg, self.ds, self.device, n)

    # -- state -----------------------------------------------------------------------------------------------------
    def state(self, copy_tensors: bool = False) -> dict:
        """Everything training changes (runstate.capture): weights and buffers, optimizer, schedule, GradScaler, the
        RunState (counters, status, best epoch, targets), the batch settings and the RNG. With `copy_tensors`, a
        snapshot that later training does not alter."""
        return runstate.capture(self, copy_tensors)

    def load_state(self, s: dict) -> None:
        """Put back a `state()` (a snapshot or a checkpoint's); the state itself is left as it was, so it can be
        loaded again."""
        runstate.restore(self, s)

    def checkpoint(self) -> dict:
        """state() and what a run folder's reader needs besides: the config, precision and data normalisation."""
        return {**self.state(), "config": self.cfg.to_dict(), "amp": self.amp,
                "classes": list(self.ds.classes), "mean": list(self.ds.mean), "std": list(self.ds.std)}

    def use_batch(self, size: int, micro: Optional[int] = None) -> None:
        """Train at a constant batch of `size` images (split into micro-batches of `micro` if smaller): the one
        place outside the config that changes the batch size; the loader follows at the next epoch or steps()."""
        self.cfg.batch.policy, self.cfg.batch.size = "constant", int(size)
        self.cfg.batch.micro = micro if micro and micro < size else None

    def _restore(self) -> None:
        """Continue from last.pt (or, if it is damaged, last.prev.pt: the saver says so)."""
        self.saver.restore(lambda ckpt, path: runstate.apply_checkpoint(self, ckpt, path), self.device)
        self.saver.saved_epoch = self.epoch
        # metrics.csv may hold an epoch newer than last.pt (killed between the two writes): keep what last.pt saw.
        self.history = [r for r in self.folder.read_metrics() if r["epoch"] <= self.epoch]
        self.log(f"resumed {self.folder.path} at epoch {self.epoch} (step {self.step})")

    # -- training (engine.py) ------------------------------------------------------------------------------------
    def train_one_epoch(self, epoch: int) -> Dict[str, float]:
        return engine.train_one_epoch(self, epoch)

    def steps(self, n: int, first_epoch: int = 0) -> Iterator[float]:
        """Take `n` optimizer steps exactly as `fit` takes them (batches, augmentation, L1, micro-batches, AMP),
        starting at epoch `first_epoch`'s batch order and crossing epochs as needed; yield each step's mean batch
        loss as a float (one device read per step). The caller may set the optimizer's lr between steps; the
        gradients of the step just taken are still on the parameters. Ends early on divergence or when no full batch
        fits. Counters advance: an analysis puts the trainer back with load_state."""
        return engine.steps(self, n, first_epoch)

    # -- the run -------------------------------------------------------------------------------------------------
    def check_initial_loss(self) -> float:
        """Loss of the untrained model on a batch of training images (every class in its share, not the split's
        first images, which are one class where the split is sorted by class), beside ln(classes) (Karpathy's
        sanity check).

        Measured in training mode (BN on batch statistics, as the first step sees it); BN state is put back."""
        x, y = self._first_batch()
        with runtime.autocast(self.device, self.amp):
            r = initial_loss_check(self.model, x, y)
        self.log(f"initial loss {r['loss']:.4f} on a batch of {len(y)} training images; ln({r['num_classes']}) = {r['expected']:.4f} "
                 f"(ratio {r['ratio']:.2f}{'' if r['ok'] else ', far from chance: check the model init and labels'})")
        return r["loss"]

    def fit(self) -> dict:
        c = self.cfg
        self.log(f"run {self.folder.path}: {c.model.name} ({self.params:,} parameters) on {c.data.name} "
                 f"[{len(self.ds.train):,} train / {len(self.ds.val) if self.ds.val else 0:,} val], "
                 f"device {runtime.describe_device(self.device)}, amp {self.amp_note}")
        if self.write:
            self.folder.own()  # held since __init__; taken again by a second fit() after the first released it
        if self.initial_loss is None:
            self.initial_loss = self.check_initial_loss()
        if self.write:
            self.tracking.open(c, self.folder.path)
        try:
            while self.epoch < c.train.epochs and self.status == "running":
                self._run_epoch()
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM turned into one by the CLI: record it, then let it go on up
            self._interrupted()
            self.close()
            raise
        except BaseException:  # an error stops the run: close the trackers (an MLflow run left open blocks the next)
            self._end({**self.summary(), "status": "error"})
            self.close()
            raise
        if self.status == "running":
            self.status = "finished"
        try:
            return self.finish()
        finally:
            self.close()

    def _interrupted(self) -> None:
        """Record the interruption in summary.json (last.pt stays the last whole epoch's) and say how to go on."""
        self.status, self.stop_reason = "interrupted", f"interrupted during epoch {self.epoch + 1}"
        summary = self.summary()
        if self.write:
            with self.saver.writing(self.epoch):
                self.folder.write_summary(summary)
                self._end(summary)
        self.log(f"interrupted during epoch {self.epoch + 1}; {self.saver.how_to_go_on(self.write)}")

    def _run_epoch(self) -> None:
        epoch, t0 = self.epoch, time.perf_counter()
        row = {"epoch": epoch + 1, **self.train_one_epoch(epoch)}
        if self.val_loader is not None:
            v = evaluate(self.ema.module if self.ema is not None else self.forward, self.val_loader, self.device,
                         self.amp)
            row.update(val_loss=v["loss"], val_acc=v["acc"])
        self.time += time.perf_counter() - t0
        row["time"] = self.time
        self.epoch += 1
        self.history.append(row)
        reason = self._stop_reason(row) if self.status == "running" else None
        if reason:  # set before the checkpoint is written, so a resumed run stops at once too
            self.status, self.stop_reason = "stopped", reason
        self._record(row)
        if reason:
            self.log(f"stopping: {reason}")


    def _stop_reason(self, row: dict) -> Optional[str]:
        """Why the run should stop after this epoch, if it should: the first callback to give a reason (the
        caller's epoch_hook, train.max_time, early stopping on train.monitor)."""
        return next((reason for cb in self.callbacks if (reason := cb.stop_reason(self, row))), None)

    def _end(self, summary: dict) -> None:
        for cb in self.callbacks:
            cb.on_end(self, summary)

    def _record(self, row: dict) -> None:
        val_acc = row.get("val_acc")
        improved = val_acc is not None and math.isfinite(val_acc) and val_acc > self.best["val_acc"]
        if improved:
            self.best = {"val_acc": val_acc, "epoch": row["epoch"]}
        notes = [note for cb in self.callbacks if (note := cb.epoch_note(self, row))]  # a target reached, ...
        mem = runtime.memory_used(self.device)
        # one line per epoch, accuracies in % as the reports write them; what the callbacks note is on the same line
        self.log(f"epoch {row['epoch']}/{self.cfg.train.epochs}  train loss {row['train_loss']:.4f} "
                 f"acc {percent(row['train_acc'])}" + (f"  val loss {row['val_loss']:.4f} acc {percent(val_acc)}"
                                                       if val_acc is not None else "")
                 + f"  lr {row['lr']:.3g}  bs {row['batch_size']}  {row['images_per_sec']:,.0f} img/s  "
                 f"{row['time']:.1f}s" + (f"  gpu mem {mem:,.0f} MiB" if mem else "")
                 + "".join(f"  {note}" for note in notes))
        if not self.write:
            return
        with self.saver.writing(self.epoch):
            self.folder.write_metrics(self.history)
            for cb in self.callbacks:
                cb.on_epoch_written(self, row)
            self.saver.save(self.checkpoint, self.epoch, best=improved)
        self.run.reopen_if_extended(self.cfg.train.epochs, self.reopen)

    def summary(self) -> dict:
        rows = self.history
        ips = [r["images_per_sec"] for r in rows if r.get("images_per_sec")]
        last = rows[-1] if rows else {}
        return {"run": str(self.folder.path), "status": self.status, "diverged": self.status == "diverged",
                "model": self.cfg.model.name, "dataset": self.cfg.data.name, "params": self.params,
                "epochs_done": self.epoch, BEST_VAL_ACC: self.best["val_acc"] if self.best["epoch"] else None,
                BEST_EPOCH: self.best["epoch"], "final_train_acc": last.get("train_acc"),
                "final_val_acc": last.get("val_acc"), "final_train_loss": last.get("train_loss"),
                "final_val_loss": last.get("val_loss"), **self.end_train, "stop_reason": self.stop_reason,
                WALL_TIME: self.time, "images_per_sec": sorted(ips)[len(ips) // 2] if ips else None,
                "initial_loss": self.initial_loss, "ln_classes": math.log(self.ds.num_classes),
                "targets": self.targets, "device": runtime.describe_device(self.device),
                "gpu_memory_mib": runtime.memory_used(self.device) or None,
                "amp": self.amp, "amp_choice": self.amp_note, "environment": runtime.environment(self.device),
                "threads": torch.get_num_threads(), "threads_choice": self._threads_note(),
                "thread_decisions": self.thread_tuner.choices if self.thread_tuner is not None else []}

    def _threads_note(self) -> str:
        if self.thread_tuner is not None:
            return f"auto: timed every epoch between 1 and {self.thread_tuner.ceiling} (metrics.csv 'threads')"
        return f"train.threads={self.cfg.train.threads} (as configured)" if self.cfg.train.threads else \
            "torch's default (not timed: not a single-process CPU run, or one core)"

    def _write_final(self, summary: dict) -> None:
        self.saver.save(self.checkpoint, self.epoch)  # the final status in last.pt too (resume then stops at once)
        self.run.reopen_if_extended(self.cfg.train.epochs, self.reopen)
        if self.history:
            t = self.cfg.train
            save_curves({self.cfg.model.name: self.history}, self.folder.path / "curves.png",
                        title=self.folder.path.name, train_loss_label=describe_loss(t.loss, t.label_smoothing))
        self.folder.write_summary(summary)
        self._end(summary)

    def measure_end_train(self) -> Dict[str, float]:
        """end_train_loss / end_train_acc / end_train_images (metrics.END_TRAIN_IMAGES says what they measure):
        evaluation only, so the weights, BN statistics and RNG are left as they were (exact resume is untouched)."""
        split = representative(self.ds.train, END_TRAIN_IMAGES, self.cfg.data.seed, END_TRAIN)
        model = self.ema.module if self.ema is not None else self.forward
        r = evaluate(model, self._loader(split, self.cfg.batch.eval_size, train=False), self.device, self.amp)
        return {"end_train_loss": r["loss"], "end_train_acc": r["acc"], "end_train_images": len(split)}

    def finish(self) -> dict:
        if self.status in ("finished", "stopped") and self.history:  # a diverged run's weights are not worth it
            self.end_train = self.measure_end_train()
        summary = self.summary()
        if self.write:
            with self.saver.writing(self.epoch):
                self._write_final(summary)
        best = summary[BEST_VAL_ACC]
        self.log(f"{self.status}: best val acc {percent(best)} at epoch {summary[BEST_EPOCH]}, "
                 f"{summary[WALL_TIME]:.1f}s" if best is not None else f"{self.status}: {self.epoch} epochs")
        if self.write:
            self.log(f"run folder: {self.folder.path}")
        return summary




def resume(run_dir, log: Optional[Callable[[str], None]] = None, data_root: Optional[str] = None,
           overrides: Optional[List[str]] = None, download: bool = False, spelling: Spelling = CLI, **kw) -> dict:
    """Continue the run in `run_dir` from its last.pt with its own config (the data may have moved: `data_root`).

    `overrides` may change only RESUME_KEYS_CHANGEABLE; `train.epochs=N` extends a finished run, whose schedule then
    continues where it was (constant, step, multistep and the cyclical ones do not depend on the run's length;
    cosine and one-cycle are planned over it and are refused)."""
    problem = path_problem(run_dir, "folder")
    if problem:  # before config.yaml is looked for: a missing folder is not a damaged one
        raise CnnlabError(f"--resume: run folder {str(run_dir)!r} {problem}")
    folder = RunFolder(run_dir)
    cfg = folder.load_config()
    done = check_against_checkpoint(folder, cfg)
    tree = cfg.to_dict()
    for text in overrides or []:
        key, value = parse_override(text)
        if key not in RESUME_KEYS_CHANGEABLE:
            raise CnnlabError(f"{spelling.resume_name}: {key!r} cannot change in a resumed run (it would no longer be "
                              f"the same run); only {', '.join(RESUME_KEYS_CHANGEABLE)} can; start a new run for other "
                              "changes")
        set_dotted(tree, key, value)
    new = config_from_dict(tree)
    if new.train.epochs != cfg.train.epochs:
        if new.schedule.name in LENGTH_PLANNED:
            raise CnnlabError(f"{spelling.resume_name} with train.epochs={new.train.epochs}: schedule "
                              f"{new.schedule.name!r} is planned over the run's {cfg.train.epochs} epochs and cannot "
                              "be extended; start a new run")
        if new.train.epochs < done:
            raise CnnlabError(f"{spelling.resume_name} with train.epochs={new.train.epochs}: the run has already "
                              f"trained {done} epochs")
        (log or logger.info)(f"extending {folder.path} from {cfg.train.epochs} to {new.train.epochs} epochs; the "
                             f"{new.schedule.name} schedule continues where it was")
    setup.use_data_root(new, data_root)
    new.data.download = new.data.download or download
    return Trainer(new, folder.path, resume=True, log=log, reopen=bool(overrides), spelling=spelling, **kw).fit()
