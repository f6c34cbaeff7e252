"""The process scheduler's state decision, on poll lines as the host prints them."""

import pytest

from gpu_magic.models import JobStatus
from gpu_magic.schedulers.process import parse_poll_line

T0 = "2026-11-26T12:00:00Z"


@pytest.mark.parametrize(
    ("fields", "status", "reason"),
    [
        (["1", "123", T0, "", "", ""], JobStatus.RUNNING, None),
        (["0", "123", T0, T0, "0", ""], JobStatus.COMPLETED, None),
        (["0", "123", T0, T0, "3", ""], JobStatus.FAILED, "exit code 3"),
        (["0", "123", T0, T0, "143", "c"], JobStatus.CANCELLED, "cancelled by user"),
        (["0", "123", T0, T0, "143", "t"], JobStatus.TIMEOUT, "ran past its --timeout"),
        (["1", "123", T0, T0, "0", ""], JobStatus.COMPLETED, None),  # exit code wins
        (["0", "123", T0, "", "", ""], JobStatus.LOST, "vanished without writing an exit code"),
        (["0", "123", T0, "", "", "c"], JobStatus.CANCELLED, "cancelled by user"),
        (["0", "", "", "", "", ""], JobStatus.QUEUED, "waiting for the process"),
        (["missing"], JobStatus.LOST, "no longer exists"),
    ],
)
def test_state_from_poll_line(fields, status, reason):
    seen = parse_poll_line(fields)
    assert seen.status == status
    assert (reason or "") in (seen.reason or "")


def test_timestamps_and_exit_code_are_parsed():
    seen = parse_poll_line(["0", "9", T0, "2026-11-26T12:01:30Z", "0", ""])
    assert seen.exit_code == 0
    assert (seen.ended_at - seen.started_at).total_seconds() == 90
