"""The trainer end to end on a few hundred real CIFAR-10 images: run folder, resume equality, divergence,
gradient accumulation, cyclical batch size, time-to-target."""

import csv
import json
import math

import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.training.config import load_config
from cnnlab.training.trainer import Trainer, resume

TINY = ["data.train_subset=300", "data.val_subset=100", "batch.size=50", "batch.eval_size=100", "train.epochs=2",
        "optim.lr=0.02"]


@pytest.fixture
def cfg_for(config_on_data):
    return lambda *overrides: config_on_data(*TINY, *overrides)


def test_run_folder_holds_everything(cfg_for):
    logs = []
    summary = Trainer(cfg_for("train.targets=[0.05]"), log=logs.append).fit()
    run = summary["run"]
    from pathlib import Path
    run = Path(run)
    for name in ("config.yaml", "metrics.csv", "summary.json", "best.pt", "last.pt", "curves.png"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert set(rows[0]) >= {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "batch_size", "epoch_time",
                            "images_per_sec", "time"}
    saved = json.loads((run / "summary.json").read_text())
    assert saved["status"] == "finished" and saved["params"] == 82030 and saved["epochs_done"] == 2
    assert 0 <= saved["best_val_acc"] <= 1
    assert saved["targets"]["0.05"]["epoch"] == 1  # 5% is reached at once: recorded at the first epoch
    assert any("initial loss" in line and "ln(10) = 2.3026" in line for line in logs)
    assert abs(summary["initial_loss"] - math.log(10)) < 0.5  # an untrained classifier is near chance
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["config"]["optim"]["lr"] == 0.02


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")  # the test's own patch
@pytest.mark.parametrize("extra", [[], ["train.ema=0.8"]], ids=["plain", "weight-average"])
def test_resume_after_interruption_equals_uninterrupted(cfg_for, tmp_path, extra):
    base = ["train.epochs=3", "augment.crop=4", "augment.flip=0.5", "model.options.dropout=0.3", *extra]
    full = Trainer(cfg_for(*base, "name=full")).fit()

    cut = Trainer(cfg_for(*base, "name=cut"))
    step = cut.optimizer.step

    def interrupt(*args, **kwargs):  # the 10th optimizer step: mid-way through the second epoch (6 steps each)
        if cut.step == 9:
            raise KeyboardInterrupt
        return step(*args, **kwargs)

    cut.optimizer.step = interrupt
    with pytest.raises(KeyboardInterrupt):
        cut.fit()
    resumed = resume(tmp_path / "runs" / "cut", log=lambda s: None)
    a = list(csv.DictReader(open(tmp_path / "runs" / "full" / "metrics.csv")))
    b = list(csv.DictReader(open(tmp_path / "runs" / "cut" / "metrics.csv")))
    keys = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "batch_size"]
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    assert resumed["best_val_acc"] == full["best_val_acc"]
    if extra:  # the weight average is part of the state: resumed, it ends as the uninterrupted run's
        ea, eb = (torch.load(tmp_path / "runs" / n / "last.pt", weights_only=True)["ema"] for n in ("full", "cut"))
        assert ea["updates"] == eb["updates"] == 18
        assert all(torch.equal(ea["weights"][k], eb["weights"][k]) for k in ea["weights"])


def test_divergence_at_lr_1_is_detected(cfg_for):
    summary = Trainer(cfg_for("optim.lr=1.0", "train.epochs=3")).fit()
    assert summary["status"] == "diverged" and summary["diverged"] is True


def test_gradient_accumulation_gives_the_same_update(cfg_for):
    """batch.micro splits each batch; without BN or dropout the update is the same up to float rounding."""
    a = Trainer(cfg_for("train.epochs=1", "name=a"), write=False, log=lambda s: None)
    a.fit()
    b = Trainer(cfg_for("train.epochs=1", "batch.micro=20", "name=b"), write=False, log=lambda s: None)
    b.fit()
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.allclose(pa, pb, atol=1e-5)


def test_cyclical_batch_size_is_applied_per_epoch(cfg_for):
    t = Trainer(cfg_for("train.epochs=3", "batch.policy=cyclical", "batch.min=25", "batch.max=100",
                        "batch.step_epochs=2"), write=False, log=lambda s: None)
    t.fit()
    assert [r["batch_size"] for r in t.history] == [25, 50, 100]


def test_existing_run_folder_is_not_overwritten(cfg_for):
    Trainer(cfg_for("train.epochs=1")).fit()
    with pytest.raises(CnnlabError, match="already holds a run"):
        Trainer(cfg_for("train.epochs=1"))


def test_unwritable_output_is_refused_before_training(cfg_for, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CnnlabError, match="cannot write to run folder|is not a folder"):
        Trainer(load_config(None, [*TINY, f"data.root={cfg_for().data.root}", f"out={blocker}", "name=x"]))


def test_full_disk_is_refused_before_training(tmp_path):
    """The free-space check names the need and the fix; nothing has been trained when it fires."""
    import shutil
    from cnnlab.training.runfolder import RunFolder
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(CnnlabError, match="not enough free space .* MiB free"):
        RunFolder(tmp_path / "run").prepare(resume=False, need_bytes=free * 2)
