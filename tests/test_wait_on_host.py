"""A waiter hears of a job's end from a look that waits on the host (``probe.py``'s ``until``):
the look returns once a job writes its exit code, not at the end of its wait, and waits the
whole ``until`` when none does. On the local host and over the real sshd (there through the
connection's helper, which runs requests side by side)."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from gpu_magic import jobdir
from gpu_magic.schedulers.folder_probe import probe
from gpu_magic.transport.local import LocalTransport

pytestmark = pytest.mark.timeout(120)
LONG = 600.0  # a wait that, were it not cut short by the end, outlives the test's timeout


@pytest.fixture(params=["local", "ssh"])
def transport(request):
    if request.param == "local":
        return LocalTransport()
    return request.getfixturevalue("ssh_env").transport()


def _folder(tmp_path):
    folder = tmp_path / "job"
    (folder / jobdir.STATE).mkdir(parents=True)
    return folder


def test_a_look_that_waits_returns_when_a_job_writes_its_exit_code(transport, tmp_path):
    quiet, ending = _folder(tmp_path / "a"), _folder(tmp_path / "b")
    seen = {}

    def look():
        requests = {str(quiet): {}, str(ending): {}}
        seen.update(probe(transport, sys.executable, requests, until=LONG)[1])

    waiter = threading.Thread(target=look, daemon=True)
    waiter.start()
    (ending / jobdir.STATE / jobdir.EXIT_CODE).write_text("0")
    waiter.join(60)
    assert not waiter.is_alive(), "the look waited on after the exit code was written"
    assert seen[str(ending)].exit_code == "0" and seen[str(quiet)].exit_code == ""


def test_a_look_waits_its_whole_time_when_no_job_ends(transport, tmp_path):
    quiet = _folder(tmp_path)
    start = time.monotonic()
    folders = probe(transport, sys.executable, {str(quiet): {}}, until=0.5)[1]
    assert time.monotonic() - start >= 0.5
    assert folders[str(quiet)].exists and folders[str(quiet)].exit_code == ""
