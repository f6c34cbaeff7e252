"""``TransferProgress``: bytes and files of one transfer as they move (thread-safe, pure).

A collection and a submission's upload report through it. The collector calls ``begin`` once
it knows what it will download (``Client.submit`` once it knows what it will send), ``advance``
for every chunk
(from any download thread), ``file_done`` per verified file and ``end`` when it stops; after
``cancel`` (Ctrl-C, the bar's Stop button) the next ``advance`` raises ``TransferCancelled`` in
that thread. Observers (the notebook's progress bar, ``%gpu_fetch``) read ``snapshot()`` or
subscribe to be told that something changed; a subscriber must be cheap (it runs on the
download thread), e.g. a ``Throttle.mark``. The rate is the mean over the last ``window``
seconds, so a stall shows.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..errors import TransferCancelled

WINDOW = 3.0
CANCELLED = "stopped by the user; what arrived is kept and the next fetch resumes"
UPLOAD_STOPPED = "upload stopped by the user; nothing was launched"


@dataclass(frozen=True)
class TransferSnapshot:
    done: int = 0  # bytes
    total: int = 0
    files_done: int = 0
    files: int = 0
    rate: float | None = None  # bytes/s over the recent window
    elapsed: float = 0.0
    finished: bool = False
    error: str | None = None

    @property
    def fraction(self) -> float:
        return 1.0 if self.total == 0 else min(1.0, self.done / self.total)

    @property
    def remaining_s(self) -> float | None:
        if self.finished:
            return 0.0
        if not self.rate:
            return None
        return max(0.0, self.total - self.done) / self.rate


class TransferProgress:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        window: float = WINDOW,
        *,
        stopped: str = CANCELLED,
    ):
        self._clock = clock
        self._stopped = stopped  # what a stop by the user means for this transfer
        self._window = window
        self._lock = threading.Lock()
        self._state = TransferSnapshot()
        self._start = clock()
        self._recent: deque[tuple[float, int]] = deque()  # (time, bytes done then)
        self._subscribers: list[Callable[[], None]] = []
        self._cancelled = False

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` after every change; returns the unsubscribe function."""
        with self._lock:
            self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def begin(self, total_bytes: int, files: int) -> None:
        self._change(total=total_bytes, files=files)

    def advance(self, nbytes: int) -> None:
        """Count bytes that moved; raises ``TransferCancelled`` once ``cancel`` was called, so
        the download thread that moved them stops there."""
        if self._cancelled:
            raise TransferCancelled(self._stopped)
        with self._lock:
            self._state = replace(self._state, done=self._state.done + nbytes)
        self._notify()

    def cancel(self) -> None:
        """Stop the transfer at its next chunk (from any thread: Ctrl-C, a Stop button)."""
        if not self._cancelled:
            self._cancelled = True
            self._notify()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def rewind(self, nbytes: int) -> None:
        """Bytes that must move again (a download that failed its check restarts)."""
        with self._lock:
            self._state = replace(self._state, done=max(0, self._state.done - nbytes))
        self._notify()

    def file_done(self) -> None:
        with self._lock:
            self._state = replace(self._state, files_done=self._state.files_done + 1)
        self._notify()

    def end(self, error: str | None = None) -> None:
        self._change(finished=True, error=error)

    def snapshot(self) -> TransferSnapshot:
        with self._lock:
            now = self._clock()
            recent = self._recent
            recent.append((now, self._state.done))
            while len(recent) > 2 and now - recent[1][0] >= self._window:
                recent.popleft()
            (t0, d0), (t1, d1) = recent[0], recent[-1]
            rate = (d1 - d0) / (t1 - t0) if t1 - t0 > 0 else None
            return replace(self._state, rate=rate, elapsed=now - self._start)

    def _change(self, **fields) -> None:
        with self._lock:
            self._state = replace(self._state, **fields)
        self._notify()

    def _notify(self) -> None:
        for callback in list(self._subscribers):
            callback()
