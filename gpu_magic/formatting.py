"""Plain-text tables for the magics (readable in a terminal, nbconvert and notebooks alike)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from .clusters import ClusterConfig
from .models import GPUJob


def printable(text: str) -> str:
    """``text`` with control characters shown escaped (``\\n``, ``\\x1b``): a file name or a
    value from a host cannot forge rows of a table or move the terminal's cursor."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Cells are shown ``printable``: one row per row, whatever a cell holds."""
    rows = [[printable(str(cell)) for cell in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def clock(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def job_table(jobs: Sequence[GPUJob]) -> str:
    if not jobs:
        return "No jobs yet. Submit one with %%gpu_submit."
    rows = [
        (
            job.id,
            job.name or "-",
            job.status.value,
            job.cluster,
            str(job.request.gpus),
            duration(job.runtime_seconds()),
            clock(job.created_at),
            "" if job.exit_code in (None, 0) else f"exit {job.exit_code}",
        )
        for job in jobs
    ]
    headers = ("job", "name", "status", "cluster", "gpus", "runtime", "submitted", "")
    return table(headers, rows)


SCHEDULER_ID_LABELS = {"process": "process", "slurm": "slurm job"}
"""What a job's ``scheduler_id`` is, by its cluster's scheduler: a process group or a Slurm job."""


def job_details(job: GPUJob, transitions: Sequence, scheduler: str | None = None) -> str:
    """``scheduler`` names the job's cluster's; ``None`` (the cluster since removed) says
    ``host id``, which is true of both."""
    fields = [
        ("job", job.id),
        ("name", job.name or "-"),
        ("status", job.status.value + (f" ({job.reason})" if job.reason else "")),
        ("cluster", job.cluster),
        ("folder", job.remote_dir),
        (SCHEDULER_ID_LABELS.get(scheduler, "host id"), job.scheduler_id or "-"),
        ("gpus", str(job.request.gpus)),
        ("submitted", clock(job.submitted_at or job.created_at)),
        ("started", clock(job.started_at)),
        ("ended", clock(job.ended_at)),
        ("runtime", duration(job.runtime_seconds())),
        ("exit code", "-" if job.exit_code is None else str(job.exit_code)),
    ]
    if job.error:
        fields.append(("error", job.error))
    lines = [f"{k:<10} {v}" for k, v in fields]
    lines.append("history")
    lines += [
        f"  {clock(t.at)}  {t.status.value:<10} {t.reason or ''}".rstrip() for t in transitions
    ]
    return "\n".join(lines)


def cluster_table(clusters: dict[str, ClusterConfig], default: str) -> str:
    rows = [
        (
            ("* " if name == default else "  ") + name,
            c.host or "(this machine)",
            str(c.port or "-"),
            c.user or "-",
            c.scheduler,
            c.base_path,
        )
        for name, c in sorted(clusters.items())
    ]
    return table(("  cluster", "host", "port", "user", "scheduler", "base path"), rows)


# -- transfers and collected files --------------------------------------------------------------
UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def size(nbytes: float | None, exact: bool = False) -> str:
    """Decimal SI units (``12.3 MB``, ``4.1 kB``; 1 GB = 10^9 bytes, as quotas and ``scp``
    count): the one byte-size format every user sees. ``exact``: the number of bytes."""
    if nbytes is None:
        return "-"
    if exact:
        return str(int(nbytes))
    value, unit = float(nbytes), 0
    while abs(value) >= 1000 and unit < len(UNITS) - 1:
        value, unit = value / 1000, unit + 1
    return f"{int(value)} B" if unit == 0 else f"{value:.1f} {UNITS[unit]}"


def seconds(value: float) -> str:
    """``1.2 s`` under a minute (a quick download), else ``m:ss``."""
    return f"{value:.1f} s" if value < 60 else duration(value)


def eta(remaining_s: float | None) -> str:
    """To the nearest second, but a transfer with bytes left never reads ``ETA 0:00``."""
    if remaining_s is None:
        return "ETA unknown"
    return f"ETA {duration(max(round(remaining_s), 1 if remaining_s > 0 else 0))}"


def started(snap) -> bool:
    """The collector has said what it will move (or has already stopped)."""
    return bool(snap.files or snap.total or snap.finished)


def transfer_line(snap) -> str:
    """One line for a ``TransferSnapshot``: while it moves, when it is done, or why it failed."""
    files = f"{snap.files_done}/{snap.files} file{'' if snap.files == 1 else 's'}"
    if snap.error:
        return f"failed after {size(snap.done)} of {size(snap.total)}: {snap.error}"
    if snap.finished:
        count = f" · {snap.files} file{'' if snap.files == 1 else 's'}" if snap.files else ""
        return f"done: {size(snap.done)} in {seconds(snap.elapsed)}{count}"
    if not started(snap):
        return "listing the job's files…"
    rate = [] if snap.rate is None else [f"{size(snap.rate)}/s"]
    parts = [f"{size(snap.done)} / {size(snap.total)}", *rate, eta(snap.remaining_s), files]
    return " · ".join(parts)


FILE_HEADERS = ("path", "kind", "size", "fetched")


def files_table(entries: Iterable[dict]) -> str:
    """The collected files of a job (``job.files()``) as ``%gpu_fetch JOB --list`` prints them."""
    rows = [
        (e["path"], e["kind"], size(e["size"]), "yes" if e["fetched"] else "no") for e in entries
    ]
    return table(FILE_HEADERS, rows) if rows else "No collected files."


def audit_table(records: Sequence[dict]) -> str:
    """One row per audit record: when, what happened, where, and its essentials."""
    if not records:
        return "No audit records yet."
    rows = [
        (
            str(r["seq"]),
            clock(datetime.fromisoformat(r["at"])),
            r["event"],
            r.get("cluster") or "-",
            _shorten(audit_summary(r), 100),
        )
        for r in records
    ]
    return table(("#", "at", "event", "cluster", "what"), rows)


def audit_summary(record: dict) -> str:
    """The essentials of one audit record in a line."""
    event, error = record["event"], record.get("error")
    if event == "command":
        what = f"{record['command']} → exit {record.get('exit', '?')}, {record['ms']:g} ms"
    elif event in ("upload", "download", "read"):
        what = f"{record['path']} ({size(record.get('bytes'))}, {record['ms']:g} ms)"
    elif event in ("mkdir", "list"):
        what = record["path"]
    elif event == "state":
        what = f"{' '.join(record['jobs'])} {record['status']}: {record.get('reason') or ''}"
    elif event == "delete":
        what = f"{' '.join(record['jobs'])} {record['location']} {record['path']}"
    elif event == "trust":
        what = f"{record['decision']} {record.get('key') or record.get('file') or ''}"
    else:  # submit, cancel
        what = f"{' '.join(record['jobs'])} {record.get('name') or ''}"
    return f"{what.strip()} — {error}" if error else what.strip()


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def template_list(templates) -> str:
    """``%gpu_template list``: each template, what it extends and sets."""
    names = templates.names()
    if not names:
        return "gpu_magic: no templates yet (%gpu_template save NAME, or [templates.NAME])"
    tables = templates.tables()
    lines = [f"gpu_magic: {len(names)} template(s)"]
    width = max(len(name) for name in names)
    for name in names:
        own = {k: v for k, v in tables[name].items() if k != "extends"}
        base = f"extends {tables[name]['extends']}; " if "extends" in tables[name] else ""
        lines.append(f"  {name:<{width}}  {base}{options_words(own) or 'no options'}")
    return "\n".join(lines)


def template_view(templates, name: str) -> str:
    """``%gpu_template show NAME``: every option it gives, and which template set it."""
    options, origins = templates.options(name).to_template(), templates.origins(name)
    chain = " <- ".join(reversed(templates.chain(name)))
    lines = [f"gpu_magic: template {name} ({chain})"]
    width = max((len(key) for key in options), default=0)
    for key, value in options.items():
        lines.append(f"  {key:<{width}}  {option_value(value)}  ({origins[key]})")
    if not options:
        lines.append("  no options: the cluster's defaults")
    return "\n".join(lines)


def options_words(options: dict[str, Any]) -> str:
    """``gpus=4, env={A=1}``: options in one line."""
    return ", ".join(f"{key}={option_value(value)}" for key, value in options.items())


def option_value(value: Any) -> str:
    """An option's value as a template table shows it: ``[a, b]``, ``{K=v}``, ``4``."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={v}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def sweep_table(rows: Sequence[dict]) -> str:
    """A sweep's results (``SweepHandle.result_rows``) as text: one line per member."""
    headers = list(dict.fromkeys(k for row in rows for k in row))
    return table(headers, [[result_cell(row.get(k)) for k in headers] for row in rows])


def result_cell(value: Any) -> str:
    """A value in a results table: ``-`` for none, a number to 4 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return printable(str(value))


def queue_table(waiting: Sequence[tuple[GPUJob, str]]) -> str:
    """The jobs that wait and why, one line each (``%gpu_queue``)."""
    if not waiting:
        return "gpu_magic: no job waits"
    rows = [
        (job.id, job.name or "-", job.cluster, str(job.request.priority), printable(why))
        for job, why in waiting
    ]
    return table(("job", "name", "cluster", "priority", "waiting for"), rows)
