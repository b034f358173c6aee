"""`cnnlab data info` end to end through cnnlab's real entry point, on a small image folder of real CIFAR JPEGs and
on the real Fashion-MNIST files; bad input exits with status 2 and one line naming the problem."""

from __future__ import annotations

import pytest
from PIL import Image

import cnnlab.cli.main as cli
from test_data_common import jpeg_members, write_tar


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Loads without cache_dir use CNNLAB_CACHE: point it into tmp_path so tests never write to the user's cache."""
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "default-cache"))


@pytest.fixture
def run(capsys):

    def go(*argv):
        code = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err
    return go


def test_info_on_an_image_archive_writes_both_grids(run, shared_data, tmp_path):
    archive = write_tar(tmp_path / "small.tar.gz", jpeg_members(shared_data, per_class=10, holdout=5))
    code, out, err = run("data", "info", "imagefolder", "--data-root", archive, "--val-size", 6, "--out",
                         tmp_path / "out", "--augment", "crop,flip", "cutout:size=12", "--classes", "bird,0",
                         "--per-class", 4)
    assert code == 0, err
    assert "dataset imagefolder: 3 classes, images 3x32x32" in out
    assert "train         24 images (labelled)" in out and "per class: airplane 8, automobile 8, bird 8" in out
    assert "val            6 images" in out and "holdout        5 images (unlabelled)" in out
    assert "normalisation (train split): mean (" in out
    for name, rows in (("imagefolder_examples.png", 2), ("imagefolder_augmented.png", 2)):
        png = tmp_path / "out" / name
        with Image.open(png) as im:
            assert im.format == "PNG" and im.size[0] > 200 and im.size[1] > 50 * rows
    assert "Cutout 12x12" in out  # the pipeline in words, not a Python repr


def test_info_fashion_mnist(run, shared_data, tmp_path):
    code, out, err = run("data", "info", "fashion-mnist", "--data-root", shared_data, "--out", tmp_path)
    assert code == 0, err
    assert "images 1x28x28" in out and "test      10,000 images (labelled)" in out
    assert "Ankle boot 1,000" in out and (tmp_path / "fashion-mnist_examples.png").is_file()
    assert not (tmp_path / "fashion-mnist_augmented.png").exists()


@pytest.mark.parametrize("argv, message", [
    (["nosuch"], "unknown dataset 'nosuch'"),
    (["cifar10", "--data-root", "{tmp}/empty"], "cifar10 not found under"),
    (["fashion-mnist", "--data-root", "{shared}", "--augment", "rotate"], "unknown augmentation 'rotate'"),
    (["fashion-mnist", "--data-root", "{shared}", "--augment", "cutout:big"], "option 'big' must be key=value"),
    (["fashion-mnist", "--data-root", "{shared}", "--classes", "Cat"], "'Cat' is not a class of fashion-mnist"),
    (["fashion-mnist", "--data-root", "{shared}", "--val-size", "-3"], "val_size must be between 0 and"),
])
def test_bad_input_is_one_line_and_status_2(run, shared_data, tmp_path, argv, message):
    argv = [a.format(tmp=tmp_path, shared=shared_data) for a in argv]
    code, out, err = run("data", "info", *argv, "--out", tmp_path / "o")
    assert code == 2 and err.startswith("cnnlab: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
