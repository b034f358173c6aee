"""Training curves: loss and accuracy against epoch, train and val, for one run or several overlaid.

Functions draw on a given matplotlib axis (or make a figure) and return it; saving is the caller's business.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _series(rows, key):
    pts = [(r["epoch"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_curves(runs: Dict[str, List[dict]], axes=None):
    """runs: label -> metrics rows. Draws loss (left) and accuracy (right); returns the two axes."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss, ax_acc = axes
    for i, (label, rows) in enumerate(runs.items()):
        color = f"C{i % 10}"
        for key, ax, style in (("train_loss", ax_loss, "--"), ("val_loss", ax_loss, "-"),
                               ("train_acc", ax_acc, "--"), ("val_acc", ax_acc, "-")):
            x, y = _series(rows, key)
            if x:
                name = f"{label} {key.split('_')[0]}" if len(runs) > 1 else key.split("_")[0]
                ax.plot(x, y, style, color=color, label=name, marker="o" if len(x) < 3 else None)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    return axes


def save_curves(runs: Dict[str, List[dict]], path, title: Optional[str] = None) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    plot_curves(runs, axes)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)  # atomic: a reader never sees a half-drawn PNG
    return path
