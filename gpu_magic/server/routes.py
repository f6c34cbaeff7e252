"""The URL of every route, in one place (the OpenAPI document lists the same)."""

from __future__ import annotations

from jupyter_server.utils import url_path_join

from . import handlers
from .stream import LogStreamHandler

JOB_ID = r"(?P<job_id>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})"
"""A job id or name: no ``/``, no leading ``.``, so ``..`` and ``%2e%2e`` match no route and
nothing is read for them."""

ROUTES = (  # fixed words before the job-id patterns that would also match them
    ("gpu-jobs", handlers.JobsHandler),
    ("gpu-jobs/submit", handlers.SubmitHandler),
    ("gpu-jobs/clusters", handlers.ClustersHandler),
    ("gpu-jobs/openapi.json", handlers.OpenAPIHandler),
    (f"gpu-jobs/{JOB_ID}/status", handlers.StatusHandler),
    (f"gpu-jobs/{JOB_ID}/cancel", handlers.CancelHandler),
    (f"gpu-jobs/{JOB_ID}/logs", handlers.LogsHandler),
    (f"gpu-jobs/{JOB_ID}/logs/stream", LogStreamHandler),
    (f"gpu-jobs/{JOB_ID}/metrics", handlers.MetricsHandler),
    (f"gpu-jobs/{JOB_ID}/gpu", handlers.GpuHandler),
    (f"gpu-jobs/{JOB_ID}/results", handlers.ResultsHandler),
    (f"gpu-jobs/{JOB_ID}/error", handlers.ErrorHandler),
    (f"gpu-jobs/{JOB_ID}/results/(?P<path>.+)", handlers.ResultFileHandler),
)


def routes(base_url: str) -> list[tuple[str, type]]:
    return [(url_path_join(base_url, pattern) + "$", handler) for pattern, handler in ROUTES]
