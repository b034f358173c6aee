"""Every registered model: forward and backward on a tiny batch, output shape, parameter count, input checks; the
registry itself; the activations (hand-written Swish); torch.compile, channels_last and DDP-friendliness."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model, list_models, model_info, register_model
from cnnlab.models.layers import ACTIVATIONS, Swish, make_activation

ALL = list_models()
# The 224×224 reference networks run forward/backward at a smaller input to keep the suite fast on a CPU; their
# golden parameter counts at 224 are checked on the meta device in test_models_accounting.py.
SMALL = {"vgg19": dict(input_size=32), "alexnet": dict(input_size=64)}
EXPECTED_NAMES = {"simplenn", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "vgg_a", "vgg_a_bn",
                  "mlp", "lenet5", "minigooglenet", "alexnet", "vgg19", "inception_naive", "inception_reduced"}


def test_registry_has_every_course_network():
    assert EXPECTED_NAMES <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_shape_and_grads(name):
    torch.manual_seed(0)
    model = create_model(name, **SMALL.get(name, {}))
    c, h, w = model.input_shape
    x = torch.randn(2, c, h, w)
    out = model(x)
    if model.num_classes is None:  # bare inception module: a feature map of the same spatial size
        assert out.shape[0] == 2 and out.shape[2:] == (h, w)
        loss = out.pow(2).mean()
    else:
        assert out.shape == (2, model.num_classes)
        loss = F.cross_entropy(out, torch.tensor([0, 1]))
    loss.backward()
    assert torch.isfinite(loss)
    # every parameter is used (DDP without find_unused_parameters requires it) and gets a finite gradient
    for pname, p in model.named_parameters():
        if not p.requires_grad:  # frozen by design (fastcnn's whitening filters, its BN scales)
            assert p.grad is None
            continue
        assert p.grad is not None, f"{name}: parameter {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", ALL)
def test_model_info_matches_built_model(name):
    info = model_info(name)
    with torch.device("meta"):
        model = create_model(name)
    assert info["params"] == sum(p.numel() for p in model.parameters()) > 0
    assert info["input_shape"] == model.input_shape
    assert info["description"]


@pytest.mark.parametrize("name", ALL)
def test_wrong_input_shape_names_expected_shape(name):
    with torch.device("meta"):
        model = create_model(name)
    c, h, w = model.input_shape
    # a network that pools globally (min_size set) takes other sizes down to its smallest; below it, it refuses
    other = (2, c, h + 1, w + 1) if model.min_size is None else (2, c, model.min_size - 1, model.min_size - 1)
    for bad in [(2, c + 1, h, w), other, (c, h, w)]:
        with pytest.raises(CnnlabError, match=rf"\(N, {c}, {h}, {w}\)"):
            model(torch.zeros(bad, device="meta"))
    if model.min_size is not None:
        assert model(torch.zeros((2, c, h + 1, w + 1), device="meta")).shape == (2, model.num_classes)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("key,value", [("num_classes", 0), ("in_channels", -3), ("input_size", 0),
                                       ("input_size", -32), ("in_channels", 2.5), ("num_classes", True)])
def test_nonsense_sizes_are_clear_errors(name, key, value):
    with pytest.raises(CnnlabError, match=key):
        create_model(name, **{key: value})


@pytest.mark.parametrize("name", ALL)
def test_unknown_option_lists_valid_ones(name):
    with pytest.raises(CnnlabError, match="valid options: num_classes, in_channels, input_size"):
        create_model(name, no_such_option=1)


def test_unknown_model_lists_names():
    with pytest.raises(CnnlabError, match=r"unknown model 'simplen'.*did you mean 'simplenn'.*resnet20, resnet32"):
        create_model("simplen")


def test_duplicate_registration_rejected():
    with pytest.raises(ValueError, match="duplicate model name 'simplenn'"):
        register_model("simplenn", "again")(lambda num_classes=10, in_channels=3, input_size=32: None)


@pytest.mark.parametrize("name,size", [("vgg_a", 28), ("simplenn", 8), ("alexnet", 32), ("minigooglenet", 5)])
def test_too_small_input_says_which_sizes_work(name, size):
    with pytest.raises(CnnlabError, match=r"input_size=\d+ is too small; use input_size >= \d+"):
        create_model(name, input_size=size)


@pytest.mark.parametrize("name", ALL)
def test_activation_is_an_argument(name):
    with torch.device("meta"):
        model = create_model(name, activation="swish")
    kinds = {type(m) for m in model.modules()}
    assert Swish in kinds and nn.ReLU not in kinds and nn.Tanh not in kinds


@pytest.mark.parametrize("bad", [dict(activation="relu6"), dict(shortcut="C")])
def test_bad_option_values(bad):
    with pytest.raises(CnnlabError, match="relu6|shortcut"):
        create_model("resnet20", **bad)


@pytest.mark.parametrize("bad", [dict(dropout=1.0), dict(dropout=-0.1), dict(batch_norm="yes")])
def test_bad_simplenn_options(bad):
    with pytest.raises(CnnlabError, match=next(iter(bad))):
        create_model("simplenn", **bad)


def test_model_options_change_structure():
    bn = create_model("simplenn", batch_norm=True, dropout=0.3)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 2
    assert [m.p for m in bn.modules() if isinstance(m, nn.Dropout)] == [0.3, 0.3, 0.3]
    assert all(m.bias is None for m in bn.modules() if isinstance(m, nn.Conv2d))  # BN's shift replaces the bias
    assert sum(isinstance(m, nn.BatchNorm2d) for m in create_model("vgg_a_bn").modules()) == 8
    assert sum(isinstance(m, nn.BatchNorm2d) for m in create_model("vgg_a").modules()) == 0
    assert sum(isinstance(m, nn.Conv2d) for m in create_model("vgg_a").modules()) == 8


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_resnet_has_6n_plus_2_weighted_layers(depth):
    with torch.device("meta"):
        model = create_model(f"resnet{depth}")
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and "shortcut" not in n]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == depth
    widths = sorted({m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)})
    assert widths == [16, 32, 64]


def test_resnet_shortcut_options():
    a, b = create_model("resnet20", shortcut="A"), create_model("resnet20", shortcut="b")
    # option A: parameter-free zero padding; option B adds two 1×1 projections + BN (16->32, 32->64)
    extra = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert sum(p.numel() for p in b.parameters()) - sum(p.numel() for p in a.parameters()) == extra
    x = torch.randn(2, 3, 32, 32)
    block = a.features.stage2[0]
    sc = block.shortcut(x.new_ones(2, 16, 32, 32))
    assert sc.shape == (2, 32, 16, 16) and sc[:, :16].eq(1).all() and sc[:, 16:].eq(0).all()


def test_mlp_inputs_and_dropout():
    m = create_model("mlp", in_channels=1, input_size=28, hidden=[500, 300], input_dropout=0.2, dropout=0.5)
    linears = [l for l in m.modules() if isinstance(l, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(784, 500), (500, 300), (300, 10)]
    assert [d.p for d in m.modules() if isinstance(d, nn.Dropout)] == [0.2, 0.5, 0.5]
    assert create_model("mlp")(torch.randn(3, 3, 32, 32)).shape == (3, 10)
    with pytest.raises(CnnlabError, match="hidden"):
        create_model("mlp", hidden=[100, 0])


def test_activations_registry_and_swish():
    assert {"relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid", "swish", "swish_learnable"} <= set(ACTIVATIONS)
    x = torch.linspace(-6, 6, 101)
    assert torch.allclose(make_activation("swish")(x), F.silu(x), atol=1e-6)
    assert torch.allclose(Swish(beta=2.0)(x), x * torch.sigmoid(2 * x))
    learn = make_activation("swish_learnable")
    assert [n for n, _ in learn.named_parameters()] == ["beta"]
    learn(x).sum().backward()
    # d/dβ x·σ(βx) = x²·σ(βx)(1 − σ(βx)) at β = 1
    s = torch.sigmoid(x)
    assert math.isclose(learn.beta.grad.item(), (x * x * s * (1 - s)).sum().item(), rel_tol=1e-5)
    with pytest.raises(CnnlabError, match="unknown activation 'swishh'"):
        make_activation("swishh")


@pytest.mark.parametrize("name", ALL)
def test_only_batchnorm_buffers(name):
    """DDP broadcasts buffers from rank 0; the models keep none besides BN statistics."""
    with torch.device("meta"):
        model = create_model(name)
    for bname, _ in model.named_buffers():
        assert bname.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked"), bname


@pytest.mark.parametrize("name,opts", [("simplenn", {}), ("resnet20", dict(activation="swish_learnable")),
                                       ("minigooglenet", {})])
def test_torch_compile_fullgraph_and_channels_last(name, opts):
    torch.manual_seed(0)
    model = create_model(name, **opts).eval()
    x = torch.randn(2, *model.input_shape)
    ref = model(x)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)  # fullgraph: no graph breaks
    assert torch.allclose(compiled(x), ref, atol=1e-5)
    cl = model.to(memory_format=torch.channels_last)
    assert torch.allclose(cl(x.to(memory_format=torch.channels_last)), ref, atol=1e-5)
    torch._dynamo.reset()
