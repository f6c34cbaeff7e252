"""``SweepHandle``: what ``%%gpu_submit --sweep`` returns; a re-creatable view of a sweep's
members in the store (``Client.sweep`` finds one by id or name from any process)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Literal, Protocol

from .errors import InvalidRequestError
from .handle import JobHandle, JobsDoor, table
from .models import GPUJob, JobStatus
from .monitoring.feed import JobFeed
from .results.series import final_values, metric_rows
from .sweeps import best_member


class SweepsDoor(JobsDoor, Protocol):
    """What a sweep handle asks of the ``Client`` beyond a job handle's."""

    def jobs(self, **filters: Any) -> list[GPUJob]: ...
    def cancel_many(self, job_ids: list[str]) -> list[GPUJob]: ...
    def retry(self, job_id: str) -> GPUJob: ...
    def feeds(self, job_ids: list[str]) -> list[JobFeed]: ...


class SweepHandle:
    """Refers to a sweep by id; every read goes to the store (active members are polled)."""

    def __init__(self, client: SweepsDoor, sweep_id: str):
        self._client = client
        self.id = sweep_id

    # -- members ------------------------------------------------------------------------------
    def jobs(self, *, refresh: bool = True) -> list[GPUJob]:
        """The members' records, in member order."""
        jobs = self._client.jobs(sweep=self.id, refresh=refresh)
        return sorted(jobs, key=lambda job: job.sweep.index if job.sweep else 0)

    @property
    def members(self) -> list[JobHandle]:
        return [JobHandle(self._client, job.id) for job in self.jobs(refresh=False)]

    def __getitem__(self, index: int) -> JobHandle:
        return self.members[index]

    def __len__(self) -> int:
        return len(self.jobs(refresh=False))

    @property
    def params(self) -> list[dict[str, Any]]:
        """Each member's parameters (as stored: JSON scalars, other values as their repr)."""
        return [dict(job.sweep.params) if job.sweep else {} for job in self.jobs(refresh=False)]

    @property
    def name(self) -> str | None:
        jobs = self.jobs(refresh=False)
        return jobs[0].sweep.name if jobs and jobs[0].sweep else None

    def status(self) -> dict[str, int]:
        """How many members are in each state: ``{"completed": 4, "running": 2}``."""
        return dict(Counter(job.status.value for job in self.jobs()))

    @property
    def done(self) -> bool:
        return all(job.is_terminal for job in self.jobs())

    # -- waiting and actions ------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> SweepHandle:
        """Block until every member ended (``WaitTimeoutError`` after ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for job in self.jobs(refresh=False):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._client.wait(job.id, left)  # past the deadline: one look, then the error
        return self

    def cancel(self, member: int | None = None) -> SweepHandle:
        """Cancel every member (one command per cluster), or only member ``member``."""
        self._client.cancel_many([job.id for job in self._pick(member)])
        return self

    def retry(self, member: int | None = None) -> SweepHandle:
        """Run again the members that ended without completing (or only member ``member``):
        each its next attempt in its own folder."""
        jobs = self._pick(member)
        ended = [j for j in jobs if j.is_terminal and j.status != JobStatus.COMPLETED]
        if member is not None and not ended:
            raise InvalidRequestError(
                f"member {member} of sweep {self.id} is {jobs[0].status}: nothing to run again"
            )
        for job in ended:
            self._client.retry(job.id)
        return self

    def _pick(self, member: int | None) -> list[GPUJob]:
        jobs = self.jobs()
        if member is None:
            return jobs
        if not 0 <= member < len(jobs):
            raise InvalidRequestError(f"sweep {self.id} has members 0 to {len(jobs) - 1}")
        return [jobs[member]]

    # -- results ------------------------------------------------------------------------------
    def result_rows(self) -> list[dict[str, Any]]:
        """Per member: index, parameters, status, each metric's final value, runtime, job id."""
        rows, jobs = [], self.jobs()
        for job, feed in zip(jobs, self._client.feeds([job.id for job in jobs]), strict=True):
            finals = final_values(metric_rows(feed.metric_records()))
            runtime = job.runtime_seconds()
            rows.append({
                "member": job.sweep.index if job.sweep else 0,
                **(job.sweep.params if job.sweep else {}),
                "status": job.status.value,
                **finals,
                "runtime_s": None if runtime is None else round(runtime, 1),
                "job": job.id,
            })  # fmt: skip
        return rows

    def results(self):
        """``result_rows`` as a pandas DataFrame when pandas is installed (else the rows)."""
        return table(self.result_rows())

    def best(self, metric: str, mode: Literal["min", "max"] = "min") -> JobHandle:
        """The completed member with the lowest (``mode="max"``: highest) final ``metric``."""
        if mode not in ("min", "max"):
            raise InvalidRequestError(f"mode {mode!r}: expected 'min' or 'max'")
        rows = self.result_rows()
        best = best_member(((row["job"], row["status"], row) for row in rows), metric, mode)
        if best is None:
            fixed = {"member", "status", "runtime_s", "job", *(self.params[0] if rows else ())}
            known = dict.fromkeys(k for r in rows for k in r if k not in fixed)
            raise InvalidRequestError(
                f"no completed member of sweep {self.id} reported {metric!r} "
                f"(its metrics: {', '.join(known) or 'none yet'})"
            )
        return JobHandle(self._client, best)

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(self.status().items()))
        name = f" name={self.name}" if self.name else ""
        return f"<SweepHandle {self.id}{name} {len(self)} members: {counts}>"
