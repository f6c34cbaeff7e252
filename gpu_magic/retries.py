"""Retrying a failed job in its own folder: which failures are worth another attempt, and who
starts it.

A retried job keeps its id, its folder and its checkpoints; its log keeps growing (every
attempt's lines, in order). ``--retries N`` allows N more attempts; ``--retry-on`` names the
failure kinds retried, else ``DEFAULT_RETRY_ON``: what the infrastructure did to a job that
may well succeed as it is (a node that failed, a preemption, a lost host, an NCCL fault). What
would only fail again (the cell's own exception, an import or syntax error, running out of
memory, a full disk) is never retried unless asked for.

Several processes may see the same failure (two kernels, the server): the store lets one of
them move the job to its next attempt (``JobStore.advance_attempt``) and only that one
launches it; the scheduler's launch for attempt N is itself idempotent on the host.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import submission
from .errors import GPUMagicError
from .jobstore import JobStore
from .models import FailureKind, GPUJob, JobStatus

if TYPE_CHECKING:
    from .hosts import Host

log = logging.getLogger(__name__)

DEFAULT_RETRY_ON = frozenset(
    {FailureKind.NODE_FAILURE, FailureKind.PREEMPTED, FailureKind.LOST, FailureKind.NCCL}
)


def wanted(job: GPUJob) -> bool:
    """Whether ``job``, just ended, gets another attempt."""
    if job.failure is None or job.attempt > job.request.retries:
        return False
    kinds = set(job.request.retry_on) or {kind.value for kind in DEFAULT_RETRY_ON}
    if job.failure["kind"] not in kinds:
        return False
    if not submission.can_launch(job):  # its --secret-env values are not in this process
        log.warning("gpu_magic: job %s not retried here: --secret-env values missing", job.id)
        return False
    return True


def retry(host: Host, store: JobStore, save: Callable[..., GPUJob], job: GPUJob) -> GPUJob | None:
    """Start the next attempt of ``job`` (ended and ``wanted``); the stored job, or None when
    another process started it first. ``save`` stores what the launch came to."""
    failure = job.failure
    why = (
        f"attempt {job.attempt + 1} of {job.request.retries + 1} after {failure['kind']}: "
        f"{failure['explanation']}"
    )
    return rerun(host, store, save, job, why)


def rerun(
    host: Host, store: JobStore, save: Callable[..., GPUJob], job: GPUJob, why: str
) -> GPUJob | None:
    """Start the next attempt of the ended ``job`` in its folder, for ``why``; None when
    another process started it first. Until the launch answers, the job is ``uploading``
    (being launched), which no poll looks at: its folder still shows the last attempt's end."""
    attempt = job.attempt + 1
    queued = job.model_copy(
        update={"status": JobStatus.UPLOADING, "attempt": attempt, "reason": why, "exit_code": None,
                "ended_at": None, "error": None, "failure": None, "scheduler_id": None}
    )  # fmt: skip
    if not store.advance_attempt(queued, why):
        return None
    log.info("gpu_magic: job %s: %s", job.id, why)
    host.audit.record("retry", jobs=[job.id], attempt=attempt, reason=why)
    try:
        return submission.start(host, queued, save)
    except GPUMagicError:  # saved as what it is: failed to launch, or unconfirmed
        return store.get(job.id)
