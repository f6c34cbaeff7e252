"""A soak: 50 jobs through the real sshd with ``max_concurrent_jobs=10`` while every
connection is killed every 0.5-2 s. All 50 complete, each ran exactly once, never more than
10 at a time, every result comes back, and every job's log is byte-identical to the host's.
(A few minutes; ``bench/bench_faults.py`` runs the longer fault schedule.)"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from gpu_magic import Client, GPUJobRequest, JobStatus

pytestmark = pytest.mark.timeout(600)

JOBS, SLOTS = 50, 10
CELL = """
import time
events = {events!r}
open(events, "a").write("start {n}\\n")
print("job {n} working", flush=True)
time.sleep({seconds})
for step in range(5):
    print(f"job {n} step {{step}}", flush=True)
result = {n} * {n}
open(events, "a").write("end {n}\\n")
"""


def killer(server, stop: threading.Event, kills: list) -> None:
    while not stop.wait(random.uniform(0.5, 2.0)):
        kills.append(len(server.drop_connections()))


def test_fifty_jobs_under_connection_kills_complete_once_each(ssh_env, tmp_path):
    settings = ssh_env.settings.model_copy(update={"max_concurrent_jobs": SLOTS})
    client = Client(settings)
    client.clusters.add(ssh_env.cluster)
    events = tmp_path / "events"
    stop, kills = threading.Event(), []
    thread = threading.Thread(target=killer, args=(ssh_env.server, stop, kills), daemon=True)
    thread.start()
    try:
        handles = []
        for n in range(JOBS):
            code = CELL.format(events=str(events), n=n, seconds=round(random.uniform(0.2, 1.5), 2))
            request = GPUJobRequest.create(code=code, cluster="ssh", outputs=("result",))
            handles.append(client.submit(request))
        jobs = [client.wait(h.id, 300) for h in handles]
        stop.set()
        thread.join()
        assert [j.status for j in jobs] == [JobStatus.COMPLETED] * JOBS, [
            (j.id, j.status, j.reason) for j in jobs if j.status != JobStatus.COMPLETED
        ]
        lines = events.read_text().splitlines()
        assert sorted(lines) == sorted(
            [f"start {n}" for n in range(JOBS)] + [f"end {n}" for n in range(JOBS)]
        )
        running = peak = 0
        for line in lines:
            running += 1 if line.startswith("start") else -1
            peak = max(peak, running)
        assert peak <= SLOTS
        for n, handle in enumerate(handles):
            assert handle.fetch() == {"result": n * n}
            host_log = Path(handle.job.remote_dir, "output.log").read_bytes()
            assert client.monitor.sync(handle.id).log_bytes() == host_log
        assert len(kills) >= 5, kills  # the faults really happened throughout
        print(f"{JOBS} jobs, {len(kills)} kills ({sum(kills)} sshd processes), peak {peak}")
    finally:
        stop.set()
        client.close()
