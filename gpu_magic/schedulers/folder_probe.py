"""Read many job folders of one host in one round trip (``gpu_magic/remote/probe.py``).

Every scheduler uses it for the folder's own truth (pid, exit code, flags); the monitor also
asks for the new bytes of growing files from byte offsets, in the same round trip.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .. import jobdir
from ..errors import SchedulerError
from ..transport.base import Program, Transport

PROBE = Program.from_file(Path(__file__).resolve().parent.parent / "remote" / "probe.py")
MAX_BYTES_PER_FILE = 256 * 1024
NAMES = {
    "state": jobdir.STATE,
    "pid": jobdir.PID,
    "pid_start": jobdir.PID_START,
    "started_at": jobdir.STARTED_AT,
    "ended_at": jobdir.ENDED_AT,
    "exit_code": jobdir.EXIT_CODE,
    "cell_status": jobdir.CELL_STATUS,
    "submitted_id": jobdir.SLURM_ID,
    "marker": jobdir.MARKER_VARIABLE,
    "flags": [
        jobdir.CANCEL_REQUESTED,
        jobdir.TIMED_OUT,
        jobdir.LIMIT_WARNED,
        jobdir.LAUNCHED,
        jobdir.SUBMITTED,
    ],
}


@dataclass(frozen=True)
class Chunk:
    """Bytes ``data`` of a file starting at ``offset``; the file had ``size`` bytes."""

    offset: int
    size: int
    data: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass(frozen=True)
class FolderState:
    exists: bool
    pid: str = ""
    alive: bool = False
    started_at: str = ""
    ended_at: str = ""
    exit_code: str = ""
    flags: frozenset[str] = frozenset()
    files: dict[str, Chunk | None] = field(default_factory=dict)
    cell_status: str = ""  # the cell's exit status as its wrapper recorded it (run.sh's note)
    stragglers: tuple[int, ...] = ()  # the job's processes still alive after run.sh is gone
    submitted_id: str = ""  # Slurm: the job id sbatch gave, as the folder recorded it

    @property
    def started(self) -> datetime | None:
        return _utc(self.started_at)

    @property
    def ended(self) -> datetime | None:
        return _utc(self.ended_at)

    @property
    def cancel_requested(self) -> bool:
        return jobdir.CANCEL_REQUESTED in self.flags

    @property
    def timed_out(self) -> bool:
        return jobdir.TIMED_OUT in self.flags

    @property
    def limit_warned(self) -> bool:
        """Slurm warned run.sh that the time limit is near, and run.sh stopped the cell."""
        return jobdir.LIMIT_WARNED in self.flags

    @property
    def submitted(self) -> bool:
        """A Slurm submit reached the host (its marker exists; sbatch ran or runs)."""
        return jobdir.SUBMITTED in self.flags

    @property
    def launched(self) -> bool:
        """The process scheduler's launch reached the host (its marker exists)."""
        return jobdir.LAUNCHED in self.flags


def _utc(text: str) -> datetime | None:
    """run.sh writes ``date -u +%Y-%m-%dT%H:%M:%SZ``; anything else reads as unknown."""
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00")) if text.strip() else None
    except ValueError:
        return None


def probe_args(
    requests: dict[str, dict[str, int]], first: str = "", until: float = 0.0
) -> list[str]:
    """``requests`` maps a job folder to ``{file name: byte offset}`` (may be empty); ``first``
    is a shell command run on the host before the folders are read; ``until``: seconds the
    host may wait first for a job's end (see ``probe.py``)."""
    payload = {
        "names": NAMES,
        "max_bytes": MAX_BYTES_PER_FILE,
        "jobs": [{"dir": d, "offsets": offsets} for d, offsets in requests.items()],
        "first": first,
        "until": until,
    }
    return [json.dumps(payload)]


def parse_probe_output(text: str) -> tuple[str, dict[str, FolderState]]:
    """``(the first command's output, {folder: FolderState})``."""
    try:
        raw = json.loads(text)
        first, folders = raw["first"], raw["folders"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SchedulerError(
            f"unreadable answer from the job-folder probe: {text[:200]!r}"
        ) from exc
    return first, {folder: _folder_state(seen) for folder, seen in folders.items()}


def _folder_state(seen: dict) -> FolderState:
    if not seen.get("exists"):
        return FolderState(exists=False)
    files = {
        name: None if c is None else Chunk(c["offset"], c["size"], base64.b64decode(c["data"]))
        for name, c in seen.get("files", {}).items()
    }
    return FolderState(
        exists=True,
        pid=seen["pid"],
        alive=seen["alive"],
        started_at=seen["started_at"],
        ended_at=seen["ended_at"],
        exit_code=seen["exit_code"],
        flags=frozenset(seen["flags"]),
        files=files,
        cell_status=seen.get("cell_status", ""),
        stragglers=tuple(seen.get("stragglers", ())),
        submitted_id=seen.get("submitted_id", ""),
    )


def probe(
    transport: Transport,
    interpreter: str,
    requests: dict[str, dict[str, int]],
    first: str = "",
    until: float = 0.0,
) -> tuple[str, dict[str, FolderState]]:
    """One look at the folders of one host (after ``first``, and after waiting up to ``until``
    seconds for a job's end): one round trip."""
    args = probe_args(requests, first, until)
    return parse_probe_output(transport.run_program(PROBE, interpreter, args).check().text)
