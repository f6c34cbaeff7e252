"""Two processes sharing one store collect a finished job once: whichever asks second waits for
the first and reads its manifest (the results store's per-job file lock). Without the lock the
two collections trample each other's ``.partial`` downloads."""

from __future__ import annotations

import subprocess
import sys

import pytest
from harness.clients import local_settings
from harness.kernel import kernel_env

from gpu_magic import Client

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.processes,
]  # real local jobs or run.sh (harness/tiers.py)
# The other process (a second kernel): it submits a job that leaves a 150 MB output, waits for
# it, says its id (its own background collection has then begun), and ends once that is done.
OTHER = """
from gpu_magic import Client, GPUJobRequest
code = ("import os\\nos.makedirs('outputs', exist_ok=True)\\n"
        "open('outputs/weights.bin', 'wb').write(os.urandom(150 * 2**20))")
client = Client()
fresh = []
client.results.on_collected(fresh.append)
job = client.submit(GPUJobRequest.create(code=code, cluster="local")).wait(60)
print(job.id, flush=True)
client.close()  # joins the background collection
print(len(fresh), flush=True)
"""


def test_a_second_process_waits_for_the_first_collection_and_reads_it(tmp_path):
    settings = local_settings(tmp_path)
    other = subprocess.Popen(
        [sys.executable, "-c", OTHER],
        env=kernel_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = Client(settings)
    try:
        job_id = other.stdout.readline().strip()
        assert job_id, other.stderr.read()
        manifest = client.results.local.manifest(job_id)
        assert manifest is None or not manifest["complete"], "collected before this could ask"
        fresh: list[str] = []
        client.results.on_collected(fresh.append)
        files = client.results.collect(job_id)["files"]  # one of the two waits for the other
        assert other.wait(timeout=60) == 0, other.stderr.read()
        theirs = int(other.stdout.read().strip())
        assert theirs + len(fresh) == 1, (theirs, fresh)  # one collection in all
        weights = next(e for e in files if e["path"] == "outputs/weights.bin")
        assert weights["fetched"] and weights["size"] == 150 * 2**20
    finally:
        client.close()
        if other.poll() is None:
            other.kill()
