"""BatchLoader: the whole split as one uint8 tensor on the device, cut into augmented, normalised batches.

Following airbench (KellerJordan/cifar10-airbench), the images are moved to the device once and every batch is
gathered, augmented (cnnlab.data.augment) and normalised with tensor operations: no DataLoader, no worker processes.
On the CPU, `threads="auto"` picks per epoch the faster of one intra-op thread and the process's setting (see __init__).

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
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from cnnlab import arguments as A
from cnnlab.arguments import checked
from cnnlab.data.augment import Augmentation, Pipeline, Slots, build_augmentation, select
from cnnlab.data.core import Split
from cnnlab.errors import CnnlabError

ORDER, AUGMENT = 0, 1  # purposes of the per-epoch generators


def epoch_generator(seed: int, epoch: int, purpose: int) -> torch.Generator:
    """A CPU generator that depends only on (seed, epoch, purpose); a hash keeps nearby seeds' streams unrelated."""
    digest = hashlib.sha256(f"cnnlab:{seed}:{epoch}:{purpose}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


_AUGMENT = A.instance(Pipeline, "'crop,flip', a list of augmentation names or {name: ..., options} dicts, or a "
                      "Pipeline", convert=build_augmentation, convertible=(str, dict, list, tuple, Augmentation))
# mean / std: one number per channel (the body checks the count and that std is positive)
_STATS = A.either(A.sequence(A.number(), min_len=1, what="a list"), A.instance(torch.Tensor, "a tensor"))


class BatchLoader:
    """Yields (x, y): x `dtype` [batch_size x repeats, C, H, W] normalised on `device`; y int64 on device or None.

    `batch_size` may be changed between epochs (cyclical batch-size schedules); `set_epoch(e)` selects the epoch.
    """

    @checked(split=A.instance(Split, "a Split (e.g. dataset.train)"), batch_size=A.integer(1, 2**31),
             shuffle=A.flag(), augment=_AUGMENT.or_none(),
             repeats=A.integer(1, 1024), mean=_STATS.or_none(), std=_STATS.or_none(),
             device=A.either(A.text(what="a device name"), A.instance(torch.device, "a torch.device")),
             dtype=A.instance(torch.dtype, "a torch.dtype"), channels_last=A.flag(), drop_last=A.flag(),
             seed=A.integer(0, 2**63 - 1), rank=A.integer(0, 2**16), world_size=A.integer(1, 2**16),
             threads=A.either(A.integer(1, 4096), A.text(("auto",))).or_none())
    def __init__(self, split: Split, batch_size: int, *, shuffle: bool = False, augment=None, repeats: int = 1,
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None, device="cpu",
                 dtype: torch.dtype = torch.float32, channels_last: bool = False, drop_last: bool = False,
                 seed: int = 0, rank: int = 0, world_size: int = 1, threads: Union[int, str, None] = "auto"):
        self.batch_size, self.repeats, self.world_size, self.rank = batch_size, repeats, world_size, rank
        if self.rank >= self.world_size:
            raise CnnlabError(f"BatchLoader: rank {rank} must be below world_size {world_size}")
        self.shuffle, self.drop_last, self.seed = bool(shuffle), bool(drop_last), int(seed)
        self.device, self.dtype, self.channels_last = torch.device(device), dtype, bool(channels_last)
        self.pipeline = build_augmentation(augment)
        # Intra-op threads for preparing CPU batches: "auto" (default) times the first batches of every epoch with
        # one thread and with the process's setting and keeps the faster; None: the process's setting; n: n threads.
        # Why: measured on 2 cores (CIFAR crop+flip, batch 128), the process's 2 threads give ~300k images/s on idle
        # cores but collapse to 2-13k as soon as another job holds a core (every OpenMP barrier waits for a
        # descheduled thread), where one thread keeps ~200k. The batches are identical either way; only speed differs.
        self.threads = threads
        self._chooser = _ThreadChooser(self.threads if self.device.type == "cpu" else None)
        self.epoch = 0
        # moved to the device once; every batch is then an index_select on the device. When the augmentation starts
        # with crop/flip, the images are stored with the one-pixel zero border that its gather reads through, so no
        # batch needs a padded copy (measured: ~10% of a CPU batch).
        self.bordered = self.pipeline.starts_with_map
        x = split.x.to(self.device)
        self.x = F.pad(x, (1, 1, 1, 1)) if self.bordered else x
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
        chooser = self._chooser
        chooser.start_epoch()
        for b in range(len(self)):
            plan = self._plan(order[b * self.global_batch:(b + 1) * self.global_batch], gen)
            threads = chooser.next()
            start = time.perf_counter()
            with _intra_op_threads(threads) if threads else contextlib.nullcontext():
                batch = self._make(plan)
            chooser.record(threads, time.perf_counter() - start)
            yield batch  # outside the context: the consumer (the model) runs with the process's setting

    def _plan(self, batch: torch.Tensor, gen: torch.Generator):
        """(this rank's indices into the split, augmentation parameters) for one global batch."""
        mine = torch.arange(self.rank, len(batch), self.world_size)
        idx = batch if self.world_size == 1 else batch.index_select(0, mine)
        if not len(self.pipeline):
            return idx, None
        # parameters for the whole global batch, this rank's rows kept (identical to a single process)
        m = self.repeats
        slots = Slots(image=batch.repeat_interleave(m), copy=torch.arange(m).repeat(len(batch)), epoch=self.epoch,
                      seed=self.seed, population=len(self.x), repeats=m) if self.pipeline.uses_slots else None
        params = self.pipeline.sample(len(batch) * m, gen, slots)
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
        if params is None:
            x = self.normalise(x)
        else:
            x = self.pipeline.apply(x, params, finish=self.normalise, bordered=self.bordered)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y


class _ThreadChooser:
    """Which intra-op thread count prepares the next CPU batch: a fixed setting, or for "auto" the faster of one
    thread and the process's setting, measured on interleaved batches at the start of an epoch.

    The total time of the tries decides, not the fastest try: on busy cores multi-threaded batches are slow only when a
    barrier meets a descheduled thread. A multi-threaded try more than twice as slow as the single-threaded one ends
    the probe at once, and after one thread wins the next probes come 1, 2, 4 ... 16 epochs later, so a busy machine
    pays for few slow batches. None means: leave the process's setting alone.
    """

    PROBE = 4  # tries per candidate
    MAX_SKIP = 16  # epochs

    def __init__(self, setting: Union[int, str, None]):
        self.setting = setting
        self.choice: Optional[int] = None
        self.skip, self.backoff, self.probing = 0, 1, False

    def start_epoch(self) -> None:
        process = torch.get_num_threads()
        if self.setting != "auto" or process == 1:
            self.choice = self.setting if self.setting != "auto" else 1
            return
        if self.skip > 0 and self.choice is not None:
            self.skip -= 1
            return
        self.candidates = [1, process]
        self.times: Dict[int, List[float]] = {n: [] for n in self.candidates}
        self.tries, self.probing = 0, True

    def next(self) -> Optional[int]:
        return self.candidates[self.tries % 2] if self.probing else self.choice

    def record(self, threads: Optional[int], seconds: float) -> None:
        if not self.probing:
            return
        self.times[threads].append(seconds)
        self.tries += 1
        if threads != 1 and seconds > 2 * min(self.times[1]):
            self._decide(1)
        elif self.tries >= 2 * self.PROBE:
            self._decide(min(self.candidates, key=lambda n: sum(self.times[n])))

    def _decide(self, threads: int) -> None:
        self.choice, self.probing = threads, False
        if threads == 1:
            self.skip, self.backoff = self.backoff, min(2 * self.backoff, self.MAX_SKIP)
        else:
            self.skip, self.backoff = 0, 1


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
