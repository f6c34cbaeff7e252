"""``GET /gpu-jobs/openapi.json``: the OpenAPI 3.1 document of the routes (for clients and the
property test that sends generated requests to every route)."""

from __future__ import annotations

from functools import cache

from .. import __version__
from ..models import FailureKind, GPUJobRequest

JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "description": "a job id (or name)",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"},
}


def _query(name: str, kind: str = "string", description: str = "", low: int = 0) -> dict:
    schema = {"type": kind, "minimum": low} if kind == "integer" else {"type": kind}
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _ok(schema: str, description: str = "OK") -> dict:
    return {"description": description, "content": _json(f"#/components/schemas/{schema}")}


def _json(ref: str) -> dict:
    return {"application/json": {"schema": {"$ref": ref}}}


ERRORS = {
    "400": {"description": "a request that can never run, or a bad argument"},
    "403": {"description": "no Jupyter credentials (token or cookie)"},
}
NO_SUCH_JOB = {"404": {"description": "no such job"}}
JOB_ROUTES = {
    "status": ("get", "The job, its progress and its state history", "JobStatus"),
    "cancel": ("post", "Cancel the job (a finished job is left as it is)", "Job"),
    "logs": ("get", "The log: from a byte offset, or the last lines filtered", "Log"),
    "metrics": ("get", "The metric series parsed from the log and metrics.jsonl", "Metrics"),
    "gpu": ("get", "The GPU samples", "Gpu"),
    "results": ("get", "The collected files (collected first if needed)", "Results"),
    "error": ("get", "The exception the cell raised on the host, or null", "RemoteError"),
}
LOG_PARAMETERS = [
    _query("offset", "integer", "byte offset: the text from there and the next offset"),
    _query("tail", "integer", "the last N lines"),
    _query("level", description="DEBUG | INFO | WARNING | ERROR: lines at that level or above"),
    _query("grep", description="a regular expression the lines must match"),
]


@cache
def document(base_url: str = "/") -> dict:
    root = "/gpu-jobs"
    paths = {
        root: {"get": _operation("Jobs, newest first", "JobList", _list_parameters())},
        f"{root}/submit": {"post": _submit()},
        f"{root}/clusters": {"get": _operation("The clusters jobs can go to", "Clusters")},
        f"{root}/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": {"description": "OK"}}}
        },
    }
    for name, (method, summary, schema) in JOB_ROUTES.items():
        extra = LOG_PARAMETERS if name == "logs" else []
        operation = _operation(summary, schema, [JOB_ID, *extra], NO_SUCH_JOB)
        paths[f"{root}/{{job_id}}/{name}"] = {method: operation}
    paths[f"{root}/{{job_id}}/results/{{path}}"] = {"get": _download()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "gpu_magic jobs", "version": __version__},
        "servers": [{"url": base_url.rstrip("/") or "/"}],
        "paths": paths,
        "components": {"schemas": _schemas()},
    }


def _operation(
    summary: str, schema: str, parameters: list | None = None, errors: dict | None = None
) -> dict:
    return {
        "summary": summary,
        "parameters": parameters or [],
        "responses": {"200": _ok(schema), **ERRORS, **(errors or {})},
    }


def _list_parameters() -> list[dict]:
    return [
        _query("status", description="only jobs in this state"),
        _query("cluster", description="only jobs of this cluster"),
        _query("name", description="only jobs of this name"),
        _query("limit", "integer", "at most this many (default 100; above 1000 gives 1000)", 1),
        _query("cursor", description="the cursor of the previous page: the jobs after it"),
    ]


def _submit() -> dict:
    return {
        "summary": "Submit a job (a GPUJobRequest without inputs: those are kernel variables)",
        "requestBody": {"required": True, "content": _json("#/components/schemas/GPUJobRequest")},
        "responses": {"201": _ok("Submitted", "Created"), **ERRORS},
    }


def _download() -> dict:
    path = {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "summary": "One collected file (only a path the job's manifest lists)",
        "parameters": [JOB_ID, path],
        "responses": {"200": {"description": "the file's bytes"}, **ERRORS, **NO_SUCH_JOB},
    }


def _schemas() -> dict:
    request = GPUJobRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = request.pop("$defs", {})
    request["properties"].pop("template")  # a record of a template's use, not an option (400)
    progress = {
        "type": ["object", "null"],
        "properties": {
            k: {"type": ["number", "null"]}
            for k in ("step", "total", "fraction", "rate", "remaining_s")
        },
    }
    job = {
        "type": "object",
        "required": ["id", "status", "cluster"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": ["string", "null"]},
            "status": {"type": "string"},
            "cluster": {"type": "string"},
            "exit_code": {"type": ["integer", "null"]},
            "error": {"type": ["string", "null"]},
            "failure": {
                "type": ["object", "null"],
                "description": "why it did not complete, classified (null otherwise)",
                "properties": {
                    "kind": {"type": "string", "enum": [k.value for k in FailureKind]},
                    "explanation": {"type": "string"},
                    "fix": {"type": "string"},
                    "detail": {"type": "object"},
                },
            },
            "attempt": {"type": "integer", "minimum": 1},
            "sweep": {
                "type": ["object", "null"],
                "description": "a sweep member's place: sweep_id, index, size, params, name",
                "properties": {
                    "sweep_id": {"type": "string"},
                    "index": {"type": "integer", "minimum": 0},
                    "size": {"type": "integer", "minimum": 1},
                    "params": {"type": "object"},
                    "name": {"type": ["string", "null"]},
                },
            },
            "progress": progress,
        },
    }
    obj = {"type": "object"}
    return {
        **definitions,
        "GPUJobRequest": request,
        "Job": job,
        "JobStatus": {
            "allOf": [{"$ref": "#/components/schemas/Job"}],
            "properties": {"history": {"type": "array"}},
        },
        "JobList": {
            "type": "object",
            "properties": {
                "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                "cursor": {"type": ["string", "null"]},
            },
        },
        "Submitted": {"type": "object", "properties": {"id": {"type": "string"}}},
        "Log": {
            "type": "object",
            "properties": {"text": {"type": "string"}, "offset": {"type": ["integer", "null"]}},
        },
        "Metrics": obj,
        "Gpu": obj,
        "Results": obj,
        "RemoteError": {
            "type": "object",
            "properties": {
                "error": {
                    "type": ["object", "null"],
                    "properties": {
                        "type": {"type": "string"},
                        "message": {"type": "string"},
                        "traceback": {"type": "string"},
                    },
                }
            },
        },
        "Clusters": obj,
    }
