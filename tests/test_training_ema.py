"""The weight average (train.ema) on real CIFAR-10 images: its recurrence against a hand computation, validation and
the served checkpoint weights coming from the average, and identities that do not move (exact resume with it:
test_training_trainer.py)."""

import math

import pytest
import torch

from cnnlab.training.config import load_config
from cnnlab.training.ema import served_weights, warmed_decay
from cnnlab.training.checkpoint import load_checkpoint
from cnnlab.training.inference import evaluate_run, load_run
from cnnlab.training.trainer import Trainer

TINY = ["data.train_subset=300", "data.val_subset=100", "batch.size=50", "batch.eval_size=100", "train.epochs=2",
        "optim.lr=0.05", "model.options.batch_norm=true", "train.amp=none"]


@pytest.fixture
def cfg_for(config_on_data):
    return lambda *overrides: config_on_data(*TINY, *overrides)


def test_decay_warms_up_then_holds():
    assert warmed_decay(0.999, 0) == pytest.approx(0.1) and warmed_decay(0.999, 1) == pytest.approx(2 / 11)
    assert warmed_decay(0.9, 80) == 0.9 and warmed_decay(0.999, 10**6) == 0.999


def test_average_follows_its_recurrence_over_parameters_and_bn_statistics(cfg_for):
    t = Trainer(cfg_for("train.ema=0.5", "name=rec"), write=False, log=lambda s: None)
    keys = [k for k, v in t.model.state_dict().items() if v.is_floating_point()]
    expected = None
    for n, _ in enumerate(t.steps(5)):
        now = {k: v.detach().clone().float() for k, v in t.model.state_dict().items() if k in keys}
        if expected is None:
            expected = now  # the first update copies the weights
        else:
            d = warmed_decay(0.5, n)
            expected = {k: d * expected[k] + (1 - d) * now[k] for k in keys}
    got = t.ema.module.state_dict()
    assert t.ema.updates == 5
    assert any("running_mean" in k for k in keys)  # BN statistics are averaged too
    for k in keys:
        torch.testing.assert_close(got[k].float(), expected[k], rtol=1e-5, atol=1e-6)
    live = dict(t.model.state_dict())
    assert not all(torch.equal(got[k], live[k]) for k in keys), "the average must differ from the live weights"
    assert not t.ema.module.training


def test_validation_and_the_served_checkpoint_use_the_average(cfg_for, tmp_path):
    summary = Trainer(cfg_for("train.ema=0.9", "name=ema"), log=lambda s: None).fit()
    run = tmp_path / "runs" / "ema"
    best = load_checkpoint(run / "best.pt")
    assert best["ema"]["updates"] == 6 * best["epoch"]  # 300 images / batch 50 = 6 steps per epoch
    weights = served_weights(best)
    assert any(not torch.equal(weights[k], best["model"][k]) for k in weights)
    # evaluating the run folder (best.pt through load_run) gives back the recorded validation accuracy exactly
    assert evaluate_run(load_run(run), "val")["acc"] == pytest.approx(summary["best_val_acc"])


def test_ema_off_keeps_every_identity_and_on_is_a_new_run():
    from cnnlab.experiments.spec import identity_hash

    assert identity_hash(load_config(None, [])) == "12a06d13f8"  # as recorded before the key existed
    assert identity_hash(load_config(None, ["train.ema=0.99"])) != "12a06d13f8"
    assert math.isclose(load_config(None, ["train.ema=0.999"]).train.ema, 0.999)
