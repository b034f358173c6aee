"""Entry point of the `cnnlab` command: one sub-command per job, each defined in its own module.

Each module in COMMAND_MODULES has `register(subparsers)`, which adds its sub-commands with `set_defaults(func=...)`;
`func(args)` returns the exit status. User errors (CnnlabError) become one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from cnnlab import __version__, logs
from cnnlab.cli.common import flag_hint
from cnnlab.errors import CnnlabError

COMMAND_MODULES = (
    "cnnlab.cli.data_cmd",
    "cnnlab.cli.models_cmd",
    "cnnlab.cli.train_cmd",
    "cnnlab.cli.experiments_cmd",
    "cnnlab.cli.analysis_cmd",
)


class _Parser(argparse.ArgumentParser):
    """argparse exits with status 2 and a usage line on bad arguments; keep that, but make the message one line."""

    def error(self, message: str):  # noqa: D401
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnlab", description="Construct, train, tune and analyse CNN image classifiers.")
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _error(message: str) -> None:
    """One line on stderr, whatever it holds: bytes of a non-UTF-8 path (surrogates) are shown escaped, and a
    newline inside a message (e.g. from a file name) cannot make it two lines."""
    text = " ".join(message.splitlines()).encode("utf-8", "backslashreplace").decode("utf-8")
    print(f"cnnlab: error: {text}", file=sys.stderr)


def main(argv: Optional[List[str]] = None) -> int:
    logs.configure()  # progress lines of the library (the `cnnlab` loggers) on stdout, as bare lines
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops filling a nargs='*' positional at the first flag; key=value overrides after a flag land here
    if extra and isinstance(getattr(args, "overrides", None), list) and all(
            "=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:  # `--lr 0.1` from other tools: say the key=value spelling where the command takes overrides
        hint = flag_hint(extra, list(sys.argv[1:] if argv is None else argv)) if hasattr(args, "overrides") else ""
        parser.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CnnlabError as e:
        _error(str(e))
        return 2
    except OSError as e:  # the environment, not cnnlab: a full disk, a vanished folder, a permission
        where = f"{e.filename}: " if e.filename else ""
        _error(f"{where}{e.strerror or e} ({type(e).__name__}); free space or fix the path, then run the command "
               "again")
        return 2
    except MemoryError:
        _error("out of memory; use a smaller model, batch.size or augment.repeats, or batch.micro")
        return 2
    except KeyboardInterrupt:
        print("cnnlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
