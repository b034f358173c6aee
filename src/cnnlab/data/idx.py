"""Fashion-MNIST from its four official IDX files (Xiao, Rasul & Vollgraf 2017, zalandoresearch/fashion-mnist).

IDX (LeCun's MNIST format): a big-endian int32 magic number (0x00000803 images, 0x00000801 labels), one big-endian
int32 per dimension, then uint8 data in row-major order. Files may be gzip-compressed (`.gz`, as published) or not.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Tuple

import numpy as np
import torch

from cnnlab.data.core import RawData, Split
from cnnlab.errors import CnnlabError

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FILES = {  # role -> (official file name, official MD5)
    "train_images": ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
}
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
MAGIC = {3: 0x803, 1: 0x801}  # dimensions -> magic number


def locate(folder: Path, name: str) -> Path:
    """The file `name` in `folder`, compressed as published or decompressed (name without .gz)."""
    gz = folder / name
    return gz if gz.is_file() else folder / name[: -len(".gz")]


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file as a uint8 array with `ndim` dimensions, or an error naming the file and what is wrong."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise CnnlabError(f"{path} is truncated or not a valid gzip file ({type(e).__name__}: {e}); copy or "
                          f"download it again") from None
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CnnlabError(f"{path} is too short for an IDX header ({len(data)} bytes); copy or download it again")
    magic = struct.unpack(">i", data[:4])[0]
    if magic != MAGIC[ndim]:
        raise CnnlabError(f"{path}: IDX magic number is {magic:#010x}, expected {MAGIC[ndim]:#010x} for a "
                          f"{ndim}-dimensional uint8 file; is it the right file?")
    dims = struct.unpack(f">{ndim}i", data[4:header])
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise CnnlabError(f"{path}: header says {'x'.join(map(str, dims))} = {expected:,} bytes of data but the file "
                          f"holds {len(data) - header:,}; it is truncated or corrupt; copy or download it again")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_pair(folder: Path, images: str, labels: str) -> Tuple[torch.Tensor, torch.Tensor]:
    img_path, lab_path = locate(folder, FILES[images][0]), locate(folder, FILES[labels][0])
    x = read_idx(img_path, 3)
    y = read_idx(lab_path, 1)
    if len(x) != len(y):
        raise CnnlabError(f"{img_path} holds {len(x):,} images but {lab_path} holds {len(y):,} labels; the two files "
                          f"do not belong together")
    if len(y) and int(y.max()) >= len(CLASSES):
        raise CnnlabError(f"{lab_path}: label {int(y.max())} is out of range 0..{len(CLASSES) - 1}")
    return torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def read_fashion_mnist(folder: Path) -> RawData:
    x, y = read_pair(folder, "train_images", "train_labels")
    tx, ty = read_pair(folder, "test_images", "test_labels")
    return RawData(list(CLASSES), Split(x, y, None), test=Split(tx, ty, None),
                   source=f"Fashion-MNIST IDX files in {folder}")
