"""The job store's schema: ``NNNN_name.sql`` files applied in order (tracked by ``user_version``).

Add a migration by adding the next numbered file; never edit one that has shipped.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from functools import cache
from importlib.resources import files

MIGRATION_NAME = re.compile(r"^(\d{4})_\w+\.sql$")


@cache
def load() -> tuple[tuple[int, str], ...]:
    """``(number, sql)`` of every migration, numbered 1, 2, 3, ... without gaps."""
    found = []
    for entry in files(__name__).iterdir():
        match = MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    found.sort()
    numbers = [number for number, _ in found]
    if numbers != list(range(1, len(found) + 1)):
        raise RuntimeError(f"gpu_magic migrations are not numbered 1..{len(found)}: {numbers}")
    return tuple(found)


def statements(sql: str) -> Iterator[str]:
    """Split a script into statements, so they can run inside the caller's transaction
    (``executescript`` would commit it)."""
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""
    if buffer.strip():
        yield buffer
