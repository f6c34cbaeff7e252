"""The upload's progress: ``Client.submit(progress=)`` counts exactly the bytes it sends (what
the host's cache lacks), a stop by the user cancels the job before anything runs, and
``%%gpu_submit``'s ``run_showing(after_s=1)`` shows a bar only for an upload still going after a
second, with the submission's own lines printed in order by the caller's thread."""

from __future__ import annotations

import os
import queue
import signal
import threading
import time

import pytest
from harness.clients import local_settings
from harness.procs import wait_until

from gpu_magic import Client, GPUJobRequest, JobStatus
from gpu_magic.errors import TransferCancelled
from gpu_magic.results.progress import UPLOAD_STOPPED, TransferProgress
from gpu_magic.ui import TransferBar, run_showing

pytestmark = pytest.mark.timeout(120)


MB = 1_000_000


@pytest.fixture
def client(tmp_path):
    client = Client(local_settings(tmp_path))
    yield client
    client.close()


def data_folder(cwd, sizes: list[int]):
    data = cwd / "data"
    data.mkdir(parents=True)
    for i, size in enumerate(sizes):
        (data / f"part{i}.bin").write_bytes(os.urandom(size))
    return data


@pytest.mark.processes
def test_the_progress_counts_what_is_sent_and_a_resubmit_sends_only_what_changed(client, tmp_path):
    data = data_folder(tmp_path / "nb", [3 * MB, 200_000, 10_000])
    request = GPUJobRequest.create(code="pass", cluster="local", files=("data",))
    first = TransferProgress()
    client.submit(request, cwd=tmp_path / "nb", progress=first).wait(60)
    snap = first.snapshot()
    assert snap.finished and snap.error is None and snap.done == snap.total
    assert snap.total > 3_210_000  # the three files, the code, the run script
    (data / "part2.bin").write_bytes(os.urandom(10_000))  # one small file changed
    again = TransferProgress()
    client.submit(request, cwd=tmp_path / "nb", progress=again).wait(60)
    resent = again.snapshot()
    assert resent.finished and resent.done == resent.total
    assert 10_000 <= resent.total < 200_000  # neither unchanged data file went again


class StopAfter(TransferProgress):
    """A user who presses Stop once ``after`` bytes have gone."""

    def __init__(self, after: int):
        super().__init__(stopped=UPLOAD_STOPPED)
        self.after = after

    def advance(self, nbytes: int) -> None:
        super().advance(nbytes)
        if self.snapshot().done >= self.after:
            self.cancel()


@pytest.mark.processes
def test_stopping_the_upload_cancels_the_job_and_leaves_nothing_on_the_host(client, tmp_path):
    data_folder(tmp_path / "nb", [20 * MB])
    ran = tmp_path / "ran"
    request = GPUJobRequest.create(
        code=f"open({str(ran)!r}, 'w').write('ran')", cluster="local", files=("data",)
    )
    with pytest.raises(TransferCancelled, match="nothing was launched"):
        client.submit(request, cwd=tmp_path / "nb", progress=StopAfter(MB))
    [job] = client.jobs()
    assert job.status == JobStatus.CANCELLED and "stopped by the user" in job.reason
    assert not ran.exists()
    base = client.clusters.get("local").base_path
    leftovers = [p.name for p in os.scandir(os.path.expanduser(base)) if job.id in p.name]
    assert leftovers == []  # neither the partial folder nor a job folder


def test_a_quick_upload_shows_no_bar_and_relays_its_lines_in_order():
    upload, lines, said, shown = TransferProgress(), queue.SimpleQueue(), [], []

    def work():
        lines.put("gpu_magic: packaging 1 file (10 B)")
        upload.begin(10, 1)
        upload.advance(10)
        upload.end()
        lines.put("gpu_magic: job x submitted")
        return "handle"

    value = run_showing(
        lambda: upload, work, widgets=True, display=shown.append, say=said.append,
        after_s=1.0, relay=lines, what="upload",
    )  # fmt: skip
    assert value == "handle" and shown == []
    assert said == ["gpu_magic: packaging 1 file (10 B)", "gpu_magic: job x submitted"]


def test_an_upload_past_a_second_gets_a_bar():
    now = [0.0]
    upload, shown = TransferProgress(clock=lambda: now[0]), []
    bar_up, stop_while_moving = threading.Event(), []

    def work():
        upload.begin(10 * MB, 1)
        upload.advance(MB)
        now[0] = 1.5  # the upload is still going after a second and a half
        assert wait_until(lambda: shown, timeout=30)
        shown[0].throttle.flush()
        stop_while_moving.append(shown[0].stop.layout.display)
        bar_up.set()
        upload.advance(9 * MB)
        upload.end()
        return "handle"

    value = run_showing(
        lambda: upload, work, widgets=True, display=shown.append, after_s=1.0, what="upload"
    )
    assert value == "handle" and bar_up.is_set()
    (bar,) = shown
    assert isinstance(bar, TransferBar) and bar.progress is upload
    assert bar.label.value.startswith("done: 10.0 MB")
    assert stop_while_moving == ["none"]  # a busy cell takes no clicks: Ctrl-C is its stop
    bar.close()


def test_ctrl_c_in_the_first_second_still_stops_the_upload(python_sigint):
    upload, cancelled = TransferProgress(stopped=UPLOAD_STOPPED), []

    def work():
        upload.begin(100 * MB, 1)
        signal.raise_signal(signal.SIGINT)  # Ctrl-C before any bar is shown
        try:
            while True:
                upload.advance(MB)
                time.sleep(0.001)
        except TransferCancelled as stop:
            cancelled.append(str(stop))
            raise

    with pytest.raises(KeyboardInterrupt):
        run_showing(lambda: upload, work, widgets=False, say=print, after_s=1.0, what="upload")
    assert cancelled == [UPLOAD_STOPPED]
