"""Cancelling many jobs at once costs one command per host, on the local host, over the real
sshd and on the real Slurm; every job ends ``cancelled`` and none of its processes lives on."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from harness.spy import CountingTransport

from gpu_magic import GPUJobRequest, JobStatus, jobdir
from gpu_magic.diagnosis import SECTION
from gpu_magic.models import GPUJob
from gpu_magic.schedulers.process import ProcessScheduler
from gpu_magic.transport.local import LocalTransport

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.processes,
]  # real local jobs or run.sh (harness/tiers.py)
HOLD = "import time\nprint('started', flush=True)\nwhile True: time.sleep(0.05)"
CANCELS = ("scancel", "kill -TERM")


def test_cancelling_five_jobs_is_one_command(env):
    """One cancel command, and no diagnosis per job: a cancel needs no evidence from the host."""
    client, cluster = env.client, env.cluster_name
    requests = [GPUJobRequest.create(code=HOLD, cluster=cluster, fetch="manual") for _ in range(5)]
    handles = [client.submit(request) for request in requests]
    for handle in handles:
        env.wait_for_remote_file(f"{handle.job.remote_dir}/output.log", timeout=120)
    before = client.audit.records()[-1]["seq"]
    done = client.cancel_many([h.id for h in handles])
    for handle in handles:
        assert handle.wait(120).job.status == JobStatus.CANCELLED
    commands = [
        r["command"] for r in client.audit.records()
        if r["seq"] > before and r["event"] == "command"
    ]  # fmt: skip
    assert len([c for c in commands if any(word in c for word in CANCELS)]) == 1
    assert not [c for c in commands if SECTION in c]  # the diagnosis command
    assert {j.id for j in done} == {h.id for h in handles}


def test_an_ended_job_among_them_is_left_as_it_is(process_env):
    client, cluster = process_env.client, process_env.cluster_name
    ended = client.submit(GPUJobRequest.create(code="pass", cluster=cluster))
    assert ended.wait(60).job.status == JobStatus.COMPLETED
    running = client.submit(GPUJobRequest.create(code=HOLD, cluster=cluster))
    process_env.wait_for_remote_file(f"{running.job.remote_dir}/output.log", timeout=60)
    client.cancel_many([ended.id, running.id])
    assert ended.job.status == JobStatus.COMPLETED
    assert running.wait(60).job.status == JobStatus.CANCELLED


def test_more_jobs_than_a_command_could_name_are_cancelled_in_one_command(tmp_path):
    """150 jobs: their cancel written out one by one was over the 128 KiB Linux allows one
    argument (``bash -c`` failed with "Argument list too long"); on stdin it has no limit.
    Each "job" is a process group of its own in a folder whose name is hostile."""
    sleepers = [subprocess.Popen(["sleep", "300"], start_new_session=True) for _ in range(150)]
    jobs = []
    for i, sleeper in enumerate(sleepers):
        folder = tmp_path / f"job {i} $(touch pwned) 'x'\t" / "run"
        (folder / jobdir.STATE).mkdir(parents=True)
        request = GPUJobRequest.create(code="pass")
        job = GPUJob(id=f"job{i}", request=request, cluster="local", remote_dir=str(folder))
        jobs.append(job.model_copy(update={"scheduler_id": str(sleeper.pid)}))
    try:
        spy = CountingTransport(LocalTransport())
        ProcessScheduler(spy).cancel_many(jobs)
        assert spy.commands == 1
        assert all(sleeper.poll() == -signal.SIGTERM for sleeper in sleepers)
    finally:
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()
    for job in jobs:
        assert (Path(job.remote_dir) / jobdir.STATE / jobdir.CANCEL_REQUESTED).exists()
    assert not list(Path.cwd().glob("pwned")) and not (Path.home() / "pwned").exists()
