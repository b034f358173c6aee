"""Optimizers against hand-computed steps; L1/L2 parameter groups."""

import math

import pytest
import torch
from torch import nn

from cnnlab.training.config import OptimConfig
from cnnlab.training.optim import OPTIMIZERS, RMSpropNesterov, build_optimizer, l1_penalty, param_groups


def test_rmsprop_nesterov_two_steps_by_hand():
    lr, alpha, mu, eps = 0.1, 0.9, 0.5, 1e-8
    p = nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = RMSpropNesterov([p], lr=lr, alpha=alpha, momentum=mu, eps=eps)
    g1, g2 = torch.tensor([0.5, -1.0]), torch.tensor([0.2, 0.4])
    # step 1: r = 0.1 g^2; s = g/(sqrt r + eps); v = -lr s; p <- p + mu v - lr s
    r = (1 - alpha) * g1 ** 2
    s = g1 / (r.sqrt() + eps)
    v = -lr * s
    want = torch.tensor([1.0, -2.0]) + mu * v - lr * s
    p.grad = g1.clone()
    opt.step()
    assert torch.allclose(p.detach(), want, atol=1e-6)
    # step 2
    r = alpha * r + (1 - alpha) * g2 ** 2
    s = g2 / (r.sqrt() + eps)
    v = mu * v - lr * s
    want = want + mu * v - lr * s
    p.grad = g2.clone()
    opt.step()
    assert torch.allclose(p.detach(), want, atol=1e-6)


def test_rmsprop_nesterov_equals_textbook_lookahead_form():
    """Algorithm 8.6 with the gradient taken at theta + mu*v gives the same trajectory of look-ahead points."""
    torch.manual_seed(0)
    A = torch.randn(5, 5)
    A = A @ A.T + torch.eye(5)
    grad = lambda w: A @ w  # noqa: E731  (quadratic loss 0.5 w^T A w)
    lr, alpha, mu, eps = 0.01, 0.9, 0.9, 1e-8
    theta, v, r = torch.ones(5), torch.zeros(5), torch.zeros(5)
    p = nn.Parameter(torch.ones(5))
    opt = RMSpropNesterov([p], lr=lr, alpha=alpha, momentum=mu, eps=eps)
    for _ in range(20):
        g = grad(theta + mu * v)
        r = alpha * r + (1 - alpha) * g * g
        v = mu * v - lr * g / (r.sqrt() + eps)
        theta = theta + v
        p.grad = grad(p.detach())
        opt.step()
        assert torch.allclose(p.detach(), theta + mu * v, atol=1e-5)


def test_rmsprop_nesterov_without_momentum_is_rmsprop():
    torch.manual_seed(0)
    a, b = nn.Parameter(torch.randn(10)), nn.Parameter(torch.randn(10))
    b.data.copy_(a.data)
    o1 = RMSpropNesterov([a], lr=0.01, alpha=0.99, momentum=0.0)
    o2 = torch.optim.RMSprop([b], lr=0.01, alpha=0.99)
    for _ in range(5):
        g = torch.randn(10)
        a.grad, b.grad = g.clone(), g.clone()
        o1.step()
        o2.step()
    assert torch.allclose(a, b, atol=1e-6)


def test_sgd_step_with_momentum_and_coupled_l2():
    p = nn.Parameter(torch.tensor([2.0]))
    model = nn.Module()
    model.w = nn.Parameter(torch.tensor([[2.0]]))
    opt = build_optimizer(model, OptimConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=0.01))
    model.w.grad = torch.tensor([[1.0]])
    opt.step()  # g = 1 + 0.01*2 = 1.02; buf = g; w = 2 - 0.1*1.02
    assert model.w.item() == pytest.approx(2 - 0.102)
    del p


def test_weight_decay_and_l1_skip_biases_and_norm_by_default():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    groups = param_groups(model, 1e-3, decay_bias_norm=False)
    decayed = {id(p) for p in groups[0]["params"]}
    assert decayed == {id(model[0].weight), id(model[3].weight)}
    assert groups[1]["weight_decay"] == 0.0
    all_groups = param_groups(model, 1e-3, decay_bias_norm=True)
    assert len(all_groups) == 1 and len(all_groups[0]["params"]) == 6
    opt = build_optimizer(model, OptimConfig(l1=1e-4))
    want = model[0].weight.abs().sum() + model[3].weight.abs().sum()
    assert l1_penalty(opt).item() == pytest.approx(want.item())


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_reduces_a_quadratic(name):
    torch.manual_seed(0)
    model = nn.Linear(4, 1, bias=False)
    lr = {"adadelta": 1.0, "adagrad": 0.1}.get(name, 0.01)
    opt = build_optimizer(model, OptimConfig(name=name, lr=lr, momentum=0.5))
    x = torch.randn(64, 4)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    first = None
    for _ in range(50):
        opt.zero_grad()
        loss = ((model(x).squeeze(1) - y) ** 2).mean()
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
    assert math.isfinite(loss.item()) and loss.item() < first


# -- Jordan 2024's parts: scaled bias lr, Lookahead (issue #26) -----------------------------------------------------
def _conv_bn():
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 36, 2))


def test_default_groups_are_unchanged_by_the_new_options():
    groups = build_optimizer(_conv_bn(), OptimConfig(lr=0.1, weight_decay=1e-3)).param_groups
    assert [len(g["params"]) for g in groups] == [2, 4]   # conv+fc weights; conv+fc biases, BN scale and shift
    assert not any(k in g for g in groups for k in ("lr_scale", "train_epochs", "lookahead_k"))
    assert [g["lr"] for g in groups] == [0.1, 0.1]


@pytest.mark.parametrize("which, scaled", [("norm", {"1.bias"}), ("all", {"0.bias", "1.bias", "3.bias"})])
def test_bias_lr_scale_picks_its_parameters_and_keeps_the_decay_per_step(which, scaled):
    model = _conv_bn()
    names = {id(p): n for n, p in model.named_parameters()}
    cfg = OptimConfig(lr=0.1, weight_decay=1e-3, decay_bias_norm=True, bias_lr_scale=64.0, bias_lr_params=which)
    groups = build_optimizer(model, cfg).param_groups
    fast = [g for g in groups if g.get("lr_scale") == 64.0]
    assert len(fast) == 1 and {names[id(p)] for p in fast[0]["params"]} == scaled
    assert fast[0]["lr"] == pytest.approx(6.4)
    for g in groups:  # every group decays by lr x wd = 1e-4 of its weights per step
        assert g["lr"] * g["weight_decay"] == pytest.approx(1e-4)


def test_lookahead_by_hand():
    """k=2, alpha=0.5 on plain SGD: after steps 2 and 4 the weights are pulled half-way back to the slow ones."""
    p = nn.Parameter(torch.tensor([1.0]))
    opt = build_optimizer(nn.ParameterList([p]), OptimConfig(lr=0.1, momentum=0.0, lookahead_k=2,
                                                             lookahead_alpha=0.5))
    w, slow = 1.0, 1.0
    for step in range(1, 5):
        p.grad = torch.tensor([2.0])                                # constant gradient: sgd takes -0.2 a step
        opt.step()
        w -= 0.2
        if step % 2 == 0:
            slow += 0.5 * (w - slow)
            w = slow
        assert p.item() == pytest.approx(w), step
    assert opt.state[p]["lookahead_slow"].item() == pytest.approx(slow)


def test_lookahead_cubic_ramp_is_airbench94s():
    from cnnlab.training.optim import lookahead_alpha
    a = 1 - 0.95 ** 5
    assert lookahead_alpha(a, "cubic", 0, 100) == 1.0            # no averaging at the start
    assert lookahead_alpha(a, "cubic", 50, 100) == pytest.approx(1 - 0.95 ** 5 * 0.125)
    assert lookahead_alpha(a, "cubic", 100, 100) == pytest.approx(a)
    assert lookahead_alpha(a, "cubic", 200, 100) == pytest.approx(a)  # an extended run stays at the end value
    assert lookahead_alpha(0.5, "none", 7, 100) == 0.5


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_lookahead_state_dict_resumes_to_the_same_next_steps(name):
    """Interrupt between two syncs (k=3, after 4 steps), save through torch.save/weights_only load as a checkpoint
    is, and the restored optimizer takes the same next steps as the uninterrupted one."""
    import io

    def make():
        torch.manual_seed(0)
        model = _conv_bn()
        cfg = OptimConfig(name=name, lr=0.05, momentum=0.9, nesterov=True, lookahead_k=3, lookahead_alpha=0.4,
                          bias_lr_scale=4.0)
        return model, build_optimizer(model, cfg)

    def step(model, opt, i):
        g = torch.Generator().manual_seed(i)
        x, y = torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 2, (8,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    model, opt = make()
    for i in range(4):
        step(model, opt, i)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, buf)
    for i in range(4, 8):
        step(model, opt, i)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    model2, opt2 = make()
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["optimizer"])
    for i in range(4, 8):
        step(model2, opt2, i)
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    assert opt2.param_groups[0]["lookahead_step"] == 8


def test_lookahead_waits_for_a_parameters_first_gradient_under_adam():
    """A parameter without a gradient in the first steps gets no state (Adam initialises state only when it is
    empty), and its slow weights start where it was before its first real step."""
    a, b = nn.Parameter(torch.tensor([1.0])), nn.Parameter(torch.tensor([1.0]))
    opt = build_optimizer(nn.ParameterList([a, b]), OptimConfig(name="adam", lr=0.1, lookahead_k=2))
    a.grad = torch.tensor([1.0])
    opt.step()
    opt.step()                                                     # a sync: b has no gradient, so no state
    assert "lookahead_slow" in opt.state[a] and b not in opt.state and b.item() == 1.0
    b.grad = torch.tensor([1.0])
    opt.step()
    opt.step()
    assert opt.state[b]["step"].item() == 2 and "lookahead_slow" in opt.state[b]
