"""Reading what a job left in its folder on the host: output variables, the remote traceback,
the log (what the results service and the tracker read before, or without, a collection)."""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

import cloudpickle

from .. import jobdir
from ..errors import GPUMagicError, JobStateError, RemoteJobError, TransferError
from ..jobdir import JobDir
from ..models import GPUJob
from ..transport.base import Transport


def folder_of(job: GPUJob) -> JobDir:
    return JobDir(PurePosixPath(job.remote_dir))


def unpickle(job: GPUJob, name: str, data: bytes, trusted: bool = True) -> Any:
    """An output variable; from a cluster that is not trusted, refused (a pickle is code)."""
    if not trusted:
        raise TransferError(
            f"output {name!r} of job {job.id} was not unpickled: cluster {job.cluster!r} is "
            "not trusted (trusted = false), and a pickle from a host runs code in this kernel;"
            f" if you trust this job: job.load('outputs/{name}.pkl', unsafe=True)"
        )
    try:
        return cloudpickle.loads(data)
    except Exception as exc:  # unpickling raises anything: missing module, version skew
        raise TransferError(
            f"cannot load output {name!r} of job {job.id}: {type(exc).__name__}: {exc}"
        ) from None


def raise_for_failure(transport: Transport, job: GPUJob, remote: RemoteJobError | None) -> None:
    """Raise the error that best explains why ``job`` has no results: ``remote``, the cell's
    own exception when it raised one, else the job's state and the end of its log."""
    if not job.is_terminal:
        raise JobStateError(
            f"job {job.id} is {job.status}; wait for it (job.wait() or %gpu_fetch --wait)"
        )
    if remote is not None:
        raise remote
    tail = log_tail(transport, job, 10)
    details = ["Last lines of output.log:", *tail.splitlines()] if tail.strip() else []
    message = f"job {job.id} ended {job.status} ({job.reason or 'no reason'})"
    raise JobStateError(message, details=details)


def remote_error(transport: Transport, job: GPUJob) -> RemoteJobError | None:
    try:
        raw = transport.read_file(str(folder_of(job).state(jobdir.ERROR_JSON)))
    except GPUMagicError:
        return None
    return error_from_json(job, raw)


def error_from_json(job: GPUJob, raw: str | bytes) -> RemoteJobError | None:
    """The cell's exception as the runner wrote it to ``error.json`` (None if unreadable)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return RemoteJobError(
        job.id, data.get("type", "Exception"), data.get("message", ""), data.get("traceback", "")
    )


def read_log(transport: Transport, job: GPUJob) -> str:
    try:
        return transport.read_file(str(folder_of(job).log)).decode("utf-8", "replace")
    except TransferError:
        return ""


def log_tail(transport: Transport, job: GPUJob, lines: int | None) -> str:
    return tail_of(read_log(transport, job), lines)


def tail_of(text: str, lines: int | None) -> str:
    if lines is None:
        return text
    return "".join(text.splitlines(keepends=True)[-lines:]) if lines > 0 else ""
