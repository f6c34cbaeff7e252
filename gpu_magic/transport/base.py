"""The transport seam: everything the services need from a host, in a handful of methods.

Commands are shell strings built only from our own templates and ``shlex.quote``d values
(see ``quote_argv``); the transports never interpolate user text themselves.
"""

from __future__ import annotations

import hashlib
import io
import os
import shlex
import stat
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import BinaryIO, Protocol

from ..errors import RemoteCommandError, TransferError

Progress = Callable[[int], None]
"""Called with the number of bytes just moved."""

FILE, DIR, SYMLINK, OTHER = "file", "dir", "symlink", "other"


@dataclass(frozen=True)
class RemoteEntry:
    """One thing found by ``Transport.list_tree``, as ``lstat`` sees it (never followed)."""

    path: str  # relative to the listed folder, POSIX
    size: int
    type: str  # FILE, DIR, SYMLINK or OTHER


Stat = tuple[int, str]
"""``(size, type)`` of one path, as ``lstat`` sees it."""


class Digest(Protocol):
    """What ``get_file`` feeds every written chunk to (a ``hashlib`` object): hashing while the
    bytes arrive spares re-reading a multi-GB download to verify it."""

    def update(self, data: bytes, /) -> None: ...


def quote_argv(*argv: str) -> str:
    return shlex.join(str(a) for a in argv)


_PROGRAMS: dict[str, Program] = {}


@dataclass(frozen=True)
class Program:
    """A Python program of ours that runs on a host (``gpu_magic/remote/``), by name and hash.

    ``Transport.run_program`` runs it: over SSH on the connection's long-lived helper, which
    keeps programs by sha256 and needs the source once; elsewhere as ``python -c SOURCE``.
    Records and error messages show ``<name sha256:…>`` in place of the source (``shorten``).
    """

    name: str
    source: str = field(repr=False)

    def __post_init__(self) -> None:
        _PROGRAMS[self.source] = self

    @classmethod
    def from_file(cls, path: Path) -> Program:
        return cls(path.name, path.read_text())

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()

    def command(self, interpreter: str, *args: str) -> str:
        """The shell command line that runs it without a helper."""
        return quote_argv(interpreter, "-c", self.source, *args)

    @property
    def placeholder(self) -> str:
        return f"<{self.name} sha256:{self.sha256[:12]}>"


def shorten(command: str) -> str:
    """``command`` with each of our programs' quoted source replaced by its placeholder."""
    for source, program in _PROGRAMS.items():
        quoted = shlex.quote(source)
        if quoted in command:
            command = command.replace(quoted, program.placeholder)
    return command


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_code: int
    stdout: bytes = b""
    stderr: bytes = b""

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def check(self) -> CommandResult:
        if self.exit_code != 0:
            raise RemoteCommandError(
                self.command,
                self.exit_code,
                self.stderr.decode("utf-8", "replace"),
                self.stdout.decode("utf-8", "replace"),
            )
        return self


class Transport(ABC):
    """One host. Thread-safe: many jobs and threads share one transport per host."""

    label: str = "?"

    @abstractmethod
    def run(
        self, command: str, *, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        """Run a shell command line on the host and wait for it. Does not raise on exit code."""

    def run_program(
        self,
        program: Program,
        interpreter: str,
        args: Iterable[str] = (),
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run one of our ``Program``s with ``interpreter`` and ``args``, like ``run``; the
        result's ``command`` shows the program by name (see ``shorten``)."""
        result = self.run(program.command(interpreter, *args), stdin=stdin, timeout=timeout)
        return replace(result, command=shorten(result.command))

    @abstractmethod
    def stream_to(self, command: str) -> AbstractContextManager[BinaryIO]:
        """Run ``command`` with a writable stdin; on exit close stdin, wait, raise if it failed."""

    def stream_to_program(
        self, program: Program, interpreter: str, args: Iterable[str] = ()
    ) -> AbstractContextManager[BinaryIO]:
        """``stream_to`` for one of our ``Program``s with ``interpreter`` and ``args`` (see
        ``run_program``): a transport with a warm interpreter on the host may run it there."""
        return self.stream_to(program.command(interpreter, *args))

    @contextmanager
    def stream_from(self, command: str, size_hint: int | None = None) -> Iterator[BinaryIO]:
        """Run ``command`` and yield its stdout as a readable stream (e.g. a tar of many small
        files: one round trip instead of one per file). On exit the rest of stdout is drained
        and the command waited for: ``RemoteCommandError`` when it exited non-zero,
        ``ClusterConnectionError`` when the connection dropped (also when the caller's block
        failed because of it). ``size_hint``: about how many bytes will come, when the caller
        knows (a transport may then take a quicker way for a small answer). This default
        holds all of stdout in memory; the real transports stream it."""
        result = self.run(command).check()
        yield io.BytesIO(result.stdout)

    def stream_program(
        self,
        program: Program,
        interpreter: str,
        args: Iterable[str] = (),
        size_hint: int | None = None,
    ) -> AbstractContextManager[BinaryIO]:
        """``stream_from`` for one of our ``Program``s with ``interpreter`` and ``args`` (see
        ``run_program``): a transport with a warm interpreter on the host may run it there."""
        return self.stream_from(program.command(interpreter, *args), size_hint)

    @abstractmethod
    def put_stream(
        self,
        source: BinaryIO,
        remote: str,
        *,
        mode: int = 0o644,
        progress: Progress | None = None,
        offset: int = 0,
        digest: Digest | None = None,
    ) -> str:
        """Write everything ``source`` yields to ``remote`` (parent must exist) with permission
        bits ``mode``, from byte ``offset`` on (the file is cut there: an upload resumed after
        a drop). ``digest`` (default: a fresh sha256) is updated with every byte sent; returns
        its hex digest. Bytes in memory (a pickled kernel variable) and files on disk take
        this one path."""

    def put_file(self, local: Path, remote: str, *, progress: Progress | None = None) -> str:
        """Copy one local file to ``remote``, keeping its permission bits (see ``put_stream``)."""
        try:
            source = open(local, "rb")  # noqa: SIM115 - closed by the with-block below
            mode = stat.S_IMODE(os.fstat(source.fileno()).st_mode)
        except OSError as exc:
            raise TransferError(f"cannot read {local}: {exc.strerror or exc}") from exc
        with source:
            return self.put_stream(source, remote, mode=mode, progress=progress)

    @abstractmethod
    def makedirs(self, remote: str) -> None:
        """Create a folder and its parents (no remote shell: cheaper than ``mkdir -p``)."""

    @abstractmethod
    def read_file(self, remote: str, offset: int = 0) -> bytes:
        """The bytes of a remote file from ``offset``."""

    @abstractmethod
    def get_file(
        self,
        remote: str,
        local: Path,
        *,
        offset: int = 0,
        progress: Progress | None = None,
        digest: Digest | None = None,
    ) -> None:
        """Copy one remote file to ``local``; ``offset > 0`` resumes: ``local`` keeps its first
        ``offset`` bytes and the rest of the remote file from ``offset`` is appended.
        ``digest.update`` sees every byte written, in order (not the kept prefix)."""

    @abstractmethod
    def list_tree(self, remote: str, roots: Iterable[str]) -> list[RemoteEntry]:
        """What lies under the folder ``remote`` at ``roots`` (relative paths), with no shell:
        each root, and everything below a root that is a folder, recursively (parents before
        children, names sorted). ``lstat`` semantics: a symlink is reported as one and never
        followed (nor is a folder above a nested root, which is reported instead of the root
        when it is not a folder); a missing root is skipped."""

    @abstractmethod
    def home(self) -> str:
        """The remote user's home directory (absolute)."""

    def connect(self) -> None:
        """Log in now (and learn the home folder), so problems surface before anything is sent."""
        self.home()

    def close(self) -> None:  # noqa: B027 - optional for transports that hold nothing
        """Release connections; the transport may be used again afterwards (it reconnects)."""

    def check(self, *argv: str, timeout: float | None = None) -> CommandResult:
        """Run an argv (quoted here) and raise ``RemoteCommandError`` unless it exits 0."""
        return self.run(quote_argv(*argv), timeout=timeout).check()

    def expand_path(self, path: str) -> str:
        """Expand a leading ``~`` with the remote home; ``~`` is never left to a shell."""
        if path == "~" or path.startswith("~/"):
            return self.home().rstrip("/") + path[1:]
        return path


def entry_type(mode: int) -> str:
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISDIR(mode):
        return DIR
    return SYMLINK if stat.S_ISLNK(mode) else OTHER


def walk_tree(
    roots: Iterable[str],
    lstat_many: Callable[[list[str]], list[Stat | None]],
    listdir_many: Callable[[list[str]], list[list[tuple[str, Stat]]]],
) -> list[RemoteEntry]:
    """``list_tree`` over a transport's two batch operations: ``lstat_many`` (``None`` for a
    missing path) and ``listdir_many`` (each folder's ``(name, stat)`` children, ``[]`` when it
    vanished). Each is called once for all the roots, then once per level of folders, so a
    transport can send a whole batch in one round trip."""
    roots = list(dict.fromkeys(roots))
    paths = sorted({"/".join(r.split("/")[:i]) for r in roots for i in range(1, r.count("/") + 2)})
    stats = dict(zip(paths, lstat_many(paths), strict=True))
    found: dict[str, RemoteEntry] = {}
    level = []
    for root in roots:
        for rel in [p for p in paths if root == p or root.startswith(p + "/")]:  # outer first
            st = stats[rel]
            if st is None:
                break
            if rel == root or st[1] != DIR:  # the root, or a non-folder standing in its way
                found.setdefault(rel, RemoteEntry(rel, *st))
                level += [rel] if rel == root and st[1] == DIR else []
                break
    while level:
        below = []
        for folder, children in zip(level, listdir_many(level), strict=True):
            for name, st in sorted(children):
                rel = f"{folder}/{name}"
                found.setdefault(rel, RemoteEntry(rel, *st))
                below += [rel] if st[1] == DIR else []
        level = below
    return list(found.values())


def open_target(local: Path, offset: int) -> BinaryIO:
    """``local`` opened for writing at ``offset`` (truncated there; created when 0)."""
    if offset == 0:
        return open(local, "wb")
    f = open(local, "r+b")  # noqa: SIM115 - returned to the caller's with-block
    f.seek(offset)
    f.truncate()
    return f


def iter_chunks(stream: BinaryIO, size: int) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk


def copy_chunks(
    chunks: Iterable[bytes], dst: BinaryIO, progress: Progress | None, digest: Digest | None
) -> int:
    """Write ``chunks`` to ``dst``, hashing and reporting each one as it is written; returns the
    number of bytes written."""
    written = 0
    for chunk in chunks:
        written += len(chunk)
        dst.write(chunk)
        if digest is not None:
            digest.update(chunk)
        if progress:
            progress(len(chunk))
    return written
