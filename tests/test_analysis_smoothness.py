"""Gradient predictiveness and effective beta-smoothness: exact values on quadratic losses, and a real training run."""

from __future__ import annotations

import math

import pytest
import torch

from cnnlab.analysis.smoothness import probe_direction
from cnnlab.errors import CnnlabError


def quadratic(A: torch.Tensor, w: torch.Tensor):
    return lambda: 0.5 * w @ A @ w


@pytest.mark.parametrize("c", [0.1, 1.0, 3.5, 40.0])
def test_beta_equals_curvature_of_isotropic_quadratic(c):
    # L = c/2 |w|^2: the gradient changes by exactly c per unit distance in every direction.
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    A = c * torch.eye(3, dtype=torch.float64)
    probe = probe_direction([w], quadratic(A, w), etas=[1e-3, 1e-2, 0.05])
    assert probe.beta == pytest.approx(c, rel=1e-9)
    for eta, d in zip(probe.etas, probe.grad_dists):
        assert d == pytest.approx(c * eta * probe.grad_norm, rel=1e-9)


def test_beta_along_an_eigenvector_is_its_eigenvalue_and_never_above_the_largest():
    A = torch.diag(torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64))
    w = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64, requires_grad=True)
    assert probe_direction([w], quadratic(A, w), [0.01, 0.1]).beta == pytest.approx(4.0, rel=1e-9)
    # a generic point: |A g| / |g| lies between the smallest and largest curvature
    v = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64, requires_grad=True)
    g = A @ v.detach()
    beta = probe_direction([v], quadratic(A, v), [0.01]).beta
    assert beta == pytest.approx(float((A @ g).norm() / g.norm()), rel=1e-9)
    assert 1.0 <= beta <= 9.0


def test_losses_along_the_gradient_match_the_closed_form_and_weights_are_restored():
    A = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    w = torch.tensor([1.0, -1.0], dtype=torch.float64, requires_grad=True)
    before = w.detach().clone()
    probe = probe_direction([w], quadratic(A, w), [0.1, 0.3])
    g = A @ before
    for eta, loss in zip(probe.etas, probe.losses):
        p = before - eta * g
        assert loss == pytest.approx(float(0.5 * p @ A @ p), rel=1e-12)
    assert probe.loss0 == pytest.approx(float(0.5 * before @ A @ before))
    assert torch.equal(w.detach(), before)
    assert w.grad is None  # autograd.grad leaves .grad alone


def test_non_positive_step_sizes_are_rejected():
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(CnnlabError, match="positive"):
        probe_direction([w], lambda: (w ** 2).sum(), [0.0])


def test_smoothness_trace_on_real_data_restores_the_trainer(shared_data, session_cache):
    from cnnlab.analysis.common import analysis_trainer, snapshot
    from cnnlab.analysis.smoothness import smoothness_trace
    from cnnlab.training.config import load_config

    cfg = load_config(None, [f"data.root={shared_data}", "data.train_subset=200", "data.val_subset=100",
                             "batch.size=32", "optim.lr=0.05", "model.options.batch_norm=true"])
    t = analysis_trainer(cfg)
    before = snapshot(t)
    tr = smoothness_trace(t, steps=6, every=3, probe_size=32, label="bn")
    assert len(tr.losses) == 6 and len(tr.grad_change) == 5
    assert tr.probe_steps == [1, 3, 6]
    assert all(math.isfinite(p.beta) and p.beta > 0 for p in tr.probes)
    assert all(min(p.grad_dists) <= max(p.grad_dists) for p in tr.probes)
    for k, v in before["model"].items():
        assert torch.equal(t.model.state_dict()[k], v), k
    assert t.step == before["step"]
    rows = tr.rows()
    assert [r["step"] for r in rows] == [1, 3, 6] and all(r["beta_eff"] > 0 for r in rows)
    # |g_s - g_(s-1)| is undefined at step 1; at step 6 it is the last recorded change
    assert math.isnan(rows[0]["successive_grad_change"]) and rows[2]["successive_grad_change"] == tr.grad_change[-1]
