"""What a held job waits for (``--after``, ``--after-any``, ``--at``, ``--in``), and when.

A job with dependencies or a start time is uploaded at once (its variables are taken when the
cell runs) and held in the store; whichever process is alive (a kernel's monitor, the server
extension, a waiting ``job.wait()``) looks at the held jobs on each tick: one whose jobs ended
as asked and whose time came joins the slot queue; one whose dependency ended otherwise is
cancelled, with the reason, and never starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .errors import InvalidRequestError
from .models import GPUJob, GPUJobRequest, JobStatus

DELAY = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])", re.IGNORECASE)
DELAY_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Standing:
    """Where a held job stands now: ``ready`` to join the slot queue, ``doomed`` (why it can
    never start), or still waiting (``why``, in words)."""

    ready: bool = False
    doomed: str | None = None
    why: str = ""
    starts_at: datetime | None = None  # set while only its start time holds it


def standing(request: GPUJobRequest, deps: Mapping[str, GPUJob], now: datetime) -> Standing:
    """``request``'s conditions against the jobs it depends on (by id) as the store has them."""
    for job_id in request.after:
        dep = deps.get(job_id)
        if dep is None:
            return Standing(doomed=f"job {job_id} it waits for is no longer in the job store")
        if dep.is_terminal and dep.status != JobStatus.COMPLETED and not request.after_any:
            return Standing(doomed=f"job {dep.id} it waits for ended {dep.status}")
    running = [deps[job_id] for job_id in request.after if not deps[job_id].is_terminal]
    if running:
        listed = ", ".join(f"{dep.id} ({dep.status})" for dep in running)
        return Standing(why=f"waiting for job{'s' if len(running) > 1 else ''} {listed}")
    if request.start_at is not None and request.start_at > now:
        why = f"starts at {local_time(request.start_at)}"
        return Standing(why=why, starts_at=request.start_at)
    return Standing(ready=True)


def waiting_line(request: GPUJobRequest, deps: Mapping[str, GPUJob], now: datetime) -> str:
    """What a held job waits for, with how long until its start time (``%gpu_queue``)."""
    stand = standing(request, deps, now)
    if stand.doomed is not None:
        return f"will be cancelled: {stand.doomed}"
    if stand.ready:
        return "ready: joins the slot queue at the next look"
    if stand.starts_at is not None:
        return f"{stand.why} ({until(stand.starts_at, now)})"
    return stand.why


def start_time(at: str | None, delay: str | None, now: datetime) -> datetime | None:
    """``--at "2026-12-24 02:00"`` (this machine's local time unless it names its zone) or
    ``--in 2h`` (``90m``, ``1h30m``, ``45s``, ``2d``) as a moment in UTC."""
    if at and delay:
        raise InvalidRequestError("give --at or --in, not both")
    if delay:
        return now + timedelta(seconds=seconds(delay))
    if not at:
        return None
    try:
        moment = datetime.fromisoformat(at.strip())
    except ValueError:
        raise InvalidRequestError(
            f"--at {at!r}: expected a date and time such as '2026-12-24 02:00'"
        ) from None
    return moment.astimezone(timezone.utc)


def seconds(delay: str) -> float:
    """``1h30m`` as 5400.0; one line naming the mistake otherwise."""
    text = delay.strip().replace(" ", "")
    parts = DELAY.findall(text)
    if not text or "".join(n + u for n, u in parts).lower() != text.lower():
        raise InvalidRequestError(f"--in {delay!r}: expected a delay such as 90s, 10m, 2h or 1h30m")
    return sum(float(n) * DELAY_UNITS[u.lower()] for n, u in parts)


def local_time(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def until(moment: datetime, now: datetime) -> str:
    left = max(0, round((moment - now).total_seconds()))
    hours, rest = divmod(left, 3600)
    return f"in {hours}:{rest // 60:02d}:{rest % 60:02d}"
