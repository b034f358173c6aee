"""Hostile archives and folders: decompression bombs (a sparse 20 GB member, 3 GB of zeros), oversized images,
duplicate members. Each is one error line naming the member, within bounded memory (the child's peak RSS, measured
with wait4) and in seconds."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.data import load_dataset
from cnnlab.errors import CnnlabError

GiB = 1 << 30


def _png(value: int = 0, size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _tar(path, members: dict):
    """An uncompressed tar of name -> bytes, in order."""
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            _add(tf, name, data)
    return path


class _Zeros(io.RawIOBase):
    def __init__(self, n: int):
        self.n = n

    def readable(self):
        return True

    def readinto(self, b):
        k = min(len(b), self.n)
        b[:k] = bytes(k)
        self.n -= k
        return k


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bombs")
    # 3 GB of zeros under train/a/, gzip'd to ~14 MB (built streaming: nothing of it is ever held in memory)
    zeros = root / "zeros.tar.gz"
    with gzip.open(zeros, "wb", compresslevel=1) as g, tarfile.open(fileobj=g, mode="w|") as tf:
        _add(tf, "train/a/0.png", _png())
        info = tarfile.TarInfo("train/a/zeros.bin")
        info.size = 3 * GiB
        tf.addfile(info, io.BufferedReader(_Zeros(info.size), 1 << 20))
    out = {"zeros.bin": zeros}
    # a sparse 20 GB member: GNU tar stores only its (empty) data regions, a few hundred bytes in all
    if shutil.which("tar"):
        src = root / "sparse-src"
        (src / "train" / "a").mkdir(parents=True)
        (src / "train" / "a" / "0.png").write_bytes(_png())
        with open(src / "train" / "a" / "big.png", "wb") as f:
            f.truncate(20 * 10**9)
        subprocess.run(["tar", "--sparse", "-czf", str(root / "sparse.tar.gz"), "-C", str(src), "train"], check=True)
        (src / "train" / "a" / "big.png").unlink()
        out["big.png"] = root / "sparse.tar.gz"
    return out


# A small Python process starts cnnlab and reports its child's peak RSS: measured from the test process itself,
# ru_maxrss would include the pytest worker's memory, which a forked child counts until it execs.
_MEASURE = """
import os, subprocess, sys
p = subprocess.Popen([sys.executable, "-m", "cnnlab", *sys.argv[1:]], stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE)
err = p.stderr.read()
_, status, usage = os.wait4(p.pid, 0)
sys.stderr.buffer.write(err)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024)
"""


def _run_measured(argv, env=None):
    """(exit status, stderr, peak RSS in bytes, seconds) of a cnnlab process."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _MEASURE, *argv], capture_output=True, text=True,
                       env={**os.environ, **(env or {})})
    code, rss = (int(v) for v in r.stdout.split())
    return code, r.stderr, rss, time.perf_counter() - t0


@pytest.mark.parametrize("member", ["zeros.bin", "big.png"])
def test_decompression_bombs_are_refused_in_bounded_memory_and_time(member, bombs, tmp_path, bad_input):
    if member not in bombs:
        pytest.skip("GNU tar is needed to build a sparse archive")
    bad_input()
    code, err, rss, seconds = _run_measured(["data", "info", "imagefolder", "--data-root", str(bombs[member]),
                                             "--out", str(tmp_path / "info")],
                                            env={"CNNLAB_CACHE": str(tmp_path / "cache")})
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("cnnlab: error:"), err
    assert member in lines[0] and "decompression bomb" in lines[0]
    assert rss < GiB, f"peak RSS {rss / 2**20:.0f} MiB"
    assert seconds < 60, f"{seconds:.0f} s: the member was decompressed rather than refused at its header"


def test_an_image_over_the_size_limit_is_refused_in_an_archive_and_a_folder(tmp_path, monkeypatch, bad_input):
    monkeypatch.setenv("CNNLAB_MAX_FILE_MB", "0.01")  # 10 KiB: a 64x64 PNG of noise is larger
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    noise = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(noise, "PNG")
    archive = _tar(tmp_path / "big.tar", {"train/a/0.png": noise.getvalue()})
    folder = tmp_path / "folder" / "train" / "a"
    folder.mkdir(parents=True)
    (folder / "0.png").write_bytes(noise.getvalue())
    for root in (archive, tmp_path / "folder"):
        bad_input()
        with pytest.raises(CnnlabError, match=r"0\.png.*CNNLAB_MAX_FILE_MB"):
            load_dataset("imagefolder", root=root)


def test_the_archive_total_bound_counts_skipped_members(tmp_path, monkeypatch, bad_input):
    monkeypatch.setenv("CNNLAB_MAX_ARCHIVE_MB", "1")
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    # notes.txt is never read, but 2 MiB to decompress
    archive = _tar(tmp_path / "a.tar", {"train/a/0.png": _png(), "train/a/notes.txt": bytes(2 << 20)})
    bad_input()
    with pytest.raises(CnnlabError, match="notes.txt.*decompression bomb"):
        load_dataset("imagefolder", root=archive)


def test_an_image_with_too_many_pixels_is_refused_before_decoding(tmp_path, monkeypatch, bad_input):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    buf = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buf, "PNG")  # 25 M pixels in ~25 KB
    archive = _tar(tmp_path / "a.tar", {"train/a/0.png": buf.getvalue()})
    bad_input()
    with pytest.raises(CnnlabError, match="5000x5000 pixels"):
        load_dataset("imagefolder", root=archive)


def test_duplicate_members_are_refused_by_name(tmp_path, capsys, bad_input):
    from cnnlab.cli.main import main

    archive = tmp_path / "dup.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        _add(tf, "train/a/0.png", _png(0))
        _add(tf, "train/b/1.png", _png(50))
        _add(tf, "train/a/0.png", _png(255))  # a second, different copy: with tar, the last would silently win
    bad_input()
    code = main(["data", "info", "imagefolder", "--data-root", str(archive), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "train/a/0.png" in err and "twice" in err and len(err.strip().splitlines()) == 1


def test_non_image_members_are_listed_but_never_read(tmp_path, monkeypatch):
    """A dataset with a README and a big non-image file beside the images loads, and the skipped file is counted."""
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    archive = _tar(tmp_path / "ok.tar", {**{f"train/{'ab'[k % 2]}/{k}.png": _png(k) for k in range(4)},
                                         "README.txt": b"about this dataset"})
    from cnnlab.data.archive import open_tree

    tree = open_tree(archive)
    assert "README.txt" in tree.paths()
    with pytest.raises(CnnlabError, match="was not read"):
        tree.read("README.txt")
    with pytest.warns(UserWarning, match="skipped 1 file"):
        ds = load_dataset("imagefolder", root=archive, val_size=0)
    assert len(ds.train) == 4


def test_limits_from_the_environment_must_be_numbers(tmp_path, monkeypatch, bad_input):
    monkeypatch.setenv("CNNLAB_MAX_FILE_MB", "lots")
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    archive = _tar(tmp_path / "a.tar", {"train/a/0.png": _png()})
    bad_input()
    with pytest.raises(CnnlabError, match="CNNLAB_MAX_FILE_MB"):
        load_dataset("imagefolder", root=archive)
