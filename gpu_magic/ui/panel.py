"""``JobPanel``: the live widget of one job (status, progress, charts, log tail, buttons).

Feed listeners (monitor thread) only mark what changed; the panel's ``Throttle`` applies the
latest feed state at most every 250 ms from its own thread, holding the widget lock that the
button callbacks (kernel main thread) take as well. The displayed object's ``text/plain`` is a
text snapshot (``ui.text``), so plain IPython and nbconvert show something readable.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from ..formatting import duration
from ..models import JobStatus
from . import charts, text
from .actions import Actions
from .logview import TAIL_LINES, LogView
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
    ):
        self.client, self.job_id, self.idle_after_s = client, job_id, idle_after_s
        self.feed = feed if feed is not None else client.monitor.feed(job_id)
        self.throttle = Throttle(self._apply, interval=interval, background=background)
        self.lock = self.throttle.widget_lock
        self.host = text.host_label(client, self.feed.job)
        self._hide = None
        self._progress = None
        self._samples: list = []
        self._build(tail_lines)
        self.actions = Actions(self, namespace)
        super().__init__(self._layout())
        self.add_class("gpu-magic-panel")
        self._unsubscribe = self.feed.subscribe(self._on_update)
        with self.lock:
            self._apply({"all": True})
            self._watch()

    # -- building -----------------------------------------------------------------------------
    def _build(self, tail_lines: int) -> None:
        self.status = _html("gpu-magic-status")
        self.idle = _html("gpu-magic-idle-warning")
        self.progress = widgets.FloatProgress(value=0, min=0, max=100, description="-")
        self.progress.add_class("gpu-magic-progress")
        self.eta = widgets.Label(value="ETA unknown")
        self.eta.add_class("gpu-magic-eta")
        self.loss_chart = charts.metrics_figure()
        self.gpu_chart = charts.gpu_figure()
        self.gpu_now = _html("gpu-magic-gpu-now")
        self.logview = LogView(tail_lines, lock=self.lock)

    def _layout(self) -> list:
        half = {"width": "50%", "min_width": "380px"}
        figures = widgets.HBox(
            [
                widgets.Box([self.loss_chart], layout=half),
                widgets.Box([self.gpu_chart], layout=half),
            ],
            layout={"flex_flow": "row wrap"},
        )
        progress = widgets.HBox([self.progress, self.eta])
        return [
            self.status,
            self.idle,
            progress,
            figures,
            self.gpu_now,
            self.logview,
            *self.actions.row,
        ]

    # -- feed side (monitor thread): record only ----------------------------------------------
    def _on_update(self, update) -> None:
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
        if every or "metrics" in changes:
            self._show_metrics()
        if every or "gpu" in changes:
            self._show_gpu()
        if every or "log" in changes:
            self.logview.set_lines(text.log_tail(self.feed))
        self._show_status(job)
        self._show_progress(job)
        self.actions.refresh(job)
        if job.is_terminal:
            self._stop_watching()

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
        self.status.value = f"{badge} {line}{error}"
        idle = text.idle_gpus(self._samples, job, self.idle_after_s)
        self.idle.value = f"⚠ {text.idle_warning(self.idle_after_s)}" if idle else ""

    def _show_metrics(self) -> None:
        self._progress = text.read_progress(self.feed)
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
            parts = text.progress_line(p).removeprefix("progress: ")
            self.eta.value = parts if p is not None else "ETA unknown"

    def _show_gpu(self) -> None:
        self._samples = self.feed.gpu_samples()
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
        return text.render(snap, tail)


def close_tree(widget) -> None:
    """Close a widget and everything inside it (their comms go away with the panel)."""
    widget.close()  # first: a panel stops its updates before its parts go
    for child in getattr(widget, "children", ()):
        close_tree(child)


def _html(css_class: str) -> widgets.HTML:
    widget = widgets.HTML()
    widget.add_class(css_class)
    return widget
