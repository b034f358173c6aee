"""Training curves: loss, accuracy (%) and learning rate against epoch, train and val, for one run or several.

One colour per run, one line style per split (train dashed, validation solid), so a legend needs one entry per run
plus a two-entry key for the styles, and it sits outside the axes where it never covers data. Functions draw on
given axes (or make a figure with cnnlab.plotting) and return them; saving is the caller's business.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from cnnlab.plotting import new_figure, save_figure

PANELS = ("loss", "accuracy", "lr")


def _series(rows, key, scale: float = 1.0):
    pts = [(r["epoch"], r[key] * scale) for r in rows if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pts], [p[1] for p in pts]


def has_lr(runs: Dict[str, List[dict]]) -> bool:
    """Whether some run's learning rate changed during the run: a constant lr gets no panel (it would be a flat
    line saying what the config already says)."""
    return any(len({r["lr"] for r in rows if isinstance(r.get("lr"), (int, float))}) > 1 for rows in runs.values())


def plot_curves(runs: Dict[str, List[dict]], axes=None, train_loss_label: str = "cross-entropy",
                legend: str = "figure"):
    """runs: label -> metrics rows. Draws loss, accuracy in % and (when the rows have it, and three axes are given)
    the learning rate at the end of each epoch; returns the axes. `train_loss_label` names what the training loss
    is (e.g. "cross-entropy + label smoothing 0.1"): the validation loss is always plain cross-entropy. `legend`:
    "figure" (one legend outside the axes), "row" (beside the last of these axes: one row of a grid of such rows)."""
    if axes is None:
        _, grid = new_figure(1, 3 if has_lr(runs) else 2, figsize=(14 if has_lr(runs) else 10, 3.8))
        axes = list(grid[0])
    ax_loss, ax_acc = axes[0], axes[1]
    ax_lr = axes[2] if len(axes) > 2 else None
    many = len(runs) > 1
    for i, (label, rows) in enumerate(runs.items()):
        color = f"C{i % 10}"
        for key, ax, style, scale in (("train_loss", ax_loss, "--", 1), ("val_loss", ax_loss, "-", 1),
                                      ("train_acc", ax_acc, "--", 100), ("val_acc", ax_acc, "-", 100)):
            x, y = _series(rows, key, scale)
            if x:
                ax.plot(x, y, style, color=color, marker="o" if len(x) < 3 else None, markersize=4)
        if ax_lr is not None:
            x, y = _series(rows, "lr")
            if x:
                ax_lr.plot(x, y, "-", color=color, marker="o" if len(x) < 3 else None, markersize=4)
    same = train_loss_label == "cross-entropy"
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss" + ("" if same else f" (train: {train_loss_label})"))
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    if ax_lr is not None:
        # a linear axis: a schedule that anneals to ~0 (one-cycle, cosine) would dive off a log axis at its end
        ax_lr.set(xlabel="epoch", ylabel="learning rate", title="learning rate (end of epoch)")
        ax_lr.set_ylim(bottom=0)
    last = max((r["epoch"] for rows in runs.values() for r in rows if isinstance(r.get("epoch"), int)), default=1)
    for ax in axes:
        ax.grid(True)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no fractional epochs on short runs
        if last <= 3:  # one or two epochs: whole-epoch ticks with room either side
            ax.set_xticks(range(1, last + 1))
            ax.set_xlim(0.5, last + 0.5)
    if legend == "row":
        axes[-1].legend(handles=_handles(runs, many), loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    else:
        _legend(axes[0].figure, runs, many)
    return axes


def _legend(fig, runs: Dict[str, List[dict]], many: bool) -> None:
    """One figure legend outside the axes: the style key, then one entry per run (when there are several)."""
    handles = _handles(runs, many)
    fig.legend(handles=handles, loc="outside right upper" if many else "outside lower center",
               ncol=1 if many else 2)


def _handles(runs: Dict[str, List[dict]], many: bool) -> list:
    """The legend's entries: the style key (train dashed, validation solid), then one colour per run."""
    handles = [Line2D([], [], color="0.3", ls="--", label="train"), Line2D([], [], color="0.3", ls="-",
                                                                           label="validation")]
    if many:
        handles += [Line2D([], [], color=f"C{i % 10}", lw=3, label=label) for i, label in enumerate(runs)]
    return handles


def save_curves(runs: Dict[str, List[dict]], path, title: Optional[str] = None,
                train_loss_label: str = "cross-entropy") -> Path:
    axes = plot_curves(runs, train_loss_label=train_loss_label)
    fig = axes[0].figure
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
