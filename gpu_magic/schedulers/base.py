"""The scheduler seam: submit, poll many jobs in one round trip, cancel."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime

from ..jobdir import JobDir
from ..models import GPUJob, JobStatus
from ..transport.base import Transport


@dataclass(frozen=True)
class Observation:
    """What one poll learned about one job."""

    status: JobStatus
    reason: str | None = None
    exit_code: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None


@dataclass(frozen=True)
class Submitted:
    scheduler_id: str | None
    status: JobStatus
    reason: str | None = None


class Scheduler(ABC):
    name: str

    def __init__(self, transport: Transport):
        self.transport = transport

    @abstractmethod
    def submit(self, job: GPUJob, folder: JobDir) -> Submitted:
        """Launch the uploaded job folder detached from this connection."""

    @abstractmethod
    def poll(self, jobs: list[GPUJob]) -> dict[str, Observation]:
        """Observe all given jobs (of this transport's host) in ONE round trip."""

    @abstractmethod
    def cancel(self, job: GPUJob) -> None:
        """Stop the job and everything it started."""
