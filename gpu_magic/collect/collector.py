"""Collect a finished job into the results store: list on the host, select, download verified.

The listing is SFTP only (``plan.list_remote``): nothing waits for a command. Small files come
home in tar streams, one per batch of names (one command for a usual job), each member
carrying the host's sha256 of its bytes, landed by ``tarstream``; big files one by one over
SFTP while the host hashes them on another channel (``download``). Either way a file becomes
visible only once its sha256 matches the host's, and the manifest says which files are here
(``sha256`` stays "" until a file is fetched and verified). ``checkpoints/`` is listed, never
fetched unasked: ``fetch_file`` brings one when it is loaded.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import ClusterConnectionError, RemoteCommandError, TransferError
from ..models import GPUJob
from ..transport.base import Transport
from .download import ATTEMPTS, download
from .plan import SMALL, RemoteFile, eager, hash_command, list_remote, selected, tar_commands
from .progress import TransferProgress
from .store import ResultsStore
from .tarstream import Sink, Wanted, receive


def collect(
    transport: Transport,
    interpreter: str,
    job: GPUJob,
    store: ResultsStore,
    progress: TransferProgress | None = None,
) -> dict:
    """Bring back what ``job``'s request selects; returns the (complete) manifest."""
    progress = progress or TransferProgress()
    files, refused = list_remote(transport, job)
    chosen = [f for f in files if selected(f, job)]
    manifest = {
        "job_id": job.id,
        "status": str(job.status),
        "complete": False,
        "files": [
            {"path": f.path, "size": f.size, "sha256": "", "kind": f.kind, "fetched": False}
            for f in chosen
        ],
        "refused": [{"path": p, "why": why} for p, why in refused],
    }
    store.write_manifest(job.id, manifest)
    todo = [f for f in chosen if eager(f, job)]
    progress.begin(sum(f.size for f in todo), len(todo))
    run = _Collection(transport, interpreter, job, store, manifest, progress)
    with ThreadPoolExecutor(1, thread_name_prefix="gpu_magic-tar") as pool:
        small = pool.submit(run.small, [f for f in todo if f.size < SMALL])
        for f in todo:  # big files meanwhile: each command's start-up hides under the other
            if f.size >= SMALL:
                run.one(f.path)
        small.result()
    manifest["complete"] = True
    store.write_manifest(job.id, manifest)
    return manifest


def fetch_file(
    transport: Transport,
    job: GPUJob,
    store: ResultsStore,
    rel: str,
    progress: TransferProgress | None = None,
    *,
    interpreter: str | None = None,
) -> Path:
    """The local copy of one listed file, downloaded now if it was not (``--fetch manual``).
    Without ``interpreter`` the host hashes it with ``sha256sum``."""
    manifest = store.manifest(job.id)
    entry = next((e for e in (manifest or {"files": []})["files"] if e["path"] == rel), None)
    if entry is None:
        raise TransferError(f"job {job.id} has no collected file {rel!r}")
    if not entry["fetched"]:
        progress = progress or TransferProgress()
        progress.begin(entry["size"], 1)
        _Collection(transport, interpreter, job, store, manifest, progress).one(rel)
    return store.path(job.id, rel)


class _Collection:
    """One collection's moving parts: where files go, the manifest, the progress."""

    def __init__(self, transport, interpreter, job, store, manifest, progress):
        self.transport: Transport = transport
        self.interpreter: str | None = interpreter
        self.job: GPUJob = job
        self.store: ResultsStore = store
        self.manifest: dict = manifest
        self.progress: TransferProgress = progress
        self.entries = {e["path"]: e for e in manifest["files"]}
        self._lock = threading.Lock()  # the tar thread and the big files share the manifest

    def one(self, rel: str) -> None:
        """One file over SFTP, verified against the host's sha256 (computed meanwhile)."""
        entry = self.entries[rel]
        remote = self._remote(rel)
        sha256 = entry["sha256"] or (lambda: self._host_sha256(remote))
        dest, partial = self.store.path(self.job.id, rel), self.store.partial(self.job.id, rel)
        p = self.progress
        digest = download(
            self.transport, remote, dest, partial, entry["size"], sha256, p.advance, p.rewind
        )
        self._landed(rel, digest)
        self._save()

    def small(self, files: list[RemoteFile]) -> None:
        """Small files in tar streams; a file the host left out comes by SFTP (or says why)."""
        if not files:
            return
        for command, rels in tar_commands(self.interpreter, self.job, [f.path for f in files]):
            left = self._tar_batch(command, rels)
            for rel in left:  # not in the stream (gone, or not a file any more): say why
                self.one(rel)

    def _tar_batch(self, command: str, rels: list[str]) -> list[str]:
        """Stream the batch; after a dropped connection or a failed command, again for what is
        still missing. A refused member or a broken stream is not retried: the host sent it."""
        wanted = {rel: self._wanted(rel) for rel in rels}
        sink = Sink(self.progress.advance, self.progress.rewind, self._landed)
        problem = ""
        try:
            for _ in range(ATTEMPTS):
                try:
                    with self.transport.stream_from(command) as stream:
                        receive(stream, wanted, sink)
                    return list(wanted)
                except (ClusterConnectionError, RemoteCommandError) as exc:
                    problem = _why(exc)
                    command = tar_commands(self.interpreter, self.job, list(wanted))[0][0]
                finally:
                    self._save()
        except TransferError as exc:
            raise TransferError(f"cannot collect job {self.job.id}: {exc}") from exc
        raise TransferError(
            f"cannot collect {len(wanted)} file(s) of job {self.job.id} from "
            f"{self.transport.label} after {ATTEMPTS} attempts: {problem}"
        )

    def _wanted(self, rel: str) -> Wanted:
        entry = self.entries[rel]
        dest, partial = self.store.path(self.job.id, rel), self.store.partial(self.job.id, rel)
        return Wanted(entry["size"], dest, partial)

    def _landed(self, rel: str, sha256: str) -> None:
        with self._lock:
            self.entries[rel].update(sha256=sha256, fetched=True)
        self.progress.file_done()

    def _save(self) -> None:
        with self._lock:
            self.store.write_manifest(self.job.id, self.manifest)

    def _host_sha256(self, remote: str) -> str:
        text = self.transport.run(hash_command(self.interpreter, remote)).check().text
        digest = text.split()[0] if text.split() else ""
        if len(digest) != 64:
            raise TransferError(f"{self.transport.label}: no sha256 for {remote}: {text[:200]!r}")
        return digest

    def _remote(self, rel: str) -> str:
        return f"{self.job.remote_dir.rstrip('/')}/{rel}"


def _why(exc: Exception) -> str:
    """The gist of a failure, without the command line (it carries the whole host script)."""
    if isinstance(exc, RemoteCommandError):
        return f"the host's tar exited with {exc.exit_code}: {exc.stderr.strip()[-300:]}"
    return str(exc)
