"""`cnnlab data info NAME`: a dataset's splits, per-class counts, shape, mean/std, and PNG grids of examples.

Argument parsing and wiring only; the numbers and figures come from cnnlab.data.preview.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List

from cnnlab.cli.common import add_data_root
from cnnlab.errors import CnnlabError

def register(sub) -> None:
    data = sub.add_parser("data", help="datasets: `cnnlab data info NAME`")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION", parser_class=type(data))
    data.set_defaults(func=lambda a: data.print_help() or 2)

    p = dsub.add_parser("info", help="splits, per-class counts, image shape, mean/std, and example grids (PNG)",
                        description="Summarise dataset NAME (a registered dataset; an unknown NAME lists them) and "
                                    "write OUT/NAME_examples.png (and OUT/NAME_augmented.png with --augment).")
    p.add_argument("name", metavar="NAME")
    add_data_root(p)
    p.add_argument("--val-size", type=int, default=None, help="validation images carved from train (default: the "
                                                              "dataset's, 5000 for cifar10 / fashion-mnist)")
    p.add_argument("--seed", type=int, default=0, help="seed of the validation split and of the augmentation")
    p.add_argument("--out", default="runs/data", help="folder for the PNGs (default runs/data)")
    p.add_argument("--augment", nargs="+", default=None, metavar="SPEC",
                   help="augmentations to show, e.g. crop,flip,cutout or cutout:size=16 crop:padding=4:mode=reflect")
    p.add_argument("--classes", default=None, help="comma-separated class names or ids to show (default: all)")
    p.add_argument("--per-class", type=int, default=8, help="example images per class (default 8)")
    p.set_defaults(func=_info)


def parse_augment(items: List[str]) -> List[Dict[str, Any]]:
    """["crop,flip", "cutout:size=16"] -> [{"name": "crop"}, {"name": "flip"}, {"name": "cutout", "size": 16}]."""
    specs = []
    for item in items:
        for part in filter(None, (s.strip() for s in item.split(","))):
            name, *opts = part.split(":")
            spec: Dict[str, Any] = {"name": name}
            for opt in opts:
                if "=" not in opt:
                    raise CnnlabError(f"--augment {part!r}: option {opt!r} must be key=value, e.g. cutout:size=16")
                key, value = opt.split("=", 1)
                spec[key] = _value(value)
            specs.append(spec)
    return specs


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _classes(arg, ds) -> List[int]:
    if not arg:
        return list(range(ds.num_classes))
    out = []
    for item in (s.strip() for s in arg.split(",")):
        if item.isdigit() and int(item) < ds.num_classes:
            out.append(int(item))
        elif item in ds.classes:
            out.append(ds.classes.index(item))
        else:
            raise CnnlabError(f"--classes: {item!r} is not a class of {ds.name}; classes: {', '.join(ds.classes)} "
                              f"(or ids 0..{ds.num_classes - 1})")
    return out


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


def print_summary(ds, summary) -> None:
    c, h, w = ds.shape
    print(f"dataset {ds.name}: {ds.num_classes} classes, images {c}x{h}x{w} (C x H x W), uint8")
    print(f"source: {ds.source}")
    print(f"normalisation (train split): mean {_fmt(ds.mean)} std {_fmt(ds.std)}")
    for name, s in summary.items():
        labelled = "labelled" if s["per_class"] is not None else "unlabelled"
        print(f"{name:8s} {s['images']:7,d} images ({labelled}); mean {_fmt(s['mean'])} std {_fmt(s['std'])}")
        if s["per_class"] is not None:
            print("         per class: " + ", ".join(f"{k} {v:,}" for k, v in s["per_class"].items()))


def _info(args: argparse.Namespace) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.data import load_dataset
    from cnnlab.data.augment import build_augmentation
    from cnnlab.data.preview import MAX_PER_CLASS, example_grids, summarize
    from cnnlab.plotting import save_figure

    pipeline = build_augmentation(parse_augment(args.augment)) if args.augment else None
    if not 1 <= args.per_class <= MAX_PER_CLASS:
        raise CnnlabError(f"--per-class must be between 1 and {MAX_PER_CLASS} (images in one row of the grid), "
                          f"got {args.per_class}")
    ds = load_dataset(args.name, root=args.data_root, val_size=args.val_size, seed=args.seed,
                      download=args.download)
    print_summary(ds, summarize(ds))
    out = Path(args.out)
    stem = ds.name.replace("/", "_")
    original, augmented = example_grids(ds, _classes(args.classes, ds), args.per_class, pipeline, args.seed)
    save_figure(original, out / f"{stem}_examples.png")
    print(f"wrote {out / f'{stem}_examples.png'}")
    if augmented is not None:
        save_figure(augmented, out / f"{stem}_augmented.png")
        print(f"wrote {out / f'{stem}_augmented.png'} ({pipeline.describe()})")
    return 0
