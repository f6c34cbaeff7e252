"""``ResultsService``: a finished job's results for the kernel, from the local results store.

Collection runs once per job (on a background thread when the job ends with ``--fetch auto``,
else on first use); afterwards outputs, files, the log and the traceback are read locally, so
they keep working after the host's job folder is gone.
"""

from __future__ import annotations

import posixpath
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from .config import Settings
from .errors import (
    GPUMagicError,
    JobStateError,
    RemoteJobError,
    ResultNotFoundError,
    TransferError,
)
from .hosts import Hosts
from .jobstore import Deletion, JobStore
from .models import GPUJob, JobStatus
from .monitoring.feed import TAILED, JobFeed
from .results import hostfolder
from .results.collector import collect_many, fetch_files
from .results.loaders import load
from .results.local import LocalResults
from .results.plan import ERROR_FILE
from .results.progress import TransferProgress
from .results.series import PARSED_METRICS, metric_rows, write_csv
from .schedulers.folder_probe import Chunk, FolderState
from .tracker import JobTracker


class ResultsService:
    """One per ``Client``; one collection at a time per job, across the threads of this process
    and the processes that share its results store (``_exclusive``). It sees the job store, the
    hosts and the tracker (for a job's fresh state), never the Client; ``on_collected``
    listeners hear of each fresh collection (the Client runs the cluster's cleanup there)."""

    def __init__(self, settings: Settings, jobs: JobStore, hosts: Hosts, tracker: JobTracker):
        self.settings, self.jobs, self.hosts, self.tracker = settings, jobs, hosts, tracker
        self.local = LocalResults(settings.results_path)
        self._lock = threading.Lock()
        self._job_locks: dict[str, threading.Lock] = {}
        self._threads: list[threading.Thread] = []
        self._queued: dict[str, list[str]] = {}  # cluster -> ended jobs waiting for collection
        self._draining: set[str] = set()  # clusters whose collection thread runs
        self._collected: list[Callable[[str], None]] = []
        self._parsed: Callable[[str, dict[str, int]], JobFeed | None] | None = None
        self.errors: dict[str, str] = {}  # job id -> why background collection failed
        self._transfers: dict[str, TransferProgress] = {}
        self._moved = 0  # bytes of transfers no longer in _transfers

    def on_collected(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(cluster)`` after each fresh collection of a job of that cluster."""
        self._collected.append(listener)

    def telemetry_from(self, parsed: Callable[[str, dict[str, int]], JobFeed | None]) -> None:
        """Where a collected job's log may be parsed already: ``parsed(job_id, sizes)`` gives a
        feed that read exactly ``sizes`` bytes of each tailed file (the monitor's), else None.
        Parsing a log again costs ~90 ms per 320 KiB, at every job's end."""
        self._parsed = parsed

    def bytes_moved(self) -> int:
        """Bytes the collections and fetches of this process have brought home so far."""
        return self._moved + sum(p.snapshot().done for p in list(self._transfers.values()))

    def transfer(self, job_id: str) -> TransferProgress | None:
        """The job's collection or fetch in progress (or the last one), for progress bars."""
        return self._transfers.get(job_id)

    def _tracked(self, job_ids: list[str], transfer: Callable[[dict], dict]) -> dict:
        """Run ``transfer`` with a fresh progress per job that observers can find and see end;
        it returns each job's outcome (an error for a job it failed)."""
        progress = {}
        for job_id in job_ids:
            previous = self._transfers.get(job_id)
            if previous is not None:  # its bytes stay counted
                self._moved += previous.snapshot().done
            progress[job_id] = self._transfers[job_id] = TransferProgress()
        outcomes: dict = {}
        try:
            outcomes = transfer(progress)
        except GPUMagicError as exc:
            outcomes = dict.fromkeys(job_ids, exc)
            raise
        finally:
            for job_id, p in progress.items():
                outcome = outcomes.get(job_id, "interrupted")
                p.end(error=None if isinstance(outcome, dict) else str(outcome))
        return outcomes

    def close(self, timeout: float) -> None:
        for thread in list(self._threads):
            thread.join(timeout=timeout)

    def collect_in_background(self, job_id: str) -> None:
        """Collect a job that just ended, on a thread (never blocks a monitor tick). Jobs of a
        cluster that end while a collection there runs wait for it, then go together: one
        listing and one tar command for them all, however many ended."""
        cluster = self.jobs.find(job_id).cluster
        with self._lock:
            queue = self._queued.setdefault(cluster, [])
            queue.append(job_id)
            if len(queue) > 1 or cluster in self._draining:
                return  # the cluster's thread takes it
            self._draining.add(cluster)
            thread = threading.Thread(
                target=self._drain,
                args=(cluster,),
                name=f"gpu_magic-collect-{cluster}",
                daemon=True,
            )
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _drain(self, cluster: str) -> None:
        """Collect what ended on ``cluster`` until nothing more has."""
        while True:
            with self._lock:
                job_ids = self._queued.pop(cluster, [])
                if not job_ids:
                    self._draining.discard(cluster)
                    return
            try:
                self.collect_many(job_ids)
            except GPUMagicError as exc:  # the next access (job.files(), ...) tries again
                for job_id in job_ids:
                    self.errors[job_id] = str(exc)

    def collect(self, job_id: str, *, again: bool = False) -> dict:
        """The manifest of a finished job's collected results, collecting them first if needed;
        a fresh collection is told to the ``on_collected`` listeners."""
        (outcome,) = self.collect_many([job_id], again=again).values()
        if isinstance(outcome, GPUMagicError):
            raise outcome
        return outcome

    def collect_many(self, job_ids: list[str], *, again: bool = False) -> dict:
        """``collect`` for several jobs: those of one cluster (and one parent folder there)
        in one collection (``collector.collect_many``). Returns each job's manifest, or the
        error that kept it from being collected; ``errors`` keeps the latter too."""
        jobs = list({job.id: job for job in map(self.jobs.find, job_ids)}.values())
        outcomes: dict[str, dict | GPUMagicError] = {}
        with ExitStack() as held:
            for job in sorted(jobs, key=lambda j: j.id):  # one order: no two threads deadlock
                held.enter_context(self._exclusive(job.id))
            todo = []
            for job in jobs:
                try:
                    outcomes[job.id] = self._collected_already(job, again)
                except GPUMagicError as exc:
                    outcomes[job.id] = exc
                if outcomes[job.id] is None:
                    todo.append(self.tracker.job(job.id))
            for group in _same_folder(todo):
                try:
                    outcomes.update(self._collect_group(group))
                except GPUMagicError as exc:  # the listing: none of the group came
                    outcomes.update(dict.fromkeys([job.id for job in group], exc))
        for job in todo:
            self._note(job.id, outcomes[job.id])
        fresh = {job.cluster for job in todo if isinstance(outcomes[job.id], dict)}
        for cluster in sorted(fresh):
            for listener in list(self._collected):  # outside the locks: it may touch a job
                listener(cluster)
        return {job_id: outcomes[self.jobs.find(job_id).id] for job_id in job_ids}

    def _collected_already(self, job: GPUJob, again: bool) -> dict | None:
        """The complete manifest (None: collect now); raises when the job cannot be."""
        manifest = self.local.manifest(job.id)
        if _current(manifest, job) and not again:
            return manifest
        job = self.tracker.job(job.id)
        if not job.is_terminal:
            raise JobStateError(f"job {job.id} is {job.status}; results come when it ends")
        self._refuse_if_remote_deleted(job.id, "collect its results")
        return None

    def _collect_group(self, jobs: list[GPUJob]) -> dict:
        host = self.hosts.of(jobs[0])
        transport, python = host.transport, host.config.interpreter
        limit = self.settings.gpu_magic_fetch_limit
        outcomes = self._tracked(
            [job.id for job in jobs],
            lambda p: collect_many(transport, python, jobs, self.local, p, limit),
        )
        for job in jobs:
            if isinstance(outcomes[job.id], dict):
                self._save_series(job, outcomes[job.id])
        return outcomes

    def _note(self, job_id: str, outcome: dict | GPUMagicError) -> None:
        """Keep why a job's results are missing, where errors show (a disk too full too)."""
        if isinstance(outcome, GPUMagicError):
            self.errors[job_id] = str(outcome)
        elif outcome.get("not_fetched"):
            self.errors[job_id] = outcome["not_fetched"]
        else:
            self.errors.pop(job_id, None)

    def _save_series(self, job: GPUJob, manifest: dict) -> None:
        """Add the metric series parsed from the collected log as ``parsed_metrics.csv``."""
        sizes = dict.fromkeys(TAILED, 0)
        sizes.update({e["path"]: e["size"] for e in manifest["files"] if e["path"] in sizes})
        feed = self._parsed(job.id, sizes) if self._parsed is not None else None
        rows = metric_rows((feed or self.feed(job)).metric_records())
        if not rows:
            return
        entry = write_csv(rows, self.local.folder(job.id) / PARSED_METRICS)
        manifest["files"] = [e for e in manifest["files"] if e["path"] != PARSED_METRICS]
        manifest["files"].append(entry)
        self.local.write_manifest(job.id, manifest)

    def _refuse_if_remote_deleted(self, job_id: str, what: str) -> None:
        deletion = self.jobs.remote_deleted(job_id)
        if deletion is not None:
            raise TransferError(
                f"cannot {what} of job {job_id}: a cleanup deleted its folder on the host "
                f"({deletion.rule}, {deletion.at:%Y-%m-%d %H:%M} UTC)"
            )

    def archive(self, job_id: str, rule: str = "%gpu_archive") -> Path:
        """Pack a finished job's local results (collected first if needed) into one archive,
        ``{results_dir}/{job_id}.tar.zst``; reads keep working from it. Returns its path.
        The loose files it removes are recorded as a deletion, ``rule`` saying why."""
        from .results.archive import archive_results

        job = self.jobs.find(job_id)
        self.collect(job.id)
        with self._exclusive(job.id):
            packed, loose = self._archive_info(job.id), self.local.loose_size(job.id)
            archive = archive_results(self.local, job.id)
            freed = loose - self.local.loose_size(job.id)
            repacked = self._archive_info(job.id) != packed
        if repacked:  # not when only the extraction cache of an archived job went
            folder, why = str(self.local.folder(job.id)), f"{rule}: packed into {archive.name}"
            self.jobs.record_deletion(Deletion(job.id, job.cluster, "local", folder, freed, why))
        return archive

    def _archive_info(self, job_id: str) -> dict | None:
        return (self.local.manifest(job_id) or {}).get("archive")

    def remove_local(self, job_id: str) -> None:
        """Delete the job's local results (loose files and archive); the host copy stays."""
        with self._exclusive(job_id):
            self.local.remove(job_id)

    def files(self, job_id: str) -> list[dict]:
        """The collected files: path, size, sha256, kind and whether it is here (fetched)."""
        return self.collect(job_id)["files"]

    def local_path(self, job_id: str, name: str) -> Path:
        """The local copy of a collected file (``outputs/`` may be left out), fetched if needed."""
        (path,) = self.local_paths(job_id, [name])
        return path

    def local_paths(self, job_id: str, names: list[str]) -> list[Path]:
        """The local copies of collected files (see ``local_path``); those not here are fetched
        under one progress, so ``%gpu_fetch JOB A B`` shows one bar."""
        job = self.jobs.find(job_id)
        listed = {e["path"] for e in self.collect(job.id)["files"]}
        rels = [self._listed_path(job.id, listed, name) for name in names]
        with self._exclusive(job.id):
            manifest = self.local.manifest(job.id) or {"files": []}  # read once, not per name
            here = {e["path"] for e in manifest["files"] if e["fetched"]}
            missing = [rel for rel in rels if rel not in here]
            if missing:
                self._fetch(job, missing)
            return [self.local.local(job.id, rel) for rel in rels]

    def _fetch(self, job: GPUJob, rels: list[str]) -> None:
        self._refuse_if_remote_deleted(job.id, f"fetch {', '.join(rels)}")
        host = self.hosts.of(job)
        transport, python = host.transport, host.config.interpreter

        def fetch(progress: dict[str, TransferProgress]) -> dict:
            fetch_files(transport, job, self.local, rels, progress[job.id], interpreter=python)
            return {job.id: {}}

        self._tracked([job.id], fetch)

    @staticmethod
    def _listed_path(job_id: str, listed: set[str], name: str) -> str:
        rel = next((p for p in (name, f"outputs/{name}") if p in listed), None)
        if rel is None:
            raise ResultNotFoundError(
                f"job {job_id} has no collected file {name!r} (see job.files())"
            )
        return rel

    def load(self, job_id: str, name: str, *, unsafe: bool = False) -> Any:
        """A collected file loaded by its extension (numpy, torch, safetensors, pickle, JSON);
        any other file: its local path. See ``loaders`` for what ``unsafe`` allows."""
        job = self.jobs.find(job_id)
        trusted = self._trusted(job, name, unsafe)
        return load(self.local_path(job_id, name), trusted=trusted, unsafe=unsafe)

    def _trusted(self, job: GPUJob, file: str, unsafe: bool = False) -> bool:
        """Whether ``job``'s cluster is trusted; a load from one that is not, and a load the
        user asked to make unsafely, are trust decisions the audit log keeps."""
        host = self.hosts.of(job)
        if unsafe or not host.config.trusted:
            decision = "unsafe load asked for" if unsafe else "cluster not trusted: no unpickling"
            host.audit.record("trust", jobs=[job.id], decision=decision, file=file)
        return host.config.trusted

    def outputs(self, job_id: str) -> dict[str, Any]:
        """The ``--outputs`` variables of a completed job, from the results store."""
        job = self.tracker.job(job_id)
        if job.status != JobStatus.COMPLETED:
            self.raise_for_failure(job.id)
        values = self.saved_outputs(job.id)
        missing = [name for name in job.request.outputs if name not in values]
        if missing:
            raise TransferError(f"job {job.id} did not write its output {missing[0]!r}")
        return values

    def saved_outputs(self, job_id: str) -> dict[str, Any]:
        """The ``--outputs`` variables the job saved, whatever its end (a failed cell saves
        none; a missing output name leaves the others saved); collected first if needed."""
        job = self.tracker.job(job_id)
        fetched = {e["path"] for e in self.files(job.id) if e["fetched"]}
        values = {}
        for name in job.request.outputs:
            rel = f"outputs/{name}.pkl"
            if rel in fetched:
                data = self.local.local(job.id, rel).read_bytes()
                values[name] = hostfolder.unpickle(job, name, data, self._trusted(job, rel))
        return values

    def raise_for_failure(self, job_id: str) -> None:
        """Raise why a job has no results: its remote traceback (the collected copy first)."""
        job = self.tracker.job(job_id)
        hostfolder.raise_for_failure(self.hosts.of(job).transport, job, self._remote_error(job))

    def remote_error(self, job_id: str) -> RemoteJobError | None:
        """The exception the cell raised on the host (the collected copy first, so it outlives
        the remote folder); None while the job runs or when the cell raised nothing."""
        return self._remote_error(self.tracker.job(job_id))

    def _remote_error(self, job: GPUJob) -> RemoteJobError | None:
        if not job.is_terminal:
            return None
        stored = self.local.read_text(job.id, ERROR_FILE)
        if stored:
            return hostfolder.error_from_json(job, stored)
        return hostfolder.remote_error(self.hosts.of(job).transport, job)

    def collected_log(self, job: GPUJob) -> str | None:
        """The collected ``output.log`` of a finished job (None before collection)."""
        if not self._complete(job):
            return None
        return self.local.read_text(job.id, "output.log")

    def feed(self, job: GPUJob) -> JobFeed | None:
        """A finished, collected job's telemetry rebuilt from the store (None before)."""
        if not self._complete(job):
            return None
        feed = JobFeed(job)
        files = {}
        self.local.extract(job.id, TAILED)  # an archived job's telemetry, in one pass
        for name in TAILED:
            local = self.local.folder(job.id) / name
            data = local.read_bytes() if local.exists() else b""
            files[name] = Chunk(0, len(data), data)
        feed.apply(job, FolderState(exists=True, files=files))
        return feed

    def collected_files(self, job_id: str) -> list[dict] | None:
        """The manifest's files once collection is complete (None before); never starts one."""
        manifest = self.local.manifest(job_id)
        return manifest["files"] if manifest is not None and manifest["complete"] else None

    def _complete(self, job: GPUJob) -> bool:
        return job.is_terminal and _current(self.local.manifest(job.id), job)

    @contextmanager
    def _exclusive(self, job_id: str) -> Iterator[None]:
        """One writer of a job's local results at a time: among this process's threads (a lock)
        and among the processes that share the results store (``LocalResults.writing``)."""
        with self._lock:
            lock = self._job_locks.setdefault(job_id, threading.Lock())
        with lock, self.local.writing(job_id):
            yield


def _current(manifest: dict | None, job: GPUJob) -> bool:
    """Whether ``manifest`` is a complete collection of the job's latest attempt (a job run
    again after it ended is collected again; a manifest from before attempts: the first)."""
    return (
        manifest is not None and manifest["complete"] and manifest.get("attempt", 1) == job.attempt
    )


def _same_folder(jobs: list[GPUJob]) -> list[list[GPUJob]]:
    """``jobs`` in groups that one collection can take: one cluster, one parent folder."""
    groups: dict[tuple[str, str], list[GPUJob]] = {}
    for job in jobs:
        parent = posixpath.dirname(job.remote_dir.rstrip("/"))
        groups.setdefault((job.cluster, parent), []).append(job)
    return list(groups.values())
