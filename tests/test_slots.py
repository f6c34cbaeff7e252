"""``max_concurrent_jobs``: submissions past the limit are uploaded and wait (``pending``),
start in order as slots free, also after the kernel that submitted them is gone, and never
twice; a waiting job can be cancelled. On the real local host."""

from __future__ import annotations

import pytest
from harness.clients import local_settings
from harness.procs import wait_until

from gpu_magic import Client, GPUJobRequest, JobStatus

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.processes,
]  # real local jobs or run.sh (harness/tiers.py)

GATED = """
import os, time
log = {log!r}
open(log, "a").write("start {n}\\n")
while not os.path.exists({gate!r}):
    time.sleep(0.02)
open(log, "a").write("end {n}\\n")
"""


def gated(tmp_path, n: int) -> GPUJobRequest:
    code = GATED.format(log=str(tmp_path / "events"), gate=str(tmp_path / f"go{n}"), n=n)
    return GPUJobRequest.create(code=code, cluster="local", name=f"gated{n}")


def most_at_once(events: list[str]) -> int:
    running = peak = 0
    for line in events:
        running += 1 if line.startswith("start") else -1
        peak = max(peak, running)
    return peak


@pytest.fixture
def settings(tmp_path):
    return local_settings(tmp_path).model_copy(update={"max_concurrent_jobs": 2})


def test_jobs_past_the_limit_wait_and_start_in_order_as_slots_free(tmp_path, settings):
    client = Client(settings)
    said = []
    try:
        handles = [client.submit(gated(tmp_path, n), say=said.append) for n in range(4)]
        jobs = [h.job for h in handles]
        assert [j.status for j in jobs[2:]] == [JobStatus.PENDING] * 2
        assert all(
            j.ready_at is not None and "waiting for a free slot" in j.reason for j in jobs[2:]
        )
        assert any("waiting for a free slot" in line for line in said)
        for n in range(4):
            (tmp_path / f"go{n}").touch()
            client.wait(handles[n].id, 60)  # each end frees a slot for the next in line
        events = (tmp_path / "events").read_text().splitlines()
        assert [e for e in events if e.startswith("start")] == [f"start {n}" for n in range(4)]
        assert most_at_once(events) <= 2
        assert all(client.job(h.id).status == JobStatus.COMPLETED for h in handles)
    finally:
        client.close()


def test_waiting_jobs_start_after_the_submitting_kernel_is_gone(tmp_path, settings):
    first = Client(settings)
    handles = [first.submit(gated(tmp_path, n)) for n in range(3)]
    first.close()  # the kernel restarts: nothing of it runs any more
    for n in range(3):
        (tmp_path / f"go{n}").touch()
    second = Client(settings)
    try:
        assert second.wait(handles[2].id, 60).status == JobStatus.COMPLETED
        assert all(second.job(h.id).status == JobStatus.COMPLETED for h in handles)
        starts = [e for e in (tmp_path / "events").read_text().splitlines() if "start" in e]
        assert sorted(starts) == ["start 0", "start 1", "start 2"]  # each ran once
    finally:
        second.close()


def test_two_processes_draining_one_queue_launch_each_job_once(tmp_path, settings):
    one, two = Client(settings), Client(settings)
    try:
        handles = [one.submit(gated(tmp_path, n)) for n in range(6)]
        for n in range(6):
            (tmp_path / f"go{n}").touch()
        for n, handle in enumerate(handles):
            (one if n % 2 else two).wait(handle.id, 60)  # both start waiting jobs
        events = (tmp_path / "events").read_text().splitlines()
        assert sorted(e for e in events if "start" in e) == sorted(f"start {n}" for n in range(6))
        assert most_at_once(events) <= 2
    finally:
        one.close()
        two.close()


def test_a_waiting_job_can_be_cancelled_and_never_runs(tmp_path, settings):
    client = Client(settings)
    try:
        handles = [client.submit(gated(tmp_path, n)) for n in range(3)]
        assert client.cancel(handles[2].id).status == JobStatus.CANCELLED
        for n in range(2):
            (tmp_path / f"go{n}").touch()
        for handle in handles[:2]:
            client.wait(handle.id, 60)
        assert wait_until(lambda: client.job(handles[1].id).is_terminal, 30), "second never ended"
        starts = [e for e in (tmp_path / "events").read_text().splitlines() if "start" in e]
        assert "start 2" not in starts
        assert client.job(handles[2].id).status == JobStatus.CANCELLED
    finally:
        client.close()
