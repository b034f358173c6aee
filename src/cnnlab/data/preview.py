"""A dataset's summary (counts per split and class, shape, per-channel mean/std) and example-image grids.

Answers the course question "summarise the dataset and show images from three classes": `summarize` returns the
numbers, `pick_examples` the first images of each class, and `draw_grid` draws them on a matplotlib figure (object API, no
pyplot state) so the CLI can save a PNG, before and after augmentation (so a person sees what the model sees).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch

from cnnlab.data.augment import Pipeline
from cnnlab.plotting import new_figure
from cnnlab.data.core import Dataset, Split, channel_stats


def summarize(ds: Dataset) -> Dict[str, dict]:
    """Per split: images, per-class counts (None when unlabelled), and that split's own per-channel mean/std."""
    out = {}
    for name in ds.splits():
        s = ds.split(name)
        mean, std = channel_stats(s.x)
        counts = dict(zip(ds.classes, s.class_counts(ds.num_classes))) if s.y is not None else None
        out[name] = {"images": len(s), "per_class": counts, "mean": mean, "std": std}
    return out


# Columns of an example grid: each image is one matplotlib axes, so the figure's memory and time grow with
# classes x per_class (100,000 per class took gigabytes and minutes before drawing anything useful).
MAX_PER_CLASS = 64


def pick_examples(split: Split, classes: Sequence[int], per_class: int) -> torch.Tensor:
    """Indices [len(classes), per_class]: the first `per_class` images of each class (a stable, seed-free choice)."""
    rows = []
    for k in classes:
        members = torch.nonzero(split.y == k).flatten()[:per_class]
        if len(members) < per_class:  # a small split: repeat the last image rather than leave holes
            members = torch.cat([members, members[-1:].repeat(per_class - len(members))])
        rows.append(members)
    return torch.stack(rows)


def augmented_for_display(x: torch.Tensor, pipeline: Pipeline, mean, std, seed: int = 0) -> torch.Tensor:
    """The images after augmentation, mapped back to [0, 1] for display (Cutout holes show as the mean colour)."""
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    out = pipeline(x, torch.Generator().manual_seed(seed), finish=lambda u: (u.float() / 255 - m) / s)
    return (out * s + m).clamp(0, 1)


def draw_grid(images: torch.Tensor, row_labels: List[str], title: str = "", ax_size: float = 0.9):
    """A figure with one row per label; `images` is [rows, cols, C, H, W], uint8 or float in [0, 1]."""
    rows, cols = images.shape[:2]
    fig, axes = new_figure(rows, cols, figsize=(cols * ax_size + 1.2, rows * ax_size + 0.4))
    pics = images.float() / 255 if images.dtype == torch.uint8 else images
    for r in range(rows):
        for c in range(cols):
            ax = axes[r][c]
            img = pics[r, c].permute(1, 2, 0).numpy()
            ax.imshow(img[:, :, 0] if img.shape[2] == 1 else img, cmap="gray" if img.shape[2] == 1 else None,
                      vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def example_grids(ds: Dataset, classes: Optional[Sequence[int]] = None, per_class: int = 8,
                  pipeline: Optional[Pipeline] = None, seed: int = 0):
    """(figure of the originals, figure after `pipeline` or None) for the training images of `classes`."""
    classes = list(range(ds.num_classes)) if classes is None else list(classes)
    index = pick_examples(ds.train, classes, per_class)
    x = ds.train.x[index.reshape(-1)]
    labels = [ds.classes[k] for k in classes]
    shape = (len(classes), per_class, *x.shape[1:])
    original = draw_grid(x.reshape(shape), labels, f"{ds.name}: training images per class")
    if pipeline is None or not len(pipeline):
        return original, None
    aug = augmented_for_display(x, pipeline, ds.mean, ds.std, seed).reshape(shape)
    return original, draw_grid(aug, labels, f"{ds.name}: the same images after {pipeline.describe()}")
