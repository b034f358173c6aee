"""Two processes, or a careless user, meet one run folder or one store: one owner per run folder (a second owner is
refused in one line, a SIGKILLed owner's folder resumes at once), two sweep identities never share a folder, names
that would lead out of out/, links, export over existing files, and torn or foreign results stores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cli_checks import one_error_line as _one_error_line
from cnnlab.cli.main import main

TINY = ["data.name=fashion-mnist", "data.train_subset=200", "data.val_subset=100", "batch.size=50",
        "train.progress=off"]


def one_error_line(capsys, code) -> str:
    return _one_error_line(capsys, code, ignore=("note:",))  # the torn-store note may stand beside the error


# long enough (tens of seconds) that a second process meets it while it trains; killed once it has served
LONG = ["data.name=fashion-mnist", "data.train_subset=20000", "data.val_subset=200", "batch.size=50",
        "model.name=simplenn", "train.progress=off", "train.threads=1", "train.epochs=40"]


def _cnnlab(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cnnlab", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not path.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert path.exists() and proc.poll() is None, proc.communicate()


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)


# -- one owner per run folder ----------------------------------------------------------------------------------------
def test_two_trains_of_one_name_started_together_leave_one_run(data, tmp_path, bad_input):
    out = tmp_path / "runs"
    bad_input()
    procs = [_cnnlab("train", *TINY, "train.epochs=2", f"out={out}", "name=dup", f"train.seed={s}") for s in (0, 1)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    codes = sorted(r[2] for r in results)
    assert codes == [0, 2], results
    loser = next(r for r in results if r[2] == 2)
    assert loser[1].strip().startswith("cnnlab: error:") and len(loser[1].strip().splitlines()) == 1, loser
    assert "in use by pid" in loser[1] or "already holds a run" in loser[1]
    # the folder holds one run, whole: its summary, metrics and checkpoint say the same seed and epochs
    run = out / "dup"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    summary = json.loads((run / "summary.json").read_text())
    import torch
    ckpt = torch.load(run / "last.pt", weights_only=False)
    assert ckpt["config"]["train"]["seed"] == cfg["train"]["seed"]
    assert summary["epochs_done"] == 2 == len((run / "metrics.csv").read_text().splitlines()) - 1


def test_a_second_owner_is_refused_while_the_first_trains_and_a_killed_run_resumes_at_once(data, tmp_path, capsys,
                                                                                            bad_input):
    out = tmp_path / "runs"
    run = out / "live"
    first = _cnnlab("train", *LONG, f"out={out}", "name=live")
    try:
        _wait_for(run / "last.pt", first)
        bad_input(3)
        # the same name again, with --overwrite, and a --resume of the live run: each refused, naming the process
        for args in (["train", *LONG, f"out={out}", "name=live"],
                     ["train", *LONG, f"out={out}", "name=live", "--overwrite"],
                     ["train", "--resume", str(run)]):
            line = one_error_line(capsys, main(args))
            assert f"in use by pid {first.pid}" in line and "cnnlab" in line, line
        assert (run / "last.pt").exists() and (run / "config.yaml").exists()
    finally:
        _kill(first)  # SIGKILL: the OS releases the lock, so the run resumes without any clean-up
    done = json.loads((run / "summary.json").read_text())["epochs_done"] if (run / "summary.json").exists() else 0
    assert main(["train", "--resume", str(run), "train.epochs=" + str(max(done, 1) + 1)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished"


def test_the_lock_file_is_not_a_run_and_a_finished_trainer_lets_go(config_on_data, tmp_path):
    from cnnlab.training.trainer import Trainer

    cfg = config_on_data("data.name=fashion-mnist", "data.train_subset=100", "data.val_subset=50", "batch.size=50",
                         "train.epochs=1", "train.progress=off")
    t = Trainer(cfg, log=lambda s: None)
    # while this trainer is open, a second one on its folder is refused, naming this very process
    from cnnlab.errors import CnnlabError
    with pytest.raises(CnnlabError, match="this very process"):
        Trainer(cfg, overwrite=True, log=lambda s: None)
    t.fit()
    # fit() gave the folder up when the run ended: this process (a notebook, say) resumes it while `t` still lives
    from cnnlab.training.trainer import resume
    assert resume(t.folder.path, log=lambda s: None, overrides=["train.epochs=2"])["epochs_done"] == 2
    # a folder holding only the lock file is an empty folder, not a run
    fresh = tmp_path / "runs" / "fresh"
    fresh.mkdir(parents=True)
    (fresh / ".cnnlab.lock").write_text("")
    cfg2 = config_on_data("data.name=fashion-mnist", "data.train_subset=100", "data.val_subset=50",
                          "batch.size=50", "train.epochs=1", "train.progress=off", "name=fresh")
    assert Trainer(cfg2, log=lambda s: None).fit()["status"] == "finished"


# -- sweeps: two identities never share a folder ---------------------------------------------------------------------
def test_two_sweeps_with_different_overrides_never_share_a_run_folder(data, tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"base": {"data": {"name": "fashion-mnist", "train_subset": 200,
                                                      "val_subset": 100},
                                             "batch": {"size": 50}, "train": {"epochs": 1, "progress": "off"}},
                                    "grid": {"optim.lr": [0.01]}}))
    out = tmp_path / "g"
    assert main(["sweep", str(spec), "--out", str(out), "train.seed=1"]) == 0
    first = out / "s" / "default" / "lr=0.01"
    weights = (first / "best.pt").read_bytes()
    first_cfg = (first / "config.yaml").read_text()
    assert main(["sweep", str(spec), "--out", str(out), "train.seed=2"]) == 0
    printed = capsys.readouterr().out
    # the first sweep's run is untouched, the second went beside it, under its own identity
    assert (first / "best.pt").read_bytes() == weights and (first / "config.yaml").read_text() == first_cfg
    others = [p for p in first.parent.iterdir() if p.name.startswith("lr=0.01@")]
    assert len(others) == 1 and "is taken (a run of another config" in printed
    assert yaml.safe_load((others[0] / "config.yaml").read_text())["train"]["seed"] == 2
    # the store's two records point at two folders, each holding its own run
    from cnnlab.experiments.store import ResultStore
    store = ResultStore(out / "cnnlab-store.journal")
    recs = store.records(store.study_id("s/default", create=False))
    folders = {r.key: Path(r.summary["run"]) for r in recs.values()}
    assert len(set(folders.values())) == 2
    for folder in folders.values():
        seed = yaml.safe_load((folder / "config.yaml").read_text())["train"]["seed"]
        assert json.loads((folder / "summary.json").read_text())["run"] == str(folder) and seed in (1, 2)
    # the second sweep run again finds its own folder: nothing is trained again, no third folder appears
    second = (others[0] / "best.pt").read_bytes()
    assert main(["sweep", str(spec), "--out", str(out), "train.seed=2"]) == 0
    assert (first / "best.pt").read_bytes() == weights and (others[0] / "best.pt").read_bytes() == second
    assert sorted(p.name for p in first.parent.iterdir()) == sorted(["lr=0.01", others[0].name])


# -- names that become paths, links ----------------------------------------------------------------------------------
def _spec_with(tmp_path, **extra) -> Path:
    base = {"base": {"data": {"name": "fashion-mnist", "train_subset": 100, "val_subset": 50},
                     "train": {"epochs": 1, "progress": "off"}}}
    path = tmp_path / "specs" / "x.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump({**base, **extra}))
    return path


@pytest.mark.parametrize("extra", [
    {"name": ".."}, {"name": "../../x"}, {"name": "..."},
    {"profiles": {"../../x": {"set": {"train.epochs": 1}}}, "default_profile": "../../x"},
    {"profiles": {"..": {}}},
    {"grid": {"optim.lr": [0.01]}, "variants": {"..": {"optim.lr": 0.02}}},
    {"groups": {"..": {"grid": {"optim.lr": [0.01]}}, "b": {"grid": {"optim.lr": [0.02]}}}},
    {"analysis": [{"name": "..", "args": ["summary", "simplenn"]}]},
])
def test_a_name_in_a_spec_never_leads_out_of_out(extra, data, tmp_path, capsys, monkeypatch, bad_input):
    monkeypatch.chdir(tmp_path)
    spec = _spec_with(tmp_path, **extra)
    before = sorted(p for p in tmp_path.rglob("*") if "cache" not in p.parts)
    bad_input()
    line = one_error_line(capsys, main(["sweep", str(spec), "--out", "runs/a/b"]))
    assert "names a folder" in line
    assert sorted(p for p in tmp_path.rglob("*") if "cache" not in p.parts) == before


def test_a_run_folder_that_is_a_link_is_refused_and_its_target_kept(data, tmp_path, capsys, bad_input):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "config.yaml").write_text("precious: true\n")
    (elsewhere / "summary.json").write_text("{}")
    out = tmp_path / "runs"
    out.mkdir()
    (out / "r").symlink_to(elsewhere)
    bad_input(2)
    for extra in (["--overwrite"], []):
        line = one_error_line(capsys, main(["train", *TINY, "train.epochs=1", f"out={out}", "name=r", *extra]))
        assert "is a link" in line
    assert sorted(p.name for p in elsewhere.iterdir()) == ["config.yaml", "summary.json"]
    assert (elsewhere / "config.yaml").read_text() == "precious: true\n"


# -- export never replaces a file unasked, never a run's own ---------------------------------------------------------
@pytest.fixture
def small_run(data, tmp_path):
    out = tmp_path / "runs"
    assert main(["train", *TINY, "train.epochs=1", f"out={out}", "name=r"]) == 0
    return out / "r"


def test_export_refuses_existing_files_and_never_touches_a_runs_own(small_run, tmp_path, capsys, bad_input):
    pytest.importorskip("onnx")
    run = small_run
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    bad_input(4)
    # --out runs/r/summary would write runs/r/summary.json, the run's own summary: refused, even with --force
    for force in ([], ["--force"]):
        line = one_error_line(capsys, main(["export", str(run), "--out", str(run / "summary"), *force]))
        assert "run's own files" in line
    line = one_error_line(capsys, main(["export", str(run), "--out", str(run / "config.yaml"), "--force"]))
    assert "run's own files" in line
    mine = tmp_path / "mine.onnx"
    mine.write_bytes(b"the user's file")
    line = one_error_line(capsys, main(["export", str(run), "--out", str(mine)]))
    assert "already exists" in line and "--force" in line
    assert mine.read_bytes() == b"the user's file"
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name in before} == before
    assert main(["export", str(run), "--out", str(mine), "--force"]) == 0
    assert mine.read_bytes() != b"the user's file" and (tmp_path / "mine.onnx.json").exists()
    # the default place too: a second export there asks for --force
    assert main(["export", str(run), "--format", "torchscript"]) == 0
    capsys.readouterr()
    bad_input()
    assert "already exists" in one_error_line(capsys, main(["export", str(run), "--format", "torchscript"]))


# -- torn and foreign results stores ---------------------------------------------------------------------------------
SWEEP_SPEC = {"base": {"data": {"name": "fashion-mnist", "train_subset": 100, "val_subset": 50}, "batch": {"size": 50},
                       "train": {"epochs": 1, "progress": "off"}}, "grid": {"optim.lr": [0.01, 0.02]}}


def test_a_torn_store_tail_is_cut_and_no_whole_record_is_lost(data, tmp_path, capsys, caplog):
    spec = tmp_path / "t.yaml"
    spec.write_text(yaml.safe_dump(SWEEP_SPEC))
    out = tmp_path / "g"
    assert main(["sweep", str(spec), "--out", str(out), "--max-runs", "1"]) == 1  # 1: a run is still waiting
    store = out / "cnnlab-store.journal"
    whole = store.read_bytes()
    n_whole = len(whole.splitlines())
    store.write_bytes(whole + b'{"op_code":5,"worker_id":"x","trial_id":0,"user_att')  # a disk that filled up
    capsys.readouterr()
    assert main(["sweep", str(spec), "--out", str(out), "--list"]) == 0
    printed = capsys.readouterr()
    assert "torn record" in caplog.text and "kept all" in caplog.text and "Traceback" not in printed.err
    assert store.read_bytes() == whole
    backups = list(out.glob("cnnlab-store.journal.torn-*"))
    assert len(backups) == 1 and backups[0].read_bytes().startswith(whole)
    # the old failure: a torn line that the next append continued; the record glued to it is kept
    glued = b'{"op_code":5,"worker_id":"x","tri' + whole.splitlines()[-1] + b"\n"
    store.write_bytes(b"\n".join(whole.splitlines()[:-1]) + b"\n" + glued)
    assert main(["sweep", str(spec), "--out", str(out)]) == 0  # runs the second run, appending after the repair
    lines = store.read_bytes().splitlines()
    assert lines[:n_whole] == whole.splitlines() and all(json.loads(ln) for ln in lines)
    assert main(["report", str(spec), "--runs-out", str(out), "--out", str(tmp_path / "r.html")]) == 0
    assert len(list(out.glob("cnnlab-store.journal.torn-*"))) == 2  # each repair kept its own copy


@pytest.mark.parametrize("kind", ["spec", "png", "nul", "devnull", "folder", "sqlite-empty", "sqlite-memory"])
def test_a_store_that_is_not_a_store_is_one_line(kind, data, tmp_path, capsys, bad_input):
    spec = tmp_path / "t.yaml"
    spec.write_text(yaml.safe_dump(SWEEP_SPEC))
    target = tmp_path / "store.journal"
    if kind == "spec":
        target.write_text(spec.read_text())
    elif kind == "png":
        target.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    elif kind == "nul":
        target.write_bytes(bytes(4096))
    elif kind == "folder":
        target.mkdir()
    url = {"devnull": "/dev/null", "sqlite-empty": "sqlite:///", "sqlite-memory": "sqlite:///:memory:"}.get(
        kind, str(target))
    before = target.read_bytes() if target.is_file() else None
    bad_input(2)
    for args in (["--list"], []):
        line = one_error_line(capsys, main(["sweep", str(spec), "--out", str(tmp_path / "g"), "--store", url, *args]))
        assert "store" in line
    if before is not None:
        assert target.read_bytes() == before
    assert not list(tmp_path.rglob("best.pt"))  # nothing trained into a store that would have lost it


def test_two_sweep_processes_with_different_overrides_started_together(data, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"base": {"data": {"name": "fashion-mnist", "train_subset": 4000,
                                                      "val_subset": 100},
                                             "batch": {"size": 50}, "model": {"name": "simplenn"},
                                             "train": {"epochs": 3, "progress": "off", "threads": 1}},
                                    "grid": {"optim.lr": [0.01]}}))
    out = tmp_path / "g"
    procs = [_cnnlab("sweep", str(spec), "--out", str(out), f"train.seed={s}") for s in (1, 2)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    assert [r[2] for r in results] == [0, 0], results
    folders = sorted((out / "s" / "default").iterdir())
    assert len(folders) == 2, folders  # lr=0.01 and lr=0.01@<identity>, one run each
    seeds = sorted(yaml.safe_load((f / "config.yaml").read_text())["train"]["seed"] for f in folders)
    assert seeds == [1, 2]
    for f in folders:
        summary = json.loads((f / "summary.json").read_text())
        assert summary["run"] == str(f) and summary["epochs_done"] == 3
        assert len((f / "metrics.csv").read_text().splitlines()) == 4
