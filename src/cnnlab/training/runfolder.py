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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from cnnlab.errors import CnnlabError
from cnnlab.fileio import OwnerLock, atomic_write_text
from cnnlab.training.config import RunConfig, config_from_dict, read_yaml
from cnnlab.training.metrics import EPOCH_COLUMNS, METRICS, SUMMARY_METRICS

# Everything cnnlab writes into a run folder (trainer, evaluate, predict, sweeps, the quickstart's report): what
# --overwrite removes, so an old run's predictions never sit beside a new run.
RUN_OUTPUTS = {"config.yaml", "metrics.csv", "summary.json", "best.pt", "last.pt", "last.prev.pt", "best.prev.pt",
               "curves.png", "predictions.csv", "log.txt", "tb", "report.html", "report.md", "report_files",
               "evaluation.json", "confusion.csv", "confusion.png", "model.onnx", "model.onnx.json",
               "model.torchscript.pt", "model.torchscript.pt.json"}


@dataclass(frozen=True)
class Spelling:
    """How the caller says "replace the run" and "continue the run", so that a message advises the caller's own way:
    `cnnlab train` takes flags, the Python API keyword arguments. `resume` is formatted with path=the run folder."""
    overwrite: str
    resume: str
    resume_name: str


CLI = Spelling("pass --overwrite", "cnnlab train --resume {path}", "--resume")
API = Spelling("pass overwrite=True", "api.resume('{path}')", "api.resume")

_NUM = (int, float, type(None))
# The metrics' types come from the catalogue (training/metrics.py); epochs_done is always known.
SUMMARY_TYPES = {"status": str, **{n: (int, type(None)) if METRICS[n].whole else _NUM for n in SUMMARY_METRICS},
                 "epochs_done": int, "targets": (dict, type(None)), "diverged": bool,
                 "end_train_images": (int, type(None))}
LOCK_FILE = ".cnnlab.lock"  # held by the run folder's one owner (RunFolder.own); never deleted, see OwnerLock
CHECKPOINT_FILES = ("best.pt", "last.pt", "last.prev.pt")
METRIC_COLUMNS = ["epoch", *EPOCH_COLUMNS, "threads"]  # the metrics' columns in the catalogue's order


class RunFolder:
    def __init__(self, path):
        self.path = Path(path)
        self._lock: Optional[OwnerLock] = None

    # -- preparation ---------------------------------------------------------------------------------------------
    def prepare(self, *, resume: bool, overwrite: bool = False, need_bytes: int = 0, spelling: Spelling = CLI) -> None:
        """Create the folder, become its one owner (see `own`), and check it is writable with room for the
        checkpoints, before any training."""
        p = self.path
        if p.is_symlink():  # --overwrite clears a run folder: through a link it would empty a folder elsewhere
            raise CnnlabError(f"run folder {str(p)!r} is a link (to {os.readlink(p)!r}); cnnlab writes and clears "
                              "run folders and refuses a link; choose another name or point out=... at the real folder")
        if p.exists() and not p.is_dir():
            raise CnnlabError(f"run folder {str(p)!r} exists and is not a folder; choose another name")
        try:
            p.mkdir(parents=True, exist_ok=True)
            self.own()
            probe = p / ".write-test"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as e:
            self.release()
            raise CnnlabError(f"cannot write to run folder {str(p)!r} ({e.strerror}); choose a writable out=... "
                              "folder") from None
        if self.holds_run() and not resume:
            if not overwrite:
                self.release()
                raise CnnlabError(f"run folder {str(p)!r} already holds a run; resume it with "
                                  f"{spelling.resume.format(path=p)}, or choose another name (name=...), or "
                                  f"{spelling.overwrite}")
            self.clear()
        free = shutil.disk_usage(p).free
        if resume:  # the checkpoints already there are replaced, not added to: count their space as free,
            # keeping room for one checkpoint written beside the old one before it replaces it
            replaced = sum((p / n).stat().st_size for n in CHECKPOINT_FILES if (p / n).is_file())
            need_bytes = max(need_bytes - replaced, need_bytes // 3)
        if need_bytes and free < need_bytes:
            self.release()
            raise CnnlabError(f"not enough free space in {str(p)!r}: checkpoints need about {need_bytes / 2**20:.1f} "
                              f"MiB, {free / 2**20:.1f} MiB free; free some space or choose another out=... folder")

    def own(self) -> None:
        """Become the folder's one owner for as long as this process holds it (`release`, or the process ends):
        a second `train` of the same name, a `--resume` of a run still training, or a sweep of another config that
        picked this folder is refused in one line naming the owner, instead of writing into the same files."""
        if self._lock is None:
            self._lock = OwnerLock(self.path / LOCK_FILE)
        owner = self._lock.acquire()
        if owner is not None:
            self._lock = None
            mine = owner.startswith(f"pid {os.getpid()} ")
            raise CnnlabError(f"run folder {str(self.path)!r} is in use by "
                              + ("this very process (a trainer on it is still open: let it finish, or call its "
                                 "close())" if mine else f"{owner.split(': ', 1)[0]} ({owner.split(': ', 1)[-1]})")
                              + "; wait for it to end, or choose another name (name=...)")

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def holds_run(self) -> bool:
        """Whether the folder holds anything but its lock file (a run, or a user's files)."""
        return self.path.is_dir() and any(q.name != LOCK_FILE for q in self.path.iterdir())

    def clear(self) -> List[str]:
        """Remove what a run (and the commands run on it) writes into its folder, and nothing else: files the user
        put there stay, and a link is removed as a link, never followed out of the folder."""
        removed = []
        patterns = (".*.tmp", "evaluation-*.json", "confusion-*.csv", "confusion-*.png")
        for name in sorted(RUN_OUTPUTS) + sorted(q.name for pat in patterns for q in self.path.glob(pat)):
            q = self.path / name
            if q.is_symlink() or q.is_file():
                q.unlink()
            elif q.is_dir():
                shutil.rmtree(q)
            else:
                continue
            removed.append(name)
        return removed

    # -- files ---------------------------------------------------------------------------------------------------
    def write_config(self, cfg) -> None:
        atomic_write_text(self.path / "config.yaml", cfg.to_yaml())

    def read_config(self) -> Dict[str, Any]:
        f = self.path / "config.yaml"
        if not f.exists():
            raise CnnlabError(f"{str(self.path)!r} is not a run folder (no config.yaml)")
        data = read_yaml(f, "run config")
        if not isinstance(data, dict) or not data:
            raise CnnlabError(f"run config {str(f)!r} is {'empty' if not data else 'not a mapping of keys'}; the "
                              f"run folder is damaged: restore config.yaml (a checkpoint holds a copy) or start anew")
        return data

    def load_config(self) -> RunConfig:
        """config.yaml as a validated RunConfig (keys added since the run filled with defaults)."""
        try:
            return config_from_dict(self.read_config())
        except CnnlabError as e:
            raise CnnlabError(f"run config {str(self.path / 'config.yaml')!r} is damaged: {e}") from None

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
        if not f.exists():
            return None
        try:
            data = json.loads(f.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise CnnlabError(f"run summary {str(f)!r} is not valid JSON ({type(e).__name__}); the run folder is "
                              "damaged: delete summary.json and resume the run, or retrain it") from None
        if not isinstance(data, dict):
            raise CnnlabError(f"run summary {str(f)!r} is not a JSON object; delete it and resume the run")
        for key, types in SUMMARY_TYPES.items():
            wrong = key in data and not isinstance(data[key], types)
            if wrong or isinstance(data.get(key), bool) and key != "diverged":
                raise CnnlabError(f"run summary {str(f)!r} is damaged: {key!r} is {data[key]!r}; delete summary.json "
                                  "and resume the run to write it again")
        return data


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    return "" if v is None else v


def read_metrics_csv(path) -> List[Dict[str, Any]]:
    """The rows of a metrics.csv; a file that is not one (no epoch column, epochs that are not 1, 2, 3 ...) is a
    CnnlabError naming it, since resuming or reporting from it would go wrong silently."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    damaged = (f"metrics file {str(path)!r} is damaged ({{}}); delete it to resume from last.pt without the "
               "earlier rows, or retrain the run")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:  # cnnlab always writes the header, so an empty file was damaged
                raise CnnlabError(damaged.format("empty"))
            if "epoch" not in reader.fieldnames:
                raise CnnlabError(damaged.format("no 'epoch' column"))
            for line, r in enumerate(reader, start=2):
                row = {k: _num(v) for k, v in r.items() if isinstance(k, str)}
                if not isinstance(row.get("epoch"), int) or row["epoch"] != len(rows) + 1:
                    raise CnnlabError(damaged.format(f"line {line}: epoch {r.get('epoch')!r}, expected "
                                                     f"{len(rows) + 1}"))
                text = next((k for k in METRIC_COLUMNS if isinstance(row.get(k), str)), None)
                if text is not None:  # every column cnnlab writes is a number (or empty)
                    raise CnnlabError(damaged.format(f"line {line}: {text} is {row[text]!r}, not a number"))
                rows.append(row)
    except (UnicodeDecodeError, csv.Error) as e:
        raise CnnlabError(damaged.format(type(e).__name__)) from None
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
    return f"{cfg.model.name}-{cfg.data.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid() % 1000:03d}"
