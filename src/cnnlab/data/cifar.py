"""The official CIFAR-10 python batches (`cifar-10-python.tar.gz` or its extracted `cifar-10-batches-py/`).

Each batch file is a pickle (A. Krizhevsky, https://www.cs.toronto.edu/~kriz/cifar.html): a dict with `data`, a
uint8 array [10000, 3072] (1024 red, then green, then blue values per image, rows top to bottom), and `labels`, a
list of ints; `batches.meta` holds `label_names`. Unpickling runs code named by the file, so the files are read with a
restricted unpickler (the pattern of Python's docs, "Restricting Globals") that resolves only the three numpy globals
these files name and refuses anything else with an error naming the file.
"""

from __future__ import annotations

import importlib
import io
import pickle
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from cnnlab.data.archive import FileTree
from cnnlab.data.core import RawData, Split
from cnnlab.errors import CnnlabError

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"


def _numpy_reconstruct():
    # numpy 2 moved numpy.core to numpy._core; the official (numpy 1, Python 2) files name the old path
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return importlib.import_module(module)._reconstruct
        except (ImportError, AttributeError):
            continue
    raise ImportError("numpy's multiarray._reconstruct not found")


ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only numpy's array-reconstruction globals; every other global is refused before anything runs."""

    def __init__(self, data: bytes, where: str):
        # encoding="bytes": the official files are Python 2 pickles whose strings are bytes
        super().__init__(io.BytesIO(data), encoding="bytes")
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return ALLOWED_GLOBALS[(module, name)]()
        raise CnnlabError(f"{self.where}: the pickle asks for {module}.{name}, which a CIFAR-10 batch never holds "
                          f"(only dicts, lists, bytes and numpy arrays); refusing to load it. Replace the file with "
                          f"the official one from {URL}")


def unpickle(data: bytes, where: str) -> Any:
    try:
        return RestrictedUnpickler(data, where).load()
    except CnnlabError:
        raise
    except Exception as e:  # a truncated or foreign pickle can raise almost anything
        raise CnnlabError(f"{where} is not a readable CIFAR-10 batch ({type(e).__name__}: {e}); replace it with the "
                          f"official file from {URL}") from None


def _text_keys(d: Any, where: str) -> Dict[str, Any]:
    if not isinstance(d, dict):
        raise CnnlabError(f"{where} holds a {type(d).__name__}, not the dict of a CIFAR-10 batch; replace it with the "
                          f"official file from {URL}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in d.items()}


def parse_batch(data: bytes, where: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [N, 3, 32, 32], labels int64 [N]) of one batch file, checked against the official layout."""
    d = _text_keys(unpickle(data, where), where)
    x, labels = d.get("data"), d.get("labels")
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise CnnlabError(f"{where}: 'data' must be a uint8 array [N, 3072], got {got}; replace the file with the "
                          f"official one from {URL}")
    if not isinstance(labels, list) or len(labels) != len(x) or not all(
            isinstance(v, int) and 0 <= v < len(CLASSES) for v in labels):
        raise CnnlabError(f"{where}: 'labels' must be a list of {len(x)} ints in 0..9; replace the file with the "
                          f"official one from {URL}")
    return torch.from_numpy(x.reshape(-1, 3, 32, 32).copy()), torch.tensor(labels, dtype=torch.long)


def _class_names(tree: FileTree, rel: Optional[str]) -> List[str]:
    if rel is None:
        return list(CLASSES)
    d = _text_keys(unpickle(tree.read(rel), tree.where(rel)), tree.where(rel))
    names = d.get("label_names")
    if not isinstance(names, list) or len(names) != len(CLASSES):
        raise CnnlabError(f"{tree.where(rel)}: 'label_names' must list {len(CLASSES)} names; replace the file with "
                          f"the official one from {URL}")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def batch_folder(tree: FileTree) -> Optional[str]:
    """The folder (relative to the tree, '' for its root) holding data_batch_1, or None."""
    for rel in tree.paths():
        if rel.split("/")[-1] == TRAIN_FILES[0]:
            return rel.rsplit("/", 1)[0] if "/" in rel else ""
    return None


def read_python_batches(tree: FileTree) -> RawData:
    folder = batch_folder(tree)
    base = f"{folder}/" if folder else ""
    names = set(tree.paths())
    missing = [f for f in (*TRAIN_FILES, TEST_FILE) if base + f not in names]
    if folder is None or missing:
        raise CnnlabError(f"{tree.origin}: CIFAR-10 python batch file(s) {', '.join(missing or TRAIN_FILES)} "
                          f"missing; copy the complete cifar-10-batches-py/ folder or the official archive")
    parts = [parse_batch(tree.read(base + f), tree.where(base + f)) for f in TRAIN_FILES]
    test = parse_batch(tree.read(base + TEST_FILE), tree.where(base + TEST_FILE))
    classes = _class_names(tree, base + META_FILE if base + META_FILE in names else None)
    train = Split(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), None)
    return RawData(classes, train, test=Split(test[0], test[1], None), source=f"CIFAR-10 python batches {tree.origin}")
