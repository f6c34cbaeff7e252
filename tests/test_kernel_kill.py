"""A kernel killed with SIGKILL while its job runs: the job runs on, and a new kernel on the
same store reattaches: it follows the job to its end, collects every result and holds the
host's log byte for byte. The job ran once. On the real local host and the real sshd."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from harness.procs import wait_until

from gpu_magic import JobStatus

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(120)]

KERNEL = textwrap.dedent(
    """
    import json, sys
    from gpu_magic import Client, GPUJobRequest, Settings
    from gpu_magic.clusters import ClusterConfig
    settings = Settings.model_validate_json(sys.argv[1])
    client = Client(settings)
    {add_cluster}
    code = "import time, os\\nopen(%r, 'a').write('ran\\\\n')\\n" % sys.argv[2]
    code += "for i in range(30):\\n    print('step', i, flush=True)\\n    time.sleep(0.1)\\n"
    code += "result = 'done'\\n"
    request = GPUJobRequest.create(code=code, cluster=sys.argv[3], outputs=("result",))
    handle = client.submit(request)
    client.monitor.on_screen(handle.id)  # a panel: the monitor follows it, as in a notebook
    print(handle.id, flush=True)
    import time
    time.sleep(300)  # killed long before
    """
)


def test_a_killed_kernel_leaves_a_job_that_a_new_kernel_finishes(process_env, tmp_path):
    client, cluster = process_env.client, process_env.cluster_name
    settings = client.settings
    add = ""
    if cluster != "local":  # the dead kernel's own copy of the sshd cluster
        config = client.clusters.get(cluster).model_dump_json()
        add = f"client.clusters.add(ClusterConfig.model_validate_json({config!r}))"
    mark = tmp_path / "ran.txt"
    script = KERNEL.format(add_cluster=add)
    kernel = subprocess.Popen(
        [sys.executable, "-c", script, settings.model_dump_json(), str(mark), cluster],
        stdout=subprocess.PIPE,
        text=True,
    )
    job_id = kernel.stdout.readline().strip()
    assert wait_until(lambda: "step 3" in client.logs(job_id), 60), "the job did not start"
    os.kill(kernel.pid, signal.SIGKILL)
    kernel.wait(10)
    job = client.wait(job_id, 60)  # this kernel reattaches to what the dead one submitted
    assert job.status == JobStatus.COMPLETED
    assert client.handle(job_id).fetch() == {"result": "done"}
    host_log = Path(job.remote_dir, "output.log").read_bytes()
    assert client.monitor.sync(job_id).log_bytes() == host_log
    assert mark.read_text() == "ran\n"
