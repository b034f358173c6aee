"""Checkpoints as plain dicts, written atomically, loaded with `weights_only=True`.

A checkpoint holds {model, optimizer, scheduler, epoch, rng, config, state} (torchvision references / timm). The model
is unwrapped from DDP and torch.compile first, so any run, single- or multi-process, can resume any checkpoint.
`last.pt` is rotated to `last.prev.pt` before being replaced, so a checkpoint truncated by a full disk or an outside
hand still leaves the previous good one, which `load_checkpoint` falls back to with a warning.
"""

from __future__ import annotations

import io
import os
import random
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_write_bytes


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DistributedDataParallel / DataParallel and torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def rng_state() -> Dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(path, checkpoint: Dict[str, Any], keep_previous: bool = False) -> None:
    path = Path(path)
    buf = io.BytesIO()
    torch.save(checkpoint, buf)
    if keep_previous and path.exists():
        os.replace(path, path.with_suffix(".prev.pt"))
    atomic_write_bytes(path, buf.getvalue())


def _load(path: Path, map_location) -> Dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated or corrupt file, or one holding arbitrary objects (refused by weights_only)
        raise CnnlabError(f"checkpoint {str(path)!r} cannot be read ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200] if str(e) else 'corrupt'})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CnnlabError(f"checkpoint {str(path)!r} is not a cnnlab checkpoint (no 'model' entry)")
    return ckpt


def load_checkpoint(path, map_location="cpu", fallback: bool = True) -> Dict[str, Any]:
    """Load `path`; if it is missing or damaged and `<stem>.prev.pt` exists, warn and load that instead."""
    path = Path(path)
    prev = path.with_suffix(".prev.pt")
    try:
        if not path.exists():
            raise CnnlabError(f"checkpoint {str(path)!r} not found")
        return _load(path, map_location)
    except CnnlabError as e:
        if not (fallback and prev.exists()):
            raise
        print(f"cnnlab: warning: {e}; using the previous checkpoint {str(prev)!r}", file=sys.stderr)
        return _load(prev, map_location)


def find_checkpoint(run_dir, which: str = "best") -> Optional[Path]:
    """best.pt (or last.pt) in a run folder, falling back to the other one."""
    run_dir = Path(run_dir)
    order = ["best.pt", "last.pt"] if which == "best" else ["last.pt", "best.pt"]
    for name in order + ["last.prev.pt"]:
        if (run_dir / name).exists():
            return run_dir / name
    return None
