"""Where datasets and decode caches live, and the error that says where cnnlab looked.

Precedence for the data root (issue 2): an explicit root (`--data-root`, config `data.root`) > the environment
variable CNNLAB_DATA > the per-user cache directory ($XDG_CACHE_HOME/cnnlab/data, else ~/.cache/cnnlab/data).
Decode caches live under CNNLAB_CACHE, else ~/.cache/cnnlab; they are cnnlab's own files, never the user's data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional, Tuple

from cnnlab.errors import CnnlabError


def user_cache_home() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "cnnlab"


def resolve_root(root=None) -> Tuple[Path, str]:
    """(data root, how it was chosen) following the documented precedence."""
    if root is not None and str(root) != "":
        return Path(root).expanduser(), "--data-root"
    env = os.environ.get("CNNLAB_DATA")
    if env:
        return Path(env).expanduser(), "CNNLAB_DATA"
    return user_cache_home() / "data", "the per-user data directory"


def resolve_cache_dir(cache_dir=None) -> Path:
    if cache_dir is not None and str(cache_dir) != "":
        return Path(cache_dir).expanduser()
    env = os.environ.get("CNNLAB_CACHE")
    return Path(env).expanduser() if env else user_cache_home()


def not_found(dataset: str, root: Path, how: str, looked: Iterable[Path], wanted: str,
              download_hint: Optional[str] = None) -> CnnlabError:
    """The "nothing found" error: every place looked at, and how to point cnnlab at a copy."""
    places = "; ".join(str(p) for p in looked)
    msg = (f"{dataset} not found under {str(root)!r} (chosen by {how}); looked for {wanted} at: {places}. "
           f"Point cnnlab at a copy with --data-root PATH (config key data.root) or the environment variable "
           f"CNNLAB_DATA=PATH")
    if download_hint:
        msg += f", or {download_hint}"
    return CnnlabError(msg)
