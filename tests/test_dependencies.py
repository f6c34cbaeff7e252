"""Dependencies and scheduled starts (``--after``, ``--after-any``, ``--at``, ``--in``,
``--priority``): held in the store and released by whoever is alive, or held by Slurm itself
(``--dependency``, ``--begin``); a failed dependency cancels the dependent job with the reason,
and it never starts. The start time is tested with an injected clock, not by waiting."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from harness.clients import local_settings

from gpu_magic import Client, GPUJobRequest, JobStatus
from gpu_magic.errors import InvalidRequestError
from gpu_magic.holds import seconds, standing, start_time
from gpu_magic.models import GPUJob
from gpu_magic.submit_options import SubmitOptions

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.processes,
]  # real local jobs or run.sh (harness/tiers.py)
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)


def submit(env, code: str, **fields):
    request = GPUJobRequest.create(code=code, cluster=env.cluster_name, **fields)
    return env.client.submit(request, {}, cwd=env.cwd)


def slurm(env) -> bool:
    return env.client.clusters.get(env.cluster_name).scheduler == "slurm"


# -- what a held job waits for ----------------------------------------------------------------
def test_delays_and_times_are_read_as_people_write_them():
    assert [seconds(d) for d in ("90s", "10m", "2h", "1h30m", "2d", "1.5h")] == [
        90, 600, 7200, 5400, 172800, 5400
    ]  # fmt: skip
    assert start_time(None, "1h30m", NOW) == NOW + timedelta(minutes=90)
    local = datetime(2026, 12, 24, 2, 0).astimezone()
    assert start_time("2026-12-24 02:00", None, NOW) == local.astimezone(timezone.utc)
    assert start_time("2026-12-24T02:00+09:00", None, NOW).hour == 17
    for delay in ("", "2 hours", "h", "-1h", "1x"):
        with pytest.raises(InvalidRequestError, match="expected a delay such as 90s"):
            start_time(None, delay or " ", NOW)
    with pytest.raises(InvalidRequestError, match="expected a date and time"):
        start_time("christmas", None, NOW)
    with pytest.raises(InvalidRequestError, match="give --at or --in, not both"):
        start_time("2026-12-24 02:00", "2h", NOW)


def _job(job_id: str, status: JobStatus) -> GPUJob:
    return GPUJob(id=job_id, request=GPUJobRequest(code=""), cluster="c", remote_dir="/r",
                  status=status)  # fmt: skip


def test_standing_says_ready_waiting_or_doomed():
    ok, bad, busy = (
        _job("a", JobStatus.COMPLETED),
        _job("b", JobStatus.FAILED),
        _job("c", "running"),
    )
    deps = {job.id: job for job in (ok, bad, busy)}
    after = lambda *ids, **more: GPUJobRequest(code="", after=ids, **more)  # noqa: E731
    assert standing(after("a"), deps, NOW).ready
    assert standing(after("a", "c"), deps, NOW).why == "waiting for job c (running)"
    assert standing(after("a", "b"), deps, NOW).doomed == "job b it waits for ended failed"
    assert standing(after("a", "b", after_any=True), deps, NOW).ready
    assert standing(after("gone"), deps, NOW).doomed.endswith("no longer in the job store")
    later = GPUJobRequest(code="", start_at=NOW + timedelta(hours=1))
    assert standing(later, deps, NOW).why.startswith("starts at ")
    assert standing(later, deps, NOW + timedelta(hours=1)).ready


def test_flags_give_the_request_its_dependencies_and_start():
    options = SubmitOptions(after=("a1b2",), start_in="2h", priority=3)
    request = options.request("x = 1", now=NOW)
    assert request.after == ("a1b2",) and not request.after_any
    assert request.start_at == NOW + timedelta(hours=2) and request.priority == 3
    anyhow = SubmitOptions(after_any=("a1b2", "c3d4")).request("x = 1")
    assert anyhow.after == ("a1b2", "c3d4") and anyhow.after_any
    with pytest.raises(InvalidRequestError, match="--after or --after-any, not both"):
        SubmitOptions(after=("a",), after_any=("b",)).request("x = 1")
    assert "after" not in SubmitOptions(after=("a",), gpus=2).to_template()  # one cell's own


# -- for real ---------------------------------------------------------------------------------
def test_after_starts_once_the_dependency_completed(env):
    first = submit(env, "import time\ntime.sleep(1.5)\nx = 1", name="first")
    second = submit(env, "y = 2", after=("first",), outputs=("y",))
    assert second.job.request.after == (first.id,)  # the name, as the id
    if slurm(env):  # Slurm holds it: submitted at once with --dependency
        assert second.job.status == JobStatus.QUEUED and second.job.scheduler_id
    else:  # the store holds it until the first one ended
        assert second.job.held and second.job.status == JobStatus.PENDING
        assert second.job.reason == f"waiting for job {first.id} (running)"
    done = second.wait(120).job
    assert done.status == JobStatus.COMPLETED, done.reason
    assert done.started_at >= first.job.ended_at
    assert env.client.results.outputs(second.id)["y"] == 2


def test_a_failed_dependency_cancels_the_dependent_which_never_starts(env):
    first = submit(env, "import time\ntime.sleep(1.5)\nraise SystemExit(3)")
    second = submit(env, "y = 2", after=(first.id,))
    anyway = submit(env, "z = 3", after=(first.id,), after_any=True)
    cancelled = second.wait(120).job
    assert first.job.status == JobStatus.FAILED
    assert cancelled.status == JobStatus.CANCELLED and cancelled.started_at is None
    if slurm(env):  # Slurm cancelled it (--kill-on-invalid-dep)
        assert "(DependencyNeverSatisfied)" in cancelled.reason, cancelled.reason
    else:
        assert cancelled.reason == f"never started: job {first.id} it waits for ended failed"
    assert anyway.wait(120).job.status == JobStatus.COMPLETED
    with pytest.raises(InvalidRequestError, match=f"job {first.id} ended failed, so this one"):
        submit(env, "y = 2", after=(first.id,))


def test_a_start_time_holds_the_job_until_the_clock_says_so(tmp_path):
    client = Client(local_settings(tmp_path))
    now = [datetime.now(timezone.utc)]
    client.tracker.clock = lambda: now[0]
    request = GPUJobRequest.create(
        code="x = 1", cluster="local", start_at=now[0] + timedelta(hours=1)
    )
    job = client.submit(request, {}).job
    assert job.held and job.reason.startswith("starts at ")
    [(waiting, why)] = client.queue()
    assert waiting.id == job.id and why.endswith("(in 1:00:00)")
    client.tracker.release_held()
    assert client.store.get(job.id).status == JobStatus.PENDING  # not yet
    now[0] += timedelta(hours=1, seconds=1)
    client.tracker.release_held()
    assert client.store.get(job.id).status in (JobStatus.RUNNING, JobStatus.COMPLETED)
    assert client.wait(job.id, 60).status == JobStatus.COMPLETED
    client.close()


def test_on_slurm_a_start_time_is_slurms_begin(slurm_env):
    client = Client(slurm_env.settings)
    client.clusters.add(slurm_env.cluster)
    try:
        start = datetime.now(timezone.utc) + timedelta(seconds=2)
        request = GPUJobRequest.create(code="x = 1", cluster=slurm_env.cluster.name, start_at=start)
        job = client.submit(request, {}).job
        assert job.status == JobStatus.QUEUED and not job.held  # Slurm holds it
        seen = client.job(job.id)
        assert seen.status == JobStatus.QUEUED and "BeginTime" in (seen.reason or ""), seen.reason
        # the begin time passed, the job starts at Slurm's next scheduling pass: the backfill
        # scheduler's (every 30 s) or the main one's (every 60 s), later on a busy machine
        done = client.wait(job.id, 150)
        assert done.status == JobStatus.COMPLETED and done.started_at >= start - timedelta(
            seconds=1
        )
    finally:
        client.close()


def test_a_held_job_is_released_by_another_process_and_cancelled_by_the_user(tmp_path):
    settings = local_settings(tmp_path)
    first_kernel = Client(settings)
    blocker = first_kernel.submit(
        GPUJobRequest.create(code="import time\ntime.sleep(1)", cluster="local"), {}
    )
    held = first_kernel.submit(
        GPUJobRequest.create(code="y = 1", cluster="local", after=(blocker.id,)), {}
    )
    dropped = first_kernel.submit(
        GPUJobRequest.create(code="y = 1", cluster="local", after=(blocker.id,)), {}
    )
    first_kernel.close()  # gone: whoever is alive releases the held job
    second_kernel = Client(settings)
    cancelled = second_kernel.cancel(dropped.id)
    assert (
        cancelled.status == JobStatus.CANCELLED
        and cancelled.reason == "cancelled by user while held"
    )
    assert second_kernel.wait(held.id, 60).status == JobStatus.COMPLETED
    assert second_kernel.store.get(dropped.id).started_at is None
    second_kernel.close()


def test_a_higher_priority_takes_the_next_free_slot_first(tmp_path):
    client = Client(local_settings(tmp_path).model_copy(update={"max_concurrent_jobs": 1}))

    def make(priority: int) -> GPUJobRequest:
        return GPUJobRequest.create(code="import time\ntime.sleep(0.3)", cluster="local",
                                    priority=priority)  # fmt: skip

    blocker = client.submit(make(0), {})
    low, high = client.submit(make(0), {}), client.submit(make(5), {})
    waiting = client.queue()
    assert [job.id for job, _ in waiting] == [high.id, low.id]
    assert waiting[0][1] == "1 of 2 waiting for a free slot on local"
    for handle in (blocker, low, high):
        handle.wait(60)

    def launched(job_id: str) -> datetime:  # run.sh's times are whole seconds: the store's
        return next(t.at for t in client.history(job_id) if t.reason == "a slot is free: launching")

    assert launched(high.id) < launched(low.id)
    client.close()


def test_the_cli_waits_after_a_job_and_shows_the_queue(tmp_path):
    from harness.clients import JobEnv
    from test_cli import cli

    env = JobEnv(Client(local_settings(tmp_path)), "local", tmp_path)
    go = tmp_path / "go"  # the first job runs until the test lets it end
    code = f"import os, time\nwhile not os.path.exists({str(go)!r}):\n    time.sleep(0.05)"
    first = env.client.submit(GPUJobRequest.create(code=code, cluster="local", name="prep"), {})
    script = tmp_path / "train.py"
    script.write_text("print('trained')\n")
    queued = cli(env, "submit", str(script), "--after", "prep", "--in", "1h", "--json")
    assert queued.returncode == 0, queued.stderr
    job_id = json.loads(queued.stdout)["id"]
    shown = {row["id"]: row for row in json.loads(cli(env, "queue", "--json").stdout)}
    assert shown[job_id]["waiting_for"] == f"waiting for job {first.id} (running)"
    go.touch()
    first.wait(60)
    env.client.tracker.release_held()
    later = {row["id"]: row for row in json.loads(cli(env, "queue", "--json").stdout)}
    assert later[job_id]["waiting_for"].startswith("starts at ")
    assert "(in 0:59:" in cli(env, "queue").stdout
    refused = cli(env, "submit", str(script), "--in", "soon")
    assert refused.returncode == 2 and "expected a delay such as 90s" in refused.stderr
    env.client.close()
