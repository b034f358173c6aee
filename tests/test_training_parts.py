"""The trainer's parts one by one (issue #28): the roles config keys declare and the lists derived from them, the run
state, the checkpoint saver, the callbacks, and progress lines through `logging` — on a few hundred real images."""

import dataclasses
import logging
from pathlib import Path

import pytest

from cnnlab import logs
from cnnlab.errors import CnnlabError
from cnnlab.training import config as C
from cnnlab.training.callbacks import EarlyStopping, Targets, TimeLimit
from cnnlab.training.checkpoint import MODEL_KEYS, load_checkpoint
from cnnlab.training.runstate import RESUME_KEYS, RunState
from cnnlab.training.trainer import Trainer

TINY = ["data.train_subset=300", "data.val_subset=100", "batch.size=50", "batch.eval_size=100", "train.epochs=2",
        "optim.lr=0.02", "train.progress=off"]


@pytest.fixture
def cfg_for(config_on_data):
    return lambda *overrides: config_on_data(*TINY, *overrides)


# -- config keys that know their role ------------------------------------------------------------------------------

def test_the_derived_key_lists_are_the_side_lists_they_replace():
    """The lists as they were written by hand before each field declared its role: a change here changes the identity
    of recorded runs (MACHINE_KEYS, NEUTRAL_KEYS) or what a resumed run may change."""
    assert set(C.MACHINE_KEYS) == {"name", "out", "data.root", "data.download", "train.device", "train.threads",
                                   "train.progress", "train.tensorboard"}
    # keys added later are neutral at their defaults (today's behaviour), so the runs recorded before them keep
    # their identity; the Jordan 2024 parts of the fast route (issue #26) joined the EMA there
    assert C.NEUTRAL_KEYS == {"train.ema": 0.0, "optim.bias_lr_scale": 1.0, "optim.bias_lr_params": "norm",
                              "optim.lookahead_k": 0, "optim.lookahead_alpha": 0.5, "optim.lookahead_ramp": "none"}
    assert set(C.RESUME_KEYS_CHANGEABLE) == {"train.epochs", "train.max_time", "train.patience", "train.progress",
                                             "train.threads", "train.log_every", "train.device"}
    assert C.LENGTH_PLANNED == ("cosine", "onecycle")


def test_a_role_is_declared_where_the_key_is_defined():
    meta = {key: m for key, (_, m, _) in C.schema().items()}
    assert meta["train.device"]["machine"] and meta["train.device"]["resumable"]
    assert not meta["optim.lr"]["machine"] and not meta["optim.lr"]["resumable"] and "neutral" not in meta["optim.lr"]
    assert C.keys_with_role("resumable") == C.RESUME_KEYS_CHANGEABLE
    assert meta["schedule.name"]["planned"] == C.LENGTH_PLANNED


# -- the run state -------------------------------------------------------------------------------------------------

def test_resume_keys_come_from_the_run_state():
    assert RESUME_KEYS == {**MODEL_KEYS, "optimizer": dict, "scheduler": dict, "scaler": dict, "rng": dict,
                           "epoch": int, "step": int, "time": (int, float), "best": dict, "targets": dict}
    optional = {f.name for f in dataclasses.fields(RunState)} - set(RESUME_KEYS)
    assert optional == {"initial_loss", "status", "stop_reason"}  # older checkpoints lack them: defaults


def test_run_state_round_trips_and_copies_its_dicts():
    s = RunState(epoch=3, step=30, time=1, best={"val_acc": 0.5, "epoch": 2}, targets={"0.4": None},
                 status="stopped", stop_reason="early stopping")
    back = RunState.from_dict(s.to_dict())
    assert back == s and isinstance(back.time, float)
    back.best["val_acc"] = 0.9
    assert s.best["val_acc"] == 0.5  # a loaded state does not alias its source
    assert RunState.from_dict({"epoch": 1, "step": 2, "time": 0.0, "best": {}, "targets": {}}).status == "running"


@pytest.mark.parametrize("status,reason,epoch,reopen,after", [
    ("finished", None, 2, False, "running"),           # extended: train.epochs=N
    ("stopped", "max_time", 2, False, "stopped"),      # a stop rule holds
    ("stopped", "max_time", 2, True, "running"),       # resumed with a changed stop rule
    ("finished", None, 4, True, "finished"),           # no epochs left
    ("diverged", None, 2, True, "diverged"),           # a diverged run stays diverged
])
def test_reopen_if_extended(status, reason, epoch, reopen, after):
    s = RunState(epoch=epoch, status=status, stop_reason=reason)
    s.reopen_if_extended(4, reopen)
    assert s.status == after and (s.stop_reason is None) == (after == "running" or reason is None)


def test_damaged_counters_are_refused_by_name(tmp_path):
    with pytest.raises(CnnlabError, match="is damaged: epoch 9"):
        RunState(epoch=9).check(tmp_path / "last.pt", epochs=4)
    with pytest.raises(CnnlabError, match="'best' or 'targets' entry is malformed"):
        RunState(best={"epoch": 1}).check(tmp_path / "last.pt", epochs=4)


def test_trainer_counters_are_its_run_state(cfg_for):
    t = Trainer(cfg_for("train.epochs=1"), write=False, log=lambda s: None)
    t.fit()
    assert t.epoch == t.run.epoch == 1 and t.step == t.run.step == 6 and t.status == "finished"
    snap = t.state(copy_tensors=True)
    assert {k: snap[k] for k in t.run.to_dict()} == t.run.to_dict()
    t.status, t.epoch = "running", 0
    t.load_state(snap)
    assert t.run == RunState.from_dict(snap)


# -- the checkpoint saver --------------------------------------------------------------------------------------------

def test_saver_writes_best_and_last_and_keeps_the_previous(cfg_for):
    t = Trainer(cfg_for("train.epochs=1", "name=s"), log=lambda s: None)
    try:
        path = t.folder.path
        assert t.saver.saved_epoch is None and not t.saver.resumable()
        assert "no checkpoint was written" in t.saver.how_to_go_on(True)
        t.saver.save(t.checkpoint, 1, best=True)
        t.saver.save(t.checkpoint, 1)
        assert {p.name for p in path.glob("*.pt")} == {"best.pt", "last.pt", "last.prev.pt"}
        assert t.saver.saved_epoch == 1 and t.saver.resumable()
        assert "continue with: cnnlab train --resume" in t.saver.how_to_go_on(True)
        assert set(load_checkpoint(path / "last.pt", require=RESUME_KEYS)) >= set(RESUME_KEYS)
        (path / "last.pt").unlink()
        assert "last.pt is gone" in t.saver.how_to_go_on(True)
    finally:
        t.close()


def test_a_failed_write_says_what_was_kept(cfg_for):
    t = Trainer(cfg_for("train.epochs=1", "name=w"), log=lambda s: None)
    try:
        with pytest.raises(CnnlabError, match=r"cannot write metrics.csv .* after epoch 3; no checkpoint was written"):
            with t.saver.writing(3):
                raise OSError(28, "No space left on device", "metrics.csv")
    finally:
        t.close()


def test_checkpoints_off_writes_none(cfg_for):
    summary = Trainer(cfg_for("train.epochs=1", "train.checkpoints=false", "name=n"), log=lambda s: None).fit()
    assert not list(Path(summary["run"]).glob("*.pt"))


# -- callbacks -------------------------------------------------------------------------------------------------------

def test_callbacks_stop_and_note(cfg_for):
    t = Trainer(cfg_for("train.targets=[0.2, 0.9]", "train.max_time=5", "train.patience=1"), write=False,
                log=lambda s: None)
    row = {"epoch": 1, "val_acc": 0.3, "time": 1.5}
    assert Targets().epoch_note(t, row) == "reached 20.0% validation accuracy"
    assert t.targets == {"0.2": {"epoch": 1, "time": 1.5}, "0.9": None}
    assert Targets().epoch_note(t, row) is None  # reached once
    t.time = 6.0
    assert TimeLimit().stop_reason(t, row) == "train.max_time=5s reached"
    t.history = [{"val_acc": 0.3}, {"val_acc": 0.2}]
    assert "has not improved for 1 epochs" in EarlyStopping().stop_reason(t, row)
    assert t._stop_reason(row) == "train.max_time=5s reached"  # the first callback to give a reason wins


def test_the_epoch_hook_is_asked_first(cfg_for):
    seen = []
    t = Trainer(cfg_for("train.epochs=3"), write=False, log=lambda s: None,
                epoch_hook=lambda tr, row: seen.append(row["epoch"]) or ("pruned" if row["epoch"] == 2 else None))
    summary = t.fit()
    assert seen == [1, 2] and summary["status"] == "stopped" and summary["stop_reason"] == "pruned"


# -- progress lines through logging --------------------------------------------------------------------------------

def test_progress_lines_go_to_the_cnnlab_logger(cfg_for, caplog):
    top = logging.getLogger("cnnlab")
    propagate, top.propagate = top.propagate, True  # caplog listens on the root logger; the CLI turns this off
    try:
        with caplog.at_level(logging.INFO, logger="cnnlab"):
            Trainer(cfg_for("train.epochs=1"), write=False).fit()
    finally:
        top.propagate = propagate
    lines = [r.getMessage() for r in caplog.records if r.name == "cnnlab.training.trainer"]
    assert any(line.startswith("initial loss") for line in lines)
    assert any(line.startswith("epoch 1/1") for line in lines)


def test_the_cli_shows_them_on_stdout_once(cfg_for, capsys):
    top = logging.getLogger("cnnlab")
    before = (list(top.handlers), top.level, top.propagate)
    try:
        logs.configure()
        logs.configure()
        assert sum(isinstance(h, logs._Stdout) for h in top.handlers) == 1
        Trainer(cfg_for("train.epochs=1"), write=False).fit()
        out = capsys.readouterr().out.splitlines()
        assert sum(line.startswith("epoch 1/1  train loss") for line in out) == 1
        assert sum(line.startswith("run ") for line in out) == 1
    finally:
        top.handlers[:] = before[0]
        top.setLevel(before[1])
        top.propagate = before[2]


def test_a_log_callable_receives_the_lines_instead(cfg_for, capsys):
    said = []
    top = logging.getLogger("cnnlab")
    before = (list(top.handlers), top.level, top.propagate)
    try:
        logs.configure()
        Trainer(cfg_for("train.epochs=1"), write=False, log=said.append).fit()
    finally:
        top.handlers[:] = before[0]
        top.setLevel(before[1])
        top.propagate = before[2]
    assert any(line.startswith("epoch 1/1") for line in said)
    assert "epoch 1/1" not in capsys.readouterr().out
