"""Range tests: where is the good learning rate, and which batch sizes are worth cycling between.

- Continuous learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks", §3.3;
  the exponential variant and the smoothed loss with a divergence stop follow fastai's `lr_find`): the learning rate
  rises from `start` to `end` over a number of steps, exponentially or linearly; the test stops once an exponential
  moving average of the loss (bias-corrected) exceeds `diverge` times its best value. That average is causal and so
  lags by about 1/(1-beta) steps, which would shift every suggestion to a higher rate; the suggestions are therefore
  read from a centred moving average of the same loss (window: a tenth of the steps), which does not lag.
- Discrete sweep: k candidate rates, each trained for a few epochs from the same initial state, the mean training
  loss of the last epoch against the rate.
- Batch-size range test: each batch size trained for the same number of steps from the same initial state at the
  same learning rate (Smith, Kindermans, Ying & Le 2018, "Don't Decay the Learning Rate, Increase the Batch Size":
  a larger batch acts like a smaller step noise), large batches split into micro-batches (gradient accumulation) when
  memory runs out.

Every test restores the model, optimizer, schedule and RNG state afterwards (`common.preserved`), so it can run on a
model that is about to be trained. Suggestion rules are registered by name in `LR_RULES` and documented there.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from cnnlab.analysis.common import preserved, run_steps
from cnnlab.analysis.smoothness import smoothness_words
from cnnlab.errors import CnnlabError
from cnnlab.plotting import new_figure
from cnnlab.registry import Registry

logger = logging.getLogger(__name__)  # one line per rate or batch size; `log=` sends them elsewhere

LR_RULES = Registry("lr rule")

LR_MODES = ("exp", "linear")
FALL_FRACTION = 0.1   # "smith": lr_min is where the loss has made this share of its total fall
BASE_RATIO = 4.0      # Smith 2017 §3.3: base_lr "3 or 4 times less than" max_lr


# ----------------------------------------------------------------------------------------------------------------------
# Suggestion rules: (lrs ascending, losses) -> (lr_min, lr_max, how). Non-finite losses count as diverged.

@dataclass
class Suggestion:
    lr_min: float
    lr_max: float
    rule: str
    how: str

    def line(self) -> str:
        return f"suggested lr_min={self.lr_min:.3g} lr_max={self.lr_max:.3g} (rule {self.rule!r}: {self.how})"


def _usable(lrs: Sequence[float], losses: Sequence[float]) -> Tuple[np.ndarray, np.ndarray, int]:
    """Arrays cut at the first non-finite loss, and the index of the lowest loss."""
    lrs, losses = np.asarray(lrs, float), np.asarray(losses, float)
    bad = np.flatnonzero(~np.isfinite(losses))
    n = int(bad[0]) if len(bad) else len(losses)
    if n < 2:
        raise CnnlabError("the range test has fewer than two finite losses, so no learning rate can be suggested; "
                          "lower the start learning rate (--start)")
    return lrs[:n], losses[:n], int(np.argmin(losses[:n]))


@LR_RULES.register("smith")
def _rule_smith(lrs, losses) -> Tuple[float, float, str]:
    lrs, losses, i_min = _usable(lrs, losses)
    fall = losses[0] - losses[i_min]
    if fall <= 0:
        return lrs[0], lrs[0], "the loss never falls below its first value; try a wider range"
    i_lo = int(np.argmax(losses[: i_min + 1] <= losses[0] - FALL_FRACTION * fall))
    return (lrs[i_lo], lrs[i_min], f"lr_min where the loss has made {FALL_FRACTION:.0%} of its fall, "
                                    "lr_max at the lowest loss")


@LR_RULES.register("steepest")
def _rule_steepest(lrs, losses) -> Tuple[float, float, str]:
    lrs, losses, i_min = _usable(lrs, losses)
    if i_min == 0:
        return lrs[0] / BASE_RATIO, lrs[0], "the loss never falls; lr_max is the first rate"
    slope = np.gradient(losses[: i_min + 1], np.log(lrs[: i_min + 1]))
    i = int(np.argmin(slope))
    return (lrs[i] / BASE_RATIO, lrs[i], f"lr_max at the steepest fall of loss per log(lr), lr_min = "
                                         f"lr_max/{BASE_RATIO:g}")


@LR_RULES.register("min10")
def _rule_min10(lrs, losses) -> Tuple[float, float, str]:
    lrs, losses, i_min = _usable(lrs, losses)
    top = lrs[i_min] / 10
    return top / BASE_RATIO, top, f"lr_max = (lr at the lowest loss)/10, lr_min = lr_max/{BASE_RATIO:g}"


def suggest(lrs: Sequence[float], losses: Sequence[float], rule: str = "smith") -> Suggestion:
    """The rule's (lr_min, lr_max), never an empty range: on a coarse grid (a discrete sweep of decades) the whole
    fall can happen between two neighbouring rates, and a rule then gives lr_min = lr_max; the range is widened to
    the neighbouring rate below lr_max (or lr_max / BASE_RATIO at the bottom of the grid), and the reason says so."""
    lo, hi, how = LR_RULES.get(rule)(lrs, losses)
    if lo >= hi:
        below = [float(v) for v in lrs if float(v) < float(hi)]
        lo = max(below) if below else float(hi) / BASE_RATIO
        how += (f"; the rule gave lr_min = lr_max = {float(hi):.3g}, so lr_min is widened to "
                + ("the next rate below" if below else f"lr_max/{BASE_RATIO:g}") + " (a finer grid would place it)")
    return Suggestion(float(lo), float(hi), rule, how)


# ----------------------------------------------------------------------------------------------------------------------
# Continuous range test

def lr_at_step(start: float, end: float, steps: int, mode: str = "exp") -> Callable[[int], float]:
    """Step i of `steps` -> learning rate; exp: geometric from start to end, linear: arithmetic."""
    if mode not in LR_MODES:
        raise CnnlabError(f"unknown lr range mode {mode!r}; choose one of {', '.join(LR_MODES)}")
    if not 0 < start < end:
        raise CnnlabError(f"the range test needs 0 < start < end, got start={start:g} end={end:g}")
    if steps < 2:
        raise CnnlabError(f"the range test needs at least 2 steps, got {steps}")
    if mode == "exp":
        return lambda i: start * (end / start) ** (min(i, steps - 1) / (steps - 1))
    return lambda i: start + (end - start) * min(i, steps - 1) / (steps - 1)


def centred_mean(values: Sequence[float], half: int) -> List[float]:
    """Mean over values[i-half : i+half+1], the window cut at both ends (a non-finite value spoils its window)."""
    v = np.asarray(values, float)
    return [float(v[max(0, i - half): i + half + 1].mean()) for i in range(len(v))]


def ema(values: Sequence[float], beta: float) -> List[float]:
    """Bias-corrected exponential moving average (as Adam's moments): early values are not pulled toward 0."""
    out, avg = [], 0.0
    for i, v in enumerate(values):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** (i + 1)))
    return out


@dataclass
class LRRange:
    lrs: List[float]
    losses: List[float]
    smoothed: List[float]    # centred moving average: what the suggestion reads
    ema: List[float]         # causal average: what the divergence stop reads
    mode: str
    stopped_early: bool
    suggestion: Suggestion

    def rows(self) -> List[dict]:
        return [{"step": i, "lr": lr, "loss": l, "smoothed_loss": s, "ema_loss": e}
                for i, (lr, l, s, e) in enumerate(zip(self.lrs, self.losses, self.smoothed, self.ema))]

    def plot(self, ax):
        ax.plot(self.lrs, self.losses, color="0.75", lw=0.8, label="batch loss")
        ax.plot(self.lrs, self.smoothed, color="C0", label="smoothed loss (centred mean)")
        _mark(ax, self.suggestion)
        if self.mode == "exp":
            ax.set_xscale("log")
        finite = [s for s in self.smoothed if math.isfinite(s)]
        if finite:  # the divergence at the end would squash the interesting part of the curve
            ax.set_ylim(min(finite) * 0.95, min(max(finite), 1.5 * self.smoothed[0]) * 1.05)
        ax.set(xlabel="learning rate", ylabel="training loss", title="learning-rate range test")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
        return ax


def _mark(ax, s: Suggestion) -> None:
    ax.axvline(s.lr_min, color="C2", ls="--", label=f"lr_min {s.lr_min:.2g}")
    ax.axvline(s.lr_max, color="C3", ls="--", label=f"lr_max {s.lr_max:.2g}")


def lr_range_test(trainer, start: float = 1e-7, end: float = 10.0, steps: int = 100, mode: str = "exp",
                  beta: float = 0.98, diverge: float = 4.0, rule: str = "smith", ax=None) -> LRRange:
    """Smith's range test on `trainer` (model, optimizer, batches as configured); the trainer is restored after."""
    LR_RULES.get(rule)  # an unknown rule fails before the training, not after
    if not 0 <= beta < 1:
        raise CnnlabError(f"the loss smoothing factor must be in [0, 1), got {beta}")
    schedule = lr_at_step(start, end, steps, mode)
    state = {"avg": 0.0, "best": math.inf}

    def diverged(losses: List[float]) -> bool:
        i = len(losses)
        state["avg"] = beta * state["avg"] + (1 - beta) * losses[-1]
        s = state["avg"] / (1 - beta ** i)
        state["best"] = min(state["best"], s)
        return not math.isfinite(s) or (i > 1 and s > diverge * state["best"])

    with preserved(trainer):
        losses = run_steps(trainer, steps, lr_at=schedule, stop=diverged)
    lrs = [schedule(i) for i in range(len(losses))]
    smoothed = centred_mean(losses, max(1, len(losses) // 20))
    result = LRRange(lrs, losses, smoothed, ema(losses, beta), mode, len(losses) < steps,
                     suggest(lrs, smoothed, rule))
    if ax is not None:
        result.plot(ax)
    return result


# ----------------------------------------------------------------------------------------------------------------------
# Discrete sweep

def candidates(k: int, low: float, high: float) -> List[float]:
    """k rates spaced evenly in log between low and high (the course's 10 between 1e-9 and 1e1)."""
    if k < 2 or not 0 < low < high:
        raise CnnlabError(f"a learning-rate sweep needs k >= 2 and 0 < low < high, got k={k} low={low:g} high={high:g}")
    return [float(v) for v in np.geomspace(low, high, k)]


@dataclass
class LRSweep:
    lrs: List[float]
    losses: List[float]            # mean training loss of the last epoch; nan where the run diverged
    curves: List[List[float]]      # every step's batch loss, per rate
    epochs: int
    suggestion: Suggestion

    def rows(self) -> List[dict]:
        return [{"lr": lr, "final_train_loss": l, "diverged": int(not math.isfinite(l)), "steps": len(c)}
                for lr, l, c in zip(self.lrs, self.losses, self.curves)]

    def plot(self, ax):
        ok = [(lr, l) for lr, l in zip(self.lrs, self.losses) if math.isfinite(l)]
        if ok:
            ax.plot(*zip(*ok), "o-", color="C0", label=f"training loss after {self.epochs} epoch(s)")
            top = max(l for _, l in ok)
            bad = [lr for lr, l in zip(self.lrs, self.losses) if not math.isfinite(l)]
            if bad:
                ax.plot(bad, [top * 1.05] * len(bad), "x", color="C3", ms=9, label="diverged")
        _mark(ax, self.suggestion)
        ax.set_xscale("log")
        ax.set(xlabel="learning rate", ylabel="training loss", title="learning-rate sweep")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
        return ax


def lr_sweep(trainer, lrs: Sequence[float], epochs: int = 2, rule: str = "smith",
             log: Optional[Callable[[str], None]] = None, ax=None) -> LRSweep:
    """Train from the same initial state at each constant rate for `epochs` epochs; the trainer is restored after."""
    LR_RULES.get(rule)
    log = log or logger.info
    ipe = len(trainer.train_loader)
    lrs = sorted(float(v) for v in lrs)
    losses, curves = [], []
    for lr in lrs:
        with preserved(trainer):
            curve = run_steps(trainer, epochs * ipe, lr_at=lambda i, lr=lr: lr)
            blew_up = trainer.status == "diverged" or len(curve) < epochs * ipe
        last = curve[-ipe:]
        loss = float("nan") if blew_up or not all(map(math.isfinite, last)) else float(np.mean(last))
        log(f"lr {lr:.3g}: final training loss {loss:.4f}" + ("  (diverged)" if math.isnan(loss) else ""))
        losses.append(loss)
        curves.append(curve)
    result = LRSweep(lrs, losses, curves, epochs, suggest(lrs, losses, rule))
    if ax is not None:
        result.plot(ax)
    return result


# ----------------------------------------------------------------------------------------------------------------------
# Batch-size range test

BATCH_HALF, BATCH_MOST = 0.5, 0.9  # shares of the attainable loss fall that set b_min and b_max
# Below this relative fall from the smallest batch to the best, the batch size makes no difference worth a policy:
# the spread is what reordering the same batches does (at a small lr the step size, not the gradient noise, limits
# how far the steps get).
BATCH_FLAT = 0.01


def batch_sizes(low: int = 64, high: int = 8192) -> List[int]:
    """Powers of two from low to high."""
    if not 0 < low <= high:
        raise CnnlabError(f"batch sizes need 0 < low <= high, got {low} and {high}")
    out, b = [], low
    while b <= high:
        out.append(b)
        b *= 2
    return out


@dataclass
class BatchRange:
    sizes: List[int]
    losses: List[float]            # mean batch loss over the last `window` steps; nan where it diverged
    micro: List[Optional[int]]     # micro-batch used (None: whole batch in one pass)
    steps: int
    window: int
    b_min: int
    b_max: int
    how: str
    curves: List[List[float]] = field(default_factory=list)

    def line(self) -> str:
        return (f"suggested batch.policy=cyclical batch.min={self.b_min} batch.max={self.b_max} ({self.how})")

    def rows(self) -> List[dict]:
        return [{"batch_size": b, "final_train_loss": l, "micro_batch": m or b, "steps": self.steps}
                for b, l, m in zip(self.sizes, self.losses, self.micro)]

    def plot(self, ax):
        ax.plot(self.sizes, self.losses, "o-", color="C0", label=f"training loss after {self.steps} steps")
        ax.axvline(self.b_min, color="C2", ls="--", label=f"b_min {self.b_min}")
        ax.axvline(self.b_max, color="C3", ls="--", label=f"b_max {self.b_max}")
        ax.set_xscale("log", base=2)
        ax.set(xlabel="batch size", ylabel="training loss", title="batch-size range test")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
        return ax


def suggest_batch(sizes: Sequence[int], losses: Sequence[float]) -> Tuple[int, int, str]:
    """b_min: smallest size reaching half of the loss fall from the smallest batch to the best one; b_max: smallest
    size reaching 90% of it, beyond which a bigger batch buys little per step. Both on the finite losses."""
    ok = [(b, l) for b, l in zip(sizes, losses) if math.isfinite(l)]
    if not ok:
        raise CnnlabError("every batch size diverged; lower optim.lr and run find-batch again")
    first, best = ok[0][1], min(l for _, l in ok)
    if first - best <= 0:
        b = ok[0][0]
        return b, b, "the loss does not fall with the batch size: no cyclical range, keep the smallest batch"
    if (first - best) < BATCH_FLAT * abs(first):
        b = ok[0][0]
        return b, b, (f"the loss falls by only {(first - best) / abs(first):.2%} from batch {b} to the best: the batch "
                      "size hardly matters here (try a larger lr), no cyclical range, keep the smallest batch")
    gain = [(b, (first - l) / (first - best)) for b, l in ok]
    b_min = next(b for b, g in gain if g >= BATCH_HALF)
    b_max = next(b for b, g in gain if g >= BATCH_MOST)
    if b_min == b_max:  # one grid step can cover both shares; a cycle needs two sizes
        smaller = [b for b, _ in ok if b < b_max]
        b_min = smaller[-1] if smaller else b_min
    return b_min, b_max, (f"b_min reaches {BATCH_HALF:.0%} and b_max {BATCH_MOST:.0%} of the loss fall from batch "
                          f"{ok[0][0]} to the best")


def _out_of_memory(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and ("out of memory" in str(e) or "can't allocate memory" in str(e)))


def _train_batch(trainer, b: int, steps: int, micro: Optional[int]) -> Tuple[List[float], bool]:
    """`steps` steps at batch size b from the current state (restored after): the losses and a divergence flag."""
    with preserved(trainer):
        trainer.use_batch(b, micro)
        curve = run_steps(trainer, steps)
        return curve, trainer.status == "diverged" or len(curve) < steps


def _train_in_memory(trainer, b: int, steps: int, micro: Optional[int], log: Callable[[str], None]) -> tuple:
    """(curve, blew_up, micro) of `steps` steps at batch size `b`; on running out of memory the micro-batch is
    halved and the size retried, down to one image."""
    m = micro
    while True:
        try:
            curve, blew_up = _train_batch(trainer, b, steps, m)
            return curve, blew_up, m
        except Exception as e:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
            if not _out_of_memory(e) or (m or b) <= 1:
                raise
            m = max(1, (m or b) // 2)
            log(f"batch {b}: out of memory, retrying with micro-batches of {m}")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def batch_range_test(trainer, sizes: Sequence[int], steps: int = 50, micro: Optional[int] = None,
                     log: Optional[Callable[[str], None]] = None, ax=None) -> BatchRange:
    """Train `steps` steps at each batch size (same lr, same initial state); the trainer is restored after.

    micro: largest micro-batch per forward pass (None: whole batch); on running out of memory the micro-batch is
    halved and the size retried, so large batches are simulated by gradient accumulation.
    """
    log = log or logger.info
    n = len(trainer.ds.train)
    usable = sorted(b for b in sizes if b <= n)
    if len(usable) < len(sizes):
        log(f"note: batch sizes above the {n:,} training images are left out: "
            f"{', '.join(str(b) for b in sorted(sizes) if b > n)}")
    if len(usable) < 2:
        raise CnnlabError(f"find-batch needs at least two batch sizes <= {n:,} (the training images); "
                          "raise data.train_subset or lower the sizes")
    window = max(1, steps // 5)  # the last fifth of the steps: one batch's loss is too noisy to compare
    losses, used, curves = [], [], []
    for b in usable:
        curve, blew_up, m = _train_in_memory(trainer, b, steps, micro, log)
        loss = float("nan") if blew_up else float(np.mean(curve[-window:]))
        log(f"batch {b}: training loss {loss:.4f} over the last {window} of {steps} steps"
            + (f" (micro-batches of {m})" if m and m < b else ""))
        losses.append(loss)
        used.append(m if m and m < b else None)
        curves.append(curve)
    b_min, b_max, how = suggest_batch(usable, losses)
    result = BatchRange(usable, losses, used, steps, window, b_min, b_max, how, curves)
    if ax is not None:
        result.plot(ax)
    return result


# ----------------------------------------------------------------------------------------------------------------------
# The batch-size finder as a block diagram (HW3 2.5), drawn from the constants the code uses

def _finder_steps(sizes: Optional[Sequence[int]], steps: Optional[int], lr: Optional[float]) -> List[tuple]:
    """The diagram's boxes, top to bottom: (shape, text)."""
    sizes = list(sizes) if sizes else batch_sizes()
    shown = ", ".join(str(b) for b in sizes[:2]) + (", ..., " + str(sizes[-1]) if len(sizes) > 2 else "")
    at = f"lr fixed at {lr:g}" if lr is not None else "lr fixed"
    train = (f"train {steps:,} steps at B (the same number for every B)" if steps else
             "train the same number of steps at every B")
    return [
        ("start", f"model at w0, {at}; candidate sizes B = {shown}"),
        ("box", "next B: restore w0, optimizer and RNG (the same start for every B)"),
        ("diamond", "B fits in memory?"),
        ("box", train),
        ("box", "record the mean loss of the last steps; NaN/inf marks B as diverged"),
        ("diamond", "more sizes?"),
        ("box", "fall = loss(smallest B) - lowest loss; gain(B) = (loss(smallest) - loss(B)) / fall"),
        ("diamond", f"fall >= {BATCH_FLAT:.0%} of loss(smallest B)?"),
        ("box", f"b_min = smallest B with gain >= {BATCH_HALF:.0%};  b_max = smallest B with gain >= "
                f"{BATCH_MOST:.0%} (b_min < b_max)"),
        ("start", "cyclical batch size between b_min and b_max"),
    ]


def batch_finder_diagram(sizes: Optional[Sequence[int]] = None, steps: Optional[int] = None,
                         lr: Optional[float] = None):
    """A flowchart Figure of `batch_range_test` + `suggest_batch`; its numbers are the module's constants and, where
    given, the test's own sizes, steps and lr (as `find-batch` would run with the same arguments), so the picture
    cannot drift from the code or from the test that ran."""
    steps = _finder_steps(sizes, steps, lr)
    fig, axes = new_figure(figsize=(8.2, 7.2))
    ax = axes[0][0]
    ax.set_xlim(0, 10)
    ax.set_ylim(0, len(steps) * 1.1)
    ax.axis("off")
    ys = [len(steps) * 1.1 - 0.6 - i * 1.1 for i in range(len(steps))]
    for (kind, text), y in zip(steps, ys):
        style = {"start": "round,pad=0.3,rounding_size=0.4", "box": "square,pad=0.3",
                 "diamond": "darrow,pad=0.3"}[kind]
        face = {"start": "#dfe8f6", "box": "white", "diamond": "#fdf3d8"}[kind]
        ax.text(5, y, text, ha="center", va="center", fontsize=9.5, wrap=True,
                bbox=dict(boxstyle=style, fc=face, ec="#2b5797", lw=1.2))
    for a, b in zip(ys[:-1], ys[1:]):
        ax.annotate("", (5, b + 0.32), (5, a - 0.32), arrowprops=dict(arrowstyle="->", color="#333"))
    # side branches: out of memory -> micro-batches; more sizes -> loop back
    # side branches end at a box's right edge, so that no arrow crosses a box's text
    ax.annotate("no: split B into micro-batches\n(gradient accumulation, same update)", (7.4, ys[3]),
                (8.7, ys[2]), fontsize=8.5, ha="center", va="center",
                arrowprops=dict(arrowstyle="->", color="#b00", connectionstyle="arc3,rad=-0.2"))
    ax.annotate("yes: next size", (1.2, ys[1]), (1.2, ys[5]), fontsize=8.5, ha="center", va="center",
                arrowprops=dict(arrowstyle="->", color="#2b5797", connectionstyle="arc3,rad=-0.3"))
    ax.annotate("no: the batch size hardly\nmatters; keep the smallest", (6.95, ys[7]), (8.75, ys[7]),
                fontsize=8.5, ha="center", va="center", color="#b00",
                arrowprops=dict(arrowstyle="<-", color="#b00"))
    ax.set_title("Batch-size finder (cnnlab find-batch): how b_min and b_max are chosen")
    return fig


# ----------------------------------------------------------------------------------------------------------------------
# The results in plain words, for a report's answer: read back from the CSV a range test wrote (so that a report
# rebuilt from committed files says the same), with the numbers a student needs to see where the range came from.

def _g(v: float) -> str:
    return f"{v:.3g}"


def lr_words(rows: Sequence[dict], rule: str = "smith") -> str:
    """`find-lr --discrete` rows (lr, final_train_loss) or continuous rows (lr, smoothed_loss) -> one paragraph."""
    if rows and "smoothed_loss" in rows[0]:
        lrs = [float(r["lr"]) for r in rows]
        losses = [float(r["smoothed_loss"]) for r in rows]
        what = f"over {len(lrs):,} steps from lr {_g(lrs[0])} to {_g(lrs[-1])}, the smoothed training loss"
    else:
        lrs = [float(r["lr"]) for r in rows]
        losses = [float(r["final_train_loss"]) for r in rows]
        steps = int(float(rows[0].get("steps") or 0)) if rows else 0
        each = f" ({steps:,} steps each)" if steps else ""
        what = f"over {len(lrs)} rates from {_g(lrs[0])} to {_g(lrs[-1])}{each}, the training loss"
    s = suggest(lrs, losses, rule)
    ok = [(lr, l) for lr, l in zip(lrs, losses) if math.isfinite(l)]
    best_lr, best = min(ok, key=lambda p: p[1])
    diverged = [lr for lr, l in zip(lrs, losses) if not math.isfinite(l)]
    return (f"lr_min = {_g(s.lr_min)} and lr_max = {_g(s.lr_max)}: {what} went from {ok[0][1]:.3f} at "
            f"{_g(ok[0][0])} to its lowest, {best:.3f}, at {_g(best_lr)}"
            + (f", and diverged at every rate from {_g(diverged[0])} up" if diverged else "")
            + f" ({s.how}).")


def batch_words(rows: Sequence[dict]) -> str:
    """`find-batch` rows (batch_size, final_train_loss, steps) -> one paragraph: b_min, b_max and how big the loss
    fall they rest on is (a fall of a few per cent is a weak basis for a range)."""
    sizes = [int(float(r["batch_size"])) for r in rows]
    losses = [float(r["final_train_loss"]) for r in rows]
    b_min, b_max, how = suggest_batch(sizes, losses)
    ok = [(b, l) for b, l in zip(sizes, losses) if math.isfinite(l)]
    best_b, best = min(ok, key=lambda p: p[1])
    fall = (ok[0][1] - best) / abs(ok[0][1]) if ok[0][1] else 0.0
    steps = rows[0].get("steps") if rows else None
    after = f"after {int(float(steps)):,} steps at each batch size, " if steps else ""
    if b_min == b_max:
        return (f"No cyclical range: b_min = b_max = {b_min}; {after}the training loss went from {ok[0][1]:.4f} at "
                f"batch {ok[0][0]:,} to {best:.4f} at {best_b:,} ({how}).")
    return (f"b_min = {b_min:,} and b_max = {b_max:,}: {after}the training loss fell from {ok[0][1]:.4f} at batch "
            f"{ok[0][0]:,} to its lowest, {best:.4f}, at {best_b:,}, a fall of {fall:.1%}; b_min is the smallest "
            f"batch that makes {BATCH_HALF:.0%} of that fall, b_max the smallest that makes {BATCH_MOST:.0%}"
            + (" (a fall this small is a weak basis for a range)" if fall < 0.05 else "") + ".")


# analysis file name (as `cnnlab find-lr/find-batch/smoothness --out` writes it) -> (rows of its CSV, its JSON
# lines) -> words
ANALYSIS_WORDS = {
    "find-lr": lambda rows, lines: lr_words(rows, next((m for l in lines for m in _rule_in(l)), "smith")),
    "find-batch": lambda rows, lines: batch_words(rows),
    "smoothness": lambda rows, lines: smoothness_words(rows),
}


def _rule_in(line: str) -> List[str]:
    """The rule a find-lr result line names ("... (rule 'smith': ...)")."""
    return re.findall(r"rule '(\w+)'", line)
