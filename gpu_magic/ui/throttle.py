"""Thread-safe batching of widget updates: many marks from any thread, few applies from one.

Listeners running on the monitor thread only ``mark`` what changed (latest value wins; cheap,
never touches a widget). One applier thread per ``Throttle`` hands the accumulated marks to the
``apply`` function at most once per ``interval`` seconds, holding ``widget_lock``. Code that
touches the same widgets from another thread (button and dropdown callbacks on the kernel's main
thread) takes ``widget_lock`` too, so no two threads ever drive the widgets at once.

With ``pulse`` set, the applier also marks ``"pulse"`` every so many seconds while nothing else
happens (an elapsed-time clock keeps ticking on a silent job). The applier thread ends after
``idle_exit`` seconds without marks and starts again with the next mark.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

INTERVAL = 0.25
IDLE_EXIT = 5.0
log = logging.getLogger(__name__)


class Throttle:
    def __init__(
        self,
        apply: Callable[[dict[str, Any]], None],
        *,
        interval: float = INTERVAL,
        background: bool = True,
        idle_exit: float = IDLE_EXIT,
    ):
        self._apply = apply
        self.interval = interval
        self.background = background  # False: no thread, the caller runs flush()
        self.idle_exit = idle_exit
        self.widget_lock = threading.RLock()
        self.applies = 0
        self._lock = threading.Lock()  # guards the fields below
        self._pending: dict[str, Any] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pulse: float | None = None
        self._closed = False
        self._last = 0.0

    # -- any thread ---------------------------------------------------------------------------
    def mark(self, key: str, value: Any = True) -> None:
        """Record that ``key`` changed (to ``value``); never blocks on the widgets."""
        with self._lock:
            if self._closed:
                return
            self._pending[key] = value
            self._start_locked()
        self._wake.set()

    def pulse(self, seconds: float | None) -> None:
        """Mark ``"pulse"`` every ``seconds`` while the applier runs (None: stop)."""
        with self._lock:
            self._pulse = seconds
            if seconds is not None and not self._closed:
                self._start_locked()
        self._wake.set()

    def flush(self) -> bool:
        """Apply what is pending now, in the calling thread; False when nothing was pending."""
        with self.widget_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
                self._last = time.monotonic()
            if not pending:
                return False
            self._apply(pending)
            self.applies += 1
            return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._pending.clear()
        self._wake.set()

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None

    # -- the applier thread -------------------------------------------------------------------
    def _start_locked(self) -> None:
        if self.background and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="gpu_magic-ui", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while self._next_round():
            wait = self._last + self.interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # marks arriving meanwhile join this apply
            try:
                self.flush()
            except Exception:  # one bad apply must not end the updates for good
                log.exception("gpu_magic: updating a widget failed")

    def _next_round(self) -> bool:
        """Wait for marks (or a pulse); False when the thread should end."""
        while True:
            with self._lock:
                pulse = self._pulse
            woken = self._wake.wait(pulse if pulse is not None else self.idle_exit)
            self._wake.clear()
            with self._lock:
                if self._closed:
                    self._thread = None
                    return False
                if not woken and self._pulse is not None:
                    self._pending["pulse"] = True
                if self._pending:
                    return True
                if not woken:
                    self._thread = None
                    return False
