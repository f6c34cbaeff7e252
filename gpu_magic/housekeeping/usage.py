"""How much room each job takes: its remote folder (one command per host) and its local service.

Remote sizes come from ``gpu_magic/remote/usage.py`` run with the cluster's Python, all of a
cluster's folders in one round trip; a host that cannot be reached marks its jobs
``unreachable`` instead of failing the whole report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import GPUMagicError, TransferError
from ..models import GPUJob
from ..transport.base import Program, Transport

if TYPE_CHECKING:  # pragma: no cover
    from ..results_service import ResultsService

USAGE = Program.from_file(Path(__file__).resolve().parent.parent / "remote" / "usage.py")

UNREACHABLE = "unreachable"
GONE = "gone"  # the folder is not on the host
DELETED = "deleted"  # ... because a cleanup deleted it


@dataclass(frozen=True)
class JobUsage:
    job: GPUJob
    remote: int | None  # bytes; None: see ``remote_note``
    remote_note: str  # "", "unreachable", "gone" or "deleted"
    local: int
    archived: bool
    fetched: bool


@dataclass
class Usage:
    jobs: list[JobUsage] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # cluster -> why it is unreachable

    def total(self, side: str, cluster: str | None = None) -> int:
        rows = [u for u in self.jobs if cluster is None or u.job.cluster == cluster]
        return sum(getattr(u, side) or 0 for u in rows)


def remote_sizes(transport: Transport, interpreter: str, folders: list[str]) -> dict:
    """``{folder: bytes or None}`` for all ``folders`` of one host, in one command."""
    asked = json.dumps(folders).encode()
    text = transport.run_program(USAGE, interpreter, stdin=asked).check().text
    try:
        sizes = json.loads(text)
        return {f: None if sizes[f] is None else int(sizes[f]) for f in folders}
    except (ValueError, KeyError, TypeError):
        raise TransferError(f"unreadable folder sizes from the host: {text[:200]!r}") from None


def cluster_sizes(
    service: ResultsService, cluster: str, jobs: list[GPUJob]
) -> dict[str, int | None]:
    """The remote size of each job (by id) of one cluster; raises when the host is unreachable."""
    config = service.hosts.clusters.get(cluster)
    folders = remote_sizes(
        service.hosts.get(cluster).transport, config.interpreter, [j.remote_dir for j in jobs]
    )
    return {job.id: folders[job.remote_dir] for job in jobs}


def measure(service: ResultsService, cluster: str | None = None) -> Usage:
    """Usage of every stored job (of ``cluster``), remote and local."""
    usage = Usage()
    jobs = service.jobs.list(cluster=cluster)
    for name in sorted({j.cluster for j in jobs}):
        mine = [j for j in jobs if j.cluster == name]
        try:
            sizes = cluster_sizes(service, name, mine)
        except GPUMagicError as exc:
            usage.errors[name] = str(exc)
            sizes = None
        usage.jobs += [_row(service, job, sizes) for job in mine]
    return usage


def _row(service: ResultsService, job: GPUJob, sizes: dict | None) -> JobUsage:
    store = service.local
    if sizes is None:
        remote, note = None, UNREACHABLE
    else:
        remote = sizes[job.id]
        deleted = remote is None and service.jobs.remote_deleted(job.id) is not None
        note = "" if remote is not None else (DELETED if deleted else GONE)
    archive = store.archive_file(job.id)
    return JobUsage(
        job=job,
        remote=remote,
        remote_note=note,
        local=store.size(job.id),
        archived=archive is not None and archive.exists(),
        fetched=store.fully_fetched(job.id),
    )
