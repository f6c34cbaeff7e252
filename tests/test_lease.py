"""One poller per host across processes that share a job store: the lease, the mirror, takeover.

Two Clients on one store stand for two processes (a kernel and the Jupyter server), each with a
spy on its own transport to the real sshd, so every round trip is counted."""

from __future__ import annotations

import time

import pytest
from harness.procs import wait_until
from harness.spy import CountingTransport

from gpu_magic import Client, GPUJobRequest, JobStatus
from gpu_magic.monitoring.mirror import LiveMirror
from gpu_magic.monitoring.monitor import FAST_MAX, Monitor

pytestmark = pytest.mark.timeout(120)
CHATTY = (
    "import time\nfor i in range(30):\n    print(f'line {i}', flush=True)\n    time.sleep(0.05)"
)
TTL = 1.0
SILENT = "import time\ntime.sleep(60)"


def process(ssh_env, interval: float = TTL):
    """A Client like another process's, and its monitor ticked by hand (at ``interval`` when
    nobody watches); returns (client, spy, monitor)."""
    spy = CountingTransport(ssh_env.transport())
    settings = ssh_env.settings.model_copy(update={"job_monitoring_interval": TTL})
    client = Client(settings, transports={ssh_env.cluster.name: spy})
    mirror = LiveMirror(settings.gpu_magic_data_dir / "live")
    monitor = Monitor(
        client.store, client.hosts, client.tracker, interval=interval, lease=client.lease,
        mirror=mirror, background=False,
    )  # fmt: skip
    return client, spy, monitor


@pytest.fixture
def two(ssh_env):
    Client(ssh_env.settings).clusters.add(ssh_env.cluster)
    first, second = process(ssh_env), process(ssh_env)
    yield first, second
    first[0].close()
    second[0].close()


def test_only_the_lease_holder_polls_and_the_other_reads_its_copy(two, ssh_env):
    (a, spy_a, mon_a), (b, spy_b, mon_b) = two
    job = a.submit(GPUJobRequest.create(code=CHATTY, cluster=ssh_env.cluster.name))
    feed_a, feed_b = mon_a.feed(job.id), mon_b.feed(job.id)
    spy_b.commands = 0
    while not feed_b.done:
        before = spy_a.commands
        mon_a.tick()  # the holder: one round trip for the host
        assert spy_a.commands - before == 1
        mon_b.tick()  # the other: the store and the mirror only
        b.job(job.id)  # a status read there polls nothing either
        assert spy_b.commands == 0
        time.sleep(0.05)
    assert feed_b.job.status == JobStatus.COMPLETED
    host_log = ssh_env.transport().read_file(f"{job.job.remote_dir}/output.log")
    assert feed_a.log_bytes() == feed_b.log_bytes() == host_log
    assert feed_b.log_text().count("line 29\n") == 1


def test_when_the_holder_dies_another_takes_over_within_one_interval(two, ssh_env):
    (_a, _spy_a, mon_a), (b, spy_b, mon_b) = two
    job = b.submit(GPUJobRequest.create(code=CHATTY, cluster=ssh_env.cluster.name))
    mon_a.feed(job.id)
    feed_b = mon_b.feed(job.id)
    died = time.monotonic()  # a takes its lease during the tick: it expires TTL after this
    mon_a.tick()  # a holds the lease, then stops renewing it: its process died
    spy_b.commands = 0

    def b_polls():
        mon_b.tick()
        return spy_b.commands > 0

    assert wait_until(b_polls, timeout=10 * TTL)
    assert time.monotonic() - died >= TTL * 0.9  # not before a's lease expired
    assert wait_until(lambda: (mon_b.tick(), feed_b.done)[1], timeout=60)
    assert feed_b.job.status == JobStatus.COMPLETED
    assert feed_b.log_text().count("line 29\n") == 1


def test_a_closed_client_hands_the_host_over_at_once(two, ssh_env):
    (a, _spy_a, mon_a), (_b, spy_b, mon_b) = two
    job = a.submit(GPUJobRequest.create(code=CHATTY, cluster=ssh_env.cluster.name))
    mon_a.feed(job.id)
    mon_b.feed(job.id)
    mon_a.tick()
    a.close()  # releases its lease
    spy_b.commands = 0
    mon_b.tick()
    assert spy_b.commands == 1


def test_the_copy_is_read_at_the_fast_pace_and_the_host_at_the_slow_one(ssh_env):
    """Nobody watches: the holder polls the host at its slow pace, and the other process (the
    server behind the sidebar) reads the holder's copy at the fast one: no round trip."""
    Client(ssh_env.settings).clusters.add(ssh_env.cluster)
    (a, _spy_a, mon_a), (b, spy_b, mon_b) = process(ssh_env, 30), process(ssh_env, 30)
    try:
        job = a.submit(GPUJobRequest.create(code=SILENT, cluster=ssh_env.cluster.name))
        mon_a.feed(job.id)
        feed_b = mon_b.feed(job.id)
        assert wait_until(
            lambda: (mon_a.tick(), a.store.get(job.id).status)[1] == JobStatus.RUNNING, timeout=30
        )
        spy_b.commands = 0
        mon_b.tick()
        assert feed_b.job.status == JobStatus.RUNNING and spy_b.commands == 0
        assert mon_a.interval() >= 30
        assert mon_b.interval() <= FAST_MAX
    finally:
        a.close()
        b.close()
