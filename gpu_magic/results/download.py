"""One verified, resumable download: ``.partial`` file, sha256 check, rename into place.

The bytes land in ``partial`` and become visible at ``dest`` only after their sha256 matches the
one computed on the host. A download cut off (dropped connection, killed kernel) leaves its
partial file; the next attempt, in this call or a later one, continues from its size.

The local sha256 is computed as the bytes are written (never by reading the file again), and
for a big file the host's sha256 is computed by a second command WHILE the bytes move, not
before: on a 100 MB file that turns three passes in a row into one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ..errors import ClusterConnectionError, RemoteCommandError, TransferCancelled, TransferError
from ..transport.base import Progress, Transport

ATTEMPTS = 3
CHUNK = 1 << 20
RETRIED = (TransferError, ClusterConnectionError, RemoteCommandError)


class Refused(TransferError):
    """The host's sha256 cannot be had: what it sent instead was refused. Not retried (the
    bytes downloaded so far stay in the partial file)."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    transport: Transport,
    remote: str,
    dest: Path,
    partial: Path,
    size: int,
    sha256: str | Callable[[], str],
    progress: Progress | None = None,
    rewind: Progress | None = None,
) -> str:
    """Download ``remote`` (``size`` bytes) verified to ``dest``; returns its sha256.

    ``sha256`` is the host's digest, or a function that asks the host for it (run on its own
    thread while the bytes move; asked again after a mismatch; ``Refused`` ends the
    download). ``progress`` gets every byte moved, ``rewind`` the bytes thrown away after a
    failed check (they will move again).
    """
    partial.parent.mkdir(parents=True, exist_ok=True)
    counter = _Counter(progress, rewind)
    problem: Exception | None = None
    with ThreadPoolExecutor(1, thread_name_prefix="gpu_magic-sha256") as pool:
        host = _HostDigest(sha256, pool)
        for _ in range(ATTEMPTS):
            host.start()
            try:
                got = _fetch(transport, remote, partial, size, counter)
                want = host.result()
            except (Refused, TransferCancelled):
                raise
            except RETRIED as exc:
                problem = exc  # what arrived stays in the partial file: the next try resumes
                continue
            if got == want:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(partial, dest)
                return want
            partial.unlink()
            counter.discard()
            host.forget()  # the file may have changed on the host: ask again
            problem = TransferError(f"{remote}: sha256 of the download does not match the host's")
    raise TransferError(f"cannot download {remote} after {ATTEMPTS} attempts: {problem}")


def _fetch(transport: Transport, remote: str, partial: Path, size: int, counter: _Counter) -> str:
    """Bring ``partial`` up to the remote file; the sha256 of all of it (prefix kept included),
    or a sentinel when it did not end up ``size`` bytes (which no host digest equals)."""
    have = partial.stat().st_size if partial.exists() else 0
    if have > size:  # not a prefix of this file: start over
        have = 0
    digest = hashlib.sha256()
    if have:
        _hash_prefix(partial, have, digest)
        counter.kept(have)
    if have < size or not partial.exists():
        transport.get_file(remote, partial, offset=have, progress=counter.moved, digest=digest)
    if partial.stat().st_size != size:
        return f"size {partial.stat().st_size}, not {size}"
    return digest.hexdigest()


def _hash_prefix(path: Path, length: int, digest) -> None:
    with open(path, "rb") as f:
        while length > 0 and (chunk := f.read(min(CHUNK, length))):
            digest.update(chunk)
            length -= len(chunk)


class _HostDigest:
    """The host's sha256: given, or asked for on the pool's thread and kept until forgotten."""

    def __init__(self, sha256: str | Callable[[], str], pool: ThreadPoolExecutor):
        self._given = sha256 if isinstance(sha256, str) else None
        self._ask = sha256
        self._pool = pool
        self._future: Future | None = None

    def start(self) -> None:
        if self._given is None and self._future is None:
            self._future = self._pool.submit(self._ask)

    def result(self) -> str:
        if self._given is not None:
            return self._given
        try:
            return self._future.result()
        except BaseException:
            self._future = None  # failed (e.g. the connection dropped): ask again next try
            raise

    def forget(self) -> None:
        if self._given is None:
            self._future = None


class _Counter:
    """Bytes of the partial file that progress was told about, so a retry neither counts the
    kept prefix twice nor leaves the bytes of a discarded file counted."""

    def __init__(self, progress: Progress | None, rewind: Progress | None):
        self._progress = progress
        self._rewind = rewind
        self.counted = 0

    def moved(self, n: int) -> None:
        self.counted += n
        if self._progress:
            self._progress(n)

    def kept(self, have: int) -> None:
        """A prefix from an earlier call: counted once, as if it had just moved."""
        if have > self.counted:
            self.moved(have - self.counted)

    def discard(self) -> None:
        if self._rewind and self.counted:
            self._rewind(self.counted)
        self.counted = 0
