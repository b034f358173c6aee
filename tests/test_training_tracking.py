"""Tracking and run conveniences against the real components: TensorBoard event files read back, a local MLflow
store (SQLite) queried with MLflow's client, early stopping, extending a finished run, SIGTERM mid-run, the
environment record, reached targets on the terminal."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnlab.cli.main import main

TINY = ["data.name=fashion-mnist", "data.train_subset=300", "data.val_subset=100", "batch.size=50",
        "train.progress=off", "model.name=simplenn"]


@pytest.fixture
def data(shared_data, monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_DATA", str(shared_data))
    return shared_data


def _epochs(run: Path):
    return [int(r["epoch"]) for r in csv.DictReader(open(run / "metrics.csv"))]


def test_tensorboard_groups_train_and_val_and_writes_hparams(data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(["train", *TINY, "train.epochs=2", f"out={tmp_path}", "name=tb", "train.tensorboard=true",
                 "train.log_every=2"]) == 0
    acc = EventAccumulator(str(tmp_path / "tb" / "tb"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss/train", "loss/val", "acc/train", "acc/val", "lr", "batch_size", "step/loss", "step/lr"} <= tags
    assert [e.step for e in acc.Scalars("acc/val")] == [1, 2]
    assert [e.step for e in acc.Scalars("step/loss")] == [2, 4, 6, 8, 10, 12]  # 6 steps an epoch, every 2nd
    summary = json.loads((tmp_path / "tb" / "summary.json").read_text())
    assert acc.Scalars("hparam/best_val_acc")[0].value == pytest.approx(summary["best_val_acc"])
    plugin = acc.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(plugin)
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = plugin_data_pb2.HParamsPluginData.FromString(plugin["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["optim.lr"].number_value == pytest.approx(0.01)
    assert start.hparams["model.name"].string_value == "simplenn"


def test_mlflow_local_store_gets_params_metrics_and_artifacts(data, tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    assert main(["train", *TINY, "train.epochs=2", f"out={tmp_path}", "name=ml", "train.mlflow=local"]) == 0
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name(tmp_path.name)
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == "ml" and run.info.status == "FINISHED"
    assert run.data.params["optim.lr"] == "0.01" and run.data.params["data.name"] == "fashion-mnist"
    history = client.get_metric_history(run.info.run_id, "val_acc")
    rows = list(csv.DictReader(open(tmp_path / "ml" / "metrics.csv")))
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == pytest.approx([float(r["val_acc"]) for r in rows], abs=1e-5)
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "metrics.csv", "summary.json", "best.pt"} <= names


def test_a_bad_mlflow_uri_is_one_line(capsys):
    assert main(["train", "--print-config", "train.mlflow=zz"]) == 2
    assert "train.mlflow" in capsys.readouterr().err


def test_early_stopping_stops_after_patience_and_says_why(data, tmp_path):
    # lr 1e-6: validation accuracy cannot improve, so the run stops `patience` epochs after its first epoch
    assert main(["train", *TINY, "train.epochs=20", "optim.lr=1e-6", "train.patience=2", f"out={tmp_path}",
                 "name=es"]) == 0
    summary = json.loads((tmp_path / "es" / "summary.json").read_text())
    assert summary["status"] == "stopped" and "early stopping" in summary["stop_reason"]
    assert summary["epochs_done"] < 20
    best = summary["best_epoch"]
    assert summary["epochs_done"] == best + 2


def test_resume_extends_a_finished_run(data, tmp_path, capsys):
    args = ["train", *TINY, "train.epochs=2", f"out={tmp_path}", "name=ext", "schedule.name=step"]
    assert main(args) == 0
    run = tmp_path / "ext"
    assert main(["train", "--resume", str(run), "train.epochs=4"]) == 0
    assert _epochs(run) == [1, 2, 3, 4]
    assert json.loads((run / "summary.json").read_text())["epochs_done"] == 4
    assert "extending" in capsys.readouterr().out
    # an uninterrupted 4-epoch run gives the same metrics: the step schedule does not depend on the run's length
    assert main(["train", *TINY, "train.epochs=4", f"out={tmp_path}", "name=four", "schedule.name=step"]) == 0
    a = [r["val_loss"] for r in csv.DictReader(open(run / "metrics.csv"))]
    b = [r["val_loss"] for r in csv.DictReader(open(tmp_path / "four" / "metrics.csv"))]
    assert a == b


@pytest.mark.parametrize("override,message", [("optim.lr=0.1", "cannot change"),
                                              ("train.epochs=1", "already trained")])
def test_resume_refuses_changes_that_make_another_run(override, message, data, tmp_path, capsys):
    assert main(["train", *TINY, "train.epochs=2", f"out={tmp_path}", "name=r"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "r"), override]) == 2
    assert message in capsys.readouterr().err


def test_a_cosine_run_cannot_be_extended(data, tmp_path, capsys):
    assert main(["train", *TINY, "train.epochs=1", f"out={tmp_path}", "name=c", "schedule.name=cosine"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "c"), "train.epochs=3"]) == 2
    assert "cosine" in capsys.readouterr().err


def test_sigterm_mid_run_writes_an_interrupted_summary_and_the_resume_command(data, tmp_path):
    env = {**os.environ, "CNNLAB_DATA": str(data)}
    p = subprocess.Popen([sys.executable, "-m", "cnnlab", "train", *TINY, "data.train_subset=20000",
                          "train.epochs=50", f"out={tmp_path}", "name=int"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    run = tmp_path / "int"
    deadline = time.time() + 120
    while not (run / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "Traceback" not in err, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert f"cnnlab train --resume {run}" in out
    done = summary["epochs_done"]
    assert done >= 1 and _epochs(run) == list(range(1, done + 1))


def test_the_run_records_its_environment_and_prints_targets(data, tmp_path, capsys):
    assert main(["train", *TINY, "train.epochs=2", f"out={tmp_path}", "name=env", "train.targets=[0.01]"]) == 0
    out = capsys.readouterr().out
    epoch1 = next(line for line in out.splitlines() if line.startswith("epoch 1/2"))
    assert "reached 1.0% validation accuracy" in epoch1 and f"run folder: {tmp_path / 'env'}" in out
    env = json.loads((tmp_path / "env" / "summary.json").read_text())["environment"]
    import torch

    import cnnlab
    assert env["torch"] == torch.__version__ and env["cnnlab"] == cnnlab.__version__ and env["cpu"]
    assert env["python"].count(".") == 2
    if (Path(cnnlab.__file__).parents[2] / ".git").exists():
        assert len(env["git_commit"]) == 40


def test_amp_auto_never_picks_a_slower_precision(data, tmp_path):
    """The choice is made from the CPU's flags and a timing of the model's own step; whatever it picks, the
    measured step of the chosen mode is the faster one (or fp32 without bf16 units)."""
    import torch

    from cnnlab.models import create_model
    from cnnlab.training import runtime

    model = create_model("simplenn", num_classes=10, in_channels=1, input_size=28)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mode, why, secs = runtime.choose_amp(torch.device("cpu"), model, lambda: (x, y))
    if not runtime.cpu_bf16_units():
        assert mode == "none" and "no bf16 units" in why and secs == {}
    else:
        assert (mode == "bf16") == (secs["none"] / secs["bf16"] >= runtime.AUTO_BF16_GAIN)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics put back
    # the timing itself, on this CPU, in both precisions (bf16 autocast works everywhere, only its speed differs)
    assert runtime.time_step(model, x, y, "none", torch.device("cpu"), repeats=1) > 0
    assert runtime.time_step(model, x, y, "bf16", torch.device("cpu"), repeats=1) > 0


def test_the_run_records_the_precision_it_chose(data, tmp_path, capsys):
    assert main(["train", *TINY, "train.epochs=1", f"out={tmp_path}", "name=amp"]) == 0
    summary = json.loads((tmp_path / "amp" / "summary.json").read_text())
    assert summary["amp"] in ("none", "bf16") and summary["amp_choice"].startswith("auto -> ")
    assert "amp auto -> " in capsys.readouterr().out
