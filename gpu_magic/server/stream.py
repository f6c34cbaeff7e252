"""``WS /gpu-jobs/{id}/logs/stream?offset=N``: a job's log as it grows, and its state changes.

Messages (JSON): ``{"type": "log", "offset": END, "text": ..., "levels": [...]}`` (END: the
byte offset just after this text; reconnect with ``?offset=END`` and every byte arrives exactly
once; ``levels``: the level, or null, of each line this text completes, split at ``\n``, as the
notebook panel's filter classifies them; the first line after a reconnect mid-line is
classified from the resumed part, so a client resumes at the start of its unfinished line),
``{"type": "status", ...the job...}`` on every state change, and last ``{"type": "end",
"status": ...}`` once the job has ended and its whole log was sent. While a client is connected
the job counts as watched, so the monitor polls its host at the fast pace.
"""

from __future__ import annotations

import asyncio
import json

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from tornado import web, websocket

from ..parsers.levels import StreamLevels
from ..views import job_view
from .base import ClientMixin

POLL_S = 0.25


class LogStreamHandler(ClientMixin, JupyterHandler, websocket.WebSocketHandler):
    async def pre_get(self) -> None:
        user = self.current_user
        allowed = await ensure_async(self.authorizer.is_authorized(self, user, "read", "gpu-jobs"))
        if not allowed:
            raise web.HTTPError(403)

    @ws_authenticated
    async def get(self, job_id: str):
        await self.pre_get()
        self.offset = self.int_argument("offset", 0)
        job = await self.call(self.client.store.find, job_id)  # 404 before the upgrade
        self.job_id = job.id
        res = super().get(job_id)  # the WebSocket upgrade
        if res is not None:
            await res

    def open(self, job_id: str) -> None:
        self.hide = self.client.monitor.on_screen(self.job_id)
        self.pump = asyncio.ensure_future(self._pump())

    def on_close(self) -> None:
        if hasattr(self, "hide"):
            self.hide()
        if hasattr(self, "pump"):
            self.pump.cancel()

    def on_message(self, message) -> None:
        """Clients only listen."""

    async def _pump(self) -> None:
        status, sync, levels = None, True, StreamLevels()
        try:
            while True:
                chunk = await self.call(self.client.log_since, self.job_id, self.offset, sync=sync)
                sync = False  # the monitor polls at the fast pace while this socket is open
                if chunk.text:
                    self.offset = chunk.offset
                    await self._send(
                        {
                            "type": "log",
                            "offset": chunk.offset,
                            "text": chunk.text,
                            "levels": levels.feed(chunk.text),
                        }
                    )
                if chunk.job.status != status:
                    status = chunk.job.status
                    await self._send({"type": "status", **job_view(chunk.job)})
                if chunk.complete:
                    await self._send({"type": "end", "status": status.value})
                    self.close()
                    return
                await asyncio.sleep(POLL_S)
        except (websocket.WebSocketClosedError, web.HTTPError):
            self.close()

    async def _send(self, message: dict) -> None:
        await self.write_message(json.dumps(message))
