"""``JobsTable``: every job (status, cluster, GPUs, progress, ETA, runtime), kept up to date.

The rows come from the local store (cheap, no round trip) at every apply; the feeds of active
jobs are followed so that progress and state changes show within a throttle interval, and a
pulse re-reads the store every few seconds (new jobs, runtimes). A row's button opens that
job's ``JobPanel`` below the table (clicking it again closes it).
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from . import text
from .panel import JobPanel, close_tree
from .throttle import INTERVAL, Throttle

PULSE = 2.0
LIMIT = 50
WIDTHS = ("110px", "140px", "90px", "100px", "50px", "70px", "70px", "80px")


def _cells(values, bold: bool = False) -> list[widgets.HTML]:
    wrap = (lambda v: f"<b>{html.escape(v)}</b>") if bold else html.escape
    return [
        widgets.HTML(value=wrap(v), layout={"width": w})
        for v, w in zip(values, WIDTHS, strict=True)
    ]


class Row(widgets.HBox):
    def __init__(self, job_id: str, on_open):
        self.job_id = job_id
        self.cells = _cells([""] * len(WIDTHS))
        self.button = widgets.Button(description="open", layout={"width": "70px"})
        self.button.add_class("gpu-magic-open-job")
        self.button.on_click(lambda _b: on_open(job_id))
        super().__init__([*self.cells, self.button])
        self.add_class("gpu-magic-job-row")

    def show(self, values: tuple[str, ...], opened: bool) -> None:
        for cell, value in zip(self.cells, values, strict=True):
            cell.value = html.escape(value)
        self.button.description = "close" if opened else "open"


class JobsTable(text.TextFallback, widgets.VBox):
    def __init__(
        self,
        client,
        *,
        limit: int = LIMIT,
        interval: float = INTERVAL,
        background: bool = True,
        panel_factory=JobPanel,
    ):
        self.client, self.limit, self.panel_factory = client, limit, panel_factory
        self.throttle = Throttle(self._apply, interval=interval, background=background)
        self.lock = self.throttle.widget_lock
        self.rows: dict[str, Row] = {}
        self.feeds: dict = {}
        self._unsubscribes: list = []
        self.panel = None
        self.live = True
        self.body = widgets.VBox()
        self.detail = widgets.VBox()
        self.detail.add_class("gpu-magic-job-detail")
        header = widgets.HBox(_cells(text.TABLE_HEADERS, bold=True))
        super().__init__([header, self.body, self.detail])
        self.add_class("gpu-magic-jobs-table")
        with self.lock:
            self._apply({"all": True})
        self.throttle.pulse(PULSE)

    # -- data ---------------------------------------------------------------------------------
    def table_rows(self) -> list[tuple[str, ...]]:
        jobs = self.client.store.list(limit=self.limit)
        for job in jobs:
            if self.live and not job.is_terminal and job.id not in self.feeds:
                self._follow(job.id)
        return [text.table_row(job, text.read_progress(self.feeds.get(job.id))) for job in jobs]

    def _follow(self, job_id: str) -> None:
        feed = self.client.monitor.feed(job_id)
        self.feeds[job_id] = feed
        self._unsubscribes.append(feed.subscribe(lambda _update: self.throttle.mark("job")))

    # -- widgets (applier thread or a click, under the lock) ----------------------------------
    def _apply(self, _changes: dict) -> None:
        rows = self.table_rows()
        opened = self.panel.job_id if self.panel is not None else None
        for values in rows:
            if values[0] not in self.rows:
                self.rows[values[0]] = Row(values[0], self.open_job)
            self.rows[values[0]].show(values, opened == values[0])
        order = tuple(self.rows[values[0]] for values in rows)
        if tuple(self.body.children) != order:
            self.body.children = order

    def open_job(self, job_id: str) -> None:
        """Show ``job_id``'s panel below the table (or close it when it is the one shown)."""
        with self.lock:
            old, self.panel = self.panel, None
            if old is None or old.job_id != job_id:
                self.panel = self.panel_factory(self.client, job_id)
            self.detail.children = () if self.panel is None else (self.panel,)
            if old is not None:
                old.close()
            self._apply({})

    def freeze(self) -> None:
        """Stop following the jobs (a newer table took over); rows and panels stay usable."""
        with self.lock:
            self.live = False
            self.throttle.pulse(None)
            for unsubscribe in self._unsubscribes:
                unsubscribe()
            self._unsubscribes.clear()

    def close(self) -> None:
        if self.throttle.closed:
            return
        self.freeze()
        self.throttle.close()
        for child in self.children:
            close_tree(child)
        for row in self.rows.values():
            close_tree(row)
        super().close()

    def snapshot_text(self) -> str:
        with self.lock:
            return text.table_text(self.table_rows())
