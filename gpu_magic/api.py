"""The composition root: picks a transport and a scheduler per cluster and runs the job life cycle.

Importable without IPython, ipywidgets or jupyter_server (the server extension and tests use it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import collect, results, submission
from .clusters import ClusterConfig, ClusterRegistry
from .config import Settings
from .errors import (
    GPUMagicError,
    InvalidRequestError,
    JobStateError,
    SchedulerError,
    TransferError,
    WaitTimeoutError,
)
from .handle import JobHandle
from .models import GPUJob, GPUJobRequest, JobStatus
from .monitoring.feed import TAILED, JobFeed
from .monitoring.monitor import Monitor
from .packaging.upload import upload_bundle
from .parsers.levels import LineFilter
from .schedulers import Observation, ProcessScheduler, Scheduler, SlurmScheduler
from .schedulers.folder_probe import Chunk, FolderState
from .store import JobStore
from .transport import LocalTransport, Transport


class Client:
    """One per kernel (see ``default_client``); thread-safe."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.clusters = ClusterRegistry(self.settings)
        self.store = JobStore(self.settings.store_path)
        self._transports: dict[str, Transport] = {}
        self._schedulers: dict[str, tuple[ClusterConfig, Scheduler]] = {}
        self._lock = threading.Lock()
        self._monitor: Monitor | None = None
        self.results = collect.ResultsStore(self.settings.results_path)
        self._collect_locks: dict[str, threading.Lock] = {}
        self._collectors: list[threading.Thread] = []
        self.collect_errors: dict[str, str] = {}  # job id -> why background collection failed

    # -- wiring -------------------------------------------------------------------------------
    def transport(self, cluster: ClusterConfig) -> Transport:
        with self._lock:
            if cluster.name not in self._transports:
                self._transports[cluster.name] = self._make_transport(cluster)
            return self._transports[cluster.name]

    def _make_transport(self, cluster: ClusterConfig) -> Transport:
        if cluster.is_local:
            return LocalTransport()
        from .transport.ssh import SSHTransport  # paramiko loads only when a host needs it

        return SSHTransport(cluster, self.settings)

    def scheduler(self, cluster: ClusterConfig) -> Scheduler:
        """One per cluster and config: a Slurm scheduler remembers whether sacct works there."""
        transport = self.transport(cluster)
        with self._lock:
            known = self._schedulers.get(cluster.name)
            if known is None or known[0] != cluster or known[1].transport is not transport:
                if cluster.scheduler == "slurm":
                    made = SlurmScheduler(transport, cluster.interpreter, cluster.slurm)
                else:
                    made = ProcessScheduler(transport, cluster.interpreter)
                known = self._schedulers[cluster.name] = (cluster, made)
            return known[1]

    @property
    def monitor(self) -> Monitor:
        """The kernel's background monitor (created on first use)."""
        with self._lock:
            if self._monitor is None:
                self._monitor = Monitor(self)
            return self._monitor

    def close(self) -> None:
        if self._monitor is not None:
            self._monitor.stop()
        for thread in list(self._collectors):
            thread.join(timeout=self.settings.ssh_connection_timeout)
        with self._lock:
            for transport in self._transports.values():
                transport.close()
            self._transports.clear()
            self._schedulers.clear()

    # -- life cycle ---------------------------------------------------------------------------
    def submit(
        self,
        request: GPUJobRequest,
        namespace: Mapping[str, Any] | None = None,
        *,
        cwd: Path | None = None,
        say: Callable[[str], None] | None = None,
    ) -> JobHandle:
        cluster = self.clusters.get(request.cluster)
        self._check_capacity(cluster)
        bundle = submission.package(request, namespace or {}, cluster, cwd)
        submission.announce(bundle, cluster, say)
        transport = self.transport(cluster)
        base = submission.remote_base(transport, cluster)
        job = submission.new_job(bundle, request, cluster, base)
        self.store.insert(job)
        job = self._save(submission.mark(job, JobStatus.UPLOADING))
        try:
            upload_bundle(transport, bundle, results.folder_of(job))
            launched = self.scheduler(cluster).submit(job, results.folder_of(job))
        except GPUMagicError as exc:
            self._save(submission.mark(job, JobStatus.FAILED, error=str(exc)), reason=str(exc))
            raise
        job = submission.mark(job, launched.status, scheduler_id=launched.scheduler_id)
        self._save(job, reason=launched.reason or "launched")
        return JobHandle(self, job.id)

    def _check_capacity(self, cluster: ClusterConfig) -> None:
        active = self.store.count_active(cluster.name)
        if active >= self.settings.max_concurrent_jobs:
            raise SchedulerError(
                f"{active} jobs are already active on cluster {cluster.name!r} "
                f"(max_concurrent_jobs={self.settings.max_concurrent_jobs}); "
                "wait for one to finish or cancel one"
            )

    def _save(self, job: GPUJob, reason: str | None = None) -> GPUJob:
        self.store.update(job, reason=reason)
        return job

    def refresh(self, jobs: list[GPUJob]) -> list[GPUJob]:
        """Poll every active job among ``jobs``, one round trip per cluster, and store changes."""
        fresh = {job.id: job for job in jobs}
        by_cluster: dict[str, list[GPUJob]] = {}
        for job in jobs:
            if not job.is_terminal and job.status not in (JobStatus.PENDING, JobStatus.UPLOADING):
                by_cluster.setdefault(job.cluster, []).append(job)
        for name, active in by_cluster.items():
            cluster = self.clusters.get(name)
            observed = self.scheduler(cluster).poll(active)
            for job in active:
                if job.id in observed:
                    fresh[job.id] = self.record(cluster, job, observed[job.id])
        return [fresh[job.id] for job in jobs]

    def record(self, cluster: ClusterConfig, job: GPUJob, seen: Observation) -> GPUJob:
        """Store what a poll saw; a newly failed job also gets its remote error summary."""
        updated = submission.observe(job, seen)
        if updated == job:
            return job
        if updated.status == JobStatus.FAILED and job.status != JobStatus.FAILED:
            remote = results.remote_error(self.transport(cluster), updated)
            if remote is not None:
                updated = updated.model_copy(
                    update={"error": f"{remote.exc_type}: {remote.remote_message}"}
                )
        saved = self._save(updated, reason=seen.reason)
        if saved.is_terminal and not job.is_terminal and saved.request.fetch == "auto":
            self._collect_in_background(saved.id)
        return saved

    # -- results ------------------------------------------------------------------------------
    def _collect_in_background(self, job_id: str) -> None:
        """Collect a job that just ended on a thread of its own (never blocks a monitor tick)."""

        def work():
            try:
                self.collect(job_id)
                self.collect_errors.pop(job_id, None)
            except GPUMagicError as exc:  # the next access (job.files(), ...) tries again
                self.collect_errors[job_id] = str(exc)

        thread = threading.Thread(target=work, name=f"gpu_magic-collect-{job_id}", daemon=True)
        with self._lock:
            self._collectors = [t for t in self._collectors if t.is_alive()] + [thread]
        thread.start()

    def collect(self, job_id: str, *, again: bool = False) -> dict:
        """The manifest of a finished job's collected results, collecting them first if needed."""
        job = self.store.find(job_id)
        with self._lock:
            lock = self._collect_locks.setdefault(job.id, threading.Lock())
        with lock:
            manifest = self.results.manifest(job.id)
            if manifest is not None and manifest["complete"] and not again:
                return manifest
            job = self.job(job.id)
            if not job.is_terminal:
                raise JobStateError(f"job {job.id} is {job.status}; results come when it ends")
            cluster = self.clusters.get(job.cluster)
            transport = self.transport(cluster)
            return collect.collect(transport, cluster.interpreter, job, self.results)

    def files(self, job_id: str) -> list[dict]:
        """The collected files: path, size, sha256, kind and whether it is here (fetched)."""
        return self.collect(job_id)["files"]

    def local_path(self, job_id: str, name: str) -> Path:
        """The local copy of a collected file (``outputs/`` may be left out), fetched if needed."""
        job = self.store.find(job_id)
        entries = self.collect(job.id)["files"]
        paths = [e["path"] for e in entries]
        rel = next((p for p in (name, f"outputs/{name}") if p in paths), None)
        if rel is None:
            raise TransferError(f"job {job.id} has no collected file {name!r} (see job.files())")
        with self._lock:
            lock = self._collect_locks.setdefault(job.id, threading.Lock())
        with lock:
            return collect.fetch_file(self._transport_of(job), job, self.results, rel)

    def load(self, job_id: str, name: str) -> Any:
        """A collected file loaded by its extension (numpy, torch, safetensors, pickle, JSON);
        any other file: its local path."""
        return collect.load(self.local_path(job_id, name))

    # -- queries and actions ------------------------------------------------------------------
    def job(self, id_or_name: str, *, refresh: bool = True) -> GPUJob:
        job = self.store.find(id_or_name)
        return self.refresh([job])[0] if refresh else job

    def jobs(self, *, cluster: str | None = None, limit: int | None = None) -> list[GPUJob]:
        return self.refresh(self.store.list(cluster=cluster, limit=limit))

    def handle(self, id_or_name: str) -> JobHandle:
        return JobHandle(self, self.store.find(id_or_name).id)

    def wait(self, job_id: str, timeout: float | None = None) -> GPUJob:
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.05
        while True:
            job = self.job(job_id)
            if job.is_terminal:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(
                    f"job {job.id} is still {job.status} after waiting {timeout:g}s"
                )
            remaining = float("inf") if deadline is None else deadline - time.monotonic()
            time.sleep(max(0.0, min(pause, remaining)))
            pause = min(pause * 1.5, 1.0)

    def cancel(self, job_id: str) -> GPUJob:
        job = self.job(job_id)
        if job.is_terminal:
            return job
        cluster = self.clusters.get(job.cluster)
        self.scheduler(cluster).cancel(job)
        return self.job(job_id)

    def outputs(self, job_id: str) -> dict[str, Any]:
        """The ``--outputs`` variables of a completed job, from the results store."""
        job = self.job(job_id)
        if job.status != JobStatus.COMPLETED:
            self.raise_for_failure(job.id)
        fetched = {e["path"] for e in self.files(job.id) if e["fetched"]}
        values = {}
        for name in job.request.outputs:
            rel = f"outputs/{name}.pkl"
            if rel not in fetched:
                raise TransferError(f"job {job.id} did not write its output {name!r}")
            values[name] = results.unpickle(job, name, self.results.path(job.id, rel).read_bytes())
        return values

    def logs(
        self,
        job_id: str,
        tail: int | None = None,
        level: str | None = None,
        grep: str | None = None,
    ) -> str:
        """The job's output.log, optionally only lines at ``level`` or above matching ``grep``."""
        job = self.store.find(job_id)
        text = self._collected_log(job)
        if text is None and level is None and grep is None:
            return results.log_tail(self._transport_of(job), job, tail)
        if text is None:
            text = results.read_log(self._transport_of(job), job)
        if level is None and grep is None:
            return results.tail_of(text, tail)
        try:
            keep = LineFilter(level, grep)
        except ValueError as exc:
            raise InvalidRequestError(str(exc)) from None
        lines = text.splitlines(keepends=True)
        kept = [line for line in lines if keep.keep(line)]
        return "".join(kept[-tail:] if tail else kept)

    def feed(self, job_id: str) -> JobFeed:
        """The job's telemetry brought up to date now (metrics, progress, GPU samples, log);
        a finished, collected job's comes from the results store (the host is not asked)."""
        job = self.store.find(job_id)
        manifest = self.results.manifest(job.id) if job.is_terminal else None
        if manifest is None or not manifest["complete"]:
            return self.monitor.sync(job.id)
        feed = JobFeed(job)
        files = {}
        for name in TAILED:
            local = self.results.folder(job.id) / name
            data = local.read_bytes() if local.exists() else b""
            files[name] = Chunk(0, len(data), data)
        feed.apply(job, FolderState(exists=True, files=files))
        return feed

    def _collected_log(self, job: GPUJob) -> str | None:
        if not job.is_terminal:
            return None
        manifest = self.results.manifest(job.id)
        if manifest is None or not manifest["complete"]:
            return None
        return self.results.read_text(job.id, "output.log")

    def raise_for_failure(self, job_id: str) -> None:
        """Raise why a job has no results: its remote traceback (the collected copy first)."""
        job = self.job(job_id)
        stored = self.results.read_text(job.id, collect.ERROR_FILE) if job.is_terminal else None
        results.raise_for_failure(self._transport_of(job), job, stored)

    def _transport_of(self, job: GPUJob) -> Transport:
        return self.transport(self.clusters.get(job.cluster))


_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default


def get_job(id_or_name: str) -> JobHandle:
    """The handle of a stored job, by id, unique id prefix or name (newest wins)."""
    return default_client().handle(id_or_name)
