"""Image-folder datasets (a folder or a .tar/.tar.gz archive of JPEG/PNG files) decoded once into a uint8 cache.

Layout, as torchvision's `ImageFolder` and `../shared/data/cifar10-jpeg.tar.gz`: `train/<class>/<image>` is labelled
(class ids = sorted class names), `test/<class>/<image>` is an optional labelled test split, and a flat
`holdout/<image>` folder is an optional unlabelled split whose ids are the file stems. The folder holding `train/`
may sit under a prefix (the shared archive has `cifar10/train/...`). Every image must have the size and mode (RGB or
L) of the first one.

Decoding 60,000 JPEGs with PIL takes several seconds, so the decoded arrays are cached as one uncompressed `.npz`
(written atomically) named by the source's fingerprint (archive.py): a changed source gets a new cache entry and is
never served stale; loading the cache takes about 0.1 s.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from cnnlab.data.archive import IMAGE_SUFFIXES, FileTree, open_tree, tree_fingerprint
from cnnlab.data.core import RawData, Split
from cnnlab.errors import CnnlabError
from cnnlab.system import available_memory
from cnnlab.fileio import atomic_open

MAX_PIXELS = 4096 * 4096  # an image's pixels, checked before decoding: a small PNG can inflate to gigabytes
MODES = {"RGB": 3, "L": 1}
CACHE_FORMAT = 1  # bump when the cache layout or the decoding changes, so old entries are not reused


def load_image_folder(path: Path, cache_dir: Optional[Path],
                      other: Optional[Callable[[FileTree], Optional[RawData]]] = None) -> RawData:
    """The image folder/archive at `path`, from the decode cache when it holds this exact source.

    `other(tree)` may claim a tree that is not an image folder (the CIFAR-10 python archive) before it is decoded;
    what it returns is not cached (such sources are fast to read).
    """
    fingerprint = tree_fingerprint(path)
    cache = _cache_path(cache_dir, fingerprint) if cache_dir is not None else None
    raw = _read_cache(cache) if cache is not None and cache.is_file() else None
    if raw is None:
        tree = open_tree(path)
        claimed = other(tree) if other is not None else None
        if claimed is not None:
            return claimed
        raw = decode_tree(tree)
        if cache is not None:
            _write_cache(cache, raw)
    raw.source = f"image folder {path} ({fingerprint[:19]})"
    return raw


# -- layout ---------------------------------------------------------------------------------------------------------
def _find_prefix(tree: FileTree) -> str:
    """The folder holding train/: the shortest prefix p such that p/train/<class>/<image> exists."""
    best = None
    for rel in tree.paths():
        parts = rel.split("/")
        if len(parts) >= 3 and parts[-3] == "train" and rel.lower().endswith(IMAGE_SUFFIXES):
            prefix = "/".join(parts[:-3])
            if best is None or len(prefix) < len(best):
                best = prefix
    if best is None:
        raise CnnlabError(f"{str(tree.origin)!r} holds no train/<class>/<image> files (.jpg/.jpeg/.png); an image "
                          f"folder needs train/<class>/*.jpg, and optionally holdout/*.jpg and test/<class>/*.jpg")
    return best


def layout(tree: FileTree) -> Tuple[Dict[str, List[str]], Dict[str, List[str]], List[str], int]:
    """(train files by class, test files by class, holdout files, files skipped) with paths relative to the tree."""
    prefix = _find_prefix(tree)
    base = prefix + "/" if prefix else ""
    train: Dict[str, List[str]] = {d.split("/")[-1]: [] for d in tree.dirs if posixpath.dirname(d) == base + "train"}
    test: Dict[str, List[str]] = {}
    holdout: List[str] = []
    skipped = 0
    for rel in tree.paths():
        if not rel.startswith(base):
            continue
        parts = rel[len(base):].split("/")
        if not rel.lower().endswith(IMAGE_SUFFIXES) or parts[0] not in ("train", "test", "holdout"):
            skipped += 1
        elif parts[0] == "holdout" and len(parts) == 2:
            holdout.append(rel)
        elif parts[0] in ("train", "test") and len(parts) == 3:
            (train if parts[0] == "train" else test).setdefault(parts[1], []).append(rel)
        else:
            want = "holdout/<image>" if parts[0] == "holdout" else f"{parts[0]}/<class>/<image>"
            raise CnnlabError(f"{tree.where(rel)}: images must sit at {want}; move it there or out of the dataset")
    for cls, files in train.items():
        if not files:
            raise CnnlabError(f"{tree.origin}: class folder {base}train/{cls}/ holds no .jpg/.jpeg/.png images; add "
                              f"images or remove the folder")
    unknown = sorted(set(test) - set(train))
    if unknown:
        raise CnnlabError(f"{tree.origin}: test/ has class folder(s) {', '.join(unknown)} that train/ lacks; the "
                          f"classes of test/ must be classes of train/")
    return train, test, holdout, skipped


# -- decoding -------------------------------------------------------------------------------------------------------
class _Decoder:
    """Decodes images one by one into HWC uint8 arrays, checking each against the first one's size and mode."""

    def __init__(self, tree: FileTree):
        self.tree = tree
        self.mode: Optional[str] = None
        self.size: Optional[Tuple[int, int]] = None

    def __call__(self, rel: str) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(self.tree.read(rel))) as im:
                if im.size[0] * im.size[1] > MAX_PIXELS:
                    raise CnnlabError(f"{self.tree.where(rel)} is {im.size[0]}x{im.size[1]} pixels, over cnnlab's "
                                      f"limit of {MAX_PIXELS:,} (a possible decompression bomb); resize the dataset")
                im.load()
                mode, size = im.mode, im.size
                if self.mode is None:
                    self._first(rel, mode, size)
                if mode != self.mode or size != self.size:
                    raise CnnlabError(f"{self.tree.where(rel)} is {size[0]}x{size[1]} {mode} but the dataset's first "
                                      f"image is {self.size[0]}x{self.size[1]} {self.mode}; convert it to match")
                arr = np.asarray(im)
        except CnnlabError:
            raise
        except Exception as e:  # PIL raises many types for a corrupt or truncated image
            raise CnnlabError(f"cannot decode image {self.tree.where(rel)} ({type(e).__name__}: {e}); replace or "
                              f"remove the file") from None
        return arr[:, :, None] if arr.ndim == 2 else arr

    def _first(self, rel: str, mode: str, size: Tuple[int, int]) -> None:
        if mode not in MODES:
            raise CnnlabError(f"{self.tree.where(rel)} has image mode {mode}; cnnlab reads RGB or greyscale (L) "
                              f"images; convert the dataset to one of them")
        if size[0] != size[1]:
            raise CnnlabError(f"{self.tree.where(rel)} is {size[0]}x{size[1]}; cnnlab needs square images; resize "
                              f"the dataset")
        self.mode, self.size = mode, size

    def stack(self, files: List[str]) -> torch.Tensor:
        arrays = [self(files[0])] if files else []
        if arrays:  # every image has the first one's size: the decoded split's size is known before decoding it
            need, have = 2 * len(files) * arrays[0].nbytes, available_memory()  # the arrays, then their stack
            if have is not None and need > have:
                raise CnnlabError(f"{self.tree.origin}: {len(files):,} images of {self.size[0]}x{self.size[1]} "
                                  f"decode to about {need / 2**30:,.1f} GiB, more than the {have / 2**30:,.1f} GiB "
                                  "of memory available; use smaller images or fewer of them")
        arrays += [self(rel) for rel in files[1:]]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _stem(rel: str) -> str:
    return posixpath.splitext(posixpath.basename(rel))[0]


def _labelled(decoder: _Decoder, by_class: Dict[str, List[str]], classes: List[str]) -> Split:
    files = [(classes.index(c), rel) for c in sorted(by_class) for rel in sorted(by_class[c])]
    x = decoder.stack([rel for _, rel in files])
    y = torch.tensor([k for k, _ in files], dtype=torch.long)
    return Split(x, y, [f"{classes[k]}/{_stem(rel)}" for k, rel in files])


def decode_tree(tree: FileTree) -> RawData:
    train, test, holdout, skipped = layout(tree)
    classes = sorted(train)
    decoder = _Decoder(tree)
    raw = RawData(classes, _labelled(decoder, train, classes))
    if test:
        raw.test = _labelled(decoder, test, classes)
    if holdout:
        files = sorted(holdout)
        ids = [_stem(rel) for rel in files]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise CnnlabError(f"{tree.origin}: two holdout images share the id {dup!r} (file stems must be unique); "
                              f"rename one")
        raw.holdout = Split(decoder.stack(files), None, ids)
    if skipped:
        warnings.warn(f"{tree.origin}: skipped {skipped} file(s) that are not train/test/holdout images")
    return raw


# -- cache ----------------------------------------------------------------------------------------------------------
def _cache_path(cache_dir: Path, fingerprint: str) -> Path:
    key = hashlib.sha256(f"imagefolder-v{CACHE_FORMAT}:{fingerprint}".encode()).hexdigest()[:32]
    return Path(cache_dir) / "decoded" / f"imagefolder-{key}.npz"


def _write_cache(path: Path, raw: RawData) -> None:
    arrays = {"classes": np.array(raw.classes)}
    for name in ("train", "test", "holdout"):
        split = getattr(raw, name)
        if split is not None:
            arrays[f"{name}_x"] = split.x.numpy()
            if split.y is not None:
                arrays[f"{name}_y"] = split.y.numpy()
            arrays[f"{name}_ids"] = np.array(split.ids)
    try:
        with atomic_open(path, "wb") as f:
            np.savez(f, **arrays)
    except OSError as e:  # a read-only cache only costs speed; the data were decoded fine
        warnings.warn(f"could not write the decode cache {path} ({e}); set CNNLAB_CACHE to a writable folder")


def _read_cache(path: Path) -> Optional[RawData]:
    """The cached arrays, or None when the file is unreadable (it is then decoded again and rewritten)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            raw = RawData([str(c) for c in z["classes"]], _split_from(z, "train"))
            raw.test = _split_from(z, "test") if "test_x" in names else None
            raw.holdout = _split_from(z, "holdout") if "holdout_x" in names else None
            return raw
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        warnings.warn(f"ignoring unreadable decode cache {path} ({type(e).__name__}); decoding the source again")
        return None


def _split_from(z, name: str) -> Split:
    y = torch.from_numpy(z[f"{name}_y"]) if f"{name}_y" in z.files else None
    return Split(torch.from_numpy(z[f"{name}_x"]), y, z[f"{name}_ids"].tolist())
