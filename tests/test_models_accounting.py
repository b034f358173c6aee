"""Accounting: golden parameter and MAC counts from the papers and the course, per-layer tables whose columns sum to
their totals (torchinfo-style golden tests), MACs cross-checked against torch.utils.flop_counter, and the course's
computation questions (calc) cross-checked against the real modules."""

from __future__ import annotations

import csv
import io
import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.errors import CnnlabError
from cnnlab.models import calc, create_model, list_models
from cnnlab.models.summary import LayerRow, summarize

SMALL = {"vgg19": dict(input_size=32), "alexnet": dict(input_size=64)}


def meta(name, **kw):
    with torch.device("meta"):
        return create_model(name, **kw)


# ---------------------------------------------------------------------------------------------------------------
# golden numbers


@pytest.mark.parametrize("name,kw,params", [
    ("simplenn", {}, 82_030),                       # course table
    ("resnet20", {}, 269_722),                      # He et al. 2016 Table 6: 0.27 M
    ("resnet32", {}, 464_154),                      # 0.46 M
    ("resnet44", {}, 658_586),                      # 0.66 M
    ("resnet56", {}, 853_018),                      # 0.85 M
    ("resnet110", {}, 1_727_962),                   # 1.7 M
    ("vgg19", {}, 143_667_240),                     # Simonyan & Zisserman 2015 Table 2: 144 M
    ("alexnet", {}, 60_965_224),                    # Krizhevsky et al. 2012: "60 million" (two-GPU grouping)
    ("alexnet", dict(groups=1), 62_378_344),        # the single-tower count quoted in most tables
    ("lenet5", {}, 61_706),                         # with a fully connected C3
])
def test_golden_parameter_counts(name, kw, params):
    assert sum(p.numel() for p in meta(name, **kw).parameters()) == params


def test_simplenn_course_table():
    s = summarize(create_model("simplenn"))
    assert (s.totals.params, s.totals.weights, s.totals.biases) == (82_030, 81_792, 238)
    by = {r.name: r for r in s.rows}
    expected = {"features.conv1": ((1, 8, 28, 28), 608, 470_400), "features.conv2": ((1, 16, 12, 12), 1_168, 165_888),
                "classifier.fc1": ((1, 120), 69_240, 69_120), "classifier.fc2": ((1, 84), 10_164, 10_080),
                "classifier.fc3": ((1, 10), 850, 840)}
    for name, (shape, params, macs) in expected.items():
        assert (by[name].output_shape, by[name].params, by[name].macs) == (shape, params, macs)
    assert s.totals.macs == 716_328  # 0.716 M: conv and FC multiply-accumulates, biases not counted


@pytest.mark.parametrize("name,macs", [("resnet20", 40_551_040),      # ≈ 40.6 M, the usual quote for ResNet-20
                                       ("vgg19", 19_632_062_464),     # He et al. 2016 Table: 19.6 G "FLOPs" (MACs)
                                       ("alexnet", 724_406_816)])
def test_golden_macs(name, macs):
    assert summarize(meta(name)).totals.macs == macs


# ---------------------------------------------------------------------------------------------------------------
# tables


@pytest.mark.parametrize("name", list_models())
def test_macs_match_torch_flop_counter(name):
    """FlopCounterMode counts 2 FLOPs per conv/matmul multiply-accumulate and nothing else; our MACs must be half."""
    model = create_model(name, **SMALL.get(name, {})).eval()
    x = torch.randn(2, *model.input_shape)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    s = summarize(model, batch_size=2)
    assert counter.get_total_flops() == 2 * s.totals.macs == s.totals.flops > 0


@pytest.mark.parametrize("name", list_models())
def test_columns_sum_to_totals(name):
    model = meta(name)
    s = summarize(model, batch_size=3, dtype=torch.float16)
    t = s.totals
    for col in ("params", "weights", "biases", "macs", "activations", "activation_bytes"):
        assert sum(getattr(r, col) for r in s.rows) == getattr(t, col), col
    assert t.params == sum(p.numel() for p in model.parameters())
    assert t.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)  # fastcnn freezes some
    assert all(r.params == r.weights + r.biases for r in s.rows)
    assert all(r.activation_bytes == 2 * r.activations for r in s.rows)  # float16: 2 bytes per value
    assert all(r.output_shape[0] == 3 for r in s.rows)
    assert t.input_elements == 3 * math.prod(model.input_shape) and t.param_bytes == 2 * t.params


def test_batch_scaling_and_meta_equals_cpu():
    cpu = summarize(create_model("resnet20"), batch_size=4)
    one = summarize(meta("resnet20"), batch_size=1)
    assert cpu.totals.params == one.totals.params
    assert cpu.totals.macs == 4 * one.totals.macs and cpu.totals.activations == 4 * one.totals.activations
    assert [r.name for r in cpu.rows] == [r.name for r in one.rows]


def test_summary_leaves_model_state_alone():
    model = create_model("resnet20").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summarize(model)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


SIMPLENN_TABLE = """\
Layer (type)                   Output shape     Weights  Biases  Params     MACs  Activations
---------------------------------------------------------------------------------------------
features.conv1 (Conv2d)        [1, 8, 28, 28]       600       8     608  470,400        6,272
features.act1 (ReLU)           [1, 8, 28, 28]         0       0       0        0        6,272
features.pool1 (MaxPool2d)     [1, 8, 14, 14]         0       0       0        0        1,568
features.conv2 (Conv2d)        [1, 16, 12, 12]    1,152      16   1,168  165,888        2,304
features.act2 (ReLU)           [1, 16, 12, 12]        0       0       0        0        2,304
features.pool2 (MaxPool2d)     [1, 16, 6, 6]          0       0       0        0          576
classifier.flatten1 (Flatten)  [1, 576]               0       0       0        0            0
classifier.fc1 (Linear)        [1, 120]          69,120     120  69,240   69,120          120
classifier.act1 (ReLU)         [1, 120]               0       0       0        0          120
classifier.fc2 (Linear)        [1, 84]           10,080      84  10,164   10,080           84
classifier.act2 (ReLU)         [1, 84]                0       0       0        0           84
classifier.fc3 (Linear)        [1, 10]              840      10     850      840           10
---------------------------------------------------------------------------------------------
TOTAL                                            81,792     238  82,030  716,328       19,714
"""


def test_simplenn_golden_text_table():
    text = summarize(create_model("simplenn")).to_text()
    assert SIMPLENN_TABLE in text
    assert "MACs (multiply-accumulates of conv and linear layers, batch of 1): 716,328 (0.716 M)" in text
    assert "FLOPs (= 2 x MACs): 1,432,656" in text
    assert "weights 81,792 + biases 238" in text


def test_csv_total_row_is_the_column_sum():
    rows = list(csv.DictReader(io.StringIO(summarize(create_model("lenet5")).to_csv())))
    total, body = rows[-1], rows[:-1]
    assert total["name"] == "TOTAL" and len(body) > 5
    for col in ("params", "weights", "biases", "macs", "activations", "activation_bytes"):
        assert sum(int(r[col]) for r in body) == int(total[col])
    assert list(rows[0]) == [f for f in LayerRow.__dataclass_fields__]


def test_summary_input_errors():
    model = create_model("simplenn")
    with pytest.raises(CnnlabError, match=r"expects input of shape \(N, 3, 32, 32\)"):
        summarize(model, input_shape=(1, 28, 28))
    with pytest.raises(CnnlabError, match="batch_size"):
        summarize(model, batch_size=0)
    with pytest.raises(CnnlabError, match="input_shape"):
        summarize(nn.Linear(3, 4))


# ---------------------------------------------------------------------------------------------------------------
# calc: the course questions


def test_calc_conv_matches_simplenn_layer():
    a = calc.conv(32, 32, 3, filters=8, size=5).answer
    row = {r.name: r for r in summarize(create_model("simplenn")).rows}["features.conv1"]
    assert a["output"] == (28, 28, 8) and a["params"] == row.params == 608 and a["macs"] == row.macs == 470_400
    assert a["params_per_filter"] == 76


def test_calc_conv_textbook_cases():
    # CS231n: 32x32x3 input, 10 5x5 filters, stride 1, pad 2 -> 32x32x10 and 760 parameters
    a = calc.conv(32, 32, 3, 10, 5, 1, 2).answer
    assert a["output"] == (32, 32, 10) and a["params"] == 760
    # one 1x1 filter on 64 channels: 64 weights + 1 bias
    assert calc.conv(56, 56, 64, 1, 1).answer["params_per_filter"] == 65
    # AlexNet conv1 (227x227x3, 96 11x11 stride 4) -> 55x55x96, 34,944 params
    a = calc.conv(227, 227, 3, 96, 11, stride=4).answer
    assert a["output"] == (55, 55, 96) and a["params"] == 34_944
    assert calc.conv(32, 32, 16, 16, 3, padding="same").answer["output"] == (32, 32, 16)
    w = calc.conv(7, 7, 3, 2, 3, stride=3)
    assert w.answer["output"] == (2, 2, 2) and any("not a multiple" in s for s in w.steps)


def test_calc_fc():
    a = calc.fc(7, 7, 512, 4096).answer  # VGG's first FC layer
    assert (a["weights"], a["biases"], a["params"]) == (102_760_448, 4_096, 102_764_544)
    assert calc.fc(7, 7, 512, 4096, bias=False).answer["params"] == 102_760_448


@pytest.mark.parametrize("layers,size,side", [(1, 3, 3), (2, 3, 5), (3, 3, 7), (3, 5, 13)])
def test_calc_receptive_field(layers, size, side):
    a = calc.receptive_field(layers, size, channels=64).answer
    assert a["side"] == side and a["area"] == side ** 2
    assert a["stack_weights"] == layers * size * size * 64 * 64


def test_calc_separable_against_real_modules():
    a = calc.separable(112, 112, 64, filters=128, size=3).answer
    assert math.isclose(a["speedup"], 1 / (1 / 128 + 1 / 9))
    regular = nn.Conv2d(64, 128, 3, padding=1, bias=False)
    sep = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False), nn.Conv2d(64, 128, 1, bias=False))
    x = torch.zeros(1, 64, 112, 112, device="meta")
    for module, key in ((regular.to("meta"), "regular_macs"), (sep.to("meta"), "separable_macs")):
        counter = FlopCounterMode(display=False)
        with counter:
            module(x)
        assert counter.get_total_flops() == 2 * a[key]
    assert a["regular_weights"] == regular.weight.numel() and a["separable_weights"] == sum(
        p.numel() for p in sep.parameters())


@pytest.mark.parametrize("counts", [{}, dict(n1x1=128, n3x3_reduce=128, n3x3=192, n5x5_reduce=32, n5x5=96,
                                              pool_proj=64)])
def test_calc_inception_matches_modules(counts):
    a = calc.inception(28, 28, 192, **counts).answer
    naive_kw = {k: v for k, v in counts.items() if k in ("n1x1", "n3x3", "n5x5")}
    naive = create_model("inception_naive", **naive_kw)
    reduced = create_model("inception_reduced", **counts)
    for model, prefix in ((naive, "naive"), (reduced, "reduced")):
        s = summarize(model)
        out = model(torch.zeros(1, 192, 28, 28))
        assert a[f"{prefix}_output"] == (28, 28, out.shape[1])
        assert (a[f"{prefix}_macs"], a[f"{prefix}_params"]) == (s.totals.macs, s.totals.params)


def test_calc_inception_course_numbers():
    # Ng's bottleneck example = inception (3a)'s 5x5 branch: 120.4 M multiplies naive, 2.4 M + 10.0 M reduced
    w = calc.inception(28, 28, 192)
    assert w.answer["naive_output"] == (28, 28, 416) and w.answer["reduced_output"] == (28, 28, 256)
    text = w.to_text()
    assert "120,422,400" in text and "2,408,448" in text and "10,035,200" in text and "12,443,648" in text


def test_calc_vgg19_table():
    w = calc.vgg19_table()
    a = w.answer
    assert a["params"] == 143_667_240 and a["macs"] == 19_632_062_464
    assert a["rows"][0] == ("CONV3-64", 224 * 224 * 64, 1_792)
    assert sum(1 for label, _, _ in a["rows"] if label.startswith("CONV")) == 16
    assert a["activations"] == 3 * 224 * 224 + sum(acts for _, acts, _ in a["rows"])


@pytest.mark.parametrize("call,match", [
    (lambda: calc.conv(32, 32, 3, 8, 40), "does not fit"),
    (lambda: calc.conv(32, 32, 3, 0, 5), "filters"),
    (lambda: calc.conv(32, 32, 3, 8, 4, padding="same"), "odd filter size"),
    (lambda: calc.conv(32, 32, -3, 8, 3), "channels"),
    (lambda: calc.fc(7, 7, 512, -1), "units"),
    (lambda: calc.receptive_field(0, 3), "layers"),
    (lambda: calc.inception(28, 28, 192, n3x3_reduce=0), "n3x3-reduce"),
])
def test_calc_errors(call, match):
    with pytest.raises(CnnlabError, match=match):
        call()
