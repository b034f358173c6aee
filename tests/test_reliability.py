"""Nothing is lost: SIGKILL at random moments then --resume ends with the same metrics as an uninterrupted run;
a damaged last.pt falls back to the previous good one; crafted checkpoints are refused."""

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.training.checkpoint import load_checkpoint, save_checkpoint

RUN = ["data.train_subset=2000", "data.val_subset=200", "batch.size=50", "train.epochs=10", "optim.lr=0.02",
       "augment.crop=4", "augment.flip=0.5", "train.progress=off"]
KEYS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "batch_size"]


def _cli(args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "cnnlab", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, **kw)


def _mtime(path: Path):
    return path.stat().st_mtime_ns if path.exists() else None


def _rows(run: Path):
    return [[r[k] for k in KEYS] for r in csv.DictReader(open(run / "metrics.csv"))]


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_equals_uninterrupted(shared_data, session_cache, tmp_path):
    env = {**os.environ, "CNNLAB_CACHE": str(session_cache), "OMP_NUM_THREADS": "1"}
    common = RUN + [f"data.root={shared_data}", f"out={tmp_path}", "train.threads=1"]
    ref = _cli(["train", *common, "name=ref"], env)
    assert ref.wait(timeout=600) == 0, ref.stderr.read().decode()

    rng = random.Random(1234)
    kills, p = 0, _cli(["train", *common, "name=cut"], env)
    run = tmp_path / "cut"
    while True:
        # wait until this process has written a new checkpoint, then kill it at a random moment after that
        before = _mtime(run / "last.pt")
        deadline = time.time() + 300
        while _mtime(run / "last.pt") == before and p.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.4))  # within an epoch (about 0.5-1 s here), so most kills land mid-run
        if p.poll() is not None:
            break
        if (run / "metrics.csv").exists() and len(_rows(run)) >= len(_rows(tmp_path / "ref")):
            p.wait(timeout=300)  # every epoch is in: let it finish (killing it now would loop on a loaded machine)
            break
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += 1
        p = _cli(["train", "--resume", str(run)], env)
    assert p.returncode == 0, p.stderr.read().decode()
    assert kills >= 2, "the run ended before it could be killed twice; lengthen it"
    assert _rows(run) == _rows(tmp_path / "ref")
    print(f"kills survived: {kills}")


def test_truncated_checkpoint_falls_back_to_previous(tmp_path, capsys):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "epoch": 1})
    save_checkpoint(path, {"model": {"w": torch.full((3,), 2.0)}, "epoch": 2}, keep_previous=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a disk that filled up mid-write, say
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 1
    assert "cannot be read" in capsys.readouterr().err
    (tmp_path / "last.prev.pt").unlink()
    with pytest.raises(CnnlabError, match="cannot be read"):
        load_checkpoint(path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": _Exploit()}, path)
    with pytest.raises(CnnlabError, match="cannot be read"):
        load_checkpoint(path, fallback=False)
