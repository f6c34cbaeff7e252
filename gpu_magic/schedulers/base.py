"""The scheduler seam: submit, observe many jobs in ONE round trip, cancel.

A round trip runs the scheduler's own state command (``squeue`` for Slurm; none for plain
processes) and the job-folder probe in one remote command, so the monitor's tick costs one
exec per host however many jobs are active.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..jobdir import JobDir
from ..models import GPUJob, JobStatus
from ..transport.base import Transport
from .folder_probe import FolderState, probe


@dataclass(frozen=True)
class Observation:
    """What one poll learned about one job."""

    status: JobStatus
    reason: str | None = None
    exit_code: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    nodes: str | None = None
    """Batch schedulers: the nodes the job runs on (Slurm's node list)."""
    queue_position: tuple[int, int] | None = None
    """Batch schedulers, while queued: (position, pending jobs) in its partition, by priority."""
    pending_reason: str | None = None
    """Batch schedulers, while queued: why it waits (Slurm: Priority, Resources, ...)."""
    scheduler_id: str | None = None
    """Learnt from the folder: the id a submit whose answer was lost recorded there."""
    scheduler_state: str | None = None
    """Batch schedulers, once ended: the scheduler's own final word (Slurm: OUT_OF_MEMORY, ...)."""


@dataclass(frozen=True)
class Submitted:
    scheduler_id: str | None
    status: JobStatus
    reason: str | None = None


@dataclass(frozen=True)
class Look:
    """One job's state and its folder as seen in one round trip."""

    observation: Observation
    folder: FolderState


class Scheduler(ABC):
    name: str
    relaunch_safe = False
    """Whether ``submit`` may run again after a connection dropped during it (it then reports
    the first launch rather than start a second one)."""
    holds = False
    """Whether the scheduler itself holds a job until jobs it depends on ended and its start
    time came (Slurm: ``--dependency``, ``--begin``); elsewhere the store holds it (``holds``)."""
    arrays = False
    """Whether ``submit_array`` launches many uploaded folders as one batch (Slurm's job array);
    elsewhere a sweep's members are launched one by one."""

    def __init__(self, transport: Transport, interpreter: str = "python3"):
        self.transport = transport
        self.interpreter = interpreter

    @abstractmethod
    def submit(
        self,
        job: GPUJob,
        folder: JobDir,
        secrets: Mapping[str, str] | None = None,
        after: Sequence[str] = (),
    ) -> Submitted:
        """Launch the uploaded job folder detached from this connection; ``secrets``
        (``--secret-env`` values) reach the job's environment over the launch's stdin;
        ``after``: the scheduler ids of jobs it must wait for (only where ``holds``)."""

    def cancel(self, job: GPUJob) -> None:
        """Stop the job and everything it started."""
        self.cancel_many([job])

    @abstractmethod
    def cancel_many(self, jobs: list[GPUJob]) -> None:
        """Stop these jobs (all on this host) and everything they started: one command, of
        the same length however many jobs (they go on its stdin: ``cancel_input``)."""

    @abstractmethod
    def observe(self, job: GPUJob, folder: FolderState, state_output: str) -> Observation:
        """Decide a job's state from its folder and the state command's output (pure)."""

    def state_command(self, jobs: list[GPUJob]) -> str | None:
        """A command whose output ``observe`` needs (one for all jobs), or None."""
        return None

    def digest(self, state_output: str) -> None:  # noqa: B027 - optional hook
        """Learn from a state command's output once per round trip (before ``observe``)."""

    def look(
        self,
        jobs: list[GPUJob],
        offsets: dict[str, dict[str, int]] | None = None,
        until: float = 0.0,
    ) -> dict[str, Look]:
        """Observe ``jobs`` (and read their files from ``offsets``) in one round trip, which
        may first wait up to ``until`` seconds on the host for one of them to end."""
        if not jobs:
            return {}
        offsets = offsets or {}
        requests = {j.remote_dir: offsets.get(j.id, {}) for j in jobs}
        state_output, folders = probe(
            self.transport, self.interpreter, requests, self.state_command(jobs), until
        )
        self.digest(state_output)
        looks = {}
        for job in jobs:
            folder = folders.get(job.remote_dir, FolderState(exists=False))
            looks[job.id] = Look(self.observe(job, folder, state_output), folder)
        return looks

    def poll(self, jobs: list[GPUJob], until: float = 0.0) -> dict[str, Observation]:
        looks = self.look(jobs, until=until)
        return {job_id: look.observation for job_id, look in looks.items()}


def cancel_input(jobs: list[GPUJob]) -> bytes:
    """Each job's scheduler id and folder, each ended by a NUL: how a cancel command reads the
    jobs from its stdin (bash: ``read -r -d ''``). A folder may hold any byte but NUL."""
    return b"".join(f"{job.scheduler_id}\0{job.remote_dir}\0".encode() for job in jobs)
