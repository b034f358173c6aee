"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename over the target.

A crash (or SIGKILL) mid-write leaves the old file intact, never a truncated one. Used for caches, checkpoints,
metrics, configs and predictions.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator, Optional, Union

PathLike = Union[str, os.PathLike]


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb", before_replace: Optional[Callable[[], None]] = None) -> Iterator[IO]:
    """Open a temp file beside `path`; on clean exit it replaces `path` atomically, on error it is removed.

    `before_replace` runs once the new content is safely on disk, just before the rename (checkpoints rotate the old
    file there, so a disk that fills up mid-write leaves the old file where it was)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would have
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it; done once, at import, before any thread starts
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_bytes(path: PathLike, data: bytes, before_replace: Optional[Callable[[], None]] = None) -> None:
    with atomic_open(path, "wb", before_replace) as f:
        f.write(data)


def atomic_write_text(path: PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def check_writable(path: PathLike, what: str = "output") -> Path:
    """Refuse, before any work, an output file that cannot be written: its folder is missing and cannot be made,
    is not writable, or the path is a folder. Creates the folder (as the write would) but no file."""
    from cnnlab.errors import CnnlabError

    path = Path(path)
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # its name would be written into reports and configs, which are UTF-8
        raise CnnlabError(f"{what} path {str(path)!r} is not valid UTF-8; choose a UTF-8 name") from None
    if path.is_dir():
        raise CnnlabError(f"{what} {str(path)!r} is a folder; give a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise CnnlabError(f"cannot write {what} {str(path)!r} (read-only file); choose a writable location")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name[:200]}.", suffix=".probe", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise CnnlabError(f"cannot write {what} {str(path)!r} ({e.strerror or e}); choose a writable location") \
            from None
    return path


def path_problem(path: PathLike, want: str = "file") -> Optional[str]:
    """Why `path` is not the `want` ('file' or 'folder') a command needs, in words for an error message ('not
    found', 'is a folder, not a file', 'is a device, not a file'), or None when it is one. "Not found" for
    /dev/null or for a folder given where a file belongs would send the user looking for the wrong mistake."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "not found"
    except NotADirectoryError:
        return "not found (a part of the path above it is a file, not a folder)"
    except (OSError, ValueError) as e:
        return f"cannot be examined ({getattr(e, 'strerror', None) or e})"
    kind = ("folder" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else
            "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "named pipe" if stat.S_ISFIFO(mode) else
            "socket" if stat.S_ISSOCK(mode) else "special file")
    if kind == want:
        return None
    return f"is {'an' if kind[0] in 'aeiou' else 'a'} {kind}, not a {want}"
