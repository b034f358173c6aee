"""Downloads from the official URLs, only when asked (`download=True`), each file checked against its official MD5.

The file is streamed into a temporary file beside its destination and renamed into place only after its MD5 matched
(cnnlab.fileio.atomic_open), so a failed or tampered download never leaves a file that looks like the dataset, and an
existing file is never overwritten.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.data.archive import hash_file
from cnnlab.fileio import atomic_open

TIMEOUT_S = 30


def md5_file(path: Path) -> str:
    return hash_file(path, "md5")


def check_md5(path: Path, expected: str) -> None:
    """Raise CnnlabError naming the file and both checksums unless its MD5 is `expected`."""
    got = md5_file(path)
    if got != expected.lower():
        raise CnnlabError(f"{path} has MD5 {got} but the official file has {expected}; the copy is corrupt or not "
                          f"the official file; delete it and download or copy it again")


class _Mismatch(Exception):
    pass


def download(url: str, dest: Path, md5: str) -> Path:
    """Fetch `url` to `dest` (kept if it already exists), verifying the MD5 before the file appears."""
    if dest.exists():
        check_md5(dest, md5)
        return dest
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as r, atomic_open(dest, "wb") as f:
            h = hashlib.md5()
            while True:
                block = r.read(1 << 20)
                if not block:
                    break
                h.update(block)
                f.write(block)
            if h.hexdigest() != md5:
                raise _Mismatch(h.hexdigest())  # inside atomic_open: the temporary file is removed
    except _Mismatch as e:
        raise CnnlabError(f"download of {url} has MD5 {e} but the official file has {md5}; nothing was kept; try "
                          f"again later or copy the file to {dest}") from None
    except (urllib.error.URLError, OSError) as e:
        raise CnnlabError(f"could not download {url} ({getattr(e, 'reason', e)}); without network, copy the file to "
                          f"{dest} or point --data-root / CNNLAB_DATA at a folder holding it") from None
    return dest
