"""A clean virtual environment: `pip install -e .` alone (no extras) installs a working `cnnlab`, without
torchvision, TensorBoard, MLflow or ONNX. Slow (about 80 s: it installs torch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_clean_venv_installs_and_trains_with_pip_install_e_dot_alone(shared_data, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "-e",
                          str(REPO)], capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-2000:]
    cnnlab = str(venv / "bin" / "cnnlab")
    assert subprocess.run([cnnlab, "--version"], capture_output=True, text=True).stdout.startswith("cnnlab ")
    run = subprocess.run([cnnlab, "train", "data.name=fashion-mnist", "data.train_subset=300", "data.val_subset=100",
                          "train.epochs=1", f"out={tmp_path / 'runs'}", "name=clean", "--data-root",
                          str(shared_data)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0 and "finished" in run.stdout, run.stderr
    listed = subprocess.run([str(venv / "bin" / "pip"), "list", "--format=freeze"], capture_output=True,
                            text=True).stdout.lower()
    for extra in ("torchvision", "tensorboard", "mlflow", "onnx"):
        assert extra not in listed, f"{extra} was installed without being asked for"
