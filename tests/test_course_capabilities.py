"""Course capabilities: training losses, width and plain-network options, printable optimizer updates, a carved
labelled test split, growing/shrinking cyclical batch sizes, an lr range that is never empty, and the computation
questions on whole networks (AlexNet's working, receptive fields of any model, VGG19's two conventions)."""

import pytest
import torch

import cnnlab.cli.main as cli_main
from cnnlab.analysis.range_tests import batch_finder_diagram, suggest
from cnnlab.data import load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model, model_info
from cnnlab.models import calc
from cnnlab.models.registry import default_args
from cnnlab.training.config import load_config
from cnnlab.training.losses import build_loss, describe
from cnnlab.training.schedules import batch_size_at
from cnnlab.training.trainer import Trainer

TINY = ["data.train_subset=400", "data.val_subset=200", "batch.size=50", "train.epochs=2", "optim.lr=0.05",
        "model.options.batch_norm=true"]


@pytest.fixture
def cfg_for(shared_data, session_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_CACHE", str(session_cache))
    return lambda *o: load_config(None, TINY + [f"data.root={shared_data}", f"out={tmp_path}", "name=c", *o])


# -- losses ------------------------------------------------------------------------------------------------------

def test_each_loss_matches_its_formula():
    torch.manual_seed(0)
    out, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    hinge = torch.stack([sum(max(0.0, 1 - out[i, y[i]] + out[i, j]) for j in range(4) if j != y[i]) / 4
                         for i in range(6)]).mean()
    assert torch.allclose(build_loss("multi_margin")(out, y), hinge)
    p = out.softmax(1)
    mse = ((p - torch.nn.functional.one_hot(y, 4)) ** 2).sum(1).mean()
    assert torch.allclose(build_loss("mse")(out, y), mse)
    assert torch.allclose(build_loss("cross_entropy")(out, y), torch.nn.functional.cross_entropy(out, y))
    assert describe("mse", 0.1) == "MSE on softmax, label smoothing 0.1" and describe("multi_margin") == \
        "multi-class hinge"


@pytest.mark.parametrize("loss", ["multi_margin", "mse"])
def test_training_with_another_loss_learns_and_validates_in_cross_entropy(cfg_for, loss):
    s = Trainer(cfg_for(f"train.loss={loss}", "train.epochs=3"), log=lambda m: None).fit()
    assert s["status"] == "finished" and s["best_val_acc"] > 0.15  # chance is 0.10
    assert s["final_val_loss"] > 1.0  # cross-entropy scale (hinge and MSE on softmax would be < 1 here)


def test_unknown_loss_is_refused(bad_input):
    bad_input()
    with pytest.raises(CnnlabError, match="train.loss"):
        load_config(None, ["train.loss=hinge2"])


# -- model options ------------------------------------------------------------------------------------------------

def test_simplenn_width_scales_filters_and_neurons():
    assert model_info("simplenn")["params"] == 82_030  # width 1 is the course table
    m = create_model("simplenn", width=2)
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    fcs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)]
    assert [c.out_channels for c in convs] == [16, 32] and [f.out_features for f in fcs] == [240, 168, 10]
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(CnnlabError, match="width"):
        create_model("simplenn", width=0)


def test_plain_resnet_has_no_shortcuts_and_the_same_weights_as_option_a():
    plain, a = create_model("resnet20", shortcut="none"), create_model("resnet20")
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in a.parameters()) == 269_722
    assert all(b.shortcut is None for b in plain.modules() if hasattr(b, "shortcut"))
    plain.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(plain.eval()(x), a.eval()(x))  # the identity path is what differs


def test_resnet_entries_are_one_builder_with_its_options():
    for name in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110"):
        d = default_args(name)
        assert d["width"] == 16 and d["shortcut"] == "A" and "depth" not in d and "name" not in d
    wide = create_model("resnet20", width=32)
    assert sum(p.numel() for p in wide.parameters()) > 3.9 * 269_722
    with pytest.raises(CnnlabError, match="valid options: num_classes, in_channels, input_size, shortcut"):
        create_model("resnet20", depth=30)


# -- optimizers, lr range, batch size ---------------------------------------------------------------------------

def test_optimizers_command_prints_every_update_and_its_hyperparameters(capsys):
    assert cli_main.main(["optimizers"]) == 0
    out = capsys.readouterr().out
    for name in ("sgd", "adagrad", "rmsprop", "rmsprop_nesterov", "adadelta", "adam", "adamw"):
        assert f"\n{name}: " in out
    assert "v <- momentum*v + g" in out and "m^ = m/(1-beta1^t)" in out and "optim.betas = [0.9, 0.999]" in out
    assert cli_main.main(["optimizers", "adam"]) == 0 and "sgd:" not in capsys.readouterr().out


def test_a_discrete_sweep_never_suggests_an_empty_range():
    # the whole fall happens between two decades, so the rule alone gives lr_min = lr_max = 0.1
    s = suggest([1e-3, 1e-2, 1e-1, 1.0], [2.30, 2.30, 1.00, float("nan")])
    assert (s.lr_min, s.lr_max) == (1e-2, 1e-1) and "widened" in s.how
    flat = suggest([1e-3, 1e-2], [2.3, 2.4])  # no fall at all: still a range, and said so
    assert flat.lr_min < flat.lr_max and "never falls" in flat.how


def test_cyclical_batch_size_that_grows_towards_its_maximum():
    cfg = load_config(None, ["batch.policy=cyclical", "batch.min=64", "batch.max=1024", "batch.step_epochs=2",
                             "batch.mode=exp_increase", "batch.gamma=0.8"]).batch
    sizes = [batch_size_at(e, cfg) for e in range(16)]
    assert sizes[0] == 64 and max(sizes) == 1024 and all(64 <= b <= 1024 for b in sizes)
    lows = [min(sizes[i:i + 4]) for i in range(0, 16, 4)]  # the low point of each 4-epoch cycle
    assert lows == sorted(lows) and lows[-1] > 4 * lows[0], sizes
    cfg.mode = "exp_decrease"
    highs = [max(batch_size_at(e, cfg) for e in range(i, i + 4)) for i in range(0, 16, 4)]
    assert highs == sorted(highs, reverse=True) and highs[-1] < highs[0] / 4


def test_batch_finder_block_diagram_uses_the_codes_thresholds():
    fig = batch_finder_diagram()
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "b_min = smallest B with gain >= 50%" in texts and ">= 90%" in texts and "micro-batches" in texts
    assert "fall >= 1% of loss(smallest B)?" in texts and "keep the smallest" in texts  # the flat-loss branch


def test_batch_finder_diagram_describes_the_test_that_ran(tmp_path, capsys):
    """HW3 2.5: the diagram states the lr, sizes and steps the range test ran with (the recipe's batch-range)."""
    from cnnlab.cli import main as cli_main

    texts = " ".join(t.get_text() for t in batch_finder_diagram([64, 128, 256, 512], 859, 0.0046).axes[0].texts)
    assert "lr fixed at 0.0046; candidate sizes B = 64, 128, ..., 512" in texts and "train 859 steps" in texts
    assert "lr_min" not in texts
    assert cli_main.main(["find-batch", "--diagram", "--min", "32", "--max", "64", "--steps", "7",
                          "--out", str(tmp_path), "optim.lr=0.01"]) == 0
    assert (tmp_path / "find-batch-algorithm.png").stat().st_size > 10_000


# -- a labelled test split carved from train ------------------------------------------------------------------------

def test_test_size_carves_a_stratified_labelled_test_split(shared_data, session_cache, monkeypatch, bad_input):
    monkeypatch.setenv("CNNLAB_CACHE", str(session_cache))
    ds = load_dataset("cifar10", root=shared_data, val_size=5000, test_size=1000)
    assert len(ds.test) == 1000 and torch.bincount(ds.test.y).tolist() == [100] * 10
    assert len(ds.train) == 50_000 - 5000 - 1000 and len(ds.val) == 5000
    assert not set(ds.test.ids) & (set(ds.train.ids) | set(ds.val.ids))
    assert "carved from train" in ds.source and "test" in ds.splits()
    bad_input()
    with pytest.raises(CnnlabError, match="has its own labelled test split"):
        load_dataset("fashion-mnist", root=shared_data, test_size=1000)


# -- computation questions on whole networks ----------------------------------------------------------------------

def test_alexnet_working_sums_to_the_built_model():
    w = calc.alexnet_params()
    assert w.answer["params"] == model_info("alexnet")["params"] == 60_965_224
    text = w.to_text()
    assert "96 filters 11x11x3, stride 4, padding 2 -> 55x55x96" in text and "groups 2" in text


def test_receptive_field_of_any_model():
    # by hand, r += (k-1)*j, j *= s: conv5 5, pool 6 (j 2), conv3 10, pool 12 (j 4)
    assert calc.receptive_field_of("simplenn").answer == {"field": 12, "jump": 4}
    # conv 3; stage 1: 6 convs +2 = 15; stage 2: +2 (stride 2: j 2), 5 x +4 = 37; stage 3: +4 (j 4), 5 x +8 = 81
    a, b = calc.receptive_field_of("resnet20").answer, calc.receptive_field_of("resnet20", shortcut="B").answer
    assert a == b == {"field": 81, "jump": 4}                              # projections add no field
    # VGG-A at 32x32: 3, pool 4, 8, pool 10, 18, 26, pool 30, 46, 62, pool 70, 102, 134, pool 150 (j 32)
    assert calc.receptive_field_of("vgg_a").answer == {"field": 150, "jump": 32}


def test_vgg19_in_both_conventions():
    w = calc.vgg19_table()
    biases = (64 * 2 + 128 * 2 + 256 * 4 + 512 * 8) + (4096 + 4096 + 1000)
    assert w.answer["params"] == 143_667_240 and w.answer["weights"] == 143_667_240 - biases
    assert "without biases" in w.to_text()


def test_whole_network_separable_speedup():
    w = calc.separable_network("simplenn")
    assert "470,400 ->       77,616" in w.to_text()  # conv1: 28*28*8*25*3 against 28*28*3*25 + 28*28*3*8
    assert 1 < w.answer["speedup"] < 6
