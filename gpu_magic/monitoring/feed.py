"""``JobFeed``: what the panel shows for one job, grown tick by tick from byte-offset tails.

Offsets advance only with bytes actually received, so a dropped connection or a new kernel
never loses or repeats a line: the next tick asks again from the same offset (a new kernel
starts from 0 and rebuilds everything from the files).
"""

from __future__ import annotations

import codecs
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import jobdir
from ..models import GPUJob
from ..schedulers.folder_probe import Chunk, FolderState
from .gpu_samples import GPUSample, parse_gpu_line
from .telemetry import Point, ProgressView, Telemetry

TAILED = (jobdir.OUTPUT_LOG, jobdir.GPU_CSV, jobdir.METRICS)
LOG_MEMORY_CAP = 64 * 1024 * 1024
RESUMED = re.compile(r"^\[gpu_magic\] attempt (\d+): resuming from (\S[^\n]{0,500})$", re.M)
"""run.sh's line when a retried attempt starts from the newest checkpoint."""


class LineSplitter:
    """Bytes in, complete lines out; the unfinished last line waits for the next chunk."""

    def __init__(self):
        self._rest = b""

    def push(self, data: bytes) -> list[str]:
        lines = (self._rest + data).split(b"\n")
        self._rest = lines.pop()
        return [line.decode("utf-8", "replace") for line in lines]


@dataclass
class FeedUpdate:
    """What one tick added to a feed (all empty but ``job`` when only the state changed)."""

    job: GPUJob
    log_text: str = ""
    log_reset: bool = False
    gpu: list[GPUSample] = field(default_factory=list)
    metric_lines: list[str] = field(default_factory=list)
    metrics: list[Point] = field(default_factory=list)
    progress: ProgressView | None = None

    @property
    def has_news(self) -> bool:
        return bool(self.log_text or self.log_reset or self.gpu or self.metric_lines)


@dataclass(frozen=True)
class LogChunk:
    """A piece of a job's log for a follower (a WebSocket, ``%gpu_logs --follow``): the text,
    the byte offset to ask from next, the job as last seen, and whether the log is complete."""

    text: str
    offset: int
    job: GPUJob
    complete: bool


def complete_utf8(data: bytes) -> tuple[str, int]:
    """``data`` decoded up to its last whole character, and how many bytes that used: a
    character cut at the end waits for its other bytes (no byte is given twice or lost)."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    text = decoder.decode(data, final=False)
    return text, len(data) - len(decoder.getstate()[0])


class JobFeed:
    def __init__(self, job: GPUJob):
        self.job = job
        self.offsets = dict.fromkeys(TAILED, 0)
        self.pending = True  # files may hold bytes not yet read
        self._log = bytearray()
        self._log_start = 0  # file offset of self._log[0] once the memory cap dropped a head
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._gpu_lines = LineSplitter()
        self._metric_lines = LineSplitter()
        self.gpu: list[GPUSample] = []
        self._telemetry = Telemetry()
        self._lock = threading.Lock()
        self._listeners: list[Callable[[FeedUpdate], None]] = []
        self.resumed_from: str | None = None  # the checkpoint this attempt started from
        self._log_rest = ""  # the log's unfinished last line, for RESUMED
        self.unreachable: str | None = None  # why the last look at the host failed
        self.unreachable_since: float | None = None  # time.monotonic() of the first failure

    # -- read side (any thread) ---------------------------------------------------------------
    def log_bytes(self) -> bytes:
        with self._lock:
            return bytes(self._log)

    def log_text(self) -> str:
        return self.log_bytes().decode("utf-8", "replace")

    def log_tail(self, max_bytes: int) -> bytes:
        """The last ``max_bytes`` bytes of the log (without copying all of it)."""
        with self._lock:
            return bytes(self._log[-max_bytes:])

    def log_from(self, offset: int) -> tuple[bytes, int] | None:
        """The log's bytes from file offset ``offset`` to what has been read, and that end;
        None when ``offset`` lies before what memory still holds (the cap dropped it)."""
        with self._lock:
            end = self.offsets[jobdir.OUTPUT_LOG]
            if offset < self._log_start:
                return None
            return bytes(self._log[offset - self._log_start :]), max(end, offset)

    def gpu_samples(self) -> list[GPUSample]:
        with self._lock:
            return list(self.gpu)

    def metric_series(self) -> dict[str, list[tuple[float, float]]]:
        with self._lock:
            return {name: list(points) for name, points in self._telemetry.series.items()}

    def metric_records(self) -> list:
        """Every metrics event in order (``Telemetry.Record``): the rows of ``job.metrics()``."""
        with self._lock:
            return list(self._telemetry.records)

    def secondary_axis(self, name: str) -> bool:
        return Telemetry.secondary_axis(name)

    def progress(self) -> ProgressView:
        with self._lock:
            return self._telemetry.progress(time.time())

    def subscribe(self, listener: Callable[[FeedUpdate], None]) -> Callable[[], None]:
        """Call ``listener`` from the monitor thread after every tick that changed something."""
        with self._lock:
            self._listeners.append(listener)
        return lambda: self._unsubscribe(listener)

    def _unsubscribe(self, listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    @property
    def done(self) -> bool:
        """Finished and every byte read: the monitor can forget it."""
        return self.job.is_terminal and not self.pending

    # -- write side (monitor thread) ----------------------------------------------------------
    def note_reach(self, error: str | None) -> None:
        """Whether the last look at the job's host worked (``error``: why it did not). The
        listeners hear when that changes, so a panel says "reconnecting…" while the host is
        out of reach instead of silently showing old news."""
        with self._lock:
            changed = (self.unreachable is None) != (error is None)
            self.unreachable = error
            if error is None:
                self.unreachable_since = None
            elif self.unreachable_since is None:
                self.unreachable_since = time.monotonic()
            listeners = list(self._listeners) if changed else []
        for listener in listeners:
            listener(FeedUpdate(job=self.job))

    def requests(self) -> dict[str, int]:
        return dict(self.offsets)

    def apply(self, job: GPUJob, folder: FolderState) -> FeedUpdate | None:
        with self._lock:
            update = FeedUpdate(job=job)
            changed = job != self.job
            self.job = job
            self.pending = False
            now = time.time()
            for name in TAILED:
                chunk = folder.files.get(name)
                if chunk is not None:
                    self._take(name, chunk, update)
                    self.pending |= chunk.end < chunk.size
            update.metrics = self._telemetry.feed_log(update.log_text, now)
            update.metrics += self._telemetry.feed_metric_lines(update.metric_lines, now)
            update.progress = self._telemetry.progress(now)
            listeners = list(self._listeners)
        if not (changed or update.has_news):
            return None
        for listener in listeners:
            listener(update)
        return update

    def _take(self, name: str, chunk: Chunk, update: FeedUpdate) -> None:
        known = self.offsets[name]
        if chunk.offset == 0 and known > 0 and chunk.size < known:  # replaced: start over
            self._restart(name, update)
            known = 0
        if chunk.end <= known or chunk.offset > known:  # stale, or a gap: ask again
            return
        data = chunk.data[known - chunk.offset :]  # an overlap is read once only
        self.offsets[name] = chunk.end
        if name == jobdir.OUTPUT_LOG:
            self._append_log(data)
            text = self._decoder.decode(data)
            update.log_text += text
            self._note_resume(text)
        elif name == jobdir.GPU_CSV:
            samples = [s for s in map(parse_gpu_line, self._gpu_lines.push(data)) if s]
            self.gpu.extend(samples)
            update.gpu.extend(samples)
        else:
            update.metric_lines.extend(self._metric_lines.push(data))

    def _note_resume(self, text: str) -> None:
        """Remember the checkpoint the latest attempt resumed from (whole lines only)."""
        lines = self._log_rest + text
        complete, _, self._log_rest = lines.rpartition("\n")
        self._log_rest = self._log_rest[-600:]
        if "[gpu_magic] attempt" in complete:
            found = RESUMED.findall(complete)
            if found:
                self.resumed_from = found[-1][1]

    def _restart(self, name: str, update: FeedUpdate) -> None:
        if name == jobdir.OUTPUT_LOG:
            self._log.clear()
            self._log_start = 0
            self._decoder.reset()
            self._telemetry.restart_log()
            update.log_reset = True
        elif name == jobdir.GPU_CSV:
            self.gpu.clear()
            self._gpu_lines = LineSplitter()
        else:
            self._metric_lines = LineSplitter()

    def _append_log(self, data: bytes) -> None:
        self._log += data
        overflow = len(self._log) - LOG_MEMORY_CAP
        if overflow > 0:
            del self._log[:overflow]
            self._log_start += overflow
