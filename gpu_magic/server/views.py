"""The JSON the routes answer with: jobs, progress, transitions, clusters (pure functions)."""

from __future__ import annotations

from dataclasses import asdict

from ..clusters import ClusterConfig
from ..jobstore import Transition
from ..models import GPUJob

PROGRESS_FIELDS = ("step", "total", "fraction", "rate", "remaining_s", "epoch", "epochs", "unit")


def job_view(job: GPUJob, progress=None, utilization: list[float] | None = None) -> dict:
    """The stored job: id, name, status, cluster, times, exit code, error; its progress and
    recent mean GPU utilisation when the server follows it (None before any, or for a job
    nobody follows yet)."""
    data = job.model_dump(mode="json", exclude={"request"})
    data.update(name=job.name, gpus=job.request.gpus, language=job.request.language)
    data["progress"] = progress_view(progress)
    data["utilization"] = utilization or None
    return data


def progress_view(progress) -> dict | None:
    if progress is None or not progress.known:
        return None
    data = {name: getattr(progress, name) for name in PROGRESS_FIELDS}
    finish = progress.finish_at
    data.update(finish_at=finish.isoformat() if finish else None, hint=progress.hint)
    return data


def transition_view(transition: Transition) -> dict:
    return {
        "status": transition.status.value,
        "at": transition.at.isoformat(),
        "reason": transition.reason,
    }


def cluster_view(cluster: ClusterConfig, default: bool) -> dict:
    """What a client may know of a cluster: where jobs go, never key material."""
    return {
        "name": cluster.name,
        "host": cluster.host,
        "port": cluster.port,
        "user": cluster.user,
        "scheduler": cluster.scheduler,
        "base_path": cluster.base_path,
        "default": default,
    }


def samples_view(samples) -> list[dict]:
    return [asdict(s) for s in samples]


def error_view(error) -> dict | None:
    """The cell's exception on the host (a ``RemoteJobError``), or None."""
    if error is None:
        return None
    return {
        "type": error.exc_type,
        "message": error.remote_message,
        "traceback": error.remote_traceback,
    }
