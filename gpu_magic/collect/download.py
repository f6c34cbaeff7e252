"""One verified, resumable download: ``.partial`` file, sha256 check, rename into place.

The bytes land in ``partial`` and become visible at ``dest`` only after their sha256 matches the
one computed on the host. A download cut off (dropped connection, killed kernel) leaves its
partial file; the next attempt, in this call or a later one, continues from its size.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..errors import ClusterConnectionError, TransferError
from ..transport.base import Progress, Transport

ATTEMPTS = 3


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    transport: Transport,
    remote: str,
    dest: Path,
    partial: Path,
    size: int,
    sha256: str,
    progress: Progress | None = None,
) -> None:
    partial.parent.mkdir(parents=True, exist_ok=True)
    problem: Exception | None = None
    for _ in range(ATTEMPTS):
        have = partial.stat().st_size if partial.exists() else 0
        if have > size:  # not a prefix of this file: start over
            have = 0
        try:
            if have < size or not partial.exists():
                transport.get_file(remote, partial, offset=have, progress=progress)
        except (TransferError, ClusterConnectionError) as exc:
            problem = exc  # what arrived stays in the partial file: the next try resumes
            continue
        if file_sha256(partial) == sha256:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, dest)
            return
        partial.unlink()
        problem = TransferError(f"{remote}: sha256 of the download does not match the host's")
    raise TransferError(f"cannot download {remote} after {ATTEMPTS} attempts: {problem}")
