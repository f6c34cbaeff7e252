"""The magics in a real kernel, and a job that outlives the kernel that submitted it."""

from __future__ import annotations

import re

import pytest
from harness.kernel import Kernel, kernel_env

from gpu_magic import Client

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def ssh_kernel_env(ssh_env, tmp_path):
    Client(ssh_env.settings).clusters.add(ssh_env.cluster)
    return kernel_env(ssh_env.settings), ssh_env.cluster.name


def test_magic_round_trip_in_a_real_kernel(ssh_kernel_env, tmp_path):
    env, cluster = ssh_kernel_env
    kernel = Kernel(env, str(tmp_path))
    try:
        assert kernel.run("%load_ext gpu_magic").error is None
        kernel.run("x = 21")
        out = kernel.run(
            f"%%gpu_submit --cluster {cluster} --inputs x --outputs y --wait\ny = x * 2"
        )
        assert out.error is None, out.text
        assert re.search(r"gpu_magic: job \S+ → ssh \| inputs: x \(\d+ B\)", out.stdout)
        assert "loaded y (int)" in out.stdout
        handle = kernel.run("_").results[0]  # the cell's value: the job handle
        assert "completed on ssh" in handle
        assert kernel.run("y").results == ["42"]
    finally:
        kernel.shutdown()


def test_magic_errors_are_usage_errors_and_remote_errors_keep_the_traceback(
    ssh_kernel_env, tmp_path
):
    env, cluster = ssh_kernel_env
    kernel = Kernel(env, str(tmp_path))
    try:
        kernel.run("%load_ext gpu_magic")
        bad = kernel.run("%%gpu_submit --env NOEQUALS\npass")
        assert bad.error == "UsageError: --env expects KEY=VALUE, got 'NOEQUALS'"
        missing = kernel.run("%%gpu_submit --inputs ghost\npass")
        assert missing.error == "UsageError: --inputs: 'ghost' is not defined in the kernel"
        unknown = kernel.run("%%gpu_submit --cluster nowhere\npass")
        assert unknown.error.startswith("UsageError: unknown cluster 'nowhere'")
        remote = kernel.run(f"%%gpu_submit --cluster {cluster} --wait\nnumbers = []\nnumbers[3]")
        assert remote.error.startswith("RemoteJobError: job ")
        assert "IndexError: list index out of range" in remote.error
        assert "numbers[3]" in remote.error
        help_text = kernel.run("%%gpu_submit --help\npass")
        assert help_text.error is None and "--inputs A,B" in help_text.stdout
        for magic in ("gpu_status", "gpu_logs", "gpu_cancel", "gpu_fetch", "gpu_cluster"):
            shown = kernel.run(f"%{magic} --help")
            assert shown.error is None and f"%{magic}" in shown.stdout, shown.text
    finally:
        kernel.shutdown()


def test_a_new_kernel_sees_and_fetches_a_job_of_a_dead_kernel(ssh_kernel_env, tmp_path):
    env, cluster = ssh_kernel_env
    first = Kernel(env, str(tmp_path))
    try:
        first.run("%load_ext gpu_magic")
        first.run("base = 5")
        submitted = first.run(
            f"%%gpu_submit --cluster {cluster} --name survivor --inputs base --outputs result\n"
            "import time\ntime.sleep(2)\nresult = base ** 3"
        )
        assert submitted.error is None, submitted.text
        job_id = re.search(r"<JobHandle (\S+) name=survivor", submitted.results[0]).group(1)
    finally:
        first.shutdown()  # the kernel dies while the job is still running

    second = Kernel(env, str(tmp_path))
    try:
        second.run("%load_ext gpu_magic")
        table = second.run("%gpu_status").text
        assert job_id in table and "survivor" in table
        fetched = second.run("%gpu_fetch survivor --wait --timeout 60")
        assert fetched.error is None, fetched.text
        assert second.run("result").results == ["125"]
        details = second.run(f"%gpu_status {job_id} --details").stdout
        assert "completed" in details and "running" in details  # the recorded history
    finally:
        second.shutdown()
