"""``SweepPanel``: a sweep's members in one place, kept up to date.

A ``JobsTable`` of the sweep's members whose rows are also its results table: each member's
parameters, status, progress, ETA and runtime, then every metric's latest (at the end: final)
value, the best member marked ★. Above the table, a line of counts; below it, one chart with a
line per member (legend: its parameters) of the ranking metric. A click on a member opens its
own ``JobPanel`` (log, GPUs, actions) below.

The ranking metric is ``metric`` when given, else ``val_loss``, else ``loss``, else the first
seen; lower is better unless its name says accuracy-like (``acc``, ``f1``, ``auc``, ``score``,
...), or ``mode`` says otherwise.
"""

from __future__ import annotations

import html
import re
import time
from collections import Counter
from datetime import datetime, timezone

import ipywidgets as widgets

from ..formatting import printable, result_cell
from ..models import GPUJob, JobStatus
from ..results.series import final_values, metric_rows
from ..sweeps import MAX_MEMBERS, best_member
from . import charts, text
from .actions import Confirmed, MessageLine, button
from .panel import CHART_EVERY_S, JobPanel
from .table import JobsTable, grid_row
from .throttle import INTERVAL

HIGHER_IS_BETTER = re.compile(
    r"acc|f1|auc|score|precision|recall|bleu|rouge|map\b|iou|r2|reward", re.IGNORECASE
)
STATE_COLUMNS = (("status", "status"), ("progress", "progress"), ("eta", "ETA"),
                 ("runtime", "runtime"))  # fmt: skip


def ranking(names, metric: str | None = None, mode: str | None = None) -> tuple[str | None, str]:
    """The metric that ranks members, and ``"min"`` or ``"max"`` (see the module docstring)."""
    names = list(names)
    if metric is None:
        metric = next((n for n in ("val_loss", "loss") if n in names), names[0] if names else None)
    if mode is None:
        mode = "max" if metric and HIGHER_IS_BETTER.search(metric) else "min"
    return metric, mode


class SweepActions:
    """The sweep's buttons: Cancel the sweep (two clicks) and Run failed again (the members
    that ended without completing). Callbacks run on the kernel's thread, the client called
    without the widget lock (a round trip), the lock taken only to change widgets."""

    def __init__(self, panel: SweepPanel):
        self.panel = panel
        self.confirmed = Confirmed(
            "Cancel sweep", "Really cancel all?", "gpu-magic-sweep-cancel", "stop", panel.lock
        )
        self.cancel = self.confirmed.button
        self.retry = button("Run failed again", "gpu-magic-sweep-retry", "redo")
        self.message = MessageLine(panel.lock)
        self.cancel.on_click(self.on_cancel)
        self.retry.on_click(self.on_retry)
        buttons = widgets.HBox([self.cancel, self.retry])
        buttons.add_class("gpu-magic-buttons")
        self.row = widgets.VBox([buttons, self.message])

    def refresh(self, jobs: list[GPUJob]) -> None:
        """(apply, lock held) What can be done with the members as they are now."""
        self.confirmed.enable(not all(job.is_terminal for job in jobs))
        self.retry.disabled = not any(_ended_unfinished(job) for job in jobs)

    def on_cancel(self, _button=None) -> None:
        if self.confirmed.click():
            self._act("cancel", lambda sweep: sweep.cancel())

    def on_retry(self, _button=None) -> None:
        self._act("run again", lambda sweep: sweep.retry())

    def _act(self, what: str, action) -> None:
        say = self.message.say
        say(f"{what}…")
        try:
            counts = action(self.panel.client.sweep(self.panel.sweep_id)).status()
        except Exception as exc:  # shown in the panel: a callback's traceback is invisible
            say(f"{what} failed: {exc}", error=True)
            return
        say(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
        self.panel.throttle.mark("job")


def _ended_unfinished(job: GPUJob) -> bool:
    return job.is_terminal and job.status != JobStatus.COMPLETED


class SweepPanel(JobsTable):
    def __init__(
        self,
        client,
        sweep_id: str,
        *,
        metric: str | None = None,
        mode: str | None = None,
        interval: float = INTERVAL,
        background: bool = True,
        panel_factory=JobPanel,
        chart_every: float = CHART_EVERY_S,
        clock=time.monotonic,
    ):
        self.sweep_id, self.metric, self.mode = sweep_id, metric, mode
        self.chart_every, self._clock = chart_every, clock
        self._charted_at = float("-inf")
        self._ended: dict[tuple, object] = {}  # (job id, attempt, status) -> its feed, read once
        self.header = widgets.HTML()
        self.header.add_class("gpu-magic-sweep-header")
        self.chart = None  # until the chart thread has built it
        self.chart_box = widgets.Box([widgets.HTML("<i>chart loading…</i>")])
        super().__init__(
            client,
            limit=MAX_MEMBERS,
            interval=interval,
            background=background,
            panel_factory=panel_factory,
        )
        self.add_class("gpu-magic-sweep")
        charts.build(charts.metrics_figure, background).add_done_callback(self._chart_built)

    def _parts(self) -> list:
        self.actions = SweepActions(self)  # here: its buttons share the widget lock, made by now
        return [self.header, self.grid, self.chart_box, self.actions.row, self.detail]

    def _chart_built(self, built) -> None:
        """(chart thread, or inline) Put the figure in its box; the next apply fills it."""
        try:
            figure = built.result()
        except Exception as exc:  # shown where the chart would be
            self.chart_box.children[0].value = f"<i>chart unavailable: {html.escape(str(exc))}</i>"
            return
        with self.lock:
            if self.throttle.closed:
                figure.close()
                return
            placeholder, self.chart_box.children = self.chart_box.children[0], (figure,)
            placeholder.close()
            self.chart = figure
        self.throttle.mark("metrics")

    # -- data ---------------------------------------------------------------------------------
    def jobs(self) -> list:
        members = self.client.store.list(sweep=self.sweep_id, limit=self.limit)
        members.sort(key=lambda job: job.sweep.index if job.sweep else 0)
        return self._followed(members)

    def _feed(self, job: GPUJob):
        """The member's feed: the followed one while it runs; once it ended, its final one
        (the results store's, or one last poll), read once per attempt."""
        if not job.is_terminal:
            return self.feeds.get(job.id)
        key = (job.id, job.attempt, job.status)
        if key not in self._ended:
            self._ended[key] = self.client.feed(job.id)
        return self._ended[key]

    def member_rows(self) -> list[tuple[GPUJob, dict, object]]:
        """Each member with its metrics' latest values and its feed (None before it has one)."""
        rows = []
        for job in self.jobs():
            feed = self._feed(job)
            finals = final_values(metric_rows(feed.metric_records())) if feed else {}
            rows.append((job, finals, feed))
        return rows

    # -- widgets (applier thread or a click, under the lock) ----------------------------------
    def _apply(self, changes: dict) -> None:
        members = self.member_rows()
        names = list(dict.fromkeys(name for _, finals, _ in members for name in finals))
        metric, mode = ranking(names, self.metric, self.mode)
        params = list(members[0][0].sweep.params) if members and members[0][0].sweep else []
        columns = [["member", "member"], *([f"p{i}", name] for i, name in enumerate(params))]
        columns += [list(column) for column in STATE_COLUMNS]
        columns += [[f"m{i}", name] for i, name in enumerate(names)]
        columns.append(["id", "job"])
        now = datetime.now(timezone.utc)
        rows = []
        for job, finals, feed in members:
            row = grid_row(job, text.read_progress(feed), now)
            place = job.sweep.params if job.sweep else {}
            row["member"] = str(job.sweep.index if job.sweep else "")
            row.update({f"p{i}": printable(str(place.get(name))) for i, name in enumerate(params)})
            row.update({f"m{i}": result_cell(finals.get(name)) for i, name in enumerate(names)})
            rows.append(row)
        if self.grid.columns != columns:
            self.grid.columns = columns
        self.grid.rows = rows  # an equal list sends nothing
        ranked = ((job.id, job.status.value, finals) for job, finals, _ in members)
        self.grid.best = (best_member(ranked, metric, mode) if metric else None) or ""
        self.actions.refresh([job for job, _, _ in members])
        self.header.value = html.escape(self.summary(members, metric, mode))
        self._draw_chart(members, metric, "all" in changes)

    def summary(self, members, metric: str | None, mode: str) -> str:
        counts = Counter(job.status.value for job, _, _ in members)
        states = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        ranked = f"; ★ best {mode} {metric}" if metric else ""
        return f"sweep {self.sweep_id}: {len(members)} members ({states}){ranked}"

    def _draw_chart(self, members, metric: str | None, now: bool) -> None:
        """One line per member of ``metric``, at most every ``chart_every`` seconds (the
        throttle's pulse draws what a skipped apply left)."""
        if self.chart is None or metric is None:
            return
        clock = self._clock()
        settled = all(job.is_terminal for job, _, _ in members)
        if not now and not settled and clock - self._charted_at < self.chart_every:
            return
        self._charted_at = clock
        series = {}
        for job, _, feed in members:
            points = feed.metric_series().get(metric) if feed is not None else None
            if points:
                label = job.sweep.label if job.sweep else job.id
                series[f"{job.sweep.index if job.sweep else ''}: {label}"] = points
        charts.update_metrics(self.chart, series)
        title = f"{metric} per member"
        if self.chart.layout.title.text != title:
            self.chart.layout.title.text = title
            self.chart.layout.yaxis.title.text = metric

    def snapshot_text(self) -> str:
        with self.lock:
            members = self.member_rows()
        names = list(dict.fromkeys(name for _, finals, _ in members for name in finals))
        metric, mode = ranking(names, self.metric, self.mode)
        lines = [self.summary(members, metric, mode)]
        for job, finals, _ in members:
            label = job.sweep.label if job.sweep else ""
            values = ", ".join(f"{k}={result_cell(v)}" for k, v in finals.items())
            lines.append(f"  {label}: {job.status.value} {values}".rstrip())
        return "\n".join(printable(line) for line in lines)
