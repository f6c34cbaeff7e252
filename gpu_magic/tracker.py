"""``JobTracker``: the only writer of job state. Polls hosts, records what they show, waits.

Every state a job passes through is written here (``save``), after a poll (``refresh``, or the
monitor's ``record``). A job that has just ended calls the ``on_ended`` listeners once, from the
thread that saw it end; collection subscribes there, so nothing starts a download unseen.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from . import holds, retries, submission
from .diagnosis import diagnose
from .errors import GPUMagicError, JobNotFoundError, WaitTimeoutError
from .hosts import Host, Hosts
from .jobstore import JobStore
from .lease import HostLease
from .models import GPUJob, JobStatus, utcnow
from .outage import Outage
from .results.hostfolder import remote_error
from .schedulers import Observation

NOT_LAUNCHED = (JobStatus.PENDING, JobStatus.UPLOADING)
log = logging.getLogger(__name__)


class JobTracker:
    def __init__(
        self,
        store: JobStore,
        hosts: Hosts,
        lease: HostLease | None = None,
        *,
        reconnect_limit: float = 600.0,
        max_concurrent: int = 10,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.store, self.hosts, self.lease = store, hosts, lease
        self.clock = clock  # when a held job's start time has come (tests pass their own)
        self.reconnect_limit = reconnect_limit  # how long wait() rides out an unreachable host
        self.max_concurrent = max_concurrent  # jobs per cluster holding a slot at once
        self._ended: list[Callable[[GPUJob], None]] = []
        self._lock = threading.Lock()

    def on_ended(self, listener: Callable[[GPUJob], None]) -> None:
        """Call ``listener(job)`` once whenever a job is recorded as ended."""
        with self._lock:
            self._ended.append(listener)

    def save(self, job: GPUJob, reason: str | None = None) -> GPUJob:
        self.store.update(job, reason=reason)
        return job

    def job(self, id_or_name: str, *, refresh: bool = True, until: float = 0.0) -> GPUJob:
        job = self.store.find(id_or_name)
        return self.refresh([job], until=until)[0] if refresh else job

    def jobs(self, *, cluster: str | None = None, limit: int | None = None) -> list[GPUJob]:
        return self.refresh(self.store.list(cluster=cluster, limit=limit))

    def refresh(self, jobs: list[GPUJob], until: float = 0.0) -> list[GPUJob]:
        """Poll every active job among ``jobs``, one round trip per cluster, and store changes;
        ``until``: a host may first wait that many seconds for one of them to end."""
        fresh = {job.id: job for job in jobs}
        by_cluster: dict[str, list[GPUJob]] = {}
        for job in jobs:
            if not job.is_terminal and job.status not in NOT_LAUNCHED:
                by_cluster.setdefault(job.cluster, []).append(job)
        for name, active in by_cluster.items():
            if self.lease is not None and self.lease.elsewhere(name):
                continue  # its lease holder follows every active job there: the store is fresh
            host = self.hosts.get(name)
            observed = host.scheduler.poll(active, until)
            for job in active:
                if job.id in observed:
                    fresh[job.id] = self.record(host, job, observed[job.id])
        return [fresh[job.id] for job in jobs]

    def record(self, host: Host, job: GPUJob, seen: Observation) -> GPUJob:
        """Store what a poll of ``job`` saw; a job that newly ended without completing also
        gets its remote error summary and its failure, classified. Another poller (a panel's
        monitor beside a wait) may have moved the job on meanwhile: then the look is stale,
        nothing is stored, and the stored job is the answer."""
        updated = submission.observe(job, seen)
        if updated == job:
            return job
        if updated.is_terminal and not job.is_terminal and updated.status != JobStatus.COMPLETED:
            updated = self._explained(host, updated, seen)
            if retries.wanted(updated):  # not ended after all: the next attempt starts
                return retries.retry(host, self.store, self.save, updated) or self.store.get(job.id)
        if not self.store.update_looked(updated, job, reason=seen.reason):
            return self.store.get(job.id)
        if updated.is_terminal and not job.is_terminal:
            self._tell_ended(updated)
            self.start_waiting(updated.cluster)  # its slot is free
        return updated

    def _tell_ended(self, job: GPUJob) -> None:
        with self._lock:
            listeners = list(self._ended)
        for listener in listeners:
            listener(job)

    # -- slots (max_concurrent_jobs) ------------------------------------------------------
    def wait_for_slot(self, job: GPUJob) -> GPUJob:
        """Keep an uploaded job waiting (``pending``) until a slot of its cluster is free;
        whichever process sees a slot free launches it, oldest first, after a restart too."""
        return self.wait_for_slots([job])[0]

    def wait_for_slots(self, jobs: list[GPUJob]) -> list[GPUJob]:
        """``wait_for_slot`` for uploaded jobs of one cluster, queued in this order, then as
        many launched as slots are free."""
        why = (
            f"waiting for a free slot: {self.max_concurrent} jobs of {jobs[0].cluster} hold "
            f"one (max_concurrent_jobs), or others wait before it"
        )
        for job in jobs:
            self.save(submission.mark(job, JobStatus.PENDING, ready_at=utcnow(), reason=why), why)
        self.start_waiting(jobs[0].cluster)  # a slot may have been freed meanwhile
        return [self.store.get(job.id) for job in jobs]

    # -- held jobs (--after, --at) -------------------------------------------------------
    def hold(self, jobs: list[GPUJob], why: str) -> None:
        """Keep uploaded jobs ``pending`` until what they wait for allows them to start (see
        ``holds``): the next ``release_held`` (a monitor's tick, a ``wait``) releases them."""
        for job in jobs:
            self.save(submission.mark(job, JobStatus.PENDING, held=True, reason=why), why)

    def release_held(self) -> None:
        """Look at every held job: those whose jobs ended as asked and whose time came join
        the slot queue (and start if a slot is free); those whose dependency ended otherwise
        are cancelled, with the reason. The jobs depended on are polled first."""
        held = self.store.held()
        if not held:
            return
        deps = self._dependencies(held)
        now, released = self.clock(), set()
        for job in held:
            stand = holds.standing(job.request, deps, now)
            if stand.doomed is not None:
                self._cancel_held(job, f"never started: {stand.doomed}")
            elif stand.ready and self._release(job):
                released.add(job.cluster)
        for cluster in sorted(released):
            self.start_waiting(cluster)

    def waits_for(self, job: GPUJob) -> tuple[str, ...]:
        """The scheduler ids of the jobs ``job`` depends on that have not ended: what a
        scheduler that holds jobs itself is asked to wait for (empty for a job the store
        held: it is released only once they ended)."""
        deps = [self.store.get(job_id) for job_id in job.request.after]
        return tuple(dep.scheduler_id for dep in deps if not dep.is_terminal and dep.scheduler_id)

    def _dependencies(self, held: list[GPUJob]) -> dict[str, GPUJob]:
        """The jobs the held ones depend on, the active ones polled now (one round trip per
        cluster; a cluster whose lease is held elsewhere is fresh in the store)."""
        found: dict[str, GPUJob] = {}
        for job_id in {dep for job in held for dep in job.request.after}:
            try:
                found[job_id] = self.store.get(job_id)
            except JobNotFoundError:
                continue
        active = [job for job in found.values() if not job.is_terminal]
        try:
            found.update({job.id: job for job in self.refresh(active)})
        except GPUMagicError as exc:  # the next tick looks again; the store's view stands
            log.info("gpu_magic: dependencies not polled: %s", exc)
        return found

    def _release(self, job: GPUJob) -> bool:
        why = "what it waited for is done: waiting for a free slot"
        ready = job.model_copy(update={"held": False, "ready_at": utcnow(), "reason": why})
        return self.store.release(ready, why)

    def _cancel_held(self, job: GPUJob, why: str) -> None:
        cancelled = job.model_copy(
            update={"status": JobStatus.CANCELLED, "held": False, "reason": why}
        )
        if self.store.cancel_waiting(cancelled, why):
            self._tell_ended(cancelled)

    def start_waiting(self, cluster: str) -> None:
        """Launch the cluster's waiting jobs, oldest first, while slots are free (each is
        claimed in the store first: two processes never launch one job, nor one slot twice)."""
        claim = self.store.claim_waiting
        while (job := claim(cluster, self.max_concurrent, submission.can_launch)) is not None:
            try:
                submission.start(self.hosts.get(cluster), job, self.save, self.waits_for(job))
            except GPUMagicError as exc:  # saved as failed (or unconfirmed): the next one
                log.warning("gpu_magic: waiting job %s did not launch: %s", job.id, exc)

    def _free_slots(self, cluster: str, outage: Outage) -> None:
        """Look at the jobs holding the cluster's slots (those that ended free theirs), then
        start what waits."""
        try:
            self.refresh(self.store.list(cluster=cluster, active_only=True))
            outage.over()
        except GPUMagicError as exc:
            outage.failed(exc)
        self.start_waiting(cluster)

    def cancel_waiting(self, job: GPUJob) -> bool:
        """Cancel a job that still waits, for a slot or held (False: it was launched
        meanwhile)."""
        why = f"cancelled by user while {'held' if job.held else 'waiting for a slot'}"
        cancelled = job.model_copy(
            update={"status": JobStatus.CANCELLED, "ready_at": None, "held": False, "reason": why}
        )
        return self.store.cancel_waiting(cancelled, why)

    @staticmethod
    def _explained(host: Host, job: GPUJob, seen: Observation) -> GPUJob:
        remote = remote_error(host.transport, job) if job.status == JobStatus.FAILED else None
        changes = {}
        if remote is not None:
            changes["error"] = f"{remote.exc_type}: {remote.remote_message}"
        failure = diagnose(host.transport, job, seen, remote)
        if failure is not None:
            changes["failure"] = failure.to_dict()
        return job.model_copy(update=changes)

    def wait(self, job_id: str, timeout: float | None = None) -> GPUJob:
        """Poll until the job ends (backing off to once a second), riding out a host that
        cannot be reached for up to ``reconnect_limit`` seconds (``Outage``)."""
        unwatch = self.lease.watch(job_id) if self.lease is not None else None
        try:
            return self._wait(job_id, timeout)
        finally:
            if unwatch is not None:
                unwatch()

    def _wait(self, job_id: str, timeout: float | None) -> GPUJob:
        """Look at the job until it ends. Each look after the first waits on the host for the
        job's end (up to ``until``, growing to 1 s), so the end is heard within ~5 ms, not at
        the next poll; what a look did not spend waiting (nothing to ask the host: a lease
        held elsewhere, a job not launched yet) is slept here."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause, until = 0.05, 0.0  # the first look answers at once
        outage = Outage(self.reconnect_limit, f"waiting for job {job_id}")
        while True:
            asked = time.monotonic()
            try:
                job = self.job(job_id, until=until)
                outage.over()
            except GPUMagicError as exc:
                outage.failed(exc)  # raises what cannot be ridden out
                job = self.store.find(job_id)
            if job.is_terminal:
                return job
            if job.held:  # this waiter may see what it waits for done
                self.release_held()
            if job.ready_at is not None:  # waiting for a slot: this waiter may free and start it
                self._free_slots(job.cluster, outage)
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(
                    f"job {job.id} is still {job.status} after waiting {timeout:g}s"
                )
            remaining = float("inf") if deadline is None else deadline - time.monotonic()
            time.sleep(max(0.0, min(until - (time.monotonic() - asked), remaining)))
            remaining = float("inf") if deadline is None else deadline - time.monotonic()
            until = max(0.0, min(pause, remaining))
            pause = min(pause * 1.5, 1.0)
