"""Loss bands and random-direction landscapes on real CIFAR-10 slices."""

from __future__ import annotations

import math

import pytest
import torch

from cnnlab.analysis.common import analysis_trainer, preserved, run_steps, snapshot
from cnnlab.analysis.landscape import (evaluate_batches, filter_normalised_direction, landscape_1d, landscape_2d,
                                       loss_band)
from cnnlab.analysis.samples import sample
from cnnlab.data.loader import BatchLoader
from cnnlab.models import create_model
from cnnlab.training.config import load_config


@pytest.fixture
def make_trainer(shared_data, session_cache, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(session_cache))

    def make(*overrides):
        base = [f"data.root={shared_data}", "data.train_subset=256", "data.val_subset=100", "batch.size=32",
                "train.seed=0"]
        return analysis_trainer(load_config(None, base + list(overrides)))

    return make


def test_directions_are_filter_normalised_and_skip_biases_and_bn():
    model = create_model("simplenn", batch_norm=True)
    dirs = filter_normalised_direction(model, torch.Generator().manual_seed(3))
    for (name, p), d in zip(model.named_parameters(), dirs):
        assert d.shape == p.shape
        if p.dim() <= 1:
            assert not d.any(), name
        else:
            wn = p.detach().reshape(len(p), -1).norm(dim=1)
            dn = d.reshape(len(p), -1).norm(dim=1)
            assert torch.allclose(dn, wn, rtol=1e-5), name
    again = filter_normalised_direction(model, torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(dirs, again))


def test_landscapes_centre_on_the_model_and_leave_it_unchanged(make_trainer):
    t = make_trainer("optim.lr=0.05")
    run_steps(t, 16)
    data = [(x, y) for x, y in BatchLoader(sample(t.ds.val, 100), 50, mean=t.ds.mean, std=t.ds.std)]
    t.model.eval()
    centre = evaluate_batches(t.model, data)
    weights = {k: v.clone() for k, v in t.model.state_dict().items()}
    one = landscape_1d(t.model, data, points=5, span=0.5)
    assert one.alphas == [-0.5, -0.25, 0.0, 0.25, 0.5] and one.images == 100
    assert one.losses[2] == pytest.approx(centre[0], rel=1e-5) and one.accs[2] == pytest.approx(centre[1])
    # a step of half the weights' own size in a random direction must cost loss on both sides
    assert one.losses[0] > one.losses[2] and one.losses[4] > one.losses[2]
    two = landscape_2d(t.model, data, points=3, span=0.5)
    assert len(two.losses) == 3 and all(len(r) == 3 for r in two.losses)
    assert two.losses[1][1] == pytest.approx(centre[0], rel=1e-5)
    assert all(torch.equal(v, weights[k]) for k, v in t.model.state_dict().items())


def test_loss_band_over_rates_restores_and_max_is_at_least_min(make_trainer):
    t = make_trainer()
    before = snapshot(t)
    band = loss_band(t, [1e-3, 1e-2, 5e-2], steps=6, label="simplenn")
    lo, hi = band.limits
    assert len(lo) == 6 and all(a <= b for a, b in zip(lo, hi))
    assert all(math.isfinite(v) for v in lo + hi)
    # every step's band spans exactly the three runs' losses at that step
    for i in range(6):
        assert lo[i] == min(c[i] for c in band.curves) and hi[i] == max(c[i] for c in band.curves)
    # the runs start from the same weights and batch, so step 1 has one loss whatever the rate
    assert band.curves[0][0] == band.curves[1][0] == band.curves[2][0]
    assert all(torch.equal(v, before["model"][k]) for k, v in t.model.state_dict().items())
    assert {"loss_lr_0.001", "loss_lr_0.05", "loss_min", "loss_max"} <= set(band.rows()[0])


def test_gradient_band_is_the_successive_gradient_change_at_each_rate(make_trainer):
    """|g_t - g_(t-1)| recorded by the band equals the change computed by hand from the same steps."""
    t = make_trainer()
    band = loss_band(t, [1e-2, 5e-2], steps=4, gradients=True)
    assert [len(g) for g in band.grad_curves] == [3, 3] and all(v > 0 for g in band.grad_curves for v in g)
    params = [p for p in t.model.parameters() if p.requires_grad]
    grads = []
    with preserved(t):
        run_steps(t, 4, lr_at=lambda i: 5e-2,
                  on_step=lambda tr, i, loss: grads.append(torch.cat([p.grad.reshape(-1).float() for p in params])))
    by_hand = [float((b - a).norm()) for a, b in zip(grads, grads[1:])]
    assert band.grad_curves[1] == pytest.approx(by_hand, rel=1e-5)
    rows = band.rows()
    assert math.isnan(rows[0]["grad_change_min"]) and rows[1]["grad_change_max"] == max(g[0] for g in band.grad_curves)
    assert "gradient change" in band.line() and band.grad_width >= 0
    plain = loss_band(t, [1e-2], steps=2)
    assert plain.grad_curves == [] and "gradient" not in plain.line()
