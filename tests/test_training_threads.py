"""The thread count chosen during training (training/threads.py, issue #26): recorded per epoch, in the checkpoint and
in summary.json; an explicit train.threads is never changed; exact resume still holds.

What the tuner decides comes from a clock. A real timing would make these tests depend on how busy the machine is,
so they give the tuners a clock whose every reading advances by a fixed cost per thread count (`StepClock`): each
timed step then "takes" cost[threads], and the decision is known in advance. The training itself is real (640
CIFAR-10 images, 32 steps an epoch, the trainer's own loop).
"""

import csv
import json

import pytest
import torch

from cnnlab.training import threads as threads_mod
from cnnlab.training.threads import ThreadTuner
from cnnlab.training.trainer import Trainer, resume

TINY = ["data.train_subset=640", "data.val_subset=100", "batch.size=20", "batch.eval_size=100", "train.epochs=2",
        "optim.lr=0.02"]


class StepClock:
    """Each reading advances by cost[the thread count now]: a step timed at n threads measures cost[n]."""

    def __init__(self, cost):
        self.cost, self.t = cost, 0.0

    def __call__(self):
        self.t += self.cost[torch.get_num_threads()]
        return self.t


@pytest.fixture
def two_threads():
    """The suite runs at one thread (conftest); the tuner needs a default of two to have a choice."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cfg_for(config_on_data):
    return lambda *overrides: config_on_data(*TINY, *overrides)


def _rows(run):
    return list(csv.DictReader(open(run / "metrics.csv")))


def test_default_takes_the_faster_count_and_records_it(cfg_for, two_threads, monkeypatch, tmp_path):
    monkeypatch.setattr(threads_mod, "CLOCK", StepClock({1: 0.5, 2: 1.0}))  # one thread twice as fast (busy)
    summary = Trainer(cfg_for("name=busy")).fit()
    run = tmp_path / "runs" / "busy"
    assert [int(r["threads"]) for r in _rows(run)] == [1, 1]
    saved = json.loads((run / "summary.json").read_text())
    assert saved["threads"] == 1 and saved["threads_choice"].startswith("auto")
    assert [d["threads"] for d in saved["thread_decisions"]] == [1, 1]
    assert torch.load(run / "last.pt", weights_only=True)["threads"] == 1
    assert summary["threads"] == 1
    assert torch.get_num_threads() == 2  # the process's default is put back when the run ends


def test_default_keeps_its_count_unless_a_neighbour_is_clearly_faster(cfg_for, two_threads, monkeypatch, tmp_path):
    monkeypatch.setattr(threads_mod, "CLOCK", StepClock({1: 1.0, 2: 0.98}))  # within the 5% hysteresis: noise
    Trainer(cfg_for("name=quiet")).fit()
    assert [int(r["threads"]) for r in _rows(tmp_path / "runs" / "quiet")] == [2, 2]


@pytest.mark.parametrize("n", [1, 2])
def test_explicit_threads_are_never_changed(cfg_for, two_threads, monkeypatch, tmp_path, n):
    monkeypatch.setattr(threads_mod, "CLOCK", StepClock({1: 1.0, 2: 0.1} if n == 1 else {1: 0.1, 2: 1.0}))
    trainer = Trainer(cfg_for(f"train.threads={n}", "name=fixed"))
    assert trainer.thread_tuner is None
    summary = trainer.fit()
    assert [int(r["threads"]) for r in _rows(tmp_path / "runs" / "fixed")] == [n, n]
    assert summary["threads"] == n and summary["threads_choice"] == f"train.threads={n} (as configured)"
    assert summary["thread_decisions"] == []


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")  # the test's own patch
def test_resume_goes_on_with_the_recorded_count_and_equals_uninterrupted(cfg_for, two_threads, monkeypatch, tmp_path):
    monkeypatch.setattr(threads_mod, "CLOCK", StepClock({1: 0.5, 2: 1.0}))
    base = ["train.epochs=3", "augment.crop=4", "augment.flip=0.5"]
    Trainer(cfg_for(*base, "name=full")).fit()

    cut = Trainer(cfg_for(*base, "name=cut"))
    step = cut.optimizer.step

    def interrupt(*args, **kwargs):  # mid-way through the second epoch (32 steps each), after its probe
        if cut.step == 45:
            raise KeyboardInterrupt
        return step(*args, **kwargs)

    cut.optimizer.step = interrupt
    with pytest.raises(KeyboardInterrupt):
        cut.fit()
    assert torch.get_num_threads() == 2  # put back although the run stopped mid-epoch
    saved = torch.load(tmp_path / "runs" / "cut" / "last.pt", weights_only=True)
    assert saved["threads"] == 1 and saved["thread_tuner"]["threads"] == 1
    resumed = Trainer(cfg_for(*base, "name=cut"), tmp_path / "runs" / "cut", resume=True, log=lambda s: None)
    assert torch.get_num_threads() == 1  # the checkpoint's count, before any step of the resumed run
    resumed.fit()
    a, b = _rows(tmp_path / "runs" / "full"), _rows(tmp_path / "runs" / "cut")
    keys = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "threads"]
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    wa, wb = (torch.load(tmp_path / "runs" / n / "last.pt", weights_only=True)["model"] for n in ("full", "cut"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_cli_resume_restores_the_count(cfg_for, two_threads, monkeypatch, tmp_path):
    """`cnnlab train --resume` (trainer.resume) goes through the same checkpoint path."""
    monkeypatch.setattr(threads_mod, "CLOCK", StepClock({1: 0.5, 2: 1.0}))
    Trainer(cfg_for("train.epochs=1", "name=r")).fit()
    summary = resume(tmp_path / "runs" / "r", log=lambda s: None, overrides=["train.epochs=2"])
    assert [int(r["threads"]) for r in _rows(tmp_path / "runs" / "r")] == [1, 1]
    assert summary["epochs_done"] == 2


def test_tuner_leaves_short_epochs_and_single_counts_alone(two_threads):
    tuner = ThreadTuner(2, clock=StepClock({1: 0.1, 2: 1.0}))
    assert list(tuner.epoch(iter(range(10)), total=10)) == list(range(10))  # every step still taken, in order
    assert tuner.choices == [] and torch.get_num_threads() == 2  # 10 steps: too short to time fairly
    assert list(tuner.epoch(iter(range(40)), total=40)) == list(range(40))
    assert tuner.choices[-1]["threads"] == 1 and torch.get_num_threads() == 1
    assert set(tuner.choices[-1]["seconds_per_step"]) == {1, 2}
    assert tuner.wait == 0  # the count changed: the next epoch probes again
    list(tuner.epoch(iter(range(40)), total=40))
    assert len(tuner.choices) == 2 and tuner.choices[-1]["threads"] == 1
    # kept: the next probe waits until its cost (3 steps at 2 threads, 0.9 s more each) is 1% of the time since
    assert tuner.wait == pytest.approx(min(threads_mod.MAX_WAIT_S, 3 * 0.9 / threads_mod.COST_BUDGET))
    list(tuner.epoch(iter(range(40)), total=40))
    assert len(tuner.choices) == 2  # not due yet: no probe, no decision
    one = ThreadTuner(1, clock=StepClock({1: 1.0, 2: 0.1}))
    assert one.candidates() == [1]
