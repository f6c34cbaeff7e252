"""The server follows every active job: one whose kernel died still ends and is collected."""

from __future__ import annotations

import asyncio
import os
import re
import time

import pytest
from harness.kernel import Kernel

pytestmark = pytest.mark.timeout(120)


async def test_a_job_whose_kernel_was_shut_down_ends_completed_and_collected(
    gpu_server, cluster, tmp_path
):
    kernel = Kernel({}, str(tmp_path))  # the environment of this test: the server's folders
    try:
        assert kernel.run("%load_ext gpu_magic").error is None
        out = kernel.run(
            f"%%gpu_submit --cluster {cluster} --outputs y\nimport time\ntime.sleep(2)\ny = 7"
        )
        assert out.error is None, out.text
        job_id = re.search(r"gpu_magic: job (\S+) →", out.stdout).group(1)
    finally:
        kernel.shutdown()  # nobody in a kernel follows the job any more
    assert os.environ["GPU_MAGIC_DATA_DIR"] in str(gpu_server.settings.store_path)
    deadline = time.monotonic() + 90
    while gpu_server.results.collected_files(job_id) is None:  # never starts a collection
        assert time.monotonic() < deadline, gpu_server.store.get(job_id)
        await asyncio.sleep(0.2)
    assert gpu_server.store.get(job_id).status.value == "completed"  # the store, not a poll
    paths = {f["path"]: f for f in gpu_server.results.collected_files(job_id)}
    assert paths["outputs/y.pkl"]["fetched"]


@pytest.fixture
def one_slot(monkeypatch):
    monkeypatch.setenv("MAX_CONCURRENT_JOBS", "1")


async def test_the_server_starts_jobs_that_wait_for_a_slot_when_no_kernel_is_left(
    one_slot, gpu_server, cluster, tmp_path
):
    from gpu_magic import Client, GPUJobRequest, Settings

    events, gates = tmp_path / "events", [tmp_path / f"go{n}" for n in range(3)]
    code = (
        "import os, time\nopen({events!r}, 'a').write('start {n}\\n')\n"
        "while not os.path.exists({gate!r}):\n    time.sleep(0.02)\n"
    )
    kernel = Client(Settings())  # the server's own settings, from the environment
    try:
        requests = [
            GPUJobRequest.create(
                code=code.format(events=str(events), gate=str(g), n=n), cluster=cluster
            )
            for n, g in enumerate(gates)
        ]
        ids = [kernel.submit(r).id for r in requests]
        assert kernel.store.get(ids[2]).status.value == "pending"
    finally:
        kernel.close()  # the kernel is gone: only the server is left to start the others
    for gate in gates:
        gate.touch()
    deadline = time.monotonic() + 90
    while any(not gpu_server.store.get(i).is_terminal for i in ids):
        assert time.monotonic() < deadline, [gpu_server.store.get(i).status for i in ids]
        await asyncio.sleep(0.2)
    assert [gpu_server.store.get(i).status.value for i in ids] == ["completed"] * 3
    assert events.read_text().splitlines() == ["start 0", "start 1", "start 2"]
