"""DistributedDataParallel on two CPU processes (gloo) equals one process with the same global batch."""

import csv
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from cnnlab.training.config import load_config
from cnnlab.training.trainer import Trainer

OVERRIDES = ["data.train_subset=400", "data.val_subset=100", "batch.size=40", "train.epochs=2", "optim.lr=0.05",
             "train.checkpoints=true"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, overrides, cache):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), CNNLAB_CACHE=cache)
    torch.set_num_threads(1)
    from cnnlab.training.distributed import cleanup
    try:
        Trainer(load_config(None, overrides), log=lambda s: None).fit()
    finally:
        cleanup()


def _metrics(path):
    return [{k: float(v) for k, v in r.items() if k in ("train_loss", "train_acc", "val_loss", "val_acc")}
            for r in csv.DictReader(open(path))]


def test_two_gloo_processes_match_one(shared_data, session_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(session_cache))
    common = OVERRIDES + [f"data.root={shared_data}", f"out={tmp_path}"]
    single = Trainer(load_config(None, common + ["name=single"]), log=lambda s: None)
    single.fit()
    mp.spawn(_worker, args=(2, _free_port(), common + ["name=ddp"], str(session_cache)), nprocs=2, join=True)

    a, b = _metrics(tmp_path / "single" / "metrics.csv"), _metrics(tmp_path / "ddp" / "metrics.csv")
    assert len(a) == len(b) == 2
    for ra, rb in zip(a, b):
        for k in ra:
            assert rb[k] == pytest.approx(ra[k], abs=1e-4), k
    ddp_state = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)["model"]
    assert not any(k.startswith("module.") for k in ddp_state)  # saved unwrapped: a single process can resume it
    for k, v in single.model.state_dict().items():
        assert torch.allclose(v, ddp_state[k], atol=1e-4), k
