"""Gradient predictiveness and effective beta-smoothness over training (Santurkar, Tsipras, Ilyas & Madry 2018,
"How Does Batch Normalization Help Optimization?", §3.1 and Fig. 4).

At a point w with gradient g = grad L(w), the analysis steps along the gradient, w_eta = w - eta*g, for a few step
sizes eta, and measures
- the loss L(w_eta) (its range over eta is the "variation of the loss" of Fig. 4a),
- the gradient change |grad L(w_eta) - g| (gradient predictiveness, Fig. 4b: small means the gradient at w predicts
  the gradient a step away),
- the effective beta-smoothness max_eta |grad L(w_eta) - g| / |eta*g| (Fig. 4c): the largest gradient change per unit
  distance moved. On a quadratic loss 1/2 w'Aw it is |A g|/|g|, so c for A = c*I (tested).
Probes use one fixed batch of training images, with BatchNorm in training mode (the landscape the optimizer sees) and
dropout switched off (a fresh mask per evaluation would add noise that is not curvature); BN running statistics are
put back after every probe. Besides the probes, every training step records |g_t - g_(t-1)|, the change of the
training gradient between successive steps (each on its own batch), which the Fudan course project asks for.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import torch
from torch import nn

from cnnlab.analysis.common import preserved, run_steps, set_lr, trainable
from cnnlab.analysis.samples import sample
from cnnlab.data.loader import BatchLoader
from cnnlab.errors import CnnlabError

ETA_FACTORS = (0.5, 1.0, 2.0, 4.0)  # probe step sizes as multiples of the training learning rate


@dataclass
class DirectionProbe:
    """What the loss and gradient do along -g from one point."""
    etas: List[float]
    loss0: float
    grad_norm: float
    losses: List[float]        # L(w - eta g)
    grad_dists: List[float]    # |grad L(w - eta g) - g|

    @property
    def beta(self) -> float:
        """Effective beta-smoothness: max over eta of the gradient change per unit distance moved."""
        if self.grad_norm == 0:
            return 0.0
        return max(d / (eta * self.grad_norm) for eta, d in zip(self.etas, self.grad_dists))


def _grads(loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor]):
    loss = loss_fn()
    gs = torch.autograd.grad(loss, params, allow_unused=True)
    return float(loss.detach()), [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, gs)]


def _dist(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    # summed in the parameters' own dtype (float64 is not available on every device, e.g. MPS)
    return math.sqrt(sum(float((x - y).pow(2).sum()) for x, y in zip(a, b)))


def probe_direction(params: Sequence[torch.Tensor], loss_fn: Callable[[], torch.Tensor],
                    etas: Sequence[float]) -> DirectionProbe:
    """Step along the negative gradient of loss_fn at `params` by each eta; the params are put back afterwards.

    Gradients come from torch.autograd.grad, so `.grad` of the parameters is left untouched.
    """
    if not etas or any(e <= 0 for e in etas):
        raise CnnlabError(f"probe step sizes must be positive, got {list(etas)}")
    loss0, g = _grads(loss_fn, params)
    origin = [p.detach().clone() for p in params]
    losses, dists = [], []
    try:
        for eta in etas:
            with torch.no_grad():
                for p, p0, gi in zip(params, origin, g):
                    p.copy_(p0 - eta * gi)
            loss, g_eta = _grads(loss_fn, params)
            losses.append(loss)
            dists.append(_dist(g_eta, g))
    finally:
        with torch.no_grad():
            for p, p0 in zip(params, origin):
                p.copy_(p0)
    return DirectionProbe(list(map(float, etas)), loss0, _dist(g, [torch.zeros_like(x) for x in g]), losses, dists)


class _ProbeMode:
    """Dropout off and BN running statistics saved for the duration of a probe (see the module docstring)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.dropouts = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.training]

    def __enter__(self):
        self.buffers = {k: v.detach().clone() for k, v in self.model.named_buffers()}
        for m in self.dropouts:
            m.eval()

    def __exit__(self, *exc):
        for m in self.dropouts:
            m.train()
        with torch.no_grad():
            for k, v in self.model.named_buffers():
                v.copy_(self.buffers[k])


@dataclass
class SmoothnessTrace:
    """One training run's loss, successive-gradient changes and probes along the gradient."""
    label: str
    lr: float
    losses: List[float]                     # batch loss at every step
    grad_change: List[float]                # |g_s - g_(s-1)| for steps s = 2, 3, ... (1-based)
    # probe_steps[k]: the number of optimizer steps taken before probes[k] (1, every, 2*every, ...)
    probe_steps: List[int] = field(default_factory=list)
    probes: List[DirectionProbe] = field(default_factory=list)

    def line(self) -> str:
        """The median and largest effective beta-smoothness and the mean successive gradient change."""
        betas = sorted(p.beta for p in self.probes)
        change = sum(self.grad_change) / max(len(self.grad_change), 1)
        return (f"{self.label}: effective beta-smoothness median {betas[len(betas) // 2]:.4g}, max {betas[-1]:.4g}; "
                f"mean successive gradient change {change:.4g}")

    def rows(self) -> List[dict]:
        rows = []
        for s, p in zip(self.probe_steps, self.probes):
            rows.append({"label": self.label, "step": s, "loss": p.loss0, "grad_norm": p.grad_norm,
                         "loss_min_along_grad": min(p.losses), "loss_max_along_grad": max(p.losses),
                         "grad_dist_min": min(p.grad_dists), "grad_dist_max": max(p.grad_dists),
                         "beta_eff": p.beta,
                         "successive_grad_change": self.grad_change[s - 2] if 2 <= s <= len(self.grad_change) + 1
                         else float("nan")})
        return rows

    def plot(self, axes, color: str = "C0"):
        """Three axes: loss range along the gradient, gradient predictiveness, effective beta-smoothness."""
        s = self.probe_steps
        ax_l, ax_g, ax_b = axes
        ax_l.fill_between(s, [min(p.losses) for p in self.probes], [max(p.losses) for p in self.probes],
                          color=color, alpha=0.35, label=self.label)
        ax_g.fill_between(s, [min(p.grad_dists) for p in self.probes], [max(p.grad_dists) for p in self.probes],
                          color=color, alpha=0.35, label=f"{self.label} along gradient")
        if self.grad_change:
            ax_g.plot(range(2, len(self.grad_change) + 2), self.grad_change, color=color, lw=0.6, alpha=0.8,
                      label=f"{self.label} successive steps")
        ax_b.plot(s, [p.beta for p in self.probes], "o-", color=color, ms=3, label=self.label)
        ax_l.set(xlabel="step", ylabel="loss", title="loss along the gradient")
        ax_g.set(xlabel="step", ylabel="l2 gradient change", title="gradient predictiveness")
        ax_b.set(xlabel="step", ylabel="max |dg| / |dw|", title="effective beta-smoothness")
        for ax in axes:
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
        return axes


def probe_batch(trainer, size: Optional[int] = None, seed: int = 0):
    """`size` training images (stratified, fixed by seed) without augmentation, normalised, on the trainer's device."""
    split = sample(trainer.ds.train, size or trainer.cfg.batch.size, seed)
    loader = BatchLoader(split, len(split), mean=trainer.ds.mean, std=trainer.ds.std, device=trainer.device)
    return next(iter(loader))


def smoothness_trace(trainer, steps: int, every: int = 10, eta_factors: Sequence[float] = ETA_FACTORS,
                     probe_size: Optional[int] = None, label: str = "", ax=None) -> SmoothnessTrace:
    """Train `steps` steps at the configured rate, probing the landscape every `every` steps; restores the trainer."""
    if every < 1 or steps < 1:
        raise CnnlabError(f"smoothness needs steps >= 1 and every >= 1, got steps={steps} every={every}")
    lr = trainer.cfg.optim.lr
    etas = [lr * f for f in eta_factors]
    x, y = probe_batch(trainer, probe_size)
    model = trainer.model
    params = trainable(model)
    mode = _ProbeMode(model)
    trace = SmoothnessTrace(label, lr, [], [])
    prev: List[Optional[torch.Tensor]] = [None]

    def loss_fn():
        return nn.functional.cross_entropy(model(x), y)

    def on_step(t, i, loss):
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float()
                          for p in params])
        if prev[0] is not None:
            trace.grad_change.append(float((flat - prev[0]).norm()))
        prev[0] = flat
        if (i + 1) % every == 0 or i == 0:
            with mode:
                trace.probes.append(probe_direction(params, loss_fn, etas))
            trace.probe_steps.append(i + 1)

    with preserved(trainer):
        model.train()
        set_lr(trainer.optimizer, lr)
        trace.losses = run_steps(trainer, steps, lr_at=lambda i: lr, on_step=on_step)
    if ax is not None:
        trace.plot(ax)
    return trace


def smoothness_cost(steps: int, batch: int, every: int, probe_size: int, n_etas: int = len(ETA_FACTORS)) -> int:
    """Forward+backward image passes of `smoothness_trace`: the training plus (1 + etas) passes per probe."""
    probes = steps // every + (1 if every > 1 else 0)  # step 1 is always probed
    return steps * batch + probes * (1 + n_etas) * probe_size


# A loss that moved less than this share over the trace: the network had not left its starting plateau, where the
# gradients are small and change little, so its effective beta is small without its landscape being smoother.
PLATEAU = 0.02


def smoothness_words(rows: Sequence[dict]) -> str:
    """The rows `cnnlab smoothness` wrote (label, step, loss, beta_eff, ...) -> one paragraph comparing the networks'
    median effective beta-smoothness, with how far each one's loss moved over the trace (read back from the CSV, so
    a report rebuilt from committed files says the same)."""
    by: dict = {}
    for r in rows:
        by.setdefault(r["label"], []).append(r)
    parts, medians = [], {}
    for label, rs in by.items():
        betas = [float(r["beta_eff"]) for r in rs if math.isfinite(float(r["beta_eff"]))]
        losses = [float(r["loss"]) for r in rs if math.isfinite(float(r["loss"]))]
        if not betas or not losses:
            continue
        medians[label] = statistics.median(betas)
        moved = (losses[0] - losses[-1]) / abs(losses[0]) if losses[0] else 0.0
        stuck = " (it had barely left its starting loss)" if moved < PLATEAU else ""
        parts.append(f"{label}: median effective beta-smoothness {medians[label]:.4g}, its loss {losses[0]:.4f} -> "
                     f"{losses[-1]:.4f} over the trace{stuck}")
    if len(medians) < 2:
        return "; ".join(parts) + "."
    low = min(medians, key=medians.get)
    text = (f"The lowest effective beta-smoothness (the gradient changes least per unit moved along it) is "
            f"{low}'s. " + "; ".join(parts) + ".")
    if any("barely left" in p for p in parts):
        text += (" A network still on its starting plateau has small gradients that change little, so its beta is "
                 "small without its landscape being smoother: compare such a network's beta with care.")
    return text
