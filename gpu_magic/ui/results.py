"""The job panel's "Results" section: collection progress, the collected files, Fetch and Load.

It appears once the job has ended. While the results are collected (on the service's background
thread, or on this section's own after a click) it shows the transfer bar; then one row per
collected file with a Fetch button where the file is not here yet (``--fetch manual``) and a
Load button where ``job.load`` gives a value; a failed collection shows its error and Retry.

Threads: the panel's apply only hands over the latest job (``refresh``). Clicks start the
transfer or load on a worker thread (a download must never block the kernel or run under a
widget lock); workers and the panel only record state and ``mark``; this section's own
``Throttle`` renders that state into widgets. While the results are not collected yet, the
throttle pulses to see the service's collection start and end.
"""

from __future__ import annotations

import html
import keyword
import re
import threading
from pathlib import PurePosixPath

import ipywidgets as widgets

from ..errors import TransferCancelled
from ..formatting import files_table, size
from ..results.loaders import LOADERS
from ..results.plan import LEFT_ON_HOST
from ..results.progress import CANCELLED
from .actions import button, user_namespace
from .throttle import INTERVAL, Throttle
from .transfer import RED, TransferBar

PULSE_S = 0.5  # how often to look for a collection starting or ending meanwhile
MAX_ROWS = 50  # rows beyond these: job.files() lists them (a widget per cell is costly)
WIDTHS = ("320px", "80px", "80px")


def loadable(entry: dict) -> bool:
    return entry["kind"] == "variable" or PurePosixPath(entry["path"]).suffix.lower() in LOADERS


def variable_name(path: str) -> str:
    """``outputs/ckpt/model-2.npy`` -> ``model_2``: the file's stem as a Python identifier."""
    name = re.sub(r"\W", "_", PurePosixPath(path).name.split(".")[0]) or "result"
    if name[0].isdigit() or keyword.iskeyword(name):
        name = f"_{name}"
    return name


def _cell(width: str) -> widgets.HTML:
    return widgets.HTML(layout={"width": width, "flex": "0 0 auto", "overflow": "hidden"})


def _left_note(files: list[dict]) -> str:
    left = sum(1 for f in files if f["kind"] == LEFT_ON_HOST)
    if not left:
        return ""
    return (
        f"; {left} written outside outputs/ and left on the host ({LEFT_ON_HOST}): "
        "Fetch brings one, or save to outputs/ in the cell"
    )


class FileRow(widgets.HBox):
    """One collected file: path, kind, size, here (✓ or its local path), Fetch, Load."""

    def __init__(self, section: ResultsSection, entry: dict):
        self.path = entry["path"]
        self.cells = [_cell(w) for w in WIDTHS]
        self.here = widgets.HTML()
        self.fetch = button("Fetch", "gpu-magic-results-fetch", "download")
        self.load = button("Load", "gpu-magic-results-load", "upload")
        self.fetch.on_click(lambda _b: section.on_fetch(self.path))
        self.load.on_click(lambda _b: section.on_load(self.path))
        super().__init__([*self.cells, self.here, self.fetch, self.load])
        self.add_class("gpu-magic-results-row")

    def show(self, entry: dict, local: str | None, busy: bool) -> None:
        values = (entry["path"], entry["kind"], size(entry["size"]))
        for cell, value in zip(self.cells, values, strict=True):
            cell.value = html.escape(value)
        here = f"✓ <code>{html.escape(local)}</code>" if local else "✓"
        self.here.value = here if entry["fetched"] else ""
        self.fetch.layout.display = "none" if entry["fetched"] else None
        self.load.layout.display = None if loadable(entry) else "none"
        self.fetch.disabled = self.load.disabled = busy


class ResultsSection(widgets.VBox):
    def __init__(
        self,
        client,
        job_id: str,
        *,
        namespace: dict | None = None,
        interval: float = INTERVAL,
        background: bool = True,
    ):
        self.client, self.job_id, self.namespace = client, job_id, namespace
        self.background = background
        self.throttle = Throttle(self._apply, interval=interval, background=background)
        self.lock = self.throttle.widget_lock
        self._state_lock = threading.Lock()  # guards the fields below (any thread)
        self._job = None  # the ended job, once the panel saw it end
        self._busy: str | None = None  # what this section's worker does now
        self._problem: str | None = None  # why this section's last collection failed
        self._said: tuple[str, bool] = ("", False)  # the last message, and whether it's an error
        self._local: dict[str, str] = {}  # path -> local path, for files fetched here
        self.rows: dict[str, FileRow] = {}
        self._build()
        super().__init__(
            [self.title, self.note, self.retry, self.bar, self.files, self.more, self.message]
        )
        self.add_class("gpu-magic-results")
        self.layout.display = "none"  # until the job has ended

    def _build(self) -> None:
        self.title = widgets.HTML("<b>Results</b>")
        self.note = widgets.HTML()
        self.note.add_class("gpu-magic-results-note")
        self.retry = button("Retry", "gpu-magic-results-retry", "refresh")
        self.retry.on_click(lambda _b: self.on_collect())
        self.bar = TransferBar(interval=self.throttle.interval, background=self.background)
        self.files = widgets.VBox()
        self.files.add_class("gpu-magic-results-files")
        self.more = widgets.HTML()
        self.message = widgets.HTML()
        self.message.add_class("gpu-magic-results-message")

    # -- any thread: record, then mark ----------------------------------------------------------
    def refresh(self, job) -> None:
        """(panel apply) The latest job; the section wakes up when it has ended."""
        if not job.is_terminal:
            return
        with self._state_lock:
            first, self._job = self._job is None, job
        self.throttle.mark("job")
        if first:
            self.throttle.pulse(PULSE_S)

    def say(self, message: str, error: bool = False) -> None:
        with self._state_lock:
            self._said = (message, error)
        self.throttle.mark("message")

    # -- clicks (kernel main thread) ------------------------------------------------------------
    def on_collect(self) -> None:
        self._work("collecting", lambda: self.client.results.collect(self.job_id), self._collected)

    def on_fetch(self, path: str) -> None:
        def done(local):
            with self._state_lock:
                self._local[path] = str(local)
            self.say(f"{path} → {local}")

        fetch = self.client.results.local_path
        self._work(f"fetching {path}", lambda: fetch(self.job_id, path), done)

    def on_load(self, path: str) -> None:
        namespace = self.namespace if self.namespace is not None else user_namespace()
        if namespace is None:
            self.say(f"no notebook namespace to load into; use job.load({path!r})", error=True)
            return
        name = variable_name(path)

        def done(value):
            namespace[name] = value
            self.say(f"loaded {path} into the notebook as {name} ({type(value).__name__})")

        self._work(f"loading {path}", lambda: self.client.results.load(self.job_id, path), done)

    def _collected(self, _manifest) -> None:
        with self._state_lock:
            self._problem = None

    def _work(self, doing: str, work, done) -> None:
        """Run ``work`` off the kernel's thread (inline without ``background``), then ``done``."""
        with self._state_lock:
            if self._busy is not None:
                return  # one transfer at a time: the buttons are disabled meanwhile
            self._busy = doing
        self.say(f"{doing}…")
        self.throttle.pulse(PULSE_S)  # to pick up the service's transfer as soon as it starts
        if self.background:
            name = "gpu_magic-results"
            threading.Thread(target=self._worker, args=(doing, work, done), name=name).start()
        else:
            self._worker(doing, work, done)

    def _worker(self, doing: str, work, done) -> None:
        try:
            done(work())
        except Exception as exc:  # shown in the panel: a worker's traceback is invisible
            if isinstance(exc, TransferCancelled):  # the bar's Stop: not a failure
                self.say(f"{doing} stopped; what arrived is kept")
            else:
                self.say(f"{doing} failed: {exc}", error=True)
            if doing == "collecting":
                with self._state_lock:
                    self._problem = str(exc)
        finally:
            with self._state_lock:
                self._busy = None
            self.throttle.mark("done")

    # -- the applier (this section's throttle thread, under its widget lock) --------------------
    def _apply(self, _changes: dict) -> None:
        with self._state_lock:
            job, busy, problem, said = self._job, self._busy, self._problem, self._said
            local = dict(self._local)
        if job is None:
            return
        results = self.client.results
        transfer = results.transfer(self.job_id)
        running = transfer is not None and not transfer.snapshot().finished
        files = results.collected_files(self.job_id)
        error = None if files is not None or running or busy else problem or self._bg_error()
        self.layout.display = None
        self.bar.follow(transfer)
        self.bar.layout.display = None if transfer is not None else "none"
        self._show_note(files, running or busy is not None, error)
        self._show_rows(files or [], local, busy is not None)
        message, is_error = said
        style = f' style="color:{RED}"' if is_error else ""
        self.message.value = f"<span{style}>{html.escape(message)}</span>" if message else ""
        if (files is not None and busy is None) or error:
            self.throttle.pulse(None)  # settled: clicks and the bar's own marks do the rest

    def _bg_error(self) -> str | None:
        return getattr(self.client.results, "errors", {}).get(self.job_id)

    def _show_note(self, files, collecting: bool, error: str | None) -> None:
        self.retry.layout.display = "none"
        if files is not None:
            here = sum(1 for f in files if f["fetched"])
            total = size(sum(f["size"] for f in files))
            self.note.value = f"{len(files)} files ({total}), {here} here{_left_note(files)}"
        elif collecting:
            self.note.value = "collecting the results…"
        elif error and CANCELLED in error:  # the bar's Stop: not a failure
            self.note.value = "collecting the results was stopped; what arrived is kept"
            self.retry.description, self.retry.layout.display = "Resume", None
        elif error:
            self.note.value = (
                f'<span style="color:{RED}">⚠ collecting the results failed: '
                f"{html.escape(error)}</span>"
            )
            self.retry.description, self.retry.layout.display = "Retry", None
        else:
            manual = getattr(self._job.request, "fetch", None) == "manual"
            why = (
                " (--fetch manual: Collect lists them, big files stay on the host)"
                if manual
                else ""
            )
            self.note.value = f"the results are not collected yet{why}"
            self.retry.description, self.retry.layout.display = "Collect", None

    def _show_rows(self, files: list[dict], local: dict[str, str], busy: bool) -> None:
        shown = files[:MAX_ROWS]
        for entry in shown:
            if entry["path"] not in self.rows:
                self.rows[entry["path"]] = FileRow(self, entry)
            self.rows[entry["path"]].show(entry, local.get(entry["path"]), busy)
        children = tuple(self.rows[e["path"]] for e in shown)
        if self.files.children != children:
            self.files.children = children
        rest = len(files) - len(shown)
        self.more.value = f"… and {rest} more: job.files() lists them all" if rest > 0 else ""

    def snapshot_text(self) -> str:
        """The collected files as text (the panel's ``text/plain``), once there are some."""
        with self._state_lock:
            ended = self._job is not None
        files = self.client.results.collected_files(self.job_id) if ended else None
        return "" if files is None else "\n--- results ---\n" + files_table(files)

    def flush(self) -> None:
        """Apply what is pending now, the bar too (tests, and before a cell ends)."""
        self.throttle.flush()
        self.bar.throttle.flush()

    # -- teardown -------------------------------------------------------------------------------
    def close(self) -> None:
        if not hasattr(self, "throttle"):
            return
        self.throttle.close()
        self.bar.close()
        for row in self.rows.values():
            for child in row.children:
                child.close()
            row.close()
        super().close()
