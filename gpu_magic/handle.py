"""``JobHandle``: what ``%%gpu_submit`` returns; a thin, re-creatable view of a stored job."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Protocol

from .jobstore import JobStore
from .models import GPUJob, JobStatus
from .monitoring.feed import JobFeed
from .results.series import metric_rows
from .results_service import ResultsService


class JobsDoor(Protocol):
    """What a handle asks of the ``Client`` that made it (the facade is not imported here:
    nothing below the facade imports it back)."""

    store: JobStore
    results: ResultsService

    def job(self, id_or_name: str, *, refresh: bool = True) -> GPUJob: ...
    def wait(self, job_id: str, timeout: float | None = None) -> GPUJob: ...
    def logs(self, job_id: str, tail: int | None = None) -> str: ...
    def cancel(self, job_id: str) -> GPUJob: ...
    def feed(self, job_id: str) -> JobFeed: ...


class JobHandle:
    """Refers to a job by id; every property reads the store (and polls the host if active)."""

    def __init__(self, client: JobsDoor, job_id: str):
        self._client = client
        self.id = job_id

    @property
    def job(self) -> GPUJob:
        return self._client.job(self.id)

    @property
    def name(self) -> str | None:
        return self._client.job(self.id, refresh=False).name

    @property
    def status(self) -> JobStatus:
        return self.job.status

    def wait(self, timeout: float | None = None) -> JobHandle:
        """Block until the job ends (``WaitTimeoutError`` after ``timeout`` seconds)."""
        self._client.wait(self.id, timeout)
        return self

    def logs(self, tail: int | None = None) -> str:
        return self._client.logs(self.id, tail)

    def cancel(self) -> JobHandle:
        self._client.cancel(self.id)
        return self

    def fetch(self) -> dict[str, Any]:
        """The ``--outputs`` variables of a completed job; a failed one raises its error."""
        return self._client.results.outputs(self.id)

    @property
    def outputs(self) -> dict[str, Any]:
        """The ``--outputs`` variables, from the local results store (collected on first use)."""
        return self._client.results.outputs(self.id)

    def files(self) -> list[dict]:
        """Collected files: path, size, sha256, kind (variable/model/checkpoint/plot/log/...)
        and ``fetched`` (False: listed only, ``--fetch manual``; ``load`` brings it)."""
        return self._client.results.files(self.id)

    def load(self, name: str, *, unsafe: bool = False):
        """Load a collected file (``outputs/`` may be left out): numpy, torch, safetensors,
        pickle or JSON by extension; any other file: its local path. Torch files load weights
        only and pickles only from a trusted cluster, unless ``unsafe=True`` (you trust the
        job: a pickle from a host can run code in this kernel)."""
        return self._client.results.load(self.id, name, unsafe=unsafe)

    def path(self, name: str):
        """The local path of a collected file (downloaded now if it was not yet)."""
        return self._client.results.local_path(self.id, name)

    def archive(self):
        """Pack the finished job's local results into ``{results_dir}/{job_id}.tar.zst`` (gzip
        without zstandard); ``load``, ``outputs``, ``metrics`` and ``logs`` read from it."""
        return self._client.results.archive(self.id)

    @property
    def remote_deleted(self) -> bool:
        """Whether a cleanup deleted the job's folder on the host (reads use the local copy)."""
        return self._client.store.remote_deleted(self.id) is not None

    def metrics(self):
        """Parsed metric series, one row per step: a pandas DataFrame when pandas is installed."""
        return table(metric_rows(self._client.feed(self.id).metric_records()))

    def gpu(self):
        """GPU samples (time, index, utilisation %, memory MiB, temperature, power)."""
        return table([asdict(s) for s in self._client.feed(self.id).gpu_samples()])

    def progress(self):
        """Step, total, rate, time left and finish time as last seen (all None before any:
        ``.known`` says which; ``.hint`` what would make an unknown total known)."""
        return self._client.feed(self.id).progress()

    def __repr__(self) -> str:
        job = self.job
        name = f" name={job.name}" if job.name else ""
        extra = f" exit_code={job.exit_code}" if job.exit_code not in (None, 0) else ""
        return f"<JobHandle {job.id}{name} {job.status} on {job.cluster}{extra}>"


def table(rows: list[dict]):
    """Rows as a pandas DataFrame when pandas is installed, else as they are."""
    try:
        import pandas
    except ImportError:
        return rows
    return pandas.DataFrame(rows)
