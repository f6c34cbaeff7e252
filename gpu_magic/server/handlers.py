"""The REST routes of ``/gpu-jobs``: each handler parses, calls the Client, answers JSON."""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path

from tornado import web

from ..errors import InvalidRequestError
from ..models import GPUJobRequest
from ..results.series import metric_rows
from ..views import cluster_view, error_view, job_status_view, job_view, samples_view
from .base import GPUJobsHandler
from .openapi import document

MAX_LIMIT = 1000
CHUNK = 1 << 20


class JobsHandler(GPUJobsHandler):
    @web.authenticated
    async def get(self):
        limit = min(self.int_argument("limit", 100, low=1), MAX_LIMIT)
        filters = {k: self.get_argument(k, None) for k in ("status", "cluster", "name")}
        cursor = self.get_argument("cursor", None)
        if cursor is not None:
            await self.call(self.client.store.get, cursor)  # an unknown cursor: 404
        jobs = await self.call(
            self.client.jobs, limit=limit, refresh=False, before=cursor, **filters
        )
        monitor = self.client.monitor
        views = [
            job_view(job, monitor.progress_of(job.id), monitor.utilization_of(job.id))
            for job in jobs
        ]
        next_cursor = jobs[-1].id if len(jobs) == limit else None
        self.reply({"jobs": views, "cursor": next_cursor})


class SubmitHandler(GPUJobsHandler):
    @web.authenticated
    async def post(self):
        request = self.job_request()
        if request.inputs:
            raise web.HTTPError(400, "inputs are kernel variables: submit from a notebook")
        handle = await self.call(
            self.client.submit, request, {}, cwd=Path(self.settings["gpu_magic_root"])
        )
        self.reply({"id": handle.id}, status=201)

    def job_request(self) -> GPUJobRequest:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise web.HTTPError(400, f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the body must be a JSON object (a GPUJobRequest)")
        if "template" in body:  # a record of where options came from, not an option
            raise web.HTTPError(
                400,
                "send the options themselves: templates are for "
                "%%gpu_submit --template and gpu-magic submit --template",
            )
        try:
            return GPUJobRequest.create(**body)
        except (InvalidRequestError, TypeError, ValueError) as exc:
            raise web.HTTPError(400, str(exc)) from None


class StatusHandler(GPUJobsHandler):
    @web.authenticated
    async def get(self, job_id: str):
        job = await self.call(self.client.job, job_id)
        history = await self.call(self.client.history, job.id)
        self.reply(job_status_view(job, history, self.client.monitor.progress_of(job.id)))


class CancelHandler(GPUJobsHandler):
    @web.authenticated
    async def post(self, job_id: str):
        job = await self.call(self.client.cancel, job_id)
        self.reply(job_view(job))


class LogsHandler(GPUJobsHandler):
    @web.authenticated
    async def get(self, job_id: str):
        offset = self.int_argument("offset")
        if offset is not None:
            chunk = await self.call(self.client.log_since, job_id, offset)
            self.reply({"text": chunk.text, "offset": chunk.offset, "complete": chunk.complete})
            return
        tail = self.int_argument("tail", low=1)
        level, grep = self.get_argument("level", None), self.get_argument("grep", None)
        text = await self.call(self.client.logs, job_id, tail, level, grep)
        self.reply({"text": text, "offset": None})


class MetricsHandler(GPUJobsHandler):
    @web.authenticated
    async def get(self, job_id: str):
        feed = await self.call(self.client.feed, job_id)
        series = feed.metric_series()
        secondary = [name for name in series if feed.secondary_axis(name)]
        self.reply(
            {"rows": metric_rows(feed.metric_records()), "series": series, "secondary": secondary}
        )


class GpuHandler(GPUJobsHandler):
    @web.authenticated
    async def get(self, job_id: str):
        feed = await self.call(self.client.feed, job_id)
        self.reply({"samples": samples_view(feed.gpu_samples())})


class ResultsHandler(GPUJobsHandler):
    @web.authenticated
    async def get(self, job_id: str):
        files = await self.call(self.client.results.files, job_id)
        self.reply({"files": files})


class ErrorHandler(GPUJobsHandler):
    @web.authenticated
    async def get(self, job_id: str):
        error = await self.call(self.client.results.remote_error, job_id)
        self.reply({"error": error_view(error)})


class ResultFileHandler(GPUJobsHandler):
    """One collected file, fetched first if only listed; only a path the job's manifest lists
    is ever read (the results store refuses anything else)."""

    @web.authenticated
    async def get(self, job_id: str, path: str):
        local = await self.call(self.client.results.local_path, job_id, path)
        kind = mimetypes.guess_type(local.name)[0] or "application/octet-stream"
        self.set_header("Content-Type", kind)
        self.set_header("Content-Disposition", f'attachment; filename="{local.name}"')
        with open(local, "rb") as f:
            while chunk := f.read(CHUNK):
                self.write(chunk)
                await self.flush()
        self.finish()


class ClustersHandler(GPUJobsHandler):
    @web.authenticated
    async def get(self):
        clusters = await self.call(self.client.clusters.all)
        default = await self.call(self.client.clusters.default_name, clusters)
        views = [cluster_view(c, c.name == default) for _, c in sorted(clusters.items())]
        self.reply({"clusters": views})


class OpenAPIHandler(GPUJobsHandler):
    @web.authenticated
    async def get(self):
        self.reply(document(self.settings["base_url"]))
