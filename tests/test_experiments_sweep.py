"""Sweeps end to end on real CIFAR-10 slices: a 2x2 grid, skipping finished runs, a diverged run, resuming a sweep
killed mid-run, and two worker processes sharing one store. Runs are tiny (300 train images, 1-4 epochs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cnnlab.errors import CnnlabError
from cnnlab.experiments.spec import expand, load_spec
from cnnlab.experiments.store import ResultStore
from cnnlab.experiments.sweep import SweepOptions, analysis_commands, make_plan, sweep

TINY = {"data": {"name": "cifar10", "train_subset": 300, "val_subset": 100},
        "model": {"name": "simplenn"}, "batch": {"size": 64}, "train": {"epochs": 1, "progress": "off"}}


def write_spec(folder: Path, name: str, **kw) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"question": "test?", "base": TINY, **kw}))
    return path


@pytest.fixture
def env(monkeypatch, session_cache, shared_data):
    monkeypatch.setenv("CNNLAB_CACHE", str(session_cache))
    monkeypatch.setenv("CNNLAB_DATA", str(shared_data))
    return shared_data


def opts(spec: Path, tmp: Path, **kw) -> SweepOptions:
    return SweepOptions(str(spec), out=str(tmp / "runs"), **kw)


def lines(collected):
    return lambda s: collected.append(s)


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory, session_cache, shared_data):
    """The 2x2 grid, swept once for the tests that read its results."""
    tmp = tmp_path_factory.mktemp("grid")
    old = {k: os.environ.get(k) for k in ("CNNLAB_CACHE", "CNNLAB_DATA")}
    os.environ.update(CNNLAB_CACHE=str(session_cache), CNNLAB_DATA=str(shared_data))
    try:
        spec = write_spec(tmp, "grid", grid={"optim.lr": [0.05, 0.01], "model.options.batch_norm": [False, True]},
                          report={"figures": [{"kind": "sweep", "x": "optim.lr"}]})
        log: list = []
        records = sweep(opts(spec, tmp), log=lines(log))
        yield tmp, spec, records, log
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def test_grid_2x2_runs_every_run_into_its_own_folder(grid_sweep):
    tmp, spec, records, _ = grid_sweep
    runs = expand(load_spec(spec), out=str(tmp / "runs"))
    assert len(runs) == 4 and {records[r.key].state for r in runs} == {"finished"}
    for r in runs:
        folder = tmp / "runs" / "grid" / "default" / r.name
        assert (folder / "summary.json").exists() and (folder / "last.pt").exists()
        assert records[r.key].summary["varied"] == {"optim.lr": r.config.optim.lr,
                                                    "model.options.batch_norm": r.config.model.options["batch_norm"]}
        assert [m["epoch"] for m in records[r.key].metrics] == [1]
        assert 0 <= records[r.key].summary["best_val_acc"] <= 1


def test_rerunning_the_same_sweep_trains_nothing(grid_sweep, env):
    tmp, spec, _, _ = grid_sweep
    summaries = sorted((tmp / "runs" / "grid" / "default").glob("*/summary.json"))
    before = [p.stat().st_mtime_ns for p in summaries]
    log: list = []
    records = sweep(opts(spec, tmp), log=lines(log))
    assert "4 runs (4 done, 0 newly queued)" in log[0]
    assert not any("initial loss" in s for s in log), "a finished run was trained again"
    assert [p.stat().st_mtime_ns for p in summaries] == before
    assert {r.state for r in records.values()} == {"finished"}


def test_a_diverged_run_is_recorded_and_the_sweep_goes_on(tmp_path, env):
    spec = write_spec(tmp_path, "div", grid={"optim.lr": [1.0e6, 0.01]})
    records = sweep(opts(spec, tmp_path), log=lambda s: None)
    states = {k.split("@")[0]: r.state for k, r in records.items()}
    assert states == {"lr=1e+06": "diverged", "lr=0.01": "finished"}
    summary = records[[k for k in records if k.startswith("lr=1e+06")][0]].summary
    assert summary["diverged"] is True
    again = sweep(opts(spec, tmp_path), log=lambda s: None)  # diverged counts as done: not retried
    assert {r.state for r in again.values()} == {"diverged", "finished"}
    assert all(r.attempts == 1 for r in again.values())


SWEEP_CHILD = ("from cnnlab.experiments.sweep import SweepOptions, sweep; "
               "sweep(SweepOptions({spec!r}, out={out!r}, store={store!r}))")


@pytest.mark.parametrize("backend", ["journal", "postgresql"])
def test_a_sweep_killed_mid_run_resumes_where_it_stopped(tmp_path, env, backend, request):
    """A worker SIGKILLed mid-run leaves its run 'running' in the store; the next worker takes it over and resumes
    it from its last.pt, and trains the finished one no more: on the default journal file and on a real PostgreSQL
    server (started by the postgres_url fixture)."""
    store = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    spec = write_spec(tmp_path, f"kill-{time.time_ns()}",  # its own study on a server shared by the session
                      base={**TINY, "train": {"epochs": 4, "progress": "off"}},
                      variants={"a": {"optim.lr": 0.05}, "b": {"optim.lr": 0.01}})
    out = str(tmp_path / "runs")
    folder = tmp_path / "runs" / spec.stem / "default"
    child = subprocess.Popen([sys.executable, "-c", SWEEP_CHILD.format(spec=str(spec), out=out, store=store)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240
        while not (folder / "b" / "last.pt").exists():  # run a is done and b has finished its first epoch
            assert child.poll() is None, "the sweep ended before it could be killed"
            assert time.time() < deadline, "timed out waiting for run b's first checkpoint"
            time.sleep(0.02)
        os.killpg(child.pid, signal.SIGKILL)  # no clean-up: the store still says b is running
    finally:
        child.wait()
    a_summary = (folder / "a" / "summary.json").stat().st_mtime_ns
    assert not (folder / "b" / "summary.json").exists()
    log: list = []
    records = sweep(opts(spec, tmp_path, store=store), log=lines(log))
    by_name = {k.split("@")[0]: r for k, r in records.items()}
    assert by_name["a"].state == by_name["b"].state == "finished"
    assert (folder / "a" / "summary.json").stat().st_mtime_ns == a_summary, "finished run a was trained again"
    assert by_name["a"].attempts == 1 and by_name["b"].attempts == 2
    assert any("resumed" in s and "at epoch" in s for s in log), log
    assert [m["epoch"] for m in by_name["b"].metrics] == [1, 2, 3, 4]
    assert (tmp_path / "runs" / "cnnlab-store.journal").exists() == (store is None)  # the store under test held it


def test_two_worker_processes_share_one_store_without_loss_or_duplication(tmp_path, env):
    spec = write_spec(tmp_path, "two", grid={"optim.lr": [0.05, 0.01], "batch.size": [32, 64]})
    records = sweep(opts(spec, tmp_path, workers=2), log=lambda s: None)
    assert len(records) == 4 and {r.state for r in records.values()} == {"finished"}
    store = ResultStore(tmp_path / "runs" / "cnnlab-store.journal")
    trials = store.trials(store.study_id("two/default"))
    complete = [t.user_attrs["run"] for t in trials if t.state.name == "COMPLETE"]
    assert sorted(complete) == sorted(records), "every run completed exactly once"
    for log in (tmp_path / "runs" / "two" / "default").glob("*/log.txt"):
        assert log.read_text().count("initial loss") == 1, f"{log.parent.name} was trained twice"


def test_spec_evaluate_and_predict_write_test_accuracy_and_predictions(tmp_path, env):
    base = {**TINY, "data": {"name": "fashion-mnist", "train_subset": 300, "val_subset": 100}}
    spec = write_spec(tmp_path, "fm", base=base, evaluate=["test"], predict="test", variants={"only": {}})
    (rec,) = sweep(opts(spec, tmp_path), log=lambda s: None).values()
    assert 0 <= rec.summary["test_acc"] <= 1 and rec.summary["test_loss"] > 0
    pred = (tmp_path / "runs" / "fm" / "default" / "only" / "predictions.csv").read_text().splitlines()
    assert pred[0] == "id,label" and len(pred) == 1 + 10000


def test_analysis_steps_fill_their_placeholders(tmp_path, env):
    spec = write_spec(tmp_path, "an", variants={"x": {}, "y": {"optim.lr": 0.1}},
                      profiles={"quick": {}, "full": {}},
                      analysis=[{"name": "lr", "args": ["find-lr", "-c", "{config:y}", "--out", "{out}"]},
                                {"name": "w", "args": ["weights", "{run:x}", "{run:y}"], "profiles": ["full"]}])
    plan = make_plan(opts(spec, tmp_path))
    (cmd,) = analysis_commands(plan)
    sweep_dir = tmp_path / "runs" / "an" / "quick"
    assert cmd.argv == ["find-lr", "-c", str(sweep_dir / "analysis" / "lr" / "y.yaml"), "--out",
                        str(sweep_dir / "analysis" / "lr")]
    assert yaml.safe_load(cmd.files[Path(cmd.argv[2])])["optim"]["lr"] == 0.1
    assert not Path(cmd.argv[2]).exists()  # filling placeholders writes nothing; run_analysis writes it
    full = analysis_commands(make_plan(opts(spec, tmp_path, profile="full")))
    assert full[1].argv == ["weights", str(tmp_path / "runs" / "an" / "full" / "x"), str(tmp_path / "runs" / "an" / "full"
                                                                                   / "y")]


def test_best_placeholder_names_the_finished_run_with_the_highest_validation_accuracy(grid_sweep, tmp_path, env):
    tmp, _, records, _ = grid_sweep
    # the same runs as the swept spec (same name, axes and out), with analysis steps that ask for the best run
    spec = write_spec(tmp_path, "grid", grid={"optim.lr": [0.05, 0.01], "model.options.batch_norm": [False, True]},
                      analysis=[{"name": "w", "args": ["weights", "{best}"]}])
    plan = make_plan(opts(spec, tmp))
    best = max(plan.runs, key=lambda r: records[r.key].summary["best_val_acc"])
    (cmd,) = analysis_commands(plan)
    assert cmd.argv == ["weights", str(tmp / "runs" / "grid" / "default" / best.name)]
    grouped = write_spec(tmp_path, "grid", grid={"optim.lr": [0.05, 0.01], "model.options.batch_norm": [False, True]},
                         analysis=[{"name": "w", "args": ["weights", "{best:bn}"]}])
    with pytest.raises(CnnlabError, match="no group 'bn'"):
        analysis_commands(make_plan(opts(grouped, tmp)))


def test_best_placeholder_before_any_run_finished_says_to_run_the_sweep(tmp_path, env):
    spec = write_spec(tmp_path, "fresh", variants={"x": {}}, analysis=[{"name": "f", "args": ["filters", "{best}"]}])
    with pytest.raises(CnnlabError, match="no finished run to pick the best of; run the sweep first"):
        analysis_commands(make_plan(opts(spec, tmp_path)))


def test_a_config_steps_fingerprint_is_its_runs_identity_not_the_yaml_text(tmp_path, env):
    """A key added to the schema with a neutral default changes every {config:NAME} YAML's text but not what the
    step computes: the step is not rerun (recipe 08's hour-long batch-size test reran for five new optim keys)."""
    from cnnlab.experiments import sweep as S

    step = {"name": "c", "args": ["find-batch", "-c", "{config:x}", "--diagram", "--out", "{out}"]}
    spec = write_spec(tmp_path, "fp", variants={"x": {}}, analysis=[step])
    (cmd,) = analysis_commands(make_plan(opts(spec, tmp_path)))
    before = S._step_fingerprint(cmd)
    (path,) = cmd.files
    cmd.files[path] += "optim:\n  a_new_neutral_key: 1.0\n"   # the text changes, the identity does not
    assert S._step_fingerprint(cmd) == before
    cmd.identities[path] = "another-run"
    assert S._step_fingerprint(cmd) != before


def test_a_finished_analysis_step_is_skipped_until_its_command_changes(tmp_path, env):
    from cnnlab.experiments.sweep import run_analysis

    step = {"name": "diagram", "args": ["find-batch", "--diagram", "--out", "{out}"]}
    spec = write_spec(tmp_path, "an", variants={"x": {}}, analysis=[step])
    said: list = []
    assert run_analysis(make_plan(opts(spec, tmp_path)), log=lines(said)) == {"diagram": 0}
    png = tmp_path / "runs" / "an" / "default" / "analysis" / "diagram" / "find-batch-algorithm.png"
    first = png.stat().st_mtime_ns
    assert run_analysis(make_plan(opts(spec, tmp_path)), log=lines(said)) == {"diagram": 0}
    assert "skipped" in said[-1] and png.stat().st_mtime_ns == first
    step["args"].insert(1, "--steps")
    step["args"].insert(2, "7")  # another command line: run again
    spec = write_spec(tmp_path, "an", variants={"x": {}}, analysis=[step])
    assert run_analysis(make_plan(opts(spec, tmp_path)), log=lines(said)) == {"diagram": 0}
    assert "skipped" not in said[-1] and png.stat().st_mtime_ns > first
