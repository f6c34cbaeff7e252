"""What every gpu_magic handler shares: the server's Client, blocking calls off the event loop,
and the ONE mapping of the error tree to HTTP status codes."""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

from jupyter_server.base.handlers import APIHandler
from tornado import web

from ..api import Client
from ..errors import (
    ClusterConnectionError,
    ConfigError,
    GPUMagicError,
    InvalidRequestError,
    JobNotFoundError,
    JobStateError,
    RemoteJobError,
    ResultNotFoundError,
    SchedulerError,
    TransferError,
    UnknownClusterError,
    WaitTimeoutError,
)

STATUS = (  # first match wins: subclasses before their bases
    (JobNotFoundError, 404),
    (ResultNotFoundError, 404),
    (UnknownClusterError, 400),
    (InvalidRequestError, 400),
    (JobStateError, 409),
    (RemoteJobError, 409),
    (SchedulerError, 409),
    (WaitTimeoutError, 504),
    (ClusterConnectionError, 502),
    (TransferError, 502),
    (ConfigError, 500),
)
"""Our errors as HTTP: a missing job 404, a request that can never run 400, a job in the wrong
state 409, a host that cannot be reached 502; anything else of ours 500 with its message."""


def http_status(exc: GPUMagicError) -> int:
    return next((code for kind, code in STATUS if isinstance(exc, kind)), 500)


class ClientMixin:
    """The server's Client and blocking calls off the event loop (REST and WebSocket alike)."""

    @property
    def client(self) -> Client:
        return self.settings["gpu_magic_client"]

    async def call(self, method, *args, **kwargs) -> Any:
        """``method(*args, **kwargs)`` on the server's pool; our errors become HTTP errors."""
        loop = asyncio.get_running_loop()
        work = functools.partial(method, *args, **kwargs)
        try:
            return await loop.run_in_executor(self.settings["gpu_magic_pool"], work)
        except GPUMagicError as exc:
            raise web.HTTPError(http_status(exc), str(exc)) from None

    def int_argument(self, name: str, default: int | None = None, *, low: int = 0) -> int | None:
        raw = self.get_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise web.HTTPError(400, f"{name} must be an integer, got {raw!r}") from None
        if value < low:
            raise web.HTTPError(400, f"{name} must be at least {low}, got {value}")
        return value


class GPUJobsHandler(ClientMixin, APIHandler):
    """Handlers hold no logic: each parses its arguments and calls one ``Client`` method."""

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))
