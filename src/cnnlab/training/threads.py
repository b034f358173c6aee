"""The CPU thread count of a run with `train.threads=0`, chosen by measurement during training (issue #26).

torch's default is one intra-op thread per core. On a quiet 2-core machine that is the fastest (SimpleNN on 20,000
Fashion-MNIST images, AMD EPYC Zen 4: 25k img/s against 15k with one thread), but beside one busy process one of the
two threads shares its core, every parallel region waits for it, and the default falls to 7k while one thread keeps
14-15k; beside two busy processes it gives 3.5k. Whether the machine is busy changes while a run trains, so the count
is decided again and again, as the data loader decides its settings: by timing. At the start of an epoch, the first
steps run interleaved at the current count and at its neighbours (one fewer, one more, never above the count the run
started with), and the fastest median is kept; a neighbour must beat the current count by `HYSTERESIS` to replace
it, so noise does not make the count flap. The timed steps are the epoch's real training steps: nothing is repeated
or thrown away (only their floating-point rounding may differ between thread counts).

Steps at a slower neighbour cost time, which matters on a quiet machine, where the default must be no slower than
before. So a probe is not made every epoch: after one, the next waits until the training time since then is
1 / `COST_BUDGET` times what the slower neighbours cost in it (at most `MAX_WAIT_S`, which bounds how long a machine
that has become busy goes unnoticed), and an epoch follows at once a probe that changed the count.

An explicit `train.threads=N` is never changed (the trainer makes no tuner then). The count in use is recorded in
every metrics row (`threads`) and in the checkpoint; a resumed run starts from the recorded count, so an interrupted
run that makes the same choices reproduces the uninterrupted one exactly. The count the run started with is put back
when `fit()` ends, so a later run in the same process starts from the machine's default again.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Iterator, List, Optional, TypeVar

import torch

HYSTERESIS = 1.05     # a neighbour must be this much faster (seconds per step) to replace the current count
ROUNDS = 3            # timed samples per candidate per epoch (medians: one slow sample does not decide)
MIN_SAMPLE_S = 0.02   # a sample is as many steps as last this long: tiny steps are timed in groups
MAX_PROBE_SHARE = 0.5  # probe only in epochs with at least twice the steps the probe needs
COST_BUDGET = 0.01    # probes may cost this share of the training time (their steps at slower neighbours) ...
MAX_WAIT_S = 120.0    # ... but the count is re-decided at the first epoch after this many seconds of training

T = TypeVar("T")
CLOCK = time.perf_counter  # the tuners' clock; tests put in one whose readings depend on the thread count only


class ThreadTuner:
    """Re-decides torch's intra-op thread count at the start of every epoch from timed training steps.

    `epoch(steps, total)` wraps an epoch's step iterator (each `next()` takes one optimizer step) and yields the
    same items; `choices` lists every decision as {epoch, threads, seconds per step by count}. `clock` is injectable
    so that tests can decide the choice without depending on a real timing."""

    def __init__(self, ceiling: int, clock: Optional[Callable[[], float]] = None):
        self.ceiling = max(1, int(ceiling))
        self.start = torch.get_num_threads()
        self.clock = clock or CLOCK
        self.choices: List[dict] = []
        self.since = 0.0  # seconds of training since the last probe
        self.wait = 0.0   # seconds of training to let pass before the next one

    def state_dict(self) -> dict:
        """What a resumed run needs to go on as an uninterrupted one would: the count and the probe schedule."""
        return {"threads": self.threads, "since": self.since, "wait": self.wait}

    def load_state_dict(self, s: dict) -> None:
        self.set(s["threads"])
        self.since, self.wait = float(s.get("since", 0.0)), float(s.get("wait", 0.0))

    @property
    def threads(self) -> int:
        return torch.get_num_threads()

    def set(self, n: int) -> None:
        """Use n threads (clamped to 1..ceiling): a resumed run's recorded count."""
        torch.set_num_threads(min(max(1, int(n)), self.ceiling))

    def restore(self) -> None:
        """Put back the count the tuner found, for whatever runs next in this process."""
        torch.set_num_threads(self.start)

    def candidates(self) -> List[int]:
        cur = self.threads
        return sorted({max(1, cur - 1), cur, min(self.ceiling, cur + 1)})

    def epoch(self, steps: Iterator[T], total: int, epoch: int = 0) -> Iterator[T]:
        """The epoch's steps, the first ones timed at the candidate counts if a probe is due."""
        t0 = self.clock()
        try:
            if len(self.candidates()) > 1 and self.since >= self.wait:
                yield from self._epoch_probed(iter(steps), total, epoch)
            else:
                yield from steps
        finally:
            self.since += self.clock() - t0

    def _epoch_probed(self, it: Iterator[T], total: int, epoch: int) -> Iterator[T]:
        cands, current = self.candidates(), self.threads
        try:
            yield next(it)  # the first step of an epoch also pays for the epoch's set-up: not compared
            t0 = self.clock()
            item = next(it)
            warm = max(self.clock() - t0, 1e-9)
            yield item
        except StopIteration:
            return
        group = max(1, int(MIN_SAMPLE_S / warm + 0.999))
        if 2 + ROUNDS * len(cands) * group > MAX_PROBE_SHARE * total:
            yield from it  # too short an epoch to time fairly: keep the count
            return
        try:
            yield from self._probe(it, cands, group, current, epoch)
        except GeneratorExit:  # the caller stopped mid-probe: leave the count as the epoch found it
            torch.set_num_threads(current)
            raise
        yield from it

    def _probe(self, it: Iterator[T], cands: List[int], group: int, current: int, epoch: int) -> Iterator[T]:
        """ROUNDS interleaved samples of `group` steps at each candidate count, then the decision."""
        times: Dict[int, List[float]] = {n: [] for n in cands}
        for r in range(ROUNDS):
            order = cands[r % len(cands):] + cands[:r % len(cands)]  # each count goes first in turn
            for n in order:
                torch.set_num_threads(n)
                spent = 0.0
                for _ in range(group):
                    t0 = self.clock()
                    try:
                        item = next(it)
                    except StopIteration:
                        self._decide(times, current, epoch, group)
                        return
                    spent += self.clock() - t0  # the step alone: the caller's time between steps is its own
                    yield item
                times[n].append(spent / group)
        self._decide(times, current, epoch, group)

    def _decide(self, times: Dict[int, List[float]], current: int, epoch: int, group: int) -> None:
        med = {n: sorted(v)[len(v) // 2] for n, v in times.items() if v}
        best = current
        if current in med:
            for n, s in sorted(med.items(), key=lambda kv: kv[1]):
                if s * HYSTERESIS < med[current]:
                    best = n
                break
        torch.set_num_threads(best)
        # what the next probe's steps at the other counts will cost beyond steps at the chosen one
        cost = sum(ROUNDS * group * max(0.0, s - med.get(best, s)) for n, s in med.items() if n != best)
        self.since, self.wait = 0.0, 0.0 if best != current else min(MAX_WAIT_S, cost / COST_BUDGET)
        self.choices.append({"epoch": epoch + 1, "threads": best, "seconds_per_step": med,
                             "next_probe_after_s": round(self.wait, 3)})


def make_tuner(explicit: int, device: torch.device, distributed: bool) -> Optional[ThreadTuner]:
    """A tuner for a run whose thread count is the default (`train.threads=0`) on the CPU; None otherwise: an
    explicit count is the user's, a GPU run's threads only feed the device, and DDP ranks share the cores by design."""
    if explicit or device.type != "cpu" or distributed or torch.get_num_threads() < 2:
        return None
    return ThreadTuner(torch.get_num_threads())
