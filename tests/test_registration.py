""""How to add X" (docs/architecture.md), tried: a registration alone is enough for a new optimizer, a new report
figure kind and a new answer kind. They are registered here, in the test, and used end to end: the config (with the
optimizer's own defaults), `cnnlab optimizers`, the spec checks, a spec that names all three, a real sweep on a few
hundred CIFAR-10 images and its report. Nothing else in cnnlab is edited."""

from __future__ import annotations

import pytest
import torch
import yaml

import cnnlab.cli.main as cli_main
from cnnlab.errors import CnnlabError
from cnnlab.experiments.answers import ANSWERS, check_answer, register_answer, show
from cnnlab.experiments.figures import FIGURES, SUMMARY_METRICS, Drawn, register_figure
from cnnlab.experiments.spec import load_spec
from cnnlab.plotting import new_figure
from cnnlab.training.config import load_config
from cnnlab.training.optim import OPTIMIZERS, register_optimizer

LION_BETAS = [0.9, 0.99]  # Chen et al. 2023: not Adam's (0.9, 0.999), the schema's default


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023, Algorithm 2), in a few lines: the step is the sign of an interpolated momentum."""

    def __init__(self, params, lr, betas, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            (b1, b2), lr, wd = group["betas"], group["lr"], group["weight_decay"]
            for p in (p for p in group["params"] if p.grad is not None):
                m = self.state[p].setdefault("m", torch.zeros_like(p))
                p.mul_(1 - lr * wd).add_(torch.sign(b1 * m + (1 - b1) * p.grad), alpha=-lr)
                m.mul_(b2).add_(p.grad, alpha=1 - b2)


def _lion(groups, cfg):
    return Lion(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def _spread(entries, y="best_val_acc"):
    """A tiny figure kind: one summary metric per run, as dots."""
    rows = [{"run": e.name, y: e.metric(y)} for e in entries if e.metric(y) is not None]
    if not rows:
        return None
    fig, axes = new_figure()
    axes[0][0].plot(range(len(rows)), [r[y] for r in rows], "o")
    return Drawn(f"spread over the runs of {y.replace('_', ' ')}", fig, rows)


def _range(entries, metrics="best_val_acc"):
    """A tiny answer kind: the range of one metric over the runs."""
    values = [v for v in (e.metric(metrics) for e in entries) if v is not None]
    return f"The runs span {show(metrics, min(values))} to {show(metrics, max(values))} in {metrics}"


@pytest.fixture
def registered():
    """Register the optimizer and the figure kind as a new module would, and take them out again afterwards (the
    registries are process-wide, and other tests list every entry)."""
    register_optimizer("lion", "Lion (Chen et al. 2023): the sign of an interpolated momentum",
                       ["c <- beta1*m + (1-beta1)*g", "w <- w - eta*sign(c)", "m <- beta2*m + (1-beta2)*g"],
                       ("lr", "betas"), defaults={"betas": LION_BETAS, "lr": 1e-4})(_lion)
    register_figure("spread", y=SUMMARY_METRICS)(_spread)
    register_answer("range")(_range)
    yield
    OPTIMIZERS._items.pop("lion")
    FIGURES._items.pop("spread")
    ANSWERS._items.pop("range")


def test_an_optimizer_entry_brings_its_own_defaults(registered):
    cfg = load_config(None, ["optim.name=lion"])
    assert (cfg.optim.betas, cfg.optim.lr) == (LION_BETAS, 1e-4)
    # what the user sets wins, wherever it is set
    assert load_config(None, ["optim.name=lion", "optim.betas=[0.8, 0.9]"]).optim.betas == [0.8, 0.9]
    assert load_config(None, base={"optim": {"name": "lion", "lr": 0.5}}).optim.lr == 0.5
    # an optimizer without defaults of its own keeps the schema's: recorded runs keep their identity
    assert load_config(None, ["optim.name=adam"]).optim.betas == [0.9, 0.999]
    assert load_config(None, ["optim.name=lion", "optim.name=adam"]).optim.lr == 0.01


def test_an_optimizer_entry_is_printed_by_cnnlab_optimizers(registered, capsys):
    assert cli_main.main(["optimizers", "lion"]) == 0
    out = capsys.readouterr().out
    assert "lion: Lion (Chen et al. 2023)" in out
    assert "w <- w - eta*sign(c)" in out
    assert "optim.betas = [0.9, 0.99]" in out


def test_defaults_for_a_key_the_optimizer_does_not_read_are_refused():
    with pytest.raises(ValueError, match="momentum"):
        register_optimizer("bad", "bad", [], ("lr",), defaults={"momentum": 0.5})(_lion)
    assert "bad" not in OPTIMIZERS


def test_a_registered_figure_kind_is_checked_by_its_own_metrics(registered, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"base": {"model": {"name": "simplenn"}}, "grid": {"optim.lr": [0.1, 0.01]},
                                    "report": {"figures": [{"kind": "spread", "y": "train_loss"}]}}))
    with pytest.raises(Exception, match="y 'train_loss' is not a metric of this figure"):
        load_spec(spec)


def test_a_registered_answer_kind_is_checked_by_its_metric_option(registered):
    assert check_answer({"kind": "range", "metrics": "wall_time"}, "answer") == {"kind": "range",
                                                                               "metrics": "wall_time"}
    with pytest.raises(CnnlabError, match="'optim.lr' is not a metric an answer can use"):
        check_answer({"kind": "range", "metrics": "optim.lr"}, "answer")


def test_registered_optimizer_figure_and_answer_work_end_to_end(registered, tmp_path, session_cache, shared_data,
                                                         monkeypatch):
    """A spec names the new optimizer, figure kind and answer kind; `cnnlab sweep` trains with Lion's defaults and
    the report draws the figure and states the answer."""
    monkeypatch.setenv("CNNLAB_CACHE", str(session_cache))
    monkeypatch.setenv("CNNLAB_DATA", str(shared_data))
    spec = tmp_path / "lion.yaml"
    spec.write_text(yaml.safe_dump({
        "question": "Does Lion learn?",
        "base": {"data": {"name": "cifar10", "train_subset": 300, "val_subset": 100}, "model": {"name": "simplenn"},
                 "optim": {"name": "lion"}, "batch": {"size": 64}, "train": {"epochs": 1, "progress": "off"}},
        "grid": {"optim.lr": [1e-4, 1e-3]},
        "report": {"figures": [{"kind": "spread", "y": "final_train_acc"}],
                   "answers": [{"kind": "range", "metrics": "best_val_acc"}]}}))
    report = tmp_path / "rep" / "lion.html"
    assert cli_main.main(["sweep", str(spec), "--out", str(tmp_path / "runs"), "--report", str(report)]) == 0
    configs = [yaml.safe_load(p.read_text()) for p in (tmp_path / "runs").rglob("config.yaml")]
    assert len(configs) == 2
    assert all(c["optim"]["name"] == "lion" and c["optim"]["betas"] == LION_BETAS for c in configs)
    assert "spread over the runs of final train acc" in report.with_suffix(".md").read_text()
    assert "spread over the runs of final train acc" in report.read_text()
    assert "The runs span " in report.with_suffix(".md").read_text()
