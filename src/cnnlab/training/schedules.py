"""Learning-rate schedules by name (torch.optim.lr_scheduler underneath) and the cyclical batch-size policy.

Every schedule is stepped once per optimizer step (iteration); lengths given in epochs are converted with the number of
iterations per epoch, so one interface serves per-epoch and per-iteration schedules (as timm's does). `optim.lr` is
always the schedule's peak: the starting lr of step/multistep/cosine, the top of a cyclical or one-cycle schedule.

References: step decay and multistep (He et al. 2016 §4.2: /10 at 32k and 48k iterations); cosine (Loshchilov &
Hutter 2017, SGDR, without restarts); cyclical learning rates, triangular/triangular2/exp_range (Smith 2017, "Cyclical
Learning Rates for Training Neural Networks", §3.1); one-cycle (Smith & Topin 2018); cyclical batch size (Smith et al.
2018, "Don't decay the learning rate, increase the batch size", and the course's cyclical batch-size exercise).

Parameter groups (training/optim.py) may train at a multiple of the lr (`lr_scale`: `optim.bias_lr_scale`); every
schedule keeps that ratio at every step, the ones with absolute lr bounds (onecycle, cyclical, cosine's min_lr)
by scaling the bounds per group. A group marked `train_epochs` (a parameter its model trains only for its first
epochs) gets lr 0 from that epoch on, counted in steps of the first epoch's length (a cyclical batch policy makes
that approximate).
"""

from __future__ import annotations

import math

import torch
from torch.optim import lr_scheduler as S

from cnnlab.registry import Registry
from cnnlab.training.optim import plan_lookahead

SCHEDULES = Registry("schedule")


def _iters(value: float, cfg, iters_per_epoch: int) -> int:
    """A length in the config's unit -> whole iterations (at least 1)."""
    return max(1, int(round(value * iters_per_epoch if cfg.unit == "epoch" else value)))


@SCHEDULES.register("constant")
def _constant(opt, cfg, lr, ipe, total):
    return S.LambdaLR(opt, lambda it: 1.0)


@SCHEDULES.register("step")
def _step(opt, cfg, lr, ipe, total):
    # "multiply by DECAY every DECAY_EPOCHS"
    return S.StepLR(opt, step_size=_iters(cfg.decay_epochs, cfg, ipe), gamma=cfg.decay)


@SCHEDULES.register("multistep")
def _multistep(opt, cfg, lr, ipe, total):
    return S.MultiStepLR(opt, milestones=sorted(_iters(m, cfg, ipe) for m in cfg.milestones), gamma=cfg.decay)


def _per_group(opt, value: float):
    """`value` (an lr bound) for each group at its lr_scale; the plain value where no group is scaled."""
    scales = [g.get("lr_scale", 1.0) for g in opt.param_groups]
    return value if all(s == 1 for s in scales) else [value * s for s in scales]


@SCHEDULES.register("cosine")
def _cosine(opt, cfg, lr, ipe, total):
    if cfg.min_lr == 0 or not isinstance(_per_group(opt, lr), list):
        return S.CosineAnnealingLR(opt, T_max=max(1, total), eta_min=cfg.min_lr)
    # torch's eta_min is one value for every group; the same curve as a factor of each group's own peak keeps the ratio
    low, t_max = cfg.min_lr / lr, max(1, total)
    return S.LambdaLR(opt, lambda it: low + (1 - low) * (1 + math.cos(math.pi * min(it, t_max) / t_max)) / 2)


def _cyclic(mode):
    def build(opt, cfg, lr, ipe, total):
        # cycle_momentum off: it needs a momentum optimizer, and CLR as Smith defines it cycles the lr alone.
        return S.CyclicLR(opt, base_lr=_per_group(opt, cfg.min_lr), max_lr=_per_group(opt, lr),
                          step_size_up=_iters(cfg.step_size, cfg, ipe), mode=mode, gamma=cfg.gamma, cycle_momentum=False)
    return build


for _mode in ("triangular", "triangular2", "exp_range"):
    SCHEDULES.register(_mode)(_cyclic(_mode))


@SCHEDULES.register("onecycle")
def _onecycle(opt, cfg, lr, ipe, total):
    total, pct = onecycle_steps(total, cfg.pct_start)
    return S.OneCycleLR(opt, max_lr=_per_group(opt, lr), total_steps=total, pct_start=pct,
                        div_factor=cfg.div_factor, final_div_factor=cfg.final_div_factor, cycle_momentum=False)


def onecycle_steps(total: int, pct_start: float):
    """Total steps and warm-up share that torch's OneCycleLR can run. Its warm-up phase ends at step
    pct_start·total − 1, and a phase ending at step 0 divides by zero (4 steps at 0.25, 10 at 0.1): such a run warms
    up over 2 steps instead. Every other combination is passed through unchanged."""
    total = max(2, total)
    if float(pct_start * total) - 1 == 0:
        total = max(3, total)    # 2 steps cannot hold both phases; a third step is planned and never taken
        pct_start = 2 / total
    return total, pct_start


def build_schedule(optimizer: torch.optim.Optimizer, cfg, lr: float, iters_per_epoch: int, epochs: int):
    """The configured schedule, with a linear warm-up in front when `cfg.warmup` > 0 (torch's LinearLR), and the
    groups trained for limited epochs stopped after them. A Lookahead ramp learns the run's length here."""
    total = max(1, iters_per_epoch * epochs)
    plan_lookahead(optimizer, total)
    if cfg.warmup <= 0:
        schedule = SCHEDULES.get(cfg.name)(optimizer, cfg, lr, iters_per_epoch, total)
    else:
        warm = _iters(cfg.warmup, cfg, iters_per_epoch)
        ramp = S.LinearLR(optimizer, start_factor=cfg.warmup_factor, end_factor=1.0, total_iters=warm)
        main = SCHEDULES.get(cfg.name)(optimizer, cfg, lr, iters_per_epoch, max(1, total - warm))
        schedule = S.SequentialLR(optimizer, [ramp, main], milestones=[warm])
    stops = [g.get("train_epochs") for g in optimizer.param_groups]
    if all(e is None for e in stops):
        return schedule
    # Chained after the schedule, each step: the schedule sets every group's lr, then this multiplies a stopped
    # group's by 0 (a closed-form schedule sets it again at the next step, a chained one keeps the 0)
    stop = S.MultiplicativeLR(optimizer, [_stop_after(None if e is None else e * iters_per_epoch) for e in stops])
    return S.ChainedScheduler([schedule, stop])


def _stop_after(steps):
    """lr factor of a group at scheduler step `it`: 0 from step `steps` on (the optimizer's steps are 0-based, and the
    scheduler has counted `it` of them when it sets the lr of step `it`)."""
    return lambda it: 0.0 if steps is not None and it >= steps else 1.0


def batch_size_at(epoch: int, cfg) -> int:
    """Batch size for `epoch` (0-based) under the batch policy.

    cyclical, geometric between min and max so that each step changes the size by the same factor:
      triangular    min -> max over `step_epochs` epochs, back to min over the next `step_epochs`;
      increasing    min -> max over `step_epochs` epochs, then starts again at min (sawtooth up);
      decreasing    max -> min likewise (sawtooth down);
      exp_increase  triangular cycles whose low end rises towards max by `gamma` per epoch (in log size): the
                    batch analogue of CLR's exp_range lr decay (HW3 2.6: a falling lr ~ a growing batch, Smith et
                    al. 2018), so training ends at large batches;
      exp_decrease  triangular cycles whose high end falls towards min by `gamma` per epoch.
    """
    if cfg.policy == "constant":
        return cfg.size
    n = cfg.step_epochs
    span = math.log(cfg.max / cfg.min)
    if cfg.mode in ("triangular", "exp_increase", "exp_decrease"):
        phase = epoch % (2 * n)
        t = phase / n if phase <= n else (2 * n - phase) / n
        if cfg.mode == "exp_increase":  # log size in [lo, log max], lo rising from log min
            lo = span * (1 - cfg.gamma ** epoch)
            return int(round(cfg.min * math.exp(lo + t * (span - lo))))
        if cfg.mode == "exp_decrease":  # log size in [log min, hi], hi falling from log max
            return int(round(cfg.min * math.exp(t * span * cfg.gamma ** epoch)))
    else:
        t = (epoch % (n + 1)) / n if n > 0 else 1.0
        t = min(t, 1.0)
        if cfg.mode == "decreasing":
            t = 1.0 - t
    return int(round(cfg.min * math.exp(t * span)))
