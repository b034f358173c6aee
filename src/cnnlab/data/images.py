"""The user's own image files as an unlabelled split, sized to a model's input.

Any size and most modes are accepted: each image is converted to RGB (or greyscale, for a one-channel model),
its shorter side resized to the model's input size (bicubic) and the centre square cropped, as torchvision's
`Resize(size)` + `CenterCrop(size)` evaluation transform does; `read_image_files` says how many images needed it.
Folders are searched recursively for .jpg/.jpeg/.png; ids are the paths as given (folder entries relative to their
folder), so predictions name the files they describe.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from cnnlab.data.archive import IMAGE_SUFFIXES
from cnnlab.data.core import Split
from cnnlab.data.imagefolder import MAX_PIXELS
from cnnlab.errors import CnnlabError
from cnnlab.fileio import path_problem


def image_files(paths: Sequence[str]) -> List[Tuple[Path, str]]:
    """(file, id) for every image file named, or found under a folder named, in sorted order."""
    found: List[Tuple[Path, str]] = []
    for text in paths:
        p = Path(text)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            found += [(f, str(f.relative_to(p))) for f in files]
        elif p.is_file():
            found.append((p, str(p)))
        else:
            raise CnnlabError(f"image {text!r} {path_problem(p, 'file') or 'cannot be read'}; give image files or "
                              "folders of .jpg/.jpeg/.png")
    if not found:
        raise CnnlabError(f"no .jpg/.jpeg/.png images in {', '.join(map(repr, paths))}")
    return found


def _fit(path: Path, channels: int, size: int) -> Tuple[np.ndarray, bool]:
    try:
        with Image.open(path) as im:
            if im.size[0] * im.size[1] > MAX_PIXELS:
                raise CnnlabError(f"{path} is {im.size[0]}x{im.size[1]} pixels, over cnnlab's limit of "
                                  f"{MAX_PIXELS:,}; resize it first")
            im = im.convert("L" if channels == 1 else "RGB")
            changed = im.size != (size, size)
            if changed:
                w, h = im.size
                scale = size / min(w, h)
                im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
                left, top = (im.size[0] - size) // 2, (im.size[1] - size) // 2
                im = im.crop((left, top, left + size, top + size))
            arr = np.asarray(im)
    except CnnlabError:
        raise
    except Exception as e:  # PIL raises many types for a file that is not an image
        raise CnnlabError(f"cannot read image {str(path)!r} ({type(e).__name__}: {e}); give JPEG or PNG files") \
            from None
    return (arr[:, :, None] if arr.ndim == 2 else arr), changed


def read_image_files(paths: Sequence[str], channels: int, size: int) -> Tuple[Split, str]:
    """The images as a Split of uint8 [N, C, size, size] with their ids, and a sentence on what was done to them."""
    files = image_files(paths)
    arrays, changed = [], 0
    for f, _ in files:
        a, c = _fit(f, channels, size)
        arrays.append(a)
        changed += c
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    note = (f"{len(files):,} image(s); {changed:,} not {size}x{size} were resized (shorter side to {size}) and "
            f"centre-cropped" if changed else f"{len(files):,} image(s) of {size}x{size}")
    return Split(x, None, [i.replace(os.sep, "/") for _, i in files]), note
