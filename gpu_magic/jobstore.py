"""The local SQLite cache and history of every job (``Settings.store_path``).

Several kernels, the server extension and the CLI may open the same file at once: the database is
in WAL mode with a busy timeout, and every write is a ``BEGIN IMMEDIATE`` transaction, so writers
queue instead of failing. The schema is the numbered SQL files in ``gpu_magic/migrations``, applied
in order and tracked with ``PRAGMA user_version``. Every sqlite3 error leaves as ``StoreError``.

Threads: one connection per ``JobStore`` guarded by a lock. Statements take milliseconds, so
serialising them inside one process costs nothing noticeable, and unlike a connection per thread
nothing leaks when short-lived threads (widget callbacks, monitors) end and ``close()`` really
closes everything.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from . import migrations
from .config import private_dir, private_file
from .errors import JobNotFoundError, StoreError
from .models import TERMINAL_STATES, GPUJob, GPUJobRequest, JobStatus, SweepMember, utcnow

__all__ = ["Change", "Deletion", "JobStore", "Transition"]

BUSY_TIMEOUT_S = 30.0
MIN_PREFIX = 4
_FIELDS = (
    "id", "name", "cluster", "status", "reason", "scheduler_id", "remote_dir", "created_at",
    "submitted_at", "started_at", "ended_at", "exit_code", "error", "request_json",
    "failure_json", "attempt", "ready_at", "sweep_id", "sweep_json", "held",
)  # fmt: skip
_COLUMNS = ", ".join(_FIELDS)
_SELECT = f"SELECT {_COLUMNS} FROM jobs"  # noqa: S608 (constant)
_INSERT = f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' * len(_FIELDS))})"  # noqa: S608
_UPDATE = f"UPDATE jobs SET {', '.join(f + ' = ?' for f in _FIELDS[1:])} WHERE id = ?"  # noqa: S608
_NEWEST_FIRST = "ORDER BY created_at DESC, rowid DESC"
_BEFORE = "(created_at, rowid) < (SELECT created_at, rowid FROM jobs WHERE id = ?)"
"""After the cursor job in ``_NEWEST_FIRST`` order (an unknown id: nothing)."""
_TERMINAL = tuple(s.value for s in TERMINAL_STATES)
_SLOT_ORDER = "COALESCE(json_extract(request_json, '$.priority'), 0) DESC, ready_at, rowid"
"""The order a cluster's jobs waiting for a slot start in: higher priority, then older."""
_ACTIVE = f"status NOT IN ({', '.join('?' * len(_TERMINAL))})"


@dataclass(frozen=True)
class Change:
    """What a committed write changed, as ``on_change`` listeners hear it: a job's new state
    (``what`` the status, ``why`` the reason) or a deletion (``what`` the location, ``why``
    the path)."""

    kind: str  # "state" or "delete"
    job_id: str
    cluster: str
    what: str
    why: str | None


@dataclass(frozen=True)
class Transition:
    """One status change of a job."""

    status: JobStatus
    at: datetime
    reason: str | None = None


@dataclass(frozen=True)
class Deletion:
    """One folder a cleanup deleted: ``location`` is ``remote`` (the host's job folder) or
    ``local`` (the job's results store entry); ``rule`` says why, ``forced`` that results were
    not completely fetched when it went."""

    job_id: str
    cluster: str
    location: str
    path: str
    bytes: int | None
    rule: str
    forced: bool = False
    at: datetime | None = None


_DELETION_COLUMNS = "at, job_id, cluster, location, path, bytes, rule, forced"


def _sidecars(path: Path) -> tuple[Path, Path]:
    """SQLite's WAL files: created with the database's mode, but an older store's may be wider."""
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the store file as every user of it opens one: autocommit (writers say
    ``BEGIN IMMEDIATE``), the shared busy timeout, usable from any thread under a lock."""
    return sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One ``BEGIN IMMEDIATE`` transaction on a ``connect`` connection: committed at the end,
    rolled back on any error (which goes on)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switching to WAL needs a moment alone with a new file and ignores the busy timeout, so
    kernels opening a new store at the same moment wait for each other here."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _to_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # naive datetimes are taken to be UTC
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _from_text(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _job_to_row(job: GPUJob) -> tuple:
    return (
        job.id, job.name, job.cluster, job.status.value, job.reason, job.scheduler_id,
        job.remote_dir, _to_text(job.created_at), _to_text(job.submitted_at),
        _to_text(job.started_at), _to_text(job.ended_at), job.exit_code, job.error,
        job.request.model_dump_json(), None if job.failure is None else json.dumps(job.failure),
        job.attempt, _to_text(job.ready_at), job.sweep and job.sweep.sweep_id,
        job.sweep and job.sweep.model_dump_json(), int(job.held),
    )  # fmt: skip


def _row_to_job(row: tuple) -> GPUJob:
    (id_, _name, cluster, status, reason, scheduler_id, remote_dir, created, submitted,
     started, ended, exit_code, error, request_json, failure, attempt, ready, _sweep_id,
     sweep, held) = row  # fmt: skip
    try:
        return GPUJob(
            id=id_, request=GPUJobRequest.model_validate_json(request_json), cluster=cluster,
            remote_dir=remote_dir, status=JobStatus(status), reason=reason,
            scheduler_id=scheduler_id, created_at=_from_text(created),
            submitted_at=_from_text(submitted), started_at=_from_text(started),
            ended_at=_from_text(ended), exit_code=exit_code, error=error,
            failure=None if failure is None else json.loads(failure), attempt=attempt,
            ready_at=_from_text(ready),
            sweep=None if sweep is None else SweepMember.model_validate_json(sweep),
            held=bool(held),
        )  # fmt: skip
    except (ValidationError, ValueError) as exc:
        raise StoreError(f"stored job {id_} cannot be read: {exc}") from None


class JobStore:
    """Jobs by id, their status history, and the lookups the magics need."""

    def __init__(self, path: Path | str):
        self.path = Path(path).expanduser()
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._listeners: list[Callable[[Change], None]] = []
        self._unsaid: list[Change] = []  # made in the open transaction, told once committed
        try:
            private_dir(self.path.parent)
            for path in (self.path, *_sidecars(self.path)):  # env values live in here
                if path == self.path or path.exists():
                    private_file(path)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of job store {self.path}: {exc}") from None
        try:
            with self._errors("open"):
                self._conn = connect(self.path)
                _enable_wal(self._conn)
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except StoreError:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"JobStore({str(self.path)!r})"

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None

    def on_change(self, listener: Callable[[Change], None]) -> None:
        """Call ``listener(change)`` after each committed state change or deletion made
        through this store (the audit log listens), in the order they were made."""
        with self._lock:
            self._listeners.append(listener)

    def _tell(self) -> None:
        changes, self._unsaid = self._unsaid, []
        for change in changes:
            for listener in self._listeners:
                listener(change)

    # -- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"job store {self.path}: {action} failed: {exc}") from None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"job store {self.path} is closed")
        return self._conn

    @contextmanager
    def _read(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors(action):
            yield self._connection()

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors(action):
            try:
                with immediate(self._connection()) as conn:
                    yield conn
            except BaseException:
                self._unsaid.clear()
                raise
            self._tell()

    def _migrate(self) -> None:
        known = migrations.load()
        for number, sql in known:
            with self._write(f"schema migration {number:04d}") as conn:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > len(known):
                    raise StoreError(
                        f"job store {self.path} has schema version {version}, newer than this "
                        f"gpu_magic understands ({len(known)}); upgrade gpu_magic"
                    )
                if version >= number:
                    continue
                for statement in migrations.statements(sql):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")

    @property
    def schema_version(self) -> int:
        with self._read("read schema version") as conn:
            return conn.execute("PRAGMA user_version").fetchone()[0]

    # -- writes -----------------------------------------------------------------------------

    def insert(self, job: GPUJob) -> None:
        """Add a new job and its first transition; a job id can be inserted only once."""
        row = _job_to_row(job)
        with self._write(f"insert job {job.id}") as conn:
            try:
                conn.execute(_INSERT, row)
            except sqlite3.IntegrityError:
                if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job.id,)).fetchone():
                    raise StoreError(f"job {job.id} is already in job store {self.path}") from None
                raise
            self._record(conn, job, job.reason)

    def update(self, job: GPUJob, reason: str | None = None) -> None:
        """Write every field; record a transition when the status changed."""
        row = _job_to_row(job)
        with self._write(f"update job {job.id}") as conn:
            old = conn.execute("SELECT status FROM jobs WHERE id = ?", (job.id,)).fetchone()
            if old is None:
                raise self._not_found(job.id)
            conn.execute(_UPDATE, (*row[1:], job.id))
            if old[0] != job.status.value:
                self._record(conn, job, reason or job.reason)

    def advance_attempt(self, job: GPUJob, reason: str) -> bool:
        """Store ``job`` (its next attempt) only if the stored job is still at the attempt
        before it: of several processes that saw the same failure, exactly one retries."""
        return self._update_if(job, "attempt = ?", (job.attempt - 1,), reason)

    def update_looked(self, job: GPUJob, looked_at: GPUJob, reason: str | None = None) -> bool:
        """Store ``job``, what a look at ``looked_at`` (the job as the looker read it) found,
        only if the stored job is still that attempt in that status: a look begun before
        another writer moved the job on (its next attempt launched, its end recorded) is stale,
        and writing it would put the earlier attempt back. A transition is recorded when the
        status changed."""
        where, params = "attempt = ? AND status = ?", (looked_at.attempt, looked_at.status.value)
        record = job.status != looked_at.status
        return self._update_if(job, where, params, reason or job.reason, record=record)

    def cancel_waiting(self, job: GPUJob, reason: str) -> bool:
        """Store ``job`` (cancelled) only if it still waits, for a slot or held (nobody
        launched it)."""
        where = "status = ? AND (ready_at IS NOT NULL OR held = 1)"
        return self._update_if(job, where, (JobStatus.PENDING.value,), reason)

    def _update_if(
        self, job: GPUJob, where: str, params: tuple, reason: str | None, record: bool = True
    ) -> bool:
        row = _job_to_row(job)
        with self._write(f"update job {job.id}") as conn:
            sql = f"{_UPDATE} AND {where}"
            if conn.execute(sql, (*row[1:], job.id, *params)).rowcount != 1:
                return False
            if record:
                self._record(conn, job, reason)
        return True

    # -- slots (max_concurrent_jobs) ---------------------------------------------------------
    def claim_slot(self, job: GPUJob, limit: int) -> bool:
        """Whether ``job`` (uploading) may launch now: fewer than ``limit`` other jobs of its
        cluster hold a slot and none waits before it. One transaction: two processes never
        both take the last slot."""
        with self._write(f"claim a slot for {job.id}") as conn:
            return (
                self._slot_free(conn, job.cluster, limit, job.id)
                and not conn.execute(
                    "SELECT 1 FROM jobs WHERE cluster = ? AND status = ? AND ready_at IS NOT NULL",
                    (job.cluster, JobStatus.PENDING.value),
                ).fetchone()
            )

    def claim_waiting(
        self, cluster: str, limit: int, launchable: Callable[[GPUJob], bool] = lambda job: True
    ) -> GPUJob | None:
        """The job that waited longest on ``cluster`` among those the caller can launch
        (``launchable``: it holds the job's ``--secret-env`` values), moved to ``uploading``
        (being launched) if a slot is free; None otherwise. Exactly one caller gets each job."""
        if cluster not in self.waiting_clusters():  # most calls: nothing waits, no write lock
            return None
        with self._write(f"start a waiting job on {cluster}") as conn:
            if not self._slot_free(conn, cluster, limit):
                return None
            rows = conn.execute(
                f"{_SELECT} WHERE cluster = ? AND status = ? AND ready_at IS NOT NULL "
                f"ORDER BY {_SLOT_ORDER}",
                (cluster, JobStatus.PENDING.value),
            )
            waiting = next((j for j in map(_row_to_job, rows) if launchable(j)), None)
            if waiting is None:
                return None
            why = "a slot is free: launching"
            job = waiting.model_copy(
                update={"status": JobStatus.UPLOADING, "ready_at": None, "reason": why}
            )
            conn.execute(_UPDATE, (*_job_to_row(job)[1:], job.id))
            self._record(conn, job, why)
            return job

    # -- held jobs (--after, --at) -----------------------------------------------------------
    def held(self) -> list[GPUJob]:
        """Jobs held until what they wait for allows them to start, oldest first."""
        sql = f"{_SELECT} WHERE status = ? AND held = 1 ORDER BY ready_at, created_at, rowid"
        return self._query("list held jobs", sql, (JobStatus.PENDING.value,))

    def release(self, job: GPUJob, reason: str) -> bool:
        """Store ``job`` (released: waiting for a slot) only if it is still held (exactly one
        process releases each)."""
        return self._update_if(job, "status = ? AND held = 1", (JobStatus.PENDING.value,), reason)

    def waiting_for_slots(self) -> list[GPUJob]:
        """Jobs waiting for a slot, per cluster in the order they will start."""
        sql = f"{_SELECT} WHERE status = ? AND ready_at IS NOT NULL ORDER BY cluster, {_SLOT_ORDER}"
        return self._query("list jobs waiting for a slot", sql, (JobStatus.PENDING.value,))

    def waiting_clusters(self) -> list[str]:
        """Clusters with jobs waiting for a slot."""
        sql = "SELECT DISTINCT cluster FROM jobs WHERE status = ? AND ready_at IS NOT NULL"
        with self._read("list clusters with waiting jobs") as conn:
            return [row[0] for row in conn.execute(sql, (JobStatus.PENDING.value,))]

    @staticmethod
    def _slot_free(conn, cluster: str, limit: int, besides: str = "") -> bool:
        holding = (JobStatus.UPLOADING.value, JobStatus.QUEUED.value, JobStatus.RUNNING.value)
        sql = "SELECT COUNT(*) FROM jobs WHERE cluster = ? AND status IN (?, ?, ?) AND id != ?"
        return conn.execute(sql, (cluster, *holding, besides)).fetchone()[0] < limit

    def delete(self, job_id: str) -> None:
        with self._write(f"delete job {job_id}") as conn:
            if conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount == 0:
                raise self._not_found(job_id)

    def _record(self, conn: sqlite3.Connection, job: GPUJob, reason: str | None) -> None:
        conn.execute(
            "INSERT INTO transitions (job_id, status, at, reason) VALUES (?, ?, ?, ?)",
            (job.id, job.status.value, _to_text(utcnow()), reason),
        )
        self._unsaid.append(Change("state", job.id, job.cluster, job.status.value, reason))

    # -- reads ------------------------------------------------------------------------------

    def _query(self, action: str, sql: str, params: tuple = ()) -> list[GPUJob]:
        with self._read(action) as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_row_to_job(row) for row in rows]

    def _not_found(self, what: str) -> JobNotFoundError:
        return JobNotFoundError(
            f"no job {what!r} in job store {self.path}; %gpu_status lists the known jobs"
        )

    def get(self, job_id: str) -> GPUJob:
        found = self._query(f"read job {job_id}", f"{_SELECT} WHERE id = ?", (job_id,))
        if not found:
            raise self._not_found(job_id)
        return found[0]

    def newest_named(self, name: str) -> GPUJob | None:
        """The newest job called ``name`` (what ``find(name)`` gives), None when there is none."""
        sql = f"{_SELECT} WHERE name = ? {_NEWEST_FIRST} LIMIT 1"
        named = self._query(f"find {name}", sql, (name,))
        return named[0] if named else None

    def newest_sweep_named(self, name: str) -> str | None:
        """The id of the newest sweep called ``name`` (its ``--name``), None when none is."""
        sql = (
            "SELECT sweep_id FROM jobs WHERE sweep_id IS NOT NULL "  # noqa: S608 (constant)
            f"AND json_extract(sweep_json, '$.name') = ? {_NEWEST_FIRST} LIMIT 1"
        )
        with self._read(f"find sweep {name}") as conn:
            row = conn.execute(sql, (name,)).fetchone()
        return row[0] if row else None

    def find(self, id_or_name: str) -> GPUJob:
        """Exact id; else a unique id prefix or suffix of >= 4 characters; else the newest job
        of that name. An ambiguous prefix with no job of that name raises, listing candidates."""
        key = id_or_name
        exact = self._query(f"find {key}", f"{_SELECT} WHERE id = ?", (key,))
        if exact:
            return exact[0]
        partial: list[GPUJob] = []
        if len(key) >= MIN_PREFIX:
            where = "substr(id, 1, length(?1)) = ?1 OR substr(id, -length(?1)) = ?1"
            sql = f"{_SELECT} WHERE {where} {_NEWEST_FIRST} LIMIT 11"
            partial = self._query(f"find {key}", sql, (key,))
            if len(partial) == 1:
                return partial[0]
        named = self.newest_named(key)
        if named is not None:
            return named
        if partial:
            listed = ", ".join(f"{j.id} ({j.name or 'unnamed'})" for j in partial[:10])
            more = ", ..." if len(partial) > 10 else ""
            raise JobNotFoundError(
                f"{key!r} matches several jobs: {listed}{more}; give more of the id"
            )
        raise self._not_found(key)

    def list(
        self,
        *,
        cluster: str | None = None,
        active_only: bool = False,
        limit: int | None = None,
        status: str | None = None,
        name: str | None = None,
        before: str | None = None,
        sweep: str | None = None,
    ) -> list[GPUJob]:
        """Jobs newest first; ``active_only`` leaves out jobs in a terminal state; ``before``
        (a job id, the last one of a previous page) continues after that job; ``sweep``: the
        members of that sweep."""
        where, params = [], []
        filters = (("cluster", cluster), ("status", status), ("name", name), ("sweep_id", sweep))
        for column, value in filters:
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if active_only:
            where.append(_ACTIVE)
            params.extend(_TERMINAL)
        if before is not None:
            where.append(_BEFORE)
            params.append(before)
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + f" {_NEWEST_FIRST}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return self._query("list jobs", sql, tuple(params))

    def count_by_state(self) -> list[tuple[str, str, int]]:
        """``(cluster, status, jobs)`` for every pair that has jobs."""
        sql = "SELECT cluster, status, COUNT(*) FROM jobs GROUP BY cluster, status"
        with self._read("count jobs by state") as conn:
            return [(c, s, n) for c, s, n in conn.execute(sql).fetchall()]

    def count_active(self, cluster: str) -> int:
        sql = f"SELECT COUNT(*) FROM jobs WHERE cluster = ? AND {_ACTIVE}"  # noqa: S608 (constant)
        with self._read("count active jobs") as conn:
            return conn.execute(sql, (cluster, *_TERMINAL)).fetchone()[0]

    def transitions(self, job_id: str) -> list[Transition]:
        """Status history of a job, oldest first (empty for an unknown job)."""
        sql = "SELECT status, at, reason FROM transitions WHERE job_id = ? ORDER BY seq"
        with self._read(f"read transitions of {job_id}") as conn:
            rows = conn.execute(sql, (job_id,)).fetchall()
        return [Transition(JobStatus(s), _from_text(at), reason) for s, at, reason in rows]

    # -- host leases and watched jobs (see gpu_magic.lease) ----------------------------------
    def hold_lease(self, cluster: str, holder: str, ttl: float, now: float) -> bool:
        """Take or renew the lease on polling ``cluster`` until ``now + ttl``; False while
        another holder's lease has not expired."""
        sql = (
            "INSERT INTO host_leases (cluster, holder, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (cluster) DO UPDATE SET holder = excluded.holder, "
            "expires_at = excluded.expires_at "
            "WHERE host_leases.holder = excluded.holder OR host_leases.expires_at < ?"
        )
        with self._write(f"take the lease on {cluster}") as conn:
            conn.execute(sql, (cluster, holder, now + ttl, now))
            row = conn.execute("SELECT holder FROM host_leases WHERE cluster = ?", (cluster,))
            return row.fetchone()[0] == holder

    def lease_holder(self, cluster: str, now: float) -> str | None:
        """Who holds an unexpired lease on ``cluster`` (None: nobody)."""
        sql = "SELECT holder FROM host_leases WHERE cluster = ? AND expires_at >= ?"
        with self._read(f"read the lease on {cluster}") as conn:
            row = conn.execute(sql, (cluster, now)).fetchone()
        return row[0] if row else None

    def release_leases(self, holder: str) -> None:
        with self._write("release leases") as conn:
            conn.execute("DELETE FROM host_leases WHERE holder = ?", (holder,))
            conn.execute("DELETE FROM watched WHERE holder = ?", (holder,))

    def mark_watched(self, job_ids: list[str], holder: str, until: float) -> None:
        """``holder`` shows exactly ``job_ids`` (until ``until`` unless marked again)."""
        sql = "INSERT OR REPLACE INTO watched (job_id, holder, until) VALUES (?, ?, ?)"
        with self._write("mark watched jobs") as conn:
            conn.execute("DELETE FROM watched WHERE holder = ?", (holder,))
            conn.executemany(sql, [(job_id, holder, until) for job_id in job_ids])

    def watched(self, now: float) -> set[str]:
        """Jobs some process shows (a panel, a WebSocket, a wait) now."""
        with self._read("read watched jobs") as conn:
            rows = conn.execute("SELECT job_id FROM watched WHERE until >= ?", (now,))
            return {row[0] for row in rows.fetchall()}

    # -- deletions (cleanup history) --------------------------------------------------------

    def record_deletion(self, deletion: Deletion) -> Deletion:
        """Remember a deletion (stamped now unless ``at`` is given); returns what was stored."""
        stored = deletion if deletion.at is not None else replace(deletion, at=utcnow())
        d = stored
        row = (_to_text(d.at), d.job_id, d.cluster, d.location, d.path, d.bytes, d.rule,
               int(d.forced))  # fmt: skip
        sql = f"INSERT INTO deletions ({_DELETION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
        with self._write(f"record deletion of {d.job_id}") as conn:
            conn.execute(sql, row)
            self._unsaid.append(Change("delete", d.job_id, d.cluster, d.location, d.path))
        return stored

    def deletions(
        self, *, job_id: str | None = None, location: str | None = None, limit: int | None = None
    ) -> list[Deletion]:
        """Recorded deletions, newest first, optionally of one job and/or one location."""
        where, params = [], []
        for column, value in (("job_id", job_id), ("location", location)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT {_DELETION_COLUMNS} FROM deletions"  # noqa: S608 (constant)
        sql += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._read("read deletions") as conn:
            rows = conn.execute(sql, tuple(params)).fetchall()
        return [
            Deletion(job, cluster, where_, path, size, rule, bool(forced), _from_text(at))
            for at, job, cluster, where_, path, size, rule, forced in rows
        ]

    def remote_deleted(self, job_id: str) -> Deletion | None:
        """The deletion of the job's remote folder, when a cleanup removed it."""
        found = self.deletions(job_id=job_id, location="remote", limit=1)
        return found[0] if found else None
