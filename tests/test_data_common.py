"""Helpers shared by the data tests (no tests here): real JPEG members from ../shared/data, and writers of the
official on-disk formats (Python 2 CIFAR-10 batch pickles, IDX files, image folders and tars)."""

from __future__ import annotations

import functools
import gzip
import io
import struct
import tarfile
from pathlib import Path
from typing import Dict, Iterable

import numpy as np

ARCHIVE = "cifar10-jpeg.tar.gz"


@functools.lru_cache(maxsize=None)
def _members(shared: str, classes: tuple, per_class: int, holdout: int) -> tuple:
    want_train = {f"cifar10/train/{c}/{i:04d}.jpg" for c in classes for i in range(per_class)}
    want_hold = {f"cifar10/holdout/{i:05d}.jpg" for i in range(holdout)}
    got = {}
    with tarfile.open(Path(shared) / ARCHIVE, "r|gz") as tf:
        for m in tf:  # the archive is sorted (train/<class>/..., then holdout/...): stop as soon as all are read
            if m.name in want_train or m.name in want_hold:
                got[m.name] = tf.extractfile(m).read()
            if len(got) == len(want_train) + len(want_hold):
                break
    return tuple(sorted(got.items()))


def jpeg_members(shared: Path, classes=("airplane", "automobile", "bird"), per_class: int = 6,
                 holdout: int = 0) -> Dict[str, bytes]:
    """{"train/<class>/NNNN.jpg" | "holdout/NNNNN.jpg": real JPEG bytes} from the shared CIFAR-10 archive."""
    pairs = _members(str(shared), tuple(classes), per_class, holdout)
    return {name[len("cifar10/"):]: data for name, data in pairs}


def write_folder(root: Path, files: Dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def write_tar(path: Path, files: Dict[str, bytes], prefix: str = "", mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for rel, data in files.items():
            info = tarfile.TarInfo(prefix + rel)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


# -- the official CIFAR-10 python layout: Python 2 cPickle, protocol 2 ------------------------------------------------
def _py2_str(b: bytes) -> bytes:
    # Python 2 pickles its str (our bytes) as SHORT_BINSTRING / BINSTRING, as the official batch files do
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<i", len(b)) + b)


def _py2_int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    return b"J" + struct.pack("<i", v)


def _py2_array(a: np.ndarray) -> bytes:
    """numpy 1.x's ndarray.__reduce__ as Python 2 wrote it: _reconstruct(ndarray, (0,), 'b') then BUILD(state)."""
    assert a.dtype == np.uint8 and a.ndim == 2
    shape = _py2_int(a.shape[0]) + _py2_int(a.shape[1]) + b"\x86"  # TUPLE2
    dtype = (b"cnumpy\ndtype\n" + _py2_str(b"u1") + b"K\x00K\x01\x87R"  # dtype('u1', 0, 1)
             + b"(K\x03" + _py2_str(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + _py2_str(b"b") + b"\x87R"
            + b"(K\x01" + shape + dtype + b"\x89" + _py2_str(a.tobytes()) + b"tb")


def _py2_obj(v) -> bytes:
    if isinstance(v, bytes):
        return _py2_str(v)
    if isinstance(v, int):
        return _py2_int(v)
    if isinstance(v, list):
        return b"](" + b"".join(_py2_obj(x) for x in v) + b"e"  # EMPTY_LIST MARK ... APPENDS
    if isinstance(v, np.ndarray):
        return _py2_array(v)
    raise TypeError(type(v))


def py2_pickle(d: dict) -> bytes:
    """A dict pickled exactly as the official cifar-10-batches-py files are (Python 2, protocol 2, bytes keys)."""
    body = b"".join(_py2_str(k) + _py2_obj(v) for k, v in d.items())
    return b"\x80\x02}(" + body + b"u."  # PROTO 2, EMPTY_DICT, MARK, key/value..., SETITEMS, STOP


def cifar_batch(images: np.ndarray, labels: Iterable[int], label: bytes) -> bytes:
    """images uint8 [N, 32, 32, 3] -> an official batch: data [N, 3072] with the red, green, blue planes in turn."""
    data = images.transpose(0, 3, 1, 2).reshape(len(images), 3072).copy()
    labels = list(labels)
    return py2_pickle({b"batch_label": label, b"labels": labels, b"data": data,
                       b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]})


def cifar_meta() -> bytes:
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    return py2_pickle({b"num_cases_per_batch": 10000, b"label_names": names, b"num_vis": 3072})


# -- IDX (MNIST / Fashion-MNIST) ---------------------------------------------------------------------------------------
def idx_bytes(a: np.ndarray) -> bytes:
    magic = {3: 0x803, 1: 0x801}[a.ndim]
    return struct.pack(f">i{a.ndim}i", magic, *a.shape) + a.astype(np.uint8).tobytes()


def write_idx_gz(path: Path, a: np.ndarray) -> Path:
    path.write_bytes(gzip.compress(idx_bytes(a)))
    return path
