"""Collect a finished job into the results store: list on the host, select, download verified.

The listing is SFTP only (``plan.list_remote``): nothing waits for a command. Small files come
home in tar streams, one per batch of names (one command for a usual job), each member
carrying the host's sha256 of its bytes, landed by ``tarstream``; big files one by one over
SFTP (``download``) while that same tar command hashes them on the host and reports their
sha256s in a final member, which the downloads wait for: one command per collection (only
big files: a tar of that member alone). A big file whose digest the stream did not bring
(the host could not read it, or the command failed) asks ``host_sha256``; a refused stream
ends its downloads too. ``fetch_files`` asks ``host_sha256``. Either way a file becomes
visible only once its sha256 matches the host's, and the manifest says which files are here
(``sha256`` stays "" until a file is fetched and verified). ``checkpoints/`` is listed, never
fetched unasked: ``fetch_files`` brings one when it is loaded.
"""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ..errors import (
    ClusterConnectionError,
    RemoteCommandError,
    ResultNotFoundError,
    TransferCancelled,
    TransferError,
)
from ..formatting import size
from ..models import GPUJob
from ..transport.base import Transport
from .download import ATTEMPTS, Refused, download
from .local import LocalResults
from .plan import SMALL, eager, essential, host_sha256, list_remote, selected, tar_commands
from .progress import TransferProgress
from .tarstream import Sink, Wanted, receive

SPARE_BYTES = 512 * 1024 * 1024
"""Left free on the local disk by an automatic collection (the kernel, the store, the OS)."""
MEMBER_BYTES = 2048
"""A tar member's headers and padding, about: pax headers with the sha256, 512-byte blocks."""


def _fitting(todo: list, root, manifest: dict) -> list:
    """``todo`` if it fits on the disk of ``root``; else the essentials only, and why."""
    needed = sum(f.size for f in todo)
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    if needed <= free - SPARE_BYTES:
        return todo
    kept = [f for f in todo if essential(f)]
    left = [f for f in todo if not essential(f)]
    manifest["not_fetched"] = (
        f"{len(left)} files ({size(sum(f.size for f in left))}) were not fetched: they need "
        f"more than the {size(max(0, free - SPARE_BYTES))} free at {root} (keeping "
        f"{size(SPARE_BYTES)} spare); job.load(NAME) fetches one when there is room"
    )
    return kept


def collect(
    transport: Transport,
    interpreter: str,
    job: GPUJob,
    store: LocalResults,
    progress: TransferProgress | None = None,
    default_limit: int | None = None,
) -> dict:
    """Bring back what ``job``'s request selects; returns the (complete) manifest. What does
    not fit on the local disk (keeping ``SPARE_BYTES`` free) is listed, not fetched: the
    manifest's ``not_fetched`` says why, and ``job.load`` fetches a file when there is room."""
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
    todo = _fitting([f for f in chosen if eager(f, job, default_limit)], store.root, manifest)
    progress.begin(sum(f.size for f in todo), len(todo))
    run = _Collection(transport, interpreter, job, store, manifest, progress)
    small = [f.path for f in todo if f.size < SMALL]
    big = [f.path for f in todo if f.size >= SMALL]
    promised = {rel: Future() for rel in big}  # the host's sha256s, from the tar stream
    with ThreadPoolExecutor(1, thread_name_prefix="gpu_magic-tar") as pool:
        tar = pool.submit(run.tar, small, promised)
        try:
            for rel in big:  # meanwhile: the command's start-up hides under the downloads
                run.one(rel, promised[rel])
        except BaseException:
            if tar.exception() is not None:  # the stream's own failure says more
                raise tar.exception() from None
            raise
        tar.result()
    manifest["complete"] = True
    store.write_manifest(job.id, manifest)
    return manifest


def fetch_files(
    transport: Transport,
    job: GPUJob,
    store: LocalResults,
    rels: list[str],
    progress: TransferProgress | None = None,
    *,
    interpreter: str | None = None,
) -> list[Path]:
    """The local copies of listed files; those not here (``--fetch manual``) are downloaded now,
    one after another under one ``progress``. Without ``interpreter`` the host hashes them with
    ``sha256sum``."""
    manifest = store.manifest(job.id) or {"files": []}
    entries = {e["path"]: e for e in manifest["files"]}
    unknown = [rel for rel in rels if rel not in entries]
    if unknown:
        raise ResultNotFoundError(f"job {job.id} has no collected file {unknown[0]!r}")
    todo = list(dict.fromkeys(rel for rel in rels if not entries[rel]["fetched"]))
    if todo:
        progress = progress or TransferProgress()
        progress.begin(sum(entries[rel]["size"] for rel in todo), len(todo))
        run = _Collection(transport, interpreter, job, store, manifest, progress)
        for rel in todo:
            run.one(rel)
    return [store.path(job.id, rel) for rel in rels]


def fetch_file(
    transport: Transport,
    job: GPUJob,
    store: LocalResults,
    rel: str,
    progress: TransferProgress | None = None,
    *,
    interpreter: str | None = None,
) -> Path:
    """The local copy of one listed file (see ``fetch_files``)."""
    (path,) = fetch_files(transport, job, store, [rel], progress, interpreter=interpreter)
    return path


class _Collection:
    """One collection's moving parts: where files go, the manifest, the progress."""

    def __init__(self, transport, interpreter, job, store, manifest, progress):
        self.transport: Transport = transport
        self.interpreter: str | None = interpreter
        self.job: GPUJob = job
        self.store: LocalResults = store
        self.manifest: dict = manifest
        self.progress: TransferProgress = progress
        self.entries = {e["path"]: e for e in manifest["files"]}
        self._lock = threading.Lock()  # the tar thread and the big files share the manifest

    def one(self, rel: str, promised: Future | None = None) -> None:
        """One file over SFTP, verified against the host's sha256, computed meanwhile: the one
        ``promised`` (by the tar stream) or, when that brought none or after a mismatch (the
        file may have changed), ``host_sha256``'s."""
        entry = self.entries[rel]
        remote = self._remote(rel)
        waiting = [promised]

        def host_sha256() -> str:
            future, waiting[0] = waiting[0], None
            return (future.result() if future else None) or self._host_sha256(remote)

        sha256 = entry["sha256"] or host_sha256
        dest, partial = self.store.path(self.job.id, rel), self.store.partial(self.job.id, rel)
        p = self.progress
        digest = download(
            self.transport, remote, dest, partial, entry["size"], sha256, p.advance, p.rewind
        )
        self._landed(rel, digest)
        self._save()

    def tar(self, small: list[str], promised: dict[str, Future]) -> None:
        """Small files and the big ones' digests in tar streams (each future in ``promised``
        ends up with its digest, None, or the refusal); a small file the host left out comes
        by SFTP (or says why)."""
        try:
            batches = tar_commands(self.interpreter, self.job, small, list(promised))
            for command, rels, bigs in batches:
                left = self._tar_batch(command, rels, {rel: promised[rel] for rel in bigs})
                _settle({rel: promised[rel] for rel in bigs}, None)  # not in the digests
                for rel in left:  # not in the stream (gone, or not a file any more): say why
                    self.one(rel)
        except TransferError as exc:  # a later batch's downloads would only wait for it
            _settle(promised, Refused(f"the host's sha256 cannot be had: {exc}"))
            raise
        finally:
            _settle(promised, None)  # whatever else went wrong: they ask host_sha256

    def _tar_batch(self, command: str, rels: list[str], promised: dict[str, Future]) -> list[str]:
        """Stream the batch; after a dropped connection or a failed command, again for what is
        still missing. A refused member or a broken stream is not retried: the host sent it."""
        wanted = {rel: self._wanted(rel) for rel in rels}
        pending = dict(promised)  # digests not heard yet

        def heard(digests: dict[str, str]) -> None:
            for rel, future in pending.items():
                future.set_result(digests.get(rel))  # None: the host could not hash it
            pending.clear()

        sink = Sink(self.progress.advance, self.progress.rewind, self._landed, heard)
        # what the tar brings: the small files, and a member of headers each (the digests too)
        size = sum(self.entries[rel]["size"] for rel in rels) + MEMBER_BYTES * (len(rels) + 1)
        problem = ""
        try:
            for _ in range(ATTEMPTS):
                try:
                    with self.transport.stream_from(command, size_hint=size) as stream:
                        receive(stream, wanted, sink, set(pending))
                    return list(wanted)
                except (ClusterConnectionError, RemoteCommandError) as exc:
                    problem = _why(exc)
                    if not wanted and not pending:
                        return []  # it all arrived before the command failed
                    ((command, *_),) = tar_commands(
                        self.interpreter, self.job, list(wanted), list(pending)
                    )
                finally:
                    self._save()
        except TransferCancelled:
            _settle(pending, Refused("the collection was stopped"))
            raise
        except TransferError as exc:
            error = TransferError(f"cannot collect job {self.job.id}: {exc}")
            _settle(pending, Refused(f"the host's sha256 cannot be had: {error}"))
            raise error from exc
        _settle(pending, None)  # the downloads ask host_sha256
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
        text = host_sha256(self.transport, self.interpreter, remote).check().text
        digest = text.split()[0] if text.split() else ""
        if len(digest) != 64:
            raise TransferError(f"{self.transport.label}: no sha256 for {remote}: {text[:200]!r}")
        return digest

    def _remote(self, rel: str) -> str:
        return f"{self.job.remote_dir.rstrip('/')}/{rel}"


def _settle(promised: dict[str, Future], outcome: str | Exception | None) -> None:
    """Each future not done yet gets ``outcome`` (only the tar thread settles them)."""
    for future in promised.values():
        if not future.done():
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


def _why(exc: Exception) -> str:
    """The gist of a failure, without the command line (it carries the whole host script)."""
    if isinstance(exc, RemoteCommandError):
        return f"the host's tar exited with {exc.exit_code}: {exc.stderr.strip()[-300:]}"
    return str(exc)
