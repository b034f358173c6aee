"""The dataset registry and `load_dataset`: find a source under the data root, read it, carve the splits.

Each registry entry finds and reads one dataset's source files into a `RawData` (the splits as the source has them);
`load_dataset` then carves a deterministic stratified validation split from the labelled training images, applies
the optional quick-run subsets and computes the normalisation statistics from the training pixels.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import cnnlab.data.cifar as cifar
import cnnlab.data.idx as idx
from cnnlab.data.archive import open_tree
from cnnlab.data.core import Dataset, RawData, Split, carve, channel_stats, stratified_subset
from cnnlab.data.download import download as fetch
from cnnlab.data.imagefolder import load_image_folder
from cnnlab.data.paths import not_found, resolve_cache_dir, resolve_root
from cnnlab.errors import CnnlabError
from cnnlab.registry import Registry

DATASETS = Registry("dataset")

# Purposes of the seeded generators (core.seeded): one stream each, so e.g. a new train_subset never moves val.
VAL_SPLIT, TRAIN_SUBSET, VAL_SUBSET, TEST_SPLIT = 1, 2, 3, 4


def _entry(name: str, display: str, default_val: Callable[[RawData], int]):
    """Register a reader `fn(root, how, download, cache_dir) -> RawData` with its shown name and default val size."""
    def deco(fn):
        fn.display_name = display
        fn.default_val_size = default_val
        return DATASETS.register(name)(fn)
    return deco


def _cifar_python_or_none(tree) -> Optional[RawData]:
    return cifar.read_python_batches(tree) if cifar.batch_folder(tree) is not None else None


@_entry("cifar10", "cifar10", lambda raw: 5000)
def cifar10(root: Path, how: str, download: bool, cache_dir: Path) -> RawData:
    """The official python batches when present (lossless), else a CIFAR-10 image folder or archive."""
    if root.is_file():
        return load_image_folder(root, cache_dir, other=_cifar_python_or_none)
    if (root / cifar.TRAIN_FILES[0]).is_file():
        return cifar.read_python_batches(open_tree(root))
    if (root / "train").is_dir():
        return load_image_folder(root, cache_dir)
    candidates = [root / "cifar-10-batches-py", root / "cifar-10-python.tar.gz", root / "cifar10-jpeg.tar.gz",
                  root / "cifar10"]
    for path in candidates:
        if path.exists():
            return load_image_folder(path, cache_dir, other=_cifar_python_or_none)
    if download:
        path = fetch(cifar.URL, root / "cifar-10-python.tar.gz", cifar.MD5)
        return cifar.read_python_batches(open_tree(path))
    raise not_found("cifar10", root, how, [root / cifar.TRAIN_FILES[0], root / "train", *candidates],
                    "the CIFAR-10 python batches or an image folder/archive",
                    "--download (config data.download=true, or download=True in Python) to fetch the "
                    "official archive")


@_entry("fashion-mnist", "fashion-mnist", lambda raw: 5000)
def fashion_mnist(root: Path, how: str, download: bool, cache_dir: Path) -> RawData:
    """The four official IDX files, in the root itself, fashion-mnist/ or torchvision's FashionMNIST/raw/."""
    folders = [root, root / "fashion-mnist", root / "fashion_mnist", root / "FashionMNIST" / "raw"]
    first = idx.FILES["train_images"][0]
    for folder in folders:
        if idx.locate(folder, first).is_file():
            return idx.read_fashion_mnist(folder)
    if download:
        target = root / "fashion-mnist"
        for name, md5 in idx.FILES.values():
            fetch(idx.BASE_URL + name, target / name, md5)
        return idx.read_fashion_mnist(target)
    raise not_found("fashion-mnist", root, how, [f / first for f in folders], "the four IDX files",
                    "--download (config data.download=true, or download=True in Python) to fetch the "
                    "official files")


@_entry("imagefolder", "imagefolder", lambda raw: max(1, len(raw.train) // 10))
def imagefolder(root: Path, how: str, download: bool, cache_dir: Path) -> RawData:
    """Any train/<class>/ (+ test/<class>/, holdout/) folder or archive; the root is the folder/archive itself."""
    if not root.exists():
        raise CnnlabError(f"image folder {str(root)!r} (chosen by {how}) does not exist; for dataset 'imagefolder' "
                          f"point --data-root (config data.root) at the folder or .tar/.tar.gz archive itself")
    return load_image_folder(root, cache_dir)


def list_datasets() -> List[str]:
    return [DATASETS.get(n).display_name for n in DATASETS.names()]


def load_dataset(name: str, *, root=None, val_size: Optional[int] = None, seed: int = 0,
                 train_subset: Optional[int] = None, val_subset: Optional[int] = None, download: bool = False,
                 cache_dir=None, test_size: Optional[int] = None) -> Dataset:
    """Read dataset `name` and carve its splits (see the module docstring and docs/guide/data.md).

    val_size None -> the dataset's default (5,000 for cifar10 and fashion-mnist, 10% for imagefolder); 0 -> no val.
    test_size carves a labelled, stratified test split out of the training images first (for a source whose test
    images are unlabelled, as this CIFAR-10 copy's holdout is); the dataset's `source` says so.
    train_subset / val_subset keep that many images (stratified, deterministic by seed), for quick runs; they are
    applied after val is carved, so val never depends on them.
    """
    reader = DATASETS.get(name)
    path, how = resolve_root(root)
    raw = reader(path, how, bool(download), resolve_cache_dir(cache_dir))
    source = raw.source
    if test_size:
        if raw.test is not None:
            raise CnnlabError(f"data.test_size is set but {reader.display_name} has its own labelled test split "
                              f"({len(raw.test):,} images); leave data.test_size unset to use it")
        test, rest = carve(raw.train, test_size, seed, TEST_SPLIT, "test_size")
        raw = dataclasses.replace(raw, train=rest, test=test)
        source = f"{source}; test: {test_size:,} labelled images carved from train (data.test_size, stratified)"
    if val_size is None:
        val_size = reader.default_val_size(raw)
    val, train = _carve_val(raw, val_size, seed)
    mean, std = channel_stats(train.x)
    if train_subset is not None:
        train = stratified_subset(train, train_subset, seed, TRAIN_SUBSET, "train_subset")
    if val_subset is not None:
        if val is None:
            raise CnnlabError("val_subset is set but val_size is 0, so there is no validation split to subset")
        val = stratified_subset(val, val_subset, seed, VAL_SUBSET, "val_subset")
    return Dataset(reader.display_name, list(raw.classes), train, val, raw.test, raw.holdout, mean, std, source)


def _carve_val(raw: RawData, val_size: int, seed: int) -> Tuple[Optional[Split], Split]:
    if isinstance(val_size, bool) or not isinstance(val_size, int):
        raise CnnlabError(f"val_size must be a whole number of images, got {val_size!r}")
    if val_size == 0:
        return None, raw.train
    return carve(raw.train, val_size, seed, VAL_SPLIT, "val_size")
