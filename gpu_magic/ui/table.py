"""``JobsTable``: every job (status, cluster, GPUs, progress, ETA, runtime), kept up to date.

The rows come from the local store (cheap, no round trip) at every apply; the feeds of active
jobs are followed so that progress and state changes show within a throttle interval, and a
pulse re-reads the store every few seconds (new jobs, runtimes). Clicking a row opens that
job's ``JobPanel`` below the table (clicking it again closes it).

The rows are one widget, ``JobsGrid`` (an anywidget: an HTML table drawn by its own ES module
from a synced ``rows`` list), not a widget per cell: a 50-row table is a handful of comms, not
some 1,500. A click on a row sets the grid's ``opened`` (that job's id, "" for none) from the
browser; the table observes it and shows or closes the panel.
"""

from __future__ import annotations

import html
import logging
from datetime import datetime, timezone

import anywidget
import ipywidgets as widgets
import traitlets

from . import text
from .panel import JobPanel, close_tree
from .throttle import INTERVAL, Throttle

PULSE = 2.0
LIMIT = 50
COLUMNS = (  # (key in a row of ``JobsGrid.rows``, header)
    ("id", "job"),
    ("name", "name"),
    ("status", "status"),
    ("cluster", "cluster"),
    ("gpus", "gpus"),
    ("progress", "progress"),
    ("eta", "ETA"),
    ("runtime", "runtime"),
    ("submitted", "submitted"),
    ("exit", "exit"),
)
log = logging.getLogger(__name__)

ESM = """
function render({ model, el }) {
  const table = document.createElement("table");
  table.className = "gpu-magic-jobs-grid";
  table.dataset.lmSuppressShortcuts = "true";  // Enter on a row is ours, not the notebook's
  const head = table.createTHead().insertRow();
  const body = table.createTBody();
  const rows = new Map();  // job id -> its <tr>, kept across updates
  let columns = [];

  function drawHead() {  // the columns changed: new header, rows rebuilt
    columns = model.get("columns") || [];
    head.replaceChildren();
    for (const [key, label] of columns) {
      const th = document.createElement("th");
      th.className = `gpu-magic-col-${key}`;
      th.textContent = label;
      head.appendChild(th);
    }
    for (const tr of rows.values()) tr.remove();
    rows.clear();
    draw();
  }

  function rowFor(id) {
    let tr = rows.get(id);
    if (!tr) {
      tr = document.createElement("tr");
      tr.className = "gpu-magic-job-row";
      tr.dataset.jobId = id;
      tr.tabIndex = 0;
      for (const [key] of columns) tr.insertCell().className = `gpu-magic-col-${key}`;
      rows.set(id, tr);
    }
    return tr;
  }

  function draw() {
    const data = model.get("rows") || [];
    const opened = model.get("opened") || "";
    const best = model.get("best") || "";
    const seen = new Set();
    data.forEach((row, i) => {
      const tr = rowFor(row.id);
      seen.add(row.id);
      columns.forEach(([key], j) => {
        const value = row[key] == null ? "" : String(row[key]);
        if (tr.cells[j].textContent !== value) tr.cells[j].textContent = value;
      });
      tr.dataset.status = row.status || "";
      const open = row.id === opened;
      tr.classList.toggle("gpu-magic-job-row-open", open);
      tr.classList.toggle("gpu-magic-job-row-best", row.id === best);
      tr.setAttribute("aria-expanded", String(open));
      tr.title = open ? "click to close this job's panel" : "click to show this job's panel";
      if (body.rows[i] !== tr) body.insertBefore(tr, body.rows[i] || null);
    });
    for (const [id, tr] of rows) {
      if (!seen.has(id)) {
        tr.remove();
        rows.delete(id);
      }
    }
  }

  function toggle(tr) {
    const id = tr.dataset.jobId;
    model.set("opened", model.get("opened") === id ? "" : id);
    model.save_changes();
  }

  body.addEventListener("click", (event) => {
    const tr = event.target.closest("tr.gpu-magic-job-row");
    if (!tr || !body.contains(tr)) return;
    const selection = window.getSelection ? window.getSelection() : null;
    if (selection && String(selection) && tr.contains(selection.anchorNode)) return;  // copying
    toggle(tr);
  });
  body.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" && event.key !== " ") return;
    const tr = event.target.closest("tr.gpu-magic-job-row");
    if (!tr || !body.contains(tr)) return;
    event.preventDefault();
    event.stopPropagation();
    toggle(tr);
  });
  model.on("change:columns", drawHead);
  model.on("change:rows", draw);
  model.on("change:opened", draw);
  model.on("change:best", draw);
  drawHead();
  el.appendChild(table);
  return () => {
    model.off("change:columns", drawHead);
    model.off("change:rows", draw);
    model.off("change:opened", draw);
    model.off("change:best", draw);
  };
}

export default { render };
"""

CSS = """
.gpu-magic-jobs-grid {
  border-collapse: collapse;
  font-family: var(--jp-ui-font-family, sans-serif);
  font-size: var(--jp-ui-font-size1, 13px);
  color: var(--jp-ui-font-color1, inherit);
}
.gpu-magic-jobs-grid th {
  text-align: left;
  font-weight: 600;
  padding: 3px 14px 3px 4px;
  border-bottom: 1px solid var(--jp-border-color1, #bdbdbd);
  white-space: nowrap;
}
.gpu-magic-jobs-grid td {
  padding: 2px 14px 2px 4px;
  white-space: nowrap;
}
.gpu-magic-jobs-grid .gpu-magic-job-row { cursor: pointer; }
.gpu-magic-jobs-grid .gpu-magic-job-row:hover { background: var(--jp-layout-color2, #eeeeee); }
.gpu-magic-jobs-grid .gpu-magic-job-row:focus-visible {
  outline: 1px solid var(--jp-brand-color1, #1a73e8);
  outline-offset: -1px;
}
.gpu-magic-jobs-grid .gpu-magic-job-row-open,
.gpu-magic-jobs-grid .gpu-magic-job-row-open:hover { background: var(--jp-brand-color3, #d2e3fc); }
.gpu-magic-jobs-grid .gpu-magic-job-row-best td { font-weight: 600; }
.gpu-magic-jobs-grid .gpu-magic-job-row-best td.gpu-magic-col-member::after {
  content: " ★";
  color: #188038;
}
.gpu-magic-jobs-grid td.gpu-magic-col-id::before { content: "▸ "; color: #80868b; }
.gpu-magic-jobs-grid .gpu-magic-job-row-open td.gpu-magic-col-id::before { content: "▾ "; }
.gpu-magic-jobs-grid td.gpu-magic-col-id { font-family: var(--jp-code-font-family, monospace); }
.gpu-magic-jobs-grid [data-status="running"] td.gpu-magic-col-status { color: #1a73e8; }
.gpu-magic-jobs-grid [data-status="completed"] td.gpu-magic-col-status { color: #188038; }
.gpu-magic-jobs-grid [data-status="failed"] td.gpu-magic-col-status,
.gpu-magic-jobs-grid [data-status="timeout"] td.gpu-magic-col-status { color: #c5221f; }
.gpu-magic-jobs-grid [data-status="cancelled"] td.gpu-magic-col-status,
.gpu-magic-jobs-grid [data-status="lost"] td.gpu-magic-col-status { color: #e37400; }
"""


class JobsGrid(anywidget.AnyWidget):
    """The table's rows as one widget: ``rows`` (a dict per job keyed by ``columns``' keys, all
    strings, and its ``id``) drawn by the browser under ``columns`` (``[key, header]`` pairs);
    ``opened`` is the id of the job whose panel is open, ``best`` one row shown as the best."""

    _esm = ESM
    _css = CSS
    columns = traitlets.List([list(column) for column in COLUMNS]).tag(sync=True)
    rows = traitlets.List().tag(sync=True)
    opened = traitlets.Unicode("").tag(sync=True)
    best = traitlets.Unicode("").tag(sync=True)


def grid_row(job, progress=None, now: datetime | None = None) -> dict[str, str]:
    """One row of ``JobsGrid.rows``: the text table's cells, plus when and how it ended."""
    row = dict(zip((key for key, _ in COLUMNS), text.table_row(job, progress, now), strict=False))
    submitted = job.submitted_at or job.created_at
    row["submitted"] = submitted.astimezone().strftime("%Y-%m-%d %H:%M") if submitted else "-"
    row["exit"] = "-" if job.exit_code is None else str(job.exit_code)
    return row


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
        self.feeds: dict = {}
        self._unsubscribes: list = []
        self.panel = None
        self._problem = None  # the message shown instead of a panel that could not be made
        self.live = True
        self.grid = JobsGrid()
        self.grid.add_class("gpu-magic-jobs-rows")
        self.detail = widgets.VBox()
        self.detail.add_class("gpu-magic-job-detail")
        super().__init__(self._parts())
        self.add_class("gpu-magic-jobs-table")
        self.grid.observe(self._on_opened, names="opened")
        with self.lock:
            self._apply({"all": True})
        self.throttle.pulse(PULSE)

    def _parts(self) -> list:
        """The widgets shown, top to bottom (a subclass adds its own around the grid)."""
        return [self.grid, self.detail]

    # -- data ---------------------------------------------------------------------------------
    def jobs(self) -> list:
        return self._followed(self.client.store.list(limit=self.limit))

    def _followed(self, jobs: list) -> list:
        """``jobs``, the feeds of their active ones followed (while the table is live)."""
        for job in jobs:
            if self.live and not job.is_terminal and job.id not in self.feeds:
                self._follow(job.id)
        return jobs

    def table_rows(self) -> list[tuple[str, ...]]:
        return [
            text.table_row(job, text.read_progress(self.feeds.get(job.id))) for job in self.jobs()
        ]

    def _follow(self, job_id: str) -> None:
        feed = self.client.monitor.feed(job_id)
        self.feeds[job_id] = feed
        self._unsubscribes.append(feed.subscribe(lambda _update: self.throttle.mark("job")))

    # -- widgets (applier thread or a click, under the lock) ----------------------------------
    def _apply(self, _changes: dict) -> None:
        now = datetime.now(timezone.utc)
        rows = [
            grid_row(job, text.read_progress(self.feeds.get(job.id)), now) for job in self.jobs()
        ]
        self.grid.rows = rows  # an equal list sends nothing

    def _on_opened(self, change) -> None:
        """The browser set ``opened`` (a click on a row): show that job's panel, or none."""
        self._show(change["new"] or "")

    def open_job(self, job_id: str) -> None:
        """Show ``job_id``'s panel below the table (or close it when it is the one shown)."""
        with self.lock:
            shown = self.panel.job_id if self.panel is not None else ""
            self._show("" if job_id == shown else job_id)

    def _show(self, job_id: str) -> None:
        with self.lock:
            shown = self.panel.job_id if self.panel is not None else ""
            if job_id != shown:  # (our own reset to "" below keeps a problem shown)
                old, problem, self.panel, self._problem = self.panel, self._problem, None, None
                if job_id:
                    try:
                        self.panel = self.panel_factory(self.client, job_id)
                    except Exception as exc:  # e.g. a job removed from the store meanwhile
                        log.warning("gpu_magic: no panel for job %s", job_id, exc_info=True)
                        self._problem = widgets.HTML(
                            f'<span style="color:#c5221f">no panel for job {html.escape(job_id)}:'
                            f" {html.escape(str(exc))}</span>"
                        )
                        job_id = ""
                shown_now = self.panel or self._problem
                self.detail.children = () if shown_now is None else (shown_now,)
                for gone in (old, problem):
                    if gone is not None:
                        close_tree(gone)
            if self.grid.opened != job_id:
                self.grid.opened = job_id  # from Python: the row shows as open in the browser

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
        for child in (*self.children, self.panel, self._problem):
            if child is not None:
                close_tree(child)
        super().close()

    def snapshot_text(self) -> str:
        with self.lock:
            return text.table_text(self.table_rows())
