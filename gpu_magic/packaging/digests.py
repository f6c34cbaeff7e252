"""``LocalDigests``: the sha256 of local files, remembered while they stay unchanged.

The content-addressed cache on the host names files by their sha256, so every shipped file
is hashed before each upload. Rereading an unchanged 100 MB folder for that would cost more
than the upload it saves; a file whose (size, mtime_ns, inode) are those it had when it was
hashed is taken to hold the same bytes (what rsync and git assume too). Kept in the job
store's ``file_hashes`` table, shared by every process.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from ..errors import TransferError
from ..jobstore import connect

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
        digest = sha256_file(path)
        with self._lock:
            self.hashed += 1
            self._conn.execute(
                "INSERT OR REPLACE INTO file_hashes (path, size, mtime_ns, inode, sha256) "
                "VALUES (?, ?, ?, ?, ?)",
                (*key, digest),
            )
        return digest


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise TransferError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return digest.hexdigest()
