"""``LocalTransport``: the same seam for this machine (the ``local`` cluster, a login node)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..config import private_dir
from ..errors import RemoteCommandError, TransferError, WaitTimeoutError
from .base import (
    CommandResult,
    Digest,
    Progress,
    RemoteEntry,
    Stat,
    Transport,
    copy_chunks,
    entry_type,
    iter_chunks,
    open_target,
    walk_tree,
)

CHUNK = 1 << 20


class LocalTransport(Transport):
    label = "local"

    def run(
        self, command: str, *, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        try:
            proc = subprocess.run(
                ["/bin/sh", "-c", command],
                input=stdin if stdin is not None else b"",
                capture_output=True,
                timeout=timeout,
                cwd=self.home(),
            )
        except subprocess.TimeoutExpired:
            raise WaitTimeoutError(f"command timed out after {timeout}s: {command}") from None
        return CommandResult(command, proc.returncode, proc.stdout, proc.stderr)

    @contextmanager
    def stream_to(self, command: str) -> Iterator[BinaryIO]:
        with self._streaming(command, stdin=subprocess.PIPE) as proc:
            try:
                yield proc.stdin
            finally:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
                proc.wait()

    @contextmanager
    def stream_from(self, command: str, size_hint: int | None = None) -> Iterator[BinaryIO]:
        with self._streaming(command, stdout=subprocess.PIPE) as proc:
            try:
                yield proc.stdout
                while proc.stdout.read(CHUNK):  # unread output would block the command
                    pass
            finally:
                proc.stdout.close()  # a command still writing gets SIGPIPE instead of hanging
                proc.wait()

    @contextmanager
    def _streaming(self, command: str, **pipes) -> Iterator[subprocess.Popen]:
        """``command`` started with ``pipes`` (the rest to /dev/null); once the caller has
        waited for it, a non-zero exit raises ``RemoteCommandError`` with its stderr."""
        streams = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, **pipes}
        with tempfile.TemporaryFile() as errors:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", command], stderr=errors, cwd=self.home(), **streams
            )
            yield proc
            if proc.returncode != 0:
                errors.seek(0)
                raise RemoteCommandError(
                    command, proc.returncode, errors.read().decode(errors="replace")
                )

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
        digest = digest or hashlib.sha256()
        try:
            with open_target(Path(remote), offset) as dst:
                copy_chunks(iter_chunks(source, CHUNK), dst, progress, digest)
            os.chmod(remote, mode)
        except OSError as exc:
            raise TransferError(f"cannot write {remote}: {exc}") from exc
        return digest.hexdigest()

    def makedirs(self, remote: str) -> None:
        """Every folder it makes is private (0700), the intermediate ones too: job folders
        are the user's alone."""
        try:
            private_dir(Path(remote))
        except OSError as exc:
            raise TransferError(f"cannot create {remote}: {exc}") from exc

    def read_file(self, remote: str, offset: int = 0) -> bytes:
        try:
            with open(remote, "rb") as f:
                f.seek(offset)
                return f.read()
        except OSError as exc:
            raise TransferError(f"cannot read {remote}: {exc}") from exc

    def get_file(
        self,
        remote: str,
        local: Path,
        *,
        offset: int = 0,
        progress: Progress | None = None,
        digest: Digest | None = None,
    ) -> None:
        try:
            with open(remote, "rb") as src, open_target(local, offset) as dst:
                src.seek(offset)
                copy_chunks(iter_chunks(src, CHUNK), dst, progress, digest)
        except OSError as exc:
            raise TransferError(f"cannot copy {remote} to {local}: {exc}") from exc

    def list_tree(self, remote: str, roots: Iterable[str]) -> list[RemoteEntry]:
        base = Path(remote)
        try:
            return walk_tree(
                roots,
                lambda paths: [_lstat(base / p) for p in paths],
                lambda folders: [_scan(base / f) for f in folders],
            )
        except OSError as exc:
            raise TransferError(f"cannot list {remote}: {exc}") from exc

    def home(self) -> str:
        return os.path.expanduser("~")


GONE = (FileNotFoundError, NotADirectoryError)


def _lstat(path: Path) -> Stat | None:
    try:
        info = os.lstat(path)
    except GONE:
        return None
    return info.st_size, entry_type(info.st_mode)


def _scan(folder: Path) -> list[tuple[str, Stat]]:
    """A folder's children as lstat sees them; ``[]`` when it vanished."""
    children = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except GONE:
                    continue  # deleted while we looked
                children.append((entry.name, (info.st_size, entry_type(info.st_mode))))
    except GONE:
        return []
    return children
