"""What several commands share: the --data-root option, and key=value arguments read one way (as YAML) everywhere.

The commands themselves only wire arguments to the library; anything two of them need lives here, once.
"""

from __future__ import annotations

import argparse
import difflib
from typing import Any, Dict, List, Optional

from cnnlab.errors import CnnlabError
from cnnlab.training.config import config_keys, parse_override

DATA_ROOT_HELP = ("where the datasets live: a folder holding them (or, for imagefolder, the folder/archive itself); "
                  "default: $CNNLAB_DATA, then ~/.cache/cnnlab/data")


def add_data_root(parser: argparse.ArgumentParser) -> None:
    """The shared --data-root option (precedence: --data-root > CNNLAB_DATA > the per-user data directory), and
    --download, on every command that loads a dataset."""
    parser.add_argument("--data-root", metavar="PATH", default=None, help=DATA_ROOT_HELP)
    parser.add_argument("--download", action="store_true", help="fetch the official dataset files (MD5-checked) "
                                                                "into the data root if they are not there")


def data_overrides(args: argparse.Namespace) -> List[str]:
    """--data-root and --download as the config overrides they stand for."""
    return ([f"data.root={args.data_root}"] if getattr(args, "data_root", None) else []) + \
        (["data.download=true"] if getattr(args, "download", False) else [])


def flag_hint(extra: List[str], argv: List[str]) -> str:
    """Another tool's habit, `--lr 0.1` or `--optim.lr=0.1`, spelled as cnnlab's key=value override of the closest
    config key ("; config keys are set as key=value: optim.lr=0.1"), or "" when no unknown --flag is a config key."""
    for flag in (e for e in extra if e.startswith("-") and len(e) > 1):
        name, eq, value = flag.lstrip("-").partition("=")
        if not eq:
            at = argv.index(flag) + 1 if flag in argv else len(argv)
            value = argv[at] if at < len(argv) and not argv[at].startswith("-") else "VALUE"
        key = closest_key(name)
        if key:
            return f"; cnnlab sets config keys as key=value: {key}={value}"
    return ""


# Flag names of other tools' training scripts (PyTorch examples, timm, Keras) that no config key spells alike.
FLAG_ALIASES = {"learning_rate": "optim.lr", "wd": "optim.weight_decay", "bs": "batch.size", "model": "model.name",
                "arch": "model.name", "dataset": "data.name", "data": "data.name", "opt": "optim.name",
                "optimizer": "optim.name", "sched": "schedule.name", "scheduler": "schedule.name",
                "batch_norm": "model.options.batch_norm", "bn": "model.options.batch_norm", "amp": "train.amp"}


def closest_key(name: str) -> Optional[str]:
    """The config key a flag name means: itself (optim.lr), with _ or - for dots (batch_size), another tool's name
    for it (FLAG_ALIASES), the one key whose last part it is (lr -> optim.lr), else the closest spelling; None when
    nothing is close."""
    keys = config_keys()
    name = name.replace("-", "_")
    if name in FLAG_ALIASES:
        return FLAG_ALIASES[name]
    for candidate in (name, name.replace("_", ".")):
        if candidate in keys:
            return candidate
    by_leaf = [k for k in keys if k.rsplit(".", 1)[-1] == name]
    if by_leaf:
        return by_leaf[0]
    close = difflib.get_close_matches(name, keys, n=1, cutoff=0.75)
    if close:
        return close[0]
    leaves = {k.rsplit(".", 1)[-1]: k for k in reversed(keys)}  # the first key of a leaf name wins
    close = difflib.get_close_matches(name, list(leaves), n=1, cutoff=0.75)
    return leaves[close[0]] if close else None


def key_values(items: List[str], what: str = "option") -> Dict[str, Any]:
    """['batch_norm=true', 'hidden=[500, 500]'] -> {'batch_norm': True, 'hidden': [500, 500]}: the values read as
    YAML, exactly as `cnnlab train` reads its config overrides."""
    out: Dict[str, Any] = {}
    for item in items:
        key, value = parse_override(item)
        if isinstance(value, str) and "," in value and not value.startswith(("'", '"')):
            raise CnnlabError(f"{what} {item!r}: write a list as YAML, e.g. {key}=[{value}]")
        out[key] = value
    return out
