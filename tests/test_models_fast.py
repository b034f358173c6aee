"""fastcnn: the whitening layer decorrelates real CIFAR-10 patches, the trainer initialises it from data on a new run
only, and it stays frozen while the rest trains."""

import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.training.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.training.config import load_config
from cnnlab.training.trainer import Trainer, resume

TINY = ["model.name=fastcnn", "model.options.widths=[8,16,16]", "data.train_subset=300", "data.val_subset=100",
        "batch.size=50", "batch.eval_size=100", "train.epochs=2", "optim.lr=0.05", "train.label_smoothing=0.2"]


@pytest.fixture
def cfg_for(shared_data, session_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_CACHE", str(session_cache))

    def make(*overrides):
        return load_config(None, TINY + [f"data.root={shared_data}", f"out={tmp_path / 'runs'}", "name=f", *overrides])
    return make


def _patch_cov(model, x):
    y = model.features[0](x)                                   # whitening conv output, before the activation
    half = y.shape[1] // 2                                     # the second half are the negated filters
    f = y[:, :half].permute(1, 0, 2, 3).reshape(half, -1)
    return torch.cov(f)


def test_trainer_whitens_from_the_training_images(cfg_for):
    trainer = Trainer(cfg_for(), log=lambda s: None)
    x, _ = trainer._first_images(300)
    cov = _patch_cov(trainer.model, x.contiguous().float())
    off = cov - torch.diag(cov.diag())
    # decorrelated; each direction's variance is lambda / (lambda + eps): ~1 for the strong directions, less for
    # the weakest, whose noise eps keeps from being amplified
    assert off.abs().max() < 0.01, off.abs().max()
    # the expected variances from the patch covariance's eigenvalues, computed here independently of the layer
    pt = x.float().unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12).double()
    lam = torch.linalg.eigvalsh(torch.cov(pt.T))
    eps = trainer.model.features[0].eps
    expected = (lam / (lam + eps)).float()
    assert torch.allclose(cov.diag().sort().values, expected.sort().values, atol=0.02), (cov.diag(), expected)
    w = trainer.model.features[0].weight
    assert torch.equal(w[:12], -w[12:])                       # both signs of each eigenvector
    untrained = _patch_cov(create_model("fastcnn", widths=[8, 16, 16]), x.float())
    assert (untrained - torch.diag(untrained.diag())).abs().max() > 0.05   # random filters: correlated outputs


def test_whitening_is_frozen_and_resume_keeps_it(cfg_for):
    trainer = Trainer(cfg_for("train.epochs=1"), log=lambda s: None)
    before = trainer.model.features[0].weight.detach().clone()
    bn_scale = trainer.model.features[4].weight.detach().clone()   # first BN: scale frozen at 1 (bn_weight=False)
    summary = trainer.fit()
    assert torch.equal(trainer.model.features[0].weight, before)
    assert torch.equal(trainer.model.features[4].weight, bn_scale)
    assert not torch.equal(trainer.model.features[0].bias, torch.zeros_like(trainer.model.features[0].bias))
    # Resuming must take the whitening from the checkpoint, not recompute it from the data (which would give the
    # same filters): mark the saved filters, resume, and find the mark still there after another epoch.
    run = summary["run"]
    ckpt = load_checkpoint(f"{run}/last.pt")
    ckpt["model"]["features.whiten1.weight"] *= 2
    save_checkpoint(f"{run}/last.pt", ckpt)
    resumed = resume(run, log=lambda s: None, overrides=["train.epochs=2"])
    assert resumed["epochs_done"] == 2
    assert torch.equal(load_checkpoint(f"{run}/last.pt")["model"]["features.whiten1.weight"], 2 * before)


def test_fastcnn_learns_on_real_images(cfg_for):
    summary = Trainer(cfg_for("train.epochs=4", "data.train_subset=1000", "optim.lr=0.1"), log=lambda s: None).fit()
    assert summary["best_val_acc"] > 0.2, summary["best_val_acc"]   # chance is 0.1


@pytest.mark.parametrize("options, word", [({"widths": [8, 16]}, "widths"), ({"head_scale": 0}, "head_scale"),
                                           ({"bn_weight": "yes"}, "bn_weight"), ({"input_size": 12}, "input_size"),
                                           ({"whiten_bias_epochs": -1}, "whiten_bias_epochs"),
                                           ({"whiten_bias_epochs": "3"}, "whiten_bias_epochs")])
def test_bad_options_name_the_option(options, word, bad_input):
    bad_input()
    with pytest.raises(CnnlabError, match=word):
        create_model("fastcnn", **options)


# -- Jordan 2024's parts, trained for real (issue #26) -------------------------------------------------------------
JORDAN = ["model.options.whiten_bias_epochs=1", "optim.bias_lr_scale=16", "optim.lookahead_k=3",
          "optim.lookahead_alpha=0.3", "optim.lookahead_ramp=cubic", "train.threads=1", "train.amp=none",
          "schedule.name=onecycle"]


def test_whiten_bias_trains_for_its_epochs_then_stays_and_resume_is_exact(cfg_for, tmp_path):
    """Epoch 1 trains the whitening bias, epoch 2 leaves it; a run resumed after epoch 1 ends on the same weights as
    one trained straight through (Lookahead's slow weights and step count, the stopped group and the scaled lr all
    come back from the checkpoint)."""
    whole = Trainer(cfg_for(*JORDAN, "name=whole"), log=lambda s: None)
    assert whole.model.features[0].bias.requires_grad
    groups = whole.optimizer.param_groups
    assert [g.get("train_epochs") for g in groups].count(1) == 1 and any(g.get("lr_scale") == 16 for g in groups)
    whole.fit()
    first = Trainer(cfg_for(*JORDAN, "name=split"), log=lambda s: None)

    def ctrl_c_in_epoch_2(epoch):  # as Ctrl-C would: epoch 1 is checkpointed, epoch 2 never finishes
        if epoch == 1:
            raise KeyboardInterrupt
        return Trainer.train_one_epoch(first, epoch)
    first.train_one_epoch = ctrl_c_in_epoch_2
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    bias_after_1 = first.model.features[0].bias.detach().clone()
    assert bias_after_1.abs().sum() > 0                               # trained in epoch 1
    resume(first.folder.path, log=lambda s: None)
    split = load_checkpoint(first.folder.path / "last.pt")["model"]
    assert torch.equal(split["features.whiten1.bias"], bias_after_1)   # not in epoch 2
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, split[name]), name


def test_whiten_bias_epochs_0_freezes_the_bias_from_the_start(cfg_for):
    trainer = Trainer(cfg_for("model.options.whiten_bias_epochs=0", "train.epochs=1"), log=lambda s: None)
    trainer.fit()
    assert not trainer.model.features[0].bias.requires_grad
    assert torch.equal(trainer.model.features[0].bias, torch.zeros_like(trainer.model.features[0].bias))


# -- identity init, BN momentum, any input size (issue #26) --------------------------------------------------------
def test_identity_init_passes_each_blocks_input_through():
    torch.manual_seed(0)
    net = create_model("fastcnn", widths=(32, 64, 64), identity_init=True, bn_momentum=0.4)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][1:]  # after the whitening layer
    for conv in convs:
        c_in = conv.in_channels
        x = torch.randn(2, c_in, 6, 6)
        y = conv(x)
        assert torch.allclose(y[:, :c_in], x, atol=1e-6)  # the first c_in filters are the identity
        assert y[:, c_in:].abs().sum() > 0 if conv.out_channels > c_in else True  # the rest are random
    assert {m.momentum for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.4}
    plain = create_model("fastcnn", widths=(32, 64, 64))
    first = [m for m in plain.modules() if isinstance(m, torch.nn.Conv2d)][1]
    assert not torch.allclose(first.weight[0, 0, 1, 1], torch.tensor(1.0))  # off by default: PyTorch's own init
    assert {m.momentum for m in plain.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.1}


@pytest.mark.parametrize("options, word", [({"identity_init": "yes"}, "identity_init"), ({"bn_momentum": 0}, "bn_momentum"),
                                           ({"bn_momentum": 1.5}, "bn_momentum"), ({"bn_momentum": True}, "bn_momentum")])
def test_new_bad_options_name_the_option(options, word):
    with pytest.raises(CnnlabError, match=word):
        create_model("fastcnn", **options)


def test_fastcnn_takes_smaller_images_and_other_networks_do_not():
    net = create_model("fastcnn", widths=(8, 16, 16)).eval()
    assert net(torch.randn(2, 3, 24, 24)).shape == (2, 10)    # progressive resizing's early epochs
    assert net(torch.randn(2, 3, 9, 9)).shape == (2, 10)      # 9 -> 8 (whitening) -> 4 -> 2 -> 1
    with pytest.raises(CnnlabError, match="expects input of shape"):
        net(torch.randn(2, 3, 8, 8))                           # too small for three poolings
    with pytest.raises(CnnlabError, match="expects input of shape"):
        net(torch.randn(2, 1, 32, 32))                         # channels must match
    with pytest.raises(CnnlabError, match="expects input of shape"):
        create_model("vgg_a")(torch.randn(2, 3, 24, 24))       # a net built for one size (its FC layers) keeps its check
    assert create_model("resnet20").eval()(torch.randn(2, 3, 24, 24)).shape == (2, 10)  # global average pooling


def test_progressive_resizing_trains_and_resumes_exactly(cfg_for, tmp_path):
    pipe = ("augment.pipeline=[{name: crop, padding: 2, mode: reflect}, {name: flip, mode: alternate}, "
            "{name: resize, size: 24, epochs: 1}]")
    over = [pipe, "model.options.identity_init=true", "model.options.bn_momentum=0.4", "train.threads=1",
            "train.amp=none"]
    whole = Trainer(cfg_for(*over, "train.epochs=2", "name=whole"), log=lambda s: None)
    whole.fit()
    half = Trainer(cfg_for(*over, "train.epochs=1", "name=half"), log=lambda s: None)
    run = half.fit()["run"]
    resume(run, log=lambda s: None, overrides=["train.epochs=2"])
    a = load_checkpoint(f"{whole.folder.path}/last.pt")["model"]
    b = load_checkpoint(f"{run}/last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
