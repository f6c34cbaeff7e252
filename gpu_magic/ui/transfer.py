"""Transfer progress in the notebook: a bar for a ``TransferProgress``, or text without widgets.

The download thread only reaches ``TransferBar`` through the progress's subscription, which marks
the bar's ``Throttle``; the throttle's applier reads a snapshot and changes the widgets (never more
than every 250 ms). Without a widget frontend ``TransferPrinter`` prints one line when the
transfer starts, at most one every ``every`` seconds while it runs and one when it ends.

``run_showing(source, work)`` is what ``%gpu_fetch`` uses: ``work()`` (a collection or a file
fetch) runs on a thread while the caller's thread shows whatever transfer ``source()`` reports.
The ``TransferProgress`` is made inside the results service once the transfer starts, so the
caller's thread looks for it every ``POLL_S``; a transfer that had already finished before
``work`` started belongs to an earlier call and is not shown. Ctrl-C cancels the transfer (it
stops at its next chunk; what arrived stays for the next fetch to resume), shows where it
stopped and raises ``KeyboardInterrupt``.

``%%gpu_submit`` uses it for the upload (``after_s=1``: an upload that is over within a second
shows no bar), with the submission's own lines (the manifest line) handed over through
``relay`` and printed by the caller's thread, where a cell's output belongs.
"""

from __future__ import annotations

import html
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ..formatting import started, transfer_line
from .frontend import display as show
from .frontend import widget_frontend
from .text import TextFallback
from .throttle import INTERVAL, Throttle

POLL_S = 0.1
CANCEL_WAIT_S = 10.0  # after Ctrl-C, how long the cell waits for the download to stop
PRINT_EVERY_S = 5.0
STOP_TIPS = {
    "download": "Stop this download: what arrived is kept, and the next fetch resumes it",
    "upload": "",
}
"""An upload runs inside its ``%%gpu_submit`` cell, and a busy cell's kernel handles no button
click until the cell ends: interrupting the kernel (Ctrl-C, the toolbar's stop) is its Stop, so
the upload bar shows none."""
RED = "#c5221f"


def transfer_html(snap) -> str:
    line = html.escape(transfer_line(snap))
    return f'<span style="color:{RED}">{line}</span>' if snap.error else line


class TransferBar(TextFallback, widgets.HBox):
    """A progress bar, its line of text and a Stop button (shown while bytes move), following
    one ``TransferProgress`` at a time. Stop is the Ctrl-C of a download that runs in the
    background (the panel's, or an automatic collection), which no interrupt reaches."""

    def __init__(
        self,
        progress=None,
        *,
        interval: float = INTERVAL,
        background: bool = True,
        what: str = "download",
    ):
        self.bar = widgets.FloatProgress(value=0, min=0, max=1, layout={"width": "240px"})
        self.bar.add_class("gpu-magic-transfer-bar")
        self.label = widgets.HTML(value="")
        self.label.add_class("gpu-magic-transfer-text")
        self.stop = widgets.Button(
            description="Stop", icon="stop", layout={"display": "none", "width": "auto"},
            tooltip=STOP_TIPS[what],
        )  # fmt: skip
        self.stop.add_class("gpu-magic-transfer-stop")
        self.stop.on_click(lambda _button: self._stop())
        self.throttle = Throttle(self._apply, interval=interval, background=background)
        self.lock = self.throttle.widget_lock
        self.progress = None
        self._follow_lock = threading.Lock()
        self._unsubscribe: Callable[[], None] | None = None
        super().__init__([self.bar, self.label, self.stop])
        self.add_class("gpu-magic-transfer")
        self.follow(progress)

    def follow(self, progress) -> None:
        """(any thread) Show ``progress`` from now on (None: nothing); cheap when unchanged."""
        with self._follow_lock:
            if progress is self.progress:
                return
            if self._unsubscribe is not None:
                self._unsubscribe()
            self.progress = progress
            self._unsubscribe = progress.subscribe(self._changed) if progress else None
        self.throttle.mark("transfer")

    def _stop(self) -> None:
        progress = self.progress
        if progress is not None:
            progress.cancel()
            with self.lock:  # the throttle's applier changes these widgets too
                self.stop.disabled, self.stop.description = True, "Stopping…"

    def _changed(self) -> None:
        """(download thread) Runs inside ``TransferProgress``: only mark."""
        self.throttle.mark("transfer")

    def _apply(self, _changes: dict) -> None:
        progress = self.progress
        if progress is None:
            self.bar.value, self.label.value, self.bar.bar_style = 0, "", ""
            self.stop.layout.display = "none"
            return
        snap = progress.snapshot()
        self.bar.value = snap.fraction if started(snap) and not snap.error else 0
        self.bar.bar_style = "danger" if snap.error else "success" if snap.finished else ""
        self.label.value = transfer_html(snap)
        stoppable = bool(self.stop.tooltip)
        self.stop.layout.display = "none" if snap.finished or not stoppable else ""
        if not progress.cancelled:
            self.stop.disabled, self.stop.description = False, "Stop"

    def snapshot_text(self) -> str:
        return "" if self.progress is None else transfer_line(self.progress.snapshot())

    def close(self) -> None:
        if not hasattr(self, "throttle"):
            return
        self.follow(None)
        self.throttle.close()
        self.bar.close()
        self.label.close()
        self.stop.close()
        super().close()


class TransferPrinter:
    """The text fallback: a start line, a line every ``every`` seconds at most, an end line."""

    def __init__(self, say=print, every: float = PRINT_EVERY_S, clock=time.monotonic):
        self.say, self.every, self.clock = say, every, clock
        self.progress = None
        self._last: float | None = None  # when the last line went out (None: not started)
        self._ended = False

    def poll(self, progress) -> None:
        """(the caller's thread) Print what is due for ``progress`` now."""
        if progress is None:
            return
        if progress is not self.progress:
            self.progress, self._last, self._ended = progress, None, False
        snap = progress.snapshot()
        if self._ended or not started(snap):
            return
        now = self.clock()
        if snap.finished or self._last is None or now - self._last >= self.every:
            self.say(f"gpu_magic: {transfer_line(snap)}")
            self._last, self._ended = now, snap.finished


class BarShower:
    """The widget side of ``run_showing``: the bar is displayed once there is something to show."""

    def __init__(self, display, what: str = "download"):
        self.display, self.what = display, what
        self.bar: TransferBar | None = None

    def poll(self, progress) -> None:
        if progress is None:
            return
        if self.bar is None:
            self.bar = TransferBar(progress, what=self.what)
            self.display(self.bar)
        self.bar.follow(progress)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.throttle.flush()  # the final state is in the output before the cell ends


def run_showing(
    source: Callable[[], Any],
    work: Callable[[], Any],
    *,
    widgets: bool | None = None,
    say=print,
    display=None,
    poll_s: float = POLL_S,
    after_s: float = 0.0,
    relay: queue.SimpleQueue | None = None,
    what: str = "download",
) -> Any:
    """Return ``work()`` (or raise its error), showing ``source()``'s transfer meanwhile, once it
    has run ``after_s``; lines that ``work`` put in ``relay`` are said here, in order."""
    before = source()
    stale = before if before is not None and before.snapshot().finished else None
    moving = source  # what Ctrl-C stops, shown or not yet
    source = _shown_after(source, after_s) if after_s else source
    use_widgets = widgets if widgets is not None else widget_frontend()
    shower = BarShower(display or show, what) if use_widgets else TransferPrinter(say)
    outcome: dict[str, Any] = {}
    ended = threading.Event()  # not thread.join: Ctrl-C inside join marks a live thread stopped
    thread = threading.Thread(target=_capture, args=(work, outcome, ended), daemon=True)
    thread.name = "gpu_magic-transfer"

    def follow(limit_s: float | None = None) -> None:
        deadline = None if limit_s is None else time.monotonic() + limit_s
        while not ended.is_set() and (deadline is None or time.monotonic() < deadline):
            ended.wait(poll_s)
            _say_relayed(relay, say)
            current = source()
            shower.poll(None if current is stale else current)
        _say_relayed(relay, say)
        current = source()
        shower.poll(None if current is stale else current)
        if isinstance(shower, BarShower):
            shower.finish()

    try:  # the start too: a Ctrl-C raised in its first instant must still stop the transfer
        thread.start()
        follow()
    except KeyboardInterrupt:  # Ctrl-C: stop the transfer too, and show where it stopped
        if thread.ident is None:  # it came before the work began: nothing to stop
            raise
        current = moving()
        if current is not None and current is not stale:
            current.cancel()
        follow(CANCEL_WAIT_S)
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _shown_after(source: Callable[[], Any], after_s: float) -> Callable[[], Any]:
    """``source`` as seen once its transfer has run ``after_s`` unfinished (then for good)."""
    shown = []

    def delayed():
        progress = source()
        if progress is not None and progress not in shown:
            snap = progress.snapshot()
            if snap.finished or snap.elapsed < after_s:
                return None
            shown.append(progress)
        return progress

    return delayed


def _say_relayed(relay: queue.SimpleQueue | None, say) -> None:
    while relay is not None and not relay.empty():
        say(relay.get_nowait())


def _capture(work: Callable[[], Any], outcome: dict, ended: threading.Event) -> None:
    try:
        outcome["value"] = work()
    except BaseException as exc:  # handed to the caller's thread, which raises it
        outcome["error"] = exc
    finally:
        ended.set()
