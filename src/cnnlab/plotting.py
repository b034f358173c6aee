"""Figures without pyplot: one style for every figure cnnlab draws, built with matplotlib's object API, and one
atomic writer for PNG, SVG and PDF.

Why not pyplot: it keeps global state (the current figure, the backend), and a library module that calls
`matplotlib.use("Agg")` at import switches a notebook's backend under the user. A `matplotlib.figure.Figure` needs
no backend until it is saved and is freed like any other object (no `plt.close`). Jupyter draws one passed to
`display(fig)` once the inline backend is on (`%matplotlib inline`, as the notebooks in notebooks/ start).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Tuple

import matplotlib
from matplotlib.figure import Figure

from cnnlab.fileio import atomic_write_bytes

# One look for every figure: readable at report width (figures are drawn at 100 dpi and shown at about their size),
# a light grid where a plot asks for one (ax.grid()), no top/right frame, text kept as text in SVG (searchable, smaller).
STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8, "xtick.labelsize": 8,
    "ytick.labelsize": 8, "figure.titlesize": 11, "grid.alpha": 0.3, "axes.spines.top": False,
    "axes.spines.right": False, "legend.frameon": False, "svg.fonttype": "none", "lines.linewidth": 1.5,
    "savefig.bbox": "tight", "savefig.pad_inches": 0.05,
    "svg.hashsalt": "cnnlab",  # fixed element ids: the same figure gives the same SVG bytes
}
FORMATS = ("png", "svg", "pdf")
DPI = 100


def new_figure(nrows: int = 1, ncols: int = 1, figsize: Tuple[float, float] = (6.0, 4.0), squeeze: bool = False,
               **subplots):
    """(Figure, axes) in cnnlab's style; axes is a 2-D array unless squeeze=True (then as fig.subplots gives)."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=squeeze, **subplots)
    return fig, axes


_NO_DATE = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}


def figure_bytes(fig: Figure, fmt: str = "png", dpi: int = DPI) -> bytes:
    if fmt not in FORMATS:
        raise ValueError(f"figure format {fmt!r}: use one of {', '.join(FORMATS)}")
    buf = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        # no date keeps SVG/PDF bytes identical between runs of the same figure (the PDF backend calls it
        # CreationDate; passing SVG's "Date" to it is silently ignored and the stamp changes every second)
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=_NO_DATE.get(fmt))
    return buf.getvalue()


def save_figure(fig: Figure, path, dpi: int = DPI) -> Path:
    """Write `fig` to `path` atomically (a reader never sees half a file); the format is the file's suffix."""
    path = Path(path)
    atomic_write_bytes(path, figure_bytes(fig, path.suffix.lstrip(".").lower() or "png", dpi))
    return path
