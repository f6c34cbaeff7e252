"""Plain-text rendering of a job panel and of the jobs table (no widgets needed).

Also the one place that reads a feed for the UI, duck-typed: anything with ``job``,
``log_bytes()`` and ``gpu_samples()`` works; ``metric_series()``, ``secondary_axis(name)`` and
``progress()``, ``unreachable`` and ``unreachable_since`` are used when the feed has them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from ..formatting import duration, table
from ..models import GPUJob, JobStatus

TAIL_BYTES = 256 * 1024
TAIL_LINES = 10
IDLE_AFTER_S = 300.0


@dataclass
class Snapshot:
    """Everything one panel shows, read from a feed at one moment."""

    job: GPUJob
    host: str = ""
    progress: Any = None
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    secondary: frozenset[str] = frozenset()
    gpu: list = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)
    idle_after_s: float = IDLE_AFTER_S
    unreachable: str | None = None  # the panel's "reconnecting…" line, when the host is out
    resumed: str | None = None  # "resumed from checkpoints/checkpoint-1000 (step 1000)"


class TextFallback:
    """Mixin for a widget: its ``text/plain`` becomes ``self.snapshot_text()``."""

    def snapshot_text(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):
            bundle["text/plain"] = self.snapshot_text()
        return bundle


class TextView:
    """What is displayed where no widget frontend exists: a text snapshot, fresh at each repr."""

    def __init__(self, render):
        self.render = render

    def __repr__(self) -> str:
        return self.render()

    def _repr_pretty_(self, printer, _cycle) -> None:
        printer.text(self.render())


# -- reading a feed ---------------------------------------------------------------------------
def read_series(feed) -> dict[str, list[tuple[float, float]]]:
    reader = getattr(feed, "metric_series", None)
    return dict(reader()) if reader else {}


def secondary_names(feed, names) -> frozenset[str]:
    test = getattr(feed, "secondary_axis", None)
    return frozenset(n for n in names if test and test(n))


def read_progress(feed):
    reader = getattr(feed, "progress", None)
    return reader() if callable(reader) else None


def log_tail(feed, max_bytes: int = TAIL_BYTES) -> list[str]:
    """The complete lines among the log's last ``max_bytes`` bytes (a cut first line dropped)."""
    tail = getattr(feed, "log_tail", None)
    data = tail(max_bytes) if tail else feed.log_bytes()[-max_bytes:]
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[1:] if len(data) >= max_bytes and lines else lines


def host_label(client, job: GPUJob) -> str:
    try:
        return client.clusters.get(job.cluster).host or "this machine"
    except Exception:  # a fake client, a cluster removed since
        return job.cluster


def snapshot(client, feed, *, idle_after_s: float = IDLE_AFTER_S) -> Snapshot:
    series = read_series(feed)
    return Snapshot(
        job=feed.job,
        host=host_label(client, feed.job),
        progress=read_progress(feed),
        series=series,
        secondary=secondary_names(feed, series),
        gpu=feed.gpu_samples(),
        log_lines=log_tail(feed),
        idle_after_s=idle_after_s,
        unreachable=reconnecting_line(feed),
        resumed=resumed_line(feed),
    )


# -- pieces -----------------------------------------------------------------------------------
def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def elapsed(job: GPUJob, now: datetime | None = None) -> float | None:
    now = now or datetime.now(timezone.utc)
    if job.started_at is not None:
        return job.runtime_seconds(now)
    since = job.submitted_at or job.created_at
    return None if job.is_terminal else max(0.0, (now - since).total_seconds())


def status_parts(job: GPUJob, host: str = "", now: datetime | None = None) -> list[str]:
    """What follows the status word: id and name, elapsed time, host, GPUs, reason, exit."""
    name = f" ({job.name})" if job.name else ""
    took = "ran" if job.is_terminal else "elapsed"
    parts = [f"job {job.id}{name}", f"{took} {duration(elapsed(job, now))}"]
    parts.append(f"host {host or job.cluster}")
    parts.append(f"{job.request.gpus} GPU{'' if job.request.gpus == 1 else 's'}")
    if job.attempt > 1:
        parts.append(f"attempt {job.attempt} of {job.request.retries + 1}")
    if job.status in (JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RUNNING) and job.reason:
        parts.append(job.reason)  # Slurm: job id, pending reason and queue position, or nodes
    if job.exit_code not in (None, 0):
        parts.append(f"exit {job.exit_code}")
    return parts


def status_line(job: GPUJob, host: str = "", now: datetime | None = None) -> str:
    return f"{job.status.value}: " + " · ".join(status_parts(job, host, now))


def finish_clock(moment: datetime | float | None, now: datetime | None = None) -> str:
    """The expected finish as a wall-clock time (a datetime or unix seconds)."""
    if moment is None:
        return "-"
    if isinstance(moment, (int, float)):
        moment = datetime.fromtimestamp(moment, timezone.utc)
    now = now or datetime.now(timezone.utc)
    near = abs(moment - now) < timedelta(hours=20)
    return moment.astimezone().strftime("%H:%M:%S" if near else "%Y-%m-%d %H:%M")


def rate_text(progress) -> str:
    unit = getattr(progress, "unit", None) or "step"
    unit = {"step": "steps", "epoch": "epochs"}.get(unit, unit)
    return f"{progress.rate:.3g} {unit}/s" if progress.rate else ""


def eta_text(progress, now: datetime | None = None) -> str:
    if progress is None or progress.remaining_s is None:
        hint = getattr(progress, "hint", None)
        return f"ETA unknown ({hint})" if hint else "ETA unknown"
    left = f"ETA {duration(progress.remaining_s)} left"
    return f"{left}, finishes {finish_clock(progress.finish_at, now)}"


def position(progress) -> str:
    """``step 1250/5000 (25%) · epoch 2/8``, with what the progress knows."""
    step, epoch = getattr(progress, "step", None), getattr(progress, "epoch", None)
    parts = []
    if step is not None:
        parts.append(f"step {step}" + (f"/{progress.total}" if progress.total else ""))
    if epoch is not None:
        parts.append(f"epoch {epoch}" + (f"/{progress.epochs}" if progress.epochs else ""))
    if progress.fraction is not None:
        done = f"{progress.fraction:.0%}"
        parts[:1] = [f"{parts[0]} ({done})" if parts else done]
    return " · ".join(parts)


def progress_line(progress, now: datetime | None = None) -> str:
    if progress is None or not getattr(progress, "known", True):
        hint = getattr(progress, "hint", None)
        return f"progress: - ({hint})" if hint else "progress: -"
    parts = [position(progress), rate_text(progress), eta_text(progress, now)]
    return "progress: " + " · ".join(p for p in parts if p)


def metrics_line(series: dict[str, list[tuple[float, float]]]) -> str:
    last = [(name, pts[-1]) for name, pts in series.items() if pts]
    if not last:
        return "metrics: -"
    return "metrics: " + " · ".join(f"{name} {number(y)} @ {number(x)}" for name, (x, y) in last)


def latest_per_gpu(samples) -> list:
    latest = {}
    for sample in samples:
        latest[sample.index] = sample
    return [latest[i] for i in sorted(latest)]


def gpu_line(sample) -> str:
    mem = f"{number(gib(sample.memory_used))}/{number(gib(sample.memory_total))} GiB"
    extra = [f"{number(sample.temperature)}°C", f"{number(sample.power)} W"]
    return f"GPU{sample.index} {number(sample.utilization)}% · {mem} · " + " · ".join(extra)


def gib(mib: float | None) -> float | None:
    return None if mib is None else mib / 1024


def idle_gpus(samples, job: GPUJob, window_s: float = IDLE_AFTER_S) -> bool:
    """Running, GPU samples cover ``window_s`` and every one of its samples reads 0 %."""
    if job.status != JobStatus.RUNNING or not samples:
        return False
    newest = max(s.at for s in samples)
    if min(s.at for s in samples) > newest - window_s:
        return False  # not watched long enough yet
    recent = [s.utilization for s in samples if s.at >= newest - window_s]
    known = [u for u in recent if u is not None]
    return bool(known) and all(u == 0 for u in known)


def idle_warning(window_s: float) -> str:
    return f"warning: every GPU has been idle (0% utilisation) for {duration(window_s)} or more"


# -- whole renderings -------------------------------------------------------------------------
def failure_lines(job: GPUJob) -> list[str]:
    """``failure: KIND: explanation`` and ``fix: ...`` for a job whose failure is classified."""
    failure = job.failure
    if not failure:
        return []
    return [f"failure: {failure['kind']}: {failure['explanation']}", f"fix: {failure['fix']}"]


def resumed_line(feed) -> str | None:
    """ "resumed from checkpoints/X (step N)" once a retried attempt resumed from a checkpoint;
    the step is the last number in the checkpoint's name (``checkpoint-1000``, ``step=400``)."""
    where = getattr(feed, "resumed_from", None)
    if not where:
        return None
    steps = re.findall(r"\d+", where.rsplit("/", 1)[-1])
    return f"resumed from {where}" + (f" (step {steps[-1]})" if steps else "")


def reconnecting_line(feed, now: float | None = None) -> str | None:
    """ "reconnecting… (12 s): why" while the last look at the job's host failed, else None."""
    why = getattr(feed, "unreachable", None)  # duck-typed feeds may not track reach
    since = getattr(feed, "unreachable_since", None)
    if why is None or since is None:
        return None
    seconds = (time.monotonic() if now is None else now) - since
    return f"reconnecting… (host out of reach for {duration(seconds)}): {why}"


def render(snap: Snapshot, tail: int = TAIL_LINES, now: datetime | None = None) -> str:
    lines = [status_line(snap.job, snap.host, now), progress_line(snap.progress, now)]
    if snap.unreachable:
        lines.append(snap.unreachable)
    if snap.resumed:
        lines.append(snap.resumed)
    lines.append(metrics_line(snap.series))
    lines += [gpu_line(s) for s in latest_per_gpu(snap.gpu)] or ["GPU: no samples"]
    if idle_gpus(snap.gpu, snap.job, snap.idle_after_s):
        lines.append(idle_warning(snap.idle_after_s))
    if snap.job.error:
        lines.append(f"error: {snap.job.error}")
    lines += failure_lines(snap.job)
    lines.append(f"--- last {tail} log lines ---")
    lines += snap.log_lines[-tail:] if tail else []
    return "\n".join(lines)


TABLE_HEADERS = ("job", "name", "status", "cluster", "gpus", "progress", "ETA", "runtime")


def table_row(job: GPUJob, progress=None, now: datetime | None = None) -> tuple[str, ...]:
    fraction = getattr(progress, "fraction", None)
    remaining = getattr(progress, "remaining_s", None)
    return (
        job.id,
        job.name or "-",
        job.status.value,
        job.cluster,
        str(job.request.gpus),
        "-" if fraction is None else f"{fraction:.0%}",
        "-" if remaining is None or job.is_terminal else duration(remaining),
        duration(elapsed(job, now)),
    )


def table_text(rows) -> str:
    rows = list(rows)
    return table(TABLE_HEADERS, rows) if rows else "No jobs yet. Submit one with %%gpu_submit."
