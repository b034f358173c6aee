"""Reading a folder or a .tar/.tar.gz archive as a tree of files, safely, without extracting anything to disk.

Archive safety (the "tar slip" family, cf. Python's `tarfile` extraction filters, PEP 706): a member with an absolute
path or a `..` component, or a link whose target leaves the archive's tree, is refused with an error naming it; links
inside the tree are resolved in memory. In a folder, a symbolic link that points outside the folder is refused the
same way. Hidden files (any path component starting with '.', e.g. macOS `._x.jpg` forks) are skipped.

Decompression bombs: only members that hold data by name (images .jpg/.jpeg/.png, the CIFAR-10 python batch files)
are ever read, and each is checked against its header size before a byte of it is read: a file over
`CNNLAB_MAX_FILE_MB` (default 64 MiB) is refused by name, and so is the archive once the sizes of all its members
(read or skipped) pass 256 MiB + 1 MiB per data file seen so far (`CNNLAB_MAX_ARCHIVE_MB` sets a fixed bound
instead). Past 256 MiB the members may add up to at most 100 times the archive's size on disk (images
barely compress; zeros inflate a thousandfold), so many moderate members cannot add up to a bomb either. A 6.5 KB
archive claiming a 20 GB member is refused at that member's header, in milliseconds. Two members
with the same path are refused too (with tar's "last one wins", a second copy could silently replace the first).

A tree's fingerprint keys the decode cache: the archive's sha256, or for a folder a sha256 of every file's relative
path, size and mtime (hashing the bytes of a folder would cost as much as decoding it).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import tarfile
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Set, Union

from cnnlab.errors import CnnlabError

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DATA_FILE_NAMES = re.compile(r"data_batch_\d+|test_batch|batches\.meta")  # the CIFAR-10 python batches (cifar.py)
MAX_LINK_DEPTH = 16  # longer chains are a loop, or hostile
MiB = 1 << 20
RATIO = 100  # images barely compress (JPEG/PNG: about 1x); a member that inflates 100x past 256 MiB is a bomb


def is_data_file(rel: str) -> bool:
    """Whether a tree's file holds data by its name: the only files whose bytes are ever read."""
    return rel.lower().endswith(IMAGE_SUFFIXES) or DATA_FILE_NAMES.fullmatch(rel.rsplit("/", 1)[-1]) is not None


def _env_mb(name: str, default: float) -> float:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise CnnlabError(f"environment variable {name}={text!r} must be a positive number of MiB")
    return value


class SizeLimits:
    """The bounds on what a tree may make cnnlab read (see the module docstring), from the environment."""

    def __init__(self, compressed: int = 0):
        self.compressed = compressed  # the archive's size on disk (0 for a folder)
        self.max_file = int(_env_mb("CNNLAB_MAX_FILE_MB", 64) * MiB)
        fixed = os.environ.get("CNNLAB_MAX_ARCHIVE_MB")
        self.max_total = int(_env_mb("CNNLAB_MAX_ARCHIVE_MB", 0) * MiB) if fixed is not None else None
        self.total = 0
        self.data_files = 0

    def check_file(self, where: str, size: int) -> None:
        if size > self.max_file:
            raise CnnlabError(f"{where} is {size / MiB:,.1f} MiB, over the {self.max_file / MiB:g} MiB limit for one "
                              "file (CNNLAB_MAX_FILE_MB); refusing it as a possible decompression bomb; remove it, or "
                              "raise the limit if it is genuine")
        self.data_files += 1

    def add(self, where: str, size: int) -> None:
        self.total += size
        bound = self.max_total if self.max_total is not None else 256 * MiB + MiB * self.data_files
        if self.max_total is None and self.total > 256 * MiB and self.total > RATIO * self.compressed:
            raise CnnlabError(f"{where}: the archive's members add up to {self.total / MiB:,.1f} MiB, more than "
                              f"{RATIO} times its {self.compressed / MiB:,.1f} MiB on disk; refusing it as a possible "
                              "decompression bomb (CNNLAB_MAX_ARCHIVE_MB sets a fixed bound instead)")
        if self.total > bound:
            raise CnnlabError(f"{where}: the archive's members add up to {self.total / MiB:,.1f} MiB after "
                              f"{self.data_files:,} data files, over the {bound / MiB:,.0f} MiB allowed (256 MiB + 1 "
                              "MiB per data file; CNNLAB_MAX_ARCHIVE_MB sets another bound); refusing it as a possible "
                              "decompression bomb")


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def hash_file(path: Path, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file, read in chunks (archives are tens of MB)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return h.hexdigest()
            h.update(block)


def sha256_file(path: Path) -> str:
    return hash_file(path, "sha256")


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


def _utf8_name(where: str, rel: str) -> None:
    """Names become class names and prediction ids, written into UTF-8 configs, checkpoints and CSV files: a name
    that is not valid UTF-8 (surrogate escapes, from the file system or the archive) is refused here, before any
    work, rather than failing at the first write after training or prediction."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise CnnlabError(f"{where}: the name {rel!r} is not valid UTF-8; rename it (e.g. convmv -r -f latin1 -t "
                          "utf8 --notest FOLDER)") from None


def _safe_name(archive: Path, name: str) -> str:
    """The member's path inside the tree, or an error if it tries to escape it or is not UTF-8."""
    _utf8_name(f"archive {str(archive)!r}", name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise CnnlabError(f"archive {str(archive)!r}: member {name!r} has an absolute path; cnnlab refuses archives "
                          f"whose members could escape their folder; rebuild the archive with relative paths")
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../") or ".." in name.split("/"):
        raise CnnlabError(f"archive {str(archive)!r}: member {name!r} contains '..' and could escape its folder; "
                          f"rebuild the archive with plain relative paths")
    return "" if norm == "." else norm


def _link_target(archive: Path, member: tarfile.TarInfo, rel: str) -> str:
    link = member.linkname
    # hard links name a member from the archive root, symbolic links are relative to the link's own folder
    target = link if member.islnk() else posixpath.join(posixpath.dirname(rel), link)
    norm = posixpath.normpath(target)
    if link.startswith("/") or norm == ".." or norm.startswith("../"):
        raise CnnlabError(f"archive {str(archive)!r}: member {member.name!r} is a link to {link!r}, which points "
                          f"outside the archive; cnnlab refuses such archives; rebuild it without that link")
    return norm


class FileTree:
    """Relative POSIX paths -> file bytes, from a folder (read on demand) or an archive (read in one pass).

    An archive's files that hold no data by name (`is_data_file`) are listed with their size, never read."""

    def __init__(self, origin: Path, files: Dict[str, Union[bytes, Path, int]], dirs: Set[str], fingerprint: str):
        self.origin = origin
        self._files = files
        self.dirs = dirs  # every folder in the tree, including empty ones (so an empty class folder can be named)
        self.fingerprint = fingerprint
        self._limits = SizeLimits()

    def paths(self) -> List[str]:
        return sorted(self._files)

    def read(self, rel: str) -> bytes:
        item = self._files[rel]
        if isinstance(item, bytes):
            return item
        if isinstance(item, int):
            raise CnnlabError(f"{self.where(rel)} was not read: cnnlab reads only images and CIFAR-10 batch files")
        try:
            self._limits.check_file(str(item), item.stat().st_size)  # before reading: a folder can hold a bomb too
            return item.read_bytes()
        except OSError as e:
            raise CnnlabError(f"cannot read {str(item)!r}: {e.strerror or e}; check its permissions") from None

    def where(self, rel: str) -> str:
        """How to name a file in a message: its real path, or archive:member."""
        item = self._files[rel]
        return str(item) if isinstance(item, Path) else f"{self.origin}:{rel}"


def tree_fingerprint(path: Path) -> str:
    """The cache key of a tree without reading its files: an archive's sha256, a folder's listing hash."""
    if is_archive(path) and path.is_file():
        return "sha256:" + sha256_file(path)
    return open_tree(path).fingerprint


def open_tree(path: Path) -> FileTree:
    if is_archive(path) and path.is_file():
        return _archive_tree(path)
    if path.is_dir():
        return _folder_tree(path)
    raise CnnlabError(f"{str(path)!r} is neither a folder nor a .tar/.tar.gz/.tgz archive; point --data-root at the "
                      f"image folder or the archive itself")


def _archive_tree(path: Path) -> FileTree:
    files: Dict[str, Union[bytes, int]] = {}
    links: Dict[str, str] = {}
    dirs: Set[str] = set()
    limits = SizeLimits(path.stat().st_size)
    try:
        # "r|*" streams the archive once, front to back, whatever its compression: no seeking, nothing extracted
        with tarfile.open(path, "r|*") as tf:
            for m in tf:
                rel = _safe_name(path, m.name)
                if (m.isfile() or m.issym() or m.islnk()) and (rel in files or rel in links) and not _hidden(rel):
                    raise CnnlabError(f"archive {str(path)!r} holds {m.name!r} twice; which copy is meant is "
                                      "ambiguous, so cnnlab refuses it; rebuild the archive with one of them")
                if m.issym() or m.islnk():
                    links[rel] = _link_target(path, m, rel)
                elif m.isfile():
                    where = f"archive {str(path)!r}: member {m.name!r}"
                    wanted = not _hidden(rel) and is_data_file(rel)
                    if wanted:
                        limits.check_file(where, m.size)
                    limits.add(where, m.size)  # by the header's size: a skipped member still costs decompression
                    if not _hidden(rel):
                        files[rel] = tf.extractfile(m).read() if wanted else m.size
                elif m.isdir():
                    dirs.add(rel)
                else:
                    raise CnnlabError(f"archive {str(path)!r}: member {m.name!r} is a device or pipe, not a regular "
                                      f"file; rebuild the archive from plain files")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise CnnlabError(f"archive {str(path)!r} is truncated or corrupt ({type(e).__name__}: {e}); copy or "
                          f"download it again") from None
    for rel in links:
        target = _resolve_link(path, rel, links, files)
        if target is not None and not _hidden(rel):
            files[rel] = files[target]
    for rel in files:  # folders implied by member paths (archives need not hold folder entries)
        parts = rel.split("/")
        dirs.update("/".join(parts[:k]) for k in range(1, len(parts)))
    return FileTree(path, files, dirs, "sha256:" + sha256_file(path))


def _resolve_link(archive: Path, rel: str, links: Dict[str, str], files: Dict[str, Union[bytes, int]]) -> Optional[str]:
    """The regular file a link ends at; None for a link to a folder inside the tree (not followed: no images)."""
    target = rel
    for _ in range(MAX_LINK_DEPTH):
        target = links[target]
        if target in files:
            return target
        if any(f.startswith(target + "/") for f in files):
            return None
        if target not in links:
            raise CnnlabError(f"archive {str(archive)!r}: link {rel!r} points to {target!r}, which is not a file in "
                              f"the archive; rebuild it without that link")
    raise CnnlabError(f"archive {str(archive)!r}: link {rel!r} is part of a link loop; rebuild it without that link")


def _folder_tree(root: Path) -> FileTree:
    real_root = os.path.realpath(root)
    files: Dict[str, Path] = {}
    dirs: Set[str] = set()
    h = hashlib.sha256()
    seen = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        rel_dir = os.path.relpath(dirpath, root)
        _inside(real_root, dirpath, root, rel_dir)
        if os.path.realpath(dirpath) in seen:  # a link back to a folder already read: a loop, or a duplicate
            dirnames[:] = []
            continue
        seen.add(os.path.realpath(dirpath))
        if rel_dir != ".":
            dirs.add(rel_dir.replace(os.sep, "/"))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            full = os.path.join(dirpath, name)
            rel = posixpath.normpath(posixpath.join(rel_dir.replace(os.sep, "/"), name))
            _utf8_name(f"image folder {str(root)!r}", rel)
            _inside(real_root, full, root, rel)
            st = os.stat(full)
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            files[rel] = Path(full)
    return FileTree(root, files, dirs, "tree:" + h.hexdigest())


def _inside(real_root: str, path: str, root: Path, rel: str) -> None:
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise CnnlabError(f"{str(root)!r}: {rel!r} is a link to {real!r}, outside the folder; cnnlab refuses links "
                          f"that leave the dataset folder; copy the file in instead")
