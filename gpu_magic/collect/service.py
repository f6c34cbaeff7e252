"""``ResultsService``: a finished job's results for the kernel, from the local results store.

Collection runs once per job (on a background thread when the job ends with ``--fetch auto``,
else on first use); afterwards outputs, files, the log and the traceback are read locally, so
they keep working after the host's job folder is gone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import results
from ..errors import GPUMagicError, JobStateError, TransferError
from ..models import GPUJob, JobStatus
from ..monitoring.feed import TAILED, JobFeed
from ..schedulers.folder_probe import Chunk, FolderState
from ..store import Deletion
from .collector import collect, fetch_files
from .loaders import load
from .plan import ERROR_FILE
from .progress import TransferProgress
from .series import PARSED_METRICS, metric_rows, write_csv
from .store import ResultsStore

if TYPE_CHECKING:  # pragma: no cover
    from ..api import Client


class ResultsService:
    """One per ``Client``; thread-safe (one collection at a time per job)."""

    def __init__(self, client: Client):
        self.client = client
        self.store = ResultsStore(client.settings.results_path)
        self._lock = threading.Lock()
        self._job_locks: dict[str, threading.Lock] = {}
        self._threads: list[threading.Thread] = []
        self.errors: dict[str, str] = {}  # job id -> why background collection failed
        self.cleanup_errors: dict[str, str] = {}  # cluster -> why its after-collect cleanup failed
        self._transfers: dict[str, TransferProgress] = {}

    def transfer(self, job_id: str) -> TransferProgress | None:
        """The job's collection or fetch in progress (or the last one), for progress bars."""
        return self._transfers.get(job_id)

    def _tracked(self, job_id: str, transfer: Callable[[TransferProgress], Any]) -> Any:
        """Run ``transfer`` with a fresh progress that observers can find and see end."""
        progress = self._transfers[job_id] = TransferProgress()
        try:
            result = transfer(progress)
        except GPUMagicError as exc:
            progress.end(error=str(exc))
            raise
        progress.end()
        return result

    def close(self, timeout: float) -> None:
        for thread in list(self._threads):
            thread.join(timeout=timeout)

    def collect_in_background(self, job_id: str) -> None:
        """Collect a job that just ended on a thread of its own (never blocks a monitor tick)."""

        def work():
            try:
                self.collect(job_id)
                self.errors.pop(job_id, None)
            except GPUMagicError as exc:  # the next access (job.files(), ...) tries again
                self.errors[job_id] = str(exc)

        thread = threading.Thread(target=work, name=f"gpu_magic-collect-{job_id}", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def collect(self, job_id: str, *, again: bool = False) -> dict:
        """The manifest of a finished job's collected results, collecting them first if needed;
        a fresh collection is followed by the cluster's cleanup when its policy asks for it."""
        job = self.client.store.find(job_id)
        with self._job_lock(job.id):
            manifest = self.store.manifest(job.id)
            if manifest is not None and manifest["complete"] and not again:
                return manifest
            job = self.client.job(job.id)
            if not job.is_terminal:
                raise JobStateError(f"job {job.id} is {job.status}; results come when it ends")
            self._refuse_if_remote_deleted(job.id, "collect its results")
            cluster = self.client.clusters.get(job.cluster)
            transport = self.client.transport(cluster)
            manifest = self._tracked(
                job.id, lambda p: collect(transport, cluster.interpreter, job, self.store, p)
            )
            self._save_series(job, manifest)
        self.errors.pop(job.id, None)
        self._cleanup_after_collect(job.cluster)  # outside the lock: it may touch this job
        return manifest

    def _cleanup_after_collect(self, cluster: str) -> None:
        """Never fails a collection: a cleanup problem is kept in ``cleanup_errors``."""
        from ..storage.cleanup import after_collect  # storage sits beside collect, not below

        try:
            plan = after_collect(self.client, cluster)
        except GPUMagicError as exc:
            self.cleanup_errors[cluster] = str(exc)
            return
        if plan is not None and plan.notes:
            self.cleanup_errors[cluster] = "; ".join(plan.notes)
        else:
            self.cleanup_errors.pop(cluster, None)

    def _save_series(self, job: GPUJob, manifest: dict) -> None:
        """Add the metric series parsed from the collected log as ``parsed_metrics.csv``."""
        rows = metric_rows(self.feed(job).metric_records())
        if not rows:
            return
        entry = write_csv(rows, self.store.folder(job.id) / PARSED_METRICS)
        manifest["files"] = [e for e in manifest["files"] if e["path"] != PARSED_METRICS]
        manifest["files"].append(entry)
        self.store.write_manifest(job.id, manifest)

    def _refuse_if_remote_deleted(self, job_id: str, what: str) -> None:
        deletion = self.client.store.remote_deleted(job_id)
        if deletion is not None:
            raise TransferError(
                f"cannot {what} of job {job_id}: a cleanup deleted its folder on the host "
                f"({deletion.rule}, {deletion.at:%Y-%m-%d %H:%M} UTC)"
            )

    def archive(self, job_id: str, rule: str = "%gpu_archive") -> Path:
        """Pack a finished job's local results (collected first if needed) into one archive,
        ``{results_dir}/{job_id}.tar.zst``; reads keep working from it. Returns its path.
        The loose files it removes are recorded as a deletion, ``rule`` saying why."""
        from ..storage.archive import archive_results

        job = self.client.store.find(job_id)
        self.collect(job.id)
        with self._job_lock(job.id):
            packed, loose = self._archive_info(job.id), self.store.loose_size(job.id)
            archive = archive_results(self.store, job.id)
            freed = loose - self.store.loose_size(job.id)
            repacked = self._archive_info(job.id) != packed
        if repacked:  # not when only the extraction cache of an archived job went
            folder, why = str(self.store.folder(job.id)), f"{rule}: packed into {archive.name}"
            self.client.store.record_deletion(
                Deletion(job.id, job.cluster, "local", folder, freed, why)
            )
        return archive

    def _archive_info(self, job_id: str) -> dict | None:
        return (self.store.manifest(job_id) or {}).get("archive")

    def remove_local(self, job_id: str) -> None:
        """Delete the job's local results (loose files and archive); the host copy stays."""
        with self._job_lock(job_id):
            self.store.remove(job_id)

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
        job = self.client.store.find(job_id)
        listed = {e["path"] for e in self.collect(job.id)["files"]}
        rels = [self._listed_path(job.id, listed, name) for name in names]
        with self._job_lock(job.id):
            manifest = self.store.manifest(job.id) or {"files": []}  # read once, not per name
            here = {e["path"] for e in manifest["files"] if e["fetched"]}
            missing = [rel for rel in rels if rel not in here]
            if missing:
                self._fetch(job, missing)
            return [self.store.local(job.id, rel) for rel in rels]

    def _fetch(self, job: GPUJob, rels: list[str]) -> None:
        self._refuse_if_remote_deleted(job.id, f"fetch {', '.join(rels)}")
        cluster = self.client.clusters.get(job.cluster)
        transport, python = self.client.transport(cluster), cluster.interpreter
        self._tracked(
            job.id, lambda p: fetch_files(transport, job, self.store, rels, p, interpreter=python)
        )

    @staticmethod
    def _listed_path(job_id: str, listed: set[str], name: str) -> str:
        rel = next((p for p in (name, f"outputs/{name}") if p in listed), None)
        if rel is None:
            raise TransferError(f"job {job_id} has no collected file {name!r} (see job.files())")
        return rel

    def load(self, job_id: str, name: str) -> Any:
        """A collected file loaded by its extension (numpy, torch, safetensors, pickle, JSON);
        any other file: its local path."""
        return load(self.local_path(job_id, name))

    def outputs(self, job_id: str) -> dict[str, Any]:
        """The ``--outputs`` variables of a completed job, from the results store."""
        job = self.client.job(job_id)
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
        job = self.client.job(job_id)
        fetched = {e["path"] for e in self.files(job.id) if e["fetched"]}
        values = {}
        for name in job.request.outputs:
            rel = f"outputs/{name}.pkl"
            if rel in fetched:
                data = self.store.local(job.id, rel).read_bytes()
                values[name] = results.unpickle(job, name, data)
        return values

    def raise_for_failure(self, job_id: str) -> None:
        """Raise why a job has no results: its remote traceback (the collected copy first)."""
        job = self.client.job(job_id)
        stored = self.store.read_text(job.id, ERROR_FILE) if job.is_terminal else None
        results.raise_for_failure(self.client.transport_of(job), job, stored)

    def collected_log(self, job: GPUJob) -> str | None:
        """The collected ``output.log`` of a finished job (None before collection)."""
        if not self._complete(job):
            return None
        return self.store.read_text(job.id, "output.log")

    def feed(self, job: GPUJob) -> JobFeed | None:
        """A finished, collected job's telemetry rebuilt from the store (None before)."""
        if not self._complete(job):
            return None
        feed = JobFeed(job)
        files = {}
        self.store.extract(job.id, TAILED)  # an archived job's telemetry, in one pass
        for name in TAILED:
            local = self.store.folder(job.id) / name
            data = local.read_bytes() if local.exists() else b""
            files[name] = Chunk(0, len(data), data)
        feed.apply(job, FolderState(exists=True, files=files))
        return feed

    def collected_files(self, job_id: str) -> list[dict] | None:
        """The manifest's files once collection is complete (None before); never starts one."""
        manifest = self.store.manifest(job_id)
        return manifest["files"] if manifest is not None and manifest["complete"] else None

    def _complete(self, job: GPUJob) -> bool:
        manifest = self.store.manifest(job.id) if job.is_terminal else None
        return manifest is not None and manifest["complete"]

    def _job_lock(self, job_id: str) -> threading.Lock:
        with self._lock:
            return self._job_locks.setdefault(job_id, threading.Lock())
