"""Local files and folders named by ``--files``, with their relative layout and ignore rules.

Folders keep their name (``--files data/`` ships ``code/data/...``); files under the working
directory keep their relative path, files elsewhere keep only their name. ``.git``,
``__pycache__`` and ``.ipynb_checkpoints`` are always skipped, and a ``.gpuignore`` (gitignore
syntax) in the working directory or at the top of a shipped folder is honoured.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pathspec

from ..errors import InvalidRequestError

ALWAYS_SKIPPED = frozenset({".git", "__pycache__", ".ipynb_checkpoints"})
IGNORE_FILE = ".gpuignore"


@dataclass(frozen=True)
class LocalFile:
    source: Path
    rel: str  # POSIX path relative to code/
    size: int


def collect_files(paths: tuple[str, ...], cwd: Path | None = None) -> list[LocalFile]:
    cwd = (cwd or Path.cwd()).resolve()
    found: dict[str, LocalFile] = {}
    top_ignore = _ignore_spec(cwd)
    for raw in paths:
        path = (cwd / Path(raw).expanduser()).resolve()
        if not path.exists():
            raise InvalidRequestError(f"--files: {raw!r} does not exist (looked in {cwd})")
        anchor = _anchor(path, cwd)
        if path.is_dir():
            entries = _walk(path, anchor, top_ignore)
        else:
            entries = [LocalFile(path, anchor.as_posix(), path.stat().st_size)]
        for entry in entries:
            found[entry.rel] = entry
    return sorted(found.values(), key=lambda f: f.rel)


def _anchor(path: Path, cwd: Path) -> PurePosixPath:
    """Where ``path`` lands under ``code/``: its path below cwd, else just its name."""
    try:
        rel = path.relative_to(cwd)
    except ValueError:
        rel = Path(path.name)
    return PurePosixPath(rel.as_posix())


def _walk(folder: Path, anchor: PurePosixPath, top_ignore) -> list[LocalFile]:
    own_ignore = _ignore_spec(folder)
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in ALWAYS_SKIPPED)
        for name in sorted(names):
            source = Path(root) / name
            inside = source.relative_to(folder).as_posix()
            rel = (anchor / inside).as_posix()
            if _ignored(rel, top_ignore) or _ignored(inside, own_ignore) or name == IGNORE_FILE:
                continue
            if source.is_file():
                files.append(LocalFile(source, rel, source.stat().st_size))
    return files


def _ignore_spec(folder: Path):
    ignore_file = folder / IGNORE_FILE
    if not ignore_file.is_file():
        return None
    return pathspec.PathSpec.from_lines("gitignore", ignore_file.read_text().splitlines())


def _ignored(rel: str, spec) -> bool:
    return spec is not None and spec.match_file(rel)
