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
    GPUMagicError,
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
from .plan import (
    LISTING,
    SMALL,
    eager,
    essential,
    host_sha256,
    list_jobs,
    member_prefix,
    selected,
    tar_batches,
    tar_root,
)
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
    (outcome,) = collect_many(
        transport, interpreter, [job], store, {job.id: progress}, default_limit
    ).values()
    if isinstance(outcome, GPUMagicError):
        raise outcome
    return outcome


def collect_many(
    transport: Transport,
    interpreter: str,
    jobs: list[GPUJob],
    store: LocalResults,
    progress: dict[str, TransferProgress],
    default_limit: int | None = None,
) -> dict[str, dict | GPUMagicError]:
    """``collect`` for several jobs of one host whose folders share a parent, at the cost of
    one: one listing of the parent and one tar command for all their small files (and their
    big files' digests); the big files come one by one over SFTP meanwhile. Returns each job's
    complete manifest, or why it could not be collected (the others are not held back)."""
    listings = list_jobs(transport, jobs)
    runs = []
    for job in jobs:
        manifest, todo = _plan(job, store, listings[job.id], default_limit)
        run = _Collection(transport, interpreter, job, store, manifest, progress[job.id])
        run.plan(todo, member_prefix(job, jobs))
        runs.append(run)
    stream = _TarStream(transport, interpreter, tar_root(jobs), runs)
    failed: dict[str, GPUMagicError] = {}
    with ThreadPoolExecutor(1, thread_name_prefix="gpu_magic-tar") as pool:
        tar = pool.submit(stream.run)
        for run in runs:  # meanwhile: the command's start-up hides under the downloads
            try:
                for rel in run.big:
                    run.one(rel, stream.promised[run.prefix + rel])
            except GPUMagicError as exc:
                failed[run.job.id] = exc
        tar.result()  # a bug, not a host's failure: raised
    outcomes: dict[str, dict | GPUMagicError] = {}
    for run in runs:
        error = stream.failed.get(run.job.id) or failed.get(run.job.id)  # the stream says more
        if error is None:
            run.manifest["complete"] = True
            run.save()
        outcomes[run.job.id] = error or run.manifest
    return outcomes


def _plan(job: GPUJob, store: LocalResults, listing: tuple, default_limit) -> tuple[dict, list]:
    """A job's manifest, written (complete: False), and what to fetch now."""
    files, refused = listing
    chosen = [f for f in files if selected(f, job)]
    manifest = {
        "job_id": job.id,
        "status": str(job.status),
        "attempt": job.attempt,
        "complete": False,
        "files": [
            {"path": f.path, "size": f.size, "sha256": "", "kind": f.kind, "fetched": False}
            for f in chosen
        ],
        "refused": [{"path": p, "why": why} for p, why in refused],
    }
    store.write_manifest(job.id, manifest)
    return manifest, _fitting(
        [f for f in chosen if eager(f, job, default_limit)], store.root, manifest
    )


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
    """One job's collection: where its files go, its manifest, its progress; ``prefix`` names
    its files in a tar stream shared with other jobs ("" when it has the stream alone)."""

    def __init__(self, transport, interpreter, job, store, manifest, progress):
        self.transport: Transport = transport
        self.interpreter: str | None = interpreter
        self.job: GPUJob = job
        self.store: LocalResults = store
        self.manifest: dict = manifest
        self.progress: TransferProgress = progress
        self.entries = {e["path"]: e for e in manifest["files"]}
        self.prefix, self.small, self.big = "", [], []
        self._lock = threading.Lock()  # the tar thread and the big files share the manifest

    def plan(self, todo: list, prefix: str = "") -> None:
        """Fetch ``todo``: the small files in the tar stream, where ``prefix`` names them, the
        big ones over SFTP."""
        self.small = [f.path for f in todo if f.size < SMALL]
        self.big = [f.path for f in todo if f.size >= SMALL]
        self.prefix = prefix
        self.progress.begin(sum(f.size for f in todo), len(todo))

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
        self.landed(rel, digest)
        self.save()

    def wanted(self, rel: str) -> Wanted:
        entry = self.entries[rel]
        dest, partial = self.store.path(self.job.id, rel), self.store.partial(self.job.id, rel)
        return Wanted(entry["size"], dest, partial)

    def landed(self, rel: str, sha256: str) -> None:
        with self._lock:
            self.entries[rel].update(sha256=sha256, fetched=True)
        self.progress.file_done()

    def save(self) -> None:
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


class _TarStream:
    """The small files of one or more jobs' collections, and their big files' digests, in tar
    streams from one folder (``plan.tar_root``): one command for them all, more only past
    ``TAR_COMMAND_BYTES`` of names. Each member's bytes, landing and digest go to the job
    that owns it; a job whose files did not all come is in ``failed`` with why."""

    def __init__(self, transport: Transport, interpreter: str, root: str, runs: list[_Collection]):
        self.transport, self.interpreter, self.root = transport, interpreter, root
        self.owner = {run.prefix + rel: (run, rel) for run in runs for rel in run.small + run.big}
        self.small = [run.prefix + rel for run in runs for rel in run.small]
        self.promised = {run.prefix + rel: Future() for run in runs for rel in run.big}
        self.failed: dict[str, GPUMagicError] = {}  # job id -> why its files did not all come

    def run(self) -> None:
        """Every batch of names; each future in ``promised`` ends up with its digest, None (the
        downloads ask ``host_sha256``), or the refusal. A small file the host left out comes by
        SFTP (or says why)."""
        try:
            for _args, names, bigs in tar_batches(self.root, self.small, list(self.promised)):
                left = self._batch(names, {n: self.promised[n] for n in bigs})
                _settle({n: self.promised[n] for n in bigs}, None)  # not in the digests
                for name in left:  # not in the stream (gone, or not a file any more): say why
                    self._alone(name)
        except TransferError as exc:  # a later batch's downloads would only wait for it
            self._fail_all(exc)
            _settle(self.promised, Refused(f"the host's sha256 cannot be had: {exc}"))
        finally:
            _settle(self.promised, None)  # whatever else went wrong: they ask host_sha256

    def _alone(self, name: str) -> None:
        run, rel = self.owner[name]
        if run.job.id not in self.failed:
            try:
                run.one(rel)
            except GPUMagicError as exc:
                self.failed[run.job.id] = exc

    def _batch(self, names: list[str], promised: dict[str, Future]) -> list[str]:
        """Stream the batch; after a dropped connection or a failed command, again for what is
        still missing; after a job's transfer was stopped, again without it. A refused member
        or a broken stream is not retried: the host sent it. Returns the names the host left
        out."""
        wanted = {name: self._wanted(name) for name in names}
        pending = dict(promised)  # digests not heard yet
        runs = {self.owner[name][0] for name in (*wanted, *pending)}

        def heard(digests: dict[str, str]) -> None:
            for name, future in pending.items():
                future.set_result(digests.get(name))  # None: the host could not hash it
            pending.clear()

        sink = Sink(self._advance, self._rewind, self._landed, heard)
        problem, attempts = "", 0
        self._drop_failed(wanted, pending)
        while wanted or pending:
            if attempts == ATTEMPTS:
                _settle(pending, None)  # the downloads ask host_sha256
                raise TransferError(
                    f"cannot collect {len(wanted)} file(s) of {self._whose(wanted)} from "
                    f"{self.transport.label} after {ATTEMPTS} attempts: {problem}"
                )
            ((args, *_),) = tar_batches(self.root, list(wanted), list(pending))
            # what the tar brings: the small files, and a member of headers each (the digests)
            size = sum(w.size for w in wanted.values()) + MEMBER_BYTES * (len(wanted) + 1)
            try:
                stream_of = self.transport.stream_program
                with stream_of(LISTING, self.interpreter, args, size) as stream:
                    receive(stream, wanted, sink, set(pending))
                return list(wanted)
            except (ClusterConnectionError, RemoteCommandError) as exc:
                attempts, problem = attempts + 1, _why(exc)
            except TransferCancelled:  # a job's Stop: the others go on without it
                if not self._drop_failed(wanted, pending):
                    raise
            except TransferError as exc:
                raise TransferError(f"cannot collect {self._whose(wanted)}: {exc}") from exc
            finally:
                for run in runs:
                    run.save()
        return []  # it all arrived before the command failed, or its jobs were stopped

    def _drop_failed(self, wanted: dict[str, Wanted], pending: dict[str, Future]) -> bool:
        """Leave out the names of jobs that failed already (a Stop); whether there were any."""
        dropped = {name for name in (*wanted, *pending) if self._owner(name) in self.failed}
        for name in dropped:
            wanted.pop(name, None)
            future = pending.pop(name, None)
            if future is not None:
                future.set_exception(Refused("the collection was stopped"))
        return bool(dropped)

    def _fail_all(self, exc: TransferError) -> None:
        """Every job of the stream fails with ``exc``, unless it failed already: a stream that
        broke or sent what was refused is trusted for nothing more (each job is collected
        again, alone, on its next use)."""
        for run, _rel in self.owner.values():
            self.failed.setdefault(run.job.id, exc)

    def _whose(self, names) -> str:
        jobs = sorted({self._owner(name) for name in names} or {"?"})
        return f"job {jobs[0]}" if len(jobs) == 1 else f"jobs {', '.join(jobs)}"

    def _owner(self, name: str) -> str:
        return self.owner[name][0].job.id

    def _wanted(self, name: str) -> Wanted:
        run, rel = self.owner[name]
        return run.wanted(rel)

    def _advance(self, name: str, n: int) -> None:
        run = self.owner[name][0]
        try:
            run.progress.advance(n)
        except TransferCancelled as exc:
            self.failed[run.job.id] = exc
            raise

    def _rewind(self, name: str, n: int) -> None:
        self.owner[name][0].progress.rewind(n)

    def _landed(self, name: str, sha256: str) -> None:
        run, rel = self.owner[name]
        run.landed(rel, sha256)


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
