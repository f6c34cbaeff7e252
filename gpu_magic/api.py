"""The facade: ``Client`` composes the hosts, the tracker, the results and the monitor.

Importable without IPython, ipywidgets or jupyter_server (the server extension and tests use it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from itertools import groupby
from pathlib import Path
from typing import Any

from . import holds, retries, submission, sweeps
from .audit import AuditLog
from .clusters import ClusterRegistry
from .config import Settings, workdir_dotenv
from .errors import ConfigError, GPUMagicError, InvalidRequestError
from .handle import JobHandle
from .hosts import Host, Hosts, TransportFactory
from .housekeeping import cleanup, usage
from .jobstore import Change, JobStore, Transition
from .lease import HostLease
from .models import GPUJob, GPUJobRequest, JobStatus
from .monitoring.feed import JobFeed, LogChunk, complete_utf8
from .monitoring.mirror import LiveMirror
from .monitoring.monitor import Monitor
from .notify import Notifier
from .packaging.digests import LocalDigests
from .parsers.levels import LineFilter
from .results import hostfolder
from .results.progress import TransferProgress
from .results_service import ResultsService
from .submitter import Caller, Submitter
from .sweep_handle import SweepHandle
from .tracker import JobTracker
from .transport import Transport


class Client:
    """One per kernel (see ``default_client``), one in the Jupyter server; thread-safe.

    Composition only: ``hosts`` (cluster name -> config, transport, scheduler), ``tracker`` (the
    only writer of job state), ``results``, and the ``monitor``. Every adapter (magics, widgets,
    server handlers, CLI) comes through here; nothing below imports it. ``transports=`` gives
    the hosts transports of the caller's (tests, benches): a mapping by cluster name or a
    factory.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        transports: Mapping[str, Transport] | TransportFactory | None = None,
    ):
        self.settings = settings or Settings()  # reads the working directory's .env
        self.clusters = ClusterRegistry(self.settings)
        self.store = JobStore(self.settings.store_path)
        self.audit = AuditLog(self.settings.audit_path, self.store.path)
        self.digests = LocalDigests(self.store.path)
        self.store.on_change(self._audit_change)
        if settings is None:
            self._audit_workdir_dotenv()
        self.hosts = Hosts(self.settings, self.clusters, self.audit, transports)
        self.lease = HostLease(self.store, ttl=self.settings.job_monitoring_interval)
        self.tracker = JobTracker(
            self.store,
            self.hosts,
            self.lease,
            reconnect_limit=self.settings.gpu_magic_reconnect_limit,
            max_concurrent=self.settings.max_concurrent_jobs,
        )
        self.results = ResultsService(self.settings, self.store, self.hosts, self.tracker)
        self.submitter = Submitter(
            self.clusters, self.store, self.hosts, self.tracker, self.audit, self.digests,
            self.settings.max_concurrent_jobs,
        )  # fmt: skip
        self.cleanup_errors: dict[str, str] = {}  # cluster -> why its after-collect cleanup failed
        try:
            self.notifier = Notifier(
                self.settings.gpu_magic_webhook_url, notify_all=self.settings.gpu_magic_notify_all
            )
        except ValueError as exc:  # says why without quoting the URL (a credential)
            raise ConfigError(f"GPU_MAGIC_WEBHOOK_URL: {exc}") from None
        self.tracker.on_ended(self._collect_when_ended)
        self.tracker.on_ended(self._notify_when_ended)
        self.results.on_collected(self._cleanup_after_collect)
        self._lock = threading.Lock()
        self._monitor: Monitor | None = None

    # -- wiring -------------------------------------------------------------------------------
    def host(self, cluster: str | None = None) -> Host:
        """The host of a cluster (the default cluster without a name)."""
        return self.hosts.get(cluster)

    @property
    def monitor(self) -> Monitor:
        """The kernel's background monitor (created on first use)."""
        with self._lock:
            if self._monitor is None:
                self._monitor = Monitor(
                    self.store,
                    self.hosts,
                    self.tracker,
                    interval=self.settings.job_monitoring_interval,
                    lease=self.lease,
                    mirror=LiveMirror(self.settings.gpu_magic_data_dir / "live"),
                )
                self.results.telemetry_from(self._monitor.read_through)
            return self._monitor

    def _audit_workdir_dotenv(self) -> None:
        """Which settings of the working directory's ``.env`` were used and which ignored (a
        trust decision: the file came with whatever repository the notebook runs in)."""
        found = workdir_dotenv()
        if found is not None:
            path, used, ignored = found
            decision = "working directory .env read"
            self.audit.record(
                "trust", decision=decision, path=str(path), used=used, ignored=ignored
            )

    def _audit_change(self, change: Change) -> None:
        """A state change (submission, launch, retry, cancellation, end) or a deletion, as the
        store committed it."""
        detail = (
            {"status": change.what, "reason": change.why}
            if change.kind == "state"
            else {"location": change.what, "path": change.why}
        )
        self.audit.record(change.kind, cluster=change.cluster, jobs=[change.job_id], **detail)

    def _collect_when_ended(self, job: GPUJob) -> None:
        if job.request.fetch == "auto":
            self.results.collect_in_background(job.id)

    def _notify_when_ended(self, job: GPUJob) -> None:
        self.notifier.job_ended(job, job.failure)

    def _cleanup_after_collect(self, cluster: str) -> None:
        """The cluster's policy may ask for a cleanup after each collection; a problem there never
        fails the collection: it is kept in ``cleanup_errors``."""
        try:
            plan = cleanup.after_collect(self.results, cluster)
        except GPUMagicError as exc:
            self.cleanup_errors[cluster] = str(exc)
            return
        if plan is not None and plan.notes:
            self.cleanup_errors[cluster] = "; ".join(plan.notes)
        else:
            self.cleanup_errors.pop(cluster, None)

    def close(self) -> None:
        if self._monitor is not None:
            self._monitor.stop()
        self.lease.release()  # another process takes over at once
        self.results.close(timeout=self.settings.ssh_connection_timeout)
        self.notifier.close(timeout=self.settings.ssh_connection_timeout)
        self.hosts.close()
        self.audit.close()
        self.digests.close()

    # -- life cycle ---------------------------------------------------------------------------
    def submit(
        self,
        request: GPUJobRequest,
        namespace: Mapping[str, Any] | None = None,
        *,
        cwd: Path | None = None,
        say: Callable[[str], None] | None = None,
        progress: TransferProgress | None = None,
    ) -> JobHandle:
        """Package, upload and launch (or queue, or hold) one job (``Submitter.submit``):
        ``cwd``, ``say`` and ``progress`` as ``submitter.Caller`` has them."""
        caller = Caller(cwd, say, progress)
        return JobHandle(self, self.submitter.submit(request, namespace or {}, caller))

    def submit_sweep(
        self,
        request: GPUJobRequest,
        sweep: sweeps.Sweep,
        namespace: Mapping[str, Any] | None = None,
        *,
        cwd: Path | None = None,
        say: Callable[[str], None] | None = None,
        progress: TransferProgress | None = None,
    ) -> SweepHandle:
        """Run the cell once per combination of ``sweep``'s values (``Submitter.sweep``)."""
        caller = Caller(cwd, say, progress)
        return SweepHandle(self, self.submitter.sweep(request, sweep, namespace or {}, caller))

    # -- queries and actions ------------------------------------------------------------------
    def job(self, id_or_name: str, *, refresh: bool = True) -> GPUJob:
        return self.tracker.job(id_or_name, refresh=refresh)

    def jobs(
        self,
        *,
        cluster: str | None = None,
        limit: int | None = None,
        refresh: bool = True,
        **filters: str | None,
    ) -> list[GPUJob]:
        """Jobs newest first (``status=``, ``name=``, ``before=`` a job id: the next page);
        ``refresh`` polls the active ones first (a server's monitor keeps them fresh)."""
        jobs = self.store.list(cluster=cluster, limit=limit, **filters)
        return self.tracker.refresh(jobs) if refresh else jobs

    def history(self, job_id: str) -> list[Transition]:
        """Every state the job passed through, with when and why, oldest first."""
        return self.store.transitions(self.store.find(job_id).id)

    def log_since(self, job_id: str, offset: int = 0, *, sync: bool = True) -> LogChunk:
        """The log text from byte ``offset`` on, as far as it has been read (the monitor's feed
        of an active job, the results store's copy of a collected one), and where to go on.
        ``sync``: bring the feed up to date first (one poll); a follower that asks again and
        again (a WebSocket) leaves that to the monitor's own pace."""
        job = self.store.find(job_id)
        feed = self._feed_of(job, sync=sync)
        found = feed.log_from(offset)
        if found is None:  # older than what memory holds: read the host's file
            remote = hostfolder.folder_of(job).log
            found = self.hosts.of(job).transport.read_file(str(remote), offset), None
        data, end = found
        text, used = complete_utf8(data)
        offset += used
        done = feed.job.is_terminal and not feed.pending and end is not None and offset >= end
        return LogChunk(text, offset, feed.job, done)

    def handle(self, id_or_name: str) -> JobHandle:
        return JobHandle(self, self.store.find(id_or_name).id)

    def sweep(self, key: str) -> SweepHandle:
        """A sweep by its id, its ``--name``, or the id or name of one of its members."""
        if self.store.list(sweep=key, limit=1):
            return SweepHandle(self, key)
        named = self.store.newest_sweep_named(key)
        if named is not None:
            return SweepHandle(self, named)
        member = self.store.find(key)
        if member.sweep is None:
            raise InvalidRequestError(f"job {member.id} is not a member of a sweep")
        return SweepHandle(self, member.sweep.sweep_id)

    def queue(self) -> list[tuple[GPUJob, str]]:
        """The jobs that wait, each with why: those in a scheduler's own queue (Slurm's
        pending, with its position and reason, looked up now), those waiting for a free slot
        in the order they will start (per cluster: higher priority, then older, first), then
        the held ones."""
        self.tracker.release_held()  # what may start now does, first
        lines = self._queued_on_hosts()
        for cluster, group in groupby(self.store.waiting_for_slots(), lambda job: job.cluster):
            line = list(group)
            why = f"{{}} of {len(line)} waiting for a free slot on {cluster}"
            lines += [(job, why.format(place)) for place, job in enumerate(line, 1)]
        held = self.store.held()
        deps = {d: self.store.get(d) for job in held for d in job.request.after}
        now = self.tracker.clock()
        lines += [(job, holds.waiting_line(job.request, deps, now)) for job in held]
        return lines

    def _queued_on_hosts(self) -> list[tuple[GPUJob, str]]:
        """Jobs a host's scheduler still queues, oldest first, as it says now (one look per
        host; none when nothing is queued)."""
        queued = self.store.list(status=JobStatus.QUEUED.value)
        fresh = self.tracker.refresh(queued[::-1]) if queued else []
        return [(job, job.reason or "queued") for job in fresh if job.status == JobStatus.QUEUED]

    def retry(self, job_id: str) -> GPUJob:
        """Run an ended job again that did not complete: its next attempt, same id, same
        folder (checkpoints kept), as ``--retries`` would."""
        job = self.tracker.refresh([self.store.find(job_id)])[0]
        if not job.is_terminal or job.status == JobStatus.COMPLETED:
            raise InvalidRequestError(f"job {job.id} is {job.status}: only an ended job that "
                                      "did not complete can be run again")  # fmt: skip
        if not submission.can_launch(job):
            names = ", ".join(job.request.secret_env)
            raise InvalidRequestError(f"job {job.id} needs {names} in this process's environment")
        why = f"run again by the user after it ended {job.status}"
        rerun = retries.rerun(self.hosts.of(job), self.store, self.tracker.save, job, why)
        return rerun or self.store.get(job.id)  # None: another process ran it again first

    def wait(self, job_id: str, timeout: float | None = None) -> GPUJob:
        return self.tracker.wait(job_id, timeout)

    def cancel(self, job_id: str) -> GPUJob:
        return self.cancel_many([job_id])[0]

    def cancel_many(self, job_ids: list[str]) -> list[GPUJob]:
        """Cancel jobs (ids or names), one command per cluster however many there are; a job
        that has ended is left as it is; one still waiting for a slot is never launched."""
        jobs = self.tracker.refresh([self.store.find(job_id) for job_id in job_ids])
        by_cluster: dict[str, list[GPUJob]] = {}
        for job in jobs:
            if job.is_terminal:
                continue
            host = self.hosts.of(job)
            host.audit.record("cancel", jobs=[job.id], status=job.status.value)
            if (job.ready_at is not None or job.held) and self.tracker.cancel_waiting(job):
                continue
            by_cluster.setdefault(job.cluster, []).append(job)
        for cluster, running in by_cluster.items():
            self.hosts.get(cluster).scheduler.cancel_many(running)
        return self.tracker.refresh([self.store.get(job.id) for job in jobs])

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
            return hostfolder.log_tail(self.hosts.of(job).transport, job, tail)
        if text is None:
            text = hostfolder.read_log(self.hosts.of(job).transport, job)
        if level is None and grep is None:
            return hostfolder.tail_of(text, tail)
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
        return self.feeds([job_id])[0]

    def feeds(self, job_ids: list[str]) -> list[JobFeed]:
        """``feed`` for several jobs, those not collected brought up to date together."""
        jobs = [self.store.find(job_id) for job_id in job_ids]
        found = {job.id: self.results.feed(job) for job in jobs}
        live = [job_id for job_id, feed in found.items() if feed is None]
        found.update(zip(live, self.monitor.sync_all(live), strict=True))
        return [found[job.id] for job in jobs]

    def _feed_of(self, job: GPUJob, *, sync: bool = True) -> JobFeed:
        """A collected job's feed from the results store (the host is not asked), else the
        monitor's (``sync``: brought up to date now)."""
        if sync:
            return self.feeds([job.id])[0]
        collected = self.results.feed(job)
        return collected if collected is not None else self.monitor.feed(job.id)

    def storage_usage(self, cluster: str | None = None) -> usage.Usage:
        """Local and remote sizes of every stored job (of ``cluster``): one command per host."""
        return usage.measure(self.results, cluster)

    def cleanup(self, request: cleanup.Request, *, dry_run: bool = False) -> cleanup.Plan:
        """Plan, and unless ``dry_run`` carry out, a cleanup of results (remote and local)."""
        return cleanup.cleanup(self.results, request, dry_run=dry_run)


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
