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

from ..errors import GPUMagicError
from ..hosts import Hosts
from ..jobstore import JobStore
from ..lease import HostLease
from ..tracker import NOT_LAUNCHED, JobTracker
from .feed import FeedUpdate, JobFeed
from .gpu_samples import mean_utilization
from .mirror import LiveMirror

FAST, FAST_MAX, DRAIN = 0.5, 1.0, 0.05
RENEW_MAX = 1.0  # a lease holder renews, and looks for newly watched jobs, this often


class Monitor:
    """Reads jobs from the store, asks their hosts, and records what it saw through the
    tracker (the only writer of job state); ``interval`` is the pace nobody watches at."""

    def __init__(
        self,
        jobs: JobStore,
        hosts: Hosts,
        tracker: JobTracker,
        *,
        interval: float,
        lease: HostLease | None = None,
        mirror: LiveMirror | None = None,
        background: bool = True,
    ):
        self.jobs, self.hosts, self.tracker, self.base_interval = jobs, hosts, tracker, interval
        self.lease, self.mirror = lease, mirror  # None: this process polls every host itself
        self.background = background  # False: no thread, the caller drives tick()
        self._feeds: dict[str, JobFeed] = {}
        self._on_screen: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._tick_lock = threading.Lock()  # one tick at a time: the thread's or a sync()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle_ticks = 0
        self.last_error: dict[str, str] = {}  # cluster -> message of a failed tick
        self._tick_listeners: list = []

    # -- what callers use ---------------------------------------------------------------------
    def feed(self, job_id: str) -> JobFeed:
        """The feed of a job, created on first use; starts the monitor thread if needed."""
        with self._lock:
            if job_id not in self._feeds:
                self._feeds[job_id] = JobFeed(self.jobs.get(job_id))
            feed = self._feeds[job_id]
        self._ensure_running()
        return feed

    def on_tick(self, listener) -> None:
        """Call ``listener(cluster, seconds, error)`` after each host's poll (``error``: None
        when it worked): the server's operational figures."""
        self._tick_listeners.append(listener)

    def progress_of(self, job_id: str):
        """The progress of a job this monitor follows (None for one it does not: no poll)."""
        with self._lock:
            feed = self._feeds.get(job_id)
        return feed.progress() if feed is not None else None

    def read_through(self, job_id: str, sizes: dict[str, int]) -> JobFeed | None:
        """The feed of an ended job that has read exactly ``sizes`` bytes of each of its
        files, from the first byte on: what it parsed is what parsing those files again would
        give (None when there is no such feed)."""
        with self._lock:
            feed = self._feeds.get(job_id)
        if feed is None or not feed.done:
            return None
        read = feed.requests()
        return feed if all(read.get(name) == size for name, size in sizes.items()) else None

    def utilization_of(self, job_id: str, last: int = 30) -> list[float] | None:
        """The mean GPU utilisation of the last ``last`` samples of a job this monitor follows
        (None for one it does not)."""
        with self._lock:
            feed = self._feeds.get(job_id)
        return mean_utilization(feed.gpu_samples(), last) if feed is not None else None

    def on_screen(self, job_id: str) -> callable:
        """Mark a job's panel as shown (fast pace, here and at the lease holder); call the
        returned function when hidden."""
        self.feed(job_id)
        with self._lock:
            self._on_screen[job_id] += 1
        unwatch = self.lease.watch(job_id) if self.lease is not None else None
        self._idle_ticks = 0
        self._wake.set()
        return lambda: self._off_screen(job_id, unwatch)

    def _off_screen(self, job_id: str, unwatch=None) -> None:
        with self._lock:
            self._on_screen[job_id] = max(0, self._on_screen[job_id] - 1)
        if unwatch is not None:
            unwatch()

    def forget_done(self) -> int:
        """Drop the feeds of finished, fully read jobs that no panel shows (a server follows
        every job for days: their logs need not stay in memory); returns how many."""
        with self._lock:
            gone = [
                job_id
                for job_id, feed in self._feeds.items()
                if feed.done and not self._on_screen.get(job_id)
            ]
            for job_id in gone:
                del self._feeds[job_id]
        return len(gone)

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
                started, error = time.monotonic(), None
                try:
                    updates.update(self._tick_cluster(cluster_name, feeds))
                    self.last_error.pop(cluster_name, None)
                except GPUMagicError as exc:  # offsets did not move: the next tick retries
                    error = self.last_error[cluster_name] = str(exc)
                for feed in feeds:
                    feed.note_reach(error)
                for listener in list(self._tick_listeners):
                    listener(cluster_name, time.monotonic() - started, error)
            self._start_waiting()
        self._idle_ticks = 0 if updates else self._idle_ticks + 1
        return updates

    def _start_waiting(self) -> None:
        """Jobs waiting for a slot start here too: a slot freed in a process that is gone, or
        before a kernel restart, is found by whoever ticks next; so are held jobs whose
        dependencies ended or whose start time came."""
        try:
            self.tracker.release_held()
            for cluster_name in self.jobs.waiting_clusters():
                self.tracker.start_waiting(cluster_name)
        except GPUMagicError as exc:  # the next tick tries again
            self.last_error["waiting"] = str(exc)

    def sync(self, job_id: str, max_ticks: int = 1000) -> JobFeed:
        """The job's feed brought up to date now (a finished job: every byte read)."""
        return self.sync_all([job_id], max_ticks)[0]

    def sync_all(self, job_ids: list[str], max_ticks: int = 1000) -> list[JobFeed]:
        """``sync`` for several jobs together: each tick looks at them all (one round trip
        per cluster), not one tick per job."""
        feeds = [self.feed(job_id) for job_id in job_ids]
        for _ in range(max_ticks if feeds else 0):
            self.tick()
            if all(not feed.pending or feed.job.status in NOT_LAUNCHED for feed in feeds):
                break
        return feeds

    def _active_by_cluster(self) -> dict[str, list[JobFeed]]:
        with self._lock:
            feeds = list(self._feeds.values())
        groups: dict[str, list[JobFeed]] = defaultdict(list)
        for feed in feeds:
            if feed.done:  # finished and fully read: nothing left to ask the host
                continue
            feed.job = self.jobs.get(feed.job.id)  # a cancel elsewhere shows at once
            if feed.job.status not in NOT_LAUNCHED:
                groups[feed.job.cluster].append(feed)
        return groups

    def _tick_cluster(self, cluster_name: str, feeds: list[JobFeed]) -> dict[str, FeedUpdate]:
        if self.lease is not None and not self.lease.hold(cluster_name):
            mirrored = [f for f in feeds if self.mirror.has(f.job.id)]
            updates = self._from_mirror(mirrored)
            feeds = [f for f in feeds if f not in mirrored]  # the holder follows them not yet
            if not feeds:
                return updates
        else:
            updates = {}
            self._adopt(cluster_name)
        host = self.hosts.get(cluster_name)
        looks = host.scheduler.look([f.job for f in feeds], {f.job.id: f.requests() for f in feeds})
        for feed in feeds:
            look = looks[feed.job.id]
            job = feed.job
            if not job.is_terminal:
                job = self.tracker.record(host, job, look.observation)
            update = feed.apply(job, look.folder)
            if self.mirror is not None:
                self.mirror.write(job.id, look.folder, done=feed.done)
            if update is not None:
                updates[job.id] = update
        return updates

    def _from_mirror(self, feeds: list[JobFeed]) -> dict[str, FeedUpdate]:
        """Another process holds the host's lease: state from the store, files from its copy."""
        updates = {}
        for feed in feeds:
            copy = self.mirror.look(feed.job.id, feed.requests(), ended=feed.job.is_terminal)
            update = feed.apply(feed.job, copy)
            if update is not None:
                updates[feed.job.id] = update
        return updates

    def _adopt(self, cluster_name: str) -> None:
        """The lease holder follows every active job of the host, whoever submitted it (they
        join from the next tick)."""
        if self.lease is None:
            return
        active = self.jobs.list(cluster=cluster_name, active_only=True)
        with self._lock:
            for job in active:
                if job.id not in self._feeds:
                    self._feeds[job.id] = JobFeed(job)

    # -- pacing and the thread ----------------------------------------------------------------
    def interval(self) -> float:
        with self._lock:
            feeds = list(self._feeds.values())
            shown = {job_id for job_id, n in self._on_screen.items() if n > 0}
        if any(f.pending and not f.done for f in feeds):
            return DRAIN
        if self.lease is not None and any(
            c in self.lease.held() for c in {f.job.cluster for f in feeds}
        ):
            shown |= self.lease.watched()  # the holder paces for every process's panels
        if any(f.job.id in shown and not f.job.is_terminal for f in feeds):
            base, ceiling = FAST, FAST_MAX
        else:
            base = self.base_interval
            ceiling = 2 * base
        pace = min(ceiling, base * 1.5**self._idle_ticks)
        if self.lease is not None and self._reads_a_copy(feeds):
            return min(pace, FAST_MAX)  # the holder's copy: local files, no round trip
        return pace

    def _reads_a_copy(self, feeds: list[JobFeed]) -> bool:
        """Whether a running job here is polled by another process: its state and files are
        read from the store and the mirror, so reading them often costs no host a thing (the
        server behind the sidebar is then as fresh as the holder)."""
        held = self.lease.held()
        return any(not f.job.is_terminal and f.job.cluster not in held for f in feeds)

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
        """Tick until no feed has work; the pace counts from the start of each tick. Between
        ticks a lease holder renews its leases every third of their time to live; a monitor
        that stops lets them go."""
        next_tick = started = renewed = 0.0
        renew = min(self.lease.ttl / 3, RENEW_MAX) if self.lease is not None else float("inf")
        while True:
            with self._lock:  # deciding to stop and saying so is one step: no lost wake-up
                if all(f.done for f in self._feeds.values()):
                    self._thread = None
                    break
            if time.monotonic() >= next_tick:
                started = time.monotonic()
                self.tick()
                next_tick = started + self.interval()
            if self.lease is not None and time.monotonic() - renewed >= renew:
                self.lease.renew()  # also while ticking fast: the panels it shows stay marked
                renewed = time.monotonic()
                next_tick = min(next_tick, started + self.interval())  # newly watched: faster
            woken = self._wake.wait(max(0.0, min(next_tick - time.monotonic(), renew)))
            self._wake.clear()
            if woken:
                next_tick = 0.0
        if self.lease is not None:
            self.lease.release()
