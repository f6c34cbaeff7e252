"""``JobPanel``: the live widget of one job (status, progress, charts, log tail, buttons).

Feed listeners (monitor thread) only mark what changed; the panel's ``Throttle`` applies the
latest feed state at most every 250 ms from its own thread, holding the widget lock that the
button callbacks (kernel main thread) take as well. The displayed object's ``text/plain`` is a
text snapshot (``ui.text``), so plain IPython and nbconvert show something readable.

The log reaches the ``LogView`` as it grows: the listener collects each update's new text, the
apply hands it over, and the view classifies each line once. Only the first apply (and a log
that was replaced) reads the log's tail from the feed.
"""

from __future__ import annotations

import codecs
import html
import threading
import time

import ipywidgets as widgets

from .. import jobdir
from ..formatting import duration
from ..models import JobStatus
from . import charts, text
from .actions import Actions
from .logview import TAIL_LINES, LogView, drop_first_line
from .results import ResultsSection
from .throttle import INTERVAL, Throttle

PULSE = 1.0  # the elapsed-time clock ticks this often while the job is not finished
COLORS = {
    JobStatus.RUNNING: "#1a73e8",
    JobStatus.COMPLETED: "#188038",
    JobStatus.FAILED: "#c5221f",
    JobStatus.TIMEOUT: "#c5221f",
    JobStatus.CANCELLED: "#e37400",
    JobStatus.LOST: "#e37400",
}
BAR_STYLES = {JobStatus.COMPLETED: "success", JobStatus.FAILED: "danger"}
HALF = {
    "width": "50%",
    "min_width": "380px",
    "flex_flow": "column",
    "align_items": "stretch",
    "overflow": "hidden",
}
"""A column that stretches its figure to the box's width: plotly sizes a figure without a set
width from its element, which as a plain flex item would keep plotly's 700 px."""


CHART_EVERY_S = 1.0
"""The loss chart redraws at most this often. Each redraw sends every (thinned) point of every
series to the browser, which for a job logging loss 20 times a second cost more than the rest of
the panel together; the progress line and the ETA still change with every apply. A chart left
behind is drawn by the next apply that is due, at the latest the throttle's pulse (``PULSE``)
when the job has gone quiet."""


class JobPanel(text.TextFallback, widgets.VBox):
    def __init__(
        self,
        client,
        job_id: str,
        *,
        feed=None,
        interval: float = INTERVAL,
        background: bool = True,
        idle_after_s: float = text.IDLE_AFTER_S,
        tail_lines: int = TAIL_LINES,
        namespace: dict | None = None,
        chart_every: float = CHART_EVERY_S,
        clock=time.monotonic,
    ):
        self.client, self.job_id, self.idle_after_s = client, job_id, idle_after_s
        self.chart_every, self._clock = chart_every, clock
        self._charted_at, self._chart_behind = float("-inf"), False
        self.feed = feed if feed is not None else client.monitor.feed(job_id)
        self.throttle = Throttle(self._apply, interval=interval, background=background)
        self.lock = self.throttle.widget_lock
        self.host = text.host_label(client, self.feed.job)
        self._hide = None
        self._progress = None
        self._samples: list = []
        self._log_lock = threading.Lock()  # guards the three fields below
        self._log_new: list[str] = []  # log text that arrived since the last apply
        self._log_reset = False  # the log was replaced: start the view over with _log_new
        self._log_known: int | None = None  # the feed's log end offset in the view's first text
        self._build(tail_lines)
        self.actions = Actions(self, namespace)
        self.results = ResultsSection(
            client, job_id, namespace=namespace, interval=interval, background=background
        )
        super().__init__(self._layout())
        self.add_class("gpu-magic-panel")
        self._unsubscribe = self.feed.subscribe(self._on_update)
        with self.lock:
            self._apply({"all": True})
            self._watch()
        self.figures.add_done_callback(self._charts_built)

    # -- building -----------------------------------------------------------------------------
    def _build(self, tail_lines: int) -> None:
        self.status = _html("gpu-magic-status")
        self.idle = _html("gpu-magic-idle-warning")
        self.progress = widgets.FloatProgress(value=0, min=0, max=100, description="-")
        self.progress.add_class("gpu-magic-progress")
        self.eta = widgets.Label(value="ETA unknown")
        self.eta.add_class("gpu-magic-eta")
        self.loss_chart = self.gpu_chart = None  # until the chart thread has built them
        self.chart_boxes = [widgets.Box([_html("gpu-magic-chart-loading")], layout=HALF)]
        self.chart_boxes.append(widgets.Box([_html("gpu-magic-chart-loading")], layout=HALF))
        for box in self.chart_boxes:
            box.children[0].value = "<i>chart loading…</i>"
        self.gpu_now = _html("gpu-magic-gpu-now")
        self.logview = LogView(tail_lines, lock=self.lock)
        self.figures = charts.build_figures(background=self.throttle.background)

    def _charts_built(self, built) -> None:
        """(chart thread, or inline) Put the figures in their boxes; the next apply fills them."""
        try:
            loss, gpu = built.result()
        except Exception as exc:  # shown where the chart would be: a thread's error is unseen
            for box in self.chart_boxes:
                box.children[0].value = f"<i>chart unavailable: {html.escape(str(exc))}</i>"
            return
        with self.lock:
            if self.throttle.closed:
                loss.close()
                gpu.close()
                return
            for box, figure in zip(self.chart_boxes, (loss, gpu), strict=True):
                placeholder, box.children = box.children[0], (figure,)
                placeholder.close()
            self.loss_chart, self.gpu_chart = loss, gpu  # last: set means in their boxes
        self.throttle.mark("metrics")
        self.throttle.mark("gpu")

    def _layout(self) -> list:
        figures = widgets.HBox(self.chart_boxes, layout={"flex_flow": "row wrap"})
        progress = widgets.HBox([self.progress, self.eta])
        return [
            self.status,
            self.idle,
            progress,
            figures,
            self.gpu_now,
            self.logview,
            *self.actions.row,
            self.results,
        ]

    # -- feed side (monitor thread): record only ----------------------------------------------
    def _on_update(self, update) -> None:
        if update.log_text or update.log_reset:
            self._take_log(update)
        self.throttle.mark("job")
        if update.log_text or update.log_reset:
            self.throttle.mark("log")
            self.throttle.mark("metrics")  # progress and metrics may be parsed from the log
        if update.gpu:
            self.throttle.mark("gpu")
        if update.metric_lines or getattr(update, "metrics", None):
            self.throttle.mark("metrics")
        if getattr(update, "progress", None) is not None:
            self.throttle.mark("metrics")

    # -- widget side (applier thread, under the widget lock) ----------------------------------
    def _apply(self, changes: dict) -> None:
        every = "all" in changes
        job = self.feed.job
        if every or "metrics" in changes or ("pulse" in changes and self._chart_behind):
            self._show_metrics()
        if every or "gpu" in changes:
            self._show_gpu()
        if every:
            self._show_log_tail()
        elif "log" in changes:
            self._show_new_log()
        self._show_status(job)
        self._show_progress(job)
        self.actions.refresh(job)
        self.results.refresh(job)
        if job.is_terminal:
            self._stop_watching()

    def _take_log(self, update) -> None:
        """(monitor thread) Keep the update's new log text for the next apply."""
        with self._log_lock:
            if self._log_known is not None:
                end = log_end(self.feed)  # the monitor is in this call: the end stays put
                if end is not None and end <= self._log_known and not update.log_reset:
                    return  # already in the tail the view started with
                self._log_known = None
            if update.log_reset:
                self._log_new.clear()
                self._log_reset = True
            if update.log_text:
                self._log_new.append(update.log_text)

    def _show_log_tail(self) -> None:
        """Start the view with the log's tail; what arrives later comes through _take_log."""
        with self._log_lock:
            tail, self._log_known = read_log_tail(self.feed)
            self._log_new.clear()
            self._log_reset = False
        self.logview.set_text(tail)

    def _show_new_log(self) -> None:
        with self._log_lock:
            new, self._log_new = "".join(self._log_new), []
            reset, self._log_reset = self._log_reset, False
        if reset:
            self.logview.set_text(new)
        elif new:
            self.logview.append_text(new)

    def _show_status(self, job) -> None:
        color = COLORS.get(job.status, "#5f6368")
        badge = (
            f'<span style="background:{color};color:white;border-radius:4px;padding:1px 6px">'
            f"{job.status.value}</span>"
        )
        line = html.escape(" · ".join(text.status_parts(job, self.host)))
        error = (
            f'<br><span style="color:#c5221f">{html.escape(job.error)}</span>' if job.error else ""
        )
        for line in text.failure_lines(job):
            error += f'<br><span class="gpu-magic-failure">{html.escape(line)}</span>'
        resumed = text.resumed_line(self.feed)
        if resumed:
            error += f'<br><span class="gpu-magic-resumed">{html.escape(resumed)}</span>'
        reach = text.reconnecting_line(self.feed) if not job.is_terminal else None
        if reach:
            error += f'<br><span class="gpu-magic-reconnecting">⟳ {html.escape(reach)}</span>'
        self.status.value = f"{badge} {line}{error}"
        idle = text.idle_gpus(self._samples, job, self.idle_after_s)
        self.idle.value = f"⚠ {text.idle_warning(self.idle_after_s)}" if idle else ""

    def _show_metrics(self) -> None:
        self._progress = text.read_progress(self.feed)
        if self.loss_chart is None:
            return
        now = self._clock()
        self._chart_behind = now - self._charted_at < self.chart_every
        if self._chart_behind and not self.feed.job.is_terminal:
            return  # drawn by a later apply, once it is time
        self._charted_at, self._chart_behind = now, False
        series = text.read_series(self.feed)
        unit = getattr(self._progress, "unit", None)
        x_label = "epoch" if unit == "epoch" else "step"
        charts.update_metrics(
            self.loss_chart, series, text.secondary_names(self.feed, series), x_label
        )

    def _show_progress(self, job) -> None:
        p = self._progress
        fraction = 1.0 if job.status == JobStatus.COMPLETED else getattr(p, "fraction", None)
        self.progress.value = 100 * fraction if fraction is not None else 0
        self.progress.description = f"{fraction:.0%}" if fraction is not None else "-"
        self.progress.bar_style = BAR_STYLES.get(job.status, "danger" if job.is_terminal else "")
        if job.is_terminal:
            self.eta.value = f"{job.status.value} after {duration(job.runtime_seconds())}"
        else:
            known = p is not None and getattr(p, "known", True)
            line = text.progress_line(p).removeprefix("progress: ")
            self.eta.value = line if known else text.eta_text(p)

    def _show_gpu(self) -> None:
        self._samples = self.feed.gpu_samples()
        if self.gpu_chart is not None:
            charts.update_gpu(self.gpu_chart, self._samples)
        now = [text.gpu_line(s) for s in text.latest_per_gpu(self._samples)]
        self.gpu_now.value = "<br>".join(map(html.escape, now)) or "GPU: no samples yet"

    # -- screen time --------------------------------------------------------------------------
    def _watch(self) -> None:
        if not self.feed.job.is_terminal and self._hide is None:
            self._hide = self.client.monitor.on_screen(self.job_id)
            self.throttle.pulse(PULSE)

    def _stop_watching(self) -> None:
        hide, self._hide = self._hide, None
        if hide is not None:
            hide()
        self.throttle.pulse(None)

    def close(self) -> None:
        """Stop following the job (ipywidgets also calls this when the widget is deleted)."""
        if not hasattr(self, "lock"):  # its __init__ failed early (no such job): nothing to stop
            return
        with self.lock:
            if self.throttle.closed:
                return
            self._stop_watching()
            self._unsubscribe()
            self.throttle.close()
        for child in self.children:
            close_tree(child)
        super().close()

    # -- text -------------------------------------------------------------------------------------
    def snapshot_text(self, tail: int = text.TAIL_LINES) -> str:
        snap = text.snapshot(self.client, self.feed, idle_after_s=self.idle_after_s)
        return text.render(snap, tail) + self.results.snapshot_text()


def log_end(feed) -> int | None:
    """The log's end offset in the job's file, where the feed tells it (a ``JobFeed`` does)."""
    offsets = getattr(feed, "offsets", None)
    return offsets.get(jobdir.OUTPUT_LOG) if isinstance(offsets, dict) else None


def read_log_tail(feed, max_bytes: int = text.TAIL_BYTES) -> tuple[str, int | None]:
    """The log's last ``max_bytes`` as text, with the log's end offset they reach (None when
    the feed does not tell it). A line cut at the start is dropped; a character cut at the end
    is left out, as the feed's own decoder leaves it for the next update's text."""
    read = getattr(feed, "log_tail", None)
    for _ in range(10):  # an end offset read before and after the tail: the tail matches it
        end = log_end(feed)
        data = read(max_bytes) if read else feed.log_bytes()[-max_bytes:]
        if log_end(feed) == end:
            break
    else:
        end = None  # the log kept growing meanwhile: later text may repeat a few lines
    decoded = codecs.getincrementaldecoder("utf-8")("replace").decode(data, final=False)
    return drop_first_line(decoded) if len(data) >= max_bytes else decoded, end


def close_tree(widget) -> None:
    """Close a widget and everything inside it (their comms go away with the panel)."""
    widget.close()  # first: a panel stops its updates before its parts go
    for child in getattr(widget, "children", ()):
        close_tree(child)


def _html(css_class: str) -> widgets.HTML:
    widget = widgets.HTML()
    widget.add_class(css_class)
    return widget
