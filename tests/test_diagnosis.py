"""Induced failures, classified end to end: the cell really fails on the real local host or
over the real sshd (a missing module, a memory limit, a signal, a full tmpfs that the test
mounts), and the job's ``failure`` names the kind with the specifics, in the store and in the
panel's text. The classification rules themselves are tested in ``test_failures.py``."""

from __future__ import annotations

import contextlib
import subprocess

import pytest
from harness.clients import local_settings

from gpu_magic import Client, GPUJobRequest, JobStatus
from gpu_magic.diagnosis import parse_evidence
from gpu_magic.ui import text

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.processes,
]  # real local jobs or run.sh (harness/tiers.py)


def failed(client, cluster, code: str):
    job = client.submit(GPUJobRequest.create(code=code, cluster=cluster)).wait(60).job
    assert job.status == JobStatus.FAILED and job.failure is not None, job
    assert client.store.get(job.id).failure == job.failure  # stored, not recomputed
    return job


def test_a_missing_module_is_an_import_error_naming_it(process_env):
    client, cluster = process_env.client, process_env.cluster_name
    job = failed(client, cluster, "import numpy\nimport no_such_pkg.sub\n")
    assert job.failure["kind"] == "import_error"
    assert job.failure["detail"]["module"] == "no_such_pkg"  # Python names the missing top
    assert "no_such_pkg" in job.failure["fix"]


def test_a_memory_limit_is_host_oom(process_env):
    client, cluster = process_env.client, process_env.cluster_name
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))\n"
        "blocks = [bytearray(256 * 1024**2) for _ in range(16)]\n"
    )
    assert failed(client, cluster, code).failure["kind"] == "host_oom"


def test_a_signal_is_killed_with_its_name(process_env):
    client, cluster = process_env.client, process_env.cluster_name
    job = failed(client, cluster, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    assert job.failure["kind"] == "killed"
    assert "SIGSEGV" in job.failure["explanation"]


def test_the_panel_text_shows_the_failure_and_the_fix(process_env):
    client, cluster = process_env.client, process_env.cluster_name
    job = failed(client, cluster, "import no_such_pkg\n")
    shown = text.render(text.snapshot(client, client.monitor.sync(job.id)))
    assert f"failure: import_error: {job.failure['explanation']}" in shown
    assert f"fix: {job.failure['fix']}" in shown


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs as the jobs' base path (root can mount; CI runs as root)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)])
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    with contextlib.suppress(subprocess.CalledProcessError):
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_is_disk_full_saying_where_and_how_much_is_free(tmp_path, small_disk):
    settings = local_settings(tmp_path).model_copy(
        update={"gpu_cluster_base_path": str(small_disk / "jobs")}
    )
    client = Client(settings)
    try:
        code = "open('outputs/big.bin', 'wb').write(b'x' * 8 * 1024**2)\n"
        job = client.submit(GPUJobRequest.create(code=code, cluster="local")).wait(60).job
        assert job.status == JobStatus.FAILED
        assert job.failure["kind"] == "disk_full", job.failure
        assert job.failure["detail"]["path"] == str(small_disk)
        assert job.failure["detail"]["free_bytes"] < 64 * 1024
        assert "free" in job.failure["explanation"]
    finally:
        client.close()


def test_evidence_is_read_from_the_step_log_the_cell_log_and_df():
    sep = "\n@@gm-diagnosis@@\n"
    answer = (
        f"slurmstepd: error: oom-kill{sep}Traceback...\nMemoryError{sep}"
        "/dev/vda 1000 900 100 90% /scratch\n"
    )
    tail, disk = parse_evidence(answer)
    assert tail.splitlines() == ["slurmstepd: error: oom-kill", "Traceback...", "MemoryError"]
    assert (disk.path, disk.free_bytes, disk.total_bytes) == ("/scratch", 100 * 1024, 1000 * 1024)
    assert parse_evidence("garbage") == ("", None)
