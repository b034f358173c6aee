"""Range tests on real CIFAR-10 slices: they leave the trainer exactly as they found it, and find what they should."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from cnnlab.analysis import range_tests as rt
from cnnlab.analysis.common import analysis_trainer, run_steps, snapshot
from cnnlab.training.config import load_config


@pytest.fixture
def make_trainer(shared_data, session_cache, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(session_cache))

    def make(*overrides):
        base = [f"data.root={shared_data}", "data.train_subset=256", "data.val_subset=100", "batch.size=32",
                "optim.lr=0.01", "train.seed=1"]
        return analysis_trainer(load_config(None, base + list(overrides)))

    return make


def assert_same_state(t, snap):
    for k, v in t.model.state_dict().items():
        assert torch.equal(v, snap["model"][k]), k
    now = t.optimizer.state_dict()
    assert [g["lr"] for g in now["param_groups"]] == [g["lr"] for g in snap["optimizer"]["param_groups"]]
    for i, st in snap["optimizer"]["state"].items():
        for k, v in st.items():
            assert torch.equal(now["state"][i][k], v) if torch.is_tensor(v) else now["state"][i][k] == v
    assert t.step == snap["step"] and t.status == snap["status"] and dataclasses.asdict(t.cfg.batch) == snap["batch"]


def test_range_test_restores_model_and_optimizer_and_later_training_is_unchanged(make_trainer):
    t = make_trainer()
    run_steps(t, 5)  # momentum buffers exist now: the restore must bring them back too
    before = snapshot(t)
    res = rt.lr_range_test(t, 1e-5, 1.0, steps=16)
    assert len(res.losses) >= 2
    assert_same_state(t, before)
    # the strongest check: training after the test gives exactly the losses of a twin that never ran it
    twin = make_trainer()
    run_steps(twin, 5)
    assert run_steps(t, 8) == run_steps(twin, 8)


def test_range_test_stops_on_divergence_and_suggests_bounds_inside_the_range(make_trainer):
    t = make_trainer()
    res = rt.lr_range_test(t, 1e-4, 1e4, steps=60)
    assert res.stopped_early and len(res.losses) < 60
    assert res.lrs[0] == pytest.approx(1e-4) and all(a < b for a, b in zip(res.lrs, res.lrs[1:]))
    s = res.suggestion
    assert 1e-4 <= s.lr_min <= s.lr_max <= res.lrs[-1]
    assert min(res.smoothed) < res.smoothed[0]  # the loss did fall somewhere in the range
    assert len(res.rows()) == len(res.losses)


def test_discrete_sweep_marks_divergence_and_restores(make_trainer):
    t = make_trainer("optim.momentum=0.0")
    before = snapshot(t)
    res = rt.lr_sweep(t, [1e-4, 1e-2, 1e1, 1e3], epochs=1)
    assert_same_state(t, before)
    assert math.isfinite(res.losses[0]) and math.isfinite(res.losses[1])
    assert math.isnan(res.losses[3])  # lr 1000 cannot train anything
    assert res.suggestion.lr_max in res.lrs[:3]
    assert [r["diverged"] for r in res.rows()][3] == 1


def test_batch_test_restores_and_micro_batches_give_the_same_steps(make_trainer):
    t = make_trainer("optim.lr=0.05")
    before = snapshot(t)
    whole = rt.batch_range_test(t, [16, 64, 512], steps=4)
    assert whole.sizes == [16, 64]  # 512 > 256 training images: left out
    assert_same_state(t, before)
    split = rt.batch_range_test(t, [16, 64], steps=4, micro=8)
    assert split.micro == [8, 8]
    # gradient accumulation: the same update in smaller passes (simplenn has no BN, so no batch statistics differ)
    for a, b in zip(whole.curves, split.curves):
        assert a == pytest.approx(b, rel=1e-4)
    assert whole.b_min <= whole.b_max


@pytest.mark.parametrize("scaled", [False, True], ids=["fp32", "gradscaler"])
def test_training_after_every_analysis_equals_a_twin_that_never_ran_one(make_trainer, scaled):
    """Range tests, the discrete sweep, loss and gradient bands, smoothness and the batch-size test each put the
    trainer back (weights, momentum, schedule, GradScaler, batch settings, RNG): the next steps' losses are those
    of an identical trainer that ran none of them. The GradScaler run uses a real CPU GradScaler whose scale grows
    every 2 steps, so a scaler left changed would show in the losses and in its scale."""
    from cnnlab.analysis.landscape import loss_band
    from cnnlab.analysis.smoothness import smoothness_trace

    def make():
        t = make_trainer("model.options.batch_norm=true", "augment.crop=4", "augment.flip=0.5")
        if scaled:
            t.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 4, growth_interval=2)
        run_steps(t, 3)  # momentum buffers and a grown scale exist before the analyses
        return t

    twin, analysed = make(), make()
    rt.lr_range_test(analysed, 1e-4, 1.0, steps=6)
    rt.lr_sweep(analysed, [1e-3, 1e-1], epochs=1)
    loss_band(analysed, [1e-3, 1e-2], steps=4, gradients=True)
    smoothness_trace(analysed, steps=4, every=2, probe_size=32)
    rt.batch_range_test(analysed, [16, 64], steps=3, micro=16)
    assert run_steps(analysed, 8) == run_steps(twin, 8)
    assert analysed.scaler.get_scale() == twin.scaler.get_scale() and analysed.step == twin.step
    if scaled:
        assert twin.scaler.get_scale() > 2.0 ** 4  # the scale did move, so the check above could fail
