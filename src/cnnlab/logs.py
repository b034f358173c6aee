"""cnnlab's messages go through the standard `logging` module, under the `cnnlab` logger hierarchy
(`cnnlab.training.trainer`, ...); the library never configures logging itself, the application does.

`configure()` is what the `cnnlab` command does: progress lines (INFO and up) on stdout, as bare lines, exactly as
they were printed before logging was used. A Python user who wants them calls it too, or configures logging as usual
(`logging.basicConfig(level=logging.INFO)`); `logging.getLogger("cnnlab").setLevel(logging.WARNING)` silences them.
"""

from __future__ import annotations

import logging
import sys

ROOT = "cnnlab"


class _Stdout(logging.StreamHandler):
    """A handler writing to whatever sys.stdout is when a record is emitted (a redirect, pytest's capture), not the
    stream that was current when it was installed."""

    def __init__(self):
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ sets it; the property always answers sys.stdout
        pass


def configure(level: int = logging.INFO) -> None:
    """Show cnnlab's messages of `level` and up on stdout (once: a second call changes only the level). They do not
    also travel to the root logger, so an application's own logging setup does not print them twice."""
    top = logging.getLogger(ROOT)
    if not any(isinstance(h, _Stdout) for h in top.handlers):
        top.addHandler(_Stdout())
    top.setLevel(level)
    top.propagate = False
