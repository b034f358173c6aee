"""Every analysis command end to end on a tiny real CIFAR-10 slice: exit status, PNG + CSV, printed results, and
one-line user errors."""

from __future__ import annotations

import csv

import json

import pytest

from cnnlab.cli import main as cli_main


@pytest.fixture
def cli(monkeypatch, capsys, session_cache):
    monkeypatch.setenv("CNNLAB_CACHE", str(session_cache))

    def run(*argv):
        code = cli_main.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="module")
def runs(shared_data, tmp_path_factory):
    """Two short simplenn runs, plain and with a strong L1 penalty, each with best.pt."""
    import os

    from cnnlab.training.config import load_config
    from cnnlab.training.trainer import Trainer

    out = tmp_path_factory.mktemp("runs")
    cache = os.environ.get("CNNLAB_TEST_CACHE") or str(tmp_path_factory.mktemp("cache"))
    old = os.environ.get("CNNLAB_CACHE")
    os.environ["CNNLAB_CACHE"] = cache
    try:
        common = [f"data.root={shared_data}", "data.train_subset=256", "data.val_subset=100", "batch.size=32",
                  "train.epochs=2", f"out={out}", "optim.lr=0.05", "train.progress=off"]
        for name, extra in (("plain", []), ("l1", ["optim.l1=0.002"])):
            Trainer(load_config(None, common + [f"name={name}"] + extra), log=lambda s: None).fit()
    finally:
        if old is None:
            os.environ.pop("CNNLAB_CACHE", None)
        else:
            os.environ["CNNLAB_CACHE"] = old
    return out


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def train_args(shared_data, out):
    return [f"data.root={shared_data}", "batch.size=32", "--subset", 256, "--out", out]


def test_find_lr_continuous_and_discrete(cli, shared_data, tmp_path):
    code, out, _ = cli("find-lr", *train_args(shared_data, tmp_path), "--start", 1e-4, "--end", 100, "--steps", 30)
    assert code == 0, out
    assert "expected cost 960 forward+backward image passes" in out  # 30 steps x 32 images
    assert "suggested lr_min=" in out and "rule 'smith'" in out
    assert (tmp_path / "find-lr.png").stat().st_size > 1000
    assert {"step", "lr", "loss", "smoothed_loss"} <= set(rows(tmp_path / "find-lr.csv")[0])
    code, out, _ = cli("find-lr", *train_args(shared_data, tmp_path), "--discrete", 3, "--start", 1e-3,
                       "--end", 1e1, "--sweep-epochs", 1, "--rule", "steepest")
    assert code == 0, out
    assert [float(r["lr"]) for r in rows(tmp_path / "find-lr.csv")] == pytest.approx([1e-3, 0.1, 10.0])
    assert "rule 'steepest'" in out


def test_find_batch(cli, shared_data, tmp_path):
    code, out, _ = cli("find-batch", *train_args(shared_data, tmp_path), "--sizes", 16, 32, 64, 1024,
                       "--steps", 3, "--micro", 16)
    assert code == 0, out
    assert "left out: 1024" in out and "suggested batch.policy=cyclical batch.min=" in out
    r = rows(tmp_path / "find-batch.csv")
    assert [int(x["batch_size"]) for x in r] == [16, 32, 64] and [int(x["micro_batch"]) for x in r] == [16, 16, 16]


def test_loss_band_and_smoothness_compare_without_and_with_bn(cli, shared_data, tmp_path):
    code, out, _ = cli("loss-band", *train_args(shared_data, tmp_path), "--lrs", 0.01, 0.05, "--steps", 4,
                       "--gradients")
    assert code == 0, out
    labels = {r["label"] for r in rows(tmp_path / "loss-band.csv")}
    assert labels == {"simplenn without BN", "simplenn with BN"}
    lines = json.loads((tmp_path / "loss-band.json").read_text())["lines"]
    assert lines[0].startswith("simplenn without BN: mean loss band width") and "gradient change" in lines[1]
    assert lines[2].startswith("narrowest loss band: ") and lines[3].startswith("narrowest gradient-change band")
    assert all(line in out for line in lines)
    assert all(float(r["loss_max"]) >= float(r["loss_min"]) for r in rows(tmp_path / "loss-band.csv"))
    code, out, _ = cli("smoothness", *train_args(shared_data, tmp_path), "--steps", 4, "--every", 2,
                       "--probe-size", 32, "--variant", "relu", "model.options.activation=relu",
                       "--variant", "tanh", "model.options.activation=tanh")
    assert code == 0, out
    assert "effective beta-smoothness median" in out
    r = rows(tmp_path / "smoothness.csv")
    assert {x["label"] for x in r} == {"relu", "tanh"} and all(float(x["beta_eff"]) > 0 for x in r)


def test_landscape_1d_and_2d(cli, runs, tmp_path, monkeypatch):
    import cnnlab.analysis.common as common
    titles, save = [], common.save_figure
    monkeypatch.setattr(common, "save_figure", lambda fig, path, **kw: titles.append(fig.axes[0].get_title())
                        or save(fig, path, **kw))
    code, out, _ = cli("landscape", runs / "plain", "--subset", 100, "--points", 5, "--out", tmp_path)
    assert code == 0, out
    assert titles == ["plain (simplenn): 1-D loss landscape (100 images)"]  # the run and its model are named
    assert "expected cost 500 forward image passes" in out
    assert len(rows(tmp_path / "landscape-1d.csv")) == 5
    code, out, _ = cli("landscape", runs / "plain", "--subset", 50, "--dims", 2, "--points", 3, "--split", "val")
    assert code == 0, out
    assert len(rows(runs / "plain" / "analysis" / "landscape-2d.csv")) == 9


def test_weights_of_two_runs_show_l1_sparsity(cli, runs, tmp_path):
    code, out, _ = cli("weights", runs / "plain", runs / "l1", "--labels", "plain", "l1", "--out", tmp_path,
                       "--threshold", 1e-2)
    assert code == 0, out
    total = {r["label"]: float(r["sparsity"]) for r in rows(tmp_path / "weights.csv") if r["layer"] == "ALL"}
    assert total["l1"] > total["plain"]  # the L1 penalty pushes weights toward zero
    hist = rows(tmp_path / "weights-hist.csv")
    assert {r["label"] for r in hist} == {"plain", "l1"}


def test_filters_feature_maps_and_saliency(cli, runs):
    assert cli("filters", runs / "plain")[0] == 0
    assert len(rows(runs / "plain" / "analysis" / "filters.csv")) == 8 * 3 * 5 * 5
    code, out, _ = cli("feature-maps", runs / "plain", "--image", 3)
    assert code == 0 and "layer features.act1: 8 maps of 28x28" in out
    code, out, _ = cli("saliency", runs / "plain", "--images", 0, 1, 2, "--target", "label")
    assert code == 0, out
    r = rows(runs / "plain" / "analysis" / "saliency.csv")
    assert [int(x["index"]) for x in r] == [0, 1, 2] and all(float(x["saliency_max"]) > 0 for x in r)
    assert all(x["class"] == x["label"] for x in r)
    code, out, _ = cli("saliency", runs / "plain")  # default: the first image of each of the first six classes
    assert code == 0, out
    assert [int(x["label"]) for x in rows(runs / "plain" / "analysis" / "saliency.csv")] == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("argv,needle", [
    (["find-lr", "--rule", "fastest"], "unknown lr rule 'fastest'"),
    (["landscape", "no/such/run"], "run folder 'no/such/run' not found"),
    (["weights", "RUN", "RUN", "--labels", "a"], "--labels needs one distinct label per run"),
    (["feature-maps", "RUN", "--layer", "features.nope"], "has no layer 'features.nope'"),
    (["saliency", "RUN", "--images", "99999"], "outside split 'val'"),
    (["saliency", "RUN", "--split", "holdout", "--target", "label"], "needs labelled images"),
])
def test_user_errors_are_one_line(cli, runs, argv, needle):
    code, out, err = cli(*[str(runs / "plain") if a == "RUN" else a for a in argv])
    assert code == 2
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
