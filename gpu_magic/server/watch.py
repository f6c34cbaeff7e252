"""``ActiveJobsWatch``: the server follows every active job, whether or not a kernel does.

Every ``LOOK_S`` (or ``job_monitoring_interval`` when shorter) it hands each active job in the
shared store to the server's monitor (whose one thread polls each host once per tick), so a job
whose notebook was closed still ends, is collected and shows up to date everywhere; feeds of
jobs that ended and were read completely are dropped again. The look is one read of the local
store, so it runs often: a job a kernel just submitted has its progress in the sidebar within
seconds, not one (30 s) monitoring interval later.
"""

from __future__ import annotations

import logging
import threading

from ..api import Client
from ..errors import GPUMagicError

log = logging.getLogger(__name__)
LOOK_S = 1.0


class ActiveJobsWatch:
    def __init__(self, client: Client):
        self.client = client
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gpu_magic-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def once(self) -> int:
        """Follow every active job now; returns how many there are."""
        active = self.client.store.list(active_only=True)
        for job in active:
            self.client.monitor.feed(job.id)
        self.client.monitor.forget_done()
        return len(active)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.once()
            except GPUMagicError as exc:  # the store is busy or broken: say so, go on
                log.warning("gpu_magic: following the active jobs failed: %s", exc)
            self._stop.wait(min(LOOK_S, self.client.settings.job_monitoring_interval))
