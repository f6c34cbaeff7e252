"""``Outage``: a waiter rides out transient faults up to the limit and never what time cannot
mend (a rejected key, a changed host key, a refused request)."""

from __future__ import annotations

import logging

import pytest

from gpu_magic.errors import (
    AuthenticationError,
    ChangedHostKeyError,
    ClusterConnectionError,
    HostUnreachableError,
    InvalidRequestError,
    WaitTimeoutError,
)
from gpu_magic.outage import Outage


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    "fault",
    [ClusterConnectionError("dropped"), HostUnreachableError("refused"), WaitTimeoutError("slow")],
)
def test_transient_faults_are_ridden_out_until_the_limit(fault):
    clock = Clock()
    outage = Outage(60, "waiting for job x", clock=clock)
    outage.failed(fault)
    clock.now += 60
    outage.failed(fault)  # at the limit: still riding it out
    clock.now += 0.1
    with pytest.raises(type(fault)):
        outage.failed(fault)


@pytest.mark.parametrize(
    "fault",
    [AuthenticationError("key"), ChangedHostKeyError("changed"), InvalidRequestError("bad")],
)
def test_what_time_cannot_mend_is_raised_at_once(fault):
    with pytest.raises(type(fault)):
        Outage(600, "waiting for job x").failed(fault)


def test_an_outage_says_so_once_and_when_it_is_over(caplog):
    clock = Clock()
    outage = Outage(600, "waiting for job x", clock=clock)
    with caplog.at_level(logging.INFO, logger="gpu_magic.outage"):
        outage.failed(ClusterConnectionError("dropped"))
        outage.failed(ClusterConnectionError("dropped again"))
        clock.now += 12.5
        outage.over()
        outage.over()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "gpu_magic: waiting for job x: reconnecting: dropped",
        "gpu_magic: waiting for job x: reachable again after 12.5 s",
    ]
    assert outage.seconds == 0.0
