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
    """RNG states go back as CPU byte tensors (a checkpoint loaded with map_location=cuda moved them), and CUDA
    states only for the devices this machine has."""
    torch.set_rng_state(state["torch"].cpu())
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]][:torch.cuda.device_count()])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(path, checkpoint: Dict[str, Any], keep_previous: bool = False) -> None:
    path = Path(path)
    buf = io.BytesIO()
    torch.save(checkpoint, buf)
    def rotate():  # only once the new checkpoint is on disk: a full disk leaves the old one as it was
        if keep_previous and path.exists():
            os.replace(path, path.with_suffix(".prev.pt"))
    atomic_write_bytes(path, buf.getvalue(), before_replace=rotate)


# What each use of a checkpoint reads, with the type it must have: a damaged or foreign file is refused by name
# before any of it is applied (and, for last.pt, the previous checkpoint is tried instead). Resuming reads more:
# runstate.RESUME_KEYS, derived from what a run's state is.
MODEL_KEYS = {"model": dict, "config": dict}


def _load(path: Path, map_location, require: Dict[str, Any]) -> Dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated or corrupt file, or one holding arbitrary objects (refused by weights_only)
        raise CnnlabError(f"checkpoint {str(path)!r} cannot be read ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200] if str(e) else 'corrupt'})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CnnlabError(f"checkpoint {str(path)!r} is not a cnnlab checkpoint (no 'model' entry)")
    for key, tp in require.items():
        if key not in ckpt:
            raise CnnlabError(f"checkpoint {str(path)!r} is damaged: it has no {key!r} entry")
        if not isinstance(ckpt[key], tp) or (tp is int and isinstance(ckpt[key], bool)):
            raise CnnlabError(f"checkpoint {str(path)!r} is damaged: {key!r} is {type(ckpt[key]).__name__} "
                              f"{str(ckpt[key])[:40]!r}, not {getattr(tp, '__name__', 'a number')}")
    bad = [k for k, v in ckpt["model"].items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CnnlabError(f"checkpoint {str(path)!r} is damaged: model entry {bad[0]!r} is not a tensor")
    return ckpt


def load_checkpoint(path, map_location="cpu", fallback: bool = True,
                    require: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Load `path`, checking it holds the `require`d entries (default: the model); if it is missing or
    damaged and `<stem>.prev.pt` exists, warn and load that instead."""
    path = Path(path)
    prev = path.with_suffix(".prev.pt")
    require = {"model": dict} if require is None else require
    try:
        if not path.exists():
            raise CnnlabError(f"checkpoint {str(path)!r} not found")
        return _load(path, map_location, require)
    except CnnlabError as e:
        if not (fallback and prev.exists()):
            raise
        print(f"cnnlab: warning: {e}; using the previous checkpoint {str(prev)!r}", file=sys.stderr)
        return _load(prev, map_location, require)


def apply_model_state(model: nn.Module, state: Dict[str, Any], path) -> None:
    """load_state_dict, with a mismatch (wrong shapes, missing or extra entries) as a CnnlabError naming the file."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = next((ln.strip() for ln in first[1:] if ln.strip()), first[0] if first else "")
        raise CnnlabError(f"checkpoint {str(path)!r} does not fit the model its config builds ({detail[:200]}); "
                          "the file is damaged or from another model") from None


CHECKPOINT_CHOICES = ("best", "last")  # which checkpoint of a run folder to load (`which`)


def find_checkpoint(run_dir, which: str = "best") -> Optional[Path]:
    """best.pt (or last.pt) in a run folder, falling back to the other one."""
    run_dir = Path(run_dir)
    order = ["best.pt", "last.pt"] if which == "best" else ["last.pt", "best.pt"]
    for name in order + ["last.prev.pt"]:
        if (run_dir / name).exists():
            return run_dir / name
    return None
