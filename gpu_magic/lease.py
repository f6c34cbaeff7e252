"""``HostLease``: of the processes sharing one job store, one polls a host at a time.

A kernel, another kernel and the Jupyter server follow jobs on the same hosts. The lease (a row
per host in the store) says which process polls: the holder follows *every* active job of that
host, records their state and mirrors their files (``LiveMirror``); the others read state from
the store and files from the mirror. The holder renews its lease every third of ``ttl`` (one
monitoring interval); when it dies the lease expires and the next process to tick takes over.
A holder on this machine whose process is gone (a kernel killed with SIGKILL) is seen to be
gone at once: its leases are dropped and taken over without waiting for them to expire.
Jobs a process shows (a panel, a WebSocket, a ``wait``) are marked *watched* in the store, so the
holder follows them at the fast pace whoever shows them.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable

from .jobstore import JobStore


class HostLease:
    def __init__(self, store: JobStore, ttl: float):
        self.store, self.ttl = store, ttl
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._held: set[str] = set()
        self._watching: Counter[str] = Counter()
        self._lock = threading.Lock()

    def hold(self, cluster: str) -> bool:
        """Take or renew the lease on ``cluster``; False while another process holds it."""
        held = self.store.hold_lease(cluster, self.holder, self.ttl, time.time())
        if not held and self._gone(self.store.lease_holder(cluster, time.time())):
            held = self.store.hold_lease(cluster, self.holder, self.ttl, time.time())
        with self._lock:
            if held:
                self._held.add(cluster)
            else:
                self._held.discard(cluster)
        return held

    def held(self) -> set[str]:
        with self._lock:
            return set(self._held)

    def renew(self) -> None:
        """Keep what this process holds and shows alive (between polls)."""
        for cluster in self.held():
            self.hold(cluster)
        self.publish()

    def elsewhere(self, cluster: str) -> bool:
        """Whether another live process polls ``cluster`` (then the store is fresh)."""
        holder = self.store.lease_holder(cluster, time.time())
        return holder is not None and holder != self.holder and not self._gone(holder)

    def _gone(self, holder: str | None) -> bool:
        """Whether ``holder`` was another process of this machine that no longer exists
        (then its leases and watched marks are dropped)."""
        if holder is None or holder == self.holder or not _dead_here(holder):
            return False
        self.store.release_leases(holder)
        return True

    def watch(self, job_id: str) -> Callable[[], None]:
        """Mark ``job_id`` as shown here; call the returned function when it no longer is."""
        with self._lock:
            self._watching[job_id] += 1
        self.publish()
        return lambda: self._unwatch(job_id)

    def _unwatch(self, job_id: str) -> None:
        with self._lock:
            self._watching[job_id] -= 1
            if self._watching[job_id] <= 0:
                del self._watching[job_id]
        self.publish()

    def publish(self) -> None:
        with self._lock:
            shown = list(self._watching)
        self.store.mark_watched(shown, self.holder, time.time() + self.ttl)

    def watched(self) -> set[str]:
        """The jobs any process shows now."""
        return self.store.watched(time.time())

    def release(self) -> None:
        with self._lock:
            self._held.clear()
        self.store.release_leases(self.holder)


def _dead_here(holder: str) -> bool:
    """``host:pid:token`` names a process of this machine that is gone. (A pid reused since
    reads as alive: then the lease simply expires, as for a holder on another machine.)"""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False
