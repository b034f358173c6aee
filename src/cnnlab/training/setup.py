"""Building a run's parts from its config: the device, the data, the model, the optimizer, the loss, the loaders, the
schedule, the precision and the wrappers (DDP, torch.compile). One builder, so that `Trainer` (trainer.py) only
wires what it gets, and `load_run` (inference.py) reads a saved run's data and model the same way a run made them.

The order is what a run needs: the memory check runs on the meta device before the model is built for real; a model
with a data-dependent initialisation sees the first training images before the optimizer holds its parameters; train.amp
`auto` is timed on the built model with one real batch (runtime.choose_amp), and the wrappers come last, around the
plain model that checkpoints save.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from cnnlab.data import Dataset, load_dataset
from cnnlab.data.core import FIRST_BATCH, representative
from cnnlab.data.loader import BatchLoader
from cnnlab.data.paths import resolve_root
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.training import runtime
from cnnlab.training.config import RunConfig
from cnnlab.training.distributed import DistInfo
from cnnlab.training.ema import WeightAverage
from cnnlab.training.engine import rank_batch
from cnnlab.training.losses import build_loss
from cnnlab.training.optim import build_optimizer
from cnnlab.training.schedules import build_schedule
from cnnlab.training.threads import ThreadTuner, make_tuner


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


def build_device(cfg: RunConfig, dist: DistInfo) -> torch.device:
    device = runtime.setup(cfg.train)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)  # one GPU per rank
        torch.cuda.set_device(device)
    return device


def check_memory(cfg: RunConfig, ds: Dataset, device: torch.device) -> None:
    """Estimate weights, gradients, two optimizer slots (16 bytes a parameter, counted on the meta device, where
    nothing is allocated) and the largest float32 training batch, and refuse a run that cannot fit. Activations
    are not counted: the estimate is a floor, meant to stop the impossible (a 10^11-unit layer) in a second."""
    c = cfg  # short, as the lines below read it
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
    runtime.check_memory(device, need, f"{c.model.name} ({params:,} parameters) with batches of {batch:,} images")


def make_loader(cfg: RunConfig, ds: Dataset, split, batch_size: int, train: bool, device: torch.device,
                dist: DistInfo) -> BatchLoader:
    """A loader over `split`: shuffled, augmented and sharded over the DDP ranks for training; in order, plain and
    whole on every rank for evaluation."""
    c = cfg
    return BatchLoader(split, batch_size, shuffle=train, augment=c.augment.pipeline if train else None,
                       repeats=c.augment.repeats if train else 1, mean=ds.mean, std=ds.std,
                       device=device, channels_last=c.train.channels_last, drop_last=train,
                       seed=c.train.seed, rank=dist.rank if train else 0,
                       world_size=dist.world_size if train else 1)


def first_images(cfg: RunConfig, ds: Dataset, device: torch.device, n: int):
    """(x, y) of n training images, every class in its share (data.core.representative: the split's first n
    images are one class where it is sorted by class), unaugmented and normalised, on the device; the same images
    every time for a given data.seed."""
    n = min(n, len(ds.train))
    # a loader over these images only: one over the whole split would copy it to the device a second time
    picked = representative(ds.train, n, cfg.data.seed, FIRST_BATCH)
    batches = iter(make_loader(cfg, ds, picked, n, False, device, DistInfo()))
    try:
        return next(batches)
    finally:  # close the generator now: left to the garbage collector, its clean-up would run at a random
        getattr(batches, "close", lambda: None)()  # moment of training


def init_from_data(model, cfg: RunConfig, ds: Dataset, device: torch.device, images: int = 5000) -> None:
    """A model with a data-dependent initialisation (`init_from_data(x)`, e.g. fastcnn's whitening layer) gets
    the first `images` training images, unaugmented and normalised as training will see them. On resume the
    weights come from the checkpoint instead, so this runs for new runs only."""
    hook = getattr(model, "init_from_data", None)
    if hook is None:
        return
    x, _ = first_images(cfg, ds, device, images)
    hook(x.contiguous())


def resolve_amp(cfg: RunConfig, ds: Dataset, device: torch.device, model) -> tuple:
    """(mode, note): train.amp, with auto decided here (runtime.choose_amp) on one real training batch."""
    if cfg.train.amp != "auto":
        return cfg.train.amp, f"{cfg.train.amp} (as configured)"
    pinned = os.environ.get("CNNLAB_AMP_AUTO")
    if pinned in ("none", "bf16", "fp16"):  # a test suite or a comparison that must not depend on a timing
        return pinned, f"auto -> {pinned} (CNNLAB_AMP_AUTO)"
    c = cfg
    shape = (min(c.batch.size, len(ds.train)), ds.in_channels, ds.image_size, ds.image_size)
    mode, why, _ = runtime.choose_amp(device, model, lambda: first_images(c, ds, device, c.batch.size),
                                      runtime.amp_cache_key(c.model.name, c.model.options, shape))
    return mode, f"auto -> {why}"


def wrap(model, cfg: RunConfig, dist: DistInfo, device: torch.device) -> tuple:
    """(plain model, forward): DDP (with optional SyncBatchNorm, which replaces the plain model's BN layers) and
    torch.compile around the plain model; the plain one is what checkpoints save."""
    forward = model
    if dist.enabled:
        if cfg.train.sync_bn:
            model = forward = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        forward = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    return model, (torch.compile(forward) if cfg.train.compile else forward)


@dataclass
class Parts:
    """What a run is made of; `Trainer` holds each field as its attribute of the same name (t.model, t.ds, ...)."""
    device: torch.device
    thread_tuner: Optional[ThreadTuner]  # train.threads=0 on the CPU: the count re-decided every epoch; else None
    ds: Dataset
    model: Any              # plain, not DDP-wrapped: what checkpoints save
    optimizer: torch.optim.Optimizer
    ema: Optional[WeightAverage]
    criterion: Any
    train_loader: BatchLoader
    val_loader: Optional[BatchLoader]
    scheduler: Any
    amp: str                # none, bf16 or fp16
    amp_note: str           # how it was chosen, for the log and summary.json
    scaler: torch.amp.GradScaler
    forward: Any            # the model as training calls it (DDP, torch.compile)
    params: int             # parameter count


def build_parts(cfg: RunConfig, dist: DistInfo, log: Callable[[str], None], new_weights: bool) -> Parts:
    """The run's parts, in the order the module docstring gives (`new_weights`: a new run, whose model may
    initialise itself from the data; a resumed one loads its weights from the checkpoint)."""
    device = build_device(cfg, dist)
    tuner = make_tuner(cfg.train.threads, device, dist.enabled)
    ds = load_data(cfg)
    if ds.val is None:
        log("note: no validation split (data.val_size=0); val_* columns stay empty")
    check_memory(cfg, ds, device)
    model = build_model(cfg, ds).to(device)
    if new_weights:
        init_from_data(model, cfg, ds, device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg.optim)
    ema = WeightAverage(model, cfg.train.ema) if cfg.train.ema else None
    criterion = build_loss(cfg.train.loss, cfg.train.label_smoothing)
    train_loader = make_loader(cfg, ds, ds.train, rank_batch(dist.world_size, cfg.batch.size), True, device, dist)
    val_loader = make_loader(cfg, ds, ds.val, cfg.batch.eval_size, False, device, dist) if ds.val else None
    scheduler = build_schedule(optimizer, cfg.schedule, cfg.optim.lr, max(1, len(train_loader)), cfg.train.epochs)
    amp, amp_note = resolve_amp(cfg, ds, device, model)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
    model, forward = wrap(model, cfg, dist, device)
    return Parts(device, tuner, ds, model, optimizer, ema, criterion, train_loader, val_loader, scheduler, amp,
                 amp_note, scaler, forward, sum(p.numel() for p in model.parameters()))
