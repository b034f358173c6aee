"""The in-memory dataset types (`Split`, `Dataset`) and the deterministic stratified sampling that carves them.

A split is one uint8 tensor [N, C, H, W] plus int64 labels (None when unlabelled) and optional image ids, the layout
airbench keeps on the device (KellerJordan/cifar10-airbench). Normalisation statistics are computed exactly from a
per-channel histogram of the training pixels, never copied from elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import torch

from cnnlab.errors import CnnlabError

SPLIT_NAMES = ("train", "val", "test", "holdout")


@dataclass
class Split:
    x: torch.Tensor  # uint8 [N, C, H, W] on the CPU
    y: Optional[torch.Tensor]  # int64 [N]; None for an unlabelled split
    ids: Optional[List[str]]  # image ids (file stems; "class/stem" in a labelled folder); None if the source has none

    def __post_init__(self):
        if self.x.dtype != torch.uint8 or self.x.dim() != 4:
            raise ValueError(f"Split.x must be uint8 [N, C, H, W], got {self.x.dtype} {tuple(self.x.shape)}")
        if self.y is not None and len(self.y) != len(self.x):
            raise ValueError(f"Split has {len(self.x)} images but {len(self.y)} labels")
        if self.ids is not None and len(self.ids) != len(self.x):
            raise ValueError(f"Split has {len(self.x)} images but {len(self.ids)} ids")

    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:  # the default would print every id
        kind = "labelled" if self.y is not None else "unlabelled"
        shape = "x".join(str(s) for s in self.x.shape[1:])
        return f"Split({len(self):,} {kind} images {shape}{', with ids' if self.ids is not None else ''})"

    def subset(self, index: Union[int, slice, Sequence[int], torch.Tensor]) -> "Split":
        """A new Split (copied tensors, so nothing mutable is shared): an int n keeps the first n images; a slice, a
        list of indices or a LongTensor of indices keeps those, in that order."""
        if isinstance(index, bool):
            raise TypeError("Split.subset takes an int, a slice or indices, not a bool")
        if isinstance(index, int):
            index = slice(0, index)
        if isinstance(index, slice):
            index = torch.arange(len(self))[index]
        index = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        if index.numel() and (index.min() < -len(self) or index.max() >= len(self)):
            raise IndexError(f"subset index out of range for a split of {len(self)} images")
        index = index % max(len(self), 1)  # negative indices count from the end, as in Python
        # index_select always copies (and is ~7x faster than x[index] for uint8 images on the CPU)
        ids = [self.ids[i] for i in index.tolist()] if self.ids is not None else None
        y = None if self.y is None else self.y.index_select(0, index)
        return Split(self.x.index_select(0, index), y, ids)

    def class_counts(self, num_classes: int) -> List[int]:
        if self.y is None:
            return []
        return torch.bincount(self.y, minlength=num_classes).tolist()


@dataclass
class Dataset:
    name: str  # "cifar10" | "fashion-mnist" | "imagefolder"
    classes: List[str]
    train: Split  # labelled training images, validation images removed (and subset when train_subset is set)
    val: Optional[Split]  # stratified validation split carved from the labelled training images
    test: Optional[Split]  # the official labelled test split, where the source has one
    holdout: Optional[Split]  # the unlabelled split, where the source has one
    # Per-channel mean/std of the training pixels scaled to [0, 1]: computed on the training images left after the
    # validation split is carved, before train_subset, so a quick run on a subset normalises exactly as a full run.
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    source: str  # where it was read from, for people

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.train.x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train.x.shape[2])

    @property
    def shape(self) -> Tuple[int, int, int]:
        return tuple(int(s) for s in self.train.x.shape[1:])

    def splits(self) -> List[str]:
        """Names of the splits this dataset has, in the order train, val, test, holdout."""
        return [n for n in SPLIT_NAMES if getattr(self, n) is not None]

    def split(self, name: str) -> Split:
        if name not in SPLIT_NAMES or getattr(self, name) is None:
            raise CnnlabError(f"{self.name} has no split {name!r}; available splits: {', '.join(self.splits())}")
        return getattr(self, name)


def seeded(seed: int, purpose: int) -> torch.Generator:
    """A CPU generator for one purpose (val split, train subset ...), so changing one never shifts another."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + purpose) % (2**63))


def stratified_pick(y: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Sorted indices of n items chosen at random with every class keeping its share (largest-remainder quotas).

    Quotas are proportional to the class counts; the leftover places go to the largest fractional parts (ties to the
    lower class id), so the result is a pure function of (y, n, generator seed).
    """
    counts = torch.bincount(y)
    total = int(counts.sum())
    exact = counts.double() * n / total
    quota = exact.floor().long()
    left = n - int(quota.sum())
    if left:
        frac = exact - quota.double()
        order = sorted(range(len(counts)), key=lambda k: (-float(frac[k]), k))
        for k in order[:left]:
            quota[k] += 1
    # one stable sort groups each class's indices in their original order (10x faster than a nonzero per class)
    by_class = torch.argsort(y, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    chosen = []
    for k in range(len(counts)):
        members = by_class[int(starts[k]): int(starts[k]) + int(counts[k])]
        chosen.append(members[torch.randperm(len(members), generator=generator)[: int(quota[k])]])
    return torch.cat(chosen).sort().values if chosen else torch.zeros(0, dtype=torch.long)


# Purposes of representative() samples, beside datasets.py's (1-4): one stream each.
END_TRAIN, FIRST_BATCH = 5, 6


def representative(split: Split, n: int, seed: int, purpose: int) -> Split:
    """n images that stand for the whole split: every class in its share where the split is labelled, a seeded
    random n otherwise; the whole split when n covers it. Never "the first n": a split read from class folders (the
    JPEG CIFAR-10's train/) is sorted by class, so its first 10,000 images are 4,500 airplanes, 4,500 automobiles and
    1,000 birds, and a measure taken on them says nothing of the other seven classes."""
    if n >= len(split):
        return split
    if split.y is None:
        return split.subset(torch.randperm(len(split), generator=seeded(seed, purpose))[:n].sort().values)
    return split.subset(stratified_pick(split.y, n, seeded(seed, purpose)))


def carve(split: Split, n: int, seed: int, purpose: int, what: str) -> Tuple[Split, Split]:
    """(picked, rest): n images stratified out of `split`, both halves kept in their original order."""
    if n < 0 or n >= len(split):
        raise CnnlabError(f"{what} must be between 0 and {len(split) - 1} (the split has {len(split):,} images), "
                          f"got {n}")
    picked = stratified_pick(split.y, n, seeded(seed, purpose))
    keep = torch.ones(len(split), dtype=torch.bool)
    keep[picked] = False
    return split.subset(picked), split.subset(torch.nonzero(keep).flatten())


def stratified_subset(split: Split, n: int, seed: int, purpose: int, what: str) -> Split:
    """The first-class way to shrink a labelled split for a quick run: n images, every class in proportion."""
    if n <= 0 or n > len(split):
        raise CnnlabError(f"{what} must be between 1 and {len(split):,} (the images available), got {n}")
    if n == len(split):
        return split
    return split.subset(stratified_pick(split.y, n, seeded(seed, purpose)))


def channel_stats(x: torch.Tensor) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Exact per-channel mean and std of uint8 images scaled to [0, 1].

    A 256-bin histogram per channel gives the sums in float64 without a float copy of the data (45,000 CIFAR images
    take about 0.3 s on one core), so the statistics are recomputed on every load and can never be stale.
    """
    if len(x) == 0:
        raise CnnlabError("cannot compute normalisation statistics of an empty training split")
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(x.shape[1]):
        hist = torch.bincount(x[:, c].reshape(-1), minlength=256).double()
        n = hist.sum()
        mean = (hist * values).sum() / n
        var = (hist * (values - mean) ** 2).sum() / n
        means.append(round(float(mean), 6))
        stds.append(round(float(var.sqrt()), 6))
    return tuple(means), tuple(stds)


@dataclass
class RawData:
    """What a source reader returns, before validation carving: the official splits as the source has them."""

    classes: List[str]
    train: Split  # labelled
    test: Optional[Split] = None  # labelled
    holdout: Optional[Split] = None  # unlabelled
    source: str = ""
