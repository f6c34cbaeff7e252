"""The notebook UI: a live panel per job and a live jobs table (ipywidgets + plotly live here only).

Entry points for the magics: ``show_job(client, job)``, ``show_jobs(client)``,
``show_sweep(client, sweep)`` and
``run_showing(source, work)`` (a transfer's progress bar while ``work`` runs). Each displays
its widget where a widget frontend can exist (an ipykernel kernel: JupyterLab, Notebook,
VS Code, nbclient/nbconvert) and otherwise (plain IPython, a script) a text snapshot; either way
the displayed ``text/plain`` is that readable snapshot. Pass ``widgets=True/False`` to force.
"""

from __future__ import annotations

import threading
import time

from .. import formatting
from ..models import JobStatus
from . import text
from .frontend import display as _display
from .frontend import widget_frontend
from .panel import JobPanel
from .sweep import SweepPanel
from .table import JobsTable
from .throttle import Throttle
from .transfer import TransferBar, run_showing

__all__ = [
    "JobPanel",
    "JobsTable",
    "SweepPanel",
    "Throttle",
    "TransferBar",
    "run_showing",
    "show_job",
    "show_jobs",
    "show_sweep",
    "widget_frontend",
]

SETTLE_S = 3.0
_live_table: JobsTable | None = None
_live_lock = threading.Lock()


def show_job(client, job: str, *, widgets: bool | None = None):
    """Display the panel of ``job`` (id, id prefix or name) and return it."""
    job_id = client.store.find(job).id
    if widgets if widgets is not None else widget_frontend():
        view = JobPanel(client, job_id)
    else:
        feed = _settled(client.monitor.feed(job_id))
        view = text.TextView(lambda: text.render(text.snapshot(client, feed)))
    _display(view)
    return view


def show_sweep(client, sweep_id: str, *, widgets: bool | None = None):
    """Display the grouped panel of a sweep (its members, one chart, the results) and return
    it; without a widget frontend, the results table as text."""
    if widgets if widgets is not None else widget_frontend():
        view = SweepPanel(client, sweep_id)
    else:
        view = text.TextView(lambda: formatting.sweep_table(client.sweep(sweep_id).result_rows()))
    _display(view)
    return view


def show_jobs(client, *, widgets: bool | None = None):
    """Display the live jobs table (an older live table stops updating) and return it."""
    global _live_table
    if not (widgets if widgets is not None else widget_frontend()):
        view = text.TextView(lambda: _jobs_text(client))
        _display(view)
        return view
    table = JobsTable(client)
    with _live_lock:
        old, _live_table = _live_table, table
    if old is not None:
        old.freeze()
    _display(table)
    return table


def _settled(feed, timeout: float = SETTLE_S):
    """Give a new feed's first ticks a moment to read the job folder (text has one shot)."""
    deadline = time.monotonic() + timeout
    launched = feed.job.status not in (JobStatus.PENDING, JobStatus.UPLOADING)
    while launched and getattr(feed, "pending", False) and time.monotonic() < deadline:
        time.sleep(0.05)
    return feed


def _jobs_text(client) -> str:
    return text.table_text(text.table_row(job) for job in client.jobs(limit=50))
