"""Shared fixtures: the real datasets in ../shared/data (beside the checkout), and a per-test cnnlab cache dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CNNLAB_SHARED_DATA", REPO.parent / "shared" / "data"))

# Two cores here: tests run with one intra-op thread so parallel pytest workers do not fight over cores.
torch.set_num_threads(1)
# train.amp=auto decides from a timing; tests that compare numbers (exact resume, divergence at lr 1, gradient
# accumulation) must not depend on one, so the suite pins auto to fp32 (the amp tests call the timing directly).
os.environ.setdefault("CNNLAB_AMP_AUTO", "none")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "cifar10-jpeg.tar.gz").exists():
        pytest.skip(f"shared datasets not found at {SHARED_DATA} (set CNNLAB_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One decode cache for the whole test session, so the 60,000 JPEGs are decoded at most once per run."""
    env = os.environ.get("CNNLAB_TEST_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("cnnlab-cache")


# -- the count of hostile inputs that the fuzz tests generated (README, reliability table) -------------------------
# Each test that feeds cnnlab a bad input calls `count_bad_input()`; the total is printed at the end of the run,
# summed over pytest-xdist workers (each worker reports its count through `workeroutput`).
BAD_INPUTS = {"count": 0}


def count_bad_input(n: int = 1) -> None:
    BAD_INPUTS["count"] += n


def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["bad_inputs"] = BAD_INPUTS["count"]


def pytest_testnodedown(node, error):
    BAD_INPUTS["count"] += node.workeroutput.get("bad_inputs", 0)


def pytest_terminal_summary(terminalreporter):
    if BAD_INPUTS["count"]:
        terminalreporter.write_line(f"hostile inputs: {BAD_INPUTS['count']} generated, each answered by one "
                                    "'cnnlab: error:' line or handled as documented, no traceback")


@pytest.fixture(scope="session")
def bad_input():
    """Call it once per hostile input a test feeds to cnnlab."""
    return count_bad_input


@pytest.fixture(scope="session")
def fashion_run(shared_data, tmp_path_factory):
    """Train a tiny Fashion-MNIST run (SimpleNN+BN) through `cnnlab train`; `make(*key=value)` returns its folder."""
    def make(*overrides: str) -> Path:
        from cnnlab.cli.main import main

        out = tmp_path_factory.mktemp("runs")
        assert main(["train", "--data-root", str(shared_data), f"out={out}", "name=r", "data.name=fashion-mnist",
                     "train.progress=off", "model.options.batch_norm=true", *overrides]) == 0
        return out / "r"
    return make
