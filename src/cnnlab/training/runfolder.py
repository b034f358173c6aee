"""One folder per run, readable without cnnlab (STYLE lesson 6).

    runs/<name>/config.yaml     the resolved config
                metrics.csv     one row per epoch (METRIC_COLUMNS)
                summary.json    best val accuracy and its epoch, wall time, images/s, status, parameters ...
                best.pt last.pt checkpoints (see checkpoint.py)
                curves.png      loss and accuracy against epoch, train and val

Every file is written atomically: a killed run leaves each file either old or new, never half-written.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_write_text

METRIC_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "batch_size", "epoch_time",
                  "images_per_sec", "time"]


class RunFolder:
    def __init__(self, path):
        self.path = Path(path)

    # -- preparation ---------------------------------------------------------------------------------------------
    def prepare(self, *, resume: bool, overwrite: bool = False, need_bytes: int = 0) -> None:
        """Create the folder and check it is writable with room for the checkpoints, before any training."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise CnnlabError(f"run folder {str(p)!r} exists and is not a folder; choose another name")
        if p.exists() and any(p.iterdir()) and not resume:
            if not overwrite:
                raise CnnlabError(f"run folder {str(p)!r} already holds a run; resume it with --resume {p}, "
                                  "or choose another name (name=...), or pass --overwrite")
            for name in ("metrics.csv", "summary.json", "best.pt", "last.pt", "last.prev.pt", "curves.png"):
                (p / name).unlink(missing_ok=True)
        try:
            p.mkdir(parents=True, exist_ok=True)
            probe = p / ".write-test"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as e:
            raise CnnlabError(f"cannot write to run folder {str(p)!r} ({e.strerror}); choose a writable out=... "
                              "folder") from None
        free = shutil.disk_usage(p).free
        if need_bytes and free < need_bytes:
            raise CnnlabError(f"not enough free space in {str(p)!r}: checkpoints need about {need_bytes / 2**20:.1f} "
                              f"MiB, {free / 2**20:.1f} MiB free; free some space or choose another out=... folder")

    # -- files ---------------------------------------------------------------------------------------------------
    def write_config(self, cfg) -> None:
        atomic_write_text(self.path / "config.yaml", cfg.to_yaml())

    def read_config(self) -> Dict[str, Any]:
        f = self.path / "config.yaml"
        if not f.exists():
            raise CnnlabError(f"{str(self.path)!r} is not a run folder (no config.yaml)")
        return yaml.safe_load(f.read_text()) or {}

    def write_metrics(self, rows: List[Dict[str, Any]]) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k)) for k in METRIC_COLUMNS})
        atomic_write_text(self.path / "metrics.csv", buf.getvalue())

    def read_metrics(self) -> List[Dict[str, Any]]:
        return read_metrics_csv(self.path / "metrics.csv")

    def write_summary(self, summary: Dict[str, Any]) -> None:
        atomic_write_text(self.path / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")

    def read_summary(self) -> Optional[Dict[str, Any]]:
        f = self.path / "summary.json"
        return json.loads(f.read_text()) if f.exists() else None


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    return "" if v is None else v


def read_metrics_csv(path) -> List[Dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows.append({k: _num(v) for k, v in r.items()})
    return rows


def _num(v: str):
    if v is None or v == "":
        return None
    try:
        x = float(v)
    except ValueError:
        return v
    return int(x) if x.is_integer() and "." not in v and "e" not in v.lower() else x


def default_run_name(cfg) -> str:
    import time
    return f"{cfg.model.name}-{cfg.data.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid() % 1000:03d}"
