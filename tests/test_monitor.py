"""The monitor against real hosts: one round trip per tick, byte-exact tails, completion, lost."""

from __future__ import annotations

import os
import signal
import time

import pytest
from harness.procs import wait_until
from harness.spy import CountingTransport

from gpu_magic import Client, GPUJobRequest, JobStatus
from gpu_magic.monitoring.monitor import FAST_MAX, Monitor

pytestmark = pytest.mark.timeout(90)

CHATTY = """
import sys, time
for i in range(n):
    print(f"line {i} " + "x" * (i % 50), flush=True)
    if i % 7 == 0:
        sys.stdout.buffer.write(b"\\xff\\xfe raw bytes\\r\\n")
        sys.stdout.flush()
    time.sleep(pause)
"""


def submit(env, code, **fields):
    request = GPUJobRequest.create(code=code, cluster=env.cluster_name, **fields)
    return env.client.submit(request, fields.get("namespace") or env.namespace)


def remote_log(env, job) -> bytes:
    return env.transport().read_file(f"{job.job.remote_dir}/output.log")


def test_one_round_trip_per_tick_for_all_jobs_of_a_host(env):
    jobs = [submit(env, "import time\ntime.sleep(30)") for _ in range(8)]
    assert wait_until(lambda: all(j.status == JobStatus.RUNNING for j in jobs), timeout=30)
    spy = CountingTransport(env.transport())
    watcher = Client(env.client.settings, transports={env.cluster_name: spy})  # the same jobs
    interval = watcher.settings.job_monitoring_interval
    monitor = Monitor(
        watcher.store, watcher.hosts, watcher.tracker, interval=interval, background=False
    )
    feeds = [monitor.feed(job.id) for job in jobs]
    for _ in range(3):
        before = spy.commands
        monitor.tick()
        assert spy.commands - before == 1
    assert all(f.job.status == JobStatus.RUNNING for f in feeds)
    assert all(f.offsets["output.log"] == 0 for f in feeds)  # silent jobs: nothing to tail
    watcher.close()


def test_log_is_byte_exact_across_a_forced_reconnect(env, request):
    env.namespace.update(n=120, pause=0.01)
    job = submit(env, CHATTY, inputs=("n", "pause"))
    feed = env.client.monitor.feed(job.id)
    env.client.monitor.on_screen(job.id)
    if env.cluster_name != "local":
        ssh_env = request.getfixturevalue("slurm_env" if env.cluster_name == "slurm" else "ssh_env")
        assert wait_until(lambda: len(feed.log_bytes()) > 500, timeout=30)
        ssh_env.server.kill_connections()  # the kernel's SSH connection drops mid-stream
    assert wait_until(lambda: feed.done, timeout=60)
    assert feed.job.status == JobStatus.COMPLETED
    assert feed.log_bytes() == remote_log(env, job)
    assert feed.log_text().count("line 119 ") == 1


def test_updates_reach_subscribers_and_completion_is_detected(env):
    env.namespace.update(n=20, pause=0.05)
    job = submit(env, CHATTY, inputs=("n", "pause"))
    feed = env.client.monitor.feed(job.id)
    seen_text, states = [], []
    feed.subscribe(lambda u: (seen_text.append(u.log_text), states.append(u.job.status)))
    env.client.monitor.on_screen(job.id)
    assert wait_until(lambda: feed.done, timeout=60)
    assert "".join(seen_text).encode("utf-8", "replace").count(b"line ") == 20
    assert states[-1] == JobStatus.COMPLETED


def test_a_vanished_process_becomes_lost(env):
    if env.cluster_name == "slurm":
        pytest.skip("Slurm sees its batch step die (FAILED, signal 9): test_slurm.py checks that")
    job = submit(env, "import time\ntime.sleep(60)")
    pgid = int(job.job.scheduler_id)
    feed = env.client.monitor.feed(job.id)
    os.killpg(pgid, signal.SIGKILL)  # no trap runs: no exit code is ever written
    assert wait_until(lambda: feed.job.status == JobStatus.LOST, timeout=60)
    assert "vanished without writing an exit code" in env.client.store.get(job.id).reason


def test_pace_is_fast_on_screen_and_the_thread_stops_when_nothing_is_active(env):
    env.client.settings.job_monitoring_interval = 2.0  # the slow pace, shortened for the test
    job = submit(env, "import time\ntime.sleep(2)")
    monitor = env.client.monitor
    monitor.feed(job.id)
    assert wait_until(lambda: not monitor._feeds[job.id].pending, timeout=10)
    assert monitor.interval() >= 2.0
    hide = monitor.on_screen(job.id)
    assert monitor.interval() <= FAST_MAX
    hide()
    monitor._wake.set()
    assert wait_until(lambda: monitor._feeds[job.id].done, timeout=60)
    assert wait_until(lambda: monitor._thread is None, timeout=10)
    started = time.monotonic()
    assert monitor.feed(job.id).done and time.monotonic() - started < 5


def test_a_feed_added_as_the_thread_stops_is_still_followed(env):
    """No lost wake-up: the thread decides to stop and clears itself in one locked step."""
    env.client.settings.job_monitoring_interval = 0.5  # the slow pace, shortened for the test
    first = submit(env, "pass")
    monitor = env.client.monitor
    assert wait_until(lambda: monitor.feed(first.id).done, timeout=30)
    assert wait_until(lambda: monitor._thread is None, timeout=10)
    second = submit(env, "print('still watched')")
    feed = monitor.feed(second.id)  # the thread had stopped: feed() starts a new one
    assert wait_until(lambda: feed.done, timeout=60)
    assert "still watched" in feed.log_text()
