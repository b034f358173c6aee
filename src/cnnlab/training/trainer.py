"""The trainer: turns a RunConfig into a trained model and a run folder.

Shape after torchvision's references (`train_one_epoch`, `evaluate`, wiring in `fit`) with timm's habits (per-iteration
schedules, `metrics.csv` one row per epoch, atomic checkpoints). Design points:
- the data stay on the device as uint8 and are augmented in batches (cnnlab.data.loader.BatchLoader);
- batch order and augmentation are pure functions of (seed, epoch), and the checkpoint holds the model, optimizer,
  scheduler and global RNG state (dropout), so a resumed run reproduces an uninterrupted one exactly on the CPU;
- the loss is read back from the device only every `CHECK_EVERY` steps (a GPU sync costs), which bounds how late a
  divergence is seen;
- `steps(n)` takes n optimizer steps exactly as `fit` does and yields each step's loss; `train_one_epoch` is built on
  the same per-epoch step generator, so analyses (range tests, loss bands, gradient predictiveness) train as
  `cnnlab train` does without copying the loop;
- `state()` / `load_state()` are the one description of what training changes (weights, optimizer, schedule,
  GradScaler, counters, batch settings, RNG): checkpoints, resume and every analysis snapshot use them.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Union

import torch
import torch.nn.functional as Fn

from cnnlab import arguments as A
from cnnlab.arguments import checked
from cnnlab.data import Dataset, load_dataset
from cnnlab.data.paths import resolve_root
from cnnlab.data.loader import BatchLoader
from cnnlab.errors import CnnlabError
from cnnlab.fileio import path_problem
from cnnlab.models import create_model
from cnnlab.models.sanity import initial_loss_check
from cnnlab.training import runtime
from cnnlab.training.checkpoint import (MODEL_KEYS, RESUME_KEYS, apply_model_state, load_checkpoint, rng_state,
                                        save_checkpoint, set_rng_state, unwrap)
from cnnlab.training.config import RunConfig, config_from_dict, parse_override, set_dotted
from cnnlab.training.distributed import DistInfo, all_reduce_sum, broadcast_object, init_from_env
from cnnlab.training.ema import WeightAverage
from cnnlab.training.losses import build_loss, describe as describe_loss
from cnnlab.training.optim import build_optimizer, l1_penalty
from cnnlab.training.plots import save_curves
from cnnlab.training.runfolder import CLI, END_TRAIN_IMAGES, RunFolder, Spelling, default_run_name
from cnnlab.training.schedules import batch_size_at, build_schedule
from cnnlab.training.threads import make_tuner
from cnnlab.training.tracking import Trackers

CHECK_EVERY = 10  # optimizer steps between reads of the loss (divergence check, progress bar)


def percent(fraction: float, digits: int = 2) -> str:
    """An accuracy (a fraction) as the terminal and the reports write it: 0.6543 -> '65.43%'."""
    return f"{100 * fraction:.{digits}f}%"


def show_metric(name: str, value: float) -> str:
    """A metrics.csv value as the terminal shows it: an accuracy (`*_acc`) in %, a loss with 4 decimals."""
    return percent(value) if name.endswith("_acc") else f"{value:.4f}"


def load_data(cfg: RunConfig) -> Dataset:
    """The run's dataset; `cfg.data.root` then holds the absolute root it was found under, so that the config saved
    in the run folder and its checkpoints says where the data was, and `evaluate`, `predict`, `report` and `export`
    find it from a shell without CNNLAB_DATA. data.root is a machine key: it is not part of a run's identity."""
    d = cfg.data
    ds = load_dataset(d.name, root=d.root, val_size=d.val_size, seed=d.seed, train_subset=d.train_subset,
                      val_subset=d.val_subset, download=d.download, test_size=d.test_size)
    d.root = os.path.abspath(resolve_root(d.root)[0])  # absolute, but a symbolic link kept as the user named it
    return ds


def use_data_root(cfg: RunConfig, data_root: Optional[str] = None) -> None:
    """Where a saved run reads its data: an explicit `data_root` wins; else the root the run recorded, unless that
    no longer exists (moved, another machine): then the usual resolution (CNNLAB_DATA, the per-user data directory),
    said on stderr."""
    if data_root is not None:
        cfg.data.root = data_root
    elif cfg.data.root and not Path(cfg.data.root).expanduser().exists():
        path, how = resolve_root(None)
        print(f"cnnlab: warning: the run's recorded data root {cfg.data.root!r} no longer exists; looking in "
              f"{str(path)!r} ({how}) instead; give --data-root PATH to choose", file=sys.stderr)
        cfg.data.root = None


def build_model(cfg: RunConfig, ds: Dataset):
    return create_model(cfg.model.name, num_classes=ds.num_classes, in_channels=ds.in_channels,
                        input_size=ds.image_size, **cfg.model.options)


def evaluate(model, loader: BatchLoader, device, amp: str = "none") -> Dict[str, float]:
    """Mean cross-entropy and accuracy over a labelled loader (eval mode, no gradients)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    with torch.no_grad(), runtime.autocast(device, amp):
        for x, y in loader:
            out = model(x).float()
            loss_sum += Fn.cross_entropy(out, y, reduction="sum")
            correct += (out.argmax(1) == y).sum()
            n += len(y)
    model.train(was_training)
    if n == 0:
        return {"loss": float("nan"), "acc": float("nan")}
    return {"loss": loss_sum.item() / n, "acc": correct.item() / n}


def predict_logits(model, loader: BatchLoader, device, amp: str = "none") -> torch.Tensor:
    model.eval()
    outs = []
    with torch.no_grad(), runtime.autocast(device, amp):
        for x, _ in loader:
            outs.append(model(x).float().cpu())
    return torch.cat(outs) if outs else torch.empty(0)


def _check_optimizer_shapes(optimizer) -> None:
    """Optimizer state tensors (momentum, Adam moments) must have their parameter's shape; load_state_dict does not
    check, and a mismatch would only fail at the next step."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            for name, v in optimizer.state.get(p, {}).items():
                if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape != p.shape:
                    raise ValueError(f"optimizer state {name!r} has shape {tuple(v.shape)}, its parameter "
                                     f"{tuple(p.shape)}")


class _Tally:
    """Running sums of one epoch's steps, kept on the device (read back only when checked)."""

    def __init__(self, device, lr: float = float("nan")):
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.n, self.lr = 0, lr

    def add(self, loss_sum, correct, n: int) -> None:
        self.loss_sum += loss_sum
        self.correct += correct
        self.n += n


class Trainer:
    """Holds one run's parts; `fit()` trains, validates, logs and checkpoints epoch by epoch.

    Public (what analyses, experiments and notebooks may read): `cfg`, `ds` (the Dataset), `model` (plain, not
    DDP-wrapped), `optimizer`, `scheduler`, `criterion`, `train_loader`, `val_loader`, `params` (parameter count),
    `device`, `amp`, `history` (metrics rows), `epoch`, `step`, `status`, `folder`; methods `fit`,
    `train_one_epoch`, `steps`, `state`, `load_state`, `use_batch`, `check_initial_loss`, `checkpoint`, `summary`,
    `measure_end_train`.
    Everything starting with `_` is internal."""

    @checked(cfg=A.instance(RunConfig, "a RunConfig (api.config(dict_or_yaml_path, overrides))"),
             run_dir=A.either(A.path(), A.instance(RunFolder, "a RunFolder")).or_none(), resume=A.flag(),
             overwrite=A.flag(), log=A.function(),
             epoch_hook=A.function().or_none(), write=A.flag(), dist=A.instance(DistInfo, "a DistInfo").or_none(),
             reopen=A.flag(), spelling=A.instance(Spelling, "a Spelling (runfolder.CLI or runfolder.API)"))
    def __init__(self, cfg: RunConfig, run_dir: Optional[Union[Path, RunFolder]] = None, *,
                 resume: bool = False,
                 overwrite: bool = False, log: Callable[[str], None] = print,
                 epoch_hook: Optional[Callable] = None, write: bool = True,
                 dist: Optional[DistInfo] = None, reopen: bool = False, spelling: Spelling = CLI):
        self.dist = dist or init_from_env()
        self.spelling = spelling  # how messages say --overwrite / --resume: as `cnnlab train` or as the Python API
        self.rank, self.world_size = self.dist.rank, self.dist.world_size
        self.cfg, self.epoch_hook = cfg, epoch_hook
        self.reopen = reopen  # resume a finished or stopped run under a changed length or stop rule
        self.log = log if self.rank == 0 else (lambda s: None)
        self.write = write and self.rank == 0  # only rank 0 writes the run folder (DDP)
        self.device = self._device()
        # train.threads=0 on the CPU: the count is re-decided every epoch by timing (threads.py); None otherwise
        self.thread_tuner = make_tuner(cfg.train.threads, self.device, self.dist.enabled)
        self.ds = load_data(cfg)
        if self.ds.val is None:
            self.log("note: no validation split (data.val_size=0); val_* columns stay empty")
        self._check_memory()
        self.model = build_model(cfg, self.ds).to(self.device)
        if not resume:
            self._init_from_data()
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.ema = WeightAverage(self.model, cfg.train.ema) if cfg.train.ema else None
        self.criterion = build_loss(cfg.train.loss, cfg.train.label_smoothing)
        self.train_loader = self._loader(self.ds.train, self._rank_batch(cfg.batch.size), train=True)
        self.val_loader = self._loader(self.ds.val, cfg.batch.eval_size, train=False) if self.ds.val else None
        ipe = max(1, len(self.train_loader))
        self.scheduler = build_schedule(self.optimizer, cfg.schedule, cfg.optim.lr, ipe, cfg.train.epochs)
        self.amp, self.amp_note = self._resolve_amp()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == "fp16")
        self.forward = self._wrap(self.model)
        self.params = sum(p.numel() for p in self.model.parameters())
        self.history: List[dict] = []
        self.epoch = 0          # epochs completed
        self.step = 0           # optimizer steps taken
        self.time = 0.0         # wall seconds spent in completed epochs (training + validation)
        self.best = {"val_acc": -1.0, "epoch": None}
        self.targets: Dict[str, Optional[dict]] = {f"{t:g}": None for t in cfg.train.targets}
        self.status = "running"
        self.initial_loss: Optional[float] = None
        self.end_train: Dict[str, float] = {}  # end_train_loss/_acc/_images, measured by finish() (not checkpointed)
        self.stop_reason: Optional[str] = None
        self.saved_epoch: Optional[int] = None  # epoch of the last checkpoint written (or resumed from)
        # a RunFolder may come already owned (a sweep decides where a run goes while holding the folder)
        self.folder = run_dir if isinstance(run_dir, RunFolder) else RunFolder(
            run_dir or Path(cfg.out) / (cfg.name or broadcast_object(default_run_name(cfg))))
        self.trackers = None
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

    # -- parts ---------------------------------------------------------------------------------------------------
    def _resolve_amp(self):
        """train.amp, with auto decided here (runtime.choose_amp) on one real training batch."""
        if self.cfg.train.amp != "auto":
            return self.cfg.train.amp, f"{self.cfg.train.amp} (as configured)"
        pinned = os.environ.get("CNNLAB_AMP_AUTO")
        if pinned in ("none", "bf16", "fp16"):  # a test suite or a comparison that must not depend on a timing
            return pinned, f"auto -> {pinned} (CNNLAB_AMP_AUTO)"
        c = self.cfg
        shape = (min(c.batch.size, len(self.ds.train)), self.ds.in_channels, self.ds.image_size, self.ds.image_size)
        mode, why, _ = runtime.choose_amp(self.device, self.model, self._first_batch,
                                          runtime.amp_cache_key(c.model.name, c.model.options, shape))
        return mode, f"auto -> {why}"

    def _first_batch(self):
        """The first batch.size training images, unaugmented, on the device (initial-loss check, amp timing)."""
        return self._first_images(self.cfg.batch.size)

    def _first_images(self, n: int):
        """(x, y) of the first n training images, unaugmented and normalised, on the device."""
        n = min(n, len(self.ds.train))
        # a loader over these images only: one over the whole split would copy it to the device a second time
        batches = iter(self._loader(self.ds.train.subset(n), n, train=False))
        try:
            return next(batches)
        finally:  # close the generator now: left to the garbage collector, its clean-up would run at a random
            getattr(batches, "close", lambda: None)()  # moment of training

    def _init_from_data(self, images: int = 5000) -> None:
        """A model with a data-dependent initialisation (`init_from_data(x)`, e.g. fastcnn's whitening layer) gets
        the first `images` training images, unaugmented and normalised as training will see them. On resume the
        weights come from the checkpoint instead, so this runs for new runs only."""
        hook = getattr(self.model, "init_from_data", None)
        if hook is None:
            return
        x, _ = self._first_images(images)
        hook(x.contiguous())

    def _check_memory(self) -> None:
        """Estimate weights, gradients, two optimizer slots (16 bytes a parameter, counted on the meta device, where
        nothing is allocated) and the largest float32 training batch, and refuse a run that cannot fit. Activations
        are not counted: the estimate is a floor, meant to stop the impossible (a 10^11-unit layer) in a second."""
        c, ds = self.cfg, self.ds
        try:
            with torch.device("meta"):
                params = sum(p.numel() for p in build_model(c, ds).parameters())
        except CnnlabError:
            raise
        except Exception:  # a model that cannot be built on meta is built for real and fails there, if at all
            return
        batch = max(c.batch.size, c.batch.max if c.batch.policy == "cyclical" else 0) * c.augment.repeats
        pixels = ds.in_channels * ds.image_size ** 2
        need = 16 * params + 4 * batch * pixels * 2  # the batch, plus its normalised copy
        runtime.check_memory(self.device, need, f"{c.model.name} ({params:,} parameters) with batches of "
                                                f"{batch:,} images")

    def _device(self) -> torch.device:
        device = runtime.setup(self.cfg.train)
        if self.dist.enabled and device.type == "cuda":
            device = torch.device("cuda", self.dist.local_rank)  # one GPU per rank
            torch.cuda.set_device(device)
        return device

    def _rank_batch(self, global_batch: int) -> int:
        if global_batch % self.world_size:
            raise CnnlabError(f"config key 'batch.size' ({global_batch}) must be divisible by the number of "
                              f"processes ({self.world_size}) for distributed training")
        return global_batch // self.world_size

    def _wrap(self, model):
        """DDP (with optional SyncBatchNorm) and torch.compile around the plain model; `self.model` stays plain."""
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP
            if self.cfg.train.sync_bn:
                model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
                self.model = model
            model = DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return torch.compile(model) if self.cfg.train.compile else model

    def _loader(self, split, batch_size, train: bool) -> BatchLoader:
        c = self.cfg
        return BatchLoader(split, batch_size, shuffle=train, augment=c.augment.pipeline if train else None,
                           repeats=c.augment.repeats if train else 1, mean=self.ds.mean, std=self.ds.std,
                           device=self.device, channels_last=c.train.channels_last, drop_last=train,
                           seed=c.train.seed, rank=self.rank if train else 0,
                           world_size=self.world_size if train else 1)

    # -- state -----------------------------------------------------------------------------------------------------
    def state(self, copy_tensors: bool = False) -> dict:
        """Everything training changes: weights and buffers, optimizer, schedule, GradScaler, counters, status,
        best epoch and targets, the batch settings and the RNG. With `copy_tensors`, a snapshot that later training
        does not alter (state_dict tensors alias the live parameters and optimizer buffers)."""
        s = {"model": unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
             "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
             "epoch": self.epoch, "step": self.step, "time": self.time, "rng": rng_state(),
             "best": dict(self.best), "targets": dict(self.targets), "initial_loss": self.initial_loss,
             "status": self.status, "stop_reason": self.stop_reason, "batch": dataclasses.asdict(self.cfg.batch),
             "threads": torch.get_num_threads()}
        if self.ema is not None:
            s["ema"] = self.ema.state_dict()
        if self.thread_tuner is not None:
            s["thread_tuner"] = self.thread_tuner.state_dict()
        return copy.deepcopy(s) if copy_tensors else s

    def load_state(self, s: dict) -> None:
        """Put back a `state()` (a snapshot or a checkpoint's); the state itself is left as it was, so it can be
        loaded again."""
        unwrap(self.model).load_state_dict(s["model"])
        self._load_training_state(s)
        self.epoch, self.step, self.time = s["epoch"], s["step"], float(s["time"])
        self.best, self.targets = dict(s["best"]), dict(s["targets"])
        self.initial_loss, self.status, self.stop_reason = s.get("initial_loss"), s.get("status", "running"), \
            s.get("stop_reason")
        if "batch" in s:  # checkpoints before the batch settings were part of the state lack it
            self.cfg.batch = type(self.cfg.batch)(**s["batch"])

    def _load_training_state(self, s: dict) -> None:
        # load_state_dict copies the tensors in, but optimizers keep references to non-tensor state: copy it first
        self.optimizer.load_state_dict(copy.deepcopy(s["optimizer"]))
        if self.ema is not None:
            if "ema" not in s:
                raise KeyError("ema: the checkpoint has no weight average, but train.ema is set")
            self.ema.load_state_dict(s["ema"])
        self.scheduler.load_state_dict(copy.deepcopy(s["scheduler"]))
        self.scaler.load_state_dict(s["scaler"])
        set_rng_state(s["rng"])
        if self.thread_tuner is not None and isinstance(s.get("thread_tuner"), dict):
            self.thread_tuner.load_state_dict(s["thread_tuner"])  # the count the run had chosen, its probe schedule

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
        """Continue from last.pt; if it is damaged or does not fit this run, from last.prev.pt (with a warning)."""
        last = self.folder.path / "last.pt"
        prev = last.with_suffix(".prev.pt")
        try:
            self._apply_checkpoint(load_checkpoint(last, self.device, fallback=False, require=RESUME_KEYS), last)
        except CnnlabError as e:
            if not prev.exists():
                raise
            print(f"cnnlab: warning: {e}; using the previous checkpoint {str(prev)!r}", file=sys.stderr)
            self._apply_checkpoint(load_checkpoint(prev, self.device, fallback=False, require=RESUME_KEYS), prev)
        # metrics.csv may hold an epoch newer than last.pt (killed between the two writes): keep what last.pt saw.
        self.history = [r for r in self.folder.read_metrics() if r["epoch"] <= self.epoch]
        self.log(f"resumed {self.folder.path} at epoch {self.epoch} (step {self.step})")

    def _apply_checkpoint(self, ckpt: dict, path: Path) -> None:
        """Every piece of a checkpoint into this trainer, or a CnnlabError naming `path` (all pieces are set again
        by whichever checkpoint is applied next, so a half-applied one leaves nothing behind)."""
        apply_model_state(unwrap(self.model), ckpt["model"], path)
        try:
            self._load_training_state(ckpt)
            _check_optimizer_shapes(self.optimizer)
        except (RuntimeError, ValueError, TypeError, KeyError, IndexError) as e:
            raise CnnlabError(f"checkpoint {str(path)!r} does not fit this run ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:160] if str(e) else 'bad entry'})") from None
        self.epoch, self.step, self.time = ckpt["epoch"], ckpt["step"], float(ckpt["time"])
        if not 0 <= self.epoch <= self.cfg.train.epochs or self.step < 0:
            raise CnnlabError(f"checkpoint {str(path)!r} is damaged: epoch {self.epoch}, step {self.step} (the run "
                              f"has {self.cfg.train.epochs} epochs)")
        self.best, self.targets = ckpt["best"], ckpt["targets"]
        if not (isinstance(self.best.get("val_acc"), (int, float)) and "epoch" in self.best
                and all(v is None or isinstance(v, dict) and "epoch" in v for v in self.targets.values())):
            raise CnnlabError(f"checkpoint {str(path)!r} is damaged: its 'best' or 'targets' entry is malformed")
        self.initial_loss, self.status = ckpt.get("initial_loss"), ckpt.get("status", "running")
        self.stop_reason = ckpt.get("stop_reason")
        if self.cfg.train.amp == "auto" and ckpt.get("amp") in ("none", "bf16", "fp16") and ckpt["amp"] != self.amp:
            # a resumed run goes on in the precision it started in, whatever a new timing would say
            self.amp, self.amp_note = ckpt["amp"], f"auto -> {ckpt['amp']} (as the run started)"
            self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == "fp16")
            self.scaler.load_state_dict(ckpt["scaler"])
        self.saved_epoch = self.epoch
        if self.status in ("finished", "stopped") and self.epoch < self.cfg.train.epochs and (
                self.reopen or self.stop_reason is None):
            self.status, self.stop_reason = "running", None  # extended (train.epochs=N) or a stop rule changed

    # -- one epoch -----------------------------------------------------------------------------------------------
    def _loss(self, x, y):
        with runtime.autocast(self.device, self.amp):
            out = self.forward(x)
            loss = self.criterion(out.float(), y)
        return out, loss

    def _optimizer_step(self, x, y):
        """One optimizer step over a batch, split into micro-batches when batch.micro is set (same update)."""
        micro = self.cfg.batch.micro or len(y)
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        for k, (xs, ys) in enumerate(zip(x.split(micro), y.split(micro))):
            out, loss = self._loss(xs, ys)
            scaled = loss * (len(ys) / len(y))
            if self.cfg.optim.l1 and k == 0:  # the penalty belongs to the step, so it is added once
                scaled = scaled + self.cfg.optim.l1 * l1_penalty(self.optimizer)
            self.scaler.scale(scaled).backward()
            loss_sum += loss.detach() * len(ys)
            correct += (out.argmax(1) == ys).sum()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        if self.ema is not None:
            self.ema.update(unwrap(self.model))
        return loss_sum, correct

    def _epoch_steps(self, epoch: int, tally: "_Tally") -> Iterator[tuple]:
        """The optimizer steps of epoch `epoch` (its batch order and augmentation), as a generator: after each step
        it yields (the step's summed batch loss as a 0-d tensor, not read from the device; its image count), so that
        `train_one_epoch` adds no per-step work, and adds the step to `tally`;
        it ends early, with status 'diverged', when the epoch's running loss exceeds the divergence limit."""
        self.model.train()
        loader = self.train_loader
        loader.batch_size = self._rank_batch(batch_size_at(epoch, self.cfg.batch))
        loader.set_epoch(epoch)
        bar = self._progress(len(loader), epoch)
        limit = self.cfg.train.diverge_factor * max(self.initial_loss or 0.0, math.log(self.ds.num_classes))
        try:
            for i, (x, y) in enumerate(loader):
                tally.lr = self.optimizer.param_groups[0]["lr"]
                ls, c = self._optimizer_step(x, y)
                tally.add(ls, c, len(y))
                yield ls, len(y)
                if self.trackers is not None and self.cfg.train.log_every and \
                        self.step % self.cfg.train.log_every == 0:
                    self.trackers.step(self.step, ls.item() / len(y), tally.lr)
                if i % CHECK_EVERY == CHECK_EVERY - 1 or i == len(loader) - 1:
                    # summed over ranks, so every rank takes the same decision (a lone break would hang DDP)
                    tot_loss, tot_correct, tot_n = self._totals(tally.loss_sum, tally.correct, tally.n)
                    mean = tot_loss / tot_n
                    if not math.isfinite(mean) or mean > limit:
                        self.status = "diverged"
                        self.log(f"epoch {epoch + 1}: loss {mean:.4g} (limit {limit:.3g}): diverged, stopping")
                        return
                    if bar is not None:
                        bar.set_postfix(loss=f"{mean:.3f}", acc=percent(tot_correct / tot_n, 1))
                        bar.update(min(CHECK_EVERY, len(loader) - bar.n))
        finally:
            if bar is not None:
                bar.close()

    def train_one_epoch(self, epoch: int) -> Dict[str, float]:
        tally, t0 = _Tally(self.device, self.optimizer.param_groups[0]["lr"]), time.perf_counter()
        steps = self._epoch_steps(epoch, tally)
        if self.thread_tuner is not None:
            steps = self.thread_tuner.epoch(steps, len(self.train_loader), epoch)
        for _ in steps:
            pass
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        dt = time.perf_counter() - t0
        tot_loss, tot_correct, tot_n = self._totals(tally.loss_sum, tally.correct, tally.n)
        return {"train_loss": tot_loss / max(tot_n, 1), "train_acc": tot_correct / max(tot_n, 1), "lr": tally.lr,
                "batch_size": self.train_loader.batch_size * self.world_size, "epoch_time": dt,
                "images_per_sec": tot_n / dt if dt > 0 else 0.0, "threads": torch.get_num_threads()}

    def steps(self, n: int, first_epoch: int = 0) -> Iterator[float]:
        """Take `n` optimizer steps exactly as `fit` takes them (batches, augmentation, L1, micro-batches, AMP),
        starting at epoch `first_epoch`'s batch order and crossing epochs as needed; yield each step's mean batch
        loss as a float (one device read per step). The caller may set the optimizer's lr between steps; the
        gradients of the step just taken are still on the parameters. Ends early on divergence or when no full batch
        fits. Counters advance: an analysis puts the trainer back with load_state."""
        done, epoch = 0, first_epoch
        while done < n and self.status != "diverged":
            before = done
            for loss_sum, images in self._epoch_steps(epoch, _Tally(self.device)):
                yield loss_sum.item() / images
                done += 1
                if done >= n:
                    return
            if done == before:  # no full batch in an epoch: nothing would ever be trained
                return
            epoch += 1

    def _totals(self, loss_sum, correct, n):
        """(loss sum, correct, count) over all ranks, as Python numbers."""
        if not self.dist.enabled:
            return loss_sum.item(), correct.item(), n
        t = all_reduce_sum(torch.stack([loss_sum.double(), correct.double(),
                                        torch.tensor(float(n), device=loss_sum.device, dtype=torch.float64)]))
        return t[0].item(), t[1].item(), int(t[2].item())

    def _progress(self, total: int, epoch: int):
        mode = self.cfg.train.progress
        if self.rank != 0 or mode == "off" or (mode == "auto" and not sys.stderr.isatty()):
            return None
        from tqdm import tqdm
        return tqdm(total=total, desc=f"epoch {epoch + 1}/{self.cfg.train.epochs}", leave=False, dynamic_ncols=True)

    # -- the run -------------------------------------------------------------------------------------------------
    def check_initial_loss(self) -> float:
        """Loss of the untrained model on the first training batch, beside ln(classes) (Karpathy's sanity check).

        Measured in training mode (BN on batch statistics, as the first step sees it); BN state is put back."""
        x, y = self._first_batch()
        with runtime.autocast(self.device, self.amp):
            r = initial_loss_check(self.model, x, y)
        self.log(f"initial loss {r['loss']:.4f} on the first batch; ln({r['num_classes']}) = {r['expected']:.4f} "
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
            self.trackers = Trackers(c, self.folder.path)
        try:
            while self.epoch < c.train.epochs and self.status == "running":
                self._run_epoch()
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM turned into one by the CLI: record it, then let it go on up
            self._interrupted()
            self.close()
            raise
        except BaseException:  # an error stops the run: close the trackers (an MLflow run left open blocks the next)
            if self.trackers is not None:
                self.trackers.end({**self.summary(), "status": "error"})
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
            with self._writing():
                self.folder.write_summary(summary)
                if self.trackers is not None:
                    self.trackers.end(summary)
        if self.write and self._resumable():
            self.log(f"interrupted during epoch {self.epoch + 1}; last.pt holds {self.saved_epoch} epochs; continue "
                     f"with: {self.spelling.resume.format(path=self.folder.path)}")
        elif self.write and self.saved_epoch is not None:
            self.log(f"interrupted during epoch {self.epoch + 1}; the run folder's last.pt is gone (was "
                     f"{str(self.folder.path)!r} deleted or moved while training?), so the run cannot be resumed; "
                     "start it again")
        else:
            self.log(f"interrupted during epoch {self.epoch + 1}; no checkpoint was written (train.checkpoints=false "
                     "or before the first epoch ended), so the run cannot be resumed")

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
        """Why the run should stop after this epoch, if it should: the caller's epoch_hook (a tuner's pruner),
        train.max_time, or early stopping on train.monitor (computed from the history, so a resumed run decides
        as an uninterrupted one would)."""
        t = self.cfg.train
        if self.epoch_hook is not None:
            reason = self.epoch_hook(self, row)
            if reason:
                return reason
        if t.max_time and self.time >= t.max_time:
            return f"train.max_time={t.max_time:g}s reached"
        if t.patience and self.val_loader is not None:
            sign = 1 if t.monitor == "val_acc" else -1
            values = [sign * r[t.monitor] if isinstance(r.get(t.monitor), (int, float)) and math.isfinite(r[t.monitor])
                      else -math.inf for r in self.history]  # a NaN epoch counts as no improvement
            if values:
                best = max(range(len(values)), key=lambda i: (values[i], -i))  # the first epoch at the best value
                if len(values) - 1 - best >= t.patience:
                    return (f"early stopping: {t.monitor} has not improved for {t.patience} epochs (best "
                            f"{show_metric(t.monitor, sign * values[best])} at epoch {best + 1})")
        return None

    def _record(self, row: dict) -> None:
        val_acc = row.get("val_acc")
        improved = val_acc is not None and math.isfinite(val_acc) and val_acc > self.best["val_acc"]
        if improved:
            self.best = {"val_acc": val_acc, "epoch": row["epoch"]}
        reached = []
        for key in self.targets:
            if self.targets[key] is None and val_acc is not None and val_acc >= float(key):
                self.targets[key] = {"epoch": row["epoch"], "time": row["time"]}
                reached.append(f"{float(key):.1%}")
        mem = runtime.memory_used(self.device)
        # one line per epoch, accuracies in % as the reports write them; a target reached is said on the same line
        self.log(f"epoch {row['epoch']}/{self.cfg.train.epochs}  train loss {row['train_loss']:.4f} "
                 f"acc {percent(row['train_acc'])}" + (f"  val loss {row['val_loss']:.4f} acc {percent(val_acc)}"
                                                       if val_acc is not None else "")
                 + f"  lr {row['lr']:.3g}  bs {row['batch_size']}  {row['images_per_sec']:,.0f} img/s  "
                 f"{row['time']:.1f}s" + (f"  gpu mem {mem:,.0f} MiB" if mem else "")
                 + (f"  reached {' and '.join(reached)} validation accuracy" if reached else ""))
        if not self.write:
            return
        with self._writing():
            self.folder.write_metrics(self.history)
            if self.trackers is not None:
                self.trackers.epoch(row)
            if self.cfg.train.checkpoints:
                ckpt = self.checkpoint()
                if improved:
                    save_checkpoint(self.folder.path / "best.pt", ckpt)
                save_checkpoint(self.folder.path / "last.pt", ckpt, keep_previous=True)
                self.saved_epoch = self.epoch
        if self.status in ("finished", "stopped") and self.epoch < self.cfg.train.epochs and (
                self.reopen or self.stop_reason is None):
            self.status, self.stop_reason = "running", None  # extended (train.epochs=N) or a stop rule changed

    def _resumable(self) -> bool:
        """Whether `--resume` can continue: a checkpoint was written and is still there (the folder may have been
        deleted or moved under a running run; a message must not offer to resume what is gone)."""
        return self.saved_epoch is not None and (self.folder.path / "last.pt").is_file()

    @contextlib.contextmanager
    def _writing(self):
        """A failed write to the run folder (full disk, quota, a folder gone read-only) stops the run with one line
        that says what was kept: checkpoints are written beside the old ones and renamed over them, so the last
        good last.pt is still there, and `--resume` continues from it."""
        try:
            yield
        except OSError as e:
            what = os.path.basename(e.filename) if e.filename else "a file"
            kept = (f"last.pt from epoch {self.saved_epoch} is intact; free space, then continue with: "
                    f"{self.spelling.resume.format(path=self.folder.path)}" if self._resumable() else
                    "the run folder's last.pt is gone (was the folder deleted or moved?): start the run again"
                    if self.saved_epoch is not None else "no checkpoint was written yet")
            raise CnnlabError(f"cannot write {what} in {str(self.folder.path)!r} ({e.strerror or e}) after epoch "
                              f"{self.epoch}; {kept}") from None

    def summary(self) -> dict:
        rows = self.history
        ips = [r["images_per_sec"] for r in rows if r.get("images_per_sec")]
        last = rows[-1] if rows else {}
        return {"run": str(self.folder.path), "status": self.status, "diverged": self.status == "diverged",
                "model": self.cfg.model.name, "dataset": self.cfg.data.name, "params": self.params,
                "epochs_done": self.epoch, "best_val_acc": self.best["val_acc"] if self.best["epoch"] else None,
                "best_epoch": self.best["epoch"], "final_train_acc": last.get("train_acc"),
                "final_val_acc": last.get("val_acc"), "final_train_loss": last.get("train_loss"),
                "final_val_loss": last.get("val_loss"), **self.end_train, "stop_reason": self.stop_reason,
                "wall_time": self.time, "images_per_sec": sorted(ips)[len(ips) // 2] if ips else None,
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
        if self.cfg.train.checkpoints:  # record the final status in last.pt too (resume then stops at once)
            save_checkpoint(self.folder.path / "last.pt", self.checkpoint(), keep_previous=True)
            self.saved_epoch = self.epoch
        if self.status in ("finished", "stopped") and self.epoch < self.cfg.train.epochs and (
                self.reopen or self.stop_reason is None):
            self.status, self.stop_reason = "running", None  # extended (train.epochs=N) or a stop rule changed
        if self.history:
            t = self.cfg.train
            save_curves({self.cfg.model.name: self.history}, self.folder.path / "curves.png",
                        title=self.folder.path.name, train_loss_label=describe_loss(t.loss, t.label_smoothing))
        self.folder.write_summary(summary)
        if self.trackers is not None:
            self.trackers.end(summary)

    def measure_end_train(self) -> Dict[str, float]:
        """end_train_loss / end_train_acc / end_train_images (runfolder.END_TRAIN_IMAGES says what they measure):
        evaluation only, so the weights, BN statistics and RNG are left as they were (exact resume is untouched)."""
        split = self.ds.train.subset(min(END_TRAIN_IMAGES, len(self.ds.train)))
        model = self.ema.module if self.ema is not None else self.forward
        r = evaluate(model, self._loader(split, self.cfg.batch.eval_size, train=False), self.device, self.amp)
        return {"end_train_loss": r["loss"], "end_train_acc": r["acc"], "end_train_images": len(split)}

    def finish(self) -> dict:
        if self.status in ("finished", "stopped") and self.history:  # a diverged run's weights are not worth it
            self.end_train = self.measure_end_train()
        summary = self.summary()
        if self.write:
            with self._writing():
                self._write_final(summary)
        best = summary["best_val_acc"]
        self.log(f"{self.status}: best val acc {percent(best)} at epoch {summary['best_epoch']}, "
                 f"{summary['wall_time']:.1f}s" if best is not None else f"{self.status}: {self.epoch} epochs")
        if self.write:
            self.log(f"run folder: {self.folder.path}")
        return summary


def _check_against_checkpoint(folder: RunFolder, cfg: RunConfig) -> int:
    """config.yaml must say what the checkpoint was trained with: a truncated or edited config.yaml can still be
    valid YAML (a missing section reads as defaults) and would silently continue another run. Returns the epochs
    the checkpoint holds (0 without a readable one)."""
    for name in ("last.pt", "last.prev.pt"):
        try:
            ckpt = load_checkpoint(folder.path / name, fallback=False, require=MODEL_KEYS)
            saved = config_from_dict(ckpt["config"]).to_dict()
        except CnnlabError:
            continue  # a damaged checkpoint is reported (or passed over) by the restore itself
        ours = cfg.to_dict()
        for section in (saved, ours):
            section["data"].pop("root", None)  # the data may have moved; that is what --data-root is for
            for key in RESUME_KEYS_CHANGEABLE:  # an extended run's last.pt says the new length from its next epoch
                section["train"].pop(key.split(".")[1], None)
        diff = next((k for k in ours if ours[k] != saved[k]), None)
        if diff is not None:
            key = next((f"{diff}.{k}" for k in ours[diff] if ours[diff][k] != saved[diff].get(k)), diff) \
                if isinstance(ours[diff], dict) else diff
            raise CnnlabError(f"{str(folder.path / 'config.yaml')!r} does not match the config saved in {name} "
                              f"(key {key!r}); the run folder is damaged or was edited: restore config.yaml, or "
                              "start a new run")
        return int(ckpt.get("epoch") or 0) if isinstance(ckpt.get("epoch"), int) else 0
    return 0


# Keys a resumed run may change: how long it goes on and how it reports, never what it trains.
RESUME_KEYS_CHANGEABLE = ("train.epochs", "train.max_time", "train.patience", "train.progress", "train.threads",
                          "train.log_every", "train.device")
LENGTH_PLANNED = ("cosine", "onecycle")  # schedules laid out over the run's length: extending would break them


def resume(run_dir, log=print, data_root: Optional[str] = None, overrides: Optional[List[str]] = None,
           download: bool = False, spelling: Spelling = CLI, **kw) -> dict:
    """Continue the run in `run_dir` from its last.pt with its own config (the data may have moved: `data_root`).

    `overrides` may change only RESUME_KEYS_CHANGEABLE; `train.epochs=N` extends a finished run, whose schedule then
    continues where it was (constant, step, multistep and the cyclical ones do not depend on the run's length;
    cosine and one-cycle are planned over it and are refused)."""
    problem = path_problem(run_dir, "folder")
    if problem:  # before config.yaml is looked for: a missing folder is not a damaged one
        raise CnnlabError(f"--resume: run folder {str(run_dir)!r} {problem}")
    folder = RunFolder(run_dir)
    cfg = folder.load_config()
    done = _check_against_checkpoint(folder, cfg)
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
        log(f"extending {folder.path} from {cfg.train.epochs} to {new.train.epochs} epochs; the "
            f"{new.schedule.name} schedule continues where it was")
    use_data_root(new, data_root)
    new.data.download = new.data.download or download
    return Trainer(new, folder.path, resume=True, log=log, reopen=bool(overrides), spelling=spelling, **kw).fit()
