"""`cnnlab tune` on real Fashion-MNIST slices with a real Optuna journal store: two worker processes, pruning,
the report, and continuing after a kill."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from cnnlab.cli.main import main
from cnnlab.training.config import load_config

BASE = {"data": {"name": "fashion-mnist", "train_subset": 1000, "val_subset": 300}, "model": {"name": "simplenn"},
        "batch": {"size": 50}, "train": {"epochs": 3, "progress": "off"}}
SPACE = {"optim.lr": {"type": "float", "low": 1e-4, "high": 0.3, "log": True},
         "optim.name": {"type": "categorical", "choices": ["sgd", "adam"]},
         "optim.momentum": {"type": "float", "low": 0.5, "high": 0.99, "when": {"optim.name": "sgd"}}}


def _spec(tmp_path, **tune) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"question": "Which optimizer settings?", "base": BASE,
                                    "tune": {"space": SPACE, **tune}}))
    return path


def _study(out: Path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "cnnlab-store.journal")))
    return optuna.load_study(study_name="tune:t/default", storage=storage)


def _cmd(spec, out, data, *extra):
    return [sys.executable, "-m", "cnnlab", "tune", str(spec), "--out", str(out), "--data-root", str(data), *extra]


def test_two_workers_share_one_study_and_write_the_report(shared_data, tmp_path):
    spec, out = _spec(tmp_path), tmp_path / "runs"
    r = subprocess.run(_cmd(spec, out, shared_data, "--trials", "6", "--workers", "2"), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
    study = _study(out)
    ended = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert 6 <= len(ended) <= 7  # a worker may start one more while the other finishes the sixth
    assert {"[w0]", "[w1]"} <= {ln.split()[0] for ln in r.stdout.splitlines() if ln.startswith("[w")}
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(params)) == len(params), "two workers proposed the same trial"
    for t in study.trials:  # the conditional parameter is sampled only under its condition
        assert ("optim.momentum" in t.params) == (t.params["optim.name"] == "sgd")
        assert (Path(t.user_attrs["run"]) / "metrics.csv").is_file()
    folder = out / "t" / "tune-default"
    rows = list(csv.DictReader(open(folder / "trials.csv")))
    assert [int(r["trial"]) for r in rows] == [t.number for t in study.trials]
    md = (folder / "report.md").read_text()
    assert "## Best trials" in md and "## Every trial" in md and (folder / "history.png").stat().st_size > 5000
    best = load_config(folder / "best-1.yaml")  # a ready-to-run config, with the best trial's values
    assert best.optim.lr == pytest.approx(study.best_trial.params["optim.lr"])
    assert best.optim.name == study.best_trial.params["optim.name"]


def test_the_pruner_stops_a_lagging_trial_early(shared_data, tmp_path, capsys):
    spec, out = _spec(tmp_path, sampler="random"), tmp_path / "runs"
    assert main(["tune", str(spec), "--out", str(out), "--data-root", str(shared_data), "--report-only"]) == 0
    study = _study(out)
    for lr, name in ((0.01, "adam"), (0.003, "adam"), (1e-7, "adam")):  # two good ones first, then a hopeless one
        study.enqueue_trial({"optim.lr": lr, "optim.name": name})
    capsys.readouterr()
    assert main(["tune", str(spec), "--out", str(out), "--data-root", str(shared_data), "--trials", "3"]) == 0
    trials = _study(out).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    pruned = trials[2]
    assert pruned.user_attrs["pruned_at"] == 1 and pruned.user_attrs["epochs"] == 1
    summary = yaml.safe_load((Path(pruned.user_attrs["run"]) / "summary.json").read_text())
    assert summary["status"] == "stopped" and "pruned by the median pruner at epoch 1" in summary["stop_reason"]
    md = (out / "t" / "tune-default" / "report.md").read_text()
    assert "| 2 | pruned |" in md


def test_a_killed_tune_continues_and_retries_the_lost_trial(shared_data, tmp_path):
    spec = _spec(tmp_path)
    base = {**BASE, "data": {**BASE["data"], "train_subset": 20000}, "train": {**BASE["train"], "epochs": 20}}
    spec.write_text(yaml.safe_dump({"base": base, "tune": {"space": SPACE}}))
    out = tmp_path / "runs"
    p = subprocess.Popen(_cmd(spec, out, shared_data, "--trials", "2"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(out.glob("t/tune-default/trial-000/last.pt")) and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed = _study(out).trials[0]
    assert killed.state == TrialState.RUNNING
    spec.write_text(yaml.safe_dump({"base": BASE, "tune": {"space": SPACE}}))  # shorter trials for the rest
    r = subprocess.run(_cmd(spec, out, shared_data, "--trials", "2"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 lost trial(s) of a killed run queued again" in r.stdout
    trials = _study(out).trials
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["status"] == "lost"
    assert trials[1].params == killed.params and trials[1].user_attrs["retry_of"] == 0
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 2


@pytest.mark.parametrize("tune,message", [
    ({"space": {"optim.lrr": {"type": "float", "low": 0.1, "high": 1}}}, "optim.lrr"),
    ({"space": {"optim.lr": {"type": "float", "low": 1, "high": 0.1}}}, "low < high"),
    ({"space": {"optim.lr": {"type": "float", "low": 0, "high": 1, "log": True}}}, "low > 0"),
    ({"space": {"optim.name": {"type": "categorical"}}}, "choices"),
    ({"space": {"optim.lr": {"type": "float", "low": 0.1, "high": 1}}, "sampler": "grid"}, "categorical"),
    ({"space": {"optim.lr": {"type": "floaty", "low": 0.1, "high": 1}}}, "type"),
    ({"space": {"optim.lr": {"type": "float", "low": 0.1, "high": 1}}, "pruner": "zz"}, "pruner"),
    ({"space": {}}, "space"),
], ids=range(8))
def test_bad_tune_sections_are_one_line_errors(tune, message, tmp_path, capsys, bad_input):
    bad_input()
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"base": BASE, "tune": tune}))
    assert main(["tune", str(path), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
