"""Edge cases found in review: YAML merge keys, a pid reused by another process, many moderate archive members, a
tune study whose metric changed direction, NaN in early stopping's monitor, reopening a stopped run."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile

import pytest
import yaml

from cnnlab.cli.main import main
from cnnlab.errors import CnnlabError

TINY = ["data.name=fashion-mnist", "data.train_subset=300", "data.val_subset=100", "batch.size=50",
        "train.progress=off"]


def test_yaml_merge_keys_still_work_in_the_strict_loader(tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text("common: &c {lr: 0.05, momentum: 0.8}\n")
    from cnnlab.training.config import load_yaml_text
    assert load_yaml_text("a: &x {lr: 0.05}\noptim: {<<: *x, momentum: 0.8}\n")["optim"] == {"lr": 0.05,
                                                                                          "momentum": 0.8}
    with pytest.raises(yaml.YAMLError, match="duplicate key"):
        load_yaml_text("optim: {lr: 1, lr: 2}\n")


def test_a_reused_pid_is_not_taken_for_the_runs_owner():
    from cnnlab.experiments.store import owner_alive, process_start

    me = {"pid": os.getpid(), "pid_start": process_start(os.getpid())}
    assert owner_alive(me)
    assert not owner_alive({**me, "pid_start": "1"})  # the same pid, started at another time: not the owner


def test_many_moderate_members_that_inflate_past_the_ratio_are_refused(tmp_path, monkeypatch, bad_input):
    from cnnlab.data import load_dataset

    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    archive = tmp_path / "many.tar.gz"
    with gzip.open(archive, "wb", compresslevel=1) as g, tarfile.open(fileobj=g, mode="w|") as tf:
        for k in range(300):  # 300 "images" of 1 MiB of zeros: each under every per-file limit
            info = tarfile.TarInfo(f"train/a/{k}.png")
            info.size = 1 << 20
            tf.addfile(info, io.BytesIO(bytes(info.size)))
    bad_input()
    with pytest.raises(CnnlabError, match="more than 100 times"):
        load_dataset("imagefolder", root=archive)


def test_a_tune_study_refuses_a_metric_of_the_other_direction(shared_data, tmp_path, capsys):
    base = {"data": {"name": "fashion-mnist", "train_subset": 200, "val_subset": 100}, "train": {"epochs": 1}}
    spec = tmp_path / "t.yaml"
    space = {"optim.lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}}
    spec.write_text(yaml.safe_dump({"base": base, "tune": {"space": space}}))
    assert main(["tune", str(spec), "--out", str(tmp_path / "r"), "--report-only"]) == 0
    spec.write_text(yaml.safe_dump({"base": base, "tune": {"space": space, "metric": "val_loss"}}))
    capsys.readouterr()
    assert main(["tune", str(spec), "--out", str(tmp_path / "r"), "--report-only"]) == 2
    assert "minimize val_loss" in capsys.readouterr().err


def test_a_nan_epoch_does_not_count_as_the_best(shared_data, monkeypatch, tmp_path):
    from cnnlab.training.config import load_config
    from cnnlab.training.trainer import Trainer

    monkeypatch.setenv("CNNLAB_DATA", str(shared_data))
    t = Trainer(load_config(None, [*TINY, "train.patience=2", "train.monitor=val_loss", "train.epochs=5"]),
                write=False, log=lambda s: None)
    t.history = [{"val_loss": float("nan")}, {"val_loss": 2.0}, {"val_loss": 1.5}]
    assert t._stop_reason({}) is None  # still improving
    t.history += [{"val_loss": 1.6}, {"val_loss": 1.7}]
    assert "has not improved for 2 epochs (best 1.5000 at epoch 3)" in t._stop_reason({})


def test_a_run_stopped_by_max_time_can_be_reopened_with_new_limits(shared_data, monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_DATA", str(shared_data))
    assert main(["train", *TINY, "train.epochs=4", "train.max_time=0.001", f"out={tmp_path}", "name=m"]) == 0
    run = tmp_path / "m"
    assert json.loads((run / "summary.json").read_text())["epochs_done"] == 1
    assert main(["train", "--resume", str(run)]) == 0  # as it was: stays stopped
    assert json.loads((run / "summary.json").read_text())["epochs_done"] == 1
    assert main(["train", "--resume", str(run), "train.max_time=1000"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_done"] == 4 and summary["status"] == "finished"


def test_shortening_below_what_the_checkpoint_holds_is_refused_without_a_summary(shared_data, monkeypatch,
                                                                                 tmp_path, capsys):
    monkeypatch.setenv("CNNLAB_DATA", str(shared_data))
    assert main(["train", *TINY, "train.epochs=3", f"out={tmp_path}", "name=s"]) == 0
    (tmp_path / "s" / "summary.json").unlink()  # as a SIGKILLed run leaves it
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "s"), "train.epochs=2"]) == 2
    assert "already trained 3 epochs" in capsys.readouterr().err
