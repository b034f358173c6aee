"""Schedules checked against their formulas (Smith 2017 for CLR), and the cyclical batch-size policy."""

import math

import pytest
import torch

from cnnlab.training.config import BatchConfig, ScheduleConfig
from cnnlab.training.schedules import SCHEDULES, batch_size_at, build_schedule


def lrs(cfg, lr=0.1, ipe=10, epochs=10):
    """The lr used at each optimizer step 0..ipe*epochs-1."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    sched = build_schedule(opt, cfg, lr, ipe, epochs)
    out = []
    for _ in range(ipe * epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_constant():
    assert lrs(ScheduleConfig(name="constant")) == pytest.approx([0.1] * 100)


def test_step_decay_every_decay_epochs():
    got = lrs(ScheduleConfig(name="step", decay=0.5, decay_epochs=3))
    want = [0.1 * 0.5 ** ((it // 10) // 3) for it in range(100)]
    assert got == pytest.approx(want)


def test_multistep_in_iterations_like_the_resnet_paper():
    got = lrs(ScheduleConfig(name="multistep", unit="iter", milestones=[32, 48], decay=0.1), ipe=8, epochs=8)
    want = [0.1 * (0.1 if it >= 32 else 1) * (0.1 if it >= 48 else 1) for it in range(64)]
    assert got == pytest.approx(want)


def test_cosine():
    got = lrs(ScheduleConfig(name="cosine", min_lr=0.001))
    want = [0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * it / 100)) / 2 for it in range(100)]
    assert got == pytest.approx(want)


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclical_matches_smith_2017(mode):
    base, top, s, gamma = 0.01, 0.1, 15, 0.995
    got = lrs(ScheduleConfig(name=mode, min_lr=base, step_size=s, unit="iter", gamma=gamma), lr=top)
    want = []
    for it in range(100):
        cycle = math.floor(1 + it / (2 * s))
        x = abs(it / s - 2 * cycle + 1)
        scale = {"triangular": 1.0, "triangular2": 1 / 2 ** (cycle - 1), "exp_range": gamma ** it}[mode]
        want.append(base + (top - base) * max(0.0, 1 - x) * scale)
    assert got == pytest.approx(want, rel=1e-6)
    if mode != "exp_range":  # exp_range shrinks the amplitude from the first iteration on
        assert max(got) == pytest.approx(top)


def test_onecycle_rises_to_peak_then_anneals():
    got = lrs(ScheduleConfig(name="onecycle", pct_start=0.3, div_factor=10, final_div_factor=100))
    peak = max(range(100), key=lambda i: got[i])
    assert got[0] == pytest.approx(0.01)
    assert got[peak] == pytest.approx(0.1, rel=1e-3)
    assert 25 <= peak <= 31
    assert got[-1] < 0.01 / 50
    assert all(a <= b + 1e-12 for a, b in zip(got[:peak], got[1:peak + 1]))


def test_linear_warmup_in_front_of_step():
    got = lrs(ScheduleConfig(name="step", warmup=2, warmup_factor=0.1, decay=0.1, decay_epochs=5))
    assert got[0] == pytest.approx(0.01)
    for it in range(20):  # linear ramp from 0.01 to 0.1 over 20 iterations
        assert got[it] == pytest.approx(0.01 + (0.1 - 0.01) * it / 20)
    assert got[20] == pytest.approx(0.1)
    assert got[20 + 50] == pytest.approx(0.01)  # the step schedule's clock starts after the warm-up


def test_registry_lists_every_schedule_and_rejects_unknown():
    assert {"constant", "step", "multistep", "cosine", "triangular", "triangular2", "exp_range",
            "onecycle"} <= set(SCHEDULES.names())
    from cnnlab.errors import CnnlabError
    with pytest.raises(CnnlabError, match="known schedules"):
        SCHEDULES.get("cosin")


def test_cyclical_batch_size_triangular_is_geometric_and_periodic():
    cfg = BatchConfig(policy="cyclical", min=64, max=1024, step_epochs=4, mode="triangular")
    sizes = [batch_size_at(e, cfg) for e in range(16)]
    assert sizes[:9] == [64, 128, 256, 512, 1024, 512, 256, 128, 64]
    assert sizes[8:16] == sizes[0:8]


@pytest.mark.parametrize("mode,first,last", [("increasing", 64, 1024), ("decreasing", 1024, 64)])
def test_cyclical_batch_size_sawtooth(mode, first, last):
    cfg = BatchConfig(policy="cyclical", min=64, max=1024, step_epochs=4, mode=mode)
    sizes = [batch_size_at(e, cfg) for e in range(10)]
    assert sizes[0] == first and sizes[4] == last and sizes[5] == first
    assert all(64 <= s <= 1024 for s in sizes)


def test_constant_batch_policy():
    assert batch_size_at(7, BatchConfig(size=200)) == 200


@pytest.mark.parametrize("steps,pct", [(4, 0.25), (10, 0.1), (20, 0.05), (2, 0.5), (1, 0.5), (3, 1 / 3)])
def test_onecycle_with_a_one_step_warm_up_runs(steps, pct):
    """torch's OneCycleLR divides by zero when its warm-up ends at step 0 (pct_start x steps = 1): such a run warms
    up over 2 steps instead, and still peaks at the lr and anneals."""
    got = lrs(ScheduleConfig(name="onecycle", pct_start=pct), ipe=steps, epochs=1)
    assert len(got) == steps and all(math.isfinite(x) and x > 0 for x in got)
    if steps >= 4:
        assert max(got) == pytest.approx(0.1, rel=1e-6) and got[-1] < max(got) and got[0] < max(got)


def test_onecycle_leaves_every_other_warm_up_as_configured():
    from cnnlab.training.schedules import onecycle_steps

    assert onecycle_steps(100, 0.25) == (100, 0.25) and onecycle_steps(15, 0.1) == (15, 0.1)
    assert onecycle_steps(4, 0.25) == (4, 0.5) and onecycle_steps(2, 0.5) == (3, 2 / 3)


# -- parameter groups at a multiple of the lr, and groups trained for limited epochs (issue #26) -------------------
def _two_groups(scale=8.0, train_epochs=None, lr=0.1):
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    second = {"params": [b], "lr": lr * scale, "lr_scale": scale}
    if train_epochs is not None:
        second["train_epochs"] = train_epochs
    return torch.optim.SGD([{"params": [a]}, second], lr=lr)


def _group_lrs(opt, sched, steps):
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("name", SCHEDULES.names())
@pytest.mark.parametrize("warmup", [0, 2])
def test_every_schedule_keeps_each_groups_lr_ratio(name, warmup):
    cfg = ScheduleConfig(name=name, warmup=warmup, min_lr=0.001, decay_epochs=3, milestones=[4, 7], step_size=2)
    opt = _two_groups(8.0)
    got = _group_lrs(opt, build_schedule(opt, cfg, 0.1, 10, 10), 100)
    for step, (base, scaled) in enumerate(got):
        assert scaled == pytest.approx(8.0 * base, rel=1e-9), (step, base, scaled)
    assert len({round(b, 12) for b, _ in got}) > 1 or name == "constant"  # the schedule did move


@pytest.mark.parametrize("name", ["onecycle", "step", "cosine", "constant"])
def test_a_group_trained_for_limited_epochs_gets_lr_zero_after_them_and_resumes(name):
    cfg = ScheduleConfig(name=name, decay_epochs=1)
    opt = _two_groups(1.0, train_epochs=2)
    sched = build_schedule(opt, cfg, 0.1, 10, 5)
    plain = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    reference = build_schedule(plain, cfg, 0.1, 10, 5)
    got, want = _group_lrs(opt, sched, 30), _group_lrs(plain, reference, 30)
    assert [lrs[0] for lrs in got] == pytest.approx([w[0] for w in want])   # the other group: the schedule alone
    assert all(lrs[1] == lrs[0] for lrs in got[:20])                          # epochs 1-2: trained
    assert all(lrs[1] == 0.0 for lrs in got[20:])                             # then stopped
    again = _two_groups(1.0, train_epochs=2)
    resumed = build_schedule(again, cfg, 0.1, 10, 5)
    again.load_state_dict(opt.state_dict())
    resumed.load_state_dict(sched.state_dict())
    assert _group_lrs(again, resumed, 5) == _group_lrs(opt, sched, 5)
