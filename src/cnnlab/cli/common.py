"""What several commands share: the --data-root option, and key=value arguments read one way (as YAML) everywhere.

The commands themselves only wire arguments to the library; anything two of them need lives here, once.
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, List

from cnnlab.errors import CnnlabError
from cnnlab.training.config import parse_override

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
