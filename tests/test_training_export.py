"""`cnnlab export`: ONNX Runtime and the TorchScript module give PyTorch's logits on real images, with the run's
normalisation folded into the graph (the exported model takes pixels / 255)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cnnlab.cli.main import main
from cnnlab.training.inference import load_run


@pytest.fixture(scope="module")
def run(fashion_run):
    return fashion_run("data.train_subset=500", "data.val_subset=100", "train.epochs=1", "model.name=simplenn")


def _reference(run_dir, shared_data):
    """PyTorch's logits for 64 real test images, and those images as the exported model takes them."""
    r = load_run(run_dir, data_root=str(shared_data), device="cpu")
    x = r.ds.split("test").x[:64]
    with torch.no_grad():
        logits = r.model(next(iter(r.loader("test", 64)))[0])
    return (x.float() / 255).numpy(), logits.numpy(), r.ds.classes


def test_onnx_runtime_matches_pytorch_on_real_images(run, shared_data, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    out = tmp_path / "m.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out), "--data-root", str(shared_data)]) == 0
    assert "wrote" in capsys.readouterr().out
    images, logits, classes = _reference(run, shared_data)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": images})[0]
    np.testing.assert_allclose(got, logits, rtol=1e-4, atol=1e-4)
    assert (got.argmax(1) == logits.argmax(1)).all()
    meta = json.loads((tmp_path / "m.onnx.json").read_text())
    assert meta["classes"] == classes and meta["input"]["range"] == [0.0, 1.0]
    # batch size is dynamic
    assert session.run(None, {"image": images[:3]})[0].shape == (3, len(classes))


def test_torchscript_matches_pytorch_on_real_images(run, shared_data, tmp_path):
    out = tmp_path / "m.pt"
    assert main(["export", str(run), "--format", "torchscript", "--out", str(out), "--data-root",
                 str(shared_data)]) == 0
    images, logits, _ = _reference(run, shared_data)
    module = torch.jit.load(str(out))
    with torch.no_grad():
        got = module(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(got, logits, rtol=1e-5, atol=1e-5)


def test_export_to_an_unwritable_place_is_one_line(run, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["export", str(run), "--out", str(blocker / "m.onnx")]) == 2
    assert "cannot write export file" in capsys.readouterr().err
