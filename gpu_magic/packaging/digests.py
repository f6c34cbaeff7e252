"""``LocalDigests``: the sha256 of local files, remembered while they stay unchanged.

The content-addressed cache on the host names files by their sha256, so every shipped file
is hashed before each upload. Rereading an unchanged 100 MB folder for that would cost more
than the upload it saves; a file whose (size, mtime_ns, inode) are those it had when it was
hashed is taken to hold the same bytes (what rsync and git assume too). Kept in the job
store's ``file_hashes`` table, shared by every process.

A large file (``chunking.CHUNKED_MIN``) is hashed by cutting it into content-defined chunks in
the same read; its chunk list is kept (``file_chunks``) with the sha256 it had before it
changed, so the next upload of an edited version can send only the chunks that are new.
"""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import TransferError
from ..jobstore import connect, immediate
from .chunking import CHUNKED_MIN, Chunked, cut

CHUNK = 1 << 20


class LocalDigests:
    def __init__(self, store_path: Path):
        self._conn = connect(store_path)
        self._lock = threading.Lock()
        self.hashed = 0  # files read to hash them (not answered from the table)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def sha256(self, path: Path) -> str:
        """The file's sha256, from the table when the file is unchanged since it was hashed."""
        try:
            info = os.stat(path)
        except OSError as exc:
            raise TransferError(f"cannot read {path}: {exc.strerror or exc}") from exc
        key = (str(path), info.st_size, info.st_mtime_ns, info.st_ino)
        with self._lock:
            row = self._conn.execute(
                "SELECT sha256 FROM file_hashes WHERE path = ? AND size = ? AND mtime_ns = ? "
                "AND inode = ?",
                key,
            ).fetchone()
        if row is not None:
            return row[0]
        chunked = chunk_file(path) if info.st_size >= CHUNKED_MIN else None
        digest = chunked.sha256 if chunked is not None else sha256_file(path)
        with self._lock:
            self.hashed += 1
            self._remember(key, digest, chunked)
        return digest

    def _remember(self, key: tuple, digest: str, chunked: Chunked | None) -> None:
        """Store the file's new sha256 (the one it had before becomes ``previous``) and its
        chunk list; drop the lists no row names any more."""
        with immediate(self._conn):
            old = self._conn.execute(
                "SELECT sha256, previous FROM file_hashes WHERE path = ?", key[:1]
            ).fetchone()
            previous = None if old is None else (old[0] if old[0] != digest else old[1])
            self._conn.execute(
                "INSERT OR REPLACE INTO file_hashes (path, size, mtime_ns, inode, sha256, "
                "previous) VALUES (?, ?, ?, ?, ?, ?)",
                (*key, digest, previous),
            )
            if chunked is not None:
                self._conn.execute(
                    "INSERT OR REPLACE INTO file_chunks (sha256, chunks) VALUES (?, ?)",
                    (digest, chunked.encode()),
                )
            if old is not None:
                self._conn.execute(
                    "DELETE FROM file_chunks WHERE sha256 NOT IN (SELECT sha256 FROM "
                    "file_hashes UNION SELECT previous FROM file_hashes WHERE previous "
                    "IS NOT NULL)"
                )

    def chunks(self, digest: str) -> Chunked | None:
        """The chunk list of the large file version ``digest``, if one was kept."""
        with self._lock:
            row = self._conn.execute(
                "SELECT chunks FROM file_chunks WHERE sha256 = ?", (digest,)
            ).fetchone()
        return None if row is None else Chunked.decode(digest, row[0])

    def previous(self, path: Path) -> Chunked | None:
        """The chunk list of the version ``path`` had before its latest change, if kept."""
        with self._lock:
            row = self._conn.execute(
                "SELECT previous FROM file_hashes WHERE path = ?", (str(path),)
            ).fetchone()
        return None if row is None or row[0] is None else self.chunks(row[0])


def chunk_file(path: Path) -> Chunked:
    """A large file's sha256 and its chunks. Two reads side by side (hashing and chunking
    leave the GIL): on two cores 1 GB takes ~1 s, against ~2.2 s for one read doing both.
    Should the file change between the reads, the list and the sha256 disagree, which costs
    a resend (a recipe the host's check refuses), never a wrong file."""
    with ThreadPoolExecutor(1, thread_name_prefix="sha256") as pool:
        whole = pool.submit(sha256_file, path)
        chunks = cut(path)
    return Chunked(whole.result(), chunks)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise TransferError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return digest.hexdigest()
