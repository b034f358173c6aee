"""The step/epoch engine: one optimizer step, the steps of one epoch, a training epoch, `steps(n)` and evaluation.

After torchvision's references (`train_one_epoch`, `evaluate`: functions over the run's parts). Every function takes
the Trainer `t` and reads its parts (model, optimizer, scheduler, scaler, loaders, callbacks) at the moment it runs,
so a part the Trainer replaces (the GradScaler of a resumed fp16 run) is the one used. Design points:
- the loss is read back from the device only every `CHECK_EVERY` steps (a GPU sync costs), which bounds how late a
  divergence is seen;
- `steps(t, n)` takes n optimizer steps exactly as `fit` does and yields each step's loss; `train_one_epoch` is built
  on the same per-epoch step generator (`epoch_steps`), so analyses (range tests, loss bands, gradient
  predictiveness) train as `cnnlab train` does without copying the loop.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Dict, Iterator

import torch
import torch.nn.functional as Fn

from cnnlab.data.loader import BatchLoader
from cnnlab.errors import CnnlabError
from cnnlab.training import runtime
from cnnlab.training.callbacks import percent
from cnnlab.training.checkpoint import unwrap
from cnnlab.training.distributed import all_reduce_sum
from cnnlab.training.optim import l1_penalty
from cnnlab.training.schedules import batch_size_at

CHECK_EVERY = 10  # optimizer steps between reads of the loss (divergence check, progress bar)


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


class Tally:
    """Running sums of one epoch's steps, kept on the device (read back only when checked)."""

    def __init__(self, device, lr: float = float("nan")):
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.n, self.lr = 0, lr

    def add(self, loss_sum, correct, n: int) -> None:
        self.loss_sum += loss_sum
        self.correct += correct
        self.n += n


def _loss(t, x, y):
    with runtime.autocast(t.device, t.amp):
        out = t.forward(x)
        loss = t.criterion(out.float(), y)
    return out, loss


def optimizer_step(t, x, y):
    """One optimizer step over a batch, split into micro-batches when batch.micro is set (same update); returns the
    batch's (summed loss, correct count), on the device."""
    micro = t.cfg.batch.micro or len(y)
    t.optimizer.zero_grad(set_to_none=True)
    loss_sum = torch.zeros((), device=t.device)
    correct = torch.zeros((), device=t.device, dtype=torch.long)
    for k, (xs, ys) in enumerate(zip(x.split(micro), y.split(micro))):
        out, loss = _loss(t, xs, ys)
        scaled = loss * (len(ys) / len(y))
        if t.cfg.optim.l1 and k == 0:  # the penalty belongs to the step, so it is added once
            scaled = scaled + t.cfg.optim.l1 * l1_penalty(t.optimizer)
        t.scaler.scale(scaled).backward()
        loss_sum += loss.detach() * len(ys)
        correct += (out.argmax(1) == ys).sum()
    t.scaler.step(t.optimizer)
    t.scaler.update()
    t.scheduler.step()
    t.step += 1
    if t.ema is not None:
        t.ema.update(unwrap(t.model))
    return loss_sum, correct


def epoch_steps(t, epoch: int, tally: Tally) -> Iterator[tuple]:
    """The optimizer steps of epoch `epoch` (its batch order and augmentation), as a generator: after each step it
    yields (the step's summed batch loss as a 0-d tensor, not read from the device; its image count), so that
    `train_one_epoch` adds no per-step work, and adds the step to `tally`;
    it ends early, with status 'diverged', when the epoch's running loss exceeds the divergence limit."""
    t.model.train()
    loader = t.train_loader
    loader.batch_size = rank_batch(t.world_size, batch_size_at(epoch, t.cfg.batch))
    loader.set_epoch(epoch)
    bar = _progress(t, len(loader), epoch)
    limit = t.cfg.train.diverge_factor * max(t.initial_loss or 0.0, math.log(t.ds.num_classes))
    try:
        for i, (x, y) in enumerate(loader):
            tally.lr = t.optimizer.param_groups[0]["lr"]
            ls, c = optimizer_step(t, x, y)
            tally.add(ls, c, len(y))
            yield ls, len(y)
            for cb in t.callbacks:
                cb.on_step(t, ls, len(y), tally.lr)
            if i % CHECK_EVERY == CHECK_EVERY - 1 or i == len(loader) - 1:
                # summed over ranks, so every rank takes the same decision (a lone break would hang DDP)
                tot_loss, tot_correct, tot_n = totals(t, tally.loss_sum, tally.correct, tally.n)
                mean = tot_loss / tot_n
                if not math.isfinite(mean) or mean > limit:
                    t.status = "diverged"
                    t.log(f"epoch {epoch + 1}: loss {mean:.4g} (limit {limit:.3g}): diverged, stopping")
                    return
                if bar is not None:
                    bar.set_postfix(loss=f"{mean:.3f}", acc=percent(tot_correct / tot_n, 1))
                    bar.update(min(CHECK_EVERY, len(loader) - bar.n))
    finally:
        if bar is not None:
            bar.close()


def train_one_epoch(t, epoch: int) -> Dict[str, float]:
    """Epoch `epoch`'s steps; its train_* columns of metrics.csv."""
    tally, t0 = Tally(t.device, t.optimizer.param_groups[0]["lr"]), time.perf_counter()
    steps = epoch_steps(t, epoch, tally)
    if t.thread_tuner is not None:
        steps = t.thread_tuner.epoch(steps, len(t.train_loader), epoch)
    for _ in steps:
        pass
    if t.device.type == "cuda":
        torch.cuda.synchronize(t.device)
    dt = time.perf_counter() - t0
    tot_loss, tot_correct, tot_n = totals(t, tally.loss_sum, tally.correct, tally.n)
    return {"train_loss": tot_loss / max(tot_n, 1), "train_acc": tot_correct / max(tot_n, 1), "lr": tally.lr,
            "batch_size": t.train_loader.batch_size * t.world_size, "epoch_time": dt,
            "images_per_sec": tot_n / dt if dt > 0 else 0.0, "threads": torch.get_num_threads()}


def steps(t, n: int, first_epoch: int = 0) -> Iterator[float]:
    """Take `n` optimizer steps exactly as `fit` takes them (batches, augmentation, L1, micro-batches, AMP), starting
    at epoch `first_epoch`'s batch order and crossing epochs as needed; yield each step's mean batch loss as a float
    (one device read per step). Ends early on divergence or when no full batch fits."""
    done, epoch = 0, first_epoch
    while done < n and t.status != "diverged":
        before = done
        for loss_sum, images in epoch_steps(t, epoch, Tally(t.device)):
            yield loss_sum.item() / images
            done += 1
            if done >= n:
                return
        if done == before:  # no full batch in an epoch: nothing would ever be trained
            return
        epoch += 1


def rank_batch(world_size: int, global_batch: int) -> int:
    """One process's share of a global batch size (DDP: every rank takes an equal share)."""
    if global_batch % world_size:
        raise CnnlabError(f"config key 'batch.size' ({global_batch}) must be divisible by the number of "
                          f"processes ({world_size}) for distributed training")
    return global_batch // world_size


def totals(t, loss_sum, correct, n):
    """(loss sum, correct, count) over all ranks, as Python numbers."""
    if not t.dist.enabled:
        return loss_sum.item(), correct.item(), n
    s = all_reduce_sum(torch.stack([loss_sum.double(), correct.double(),
                                    torch.tensor(float(n), device=loss_sum.device, dtype=torch.float64)]))
    return s[0].item(), s[1].item(), int(s[2].item())


def _progress(t, total: int, epoch: int):
    mode = t.cfg.train.progress
    if t.rank != 0 or mode == "off" or (mode == "auto" and not sys.stderr.isatty()):
        return None
    from tqdm import tqdm  # here: only a run shown on a terminal draws a bar (start-up time of the others)
    return tqdm(total=total, desc=f"epoch {epoch + 1}/{t.cfg.train.epochs}", leave=False, dynamic_ncols=True)
