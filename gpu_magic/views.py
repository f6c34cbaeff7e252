"""Jobs, progress, transitions, clusters, disk use and cleanups as JSON (pure functions): what
the REST routes answer and what ``gpu-magic --json`` prints, one shape for both."""

from __future__ import annotations

from dataclasses import asdict

from .clusters import ClusterConfig
from .housekeeping.cleanup import Action, Plan
from .housekeeping.usage import Usage
from .jobstore import Transition
from .models import GPUJob

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


def queue_view(waiting: list[tuple[GPUJob, str]]) -> list[dict]:
    """The jobs that wait, each with why (``%gpu_queue``, ``gpu-magic queue``)."""
    return [
        {**job_view(job), "priority": job.request.priority, "waiting_for": why}
        for job, why in waiting
    ]


def job_status_view(job: GPUJob, history: list[Transition], progress=None) -> dict:
    """One job with every state it passed through (``GET /gpu-jobs/ID``, ``status JOB``)."""
    return {**job_view(job, progress), "history": [transition_view(t) for t in history]}


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


def usage_view(usage: Usage) -> dict:
    """Disk use per job and in total, with the clusters that could not be asked."""
    jobs = [
        {
            "id": u.job.id,
            "cluster": u.job.cluster,
            "remote_bytes": u.remote,
            "remote_note": u.remote_note or None,
            "local_bytes": u.local,
            "archived": u.archived,
            "fetched": u.fetched,
        }
        for u in usage.jobs
    ]
    totals = {"remote_bytes": usage.total("remote"), "local_bytes": usage.total("local")}
    return {"jobs": jobs, "total": totals, "errors": usage.errors}


def plan_view(plan: Plan) -> dict:
    """A cleanup: what it would do (or did: ``done``), why, and what the caches freed."""
    evicted = {name: {"files": f, "bytes": b} for name, (f, b) in plan.evicted.items()}
    return {
        "actions": [_action_view(a) for a in plan.actions],
        "done": [_action_view(a) for a in plan.done],
        "notes": plan.notes,
        "evicted": evicted,
    }


def _action_view(action: Action) -> dict:
    return {
        "kind": action.kind,
        "where": action.where,
        "id": action.job.id,
        "bytes": action.size,
        "rule": action.rule,
        "path": action.path or None,
        "forced": action.forced,
        "note": action.note or None,
    }
