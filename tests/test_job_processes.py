"""Every process of a job is the job's: a child started in a new session (``setsid``,
``start_new_session=True``) is stopped by ``--timeout`` and by a cancel; a cell whose run.sh
was killed is still ``running`` (and can be cancelled), and ends as the cell did; a pid that
now belongs to another process (after a reboot) is not taken for the job.

On the real local host and the real sshd (the process scheduler on both).
"""

from __future__ import annotations

import os
import signal

import pytest
from harness.procs import alive, wait_until

from gpu_magic import GPUJobRequest, JobStatus
from gpu_magic.schedulers.folder_probe import probe
from gpu_magic.schedulers.process import decide
from gpu_magic.transport import LocalTransport

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.processes,
]  # real local jobs or run.sh (harness/tiers.py)

ESCAPEE = """
import subprocess, time
child = subprocess.Popen(["sleep", "300"], start_new_session=True)
open({pidfile!r}, "w").write(str(child.pid))
print("started", child.pid, flush=True)
time.sleep(300)
"""

LONG_CELL = """
import time
print("working", flush=True)
while not __import__("os").path.exists({go!r}):
    time.sleep(0.05)
result = 42
print("done", flush=True)
"""


def escapee(client, cluster, tmp_path, **options):
    pidfile = tmp_path / "child.pid"
    code = ESCAPEE.format(pidfile=str(pidfile))
    handle = client.submit(GPUJobRequest.create(code=code, cluster=cluster, **options))
    pid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text(), 60) or 0)
    assert pid, "no child"
    assert alive(pid) and os.getsid(pid) != os.getsid(int(handle.job.scheduler_id))
    return handle, pid


def test_a_setsid_child_is_stopped_by_the_timeout(process_env, tmp_path):
    client, cluster = process_env.client, process_env.cluster_name
    handle, child = escapee(client, cluster, tmp_path, timeout=3)
    job = handle.wait(60).job
    assert job.status == JobStatus.TIMEOUT
    assert wait_until(lambda: not alive(child), 10), f"the setsid child {child} outlived --timeout"


def test_a_setsid_child_is_stopped_by_a_cancel(process_env, tmp_path):
    client, cluster = process_env.client, process_env.cluster_name
    handle, child = escapee(client, cluster, tmp_path)
    job = client.cancel(handle.id)
    assert client.wait(job.id, 60).status == JobStatus.CANCELLED
    assert wait_until(lambda: not alive(child), 10), f"the setsid child {child} outlived the cancel"


def kill_run_sh(job) -> None:
    os.kill(int(job.scheduler_id), signal.SIGKILL)
    assert wait_until(lambda: not alive(int(job.scheduler_id)), 10), "run.sh survived SIGKILL"


def test_a_cell_whose_run_sh_was_killed_is_running_and_can_be_cancelled(process_env, tmp_path):
    client, cluster = process_env.client, process_env.cluster_name
    code = LONG_CELL.format(go=str(tmp_path / "never"))
    handle = client.submit(GPUJobRequest.create(code=code, cluster=cluster))
    assert wait_until(lambda: "working" in handle.logs(), 60), "the cell did not start"
    kill_run_sh(handle.job)
    job = client.job(handle.id)
    assert job.status == JobStatus.RUNNING, (job.status, job.reason)
    assert "run.sh" in job.reason and "still run" in job.reason
    assert client.wait(client.cancel(job.id).id, 60).status == JobStatus.CANCELLED
    assert client.job(job.id).status == JobStatus.CANCELLED
    assert wait_until(lambda: "still run" not in (client.job(job.id).reason or ""), 10), (
        "cancel missed"
    )


def test_a_cell_whose_run_sh_was_killed_ends_as_the_cell_did(process_env, tmp_path):
    client, cluster = process_env.client, process_env.cluster_name
    go = tmp_path / "go"
    code = LONG_CELL.format(go=str(go))
    request = GPUJobRequest.create(code=code, cluster=cluster, outputs=("result",))
    handle = client.submit(request)
    assert wait_until(lambda: "working" in handle.logs(), 60), "the cell did not start"
    kill_run_sh(handle.job)
    go.touch()
    job = client.wait(handle.id, 60)
    assert job.status == JobStatus.COMPLETED and job.exit_code == 0, job.reason
    assert "killed" in job.reason
    assert handle.fetch() == {"result": 42}


def test_a_reused_pid_is_not_the_job(tmp_path):
    """After a reboot the recorded pid may be another process's: its start time tells."""
    folder = tmp_path / "job"
    (folder / "state").mkdir(parents=True)
    (folder / "state" / "pid").write_text(f"{os.getpid()}\n")  # a live process, not the job's
    transport = LocalTransport()
    (seen,) = probe(transport, "python3", {str(folder): {}})[1].values()
    assert seen.alive  # no record of its start: the pid is trusted, as before
    (folder / "state" / "pid_start").write_text("another-boot 12345\n")
    (seen,) = probe(transport, "python3", {str(folder): {}})[1].values()
    assert not seen.alive and not seen.stragglers
    assert decide(seen).status == JobStatus.LOST
