"""BatchLoader: the whole split as one uint8 tensor on the device, cut into augmented, normalised batches.

Following airbench (KellerJordan/cifar10-airbench), the images are moved to the device once and every batch is
gathered, augmented (cnnlab.data.augment) and normalised with tensor operations: no DataLoader, no worker processes.

Determinism: the batch order and the augmentation parameters are pure functions of (seed, epoch), so a run resumed
at epoch e reproduces the uninterrupted run without saving loader state. Distributed (DDP): rank r of W takes
positions r, r+W, ... of every global batch of batch_size x W images, and keeps the same rows of the augmentation
parameters drawn for the global batch, so the union of the ranks' batches is exactly the single-process batch.
Batch augmentation (Hoffer et al. 2019, "Augment your batch"): with repeats M each image appears M times in its
batch, every copy augmented independently, so a batch holds batch_size x M images.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from typing import Iterator, Optional, Sequence, Tuple

import torch

from cnnlab.data.augment import build_augmentation, select
from cnnlab.data.core import Split
from cnnlab.errors import CnnlabError

ORDER, AUGMENT = 0, 1  # purposes of the per-epoch generators


def epoch_generator(seed: int, epoch: int, purpose: int) -> torch.Generator:
    """A CPU generator that depends only on (seed, epoch, purpose); a hash keeps nearby seeds' streams unrelated."""
    digest = hashlib.sha256(f"cnnlab:{seed}:{epoch}:{purpose}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _whole(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise CnnlabError(f"BatchLoader: {name} must be a whole number >= {low}, got {value!r}")
    return value


class BatchLoader:
    """Yields (x, y): x `dtype` [batch_size x repeats, C, H, W] normalised on `device`; y int64 on device or None.

    `batch_size` may be changed between epochs (cyclical batch-size schedules); `set_epoch(e)` selects the epoch.
    """

    def __init__(self, split: Split, batch_size: int, *, shuffle: bool = False, augment=None, repeats: int = 1,
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None, device="cpu",
                 dtype: torch.dtype = torch.float32, channels_last: bool = False, drop_last: bool = False,
                 seed: int = 0, rank: int = 0, world_size: int = 1, threads: Optional[int] = 1):
        self.batch_size = _whole(batch_size, "batch_size", 1)
        self.repeats = _whole(repeats, "repeats", 1)
        self.world_size = _whole(world_size, "world_size", 1)
        self.rank = _whole(rank, "rank", 0)
        if self.rank >= self.world_size:
            raise CnnlabError(f"BatchLoader: rank {rank} must be below world_size {world_size}")
        self.shuffle, self.drop_last, self.seed = bool(shuffle), bool(drop_last), int(seed)
        self.device, self.dtype, self.channels_last = torch.device(device), dtype, bool(channels_last)
        self.pipeline = build_augmentation(augment)
        # Intra-op threads while preparing a CPU batch (None: the process's setting). A batch is ~0.5 ms of
        # memory-bound work: a second thread saves little on an idle machine, while every OpenMP barrier waits a
        # scheduler slice when the cores are busy (measured on 2 shared cores: 75-115k images/s with 1 thread,
        # 2-6k with 2). The process's own setting is restored before each batch is yielded to the model.
        self.threads = None if threads is None else _whole(threads, "threads", 1)
        self.epoch = 0
        # moved to the device once; every batch is then an index_select on the device
        self.x = split.x.to(self.device)
        self.y = split.y.to(self.device) if split.y is not None else None
        self.scale, self.shift = self._normaliser(split.x.shape[1], mean, std)

    def _normaliser(self, channels: int, mean, std) -> Tuple[torch.Tensor, torch.Tensor]:
        """(x/255 - mean)/std folded into one multiply-add: x * scale + shift, per channel."""
        mean = torch.zeros(channels, dtype=torch.float64) if mean is None else torch.tensor(mean, dtype=torch.float64)
        std = torch.ones(channels, dtype=torch.float64) if std is None else torch.tensor(std, dtype=torch.float64)
        if mean.shape != (channels,) or std.shape != (channels,):
            raise CnnlabError(f"BatchLoader: mean and std need {channels} values (one per channel), got "
                              f"{mean.tolist()} and {std.tolist()}")
        if (std <= 0).any():
            raise CnnlabError(f"BatchLoader: std must be positive, got {std.tolist()}")
        scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
        shift = (-mean / std).view(1, -1, 1, 1)
        return scale.to(self.device, self.dtype), shift.to(self.device, self.dtype)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.dtype).mul_(self.scale).add_(self.shift)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.global_batch if self.drop_last else math.ceil(n / self.global_batch)

    @property
    def num_samples(self) -> int:
        """Images per epoch on this rank, before repeats."""
        used = len(self) * self.global_batch if self.drop_last else len(self.x)
        return len(range(self.rank, used, self.world_size))

    def order(self) -> torch.Tensor:
        """This epoch's order of the whole split (CPU): a seeded permutation, or 0..N-1 without shuffle."""
        if not self.shuffle:
            return torch.arange(len(self.x))
        return torch.randperm(len(self.x), generator=epoch_generator(self.seed, self.epoch, ORDER))

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
        order = self.order()
        gen = epoch_generator(self.seed, self.epoch, AUGMENT)
        for b in range(len(self)):
            with self._prep_threads():
                batch = self._batch(order[b * self.global_batch:(b + 1) * self.global_batch], gen)
            yield batch  # outside the context: the consumer (the model) runs with its own thread setting

    @contextlib.contextmanager
    def _prep_threads(self):
        """Prepare CPU batches with `threads` intra-op threads, restoring the process's setting afterwards."""
        prev = torch.get_num_threads()
        if self.device.type != "cpu" or self.threads is None or self.threads == prev:
            yield
            return
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(prev)

    def _batch(self, batch: torch.Tensor, gen: torch.Generator):
        """This rank's share of one global batch (indices into the split): gathered, repeated, augmented."""
        m = self.repeats
        mine = torch.arange(self.rank, len(batch), self.world_size)
        idx = (batch if self.world_size == 1 else batch.index_select(0, mine)).to(self.device)
        x = self.x.index_select(0, idx)
        y = self.y.index_select(0, idx) if self.y is not None else None
        if m > 1:
            x = x.repeat_interleave(m, 0)
            y = y.repeat_interleave(m, 0) if y is not None else None
        if len(self.pipeline):
            # parameters for the whole global batch, this rank's rows kept (identical to a single process)
            params = self.pipeline.sample(len(batch) * m, gen)
            if self.world_size > 1:
                params = select(params, (mine[:, None] * m + torch.arange(m)).reshape(-1))
            x = self.pipeline.apply(x, params, finish=self.normalise)
        else:
            x = self.normalise(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y
