"""Initial-loss sanity check on real images: every untrained classifier starts near ln(10) on real CIFAR-10 and
Fashion-MNIST batches (read straight from ../shared/data, independent of the data layer), and a broken init is
caught."""

from __future__ import annotations

import gzip
import io
import math
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model, list_models, model_info
from cnnlab.models.sanity import initial_loss_check

PER_CLASS = 16
# Measured on the shared copies (shared/data/README.md).
CIFAR_MEAN, CIFAR_STD = (0.491250, 0.482090, 0.446521), (0.245232, 0.242782, 0.260629)
FMNIST_MEAN, FMNIST_STD = 0.286849, 0.352444


def _standardise(x: np.ndarray, mean, std) -> torch.Tensor:
    t = torch.from_numpy(np.array(x)).float() / 255.0  # copy: frombuffer arrays are read-only
    return (t - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


@pytest.fixture(scope="module")
def cifar_batch(shared_data):
    """PER_CLASS training images of each of the 10 classes (the archive is sorted by class, so scan it)."""
    per = {}
    with tarfile.open(shared_data / "cifar10-jpeg.tar.gz") as tf:
        for m in tf:
            parts = m.name.split("/")
            if m.isfile() and len(parts) == 4 and parts[1] == "train":
                imgs = per.setdefault(parts[2], [])
                if len(imgs) < PER_CLASS:
                    imgs.append(np.asarray(Image.open(io.BytesIO(tf.extractfile(m).read())).convert("RGB")))
            if len(per) == 10 and all(len(v) == PER_CLASS for v in per.values()):
                break
    classes = sorted(per)
    x = np.stack([img for c in classes for img in per[c]]).transpose(0, 3, 1, 2)
    y = torch.tensor([i for i in range(10) for _ in range(PER_CLASS)])
    return _standardise(x, CIFAR_MEAN, CIFAR_STD), y


@pytest.fixture(scope="module")
def fmnist_batch(shared_data):
    """The first 160 Fashion-MNIST test images (IDX format: 16-byte header for images, 8 for labels)."""
    n = 10 * PER_CLASS
    with gzip.open(shared_data / "fashion-mnist" / "t10k-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(16 + n * 784)[16:], dtype=np.uint8).reshape(n, 1, 28, 28)
    with gzip.open(shared_data / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz") as f:
        y = torch.from_numpy(np.frombuffer(f.read(8 + n)[8:], dtype=np.uint8).astype(np.int64))
    return _standardise(x, (FMNIST_MEAN,), (FMNIST_STD,)), y


CLASSIFIERS = [n for n in list_models() if model_info(n)["num_classes"] is not None]
RESNETS = [n for n in CLASSIFIERS if n.startswith("resnet")]


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_initial_loss_near_ln_classes_on_real_data(name, cifar_batch, fmnist_batch):
    torch.manual_seed(0)
    c = model_info(name)["input_shape"][0]
    x, y = fmnist_batch if c == 1 else cifar_batch
    # Deep ResNets with the paper's init start above ln C (next test); zero-init residuals make every block the
    # identity at the start, so their loss must be at chance too.
    kw = dict(num_classes=10, **({"zero_init_residual": True} if name in RESNETS else {}))
    # the 224×224 reference networks are checked on CIFAR at 64×64 (upsampled), the smallest size AlexNet takes
    if model_info(name)["input_shape"][1] == 224:
        kw["input_size"] = 64
        x = torch.nn.functional.interpolate(x, size=64, mode="bilinear", align_corners=False)
    r = initial_loss_check(create_model(name, **kw), x, y)
    assert r["expected"] == pytest.approx(math.log(10))
    assert r["ok"], f"{name}: initial loss {r['loss']:.3f} vs ln 10 = {r['expected']:.3f}"


def test_resnet_initial_loss_grows_with_depth(cifar_batch):
    """Measured property of the paper's init (no zero-init): the residual stream's variance grows with depth, and
    with it the initial loss; ResNet-20 is still at chance, ResNet-110 well above (He et al. warm it up)."""
    x, y = cifar_batch
    mean_ratio = {}
    for name in ("resnet20", "resnet110"):
        ratios = []
        for seed in range(3):
            torch.manual_seed(seed)
            ratios.append(initial_loss_check(create_model(name), x, y)["ratio"])
        mean_ratio[name] = sum(ratios) / len(ratios)
    assert abs(mean_ratio["resnet20"] - 1) < 0.25 < mean_ratio["resnet110"] - 1


def test_zero_init_residual_makes_blocks_identity():
    model = create_model("resnet56", zero_init_residual=True)
    gammas = [m.bn2.weight for m in model.modules() if type(m).__name__ == "BasicBlock"]
    assert len(gammas) == 27 and all(g.eq(0).all() for g in gammas)


def test_fashion_mnist_with_cifar_models(fmnist_batch):
    x, y = fmnist_batch
    for name in ("simplenn", "resnet20", "mlp"):
        torch.manual_seed(0)
        r = initial_loss_check(create_model(name, in_channels=1, input_size=28), x, y)
        assert r["ok"] and r["batch_size"] == len(y), (name, r)


def test_bad_init_is_flagged_and_state_restored(cifar_batch):
    x, y = cifar_batch
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    with torch.no_grad():
        model.classifier.fc1.weight.mul_(100.0)  # logits far too large: loss >> ln 10
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    r = initial_loss_check(model, x, y)
    assert not r["ok"] and r["ratio"] > 2
    assert not model.training  # mode restored
    assert all(torch.equal(buffers[k], v) for k, v in model.named_buffers())  # BN statistics untouched


def test_sanity_input_errors(cifar_batch):
    x, y = cifar_batch
    model = create_model("simplenn")
    with pytest.raises(CnnlabError, match="labels must lie in 0..9"):
        initial_loss_check(model, x, y + 5)
    with pytest.raises(CnnlabError, match="labels y"):
        initial_loss_check(model, x, y[:3])
    with pytest.raises(CnnlabError, match="not a classifier"):
        initial_loss_check(create_model("inception_naive", in_channels=3, input_size=32), x, y)
