"""Facts about the machine that several layers need (data and training alike): memory left to allocate."""

from __future__ import annotations

import contextlib
import os
from typing import Optional


def available_memory() -> Optional[int]:
    """Bytes of RAM a process can still allocate: the kernel's MemAvailable (or the free pages); None if unknown."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/meminfo") as f:
            line = next(ln for ln in f if ln.startswith("MemAvailable:"))
        return int(line.split()[1]) * 1024
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None
