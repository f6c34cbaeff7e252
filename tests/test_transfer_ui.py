"""Download progress in the notebook and the panel's Results section, in-process (no browser).

Formatting is tested on snapshots of a real ``TransferProgress`` driven by a fake clock; the bar
on a real ``TransferProgress`` advanced from another thread; the Results section against a fake
results service at our own seam (the ``client.results`` duck type the section reads).
"""

from __future__ import annotations

import _thread
import json
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from test_ui import FakeClient, FakeFeed, in_thread, make_job, wait_for

from gpu_magic.errors import TransferCancelled, TransferError
from gpu_magic.formatting import files_table, size, transfer_line
from gpu_magic.models import JobStatus
from gpu_magic.results.loaders import load
from gpu_magic.results.progress import CANCELLED, TransferProgress, TransferSnapshot
from gpu_magic.ui import JobPanel, run_showing
from gpu_magic.ui.results import ResultsSection, variable_name
from gpu_magic.ui.transfer import TransferBar, TransferPrinter, transfer_html

pytestmark = pytest.mark.timeout(60)
MB = 1_000_000


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -- formatting -------------------------------------------------------------------------------
def test_sizes_use_decimal_units():
    assert [size(n) for n in (0, 999, 1000, 12_345_678, 1.5e9, 2e12)] == [
        "0 B", "999 B", "1.0 kB", "12.3 MB", "1.5 GB", "2.0 TB",
    ]  # fmt: skip
    assert size(None) == "-"


def test_the_line_while_moving_has_bytes_rate_eta_and_files():
    snap = TransferSnapshot(done=12_300_000, total=100 * MB, files_done=3, files=10, rate=85.2e6)
    assert transfer_line(snap) == "12.3 MB / 100.0 MB · 85.2 MB/s · ETA 0:01 · 3/10 files"
    big = TransferSnapshot(done=1.5e9, total=4e9, files_done=0, files=1, rate=250e6)
    assert transfer_line(big) == "1.5 GB / 4.0 GB · 250.0 MB/s · ETA 0:10 · 0/1 file"


def test_rate_and_eta_follow_a_fake_clock_and_a_stall_shows():
    clock = FakeClock()
    progress = TransferProgress(clock=clock)
    assert transfer_line(progress.snapshot()) == "listing the job's files…"  # before begin
    progress.begin(10 * MB, 2)
    assert transfer_line(progress.snapshot()) == "0 B / 10.0 MB · ETA unknown · 0/2 files"
    clock.now = 2.0
    progress.advance(4 * MB)
    assert (
        transfer_line(progress.snapshot()) == "4.0 MB / 10.0 MB · 2.0 MB/s · ETA 0:03 · 0/2 files"
    )
    clock.now = 6.0  # nothing moved for 4 s: the windowed rate drops to zero
    assert (
        transfer_line(progress.snapshot()) == "4.0 MB / 10.0 MB · 0 B/s · ETA unknown · 0/2 files"
    )


def test_the_line_when_done_and_when_failed():
    clock = FakeClock()
    progress = TransferProgress(clock=clock)
    progress.begin(10 * MB, 2)
    progress.advance(10 * MB)
    progress.file_done()
    progress.file_done()
    clock.now = 1.25
    progress.end()
    assert transfer_line(progress.snapshot()) == "done: 10.0 MB in 1.2 s · 2 files"
    clock.now = 125.0
    assert transfer_line(progress.snapshot()).startswith("done: 10.0 MB in 2:05")
    failed = TransferProgress(clock=clock)
    failed.begin(10 * MB, 2)
    failed.advance(4 * MB)
    failed.end(error="connection to gpu1 lost")
    snap = failed.snapshot()
    assert transfer_line(snap) == "failed after 4.0 MB of 10.0 MB: connection to gpu1 lost"
    assert transfer_html(snap).startswith('<span style="color:#c5221f">failed after')
    assert "color" not in transfer_html(progress.snapshot())


def test_files_table_lists_path_kind_size_and_fetched():
    entries = [
        {"path": "outputs/model.npy", "kind": "model", "size": 12 * MB, "fetched": False},
        {"path": "output.log", "kind": "log", "size": 512, "fetched": True},
    ]
    lines = files_table(entries).splitlines()
    assert lines[0].split() == ["path", "kind", "size", "fetched"]
    assert lines[2].split() == ["outputs/model.npy", "model", "12.0", "MB", "no"]
    assert lines[3].split() == ["output.log", "log", "512", "B", "yes"]
    assert files_table([]) == "No collected files."


def test_printer_prints_a_start_line_a_line_every_few_seconds_and_an_end_line():
    clock, lines = FakeClock(), []
    printer = TransferPrinter(lines.append, every=5.0, clock=clock)
    progress = TransferProgress(clock=clock)
    printer.poll(progress)
    assert lines == []  # nothing to say before the collector knows what it moves
    progress.begin(10 * MB, 1)
    for second in range(10):  # polled ten times a second for ten seconds
        for tenth in range(10):
            clock.now = second + tenth / 10
            progress.advance(100_000)
            printer.poll(progress)
    assert len(lines) == 2 and lines[0].startswith("gpu_magic: ") and "/ 10.0 MB" in lines[0]
    progress.file_done()
    progress.end()
    printer.poll(progress)
    printer.poll(progress)
    assert len(lines) == 3 and lines[-1].startswith("gpu_magic: done: 10.0 MB in ")


# -- the bar ----------------------------------------------------------------------------------
def test_bar_changes_only_in_the_apply_never_in_the_download_thread():
    progress = TransferProgress()
    bar = TransferBar(progress, background=False)
    try:
        bar.throttle.flush()
        progress.begin(8 * MB, 2)

        def download():
            for _ in range(3):
                progress.advance(MB)
            progress.file_done()

        in_thread(download)
        assert bar.bar.value == 0 and "3.0 MB" not in bar.label.value  # only marked
        assert bar.throttle.flush()
        assert bar.bar.value == pytest.approx(3 / 8)
        assert bar.label.value.startswith("3.0 MB / 8.0 MB · ") and "1/2 files" in bar.label.value
        in_thread(lambda: (progress.advance(5 * MB), progress.file_done(), progress.end()))
        bar.throttle.flush()
        assert bar.bar.value == 1 and bar.bar.bar_style == "success"
        assert bar.label.value.startswith("done: 8.0 MB in ")
        assert bar._repr_mimebundle_()["text/plain"].startswith("done: 8.0 MB")
    finally:
        bar.close()


def test_bar_shows_a_failed_transfer_in_red():
    progress = TransferProgress()
    bar = TransferBar(progress, background=False)
    progress.begin(4 * MB, 1)
    in_thread(lambda: (progress.advance(MB), progress.end(error="sha256 does not match")))
    bar.throttle.flush()
    assert bar.bar.bar_style == "danger"
    assert "color:#c5221f" in bar.label.value and "sha256 does not match" in bar.label.value
    bar.close()


def test_the_bars_stop_button_cancels_the_download_and_hides_when_it_ended():
    progress = TransferProgress()
    bar = TransferBar(progress, background=False)
    try:
        bar.throttle.flush()
        assert bar.stop.layout.display == ""  # shown while the transfer runs
        progress.begin(4 * MB, 1)
        progress.advance(MB)
        bar.stop.click()
        assert progress.cancelled and bar.stop.disabled and bar.stop.description == "Stopping…"
        with pytest.raises(TransferCancelled, match="stopped by the user"):
            progress.advance(MB)  # the download thread's next chunk ends it
        progress.end(error=str(TransferCancelled(CANCELLED)))
        bar.throttle.flush()
        assert bar.stop.layout.display == "none" and bar.bar.bar_style == "danger"
        assert "failed after 1.0 MB of 4.0 MB: stopped by the user" in bar.label.value
        again = TransferProgress()  # the next fetch: a Stop button of its own
        bar.follow(again)
        bar.throttle.flush()
        assert bar.stop.layout.display == "" and not bar.stop.disabled
        assert bar.stop.description == "Stop"
    finally:
        bar.close()


def test_bar_applies_from_its_own_thread_at_most_every_interval():
    applied: list[int] = []

    class Recording(TransferBar):
        def _apply(self, changes):
            applied.append(threading.get_ident())
            super()._apply(changes)

    progress = TransferProgress()
    bar = Recording(progress, interval=0.05)
    progress.begin(1000 * 1000, 1)
    feeder: list[int] = []

    def download():
        feeder.append(threading.get_ident())
        for _ in range(1000):
            progress.advance(1000)
        progress.file_done()
        progress.end()

    try:
        in_thread(download)
        wait_for(lambda: bar.label.value.startswith("done: 1.0 MB"))
        assert bar.bar.value == 1
        assert 1 <= len(applied) < 50 and feeder[0] not in applied
    finally:
        bar.close()


# -- run_showing (what %gpu_fetch does) -------------------------------------------------------
class Transfers:
    """A results service's ``transfer(job)`` seam: the progress of the current transfer."""

    def __init__(self):
        self.current: TransferProgress | None = None

    def download(self, nbytes: int, error: str | None = None):
        progress = self.current = TransferProgress()
        progress.begin(nbytes, 1)
        progress.advance(nbytes // 2)
        if error:
            progress.end(error=error)
            raise TransferError(error)
        progress.advance(nbytes - nbytes // 2)
        progress.file_done()
        progress.end()
        return "value"


def test_run_showing_displays_one_bar_and_returns_the_value():
    transfers, shown = Transfers(), []
    value = run_showing(
        lambda: transfers.current, lambda: transfers.download(3 * MB), widgets=True,
        display=shown.append,
    )  # fmt: skip
    assert value == "value"
    (bar,) = shown
    assert isinstance(bar, TransferBar) and bar.progress is transfers.current
    assert bar.label.value.startswith("done: 3.0 MB in ")  # flushed before returning
    bar.close()


def test_run_showing_raises_the_error_and_shows_it():
    transfers, shown = Transfers(), []
    with pytest.raises(TransferError, match="connection lost"):
        run_showing(
            lambda: transfers.current, lambda: transfers.download(MB, error="connection lost"),
            widgets=True, display=shown.append,
        )  # fmt: skip
    (bar,) = shown
    assert bar.bar.bar_style == "danger" and "connection lost" in bar.label.value
    bar.close()


def test_run_showing_ignores_an_earlier_finished_transfer():
    transfers, shown, lines = Transfers(), [], []
    transfers.download(MB)  # an earlier fetch, long done
    value = run_showing(lambda: transfers.current, lambda: 7, widgets=True, display=shown.append)
    assert value == 7 and shown == []  # nothing moved: no bar
    run_showing(lambda: transfers.current, lambda: 7, widgets=False, say=lines.append)
    assert lines == []


def test_run_showing_prints_without_widgets():
    transfers, lines = Transfers(), []
    run_showing(
        lambda: transfers.current, lambda: transfers.download(2 * MB), widgets=False,
        say=lines.append,
    )  # fmt: skip
    assert lines[-1].startswith("gpu_magic: done: 2.0 MB in ") and len(lines) <= 2


def test_ctrl_c_stops_the_transfer_shows_where_and_raises_keyboard_interrupt(python_sigint):
    transfers, lines, moved = Transfers(), [], []

    def endless():  # a download that moves 3 MB, then waits (not on a clock) to be cancelled
        progress = transfers.current = TransferProgress()
        progress.begin(1000 * MB, 1)
        try:
            for _ in range(3):
                progress.advance(MB)
            pressed = 0.0
            while True:
                if time.monotonic() - pressed > 5:
                    _thread.interrupt_main()  # the user presses Ctrl-C (again if unheard)
                    pressed = time.monotonic()
                progress.advance(0)  # raises once the Ctrl-C reached the transfer
                time.sleep(0.001)
        except TransferError as exc:
            moved.append(progress.snapshot().done)
            progress.end(error=str(exc))
            raise

    with pytest.raises(KeyboardInterrupt):
        run_showing(lambda: transfers.current, endless, widgets=False, say=lines.append)
    assert len(moved) == 1, lines
    assert moved[0] == 3 * MB  # it stopped where it was, partway
    assert lines[-1].startswith("gpu_magic: failed after ")
    assert lines[-1].endswith(f": {CANCELLED}")


# -- the Results section ----------------------------------------------------------------------
MODEL = np.arange(6.0).reshape(2, 3)


class FakeResults:
    """``client.results`` at our seam: a manifest, transfers with a real ``TransferProgress``,
    and files written under ``root`` when fetched (``hold`` pauses a fetch half-way)."""

    def __init__(self, root: Path, job_id: str = "job1"):
        self.root, self.job_id = root, job_id
        np.save(root / "model.npy", MODEL)
        self.remote = {
            "output.log": b"step 1\n",
            "outputs/y.pkl": b"",
            "outputs/model.npy": (root / "model.npy").read_bytes(),
            "outputs/config.json": json.dumps({"lr": 0.1}).encode(),
            "outputs/plot.png": b"\x89PNG",
        }
        self.errors: dict[str, str] = {}
        self.calls: list[tuple] = []
        self.hold: threading.Event | None = None
        self.halfway = threading.Event()
        self._manifest: dict | None = None
        self._transfer: TransferProgress | None = None

    def collected_files(self, job_id):
        manifest = self._manifest
        return manifest["files"] if manifest is not None and manifest["complete"] else None

    def transfer(self, job_id):
        return self._transfer

    def collect(self, job_id):
        self.calls.append(("collect", job_id))
        eager = ("output.log", "outputs/y.pkl")
        files = [
            {"path": p, "size": len(b), "sha256": "-", "kind": kind_of(p), "fetched": p in eager}
            for p, b in self.remote.items()
        ]
        self._manifest = {"complete": True, "files": files}
        return self._manifest

    def local_path(self, job_id, name):
        self.calls.append(("local_path", job_id, name))
        entry = next(e for e in self._manifest["files"] if e["path"] == name)
        data = self.remote[name]
        progress = self._transfer = TransferProgress()
        progress.begin(len(data), 1)
        progress.advance(len(data) // 2)
        self.halfway.set()
        if self.hold is not None:
            assert self.hold.wait(10)
        progress.advance(len(data) - len(data) // 2)
        path = self.root / "results" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        entry["fetched"] = True
        progress.file_done()
        progress.end()
        return path

    def load(self, job_id, name):
        return load(self.local_path(job_id, name))

    def outputs(self, job_id):
        return {}


def kind_of(path: str) -> str:
    return {"output.log": "log", "outputs/y.pkl": "variable", "outputs/plot.png": "plot"}.get(
        path, "model" if path.endswith(".npy") else "other"
    )


@pytest.fixture
def results(tmp_path):
    return FakeResults(tmp_path)


def ended_client(results, status=JobStatus.COMPLETED):
    client = FakeClient(FakeFeed(make_job(status=status, exit_code=0)))
    client.results = results
    return client


def section_for(client, namespace=None, background=False) -> ResultsSection:
    section = ResultsSection(client, "job1", namespace=namespace, background=background)
    section.refresh(client.monitor.feeds["job1"].job)
    section.flush()
    return section


def test_variable_names_from_file_names():
    assert variable_name("outputs/model.npy") == "model"
    assert variable_name("outputs/ckpt/model-2.best.pt") == "model_2"
    assert variable_name("outputs/1st.json") == "_1st"
    assert variable_name("outputs/class.pkl") == "_class"


def test_the_section_waits_for_the_job_to_end(results):
    client = FakeClient(FakeFeed(make_job()))
    client.results = results
    section = ResultsSection(client, "job1", background=False)
    section.refresh(make_job())  # running
    section.flush()
    assert section.layout.display == "none" and section.note.value == ""
    section.close()


def test_collecting_shows_the_bar_then_the_files(results):
    client = ended_client(results)
    progress = results._transfer = TransferProgress()  # the service's background collection
    progress.begin(4 * MB, 2)
    section = section_for(client)
    try:
        assert section.layout.display is None
        assert section.note.value == "collecting the results…"
        assert section.bar.layout.display is None and section.bar.progress is progress
        in_thread(lambda: progress.advance(MB))
        section.flush()
        assert section.bar.bar.value == pytest.approx(0.25)
        assert section.bar.label.value.startswith("1.0 MB / 4.0 MB")
        in_thread(lambda: (results.collect("job1"), progress.end()))
        section.throttle.mark("pulse")  # what the section's pulse does while it waits
        section.flush()
        assert section.note.value == f"5 files ({size_of(results)}), 2 here"
        assert list(section.rows) == list(results.remote)
        assert section.bar.label.value.startswith("done: ")
    finally:
        section.close()


def size_of(results) -> str:
    return size(sum(len(b) for b in results.remote.values()))


def row_state(row) -> tuple:
    shown = {"fetch": row.fetch.layout.display != "none", "load": row.load.layout.display != "none"}
    return row.here.value.startswith("✓"), shown["fetch"], shown["load"]


def test_rows_have_fetch_on_missing_files_and_load_on_loadable_ones(results):
    results.collect("job1")
    section = section_for(ended_client(results))
    try:
        state = {path: row_state(row) for path, row in section.rows.items()}
        assert state == {
            "output.log": (True, False, False),
            "outputs/y.pkl": (True, False, True),  # a variable
            "outputs/model.npy": (False, True, True),
            "outputs/config.json": (False, True, True),
            "outputs/plot.png": (False, True, False),
        }
        cells = [c.value for c in section.rows["outputs/model.npy"].cells]
        assert cells == [
            "outputs/model.npy",
            "model",
            size(len(results.remote["outputs/model.npy"])),
        ]
        assert "outputs/plot.png" in section.snapshot_text()
    finally:
        section.close()


def test_fetch_button_calls_the_service_then_shows_the_local_path(results):
    results.collect("job1")
    section = section_for(ended_client(results))
    try:
        section.rows["outputs/plot.png"].fetch.click()
        section.flush()
        local = results.root / "results" / "outputs/plot.png"
        assert results.calls[-1] == ("local_path", "job1", "outputs/plot.png")
        assert local.read_bytes() == b"\x89PNG"
        row = section.rows["outputs/plot.png"]
        assert row.here.value == f"✓ <code>{local}</code>"
        assert row.fetch.layout.display == "none"
        assert f"outputs/plot.png → {local}" in section.message.value
        assert section.bar.label.value.startswith("done: 4 B in ")
    finally:
        section.close()


def test_load_button_puts_the_value_into_the_namespace(results):
    results.collect("job1")
    namespace: dict = {}
    section = section_for(ended_client(results), namespace)
    try:
        section.rows["outputs/model.npy"].load.click()
        section.flush()
        np.testing.assert_array_equal(namespace["model"], MODEL)
        assert "loaded outputs/model.npy into the notebook as model (ndarray)" in (
            section.message.value
        )
        section.rows["outputs/config.json"].load.click()
        assert namespace["config"] == {"lr": 0.1}
    finally:
        section.close()


@contextmanager
def fetch_held_halfway(results, path: str = "outputs/model.npy"):
    """``(section, row)`` once a click on ``path``'s Fetch started a download on the section's
    worker that waits halfway until ``results.hold`` is set."""
    results.collect("job1")
    results.hold = threading.Event()
    section = section_for(ended_client(results), background=True)
    try:
        row = section.rows[path]
        row.fetch.click()  # returns at once: the download runs on the section's worker
        assert results.halfway.wait(10)
        yield section, row
    finally:
        results.hold.set()
        section.close()


def test_a_fetch_on_a_worker_thread_shows_its_progress_meanwhile(results):
    with fetch_held_halfway(results) as (section, row):
        wait_for(
            lambda: section.bar.label.value.startswith(
                f"{size(len(results.remote['outputs/model.npy']) // 2)} / "
            )
        )
        assert row.fetch.disabled and "fetching outputs/model.npy" in section.message.value
        results.hold.set()
        wait_for(lambda: row.here.value.startswith("✓ <code>"))
        wait_for(lambda: section.bar.label.value.startswith("done: "))
        wait_for(lambda: not row.load.disabled)  # the worker is done: buttons work again
        assert row.fetch.layout.display == "none"


def test_a_failed_background_collection_shows_the_error_and_retry(results):
    results.errors["job1"] = "cannot reach gpu1: connection refused"
    section = section_for(ended_client(results, JobStatus.FAILED))
    try:
        assert "collecting the results failed: cannot reach gpu1" in section.note.value
        assert "color:#c5221f" in section.note.value
        assert section.retry.layout.display is None and section.retry.description == "Retry"
        section.retry.click()
        section.flush()
        assert results.calls == [("collect", "job1")]
        assert section.retry.layout.display == "none" and len(section.rows) == 5
    finally:
        section.close()


def test_a_stopped_collection_is_not_a_failure_and_resumes(results):
    results.errors["job1"] = CANCELLED  # the bar's Stop ended the background collection
    section = section_for(ended_client(results))
    try:
        assert section.note.value == "collecting the results was stopped; what arrived is kept"
        assert section.retry.layout.display is None and section.retry.description == "Resume"
        section.retry.click()
        section.flush()
        assert results.calls == [("collect", "job1")] and len(section.rows) == 5
    finally:
        section.close()


def test_the_bars_stop_ends_a_fetch_and_the_section_says_so_without_alarm(results):
    with fetch_held_halfway(results) as (section, row):
        wait_for(lambda: section.bar.progress is results._transfer)
        section.bar.stop.click()
        results.hold.set()  # the download's next chunk sees the stop
        wait_for(lambda: "stopped" in section.message.value)
        said = "fetching outputs/model.npy stopped; what arrived is kept"
        assert section.message.value == f"<span>{said}</span>"  # not red
        assert not row.fetch.disabled and row.fetch.layout.display != "none"  # can fetch again


def test_a_failed_retry_says_why(results):
    def broken(job_id):
        raise TransferError("still unreachable")

    results.collect = broken
    section = section_for(ended_client(results))
    try:
        assert section.retry.description == "Collect"  # nothing collected, nothing failed yet
        section.retry.click()
        section.flush()
        assert "still unreachable" in section.note.value and section.retry.description == "Retry"
        assert "collecting failed: still unreachable" in section.message.value
    finally:
        section.close()


def test_the_panel_shows_its_results_section_when_the_job_ends(results):
    feed = FakeFeed(make_job())
    client = FakeClient(feed)
    client.results = results
    results.collect("job1")
    panel = JobPanel(client, "job1", background=False, namespace={})
    try:
        assert panel.results in panel.children
        assert panel.results.layout.display == "none"
        done = make_job(status=JobStatus.COMPLETED, exit_code=0)
        in_thread(lambda: feed.push(job=done))
        panel.throttle.flush()
        panel.results.flush()
        assert panel.results.layout.display is None and len(panel.results.rows) == 5
        assert "--- results ---" in panel.snapshot_text()
    finally:
        panel.close()
    assert panel.results.throttle.closed
