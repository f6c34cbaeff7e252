"""The SQLite job store: round trips, history, lookups, concurrency, schema upgrades, failures."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from itertools import count
from pathlib import Path

import pytest

from gpu_magic import migrations
from gpu_magic.errors import JobNotFoundError, StoreError
from gpu_magic.jobstore import JobStore, Transition
from gpu_magic.models import GitSource, GPUJob, GPUJobRequest, JobStatus

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
_serial = count()


def make_job(
    job_id: str | None = None,
    *,
    name: str | None = None,
    cluster: str = "local",
    status: JobStatus = JobStatus.PENDING,
    created_at: datetime | None = None,
) -> GPUJob:
    n = next(_serial)
    return GPUJob(
        id=job_id or f"20260301-120000-{n:06x}",
        request=GPUJobRequest(code=f"print({n})", name=name, cluster=cluster),
        cluster=cluster,
        remote_dir=f"/jobs/{n}",
        status=status,
        created_at=created_at or T0 + timedelta(seconds=n),
    )


@pytest.fixture
def store(tmp_path: Path):
    with JobStore(tmp_path / "data" / "jobs.sqlite3") as store:
        yield store


def full_job() -> GPUJob:
    request = GPUJobRequest(
        code="import torch\nmodel = train(df)\n",
        inputs=("df", "config"),
        outputs=("model",),
        files=("data/train.csv", "utils.py"),
        git=GitSource(url="git@github.com:org/repo.git", ref="v1.2"),
        env={"WANDB_MODE": "offline", "QUOTE": 'it\'s "quoted" ✓'},
        args=("--epochs", "3"),
        gpus=2,
        name="train-resnet",
        cluster="a100",
        timeout=3600.5,
        venv="/opt/venvs/torch",
    )
    plus2 = timezone(timedelta(hours=2))
    return GPUJob(
        id="20260301-120000-abc123",
        request=request,
        cluster="a100",
        remote_dir="/scratch/u/.gpu_magic/jobs/20260301-120000-abc123",
        status=JobStatus.FAILED,
        reason="exit code 3",
        scheduler_id="48213",
        created_at=datetime(2026, 3, 1, 14, 0, 0, 123456, tzinfo=plus2),
        submitted_at=datetime(2026, 3, 1, 12, 0, 1, tzinfo=timezone.utc),
        started_at=datetime(2026, 3, 1, 12, 0, 30, 5, tzinfo=timezone.utc),
        ended_at=datetime(2026, 3, 1, 13, 0, tzinfo=timezone.utc),
        exit_code=3,
        error="Traceback ...\nValueError: boom",
    )


# -- round trip and history ---------------------------------------------------------------------


def test_round_trip_of_a_job_with_every_field_set(store):
    job = full_job()
    store.insert(job)
    back = store.get(job.id)
    assert back == job
    assert back.request.git == GitSource(url="git@github.com:org/repo.git", ref="v1.2")
    for stamp in (back.created_at, back.submitted_at, back.started_at, back.ended_at):
        assert stamp.utcoffset() == timedelta(0)
    assert back.created_at == datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


def test_naive_datetimes_are_stored_as_utc(store):
    job = make_job(created_at=datetime(2026, 1, 1, 8, 30))
    store.insert(job)
    assert store.get(job.id).created_at == datetime(2026, 1, 1, 8, 30, tzinfo=timezone.utc)


def test_creates_parent_folders_and_the_latest_schema(tmp_path):
    path = tmp_path / "a" / "b" / "jobs.sqlite3"
    with JobStore(path) as store:
        assert path.exists()
        assert store.schema_version == len(migrations.load())


def test_insert_records_the_first_transition(store):
    job = make_job(status=JobStatus.UPLOADING)
    store.insert(job.model_copy(update={"reason": "shipping files"}))
    [first] = store.transitions(job.id)
    assert first.status is JobStatus.UPLOADING
    assert first.reason == "shipping files"
    assert first.at.tzinfo is not None


def test_update_records_a_transition_only_when_the_status_changes(store):
    job = make_job()
    store.insert(job)

    store.update(job.model_copy(update={"scheduler_id": "77"}), reason="ignored")
    assert store.get(job.id).scheduler_id == "77"
    assert len(store.transitions(job.id)) == 1

    running = job.model_copy(update={"status": JobStatus.RUNNING, "started_at": T0})
    store.update(running, reason="pid 4242 started")
    store.update(running.model_copy(update={"exit_code": None}))
    done = running.model_copy(
        update={"status": JobStatus.COMPLETED, "exit_code": 0, "reason": "exit code 0"}
    )
    store.update(done)

    history = store.transitions(job.id)
    assert [(t.status, t.reason) for t in history] == [
        (JobStatus.PENDING, None),
        (JobStatus.RUNNING, "pid 4242 started"),
        (JobStatus.COMPLETED, "exit code 0"),
    ]
    assert all(isinstance(t, Transition) for t in history)
    assert history[0].at <= history[1].at <= history[2].at
    assert store.get(job.id) == done


def test_what_a_look_saw_is_stored_only_over_the_job_it_looked_at(store):
    queued = make_job(status=JobStatus.QUEUED)
    store.insert(queued)
    running = queued.model_copy(update={"status": JobStatus.RUNNING, "started_at": T0})
    assert store.update_looked(running, looked_at=queued, reason="started")
    assert store.update_looked(running.model_copy(update={"reason": "at 50%"}), running)
    assert [t.status for t in store.transitions(queued.id)] == [JobStatus.QUEUED, JobStatus.RUNNING]

    late = queued.model_copy(update={"status": JobStatus.FAILED})  # a look that read it queued
    assert not store.update_looked(late, looked_at=queued)
    next_attempt = running.model_copy(update={"attempt": 2})
    store.update(next_attempt)
    assert not store.update_looked(running.model_copy(update={"reason": "x"}), running)
    assert store.get(queued.id) == next_attempt  # neither stale look was stored
    assert len(store.transitions(queued.id)) == 2


def test_update_of_an_unknown_job(store):
    with pytest.raises(JobNotFoundError, match="nope"):
        store.update(make_job("nope"))


def test_inserting_the_same_id_twice(store):
    job = make_job()
    store.insert(job)
    with pytest.raises(StoreError, match=f"{job.id} is already"):
        store.insert(job)
    assert len(store.transitions(job.id)) == 1


def test_delete_removes_the_job_and_its_history(store):
    job = make_job()
    store.insert(job)
    store.delete(job.id)
    with pytest.raises(JobNotFoundError):
        store.get(job.id)
    assert store.transitions(job.id) == []
    with pytest.raises(JobNotFoundError):
        store.delete(job.id)


def test_get_unknown_job_says_where_to_look(store):
    with pytest.raises(JobNotFoundError, match=r"no job 'missing'.*%gpu_status"):
        store.get("missing")


# -- find ---------------------------------------------------------------------------------------


@pytest.fixture
def found(store):
    jobs = {
        "old": make_job("20260301-100000-aaaa01", name="train", created_at=T0),
        "new": make_job("20260301-110000-bbbb02", name="train", created_at=T0 + timedelta(1)),
        "other": make_job("20260302-090000-cccc03", name="eval", created_at=T0 + timedelta(2)),
    }
    for job in jobs.values():
        store.insert(job)
    return jobs


def test_find_by_exact_id(store, found):
    assert store.find("20260301-100000-aaaa01") == found["old"]


def test_find_by_unique_prefix_or_suffix(store, found):
    assert store.find("20260302") == found["other"]
    assert store.find("bbbb02") == found["new"]
    assert store.find("20260301-10") == found["old"]
    with pytest.raises(JobNotFoundError):
        store.find("aaaa")  # the middle of an id is not enough


def test_find_by_name_returns_the_newest(store, found):
    assert store.find("train") == found["new"]
    assert store.find("eval") == found["other"]


def test_find_ambiguous_prefix_lists_the_candidates(store, found):
    with pytest.raises(JobNotFoundError, match="several jobs") as info:
        store.find("20260301")
    assert found["old"].id in str(info.value)
    assert found["new"].id in str(info.value)
    assert found["other"].id not in str(info.value)


def test_find_prefers_an_exact_name_to_an_ambiguous_prefix(store, found):
    named = make_job("x-1", name="2026", created_at=T0 - timedelta(1))
    store.insert(named)
    assert store.find("2026") == named


def test_find_needs_four_characters_of_an_id(store, found):
    with pytest.raises(JobNotFoundError, match="'202'"):
        store.find("202")


def test_find_missing(store, found):
    with pytest.raises(JobNotFoundError, match="no job 'missing'"):
        store.find("missing")


# -- list ---------------------------------------------------------------------------------------


def test_list_newest_first_with_filters(store):
    a = make_job(cluster="a100", status=JobStatus.RUNNING, created_at=T0)
    b = make_job(cluster="local", status=JobStatus.COMPLETED, created_at=T0 + timedelta(1))
    c = make_job(cluster="a100", status=JobStatus.FAILED, created_at=T0 + timedelta(2))
    d = make_job(cluster="a100", status=JobStatus.QUEUED, created_at=T0 + timedelta(3))
    for job in (b, d, a, c):
        store.insert(job)

    assert store.list() == [d, c, b, a]
    assert store.list(cluster="a100") == [d, c, a]
    assert store.list(active_only=True) == [d, a]
    assert store.list(cluster="local", active_only=True) == []
    assert store.list(limit=2) == [d, c]
    assert store.list(cluster="nowhere") == []
    assert store.count_active("a100") == 2
    assert store.count_active("local") == 0


def test_every_non_terminal_status_is_active(store):
    for status in JobStatus:
        store.insert(make_job(status=status))
    active = {job.status for job in store.list(active_only=True)}
    assert active == {s for s in JobStatus if not s.is_terminal}
    assert store.count_active("local") == len(active)


# -- concurrency --------------------------------------------------------------------------------


@pytest.mark.parametrize("shared", [True, False], ids=["one-store", "store-per-thread"])
def test_concurrent_writers(tmp_path, shared):
    path = tmp_path / "jobs.sqlite3"
    common = JobStore(path)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(t: int) -> None:
        store = common if shared else JobStore(path)
        try:
            start.wait()
            for i in range(50):
                job = make_job(f"t{t}-job{i}", cluster=f"c{t}")
                store.insert(job)
                store.update(job.model_copy(update={"status": JobStatus.RUNNING}), reason="go")
        except BaseException as exc:
            errors.append(exc)
        finally:
            if not shared:
                store.close()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(common.list()) == 400
    assert common.count_active("c3") == 50
    assert len(common.transitions("t7-job49")) == 2
    common.close()


def test_kernels_opening_a_new_file_at_the_same_moment(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def open_store() -> None:
        start.wait()
        try:
            JobStore(path).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with JobStore(path) as store:
        assert store.schema_version == len(migrations.load())


def test_two_stores_on_one_file_see_each_others_writes(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    with JobStore(path) as kernel_a, JobStore(path) as kernel_b:
        job = make_job()
        kernel_a.insert(job)
        assert kernel_b.get(job.id) == job
        kernel_b.update(job.model_copy(update={"status": JobStatus.CANCELLED}), reason="by b")
        assert kernel_a.get(job.id).status is JobStatus.CANCELLED
        assert [t.reason for t in kernel_a.transitions(job.id)] == [None, "by b"]


# -- schema upgrades and failures ---------------------------------------------------------------


def test_migrations_ship_with_the_package():
    numbers = [number for number, _ in migrations.load()]
    assert numbers[:2] == [1, 2]


def test_upgrade_from_a_version_1_database(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    request = GPUJobRequest(code="print(1)", name="legacy", env={"A": "1"}, files=("x.py",))
    conn = sqlite3.connect(path)
    conn.executescript(dict(migrations.load())[1])
    conn.execute(
        "INSERT INTO jobs (id, name, cluster, status, reason, scheduler_id, remote_dir, "
        "created_at, submitted_at, started_at, ended_at, exit_code, error, request_json) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            "20250101-000000-0ld001", "legacy", "local", "completed", None, "4242",
            "/jobs/old", "2025-01-01T00:00:00.000000+00:00", "2025-01-01T00:00:01.000000+00:00",
            "2025-01-01T00:00:02.000000+00:00", "2025-01-01T00:05:00.000000+00:00", 0, None,
            request.model_dump_json(),
        ),
    )  # fmt: skip
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()

    with JobStore(path) as store:
        assert store.schema_version == len(migrations.load())
        old = store.get("20250101-000000-0ld001")
        assert old.request == request
        assert old.status is JobStatus.COMPLETED
        assert old.ended_at == datetime(2025, 1, 1, 0, 5, tzinfo=timezone.utc)
        assert store.find("legacy") == old
        [backfilled] = store.transitions(old.id)
        assert backfilled.status is JobStatus.COMPLETED
        assert backfilled.at == old.ended_at


def test_database_newer_than_the_code(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    JobStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(StoreError, match="schema version 999, newer"):
        JobStore(path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    path.write_bytes(b"this is not a database\0" * 512)
    with pytest.raises(StoreError) as info:
        JobStore(path)
    assert str(path) in str(info.value)
    assert not isinstance(info.value.__cause__, sqlite3.Error)


def test_unopenable_path(tmp_path):
    with pytest.raises(StoreError, match=str(tmp_path)):
        JobStore(tmp_path)  # a directory, not a file


def test_closed_store(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.list()
