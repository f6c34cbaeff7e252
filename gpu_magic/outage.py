"""``Outage``: riding out a host that cannot be reached, for as long as the user allows.

A wait on a job that runs for hours must not end because sshd restarted or the VPN blinked:
the job keeps running on the host, and the truth about it is there to read again once the
host answers. So a waiter counts how long the host has been unreachable, says so once at INFO
(and once again when it answers), and gives up, with the last error, only past the limit
(``gpu_magic_reconnect_limit``). Faults that time cannot mend (a rejected key, a changed host
key) are never ridden out: ``errors.transient`` tells them apart.
"""

from __future__ import annotations

import logging
import time

from .errors import GPUMagicError, transient

log = logging.getLogger(__name__)


class Outage:
    def __init__(self, limit: float, what: str, *, clock=time.monotonic):
        self.limit, self.what, self.clock = limit, what, clock
        self.since: float | None = None
        self.error: GPUMagicError | None = None

    @property
    def seconds(self) -> float:
        return 0.0 if self.since is None else self.clock() - self.since

    def failed(self, exc: GPUMagicError) -> None:
        """Note a failed look; re-raise ``exc`` when it is not transient or the outage has
        lasted past the limit."""
        if not transient(exc):
            raise exc
        if self.since is None:
            self.since = self.clock()
            log.info("gpu_magic: %s: reconnecting: %s", self.what, exc)
        self.error = exc
        if self.seconds > self.limit:
            raise exc

    def over(self) -> None:
        """A look worked: the outage, if there was one, has ended."""
        if self.since is not None:
            log.info("gpu_magic: %s: reachable again after %.1f s", self.what, self.seconds)
        self.since = self.error = None
