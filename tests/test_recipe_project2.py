"""Recipe 11 (Project 2 §1, experiments/11-project2-cifar10.yaml): what each profile plans, and its quick profile
run end to end on real CIFAR-10 slices with its analysis steps and report.

The whole quick profile (25 runs) takes minutes on 2 busy cores and is run by test_experiments_recipes (slow); here
the end-to-end test keeps two of its networks (SimpleNN-BN and ResNet-20), which still exercises the table columns
the project asks for (test accuracy, parameters, training time, images/s), the {best:networks} analysis steps and
their figures in the report.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import torch
import yaml

from cnnlab.experiments.report import make_report, resolved
from cnnlab.experiments.spec import expand, load_spec
from cnnlab.experiments.sweep import SweepOptions, analysis_commands, make_plan, run_analysis, sweep
from cnnlab.training.optim import OPTIMIZERS, RMSpropNesterov, build_optimizer

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "experiments" / "11-project2-cifar10.yaml"
GROUPS = {"networks": 5, "widths": 4, "losses": 5, "activations": 5, "optimizers": 6}


@pytest.mark.parametrize("profile, epochs, test_size", [("quick", 1, 1000), ("cpu", 8, 10000), ("full", 100, 10000)])
def test_each_profile_plans_every_study_with_a_carved_test_split(profile, epochs, test_size):
    spec = load_spec(RECIPE)
    runs = expand(spec, profile)
    assert spec.evaluate == ["test"]
    assert {g: sum(r.group == g for r in runs) for g in GROUPS} == GROUPS and len(runs) == sum(GROUPS.values())
    assert {r.config.train.epochs for r in runs} == {epochs}
    assert {(r.config.data.test_size, r.config.data.val_size) for r in runs} == {(test_size, 5000)}
    by = {r.name: r.config for r in runs}
    # the networks: required parts (FC, conv, pool, activations) and the optional BN, dropout, residual
    assert {by[f"networks_{v}"].model.name for v in ("simplenn", "simplenn_bn", "simplenn_bn_dropout")} == {"simplenn"}
    assert by["networks_simplenn"].model.options.get("batch_norm", False) is False
    assert by["networks_simplenn_bn_dropout"].model.options == {"batch_norm": True, "dropout": 0.3}
    assert by["networks_resnet20"].model.name == "resnet20" and by["networks_fastcnn"].model.name == "fastcnn"
    assert by["networks_resnet20"].model.options == {}  # no SimpleNN option leaks into the other networks
    # every study group is SimpleNN-BN, and its first value is the baseline: one config under five names
    baseline = {"widths_width=1", "losses_ce_l2", "activations_activation=relu", "optimizers_sgd_nesterov",
                "networks_simplenn_bn"}
    same = [{k: v for k, v in resolved(r.config.to_dict()).items() if k not in ("name", "model.options")}
            for r in runs if r.name in baseline]
    assert len(same) == 5 and all(c == same[0] for c in same)  # model options compared one by one, defaults filled
    assert all(r.config.model.options["batch_norm"] is True for r in runs if r.group != "networks")
    assert [by[f"widths_width={w}"].model.options["width"] for w in (0.5, 1, 2, 4)] == [0.5, 1, 2, 4]
    assert (by["losses_ce_l1"].optim.l1, by["losses_ce_l1"].optim.weight_decay) == (1e-5, 0.0)
    assert by["losses_smooth_l2"].train.label_smoothing == 0.1 and by["losses_hinge_l2"].train.loss == "multi_margin"
    assert {by[f"optimizers_{v}"].optim.name for v in ("sgd", "adam", "adamw", "rmsprop", "rmsprop_nesterov")} == \
        {"sgd", "adam", "adamw", "rmsprop", "rmsprop_nesterov"}


def test_the_optimizer_written_in_cnnlab_is_a_torch_optimizer_the_recipe_trains_with():
    cfg = {r.name: r.config for r in expand(load_spec(RECIPE), "quick")}["optimizers_rmsprop_nesterov"]
    opt = build_optimizer(torch.nn.Linear(3, 2), cfg.optim)
    assert type(opt) is RMSpropNesterov and isinstance(opt, torch.optim.Optimizer)
    assert OPTIMIZERS.get("rmsprop_nesterov") is not None and RMSpropNesterov.__module__ == "cnnlab.training.optim"


def test_analysis_steps_of_each_profile():
    spec = load_spec(RECIPE)
    for profile in ("quick", "cpu", "full"):
        names = [s["name"] for s in spec.analysis if s["profiles"] is None or profile in s["profiles"]]
        assert names == ["filters-best", "filters-simplenn_bn", "saliency-best", "landscape-best"], profile


@pytest.fixture(scope="module")
def two_networks(tmp_path_factory, session_cache, shared_data):
    """The quick profile with two networks only (SimpleNN-BN and ResNet-20), swept, analysed and reported."""
    import os

    tmp = tmp_path_factory.mktemp("p2")
    data = yaml.safe_load(RECIPE.read_text())
    data["profiles"]["quick"].update(groups=["networks"], variants=["simplenn_bn", "resnet20"])
    spec = tmp / RECIPE.name
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    old = os.environ.get("CNNLAB_CACHE")
    os.environ["CNNLAB_CACHE"] = str(session_cache)
    try:
        opts = SweepOptions(str(spec), "quick", [f"data.root={shared_data}"], out=str(tmp / "runs"))
        records = sweep(opts, log=lambda s: None)
        plan = make_plan(opts)
        steps = run_analysis(plan, str(shared_data), log=lambda s: None)
        paths = make_report([str(spec)], str(tmp / "report" / "report.html"), "quick", runs_out=str(tmp / "runs"))
        yield plan, records, steps, paths
    finally:
        os.environ.pop("CNNLAB_CACHE") if old is None else os.environ.__setitem__("CNNLAB_CACHE", old)


def test_quick_profile_runs_trains_and_evaluates_on_the_test_split(two_networks):
    plan, records, steps, _ = two_networks
    assert {r.name for r in plan.runs} == {"networks_simplenn_bn", "networks_resnet20"}
    for r in plan.runs:
        s = records[r.key].summary
        assert records[r.key].state == "finished" and 0 <= s["test_acc"] <= 1 and s["params"] > 0
    assert steps == {"filters-best": 0, "filters-simplenn_bn": 0, "saliency-best": 0, "landscape-best": 0}
    best = max(plan.runs, key=lambda r: records[r.key].summary["best_val_acc"])
    assert analysis_commands(plan)[0].argv[1].endswith(best.name)


def test_quick_report_has_the_networks_table_and_the_insight_figures(two_networks):
    plan, records, _, paths = two_networks
    md = paths["markdown"].read_text()
    header = next(line for line in md.splitlines() if line.startswith("| run |"))
    for column in ("test acc (best ckpt)", "params", "wall time (s)", "images/s"):
        assert column in header
    rows = {r["run"]: r for r in csv.DictReader(paths["csv"].open())}
    assert set(rows) == {"networks_simplenn_bn", "networks_resnet20"}
    assert int(rows["networks_resnet20"]["params"]) == 269_722 and float(rows["networks_resnet20"]["test_acc"]) >= 0
    simplenn = rows["networks_simplenn_bn"]
    assert float(simplenn["images_per_sec"]) > 0 and float(simplenn["wall_s"]) > 0
    resnet = next(records[r.key].summary for r in plan.runs if r.name == "networks_resnet20")
    assert f"{resnet['params']:,}" in md and f"{100 * resnet['test_acc']:.2f}%" in md  # 269,722 parameters
    page = paths["html"].read_text()
    for step, png in (("filters-best", "filters"), ("filters-simplenn_bn", "filters"), ("saliency-best", "saliency"),
                      ("landscape-best", "landscape-1d")):
        # captioned by what the step measured (its description), never by a file path alone
        assert f"(analysis step {step})" in page and f"analysis: {step}/{png}.png" not in page
    answers = re.search(r"<ul class='answers'>(.*?)</ul>", page, re.S).group(1)
    assert "Best variant by test accuracy (best checkpoint)" in answers
    # the analysis wrote the run's name (networks_resnet20); the answer names it by the recipe's label
    assert re.search(r"Analysis landscape-best: (SimpleNN \+ BN|ResNet-20): loss at the trained weights", answers)
    assert "networks_" not in answers
    assert "not answered: " not in answers
