"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename over the target.

A crash (or SIGKILL) mid-write leaves the old file intact, never a truncated one. Used for caches, checkpoints,
metrics, configs and predictions.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Callable, Iterator, Optional, Union

from cnnlab.errors import CnnlabError

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


class OwnerLock:
    """An exclusive, non-blocking lock on a file, held for as long as its owner lives.

    `flock` (POSIX) or `msvcrt.locking` (Windows) on a lock file that is never deleted: the operating system releases
    the lock when the holding process dies, however it dies (SIGKILL, power loss of a container), so a killed run can
    be resumed at once, while a live one cannot be taken over. The file is never unlinked because an unlink races
    with a second process that has already opened the old file: both would then hold "the" lock. The file holds the
    owner's pid, host and command line, only to name it in the refusal (the lock itself is the truth).
    """

    def __init__(self, path: PathLike):
        self.path = Path(path)
        self._fd: Optional[int] = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> Optional[str]:
        """Take the lock; returns None, or (when another process holds it) what that file says of its owner."""
        if self._fd is not None:
            return None
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.path, flags, 0o666)
        try:
            if not _try_lock(fd):
                owner = _read_owner(fd) or "another process"
                os.close(fd)
                return owner
            os.ftruncate(fd, 0)
            os.write(fd, _owner_text().encode("utf-8", "replace"))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return None

    def release(self) -> None:
        """Let go (the file stays, emptied of the owner's name). Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor releases a flock/msvcrt lock

    def __del__(self):  # a forgotten owner (an object dropped without release) must not keep the folder forever
        with contextlib.suppress(Exception):
            self.release()


def _try_lock(fd: int) -> bool:
    try:
        import fcntl  # here, not at the top: POSIX only
    except ImportError:  # Windows
        import msvcrt  # here, not at the top: Windows only
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _owner_text() -> str:
    import socket  # here: only a folder's owner needs it, and every command (--help too) imports this module

    cmd = shlex.join([os.path.basename(sys.argv[0] or "python"), *sys.argv[1:]])[:300]
    return f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}: {cmd}\n"


def _read_owner(fd: int) -> str:
    with contextlib.suppress(OSError):
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 1000).decode("utf-8", "replace").strip()
    return ""


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
