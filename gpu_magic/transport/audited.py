"""``AuditedTransport``: any transport, with every remote operation written to the audit log.

``Hosts`` wraps each transport it hands out (the injected ones of tests too), so no service
can reach a host unrecorded. Per operation one record: a command line with its exit code
(one of our programs shown by name and sha256, not its source: ``transport.base.shorten``),
duration and the sizes of what went in and out; a transfer with its direction, path, bytes
and the sha256 of the bytes moved; a folder made or listed. A failed operation is recorded
with its one-line error. stdin and file contents are never recorded.

An SSH connection's host key is a trust decision: the first operation over a new connection
records the key it accepted, and a refused key is recorded as refused.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import HostKeyError
from .base import CommandResult, Digest, Program, Progress, RemoteEntry, Transport, shorten

Recorder = Callable[..., object]
"""``record(event, **details)``: an ``audit.Trail``'s ``record``."""


class AuditedTransport(Transport):
    def __init__(self, inner: Transport, record: Recorder):
        self.inner, self._record = inner, record
        self.label = inner.label
        self._known_key: str | None = None

    def __getattr__(self, name: str) -> Any:  # what a backend has beyond the seam (cipher)
        return getattr(self.inner, name)

    @contextmanager
    def _audited(self, event: str, **details: Any) -> Iterator[dict]:
        """Record ``event`` when the block ends: ``details`` (the block may add to them), the
        duration, and the error if it failed."""
        start = time.monotonic()
        try:
            yield details
        except BaseException as exc:
            details["error"] = self._failure(exc)
            raise
        finally:
            details["ms"] = round((time.monotonic() - start) * 1000, 1)
            self._note_host_key()
            self._record(event, **details)

    def _failure(self, exc: BaseException) -> str:
        """The error in one line; a refused host key is also a trust record."""
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        if isinstance(exc, HostKeyError):
            self._record("trust", decision="host key refused", reason=error)
        return error

    def _note_host_key(self) -> None:
        key = getattr(self.inner, "host_key", None)
        if key is not None and key != self._known_key:
            self._known_key = key
            self._record("trust", decision="host key accepted", key=key)

    # -- the seam ---------------------------------------------------------------------------
    def run(self, command: str, *, stdin: bytes | None = None, timeout: float | None = None):
        with self._audited("command", command=shorten(command), stdin_bytes=len(stdin or b"")) as d:
            result = self.inner.run(command, stdin=stdin, timeout=timeout)
            d.update(exit=result.exit_code, stdout_bytes=len(result.stdout))
        return result

    def run_program(
        self, program: Program, interpreter: str, args: Iterable[str] = (), **options: Any
    ) -> CommandResult:
        """Recorded like a command, with the program by name and sha256 (not its source)."""
        args = list(args)
        shown = shorten(program.command(interpreter, *args))
        stdin = options.get("stdin") or b""
        with self._audited(
            "command", command=shown, program=program.sha256, stdin_bytes=len(stdin)
        ) as d:
            result = self.inner.run_program(program, interpreter, args, **options)
            d.update(exit=result.exit_code, stdout_bytes=len(result.stdout))
        return result

    def stream_to(self, command: str) -> AbstractContextManager[BinaryIO]:
        return self._counted(self.inner.stream_to, command, "up", "stdin")

    def stream_to_program(
        self, program: Program, interpreter: str, args: Iterable[str] = ()
    ) -> AbstractContextManager[BinaryIO]:
        """Recorded like ``stream_to``, with the program by sha256 too."""
        args = list(args)
        opener = lambda _command: self.inner.stream_to_program(program, interpreter, args)  # noqa: E731
        command = program.command(interpreter, *args)
        return self._counted(opener, command, "up", "stdin", program=program.sha256)

    def stream_from(
        self, command: str, size_hint: int | None = None
    ) -> AbstractContextManager[BinaryIO]:
        opener = functools.partial(self.inner.stream_from, size_hint=size_hint)
        return self._counted(opener, command, "down", "stdout")

    def stream_program(
        self,
        program: Program,
        interpreter: str,
        args: Iterable[str] = (),
        size_hint: int | None = None,
    ) -> AbstractContextManager[BinaryIO]:
        """Recorded like ``stream_from``, with the program by sha256 too."""
        args = list(args)
        opener = lambda _command: self.inner.stream_program(  # noqa: E731
            program, interpreter, args, size_hint
        )
        command = program.command(interpreter, *args)
        return self._counted(opener, command, "down", "stdout", program=program.sha256)

    @contextmanager
    def _counted(
        self, opener, command: str, direction: str, side: str, **more: Any
    ) -> Iterator[BinaryIO]:
        """A stream command, recorded with the size and sha256 of what went through it."""
        with self._audited("command", command=shorten(command), direction=direction, **more) as d:
            with opener(command) as stream:
                counted = _Counted(stream)
                try:
                    yield counted  # type: ignore[misc]
                finally:
                    d.update({f"{side}_bytes": counted.count, f"{side}_sha256": counted.sha256})
            d["exit"] = 0

    def put_stream(
        self, source: BinaryIO, remote: str, *, progress: Progress | None = None, **options: Any
    ) -> str:
        moved = [0]

        def count(n: int) -> None:
            moved[0] += n
            if progress is not None:
                progress(n)

        mode, offset = options.get("mode", 0o644), options.get("offset", 0)
        with self._audited("upload", path=remote, mode=f"{mode:o}", offset=offset) as d:
            try:
                sha = self.inner.put_stream(source, remote, progress=count, **options)
                d["sha256"] = sha  # of the whole file as written (a resumed one's too)
            finally:
                d["bytes"] = moved[0]
        return sha

    def get_file(
        self, remote: str, local: Path, *, digest: Digest | None = None, **options: Any
    ) -> None:
        tee = _Tee(digest)
        where = {"path": remote, "local": str(local), "offset": options.get("offset", 0)}
        with self._audited("download", **where) as d:
            try:
                self.inner.get_file(remote, local, digest=tee, **options)
            finally:
                d.update(bytes=tee.count, sha256=tee.sha.hexdigest())

    def read_file(self, remote: str, offset: int = 0) -> bytes:
        with self._audited("read", path=remote, offset=offset) as d:
            data = self.inner.read_file(remote, offset)
            d.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        return data

    def makedirs(self, remote: str) -> None:
        with self._audited("mkdir", path=remote):
            self.inner.makedirs(remote)

    def list_tree(self, remote: str, roots: Iterable[str]) -> list[RemoteEntry]:
        roots = list(roots)
        with self._audited("list", path=remote, roots=roots) as d:
            found = self.inner.list_tree(remote, roots)
            d["entries"] = len(found)
        return found

    def home(self) -> str:
        """The first call logs in (a host key accepted or refused is recorded); the rest are
        answered from memory, so only a failure is recorded as an operation."""
        try:
            return self.inner.home()
        except BaseException as exc:
            self._record("connect", error=self._failure(exc))
            raise
        finally:
            self._note_host_key()

    def close(self) -> None:
        self.inner.close()


class _Counted:
    """A stream that counts and hashes the bytes read from or written to it."""

    def __init__(self, stream: BinaryIO):
        self._stream, self.count, self._sha = stream, 0, hashlib.sha256()

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def write(self, data) -> int:
        self.count += len(data)
        self._sha.update(data)
        return self._stream.write(data)

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.count += len(data)
        self._sha.update(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _Tee:
    """A digest that also hashes and counts for the audit record."""

    def __init__(self, other: Digest | None):
        self.other, self.sha, self.count = other, hashlib.sha256(), 0

    def update(self, data: bytes, /) -> None:
        self.sha.update(data)
        self.count += len(data)
        if self.other is not None:
            self.other.update(data)
