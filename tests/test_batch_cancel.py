"""Cancelling many jobs at once costs one command per host, on the local host, over the real
sshd and on the real Slurm; every job ends ``cancelled`` and none of its processes lives on."""

from __future__ import annotations

import pytest

from gpu_magic import GPUJobRequest, JobStatus

pytestmark = pytest.mark.timeout(240)
HOLD = "import time\nprint('started', flush=True)\nwhile True: time.sleep(0.05)"
CANCELS = ("scancel", "kill -TERM")


def test_cancelling_five_jobs_is_one_command(env):
    client, cluster = env.client, env.cluster_name
    handles = [client.submit(GPUJobRequest.create(code=HOLD, cluster=cluster)) for _ in range(5)]
    for handle in handles:
        env.wait_for_remote_file(f"{handle.job.remote_dir}/output.log", timeout=120)
    before = client.audit.records()[-1]["seq"]
    done = client.cancel_many([h.id for h in handles])
    commands = [
        r for r in client.audit.records() if r["seq"] > before and r["event"] == "command"
        and any(word in r["command"] for word in CANCELS)
    ]  # fmt: skip
    assert len(commands) == 1
    assert {j.id for j in done} == {h.id for h in handles}
    for handle in handles:
        assert handle.wait(120).job.status == JobStatus.CANCELLED


def test_an_ended_job_among_them_is_left_as_it_is(process_env):
    client, cluster = process_env.client, process_env.cluster_name
    ended = client.submit(GPUJobRequest.create(code="pass", cluster=cluster))
    assert ended.wait(60).job.status == JobStatus.COMPLETED
    running = client.submit(GPUJobRequest.create(code=HOLD, cluster=cluster))
    process_env.wait_for_remote_file(f"{running.job.remote_dir}/output.log", timeout=60)
    client.cancel_many([ended.id, running.id])
    assert ended.job.status == JobStatus.COMPLETED
    assert running.wait(60).job.status == JobStatus.CANCELLED
