"""The composition root: picks a transport and a scheduler per cluster and runs the job life cycle.

Importable without IPython, ipywidgets or jupyter_server (the server extension and tests use it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import results, submission
from .clusters import ClusterConfig, ClusterRegistry
from .collect.service import ResultsService
from .config import Settings
from .errors import (
    GPUMagicError,
    InvalidRequestError,
    SchedulerError,
    WaitTimeoutError,
)
from .handle import JobHandle
from .models import GPUJob, GPUJobRequest, JobStatus
from .monitoring.feed import JobFeed
from .monitoring.monitor import Monitor
from .packaging.upload import upload_bundle
from .parsers.levels import LineFilter
from .schedulers import Observation, ProcessScheduler, Scheduler, SlurmScheduler
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
        self.results = ResultsService(self)

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
        self.results.close(timeout=self.settings.ssh_connection_timeout)
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
        namesake = self.store.newest_named(request.name) if request.name else None
        submission.announce(bundle, request, cluster, namesake, say)
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
            self.results.collect_in_background(saved.id)
        return saved

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

    def logs(
        self,
        job_id: str,
        tail: int | None = None,
        level: str | None = None,
        grep: str | None = None,
    ) -> str:
        """The job's output.log, optionally only lines at ``level`` or above matching ``grep``."""
        job = self.store.find(job_id)
        text = self.results.collected_log(job)
        if text is None and level is None and grep is None:
            return results.log_tail(self.transport_of(job), job, tail)
        if text is None:
            text = results.read_log(self.transport_of(job), job)
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
        return self.results.feed(job) or self.monitor.sync(job.id)

    def transport_of(self, job: GPUJob) -> Transport:
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
