"""Real faults between the client and a host across a network: a partition (every packet
dropped for 30 s), sshd stopped for 20 s, connections killed while a wait polls.

The host is a real sshd in a network namespace of its own (``harness.faults.FarHost``). Each
test asserts what the user relies on: the job's final state is the truth on the host, the log
the client holds is byte-identical to the host's, the cell ran once, and the wait rode the
fault out. How fast the client recovers is measured in ``bench/bench_faults.py``; the bounds
here only tell "reconnects at once" apart from the old behaviour (28 s after a partition).
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from harness.faults import FarHost
from harness.fixtures import make_settings
from harness.procs import wait_until

from gpu_magic import Client, GPUJobRequest, JobStatus
from gpu_magic.errors import ClusterConnectionError

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(240)]  # a real sshd, cut off for real

TICKING = """
import time
for i in range({lines}):
    print(f"line {{i}}", flush=True)
    time.sleep({every})
open({mark!r}, "a").write("ran\\n")
"""


@pytest.fixture
def far(tmp_path, monkeypatch):
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    host = FarHost(tmp_path / "far").start()
    settings = make_settings(tmp_path, ssh_connection_timeout=10)
    settings.known_hosts_path.write_text(host.known_hosts_line() + "\n")
    remote = tmp_path / "remote"
    remote.mkdir()
    client = Client(settings)
    client.clusters.add(host.cluster(remote))
    yield host, client, tmp_path
    host.heal()
    client.close()
    host.stop()


def ticking_job(client, tmp_path, lines: int, every: float):
    mark = tmp_path / "ran.txt"
    code = TICKING.format(lines=lines, every=every, mark=str(mark))
    handle = client.submit(GPUJobRequest.create(code=code, cluster="far"))
    return handle, mark


def host_log(job) -> bytes:
    with open(f"{job.remote_dir}/output.log", "rb") as f:  # the host's file system is ours
        return f.read()


def assert_truth(client, job_id: str, mark) -> None:
    """Completed as on the host, the log as on the host, and run once."""
    job = client.job(job_id)
    assert job.status == JobStatus.COMPLETED, (job.status, job.reason)
    assert client.monitor.sync(job_id).log_bytes() == host_log(job)
    assert mark.read_text() == "ran\n"


class TickClock:
    """When each of the monitor's looks at the host ended, and whether it worked."""

    def __init__(self, monitor):
        self.looks: list[tuple[float, str | None]] = []
        self.changed = threading.Condition()
        monitor.on_tick(self._tick)

    def _tick(self, cluster, seconds, error):
        with self.changed:
            self.looks.append((time.monotonic(), error))
            self.changed.notify_all()

    def first_fresh_after(self, moment: float, timeout: float) -> float:
        with self.changed:
            fresh = lambda: [t for t, e in self.looks if t > moment and e is None]  # noqa: E731
            assert self.changed.wait_for(fresh, timeout), "no fresh look after the fault"
            return fresh()[0]

    def failed_since(self, moment: float) -> bool:
        with self.changed:
            return any(t > moment and e is not None for t, e in self.looks)


def test_a_30s_partition_is_ridden_out_and_the_client_is_fresh_again_at_once(far):
    host, client, tmp_path = far
    handle, mark = ticking_job(client, tmp_path, lines=110, every=0.5)
    clock = TickClock(client.monitor)
    hide = client.monitor.on_screen(handle.id)  # a panel on screen: the monitor looks often
    feed = client.monitor.feed(handle.id)
    try:
        assert wait_until(lambda: b"line 3\n" in feed.log_bytes(), 60), (
            "the job's output did not arrive"
        )
        host.cut()
        cut_at = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            waited = pool.submit(handle.wait, 180)
            assert wait_until(lambda: clock.failed_since(cut_at), 60), "no look failed while cut"
            assert feed.unreachable, "the feed does not say the host is out of reach"
            time.sleep(max(0.0, 30 - (time.monotonic() - cut_at)))  # the fault lasts 30 s
            host.heal()
            healed = time.monotonic()
            recovered = clock.first_fresh_after(healed, 60) - healed
            assert feed.unreachable is None
            assert waited.result(180).status == JobStatus.COMPLETED
        print(f"fresh state {recovered:.2f} s after the link came back")
        assert recovered < 12, f"fresh state only {recovered:.1f}s after the link came back"
        assert_truth(client, handle.id, mark)
    finally:
        hide()


def test_a_wait_rides_out_sshd_stopped_for_20s(far):
    host, client, tmp_path = far
    handle, mark = ticking_job(client, tmp_path, lines=70, every=0.5)
    assert wait_until(lambda: client.job(handle.id).status == JobStatus.RUNNING, 60), (
        "never running"
    )
    with ThreadPoolExecutor(1) as pool:
        waited = pool.submit(handle.wait, 180)
        host.stop_sshd()
        stopped = time.monotonic()
        time.sleep(20)  # the fault itself: sshd is down for 20 s
        assert not waited.done(), "the wait gave up while sshd was down"
        host.start_sshd()
        assert waited.result(180).status == JobStatus.COMPLETED
    assert time.monotonic() - stopped > 20
    assert_truth(client, handle.id, mark)


def test_a_wait_rides_out_connections_killed_while_it_polls(far):
    host, client, tmp_path = far
    handle, mark = ticking_job(client, tmp_path, lines=40, every=0.25)
    kills = 0
    with ThreadPoolExecutor(1) as pool:
        waited = pool.submit(handle.wait, 120)
        while not waited.done():
            kills += bool(host.server.drop_connections())  # mid-poll, wherever the wait is
            time.sleep(random.uniform(0.5, 1.5))
        assert waited.result().status == JobStatus.COMPLETED
    assert kills >= 3
    assert_truth(client, handle.id, mark)


def test_a_wait_gives_up_past_the_reconnect_limit_with_the_last_error(tmp_path, monkeypatch):
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    host = FarHost(tmp_path / "far").start()
    settings = make_settings(tmp_path, ssh_connection_timeout=2, gpu_magic_reconnect_limit=3)
    settings.known_hosts_path.write_text(host.known_hosts_line() + "\n")
    (tmp_path / "remote").mkdir()
    client = Client(settings)
    client.clusters.add(host.cluster(tmp_path / "remote"))
    try:
        handle, _ = ticking_job(client, tmp_path, lines=200, every=0.5)
        host.stop_sshd()
        started = time.monotonic()
        with pytest.raises(ClusterConnectionError, match="refused"):
            handle.wait(120)
        assert 3 <= time.monotonic() - started < 60
        assert client.store.get(handle.id).status == JobStatus.RUNNING  # not guessed
    finally:
        client.close()
        host.stop()
