"""The cleanup policy: pure rules, then dry runs and real runs against real hosts."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from harness.clients import local_settings
from harness.fixtures import make_settings
from harness.spy import DelegatingTransport

from gpu_magic import Client, GPUJobRequest, JobStatus
from gpu_magic.clusters import CleanupRules, make_cluster
from gpu_magic.errors import InvalidRequestError
from gpu_magic.housekeeping import cleanup
from gpu_magic.models import GPUJob
from gpu_magic.results import deletion, policy
from gpu_magic.transport.base import CommandResult, quote_argv

pytestmark = pytest.mark.timeout(120)

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
GB = 10**9


def item(n: int, days_ago: float, size: int = GB, **kw) -> policy.Item:
    when = NOW - timedelta(days=days_ago)
    return policy.Item(f"job{n}", when, when, size, **kw)


def ids(decisions) -> list[str]:
    return [d.job_id for d in decisions]


# -- pure rules ---------------------------------------------------------------------------------


def test_keep_last_keeps_the_newest_finished_jobs():
    items = [item(1, 5), item(2, 4), item(3, 3, active=True), item(4, 2), item(5, 1)]
    verdict = policy.decide(items, CleanupRules(keep_last=2), NOW, guard=False)
    assert ids(verdict.delete) == ["job2", "job1"]  # job3 is active: neither kept nor counted
    assert {d.rule for d in verdict.delete} == {"keep-last 2"}


def test_older_than_counts_from_the_end_of_the_job():
    ended_early = policy.Item("old", NOW - timedelta(days=30), NOW - timedelta(days=9), 1)
    still_fresh = policy.Item("new", NOW - timedelta(days=30), NOW - timedelta(days=1), 1)
    verdict = policy.decide([ended_early, still_fresh], CleanupRules(older_than_days=7), NOW,
                            guard=False)  # fmt: skip
    assert ids(verdict.delete) == ["old"] and verdict.delete[0].rule == "older-than 7 days"


def test_quota_deletes_the_oldest_until_under_it():
    items = [item(1, 4, 3 * GB), item(2, 3, 2 * GB), item(3, 2, 2 * GB), item(4, 1, 1 * GB)]
    verdict = policy.decide(items, CleanupRules(quota_gb=4), NOW, guard=False)
    assert ids(verdict.delete) == ["job1", "job2"]  # 8 -> 5 -> 3 GB
    assert verdict.delete[0].rule == "quota 4 GB"


def test_quota_counts_active_jobs_but_never_deletes_them():
    items = [item(1, 3, 5 * GB, active=True), item(2, 2, GB), item(3, 1, GB)]
    verdict = policy.decide(items, CleanupRules(quota_gb=1), NOW, guard=False)
    assert ids(verdict.delete) == ["job2", "job3"]  # still over quota: only job1 is left


def test_unfetched_jobs_are_kept_unless_forced_and_the_quota_moves_on():
    items = [item(1, 3, 2 * GB, fetched=False), item(2, 2, 2 * GB), item(3, 1, 2 * GB)]
    rules = CleanupRules(quota_gb=4)
    kept = policy.decide(items, rules, NOW, guard=True)
    assert ids(kept.unfetched) == ["job1"] and ids(kept.delete) == ["job2"]
    forced = policy.decide(items, rules, NOW, guard=True, force=True)
    assert ids(forced.delete) == ["job1"] and forced.delete[0].forced
    local = policy.decide(items, rules, NOW, guard=False)  # local results: no such guard
    assert ids(local.delete) == ["job1"] and not local.delete[0].forced


def test_rules_combine_and_each_job_gets_the_first_rule_that_took_it():
    items = [item(1, 20), item(2, 10), item(3, 1)]
    verdict = policy.decide(items, CleanupRules(keep_last=2, older_than_days=5), NOW, guard=False)
    assert [(d.job_id, d.rule) for d in verdict.delete] == [
        ("job2", "older-than 5 days"),
        ("job1", "keep-last 2"),
    ]


def test_no_rules_delete_nothing():
    assert policy.decide([item(1, 100)], CleanupRules(), NOW, guard=False).delete == []


def test_archive_is_due_for_collected_finished_jobs_past_the_age():
    items = [item(1, 10), item(2, 10, active=True), item(3, 10, fetched=False), item(4, 1)]
    assert policy.archive_due(items, 7, NOW) == ["job1"]
    assert policy.archive_due(items, None, NOW) == []


def job_at(folder: str, job_id: str = "20260101-000000-abcdef") -> GPUJob:
    return GPUJob(id=job_id, request=GPUJobRequest.create(code="pass"), cluster="c",
                  remote_dir=folder)  # fmt: skip


@pytest.mark.parametrize(
    "folder",
    [
        "/base/20260101-000000-abcdef/..",
        "/base/../etc/20260101-000000-abcdef",
        "/base",
        "/base/",
        "/",
        "/elsewhere/20260101-000000-abcdef",
        "/base-evil/20260101-000000-abcdef",
        "/base/sub/20260101-000000-abcdef",
        "base/20260101-000000-abcdef",
        "//base/20260101-000000-abcdef",
    ],
)
def test_the_path_check_refuses_anything_but_a_job_folder_under_the_base(folder):
    with pytest.raises(InvalidRequestError, match="refusing to delete"):
        deletion.job_folder("/base", job_at(folder))


def test_the_path_check_refuses_a_root_or_relative_base_and_odd_ids():
    with pytest.raises(InvalidRequestError, match="base path"):
        deletion.job_folder("/", job_at("/x"))
    with pytest.raises(InvalidRequestError, match="base path"):
        deletion.job_folder("~/jobs", job_at("~/jobs/20260101-000000-abcdef"))
    with pytest.raises(InvalidRequestError, match="job id"):
        deletion.job_folder("/base", job_at("/base/..", job_id=".."))
    ok = job_at("/base/20260101-000000-abcdef/")
    assert deletion.job_folder("/base/", ok) == "/base/20260101-000000-abcdef"


# -- real runs ----------------------------------------------------------------------------------

WRITE = """
import os
os.makedirs('../outputs', exist_ok=True)
open('../outputs/blob.bin', 'wb').write(os.urandom(50_000))
print('done', flush=True)
"""


def submit(env, code: str = WRITE, **fields):
    request = GPUJobRequest.create(code=code, cluster=env.cluster_name, **fields)
    job = env.client.submit(request, {}, cwd=env.cwd)
    assert job.wait(timeout=60).status == JobStatus.COMPLETED, job.logs()
    return job


def exists(env, folder: str) -> bool:
    return env.transport().run(quote_argv("test", "-d", folder)).ok


def test_dry_run_deletes_nothing_and_the_real_run_exactly_what_it_listed(env):
    jobs = [submit(env) for _ in range(3)]
    for job in jobs:
        job.files()  # collected: the host copies are no longer needed
    folders = [job.job.remote_dir for job in jobs]
    request = cleanup.Request(sides=(cleanup.REMOTE,), rules=CleanupRules(keep_last=1))
    dry = env.client.cleanup(request, dry_run=True)
    listed = {(a.job.id, a.path, a.rule) for a in dry.of(cleanup.DELETE)}
    assert listed == {(j.id, f, "keep-last 1") for j, f in zip(jobs[:2], folders, strict=False)}
    assert all(exists(env, f) for f in folders) and env.client.store.deletions() == []
    real = env.client.cleanup(request)
    assert {(a.job.id, a.path, a.rule) for a in real.done} == listed
    assert [exists(env, f) for f in folders] == [False, False, True]
    history = env.client.store.deletions()
    assert {(d.job_id, d.location, d.path, d.rule, d.forced) for d in history} == {
        (j.id, "remote", f, "keep-last 1", False) for j, f in zip(jobs[:2], folders, strict=False)
    }
    assert {d.bytes for d in history} == {a.size for a in dry.of(cleanup.DELETE)}
    assert [j.remote_deleted for j in jobs] == [True, True, False]
    assert "done" in jobs[0].logs()  # from the local copy
    assert jobs[0].path("blob.bin").stat().st_size == 50_000


def test_unfetched_results_stay_on_the_host_unless_forced(env):
    job = submit(env, fetch="manual")
    assert not {f["path"]: f for f in job.files()}["outputs/blob.bin"]["fetched"]
    folder = job.job.remote_dir
    request = cleanup.Request(sides=(cleanup.REMOTE,), rules=CleanupRules(keep_last=0))
    dry = env.client.cleanup(request, dry_run=True)
    assert [(a.kind, a.job.id) for a in dry.actions] == [(cleanup.KEEP, job.id)]
    kept = env.client.cleanup(request)
    assert kept.done == [] and exists(env, folder) and env.client.store.deletions() == []
    forced = env.client.cleanup(cleanup.Request(**{**vars(request), "force": True}))
    assert [(a.job.id, a.forced) for a in forced.done] == [(job.id, True)]
    assert not exists(env, folder)
    [deletion] = env.client.store.deletions()
    assert deletion.forced and deletion.location == "remote" and deletion.job_id == job.id


def test_an_active_job_is_never_deleted(env):
    done = submit(env)
    done.files()
    request = GPUJobRequest.create(code="import time\ntime.sleep(60)", cluster=env.cluster_name)
    running = env.client.submit(request, {}, cwd=env.cwd)
    rules = CleanupRules(keep_last=0, older_than_days=0, quota_gb=0)
    result = env.client.cleanup(cleanup.Request(rules=rules, force=True))
    assert {a.job.id for a in result.done} == {done.id}
    assert not running.job.is_terminal and exists(env, running.job.remote_dir)
    assert {d.job_id for d in env.client.store.deletions()} == {done.id}
    running.cancel()


def test_a_folder_outside_the_base_path_is_refused(env):
    job = submit(env)
    job.files()
    record = job.job
    outside = record.remote_dir.rstrip("/") + "-moved"
    env.transport().check("mv", record.remote_dir, outside)
    env.client.store.update(record.model_copy(update={"remote_dir": outside}))
    request = cleanup.Request(sides=(cleanup.REMOTE,), rules=CleanupRules(keep_last=0))
    result = env.client.cleanup(request)
    [refused] = result.actions
    assert refused.kind == cleanup.REFUSE and "not a job folder under" in refused.note
    assert result.done == [] and exists(env, outside)
    assert env.client.store.deletions() == []


class Removals(DelegatingTransport):
    """The host, with its ``rm`` commands written down; one folder (``stuck``) cannot go: the
    host refuses every removal that names it (a busy mount, say)."""

    def __init__(self, real, stuck: str = ""):
        super().__init__(real)
        self.stuck, self.removals = stuck, []

    def run(self, command, *, stdin=None, timeout=None):
        if command.startswith("rm -rf -- "):
            self.removals.append(command)
            if self.stuck and self.stuck in command:
                return CommandResult(command, 1, b"", b"rm: cannot remove: Device or resource busy")
        return super().run(command, stdin=stdin, timeout=timeout)


def cleaner(env, spy) -> Client:
    """A second client on the same store whose host is ``spy``."""
    return Client(env.client.settings, transports={env.cluster_name: spy})


def test_the_folders_of_one_host_go_in_one_command(env):
    jobs = [submit(env) for _ in range(4)]
    for job in jobs:
        job.files()
    spy = Removals(env.transport())
    with contextlib.closing(cleaner(env, spy)) as client:
        done = client.cleanup(cleanup.Request(sides=(cleanup.REMOTE,), rules=CleanupRules()))
        assert done.done == []  # no rule: nothing
        request = cleanup.Request(sides=(cleanup.REMOTE,), rules=CleanupRules(keep_last=0))
        done = client.cleanup(request)
    assert {a.job.id for a in done.done} == {j.id for j in jobs} and done.notes == []
    assert len(spy.removals) == 1
    assert not any(exists(env, j.job.remote_dir) for j in jobs)
    assert {d.job_id for d in env.client.store.deletions()} == {j.id for j in jobs}


def test_a_folder_that_cannot_go_is_named_and_the_others_still_go(env):
    jobs = [submit(env) for _ in range(3)]
    for job in jobs:
        job.files()
    stuck = jobs[1]
    spy = Removals(env.transport(), stuck=stuck.job.remote_dir)
    with contextlib.closing(cleaner(env, spy)) as client:
        request = cleanup.Request(sides=(cleanup.REMOTE,), rules=CleanupRules(keep_last=0))
        done = client.cleanup(request)
    assert {a.job.id for a in done.done} == {jobs[0].id, jobs[2].id}
    [note] = done.notes
    assert stuck.id in note and "Device or resource busy" in note
    assert exists(env, stuck.job.remote_dir)
    assert not exists(env, jobs[0].job.remote_dir) and not exists(env, jobs[2].job.remote_dir)
    assert {d.job_id for d in env.client.store.deletions()} == {jobs[0].id, jobs[2].id}
    assert len(spy.removals) == 1 + 3  # the batch, then one each to tell which cannot go


@pytest.mark.processes
def test_local_cleanup_and_archive_policy_and_a_restart_keeps_the_history(tmp_path):
    settings = local_settings(tmp_path).model_copy(update={"gpu_magic_archive_after_days": 0})
    client = Client(settings)
    request = GPUJobRequest.create(code=WRITE, cluster="local")
    jobs = [client.submit(request, {}, cwd=tmp_path) for _ in range(3)]
    for job in jobs:
        job.wait(timeout=60).files()
    store = client.results.local
    rules = CleanupRules(keep_last=1)
    result = client.cleanup(cleanup.Request(sides=(cleanup.LOCAL,), rules=rules))
    assert [(a.kind, a.job.id) for a in result.done] == [
        (cleanup.DELETE, jobs[1].id),
        (cleanup.DELETE, jobs[0].id),
        (cleanup.ARCHIVE, jobs[2].id),
    ]
    assert store.job_ids() == [jobs[2].id] and store.archive_file(jobs[2].id).exists()
    assert all(exists_local(j) for j in jobs)  # the host copies stay
    client.close()
    again = Client(settings)  # a new kernel
    archive = store.archive_file(jobs[2].id).name
    assert [(d.job_id, d.location, d.rule) for d in again.store.deletions()] == [
        (jobs[2].id, "local", f"archive-after 0 days: packed into {archive}"),  # newest first
        (jobs[0].id, "local", "keep-last 1"),
        (jobs[1].id, "local", "keep-last 1"),
    ]
    assert again.handle(jobs[2].id).path("blob.bin").stat().st_size == 50_000
    again.close()


def exists_local(job) -> bool:
    return Path(job.job.remote_dir).is_dir()


def test_cleanup_after_each_collection_from_the_clusters_file(ssh_env, tmp_path):
    client = Client(ssh_env.settings)
    policy_table = {"remote": {"keep_last": 1}, "after_collect": True}
    client.clusters.add(make_cluster(**{**ssh_env.cluster.model_dump(), "cleanup": policy_table}))
    assert client.clusters.cleanup_policy("ssh").remote == CleanupRules(keep_last=1)
    assert "[clusters.ssh.cleanup.remote]" in client.clusters.path.read_text()
    request = GPUJobRequest.create(code=WRITE, cluster="ssh")
    first = client.submit(request, {}, cwd=tmp_path)
    first.wait(timeout=60)
    client.results.close(timeout=30)  # the background collection (and its cleanup) ended
    second = client.submit(request, {}, cwd=tmp_path)
    second.wait(timeout=60)
    client.results.close(timeout=30)
    assert client.cleanup_errors == {}
    assert [(d.job_id, d.rule) for d in client.store.deletions()] == [(first.id, "keep-last 1")]
    assert first.remote_deleted and not second.remote_deleted
    assert (ssh_env.remote_dir / second.id).is_dir() and not (
        ssh_env.remote_dir / first.id
    ).exists()
    client.close()


def test_settings_give_defaults_and_a_cluster_overrides_them(tmp_path):
    settings = make_settings(
        tmp_path, gpu_magic_cleanup_remote_keep_last=5, gpu_magic_cleanup_local_quota_gb=2
    )
    client = Client(settings)
    assert client.clusters.cleanup_policy("local").remote == CleanupRules(keep_last=5)
    assert client.clusters.cleanup_policy("local").local == CleanupRules(quota_gb=2)
    client.close()
