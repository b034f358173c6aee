"""Hostile and careless use of real runs: names that escape out/, --overwrite, a disk that fills up mid-run, a
resume on a nearly full disk, impossible memory, two sweep processes on one store, markup in report.md."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from cli_checks import one_error_line
from cnnlab.cli.main import main
from cnnlab.training.checkpoint import load_checkpoint

TINY = ["data.name=fashion-mnist", "data.train_subset=200", "data.val_subset=100", "batch.size=50",
        "train.progress=off"]


@pytest.mark.parametrize("name", ["../escaped", "/an/absolute/path", "..", "."])
def test_a_run_name_never_writes_outside_out(name, data, tmp_path, capsys, monkeypatch, bad_input):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "cache" not in p.parts)
    bad_input()
    one_error_line(capsys, main(["train", *TINY, "train.epochs=1", "out=runs", f"name={name}", "--overwrite"]))
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "cache" not in p.parts)
    assert after == before and not Path("/an/absolute/path").exists()


def test_overwrite_removes_exactly_what_a_run_wrote(data, tmp_path, capsys):
    out = tmp_path / "runs"
    args = ["train", *TINY, "train.epochs=1", f"out={out}", "name=r", "train.tensorboard=true"]
    assert main(args) == 0
    run = out / "r"
    assert main(["predict", str(run), "--split", "test"]) == 0
    (run / "log.txt").write_text("an old sweep's log")
    (run / "my-notes.txt").write_text("the user's own file")
    (out / "beside.pt").write_text("a file beside the run folder")
    old_predictions = (run / "predictions.csv").stat().st_mtime_ns
    assert (run / "tb").is_dir() and old_predictions
    assert main([*args, "--overwrite", "train.tensorboard=false"]) == 0
    names = {p.name for p in run.iterdir()}
    assert "predictions.csv" not in names and "log.txt" not in names and "tb" not in names
    assert "my-notes.txt" in names and (out / "beside.pt").exists()
    assert {"config.yaml", "metrics.csv", "summary.json", "best.pt", "last.pt"} <= names


@pytest.fixture
def small_disk(tmp_path):
    """A real, small file system (tmpfs), so a full disk is a real ENOSPC; needs root (as CI and sessions have)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()

    def mount(size_kib: int) -> Path:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(mnt)],
                           capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'not root'}); the disk-full test needs one")
        return mnt
    yield mount
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_disk_that_fills_up_mid_run_keeps_the_last_good_checkpoint(data, small_disk, capsys, bad_input):
    disk = small_disk(12 * 1024)
    run = disk / "runs" / "r"
    filled = threading.Event()

    def fill_after_the_first_epoch():  # another program takes the disk while the run trains
        deadline = time.time() + 120
        while time.time() < deadline and not filled.is_set():
            if (run / "last.pt").exists():
                with open(disk / "filler", "wb") as f:
                    try:
                        while True:
                            f.write(bytes(1 << 16))
                    except OSError:
                        pass
                filled.set()
            time.sleep(0.001)
    t = threading.Thread(target=fill_after_the_first_epoch, daemon=True)
    t.start()
    # a model big enough that one epoch outlasts the filler: VGG-sized MLP on 28x28, a few hundred images
    code = main(["train", *TINY, "data.train_subset=2000", "train.epochs=30", f"out={disk / 'runs'}", "name=r",
                 "model.name=mlp", "model.options={hidden: [256]}"])
    filled.set()
    t.join()
    bad_input()
    line = one_error_line(capsys, code)
    assert "No space left on device" in line and "is intact" in line and f"--resume {run}" in line
    epoch = load_checkpoint(run / "last.pt", fallback=False)["epoch"]  # the last good one, not truncated
    assert epoch >= 1
    (disk / "filler").unlink()
    assert main(["train", "--resume", str(run), "--data-root", str(data)]) == 0
    assert json.loads((run / "summary.json").read_text())["epochs_done"] == 30


def test_resume_counts_the_checkpoints_it_replaces_as_free_space(data, small_disk, capsys):
    """A resume on a disk whose free space is less than three fresh checkpoints, but that holds them already."""
    from cnnlab.training.config import load_config
    from cnnlab.training.trainer import Trainer

    cfg = load_config(None, [*TINY, "train.epochs=1", "model.name=mlp", "model.options={hidden: [256]}"])
    params = sum(p.numel() for p in Trainer(cfg, write=False, log=lambda s: None).model.parameters())
    need = 3 * 4 * params * 3 + (1 << 20)
    disk = small_disk(need // 1024 + 600)  # room for the estimate and for the run's small files
    args = ["train", *TINY, "train.epochs=1", f"out={disk}", "name=r", "model.name=mlp",
            "model.options={hidden: [256]}"]
    assert main(args) == 0
    free = os.statvfs(disk)
    assert free.f_bavail * free.f_frsize < need  # a fresh run would now be refused ...
    capsys.readouterr()
    assert main(["train", "--resume", str(disk / "r"), "--data-root", str(data)]) == 0  # ... a resume is not


@pytest.mark.parametrize("override,needs", [(["model.options={hidden: [100000000000]}"], "parameters"),
                                            (["augment.repeats=1024", "batch.size=1048576"], "images")])
def test_a_run_that_cannot_fit_in_memory_is_refused_before_allocating(override, needs, data, tmp_path, capsys,
                                                                     bad_input):
    bad_input()
    argv = ["train", *TINY, "model.name=mlp", f"out={tmp_path / 'runs'}", *override]
    t0 = time.perf_counter()
    line = one_error_line(capsys, main(argv))
    assert "needs about" in line and "GiB" in line and needs in line
    assert time.perf_counter() - t0 < 30 and not (tmp_path / "runs").exists()


# -- two real sweep processes on one store ---------------------------------------------------------------------------
SPEC = {"question": "two workers?", "base": {"data": {"name": "fashion-mnist", "train_subset": 20000,
                                                      "val_subset": 200},
                                             "model": {"name": "simplenn"}, "batch": {"size": 50},
                                             "train": {"epochs": 8, "progress": "off", "threads": 1}},
        "grid": {"optim.lr": [0.01, 0.02]}}


def _sweep(spec, out, *extra):
    return subprocess.Popen([sys.executable, "-m", "cnnlab", "sweep", str(spec), "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_live_run_is_never_taken_over_by_a_second_sweep(data, tmp_path, bad_input):
    spec = tmp_path / "two.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "g"
    first = _sweep(spec, out, "--max-runs", "1")
    try:
        deadline = time.time() + 120
        while not list(out.glob("two/*/*/metrics.csv")) and time.time() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()
        # a valid grace: the second worker leaves the first worker's live run alone and takes the other one
        second = _sweep(spec, out, "--grace", "90")
        bad_input(2)
        for grace in ("-1", "10"):  # shorter than three heartbeats: refused outright
            short = _sweep(spec, out, "--grace", grace)
            _, err = short.communicate(timeout=120)
            assert short.returncode == 2 and "--grace" in err and len(err.strip().splitlines()) == 1, err
        second_out, second_err = second.communicate(timeout=300)
        first_out, first_err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGKILL)
    assert second.returncode == 0 and "Traceback" not in second_err, second_out + second_err
    assert first.returncode == 0, first_out + first_err
    from cnnlab.experiments.store import ResultStore
    from cnnlab.experiments.sweep import SweepOptions, make_plan

    plan = make_plan(SweepOptions(str(spec), out=str(out)))
    store = ResultStore(out / "cnnlab-store.journal")
    sid = store.study_id(plan.study, create=False)
    trials = store.trials(sid)
    real = [t for t in trials if t.user_attrs.get("status") != "duplicate"]
    assert sorted(t.user_attrs["run"] for t in real) == sorted(plan.keys)  # each run trained exactly once
    assert not [t for t in trials if t.user_attrs.get("status") == "lost"]
    for r in plan.runs:
        metrics = (Path(r.config.out) / r.config.name / "metrics.csv").read_text().splitlines()
        assert [m.split(",")[0] for m in metrics[1:]] == [str(e) for e in range(1, 9)]


# -- report.md ------------------------------------------------------------------------------------------------------
def test_markup_in_questions_and_run_names_is_escaped_in_report_md(data, tmp_path, bad_input):
    out = tmp_path / "runs"
    evil = "<img src=x onerror=alert(1)>"
    assert main(["train", *TINY, "train.epochs=1", f"out={out}", f"name={evil}"]) == 0
    spec = tmp_path / "evil.yaml"
    spec.write_text(yaml.safe_dump({"question": f"Which is best? <script>alert(2)</script> {evil}",
                                    "base": {"data": {"name": "fashion-mnist", "train_subset": 200, "val_subset": 100},
                                             "train": {"epochs": 1, "progress": "off"}}}))
    bad_input(2)
    for inputs in ([str(p) for p in out.iterdir()], [str(spec)]):
        assert main(["report", *inputs, "--out", str(tmp_path / "r.html"), "--runs-out", str(out)]) == 0
        # the command line sits in a code span, which Markdown shows as text: what it holds cannot become markup
        md = re.sub(r"`[^`]*`", "", (tmp_path / "r.md").read_text())
        html = (tmp_path / "r.html").read_text()
        for text in (md, html):
            assert "<script>" not in text and "<img src=x" not in text
        assert "&lt;img src=x" in md
