"""Job folders and everything in them are the user's alone, on the host (0700 folders, 0600
files, an executable's owner bits kept) and here (the job store, the clusters file, the
results). Before: run.sh 0755 and spec.json 0644 with the ``--env`` values in them, inputs
0644, a shipped 0600 file arriving 0644, a 0644 ``jobs.sqlite3``. Local host and real sshd."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gpu_magic import Client, GPUJobRequest, JobStatus
from gpu_magic.packaging.upload import LARGE_FILE


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_job_folder_and_what_the_job_writes_are_private(process_env, tmp_path):
    client, cluster, cwd = process_env.client, process_env.cluster_name, process_env.cwd
    secret = cwd / "token.txt"
    secret.write_text("s3cret")
    secret.chmod(0o600)
    tool = cwd / "tool.sh"
    tool.write_text("echo hi\n")
    tool.chmod(0o755)
    big = cwd / "big.bin"
    big.write_bytes(os.urandom(2 * LARGE_FILE))
    big.chmod(0o644)
    request = GPUJobRequest.create(
        code="open('outputs/out.txt', 'w').write(str(x))",
        cluster=cluster,
        inputs=("x",),
        env={"API_KEY": "hunter2"},
        files=("token.txt", "tool.sh", "big.bin"),
    )
    handle = client.submit(request, {"x": 5}, cwd=cwd)
    job = handle.wait(60).job
    assert job.status == JobStatus.COMPLETED, job.reason
    root = Path(job.remote_dir)  # the host's files are this machine's
    assert mode(root) == 0o700
    for name in ("code", "inputs", "lib", "state", "outputs"):
        assert mode(root / name) == 0o700, name
    assert mode(root / "run.sh") == 0o700  # holds the --env values
    assert mode(root / "spec.json") == 0o600
    # what goes through the host's file cache is read-only: other jobs may share the inode
    assert mode(root / "inputs" / "x.pkl") == 0o400
    assert mode(root / "code" / "token.txt") == 0o400
    assert mode(root / "code" / "tool.sh") == 0o500  # still executable, by its owner
    assert mode(root / "code" / "big.bin") == 0o400  # large files take the other path
    assert mode(root / "outputs" / "out.txt") == 0o600  # run.sh's umask 077
    assert mode(root / "output.log") == 0o600


@pytest.mark.processes
def test_the_store_the_clusters_file_and_the_results_are_private(tmp_path):
    from harness.fixtures import make_settings

    settings = make_settings(
        tmp_path, gpu_cluster_base_path=str(tmp_path / "jobs"), ssh_connection_timeout=10
    )
    client = Client(settings)
    try:
        client.clusters.add(client.clusters.get("local").model_copy(update={"name": "mine"}))
        job = client.submit(GPUJobRequest.create(code="y = 1", outputs=("y",), cluster="local"))
        assert job.wait(60).fetch() == {"y": 1}
        data = settings.gpu_magic_data_dir
        assert mode(data) == 0o700 and mode(settings.store_path) == 0o600
        assert mode(settings.gpu_magic_config_dir) == 0o700
        assert mode(settings.clusters_file) == 0o600
        assert mode(settings.results_path / job.id) == 0o700
        assert mode(tmp_path / "jobs") == 0o700  # the base folder the first upload made
    finally:
        client.close()


def test_an_older_store_open_to_others_is_closed_when_opened(tmp_path):
    from harness.fixtures import make_settings

    settings = make_settings(tmp_path)
    Client(settings).close()
    settings.store_path.chmod(0o644)
    Client(settings).close()
    assert mode(settings.store_path) == 0o600
