"""The process scheduler's state decision from a job folder, and the probe that reads folders."""

from __future__ import annotations

import base64
import json

import pytest

from gpu_magic.models import JobStatus
from gpu_magic.schedulers.folder_probe import FolderState, parse_probe_output
from gpu_magic.schedulers.process import decide

T0 = "2026-11-26T12:00:00Z"
T1 = "2026-11-26T12:01:30Z"


def folder(alive=False, pid="123", code="", flags=(), started=T0, ended=""):
    return FolderState(True, pid, alive, started, ended, code, frozenset(flags))


@pytest.mark.parametrize(
    ("state", "status", "reason"),
    [
        (folder(alive=True), JobStatus.RUNNING, None),
        (folder(code="0", ended=T1), JobStatus.COMPLETED, None),
        (folder(code="3", ended=T1), JobStatus.FAILED, "exit code 3"),
        (folder(code="143", flags=["cancel_requested"]), JobStatus.CANCELLED, "cancelled by user"),
        (folder(code="143", flags=["timed_out"]), JobStatus.TIMEOUT, "ran past its --timeout"),
        (folder(code="0", flags=["timed_out"]), JobStatus.COMPLETED, None),  # finished in time
        (folder(alive=True, code="0"), JobStatus.COMPLETED, None),  # the exit code wins
        (folder(), JobStatus.LOST, "vanished without writing an exit code"),
        (folder(flags=["cancel_requested"]), JobStatus.CANCELLED, "cancelled by user"),
        (folder(pid="", started="", flags=["launched"]), JobStatus.QUEUED, "waiting for the"),
        (folder(pid="", started=""), JobStatus.FAILED, "never launched"),  # the launch was lost
        (FolderState(exists=False), JobStatus.LOST, "no longer exists"),
    ],
)
def test_state_from_the_job_folder(state, status, reason):
    seen = decide(state)
    assert seen.status == status
    assert (reason or "") in (seen.reason or "")


def test_timestamps_and_exit_code_are_parsed():
    seen = decide(folder(code="0", ended=T1))
    assert seen.exit_code == 0
    assert (seen.ended_at - seen.started_at).total_seconds() == 90


def test_probe_output_is_decoded_byte_exact():
    data = b"\xff\xfe binary \r\n line\n"
    raw = {
        "/j/1": {
            "exists": True,
            "pid": "7",
            "alive": True,
            "started_at": T0,
            "ended_at": "",
            "exit_code": "",
            "flags": [],
            "files": {
                "output.log": {"offset": 5, "size": 99, "data": base64.b64encode(data).decode()},
                "gpu.csv": None,
            },
        },
        "/j/2": {"exists": False},
    }
    first, seen = parse_probe_output(json.dumps({"first": "queue says", "folders": raw}))
    assert first == "queue says"
    chunk = seen["/j/1"].files["output.log"]
    assert (chunk.offset, chunk.size, chunk.data, chunk.end) == (5, 99, data, 5 + len(data))
    assert seen["/j/1"].files["gpu.csv"] is None
    assert seen["/j/2"] == FolderState(exists=False)
