"""One background monitor per kernel: per host ONE round trip per tick for all its active jobs.

Each tick asks every host, in one command, for the state of its active jobs and the new bytes
of their ``output.log``, ``gpu.csv`` and ``metrics.jsonl`` from the feeds' offsets. The pace
adapts: fast (0.5 s, backing off to 1 s) while a panel of a running job is on screen,
``job_monitoring_interval`` otherwise, slower again while nothing changes, immediately again
while files still hold unread bytes; the thread ends when no watched job is active.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import TYPE_CHECKING

from ..errors import GPUMagicError
from ..models import JobStatus
from .feed import FeedUpdate, JobFeed

if TYPE_CHECKING:  # pragma: no cover
    from ..api import Client

FAST, FAST_MAX, DRAIN = 0.5, 1.0, 0.05
NOT_LAUNCHED = (JobStatus.PENDING, JobStatus.UPLOADING)


class Monitor:
    def __init__(self, client: Client, *, background: bool = True):
        self.client = client
        self.background = background  # False: no thread, the caller drives tick()
        self._feeds: dict[str, JobFeed] = {}
        self._on_screen: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._tick_lock = threading.Lock()  # one tick at a time: the thread's or a sync()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle_ticks = 0
        self.last_error: dict[str, str] = {}  # cluster -> message of a failed tick

    # -- what callers use ---------------------------------------------------------------------
    def feed(self, job_id: str) -> JobFeed:
        """The feed of a job, created on first use; starts the monitor thread if needed."""
        with self._lock:
            if job_id not in self._feeds:
                self._feeds[job_id] = JobFeed(self.client.store.get(job_id))
            feed = self._feeds[job_id]
        self._ensure_running()
        return feed

    def on_screen(self, job_id: str) -> callable:
        """Mark a job's panel as shown (fast pace); call the returned function when hidden."""
        self.feed(job_id)
        with self._lock:
            self._on_screen[job_id] += 1
        self._idle_ticks = 0
        self._wake.set()
        return lambda: self._off_screen(job_id)

    def _off_screen(self, job_id: str) -> None:
        with self._lock:
            self._on_screen[job_id] = max(0, self._on_screen[job_id] - 1)

    def stop(self) -> None:
        with self._lock:
            self._feeds.clear()
        self._wake.set()

    # -- one tick -----------------------------------------------------------------------------
    def tick(self) -> dict[str, FeedUpdate]:
        """Look at every active feed, one round trip per cluster; returns what changed."""
        updates: dict[str, FeedUpdate] = {}
        with self._tick_lock:
            for cluster_name, feeds in self._active_by_cluster().items():
                try:
                    updates.update(self._tick_cluster(cluster_name, feeds))
                    self.last_error.pop(cluster_name, None)
                except GPUMagicError as exc:  # offsets did not move: the next tick retries
                    self.last_error[cluster_name] = str(exc)
        self._idle_ticks = 0 if updates else self._idle_ticks + 1
        return updates

    def sync(self, job_id: str, max_ticks: int = 1000) -> JobFeed:
        """The job's feed brought up to date now (a finished job: every byte read)."""
        feed = self.feed(job_id)
        for _ in range(max_ticks):
            self.tick()
            if not feed.pending or feed.job.status in NOT_LAUNCHED:
                break
        return feed

    def _active_by_cluster(self) -> dict[str, list[JobFeed]]:
        with self._lock:
            feeds = list(self._feeds.values())
        groups: dict[str, list[JobFeed]] = defaultdict(list)
        for feed in feeds:
            if feed.done:  # finished and fully read: nothing left to ask the host
                continue
            feed.job = self.client.store.get(feed.job.id)  # a cancel elsewhere shows at once
            if feed.job.status not in NOT_LAUNCHED:
                groups[feed.job.cluster].append(feed)
        return groups

    def _tick_cluster(self, cluster_name: str, feeds: list[JobFeed]) -> dict[str, FeedUpdate]:
        cluster = self.client.clusters.get(cluster_name)
        scheduler = self.client.scheduler(cluster)
        looks = scheduler.look([f.job for f in feeds], {f.job.id: f.requests() for f in feeds})
        updates = {}
        for feed in feeds:
            look = looks[feed.job.id]
            job = feed.job
            if not job.is_terminal:
                job = self.client.record(cluster, job, look.observation)
            update = feed.apply(job, look.folder)
            if update is not None:
                updates[job.id] = update
        return updates

    # -- pacing and the thread ----------------------------------------------------------------
    def interval(self) -> float:
        with self._lock:
            feeds = list(self._feeds.values())
            shown = {job_id for job_id, n in self._on_screen.items() if n > 0}
        if any(f.pending and not f.done for f in feeds):
            return DRAIN
        if any(f.job.id in shown and not f.job.is_terminal for f in feeds):
            base, ceiling = FAST, FAST_MAX
        else:
            base = self.client.settings.job_monitoring_interval
            ceiling = 2 * base
        return min(ceiling, base * 1.5**self._idle_ticks)

    def _ensure_running(self) -> None:
        if not self.background:
            return
        with self._lock:
            if self._thread is not None:
                self._wake.set()
                return
            self._thread = threading.Thread(target=self._run, name="gpu_magic-monitor", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        """Tick until no feed has work; the pace counts from the start of each tick."""
        while True:
            with self._lock:  # deciding to stop and saying so is one step: no lost wake-up
                if all(f.done for f in self._feeds.values()):
                    self._thread = None
                    return
            started = time.monotonic()
            self.tick()
            self._wake.wait(max(0.0, self.interval() - (time.monotonic() - started)))
            self._wake.clear()
