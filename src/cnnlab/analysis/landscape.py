"""Loss landscapes: the band of training losses across step sizes, and random-direction slices around a model.

- Loss band (Santurkar, Tsipras, Ilyas & Madry 2018, "How Does Batch Normalization Help Optimization?", Fig. 4a as
  set in the Fudan DATA130051 project): the same initial model trained at several learning rates, the training loss
  recorded at every step, and the band between the per-step minimum and maximum over the rates. A narrow band means
  the loss the optimizer sees is insensitive to the step size (BN's smoothing effect). Optionally the same runs
  record |g_t - g_(t-1)|, the l2 change of the gradient between successive steps (the course's §2.4.1), whose band
  over the rates is the gradient-predictiveness counterpart of the loss band.
- Random-direction landscapes (Li, Xu, Taylor, Studer & Goldstein 2018, "Visualizing the Loss Landscape of Neural
  Nets", §4): L(w + a*d1) on a line or L(w + a*d1 + b*d2) on a grid, with Gaussian directions normalised filter by
  filter, d_ij <- d_ij / |d_ij| * |w_ij| (j runs over the output channels of a convolution and the rows of a linear
  layer), so the plot does not depend on the scale invariance that BN gives each filter. Biases and 1-d parameters
  (BN weights and shifts) get a zero direction, as in the paper. Evaluated in eval mode (BN running statistics) on a
  fixed subset of images; the cost is points x images forward passes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from cnnlab.analysis.common import preserved, run_steps
from cnnlab.errors import CnnlabError

logger = logging.getLogger(__name__)  # one line per rate; `log=` sends them elsewhere


# ----------------------------------------------------------------------------------------------------------------------
# Loss band across learning rates

def band_limits(curves: Sequence[Sequence[float]]) -> Tuple[List[float], List[float]]:
    """Per-step (min, max) over the curves, ignoring non-finite values and curves that stopped early."""
    length = max((len(c) for c in curves), default=0)
    lo, hi = [], []
    for i in range(length):
        vals = [c[i] for c in curves if i < len(c) and math.isfinite(c[i])]
        lo.append(min(vals) if vals else float("nan"))
        hi.append(max(vals) if vals else float("nan"))
    return lo, hi


@dataclass
class LossBand:
    label: str
    lrs: List[float]
    curves: List[List[float]]   # batch loss at every step, one list per learning rate
    # |g_t - g_(t-1)| (l2, all trainable parameters) for t = 2, 3, ..., one list per lr: the gradient predictiveness
    # of Santurkar et al. §3.1 measured along the training path; empty unless asked for
    grad_curves: List[List[float]] = field(default_factory=list)

    @property
    def limits(self) -> Tuple[List[float], List[float]]:
        return band_limits(self.curves)

    @property
    def width(self) -> float:
        """Mean over steps of the band's width (max - min loss over the lrs)."""
        return _mean_width(*self.limits)

    @property
    def grad_width(self) -> Optional[float]:
        return _mean_width(*band_limits(self.grad_curves)) if self.grad_curves else None

    def line(self) -> str:
        text = f"{self.label}: mean loss band width {self.width:.4f} over {len(self.limits[0])} steps"
        if self.grad_curves:
            lo, hi = band_limits(self.grad_curves)
            text += (f"; gradient change |g_t - g_(t-1)| band width {self.grad_width:.4g} "
                     f"(mean of the band's top {_mean(hi):.4g})")
        return text

    def rows(self) -> List[dict]:
        lo, hi = self.limits
        glo, ghi = band_limits(self.grad_curves) if self.grad_curves else ([], [])
        rows = []
        for i, (a, b) in enumerate(zip(lo, hi)):
            row = {"label": self.label, "step": i + 1, "loss_min": a, "loss_max": b}
            for lr, c in zip(self.lrs, self.curves):
                row[f"loss_lr_{lr:g}"] = c[i] if i < len(c) else float("nan")
            if self.grad_curves:  # the gradient change at step i+1 (none at step 1)
                row["grad_change_min"] = glo[i - 1] if 1 <= i <= len(glo) else float("nan")
                row["grad_change_max"] = ghi[i - 1] if 1 <= i <= len(ghi) else float("nan")
            rows.append(row)
        return rows

    def plot_gradients(self, ax, color: str = "C0"):
        lo, hi = band_limits(self.grad_curves)
        ax.fill_between(range(2, len(lo) + 2), lo, hi, color=color, alpha=0.4, label=self.label)
        ax.set(xlabel="step", ylabel="l2 distance |g_t - g_(t-1)|", title="gradient predictiveness: band over lrs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        return ax

    def plot(self, ax, color: str = "C0"):
        lo, hi = self.limits
        steps = range(1, len(lo) + 1)
        ax.fill_between(steps, lo, hi, color=color, alpha=0.4,
                        label=f"{self.label} (lr {', '.join(f'{v:g}' for v in self.lrs)})")
        ax.set(xlabel="step", ylabel="training loss", title="loss landscape: band over learning rates")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        return ax


def _mean(xs: Sequence[float]) -> float:
    vals = [v for v in xs if math.isfinite(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def _mean_width(lo: Sequence[float], hi: Sequence[float]) -> float:
    return _mean([h - l for l, h in zip(lo, hi)])


def _grad_recorder(trainer, out: List[float]):
    """An on_step hook appending |g_t - g_(t-1)| after every step from the second on."""
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    prev: List[Optional[torch.Tensor]] = [None]

    def on_step(t, i, loss):
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float()
                          for p in params])
        if prev[0] is not None:
            out.append(float((flat - prev[0]).norm()))
        prev[0] = flat
    return on_step


def loss_band(trainer, lrs: Sequence[float], steps: int, label: str = "",
              log: Optional[Callable[[str], None]] = None, ax=None, color: str = "C0", gradients: bool = False,
              ax_grad=None) -> LossBand:
    """Train from the trainer's current state at each rate for `steps` steps; the trainer is restored after. With
    `gradients`, also record the change of the gradient between successive steps at each rate."""
    if not lrs or any(lr <= 0 for lr in lrs):
        raise CnnlabError(f"loss-band needs positive learning rates, got {list(lrs)}")
    log = log or logger.info
    curves, grads = [], []
    for lr in lrs:
        changes: List[float] = []
        with preserved(trainer):
            curve = run_steps(trainer, steps, lr_at=lambda i, lr=lr: lr,
                              on_step=_grad_recorder(trainer, changes) if gradients else None)
        log(f"{label} lr {lr:g}: loss {curve[0]:.4f} -> {curve[-1]:.4f} over {len(curve)} steps")
        curves.append(curve)
        if gradients:
            grads.append(changes)
    band = LossBand(label, [float(v) for v in lrs], curves, grads)
    if ax is not None:
        band.plot(ax, color)
    if ax_grad is not None and gradients:
        band.plot_gradients(ax_grad, color)
    return band


def compare_bands(bands: Sequence[LossBand]) -> List[str]:
    """With two or more models: which has the narrower loss band (and gradient band), by how much."""
    if len(bands) < 2:
        return []
    out = []
    for what, get in (("loss band", lambda b: b.width), ("gradient-change band", lambda b: b.grad_width)):
        vals = [(get(b), b.label) for b in bands if get(b) is not None and math.isfinite(get(b))]
        if len(vals) >= 2:
            vals.sort()
            (w1, n1), (w2, n2) = vals[0], vals[1]
            ratio = f", {w2 / w1:.2f}x narrower" if w1 > 0 else ""
            out.append(f"narrowest {what}: {n1} (mean width {w1:.4g} against {w2:.4g} for {n2}{ratio})")
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Random-direction landscapes

def filter_normalised_direction(model: nn.Module, generator: torch.Generator) -> List[torch.Tensor]:
    """A Gaussian direction per parameter, each filter (slice along dim 0) scaled to the norm of the same filter."""
    dirs = []
    for p in model.parameters():
        if p.dim() <= 1:
            dirs.append(torch.zeros_like(p))
            continue
        # drawn on the CPU so that a seed gives the same direction on every device
        d = torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p.device, p.dtype)
        w = p.detach().reshape(len(p), -1)
        dn = d.reshape(len(p), -1)
        dn.mul_(w.norm(dim=1, keepdim=True) / (dn.norm(dim=1, keepdim=True) + 1e-10))
        dirs.append(d)
    return dirs


def evaluate_batches(model: nn.Module, batches) -> Tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` over a list of (x, y) batches, without gradients."""
    loss, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in batches:
            out = model(x).float()
            loss += float(nn.functional.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
            n += len(y)
    return loss / n, correct / n


def _losses_at(model: nn.Module, batches, dirs: List[List[torch.Tensor]], coords: List[Tuple[float, ...]]):
    """(loss, acc) at w + sum_k c_k d_k for each coordinate tuple; the weights are put back afterwards."""
    params = list(model.parameters())
    origin = [p.detach().clone() for p in params]
    was_training = model.training
    model.eval()
    out = []
    try:
        for c in coords:
            with torch.no_grad():
                for j, (p, p0) in enumerate(zip(params, origin)):
                    p.copy_(p0 + sum(ck * d[j] for ck, d in zip(c, dirs)))
            out.append(evaluate_batches(model, batches))
    finally:
        with torch.no_grad():
            for p, p0 in zip(params, origin):
                p.copy_(p0)
        model.train(was_training)
    return out


def landscape_cost(points: int, dims: int, images: int) -> int:
    return points ** dims * images


@dataclass
class Landscape1D:
    alphas: List[float]
    losses: List[float]
    accs: List[float]
    images: int

    def rows(self) -> List[dict]:
        return [{"alpha": a, "loss": l, "acc": c} for a, l, c in zip(self.alphas, self.losses, self.accs)]

    def line(self, label: str = "", split: str = "train") -> str:
        """The loss at the trained weights and at both ends of the line: how steep the basin's walls are."""
        i0 = self.alphas.index(min(self.alphas, key=abs))
        return (f"{label + ': ' if label else ''}loss at the trained weights {self.losses[i0]:.4f}, at the ends "
                f"{self.losses[0]:.4f} / {self.losses[-1]:.4f} (alpha = {self.alphas[0]:g} / {self.alphas[-1]:g}, "
                f"{self.images} {split} images)")

    def plot(self, ax):
        ax.plot(self.alphas, self.losses, "o-", ms=3, color="C0", label="loss")
        ax.set(xlabel="alpha (filter-normalised direction)", ylabel="loss",
               title=f"1-D loss landscape ({self.images} images)")
        ax.grid(alpha=0.3)
        ax.set_ylabel("loss (solid)", color="C0")
        acc = ax.twinx()
        acc.plot(self.alphas, [100 * a for a in self.accs], "--", color="C1", label="accuracy")
        acc.set_ylabel("accuracy, % (dashed)", color="C1")
        acc.spines["right"].set_visible(True)
        return ax


@dataclass
class Landscape2D:
    alphas: List[float]
    betas: List[float]
    losses: List[List[float]]   # losses[i][j] at (alphas[i], betas[j])
    images: int

    def rows(self) -> List[dict]:
        return [{"alpha": a, "beta": b, "loss": self.losses[i][j]}
                for i, a in enumerate(self.alphas) for j, b in enumerate(self.betas)]

    def line(self, label: str = "") -> str:
        flat = [v for row in self.losses for v in row]
        return f"{label + ': ' if label else ''}loss over the grid: min {min(flat):.4f}, max {max(flat):.4f}"

    def plot(self, ax):
        z = np.asarray(self.losses, float).T  # contour wants z[y, x]
        finite = z[np.isfinite(z)]
        levels = np.linspace(finite.min(), min(finite.max(), finite.min() * 4 + 1), 20) if finite.size else 20
        cs = ax.contour(self.alphas, self.betas, z, levels=levels, cmap="viridis")
        ax.clabel(cs, fontsize=6, fmt="%.2f")
        ax.plot([0], [0], "r*", ms=10, label="trained weights")
        ax.set(xlabel="alpha (direction 1)", ylabel="beta (direction 2)",
               title=f"2-D loss landscape ({self.images} images)")
        ax.legend(fontsize="small")
        return ax


def _grid(points: int, span: float) -> List[float]:
    if points < 2 or span <= 0:
        raise CnnlabError(f"a landscape needs points >= 2 and span > 0, got points={points} span={span}")
    return [float(v) for v in np.linspace(-span, span, points)]


def landscape_1d(model: nn.Module, batches, points: int = 21, span: float = 1.0, seed: int = 0,
                 ax=None) -> Landscape1D:
    alphas = _grid(points, span)
    d = filter_normalised_direction(model, torch.Generator().manual_seed(seed))
    res = _losses_at(model, batches, [d], [(a,) for a in alphas])
    out = Landscape1D(alphas, [r[0] for r in res], [r[1] for r in res], sum(len(y) for _, y in batches))
    if ax is not None:
        out.plot(ax)
    return out


def landscape_2d(model: nn.Module, batches, points: int = 11, span: float = 1.0, seed: int = 0,
                 ax=None) -> Landscape2D:
    grid = _grid(points, span)
    gen = torch.Generator().manual_seed(seed)
    d1 = filter_normalised_direction(model, gen)
    d2 = filter_normalised_direction(model, gen)
    res = _losses_at(model, batches, [d1, d2], [(a, b) for a in grid for b in grid])
    losses = [[res[i * points + j][0] for j in range(points)] for i in range(points)]
    out = Landscape2D(grid, grid, losses, sum(len(y) for _, y in batches))
    if ax is not None:
        out.plot(ax)
    return out
