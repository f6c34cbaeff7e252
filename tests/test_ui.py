"""The notebook UI in-process (no browser): widgets driven by a fake feed from a thread.

The fake feed and client are fakes at our own seam (the JobFeed / Client duck types the panel
reads); one test drives a real ``JobFeed`` through ``apply(job, FolderState(...))``.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from ipywidgets.widgets import widget as widget_module

from gpu_magic.models import GPUJob, GPUJobRequest, JobStatus
from gpu_magic.monitoring.feed import JobFeed
from gpu_magic.monitoring.gpu_samples import GPUSample
from gpu_magic.parsers import levels
from gpu_magic.schedulers.folder_probe import Chunk, FolderState
from gpu_magic.ui import JobPanel, JobsTable, show_job, show_jobs, text, widget_frontend
from gpu_magic.ui.charts import thin
from gpu_magic.ui.logview import TAIL_LINES, LogView
from gpu_magic.ui.table import COLUMNS
from gpu_magic.ui.throttle import Throttle

pytestmark = pytest.mark.timeout(60)
NOW = datetime.now(timezone.utc)


# -- fakes at our own seam --------------------------------------------------------------------
@dataclass
class Progress:
    step: int
    total: int | None
    fraction: float | None
    rate: float | None
    remaining_s: float | None
    finish_at: datetime | None
    epoch: int | None = None
    epochs: int | None = None
    unit: str = "step"


def make_job(job_id="job1", status=JobStatus.RUNNING, **fields) -> GPUJob:
    request = GPUJobRequest(code="train()", gpus=2, name="train")
    started = datetime.now(timezone.utc) - timedelta(minutes=5)
    return GPUJob(
        id=job_id, request=request, cluster="local", remote_dir="/jobs/" + job_id,
        status=status, started_at=started, **fields,
    )  # fmt: skip


class FakeFeed:
    def __init__(self, job: GPUJob):
        self.job = job
        self.pending = False
        self._lock = threading.Lock()
        self._log = bytearray()
        self._gpu: list[GPUSample] = []
        self._series: dict[str, list] = defaultdict(list)
        self._progress = None
        self._listeners: list = []

    def log_bytes(self):
        with self._lock:
            return bytes(self._log)

    def log_text(self):
        return self.log_bytes().decode()

    def gpu_samples(self):
        with self._lock:
            return list(self._gpu)

    def metric_series(self):
        with self._lock:
            return {name: list(points) for name, points in self._series.items()}

    def secondary_axis(self, name):
        return name in ("lr", "learning_rate")

    def progress(self):
        return self._progress

    def subscribe(self, listener):
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def push(self, *, job=None, log="", gpu=(), metrics=(), progress=None):
        with self._lock:
            self.job = job or self.job
            self._log += log.encode()
            self._gpu += gpu
            for name, x, y in metrics:
                self._series[name].append((x, y))
            self._progress = progress or self._progress
        update = SimpleNamespace(
            job=self.job, log_text=log, log_reset=False, gpu=list(gpu), metric_lines=[],
            metrics=list(metrics), progress=progress,
        )  # fmt: skip
        for listener in list(self._listeners):
            listener(update)


class FakeMonitor:
    def __init__(self):
        self.feeds: dict[str, FakeFeed] = {}
        self.shown: dict[str, int] = defaultdict(int)

    def feed(self, job_id):
        return self.feeds[job_id]

    def on_screen(self, job_id):
        self.shown[job_id] += 1
        return lambda: self.shown.__setitem__(job_id, self.shown[job_id] - 1)


class FakeClient:
    def __init__(self, *feeds):
        self.monitor = FakeMonitor()
        self.monitor.feeds = {f.job.id: f for f in feeds}
        self.store = SimpleNamespace(
            list=lambda limit=None: [f.job for f in self.monitor.feeds.values()][:limit],
            find=lambda key: self.monitor.feeds[key].job,
        )
        self.cancelled: list[str] = []
        self.outputs_value: dict | Exception = {"model": "M", "history": [1, 2]}
        self.results = SimpleNamespace(
            outputs=self.outputs,
            transfer=lambda job_id: None,  # the results section: nothing collected
            collected_files=lambda job_id: None,
            errors={},
        )

    def cancel(self, job_id):
        self.cancelled.append(job_id)
        return make_job(job_id, JobStatus.CANCELLED)

    def outputs(self, job_id):
        if isinstance(self.outputs_value, Exception):
            raise self.outputs_value
        return self.outputs_value

    def jobs(self, limit=None):
        return self.store.list(limit=limit)


def sample(at, index, util, used=40960.0):
    return GPUSample(at, index, f"GPU-{index}", util, used, 81920.0, 60.0, 250.0)


@pytest.fixture
def feed():
    return FakeFeed(make_job())


@pytest.fixture
def client(feed):
    return FakeClient(feed)


@pytest.fixture
def panel(client, feed):
    """A panel whose every flush redraws the chart (its once-a-second pace: tested on its own)."""
    panel = JobPanel(client, "job1", background=False, namespace={}, chart_every=0)
    yield panel
    panel.close()


def in_thread(target):
    thread = threading.Thread(target=target)
    thread.start()
    thread.join()


PROGRESS = Progress(1250, 5000, 0.25, 3.2, 600.0, NOW + timedelta(minutes=10), 2, 8)
LOG = (
    "INFO:root:start\nDEBUG:root:details\nWARNING:root:slow disk\n"
    "INFO:root:step 1 loss 0.9\nERROR:root:oom\n"
)


def feed_everything(feed):
    for step in range(1, 4):
        feed.push(metrics=[("loss", step, 1.0 / step), ("val_loss", step, 2.0 / step)])
    feed.push(metrics=[("lr", 3, 1e-4)], progress=PROGRESS, log=LOG)
    feed.push(gpu=[sample(1000.0, 0, 87.0), sample(1000.0, 1, 55.0, 20480.0)])


# -- the panel --------------------------------------------------------------------------------
def trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def points(fig, name) -> int:
    """How many points trace ``name`` shows; 0 before the chart or the trace exists."""
    found = [t for t in (fig.data if fig is not None else ()) if t.name == name]
    return min(len(found[0].x or ()), len(found[0].y or ())) if found else 0


def test_the_loss_chart_redraws_at_most_once_a_second_and_a_pulse_draws_the_last_points(
    client, feed
):
    now = [100.0]
    panel = JobPanel(client, "job1", background=False, namespace={}, clock=lambda: now[0])
    in_thread(lambda: feed_everything(feed))
    panel.throttle.flush()
    assert trace(panel.loss_chart, "loss").x == (1, 2, 3)
    now[0] += 0.5
    in_thread(lambda: feed.push(metrics=[("loss", 4, 0.2)], progress=PROGRESS))
    panel.throttle.flush()
    assert trace(panel.loss_chart, "loss").x == (1, 2, 3)  # half a second on: not yet
    assert "step 1250/5000" in panel.eta.value  # while the progress line moves on every apply
    now[0] += 0.5
    panel.throttle.mark("pulse")  # the job went quiet: the throttle's pulse comes
    panel.throttle.flush()
    assert trace(panel.loss_chart, "loss").x == (1, 2, 3, 4)
    panel.close()


def test_feed_thread_only_marks_then_apply_updates_progress_and_eta(panel, feed):
    in_thread(lambda: feed_everything(feed))
    assert panel.progress.value == 0  # nothing applied from the feeding thread
    assert panel.throttle.flush()
    assert panel.progress.value == 25
    assert panel.progress.description == "25%"
    assert "step 1250/5000 (25%)" in panel.eta.value
    assert "3.2 steps/s" in panel.eta.value
    assert "ETA 10:00 left" in panel.eta.value
    assert f"finishes {text.finish_clock(PROGRESS.finish_at)}" in panel.eta.value


def test_metric_chart_has_every_series_and_lr_on_the_secondary_axis(panel, feed):
    in_thread(lambda: feed_everything(feed))
    panel.throttle.flush()
    loss = trace(panel.loss_chart, "loss")
    assert loss.x == (1, 2, 3)
    assert loss.y == pytest.approx((1.0, 0.5, 1 / 3))
    assert trace(panel.loss_chart, "val_loss").y == pytest.approx((2.0, 1.0, 2 / 3))
    assert trace(panel.loss_chart, "lr").yaxis == "y2"
    assert loss.yaxis in (None, "y")
    assert panel.loss_chart.layout.yaxis2.visible is True
    in_thread(lambda: feed.push(metrics=[("loss", 4, 0.2)]))
    panel.throttle.flush()
    assert trace(panel.loss_chart, "loss").x == (1, 2, 3, 4)


def test_gpu_chart_traces_and_current_numbers(panel, feed):
    in_thread(lambda: feed_everything(feed))
    in_thread(lambda: feed.push(gpu=[sample(1002.0, 0, 90.0), sample(1002.0, 1, 50.0)]))
    panel.throttle.flush()
    assert trace(panel.gpu_chart, "GPU0").y == (87.0, 90.0)
    assert trace(panel.gpu_chart, "GPU1").y == (55.0, 50.0)
    assert trace(panel.gpu_chart, "GPU1 memory").y == (20.0, 40.0)  # GiB
    assert trace(panel.gpu_chart, "GPU0 memory").yaxis == "y2"
    assert "GPU0 90% · 40/80 GiB" in panel.gpu_now.value
    assert "GPU1 50%" in panel.gpu_now.value


def test_log_view_level_filter_and_search(panel, feed):
    in_thread(lambda: feed.push(log=LOG))
    panel.throttle.flush()
    view = panel.logview
    assert view.text.splitlines() == LOG.splitlines()
    view.level.value = "WARNING"  # what the dropdown does when the user picks it
    assert view.text.splitlines() == ["WARNING:root:slow disk", "ERROR:root:oom"]
    assert "color:#c5221f" in view.tail.value  # errors in red
    view.level.value = None
    view.search.value = r"loss \d"
    assert view.text == "INFO:root:step 1 loss 0.9"
    view.search.value = "(unclosed"
    assert view.text == ""
    assert "invalid" in view.note.value.lower() or "error" in view.note.value.lower()


def test_log_view_keeps_the_last_lines_and_tracebacks_count_as_errors():
    view = LogView(tail_lines=3)
    lines = [f"INFO:root:line {i}" for i in range(10)]
    lines += ["Traceback (most recent call last):", '  File "x.py", line 1', "ValueError: bad"]
    view.set_lines(lines)
    assert view.text.splitlines() == lines[-3:]
    view.level.value = "ERROR"
    assert view.text.splitlines() == lines[-3:]


def log_lines(count: int) -> list[str]:
    """A log with every kind of line the levels know: records, tracebacks, warnings, plain."""
    lines = []
    for i in range(count):
        if i % 97 == 5:
            lines += [
                "Traceback (most recent call last):",
                '  File "train.py", line 3, in <module>',
            ]
            lines += ["    step()", f"RuntimeError: step {i} failed"]
        elif i % 41 == 7:
            lines += [f"train.py:{i}: UserWarning: slow {i}", "  warnings.warn(msg)"]
        elif i % 13 == 0:
            lines.append(f"DEBUG:root:details {i}")
        elif i % 11 == 0:
            lines.append(f"[W{i % 10} socket.cpp:663] retrying {i}")
        else:
            lines.append(f"step {i} loss={1 / (i + 1):.4f}" if i % 2 else f"INFO:root:epoch {i}")
    return lines


FILTERS = [(None, None), ("DEBUG", None), ("WARNING", None), ("ERROR", None), (None, r"step 1\d")]
FILTERS += [("INFO", "epoch|loss"), (None, "^  "), ("WARNING", "retry")]


def test_log_lines_are_classified_once_as_they_arrive(client, feed, monkeypatch):
    calls = []

    class Counting(levels.LevelTracker):  # at our seam: LogView.tracker_class
        def level(self, line):
            calls.append((self, line))
            return super().level(line)

    monkeypatch.setattr(LogView, "tracker_class", Counting)
    panel = JobPanel(client, "job1", background=False, namespace={})
    lines = log_lines(2900)[:3000]
    per_update = [lines[3 * i : 3 * i + 3] for i in range(1000)]  # 1000 updates, 3 lines each
    assert all(per_update)
    try:
        view = panel.logview
        for chunk in per_update:
            feed.push(log="".join(line + "\n" for line in chunk))
            panel.throttle.flush()
        assert view.text.splitlines() == lines[-TAIL_LINES:]
        assert list(view.lines) == lines
        own = [line for tracker, line in calls if tracker is view.tracker]
        assert own == lines  # every line once, in order, none twice
        assert len(calls) == len(own)  # and no other classifying (no unfinished line here)
        for min_level, grep in FILTERS:
            expected = levels.filter_lines(lines, min_level, grep)
            assert view.filter(min_level, grep) == expected, (min_level, grep)
        view.level.value = "WARNING"  # what the dropdown does
        expected = levels.filter_lines(lines, "WARNING")
        assert view.text.splitlines() == [line.text for line in expected[-TAIL_LINES:]]
        assert view.note.value == f"{len(expected)} of {len(lines)} lines"
        view.search.value = "retry"
        assert view.text.splitlines() == [
            line.text for line in levels.filter_lines(lines, "WARNING", "retry")[-TAIL_LINES:]
        ]
        assert len(calls) == len(lines)  # filtering classified nothing again
    finally:
        panel.close()


def test_log_view_splits_lines_as_splitlines_wherever_the_text_is_cut():
    log = "INFO:root:a\r\nWARNING:root:b\rERROR:root:c\n\nplain é\r\n" * 20 + "last, unfinished"
    for cuts in ([], [1], [11, 12, 13], list(range(0, len(log), 7)), list(range(len(log)))):
        view = LogView(tail_lines=1000)
        bounds = [0, *cuts, len(log)]
        for start, end in itertools.pairwise(bounds):
            view.append_text(log[start:end])
        assert view.text.splitlines() == log.splitlines(), cuts
        assert view.filter() == levels.filter_lines(log.splitlines())
        view.append_text("\n")  # the unfinished line ends: now it is kept, and classified
        assert list(view.lines) == log.splitlines()


def test_log_view_shows_the_unfinished_last_line_with_its_level():
    view = LogView(tail_lines=3)
    view.append_text("INFO:root:start\nERROR:root:o")
    assert view.text == "INFO:root:start\nERROR:root:o" and "color:#c5221f" in view.tail.value
    view.level.value = "ERROR"
    assert view.text == "ERROR:root:o" and view.note.value == "1 of 2 lines"
    view.append_text("om\n")
    assert view.text == "ERROR:root:oom"
    assert list(view.lines) == ["INFO:root:start", "ERROR:root:oom"]
    view.level.value = ""
    view.append_text('  File "x.py"')  # the same unfinished text, before and inside a traceback
    assert view.last(1)[0].level is None
    view.append_text('\nTraceback (most recent call last):\n  File "x.py"')
    assert view.last(1)[0].level == "ERROR" and "color:#c5221f" in view.tail.value


def test_log_view_keeps_a_bounded_number_of_lines():
    view = LogView(tail_lines=2, max_lines=100, max_chars=10_000)
    view.append_text("".join(f"INFO:root:line {i}\n" for i in range(1000)))
    assert len(view.lines) == len(view.levels) == 100 and view.lines[-1] == "INFO:root:line 999"
    view.append_text("x" * 300 + "\n")
    assert len(view.lines) == 100
    view.append_text(("y" * 200 + "\n") * 100)  # 20 kB of lines: the character bound
    assert 40 <= len(view.lines) <= 50 and sum(map(len, view.lines)) <= 10_000
    view.append_text("z" * 50_000 + "\nend\n")  # more than it keeps at once: the end only
    assert list(view.lines) == ["end"]


def test_a_replaced_log_starts_the_view_over(panel, feed):
    in_thread(lambda: feed.push(log=LOG))
    panel.throttle.flush()
    update = SimpleNamespace(
        job=feed.job, log_text="INFO:root:again\n", log_reset=True, gpu=[], metric_lines=[],
        metrics=[], progress=None,
    )  # fmt: skip
    panel._on_update(update)  # what a JobFeed sends when the log file was replaced
    panel.throttle.flush()
    assert list(panel.logview.lines) == ["INFO:root:again"]


def test_a_panel_opened_on_an_existing_log_reads_its_tail_once(client):
    job = make_job("real2")
    feed = JobFeed(job)
    client.monitor.feeds["real2"] = feed
    earlier = "".join(f"INFO:root:earlier {i}\n" for i in range(20_000)).encode()  # > 256 KB
    feed.apply(job, FolderState(exists=True, files={"output.log": chunk(earlier + b"caf\xc3")}))
    panel = JobPanel(client, "real2", background=False)  # e.g. after a kernel restart
    try:
        view = panel.logview
        assert view.lines[-1] == "INFO:root:earlier 19999" and view.text.endswith("caf")
        assert len(view.lines) == 5000 and view.lines[0].startswith("INFO:root:earlier ")
        # a tick whose bytes the first tail already had (it landed between subscribing and
        # reading): not shown twice
        stale = SimpleNamespace(
            job=job, log_text="INFO:root:earlier 19999\n", log_reset=False, gpu=[],
            metric_lines=[], metrics=[], progress=None,
        )  # fmt: skip
        panel._on_update(stale)
        more = b"\xa9 ok\nINFO:root:next\n"  # the rest of the "é" cut at the end of the tail
        feed.apply(
            job,
            FolderState(exists=True, files={"output.log": chunk(more, feed.offsets["output.log"])}),
        )
        panel.throttle.flush()
        assert list(view.lines)[-3:] == ["INFO:root:earlier 19999", "café ok", "INFO:root:next"]
    finally:
        panel.close()


def test_cancel_needs_two_clicks(panel, client):
    panel.actions.cancel.click()
    assert client.cancelled == []
    assert panel.actions.cancel.description == "Really cancel?"
    panel.actions.cancel.click()
    assert client.cancelled == ["job1"]
    assert panel.actions.cancel.description == "Cancel"
    assert "cancelled" in panel.actions.message.value


def test_fetch_loads_outputs_into_the_namespace_or_shows_the_error(panel, client):
    panel.actions.fetch.click()
    assert panel.actions.namespace == {"model": "M", "history": [1, 2]}
    assert "loaded history, model" in panel.actions.message.value
    client.outputs_value = RuntimeError("job job1 is still running")
    panel.actions.fetch.click()
    assert "job job1 is still running" in panel.actions.message.value


def test_open_full_log_shows_the_whole_log(panel, feed):
    in_thread(lambda: feed.push(log="".join(f"line {i}\n" for i in range(500))))
    panel.actions.open_log.click()
    assert panel.logview.full_shown
    assert "line 0\n" in panel.logview.full.value and "line 499" in panel.logview.full.value
    assert panel.actions.open_log.description == "Hide full log"
    panel.actions.open_log.click()
    assert not panel.logview.full_shown


def test_on_screen_while_running_hidden_when_the_job_ends(panel, client, feed):
    assert client.monitor.shown["job1"] == 1
    done = make_job(status=JobStatus.COMPLETED, ended_at=NOW, exit_code=0)
    in_thread(lambda: feed.push(job=done))
    panel.throttle.flush()
    assert client.monitor.shown["job1"] == 0
    assert panel.progress.value == 100
    assert panel.progress.bar_style == "success"
    assert panel.actions.cancel.disabled
    assert "completed" in panel.status.value


def test_close_hides_and_unsubscribes(client, feed):
    panel = JobPanel(client, "job1", background=False)
    assert client.monitor.shown["job1"] == 1 and len(feed._listeners) == 1
    panel.close()
    assert client.monitor.shown["job1"] == 0 and feed._listeners == []
    panel.close()  # ipywidgets calls it again when the widget is deleted
    assert client.monitor.shown["job1"] == 0


def test_idle_gpu_warning_after_five_minutes_of_zero(panel, feed):
    idle = [sample(1000.0 + t, 0, 0.0) for t in range(0, 330, 30)]
    in_thread(lambda: feed.push(gpu=idle))
    panel.throttle.flush()
    assert "idle" in panel.idle.value
    in_thread(lambda: feed.push(gpu=[sample(1400.0, 0, 30.0)]))
    panel.throttle.flush()
    assert panel.idle.value == ""


def test_finish_clock_takes_a_datetime_or_unix_seconds():
    assert text.finish_clock(NOW.timestamp(), NOW) == text.finish_clock(NOW, NOW)
    assert text.finish_clock(NOW, NOW) == NOW.astimezone().strftime("%H:%M:%S")
    assert text.finish_clock(NOW + timedelta(days=3), NOW).count("-") == 2  # a date too
    assert text.finish_clock(None) == "-"


def test_idle_needs_the_whole_window_and_a_running_job():
    job = make_job()
    short = [sample(1000.0 + t, 0, 0.0) for t in range(0, 120, 30)]
    assert not text.idle_gpus(short, job, 300)
    long = [sample(1000.0 + t, 0, 0.0) for t in range(0, 330, 30)]
    assert text.idle_gpus(long, job, 300)
    assert not text.idle_gpus(long, make_job(status=JobStatus.COMPLETED), 300)


def test_text_rendering_has_status_progress_eta_metrics_gpu_and_log(panel, feed):
    feed_everything(feed)
    rendered = panel.snapshot_text()
    assert re.match(r"running: job job1 \(train\) · elapsed 5:\d\d", rendered)
    assert "host local · 2 GPUs" in rendered
    assert "step 1250/5000 (25%) · epoch 2/8 · 3.2 steps/s · ETA 10:00 left" in rendered
    assert "loss 0.3333 @ 3" in rendered and "lr 0.0001 @ 3" in rendered
    assert "GPU0 87% · 40/80 GiB · 60°C · 250 W" in rendered
    assert rendered.endswith(LOG.rstrip("\n"))


def test_displayed_text_plain_is_the_snapshot(panel, feed):
    feed_everything(feed)
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith("running: job job1")


def test_css_classes_for_the_browser_tests(panel):
    def classes(widget):
        return set(widget._dom_classes)

    assert "gpu-magic-panel" in classes(panel)
    assert "gpu-magic-progress" in classes(panel.progress)
    assert "gpu-magic-eta" in classes(panel.eta)
    assert "gpu-magic-loss-chart" in classes(panel.loss_chart)
    assert "gpu-magic-gpu-chart" in classes(panel.gpu_chart)
    assert "gpu-magic-log-view" in classes(panel.logview)
    assert "gpu-magic-log-level" in classes(panel.logview.level)
    assert "gpu-magic-log-search" in classes(panel.logview.search)
    assert "gpu-magic-cancel" in classes(panel.actions.cancel)
    assert "gpu-magic-fetch" in classes(panel.actions.fetch)
    assert "gpu-magic-open-log" in classes(panel.actions.open_log)


# -- threads ----------------------------------------------------------------------------------
def test_throttle_coalesces_a_thousand_marks_into_a_few_applies():
    applied, threads = [], set()

    def apply(changes):
        threads.add(threading.get_ident())
        applied.append(changes["value"])

    throttle = Throttle(apply, interval=0.05)
    feeder: list[int] = []

    def feed_marks():
        feeder.append(threading.get_ident())
        for i in range(1000):
            throttle.mark("value", i)
            time.sleep(0.0002)

    started = time.monotonic()
    in_thread(feed_marks)
    while not applied or applied[-1] != 999:
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    throttle.close()
    assert len(applied) <= elapsed / 0.05 + 2  # at most one apply per interval
    assert len(applied) < 100
    assert applied == sorted(applied)  # latest value wins, never goes back
    assert feeder[0] not in threads and threading.get_ident() not in threads
    assert len(threads) == 1


def test_panel_applies_from_its_own_thread_never_the_feeding_one(client, feed):
    applies: list[int] = []

    class Recording(JobPanel):
        def _apply(self, changes):
            applies.append(threading.get_ident())
            super()._apply(changes)

    panel = Recording(client, "job1", interval=0.05)
    applies.clear()  # the first render happens where the panel is made
    feeder: list[int] = []

    def feed_thousand():
        feeder.append(threading.get_ident())
        for i in range(1000):
            progress = Progress(i + 1, 1000, (i + 1) / 1000, 5.0, 10.0, None)
            feed.push(
                log=f"INFO:root:step {i}\n", metrics=[("loss", i, 1 / (i + 1))], progress=progress
            )

    try:
        in_thread(feed_thousand)
        deadline = time.monotonic() + 10
        while panel.progress.value != 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert panel.progress.value == 100
        assert 1 <= len(applies) < 50
        assert feeder[0] not in applies
        assert panel.logview.text.endswith("INFO:root:step 999")
        panel.figures.result(timeout=60)  # the chart thread builds plotly figures on its own time
        wait_for(lambda: points(panel.loss_chart, "loss") == 1000, timeout=10)
    finally:
        panel.close()
    deadline = time.monotonic() + 5
    while panel.throttle.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not panel.throttle.running  # the applier thread ended with the panel


def test_throttle_survives_a_failing_apply():
    calls = []

    def apply(changes):
        calls.append(changes)
        if len(calls) == 1:
            raise RuntimeError("boom")

    throttle = Throttle(apply, interval=0.01)
    throttle.mark("a")
    wait_for(lambda: len(calls) == 1)
    throttle.mark("b")
    wait_for(lambda: len(calls) == 2)
    throttle.close()
    assert calls == [{"a": True}, {"b": True}]


def test_an_apply_without_news_sends_nothing_and_messages_are_json(panel, feed):
    sent = []
    for widget in (panel.loss_chart, panel.gpu_chart):
        widget._send = lambda msg, buffers=None: sent.append(msg)  # the comm's seam
    in_thread(lambda: feed_everything(feed))
    panel.throttle.flush()
    assert sent
    json.dumps(sent)  # datetimes would not survive the kernel's JSON
    sent.clear()
    panel.throttle.mark("metrics")
    panel.throttle.mark("gpu")
    panel.throttle.flush()
    assert sent == []


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_thin_keeps_the_last_point():
    points = [(i, i) for i in range(10_001)]
    kept = thin(points, 2000)
    assert len(kept) <= 2001 and kept[-1] == (10_000, 10_000) and kept[0] == (0, 0)


# -- a real JobFeed ---------------------------------------------------------------------------
def chunk(data: bytes, offset: int = 0) -> Chunk:
    return Chunk(offset, offset + len(data), data)


def test_panel_on_a_real_job_feed(client):
    job = make_job("real1")
    feed = JobFeed(job)
    client.monitor.feeds["real1"] = feed
    panel = JobPanel(client, "real1", background=False)
    log = b"INFO:root:epoch 1\nWARNING:root:lr too high\nINFO:root:epoch 2\n"
    gpu = (
        b"1000.00, 0, GPU-a, 75, 30000, 81920, 61, 240\n1000.00, 1, GPU-b, 0, 100, 81920, 40, 60\n"
    )
    folder = FolderState(exists=True, files={"output.log": chunk(log), "gpu.csv": chunk(gpu)})
    in_thread(lambda: feed.apply(job, folder))
    panel.throttle.flush()
    assert panel.logview.text.splitlines() == log.decode().splitlines()
    assert trace(panel.gpu_chart, "GPU0").y == (75.0,)
    assert "GPU1 0%" in panel.gpu_now.value
    done = make_job("real1", JobStatus.FAILED, ended_at=NOW, exit_code=1, error="ValueError: x")
    in_thread(lambda: feed.apply(done, FolderState(exists=True, files={})))
    panel.throttle.flush()
    assert panel.progress.bar_style == "danger"
    assert "ValueError: x" in panel.status.value
    assert client.monitor.shown["real1"] == 0
    assert "failed: job real1" in panel.snapshot_text()
    panel.close()


# -- the table and the entry points -----------------------------------------------------------
def test_jobs_table_rows_update_and_a_row_click_opens_a_panel(client, feed):
    other = FakeFeed(make_job("job2", JobStatus.COMPLETED, ended_at=NOW, exit_code=0))
    client.monitor.feeds["job2"] = other
    table = JobsTable(client, background=False)
    try:
        assert [row["id"] for row in table.grid.rows] == ["job1", "job2"]
        in_thread(lambda: feed.push(progress=PROGRESS))
        table.throttle.flush()
        job1, job2 = table.grid.rows
        assert set(job1) == {key for key, _ in COLUMNS}
        assert all(isinstance(value, str) for value in job1.values())
        assert (job1["name"], job1["status"], job1["cluster"], job1["gpus"]) == (
            "train", "running", "local", "2",
        )  # fmt: skip
        assert (job1["progress"], job1["eta"], job1["exit"]) == ("25%", "10:00", "-")
        assert job1["runtime"].startswith("5:") and re.match(r"\d{4}-\d\d-\d\d ", job1["submitted"])
        assert (job2["status"], job2["progress"], job2["exit"]) == ("completed", "-", "0")
        # what the browser sends when the user clicks job2's row
        table.grid.set_state({"opened": "job2"})
        first = table.panel
        assert first.job_id == "job2" and table.detail.children == (first,)
        table.grid.set_state({"opened": "job1"})  # another row: its panel instead
        assert table.panel.job_id == "job1" and table.detail.children == (table.panel,)
        assert first.throttle.closed
        table.grid.set_state({"opened": ""})  # the open row clicked again
        assert table.panel is None and table.detail.children == ()
        table.open_job("job2")  # from Python: the browser is told which row is open
        assert table.grid.opened == "job2" and table.panel.job_id == "job2"
        table.open_job("job2")
        assert table.grid.opened == "" and table.panel is None
        rendered = table.snapshot_text()
        assert "progress" in rendered.splitlines()[0] and "25%" in rendered
    finally:
        table.close()


def test_jobs_table_is_a_handful_of_widgets_and_keeps_its_css_classes():
    feeds = [FakeFeed(make_job(f"job{i}", JobStatus.COMPLETED, ended_at=NOW)) for i in range(60)]
    client = FakeClient(*feeds)
    before = set(widget_module._instances)  # every open widget (ipywidgets' own registry)
    table = JobsTable(client, background=False)
    try:
        assert len(table.grid.rows) == 50
        made = set(widget_module._instances) - before
        assert len(made) <= 8, made  # not a widget per cell (~1,500 before)
        assert "gpu-magic-jobs-table" in table._dom_classes
        assert "gpu-magic-job-detail" in table.detail._dom_classes
        assert table.children == (table.grid, table.detail)
        esm = table.grid._esm
        for needle in ('"gpu-magic-job-row"', "dataset.jobId", 'model.set("opened"', "click"):
            assert needle in esm
        assert ["submitted", "submitted"] in table.grid.columns  # drawn from the synced columns
        assert 'model.get("columns")' in esm and "gpu-magic-job-row-open" in table.grid._css
        bundle = table._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle
        assert bundle["text/plain"].startswith("job ") and "job0 " in bundle["text/plain"]
    finally:
        table.close()
    assert table.grid.comm is None and table.detail.comm is None


def test_a_row_whose_panel_cannot_be_made_shows_why(client):
    table = JobsTable(client, background=False)
    try:
        table.grid.set_state({"opened": "gone"})  # e.g. deleted from the store meanwhile
        assert table.panel is None and table.grid.opened == ""
        (problem,) = table.detail.children
        assert "no panel for job gone" in problem.value
        table.grid.set_state({"opened": "job1"})
        assert table.detail.children == (table.panel,) and problem.comm is None
    finally:
        table.close()


def test_show_job_and_show_jobs_fall_back_to_text_outside_a_kernel(client, feed, capsys):
    assert not widget_frontend()
    feed_everything(feed)
    view = show_job(client, "job1")
    assert "ETA 10:00 left" in repr(view)
    assert "running: job job1" in capsys.readouterr().out
    jobs = show_jobs(client)
    assert "job1" in repr(jobs)
    panel = show_job(client, "job1", widgets=True)
    assert isinstance(panel, JobPanel)
    panel.close()


# -- end to end on this machine: real Client, monitor thread and job --------------------------
CHATTY_JOB = """
import time
for i in range(20):
    print(f"INFO:root:step {i}", flush=True)
    time.sleep(0.02)
print("WARNING:root:done soon", flush=True)
"""


def test_the_eta_says_why_a_total_is_unknown_and_what_to_add(panel, feed):
    from gpu_magic.monitoring.telemetry import NO_PROGRESS

    hint = "the log does not say how many steps there are in all: add lightning_callback()"
    feed.push(progress=replace(NO_PROGRESS, hint=hint))  # a rich bar run: nothing shown yet
    panel.throttle.flush()
    assert panel.eta.value == f"ETA unknown ({hint})" and panel.progress.description == "-"
    view = replace(NO_PROGRESS, step=40, epoch=2, rate=3.0, unit="it", hint=hint)
    feed.push(progress=view)
    panel.throttle.flush()
    assert panel.eta.value == f"step 40 · epoch 2 · 3 it/s · ETA unknown ({hint})"
    assert f"progress: step 40 · epoch 2 · 3 it/s · ETA unknown ({hint})" in panel.snapshot_text()


def test_the_panel_shows_at_once_and_its_charts_when_they_are_built(client, feed, monkeypatch):
    """A kernel's first FigureWidget takes seconds: the panel (and so the submit) does not wait
    for the chart thread; the figures take their boxes when built, with the data so far."""
    from gpu_magic.ui import charts

    release, build = threading.Event(), charts._both

    def slow_build():
        assert release.wait(30)
        return build()

    monkeypatch.setattr(charts, "_both", slow_build)
    feed_everything(feed)
    panel = JobPanel(client, "job1", interval=0.05, namespace={})
    try:
        assert (
            panel.loss_chart is None and "chart loading" in panel.chart_boxes[0].children[0].value
        )
        assert panel.progress.description == "25%"  # everything else is there already
        release.set()
        wait_for(lambda: panel.loss_chart is not None, timeout=20)
        assert panel.chart_boxes[0].children == (panel.loss_chart,)
        assert panel.chart_boxes[1].children == (panel.gpu_chart,)
        wait_for(lambda: points(panel.loss_chart, "loss") == 3, timeout=10)
        assert trace(panel.loss_chart, "loss").y == (1.0, 0.5, 1 / 3)
    finally:
        release.set()
        panel.close()


@pytest.mark.processes
def test_panel_follows_a_real_local_job_to_the_end(tmp_path):
    from harness.clients import local_settings

    from gpu_magic import Client

    client = Client(local_settings(tmp_path))
    try:
        handle = client.submit(GPUJobRequest.create(code=CHATTY_JOB, cluster="local"))
        panel = JobPanel(client, handle.id, interval=0.05, namespace={})
        wait_for(lambda: "completed" in panel.status.value, timeout=30)
        wait_for(lambda: panel.logview.text.endswith("WARNING:root:done soon"), timeout=10)
        assert panel.logview.text.splitlines() == [
            *(f"INFO:root:step {i}" for i in range(21 - TAIL_LINES, 20)),
            "WARNING:root:done soon",
        ]  # the newest TAIL_LINES lines
        assert len(panel.logview.lines) == 21  # all of them are kept for the filters
        assert panel.progress.bar_style == "success" and panel.actions.cancel.disabled
        assert "completed: job " + handle.id in panel.snapshot_text()
        panel.actions.fetch.click()
        assert "no outputs" in panel.actions.message.value
        panel.close()
    finally:
        client.close()


# -- in a real kernel: widgets displayed, updates sent from the applier thread ----------------
def kernel_cell(tmp_path) -> str:
    settings = {
        "gpu_magic_config_dir": tmp_path / "config",
        "gpu_magic_data_dir": tmp_path / "data",
        "gpu_cluster_base_path": tmp_path / "jobs",
        "ssh_config_path": tmp_path / "no-ssh-config",
        "known_hosts_path": tmp_path / "no-known-hosts",
    }
    args = ", ".join(f"{k}={str(v)!r}" for k, v in settings.items())
    return f"""
from gpu_magic import Client, Settings, GPUJobRequest
from gpu_magic.ui import show_job, widget_frontend
client = Client(Settings({args}))
handle = client.submit(GPUJobRequest.create(code={CHATTY_JOB!r}, cluster="local"))
panel = show_job(client, handle.id)
print("frontend", widget_frontend())
"""


@pytest.mark.kernel
def test_panel_in_a_real_kernel(tmp_path):
    from harness.kernel import Kernel

    kernel = Kernel({}, str(tmp_path))
    shown, streams, values = [], [], []

    def hook(msg):
        if msg["msg_type"] == "display_data":
            shown.append(msg["content"]["data"])
        elif msg["msg_type"] == "stream":
            streams.append(msg["content"]["text"])
        values.extend(comm_strings(msg))

    try:
        reply = kernel.client.execute_interactive(kernel_cell(tmp_path), output_hook=hook)
        assert reply["content"]["status"] == "ok", reply["content"]
        assert "frontend True" in "".join(streams)
        (data,) = shown
        assert "application/vnd.jupyter.widget-view+json" in data
        assert re.match(r"(pending|uploading|queued|running): job ", data["text/plain"])
        # the log tail and the status badge, sent by the applier thread after the cell ended
        until = ["WARNING:root:done soon", "completed</span>"]
        comm_values(kernel, values, until, timeout=30)
        kernel.client.execute_interactive("panel.close()")
    finally:
        kernel.shutdown()


def comm_strings(msg) -> list[str]:
    if msg["msg_type"] != "comm_msg":
        return []
    state = msg["content"]["data"].get("state", {})
    return [v for v in state.values() if isinstance(v, str)]


def comm_values(kernel, values: list[str], until: list[str], timeout: float) -> None:
    """Collect string widget values the kernel sends until each of ``until`` was in one."""
    deadline = time.monotonic() + timeout
    while not all(any(needle in v for v in values) for needle in until):
        assert time.monotonic() < deadline, f"no update with {until!r}: {values[-5:]}"
        try:
            msg = kernel.client.get_iopub_msg(timeout=1)
        except Exception:  # queue.Empty: nothing this second
            continue
        values += comm_strings(msg)
        if msg["msg_type"] == "stream":  # e.g. a traceback from the applier thread
            assert "Traceback" not in msg["content"]["text"], msg["content"]["text"]


def test_status_line_shows_slurm_queue_position_and_nodes():
    from gpu_magic.models import GPUJob, GPUJobRequest, JobStatus
    from gpu_magic.ui.text import status_line

    base = GPUJob(id="j1", request=GPUJobRequest(code=""), cluster="hpc", remote_dir="/j1")
    queued = base.model_copy(
        update={
            "status": JobStatus.QUEUED,
            "reason": "Slurm job 42 pending (Resources, 2 of 3 pending in gpu)",
        }
    )
    running = base.model_copy(
        update={"status": JobStatus.RUNNING, "reason": "Slurm job 42 running on node[1-2]"}
    )
    assert "Slurm job 42 pending (Resources, 2 of 3 pending in gpu)" in status_line(queued)
    assert "running on node[1-2]" in status_line(running)
