"""Images for the analyses that look at a trained model: a fixed subset of a split, or chosen images, normalised the
way the run was trained (through the data layer's BatchLoader) and also kept raw (uint8) for display."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from cnnlab.data.core import stratified_subset
from cnnlab.data.loader import BatchLoader
from cnnlab.errors import CnnlabError


def _split(run, name: str):
    s = run.ds.split(name)  # an unknown or missing split is a CnnlabError naming the available ones
    if len(s) == 0:
        raise CnnlabError(f"split {name!r} of {run.cfg.data.name} is empty; choose another --split")
    return s


SAMPLE_PURPOSE = 7001  # seed stream of analysis subsets, apart from the data layer's val/train-subset streams


def sample(split, n: int, seed: int = 0):
    """n images of a split, every class in proportion where it is labelled (splits are stored class by class, so
    the first n images would be one class), chosen deterministically by seed."""
    if n < 1:
        raise CnnlabError(f"--subset must be at least 1, got {n}")
    n = min(n, len(split))
    if split.y is not None:
        return stratified_subset(split, n, seed, SAMPLE_PURPOSE, "--subset")
    gen = torch.Generator().manual_seed(seed * 1_000_003 + SAMPLE_PURPOSE)
    return split.subset(torch.randperm(len(split), generator=gen)[:n].sort().values)


def batches(run, split: str, n: int, batch_size: int = 250, seed: int = 0) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """n images of `split` (stratified, fixed by seed) as normalised batches on the run's device."""
    s = _split(run, split)
    if s.y is None:
        raise CnnlabError(f"split {split!r} is unlabelled, so it has no loss; use --split train or val")
    loader = BatchLoader(sample(s, n, seed), batch_size, mean=run.ds.mean, std=run.ds.std, device=run.device)
    return [(x, y) for x, y in loader]


def pick(run, split: str, indices: Sequence[int]) -> Tuple[torch.Tensor, Optional[List[int]], np.ndarray]:
    """(normalised images on the run's device, labels or None, raw uint8 images [N, C, H, W]) at `indices`."""
    s = _split(run, split)
    bad = [i for i in indices if not 0 <= i < len(s)]
    if bad:
        raise CnnlabError(f"image index {bad[0]} is outside split {split!r} (0..{len(s) - 1})")
    sub = s.subset(list(indices))
    x, _ = next(iter(BatchLoader(sub, len(sub), mean=run.ds.mean, std=run.ds.std, device=run.device)))
    labels = None if sub.y is None else [int(v) for v in sub.y]
    return x, labels, sub.x.cpu().numpy() if torch.is_tensor(sub.x) else np.asarray(sub.x)


def one_per_class(run, split: str, count: int = 6) -> List[int]:
    """Indices of the first image of each of the first `count` classes (splits are stored class by class, so the
    first few images would all show one class); the first `count` indices of an unlabelled split."""
    s = _split(run, split)
    if s.y is None:
        return list(range(min(count, len(s))))
    firsts = {}
    for i, c in enumerate(s.y.tolist()):
        firsts.setdefault(c, i)
    return [firsts[c] for c in sorted(firsts)][:count]
