"""The audit log: every remote command, transfer and decision, chained so edits show.

Two copies of the same records: an append-only JSONL file in the data dir (``audit.jsonl``,
0600, one JSON object per line, for ``grep``/``jq`` and for shipping off the machine) and the
``audit`` table in the job store (for ``%gpu_audit JOB``). Each record names the sha256 of the
line before it (``prev``), so ``verify`` finds a changed, removed or reordered record in the
file, and comparing the two copies finds a changed or cut last one.

Several processes (kernels, the server extension, the CLI) append to one log: a record is
numbered, chained and written to both copies inside one ``BEGIN IMMEDIATE`` transaction of
the store, so the copies agree on the order. What the log guards against is an edit that
nobody announces; someone who can rewrite both copies can rewrite history, which is why
``verify`` prints the head hash (note it elsewhere to pin the past).

Secrets never reach a record: command lines are scanned for the values ``redact`` was given
(``--secret-env`` values, ``--env`` values with secret-looking names) and stdin, file contents
and environment values are never recorded, only their sizes and hashes. Auditing never fails
the operation it records: a log that cannot be written is a warning (and ``verify`` shows the
gap).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .config import private_file
from .jobdir import job_ids_in
from .jobstore import connect, immediate

GENESIS = "0" * 64
REDACTED = "***"
MIN_SECRET = 4  # shorter values would blank out ordinary text; such values are no secret
log = logging.getLogger(__name__)

__all__ = ["AuditLog", "Trail", "Verdict"]


def line_hash(line: str) -> str:
    return hashlib.sha256(line.encode()).hexdigest()


def _line(record: dict) -> str:
    """The one canonical text of a record: what is hashed, stored and written."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


@dataclass
class Verdict:
    """What ``verify`` found: ``ok`` when both copies hold the same unbroken chain."""

    records: int
    head: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        if self.ok:
            return f"audit log intact: {self.records} records, head {self.head[:16]}"
        shown = "; ".join(self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        return f"audit log BROKEN ({len(self.problems)} problems): {shown}{more}"


class AuditLog:
    """One per ``Client``; thread-safe, and safe beside other processes appending."""

    def __init__(self, path: Path, store_path: Path):
        self.path = Path(path).expanduser()
        self.user = _user()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()
        private_file(self.path)
        self._conn = connect(store_path)

    def close(self) -> None:
        with self._lock, suppress(sqlite3.Error):
            self._conn.close()

    def redact(self, values: Iterable[str]) -> None:
        """Never write these values (secrets) into a record, from now on."""
        with self._lock:
            self._secrets.update(v for v in values if len(v) >= MIN_SECRET)

    def trail(self, cluster: str | None, host: str | None) -> Trail:
        return Trail(self, cluster, host)

    # -- writing ------------------------------------------------------------------------------
    def record(
        self,
        event: str,
        *,
        cluster: str | None = None,
        host: str | None = None,
        jobs: Iterable[str] = (),
        **details: Any,
    ) -> dict | None:
        """Append one record (the jobs it concerns are also found in its command or path);
        returns it, or None when the log could not be written (logged, never raised)."""
        base = {"event": event, "cluster": cluster, "host": host, "user": self.user}
        record = self._scrub({**details, **base, "pid": os.getpid()})
        found = [*jobs, *job_ids_in(" ".join(map(str, details.values())))]
        record["jobs"] = sorted(set(found))
        try:
            with self._lock, immediate(self._conn) as conn:
                return self._append(conn, record)
        except (OSError, sqlite3.Error) as exc:
            log.warning("gpu_magic: audit log %s not written (%s): %s", self.path, event, exc)
            return None

    def _append(self, conn: sqlite3.Connection, record: dict) -> dict:
        last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
        at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        record = {**record, "seq": seq, "at": at, "prev": prev}
        line = _line(record)
        conn.execute(
            "INSERT INTO audit (seq, at, event, cluster, line, hash) VALUES (?, ?, ?, ?, ?, ?)",
            (seq, at, record["event"], record["cluster"], line, line_hash(line)),
        )
        conn.executemany(
            "INSERT INTO audit_jobs (job_id, seq) VALUES (?, ?)", [(j, seq) for j in record["jobs"]]
        )
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())  # one write: lines never interleave
        finally:
            os.close(fd)
        return record

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrub(v) for v in value]
        return value

    # -- reading ------------------------------------------------------------------------------
    def records(self, job_id: str | None = None, limit: int | None = None) -> list[dict]:
        """Records oldest first: those concerning ``job_id``, or all; the last ``limit``."""
        if job_id is None:
            sql, params = "SELECT line FROM audit ORDER BY seq DESC", ()
        else:
            sql = (
                "SELECT line FROM audit JOIN audit_jobs USING (seq) WHERE job_id = ? "
                "ORDER BY seq DESC"
            )
            params = (job_id,)
        if limit is not None:
            sql, params = f"{sql} LIMIT ?", (*params, limit)
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [json.loads(line) for (line,) in reversed(rows)]

    def verify(self) -> Verdict:
        """Walk the file's chain and compare it with the store's copy, record by record."""
        with self._lock:
            stored = dict(self._conn.execute("SELECT seq, line FROM audit").fetchall())
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            return Verdict(0, GENESIS, [f"cannot read {self.path}: {exc.strerror or exc}"])
        verdict = _walk(lines, stored, "the file")
        _walk([stored[seq] for seq in sorted(stored)], stored, "the store", verdict)
        last_seen = max(stored, default=0)
        if verdict.records < last_seen and not verdict.problems:
            verdict.problems.append(
                f"the file ends at record {verdict.records} but the store holds {last_seen}: "
                "records were cut from the end of the file"
            )
        return verdict


def _walk(lines: list[str], stored: dict[int, str], where: str, into: Verdict | None = None):
    """Check one copy's chain: each record follows the one before it, numbered in turn, and
    (for the file) is the same line the store holds. Problems go into ``into``."""
    verdict = into or Verdict(0, GENESIS)
    prev, expected = GENESIS, 1
    for number, line in enumerate(lines, 1):
        try:
            seq, named = _parse(line)
        except ValueError:
            verdict.problems.append(f"line {number} of {where} is not an audit record")
            prev = line_hash(line)
            continue
        if seq != expected:
            verdict.problems.append(
                f"{where}: record {seq} stands where record {expected} belongs "
                "(records removed or reordered)"
            )
        if named != prev:
            verdict.problems.append(
                f"{where}: record {seq} does not follow the record before it (that one was "
                "changed, removed or moved)"
            )
        if into is None and stored.get(seq) != line:
            missing = seq not in stored
            verdict.problems.append(
                f"record {seq} is not in the store"
                if missing
                else f"record {seq} was changed (the file and the store differ)"
            )
        prev, expected = line_hash(line), seq + 1
        if into is None:
            verdict.records, verdict.head = number, prev
    return verdict


def _parse(line: str) -> tuple[int, str]:
    try:
        record = json.loads(line)
        return int(record["seq"]), str(record["prev"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(line) from exc


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return str(os.getuid())


@dataclass(frozen=True)
class Trail:
    """The audit log bound to one cluster and host: what the services write to."""

    log: AuditLog
    cluster: str | None
    host: str | None

    def record(self, event: str, *, jobs: Iterable[str] = (), **details: Any) -> dict | None:
        return self.log.record(event, cluster=self.cluster, host=self.host, jobs=jobs, **details)
