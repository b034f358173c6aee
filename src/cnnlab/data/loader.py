"""BatchLoader: the whole split as one uint8 tensor on the device, cut into augmented, normalised batches.

Following airbench (KellerJordan/cifar10-airbench), the images are moved to the device once and every batch is
gathered, augmented (cnnlab.data.augment) and normalised with tensor operations: no DataLoader, no worker processes.
On the CPU, whole batches are prepared ahead by `threads` Python threads (torch releases the GIL inside its kernels),
each with one intra-op thread, so no OpenMP barrier ever waits on a busy core.

Determinism: the batch order and the augmentation parameters are pure functions of (seed, epoch), so a run resumed
at epoch e reproduces the uninterrupted run without saving loader state. Distributed (DDP): rank r of W takes
positions r, r+W, ... of every global batch of batch_size x W images, and keeps the same rows of the augmentation
parameters drawn for the global batch, so the union of the ranks' batches is exactly the single-process batch.
Batch augmentation (Hoffer et al. 2019, "Augment your batch"): with repeats M each image appears M times in its
batch, every copy augmented independently, so a batch holds batch_size x M images.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import math
from concurrent.futures import ThreadPoolExecutor
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
                 seed: int = 0, rank: int = 0, world_size: int = 1, threads: Optional[int] = 2):
        self.batch_size = _whole(batch_size, "batch_size", 1)
        self.repeats = _whole(repeats, "repeats", 1)
        self.world_size = _whole(world_size, "world_size", 1)
        self.rank = _whole(rank, "rank", 0)
        if self.rank >= self.world_size:
            raise CnnlabError(f"BatchLoader: rank {rank} must be below world_size {world_size}")
        self.shuffle, self.drop_last, self.seed = bool(shuffle), bool(drop_last), int(seed)
        self.device, self.dtype, self.channels_last = torch.device(device), dtype, bool(channels_last)
        self.pipeline = build_augmentation(augment)
        # CPU batches are prepared by `threads` Python threads with one intra-op thread each (None: in the calling
        # thread with the process's setting). A batch is ~0.5 ms of memory-bound work, and OpenMP's per-op barriers
        # wait a whole scheduler slice when the cores are busy (measured on 2 shared cores: 75-115k images/s with
        # one intra-op thread, 2-6k with two); whole batches prepared side by side need no barrier at all.
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
        # indices and augmentation parameters are drawn here, in batch order, so the batches do not depend on
        # which thread prepares them
        plans = (self._plan(order[b * self.global_batch:(b + 1) * self.global_batch], gen) for b in range(len(self)))
        if self.device.type != "cpu" or self.threads is None:
            yield from (self._make(p) for p in plans)
        elif self.threads == 1:
            for p in plans:
                with _intra_op_threads(1):
                    batch = self._make(p)
                yield batch  # outside the context: the consumer (the model) runs with its own thread setting
        else:
            yield from self._prefetched(plans)

    def _prefetched(self, plans):
        """Batches prepared by `threads` Python threads (one intra-op thread each), yielded in order."""
        with ThreadPoolExecutor(self.threads, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            pending = collections.deque()
            for p in plans:
                pending.append(pool.submit(self._make, p))
                if len(pending) >= self.threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _plan(self, batch: torch.Tensor, gen: torch.Generator):
        """(this rank's indices into the split, augmentation parameters) for one global batch."""
        mine = torch.arange(self.rank, len(batch), self.world_size)
        idx = batch if self.world_size == 1 else batch.index_select(0, mine)
        if not len(self.pipeline):
            return idx, None
        # parameters for the whole global batch, this rank's rows kept (identical to a single process)
        params = self.pipeline.sample(len(batch) * self.repeats, gen)
        if self.world_size > 1:
            params = select(params, (mine[:, None] * self.repeats + torch.arange(self.repeats)).reshape(-1))
        return idx, params

    def _make(self, plan):
        """One batch: gathered on the device, repeated, augmented, normalised."""
        idx, params = plan
        idx = idx.to(self.device)
        x = self.x.index_select(0, idx)
        y = self.y.index_select(0, idx) if self.y is not None else None
        if self.repeats > 1:
            x = x.repeat_interleave(self.repeats, 0)
            y = y.repeat_interleave(self.repeats, 0) if y is not None else None
        x = self.normalise(x) if params is None else self.pipeline.apply(x, params, finish=self.normalise)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y


@contextlib.contextmanager
def _intra_op_threads(n: int):
    """Run the block with n intra-op threads, restoring the calling thread's setting afterwards."""
    prev = torch.get_num_threads()
    if n == prev:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)
