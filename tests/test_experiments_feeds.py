"""Analysis steps that feed runs (HW3 2.5 -> 2.6): a real batch-size range test on a data slice, run by
`cnnlab sweep --analysis` before the runs, whose suggested b_min / b_max the cyclical-batch run trains with; and a
report rebuilt from its committed files that plans that run the same way."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from cnnlab.errors import CnnlabError
from cnnlab.experiments.spec import expand, parse_spec

BASE = {"data": {"name": "fashion-mnist", "train_subset": 256, "val_subset": 128}, "model": {"name": "lenet5"},
        "batch": {"size": 32}, "optim": {"lr": 0.05}, "train": {"epochs": 1, "progress": "off"}}
SPEC = {"base": BASE,
        "variants": {"fixed": {}, "cbs": {"batch.policy": "cyclical", "batch.min": 16, "batch.max": 128,
                                          "batch.step_epochs": 1}},
        "analysis": [{"name": "batch-range", "feeds": ["cbs"],
                      "args": ["find-batch", "-c", "{config:fixed}", "--min", "16", "--max", "64", "--steps", "6",
                               "--out", "{out}"]}],
        "report": {"answers": [{"kind": "analysis", "step": "batch-range", "file": "find-batch"},
                               {"kind": "compare", "a": "cbs", "b": "fixed", "metrics": "best_val_acc"}]}}


def test_a_fed_run_keeps_the_spec_values_until_its_step_has_run(tmp_path):
    spec = parse_spec(SPEC, Path("feeds.yaml"))
    cbs = {r.name: r for r in expand(spec, None, None, str(tmp_path))}["cbs"]
    assert (cbs.config.batch.min, cbs.config.batch.max) == (16, 128)


def test_feeds_must_name_a_run_of_the_profile():
    bad = {**SPEC, "analysis": [{**SPEC["analysis"][0], "feeds": ["cbz"]}]}
    with pytest.raises(CnnlabError, match="feeds 'cbz', which is not a run"):
        expand(parse_spec(bad, Path("feeds.yaml")))
    with pytest.raises(CnnlabError, match="feeds must be a list of run names"):
        parse_spec({**SPEC, "analysis": [{**SPEC["analysis"][0], "feeds": "cbs"}]}, Path("feeds.yaml"))


def test_sweep_analysis_runs_the_feeding_step_first_and_the_report_rebuilds_it(tmp_path, session_cache,
                                                                                shared_data, monkeypatch):
    from test_experiments_report import run_cli

    monkeypatch.setenv("CNNLAB_CACHE", str(session_cache))
    monkeypatch.setenv("CNNLAB_DATA", str(shared_data))
    path = tmp_path / "feeds.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    runs, rep = tmp_path / "runs", tmp_path / "rep" / "report.html"
    assert run_cli(["sweep", str(path), "--out", str(runs), "--analysis", "--data-root", str(shared_data),
                    "--report", str(rep)]) == 0
    step = runs / "feeds" / "default" / "analysis" / "batch-range" / "find-batch.json"
    line = json.loads(step.read_text())["lines"][-1]
    b_min, b_max = (int(line.split(f"batch.{k}=")[1].split()[0]) for k in ("min", "max"))
    trained = yaml.safe_load((runs / "feeds" / "default" / "cbs" / "config.yaml").read_text())["batch"]
    assert (trained["min"], trained["max"]) == (b_min, b_max)    # the run trained with what the step found
    assert (rep.parent / "report_runs" / "analysis" / "batch-range" / "find-batch.json").is_file()
    answers = (rep.parent / "answers.json").read_text()
    # a clean clone: only the results folder; the fed run is planned from the kept step result, so it is found
    clone = tmp_path / "clone"
    shutil.copytree(rep.parent, clone / "rep")
    (clone / "rep" / "answers.json").unlink()
    assert run_cli(["report", str(path), "--runs-out", str(tmp_path / "none"), "--out",
                    str(clone / "rep" / "report.html")]) == 0
    assert (clone / "rep" / "answers.json").read_text() == answers
    assert "not compared" not in answers and "not run yet" not in answers
