"""Read what ``squeue``, ``sacct`` and ``scontrol`` print, and map Slurm's job states to ours.

Pure functions, tested on output captured from a real Slurm (``tests/fixtures/slurm``). The state
command (``slurm.state_command``) prints sections, each opened by ``@@gm NAME`` and closed by
``@@gm rc CODE`` (the command's exit status), so one round trip can carry several commands and a
failing one is told apart from an empty answer.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..models import JobStatus

SQUEUE_FORMAT = "%i|%T|%r|%N|%P|%S"
PENDING_FORMAT = "%i|%P"
SACCT_FIELDS = "JobID,State,ExitCode,Reason,NodeList,Partition,Start,End"
SECTION = "@@gm"
ACCOUNTING_OFF = "accounting storage is disabled"

LIVE = {
    "PENDING": JobStatus.QUEUED,
    "REQUEUED": JobStatus.QUEUED,
    "REQUEUE_FED": JobStatus.QUEUED,
    "REQUEUE_HOLD": JobStatus.QUEUED,
    "RESV_DEL_HOLD": JobStatus.QUEUED,
    "PREEMPTED": JobStatus.QUEUED,
    "RUNNING": JobStatus.RUNNING,
    "CONFIGURING": JobStatus.RUNNING,
    "COMPLETING": JobStatus.RUNNING,
    "SIGNALING": JobStatus.RUNNING,
    "STAGE_OUT": JobStatus.RUNNING,
    "RESIZING": JobStatus.RUNNING,
    "SUSPENDED": JobStatus.RUNNING,
    "STOPPED": JobStatus.RUNNING,
}
"""States in which Slurm still works on the job (PREEMPTED: Slurm requeues it)."""

FINAL = {
    "COMPLETED": (JobStatus.COMPLETED, None),
    "FAILED": (JobStatus.FAILED, "Slurm: FAILED"),
    "CANCELLED": (JobStatus.CANCELLED, "cancelled in Slurm (scancel)"),
    "TIMEOUT": (JobStatus.TIMEOUT, "ran past its Slurm time limit (--time)"),
    "OUT_OF_MEMORY": (JobStatus.FAILED, "out of memory: Slurm stopped it (raise --mem)"),
    "NODE_FAIL": (JobStatus.FAILED, "its node failed (Slurm: NODE_FAIL)"),
    "BOOT_FAIL": (JobStatus.FAILED, "its node failed to boot (Slurm: BOOT_FAIL)"),
    "DEADLINE": (JobStatus.FAILED, "missed its deadline (Slurm: DEADLINE)"),
    "PREEMPTED": (JobStatus.FAILED, "preempted and not requeued (Slurm: PREEMPTED)"),
    "SPECIAL_EXIT": (JobStatus.FAILED, "Slurm: SPECIAL_EXIT"),
    "REVOKED": (JobStatus.CANCELLED, "revoked by a federated sibling (Slurm: REVOKED)"),
}
"""A job Slurm is done with: our status and why (PREEMPTED here: no longer queued)."""


@dataclass(frozen=True)
class SlurmJob:
    job_id: str
    state: str
    reason: str = ""
    nodes: str = ""
    partition: str = ""
    exit_code: int | None = None
    signal: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    source: str = "squeue"

    @property
    def is_live(self) -> bool:
        """Slurm still works on it. PREEMPTED is live only in squeue (which shows jobs Slurm
        may requeue); in sacct, for a job squeue no longer shows, it is final."""
        return self.state in LIVE and (self.source == "squeue" or self.state not in FINAL)


@dataclass(frozen=True)
class StateReport:
    """Everything one state command learned about the user's jobs."""

    jobs: dict[str, SlurmJob] = field(default_factory=dict)
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)
    error: str | None = None
    accounting: bool | None = None


def sections(text: str) -> dict[str, tuple[int | None, str]]:
    """``{name: (exit status, body)}`` of the ``@@gm`` sections in ``text``."""
    found: dict[str, tuple[int | None, str]] = {}
    name, body = None, []
    for line in text.splitlines():
        if not line.startswith(f"{SECTION} "):
            body.append(line)
            continue
        word = line[len(SECTION) + 1 :].strip()
        if word.startswith("rc ") and name is not None:
            status = word[3:].strip()
            found[name] = (int(status) if status.lstrip("-").isdigit() else None, "\n".join(body))
            name = None
        elif not word.startswith("rc "):
            name, body = word, []
    if name is not None:  # cut off before its exit status
        found[name] = (None, "\n".join(body))
    return found


@functools.lru_cache(maxsize=8)
def parse_state_output(text: str) -> StateReport:
    """Parse a whole state command's output once (``observe`` runs once per job on it)."""
    parts = sections(text)
    rc, body = parts.get("squeue", (None, ""))
    if rc != 0:
        message = body.strip() or "no answer"
        return StateReport(error=f"squeue failed: {message.splitlines()[-1]}")
    jobs = parse_squeue(body)
    finals: dict[str, SlurmJob] = {}
    accounting = None
    if "sacct" in parts:
        sacct_rc, sacct_body = parts["sacct"]
        if ACCOUNTING_OFF in sacct_body:
            accounting = False
        elif sacct_rc == 0:
            accounting = True
            finals.update(parse_sacct(sacct_body))
    if "scontrol" in parts:
        finals.update(parse_scontrol(parts["scontrol"][1]))
    for job_id, final in finals.items():
        # a record still being written (sacct says RUNNING) never hides squeue's final state
        if final.state in FINAL and (job_id not in jobs or not jobs[job_id].is_live):
            jobs[job_id] = final
    positions = queue_positions(parts.get("pending", (None, ""))[1])
    return StateReport(jobs, positions, None, accounting)


def parse_squeue(text: str) -> dict[str, SlurmJob]:
    """Lines of ``squeue -h -o SQUEUE_FORMAT``."""
    jobs = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 6 or not fields[0]:
            continue
        job_id, state, reason, nodes, partition, start = fields
        jobs[job_id] = SlurmJob(
            job_id, _state(state), _reason(reason), nodes, partition, start=_time(start)
        )
    return jobs


def parse_sacct(text: str) -> dict[str, SlurmJob]:
    """Lines of ``sacct -X -n -P -o SACCT_FIELDS``."""
    jobs = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 8 or not fields[0]:
            continue
        job_id, state, exit_code, reason, nodes, partition, start, end = fields
        code, sig = _exit_code(exit_code)
        jobs[job_id] = SlurmJob(
            job_id, _state(state), _reason(reason), _nodes(nodes), partition, code, sig,
            _time(start), _time(end), "sacct",
        )  # fmt: skip
    return jobs


_PAIR = re.compile(r"(?:^|\s)([A-Za-z:/]+)=(\S*)")


def parse_scontrol(text: str) -> dict[str, SlurmJob]:
    """Lines of ``scontrol -o show job ID`` (one job per line, ``Key=Value`` pairs)."""
    jobs = {}
    for line in text.splitlines():
        pairs = dict(_PAIR.findall(line))
        if "JobId" not in pairs or "JobState" not in pairs:
            continue
        job_id = pairs["JobId"]
        if pairs.get("ArrayJobId") and pairs.get("ArrayTaskId", "").isdigit():
            job_id = f"{pairs['ArrayJobId']}_{pairs['ArrayTaskId']}"
        code, sig = _exit_code(pairs.get("ExitCode", ""))
        jobs[job_id] = SlurmJob(
            job_id, _state(pairs["JobState"]), _reason(pairs.get("Reason", "")),
            _nodes(pairs.get("NodeList", "")), pairs.get("Partition", ""), code, sig,
            _time(pairs.get("StartTime", "")), _time(pairs.get("EndTime", "")), "scontrol",
        )  # fmt: skip
    return jobs


def queue_positions(text: str) -> dict[str, tuple[int, int]]:
    """``{job id: (position, pending jobs)}`` per partition, from ``squeue -t PD`` sorted by
    priority (highest first): the order in which Slurm will consider them."""
    by_partition: dict[str, list[str]] = {}
    for line in text.splitlines():
        job_id, _, partition = line.strip().partition("|")
        if job_id:
            by_partition.setdefault(partition, []).append(job_id)
    return {
        job_id: (i + 1, len(ids)) for ids in by_partition.values() for i, job_id in enumerate(ids)
    }


def final_status(job: SlurmJob) -> tuple[JobStatus, str | None]:
    """Our status for a job Slurm is done with, and why."""
    status, reason = FINAL.get(job.state, (JobStatus.FAILED, f"Slurm: {job.state}"))
    if job.state == "CANCELLED" and job.reason == "DependencyNeverSatisfied":
        reason = (
            "never started: a job it depends on (--after) did not end as asked, so Slurm "
            "cancelled it (DependencyNeverSatisfied)"
        )
    if job.state == "FAILED" and job.exit_code is not None:
        reason = f"exit code {job.exit_code}" + (f", signal {job.signal}" if job.signal else "")
        if job.reason and job.reason not in ("None", "NonZeroExitCode"):
            reason += f" ({job.reason})"
    return status, reason


def _state(text: str) -> str:
    """``CANCELLED by 0`` → ``CANCELLED``; ``COMPLETING+`` style suffixes dropped."""
    return text.strip().split(" ")[0].rstrip("+").upper()


def _reason(text: str) -> str:
    text = text.strip()
    return "" if text in ("None", "(null)") else text


def _nodes(text: str) -> str:
    text = text.strip()
    return "" if text in ("None assigned", "(null)") else text


def _exit_code(text: str) -> tuple[int | None, int | None]:
    code, _, sig = text.strip().partition(":")
    if not code.isdigit():
        return None, None
    return int(code), int(sig) if sig.isdigit() else None


def _time(text: str) -> datetime | None:
    """Slurm prints local time without a zone (``2026-11-26T13:21:10``); ``N/A``/``Unknown``."""
    try:
        return datetime.fromisoformat(text.strip()).astimezone(timezone.utc)
    except ValueError:
        return None
