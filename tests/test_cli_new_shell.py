"""Commands that work in a new shell and speak one language: a run remembers where its data was (evaluate, predict,
export and resume need no CNNLAB_DATA), other tools' flags get the key=value spelling, `train --out`, the Python API's
errors advise the API's way, accuracy in % and one line per epoch. Real runs on a few hundred Fashion-MNIST images."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from cnnlab.cli.main import main

TINY = ["data.name=fashion-mnist", "data.train_subset=300", "data.val_subset=100", "batch.size=50",
        "train.progress=off"]


@pytest.fixture
def new_shell(session_cache, tmp_path, monkeypatch):
    """A shell without CNNLAB_DATA whose per-user data directory is empty: only a recorded root can find the data."""
    monkeypatch.setenv("CNNLAB_CACHE", str(session_cache))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache-home"))

    def enter():
        monkeypatch.delenv("CNNLAB_DATA", raising=False)
    return enter


@pytest.fixture
def data_link(shared_data, tmp_path):
    """A second name for the shared data (a symbolic link), which a test can take away."""
    link = tmp_path / "data-here"
    link.symlink_to(shared_data.resolve(), target_is_directory=True)
    return link


def _train_from_env(tmp_path, monkeypatch, root, *extra):
    monkeypatch.setenv("CNNLAB_DATA", str(root))  # as scripts/quickstart.sh does: no --data-root
    assert main(["train", *TINY, "train.epochs=1", f"out={tmp_path / 'runs'}", "name=r", *extra]) == 0
    return tmp_path / "runs" / "r"


def test_a_run_records_the_absolute_data_root_without_changing_its_identity(data_link, tmp_path, monkeypatch,
                                                                            new_shell):
    from cnnlab.experiments.spec import identity_hash
    from cnnlab.training.config import load_config
    from cnnlab.training.checkpoint import load_checkpoint

    monkeypatch.chdir(tmp_path)
    run = _train_from_env(tmp_path, monkeypatch, "data-here")  # relative, as ../shared/data in the quickstart
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["root"] == str(data_link)  # absolute, the link kept as the user named it
    assert load_checkpoint(run / "best.pt")["config"]["data"]["root"] == str(data_link)
    planned = load_config(None, [*TINY, "train.epochs=1", f"out={tmp_path / 'runs'}", "name=r"])
    assert planned.data.root is None
    assert identity_hash(load_config(run / "config.yaml", [])) == identity_hash(planned)


def test_evaluate_predict_export_and_resume_work_in_a_new_shell(shared_data, tmp_path, monkeypatch, new_shell,
                                                               capsys):
    run = _train_from_env(tmp_path, monkeypatch, shared_data)
    new_shell()
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0, capsys.readouterr().err
    assert main(["predict", str(run), "--split", "test"]) == 0, capsys.readouterr().err
    assert main(["export", str(run), "--format", "torchscript"]) == 0, capsys.readouterr().err
    assert main(["train", "--resume", str(run), "train.epochs=2"]) == 0, capsys.readouterr().err
    assert json.loads((run / "summary.json").read_text())["epochs_done"] == 2
    assert "no longer exists" not in capsys.readouterr().err


def test_a_recorded_root_that_is_gone_falls_back_with_a_warning_and_an_explicit_one_wins(
        shared_data, data_link, tmp_path, monkeypatch, new_shell, capsys):
    run = _train_from_env(tmp_path, monkeypatch, data_link)
    data_link.unlink()
    monkeypatch.setenv("CNNLAB_DATA", str(shared_data))  # the usual resolution finds the data elsewhere
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    err = capsys.readouterr().err
    assert f"the run's recorded data root {str(data_link)!r} no longer exists" in err and "CNNLAB_DATA" in err
    nowhere = tmp_path / "nowhere"
    assert main(["evaluate", str(run), "--data-root", str(nowhere)]) == 2  # an explicit root is not second-guessed
    err = capsys.readouterr().err
    assert str(nowhere) in err and "no longer exists" not in err


@pytest.mark.parametrize("argv,hint", [(["--lr", "0.1"], "optim.lr=0.1"), (["--optim.lr=0.1"], "optim.lr=0.1"),
                                       (["--epochs", "3"], "train.epochs=3"), (["--batch-size", "64"], "batch.size=64"),
                                       (["--weight_decay", "5e-4"], "optim.weight_decay=5e-4")])
def test_flags_of_other_tools_get_the_key_value_spelling(argv, hint, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "train.epochs=1", *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1
    assert f"key=value: {hint}" in err


def test_train_takes_out_like_sweep(shared_data, session_cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CNNLAB_CACHE", str(session_cache))
    assert main(["train", *TINY, "train.epochs=1", "--data-root", str(shared_data), "--out", str(tmp_path / "o"),
                 "name=r"]) == 0
    assert (tmp_path / "o" / "r" / "summary.json").is_file()
    assert main(["train", "--resume", str(tmp_path / "o" / "r"), "--out", str(tmp_path)]) == 2
    assert "--out cannot be combined" in capsys.readouterr().err


def test_api_errors_advise_the_api_and_the_cli_its_flags(config_on_data, tmp_path, capsys):
    from cnnlab import api

    cfg = config_on_data(*TINY, "train.epochs=1")
    api.train(cfg, log=lambda s: None)
    with pytest.raises(api.CnnlabError) as e:
        api.train(cfg, log=lambda s: None)
    assert "overwrite=True" in str(e.value) and "api.resume(" in str(e.value) and "--" not in str(e.value)
    run = tmp_path / "runs" / "t"
    with pytest.raises(api.CnnlabError) as e:
        api.resume(run, overrides=["optim.lr=1"], log=lambda s: None)
    assert str(e.value).startswith("api.resume: 'optim.lr' cannot change")
    with pytest.raises(api.CnnlabError) as e:
        api.write_predictions(run / "config.yaml", ["0"], [0])
    assert "force=True" in str(e.value)
    assert main(["train", *TINY, "train.epochs=1", f"--data-root={cfg.data.root}", f"out={tmp_path / 'runs'}",
                 "name=t"]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and f"--resume {run}" in err and "overwrite=True" not in err


def test_the_terminal_says_accuracy_in_percent_one_line_per_epoch_and_the_amp_note_once(
        shared_data, session_cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CNNLAB_CACHE", str(session_cache))
    assert main(["train", *TINY, "train.epochs=3", "--data-root", str(shared_data), f"out={tmp_path}", "name=r",
                 "train.targets=[0.01]", "train.amp=auto"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 3 and not any(line.startswith("reached") for line in lines)
    assert "reached 1.0% validation accuracy" in epochs[0]  # said on the epoch's own line
    assert all(re.search(r"train loss \S+ acc \d+\.\d\d%  val loss \S+ acc \d+\.\d\d%", line) for line in epochs)
    assert re.search(r"finished: best val acc \d+\.\d\d% at epoch", out)
    assert not re.search(r"acc 0\.\d{3}", out)
    assert sum(line.count("amp auto") for line in lines) == 1
    from cnnlab.training.trainer import show_metric  # what early stopping and `cnnlab tune` print for a metric

    assert show_metric("val_acc", 0.6543) == "65.43%" and show_metric("val_loss", 1.5) == "1.5000"
    assert main(["evaluate", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'r' / 'evaluation-val.json'}, confusion-val.csv and confusion-val.png" in out
    assert all((tmp_path / "r" / f).is_file() for f in ("evaluation-val.json", "confusion-val.csv",
                                                        "confusion-val.png"))
