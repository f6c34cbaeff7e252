"""Retries in the job's own folder: a job lost on the host runs again with the same id, its
checkpoints and ``GPU_MAGIC_RESUME_FROM``; ``--retry-on`` widens what is retried; attempts
are bounded and every one is in the history; of two processes that see one failure, only one
starts the next attempt. On the real local host and the real sshd."""

from __future__ import annotations

import os
import signal

import pytest
from harness.clients import local_settings
from harness.procs import wait_until

from gpu_magic import Client, GPUJobRequest, JobStatus
from gpu_magic.errors import InvalidRequestError
from gpu_magic.retries import wanted
from gpu_magic.ui import text

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.processes,
]  # real local jobs or run.sh (harness/tiers.py)

CHECKPOINTING = """
import os, time
attempt = int(os.environ["GPU_MAGIC_ATTEMPT"])
resumed = os.environ.get("GPU_MAGIC_RESUME_FROM")
print("attempt", attempt, "resumed from", resumed, flush=True)
if attempt == 1:
    open(os.path.join(os.environ["GPU_MAGIC_CHECKPOINTS"], "step-5.pt"), "w").write("5")
    print("checkpoint saved", flush=True)
    time.sleep(300)  # the host loses it here
result = (attempt, open(resumed).read())
"""


def test_a_lost_job_runs_again_in_its_folder_and_resumes_from_its_checkpoint(process_env):
    client, cluster = process_env.client, process_env.cluster_name
    request = GPUJobRequest.create(
        code=CHECKPOINTING, cluster=cluster, outputs=("result",), retries=1
    )
    handle = client.submit(request)
    assert wait_until(lambda: "checkpoint saved" in handle.logs(), 60), (
        "attempt 1 did not checkpoint"
    )
    os.killpg(int(handle.job.scheduler_id), signal.SIGKILL)  # run.sh and the cell: lost
    job = client.wait(handle.id, 60)
    assert job.status == JobStatus.COMPLETED and job.attempt == 2, (job.status, job.reason)
    assert handle.fetch() == {"result": (2, "5")}
    log = handle.logs()
    assert "attempt 1 resumed from None" in log
    assert "[gpu_magic] attempt 2: resuming from checkpoints/step-5.pt" in log
    shown = text.status_line(job)
    assert "attempt 2 of 2" in shown, shown
    panel = text.render(text.snapshot(client, client.monitor.sync(job.id)))
    assert "resumed from checkpoints/step-5.pt (step 5)" in panel, panel
    reasons = [t.reason or "" for t in client.history(job.id)]
    assert any(r.startswith("attempt 2 of 2 after lost") for r in reasons), reasons


FLAKY = """
import os
if int(os.environ["GPU_MAGIC_ATTEMPT"]) < {works_at}:
    raise RuntimeError("flaky")
done = True
"""


def test_retry_on_widens_what_is_retried_and_attempts_are_bounded(process_env):
    client, cluster = process_env.client, process_env.cluster_name

    def run(works_at: int, **options):
        code = FLAKY.format(works_at=works_at)
        request = GPUJobRequest.create(code=code, cluster=cluster, **options)
        return client.submit(request).wait(60).job

    assert run(2, retries=3).status == JobStatus.FAILED  # the cell's own error: not by default
    job = run(3, retries=3, retry_on=("user_exception",))
    assert (job.status, job.attempt) == (JobStatus.COMPLETED, 3)
    decisions = [r for r in client.audit.records(job.id) if r["event"] == "retry"]
    assert [r["attempt"] for r in decisions] == [2, 3]  # each decision is in the audit log
    assert all("after user_exception" in r["reason"] for r in decisions)
    job = run(9, retries=1, retry_on=("user_exception",))
    assert (job.status, job.attempt) == (JobStatus.FAILED, 2)
    assert job.failure["kind"] == "user_exception"


def test_of_two_processes_that_saw_a_failure_only_one_retries(tmp_path):
    settings = local_settings(tmp_path)
    first, second = Client(settings), Client(settings)
    try:
        code = "raise RuntimeError('x')"
        request = GPUJobRequest.create(code=code, cluster="local", retries=1)
        request = request.model_copy(update={"retry_on": ("user_exception",)})
        job = first.submit(request).wait(60).job  # attempt 2 failed too: 2 attempts
        failed_first = job.model_copy(update={"attempt": 1, "failure": {"kind": "user_exception"}})
        assert wanted(failed_first)
        nxt = failed_first.model_copy(update={"attempt": 2, "status": JobStatus.QUEUED})
        first.store.update(failed_first)
        assert first.store.advance_attempt(nxt, "attempt 2")
        assert not second.store.advance_attempt(nxt, "attempt 2")
    finally:
        first.close()
        second.close()


def test_a_poll_begun_before_the_next_attempt_does_not_put_the_old_one_back(tmp_path):
    """Two pollers of one job (a panel's monitor and a wait, say): one sees attempt 1 end and
    launches attempt 2 while the other still holds attempt 1. What that one saw is stale and
    is not stored over attempt 2 (it was: the stored attempt went back to 1, and a failure of
    attempt 2 would then have been retried as attempt 2 again, in the same folder)."""
    client = Client(local_settings(tmp_path))
    try:
        code = "import os, signal, time\nif os.environ['GPU_MAGIC_ATTEMPT'] == '1':\n"
        code += "    os.kill(os.getpid(), signal.SIGTERM)\ntime.sleep(300)\n"
        request = GPUJobRequest.create(code=code, cluster="local", retries=1)
        request = request.model_copy(update={"retry_on": ("killed",)})
        handle = client.submit(request)
        stale = client.job(handle.id, refresh=False)  # attempt 1, as its launch stored it
        assert stale.attempt == 1
        assert wait_until(
            lambda: (job := client.job(handle.id)).attempt == 2 and job.started_at is not None,
            60,
        ), "attempt 2 did not start"
        history = client.history(handle.id)
        client.tracker.refresh([stale])  # the other poller, a look late
        job = client.job(handle.id, refresh=False)
        assert (job.attempt, job.status) == (2, JobStatus.RUNNING), (job.attempt, job.status)
        assert client.history(handle.id) == history  # nothing recorded from the stale look
        handle.cancel()
    finally:
        client.close()


def test_an_unknown_retry_kind_is_one_clear_error():
    with pytest.raises(InvalidRequestError, match="unknown failure kind 'oom'"):
        GPUJobRequest.create(code="x", retry_on=("oom",))


TRAINER_FOLDERS = """
import os, time
ckpts = os.environ["GPU_MAGIC_CHECKPOINTS"]
if int(os.environ["GPU_MAGIC_ATTEMPT"]) == 1:
    for step in (500, 1000):  # HF Trainer's layout: one folder per saved step
        os.makedirs(os.path.join(ckpts, f"checkpoint-{step}"))
        open(os.path.join(ckpts, f"checkpoint-{step}", "trainer_state.json"), "w").write("{}")
        time.sleep(0.05)
    raise RuntimeError("preempted, say")
from gpu_magic.remote import checkpoints
resumed = os.path.basename(checkpoints.resume_from()), checkpoints.attempt()
"""


def test_the_newest_checkpoint_folder_is_resumed_from_as_trainers_save_them(process_env):
    client, cluster = process_env.client, process_env.cluster_name
    request = GPUJobRequest.create(
        code=TRAINER_FOLDERS,
        cluster=cluster,
        outputs=("resumed",),
        retries=1,
        retry_on=("user_exception",),
    )
    handle = client.submit(request)
    assert handle.wait(60).status == JobStatus.COMPLETED
    assert handle.fetch() == {"resumed": ("checkpoint-1000", 2)}
