"""Local files and folders named by ``--files``, with their relative layout and ignore rules.

Folders keep their name (``--files data/`` ships ``code/data/...``); files under the working
directory keep their relative path, files elsewhere keep only their name. ``.git``,
``__pycache__`` and ``.ipynb_checkpoints`` are always skipped, and a ``.gpuignore`` (gitignore
syntax) in the working directory or at the top of a shipped folder is honoured.

A symbolic link inside a shipped folder is shipped as a link when it points inside that folder
(a ``latest -> run-3`` link keeps working on the host). One that points out of it is refused,
naming the link, unless links are to be followed: a link to ``~/.ssh/id_ed25519`` in a
dataset folder would otherwise send the key along. A path named on the command line is the
user's own choice and is followed.
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
    link: str | None = None  # a symbolic link shipped as one: its relative target


def collect_files(
    paths: tuple[str, ...], cwd: Path | None = None, follow_links: bool = False
) -> list[LocalFile]:
    cwd = (cwd or Path.cwd()).resolve()
    found: dict[str, LocalFile] = {}
    top_ignore = _ignore_spec(cwd)
    for raw in paths:
        try:
            path = (cwd / Path(raw).expanduser()).resolve()
        except RuntimeError:  # ~someone/... for a user this machine does not know
            raise InvalidRequestError(f"--files: {raw!r}: no such user's home folder") from None
        if not path.exists():
            raise InvalidRequestError(f"--files: {raw!r} does not exist (looked in {cwd})")
        anchor = _anchor(path, cwd)
        if path.is_dir():
            entries = _walk(path, anchor, top_ignore, follow_links)
        else:
            entries = [LocalFile(path, anchor.as_posix(), path.stat().st_size)]
        for entry in entries:
            _check_name(entry)
            found[entry.rel] = entry
    return sorted(found.values(), key=lambda f: f.rel)


def _check_name(entry: LocalFile) -> None:
    """A name with a control character (a newline) would break the upload's listing on the
    host and every table that shows it: refused up front, naming it."""
    if not entry.rel.isprintable():
        raise InvalidRequestError(
            f"--files: {entry.rel!r} has a control character in its name (a newline, a tab...): "
            "rename it to ship it"
        )


def _anchor(path: Path, cwd: Path) -> PurePosixPath:
    """Where ``path`` lands under ``code/``: its path below cwd, else just its name."""
    try:
        rel = path.relative_to(cwd)
    except ValueError:
        rel = Path(path.name)
    return PurePosixPath(rel.as_posix())


def _walk(folder: Path, anchor: PurePosixPath, top_ignore, follow_links: bool) -> list[LocalFile]:
    own_ignore = _ignore_spec(folder)
    files = []
    for root, dirs, names in os.walk(folder, followlinks=follow_links):
        dirs[:] = sorted(d for d in dirs if d not in ALWAYS_SKIPPED)
        linked_dirs = [] if follow_links else [d for d in dirs if (Path(root) / d).is_symlink()]
        dirs[:] = [d for d in dirs if d not in linked_dirs]
        for name in sorted(names) + linked_dirs:
            source = Path(root) / name
            inside = source.relative_to(folder).as_posix()
            rel = (anchor / inside).as_posix()
            if _ignored(rel, top_ignore) or _ignored(inside, own_ignore) or name == IGNORE_FILE:
                continue
            if source.is_symlink() and not follow_links:
                files.append(LocalFile(source, rel, 0, link=_link_inside(source, folder)))
            elif source.is_file():
                files.append(LocalFile(source, rel, source.stat().st_size))
    return files


def _link_inside(link: Path, folder: Path) -> str:
    """The target of ``link``, relative to the link, when it stays inside ``folder``."""
    target = link.resolve()
    top = folder.resolve()
    if target != top and top not in target.parents:
        raise InvalidRequestError(
            f"--files: {link} is a link to {os.readlink(link)} ({target}), outside "
            f"{folder}: not shipped (a link out of a shipped folder can send files you did "
            "not mean to, such as keys); remove it, or pass --follow-links to ship what it "
            "points to"
        )
    return os.path.relpath(target, link.parent.resolve())


def _ignore_spec(folder: Path):
    ignore_file = folder / IGNORE_FILE
    if not ignore_file.is_file():
        return None
    return pathspec.PathSpec.from_lines("gitignore", ignore_file.read_text().splitlines())


def _ignored(rel: str, spec) -> bool:
    return spec is not None and spec.match_file(rel)
