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
