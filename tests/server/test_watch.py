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
