"""``LiveMirror``: the files a lease holder tails, copied locally for the processes that do not
poll the host (a kernel while the Jupyter server holds the lease).

The holder writes each chunk it received at its offset (``{data_dir}/live/{job_id}/{name}``)
and, once it has read a finished job completely, a ``.done`` mark; the others read their feeds'
new bytes from there, so a panel stays live without a second round trip to the host. A chunk
from offset 0 of a shorter file means the file was replaced (a new attempt): the copy starts
over. Only the monitor's tailed names are ever written.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import TransferError
from ..jobdir import safe_id
from ..schedulers.folder_probe import Chunk, FolderState
from .feed import TAILED

DONE = ".done"


class LiveMirror:
    def __init__(self, root: Path):
        self.root = root

    def _folder(self, job_id: str) -> Path:
        if not safe_id(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.root / job_id

    def has(self, job_id: str) -> bool:
        """Whether a holder mirrors this job (else it follows it not)."""
        return self._folder(job_id).is_dir()

    def write(self, job_id: str, folder: FolderState, done: bool) -> None:
        target = self._folder(job_id)
        try:
            target.mkdir(parents=True, exist_ok=True, mode=0o700)
            for name, chunk in folder.files.items():
                if name in TAILED and chunk is not None:
                    _write(target / name, chunk)
            if done:
                (target / DONE).touch(exist_ok=True)
        except OSError as exc:  # a full disk: the others' panels stall, the poll goes on
            raise TransferError(f"cannot mirror job {job_id} into {target}: {exc}") from exc

    def look(self, job_id: str, offsets: dict[str, int], ended: bool) -> FolderState:
        """What the copy holds from each feed offset on, as the host's probe would answer. Once
        the job ``ended`` and until the holder marked its copy done, each file reads one byte
        longer, so a reader asks again rather than stop before the last bytes; while it runs
        the sizes are true, so a reader paces itself like the holder instead of draining."""
        folder = self._folder(job_id)
        more = 1 if ended and not (folder / DONE).exists() else 0
        files = {}
        for name, offset in offsets.items():
            path = folder / name
            if not path.exists():
                continue
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                f.seek(min(offset, size))
                files[name] = Chunk(min(offset, size), size + more, f.read())
        return FolderState(exists=True, files=files)


def _write(path: Path, chunk: Chunk) -> None:
    size = path.stat().st_size if path.exists() else 0
    if chunk.offset > size:
        return  # a gap: the holder's next chunk starts where its feed stands
    replaced = chunk.offset == 0 and size > chunk.size
    if not chunk.data and not replaced and path.exists():
        return  # nothing new: most ticks of a quiet job (no file opened)
    with open(path, "r+b" if path.exists() else "wb") as f:
        if replaced:
            f.truncate(0)
        f.seek(chunk.offset)
        f.write(chunk.data)
