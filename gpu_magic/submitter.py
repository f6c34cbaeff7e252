"""``Submitter``: requests in, uploaded jobs out, each launched, queued for a slot or held.

One job or a sweep's members: every request is checked (its ``--after`` jobs found, every
member made) before anything is packaged; each is packaged, planned against the host's cache,
recorded and uploaded (``_upload``); then launched at once, queued for a free slot
(``max_concurrent_jobs``), held until what it waits for allows it to start, or handed to a
scheduler that holds it itself (Slurm's ``--dependency``/``--begin``), a sweep on Slurm as
one job array (``_launch_or_hold``).
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import holds, submission, sweeps
from .audit import AuditLog
from .clusters import ClusterRegistry
from .errors import GPUMagicError, InvalidRequestError, TransferCancelled
from .hosts import Host, Hosts
from .jobstore import JobStore
from .models import GPUJob, GPUJobRequest, JobStatus, SweepMember
from .packaging import remote_cache
from .packaging.digests import LocalDigests
from .packaging.remote_cache import RemoteCache
from .packaging.upload import upload_bundle
from .results import hostfolder
from .results.progress import TransferProgress
from .tracker import JobTracker


@dataclass(frozen=True)
class Caller:
    """What the one who submits gives besides the request: the folder ``--files`` are
    relative to, where the submission's lines go, and the upload's progress (its ``cancel``
    stops it: the job ends ``cancelled``, nothing was launched)."""

    cwd: Path | None = None
    say: Callable[[str], None] | None = None
    progress: TransferProgress | None = None

    def quiet(self) -> Caller:
        """The same folder, nothing said, no progress (a sweep's members after the first)."""
        return Caller(self.cwd)


class Submitter:
    """The submissions of one ``Client`` (composed there; its parts are the client's)."""

    def __init__(
        self,
        clusters: ClusterRegistry,
        store: JobStore,
        hosts: Hosts,
        tracker: JobTracker,
        audit: AuditLog,
        digests: LocalDigests,
        max_concurrent: int,
    ):
        self.clusters, self.store, self.hosts, self.tracker = clusters, store, hosts, tracker
        self.audit, self.digests, self.max_concurrent = audit, digests, max_concurrent

    def submit(self, request: GPUJobRequest, namespace: Mapping[str, Any], caller: Caller) -> str:
        """Package, upload and launch (or queue, or hold) one job; its id."""
        request = self._resolved(request)
        job = self._upload(request, namespace, caller)
        self._launch_or_hold([job], caller.say)
        return job.id

    def sweep(
        self,
        request: GPUJobRequest,
        sweep: sweeps.Sweep,
        namespace: Mapping[str, Any],
        caller: Caller,
    ) -> str:
        """Run the cell once per combination of ``sweep``'s values; the sweep's id. Every
        member is checked before the first is packaged; they upload one by one (files they
        share are sent once: the host's cache holds them after the first); on Slurm they
        launch as ONE job array (``%max_concurrent_jobs`` at once), elsewhere through the slot
        queue. A member that fails to upload stops the sweep: those already uploaded end
        ``cancelled``, nothing was launched."""
        sweep_id = sweeps.new_sweep_id()
        made = sweeps.members(sweep, sweep_id, self._resolved(request))
        if caller.say is not None:
            caller.say(f"gpu_magic: sweep {sweep_id}: {sweep.size} members, {sweep.describe()}")
        jobs: list[GPUJob] = []
        try:
            for member_request, place, values in made:
                each = caller if not jobs else caller.quiet()
                jobs.append(self._upload(member_request, ChainMap(values, namespace), each, place))
        except GPUMagicError as exc:
            self._stop_sweep(jobs, exc)
            raise
        self._launch_or_hold(jobs, caller.say, sweep_id)
        return sweep_id

    def _stop_sweep(self, uploaded: list[GPUJob], exc: GPUMagicError) -> None:
        why = f"sweep stopped before launch: another member did not upload: {exc}"
        for job in uploaded:
            self.tracker.save(submission.mark(job, JobStatus.CANCELLED, reason=why), why)

    def _upload(
        self,
        request: GPUJobRequest,
        namespace: Mapping[str, Any],
        caller: Caller,
        sweep: SweepMember | None = None,
    ) -> GPUJob:
        """Package and upload one job: stored ``uploading``, or ended and raised."""
        cluster = self.clusters.get(request.cluster)
        bundle = submission.package(request, namespace, cluster, caller.cwd)
        namesake = self.store.newest_named(request.name) if request.name else None
        host = self.hosts.get(cluster.name)
        base = submission.remote_base(host.transport, cluster)
        cache = RemoteCache.under(base, cluster.interpreter)
        plan = remote_cache.plan(host.transport, bundle, cache, self.digests)
        submission.announce(bundle, request, cluster, namesake, caller.say, plan.cached_bytes)
        job = submission.new_job(bundle, request, cluster, base, sweep)
        self.audit.redact(submission.secrets(request))
        host.audit.record("submit", jobs=[job.id], **submission.summary(bundle, request, sweep))
        self.store.insert(job)
        job = self.tracker.save(submission.mark(job, JobStatus.UPLOADING))
        folder = hostfolder.folder_of(job)
        upload = submission.Upload(bundle, plan, caller.progress)
        try:
            upload_bundle(
                host.transport, bundle, folder, upload.advance,
                cache=cache, planned=plan, digests=self.digests,
            )  # fmt: skip
            upload.end()
        except GPUMagicError as exc:
            upload.end(exc)
            self._never_ran(job, exc)
            raise
        return job

    def _resolved(self, request: GPUJobRequest) -> GPUJobRequest:
        """``request`` with its ``--after`` jobs by id (names and id prefixes found in the
        store); one that ended other than completed is refused up front (with ``after_any``
        any end will do), as is waiting for a job that cannot end."""
        ids = []
        for key in request.after:
            dep = self.store.find(key)
            if dep.is_terminal and dep.status != JobStatus.COMPLETED and not request.after_any:
                raise InvalidRequestError(
                    f"--after {key}: job {dep.id} ended {dep.status}, so this one could never "
                    "start (--after-any waits for any end)"
                )
            ids.append(dep.id)
        return request.model_copy(update={"after": tuple(dict.fromkeys(ids))})

    def _launch_or_hold(
        self, jobs: list[GPUJob], say: Callable[[str], None] | None, sweep: str | None = None
    ) -> None:
        """Uploaded jobs (one, or a sweep's members, all alike): launched now (a sweep on
        Slurm as one job array), or held in the store until the jobs they depend on ended and
        their start time came, unless the scheduler holds them itself (Slurm, when every job
        waited for is a Slurm job of that cluster: ``--dependency``, ``--begin``)."""
        first, host = jobs[0], self.hosts.of(jobs[0])
        deps = {job_id: self.store.get(job_id) for job_id in first.request.after}
        stand = holds.standing(first.request, deps, self.tracker.clock())
        if not stand.ready and not self._scheduler_holds(host, first, deps):
            self.tracker.hold(jobs, stand.why)
            if say is not None:
                say(f"gpu_magic: {sweep or 'job ' + first.id} is uploaded and held: {stand.why}")
            return
        after = self.tracker.waits_for(first)
        if sweep is not None and host.scheduler.arrays:
            max_running = self.max_concurrent
            submission.start_array(host, jobs, sweep, max_running, self.tracker.save, after)
        elif sweep is not None:  # uploaded members hold no slot: queued in order
            self.tracker.wait_for_slots(jobs)
        elif not self.store.claim_slot(first, self.max_concurrent):
            waiting = self.tracker.wait_for_slot(first)
            if say is not None and waiting.status == JobStatus.PENDING:
                say(f"job {first.id} is uploaded and {waiting.reason}")
        else:
            submission.start(host, first, self.tracker.save, after)

    @staticmethod
    def _scheduler_holds(host: Host, job: GPUJob, deps: Mapping[str, GPUJob]) -> bool:
        """Whether ``host``'s scheduler can hold ``job`` for what it waits for: it ``holds``
        and every job it waits for that has not ended is a launched job of the same cluster."""
        if not host.scheduler.holds:
            return False
        running = [dep for dep in deps.values() if not dep.is_terminal]
        return all(dep.cluster == job.cluster and dep.scheduler_id for dep in running)

    def _never_ran(self, job: GPUJob, exc: GPUMagicError) -> None:
        if isinstance(exc, TransferCancelled):  # the user's stop: not a failure
            self.tracker.save(submission.mark(job, JobStatus.CANCELLED, reason=str(exc)), str(exc))
            return
        self.tracker.save(*submission.never_ran(job, exc))
