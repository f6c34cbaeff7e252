"""Process checks that ignore zombies: this machine's PID 1 does not reap orphans."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def group_alive(pgid: int) -> bool:
    """Any live (non-zombie) process in the process group."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields and fields[0] != "Z" and int(fields[2]) == pgid:
                return True
    return False


def wait_until(condition: Callable[[], object], timeout: float = 10):
    """Poll ``condition`` until it returns something true or ``timeout``; returns its last
    value (what it found, or a false value when time ran out)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            return condition()
        time.sleep(0.05)
    return value
